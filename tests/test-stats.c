/*
 * test-stats: the live status model without an engine: a fake job's
 * progress appears in a snapshot, the generation moves on every change and
 * only then, the notify descriptor wakes once per burst, snapshots are
 * copies, strings are cut safely, and writers on several threads with a
 * reader on another keep every snapshot consistent (run it under TSan).
 */
#include "config.h"

#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stats.h"
#include "testutil.h"

static const char *const urls[] = {"wss://a.example", "wss://b.example", "ws://127.0.0.1:7777"};
static const char *const filters[] = {"notes", "dms"};

static struct stats *model(void)
{
    char err[128] = "";
    struct stats *st = stats_new(urls, 3, filters, 2, 4, err, sizeof err);
    CHECK_MSG(st != NULL, "%s", err);
    if (st == NULL)
        exit(1);
    return st;
}

/* Whether the notify descriptor is readable right now (poll with no wait). */
static int readable(struct stats *st)
{
    struct pollfd p = {.fd = stats_notify_fd(st), .events = POLLIN};
    return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

static void test_new(void)
{
    struct stats *st = model();
    struct stats_snapshot s;

    CHECK(stats_relay_index(st, "wss://b.example") == 1);
    CHECK(stats_relay_index(st, "wss://nope.example") == -1);
    CHECK(stats_relay_index(st, NULL) == -1);
    CHECK(!readable(st));

    stats_snapshot(st, &s);
    CHECK(s.nrelays == 3 && s.workers_total == 4 && s.workers_busy == 0);
    CHECK(strcmp(s.relays[2].url, "ws://127.0.0.1:7777") == 0);
    for (size_t i = 0; i < s.nrelays; i++) {
        CHECK(s.relays[i].phase == STATS_PHASE_IDLE);
        CHECK(s.relays[i].enabled);
        CHECK(s.relays[i].cap == STATS_CAP_UNKNOWN);
        CHECK(s.relays[i].next_run_ms == -1);
        CHECK(s.relays[i].nfilters == 2);
        CHECK(strcmp(s.relays[i].filters[1].name, "dms") == 0);
        CHECK(!s.relays[i].filters[0].last.valid && s.relays[i].filters[0].nhistory == 0);
    }
    CHECK(s.now_ms > 0);
    stats_snapshot_free(&s);
    CHECK(s.relays == NULL && s.nrelays == 0);
    stats_snapshot_free(&s); /* twice is harmless */

    CHECK(strcmp(stats_phase_name(STATS_PHASE_REQ), "REQ") == 0);
    CHECK(strcmp(stats_phase_name(STATS_PHASE_RECONCILING), "reconciling") == 0);
    CHECK(strcmp(stats_phase_name(STATS_PHASE_BACKOFF), "backoff") == 0);
    stats_free(st);
    stats_free(NULL);

    /* No relays, no filters: still a model. */
    st = stats_new(NULL, 0, NULL, 0, 1, NULL, 0);
    CHECK(st != NULL);
    stats_snapshot(st, &s);
    CHECK(s.nrelays == 0);
    stats_snapshot_free(&s);
    stats_free(st);
}

/* A job runs from start to end; every step shows in a snapshot. */
static void test_fake_job(void)
{
    struct stats *st = model();
    struct stats_snapshot s;
    struct stats_run run = {.mode_neg = 1,
                            .ok = 1,
                            .ended = 1700000000,
                            .rounds = 4,
                            .bytes_sent = 300,
                            .bytes_received = 700,
                            .est_req_bytes = 10000,
                            .fetched = 12,
                            .stored = 11};
    int64_t t0 = stats_mono_ms();

    stats_set_cap(st, 0, STATS_CAP_SUPPORTED, STATS_CAP_FROM_PROBE, "NEG-MSG in 12 ms", 1699999000,
                  "strfry", "1.0.4", 0);
    stats_set_negentropy(st, 0, STATS_NEG_OFF, STATS_NEG_FROM_OVERRIDE);
    stats_set_limits(st, 0, 131072, 500);
    stats_set_schedule(st, 0, t0 + 60000, 2);
    stats_set_workers_busy(st, 1);
    stats_set_events_stored(st, 41233);
    stats_job_start(st, 0, "dms");
    stats_job_phase(st, 0, STATS_PHASE_RECONCILING);
    stats_job_progress(st, 0, 3, 5, 12, 7, 12, 250, 600, 200, 400, 9000);

    stats_snapshot(st, &s);
    struct stats_relay *r = &s.relays[0];
    CHECK(r->cap == STATS_CAP_SUPPORTED && r->cap_source == STATS_CAP_FROM_PROBE);
    CHECK(strcmp(r->cap_reason, "NEG-MSG in 12 ms") == 0);
    CHECK(r->cap_checked_at == 1699999000);
    CHECK(strcmp(r->software, "strfry") == 0 && strcmp(r->version, "1.0.4") == 0);
    CHECK(r->neg_setting == STATS_NEG_OFF && r->neg_source == STATS_NEG_FROM_OVERRIDE);
    CHECK(r->max_message_length == 131072 && r->max_limit == 500);
    CHECK(r->next_run_ms == t0 + 60000 && r->failures == 2);
    CHECK(s.workers_busy == 1 && s.events_stored == 41233);
    CHECK(r->phase == STATS_PHASE_RECONCILING && strcmp(r->filter, "dms") == 0);
    CHECK(r->round == 3 && r->have == 5 && r->need == 12 && r->fetched == 7 && r->total == 12);
    CHECK(r->bytes_sent == 250 && r->bytes_received == 600);
    CHECK(r->wire_sent == 200 && r->wire_received == 400 && r->est_req_bytes == 9000);
    CHECK(r->phase_since_ms >= t0 && r->phase_since_ms <= s.now_ms);
    /* The other relays saw nothing. */
    CHECK(s.relays[1].phase == STATS_PHASE_IDLE && s.relays[1].cap == STATS_CAP_UNKNOWN);
    stats_snapshot_free(&s);

    stats_job_end(st, 0, "dms", &run);
    stats_snapshot(st, &s);
    r = &s.relays[0];
    CHECK(r->phase == STATS_PHASE_IDLE);
    CHECK(!r->filters[0].last.valid);
    CHECK(r->filters[1].last.valid); /* set even though the caller left it 0 */
    CHECK(r->filters[1].last.rounds == 4 && r->filters[1].last.stored == 11);
    CHECK(r->filters[1].nhistory == 1 && r->filters[1].history[0].bytes == 1000);
    CHECK(r->filters[1].history[0].est_req_bytes == 10000 && r->filters[1].history[0].mode_neg);
    CHECK(r->runs == 1 && r->runs_bytes == 1000 && r->runs_est_req_bytes == 10000);
    stats_snapshot_free(&s);

    /* The history keeps the last STATS_HISTORY runs, oldest first. */
    for (int i = 0; i < STATS_HISTORY + 3; i++) {
        run.bytes_sent = (uint64_t)i;
        run.bytes_received = 0;
        run.est_req_bytes = i % 2 ? 100 : 0; /* a REQ run has no estimate */
        stats_job_start(st, 0, "dms");
        stats_job_end(st, 0, "dms", &run);
    }
    stats_snapshot(st, &s);
    r = &s.relays[0];
    CHECK(r->filters[1].nhistory == STATS_HISTORY);
    CHECK(r->filters[1].history[0].bytes == 3);
    CHECK(r->filters[1].history[STATS_HISTORY - 1].bytes == STATS_HISTORY + 2);
    CHECK(r->runs == STATS_HISTORY + 4);
    /*
     * Only runs with an estimate count towards the compared bytes: the
     * first run's, and 1+3+5+7+9 of 0..10.
     */
    CHECK(r->runs_est_req_bytes == 10000 + 500 && r->runs_est_bytes == 1000 + 25);
    stats_snapshot_free(&s);

    /* Out of range and unknown filters are ignored, not a crash. */
    stats_job_start(st, 99, "notes");
    stats_job_progress(st, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1);
    stats_job_end(st, 0, "nope", &run);
    stats_job_end(st, 0, NULL, NULL);
    stats_set_cap(st, 7, STATS_CAP_SUPPORTED, STATS_CAP_FROM_CACHE, NULL, 0, NULL, NULL, 0);
    stats_snapshot(st, &s);
    CHECK(s.relays[0].runs == STATS_HISTORY + 4);
    stats_snapshot_free(&s);
    stats_free(st);
}

/* The generation moves on each change, and only on a change. */
static void test_generation(void)
{
    struct stats *st = model();
    uint64_t g = stats_generation(st), g2;
    struct stats_snapshot s;

    stats_job_start(st, 1, "notes");
    CHECK((g2 = stats_generation(st)) > g);
    g = g2;
    stats_job_phase(st, 1, STATS_PHASE_FETCHING);
    CHECK((g2 = stats_generation(st)) > g);
    g = g2;
    stats_job_phase(st, 1, STATS_PHASE_FETCHING); /* the same phase again */
    CHECK(stats_generation(st) == g);
    stats_job_progress(st, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10);
    CHECK((g2 = stats_generation(st)) > g);
    g = g2;
    stats_job_progress(st, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10);
    CHECK(stats_generation(st) == g);
    stats_job_progress(st, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11); /* one counter moved */
    CHECK((g2 = stats_generation(st)) > g);
    g = g2;
    stats_set_cap(st, 1, STATS_CAP_UNSUPPORTED, STATS_CAP_FROM_SESSION, "NOTICE: no", 5, NULL, NULL,
                  0);
    CHECK((g2 = stats_generation(st)) > g);
    g = g2;
    stats_set_cap(st, 1, STATS_CAP_UNSUPPORTED, STATS_CAP_FROM_SESSION, "NOTICE: no", 5, NULL, NULL,
                  0);
    CHECK(stats_generation(st) == g);
    stats_set_cap(st, 1, STATS_CAP_UNSUPPORTED, STATS_CAP_FROM_SESSION, "NOTICE: no!", 5, NULL,
                  NULL, 0);
    CHECK((g2 = stats_generation(st)) > g);
    g = g2;
    stats_set_enabled(st, 1, 0);
    CHECK((g2 = stats_generation(st)) > g);
    g = g2;
    stats_set_enabled(st, 1, 0);
    CHECK(stats_generation(st) == g);
    stats_set_workers_busy(st, 3);
    CHECK((g2 = stats_generation(st)) > g);
    g = g2;
    stats_set_schedule(st, 1, 1234, 0);
    CHECK((g2 = stats_generation(st)) > g);
    g = g2;
    stats_set_schedule(st, 1, 1234, 0);
    CHECK(stats_generation(st) == g);
    stats_job_end(st, 1, "notes", NULL); /* an end is always a change */
    CHECK((g2 = stats_generation(st)) > g);

    stats_snapshot(st, &s);
    CHECK(s.generation == g2);
    stats_snapshot_free(&s);
    stats_free(st);
}

/* One wake-up for a burst; none after the ack until something changes again. */
static void test_notify(void)
{
    struct stats *st = model();
    char b;

    CHECK(!readable(st));
    for (uint64_t i = 1; i <= 1000; i++)
        stats_job_progress(st, i % 3, i, 0, 0, i, 0, i, i, i, i, 0);
    CHECK(readable(st));
    /* Exactly one byte, however many changes: the pipe is drained by one read. */
    CHECK(read(stats_notify_fd(st), &b, 1) == 1);
    CHECK(!readable(st));
    /* More changes before the ack do not wake the reader again... */
    stats_job_phase(st, 0, STATS_PHASE_FETCHING);
    CHECK(!readable(st));
    stats_notify_ack(st);
    CHECK(!readable(st));
    /* ...nor do calls that change nothing after it. */
    stats_job_phase(st, 0, STATS_PHASE_FETCHING);
    stats_set_workers_busy(st, 0);
    CHECK(!readable(st));
    /* A real change after the ack wakes it once more. */
    stats_job_phase(st, 0, STATS_PHASE_UPLOADING);
    CHECK(readable(st));
    stats_set_workers_busy(st, 2);
    stats_notify_ack(st);
    CHECK(!readable(st));
    stats_free(st);
}

/* A snapshot is a copy: later changes and frees do not reach it. */
static void test_copies(void)
{
    struct stats *st = model();
    struct stats_snapshot a, b;
    struct stats_run run = {.ok = 1, .stored = 5};

    stats_set_cap(st, 2, STATS_CAP_UNREACHABLE, STATS_CAP_FROM_PROBE, "connection refused", 10,
                  NULL, NULL, 0);
    stats_job_start(st, 2, "notes");
    stats_snapshot(st, &a);

    stats_set_cap(st, 2, STATS_CAP_SUPPORTED, STATS_CAP_FROM_PROBE, "NEG-MSG in 3 ms", 20, "x", "y",
                  1);
    stats_job_progress(st, 2, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9);
    stats_job_end(st, 2, "notes", &run);
    stats_snapshot(st, &b);

    CHECK(a.generation < b.generation);
    CHECK(a.relays[2].cap == STATS_CAP_UNREACHABLE);
    CHECK(strcmp(a.relays[2].cap_reason, "connection refused") == 0);
    CHECK(a.relays[2].phase == STATS_PHASE_CONNECTING && a.relays[2].round == 0);
    CHECK(!a.relays[2].filters[0].last.valid);
    CHECK(b.relays[2].filters[0].last.valid && b.relays[2].filters[0].last.stored == 5);
    CHECK(b.relays[2].cap == STATS_CAP_SUPPORTED && b.relays[2].auth_challenge);
    /* Each snapshot has its own filter arrays. */
    CHECK(a.relays[2].filters != b.relays[2].filters);
    CHECK(a.relays[0].filters != a.relays[1].filters);

    /* Freeing the model leaves the copies readable (ASan would say otherwise). */
    stats_free(st);
    CHECK(strcmp(b.relays[2].filters[1].name, "dms") == 0);
    CHECK(strcmp(a.relays[2].url, "ws://127.0.0.1:7777") == 0);
    stats_snapshot_free(&a);
    stats_snapshot_free(&b);
}

/* Strings are cut to the field sizes, at a character boundary, without controls. */
static void test_strings(void)
{
    struct stats *st = model();
    struct stats_snapshot s;
    char long_reason[1000], utf8[STATS_REASON_MAX + 8];
    struct stats_run run = {0};

    memset(long_reason, 'r', sizeof long_reason - 1);
    long_reason[sizeof long_reason - 1] = '\0';
    stats_set_cap(st, 0, STATS_CAP_UNSUPPORTED, STATS_CAP_FROM_PROBE, long_reason, 1, long_reason,
                  long_reason, 0);
    stats_job_start(st, 0, long_reason);
    stats_snapshot(st, &s);
    CHECK(strlen(s.relays[0].cap_reason) == STATS_REASON_MAX - 1);
    CHECK(strlen(s.relays[0].software) == STATS_NAME_MAX - 1);
    CHECK(strlen(s.relays[0].version) == STATS_NAME_MAX - 1);
    CHECK(strlen(s.relays[0].filter) == STATS_NAME_MAX - 1);
    stats_snapshot_free(&s);

    /* "é" (2 bytes) straddling the last byte: the whole character goes. */
    memset(utf8, 'a', STATS_REASON_MAX - 2);
    memcpy(utf8 + STATS_REASON_MAX - 2, "\xc3\xa9zz", 5);
    stats_set_cap(st, 0, STATS_CAP_UNSUPPORTED, STATS_CAP_FROM_PROBE, utf8, 1, NULL, NULL, 0);
    stats_snapshot(st, &s);
    CHECK(strlen(s.relays[0].cap_reason) == STATS_REASON_MAX - 2);
    CHECK(s.relays[0].cap_reason[STATS_REASON_MAX - 3] == 'a');
    stats_snapshot_free(&s);
    /* One that fits exactly stays whole. */
    memcpy(utf8 + STATS_REASON_MAX - 3, "\xc3\xa9", 3);
    stats_set_cap(st, 0, STATS_CAP_UNSUPPORTED, STATS_CAP_FROM_PROBE, utf8, 1, NULL, NULL, 0);
    stats_snapshot(st, &s);
    CHECK(strlen(s.relays[0].cap_reason) == STATS_REASON_MAX - 1);
    CHECK(strcmp(s.relays[0].cap_reason + STATS_REASON_MAX - 3, "\xc3\xa9") == 0);
    stats_snapshot_free(&s);

    /* A relay's escape sequence cannot reach a terminal; NULL is "". */
    stats_set_cap(st, 1, STATS_CAP_UNSUPPORTED, STATS_CAP_FROM_SESSION, "bad\x1b[2J\r\nmsg\x7f", 1,
                  NULL, NULL, 0);
    memcpy(run.error, "boom\ttab", 9);
    memset(run.fallback_reason, 'f', sizeof run.fallback_reason); /* not even terminated */
    stats_job_end(st, 1, "notes", &run);
    stats_snapshot(st, &s);
    CHECK(strcmp(s.relays[1].cap_reason, "bad [2J  msg ") == 0);
    CHECK(strcmp(s.relays[1].software, "") == 0);
    CHECK(strcmp(s.relays[1].filters[0].last.error, "boom tab") == 0);
    CHECK(strlen(s.relays[1].filters[0].last.fallback_reason) == STATS_REASON_MAX - 1);
    stats_snapshot_free(&s);
    stats_free(st);
}

/*
 * Writers on several threads, a reader polling the descriptor like a front
 * end: every snapshot is internally consistent (each writer keeps all of a
 * relay's counters equal), generations never go back, and the reader sees
 * the final state.
 */
#define WRITERS 3
#define STEPS   20000

struct writer {
    struct stats *st;
    size_t relay;
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    struct stats_run run = {.ok = 1};

    for (uint64_t i = 1; i <= STEPS; i++) {
        if (i % 1000 == 1)
            stats_job_start(w->st, w->relay, "notes");
        stats_job_progress(w->st, w->relay, i, i, i, i, i, i, i, i, i, i);
        if (i % 97 == 0)
            stats_job_phase(w->st, w->relay, i % 2 ? STATS_PHASE_FETCHING : STATS_PHASE_REQ);
        if (i % 1000 == 0) {
            run.stored = i;
            stats_job_end(w->st, w->relay, "notes", &run);
        }
        stats_set_workers_busy(w->st, (unsigned)(i % 4));
    }
    return NULL;
}

static void test_threads(void)
{
    struct stats *st = model();
    pthread_t th[WRITERS];
    struct writer w[WRITERS];
    uint64_t last_gen = 0;
    unsigned snapshots = 0, inconsistent = 0, backwards = 0;
    int done = 0;

    for (size_t i = 0; i < WRITERS; i++) {
        w[i] = (struct writer){st, i};
        CHECK(pthread_create(&th[i], NULL, writer_main, &w[i]) == 0);
    }
    while (!done) {
        struct pollfd p = {.fd = stats_notify_fd(st), .events = POLLIN};
        struct stats_snapshot s;
        int finished = 0;

        if (poll(&p, 1, 10000) != 1) {
            CHECK_MSG(0, "no wake-up within 10 s");
            break;
        }
        stats_notify_ack(st);
        stats_snapshot(st, &s);
        snapshots++;
        if (s.generation < last_gen)
            backwards++;
        last_gen = s.generation;
        for (size_t i = 0; i < WRITERS; i++) {
            const struct stats_relay *r = &s.relays[i];
            if (r->round != r->have || r->have != r->need || r->need != r->fetched ||
                r->fetched != r->bytes_sent || r->bytes_sent != r->est_req_bytes)
                inconsistent++;
            if (r->filters[0].last.stored == STEPS)
                finished++;
        }
        done = finished == WRITERS;
        stats_snapshot_free(&s);
    }
    for (size_t i = 0; i < WRITERS; i++)
        pthread_join(th[i], NULL);
    CHECK(done);
    CHECK(inconsistent == 0);
    CHECK(backwards == 0);
    CHECK(snapshots > 0);
    printf("threads: %u snapshots for %d changes\n", snapshots, WRITERS * STEPS);
    stats_free(st);
}

int main(void)
{
    test_new();
    test_fake_job();
    test_generation();
    test_notify();
    test_copies();
    test_strings();
    test_threads();
    return test_summary("test-stats");
}
