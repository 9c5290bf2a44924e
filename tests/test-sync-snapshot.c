/*
 * test-sync-snapshot: the engine's live snapshot as a front end pulls it
 * (sync_engine_snapshot, sync_engine_notify_fd), fed by a fake job: a
 * struct job with no connection behind it reports progress the way a
 * running job does (job_progress, sync-int.h). Its counters appear in the
 * snapshot of its relay only, the generation moves with them and only with
 * a change, a job reports at most every SYNC_PROGRESS_MS, and a burst of
 * reports wakes the notify descriptor once. tests/test-stats.c checks the
 * model itself; this checks the engine's side of the seam.
 */
#include "config.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sync-int.h"
#include "testutil.h"

static int readable(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

static unsigned progress_calls;

static void on_progress(void *arg, const struct sync_progress *p)
{
    (void)arg;
    (void)p;
    progress_calls++;
}

/* One report, as job_recv makes it once SYNC_PROGRESS_MS passed since the last. */
static void report(struct job *j)
{
    j->progress_at = 0;
    job_progress(j, 0);
}

static void test_snapshot(const struct config *cfg, const char *db)
{
    struct sync_engine_opts o;
    struct sync_engine *e;
    struct stats_snapshot s;
    struct sync_run run;
    struct job j;
    char err[256];
    uint64_t g0, g1, g2;
    int fd;
    char b;

    memset(&o, 0, sizeof o);
    o.cfg = cfg;
    o.db_path = db;
    o.on_progress = on_progress;
    e = sync_engine_new(&o, err, sizeof err);
    CHECK_MSG(e != NULL, "%s", err);
    if (e == NULL)
        return;
    fd = sync_engine_notify_fd(e);
    CHECK(fd >= 0 && fd == stats_notify_fd(sync_engine_stats(e)));
    /* What the engine's setup reported (settings, the cache) is acknowledged first. */
    if (readable(fd))
        CHECK(read(fd, &b, 1) == 1);
    stats_notify_ack(sync_engine_stats(e));
    g0 = sync_engine_snapshot(e, &s);
    CHECK(s.generation == g0 && s.nrelays == 2);
    CHECK(s.nrelays == 2 && s.relays[1].phase == STATS_PHASE_IDLE);
    stats_snapshot_free(&s);
    CHECK(!readable(fd));

    /* The fake job: relay 1, filter notes, negentropy, no connection made. */
    memset(&j, 0, sizeof j);
    memset(&run, 0, sizeof run);
    run.mode = SYNC_MODE_NEG;
    j.e = e;
    j.rel = &e->relays[1];
    j.cf = e->filters[0];
    j.run = &run;
    j.r = relay_new(j.rel->url, NULL, err, sizeof err);
    CHECK_MSG(j.r != NULL, "%s", err);
    if (j.r == NULL) {
        sync_engine_free(e);
        return;
    }
    stats_job_start(sync_engine_stats(e), rel_index(e, j.rel), j.cf->name); /* as job_run does */

    /* A burst of reports: one wake-up. */
    for (uint64_t i = 1; i <= 500; i++) {
        run.rounds = i;
        run.have = i;
        run.need = 2 * i;
        run.fetched = i;
        report(&j);
    }
    CHECK(progress_calls == 500); /* the headless callback still hears every one */
    CHECK(readable(fd));
    CHECK(read(fd, &b, 1) == 1);
    CHECK(!readable(fd)); /* one byte for the whole burst */

    g1 = sync_engine_snapshot(e, &s);
    CHECK(g1 > g0 && s.generation == g1);
    if (s.nrelays == 2) {
        const struct stats_relay *r = &s.relays[1];
        CHECK(strcmp(r->filter, "notes") == 0);
        CHECK(r->round == 500 && r->have == 500 && r->need == 1000);
        CHECK(r->fetched == 500 && r->total == 1000); /* negentropy: of those known missing */
        CHECK(r->bytes_sent == 0 && r->bytes_received == 0); /* nothing went over a wire */
        /* The other relay saw nothing. */
        CHECK(s.relays[0].phase == STATS_PHASE_IDLE && s.relays[0].round == 0);
        CHECK(s.relays[0].filter[0] == '\0');
    }
    stats_snapshot_free(&s);

    /* The same figures again change nothing: no new generation, no wake-up. */
    stats_notify_ack(sync_engine_stats(e));
    report(&j);
    g2 = sync_engine_snapshot(e, &s);
    stats_snapshot_free(&s);
    CHECK(g2 == g1);
    CHECK(!readable(fd));

    /* Within SYNC_PROGRESS_MS of the last report a job does not report at all. */
    run.fetched = 600;
    j.progress_at = net_now_ms();
    job_progress(&j, 0);
    CHECK(sync_engine_snapshot(e, &s) == g1);
    stats_snapshot_free(&s);
    CHECK(progress_calls == 501);

    /* Its next report carries it, and wakes the reader again. */
    j.in_tail = 1; /* fetching the tail by REQ: no total known */
    report(&j);
    g2 = sync_engine_snapshot(e, &s);
    CHECK(g2 > g1);
    CHECK(s.nrelays == 2 && s.relays[1].fetched == 600 && s.relays[1].total == 0);
    stats_snapshot_free(&s);
    CHECK(readable(fd));

    relay_free(j.r);
    sync_engine_free(e);
}

int main(void)
{
    char dir[] = "/tmp/test-sync-snapshot.XXXXXX", ini[128], db[128], path[160];
    const char *ext[] = {"", "-wal", "-shm"};
    struct config_errors errs;
    struct config *cfg;
    FILE *f;

    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(ini, sizeof ini, "%s/c.ini", dir);
    snprintf(db, sizeof db, "%s/db", dir);
    f = fopen(ini, "w");
    if (f == NULL) {
        perror(ini);
        return 1;
    }
    fputs("[relay ws://127.0.0.1:9]\n[relay ws://127.0.0.1:10]\n[filter notes]\nkinds = 1\n", f);
    fclose(f);
    memset(&errs, 0, sizeof errs);
    cfg = config_load(ini, (int64_t)time(NULL), &errs);
    CHECK(cfg != NULL);
    if (cfg != NULL)
        test_snapshot(cfg, db);
    config_free(cfg);
    config_errors_free(&errs);
    unlink(ini);
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s%s", db, ext[i]);
        unlink(path);
    }
    rmdir(dir);
    return test_summary("test-sync-snapshot");
}
