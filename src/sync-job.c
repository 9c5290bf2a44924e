/*
 * sync-job: one job's connection: sending, the receive loop (job_recv) with
 * its verify look-ahead, taking in events, and progress and stats reports.
 */

#include "config.h"

#include "sync-int.h"

void job_subid(struct job *j, const char *prefix, char *out, size_t outlen)
{
    uint64_t n;

    n = atomic_fetch_add(&j->e->subseq, 1) + 1;
    /* Same length for every kind, so est_req_bytes frames events like our REQ would. */
    snprintf(out, outlen, "%s-%0*llx", prefix, (int)(SYNC_REQ_SUBID_LEN - strlen(prefix) - 1),
             (unsigned long long)n);
}

int job_send_json(struct job *j, json_t *msg, char *err, size_t errlen)
{
    char *text = json_dumps(msg, JSON_COMPACT);
    int rc;

    json_decref(msg);
    if (text == NULL) {
        set_error(err, errlen, "cannot serialize a message");
        return -1;
    }
    rc = caps_guard_send(&j->guard, j->r, text, strlen(text), err, errlen);
    free(text);
    if (rc == RELAY_ERR_INTERRUPTED)
        j->interrupted = 1;
    return rc < 0 ? -1 : 0;
}

void job_close_sub(struct job *j, const char *subid)
{
    char err[RELAY_ERRLEN];

    if (relay_is_connected(j->r))
        job_send_json(j, json_pack("[ss]", "CLOSE", subid), err, sizeof err);
}

/*
 * Whether obj is a copy of an event we hold: its id stored, or queued for the
 * store writer, with the same signature bytes. Ours was verified before it
 * was queued, and an id commits to everything a signature signs, so such a
 * copy is authentic once its id checks out (sync_event_from_known): no Schnorr
 * check. REQ meets such copies all the time, since every relay after the
 * first sends what the first sent. A copy with other signature bytes is
 * verified in full, and dropped as invalid if they are bad. Not looked up
 * for a fetch by id (fetched) or a negentropy tail: those ask for what we
 * lack.
 */
static int job_known_copy(struct job *j, const json_t *obj, int fetched)
{
    struct sync_engine *e = j->e;
    const json_t *idj = json_object_get(obj, "id"), *sigj = json_object_get(obj, "sig");
    const struct event *q;
    uint8_t id[32], sig[64], held[64];
    char err[STORE_ERRLEN];
    int found = 0;

    if (fetched || j->in_tail || !json_is_string(idj) || !json_is_string(sigj) ||
        json_string_length(idj) != 64 || json_string_length(sigj) != 128 ||
        hex_decode(json_string_value(idj), 64, id, sizeof id, 1) < 0 ||
        hex_decode(json_string_value(sigj), 128, sig, sizeof sig, 1) < 0)
        return 0;
    pthread_mutex_lock(&e->wq_mu);
    if ((q = idset_map_get(&e->wq_map, id)) != NULL) {
        memcpy(held, q->sig, sizeof held);
        found = 1;
    }
    pthread_mutex_unlock(&e->wq_mu);
    /* A store error only costs the shortcut: the copy is verified in full. */
    if (!found && j->st != NULL)
        found = store_get_sig(j->st, id, held, err, sizeof err) == 1;
    return found && memcmp(held, sig, sizeof sig) == 0;
}

/* event_from_json for a copy job_known_copy vouched for: its id is checked, its signature was. */
static struct event *sync_event_from_known(const json_t *obj, char *err, size_t errlen)
{
    struct event *ev = event_from_json(obj, err, errlen);

    if (ev != NULL && event_check_id(ev, err, errlen) < 0) {
        event_free(ev);
        ev = NULL;
    }
    return ev;
}

/*
 * Checks one EVENT's object: well-formed, authentic, matching f, and in
 * asked when asked is given. 0 and the event queued for the store writer,
 * *taken_at its created_at; 1 when it was bad (counted, dropped), *taken_at
 * -1; -1 (j->fatal) when an earlier transaction of this job's failed.
 */
int job_take_event(struct job *j, const json_t *obj, const struct filter *f, struct fetch_sub *sub,
                   int64_t *taken_at)
{
    char err[EVENT_ERRLEN] = "";
    struct event *ev;

    if (j->pre_obj == obj && (j->pre_task != NULL || j->pre_known)) {
        ev = j->pre_task != NULL ? vtask_finish(j->e->vpool, j->pre_task, j->kc, err, sizeof err)
                                 : sync_event_from_known(obj, err, sizeof err);
        j->pre_task = NULL;
        j->pre_obj = NULL;
        j->pre_known = 0;
    } else if (job_known_copy(j, obj, sub != NULL)) {
        ev = sync_event_from_known(obj, err, sizeof err);
    } else {
        ev = event_from_json_verified(obj, j->kc, err, sizeof err);
    }
    *taken_at = -1;
    j->take_forged = ev == NULL;
    if (ev == NULL || !filter_match(f, ev) || (sub != NULL && !idset_has(&sub->asked, ev->id))) {
        if (j->e->o.verbose > 0) {
            char hex[65] = "?";
            if (ev != NULL)
                hex_encode(ev->id, 32, hex);
            engine_log(j->e, "[SYNC] %s: dropped event %s: %s", j->rel->url, hex,
                       ev == NULL || err[0] != '\0' ? err : "not what was asked for");
        }
        event_free(ev);
        j->run->invalid++;
        return 1;
    }
    if (sub != NULL && !idset_put(&sub->got, ev->id)) {
        /* The same id twice in one reply. */
        event_free(ev);
        j->run->duplicates++;
        return 1;
    }
    j->run->fetched++;
    *taken_at = (int64_t)ev->created_at;
    if (job_queue_event(j, ev) < 0) {
        *taken_at = -1;
        return -1;
    }
    return 0;
}

size_t rel_index(const struct sync_engine *e, const struct sync_relay *rel)
{
    return (size_t)(rel - e->relays);
}

/* The job's phase as the stats model shows it. */
static enum stats_phase job_stats_phase(enum sync_phase phase)
{
    switch (phase) {
    case SYNC_PHASE_RECONCILING: return STATS_PHASE_RECONCILING;
    case SYNC_PHASE_TAIL:
    case SYNC_PHASE_FETCHING: return STATS_PHASE_FETCHING;
    case SYNC_PHASE_UPLOADING: return STATS_PHASE_UPLOADING;
    case SYNC_PHASE_REQ: return STATS_PHASE_REQ;
    case SYNC_PHASE_STARTING:
    case SYNC_PHASE_DONE: break;
    }
    return STATS_PHASE_CONNECTING;
}

/* The job's live counters into the stats model. */
static void job_stats(struct job *j)
{
    struct relay_counters c;
    size_t i = rel_index(j->e, j->rel);

    relay_get_counters(j->r, NULL, &c);
    stats_job_phase(j->e->stats, i, job_stats_phase(j->phase));
    stats_job_progress(j->e->stats, i, j->run->rounds, j->run->have, j->run->need, j->run->fetched,
                       j->run->mode == SYNC_MODE_NEG && !j->in_tail ? j->run->need : 0,
                       c.sent_payload - j->c0.sent_payload, c.recv_payload - j->c0.recv_payload,
                       c.sent_wire - j->c0.sent_wire, c.recv_wire - j->c0.recv_wire, 0);
}

void job_progress(struct job *j, int done)
{
    struct sync_progress p;
    int64_t now;

    now = net_now_ms();
    if (!done && now - j->progress_at < SYNC_PROGRESS_MS)
        return;
    j->progress_at = now;
    if (!done)
        job_stats(j);
    if (j->e->o.on_progress == NULL)
        return;
    p.relay = j->rel->url;
    p.filter = j->cf->name;
    p.phase = done ? SYNC_PHASE_DONE : j->phase;
    p.rounds = j->run->rounds;
    p.fetched = j->run->fetched;
    p.total = j->run->mode == SYNC_MODE_NEG && !j->in_tail ? j->run->need : 0;
    p.done = done;
    j->e->o.on_progress(j->e->o.arg, &p);
}

/* Drops the pool's result for the last message if nobody took it. */
static void job_pre_drop(struct job *j)
{
    if (j->pre_task != NULL)
        event_free(vtask_finish(j->e->vpool, j->pre_task, j->kc, NULL, 0));
    j->pre_task = NULL;
    j->pre_obj = NULL;
    j->pre_known = 0;
}

/* Drops what was read ahead (the connection is being replaced, or the job ends). */
void job_ahead_clear(struct job *j)
{
    job_pre_drop(j);
    while (j->ahead_n > 0) {
        struct ahead *a = &j->ahead[j->ahead_head];
        if (a->t != NULL)
            event_free(vtask_finish(j->e->vpool, a->t, j->kc, NULL, 0));
        relay_msg_free(a->m);
        j->ahead_head = (j->ahead_head + 1) % SYNC_LOOKAHEAD;
        j->ahead_n--;
    }
    j->ahead_head = 0;
    j->ahead_rc = 0;
}

static void job_ahead_push(struct job *j, struct relay_msg *m)
{
    struct ahead *a = &j->ahead[(j->ahead_head + j->ahead_n) % SYNC_LOOKAHEAD];

    a->m = m;
    a->t = NULL;
    a->known = 0;
    if (m->type == RELAY_MSG_EVENT && m->event != NULL && j->e->vpool != NULL) {
        a->known = job_known_copy(j, m->event, m->subid != NULL && fetch_find(j, m->subid) != NULL);
        if (!a->known)
            a->t = vpool_submit(j->e->vpool, m->event);
    }
    j->ahead_n++;
}

/*
 * The next message, while keeping fetches and uploads moving. 0 with *out;
 * RELAY_ERR_TIMEOUT when nothing came for neg_timeout; other relay errors.
 * With a verifier pool it reads ahead what has already arrived (up to
 * SYNC_LOOKAHEAD messages) and hands their events to the pool, so that
 * verification runs beside this thread; messages still come out in arrival
 * order, and an error relay_recv gave while reading ahead comes after the
 * messages before it.
 */
/*
 * Messages the connection received (skipped ones too) less those relay_recv
 * returned to this job, since it began. It grows by one for each message
 * relay_recv skipped as unreadable (invalid JSON, a reply cut short); it
 * also counts what relay_recv holds but has not returned yet, so a caller
 * compares it only where nothing can be queued behind the last message it
 * took (the EOSE of a REQ page while no other subscription is open).
 */
int64_t job_recv_skew(struct job *j)
{
    struct relay_counters t;

    relay_get_counters(j->r, NULL, &t);
    return (int64_t)(t.recv_msgs - j->recv_base) - (int64_t)j->recv_returned;
}

int job_recv(struct job *j, int final, struct relay_msg **out, char *err, size_t errlen)
{
    int64_t now;
    int rc = 0;

    job_pre_drop(j);
    job_progress(j, 0);
    /* Nothing new goes out while our AUTH awaits its OK (job_auth). */
    if (j->down && !j->authing && fetch_pump(j, final, err, errlen) < 0)
        return j->interrupted ? RELAY_ERR_INTERRUPTED : RELAY_ERR_CLOSED;
    if (j->up && !j->authing && upload_pump(j, err, errlen) < 0)
        return j->interrupted ? RELAY_ERR_INTERRUPTED : RELAY_ERR_CLOSED;
    if (j->ahead_n == 0 && j->ahead_rc == 0) {
        now = net_now_ms();
        if (now >= j->idle_deadline) {
            set_error(err, errlen, "no reply within %lld s", (long long)(j->timeout_ms / 1000));
            return RELAY_ERR_TIMEOUT;
        }
        /* A first message the relay lost is sent again on a fresh connection, inside. */
        rc = caps_guard_recv(&j->guard, j->r, (int)(j->idle_deadline - now), out, err, errlen);
        if (rc == 0)
            j->recv_returned++;
        if (rc != 0 || j->e->vpool == NULL || (*out)->type != RELAY_MSG_EVENT)
            goto got;
        job_ahead_push(j, *out);
    }
    /* Whatever else is here already, up to the window. */
    while (j->e->vpool != NULL && j->ahead_rc == 0 && j->ahead_n < SYNC_LOOKAHEAD) {
        struct relay_msg *m;
        int r2 = relay_recv(j->r, 0, &m, j->ahead_err, sizeof j->ahead_err);
        if (r2 == RELAY_ERR_TIMEOUT)
            break;
        if (r2 != 0) {
            j->ahead_rc = r2;
            break;
        }
        j->recv_returned++;
        job_ahead_push(j, m);
    }
    if (j->ahead_n == 0 || j->ahead_rc == RELAY_ERR_INTERRUPTED) {
        /* The error's turn (an interruption does not wait for the rest). */
        rc = j->ahead_rc;
        j->ahead_rc = 0;
        set_error(err, errlen, "%s", j->ahead_err);
        *out = NULL;
        goto got;
    }
    {
        struct ahead *a = &j->ahead[j->ahead_head];
        j->ahead_head = (j->ahead_head + 1) % SYNC_LOOKAHEAD;
        j->ahead_n--;
        *out = a->m;
        j->pre_obj = a->m->event;
        j->pre_task = a->t;
        j->pre_known = a->known;
        rc = 0;
    }
got:
    if (rc == 0 && (*out)->type == RELAY_MSG_AUTH)
        job_auth_note(j, *out); /* the connection's latest challenge, whoever asks for AUTH */
    /*
     * Only an answer moves the idle deadline: a relay that pours out NOTICEs
     * (or AUTH challenges) while it answers nothing must still time out.
     */
    if (rc == 0 && (*out)->type != RELAY_MSG_NOTICE && (*out)->type != RELAY_MSG_AUTH)
        j->idle_deadline = net_now_ms() + j->timeout_ms;
    else if (rc == RELAY_ERR_TIMEOUT)
        set_error(err, errlen, "no reply within %lld s", (long long)(j->timeout_ms / 1000));
    else if (rc == RELAY_ERR_INTERRUPTED)
        j->interrupted = 1;
    return rc;
}

int job_connect(struct job *j, char *err, size_t errlen)
{
    int rc;

    if (relay_is_connected(j->r))
        return 0;
    job_ahead_clear(j); /* what the old connection had sent */
    rc = relay_connect(j->r, (int)j->timeout_ms, err, errlen);
    if (rc == RELAY_ERR_INTERRUPTED)
        j->interrupted = 1;
    return rc < 0 ? -1 : 0;
}
