/*
 * sync-neg: negentropy mode (job_neg). Cuts a filter's span into time
 * windows (the arithmetic is sync-window.c's), lists each window's local
 * events (shared with other relays' jobs), reconciles it with the relay in a
 * session (job_neg_session: list, open, each round, the relay ending it,
 * finish), splits windows the relay refuses as too big or reconciles capped,
 * and hands the tail to a paged REQ.
 */

#include "config.h"

#include "sync-int.h"
#include "sync-est.h"
#include "sync-window.h"

/* ---- negentropy ------------------------------------------------------------ */

enum session_outcome {
    NEG_OUT_DONE,
    NEG_OUT_BLOCKED,     /* too many results: split the window */
    NEG_OUT_CAPPED,      /* the relay reconciled a capped set: split the window */
    NEG_OUT_REFUSED,     /* NEG-OPEN refused: a NOTICE, CLOSED or NEG-ERR before any NEG-MSG */
    NEG_OUT_UNSUPPORTED, /* silence or a hang-up on NEG-OPEN */
    NEG_OUT_FAILED,      /* mid-session failure: retry once, then fall back */
    NEG_OUT_FATAL,       /* store error or interrupted */
    NEG_OUT_GOING,       /* not over yet (job_neg_session's steps) */
};

static struct filter *window_filter(const struct filter *f, const struct window *w)
{
    struct filter *wf = filter_dup(f);

    wf->has_limit = 0;
    wf->limit = 0;
    if (w->lo > 0 || f->has_since) {
        wf->has_since = 1;
        wf->since = w->lo;
    }
    if (!w->hi_open) {
        wf->has_until = 1;
        wf->until = w->hi;
    }
    return wf;
}

/* Where a window's listing goes (listing_merge's add): the session's storage. */
struct list_sink {
    struct neg_storage *ns;
    char err[NEG_ERRLEN]; /* why an item was refused */
};

static int list_add(void *arg, uint64_t created_at, const uint8_t id[32])
{
    struct list_sink *k = arg;

    return neg_storage_insert(k->ns, created_at, id, k->err, sizeof k->err) < 0 ? 1 : 0;
}

struct est_ctx {
    struct job *j;
    struct idset pending; /* pending events not met in the store yet */
};

static int est_cb(void *ctx, const uint8_t id[32], size_t len)
{
    struct est_ctx *x = ctx;

    idset_del(&x->pending, id);
    /* What this job fetched itself is in fetched_bytes (a tail it shared, reconciled again). */
    if (!idset_has(&x->j->need, id))
        x->j->est_common += est_event_bytes(len, SYNC_REQ_SUBID_LEN);
    return 0;
}

/*
 * What a REQ from the cursor would carry for this window of local events
 * (stored, or waiting for the store writer when the listing pend was made):
 * summed now, before this window's fetches land; the have ids are taken out
 * when the session ends.
 */
static int job_neg_estimate(struct job *j, const struct filter *wf, const struct pend_list *pend,
                            char *err, size_t errlen)
{
    struct filter *ef = filter_dup(wf);
    struct est_ctx x = {j, {0}};
    int rc;

    if (j->cursor > 0 && (!ef->has_since || ef->since < (uint64_t)j->cursor)) {
        ef->has_since = 1;
        ef->since = (uint64_t)j->cursor;
    }
    for (size_t i = 0; i < pend->n; i++)
        if (!ef->has_since || pend->v[i].created_at >= ef->since)
            idset_add(&x.pending, pend->v[i].id);
    rc = store_list_sizes(j->st, ef, est_cb, &x, err, errlen);
    /* The rest are still waiting for the writer. */
    for (size_t i = 0; rc == 0 && i < pend->n; i++)
        if (idset_has(&x.pending, pend->v[i].id) && !idset_has(&j->need, pend->v[i].id))
            j->est_common += est_event_bytes(pend->v[i].json_len, SYNC_REQ_SUBID_LEN);
    idset_clear(&x.pending);
    filter_free(ef);
    return rc < 0 ? -1 : 0;
}

void job_neg_log_using(struct job *j)
{
    if (j->neg_logged)
        return;
    j->neg_logged = 1;
    engine_log(j->e, "[SYNC] Using negentropy for %s (filter %s)", j->rel->url, j->cf->name);
}

static void job_neg_log_retry(struct job *j, const char *reason)
{
    engine_log(j->e, "[SYNC] %s (filter %s): %s; retrying once", j->rel->url, j->cf->name, reason);
}

/*
 * The frame size limit for a negentropy session over wf: frame_size_limit,
 * within the relay's NIP-11 max_message_length. Our messages go out in hex,
 * twice their size, next to the subscription id and, in NEG-OPEN, the filter.
 * A limit is 4096 at least (the reference's floor), whatever the relay says.
 */
static uint64_t job_frame_limit(const struct job *j, const struct filter *wf)
{
    uint64_t limit = j->e->cfg->sync.frame_size_limit;
    json_t *fj;
    size_t flen;
    int64_t room;

    if (j->max_message <= 0)
        return limit;
    fj = filter_to_json(wf);
    flen = json_dumpb(fj, NULL, 0, JSON_COMPACT);
    json_decref(fj);
    room = (j->max_message - (int64_t)flen - SYNC_NEG_MSG_OVERHEAD) / 2;
    if (room < NEG_MIN_FRAME_SIZE_LIMIT)
        room = NEG_MIN_FRAME_SIZE_LIMIT;
    if (limit == 0 || (uint64_t)room < limit)
        limit = (uint64_t)room;
    return limit;
}

/*
 * Whether the relay's side of a finished reconciliation looks cut at a
 * limit of its own: n0str answers NEG-OPEN over its first max_limit
 * matches, oldest first, where strfry says "blocked:". Its set is then
 * exactly that many events, and the ids after its cut look like ours alone.
 * Returns the limit, or -1.
 */
static int64_t job_neg_capped_at(const struct job *j, uint64_t relay_n)
{
    if (j->max_limit > 0 && relay_n == (uint64_t)j->max_limit)
        return j->max_limit;
    return -1;
}

/*
 * One reconciliation over one window, in steps: list the window
 * (neg_sess_list), open the session (neg_sess_open), then handle what the
 * relay sends until the session ends (neg_sess_handle: a round of ours,
 * the relay ending it, a refusal, or a message for other subscriptions),
 * and take its results (neg_sess_finish).
 */
struct neg_sess {
    struct filter *wf;         /* the window's filter */
    struct shared_listing *sl; /* its listing, released at the end */
    struct neg *n;
    struct buf out; /* our next message */
    struct neg_ids have, need;
    char subid[32];
    int got_reply;   /* the relay answered NEG-MSG in this session */
    uint64_t rounds; /* NEG-MSG answers */
    uint64_t need_n; /* the session's need ids */
    struct idset need_seen;
    struct idset have_seen;
    struct idq have_q; /* the session's have ids, taken when it ended uncapped */
    /* NEG_OUT_BLOCKED: the relay's stated limit (or -1); NEG_OUT_CAPPED: the cap */
    int64_t limit;
};

/*
 * Takes the window's shared listing; the first job to ask for it lists it
 * for all: the queue first, then the store (an event in neither was verified
 * after this). -1 sets j->fatal.
 */
static int neg_sess_list(struct job *j, struct neg_sess *s)
{
    const struct filter *wf = s->wf;
    struct list_sink k = {NULL, ""};
    struct listing_merge lm = {NULL, 0, 0, list_add, &k};
    char err[SYNC_ERRLEN], *key = filter_to_string(wf);
    uint64_t seq;
    int mine, rc;

    s->sl = share_listing_take(&j->e->share, key, wf->has_since ? wf->since : 0,
                               wf->has_until ? wf->until : UINT64_MAX, &mine);
    free(key);
    if (!mine)
        return 0;
    k.ns = neg_storage_new();
    seq = engine_pending(j->e, wf, 1, &s->sl->pend);
    lm.pend = s->sl->pend.v;
    lm.npend = s->sl->pend.n;
    share_listing_snap(&j->e->share, s->sl, seq);
    rc = store_list_ids(j->st, wf, listing_merge_stored, &lm, err, sizeof err);
    if (rc == 0)
        rc = listing_merge_end(&lm);
    if (rc != 0 || neg_storage_seal(k.ns, err, sizeof err) < 0) {
        set_error(j->fatal, sizeof j->fatal, "listing: %s", rc == 1 ? k.err : err);
        neg_storage_free(k.ns);
        share_listing_ready(&j->e->share, s->sl, NULL);
        return -1;
    }
    share_listing_ready(&j->e->share, s->sl, k.ns);
    return 0;
}

/* Sends ["<type>","<subid>",<filter>,"<hex of s->out>"] (no filter: NULL). */
static int neg_sess_send(struct job *j, struct neg_sess *s, const char *type, json_t *fj, char *err,
                         size_t errlen)
{
    char *hex = xmalloc(s->out.len * 2 + 1);
    json_t *msg;

    hex_encode(s->out.data, s->out.len, hex);
    if (fj != NULL)
        msg = json_pack("[ss o s]", type, s->subid, fj, hex);
    else
        msg = json_pack("[sss]", type, s->subid, hex);
    free(hex);
    return job_send_json(j, msg, err, errlen);
}

/*
 * Our first message over the listing, NEG-OPEN with it, then, while the
 * relay lists its side, the sizes the estimate needs (this window's fetches
 * cannot have landed yet: they start on its reply). NEG_OUT_GOING when the
 * session is open.
 */
static enum session_outcome neg_sess_open(struct job *j, struct neg_sess *s, char *reason,
                                          size_t rlen)
{
    char err[SYNC_ERRLEN];

    if ((s->n = neg_new(s->sl->ns, job_frame_limit(j, s->wf), err, sizeof err)) != NULL)
        neg_set_adaptive(s->n, j->e->cfg->sync.neg_adaptive); /* negentropy_split; see neg.c */
    if (s->n == NULL || neg_initiate(s->n, &s->out, err, sizeof err) < 0) {
        set_error(j->fatal, sizeof j->fatal, "negentropy: %s", err);
        return NEG_OUT_FATAL;
    }
    if (job_connect(j, reason, rlen) < 0)
        return j->interrupted ? NEG_OUT_FATAL : NEG_OUT_FAILED;
    job_subid(j, "neg", s->subid, sizeof s->subid);
    if (neg_sess_send(j, s, "NEG-OPEN", filter_to_json(s->wf), reason, rlen) < 0)
        return j->interrupted ? NEG_OUT_FATAL : NEG_OUT_FAILED;
    if (job_neg_estimate(j, s->wf, &s->sl->pend, err, sizeof err) < 0) {
        set_error(j->fatal, sizeof j->fatal, "store: %s", err);
        return NEG_OUT_FATAL;
    }
    j->idle_deadline = net_now_ms() + j->timeout_ms;
    j->phase = SYNC_PHASE_RECONCILING;
    return NEG_OUT_GOING;
}

/* Nothing more could be read: before any answer a relay without NIP-77, after one a failure. */
static enum session_outcome neg_sess_recv_failed(struct job *j, const struct neg_sess *s, int rc,
                                                 const char *err, char *reason, size_t rlen)
{
    if (j->interrupted)
        return NEG_OUT_FATAL;
    if (!s->got_reply) {
        /* Silence or a hang-up on NEG-OPEN: a relay without NIP-77. */
        caps_fallback_reason(reason, rlen, NULL, rc, err, (int)j->timeout_ms);
        return NEG_OUT_UNSUPPORTED;
    }
    set_error(reason, rlen, "negentropy session failed: %s", err);
    return NEG_OUT_FAILED;
}

/*
 * The relay ended the session: NEG-CLOSE, NEG-ERR or CLOSED. Before its
 * first NEG-MSG a NEG-ERR or CLOSED refuses NEG-OPEN (NIP-77 off); "blocked:"
 * refuses the window, as too big when it says "too many".
 */
static enum session_outcome neg_sess_ended(struct neg_sess *s, const struct relay_msg *m,
                                           char *reason, size_t rlen)
{
    const char *t = m->text != NULL ? m->text : "";
    enum session_outcome res;

    if (m->type == RELAY_MSG_NEG_CLOSE) {
        /*
         * The relay ended the session while we still wait for its reply
         * (khatru drops idle sessions so). After our last round we have left
         * the session already, and a late NEG-CLOSE is ignored as any message
         * for a closed subscription is.
         */
        set_error(reason, rlen, "relay closed the session (NEG-CLOSE) after %llu round%s",
                  (unsigned long long)s->rounds, s->rounds == 1 ? "" : "s");
        return NEG_OUT_FAILED;
    }
    if (m->type == RELAY_MSG_CLOSED) {
        if (s->got_reply) {
            set_error(reason, rlen, "CLOSED: %s", t);
            return NEG_OUT_FAILED;
        }
        caps_fallback_reason(reason, rlen, m, 0, NULL, 0);
        return NEG_OUT_REFUSED;
    }
    if (strncmp(t, "blocked:", 8) == 0 && strcasestr(t, "too many") != NULL) {
        res = NEG_OUT_BLOCKED;
        s->limit = m->has_neg_limit ? m->neg_limit : -1;
    } else if (strncmp(t, "blocked:", 8) == 0 || !s->got_reply) {
        res = NEG_OUT_REFUSED;
    } else {
        res = NEG_OUT_FAILED;
    }
    if (res == NEG_OUT_REFUSED && !s->got_reply)
        caps_fallback_reason(reason, rlen, m, 0, NULL, 0);
    else
        set_error(reason, rlen, "NEG-ERR: %s", t);
    return res;
}

/*
 * NEG-ERR or CLOSED "auth-required:" or "restricted:" (NIP-42): no verdict
 * on NIP-77. AUTH and the same NEG-OPEN once more (s->out still holds our
 * first message), or the job ends (NEG_OUT_FATAL, j->fatal). After a
 * NEG-MSG the session is past saving: once AUTH went through, it is tried
 * again as after any failure.
 */
static enum session_outcome neg_sess_auth(struct job *j, struct neg_sess *s,
                                          const struct relay_msg *m, char *reason, size_t rlen)
{
    if (!s->got_reply)
        j->auth_on_neg = 1;
    if (job_auth_required(j, s->got_reply ? "NEG-MSG" : "NEG-OPEN", m) < 0)
        return NEG_OUT_FATAL;
    if (s->got_reply) {
        set_error(reason, rlen, "%s %s; authenticated since",
                  m->type == RELAY_MSG_CLOSED ? "CLOSED:" : "NEG-ERR:", m->text);
        return NEG_OUT_FAILED;
    }
    if (neg_sess_send(j, s, "NEG-OPEN", filter_to_json(s->wf), reason, rlen) < 0)
        return j->interrupted ? NEG_OUT_FATAL : NEG_OUT_FAILED;
    return NEG_OUT_GOING;
}

/* The relay's first answer: it speaks NIP-77. */
static void neg_sess_answered(struct job *j, struct neg_sess *s)
{
    s->got_reply = 1;
    j->neg_answered = 1;
    job_neg_log_using(j);
    pthread_mutex_lock(&j->e->mu);
    j->rel->neg_known = SYNC_NIP77_WORKS;
    pthread_mutex_unlock(&j->e->mu);
}

/*
 * A round's ids: need ids are the job's at once (fetched while the session
 * goes on); have ids wait for the session's end (neg_sess_take_have).
 */
static void neg_sess_account(struct job *j, struct neg_sess *s)
{
    for (size_t i = 0; i < s->need.n; i++) {
        if (idset_put(&s->need_seen, s->need.ids[i]))
            s->need_n++;
        if (idset_put(&j->need, s->need.ids[i]))
            j->run->need++;
        if (j->down)
            fetch_queue(j, s->need.ids[i]);
    }
    for (size_t i = 0; i < s->have.n; i++)
        if (idset_put(&s->have_seen, s->have.ids[i]))
            idq_push(&s->have_q, s->have.ids[i]);
    s->need.n = s->have.n = 0;
}

/*
 * A NEG-MSG: reconciled into our next message, sent, or, when we have
 * nothing more to say, NEG-CLOSE and NEG_OUT_DONE.
 */
static enum session_outcome neg_sess_round(struct job *j, struct neg_sess *s,
                                           const struct relay_msg *m, char *reason, size_t rlen)
{
    char err[SYNC_ERRLEN] = "";
    size_t len = m->neg_hex_len / 2;
    uint8_t *bin = xmalloc(len + 1);
    int rc;

    rc = hex_decode(m->neg_hex, m->neg_hex_len, bin, len, 0);
    if (rc >= 0)
        rc = neg_reconcile(s->n, bin, len, &s->out, &s->have, &s->need, err, sizeof err);
    free(bin);
    if (rc < 0) {
        if (err[0] == '\0' || m->neg_hex_len % 2 != 0)
            set_error(err, sizeof err, "not hex");
        set_error(reason, rlen, "bad NEG-MSG: %s", err);
        return NEG_OUT_FAILED;
    }
    if (!s->got_reply)
        neg_sess_answered(j, s);
    j->run->rounds++;
    s->rounds++;
    neg_sess_account(j, s);
    if (s->out.len == 0) {
        job_send_json(j, json_pack("[ss]", "NEG-CLOSE", s->subid), err, sizeof err);
        return NEG_OUT_DONE;
    }
    if (neg_sess_send(j, s, "NEG-MSG", NULL, reason, rlen) < 0)
        return j->interrupted ? NEG_OUT_FATAL : NEG_OUT_FAILED;
    return NEG_OUT_GOING;
}

/*
 * A message while the session is open: ours (a round, or the session's
 * end), a NOTICE refusing NEG-OPEN, or one for the fetches and uploads
 * (job_route). Frees m.
 */
static enum session_outcome neg_sess_handle(struct job *j, struct neg_sess *s, struct relay_msg *m,
                                            char *reason, size_t rlen)
{
    enum session_outcome res = NEG_OUT_GOING;

    if (m->subid != NULL && strcmp(m->subid, s->subid) == 0 &&
        (m->type == RELAY_MSG_NEG_MSG || m->type == RELAY_MSG_NEG_ERR ||
         m->type == RELAY_MSG_CLOSED || m->type == RELAY_MSG_NEG_CLOSE)) {
        if (m->type == RELAY_MSG_NEG_MSG)
            res = neg_sess_round(j, s, m, reason, rlen);
        else if (m->type != RELAY_MSG_NEG_CLOSE && auth_prefix(m->text) != 0)
            res = neg_sess_auth(j, s, m, reason, rlen);
        else
            res = neg_sess_ended(s, m, reason, rlen);
    } else if (m->type == RELAY_MSG_NOTICE && !s->got_reply &&
               caps_notice_is_refusal(m->text, j->nsubs == 0 && j->up_inflight.n == 0
                                                   ? CAPS_NOTICE_NEG_ONLY
                                                   : CAPS_NOTICE_SHARED)) {
        caps_fallback_reason(reason, rlen, m, 0, NULL, 0);
        res = NEG_OUT_REFUSED;
    } else if (job_route(j, m) < 0) {
        res = NEG_OUT_FATAL;
    }
    relay_msg_free(m);
    return res;
}

/* The session's have ids become the job's (and, direction up, its uploads). */
static void neg_sess_take_have(struct job *j, struct neg_sess *s)
{
    for (const uint8_t *id; (id = idq_pop(&s->have_q)) != NULL;) {
        if (idset_put(&j->have, id)) {
            j->run->have++;
            if (j->up)
                idq_push(&j->upq, id);
        }
    }
}

/* The newest created_at both sides hold in the window raises j->neg_max_common_at. */
static void neg_sess_common_at(struct job *j, const struct neg_storage *ns)
{
    for (size_t i = neg_storage_size(ns); i-- > 0;) {
        const struct neg_item *it = neg_storage_item(ns, i);
        if (idset_has(&j->have, it->id))
            continue;
        if ((int64_t)it->timestamp > j->neg_max_common_at)
            j->neg_max_common_at = (int64_t)it->timestamp;
        break;
    }
}

/* What the window's have ids from the cursor on would have added to a REQ (j->est_have). */
static void neg_sess_est_have(struct job *j, const struct neg_sess *s)
{
    const struct neg_storage *ns = s->sl->ns;
    char err[SYNC_ERRLEN];

    for (size_t i = 0; i < neg_storage_size(ns); i++) {
        const struct neg_item *it = neg_storage_item(ns, i);
        char *json = NULL;
        size_t len = 0;
        const struct pend_item *p;
        if ((int64_t)it->timestamp < j->cursor || !idset_has(&j->have, it->id))
            continue;
        if (store_get_json(j->st, it->id, &json, &len, err, sizeof err) == 1)
            j->est_have += est_event_bytes(len, SYNC_REQ_SUBID_LEN);
        else if ((p = pend_find(&s->sl->pend, it->timestamp, it->id)) != NULL)
            j->est_have += est_event_bytes(p->json_len, SYNC_REQ_SUBID_LEN);
        free(json);
    }
}

/*
 * The session is done: the relay's set in this window is (local - have) +
 * need. Unless that looks capped (then the have ids are not missing, only
 * past the relay's cut: NEG_OUT_CAPPED), the have ids are the job's.
 */
static enum session_outcome neg_sess_finish(struct job *j, struct neg_sess *s, char *reason,
                                            size_t rlen)
{
    const struct neg_storage *ns = s->sl->ns;
    int64_t cap = job_neg_capped_at(j, neg_storage_size(ns) - idq_len(&s->have_q) + s->need_n);

    if (cap > 0) {
        s->limit = cap;
        set_error(reason, rlen,
                  "the relay's negentropy set is %lld events, its NIP-11 max_limit: capped",
                  (long long)cap);
        return NEG_OUT_CAPPED;
    }
    neg_sess_take_have(j, s);
    neg_sess_common_at(j, ns);
    neg_sess_est_have(j, s);
    return NEG_OUT_DONE;
}

static void neg_sess_free(struct job *j, struct neg_sess *s)
{
    idset_clear(&s->need_seen);
    idset_clear(&s->have_seen);
    idq_free(&s->have_q);
    neg_ids_free(&s->have);
    neg_ids_free(&s->need);
    buf_free(&s->out);
    neg_free(s->n);
    if (s->sl != NULL)
        share_listing_release(&j->e->share, s->sl);
    filter_free(s->wf);
}

/*
 * One reconciliation over one window. On NEG_OUT_BLOCKED *limit is the
 * relay's stated limit (or -1), on NEG_OUT_CAPPED the cap its set matched.
 * The ids the relay lacks are taken (have, upload) only once the session
 * ended and its set did not look capped: past a cap they are not missing.
 */
static enum session_outcome job_neg_session(struct job *j, const struct window *w, int64_t *limit,
                                            char *reason, size_t rlen)
{
    struct neg_sess s = {0};
    enum session_outcome res;

    s.limit = -1;
    s.wf = window_filter(j->f, w);
    if (neg_sess_list(j, &s) < 0)
        res = NEG_OUT_FATAL;
    else
        res = neg_sess_open(j, &s, reason, rlen);
    while (res == NEG_OUT_GOING) {
        struct relay_msg *m = NULL;
        char err[SYNC_ERRLEN];
        int rc = job_recv(j, 0, &m, err, sizeof err);

        if (rc < 0)
            res = neg_sess_recv_failed(j, &s, rc, err, reason, rlen);
        else
            res = neg_sess_handle(j, &s, m, reason, rlen);
    }
    if (res == NEG_OUT_DONE)
        res = neg_sess_finish(j, &s, reason, rlen);
    *limit = s.limit;
    neg_sess_free(j, &s);
    return res;
}

static int ts_cb(void *ctx, uint64_t created_at, const uint8_t id[32])
{
    (void)id;
    ts_list_push(ctx, created_at);
    return 0;
}

/*
 * Where to halve a window the relay called too big: at the median of our own
 * events in it when we have some (relays and we tend to hold similar time
 * distributions), else at the middle of the time span. Always in [lo, hi).
 */
static uint64_t job_split_point(struct job *j, const struct window *w)
{
    struct filter *wf = window_filter(j->f, w);
    struct ts_list l = {0};
    char err[STORE_ERRLEN];
    uint64_t mid;

    if (store_list_ids(j->st, wf, ts_cb, &l, err, sizeof err) != 0)
        l.n = 0;
    mid = window_split_point(w, l.v, l.n);
    free(l.v);
    filter_free(wf);
    return mid;
}

/*
 * The created_at of every local event of the job's filter in [lo, hi]
 * (hi_open: no upper bound; stored, or waiting for the store writer),
 * ascending; up to the REQ cursor only the newest. -1 sets j->fatal.
 */
static int job_local_times(struct job *j, uint64_t lo, uint64_t hi, int hi_open, struct ts_list *l)
{
    struct window w = {lo, hi, hi_open, 0};
    struct pend_list pend = {0};
    struct filter *wf;
    char err[STORE_ERRLEN];
    int rc;

    wf = window_filter(j->f, &w);
    engine_pending(j->e, wf, 0, &pend);
    filter_free(wf);
    if (j->cursor > 0 && (uint64_t)j->cursor >= lo) {
        /*
         * Up to the cursor wstack_push_times makes one window whatever the
         * count: the newest event there stands for all of them, found
         * through the index instead of listing every time.
         */
        int64_t newest;
        struct window pre = {lo, hi_open || hi > (uint64_t)j->cursor ? (uint64_t)j->cursor : hi, 0,
                             0};
        wf = window_filter(j->f, &pre);
        rc = store_newest(j->st, wf, &newest, err, sizeof err);
        filter_free(wf);
        if (rc < 0) {
            set_error(j->fatal, sizeof j->fatal, "listing: %s", err);
            free(pend.v);
            return -1;
        }
        for (size_t i = 0; i < pend.n && pend.v[i].created_at <= pre.hi; i++)
            if ((int64_t)pend.v[i].created_at > newest)
                newest = (int64_t)pend.v[i].created_at;
        if (newest >= 0)
            ts_list_push(l, (uint64_t)newest);
        if (!hi_open && hi <= (uint64_t)j->cursor) {
            free(pend.v);
            return 0;
        }
        w.lo = (uint64_t)j->cursor + 1;
    }
    wf = window_filter(j->f, &w);
    rc = store_list_ids(j->st, wf, ts_cb, l, err, sizeof err);
    filter_free(wf);
    if (rc != 0) {
        set_error(j->fatal, sizeof j->fatal, "listing: %s", err);
        free(pend.v);
        return -1;
    }
    /* An event stored since engine_pending looked counts twice: windows are sized roughly. */
    ts_list_add_pending(l, pend.v, pend.n, w.lo);
    free(pend.v);
    return 0;
}

/*
 * Events per REQ page: fetch_batch, within the relay's NIP-11 max_limit;
 * *cap_known (if not NULL): the relay announced one.
 */
uint64_t job_page_limit(const struct job *j, int *cap_known)
{
    uint64_t page = j->e->cfg->sync.fetch_batch;

    if (cap_known != NULL)
        *cap_known = j->max_limit > 0;
    if (j->max_limit > 0 && (uint64_t)j->max_limit < page)
        page = (uint64_t)j->max_limit;
    return page;
}

/*
 * A part of the tail (newer than every local event, so the relay's events
 * there are all missing and negentropy would only add their ids, twice: the
 * relay's list, our fetch). A paged REQ downloads exactly them, as the REQ
 * mode would; they count as need and fetched.
 */
static int job_tail_fetch(struct job *j, struct tail_slice *s, char *err, size_t errlen)
{
    struct req_state rs = {.incomplete_at = -1, .lost_at = -1};
    uint64_t since, until;
    int rc, has_until;

    rs.page_limit = job_page_limit(j, &rs.cap_known);
    if (job_connect(j, err, errlen) < 0)
        return -1;
    share_tail_range(&j->e->share, s, &since, &until, &has_until);
    j->in_tail = 1;
    j->slice = s;
    j->phase = SYNC_PHASE_TAIL;
    rc = req_window(j, j->f, since, has_until, until, 0, &rs, err, errlen);
    j->in_tail = 0;
    j->slice = NULL;
    if (rc == 0 && rs.incomplete_at >= 0)
        j->missing++; /* no cursor past what we could not list */
    return rc;
}

/*
 * Fetches a slice of the tail and ends it. 1 when done; 2 when done but
 * another job took part of the slice (its relay's events there are still to
 * be reconciled); 0 when it failed and may be tried once more (*retried set:
 * the caller reconciles what arrived and asks again); -1 with *res set when
 * the job cannot go on.
 */
static int job_neg_tail(struct job *j, struct tail_slice *s, int *retried, enum job_outcome *res,
                        char *reason, size_t rlen)
{
    char err[SYNC_ERRLEN] = "";
    int rc, split;

    rc = job_tail_fetch(j, s, err, sizeof err);
    /* What it fetched is in the local view now, stored or queued for the store. */
    split = share_tail_done(&j->e->share, s);
    if (rc == 0)
        return split ? 2 : 1;
    if (j->interrupted || j->fatal[0] != '\0') {
        *res = JOB_FATAL;
        return -1;
    }
    set_error(reason, rlen, "fetching the newest events: %.200s", err);
    if (*retried || job_flush(j) < 0) {
        *res = j->fatal[0] != '\0' ? JOB_FATAL : JOB_FAILED;
        return -1;
    }
    *retried = 1;
    job_neg_log_retry(j, reason);
    if (!relay_is_connected(j->r))
        fetch_reset(j);
    return 0;
}

/*
 * Cuts the local events from *cur up to hi (hi_open: no bound) into windows
 * on the stack, and moves *cur past them. What other jobs are fetching of
 * the tail is in the local view only in part: it is no window of ours until
 * they are done. -1 sets j->fatal.
 */
static int job_neg_cut(struct job *j, struct wstack *stack, uint64_t *cur, uint64_t hi, int hi_open)
{
    struct ts_list l = {0};
    uint64_t tail_lo = 0;

    if (job_local_times(j, *cur, hi, hi_open, &l) < 0) {
        free(l.v);
        return -1;
    }
    if (share_tail_busy_lo(&j->e->share, j->cf, &tail_lo))
        ts_list_drop_from(&l, tail_lo);
    if (l.n > 0) {
        uint64_t last = l.v[l.n - 1];
        wstack_push_times(stack, *cur, &l, j->cursor, SYNC_NEG_WINDOW);
        *cur = last + 1;
    }
    free(l.v);
    return 0;
}

/*
 * A window the relay will not reconcile at once, halved, newest half on
 * top; JOB_FAILED when it cannot be halved again. Both outcomes are the
 * same to us, whether the relay says so (strfry's "blocked:") or answers
 * over its first max_limit (n0str, NEG_OUT_CAPPED at limit).
 */
static enum job_outcome job_neg_split(struct job *j, struct wstack *stack, const struct window *w,
                                      enum session_outcome o, int64_t limit, char *reason,
                                      size_t rlen)
{
    uint64_t mid;

    if (w->depth >= SYNC_SPLIT_DEPTH || w->hi <= w->lo) {
        if (o == NEG_OUT_CAPPED)
            set_error(reason, rlen,
                      "the relay's negentropy set is capped at %lld events, still after %d window"
                      " splits",
                      (long long)limit, w->depth);
        else
            set_error(reason, rlen, "still blocked after %d window splits", w->depth);
        return JOB_FAILED;
    }
    j->run->splits++;
    if (o == NEG_OUT_CAPPED)
        j->run->neg_cap = limit;
    mid = job_split_point(j, w);
    engine_log(j->e, "[SYNC] %s (filter %s): %s, splitting [%llu, %s%llu] at %llu", j->rel->url,
               j->cf->name,
               o == NEG_OUT_CAPPED ? "the relay's negentropy set looks capped at its max_limit"
                                   : "too many results for the relay",
               (unsigned long long)w->lo, w->hi_open ? ">" : "", (unsigned long long)w->hi,
               (unsigned long long)mid);
    /* Newest half first: it is what users look at. */
    wstack_push(stack, (struct window){w->lo, mid, 0, w->depth + 1});
    wstack_push(stack, (struct window){mid + 1, w->hi, w->hi_open, w->depth + 1});
    return JOB_OK;
}

/* A failed session: its window again, once per job (*retried), then JOB_FAILED. */
static enum job_outcome job_neg_retry(struct job *j, struct wstack *stack, const struct window *w,
                                      int *retried, const char *reason)
{
    if (*retried)
        return JOB_FAILED;
    *retried = 1;
    job_neg_log_retry(j, reason);
    if (!relay_is_connected(j->r))
        fetch_reset(j);
    wstack_push(stack, *w);
    return JOB_OK;
}

/*
 * Reconciles the windows on the stack, the top first, splitting and
 * retrying as their sessions' outcomes say; JOB_OK when none is left.
 * *sessions counts the job's sessions.
 */
static enum job_outcome job_neg_windows(struct job *j, struct wstack *stack, int *retried,
                                        int *sessions, char *reason, size_t rlen)
{
    while (stack->n > 0) {
        struct window w = stack->v[--stack->n];
        int64_t limit;
        enum session_outcome o = job_neg_session(j, &w, &limit, reason, rlen);
        enum job_outcome res = JOB_OK;

        (*sessions)++;
        switch (o) {
        case NEG_OUT_DONE: break;
        case NEG_OUT_BLOCKED:
        case NEG_OUT_CAPPED: res = job_neg_split(j, stack, &w, o, limit, reason, rlen); break;
        case NEG_OUT_REFUSED:
            /*
             * A refusal before the relay answered any NEG-MSG of this job:
             * NIP-77 is off there now, whatever the cache said (a relay that
             * turned it off since the probe). After an answer it is a
             * failure like any other.
             */
            if (!j->neg_answered)
                return JOB_UNSUPPORTED;
            res = job_neg_retry(j, stack, &w, retried, reason);
            break;
        case NEG_OUT_UNSUPPORTED:
            /* Silence on a relay not known to speak NIP-77: it does not. */
            if (*sessions == 1 && !j->neg_logged)
                return JOB_UNSUPPORTED;
            res = job_neg_retry(j, stack, &w, retried, reason);
            break;
        case NEG_OUT_FAILED: res = job_neg_retry(j, stack, &w, retried, reason); break;
        case NEG_OUT_GOING: /* never returned */
        case NEG_OUT_FATAL: return JOB_FATAL;
        }
        if (res != JOB_OK)
            return res;
    }
    return JOB_OK;
}

static enum job_outcome job_neg_stopped(struct job *j)
{
    if (!engine_stopping(j->e))
        return JOB_OK;
    j->interrupted = 1;
    return JOB_FATAL;
}

/*
 * Another job is fetching the tail (or part of it was ours): help with it
 * while there is a part worth taking; then (JOB_OK) the caller reconciles
 * what it fetched and looks at the tail again.
 */
static enum job_outcome job_neg_help_tail(struct job *j, int *retried, char *reason, size_t rlen)
{
    enum job_outcome res = job_neg_stopped(j);
    struct tail_slice *ts;

    if (res != JOB_OK)
        return res;
    while ((ts = share_tail_help(&j->e->share, j->cf, job_page_limit(j, NULL))) != NULL)
        if (job_neg_tail(j, ts, retried, &res, reason, rlen) < 0)
            return res;
    return job_neg_stopped(j);
}

/*
 * The fetches and uploads still in flight; if the connection went away
 * under them, once more on a new one (unless the job retried already).
 */
static enum job_outcome job_neg_drain(struct job *j, int retried, char *reason, size_t rlen)
{
    for (;;) {
        char err[SYNC_ERRLEN] = "";

        if (job_drain(j, err, sizeof err) == 0)
            return JOB_OK;
        if (j->interrupted || j->fatal[0] != '\0')
            return JOB_FATAL;
        set_error(reason, rlen, "fetching: %.200s", err);
        if (retried || relay_is_connected(j->r))
            return JOB_FAILED;
        retried = 1;
        job_neg_log_retry(j, reason);
        fetch_reset(j);
        if (job_connect(j, err, sizeof err) < 0) {
            set_error(reason, rlen, "reconnecting: %.200s", err);
            return j->interrupted ? JOB_FATAL : JOB_FAILED;
        }
    }
}

/*
 * The whole negentropy part of a job. The local events of the filter's
 * window are cut into time windows (wstack_push_times), each reconciled by a
 * session of its own (halved again on "blocked"); what is newer than the
 * newest local event is the tail, fetched by job_tail_fetch, first when no other
 * job has it (it is what a user waits for, and the other relays' jobs
 * reconcile meanwhile). A job that finds another relay's job on it
 * reconciles its windows, then takes the older half of what is left of it
 * (share_tail_help) while that is worth a page or two, then reconciles what
 * was fetched (stored or still queued for the store) and looks at the tail
 * again; so does the job that claimed it when others took part of it, since
 * their parts came from other relays. While other jobs fetch the tail, the
 * part of it already fetched is no window of anyone's. Then the fetches and
 * uploads still in flight. A dry run reconciles the tail as one more window.
 */
enum job_outcome job_neg(struct job *j, char *reason, size_t rlen)
{
    struct wstack stack = {0};
    int retried = 0, sessions = 0;
    enum job_outcome res = JOB_OK;
    uint64_t now = (uint64_t)time(NULL);
    uint64_t cur = j->f->has_since ? j->f->since : 0;
    uint64_t hi = j->f->has_until ? j->f->until : now + 3600;
    int hi_open = !j->f->has_until;

    for (;;) {
        struct tail_slice *ts;
        int tail_done = 0, want_tail, rc;

        if (job_neg_cut(j, &stack, &cur, hi, hi_open) < 0) {
            res = JOB_FATAL;
            break;
        }
        /* Direction up: what is newer than every local event is nothing to upload. */
        want_tail = j->down && (hi_open || cur <= hi);
        if (want_tail && j->e->o.dry_run) {
            /* A dry run has the relay name the tail's ids too: nothing is downloaded. */
            wstack_push(&stack, (struct window){cur, hi_open && hi < cur ? cur : hi, hi_open, 0});
            want_tail = 0;
        }
        if (want_tail && (ts = share_tail_claim(&j->e->share, j->cf, cur, hi, hi_open)) != NULL) {
            if ((rc = job_neg_tail(j, ts, &retried, &res, reason, rlen)) < 0)
                break;
            tail_done = rc == 1;
        }
        if ((res = job_neg_windows(j, &stack, &retried, &sessions, reason, rlen)) != JOB_OK)
            break;
        if (!want_tail || tail_done)
            break;
        if ((res = job_neg_help_tail(j, &retried, reason, rlen)) != JOB_OK)
            break;
    }
    free(stack.v);
    if (res == JOB_OK)
        res = job_neg_drain(j, retried, reason, rlen);
    return res;
}
