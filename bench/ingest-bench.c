/*
 * ingest-bench: how fast authentic events get into the store.
 *
 *   bench/ingest-bench [-n N] [-l LIST_N] [-a AUTHORS] [-b BATCH] [-d DIR]
 *
 * Signs N events (default 200 000) in memory first, untimed: kind-1 notes
 * and kind-7 reactions by AUTHORS authors (default 1 000), with e/p/t tags
 * and 60..250 bytes of content, created_at ascending. Then, each phase on
 * the same events:
 *
 *   sig-only      secp256k1_schnorrsig_verify alone, keys parsed beforehand:
 *                 the floor no ingest can beat
 *   verify        event_verify_cached (id hash + cached key + signature),
 *                 one thread, then two: exactly the checking an ingest does
 *   ingest-1      verify + store_insert_batch into a fresh database, one
 *                 thread, BATCH events per transaction (default 20 000, what
 *                 `negsync import` uses)
 *   ingest-2      the same with verification spread over a pool of 2
 *                 threads that hand verified batches, in order, to the one
 *                 writer thread (how the sync workers feed the store)
 *   list          store_list_ids of every event, ascending (created_at, id),
 *                 the negentropy listing: at N (the ingest-2 database), then
 *                 at LIST_N (default 1 000 000) after topping the database
 *                 up with unsigned synthetic rows inserted straight through
 *                 store_insert_batch, as bench/store-bench does (signing a
 *                 million events would measure libsecp256k1, not the store)
 *
 * and prints one figure per line with its CPU time per event, then the goals
 * of issue 3 checked against them: by the clock, and by CPU time, which a
 * busy shared machine disturbs much less. Databases go to a fresh directory
 * under DIR (default $TMPDIR or /tmp), removed at the end. Exits 1 only if
 * something is wrong (an event refused, a listing incomplete or out of
 * order), never because of a time: the machine may be busy; run it several
 * times and take medians.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <secp256k1.h>
#include <secp256k1_extrakeys.h>
#include <secp256k1_schnorrsig.h>

#include "event.h"
#include "store.h"
#include "util.h"

#define BASE_TIME 1700000000ULL
#define LOOKAHEAD 8 /* verified batches the pool may run ahead of the writer */

struct opts {
    size_t n, list_n, authors, batch;
    const char *dir;
};

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU seconds of the whole process (all threads) or of the calling thread. */
static double cpu_s(clockid_t which)
{
    struct timespec ts;

    clock_gettime(which, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* What one timed phase took: wall seconds, process CPU seconds, writer-thread CPU seconds. */
struct timing {
    double wall, cpu, writer_cpu;
};

static void timing_start(struct timing *t)
{
    t->wall = now_s();
    t->cpu = cpu_s(CLOCK_PROCESS_CPUTIME_ID);
    t->writer_cpu = cpu_s(CLOCK_THREAD_CPUTIME_ID);
}

static void timing_stop(struct timing *t)
{
    t->wall = now_s() - t->wall;
    t->cpu = cpu_s(CLOCK_PROCESS_CPUTIME_ID) - t->cpu;
    t->writer_cpu = cpu_s(CLOCK_THREAD_CPUTIME_ID) - t->writer_cpu;
}

static long peak_rss_kb(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void rand_bytes(uint64_t *state, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i += 8) {
        uint64_t r = splitmix64(state);
        memcpy(out + i, &r, n - i < 8 ? n - i : 8);
    }
}

/* The scratch directory and its databases, removed on every exit. */
static char bench_dir[4096];

static void remove_scratch(void)
{
    static const char *const names[] = {"single.db", "pool.db"};
    static const char *const sfx[] = {"", "-wal", "-shm"};
    char p[4200];

    if (bench_dir[0] == '\0')
        return;
    for (size_t i = 0; i < 2; i++) {
        for (size_t k = 0; k < 3; k++) {
            snprintf(p, sizeof p, "%s/%s%s", bench_dir, names[i], sfx[k]);
            unlink(p);
        }
    }
    rmdir(bench_dir);
}

static void die(const char *what, const char *why)
{
    fprintf(stderr, "ingest-bench: %s: %s\n", what, why);
    exit(1);
}

/* ---- generating the events (untimed) ---- */

struct gen_job {
    const struct opts *o;
    struct event **evs;
    size_t from, to;
};

static void author_key(size_t who, uint8_t sk[32])
{
    uint64_t st = 0xa11ce000ULL + who;

    rand_bytes(&st, sk, 32);
    sk[0] = 0x7f; /* below the group order, never zero */
}

static void *gen_main(void *arg)
{
    struct gen_job *j = arg;
    uint64_t rng = 0xbe7c4ULL ^ (uint64_t)j->from;
    static const char words[] = "negentropy reconciles sets of events between relays and "
                                "clients by exchanging fingerprints of ranges instead of ids; "
                                "only the differences travel, which is what makes syncing "
                                "cheap. ";

    for (size_t i = j->from; i < j->to; i++) {
        size_t who = (size_t)(splitmix64(&rng) % j->o->authors);
        uint8_t sk[32], ref[32], pk[32];
        char refhex[65], pkhex[65], content[300];
        int reaction = splitmix64(&rng) % 8 == 0;
        size_t clen = 60 + (size_t)(splitmix64(&rng) % 190);
        const char *e_tag[] = {"e", refhex, "wss://relay.example.com"};
        const char *p_tag[] = {"p", pkhex};
        const char *t_tag[] = {"t", "bench"};
        const char *const *tags[] = {e_tag, p_tag, t_tag};
        size_t lens[] = {3, 2, 2};

        rand_bytes(&rng, ref, 32);
        rand_bytes(&rng, pk, 32);
        hex_encode(ref, 32, refhex);
        hex_encode(pk, 32, pkhex);
        if (reaction) {
            snprintf(content, sizeof content, "+");
        } else {
            snprintf(content, sizeof content, "note %zu: %.*s", i, (int)clen,
                     words + splitmix64(&rng) % 40);
        }
        author_key(who, sk);
        j->evs[i] = event_sign(sk, BASE_TIME + i / 4, reaction ? 7 : 1, tags, lens,
                               reaction ? 2 : 3, content);
        if (j->evs[i] == NULL)
            die("event_sign", "failed");
    }
    return NULL;
}

static struct event **generate(const struct opts *o)
{
    struct event **evs = xcalloc(o->n, sizeof *evs);
    struct gen_job jobs[2];
    pthread_t t[2];

    for (int k = 0; k < 2; k++) {
        jobs[k] = (struct gen_job){
            .o = o, .evs = evs, .from = o->n * (size_t)k / 2, .to = o->n * (size_t)(k + 1) / 2};
        if (pthread_create(&t[k], NULL, gen_main, &jobs[k]) != 0)
            die("pthread_create", strerror(errno));
    }
    for (int k = 0; k < 2; k++)
        pthread_join(t[k], NULL);
    return evs;
}

/* ---- verification alone ---- */

static void sig_only(struct event **evs, size_t n, struct timing *t)
{
    secp256k1_context *ctx = secp256k1_context_create(SECP256K1_CONTEXT_NONE);
    secp256k1_xonly_pubkey *pks = xmalloc(n * sizeof *pks);
    size_t bad = 0;

    for (size_t i = 0; i < n; i++) {
        if (!secp256k1_xonly_pubkey_parse(ctx, &pks[i], evs[i]->pubkey))
            die("sig-only", "bad key");
    }
    timing_start(t);
    for (size_t i = 0; i < n; i++)
        bad += !secp256k1_schnorrsig_verify(ctx, evs[i]->sig, evs[i]->id, 32, &pks[i]);
    timing_stop(t);
    free(pks);
    secp256k1_context_destroy(ctx);
    if (bad)
        die("sig-only", "a signature did not verify");
}

struct verify_job {
    struct event **evs;
    size_t from, to, bad;
};

static void *verify_main(void *arg)
{
    struct verify_job *j = arg;
    struct event_keycache *kc = event_keycache_new();
    char err[EVENT_ERRLEN];

    for (size_t i = j->from; i < j->to; i++)
        j->bad += event_verify_cached(j->evs[i], kc, err, sizeof err) != 0;
    event_keycache_free(kc);
    return NULL;
}

static void verify_phase(struct event **evs, size_t n, int nthreads, struct timing *tm)
{
    struct verify_job jobs[2];
    pthread_t t[2];

    timing_start(tm);

    for (int k = 0; k < nthreads; k++) {
        jobs[k] = (struct verify_job){.evs = evs,
                                      .from = n * (size_t)k / (size_t)nthreads,
                                      .to = n * (size_t)(k + 1) / (size_t)nthreads};
        if (pthread_create(&t[k], NULL, verify_main, &jobs[k]) != 0)
            die("pthread_create", strerror(errno));
    }
    for (int k = 0; k < nthreads; k++) {
        pthread_join(t[k], NULL);
        if (jobs[k].bad)
            die("verify", "an event did not verify");
    }
    timing_stop(tm);
}

/* ---- ingest ---- */

/* Inserts the events of one batch that verified (ok[i]); checks none was refused. */
static void insert_verified(struct store *st, struct event **evs, const unsigned char *ok, size_t k,
                            struct event **keep, struct store_result *res)
{
    char err[STORE_ERRLEN];
    size_t m = 0;

    for (size_t i = 0; i < k; i++) {
        if (ok[i])
            keep[m++] = evs[i];
    }
    if (m != k)
        die("ingest", "an event did not verify");
    if (store_insert_batch(st, keep, m, res, err, sizeof err) < 0)
        die("store_insert_batch", err);
    for (size_t i = 0; i < m; i++) {
        if (res[i].outcome != STORE_INSERTED)
            die("ingest", store_outcome_name(res[i].outcome));
    }
}

static void ingest_single(const struct opts *o, struct event **evs, const char *path,
                          struct timing *t)
{
    char err[STORE_ERRLEN];
    struct event_keycache *kc = event_keycache_new();
    struct event **keep = xmalloc(o->batch * sizeof *keep);
    struct store_result *res = xmalloc(o->batch * sizeof *res);
    unsigned char *ok = xmalloc(o->batch);
    struct store *st;

    timing_start(t);
    if ((st = store_open(path, err, sizeof err)) == NULL)
        die("store_open", err);
    for (size_t at = 0; at < o->n; at += o->batch) {
        size_t k = o->n - at < o->batch ? o->n - at : o->batch;
        for (size_t i = 0; i < k; i++)
            ok[i] = event_verify_cached(evs[at + i], kc, err, sizeof err) == 0;
        insert_verified(st, evs + at, ok, k, keep, res);
    }
    store_close(st);
    timing_stop(t);
    free(keep);
    free(res);
    free(ok);
    event_keycache_free(kc);
}

/*
 * The pool: verifiers claim batches in order, verify them and mark them
 * done; the writer takes batches strictly in order. A verifier waits when it
 * is LOOKAHEAD batches ahead of the writer, which bounds the work in flight.
 */
struct pool {
    const struct opts *o;
    struct event **evs;
    size_t nbatches;
    unsigned char *ok;   /* per event */
    unsigned char *done; /* per batch */
    size_t next, written;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

static void *pool_verifier(void *arg)
{
    struct pool *p = arg;
    struct event_keycache *kc = event_keycache_new();
    char err[EVENT_ERRLEN];

    pthread_mutex_lock(&p->mu);
    while (p->next < p->nbatches) {
        size_t b = p->next;
        if (b >= p->written + LOOKAHEAD) {
            pthread_cond_wait(&p->cv, &p->mu);
            continue;
        }
        p->next++;
        pthread_mutex_unlock(&p->mu);
        size_t at = b * p->o->batch;
        size_t k = p->o->n - at < p->o->batch ? p->o->n - at : p->o->batch;
        for (size_t i = 0; i < k; i++)
            p->ok[at + i] = event_verify_cached(p->evs[at + i], kc, err, sizeof err) == 0;
        pthread_mutex_lock(&p->mu);
        p->done[b] = 1;
        pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    event_keycache_free(kc);
    return NULL;
}

static void ingest_pool(const struct opts *o, struct event **evs, const char *path, int nverifiers,
                        struct timing *t)
{
    char err[STORE_ERRLEN];
    struct pool p = {.o = o, .evs = evs};
    struct event **keep = xmalloc(o->batch * sizeof *keep);
    struct store_result *res = xmalloc(o->batch * sizeof *res);
    pthread_t tid[8];
    struct store *st;

    timing_start(t);
    p.nbatches = (o->n + o->batch - 1) / o->batch;
    p.ok = xcalloc(o->n, 1);
    p.done = xcalloc(p.nbatches, 1);
    pthread_mutex_init(&p.mu, NULL);
    pthread_cond_init(&p.cv, NULL);
    if ((st = store_open(path, err, sizeof err)) == NULL)
        die("store_open", err);
    for (int k = 0; k < nverifiers; k++) {
        if (pthread_create(&tid[k], NULL, pool_verifier, &p) != 0)
            die("pthread_create", strerror(errno));
    }
    for (size_t b = 0; b < p.nbatches; b++) {
        size_t at = b * o->batch;
        size_t k = o->n - at < o->batch ? o->n - at : o->batch;
        pthread_mutex_lock(&p.mu);
        while (!p.done[b])
            pthread_cond_wait(&p.cv, &p.mu);
        pthread_mutex_unlock(&p.mu);
        insert_verified(st, evs + at, p.ok + at, k, keep, res);
        pthread_mutex_lock(&p.mu);
        p.written++;
        pthread_cond_broadcast(&p.cv);
        pthread_mutex_unlock(&p.mu);
    }
    for (int k = 0; k < nverifiers; k++)
        pthread_join(tid[k], NULL);
    store_close(st);
    timing_stop(t);
    pthread_mutex_destroy(&p.mu);
    pthread_cond_destroy(&p.cv);
    free(p.ok);
    free(p.done);
    free(keep);
    free(res);
}

/* ---- the listing ---- */

struct listing {
    uint64_t n, last_at;
    uint8_t last_id[32];
    int unordered;
};

static int on_id(void *ctx, uint64_t created_at, const uint8_t id[32])
{
    struct listing *l = ctx;

    if (l->n > 0 &&
        (created_at < l->last_at || (created_at == l->last_at && memcmp(id, l->last_id, 32) <= 0)))
        l->unordered = 1;
    l->last_at = created_at;
    memcpy(l->last_id, id, 32);
    l->n++;
    return 0;
}

/* Lists everything in a freshly opened connection; ms, and checks count and order. */
static double list_ms(const char *path, size_t want)
{
    char err[STORE_ERRLEN];
    struct listing l = {0};
    struct store *st = store_open(path, err, sizeof err);
    double t0;

    if (st == NULL)
        die("store_open", err);
    t0 = now_s();
    if (store_list_ids(st, NULL, on_id, &l, err, sizeof err) < 0)
        die("store_list_ids", err);
    t0 = now_s() - t0;
    store_close(st);
    if (l.n != want || l.unordered) {
        fprintf(stderr, "ingest-bench: listing has %llu ids (want %zu)%s\n",
                (unsigned long long)l.n, want, l.unordered ? ", out of order" : "");
        exit(1);
    }
    return t0 * 1e3;
}

/* Adds `more` unsigned synthetic kind-1 rows, created_at spread over the same range. */
static void top_up(const char *path, size_t more, size_t authors, uint64_t span)
{
    enum { CHUNK = 10000 };
    char err[STORE_ERRLEN];
    char content[] = "ingest-bench synthetic row (unsigned)";
    struct event *evs = xcalloc(CHUNK, sizeof *evs);
    struct event **ptrs = xmalloc(CHUNK * sizeof *ptrs);
    struct store_result *res = xmalloc(CHUNK * sizeof *res);
    uint8_t(*pks)[32] = xmalloc(authors * sizeof *pks);
    uint64_t rng = 0x5eed1ULL;
    struct store *st = store_open(path, err, sizeof err);

    if (st == NULL)
        die("store_open", err);
    for (size_t i = 0; i < authors; i++)
        rand_bytes(&rng, pks[i], 32);
    for (size_t done = 0; done < more;) {
        size_t k = more - done < CHUNK ? more - done : CHUNK;
        for (size_t i = 0; i < k; i++) {
            struct event *ev = &evs[i];
            rand_bytes(&rng, ev->id, 32);
            memcpy(ev->pubkey, pks[splitmix64(&rng) % authors], 32);
            rand_bytes(&rng, ev->sig, 64);
            ev->created_at = BASE_TIME + splitmix64(&rng) % (span ? span : 1);
            ev->kind = 1;
            ev->content = content;
            ev->content_len = sizeof content - 1;
            ptrs[i] = ev;
        }
        if (store_insert_batch(st, ptrs, k, res, err, sizeof err) < 0)
            die("store_insert_batch", err);
        done += k;
    }
    store_close(st);
    free(evs);
    free(ptrs);
    free(res);
    free(pks);
}

/* ---- files ---- */

static void remove_db(const char *path)
{
    static const char *const sfx[] = {"", "-wal", "-shm"};
    char p[4200];

    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s%s", path, sfx[i]);
        unlink(p);
    }
}

static void report(const char *name, size_t n, const struct timing *t, const char *what)
{
    printf("%-10s %12.0f %14.1f   %s\n", name, (double)n / t->wall, t->cpu * 1e6 / (double)n, what);
}

static void usage(FILE *f)
{
    fputs("usage: ingest-bench [-n N] [-l LIST_N] [-a AUTHORS] [-b BATCH] [-d DIR]\n", f);
}

static size_t parse_size(const char *s, const char *what)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v == 0 || v > (1ULL << 32)) {
        fprintf(stderr, "ingest-bench: %s: not a positive number: %s\n", what, s);
        usage(stderr);
        exit(2);
    }
    return (size_t)v;
}

int main(int argc, char **argv)
{
    struct opts o = {.n = 200000, .list_n = 1000000, .authors = 1000, .batch = 20000};
    char tmpl[4096], db1[4200], db2[4200];
    const char *tmp = getenv("TMPDIR");
    char *dir;
    struct event **evs;
    struct timing sig, v1, v2, in1, in2;
    double t0, gen_s, l_small, l_big;
    long rss_gen;
    int c;

    while ((c = getopt(argc, argv, "n:l:a:b:d:h")) != -1) {
        switch (c) {
        case 'n': o.n = parse_size(optarg, "-n"); break;
        case 'l': o.list_n = parse_size(optarg, "-l"); break;
        case 'a': o.authors = parse_size(optarg, "-a"); break;
        case 'b': o.batch = parse_size(optarg, "-b"); break;
        case 'd': o.dir = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    if (o.dir == NULL)
        o.dir = tmp != NULL && *tmp != '\0' ? tmp : "/tmp";
    snprintf(tmpl, sizeof tmpl, "%s/ingest-bench.XXXXXX", o.dir);
    if ((dir = mkdtemp(tmpl)) == NULL)
        die(tmpl, strerror(errno));
    snprintf(bench_dir, sizeof bench_dir, "%s", dir);
    atexit(remove_scratch);
    snprintf(db1, sizeof db1, "%s/single.db", dir);
    snprintf(db2, sizeof db2, "%s/pool.db", dir);

    t0 = now_s();
    evs = generate(&o);
    gen_s = now_s() - t0;
    rss_gen = peak_rss_kb();
    printf("events     %zu signed in memory (%zu authors, %zu per transaction), generated in "
           "%.1f s, untimed\n",
           o.n, o.authors, o.batch, gen_s);
    printf("%-10s %12s %14s   %s\n", "phase", "events/s", "cpu us/event", "what");

    sig_only(evs, o.n, &sig);
    report("sig-only", o.n, &sig, "schnorrsig_verify, keys parsed beforehand, 1 thread");
    verify_phase(evs, o.n, 1, &v1);
    report("verify-1", o.n, &v1, "id + cached key + signature, 1 thread");
    verify_phase(evs, o.n, 2, &v2);
    report("verify-2", o.n, &v2, "the same, 2 threads");
    ingest_single(&o, evs, db1, &in1);
    report("ingest-1", o.n, &in1, "verify + insert into a fresh database, 1 thread");
    remove_db(db1);
    ingest_pool(&o, evs, db2, 2, &in2);
    report("ingest-2", o.n, &in2, "2 verifier threads -> 1 writer thread");
    printf("%-10s %12s %14.1f   %s\n", "", "", in2.writer_cpu * 1e6 / (double)o.n,
           "of which the writer thread");

    l_small = list_ms(db2, o.n);
    printf("list       %zu ids in %.1f ms ((created_at, id) ascending, the signed events)\n", o.n,
           l_small);
    for (size_t i = 0; i < o.n; i++)
        event_free(evs[i]);
    free(evs);
    if (o.list_n > o.n) {
        top_up(db2, o.list_n - o.n, o.authors, o.n / 4 + 1);
        l_big = list_ms(db2, o.list_n);
        printf("list       %zu ids in %.1f ms (%zu signed + %zu unsigned synthetic rows inserted "
               "directly)\n",
               o.list_n, l_big, o.n, o.list_n - o.n);
    } else {
        l_big = l_small;
    }
    remove_db(db2);
    printf("peak RSS   %ld kB (%ld kB after generating the events)\n", peak_rss_kb(), rss_gen);

    /*
     * The goals, by the clock; and by CPU time, which a busy shared machine
     * disturbs much less: the single-threaded ratio is then verify CPU over
     * ingest CPU, and the 2-thread speedup the one two idle cores would give,
     * limited by the total work over 2 cores or by the writer thread alone.
     */
    {
        double cpu1 = in1.cpu / (double)o.n, cpu2 = in2.cpu / (double)o.n;
        double wcpu = in2.writer_cpu / (double)o.n;
        double ideal2 = cpu1 / (cpu2 / 2 > wcpu ? cpu2 / 2 : wcpu);
        printf("goals      wall: ingest-1/verify-1 %.2f (>= 0.75), ingest-2/ingest-1 %.2f "
               "(>= 1.6), list %zu %.0f ms (< 1000)\n",
               v1.wall / in1.wall, in1.wall / in2.wall, o.list_n, l_big);
        printf("goals      cpu:  ingest-1/verify-1 %.2f, ingest-2/ingest-1 on 2 idle cores "
               "%.2f\n",
               v1.cpu / in1.cpu, ideal2);
    }
    return 0;
}
