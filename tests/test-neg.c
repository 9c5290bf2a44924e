/*
 * test-neg: unit tests of the negentropy core — encodings, fingerprints,
 * whole sessions over edge-case sets, frame limits, and every kind of
 * malformed message a peer could send.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "neg.h"
#include "testutil.h"
#include "util.h"

static char err[NEG_ERRLEN];

/* ---- encodings ---------------------------------------------------------- */

static void check_varint(uint64_t v, const char *hex)
{
    uint8_t out[10], want[10];
    size_t n = neg_varint_encode(v, out);
    CHECK(hex_decode(hex, strlen(hex), want, strlen(hex) / 2, 1) == 0);
    CHECK_MSG(n == strlen(hex) / 2 && memcmp(out, want, n) == 0, "varint %llu",
              (unsigned long long)v);

    const uint8_t *p = out;
    uint64_t back = 0;
    CHECK(neg_varint_decode(&p, out + n, &back) == 0);
    CHECK(back == v && p == out + n);
    /* Every shorter prefix is truncated. */
    for (size_t k = 0; k < n; k++) {
        p = out;
        CHECK(neg_varint_decode(&p, out + k, &back) < 0);
    }
}

static void test_varints(void)
{
    check_varint(0, "00");
    check_varint(1, "01");
    check_varint(127, "7f");
    check_varint(128, "8100");
    check_varint(255, "817f");
    check_varint(16383, "ff7f");
    check_varint(16384, "818000");
    check_varint(UINT64_MAX, "81ffffffffffffffff7f");

    /* 2^64 does not fit: rejected, not wrapped. */
    uint8_t big[10] = {0x82, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00};
    const uint8_t *p = big;
    uint64_t v;
    CHECK(neg_varint_decode(&p, big + sizeof(big), &v) < 0);
    /* Eleven continuation bytes: more than 64 bits whatever the digits. */
    uint8_t longer[11];
    memset(longer, 0x80, sizeof(longer));
    longer[10] = 0x01;
    p = longer;
    CHECK(neg_varint_decode(&p, longer + sizeof(longer), &v) < 0);
}

/* ---- fingerprints ------------------------------------------------------- */

/* The fingerprint the slow, obvious way: byte-wise addition, then SHA-256. */
static void naive_fingerprint(const struct neg_storage *st, size_t lo, size_t hi, uint8_t out[16])
{
    uint8_t sum[32] = {0};
    for (size_t i = lo; i < hi; i++) {
        const uint8_t *id = neg_storage_item(st, i)->id;
        unsigned carry = 0;
        for (int b = 0; b < 32; b++) {
            unsigned s = sum[b] + id[b] + carry;
            sum[b] = (uint8_t)s;
            carry = s >> 8;
        }
    }
    uint8_t input[42], digest[32];
    memcpy(input, sum, 32);
    size_t len = 32 + neg_varint_encode(hi - lo, input + 32);
    SHA256(input, len, digest);
    memcpy(out, digest, 16);
}

static struct neg_storage *random_storage(uint64_t seed, size_t n, uint64_t ts_range)
{
    struct neg_storage *st = neg_storage_new();
    uint64_t state = seed;
    for (size_t i = 0; i < n; i++) {
        uint8_t id[32];
        test_rand_bytes(&state, id, 32);
        CHECK(neg_storage_insert(st, 1000 + test_rand(&state) % ts_range, id, err, sizeof(err)) ==
              0);
    }
    CHECK(neg_storage_seal(st, err, sizeof(err)) == 0);
    return st;
}

static void test_fingerprints(void)
{
    uint8_t fp[16], want[16];

    struct neg_storage *empty = neg_storage_new();
    CHECK(neg_storage_seal(empty, err, sizeof(err)) == 0);
    neg_storage_fingerprint(empty, 0, 0, fp);
    CHECK(hex_decode("7f9c9e31ac8256ca2f258583df262dbc", 32, want, 16, 1) == 0);
    CHECK(memcmp(fp, want, 16) == 0);
    neg_storage_free(empty);

    /* 0x0101..01 + 0xffff..ff wraps to 0x0101..00 (mod 2^256), count 2. */
    struct neg_storage *two = neg_storage_new();
    uint8_t a[32], b[32];
    memset(a, 0x01, 32);
    memset(b, 0xff, 32);
    CHECK(neg_storage_insert(two, 5, a, err, sizeof(err)) == 0);
    CHECK(neg_storage_insert(two, 7, b, err, sizeof(err)) == 0);
    CHECK(neg_storage_seal(two, err, sizeof(err)) == 0);
    neg_storage_fingerprint(two, 0, 2, fp);
    CHECK(hex_decode("a45b81d5bd8f90ade27ed6ec281d7f3e", 32, want, 16, 1) == 0);
    CHECK(memcmp(fp, want, 16) == 0);
    neg_storage_free(two);

    /* The cumulative-sum index agrees with the obvious sum on every kind of range. */
    struct neg_storage *st = random_storage(7, 1000, 50);
    uint64_t state = 99;
    for (int k = 0; k < 3000; k++) {
        size_t lo = test_rand(&state) % 1001, hi = test_rand(&state) % 1001;
        if (lo > hi) {
            size_t t = lo;
            lo = hi;
            hi = t;
        }
        if (k < 40) { /* near the stride boundaries */
            lo = (size_t)k;
            hi = 1000 - (size_t)k / 2;
        }
        neg_storage_fingerprint(st, lo, hi, fp);
        naive_fingerprint(st, lo, hi, want);
        CHECK_MSG(memcmp(fp, want, 16) == 0, "range [%zu, %zu)", lo, hi);
    }
    neg_storage_free(st);
}

static void test_storage_errors(void)
{
    struct neg_storage *st = neg_storage_new();
    uint8_t id[32] = {1};
    CHECK(neg_storage_insert(st, UINT64_MAX, id, err, sizeof(err)) < 0);
    CHECK(neg_storage_insert(st, 10, id, err, sizeof(err)) == 0);
    CHECK(neg_storage_insert(st, 10, id, err, sizeof(err)) == 0);
    CHECK(neg_storage_seal(st, err, sizeof(err)) < 0);
    CHECK(strstr(err, "duplicate") != NULL);
    neg_storage_free(st);

    /* A duplicate that only sorting brings next to its twin. */
    st = neg_storage_new();
    CHECK(neg_storage_insert(st, 5, id, err, sizeof(err)) == 0);
    CHECK(neg_storage_insert(st, 9, id, err, sizeof(err)) == 0);
    CHECK(neg_storage_insert(st, 7, id, err, sizeof(err)) == 0);
    CHECK(neg_storage_insert(st, 5, id, err, sizeof(err)) == 0);
    CHECK(neg_storage_seal(st, err, sizeof(err)) < 0);
    CHECK(strstr(err, "duplicate item 5,") != NULL);
    neg_storage_free(st);

    /* Already in order (as store listings come): sealed as is. */
    st = neg_storage_new();
    for (uint64_t t = 1; t <= 100; t++)
        CHECK(neg_storage_insert(st, t / 3, (uint8_t[32]){(uint8_t)t}, err, sizeof(err)) == 0);
    CHECK(neg_storage_seal(st, err, sizeof(err)) == 0);
    CHECK(neg_storage_size(st) == 100 && neg_storage_item(st, 99)->timestamp == 33);
    neg_storage_free(st);

    st = neg_storage_new();
    CHECK(neg_new(st, 0, err, sizeof(err)) == NULL); /* not sealed */
    CHECK(neg_storage_insert(st, 3, id, err, sizeof(err)) == 0);
    id[0] = 0;
    CHECK(neg_storage_insert(st, 3, id, err, sizeof(err)) == 0);
    CHECK(neg_storage_insert(st, 1, id, err, sizeof(err)) == 0);
    CHECK(neg_storage_seal(st, err, sizeof(err)) == 0);
    CHECK(neg_storage_item(st, 0)->timestamp == 1);
    CHECK(neg_storage_item(st, 1)->timestamp == 3 && neg_storage_item(st, 1)->id[0] == 0);
    CHECK(neg_storage_item(st, 2)->id[0] == 1);
    CHECK(neg_storage_insert(st, 4, id, err, sizeof(err)) < 0); /* sealed */
    CHECK(neg_new(st, 4095, err, sizeof(err)) == NULL);
    struct neg *n = neg_new(st, 4096, err, sizeof(err));
    CHECK(n != NULL);
    struct buf out = {0};
    CHECK(neg_initiate(n, &out, err, sizeof(err)) == 0);
    CHECK(neg_initiate(n, &out, err, sizeof(err)) < 0); /* twice */
    buf_free(&out);
    neg_free(n);
    neg_storage_free(st);
}

/* ---- bounds ------------------------------------------------------------- */

/*
 * 32 items on one timestamp make 16 buckets of 2; the bound between items 1
 * and 2 is their shared prefix plus one byte. Check its exact encoding for
 * every prefix length from 1 to 32, and a timestamp change (length 0).
 */
static void test_bound_prefixes(void)
{
    for (int shared = -1; shared < 32; shared++) {
        struct neg_storage *st = neg_storage_new();
        uint8_t ids[32][32];
        for (int i = 0; i < 32; i++) {
            memset(ids[i], 0, 32);
            ids[i][0] = (uint8_t)(i * 4);
        }
        /* items 1 and 2 share `shared` bytes, then differ */
        if (shared >= 0) {
            memset(ids[1], 0x04, 32);
            memset(ids[2], 0x04, 32);
            if (shared < 32)
                ids[2][shared] = 0x05;
            if (shared == 31)
                ids[1][31] = 0x04;
        }
        for (int i = 0; i < 32; i++) {
            uint64_t ts = (shared < 0 && i >= 2) ? 101 : 100;
            CHECK(neg_storage_insert(st, ts, ids[i], err, sizeof(err)) == 0);
        }
        CHECK(neg_storage_seal(st, err, sizeof(err)) == 0);
        struct neg *n = neg_new(st, 0, err, sizeof(err));
        struct buf out = {0};
        CHECK(neg_initiate(n, &out, err, sizeof(err)) == 0);

        const struct neg_item *i1 = neg_storage_item(st, 1), *i2 = neg_storage_item(st, 2);
        size_t want_len = 0;
        if (i1->timestamp == i2->timestamp) {
            while (i1->id[want_len] == i2->id[want_len])
                want_len++;
            want_len++;
        }
        CHECK_MSG(shared < 0 ? want_len == 0 : want_len == (size_t)shared + 1, "shared %d", shared);
        /* 0x61, timestamp 1+ts, prefix length, prefix, mode 1, fingerprint */
        uint8_t want[64];
        size_t w = 0;
        want[w++] = 0x61;
        w += neg_varint_encode(i2->timestamp + 1, want + w);
        want[w++] = (uint8_t)want_len;
        memcpy(want + w, i2->id, want_len);
        w += want_len;
        want[w++] = 0x01;
        neg_storage_fingerprint(st, 0, 2, want + w);
        w += 16;
        CHECK_MSG(out.len > w && memcmp(out.data, want, w) == 0, "bound prefix %zu", want_len);
        buf_free(&out);
        neg_free(n);
        neg_storage_free(st);
    }
}

/* ---- whole sessions ----------------------------------------------------- */

static int cmp_id(const void *a, const void *b)
{
    return memcmp(a, b, 32);
}

/* Sorts and removes repeats (frame limits can report an id twice). */
static void ids_normalize(struct neg_ids *ids)
{
    if (ids->n == 0)
        return;
    qsort(ids->ids, ids->n, 32, cmp_id);
    size_t m = 1;
    for (size_t i = 1; i < ids->n; i++)
        if (memcmp(ids->ids[m - 1], ids->ids[i], 32) != 0)
            memcpy(ids->ids[m++], ids->ids[i], 32);
    ids->n = m;
}

struct scenario {
    const char *name;
    size_t n;
    double both, client_only; /* the rest is server-only */
    uint64_t ts_range;        /* 1 = all items on one timestamp */
    uint64_t fsl;
    uint64_t server_fsl; /* 0: the same as fsl */
};

/* Runs a session to the end and checks have/need; returns the bytes both ways. */
static size_t run_scenario(const struct scenario *sc, uint64_t seed, int adaptive)
{
    struct neg_storage *cst = neg_storage_new(), *sst = neg_storage_new();
    struct neg_ids want_have = {0}, want_need = {0};
    uint64_t state = seed;
    for (size_t i = 0; i < sc->n; i++) {
        uint8_t id[32];
        test_rand_bytes(&state, id, 32);
        uint64_t ts = 1700000000 + test_rand(&state) % sc->ts_range;
        double u = (double)(test_rand(&state) >> 11) / 9007199254740992.0;
        int in_client = u < sc->both + sc->client_only;
        int in_server = u < sc->both || u >= sc->both + sc->client_only;
        if (in_client)
            CHECK(neg_storage_insert(cst, ts, id, err, sizeof(err)) == 0);
        if (in_server)
            CHECK(neg_storage_insert(sst, ts, id, err, sizeof(err)) == 0);
        if (in_client && !in_server) {
            want_have.n++;
            want_have.ids = xreallocarray(want_have.ids, want_have.n, 32);
            memcpy(want_have.ids[want_have.n - 1], id, 32);
        }
        if (in_server && !in_client) {
            want_need.n++;
            want_need.ids = xreallocarray(want_need.ids, want_need.n, 32);
            memcpy(want_need.ids[want_need.n - 1], id, 32);
        }
    }
    CHECK(neg_storage_seal(cst, err, sizeof(err)) == 0);
    CHECK(neg_storage_seal(sst, err, sizeof(err)) == 0);

    uint64_t server_fsl = sc->server_fsl ? sc->server_fsl : sc->fsl;
    struct neg *c = neg_new(cst, sc->fsl, err, sizeof(err));
    struct neg *s = neg_new(sst, server_fsl, err, sizeof(err));
    struct buf msg = {0}, reply = {0};
    struct neg_ids have = {0}, need = {0};
    int rounds = 0, ok = 1;
    size_t bytes = 0;
    const char *split = adaptive ? " (adaptive)" : ""; /* for the messages */
    neg_set_adaptive(c, adaptive);
    CHECK(neg_initiate(c, &msg, err, sizeof(err)) == 0);
    while (msg.len != 0 && rounds < 100000) {
        bytes += msg.len;
        if (sc->fsl)
            CHECK_MSG(msg.len <= sc->fsl, "%s%s: client message %zu bytes", sc->name, split,
                      msg.len);
        if (neg_reconcile(s, msg.data, msg.len, &reply, NULL, NULL, err, sizeof(err)) < 0) {
            CHECK_MSG(0, "%s%s: server: %s", sc->name, split, err);
            ok = 0;
            break;
        }
        bytes += reply.len;
        if (server_fsl)
            CHECK_MSG(reply.len <= server_fsl, "%s%s: server message %zu bytes", sc->name, split,
                      reply.len);
        if (neg_reconcile(c, reply.data, reply.len, &msg, &have, &need, err, sizeof(err)) < 0) {
            CHECK_MSG(0, "%s%s: client: %s", sc->name, split, err);
            ok = 0;
            break;
        }
        rounds++;
    }
    CHECK_MSG(msg.len == 0, "%s%s: no end after %d rounds", sc->name, split, rounds);
    if (ok) {
        ids_normalize(&have);
        ids_normalize(&need);
        ids_normalize(&want_have);
        ids_normalize(&want_need);
        CHECK_MSG(have.n == want_have.n &&
                      (have.n == 0 || memcmp(have.ids, want_have.ids, 32 * have.n) == 0),
                  "%s%s: have %zu, want %zu", sc->name, split, have.n, want_have.n);
        CHECK_MSG(need.n == want_need.n &&
                      (need.n == 0 || memcmp(need.ids, want_need.ids, 32 * need.n) == 0),
                  "%s%s: need %zu, want %zu", sc->name, split, need.n, want_need.n);
    }
    buf_free(&msg);
    buf_free(&reply);
    neg_ids_free(&have);
    neg_ids_free(&need);
    neg_ids_free(&want_have);
    neg_ids_free(&want_need);
    neg_free(c);
    neg_free(s);
    neg_storage_free(cst);
    neg_storage_free(sst);
    return bytes;
}

static void test_sessions(void)
{
    static const struct scenario scenarios[] = {
        {"both empty", 0, 0, 0, 1000, 0, 0},
        {"client empty", 500, 0, 0, 1000, 0, 0},
        {"server empty", 500, 0, 1, 1000, 0, 0},
        {"one item on the server", 1, 0, 0, 1000, 0, 0},
        {"one item on the client", 1, 0, 1, 1000, 0, 0},
        {"one item on both", 1, 1, 0, 1000, 0, 0},
        {"identical sets", 5000, 1, 0, 100000, 0, 0},
        {"disjoint sets", 3000, 0, 0.5, 100000, 0, 0},
        {"small difference", 10000, 0.98, 0.01, 10000000, 0, 0},
        {"all on one timestamp", 4000, 0.8, 0.1, 1, 0, 0},
        {"all on one timestamp, framed", 4000, 0.5, 0.25, 1, 4096, 0},
        {"large difference, framed", 20000, 0.5, 0.25, 10000000, 4096, 0},
        {"small difference, framed", 20000, 0.95, 0.02, 10000000, 60000, 0},
        {"disjoint, framed", 10000, 0, 0.5, 100, 4096, 0},
        {"90 % held, scattered", 30000, 0.89, 0.01, 10000000, 0, 0},
        {"90 % held, framed", 30000, 0.89, 0.01, 10000000, 60000, 0},
        {"90 % held, small frames", 30000, 0.89, 0.01, 10000000, 4096, 0},
        {"90 % held, server frames larger", 30000, 0.89, 0.01, 10000000, 60000, 500000},
        {"90 % held, server frames smaller", 30000, 0.89, 0.01, 10000000, 60000, 4096},
        {"99 % held, framed", 30000, 0.99, 0.001, 10000000, 60000, 0},
        {"70 % held, framed", 20000, 0.7, 0.05, 10000000, 60000, 0},
        {"90 % held, few timestamps", 20000, 0.89, 0.01, 50, 4096, 0},
    };
    /* Every scenario with the reference split and with the adaptive one. */
    for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++) {
        size_t ref = run_scenario(&scenarios[i], 1000 + i, 0);
        size_t ada = run_scenario(&scenarios[i], 1000 + i, 1);
        /* Where differences are scattered but not the rule, adaptive must pay off. */
        if (strncmp(scenarios[i].name, "90 % held", 9) == 0 ||
            strncmp(scenarios[i].name, "99 % held", 9) == 0)
            CHECK_MSG(ada < ref, "%s: adaptive %zu bytes, reference %zu", scenarios[i].name, ada,
                      ref);
    }
}

/* ---- malformed messages ------------------------------------------------- */

static struct neg_storage *bad_st;

/* Feeds hex to a fresh responder and initiator; both must refuse it, with a message. */
static void expect_reject(const char *hex, const char *why)
{
    size_t len = strlen(hex) / 2;
    uint8_t *msg = xmalloc(len + 1);
    CHECK(hex_decode(hex, strlen(hex), msg, len, 1) == 0);
    for (int role = 0; role < 2; role++) {
        struct neg *n = neg_new(bad_st, 0, err, sizeof(err));
        struct buf out = {0};
        struct neg_ids have = {0}, need = {0};
        if (role == 1)
            CHECK(neg_initiate(n, &out, err, sizeof(err)) == 0);
        err[0] = '\0';
        int rc = neg_reconcile(n, msg, len, &out, &have, &need, err, sizeof(err));
        CHECK_MSG(rc < 0 && err[0] != '\0', "%s (%s) accepted", why,
                  role ? "initiator" : "responder");
        buf_free(&out);
        neg_ids_free(&have);
        neg_ids_free(&need);
        neg_free(n);
    }
    free(msg);
}

static void test_malformed(void)
{
    bad_st = random_storage(5, 100, 10);

    expect_reject("", "empty message");
    expect_reject("00", "version byte 0x00");
    expect_reject("ff", "version byte 0xff");
    expect_reject("61ff", "truncated timestamp varint");
    expect_reject("6101", "missing id length");
    expect_reject("610181", "truncated id length varint");
    expect_reject("610121", "id prefix of 33 bytes");
    expect_reject("610104aabb", "truncated id prefix");
    expect_reject("610100", "missing mode");
    expect_reject("61010003", "unknown mode 3");
    expect_reject("6101008180808080808080808001", "mode varint over 64 bits");
    expect_reject("610100010102", "truncated fingerprint");
    expect_reject("61010002", "missing IdList length");
    expect_reject("6101000202aa", "IdList count larger than the message");
    expect_reject("610100028180808080808080808000", "IdList count over 64 bits");
    expect_reject("61010002ffffffffffffffff7f", "IdList count 2^63-ish");
    /* id list of 1 with 31 of its 32 bytes */
    char truncated_id[128] = "6101000201";
    for (int i = 0; i < 31; i++)
        strcat(truncated_id, "ab");
    expect_reject(truncated_id, "truncated id");
    /* bound (ts 5, prefix 01) then bound (ts 5, prefix 00): backwards */
    expect_reject("6106010100"
                  "01010000",
                  "bounds going backwards");
    expect_reject("61"
                  "82808080808080808080800001",
                  "timestamp varint over 64 bits");

    /* Another protocol version: a responder answers with the one it speaks. */
    struct neg *n = neg_new(bad_st, 0, err, sizeof(err));
    struct buf out = {0};
    uint8_t v2[] = {0x62, 0x00, 0x00, 0x01};
    CHECK(neg_reconcile(n, v2, sizeof(v2), &out, NULL, NULL, err, sizeof(err)) == 0);
    CHECK(out.len == 1 && out.data[0] == 0x61);
    uint8_t v0[] = {0x60};
    CHECK(neg_reconcile(n, v0, 1, &out, NULL, NULL, err, sizeof(err)) == 0);
    CHECK(out.len == 1 && out.data[0] == 0x61);
    neg_free(n);
    /* ...but an initiator offered another version fails. */
    n = neg_new(bad_st, 0, err, sizeof(err));
    struct neg_ids have = {0}, need = {0};
    CHECK(neg_initiate(n, &out, err, sizeof(err)) == 0);
    CHECK(neg_reconcile(n, v2, sizeof(v2), &out, &have, &need, err, sizeof(err)) < 0);
    neg_free(n);

    /* A bare version byte is a valid (empty) message: the responder says nothing more. */
    n = neg_new(bad_st, 0, err, sizeof(err));
    uint8_t bare[] = {0x61};
    CHECK(neg_reconcile(n, bare, 1, &out, NULL, NULL, err, sizeof(err)) == 0);
    CHECK(out.len == 1);
    /* Equal bounds in a row are not "backwards". */
    uint8_t same[] = {0x61, 0x06, 0x00, 0x00, 0x01, 0x00, 0x00};
    CHECK(neg_reconcile(n, same, sizeof(same), &out, NULL, NULL, err, sizeof(err)) == 0);
    neg_free(n);

    buf_free(&out);
    neg_ids_free(&have);
    neg_ids_free(&need);
    neg_storage_free(bad_st);
}

int main(void)
{
    test_varints();
    test_fingerprints();
    test_storage_errors();
    test_bound_prefixes();
    test_sessions();
    test_malformed();
    return test_summary("test-neg");
}
