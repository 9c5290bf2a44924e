/*
 * sync-writer: the engine's store writer. Jobs queue verified events
 * (job_queue_event); one thread commits every job's queued events in one
 * transaction at a time (writer_main) and tells the jobs what became of
 * them; the view of queued events (engine_pending) lets a job list what is
 * not stored yet; the checkpointer copies the WAL into the database after
 * commits and saves the settings the UI changed (ckpt_main).
 */

#include "config.h"

#include "sync-int.h"

#define KIND_DELETION 5

int pend_cmp(const void *a, const void *b)
{
    const struct pend_item *x = a, *y = b;

    if (x->created_at != y->created_at)
        return x->created_at < y->created_at ? -1 : 1;
    return memcmp(x->id, y->id, 32);
}

/*
 * Appends the verified events matching f that are not stored yet: queued
 * for the store writer, or in the transaction it is writing, with their
 * JSON's size when sizes is set. With a store read begun after this call,
 * they make the local view: every event verified before it. Sorts out,
 * drops duplicates (an event can be queued twice), and returns the queue's
 * sequence number at the time: the events queued from it on are not in out.
 */
uint64_t engine_pending(struct sync_engine *e, const struct filter *f, int sizes,
                        struct pend_list *out)
{
    uint64_t seq;
    size_t k = 0;

    pthread_mutex_lock(&e->wq_mu);
    seq = e->wq_seq;
    for (int busy = 0; busy < 2; busy++) {
        const struct pending_event *q = busy ? e->wq_busy : e->wq;
        size_t n = busy ? e->wq_busy_n : e->wq_n;
        for (size_t i = 0; i < n; i++) {
            const struct event *ev = q[i].ev;
            struct pend_item *p;
            if (!filter_match(f, ev))
                continue;
            if (out->n == out->cap) {
                out->cap = out->cap == 0 ? 256 : 2 * out->cap;
                out->v = xreallocarray(out->v, out->cap, sizeof *out->v);
            }
            p = &out->v[out->n++];
            p->created_at = ev->created_at;
            memcpy(p->id, ev->id, 32);
            p->json_len = sizes ? event_json_size(ev) : 0;
        }
    }
    pthread_mutex_unlock(&e->wq_mu);
    if (out->n > 1) {
        qsort(out->v, out->n, sizeof *out->v, pend_cmp);
        for (size_t i = 1; i < out->n; i++)
            if (pend_cmp(&out->v[k], &out->v[i]) != 0)
                out->v[++k] = out->v[i];
        out->n = k + 1;
    }
    return seq;
}

/*
 * The JSON (as the store will keep it) of a verified event still waiting
 * for the store writer, or NULL.
 */
char *engine_pending_json(struct sync_engine *e, const uint8_t id[32], size_t *len)
{
    const struct event *ev;
    char *json = NULL;

    pthread_mutex_lock(&e->wq_mu);
    if ((ev = idset_map_get(&e->wq_map, id)) != NULL)
        json = event_to_json(ev, len);
    pthread_mutex_unlock(&e->wq_mu);
    return json;
}

/* Whether a verified event with id waits for the store writer. */
int engine_is_pending(struct sync_engine *e, const uint8_t id[32])
{
    int pending;

    pthread_mutex_lock(&e->wq_mu);
    pending = idset_has(&e->wq_map, id);
    pthread_mutex_unlock(&e->wq_mu);
    return pending;
}

/*
 * Tests make the writer slow (opts.writer_hold_ms, half before and half
 * after each transaction), so that jobs reconcile while their events wait
 * for it, and while they are in the store but not yet out of wq_busy
 * (tests/sync-tail.sh).
 */
static void writer_hold(const struct sync_engine *e)
{
    long ms = e->o.writer_hold_ms / 2;
    struct timespec t = {ms / 1000, ms % 1000 * 1000000};

    if (ms > 0)
        nanosleep(&t, NULL);
}

/* After a commit: the checkpointer has work (ckpt_main). */
static void ckpt_signal(struct sync_engine *e)
{
    pthread_mutex_lock(&e->mu);
    e->ckpt_want++;
    pthread_cond_signal(&e->ckpt_cv);
    pthread_mutex_unlock(&e->mu);
}

/*
 * One transaction for every event in the engine's queue, whichever job
 * verified it; each outcome goes to its job's struct committed. The
 * writer's (st NULL: its store did not open, reason in e->store_err). -1
 * when the transaction failed (every job of the batch is then marked
 * failed).
 */
static int engine_commit(struct sync_engine *e, struct store *st)
{
    struct pending_event *q;
    struct store_result *res;
    struct event **evs;
    struct landed *landed;
    char err[STORE_ERRLEN];
    size_t n, nlanded = 0;
    int rc, any = 0;

    pthread_mutex_lock(&e->wq_mu);
    q = e->wq;
    n = e->wq_n;
    e->wq = NULL;
    e->wq_n = e->wq_cap = 0;
    /* Still part of the local view (engine_pending) until the outcomes are in. */
    e->wq_busy = q;
    e->wq_busy_n = n;
    pthread_mutex_unlock(&e->wq_mu);
    if (n == 0)
        return 0;
    evs = xreallocarray(NULL, n, sizeof *evs);
    res = xreallocarray(NULL, n, sizeof *res);
    landed = xreallocarray(NULL, n, sizeof *landed);
    for (size_t i = 0; i < n; i++)
        evs[i] = q[i].ev;
    writer_hold(e);
    if (st == NULL)
        rc = -1;
    else
        rc = store_insert_batch(st, evs, n, res, err, sizeof err) < 0 ? -1 : 0;
    writer_hold(e);

    pthread_mutex_lock(&e->wq_mu);
    if (rc < 0 && st != NULL)
        set_error(e->store_err, sizeof e->store_err, "store: %s", err);
    for (size_t i = 0; i < n; i++) {
        struct committed *c = &q[i].j->cm;
        const struct event *ev = evs[i];
        c->pending--;
        if (idset_map_get(&e->wq_map, ev->id) == ev)
            idset_del(&e->wq_map, ev->id);
        if (rc < 0) {
            c->failed = 1;
            continue;
        }
        switch (res[i].outcome) {
        case STORE_INSERTED:
        case STORE_REPLACED:
            c->stored++;
            /* A replacement removes an older version, a deletion what it names. */
            any |= res[i].outcome == STORE_REPLACED || ev->kind == KIND_DELETION;
            landed[nlanded++] = (struct landed){ev->created_at, q[i].seq, 0};
            break;
        case STORE_DUPLICATE: c->duplicates++; break;
        case STORE_REJECTED:
        case STORE_DELETED:
            c->rejected++;
            landed[nlanded++] = (struct landed){ev->created_at, q[i].seq, 1};
            break;
        }
        if ((int64_t)ev->created_at > c->max_at)
            c->max_at = (int64_t)ev->created_at;
    }
    e->wq_busy = NULL;
    e->wq_busy_n = 0;
    pthread_mutex_unlock(&e->wq_mu);
    if (any || nlanded > 0 || rc < 0) {
        share_store_changed(&e->share, landed, nlanded, any || rc < 0);
        ckpt_signal(e);
    }
    for (size_t i = 0; i < n; i++)
        event_free(evs[i]);
    free(landed);
    free(evs);
    free(res);
    free(q);
    return rc;
}

/*
 * The store writer: commits the engine's queue of verified events in one
 * transaction whenever it holds SYNC_STORE_BATCH events or a job asks for a
 * flush, from a store connection of its own; while it writes, the queue
 * fills again, so the faster the jobs, the larger its transactions. One
 * writer makes fewer, larger transactions than a batch per job (each writes
 * every index page it touches once, and the random-keyed ones are most of
 * them: about 2 pages per event at 1 000 events, 0.8 at 5 000), never waits
 * for another's lock, keeps one page cache warm, and the jobs go on reading
 * while it writes.
 */
void *writer_main(void *arg)
{
    struct sync_engine *e = arg;
    char err[STORE_ERRLEN];
    struct store *st;

    thread_name("negsync-writer");
    st = store_open(e->db_path, err, sizeof err);

    pthread_mutex_lock(&e->wq_mu);
    if (st == NULL)
        set_error(e->store_err, sizeof e->store_err, "store: %s", err);
    for (;;) {
        uint64_t ticket = e->flush_req;
        if (e->wq_n >= SYNC_STORE_BATCH || ticket != e->flush_done ||
            (e->writer_stop && e->wq_n > 0)) {
            if (e->wq_n > 0) {
                pthread_mutex_unlock(&e->wq_mu);
                engine_commit(e, st);
                pthread_mutex_lock(&e->wq_mu);
            }
            e->flush_done = ticket;
            pthread_cond_broadcast(&e->written_cv);
            continue;
        }
        if (e->writer_stop)
            break;
        pthread_cond_wait(&e->write_cv, &e->wq_mu);
    }
    pthread_mutex_unlock(&e->wq_mu);
    store_close(st);
    return NULL;
}

/*
 * Makes sure every event this job verified is stored (or its transaction
 * failed): asks the writer for a commit, unless none of ours is waiting,
 * and waits for it; then takes our outcomes into the run record. -1 sets
 * j->fatal.
 */
int job_flush(struct job *j)
{
    struct sync_engine *e = j->e;
    struct committed *c = &j->cm;
    int rc = 0;

    pthread_mutex_lock(&e->wq_mu);
    if (c->pending > 0) {
        ++e->flush_req;
        pthread_cond_signal(&e->write_cv);
        while (c->pending > 0)
            pthread_cond_wait(&e->written_cv, &e->wq_mu);
    }
    j->run->stored += c->stored;
    j->run->duplicates += c->duplicates;
    j->run->rejected += c->rejected;
    c->stored = c->duplicates = c->rejected = 0;
    if (c->max_at > j->max_stored_at)
        j->max_stored_at = c->max_at;
    c->max_at = -1;
    if (c->failed) {
        c->failed = 0;
        set_error(j->fatal, sizeof j->fatal, "%s", e->store_err);
        rc = -1;
    }
    pthread_mutex_unlock(&e->wq_mu);
    return rc;
}

/*
 * Queues a verified event of this job for the store writer, waking it at
 * SYNC_STORE_BATCH; at eight times that (the writer far behind) waits. Once
 * a transaction holding events of this job failed (a full disk, a read-only
 * file), there is no point downloading more: -1 with j->fatal set, and the
 * event freed.
 */
int job_queue_event(struct job *j, struct event *ev)
{
    struct sync_engine *e = j->e;

    if (e->o.dry_run)
        return dry_take_event(j, ev); /* counted, never stored */
    pthread_mutex_lock(&e->wq_mu);
    if (j->cm.failed) {
        set_error(j->fatal, sizeof j->fatal, "%s", e->store_err);
        pthread_mutex_unlock(&e->wq_mu);
        event_free(ev);
        return -1;
    }
    while (e->wq_n >= 8 * SYNC_STORE_BATCH)
        pthread_cond_wait(&e->written_cv, &e->wq_mu);
    if (e->wq_n == e->wq_cap) {
        e->wq_cap = e->wq_cap == 0 ? 256 : e->wq_cap * 2;
        e->wq = xreallocarray(e->wq, e->wq_cap, sizeof *e->wq);
    }
    e->wq[e->wq_n++] = (struct pending_event){ev, j, e->wq_seq++};
    idset_map_put(&e->wq_map, ev->id, ev);
    j->cm.pending++;
    if (e->wq_n == SYNC_STORE_BATCH)
        pthread_cond_signal(&e->write_cv);
    pthread_mutex_unlock(&e->wq_mu);
    return 0;
}

/*
 * The checkpointer: after the workers' commits, copies the WAL into the
 * database from a connection of its own (PASSIVE: it waits for no reader or
 * writer), so the copying and its syncs run beside the network and the
 * verifying instead of inside a worker's commit, and the last connection's
 * close finds little left to copy. Commits signalled while it works make one
 * more pass.
 */
void *ckpt_main(void *arg)
{
    struct sync_engine *e = arg;
    char err[STORE_ERRLEN];
    struct store *db;
    int fd;

    thread_name("negsync-ckpt");
    db = store_open(e->db_path, err, sizeof err);
    /*
     * SQLite syncs the database file only after a checkpoint that copied
     * the whole WAL; until then what the partial ones wrote waits in the
     * page cache for the last close's sync. Syncing it here, beside the
     * workers, leaves that close little to wait for.
     */
    fd = open(e->db_path, O_RDONLY | O_CLOEXEC);
    if (db == NULL)
        engine_log(e, "[SYNC] checkpointer: %s", err);
    /*
     * Until stopped and every commit signalled by then is copied: the last
     * ones here, while the engine winds down, rather than by its last close.
     */
    pthread_mutex_lock(&e->mu);
    for (;;) {
        uint64_t want = e->ckpt_want;
        if (e->settings_dirty) {
            engine_persist_settings(e, db);
            continue;
        }
        if (want == e->ckpt_done || db == NULL) {
            if (e->stopping)
                break;
            pthread_cond_wait(&e->ckpt_cv, &e->mu);
            continue;
        }
        pthread_mutex_unlock(&e->mu);
        store_checkpoint(db);
        if (fd >= 0)
            fdatasync(fd);
        pthread_mutex_lock(&e->mu);
        e->ckpt_done = want;
    }
    pthread_mutex_unlock(&e->mu);
    if (fd >= 0)
        close(fd);
    store_close(db);
    return NULL;
}

/* The relay's negentropy setting and its source, into the stats model. Under e->mu or before threads. */
void engine_stats_setting(struct sync_engine *e, struct sync_relay *rel)
{
    static const enum stats_neg_setting map[] = {
        [CONFIG_NEGENTROPY_AUTO] = STATS_NEG_AUTO,
        [CONFIG_NEGENTROPY_ON] = STATS_NEG_ON,
        [CONFIG_NEGENTROPY_OFF] = STATS_NEG_OFF,
    };

    if (rel->override >= 0)
        stats_set_negentropy(e->stats, rel_index(e, rel), map[rel->override],
                             STATS_NEG_FROM_OVERRIDE);
    else
        stats_set_negentropy(e->stats, rel_index(e, rel), map[rel->cr.negentropy],
                             STATS_NEG_FROM_CONFIG);
}

/*
 * Writes the overrides sync_engine_set_negentropy left in memory. Called
 * under e->mu, which it drops around the database work.
 */
void engine_persist_settings(struct sync_engine *e, struct store *db)
{
    char err[SYNC_ERRLEN];

    while (e->settings_dirty) {
        e->settings_dirty = 0;
        for (size_t i = 0; i < e->nrelays; i++) {
            struct sync_relay *rel = &e->relays[i];
            enum config_negentropy v = rel->setting_value;
            int rc;
            if (!rel->setting_dirty)
                continue;
            rel->setting_dirty = 0;
            pthread_mutex_unlock(&e->mu);
            rc = db != NULL ? store_setting_negentropy_set(db, rel->url, config_negentropy_name(v),
                                                           err, sizeof err)
                            : -1;
            if (rc < 0)
                engine_log(e, "[SYNC] %s: cannot save the negentropy setting: %s", rel->url,
                           db != NULL ? err : "no database connection");
            pthread_mutex_lock(&e->mu);
        }
    }
}
