/*
 * sync: the sync engine (see sync.h for the shape).
 *
 * A worker takes a relay off the schedule, opens one connection and runs the
 * relay's jobs (one per selected filter) in turn. A job:
 *
 *   1. decides the mode: the config (use_negentropy, negentropy_fallback, the
 *      relay's negentropy key, a persisted override) and what is known about
 *      the relay's NIP-77 support (job_neg_support: the one place that will
 *      ask the caps module);
 *   2. negentropy: cuts the filter's span into time windows (one up to the
 *      REQ cursor, then about SYNC_NEG_WINDOW local events each) and per
 *      window builds a storage from the local view's (created_at, id)
 *      listing: the store's, and the verified events still waiting for the
 *      store writer (engine_pending), shared with other relays' jobs
 *      reconciling the same window (struct shared_listing); NEG-OPEN,
 *      answers each NEG-MSG. What is newer than every local event (the
 *      tail) is fetched by a paged REQ instead, each part of it by one job,
 *      the others taking the older half of what is left rather than waiting
 *      (struct tail_slice, job_neg). Every id the relay has and we lack goes
 *      into a fetch queue that is drained by REQ {"ids":[...]} subscriptions,
 *      up to fetch_in_flight at once, on the same connection while later
 *      rounds continue: a single loop (job_recv) receives everything and
 *      routes it by subscription id. "blocked: too many query results" splits
 *      the time window in two; a failure mid-session retries once, then falls
 *      back to REQ when allowed;
 *   3. REQ: pages newest-first from the (relay, filter) cursor with `until`,
 *      re-asking the boundary second (inclusive until) so nothing on it is
 *      skipped; a page made only of one second that still fills the relay's
 *      cap is split by authors or kinds; the cursor moves after the last EOSE,
 *      and only to what was stored.
 *
 * A filter's `limit` plays no part: a sync keeps the filter's whole set, so
 * both modes converge on the same events (REQ pages carry limits of their
 * own). A relay ending a session itself (NEG-CLOSE) while we wait for its
 * reply is a mid-session failure; a relay closing our REQ (CLOSED
 * "rate-limited:", "auth-required:", "error:" ...) fails the job and makes
 * the relay's next run wait a growing backoff (worker_main).
 *
 * Every event is parsed, verified (id, signature), checked against the filter
 * (and, for an ids fetch, against what was asked) and only then stored, by
 * the engine's store writer, which commits every job's queued events in one
 * transaction at a time (writer_main); a job that needs its events stored
 * (before releasing claims or moving a cursor) waits for it.
 * The database is the store's; cursors, run records and overrides live in
 * tables the store's schema creates (req_cursors, sync_runs, relay_settings),
 * read and written through store.h on the worker's one connection (its
 * struct store). A thread of the engine's copies the WAL into the database
 * after the workers' commits and saves the settings the UI changed
 * (ckpt_main).
 */

#include "config.h"

#include "sync-int.h"

/* ---- small helpers ---------------------------------------------------------- */

const char *sync_mode_name(enum sync_mode m)
{
    return m == SYNC_MODE_NEG ? "negentropy" : "req";
}

size_t sync_progress_format(const struct sync_progress *p, char *buf, size_t len)
{
    int n;

    if (len == 0)
        return 0;
    if (p->total > 0)
        n = snprintf(buf, len, "%s %s: %s, round %llu, fetched %llu/%llu", p->relay, p->filter,
                     p->phase, (unsigned long long)p->rounds, (unsigned long long)p->fetched,
                     (unsigned long long)p->total);
    else
        n = snprintf(buf, len, "%s %s: %s, round %llu, fetched %llu", p->relay, p->filter, p->phase,
                     (unsigned long long)p->rounds, (unsigned long long)p->fetched);
    if (n < 0) {
        buf[0] = '\0';
        return 0;
    }
    return (size_t)n < len ? (size_t)n : len - 1;
}

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

/* The persisted override: 0 and *value, 1 when there is none, -1 on error. */
static int sync_setting_get(struct store *st, const char *relay, enum config_negentropy *value)
{
    char v[8], err[STORE_ERRLEN];
    int rc = store_setting_negentropy(st, relay, v, err, sizeof err);

    if (rc < 0)
        return -1;
    if (rc == 0)
        return 1;
    *value = strcmp(v, "on") == 0 ? CONFIG_NEGENTROPY_ON : CONFIG_NEGENTROPY_OFF;
    return 0;
}

void engine_log(struct sync_engine *e, const char *fmt, ...)
{
    char line[1024];
    va_list ap;

    if (e->o.log == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    e->o.log(e->o.arg, line);
}

static void engine_relay_log(void *arg, const char *url, const char *line)
{
    struct sync_engine *e = arg;

    if (e->o.verbose > 0)
        engine_log(e, "[RELAY] %s: %s", url, line);
}

int engine_stopping(struct sync_engine *e)
{
    int s;

    pthread_mutex_lock(&e->mu);
    s = e->stopping;
    pthread_mutex_unlock(&e->mu);
    return s;
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

/* The limits of a relay's NIP-11 document that size our messages (under e->mu). */
static void rel_take_limits(struct sync_relay *rel, const struct relay_nip11 *n)
{
    if (!n->present)
        return;
    if (n->limitation.max_limit > 0)
        rel->max_limit = n->limitation.max_limit;
    if (n->limitation.max_message_length > 0)
        rel->max_message = n->limitation.max_message_length;
}

static void rel_take_nip11(struct sync_relay *rel, const char *raw, size_t len)
{
    struct relay_nip11 *n = relay_nip11_parse(raw, len);

    rel_take_limits(rel, n);
    relay_nip11_free(n);
}

/*
 * What is known of the relay's NIP-77 support: 1 works, 0 refused (reason
 * set), -1 unknown (try NEG-OPEN and see), -2 unreachable (reason set). The
 * capability cache answers once per relay per engine (caps_probe: the cache
 * when fresh, else NIP-11 and a NEG-OPEN handshake); what a job learns later
 * is kept here and, for a refusal, written back to the cache.
 */
/* A capability verdict (probe or cache) into the stats model. */
static void engine_stats_cap(struct sync_engine *e, struct sync_relay *rel,
                             const struct caps_result *res)
{
    enum stats_cap c = res->verdict == CAPS_SUPPORTED     ? STATS_CAP_SUPPORTED
                       : res->verdict == CAPS_UNSUPPORTED ? STATS_CAP_UNSUPPORTED
                                                          : STATS_CAP_UNREACHABLE;

    stats_set_cap(e->stats, rel_index(e, rel), c,
                  res->cached ? STATS_CAP_FROM_CACHE : STATS_CAP_FROM_PROBE, res->reason,
                  res->checked_at, res->nip11.software, res->nip11.version, res->auth_challenge);
}

static int job_neg_support(struct job *j, char *reason, size_t rlen)
{
    struct sync_engine *e = j->e;
    struct sync_relay *rel = j->rel;
    int need, force, k;

    pthread_mutex_lock(&e->mu);
    need = !rel->probed || rel->force_probe;
    force = rel->force_probe;
    pthread_mutex_unlock(&e->mu);
    if (need && e->caps != NULL) {
        struct caps_opts co = caps_opts_default();
        struct caps_result res = {0};
        char err[CAPS_ERRLEN];
        unsigned pt = e->cfg->sync.probe_timeout;

        co.timeout_ms = (int)pt * 1000;
        co.recheck_days = e->cfg->sync.recheck_days;
        co.force = force;
        co.relay.tls_verify = rel->cr.tls_verify;
        co.relay.compression = rel->cr.compression;
        co.relay.log = engine_relay_log;
        co.relay.log_arg = e;
        co.relay.cancel = &e->cancel;
        co.relay.max_message = (size_t)e->cfg->sync.max_message_size;
        co.relay.trace = e->o.verbose > 0 ? e->o.verbose : 0;
        stats_job_phase(e->stats, rel_index(e, rel), STATS_PHASE_PROBING);
        if (caps_probe(e->caps, rel->url, &co, &res, err, sizeof err) < 0) {
            if (j->interrupted || engine_stopping(e)) {
                j->interrupted = 1;
                caps_result_clear(&res);
                return -1;
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
                rel->neg_known = 1;
            } else if (res.verdict == CAPS_UNSUPPORTED) {
                rel->neg_known = 0;
                caps_result_fallback(&res, rel->neg_reason, sizeof rel->neg_reason);
            } else {
                rel->neg_known = -2;
                snprintf(rel->neg_reason, sizeof rel->neg_reason, "unreachable: %.200s",
                         res.reason);
            }
            if (res.nip11.present && res.nip11.raw != NULL) {
                rel->nip11_done = 1;
                rel_take_nip11(rel, res.nip11.raw, strlen(res.nip11.raw));
            }
            pthread_mutex_unlock(&e->mu);
        }
        caps_result_clear(&res);
    }
    pthread_mutex_lock(&e->mu);
    k = rel->neg_known;
    if (k == 0 || k == -2)
        set_error(reason, rlen, "%s", rel->neg_reason);
    if (k == -2)
        rel->neg_known = -1; /* the next job tries again */
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
        rel_take_limits(rel, n);
        pthread_mutex_unlock(&j->e->mu);
    }
    relay_nip11_free(n);
}

static void job_neg_refused(struct job *j, const char *reason)
{
    char err[CAPS_ERRLEN];

    pthread_mutex_lock(&j->e->mu);
    j->rel->neg_known = 0;
    snprintf(j->rel->neg_reason, sizeof j->rel->neg_reason, "%s", reason);
    pthread_mutex_unlock(&j->e->mu);
    stats_set_cap(j->e->stats, rel_index(j->e, j->rel), STATS_CAP_UNSUPPORTED,
                  STATS_CAP_FROM_SESSION, reason, (int64_t)time(NULL), NULL, NULL, 0);
    if (j->e->caps != NULL && caps_mark_unsupported(j->e->caps, j->rel->url, reason,
                                                    (int64_t)time(NULL), err, sizeof err) < 0)
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

/* One job; 1 when it failed and the relay had closed a subscription of ours (a refusal). */
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
    stats_job_end(e->stats, rel_index(e, rel), run->filter, &s);
}

static int job_run(struct sync_engine *e, struct sync_relay *rel, struct relay *r, struct store *st,
                   struct event_keycache *kc, const struct config_filter *cf, struct sync_run *run)
{
    struct job j = {0};
    struct relay_counters c0, c1;
    char reason[SYNC_ERRLEN] = "", err[SYNC_ERRLEN] = "";
    enum config_neg_mode mode;
    enum job_outcome o = JOB_OK;
    int64_t t0 = net_now_ms();
    int use_req = 0, refused;

    memset(run, 0, sizeof *run);
    snprintf(run->relay, sizeof run->relay, "%s", rel->url);
    snprintf(run->filter, sizeof run->filter, "%s", cf->name);
    run->started = (int64_t)time(NULL);
    run->mode = SYNC_MODE_NEG;
    relay_get_counters(r, NULL, &c0);

    j.recv_base = c0.recv_msgs;
    j.c0 = c0;
    stats_job_start(e->stats, rel_index(e, rel), cf->name);
    j.e = e;
    j.rel = rel;
    j.cf = cf;
    j.r = r;
    j.guard.log = engine_relay_log;
    j.guard.log_arg = e;
    j.st = st;
    j.kc = kc;
    j.run = run;
    j.timeout_ms = (int64_t)e->cfg->sync.neg_timeout * 1000;
    j.down = rel->cr.direction != CONFIG_DIRECTION_UP;
    j.up = rel->cr.direction != CONFIG_DIRECTION_DOWN;
    j.batch = e->cfg->sync.fetch_batch;
    j.max_limit = -1;
    j.max_message = -1;
    j.max_stored_at = -1;
    j.cm.max_at = -1;
    j.max_fetched_at = -1;
    j.neg_max_common_at = -1;
    j.f = config_filter_at(cf, run->started);
    j.fkey = cursor_key(cf);

    if (st == NULL) {
        set_error(run->error, sizeof run->error, "database not open");
        goto done;
    }
    if (sync_cursor_get(st, rel->url, cf->name, j.fkey, &j.cursor, err, sizeof err) < 0) {
        set_error(run->error, sizeof run->error, "%s", err);
        goto done;
    }

    mode = job_neg_mode(&j, reason, sizeof reason);
    if (mode == CONFIG_NEG_MODE_REQ_ONLY) {
        use_req = 1;
    } else {
        int k = job_neg_support(&j, reason, sizeof reason);
        if (j.interrupted) {
            set_error(run->error, sizeof run->error, "interrupted");
            goto done;
        }
        if (k == -2) {
            set_error(run->error, sizeof run->error, "%s", reason);
            goto done;
        }
        job_apply_limit(&j);
        if (k == 0) {
            o = JOB_UNSUPPORTED;
        } else {
            if (k == 1)
                job_neg_log_using(&j);
            o = job_neg(&j, reason, sizeof reason);
            if (o == JOB_UNSUPPORTED)
                job_neg_refused(&j, reason);
        }
        if (o == JOB_FATAL) {
            set_error(run->error, sizeof run->error, "%s", j.interrupted ? "interrupted" : j.fatal);
            goto done;
        }
        if (o == JOB_UNSUPPORTED || o == JOB_FAILED) {
            if (mode == CONFIG_NEG_MODE_NEG_STRICT) {
                set_error(run->error, sizeof run->error, "%s: %s",
                          o == JOB_UNSUPPORTED ? "relay does not support NIP-77"
                                               : "negentropy failed",
                          reason);
                engine_log(e,
                           "[SYNC] %s (filter %s): %s; not synced (negentropy_fallback ="
                           " false)",
                           rel->url, cf->name, run->error);
                goto done;
            }
            use_req = 1;
            if (o == JOB_FAILED) {
                char tmp[SYNC_ERRLEN];
                snprintf(tmp, sizeof tmp, "negentropy failed: %s", reason);
                snprintf(reason, sizeof reason, "%s", tmp);
            }
            job_reset_transfers(&j);
        }
    }

    if (use_req) {
        char note[SYNC_ERRLEN] = "";
        job_nip11(&j);
        job_apply_limit(&j);
        run->mode = SYNC_MODE_REQ;
        snprintf(run->fallback_reason, sizeof run->fallback_reason, "%s", reason);
        engine_log(e, "[SYNC] Using REQ for %s (filter %s): %s", rel->url, cf->name, reason);
        o = req_job(&j, note, sizeof note);
        if (o != JOB_OK) {
            set_error(run->error, sizeof run->error, "%s",
                      j.interrupted    ? "interrupted"
                      : o == JOB_FATAL ? j.fatal
                                       : note);
            goto done;
        }
        if (j.up) {
            /*
             * Without negentropy there is no telling what the relay lacks:
             * an upload that was asked for did not happen, and the job says so.
             */
            set_error(run->error, sizeof run->error,
                      "not uploaded: direction %s needs negentropy to find what the relay"
                      " lacks (%.150s)",
                      j.down ? "both" : "up", reason);
            engine_log(e, "[SYNC] %s (filter %s): %s", rel->url, cf->name, run->error);
            goto done;
        }
        if (note[0] != '\0')
            set_error(run->error, sizeof run->error, "%s", note);
        run->ok = 1;
        goto done;
    }

    /* Negentropy finished: the local set for the filter now equals the relay's. */
    if (job_flush(&j) < 0) {
        set_error(run->error, sizeof run->error, "%s", j.fatal);
        goto done;
    }
    if (j.down && j.missing == 0) {
        int64_t newc =
            j.neg_max_common_at > j.max_fetched_at ? j.neg_max_common_at : j.max_fetched_at;
        if (newc > j.cursor &&
            store_cursor_set(st, rel->url, cf->name, j.fkey, newc, err, sizeof err) < 0) {
            set_error(run->error, sizeof run->error, "%s", err);
            goto done;
        }
    }
    if (j.missing > 0)
        set_error(run->error, sizeof run->error, "%llu events the relay reported were not sent",
                  (unsigned long long)j.missing);
    run->ok = 1;

done:
    job_flush(&j);
    relay_get_counters(r, NULL, &c1);
    run->bytes_sent = c1.sent_payload - c0.sent_payload;
    run->bytes_received = c1.recv_payload - c0.recv_payload;
    run->wire_sent = c1.sent_wire - c0.sent_wire;
    run->wire_received = c1.recv_wire - c0.recv_wire;
    if (!run->ok) {
        run->est_req_bytes = 0; /* nothing to compare a failed job with */
    } else if (run->mode == SYNC_MODE_REQ) {
        run->est_req_bytes = run->bytes_sent + run->bytes_received;
    } else {
        /* The events (common and fetched), one REQ and its EOSE. */
        char *fs = filter_to_string(j.f != NULL ? j.f : cf->filter);
        uint64_t est = j.est_common > j.est_have ? j.est_common - j.est_have : 0;
        est += j.fetched_bytes;
        est += 11 + SYNC_REQ_SUBID_LEN + (fs != NULL ? strlen(fs) : 2);
        est += 11 + SYNC_REQ_SUBID_LEN;
        free(fs);
        run->est_req_bytes = est;
    }
    refused = !run->ok && j.closed[0] != '\0' && !j.interrupted;
    job_progress(&j, 1);
    job_free(&j);
    run->duration_ms = net_now_ms() - t0;
    if (refused) {
        /* The backoff this refusal sets for the relay: counted, and said, per relay run. */
        pthread_mutex_lock(&e->mu);
        if (rel->not_before_ms <= t0) {
            rel->refusals++;
            rel->rng = rel->rng * 6364136223846793005ULL + 1442695040888963407ULL;
            rel->not_before_ms = net_now_ms() + relay_backoff_delay_ms(rel->refusals, rel->rng);
        }
        {
            size_t n = strlen(run->error);
            snprintf(run->error + n, sizeof run->error - n, "; backoff %.1f s",
                     (double)(rel->not_before_ms - net_now_ms()) / 1000.0);
        }
        pthread_mutex_unlock(&e->mu);
    }
    if (st != NULL && sync_run_record(st, run, err, sizeof err) < 0)
        engine_log(e, "[SYNC] %s (filter %s): cannot record the run: %s", rel->url, cf->name, err);
    engine_stats_run(e, rel, run);
    return refused;
}

/* ---- workers ---------------------------------------------------------------- */

struct worker {
    struct sync_engine *e;
    struct store *st;
    struct event_keycache *kc;
};

/*
 * When the relay runs next (its turn or its backoff, whichever is later),
 * into the stats model; a relay due now shows as queued. Under e->mu.
 */
static void engine_stats_schedule(struct sync_engine *e, struct sync_relay *rel)
{
    int64_t due = rel->due_ms;
    size_t i = rel_index(e, rel);

    if (due >= 0 && rel->not_before_ms > due)
        due = rel->not_before_ms;
    stats_set_schedule(e->stats, i, due, rel->refusals);
    if (!rel->running && due >= 0 && due <= net_now_ms())
        stats_job_phase(e->stats, i, STATS_PHASE_QUEUED);
}

/* All of one relay's jobs, on one connection. */
static void worker_run_relay(struct worker *w, struct sync_relay *rel)
{
    struct sync_engine *e = w->e;
    struct relay_opts ro = relay_opts_default();
    struct relay *r;
    char err[RELAY_ERRLEN];
    int refused = 0;

    ro.tls_verify = rel->cr.tls_verify;
    ro.compression = rel->cr.compression;
    ro.connect_timeout_ms = (int)e->cfg->sync.neg_timeout * 1000;
    ro.log = engine_relay_log;
    ro.log_arg = e;
    ro.cancel = &e->cancel;
    ro.max_message = (size_t)e->cfg->sync.max_message_size;
    ro.trace = e->o.verbose > 0 ? e->o.verbose : 0; /* -v: every message's type and size */
    r = relay_new(rel->url, &ro, err, sizeof err);

    if (w->st == NULL) {
        char serr[STORE_ERRLEN];
        if ((w->st = store_open(e->db_path, serr, sizeof serr)) == NULL)
            engine_log(e, "[SYNC] %s", serr);
    }
    if (w->kc == NULL)
        w->kc = event_keycache_new();

    pthread_mutex_lock(&e->mu);
    rel->conn = r;
    pthread_mutex_unlock(&e->mu);
    for (size_t i = 0; i < e->nfilters; i++) {
        struct sync_run run;

        if (engine_stopping(e))
            break;
        if (r == NULL) {
            memset(&run, 0, sizeof run);
            snprintf(run.relay, sizeof run.relay, "%s", rel->url);
            snprintf(run.filter, sizeof run.filter, "%s", e->filters[i]->name);
            run.started = (int64_t)time(NULL);
            run.mode = SYNC_MODE_REQ;
            snprintf(run.error, sizeof run.error, "%s", err);
        } else {
            refused |= job_run(e, rel, r, w->st, w->kc, e->filters[i], &run);
        }
        if (e->o.on_run != NULL)
            e->o.on_run(e->o.arg, &run);
    }
    pthread_mutex_lock(&e->mu);
    rel->conn = NULL;
    if (!refused) {
        rel->refusals = 0;
        rel->not_before_ms = 0;
    }
    pthread_mutex_unlock(&e->mu);
    if (r != NULL) {
        relay_close(r);
        relay_free(r);
    }
}

void abs_deadline(struct timespec *ts, int64_t ms_from_now)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms_from_now / 1000;
    ts->tv_nsec += (long)(ms_from_now % 1000) * 1000000;
    if (ts->tv_nsec >= 1000000000) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000;
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct sync_engine *e = w->e;

    thread_name("negsync-worker");
    pthread_mutex_lock(&e->mu);
    while (!e->stopping) {
        int64_t now = net_now_ms(), next = -1;
        struct sync_relay *pick = NULL;

        for (size_t i = 0; i < e->nrelays; i++) {
            struct sync_relay *rel = &e->relays[i];
            int64_t due;
            if (rel->running || rel->due_ms < 0)
                continue;
            /* A relay backing off runs when both its turn and its backoff have come. */
            due = rel->due_ms > rel->not_before_ms ? rel->due_ms : rel->not_before_ms;
            if (due <= now && (pick == NULL || rel->due_ms < pick->due_ms))
                pick = rel;
            else if (due > now && (next < 0 || due < next))
                next = due;
        }
        if (pick == NULL) {
            if (e->nrunning == 0)
                pthread_cond_broadcast(&e->idle_cv);
            if (next >= 0) {
                struct timespec ts;
                abs_deadline(&ts, next - now);
                pthread_cond_timedwait(&e->work_cv, &e->mu, &ts);
            } else {
                pthread_cond_wait(&e->work_cv, &e->mu);
            }
            continue;
        }
        pick->running = 1;
        pick->due_ms = -1;
        e->nrunning++;
        stats_set_workers_busy(e->stats, (unsigned)e->nrunning);
        stats_set_schedule(e->stats, rel_index(e, pick), -1, pick->refusals);
        pthread_mutex_unlock(&e->mu);

        worker_run_relay(w, pick);

        pthread_mutex_lock(&e->mu);
        pick->running = 0;
        if (--e->nrunning == 0)
            engine_listings_prune(e, 1); /* the next round lists afresh */
        if (e->o.continuous && pick->due_ms < 0 && !e->stopping)
            pick->due_ms = net_now_ms() + (int64_t)e->cfg->sync.interval * 1000;
        stats_set_workers_busy(e->stats, (unsigned)e->nrunning);
        engine_stats_schedule(e, pick);
        pthread_cond_broadcast(&e->work_cv);
        pthread_cond_broadcast(&e->idle_cv);
    }
    pthread_cond_broadcast(&e->idle_cv);
    pthread_mutex_unlock(&e->mu);
    store_close(w->st);
    event_keycache_free(w->kc);
    free(w);
    return NULL;
}

/* ---- the engine's API -------------------------------------------------------- */

static struct sync_relay *engine_find(struct sync_engine *e, const char *url)
{
    char err[CONFIG_ERRLEN];
    char *n = config_url_normalize(url, err, sizeof err);
    struct sync_relay *found = NULL;

    if (n == NULL)
        return NULL;
    for (size_t i = 0; i < e->nrelays; i++)
        if (strcmp(e->relays[i].url, n) == 0)
            found = &e->relays[i];
    free(n);
    return found;
}

static int engine_add_relay(struct sync_engine *e, const char *url, char *err, size_t errlen)
{
    char cerr[CONFIG_ERRLEN];
    char *n = config_url_normalize(url, cerr, sizeof cerr);
    const struct config_relay *cr;
    struct sync_relay *rel;

    if (n == NULL) {
        set_error(err, errlen, "%s: %s", url, cerr);
        return -1;
    }
    for (size_t i = 0; i < e->nrelays; i++) {
        if (strcmp(e->relays[i].url, n) == 0) {
            free(n);
            return 0;
        }
    }
    e->relays = xreallocarray(e->relays, e->nrelays + 1, sizeof *e->relays);
    rel = &e->relays[e->nrelays++];
    memset(rel, 0, sizeof *rel);
    rel->url = n;
    if ((cr = config_find_relay(e->cfg, n)) != NULL) {
        rel->cr = *cr;
    } else {
        rel->cr.negentropy = CONFIG_NEGENTROPY_AUTO;
        rel->cr.direction = e->cfg->sync.direction;
        rel->cr.tls_verify = 1;
        rel->cr.compression = 1;
        rel->cr.enabled = 1;
    }
    rel->cr.url = rel->url;
    rel->override = -1;
    rel->due_ms = -1;
    rel->neg_known = -1;
    rel->max_limit = -1;
    rel->max_message = -1;
    rel->rng = (uint64_t)net_now_ms() ^ ((uint64_t)e->nrelays << 32) ^ 0x9e3779b97f4a7c15ULL;
    return 0;
}

/* The stats model: every relay and filter, settings, and what the capability cache knows. */
static int engine_stats_new(struct sync_engine *e, char *err, size_t errlen)
{
    const char **urls = xreallocarray(NULL, e->nrelays, sizeof *urls);
    const char **names = xreallocarray(NULL, e->nfilters, sizeof *names);

    for (size_t i = 0; i < e->nrelays; i++)
        urls[i] = e->relays[i].url;
    for (size_t i = 0; i < e->nfilters; i++)
        names[i] = e->filters[i]->name;
    e->stats = stats_new(urls, e->nrelays, names, e->nfilters, e->cfg->sync.workers, err, errlen);
    free(urls);
    free(names);
    if (e->stats == NULL)
        return -1;
    for (size_t i = 0; i < e->nrelays; i++) {
        struct caps_result res = {0};
        char cerr[CAPS_ERRLEN];
        stats_set_enabled(e->stats, i, e->relays[i].cr.enabled);
        engine_stats_setting(e, &e->relays[i]);
        if (caps_cache_get(e->caps, e->relays[i].url, &res, cerr, sizeof cerr) == 1)
            engine_stats_cap(e, &e->relays[i], &res);
        caps_result_clear(&res);
    }
    return 0;
}

struct stats *sync_engine_stats(struct sync_engine *e)
{
    return e->stats;
}

uint64_t sync_engine_snapshot(struct sync_engine *e, struct stats_snapshot *out)
{
    stats_snapshot(e->stats, out);
    return out->generation;
}

int sync_engine_notify_fd(struct sync_engine *e)
{
    return stats_notify_fd(e->stats);
}

struct sync_engine *sync_engine_new(const struct sync_engine_opts *opts, char *err, size_t errlen)
{
    struct sync_engine *e = xcalloc(1, sizeof *e);
    pthread_condattr_t ca;
    char serr[STORE_ERRLEN];
    struct store *st;

    e->o = *opts;
    e->cfg = opts->cfg;
    e->db_path = xstrdup(opts->db_path);
    pthread_mutex_init(&e->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&e->work_cv, &ca);
    pthread_cond_init(&e->idle_cv, &ca);
    pthread_cond_init(&e->claim_cv, &ca);
    pthread_cond_init(&e->listing_cv, &ca);
    pthread_cond_init(&e->ckpt_cv, &ca);
    pthread_mutex_init(&e->wq_mu, NULL);
    pthread_cond_init(&e->write_cv, &ca);
    pthread_cond_init(&e->written_cv, &ca);
    pthread_condattr_destroy(&ca);
    e->o.relays = NULL;
    e->o.filters = NULL;

    if (opts->nrelays > 0) {
        for (size_t i = 0; i < opts->nrelays; i++)
            if (engine_add_relay(e, opts->relays[i], err, errlen) < 0)
                goto fail;
    } else {
        for (size_t i = 0; i < e->cfg->nrelays; i++)
            if (e->cfg->relays[i].enabled &&
                engine_add_relay(e, e->cfg->relays[i].url, err, errlen) < 0)
                goto fail;
    }
    if (e->nrelays == 0) {
        set_error(err, errlen, "no relays to sync (add a [relay URL] section or use --relay)");
        goto fail;
    }
    if (opts->nfilters > 0) {
        for (size_t i = 0; i < opts->nfilters; i++) {
            const struct config_filter *cf = config_find_filter(e->cfg, opts->filters[i]);
            if (cf == NULL) {
                set_error(err, errlen, "no filter named '%s' in the configuration",
                          opts->filters[i]);
                goto fail;
            }
            e->filters = xreallocarray(e->filters, e->nfilters + 1, sizeof *e->filters);
            e->filters[e->nfilters++] = cf;
        }
    } else {
        for (size_t i = 0; i < e->cfg->nfilters; i++) {
            e->filters = xreallocarray(e->filters, e->nfilters + 1, sizeof *e->filters);
            e->filters[e->nfilters++] = &e->cfg->filters[i];
        }
    }
    if (e->nfilters == 0) {
        set_error(err, errlen, "no filters to sync (add a [filter NAME] section)");
        goto fail;
    }
    /* Creates and migrates the database before any worker needs it. */
    if ((st = store_open(e->db_path, serr, sizeof serr)) == NULL) {
        set_error(err, errlen, "%s", serr);
        goto fail;
    }
    for (size_t i = 0; i < e->nrelays; i++) {
        enum config_negentropy v;
        if (sync_setting_get(st, e->relays[i].url, &v) == 0)
            e->relays[i].override = (int)v;
    }
    store_close(st);
    if ((e->caps = caps_cache_open(e->db_path, err, errlen)) == NULL)
        goto fail;
    if (engine_stats_new(e, err, errlen) < 0)
        goto fail;
    return e;
fail:
    sync_engine_free(e);
    return NULL;
}

/* Starts one of the engine's own threads unless it runs already. */
static int engine_thread(struct sync_engine *e, pthread_t *t, int *running, void *(*fn)(void *),
                         const char *what, char *err, size_t errlen)
{
    int rc;

    if (*running)
        return 0;
    if ((rc = pthread_create(t, NULL, fn, e)) != 0) {
        set_error(err, errlen, "cannot start the %s: %s", what, strerror(rc));
        return -1;
    }
    *running = 1;
    return 0;
}

int sync_engine_start(struct sync_engine *e, char *err, size_t errlen)
{
    size_t n = e->cfg->sync.workers;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);

    /* One verifier per core: a lone busy job then uses them all. */
    if (e->vpool == NULL &&
        (e->vpool = vpool_new(cpus < 1                    ? 1
                              : cpus > SYNC_MAX_VERIFIERS ? SYNC_MAX_VERIFIERS
                                                          : (unsigned)cpus)) == NULL) {
        set_error(err, errlen, "cannot start the event verifiers");
        return -1;
    }
    if (engine_thread(e, &e->writer_thread, &e->writer_running, writer_main, "store writer", err,
                      errlen) < 0 ||
        engine_thread(e, &e->ckpt_thread, &e->ckpt_running, ckpt_main, "checkpointer", err,
                      errlen) < 0)
        return -1;
    e->threads = xcalloc(n, sizeof *e->threads);
    for (size_t i = 0; i < n; i++) {
        struct worker *w = xcalloc(1, sizeof *w);
        int rc;

        w->e = e;
        if ((rc = pthread_create(&e->threads[i], NULL, worker_main, w)) != 0) {
            free(w);
            set_error(err, errlen, "cannot start a worker: %s", strerror(rc));
            return -1;
        }
        e->nthreads++;
    }
    return 0;
}

void sync_engine_sync_all(struct sync_engine *e)
{
    int64_t now = net_now_ms();

    pthread_mutex_lock(&e->mu);
    for (size_t i = 0; i < e->nrelays; i++) {
        e->relays[i].due_ms = now;
        engine_stats_schedule(e, &e->relays[i]);
    }
    pthread_cond_broadcast(&e->work_cv);
    pthread_mutex_unlock(&e->mu);
}

int sync_engine_sync_relay(struct sync_engine *e, const char *url)
{
    struct sync_relay *rel = engine_find(e, url);

    if (rel == NULL)
        return -1;
    pthread_mutex_lock(&e->mu);
    rel->due_ms = net_now_ms();
    engine_stats_schedule(e, rel);
    pthread_cond_broadcast(&e->work_cv);
    pthread_mutex_unlock(&e->mu);
    return 0;
}

int sync_engine_reprobe(struct sync_engine *e, const char *url)
{
    struct sync_relay *rel = engine_find(e, url);

    if (rel == NULL)
        return -1;
    pthread_mutex_lock(&e->mu);
    rel->neg_known = -1;
    rel->neg_reason[0] = '\0';
    rel->force_probe = 1;
    pthread_mutex_unlock(&e->mu);
    return sync_engine_sync_relay(e, url);
}

int sync_engine_set_negentropy(struct sync_engine *e, const char *url, enum config_negentropy value,
                               char *err, size_t errlen)
{
    struct sync_relay *rel = engine_find(e, url);

    if (rel == NULL) {
        set_error(err, errlen, "%s: not a relay this engine syncs", url);
        return -1;
    }
    /*
     * Memory now; the database from the checkpointer's connection, at once
     * (or, before sync_engine_start, from sync_engine_free): a key press in
     * the TUI never waits on a writer's commit.
     */
    pthread_mutex_lock(&e->mu);
    rel->override = value == CONFIG_NEGENTROPY_AUTO ? -1 : (int)value;
    rel->setting_value = value;
    rel->setting_dirty = 1;
    e->settings_dirty = 1;
    engine_stats_setting(e, rel);
    pthread_cond_broadcast(&e->ckpt_cv);
    pthread_mutex_unlock(&e->mu);
    return 0;
}

void sync_engine_stop(struct sync_engine *e)
{
    pthread_mutex_lock(&e->mu);
    e->stopping = 1;
    atomic_store(&e->cancel, 1);
    pthread_cond_broadcast(&e->claim_cv); /* jobs waiting for another's tail */
    pthread_cond_broadcast(&e->listing_cv);
    pthread_cond_broadcast(&e->ckpt_cv);
    for (size_t i = 0; i < e->nrelays; i++)
        if (e->relays[i].conn != NULL)
            relay_interrupt(e->relays[i].conn);
    pthread_cond_broadcast(&e->work_cv);
    pthread_cond_broadcast(&e->idle_cv);
    pthread_mutex_unlock(&e->mu);
}

static int engine_idle(struct sync_engine *e)
{
    int64_t now = net_now_ms();

    if (e->nrunning > 0)
        return 0;
    if (e->stopping)
        return 1;
    for (size_t i = 0; i < e->nrelays; i++)
        if (e->relays[i].due_ms >= 0 && e->relays[i].due_ms <= now)
            return 0;
    return 1;
}

int sync_engine_wait_idle(struct sync_engine *e, int timeout_ms)
{
    struct timespec ts;
    int idle;

    if (timeout_ms >= 0)
        abs_deadline(&ts, timeout_ms);
    pthread_mutex_lock(&e->mu);
    while (!(idle = engine_idle(e))) {
        if (timeout_ms < 0)
            pthread_cond_wait(&e->idle_cv, &e->mu);
        else if (pthread_cond_timedwait(&e->idle_cv, &e->mu, &ts) == ETIMEDOUT)
            break;
    }
    idle = engine_idle(e);
    pthread_mutex_unlock(&e->mu);
    return idle;
}

void sync_engine_free(struct sync_engine *e)
{
    if (e == NULL)
        return;
    sync_engine_stop(e);
    for (size_t i = 0; i < e->nthreads; i++)
        pthread_join(e->threads[i], NULL);
    free(e->threads);
    if (e->writer_running) {
        /* The workers are gone, each having flushed: what is left is committed, then it ends. */
        pthread_mutex_lock(&e->wq_mu);
        e->writer_stop = 1;
        pthread_cond_signal(&e->write_cv);
        pthread_mutex_unlock(&e->wq_mu);
        pthread_join(e->writer_thread, NULL);
    }
    if (e->ckpt_running)
        pthread_join(e->ckpt_thread, NULL);
    if (e->settings_dirty && e->db_path != NULL) {
        /* Set before the engine started, or after its checkpointer ended. */
        char err[STORE_ERRLEN];
        struct store *db = store_open(e->db_path, err, sizeof err);
        if (db == NULL)
            engine_log(e, "[SYNC] cannot save the negentropy settings: %s", err);
        pthread_mutex_lock(&e->mu);
        engine_persist_settings(e, db);
        pthread_mutex_unlock(&e->mu);
        store_close(db);
    }
    stats_free(e->stats);
    vpool_free(e->vpool);
    for (size_t i = 0; i < e->nrelays; i++)
        free(e->relays[i].url);
    free(e->relays);
    free(e->filters);
    idset_clear(&e->claims);
    idset_clear(&e->wq_map);
    while (e->slices != NULL) {
        struct tail_slice *s = e->slices;
        e->slices = s->next;
        free(s);
    }
    engine_listings_prune(e, 1);
    caps_cache_close(e->caps);
    pthread_cond_destroy(&e->work_cv);
    pthread_cond_destroy(&e->idle_cv);
    pthread_cond_destroy(&e->claim_cv);
    pthread_cond_destroy(&e->listing_cv);
    pthread_cond_destroy(&e->ckpt_cv);
    pthread_mutex_destroy(&e->wq_mu);
    pthread_cond_destroy(&e->write_cv);
    pthread_cond_destroy(&e->written_cv);
    for (size_t i = 0; i < e->wq_n; i++) /* none: every job flushes before it ends */
        event_free(e->wq[i].ev);
    free(e->wq);
    pthread_mutex_destroy(&e->mu);
    free(e->db_path);
    free(e);
}

char *sync_run_to_json(const struct sync_run *r)
{
    json_t *o = json_object();
    char *s;

#define NUM(k, v) json_object_set_new(o, k, json_integer((json_int_t)(v)))
    json_object_set_new(o, "relay", json_string(r->relay));
    json_object_set_new(o, "filter", json_string(r->filter));
    json_object_set_new(o, "mode", json_string(sync_mode_name(r->mode)));
    json_object_set_new(o, "fallback_reason",
                        r->fallback_reason[0] != '\0' ? json_string(r->fallback_reason)
                                                      : json_null());
    NUM("rounds", r->rounds);
    NUM("bytes_sent", r->bytes_sent);
    NUM("bytes_received", r->bytes_received);
    NUM("wire_sent", r->wire_sent);
    NUM("wire_received", r->wire_received);
    NUM("est_req_bytes", r->est_req_bytes);
    NUM("have", r->have);
    NUM("need", r->need);
    NUM("fetched", r->fetched);
    NUM("stored", r->stored);
    NUM("duplicates", r->duplicates);
    NUM("rejected", r->rejected);
    NUM("invalid", r->invalid);
    NUM("uploaded", r->uploaded_ok);
    NUM("upload_rejected", r->uploaded_rejected);
    {
        json_t *a = json_array();
        for (size_t i = 0; i < r->n_upload_errors && i < SYNC_UPLOAD_ERRORS; i++)
            json_array_append_new(a, json_pack("{s:s, s:s}", "id", r->upload_errors[i].id, "reason",
                                               r->upload_errors[i].reason));
        json_object_set_new(o, "upload_errors", a);
    }
    NUM("splits", r->splits);
    NUM("neg_cap", r->neg_cap);
    NUM("duration_ms", r->duration_ms);
#undef NUM
    json_object_set_new(o, "result", json_string(r->ok ? "ok" : "error"));
    json_object_set_new(o, "error", r->error[0] != '\0' ? json_string(r->error) : json_null());
    s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    return s;
}
