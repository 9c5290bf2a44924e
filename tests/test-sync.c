/*
 * test-sync: the parts of the sync engine that need no relay: the progress
 * line, the --json record of a run (a dry run's too), and the live model a
 * front end reads (settings shown at once, saved off the caller's thread;
 * a dry run's engine writes nothing).
 */
#include "config.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cfg.h"
#include "stats.h"
#include "sync.h"
#include "testutil.h"

static void test_progress_format(void)
{
    struct sync_progress p = {
        .relay = "wss://relay.example.com",
        .filter = "notes",
        .phase = SYNC_PHASE_FETCHING,
        .rounds = 3,
        .fetched = 1200,
        .total = 4000,
    };
    char buf[256];
    size_t n;

    n = sync_progress_format(&p, buf, sizeof buf);
    CHECK(strcmp(buf, "wss://relay.example.com notes: fetching, round 3, fetched 1200/4000") == 0);
    CHECK(n == strlen(buf));

    /* REQ: the total is not known. */
    p.phase = SYNC_PHASE_REQ;
    p.total = 0;
    sync_progress_format(&p, buf, sizeof buf);
    CHECK(strcmp(buf, "wss://relay.example.com notes: REQ, round 3, fetched 1200") == 0);

    /* Cut to the terminal's width, NUL-terminated. */
    n = sync_progress_format(&p, buf, 11);
    CHECK(n == 10 && strcmp(buf, "wss://rela") == 0);
    n = sync_progress_format(&p, buf, 1);
    CHECK(n == 0 && buf[0] == '\0');
    CHECK(sync_progress_format(&p, buf, 0) == 0);

    /* Every phase in the words the headless progress line has always used. */
    CHECK(strcmp(sync_phase_name(SYNC_PHASE_STARTING), "starting") == 0);
    CHECK(strcmp(sync_phase_name(SYNC_PHASE_RECONCILING), "reconciling") == 0);
    CHECK(strcmp(sync_phase_name(SYNC_PHASE_TAIL), "fetching the newest") == 0);
    CHECK(strcmp(sync_phase_name(SYNC_PHASE_FETCHING), "fetching") == 0);
    CHECK(strcmp(sync_phase_name(SYNC_PHASE_UPLOADING), "uploading") == 0);
    CHECK(strcmp(sync_phase_name(SYNC_PHASE_REQ), "REQ") == 0);
    CHECK(strcmp(sync_phase_name(SYNC_PHASE_DONE), "done") == 0);
    p.phase = SYNC_PHASE_TAIL;
    p.total = 0;
    sync_progress_format(&p, buf, sizeof buf);
    CHECK(strcmp(buf,
                 "wss://relay.example.com notes: fetching the newest, round 3, fetched 1200") == 0);
}

static void test_run_json(void)
{
    struct sync_run r;
    char *s;

    memset(&r, 0, sizeof r);
    strcpy(r.relay, "ws://127.0.0.1:7777");
    strcpy(r.filter, "notes");
    r.mode = SYNC_MODE_REQ;
    strcpy(r.fallback_reason, "use_negentropy = false");
    strcpy(r.error, "relay closed the subscription: rate-limited: slow down; backoff 1.0 s");
    r.bytes_sent = 48;
    s = sync_run_to_json(&r);
    CHECK(s != NULL);
    if (s != NULL) {
        CHECK(strstr(s, "\"mode\":\"req\"") != NULL);
        CHECK(strstr(s, "\"result\":\"error\"") != NULL);
        CHECK(strstr(s, "\"est_req_bytes\":0") != NULL);
        CHECK(strstr(s, "\"bytes_sent\":48") != NULL);
        CHECK(strstr(s, "backoff 1.0 s") != NULL);
        CHECK(strstr(s, "dry_run") == NULL && strstr(s, "would_") == NULL);
    }
    free(s);

    /* A dry run: its figures, and the ids when they were collected. */
    {
        uint8_t ids[2][32];
        memset(ids, 0xab, sizeof ids);
        ids[1][31] = 0xcd;
        r.dry_run = 1;
        r.would_fetch = 2;
        r.would_upload = 0;
        s = sync_run_to_json(&r);
        CHECK(s != NULL &&
              strstr(s, "\"dry_run\":true,\"would_fetch\":2,\"would_upload\":0") != NULL);
        CHECK(s != NULL && strstr(s, "fetch_ids") == NULL);
        free(s);
        r.fetch_ids = ids;
        r.upload_ids = ids;
        s = sync_run_to_json(&r);
        CHECK(s != NULL && strstr(s, "\"fetch_ids\":[\"abab") != NULL);
        CHECK(s != NULL && strstr(s, "abcd\"],\"upload_ids\":[]") != NULL);
        free(s);
    }
}

/*
 * A dry run's engine needs an existing database and creates none; a
 * setting it is given stays in memory.
 */
static void test_dry_engine(void)
{
    char dir[] = "/tmp/test-sync.XXXXXX", ini[96], db[96], err[256];
    struct config_errors errs;
    struct sync_engine_opts o;
    struct config *cfg;
    struct sync_engine *e;
    struct stat sb;
    FILE *f;

    if (mkdtemp(dir) == NULL) {
        CHECK(!"mkdtemp");
        return;
    }
    snprintf(ini, sizeof ini, "%s/c.ini", dir);
    snprintf(db, sizeof db, "%s/db", dir);
    f = fopen(ini, "w");
    fputs("[relay ws://127.0.0.1:9]\n[filter notes]\nkinds = 1\n", f);
    fclose(f);
    memset(&errs, 0, sizeof errs);
    cfg = config_load(ini, (int64_t)time(NULL), &errs);
    CHECK(cfg != NULL);
    if (cfg == NULL) {
        config_errors_free(&errs);
        return;
    }
    memset(&o, 0, sizeof o);
    o.cfg = cfg;
    o.db_path = db;
    o.dry_run = 1;
    CHECK(sync_engine_new(&o, err, sizeof err) == NULL);
    CHECK_MSG(strstr(err, "No such file") != NULL, "%s", err);
    CHECK(stat(db, &sb) < 0);

    o.dry_run = 0;
    e = sync_engine_new(&o, err, sizeof err); /* creates it */
    CHECK_MSG(e != NULL, "%s", err);
    sync_engine_free(e);
    CHECK(stat(db, &sb) == 0);
    o.dry_run = 1;
    e = sync_engine_new(&o, err, sizeof err);
    CHECK_MSG(e != NULL, "%s", err);
    if (e != NULL) {
        CHECK(sync_engine_set_negentropy(e, "ws://127.0.0.1:9", CONFIG_NEGENTROPY_OFF, err,
                                         sizeof err) == 0);
        sync_engine_free(e);
    }
    o.dry_run = 0;
    e = sync_engine_new(&o, err, sizeof err);
    if (e != NULL) {
        struct stats_snapshot snap;
        sync_engine_snapshot(e, &snap);
        CHECK(snap.nrelays == 1 && snap.relays[0].neg_source == STATS_NEG_FROM_CONFIG);
        stats_snapshot_free(&snap);
        sync_engine_free(e);
    }
    config_free(cfg);
    config_errors_free(&errs);
    unlink(ini);
    char path[128];
    const char *ext[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s%s", db, ext[i]);
        unlink(path);
    }
    rmdir(dir);
}

static int64_t ms_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct sync_engine *engine_for(const struct config *cfg, const char *db)
{
    struct sync_engine_opts o;
    char err[256];
    struct sync_engine *e;

    memset(&o, 0, sizeof o);
    o.cfg = cfg;
    o.db_path = db;
    e = sync_engine_new(&o, err, sizeof err);
    CHECK_MSG(e != NULL, "%s", err);
    return e;
}

/* The relay's setting as the model shows it. */
static void setting_of(struct sync_engine *e, enum stats_neg_setting *s, enum stats_neg_source *src)
{
    struct stats_snapshot snap;

    sync_engine_snapshot(e, &snap);
    CHECK(snap.nrelays == 2);
    *s = snap.nrelays ? snap.relays[1].neg_setting : STATS_NEG_AUTO;
    *src = snap.nrelays ? snap.relays[1].neg_source : STATS_NEG_FROM_CONFIG;
    stats_snapshot_free(&snap);
}

/*
 * sync_engine_set_negentropy: the model shows the override at once and the
 * notify fd wakes; it is saved without the caller opening the database,
 * whether the engine ran (its checkpointer saves it) or not (free does), and
 * a new engine on the same database starts with it.
 */
static void test_setting(void)
{
    char dir[] = "/tmp/test-sync.XXXXXX", ini[96], db[96], err[256];
    struct config_errors errs;
    struct config *cfg;
    struct sync_engine *e;
    enum stats_neg_setting s;
    enum stats_neg_source src;
    FILE *f;

    if (mkdtemp(dir) == NULL) {
        CHECK(!"mkdtemp");
        return;
    }
    snprintf(ini, sizeof ini, "%s/c.ini", dir);
    snprintf(db, sizeof db, "%s/db", dir);
    f = fopen(ini, "w");
    fputs("[relay ws://127.0.0.1:9]\n[relay ws://127.0.0.1:10/x]\nnegentropy = on\n"
          "[filter notes]\nkinds = 1\n",
          f);
    fclose(f);
    memset(&errs, 0, sizeof errs);
    cfg = config_load(ini, (int64_t)time(NULL), &errs);
    CHECK(cfg != NULL);
    if (cfg == NULL) {
        config_errors_free(&errs);
        return;
    }

    e = engine_for(cfg, db);
    setting_of(e, &s, &src);
    CHECK(s == STATS_NEG_ON && src == STATS_NEG_FROM_CONFIG);
    stats_notify_ack(sync_engine_stats(e));
    CHECK(sync_engine_set_negentropy(e, "ws://127.0.0.1:10/x", CONFIG_NEGENTROPY_OFF, err,
                                     sizeof err) == 0);
    struct pollfd p = {sync_engine_notify_fd(e), POLLIN, 0};
    CHECK(poll(&p, 1, 0) == 1);
    setting_of(e, &s, &src);
    CHECK(s == STATS_NEG_OFF && src == STATS_NEG_FROM_OVERRIDE);
    CHECK(sync_engine_set_negentropy(e, "ws://127.0.0.1:99", CONFIG_NEGENTROPY_OFF, err,
                                     sizeof err) < 0);
    sync_engine_free(e); /* never started: free saves it */

    e = engine_for(cfg, db);
    setting_of(e, &s, &src);
    CHECK(s == STATS_NEG_OFF && src == STATS_NEG_FROM_OVERRIDE);
    /* Running: the checkpointer saves it, with no stop needed (a crash a second later keeps it). */
    CHECK(sync_engine_start(e, err, sizeof err) == 0);
    CHECK(sync_engine_set_negentropy(e, "ws://127.0.0.1:10/x", CONFIG_NEGENTROPY_AUTO, err,
                                     sizeof err) == 0);
    {
        struct sync_engine *e2 = NULL;
        int64_t deadline = ms_now() + 10000;
        for (;;) {
            e2 = engine_for(cfg, db);
            setting_of(e2, &s, &src);
            sync_engine_free(e2);
            if (src == STATS_NEG_FROM_CONFIG || ms_now() > deadline)
                break;
            usleep(20000);
        }
        CHECK_MSG(s == STATS_NEG_ON && src == STATS_NEG_FROM_CONFIG,
                  "the running engine did not save the setting within 10 s");
    }
    sync_engine_free(e);
    config_free(cfg);
    config_errors_free(&errs);
    unlink(ini);
    char path[128];
    const char *ext[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s%s", db, ext[i]);
        unlink(path);
    }
    rmdir(dir);
}

int main(void)
{
    test_progress_format();
    test_run_json();
    test_setting();
    test_dry_engine();
    return test_summary("test-sync");
}
