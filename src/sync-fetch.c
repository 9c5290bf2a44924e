/*
 * sync-fetch: fetching by id what negentropy found (REQ {"ids":[...]}
 * subscriptions, up to fetch_in_flight at once), uploading what the relay
 * lacks, and routing their replies (job_route, job_drain).
 */

#include "config.h"

#include "sync-int.h"

/* ---- fetching by id -------------------------------------------------------- */

static void fetch_sub_free(struct job *j, struct fetch_sub *s)
{
    for (size_t i = 0; i < s->nids; i++)
        share_release(&j->e->share, s->ids[i]);
    free(s->ids);
    idset_clear(&s->asked);
    idset_clear(&s->got);
}

void fetch_queue(struct job *j, const uint8_t id[32])
{
    if (!idset_put(&j->queued, id))
        return;
    if (j->e->o.dry_run)
        dry_note_fetch(j, id); /* counted, never fetched */
    else
        idq_push(&j->pending, id);
}

/*
 * Sends REQ {"ids":[...]} while fewer than fetch_in_flight are out and there
 * are ids: full batches only, unless final (reconciliation is over). Ids
 * already stored are skipped; ids another job is fetching are deferred.
 */
int fetch_pump(struct job *j, int final, char *err, size_t errlen)
{
    size_t max_in_flight = j->e->cfg->sync.fetch_in_flight;

    if (max_in_flight == 0)
        max_in_flight = 1;
    while (j->nsubs < max_in_flight && idq_len(&j->pending) > 0 &&
           (final || idq_len(&j->pending) >= j->batch)) {
        struct fetch_sub s = {0};
        json_t *ids = json_array(), *flt, *msg;
        const uint8_t *id;
        char hex[65], serr[STORE_ERRLEN];

        s.ids = xreallocarray(NULL, j->batch, 32);
        while (s.nids < j->batch && (id = idq_pop(&j->pending)) != NULL) {
            int has = store_has_id(j->st, id, serr, sizeof serr);
            if (has == 1 || engine_is_pending(j->e, id))
                continue; /* another job stored it meanwhile, or its event waits for the store */
            if (!share_claim(&j->e->share, id) && !j->no_defer) {
                idq_push(&j->deferred, id);
                continue;
            }
            memcpy(s.ids[s.nids++], id, 32);
            idset_add(&s.asked, id);
            hex_encode(id, 32, hex);
            json_array_append_new(ids, json_string(hex));
        }
        if (s.nids == 0) {
            json_decref(ids);
            fetch_sub_free(j, &s);
            continue;
        }
        job_subid(j, "fetch", s.subid, sizeof s.subid);
        flt = json_pack("{s:o, s:I}", "ids", ids, "limit", (json_int_t)s.nids);
        msg = json_pack("[ss o]", "REQ", s.subid, flt);
        j->subs = xreallocarray(j->subs, j->nsubs + 1, sizeof *j->subs);
        j->subs[j->nsubs++] = s;
        if (job_send_json(j, msg, err, errlen) < 0)
            return -1;
    }
    return 0;
}

struct fetch_sub *fetch_find(struct job *j, const char *subid)
{
    for (size_t i = 0; i < j->nsubs; i++)
        if (strcmp(j->subs[i].subid, subid) == 0)
            return &j->subs[i];
    return NULL;
}

/* A fetch subscription ended (EOSE or CLOSED): what was not sent is retried once. */
static void fetch_done(struct job *j, struct fetch_sub *s, int closed)
{
    size_t idx = (size_t)(s - j->subs);
    size_t got = s->got.n;

    if (!closed)
        job_close_sub(j, s->subid);
    if (got > 0 && got < s->nids && got < j->batch)
        j->batch = got; /* the relay caps replies below fetch_batch */
    for (size_t i = 0; i < s->nids; i++) {
        if (idset_has(&s->got, s->ids[i]))
            continue;
        if (idset_put(&j->retried, s->ids[i]))
            idq_push(&j->pending, s->ids[i]);
        else
            j->missing++;
    }
    /*
     * Store what came before giving up the claims: a job waiting for these
     * ids looks in the store when they are released, and would fetch again
     * whatever still sat in our batch. (A store failure sets j->fatal.)
     */
    if (got > 0)
        job_flush(j);
    fetch_sub_free(j, s);
    j->subs[idx] = j->subs[--j->nsubs];
}

/* The connection is gone: every id in flight goes back to the queue. */
void fetch_reset(struct job *j)
{
    while (j->nsubs > 0) {
        struct fetch_sub *s = &j->subs[j->nsubs - 1];
        for (size_t i = 0; i < s->nids; i++)
            if (!idset_has(&s->got, s->ids[i]))
                idq_push(&j->pending, s->ids[i]);
        fetch_sub_free(j, s);
        j->nsubs--;
    }
}

/* ---- uploading (direction up) --------------------------------------------- */

/*
 * An upload the relay refused, or we could not send: counted, and the first
 * SYNC_UPLOAD_ERRORS of a job kept in its run and logged, whatever -v says.
 */
static void upload_refused(struct job *j, const char *hex, const char *reason)
{
    struct sync_run *r = j->run;

    r->uploaded_rejected++;
    if (r->n_upload_errors < SYNC_UPLOAD_ERRORS) {
        struct sync_upload_error *u = &r->upload_errors[r->n_upload_errors++];
        snprintf(u->id, sizeof u->id, "%s", hex);
        snprintf(u->reason, sizeof u->reason, "%s", reason);
    }
    if (r->uploaded_rejected <= SYNC_UPLOAD_ERRORS || j->e->o.verbose > 0)
        engine_log(j->e, "[SYNC] %s: upload of %s rejected: %s", j->rel->url, hex, reason);
}

int upload_pump(struct job *j, char *err, size_t errlen)
{
    const uint8_t *id;

    while (j->e->o.dry_run && (id = idq_pop(&j->upq)) != NULL)
        dry_note_upload(j, id); /* counted, never sent */
    while (j->up_inflight.n < SYNC_UPLOAD_IN_FLIGHT && (id = idq_pop(&j->upq)) != NULL) {
        char *json = NULL, serr[STORE_ERRLEN];
        size_t len = 0;
        int rc = store_get_json(j->st, id, &json, &len, serr, sizeof serr);
        struct buf b = {0};

        /*
         * Our listing holds events still waiting for the store writer; one
         * may also have been stored since the first look.
         */
        if (rc != 1) {
            free(json);
            json = engine_pending_json(j->e, id, &len);
            rc = json != NULL ? 1 : store_get_json(j->st, id, &json, &len, serr, sizeof serr);
        }
        if (rc != 1) {
            free(json);
            continue; /* gone meanwhile (replaced, deleted) */
        }
        buf_append(&b, "[\"EVENT\",", 9);
        buf_append(&b, json, len);
        buf_push(&b, ']');
        free(json);
        if (j->max_message > 0 && b.len > (uint64_t)j->max_message) {
            /* The relay would refuse it unread, maybe with no OK to say so. */
            char hex[65], why[128];
            hex_encode(id, 32, hex);
            snprintf(why, sizeof why,
                     "not sent: %zu bytes, over the relay's max_message_length %lld", b.len,
                     (long long)j->max_message);
            upload_refused(j, hex, why);
            buf_free(&b);
            continue;
        }
        idset_add(&j->up_inflight, id);
        rc = relay_send(j->r, (const char *)b.data, b.len, err, errlen);
        buf_free(&b);
        if (rc < 0) {
            if (rc == RELAY_ERR_INTERRUPTED)
                j->interrupted = 1;
            return -1;
        }
    }
    return 0;
}

/* An upload's OK. -1 when the job ends (an auth-required: AUTH did not clear). */
static int upload_ok(struct job *j, const struct relay_msg *m)
{
    uint8_t id[32];

    if (hex_decode(m->ok_id, 64, id, 32, 1) < 0 || !idset_has(&j->up_inflight, id))
        return 0;
    idset_del(&j->up_inflight, id);
    if (!m->ok_accepted && auth_prefix(m->text) != 0) {
        /* NIP-42: sent again once AUTH went through (one sent before it waits for it). */
        idq_push(&j->upq, id);
        return j->authing ? 0 : job_auth_required(j, "EVENT", m);
    }
    /* "duplicate:" with true means the relay has it now: as good as accepted. */
    if (m->ok_accepted)
        j->run->uploaded_ok++;
    else
        upload_refused(j, m->ok_id,
                       m->text != NULL && m->text[0] != '\0' ? m->text : "(no reason)");
    return 0;
}

/* ---- receiving -------------------------------------------------------------- */

/*
 * A fetch the relay closed with auth-required: or restricted: (NIP-42): its
 * ids go back to the queue (not as retried) and are asked for again once
 * AUTH went through, or the job ends (job_auth_required). One sent before
 * our AUTH and closed while it awaits its OK just waits for it.
 */
static int fetch_auth(struct job *j, struct fetch_sub *s, const struct relay_msg *m)
{
    size_t idx = (size_t)(s - j->subs);

    for (size_t i = 0; i < s->nids; i++)
        if (!idset_has(&s->got, s->ids[i]))
            idq_push(&j->pending, s->ids[i]);
    if (s->got.n > 0)
        job_flush(j); /* as fetch_done: stored before the claims go */
    fetch_sub_free(j, s);
    j->subs[idx] = j->subs[--j->nsubs];
    if (j->fatal[0] != '\0')
        return -1;
    return j->authing ? 0 : job_auth_required(j, "REQ", m);
}

/*
 * Routes a message that is not for the caller's own subscription: fetch
 * replies, OKs, notices. -1 when storing failed, or the job ends for want
 * of AUTH (j->fatal says which).
 */
int job_route(struct job *j, struct relay_msg *m)
{
    struct fetch_sub *s;
    int64_t at;

    switch (m->type) {
    case RELAY_MSG_EVENT:
        if ((s = fetch_find(j, m->subid)) == NULL)
            return 0; /* a subscription we already closed */
        if (job_take_event(j, m->event, j->f, s, &at) < 0)
            return -1;
        if (at >= 0) {
            j->fetched_bytes += m->raw_len;
            if (at > j->max_fetched_at)
                j->max_fetched_at = at;
        }
        return 0;
    case RELAY_MSG_EOSE:
    case RELAY_MSG_CLOSED:
        if ((s = fetch_find(j, m->subid)) != NULL) {
            if (m->type == RELAY_MSG_CLOSED && auth_prefix(m->text) != 0)
                return fetch_auth(j, s, m);
            if (m->type == RELAY_MSG_CLOSED) {
                engine_log(j->e, "[SYNC] %s: fetch closed by relay: %s", j->rel->url,
                           m->text != NULL ? m->text : "");
                if (j->closed[0] == '\0')
                    set_error(j->closed, sizeof j->closed, "%s", m->text != NULL ? m->text : "");
            }
            fetch_done(j, s, m->type == RELAY_MSG_CLOSED);
        }
        return j->fatal[0] != '\0' ? -1 : 0;
    case RELAY_MSG_OK: return upload_ok(j, m);
    case RELAY_MSG_NOTICE:
        if (j->e->o.verbose > 0)
            engine_log(j->e, "[SYNC] %s: NOTICE %s", j->rel->url, m->text);
        return 0;
    default: return 0;
    }
}

/* Waits for every fetch and upload to end. 0, or -1 with a reason. */
int job_drain(struct job *j, char *err, size_t errlen)
{
    j->idle_deadline = net_now_ms() + j->timeout_ms;
    j->phase = j->down ? SYNC_PHASE_FETCHING : SYNC_PHASE_UPLOADING;
    for (;;) {
        struct relay_msg *m;
        int rc;

        /*
         * Pump first: it may defer every pending id, or find every upload
         * left too long to send, leaving nothing to wait for.
         */
        if (j->down && fetch_pump(j, 1, err, errlen) < 0)
            return -1;
        if (j->up && upload_pump(j, err, errlen) < 0)
            return -1;
        if (j->down && j->nsubs == 0 && idq_len(&j->pending) == 0 && idq_len(&j->deferred) > 0) {
            /* Others were fetching these; whatever they did not store, we fetch. */
            const uint8_t *id;
            share_wait_claims(&j->e->share, &j->deferred, j->timeout_ms);
            j->idle_deadline = net_now_ms() + j->timeout_ms;
            j->no_defer = 1; /* still claimed after a whole timeout: ask anyway */
            while ((id = idq_pop(&j->deferred)) != NULL)
                idq_push(&j->pending, id);
            j->deferred.head = j->deferred.n = 0;
            continue;
        }
        if ((!j->down || (j->nsubs == 0 && idq_len(&j->pending) == 0)) &&
            (!j->up || (j->up_inflight.n == 0 && idq_len(&j->upq) == 0)))
            return 0;
        rc = job_recv(j, 1, &m, err, errlen);
        if (rc < 0)
            return -1;
        rc = job_route(j, m);
        relay_msg_free(m);
        if (rc < 0) {
            set_error(err, errlen, "%s", j->fatal);
            return -1;
        }
    }
}
