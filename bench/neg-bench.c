/*
 * neg-bench: one in-memory negentropy session, measured.
 *
 *   bench/neg-bench N DIFF FSL [reference|adaptive] [scattered|tail] [SERVER-FSL]
 *
 * Builds a client and a server storage from N random items (random ids,
 * timestamps spread uniformly over a year, fixed seed): each item is
 * server-only with probability DIFF, client-only with probability DIFF/10,
 * otherwise on both sides ("scattered", the default), or the last DIFF * N
 * items by time are server-only and the rest on both sides ("tail": new
 * events since the last sync). The client splits ranges like the reference
 * implementation (the default) or adaptively (neg_set_adaptive). The server's
 * frame size limit is FSL unless SERVER-FSL is given (strfry's is 500000).
 * Then runs initiate/reconcile to the end and prints one line:
 *
 *   n=N diff=PCT% fsl=LIMIT split=S layout=L rounds=R up_bytes=B down_bytes=B build_ms=X
 *   reconcile_ms=Y peak_rss_kb=Z have=H need=M
 *
 * build_ms covers inserting and sealing both storages; reconcile_ms runs from
 * initiate to done, both sides. A round is one client message answered by the
 * server. have and need count distinct ids. The program exits 1 if they are
 * not the true ones.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "neg.h"
#include "util.h"

#define YEAR_SECONDS 31536000ULL
#define BASE_TIME    1700000000ULL

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

enum side { BOTH, SERVER_ONLY, CLIENT_ONLY };

/* The i-th item of the fixed random sequence: its side, timestamp and id. */
static enum side next_item(uint64_t *state, double diff, int tail_layout, uint64_t *ts,
                           uint8_t id[32])
{
    for (int k = 0; k < 4; k++) {
        uint64_t r = splitmix64(state);
        memcpy(id + 8 * k, &r, 8);
    }
    *ts = BASE_TIME + splitmix64(state) % YEAR_SECONDS;
    double u = (double)(splitmix64(state) >> 11) / (double)(1ULL << 53);
    if (tail_layout)
        return *ts >= BASE_TIME + (uint64_t)((1 - diff) * YEAR_SECONDS) ? SERVER_ONLY : BOTH;
    if (u < diff)
        return SERVER_ONLY;
    if (u < diff + diff / 10)
        return CLIENT_ONLY;
    return BOTH;
}

static int cmp_id(const void *a, const void *b)
{
    return memcmp(a, b, NEG_ID_SIZE);
}

/*
 * With a frame size limit the protocol may report an id in two rounds (the
 * reference does the same); a caller keeps a set, so count distinct ids.
 */
static size_t count_distinct(struct neg_ids *ids)
{
    if (ids->n == 0)
        return 0;
    qsort(ids->ids, ids->n, NEG_ID_SIZE, cmp_id);
    size_t m = 1;
    for (size_t i = 1; i < ids->n; i++)
        m += memcmp(ids->ids[i - 1], ids->ids[i], NEG_ID_SIZE) != 0;
    return m;
}

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void fail(const char *what, const char *err)
{
    fprintf(stderr, "neg-bench: %s: %s\n", what, err);
    exit(1);
}

int main(int argc, char **argv)
{
    char err[NEG_ERRLEN];
    if (argc < 4 || argc > 7) {
        fprintf(stderr, "usage: neg-bench N DIFF FSL [reference|adaptive] [scattered|tail] "
                        "[SERVER-FSL]\n");
        return 2;
    }
    int adaptive = 0, tail_layout = 0;
    if (argc > 4 && strcmp(argv[4], "adaptive") == 0)
        adaptive = 1;
    else if (argc > 4 && strcmp(argv[4], "reference") != 0)
        return fprintf(stderr, "neg-bench: bad split (reference or adaptive)\n"), 2;
    if (argc > 5 && strcmp(argv[5], "tail") == 0)
        tail_layout = 1;
    else if (argc > 5 && strcmp(argv[5], "scattered") != 0)
        return fprintf(stderr, "neg-bench: bad layout (scattered or tail)\n"), 2;
    char *end;
    errno = 0;
    unsigned long long n = strtoull(argv[1], &end, 10);
    if (errno || *end)
        return fprintf(stderr, "neg-bench: bad N\n"), 2;
    double diff = strtod(argv[2], &end);
    if (*end || diff < 0 || diff > 1)
        return fprintf(stderr, "neg-bench: bad DIFF (0..1)\n"), 2;
    unsigned long long fsl = strtoull(argv[3], &end, 10);
    if (*end)
        return fprintf(stderr, "neg-bench: bad FSL\n"), 2;
    unsigned long long server_fsl = fsl;
    if (argc > 6) {
        errno = 0;
        server_fsl = strtoull(argv[6], &end, 10);
        if (errno || *end)
            return fprintf(stderr, "neg-bench: bad SERVER-FSL\n"), 2;
    }

    /* First pass: count each side so the storages are sized exactly. */
    uint64_t state = 42, ts;
    uint8_t id[32];
    size_t nclient = 0, nserver = 0, true_have = 0, true_need = 0;
    for (unsigned long long i = 0; i < n; i++) {
        enum side s = next_item(&state, diff, tail_layout, &ts, id);
        nclient += s != SERVER_ONLY;
        nserver += s != CLIENT_ONLY;
        true_have += s == CLIENT_ONLY;
        true_need += s == SERVER_ONLY;
    }

    double t0 = now_ms();
    struct neg_storage *client = neg_storage_new(), *server = neg_storage_new();
    neg_storage_reserve(client, nclient);
    neg_storage_reserve(server, nserver);
    state = 42;
    for (unsigned long long i = 0; i < n; i++) {
        enum side s = next_item(&state, diff, tail_layout, &ts, id);
        if (s != SERVER_ONLY && neg_storage_insert(client, ts, id, err, sizeof(err)) < 0)
            fail("insert", err);
        if (s != CLIENT_ONLY && neg_storage_insert(server, ts, id, err, sizeof(err)) < 0)
            fail("insert", err);
    }
    if (neg_storage_seal(client, err, sizeof(err)) < 0 ||
        neg_storage_seal(server, err, sizeof(err)) < 0)
        fail("seal", err);
    double t1 = now_ms();

    struct neg *c = neg_new(client, fsl, err, sizeof(err));
    struct neg *s = c ? neg_new(server, server_fsl, err, sizeof(err)) : NULL;
    if (s == NULL)
        fail("session", err);
    neg_set_adaptive(c, adaptive);
    struct buf msg = {0}, reply = {0};
    struct neg_ids have = {0}, need = {0};
    unsigned long long up = 0, down = 0, rounds = 0;
    if (neg_initiate(c, &msg, err, sizeof(err)) < 0)
        fail("initiate", err);
    while (msg.len != 0) {
        up += msg.len;
        if (neg_reconcile(s, msg.data, msg.len, &reply, NULL, NULL, err, sizeof(err)) < 0)
            fail("server", err);
        down += reply.len;
        rounds++;
        if (neg_reconcile(c, reply.data, reply.len, &msg, &have, &need, err, sizeof(err)) < 0)
            fail("client", err);
    }
    double t2 = now_ms();

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    size_t nhave = count_distinct(&have), nneed = count_distinct(&need);
    printf(
        "n=%llu diff=%g%% fsl=%llu split=%s layout=%s rounds=%llu up_bytes=%llu down_bytes=%llu build_ms=%.0f "
        "reconcile_ms=%.0f peak_rss_kb=%ld have=%zu need=%zu\n",
        n, diff * 100, fsl, adaptive ? "adaptive" : "reference", tail_layout ? "tail" : "scattered",
        rounds, up, down, t1 - t0, t2 - t1, ru.ru_maxrss, nhave, nneed);

    int ok = nhave == true_have && nneed == true_need;
    if (!ok)
        fprintf(stderr,
                "neg-bench: wrong result: have %zu (expected %zu), need %zu (expected %zu)\n",
                nhave, true_have, nneed, true_need);
    buf_free(&msg);
    buf_free(&reply);
    neg_ids_free(&have);
    neg_ids_free(&need);
    neg_free(c);
    neg_free(s);
    neg_storage_free(client);
    neg_storage_free(server);
    return ok ? 0 : 1;
}
