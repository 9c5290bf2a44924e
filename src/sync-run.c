/*
 * sync-run: one job from start to end (job_run): its state and cursor, the
 * mode decision and what is known of the relay's NIP-77 support, negentropy
 * or the fallback to REQ, NIP-11 limits, what it moved and what a REQ would
 * have cost (sync-est.c), the backoff after a refusal, the run record and
 * its stats.
 */

#include "config.h"

#include "sync-int.h"
#include "sync-est.h"

/* ---- the engine's tables, through the store (store-meta.c) ------------------ */

/* The cursor of (relay, filter) if its stored filter key is key; else 0. */
static int sync_cursor_get(struct store *st, const char *relay, const char *fname, const char *key,
                           int64_t *cursor, char *err, size_t errlen)
{
    char *fjson = NULL;
    int rc = store_cursor_row(st, relay, fname, cursor, &fjson, err, errlen);

    /* A filter edited under the same name starts again from 0. */
    if (rc != 1 || fjson == NULL || strcmp(fjson, key) != 0)
        *cursor = 0;
    free(fjson);
    return rc < 0 ? -1 : 0;
}

static int sync_run_record(struct store *st, const struct sync_run *r, char *err, size_t errlen)
{
    struct store_run sr;

    memset(&sr, 0, sizeof sr);
    /* The schema's words: neg | req, ok | error. */
    snprintf(sr.mode, sizeof sr.mode, "%s", r->mode == SYNC_MODE_NEG ? "neg" : "req");
    snprintf(sr.result, sizeof sr.result, "%s", r->ok ? "ok" : "error");
    sr.started = r->started;
    sr.duration_ms = r->duration_ms;
    sr.rounds = r->rounds;
    sr.bytes_sent = r->bytes_sent;
    sr.bytes_received = r->bytes_received;
    sr.wire_sent = r->wire_sent;
    sr.wire_received = r->wire_received;
    sr.est_req_bytes = r->est_req_bytes;
    sr.have = r->have;
    sr.need = r->need;
    sr.fetched = r->fetched;
    sr.stored = r->stored;
    sr.duplicates = r->duplicates;
    sr.invalid = r->invalid;
    sr.uploaded_ok = r->uploaded_ok;
    sr.uploaded_rejected = r->uploaded_rejected;
    snprintf(sr.fallback_reason, sizeof sr.fallback_reason, "%s", r->fallback_reason);
    snprintf(sr.error, sizeof sr.error, "%s", r->error);
    return store_run_insert(st, r->relay, r->filter, &sr, err, errlen);
}

/* ---- a job from start to end ------------------------------------------------ */

/*
 * The cursor row's record of the filter: its JSON, with a relative bound
 * ("30d") written as its age so that the row does not change every round.
 */
static char *cursor_key(const struct config_filter *cf)
{
    struct filter *f = filter_dup(cf->filter);
    char *s, *key;
    size_t n;

    if (cf->since_age >= 0)
        f->has_since = 0;
    if (cf->until_age >= 0)
        f->has_until = 0;
    s = filter_to_string(f);
    filter_free(f);
    n = strlen(s) + 64;
    key = xmalloc(n);
    if (cf->since_age >= 0 || cf->until_age >= 0)
        snprintf(key, n, "%s since_age=%lld until_age=%lld", s, (long long)cf->since_age,
                 (long long)cf->until_age);
    else
        snprintf(key, n, "%s", s);
    free(s);
    return key;
}

/*
 * The limits of a relay's NIP-11 document that size our messages (under
 * e->mu), also shown in the stats model.
 */
static void rel_take_limits(struct sync_engine *e, struct sync_relay *rel,
                            const struct relay_nip11 *n)
{
    if (!n->present)
        return;
    if (n->limitation.max_limit > 0)
        rel->max_limit = n->limitation.max_limit;
    if (n->limitation.max_message_length > 0)
        rel->max_message = n->limitation.max_message_length;
    stats_set_limits(e->stats, rel_index(e, rel), rel->max_message > 0 ? rel->max_message : 0,
                     rel->max_limit > 0 ? rel->max_limit : 0);
}

static void rel_take_nip11(struct sync_engine *e, struct sync_relay *rel, const char *raw,
                           size_t len)
{
    struct relay_nip11 *n = relay_nip11_parse(raw, len);

    rel_take_limits(e, rel, n);
    relay_nip11_free(n);
}

/* A capability verdict (probe or cache) into the stats model. */
void engine_stats_cap(struct sync_engine *e, struct sync_relay *rel, const struct caps_result *res)
{
    enum stats_cap c = res->verdict == CAPS_SUPPORTED     ? STATS_CAP_SUPPORTED
                       : res->verdict == CAPS_UNSUPPORTED ? STATS_CAP_UNSUPPORTED
                                                          : STATS_CAP_UNREACHABLE;

    stats_set_cap(e->stats, rel_index(e, rel), c,
                  res->cached ? STATS_CAP_FROM_CACHE : STATS_CAP_FROM_PROBE, res->reason,
                  res->checked_at, res->nip11.software, res->nip11.version, res->auth_challenge);
}

/*
 * What is known of the relay's NIP-77 support; reason set for
 * SYNC_NIP77_REFUSED and SYNC_NIP77_UNREACHABLE (after which the relay's
 * next job asks again). The capability cache answers once per relay per
 * engine (caps_probe: the cache when fresh, else NIP-11 and a NEG-OPEN
 * handshake); what a job learns later is kept in rel->neg_known and, for a
 * refusal, written back to the cache. Interrupted: j->interrupted.
 */
static enum sync_nip77 job_neg_support(struct job *j, char *reason, size_t rlen)
{
    struct sync_engine *e = j->e;
    struct sync_relay *rel = j->rel;
    enum sync_nip77 k;
    int need, force;

    pthread_mutex_lock(&e->mu);
    need = !rel->probed || rel->force_probe;
    force = rel->force_probe;
    pthread_mutex_unlock(&e->mu);
    if (need && j->st != NULL) {
        struct caps_opts co = caps_opts_default();
        struct caps_result res = {0};
        char err[CAPS_ERRLEN];
        unsigned pt = e->cfg->sync.probe_timeout;

        co.timeout_ms = (int)pt * 1000;
        co.recheck_days = e->cfg->sync.recheck_days;
        co.force = force;
        co.cache_read_only = e->o.dry_run; /* a dry run keeps the verdict in memory */
        co.relay.tls_verify = rel->cr.tls_verify;
        co.relay.compression = rel->cr.compression;
        co.relay.log = engine_relay_log;
        co.relay.log_arg = e;
        co.relay.cancel = &e->cancel;
        co.relay.max_message = (size_t)e->cfg->sync.max_message_size;
        co.relay.trace = e->o.verbose > 0 ? e->o.verbose : 0;
        stats_job_phase(e->stats, rel_index(e, rel), STATS_PHASE_PROBING);
        if (caps_probe(j->st, rel->url, &co, &res, err, sizeof err) < 0) {
            if (j->interrupted || engine_stopping(e)) {
                j->interrupted = 1;
                caps_result_clear(&res);
                return SYNC_NIP77_UNKNOWN;
            }
            engine_log(e, "[SYNC] %s: capability check failed: %s", rel->url, err);
            stats_set_cap(e->stats, rel_index(e, rel), STATS_CAP_UNREACHABLE, STATS_CAP_FROM_PROBE,
                          err, (int64_t)time(NULL), NULL, NULL, 0);
        } else {
            engine_stats_cap(e, rel, &res);
            pthread_mutex_lock(&e->mu);
            rel->probed = 1;
            rel->force_probe = 0;
            if (res.verdict == CAPS_SUPPORTED) {
                rel->neg_known = SYNC_NIP77_WORKS;
            } else if (res.verdict == CAPS_UNSUPPORTED) {
                rel->neg_known = SYNC_NIP77_REFUSED;
                caps_result_fallback(&res, rel->neg_reason, sizeof rel->neg_reason);
            } else {
                rel->neg_known = SYNC_NIP77_UNREACHABLE;
                snprintf(rel->neg_reason, sizeof rel->neg_reason, "unreachable: %.200s",
                         res.reason);
            }
            if (res.nip11.present && res.nip11.raw != NULL) {
                rel->nip11_done = 1;
                rel_take_nip11(e, rel, res.nip11.raw, strlen(res.nip11.raw));
            }
            pthread_mutex_unlock(&e->mu);
        }
        caps_result_clear(&res);
    }
    pthread_mutex_lock(&e->mu);
    k = rel->neg_known;
    if (k == SYNC_NIP77_REFUSED || k == SYNC_NIP77_UNREACHABLE)
        set_error(reason, rlen, "%s", rel->neg_reason);
    if (k == SYNC_NIP77_UNREACHABLE)
        rel->neg_known = SYNC_NIP77_UNKNOWN; /* the next job tries again */
    pthread_mutex_unlock(&e->mu);
    return k;
}

/* NIP-11 for a relay caps did not ask (REQ only): max_limit sizes the pages, and so on. */
static void job_nip11(struct job *j)
{
    struct sync_relay *rel = j->rel;
    struct relay_opts ro = relay_opts_default();
    struct relay_nip11 *n = NULL;
    char err[RELAY_ERRLEN];
    int done;
    unsigned pt = j->e->cfg->sync.probe_timeout;

    pthread_mutex_lock(&j->e->mu);
    done = rel->nip11_done;
    rel->nip11_done = 1;
    pthread_mutex_unlock(&j->e->mu);
    if (done)
        return;
    ro.tls_verify = rel->cr.tls_verify;
    ro.log = engine_relay_log;
    ro.log_arg = j->e;
    ro.cancel = &j->e->cancel;
    if (relay_fetch_nip11(rel->url, &ro, (int)pt * 1000, &n, err, sizeof err) == 0) {
        pthread_mutex_lock(&j->e->mu);
        rel_take_limits(j->e, rel, n);
        pthread_mutex_unlock(&j->e->mu);
    }
    relay_nip11_free(n);
}

static void job_neg_refused(struct job *j, const char *reason)
{
    char err[CAPS_ERRLEN];

    pthread_mutex_lock(&j->e->mu);
    j->rel->neg_known = SYNC_NIP77_REFUSED;
    snprintf(j->rel->neg_reason, sizeof j->rel->neg_reason, "%s", reason);
    pthread_mutex_unlock(&j->e->mu);
    stats_set_cap(j->e->stats, rel_index(j->e, j->rel), STATS_CAP_UNSUPPORTED,
                  STATS_CAP_FROM_SESSION, reason, (int64_t)time(NULL), NULL, NULL, 0);
    if (j->st != NULL && !j->e->o.dry_run &&
        caps_mark_unsupported(j->st, j->rel->url, reason, (int64_t)time(NULL), err, sizeof err) < 0)
        engine_log(j->e, "[SYNC] %s: cannot update the capability cache: %s", j->rel->url, err);
}

static enum config_neg_mode job_neg_mode(struct job *j, char *why, size_t whylen)
{
    struct config_relay cr = j->rel->cr;
    int ov;
    enum config_neg_mode m;

    pthread_mutex_lock(&j->e->mu);
    ov = j->rel->override;
    pthread_mutex_unlock(&j->e->mu);
    if (ov >= 0)
        cr.negentropy = (enum config_negentropy)ov;
    m = config_relay_neg_mode(j->e->cfg, &cr);
    if (m == CONFIG_NEG_MODE_REQ_ONLY) {
        if (cr.negentropy == CONFIG_NEGENTROPY_OFF)
            set_error(why, whylen, "negentropy = off for this relay%s",
                      ov >= 0 ? " (override)" : "");
        else
            set_error(why, whylen, "use_negentropy = false");
    }
    return m;
}

/*
 * The relay's NIP-11 limits (once known) cap the ids per fetch: max_limit
 * the events a REQ returns, max_message_length the REQ itself.
 */
static void job_apply_limit(struct job *j)
{
    pthread_mutex_lock(&j->e->mu);
    j->max_limit = j->rel->max_limit;
    j->max_message = j->rel->max_message;
    pthread_mutex_unlock(&j->e->mu);
    if (j->max_limit > 0 && (uint64_t)j->max_limit < j->batch)
        j->batch = (size_t)j->max_limit;
    if (j->max_message > 0) {
        int64_t fit = (j->max_message - SYNC_FETCH_REQ_OVERHEAD) / SYNC_FETCH_ID_BYTES;
        if (fit < 1)
            fit = 1;
        if ((uint64_t)fit < j->batch)
            j->batch = (size_t)fit;
    }
}

/* Drops the fetch and upload state (before a REQ fallback). */
static void job_reset_transfers(struct job *j)
{
    fetch_reset(j);
    idq_free(&j->pending);
    idq_free(&j->deferred);
    j->no_defer = 0;
    idq_free(&j->upq);
    idset_clear(&j->up_inflight);
}

static void job_free(struct job *j)
{
    caps_guard_clear(&j->guard);
    job_ahead_clear(j);
    job_flush(j);
    job_reset_transfers(j);
    free(j->subs);
    idset_clear(&j->queued);
    idset_clear(&j->retried);
    idset_clear(&j->have);
    idset_clear(&j->need);
    filter_free(j->f);
    free(j->fkey);
}

/* A finished run becomes its filter's last in the stats model. */
static void engine_stats_run(struct sync_engine *e, struct sync_relay *rel,
                             const struct sync_run *run)
{
    struct stats_run s;

    memset(&s, 0, sizeof s);
    s.valid = 1;
    s.mode_neg = run->mode == SYNC_MODE_NEG;
    s.ok = run->ok;
    s.ended = run->started + run->duration_ms / 1000;
    s.duration_ms = run->duration_ms;
    s.rounds = run->rounds;
    s.bytes_sent = run->bytes_sent;
    s.bytes_received = run->bytes_received;
    s.wire_sent = run->wire_sent;
    s.wire_received = run->wire_received;
    s.est_req_bytes = run->est_req_bytes;
    s.have = run->have;
    s.need = run->need;
    s.fetched = run->fetched;
    s.stored = run->stored;
    s.invalid = run->invalid;
    s.uploaded = run->uploaded_ok;
    snprintf(s.fallback_reason, sizeof s.fallback_reason, "%s", run->fallback_reason);
    snprintf(s.error, sizeof s.error, "%s", run->error);
    s.auth = run->auth_end == SYNC_AUTH_END_NEEDED   ? STATS_AUTH_NEEDED
             : run->auth_end == SYNC_AUTH_END_FAILED ? STATS_AUTH_FAILED
                                                     : STATS_AUTH_NONE;
    stats_job_end(e->stats, rel_index(e, rel), run->filter, &s);
    if (run->stored > 0)
        stats_set_events_stored(
            e->stats, __atomic_add_fetch(&e->events_stored, run->stored, __ATOMIC_RELAXED));
}

/*
 * The job before anything is sent: what it syncs where, its settings, and
 * the connection's counters now (what it moves is counted from them). j is
 * zeroed.
 */
static void job_init(struct job *j, struct sync_engine *e, struct sync_relay *rel, struct relay *r,
                     struct store *st, struct event_keycache *kc, const struct config_filter *cf,
                     struct sync_run *run)
{
    memset(run, 0, sizeof *run);
    snprintf(run->relay, sizeof run->relay, "%s", rel->url);
    snprintf(run->filter, sizeof run->filter, "%s", cf->name);
    run->started = (int64_t)time(NULL);
    run->mode = SYNC_MODE_NEG;
    relay_get_counters(r, NULL, &j->c0);
    j->recv_base = j->c0.recv_msgs;
    stats_job_start(e->stats, rel_index(e, rel), cf->name);
    j->e = e;
    j->rel = rel;
    j->cf = cf;
    j->r = r;
    j->guard.log = engine_relay_log;
    j->guard.log_arg = e;
    j->st = st;
    j->kc = kc;
    j->run = run;
    j->timeout_ms = (int64_t)e->cfg->sync.neg_timeout * 1000;
    j->down = rel->cr.direction != CONFIG_DIRECTION_UP;
    j->up = rel->cr.direction != CONFIG_DIRECTION_DOWN;
    j->batch = e->cfg->sync.fetch_batch;
    j->max_limit = -1;
    j->max_message = -1;
    j->max_stored_at = -1;
    j->cm.max_at = -1;
    j->max_fetched_at = -1;
    j->neg_max_common_at = -1;
    j->f = config_filter_at(cf, run->started);
    j->fkey = cursor_key(cf);
}

/* The database and the filter's cursor (0 when the filter changed); -1 sets run->error. */
static int job_prepare(struct job *j)
{
    char err[SYNC_ERRLEN] = "";

    if (j->st == NULL) {
        set_error(j->run->error, sizeof j->run->error, "database not open");
        return -1;
    }
    if (sync_cursor_get(j->st, j->rel->url, j->cf->name, j->fkey, &j->cursor, err, sizeof err) <
        0) {
        set_error(j->run->error, sizeof j->run->error, "%s", err);
        return -1;
    }
    return 0;
}

/*
 * Negentropy did not work out (o): 1 to go on by REQ, or -1 when the job
 * ends here (run->error set): a store error, an interruption, a relay that
 * must speak NIP-77 (negentropy_fallback = false), or one that wants AUTH
 * (JOB_AUTH: no verdict on NIP-77, and REQ would be refused alike).
 */
static int job_neg_fallback(struct job *j, enum config_neg_mode mode, enum job_outcome o,
                            char *reason, size_t rlen)
{
    struct sync_run *run = j->run;

    if (o == JOB_AUTH) {
        set_error(run->error, sizeof run->error, "%s", j->fatal);
        job_auth_report(j);
        return -1;
    }
    if (o == JOB_FATAL) {
        set_error(run->error, sizeof run->error, "%s", j->interrupted ? "interrupted" : j->fatal);
        return -1;
    }
    if (mode == CONFIG_NEG_MODE_NEG_STRICT) {
        set_error(run->error, sizeof run->error, "%s: %s",
                  o == JOB_UNSUPPORTED ? "relay does not support NIP-77" : "negentropy failed",
                  reason);
        engine_log(j->e, "[SYNC] %s (filter %s): %s; not synced (negentropy_fallback = false)",
                   j->rel->url, j->cf->name, run->error);
        return -1;
    }
    if (o == JOB_FAILED) {
        char tmp[SYNC_ERRLEN];
        snprintf(tmp, sizeof tmp, "negentropy failed: %s", reason);
        snprintf(reason, rlen, "%s", tmp);
    }
    job_reset_transfers(j);
    return 1;
}

/*
 * The mode, and negentropy when it applies: 0 when negentropy finished, 1
 * when the job goes on by REQ (reason says why), -1 when it ended (run->error
 * set).
 */
static int job_run_neg(struct job *j, char *reason, size_t rlen)
{
    enum config_neg_mode mode = job_neg_mode(j, reason, rlen);
    enum job_outcome o;
    enum sync_nip77 k;

    if (mode == CONFIG_NEG_MODE_REQ_ONLY)
        return 1;
    k = job_neg_support(j, reason, rlen);
    if (j->interrupted) {
        set_error(j->run->error, sizeof j->run->error, "interrupted");
        return -1;
    }
    if (k == SYNC_NIP77_UNREACHABLE) {
        set_error(j->run->error, sizeof j->run->error, "%s", reason);
        return -1;
    }
    job_apply_limit(j);
    if (k == SYNC_NIP77_REFUSED) {
        o = JOB_UNSUPPORTED;
    } else {
        if (k == SYNC_NIP77_WORKS)
            job_neg_log_using(j);
        o = job_neg(j, reason, rlen);
        if (o == JOB_FATAL && j->auth_end)
            o = JOB_AUTH;
        /* A REQ of the tail or a fetch wanted AUTH, of a relay known to speak NIP-77: the same. */
        if (o == JOB_AUTH && k == SYNC_NIP77_WORKS)
            j->auth_on_neg = 1;
        if (o == JOB_UNSUPPORTED)
            job_neg_refused(j, reason);
    }
    return o == JOB_OK ? 0 : job_neg_fallback(j, mode, o, reason, rlen);
}

/* Negentropy finished: the local set for the filter now equals the relay's. */
static void job_neg_finish(struct job *j)
{
    struct sync_run *run = j->run;
    char err[SYNC_ERRLEN] = "";

    if (job_flush(j) < 0) {
        set_error(run->error, sizeof run->error, "%s", j->fatal);
        return;
    }
    if (j->down && j->missing == 0 && !j->e->o.dry_run) {
        int64_t newc =
            j->neg_max_common_at > j->max_fetched_at ? j->neg_max_common_at : j->max_fetched_at;
        if (newc > j->cursor &&
            store_cursor_set(j->st, j->rel->url, j->cf->name, j->fkey, newc, err, sizeof err) < 0) {
            set_error(run->error, sizeof run->error, "%s", err);
            return;
        }
    }
    if (j->missing > 0)
        set_error(run->error, sizeof run->error, "%llu events the relay reported were not sent",
                  (unsigned long long)j->missing);
    run->ok = 1;
}

/* REQ mode, paging from the cursor; reason: why not negentropy. */
static void job_run_req(struct job *j, const char *reason)
{
    struct sync_run *run = j->run;
    char note[SYNC_ERRLEN] = "";
    enum job_outcome o;

    job_nip11(j);
    job_apply_limit(j);
    run->mode = SYNC_MODE_REQ;
    snprintf(run->fallback_reason, sizeof run->fallback_reason, "%s", reason);
    engine_log(j->e, "[SYNC] Using REQ for %s (filter %s): %s", j->rel->url, j->cf->name, reason);
    o = req_job(j, note, sizeof note);
    if (o == JOB_FATAL && j->auth_end)
        o = JOB_AUTH;
    if (o != JOB_OK) {
        set_error(run->error, sizeof run->error, "%s",
                  j->interrupted ? "interrupted" : o != JOB_FAILED ? j->fatal : note);
        if (o == JOB_AUTH)
            job_auth_report(j);
        return;
    }
    if (j->up) {
        /*
         * Without negentropy there is no telling what the relay lacks: an
         * upload that was asked for did not happen, and the job says so.
         */
        set_error(run->error, sizeof run->error,
                  "not uploaded: direction %s needs negentropy to find what the relay lacks"
                  " (%.150s)",
                  j->down ? "both" : "up", reason);
        engine_log(j->e, "[SYNC] %s (filter %s): %s", j->rel->url, j->cf->name, run->error);
        return;
    }
    if (note[0] != '\0')
        set_error(run->error, sizeof run->error, "%s", note);
    run->ok = 1;
}

/* What a REQ from the cursor would have cost (sync-est.h). */
static uint64_t job_est_req_bytes(const struct job *j)
{
    char *fs = filter_to_string(j->f != NULL ? j->f : j->cf->filter);
    struct est_req in = {
        .ok = j->run->ok,
        .mode = j->run->mode,
        .moved = j->run->bytes_sent + j->run->bytes_received,
        .common = j->est_common,
        .have = j->est_have,
        .fetched = j->fetched_bytes,
        .filter_len = fs != NULL ? strlen(fs) : 2,
        .subid_len = SYNC_REQ_SUBID_LEN,
    };

    free(fs);
    return est_req_bytes(&in);
}

/* What the job moved on its connection (payload and wire), and est_req_bytes. */
static void job_account(struct job *j)
{
    struct sync_run *run = j->run;
    struct relay_counters c1;

    relay_get_counters(j->r, NULL, &c1);
    run->bytes_sent = c1.sent_payload - j->c0.sent_payload;
    run->bytes_received = c1.recv_payload - j->c0.recv_payload;
    run->wire_sent = c1.sent_wire - j->c0.sent_wire;
    run->wire_received = c1.recv_wire - j->c0.recv_wire;
    run->est_req_bytes = job_est_req_bytes(j);
}

/*
 * The job failed and the relay had closed a subscription of ours: the
 * backoff this refusal sets for the relay (started at t0), counted once per
 * relay run and said in the run's error.
 */
static void job_backoff(struct sync_engine *e, struct sync_relay *rel, struct sync_run *run,
                        int64_t t0)
{
    size_t n = strlen(run->error);

    pthread_mutex_lock(&e->mu);
    if (rel->not_before_ms <= t0) {
        rel->refusals++;
        rel->rng = rel->rng * 6364136223846793005ULL + 1442695040888963407ULL;
        rel->not_before_ms = net_now_ms() + relay_backoff_delay_ms(rel->refusals, rel->rng);
    }
    snprintf(run->error + n, sizeof run->error - n, "; backoff %.1f s",
             (double)(rel->not_before_ms - net_now_ms()) / 1000.0);
    pthread_mutex_unlock(&e->mu);
}

/* The run into the database and the stats model. */
static void job_record(struct sync_engine *e, struct sync_relay *rel, struct store *st,
                       const struct config_filter *cf, const struct sync_run *run)
{
    char err[SYNC_ERRLEN];

    if (st != NULL && !e->o.dry_run && sync_run_record(st, run, err, sizeof err) < 0)
        engine_log(e, "[SYNC] %s (filter %s): cannot record the run: %s", rel->url, cf->name, err);
    engine_stats_run(e, rel, run);
}

/*
 * One job of (relay, filter) on the connection r, start to end, into run:
 * negentropy or REQ, what it moved and would have cost, the backoff, the
 * record. 1 when it failed and the relay had closed a subscription of ours
 * (a refusal).
 */
int job_run(struct sync_engine *e, struct sync_relay *rel, struct relay *r, struct store *st,
            struct event_keycache *kc, const struct config_filter *cf, struct sync_run *run)
{
    struct job j = {0};
    char reason[SYNC_ERRLEN] = "";
    int64_t t0 = net_now_ms();
    int refused, rc;

    job_init(&j, e, rel, r, st, kc, cf, run);
    rc = job_prepare(&j);
    if (rc == 0)
        rc = job_run_neg(&j, reason, sizeof reason);
    if (rc == 1)
        job_run_req(&j, reason);
    else if (rc == 0)
        job_neg_finish(&j);
    job_flush(&j);
    job_account(&j);
    if (e->o.dry_run)
        dry_finish(&j);
    /* Wanting AUTH is no refusal: the next try is at the next interval (sync-auth.c). */
    run->auth_end = run->ok ? SYNC_AUTH_END_NONE : j.auth_end;
    refused = !run->ok && j.closed[0] != '\0' && !j.interrupted && !j.auth_end;
    job_progress(&j, 1);
    job_free(&j);
    run->duration_ms = net_now_ms() - t0;
    if (refused)
        job_backoff(e, rel, run, t0);
    job_record(e, rel, st, cf, run);
    return refused;
}
