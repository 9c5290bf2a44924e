/*
 * sync: the sync engine's public side (sync.h), its lifecycle and its
 * scheduler. sync_engine_new makes one struct sync_relay per relay and fills
 * the stats model from the database (saved settings, cached NIP-77
 * verdicts); sync_engine_start starts the verifier pool, the store writer,
 * the checkpointer and the workers. A worker (worker_main) takes the relay
 * due first, once both its turn and any backoff have come, opens one
 * connection and runs the relay's jobs, one per selected filter, in turn
 * (worker_run_relay); in continuous mode the relay is due again `interval`
 * later. Commands from any thread (sync now, re-probe, a negentropy
 * override, stop) change memory under e->mu and wake whoever acts on them:
 * none waits on the network or the database on the caller's thread. Also
 * here: the words of the progress line and a run's JSON.
 *
 * The parts, behind the private header sync-int.h:
 *
 *   sync-run.c     one job from start to end: the mode (config, override,
 *                  what is known of the relay's NIP-77 support), negentropy,
 *                  the fallback to REQ, what it moved and what a REQ would
 *                  have cost (sync-est.c), the backoff, the run record
 *   sync-neg.c     negentropy mode: time windows (sync-window.c), their
 *                  listings, the sessions, splits, capped sets, the tail
 *   sync-req.c     REQ mode: pages from the cursor, crowded seconds
 *   sync-fetch.c   fetching by id what negentropy found, uploads, routing
 *                  their replies
 *   sync-job.c     one job's connection: sending, the receive loop and its
 *                  verify look-ahead, taking in events, progress
 *   sync-auth.c    NIP-42 AUTH on a relay's request
 *   sync-dry.c     what a dry run counts instead of doing
 *   sync-share.c   what jobs of different relays share: id claims, tail
 *                  slices, window listings
 *   sync-writer.c  the store writer, the view of queued events, the
 *                  checkpointer
 *
 * Across them: a filter's `limit` plays no part (a sync keeps the filter's
 * whole set, so both modes converge on the same events; REQ pages carry
 * limits of their own). Every event is parsed, verified (id, signature),
 * checked against the filter (and, for an ids fetch, against what was
 * asked) and only then queued for the store writer (a dry run counts it
 * instead); a job that needs its
 * events stored (before releasing claims or moving a cursor) waits for it.
 * Cursors, run records and overrides live in tables of the store's schema,
 * read and written through store.h on the worker's one connection.
 */

#include "config.h"

#include "sync-int.h"

/* ---- small helpers ---------------------------------------------------------- */

const char *sync_mode_name(enum sync_mode m)
{
    return m == SYNC_MODE_NEG ? "negentropy" : "req";
}

const char *sync_phase_name(enum sync_phase p)
{
    switch (p) {
    case SYNC_PHASE_STARTING: return "starting";
    case SYNC_PHASE_RECONCILING: return "reconciling";
    case SYNC_PHASE_TAIL: return "fetching the newest";
    case SYNC_PHASE_FETCHING: return "fetching";
    case SYNC_PHASE_UPLOADING: return "uploading";
    case SYNC_PHASE_REQ: return "REQ";
    case SYNC_PHASE_DONE: return "done";
    }
    return "?";
}

size_t sync_progress_format(const struct sync_progress *p, char *buf, size_t len)
{
    int n;

    if (len == 0)
        return 0;
    if (p->total > 0)
        n = snprintf(buf, len, "%s %s: %s, round %llu, fetched %llu/%llu", p->relay, p->filter,
                     sync_phase_name(p->phase), (unsigned long long)p->rounds,
                     (unsigned long long)p->fetched, (unsigned long long)p->total);
    else
        n = snprintf(buf, len, "%s %s: %s, round %llu, fetched %llu", p->relay, p->filter,
                     sync_phase_name(p->phase), (unsigned long long)p->rounds,
                     (unsigned long long)p->fetched);
    if (n < 0) {
        buf[0] = '\0';
        return 0;
    }
    return (size_t)n < len ? (size_t)n : len - 1;
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

void engine_relay_log(void *arg, const char *url, const char *line)
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

/* A connection to the engine's database; a dry run's is read only and never upgrades it. */
static struct store *engine_store_open(struct sync_engine *e, char *err, size_t errlen)
{
    return e->o.dry_run ? store_open_unchanged(e->db_path, err, errlen)
                        : store_open(e->db_path, err, errlen);
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
        if ((w->st = engine_store_open(e, serr, sizeof serr)) == NULL)
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
            run.dry_run = e->o.dry_run;
            snprintf(run.error, sizeof run.error, "%s", err);
        } else {
            refused |= job_run(e, rel, r, w->st, w->kc, e->filters[i], &run);
        }
        if (e->o.on_run != NULL)
            e->o.on_run(e->o.arg, &run);
        free(run.fetch_ids); /* a dry run's (struct sync_run) */
        free(run.upload_ids);
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
            share_listings_prune(&e->share, 1); /* the next round lists afresh */
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
    rel->neg_known = SYNC_NIP77_UNKNOWN;
    rel->max_limit = -1;
    rel->max_message = -1;
    rel->rng = (uint64_t)net_now_ms() ^ ((uint64_t)e->nrelays << 32) ^ 0x9e3779b97f4a7c15ULL;
    return 0;
}

/* The stats model: every relay and filter, settings, and what the capability cache knows. */
static int engine_stats_new(struct sync_engine *e, struct store *st, char *err, size_t errlen)
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
        if (caps_cache_get(st, e->relays[i].url, &res, cerr, sizeof cerr) == 1) {
            engine_stats_cap(e, &e->relays[i], &res);
            if (res.nip11.raw != NULL) {
                struct relay_nip11 *n = relay_nip11_parse(res.nip11.raw, strlen(res.nip11.raw));
                if (n->present)
                    stats_set_limits(
                        e->stats, i,
                        n->limitation.max_message_length > 0 ? n->limitation.max_message_length : 0,
                        n->limitation.max_limit > 0 ? n->limitation.max_limit : 0);
                relay_nip11_free(n);
            }
        }
        caps_result_clear(&res);
    }
    stats_set_events_stored(e->stats, e->events_stored);
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
    int rc;

    e->o = *opts;
    e->cfg = opts->cfg;
    e->db_path = xstrdup(opts->db_path);
    pthread_mutex_init(&e->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&e->work_cv, &ca);
    pthread_cond_init(&e->idle_cv, &ca);
    pthread_cond_init(&e->ckpt_cv, &ca);
    pthread_mutex_init(&e->wq_mu, NULL);
    pthread_cond_init(&e->write_cv, &ca);
    pthread_cond_init(&e->written_cv, &ca);
    pthread_condattr_destroy(&ca);
    share_init(&e->share);
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
    /* Creates and migrates the database before any worker needs it (not for a dry run). */
    if ((st = engine_store_open(e, serr, sizeof serr)) == NULL) {
        set_error(err, errlen, "%s", serr);
        goto fail;
    }
    for (size_t i = 0; i < e->nrelays; i++) {
        enum config_negentropy v;
        if (sync_setting_get(st, e->relays[i].url, &v) == 0)
            e->relays[i].override = (int)v;
    }
    if (store_count(st, NULL, &e->events_stored, serr, sizeof serr) < 0)
        e->events_stored = 0; /* only the front ends' header reads it */
    rc = engine_stats_new(e, st, err, errlen);
    store_close(st);
    if (rc < 0)
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
    /* A dry run writes nothing: no store writer, no checkpointer. */
    if (!e->o.dry_run) {
        if (engine_thread(e, &e->writer_thread, &e->writer_running, writer_main, "store writer",
                          err, errlen) < 0 ||
            engine_thread(e, &e->ckpt_thread, &e->ckpt_running, ckpt_main, "checkpointer", err,
                          errlen) < 0)
            return -1;
    }
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
    rel->neg_known = SYNC_NIP77_UNKNOWN;
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
    share_stop(&e->share); /* jobs waiting for another's ids, tail or listing */
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
    if (e->settings_dirty && e->db_path != NULL && !e->o.dry_run) {
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
    share_free(&e->share);
    idset_clear(&e->wq_map);
    pthread_cond_destroy(&e->work_cv);
    pthread_cond_destroy(&e->idle_cv);
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

/* A JSON array of n ids in hex. */
static json_t *sync_ids_json(uint8_t (*ids)[32], uint64_t n)
{
    json_t *a = json_array();
    char hex[65];

    for (uint64_t i = 0; i < n; i++) {
        hex_encode(ids[i], 32, hex);
        json_array_append_new(a, json_string(hex));
    }
    return a;
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
    if (r->dry_run) {
        json_object_set_new(o, "dry_run", json_true());
        json_object_set_new(o, "would_fetch", json_integer((json_int_t)r->would_fetch));
        json_object_set_new(o, "would_upload", json_integer((json_int_t)r->would_upload));
        if (r->fetch_ids != NULL)
            json_object_set_new(o, "fetch_ids", sync_ids_json(r->fetch_ids, r->would_fetch));
        if (r->upload_ids != NULL)
            json_object_set_new(o, "upload_ids", sync_ids_json(r->upload_ids, r->would_upload));
    }
    s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    return s;
}
