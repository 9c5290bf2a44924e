/*
 * store-bench: the event store at scale, measured.
 *
 *   bench/store-bench [N [DBFILE]]
 *
 * Inserts N synthetic kind-1 events (default 1 000 000) through
 * store_insert_batch, in batches of 10 000, into DBFILE (default: a fresh
 * file in $TMPDIR, removed afterwards). The events are built by hand with
 * random ids, 1 000 random pubkeys and created_at spread over a year, and
 * are NOT signed: signing and verifying a million events would measure
 * libsecp256k1, not the store, and the store trusts its caller to have
 * verified (see store.h). Then it reopens the database and times what the
 * sync engine does with it, printing one line:
 *
 *   n=N insert_s=S insert_rate=R/s list_ms=X count_ms=C newest500_ms=Q
 *   db_mb=M peak_rss_kb=K
 *
 * list_ms is store_list_ids over every event (the negentropy listing);
 * count_ms a store_count of everything; newest500_ms a store_query of the
 * 500 newest. Exits 1 if the listing is not complete and strictly ascending.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "event.h"
#include "filter.h"
#include "store.h"
#include "util.h"

#define BATCH        10000
#define NPUBKEYS     1000
#define BASE_TIME    1700000000ULL
#define YEAR_SECONDS 31536000ULL

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

static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

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

static int on_json(void *ctx, const char *json, size_t len)
{
    (void)json;
    (void)len;
    (*(uint64_t *)ctx)++;
    return 0;
}

int main(int argc, char **argv)
{
    uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 1000000;
    char tmpl[4096], dbfile[4200], err[STORE_ERRLEN];
    const char *path;
    char *tmpdir = NULL;
    uint64_t seed = 0x5eedULL, got = 0, count = 0;
    uint8_t(*pubkeys)[32] = xmalloc(NPUBKEYS * sizeof *pubkeys);
    struct event *evs = xcalloc(BATCH, sizeof *evs);
    struct event **ptrs = xmalloc(BATCH * sizeof *ptrs);
    struct store_result *res = xmalloc(BATCH * sizeof *res);
    struct listing l = {0};
    struct filter *newest;
    struct rusage ru;
    struct stat sb;
    struct store *st;
    double t0, insert_ms, list_ms, count_ms, query_ms;
    char content[] = "store-bench synthetic event";

    if (n == 0) {
        fprintf(stderr, "usage: store-bench [N [DBFILE]]\n");
        return 2;
    }
    if (argc > 2) {
        path = argv[2];
    } else {
        const char *t = getenv("TMPDIR");
        snprintf(tmpl, sizeof tmpl, "%s/store-bench.XXXXXX", t != NULL && *t ? t : "/tmp");
        if ((tmpdir = mkdtemp(tmpl)) == NULL) {
            perror("store-bench: mkdtemp");
            return 1;
        }
        snprintf(dbfile, sizeof dbfile, "%s/bench.db", tmpdir);
        path = dbfile;
    }
    if ((st = store_open(path, err, sizeof err)) == NULL) {
        fprintf(stderr, "store-bench: %s\n", err);
        return 1;
    }

    for (int i = 0; i < NPUBKEYS; i++)
        rand_bytes(&seed, pubkeys[i], 32);
    t0 = now_ms();
    for (uint64_t done = 0; done < n;) {
        size_t k = n - done < BATCH ? (size_t)(n - done) : BATCH;
        for (size_t i = 0; i < k; i++) {
            struct event *ev = &evs[i];
            rand_bytes(&seed, ev->id, 32);
            memcpy(ev->pubkey, pubkeys[splitmix64(&seed) % NPUBKEYS], 32);
            rand_bytes(&seed, ev->sig, 64);
            ev->created_at = BASE_TIME + splitmix64(&seed) % YEAR_SECONDS;
            ev->kind = 1;
            ev->content = content;
            ev->content_len = sizeof content - 1;
            ptrs[i] = ev;
        }
        if (store_insert_batch(st, ptrs, k, res, err, sizeof err) < 0) {
            fprintf(stderr, "store-bench: %s\n", err);
            return 1;
        }
        done += k;
    }
    insert_ms = now_ms() - t0;
    store_close(st);

    if ((st = store_open(path, err, sizeof err)) == NULL) {
        fprintf(stderr, "store-bench: %s\n", err);
        return 1;
    }
    t0 = now_ms();
    if (store_list_ids(st, NULL, on_id, &l, err, sizeof err) < 0) {
        fprintf(stderr, "store-bench: %s\n", err);
        return 1;
    }
    list_ms = now_ms() - t0;

    t0 = now_ms();
    if (store_count(st, NULL, &count, err, sizeof err) < 0) {
        fprintf(stderr, "store-bench: %s\n", err);
        return 1;
    }
    count_ms = now_ms() - t0;

    newest = filter_new();
    newest->has_limit = 1;
    newest->limit = 500;
    t0 = now_ms();
    if (store_query(st, newest, STORE_NEWEST_FIRST, on_json, &got, err, sizeof err) < 0) {
        fprintf(stderr, "store-bench: %s\n", err);
        return 1;
    }
    query_ms = now_ms() - t0;
    filter_free(newest);
    store_close(st);

    getrusage(RUSAGE_SELF, &ru);
    if (stat(path, &sb) < 0)
        sb.st_size = 0;
    printf("n=%llu insert_s=%.1f insert_rate=%.0f/s list_ms=%.0f count_ms=%.0f newest500_ms=%.1f "
           "db_mb=%.0f peak_rss_kb=%ld\n",
           (unsigned long long)n, insert_ms / 1e3, (double)n / (insert_ms / 1e3), list_ms, count_ms,
           query_ms, (double)sb.st_size / (1 << 20), ru.ru_maxrss);

    if (tmpdir != NULL) {
        char p[sizeof dbfile + 8];
        unlink(path);
        snprintf(p, sizeof p, "%s-wal", path);
        unlink(p);
        snprintf(p, sizeof p, "%s-shm", path);
        unlink(p);
        rmdir(tmpdir);
    }
    free(pubkeys);
    free(evs);
    free(ptrs);
    free(res);
    if (l.n != n || count != n || got != (n < 500 ? n : 500) || l.unordered) {
        fprintf(stderr, "store-bench: listing wrong: %llu ids (want %llu), count %llu, %s\n",
                (unsigned long long)l.n, (unsigned long long)n, (unsigned long long)count,
                l.unordered ? "out of order" : "in order");
        return 1;
    }
    return 0;
}
