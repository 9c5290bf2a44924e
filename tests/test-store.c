/*
 * test-store: the event store.
 *
 *   - relay semantics (replaceable, addressable, ephemeral, NIP-09
 *     deletions): each scenario is inserted in every order of its events,
 *     one event per transaction and all in one, and must always end with
 *     the same set; re-inserting everything must change nothing;
 *   - the outcome reported for each event in a fixed order;
 *   - queries: order, limit, count, tags, get by id, and the query plans
 *     (the full listing is a covering index scan with no sort);
 *   - migrations: fresh, reopen, a database from a newer negsync, and a
 *     database written at schema version 1 (tests/store-v1.sql);
 *   - threads: readers with their own connections while two writers write,
 *     all opening a fresh file at the same moment; no error may surface;
 *   - store_open_readonly: never creates or writes (an older schema is migrated
 *     where the file can be written); store_open_unchanged does not migrate.
 */
#include "config.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "event.h"
#include "filter.h"
#include "store.h"
#include "testutil.h"
#include "util.h"

#define MAXEV 6

/* ---- building events ---- */

static void seckey_of(int who, uint8_t sk[32])
{
    memset(sk, 0, 32);
    sk[30] = 0x42;
    sk[31] = (uint8_t)(who + 1);
}

static void hex_of(const uint8_t *b, char out[65])
{
    hex_encode(b, 32, out);
}

static void pubkey_hex(int who, char out[65])
{
    uint8_t sk[32];
    struct event *ev;

    seckey_of(who, sk);
    ev = event_sign(sk, 1, 1, NULL, NULL, 0, "");
    hex_of(ev->pubkey, out);
    event_free(ev);
}

/*
 * A signed event by author `who`. tags: up to 3 (name, value) pairs as
 * consecutive strings, NULL-terminated; a value of "-" makes a tag with a
 * name only.
 */
static struct event *mk(int who, uint64_t at, uint32_t kind, const char *content,
                        const char *const *tv)
{
    const char *fields[3][2];
    const char *const *tags[3];
    size_t lens[3], n = 0;
    uint8_t sk[32];
    struct event *ev;

    for (; tv != NULL && tv[2 * n] != NULL && n < 3; n++) {
        fields[n][0] = tv[2 * n];
        fields[n][1] = tv[2 * n + 1];
        tags[n] = fields[n];
        lens[n] = strcmp(tv[2 * n + 1], "-") == 0 ? 1 : 2;
    }
    seckey_of(who, sk);
    ev = event_sign(sk, at, kind, n ? tags : NULL, n ? lens : NULL, n, content);
    if (ev == NULL) {
        fprintf(stderr, "event_sign failed\n");
        exit(99);
    }
    return ev;
}

#define TAGS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* ---- sets ---- */

struct idset {
    size_t n;
    uint8_t ids[64][32];
};

static int collect_id(void *ctx, uint64_t created_at, const uint8_t id[32])
{
    struct idset *s = ctx;

    (void)created_at;
    if (s->n < 64)
        memcpy(s->ids[s->n], id, 32);
    s->n++;
    return 0;
}

static int cmp_id(const void *a, const void *b)
{
    return memcmp(a, b, 32);
}

static void idset_sort(struct idset *s)
{
    qsort(s->ids, s->n, 32, cmp_id);
}

static struct store *open_mem(void)
{
    char err[STORE_ERRLEN];
    struct store *st = store_open(":memory:", err, sizeof err);

    if (st == NULL) {
        fprintf(stderr, "store_open: %s\n", err);
        exit(99);
    }
    return st;
}

static void stored_set(struct store *st, struct idset *out)
{
    char err[STORE_ERRLEN];

    memset(out, 0, sizeof *out);
    CHECK_MSG(store_list_ids(st, NULL, collect_id, out, err, sizeof err) == 0, "%s", err);
    idset_sort(out);
}

/* ---- every arrival order ---- */

struct scenario {
    const char *name;
    size_t n;
    struct event *ev[MAXEV];
    unsigned expect; /* bit i: ev[i] is in the final set */
};

static int insert_all(struct store *st, struct event **evs, size_t n, int one_txn)
{
    struct store_result res[MAXEV * 2];
    char err[STORE_ERRLEN];

    if (one_txn) {
        if (store_insert_batch(st, evs, n, res, err, sizeof err) < 0) {
            fprintf(stderr, "insert: %s\n", err);
            return -1;
        }
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (store_insert_batch(st, &evs[i], 1, res, err, sizeof err) < 0) {
            fprintf(stderr, "insert: %s\n", err);
            return -1;
        }
    }
    return 0;
}

static void run_order(const struct scenario *sc, const size_t *perm, const struct idset *want,
                      int one_txn, int *bad)
{
    struct event *order[MAXEV];
    struct idset got, again;
    struct store *st = open_mem();
    char err[STORE_ERRLEN];

    for (size_t i = 0; i < sc->n; i++)
        order[i] = sc->ev[perm[i]];
    CHECK(insert_all(st, order, sc->n, one_txn) == 0);
    stored_set(st, &got);
    /* Re-delivery of everything, as a second relay would: nothing may change. */
    CHECK(insert_all(st, order, sc->n, !one_txn) == 0);
    stored_set(st, &again);
    CHECK_MSG(store_check(st, err, sizeof err) == 0, "%s", err);
    store_close(st);

    if (got.n != want->n || memcmp(got.ids, want->ids, 32 * got.n) != 0 || again.n != got.n ||
        memcmp(again.ids, got.ids, 32 * got.n) != 0) {
        if ((*bad)++ < 3) {
            fprintf(stderr, "%s: order", sc->name);
            for (size_t i = 0; i < sc->n; i++)
                fprintf(stderr, " %zu", perm[i]);
            fprintf(stderr, " (%s) keeps", one_txn ? "one transaction" : "one per transaction");
            for (size_t i = 0; i < sc->n; i++) {
                for (size_t j = 0; j < got.n; j++) {
                    if (memcmp(got.ids[j], sc->ev[i]->id, 32) == 0)
                        fprintf(stderr, " %zu", i);
                }
            }
            fprintf(stderr, " (%zu events, %zu after re-delivery)\n", got.n, again.n);
        }
    }
}

static void permute(const struct scenario *sc, size_t *perm, size_t k, const struct idset *want,
                    size_t *count, int *bad)
{
    if (k == sc->n) {
        run_order(sc, perm, want, 0, bad);
        run_order(sc, perm, want, 1, bad);
        (*count)++;
        return;
    }
    for (size_t i = k; i < sc->n; i++) {
        size_t t = perm[k];
        perm[k] = perm[i];
        perm[i] = t;
        permute(sc, perm, k + 1, want, count, bad);
        perm[i] = perm[k];
        perm[k] = t;
    }
}

static void check_scenario(struct scenario *sc)
{
    struct idset want = {0};
    size_t perm[MAXEV], count = 0;
    int bad = 0;

    for (size_t i = 0; i < sc->n; i++) {
        perm[i] = i;
        if (sc->expect & (1u << i))
            memcpy(want.ids[want.n++], sc->ev[i]->id, 32);
    }
    idset_sort(&want);
    permute(sc, perm, 0, &want, &count, &bad);
    CHECK_MSG(bad == 0, "%s: %d of %zu orders end in the wrong set", sc->name, bad, count * 2);
    for (size_t i = 0; i < sc->n; i++)
        event_free(sc->ev[i]);
}

/* The lower-id one of two events (the NIP-01 tie-break), as an index. */
static unsigned lower_id(const struct scenario *sc, int a, int b)
{
    return memcmp(sc->ev[a]->id, sc->ev[b]->id, 32) < 0 ? (unsigned)a : (unsigned)b;
}

static void test_convergence(void)
{
    char pa[65], pb[65], id[65], id2[65], addr[160], addr2[160];
    struct scenario sc;

    pubkey_hex(0, pa);
    pubkey_hex(1, pb);

    /* Replaceable: newest per (pubkey, kind); on a tie the lowest id. */
    sc = (struct scenario){.name = "replaceable", .n = 4};
    sc.ev[0] = mk(0, 10, 0, "v10", NULL);
    sc.ev[1] = mk(0, 20, 0, "v20a", NULL);
    sc.ev[2] = mk(0, 20, 0, "v20b", NULL);
    sc.ev[3] = mk(1, 5, 0, "other author", NULL);
    sc.expect = (1u << lower_id(&sc, 1, 2)) | 1u << 3;
    check_scenario(&sc);

    /* Same for 10000..19999 and kind 3, each kind on its own. */
    sc = (struct scenario){.name = "replaceable kinds", .n = 4};
    sc.ev[0] = mk(0, 10, 3, "contacts old", NULL);
    sc.ev[1] = mk(0, 11, 3, "contacts new", NULL);
    sc.ev[2] = mk(0, 30, 10002, "relays", NULL);
    sc.ev[3] = mk(0, 12, 10002, "relays old", NULL);
    sc.expect = 1u << 1 | 1u << 2;
    check_scenario(&sc);

    /* Addressable: per (pubkey, kind, d); no d tag and a name-only d tag are d = "". */
    sc = (struct scenario){.name = "addressable", .n = 5};
    sc.ev[0] = mk(0, 10, 30023, "x old", TAGS("d", "x"));
    sc.ev[1] = mk(0, 20, 30023, "x new", TAGS("d", "x"));
    sc.ev[2] = mk(0, 5, 30023, "y", TAGS("d", "y"));
    sc.ev[3] = mk(0, 1, 30023, "no d", NULL);
    sc.ev[4] = mk(0, 2, 30023, "empty d", TAGS("d", "-"));
    sc.expect = 1u << 1 | 1u << 2 | 1u << 4;
    check_scenario(&sc);

    /* Ephemeral kinds are never stored. */
    sc = (struct scenario){.name = "ephemeral", .n = 3};
    sc.ev[0] = mk(0, 10, 20001, "typing", NULL);
    sc.ev[1] = mk(0, 11, 1, "note", NULL);
    sc.ev[2] = mk(0, 12, 29999, "gone", NULL);
    sc.expect = 1u << 1;
    check_scenario(&sc);

    /*
     * Deletion by id: only the deleter's own events; a deletion never
     * deletes a deletion.
     */
    sc = (struct scenario){.name = "delete by e", .n = 4};
    sc.ev[0] = mk(0, 10, 1, "mine", NULL);
    sc.ev[1] = mk(1, 10, 1, "someone else's", NULL);
    hex_of(sc.ev[0]->id, id);
    hex_of(sc.ev[1]->id, id2);
    sc.ev[2] = mk(0, 20, 5, "", TAGS("e", id, "e", id2));
    hex_of(sc.ev[2]->id, id);
    sc.ev[3] = mk(0, 30, 5, "undelete?", TAGS("e", id));
    sc.expect = 1u << 1 | 1u << 2 | 1u << 3;
    check_scenario(&sc);

    /* Deletion by address: versions up to the deletion's created_at only. */
    sc = (struct scenario){.name = "delete by a", .n = 5};
    sc.ev[0] = mk(0, 10, 30023, "z old", TAGS("d", "z"));
    sc.ev[1] = mk(0, 30, 30023, "z newer than the deletion", TAGS("d", "z"));
    snprintf(addr, sizeof addr, "30023:%s:z", pa);
    sc.ev[2] = mk(0, 20, 5, "", TAGS("a", addr));
    sc.ev[3] = mk(0, 15, 0, "profile", NULL);
    snprintf(addr2, sizeof addr2, "0:%s:", pa);
    sc.ev[4] = mk(0, 20, 5, "", TAGS("a", addr2));
    sc.expect = 1u << 1 | 1u << 2 | 1u << 4;
    check_scenario(&sc);

    /*
     * The newest version deleted by id: an older one arriving later must not
     * come back (the address_heads case in store.c).
     */
    sc = (struct scenario){.name = "delete newest version by e", .n = 3};
    sc.ev[0] = mk(0, 10, 3, "old", NULL);
    sc.ev[1] = mk(0, 20, 3, "new", NULL);
    hex_of(sc.ev[1]->id, id);
    sc.ev[2] = mk(0, 30, 5, "", TAGS("e", id));
    sc.expect = 1u << 2;
    check_scenario(&sc);

    sc = (struct scenario){.name = "delete older version by e", .n = 3};
    sc.ev[0] = mk(0, 10, 3, "old", NULL);
    sc.ev[1] = mk(0, 20, 3, "new", NULL);
    hex_of(sc.ev[0]->id, id);
    sc.ev[2] = mk(0, 30, 5, "", TAGS("e", id));
    sc.expect = 1u << 1 | 1u << 2;
    check_scenario(&sc);

    sc = (struct scenario){.name = "delete by a and by e", .n = 5};
    sc.ev[0] = mk(0, 10, 30000, "q1", TAGS("d", "q"));
    sc.ev[1] = mk(0, 20, 30000, "q2", TAGS("d", "q"));
    snprintf(addr, sizeof addr, "30000:%s:q", pa);
    sc.ev[2] = mk(0, 15, 5, "", TAGS("a", addr));
    hex_of(sc.ev[1]->id, id);
    sc.ev[3] = mk(0, 25, 5, "", TAGS("e", id));
    sc.ev[4] = mk(1, 1, 30000, "q by someone else", TAGS("d", "q"));
    sc.expect = 1u << 2 | 1u << 3 | 1u << 4;
    check_scenario(&sc);

    /* An address of another pubkey in an a tag is ignored. */
    sc = (struct scenario){.name = "delete someone else's address", .n = 3};
    sc.ev[0] = mk(0, 10, 30023, "z", TAGS("d", "z"));
    snprintf(addr, sizeof addr, "30023:%s:z", pa);
    sc.ev[1] = mk(1, 20, 5, "", TAGS("a", addr));
    snprintf(addr2, sizeof addr2, "30023:%s:z", pb);
    sc.ev[2] = mk(1, 20, 5, "", TAGS("a", addr2));
    sc.expect = 7;
    check_scenario(&sc);

    /* created_at equal to the deletion's is covered; one second later is not. */
    sc = (struct scenario){.name = "delete by a at the same second", .n = 3};
    sc.ev[0] = mk(0, 10, 30023, "w", TAGS("d", "w"));
    snprintf(addr, sizeof addr, "30023:%s:w", pa);
    sc.ev[1] = mk(0, 10, 5, "", TAGS("a", addr));
    sc.ev[2] = mk(0, 11, 30023, "w later", TAGS("d", "w"));
    sc.expect = 1u << 1 | 1u << 2;
    check_scenario(&sc);
}

/* ---- outcomes in a fixed order ---- */

static void test_outcomes(void)
{
    struct store *st = open_mem();
    struct store_result r[8];
    struct event *ev[8];
    char err[STORE_ERRLEN], id[65];

    ev[0] = mk(0, 10, 0, "v1", NULL);
    ev[1] = mk(0, 20, 0, "v2", NULL);
    ev[2] = mk(0, 5, 0, "v0", NULL);
    ev[3] = mk(0, 10, 20000, "ephemeral", NULL);
    ev[4] = mk(0, 10, 1, "note", NULL);
    hex_of(ev[4]->id, id);
    ev[5] = mk(0, 11, 5, "", TAGS("e", id));
    CHECK(store_insert_batch(st, ev, 6, r, err, sizeof err) == 0);
    CHECK(r[0].outcome == STORE_INSERTED);
    CHECK(r[1].outcome == STORE_REPLACED);
    CHECK(r[2].outcome == STORE_REJECTED && strcmp(r[2].reason, "replaced by newer version") == 0);
    CHECK(r[3].outcome == STORE_REJECTED && strcmp(r[3].reason, "ephemeral") == 0);
    CHECK(r[4].outcome == STORE_INSERTED);
    CHECK(r[5].outcome == STORE_INSERTED);
    /* Again: duplicates, except what is gone. */
    CHECK(store_insert_batch(st, ev, 6, r, err, sizeof err) == 0);
    CHECK(r[0].outcome == STORE_REJECTED);
    CHECK(r[1].outcome == STORE_DUPLICATE);
    CHECK(r[4].outcome == STORE_DELETED && r[4].reason != NULL);
    CHECK(r[5].outcome == STORE_DUPLICATE);
    CHECK(strcmp(store_outcome_name(STORE_REPLACED), "replaced") == 0);

    CHECK(store_has_id(st, ev[1]->id, err, sizeof err) == 1);
    CHECK(store_has_id(st, ev[0]->id, err, sizeof err) == 0);
    CHECK(store_has_id(st, ev[4]->id, err, sizeof err) == 0);
    for (int i = 0; i < 6; i++)
        event_free(ev[i]);
    store_close(st);
}

/* ---- queries ---- */

struct jsons {
    size_t n;
    char *v[16];
};

static int collect_json(void *ctx, const char *json, size_t len)
{
    struct jsons *j = ctx;

    CHECK(strlen(json) == len);
    if (j->n < 16)
        j->v[j->n] = xstrdup(json);
    j->n++;
    return 0;
}

static void jsons_free(struct jsons *j)
{
    for (size_t i = 0; i < j->n && i < 16; i++)
        free(j->v[i]);
    j->n = 0;
}

static int json_is(const char *json, const struct event *ev)
{
    size_t len;
    char *want = event_to_json(ev, &len);
    int same = strcmp(json, want) == 0;

    free(want);
    return same;
}

static struct filter *parse_filter(const char *text)
{
    char err[FILTER_ERRLEN];
    struct filter *f = filter_parse(text, err, sizeof err);

    if (f == NULL) {
        fprintf(stderr, "filter_parse(%s): %s\n", text, err);
        exit(99);
    }
    return f;
}

static int stop_after_two(void *ctx, uint64_t created_at, const uint8_t id[32])
{
    (void)created_at;
    (void)id;
    return ++*(int *)ctx == 2;
}

struct sizes {
    uint8_t id[8][32];
    size_t len[8];
    size_t n;
};

static int collect_size(void *ctx, const uint8_t id[32], size_t len)
{
    struct sizes *s = ctx;

    if (s->n == 8)
        return 1;
    memcpy(s->id[s->n], id, 32);
    s->len[s->n++] = len;
    return 0;
}

static void test_queries(void)
{
    struct store *st = open_mem();
    struct store_result r[8];
    struct event *ev[8];
    struct jsons j = {0};
    struct filter *f;
    struct idset ids = {0};
    char err[STORE_ERRLEN], text[512], pa[65], id0[65];
    uint64_t count = 0;
    char *json;
    size_t len;
    int calls = 0;

    pubkey_hex(0, pa);
    /* Two at created_at 20 to see the id tie-break. */
    ev[0] = mk(0, 10, 1, "a", NULL);
    hex_of(ev[0]->id, id0);
    ev[1] = mk(0, 20, 1, "b", TAGS("e", id0, "t", "nostr"));
    ev[2] = mk(0, 20, 1, "c", TAGS("t", "nostr"));
    ev[3] = mk(1, 30, 7, "+", TAGS("e", id0));
    ev[4] = mk(0, 40, 30023, "article", TAGS("d", "slug"));
    CHECK(store_insert_batch(st, ev, 5, r, err, sizeof err) == 0);
    int lo = memcmp(ev[1]->id, ev[2]->id, 32) < 0 ? 1 : 2, hi = 3 - lo;

    CHECK(store_query(st, NULL, STORE_NEWEST_FIRST, collect_json, &j, err, sizeof err) == 0);
    CHECK(j.n == 5);
    if (j.n == 5) {
        CHECK(json_is(j.v[0], ev[4]) && json_is(j.v[1], ev[3]));
        CHECK(json_is(j.v[2], ev[lo]) && json_is(j.v[3], ev[hi]) && json_is(j.v[4], ev[0]));
    }
    jsons_free(&j);

    CHECK(store_query(st, NULL, STORE_OLDEST_FIRST, collect_json, &j, err, sizeof err) == 0);
    CHECK(j.n == 5);
    if (j.n == 5) {
        CHECK(json_is(j.v[0], ev[0]) && json_is(j.v[1], ev[lo]) && json_is(j.v[2], ev[hi]));
        CHECK(json_is(j.v[4], ev[4]));
    }
    jsons_free(&j);

    /* limit keeps the newest, in either delivery order. */
    f = parse_filter("{\"kinds\":[1],\"limit\":2}");
    CHECK(store_query(st, f, STORE_NEWEST_FIRST, collect_json, &j, err, sizeof err) == 0);
    CHECK(j.n == 2 && json_is(j.v[0], ev[lo]) && json_is(j.v[1], ev[hi]));
    jsons_free(&j);
    CHECK(store_query(st, f, STORE_OLDEST_FIRST, collect_json, &j, err, sizeof err) == 0);
    CHECK(j.n == 2 && json_is(j.v[0], ev[lo]) && json_is(j.v[1], ev[hi]));
    jsons_free(&j);
    CHECK(store_count(st, f, &count, err, sizeof err) == 0 && count == 3);
    filter_free(f);

    snprintf(text, sizeof text, "{\"#e\":[\"%s\"]}", id0);
    f = parse_filter(text);
    CHECK(store_count(st, f, &count, err, sizeof err) == 0 && count == 2);
    CHECK(store_list_ids(st, f, collect_id, &ids, err, sizeof err) == 0 && ids.n == 2);
    if (ids.n == 2)
        CHECK(memcmp(ids.ids[0], ev[1]->id, 32) == 0 && memcmp(ids.ids[1], ev[3]->id, 32) == 0);
    filter_free(f);

    snprintf(text, sizeof text, "{\"authors\":[\"%s\"],\"kinds\":[30023],\"#d\":[\"slug\"]}", pa);
    f = parse_filter(text);
    CHECK(store_count(st, f, &count, err, sizeof err) == 0 && count == 1);
    filter_free(f);

    f = parse_filter("{\"#t\":[\"nostr\"],\"since\":15,\"until\":20}");
    CHECK(store_count(st, f, &count, err, sizeof err) == 0 && count == 2);
    filter_free(f);

    /* A callback can stop the listing. */
    CHECK(store_list_ids(st, NULL, stop_after_two, &calls, err, sizeof err) == 1 && calls == 2);

    /* Sizes: every matching event once, with the length of its stored JSON. */
    {
        struct sizes sz = {0};
        f = parse_filter("{\"kinds\":[1]}");
        CHECK_MSG(store_list_sizes(st, f, collect_size, &sz, err, sizeof err) == 0, "%s", err);
        CHECK(sz.n == 3);
        for (size_t i = 0; i < sz.n; i++) {
            int k = -1;
            for (int e = 0; e < 3; e++)
                if (memcmp(sz.id[i], ev[e]->id, 32) == 0)
                    k = e;
            CHECK_MSG(k >= 0, "size %zu: not a kind-1 event", i);
            if (k >= 0 && store_get_json(st, ev[k]->id, &json, &len, err, sizeof err) == 1) {
                CHECK_MSG(sz.len[i] == len, "event %d: size %zu, stored JSON %zu", k, sz.len[i],
                          len);
                free(json);
            }
        }
        filter_free(f);
    }

    CHECK(store_get_json(st, ev[4]->id, &json, &len, err, sizeof err) == 1);
    CHECK(json_is(json, ev[4]) && strlen(json) == len);
    free(json);
    {
        uint8_t missing[32] = {0};
        CHECK(store_get_json(st, missing, &json, &len, err, sizeof err) == 0);
    }
    for (int i = 0; i < 5; i++)
        event_free(ev[i]);
    store_close(st);
}

/* ---- query plans ---- */

static void expect_plan(struct store *st, enum store_plan which, const char *ftext,
                        const char *want, const char *forbid)
{
    char plan[2048], err[STORE_ERRLEN];
    struct filter *f = ftext != NULL ? parse_filter(ftext) : NULL;

    CHECK_MSG(store_query_plan(st, which, f, plan, sizeof plan, err, sizeof err) == 0, "%s", err);
    CHECK_MSG(strstr(plan, want) != NULL, "plan for %s lacks \"%s\":\n%s",
              ftext ? ftext : "everything", want, plan);
    if (forbid != NULL)
        CHECK_MSG(strstr(plan, forbid) == NULL, "plan for %s has \"%s\":\n%s",
                  ftext ? ftext : "everything", forbid, plan);
    filter_free(f);
}

static void test_plans(void)
{
    struct store *st = open_mem();
    char pa[65], text[512];

    pubkey_hex(0, pa);
    /* The negentropy listing of everything: covering index, already sorted. */
    expect_plan(st, STORE_PLAN_LIST_IDS, NULL, "SCAN e USING COVERING INDEX events_created",
                "TEMP B-TREE");
    expect_plan(st, STORE_PLAN_LIST_IDS, "{}", "SCAN e USING COVERING INDEX events_created",
                "TEMP B-TREE");
    /* A time window is a range of the same index. */
    expect_plan(st, STORE_PLAN_LIST_IDS, "{\"since\":100,\"until\":200}",
                "SEARCH e USING COVERING INDEX events_created", "TEMP B-TREE");
    expect_plan(st, STORE_PLAN_QUERY_OLDEST, NULL, "SCAN e USING INDEX events_created",
                "TEMP B-TREE");
    expect_plan(st, STORE_PLAN_COUNT, "{\"kinds\":[1,7]}", "USING COVERING INDEX events_kind",
                NULL);
    /* The usual sync filter: one kind, listed from the index alone, in order (migration 5). */
    expect_plan(st, STORE_PLAN_LIST_IDS, "{\"kinds\":[1]}",
                "SEARCH e USING COVERING INDEX events_kind (kind=?)", "TEMP B-TREE");
    expect_plan(
        st, STORE_PLAN_LIST_IDS, "{\"kinds\":[1],\"since\":100,\"until\":200}",
        "SEARCH e USING COVERING INDEX events_kind (kind=? AND created_at>? AND created_at<?)",
        "TEMP B-TREE");
    expect_plan(st, STORE_PLAN_LIST_IDS, "{\"kinds\":[1,7]}", "USING COVERING INDEX events_kind",
                NULL);
    snprintf(text, sizeof text, "{\"authors\":[\"%s\"],\"kinds\":[0]}", pa);
    /* Authors are found through events_by_author (migration 4), never by a scan. */
    expect_plan(st, STORE_PLAN_QUERY_NEWEST, text,
                "SEARCH a USING PRIMARY KEY (author=? AND kind=?)", "SCAN");
    expect_plan(st, STORE_PLAN_COUNT, text, "SEARCH a USING PRIMARY KEY (author=? AND kind=?)",
                "SCAN");
    snprintf(text, sizeof text, "{\"authors\":[\"%s\"]}", pa);
    expect_plan(st, STORE_PLAN_LIST_IDS, text, "SEARCH u USING COVERING INDEX", "SCAN");
    expect_plan(st, STORE_PLAN_LIST_IDS, text, "SEARCH a USING PRIMARY KEY (author=?)", "SCAN");
    expect_plan(st, STORE_PLAN_LIST_IDS, text, "SEARCH e USING INTEGER PRIMARY KEY", "SCAN");
    /* A tag filter starts from the tag index, not from a scan of every event. */
    expect_plan(st, STORE_PLAN_LIST_IDS, "{\"#t\":[\"nostr\"]}",
                "SEARCH t USING PRIMARY KEY (name=? AND value=?)", "SCAN e");
    snprintf(text, sizeof text, "{\"#e\":[\"%s\"],\"limit\":10}", pa);
    expect_plan(st, STORE_PLAN_QUERY_NEWEST, text,
                "SEARCH t USING PRIMARY KEY (name=? AND value=?)", "SCAN e");
    expect_plan(st, STORE_PLAN_COUNT, "{\"#x\":[\"y\"]}", "SEARCH t USING PRIMARY KEY", "SCAN e");
    snprintf(text, sizeof text, "{\"ids\":[\"%s\"]}", pa);
    expect_plan(st, STORE_PLAN_QUERY_NEWEST, text, "SEARCH e USING INDEX sqlite_autoindex_events",
                "SCAN e");
    /* Every replaceable or addressable insert looks up its address: the partial index. */
    expect_plan(st, STORE_PLAN_ADDRESS, NULL, "SEARCH events USING INDEX events_address", "SCAN");
    store_close(st);
}

/* ---- migrations ---- */

static void test_migrations(const char *dir)
{
    char path[512], err[STORE_ERRLEN];
    struct store *st;
    sqlite3 *db;
    sqlite3_stmt *s;
    int version = -1;

    snprintf(path, sizeof path, "%s/migrate.db", dir);
    st = store_open(path, err, sizeof err);
    CHECK_MSG(st != NULL, "%s", err);
    store_close(st);
    st = store_open(path, err, sizeof err);
    CHECK_MSG(st != NULL, "reopen: %s", err);
    store_close(st);

    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    CHECK(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL) == SQLITE_OK);
    if (sqlite3_step(s) == SQLITE_ROW)
        version = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    CHECK(version == store_schema_version() && version >= 1);
    {
        /* Every table later modules need is there from the first migration. */
        static const char *const tables[] = {"events",        "tags",          "deletions",
                                             "address_heads", "relay_caps",    "req_cursors",
                                             "sync_runs",     "relay_settings"};
        for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
            int found = 0;
            CHECK(sqlite3_prepare_v2(
                      db, "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?1", -1, &s,
                      NULL) == SQLITE_OK);
            sqlite3_bind_text(s, 1, tables[i], -1, SQLITE_STATIC);
            found = sqlite3_step(s) == SQLITE_ROW;
            sqlite3_finalize(s);
            CHECK_MSG(found, "table %s missing", tables[i]);
        }
    }
    CHECK(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(s) == SQLITE_ROW &&
          strcmp((const char *)sqlite3_column_text(s, 0), "wal") == 0);
    sqlite3_finalize(s);
    /* A database from a newer negsync is refused, not damaged. */
    CHECK(sqlite3_exec(db, "PRAGMA user_version = 999", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    st = store_open(path, err, sizeof err);
    CHECK(st == NULL && strstr(err, "newer") != NULL);
    store_close(st);
}

/* ---- migration from schema version 1 ---- */

static int count_filter(struct store *st, const char *ftext)
{
    char err[STORE_ERRLEN];
    struct filter *f = ftext != NULL ? parse_filter(ftext) : NULL;
    uint64_t n = 0;

    CHECK_MSG(store_count(st, f, &n, err, sizeof err) == 0, "%s", err);
    filter_free(f);
    return (int)n;
}

/* store_newest: the newest created_at a filter matches, -1 for none. */
static void test_newest(void)
{
    struct store *st = open_mem();
    struct store_result r[4];
    struct event *ev[4];
    char err[STORE_ERRLEN];
    static const struct {
        const char *filter;
        int64_t want;
    } cases[] = {
        {NULL, 40},
        {"{\"kinds\":[1]}", 30},
        {"{\"kinds\":[1],\"until\":25}", 10},
        {"{\"kinds\":[1],\"since\":11,\"until\":29}", -1},
        {"{\"kinds\":[7]}", 40},
        {"{\"kinds\":[9]}", -1},
    };

    ev[0] = mk(0, 10, 1, "a", NULL);
    ev[1] = mk(1, 20, 7, "b", NULL);
    ev[2] = mk(0, 30, 1, "c", NULL);
    ev[3] = mk(1, 40, 7, "d", NULL);
    CHECK(store_insert_batch(st, ev, 4, r, err, sizeof err) == 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct filter *f = cases[i].filter != NULL ? parse_filter(cases[i].filter) : NULL;
        int64_t got = -2;
        CHECK_MSG(store_newest(st, f, &got, err, sizeof err) == 0, "%s", err);
        CHECK_MSG(got == cases[i].want, "newest of %s: %lld, want %lld",
                  cases[i].filter ? cases[i].filter : "everything", (long long)got,
                  (long long)cases[i].want);
        filter_free(f);
    }
    for (int i = 0; i < 4; i++)
        event_free(ev[i]);
    store_close(st);
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    struct buf b = {0};
    char chunk[4096];
    size_t n;

    if (f == NULL)
        return NULL;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        buf_append(&b, chunk, n);
    fclose(f);
    buf_push(&b, '\0');
    return (char *)b.data;
}

/* One column of one row as text ("NULL" for NULL), straight from SQLite. */
static void sql_text(sqlite3 *db, const char *sql, char *out, size_t outlen)
{
    sqlite3_stmt *s;

    snprintf(out, outlen, "(no row)");
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK) {
        snprintf(out, outlen, "(error: %s)", sqlite3_errmsg(db));
        return;
    }
    if (sqlite3_step(s) == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(s, 0);
        snprintf(out, outlen, "%s", t != NULL ? t : "NULL");
    }
    sqlite3_finalize(s);
}

static struct event *sign_with(uint8_t fill, uint64_t at, uint32_t kind, const char *d,
                               const char *content)
{
    const char *dtag[2] = {"d", d};
    const char *const *tags[1] = {dtag};
    size_t lens[1] = {2};
    uint8_t sk[32];
    struct event *ev;

    memset(sk, fill, 32);
    ev = event_sign(sk, at, kind, d ? tags : NULL, d ? lens : NULL, d ? 1 : 0, content);
    if (ev == NULL)
        exit(99);
    return ev;
}

/*
 * tests/store-v1.sql is a database written at schema version 1 (author A's
 * key is 32 bytes 0x31, B's 0x42) holding 5 events: a note with a repeated
 * t tag, A's kind-0 profile at 1002 (which replaced one at 1001), A's 30023
 * "post" at 1003, B's kind 10002 and a note. Opening it must migrate it to the current
 * schema without losing or changing anything a user can see, and relay
 * semantics must hold for what arrives next.
 */
static void test_migrate_v1(const char *dir)
{
    const char *src = getenv("top_srcdir");
    char path[512], fixture[1024], err[STORE_ERRLEN], text[256];
    char *sql;
    struct store *st;
    struct store_result r;
    struct event *ev;
    sqlite3 *db;

    snprintf(fixture, sizeof fixture, "%s/tests/store-v1.sql", src != NULL ? src : ".");
    sql = read_file(fixture);
    CHECK_MSG(sql != NULL, "cannot read %s (is top_srcdir set?)", fixture);
    if (sql == NULL)
        return;
    snprintf(path, sizeof path, "%s/v1.db", dir);
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    CHECK_MSG(sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK, "%s", sqlite3_errmsg(db));
    sqlite3_close(db);
    free(sql);

    st = store_open(path, err, sizeof err);
    CHECK_MSG(st != NULL, "migrating v1: %s", err);
    if (st == NULL)
        return;
    CHECK_MSG(store_check(st, err, sizeof err) == 0, "%s", err);
    CHECK(count_filter(st, NULL) == 5);
    CHECK(count_filter(st, "{\"#t\":[\"fixture\"]}") == 2);
    CHECK(count_filter(st, "{\"#d\":[\"post\"]}") == 1);
    CHECK(count_filter(
              st,
              "{\"#p\":[\"4242424242424242424242424242424242424242424242424242424242424242\"]}") ==
          1);
    CHECK(count_filter(st, "{\"kinds\":[0],\"since\":1002,\"until\":1002}") == 1);
    expect_plan(st, STORE_PLAN_ADDRESS, NULL, "USING INDEX events_address", "SCAN");
    store_close(st);

    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    sql_text(db, "PRAGMA user_version", text, sizeof text);
    CHECK_MSG(atoi(text) == store_schema_version(), "user_version %s", text);
    sql_text(db, "SELECT quote(dtag) FROM events WHERE kind = 0", text, sizeof text);
    CHECK_MSG(strcmp(text, "''") == 0, "kind 0 dtag %s", text);
    sql_text(db, "SELECT quote(dtag) FROM events WHERE kind = 10002", text, sizeof text);
    CHECK_MSG(strcmp(text, "''") == 0, "kind 10002 dtag %s", text);
    sql_text(db, "SELECT group_concat(quote(dtag)) FROM events WHERE kind = 1", text, sizeof text);
    CHECK_MSG(strcmp(text, "NULL,NULL") == 0, "kind 1 dtags %s", text);
    sql_text(db, "SELECT dtag FROM events WHERE kind = 30023", text, sizeof text);
    CHECK_MSG(strcmp(text, "post") == 0, "kind 30023 dtag %s", text);
    /* The repeated ["t","fixture"] is kept once; the p tag stays. */
    sql_text(db,
             "SELECT count(*) FROM tags t JOIN events e ON e.seq = t.seq WHERE e.kind = 1 "
             "AND e.created_at = 1000",
             text, sizeof text);
    CHECK_MSG(strcmp(text, "2") == 0, "tags of the note: %s", text);
    sql_text(db, "SELECT count(*) FROM sqlite_schema WHERE name = 'tags_seq'", text, sizeof text);
    CHECK_MSG(strcmp(text, "0") == 0, "tags_seq still there: %s", text);
    /* Migration 3: a 64-hex value became its 32 bytes, other values stayed text. */
    sql_text(db, "SELECT typeof(value) || ':' || hex(value) FROM tags WHERE name = 'p'", text,
             sizeof text);
    CHECK_MSG(
        strcmp(text, "blob:4242424242424242424242424242424242424242424242424242424242424242") == 0,
        "p tag value %s", text);
    sql_text(db, "SELECT group_concat(DISTINCT typeof(value)) FROM tags WHERE name <> 'p'", text,
             sizeof text);
    CHECK_MSG(strcmp(text, "text") == 0, "other tag values %s", text);
    sql_text(db, "SELECT count(*) FROM sqlite_schema WHERE name = 'tags_name_value'", text,
             sizeof text);
    CHECK_MSG(strcmp(text, "0") == 0, "tags_name_value still there: %s", text);
    sqlite3_close(db);

    /* Relay semantics on the migrated rows. */
    st = store_open(path, err, sizeof err);
    CHECK_MSG(st != NULL, "reopen: %s", err);
    if (st == NULL)
        return;
    ev = sign_with(0x31, 1001, 0, NULL, "{\"name\":\"old profile\"}");
    CHECK(store_insert_batch(st, &ev, 1, &r, err, sizeof err) == 0 && r.outcome == STORE_REJECTED);
    event_free(ev);
    ev = sign_with(0x31, 2000, 0, NULL, "{\"name\":\"profile v2\"}");
    CHECK(store_insert_batch(st, &ev, 1, &r, err, sizeof err) == 0 && r.outcome == STORE_REPLACED);
    event_free(ev);
    ev = sign_with(0x31, 2000, 30023, "post", "article v2");
    CHECK(store_insert_batch(st, &ev, 1, &r, err, sizeof err) == 0 && r.outcome == STORE_REPLACED);
    event_free(ev);
    ev = sign_with(0x31, 2000, 30023, "other", "another article");
    CHECK(store_insert_batch(st, &ev, 1, &r, err, sizeof err) == 0 && r.outcome == STORE_INSERTED);
    event_free(ev);
    ev = sign_with(0x42, 999, 10002, NULL, "older relay list");
    CHECK(store_insert_batch(st, &ev, 1, &r, err, sizeof err) == 0 && r.outcome == STORE_REJECTED);
    event_free(ev);
    CHECK(count_filter(st, NULL) == 6);
    CHECK(count_filter(st, "{\"kinds\":[0]}") == 1);
    CHECK(count_filter(st, "{\"#d\":[\"post\"],\"since\":2000}") == 1);
    CHECK_MSG(store_check(st, err, sizeof err) == 0, "%s", err);
    store_close(st);
}

/* A tag repeated verbatim in one event is stored once and matched once. */
static void test_repeated_tags(void)
{
    struct store *st = open_mem();
    struct store_result r[2];
    struct event *ev[2];
    char err[STORE_ERRLEN];

    ev[0] = mk(0, 10, 1, "twice", TAGS("t", "same", "t", "same", "t", "other"));
    ev[1] = mk(1, 11, 1, "once", TAGS("t", "same"));
    CHECK(store_insert_batch(st, ev, 2, r, err, sizeof err) == 0);
    CHECK(r[0].outcome == STORE_INSERTED && r[1].outcome == STORE_INSERTED);
    CHECK(count_filter(st, "{\"#t\":[\"same\"]}") == 2);
    CHECK(count_filter(st, "{\"#t\":[\"other\"]}") == 1);
    CHECK(count_filter(st, "{\"#t\":[\"same\",\"other\"]}") == 2);
    /* Duplicates come back as duplicates, whatever the kind class. */
    CHECK(store_insert_batch(st, ev, 2, r, err, sizeof err) == 0);
    CHECK(r[0].outcome == STORE_DUPLICATE && r[1].outcome == STORE_DUPLICATE);
    event_free(ev[0]);
    event_free(ev[1]);
    store_close(st);
}

/*
 * Migrations 4 and 5 on a database at schema version 3: made from a current
 * one by undoing exactly what they do, so the test needs no fixture.
 */
static void test_migrate_v3(const char *dir)
{
    char path[512], err[STORE_ERRLEN], text[256], ftext[256], pk[2][65];
    struct store_result r[4];
    struct event *ev[4];
    struct store *st;
    sqlite3 *db;

    snprintf(path, sizeof path, "%s/v3.db", dir);
    st = store_open(path, err, sizeof err);
    CHECK_MSG(st != NULL, "%s", err);
    if (st == NULL)
        return;
    pubkey_hex(0, pk[0]);
    pubkey_hex(1, pk[1]);
    ev[0] = mk(0, 10, 1, "note", TAGS("t", "v3"));
    ev[1] = mk(0, 11, 7, "+", NULL);
    ev[2] = mk(1, 12, 1, "other", TAGS("t", "v3"));
    ev[3] = mk(1, 13, 0, "{}", NULL);
    CHECK(store_insert_batch(st, ev, 4, r, err, sizeof err) == 0);
    store_close(st);

    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    CHECK_MSG(sqlite3_exec(db,
                           "CREATE INDEX events_pubkey_kind ON events(pubkey, kind, created_at);"
                           "DROP INDEX events_kind;"
                           "CREATE INDEX events_kind ON events(kind, created_at);"
                           "DROP TABLE events_by_author;"
                           "DROP TABLE authors;"
                           "PRAGMA user_version = 3;",
                           NULL, NULL, NULL) == SQLITE_OK,
              "%s", sqlite3_errmsg(db));
    sqlite3_close(db);

    st = store_open(path, err, sizeof err);
    CHECK_MSG(st != NULL, "migrating v3: %s", err);
    if (st == NULL)
        return;
    CHECK_MSG(store_check(st, err, sizeof err) == 0, "%s", err);
    CHECK(count_filter(st, NULL) == 4);
    CHECK(count_filter(st, "{\"#t\":[\"v3\"]}") == 2);
    CHECK(count_filter(st, "{\"kinds\":[1]}") == 2);
    snprintf(ftext, sizeof ftext, "{\"authors\":[\"%s\"]}", pk[0]);
    CHECK(count_filter(st, ftext) == 2);
    snprintf(ftext, sizeof ftext, "{\"authors\":[\"%s\",\"%s\"],\"kinds\":[1]}", pk[0], pk[1]);
    CHECK(count_filter(st, ftext) == 2);
    /* Relay semantics on the migrated rows: a newer profile replaces the old one. */
    event_free(ev[3]);
    ev[3] = mk(1, 14, 0, "{\"name\":\"new\"}", NULL);
    CHECK(store_insert_batch(st, &ev[3], 1, r, err, sizeof err) == 0 &&
          r[0].outcome == STORE_REPLACED);
    snprintf(ftext, sizeof ftext, "{\"authors\":[\"%s\"],\"kinds\":[0]}", pk[1]);
    CHECK(count_filter(st, ftext) == 1);
    CHECK_MSG(store_check(st, err, sizeof err) == 0, "%s", err);
    store_close(st);

    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    sql_text(db, "PRAGMA user_version", text, sizeof text);
    CHECK_MSG(atoi(text) == store_schema_version(), "user_version %s", text);
    sql_text(db, "SELECT count(*) FROM sqlite_schema WHERE name = 'events_pubkey_kind'", text,
             sizeof text);
    CHECK_MSG(strcmp(text, "0") == 0, "events_pubkey_kind still there: %s", text);
    sql_text(db, "SELECT count(*) FROM events_by_author", text, sizeof text);
    CHECK_MSG(strcmp(text, "4") == 0, "events_by_author rows: %s", text);
    sql_text(db, "SELECT count(*) FROM authors", text, sizeof text);
    CHECK_MSG(strcmp(text, "2") == 0, "authors: %s", text);
    sql_text(db, "SELECT sql FROM sqlite_schema WHERE name = 'events_kind'", text, sizeof text);
    CHECK_MSG(strstr(text, "created_at, id") != NULL, "events_kind: %s", text);
    sqlite3_close(db);
    for (int i = 0; i < 4; i++)
        event_free(ev[i]);
}

/*
 * Tag entries reach the database at the end of a batch, sorted (store-insert.c,
 * tags_flush): events stored and then deleted or replaced within the same
 * batch must leave no entries behind, and the rest must be found by them.
 */
static void test_batch_tags(void)
{
    struct store *st = open_mem();
    struct store_result r[5];
    struct event *ev[5];
    char err[STORE_ERRLEN], idhex[65], pk[65], ftext[128];

    pubkey_hex(2, pk);
    ev[0] = mk(0, 10, 1, "doomed", TAGS("t", "gone"));
    hex_of(ev[0]->id, idhex);
    ev[1] = mk(0, 11, 5, "", TAGS("e", idhex));
    ev[2] = mk(0, 12, 30000, "v1", TAGS("d", "x", "t", "old"));
    ev[3] = mk(0, 13, 30000, "v2", TAGS("d", "x", "t", "new"));
    ev[4] = mk(1, 14, 1, "kept", TAGS("t", "kept", "p", pk, "t", "Kept"));
    CHECK(store_insert_batch(st, ev, 5, r, err, sizeof err) == 0);
    CHECK(r[1].outcome == STORE_INSERTED && r[3].outcome == STORE_REPLACED &&
          r[4].outcome == STORE_INSERTED);
    CHECK(count_filter(st, "{\"#t\":[\"gone\"]}") == 0);
    CHECK(count_filter(st, "{\"#t\":[\"old\"]}") == 0);
    CHECK(count_filter(st, "{\"#t\":[\"new\",\"kept\",\"Kept\"]}") == 2);
    CHECK(count_filter(st, "{\"#d\":[\"x\"]}") == 1);
    snprintf(ftext, sizeof ftext, "{\"#e\":[\"%s\"]}", idhex);
    CHECK(count_filter(st, ftext) == 1);
    snprintf(ftext, sizeof ftext, "{\"#p\":[\"%s\"]}", pk);
    CHECK(count_filter(st, ftext) == 1);
    CHECK_MSG(store_check(st, err, sizeof err) == 0, "%s", err);
    for (int i = 0; i < 5; i++)
        event_free(ev[i]);
    store_close(st);
}

/* ---- threads ---- */

#define NREADERS   3
#define NWRITERS   2
#define PER_WRITER 1500
#define WBATCH     50

struct shared {
    const char *path;
    pthread_barrier_t start;
    atomic_int writers_left;
    atomic_int errors;
    struct event **evs; /* NWRITERS * PER_WRITER, pre-signed */
};

struct worker {
    struct shared *sh;
    int index;
    long rounds;
    char err[STORE_ERRLEN];
};

static int count_cb(void *ctx, uint64_t created_at, const uint8_t id[32])
{
    (void)created_at;
    (void)id;
    (*(uint64_t *)ctx)++;
    return 0;
}

static int ignore_json(void *ctx, const char *json, size_t len)
{
    (void)ctx;
    (void)json;
    (void)len;
    return 0;
}

static void *writer_main(void *arg)
{
    struct worker *w = arg;
    struct shared *sh = w->sh;
    struct store_result res[WBATCH];
    struct store *st;

    pthread_barrier_wait(&sh->start);
    if ((st = store_open(sh->path, w->err, sizeof w->err)) == NULL) {
        atomic_fetch_add(&sh->errors, 1);
        atomic_fetch_sub(&sh->writers_left, 1);
        return NULL;
    }
    for (int i = 0; i < PER_WRITER; i += WBATCH) {
        struct event **evs = &sh->evs[w->index * PER_WRITER + i];
        if (store_insert_batch(st, evs, WBATCH, res, w->err, sizeof w->err) < 0) {
            atomic_fetch_add(&sh->errors, 1);
            break;
        }
        w->rounds++;
    }
    store_close(st);
    atomic_fetch_sub(&sh->writers_left, 1);
    return NULL;
}

static void *reader_main(void *arg)
{
    struct worker *w = arg;
    struct shared *sh = w->sh;
    struct filter *f = filter_new();
    uint64_t last = 0;
    struct store *st;

    f->has_limit = 1;
    f->limit = 20;
    pthread_barrier_wait(&sh->start);
    if ((st = store_open(sh->path, w->err, sizeof w->err)) == NULL) {
        atomic_fetch_add(&sh->errors, 1);
        filter_free(f);
        return NULL;
    }
    /* At least one round after the writers finish, so every reader sees the end state. */
    for (int done = 0; !done;) {
        uint64_t count = 0, listed = 0;
        done = atomic_load(&sh->writers_left) == 0;
        if (store_count(st, NULL, &count, w->err, sizeof w->err) < 0 ||
            store_list_ids(st, NULL, count_cb, &listed, w->err, sizeof w->err) < 0 ||
            store_query(st, f, STORE_NEWEST_FIRST, ignore_json, NULL, w->err, sizeof w->err) < 0) {
            atomic_fetch_add(&sh->errors, 1);
            break;
        }
        /* Commits are atomic: a reader never sees a set shrink or half a batch. */
        if (count < last || listed < count || count % WBATCH != 0) {
            snprintf(w->err, sizeof w->err, "count went %llu -> %llu (listed %llu)",
                     (unsigned long long)last, (unsigned long long)count,
                     (unsigned long long)listed);
            atomic_fetch_add(&sh->errors, 1);
            break;
        }
        last = count;
        w->rounds++;
    }
    if (last != NWRITERS * PER_WRITER && w->err[0] == '\0') {
        snprintf(w->err, sizeof w->err, "final count %llu", (unsigned long long)last);
        atomic_fetch_add(&sh->errors, 1);
    }
    store_close(st);
    filter_free(f);
    return NULL;
}

static void test_threads(const char *dir)
{
    char path[512];
    struct shared sh = {0};
    struct worker w[NREADERS + NWRITERS];
    pthread_t t[NREADERS + NWRITERS];
    size_t n = NWRITERS * PER_WRITER;

    snprintf(path, sizeof path, "%s/threads.db", dir);
    sh.path = path;
    sh.evs = xmalloc(n * sizeof *sh.evs);
    for (size_t i = 0; i < n; i++) {
        char content[32];
        snprintf(content, sizeof content, "thread note %zu", i);
        sh.evs[i] = mk((int)(i % 7), 1000 + i, 1, content, TAGS("t", "load"));
    }
    atomic_init(&sh.writers_left, NWRITERS);
    atomic_init(&sh.errors, 0);
    pthread_barrier_init(&sh.start, NULL, NREADERS + NWRITERS);
    for (int i = 0; i < NREADERS + NWRITERS; i++) {
        w[i] = (struct worker){.sh = &sh, .index = i < NWRITERS ? i : i - NWRITERS};
        pthread_create(&t[i], NULL, i < NWRITERS ? writer_main : reader_main, &w[i]);
    }
    for (int i = 0; i < NREADERS + NWRITERS; i++)
        pthread_join(t[i], NULL);
    CHECK(atomic_load(&sh.errors) == 0);
    for (int i = 0; i < NREADERS + NWRITERS; i++) {
        if (w[i].err[0] != '\0')
            fprintf(stderr, "%s %d: %s\n", i < NWRITERS ? "writer" : "reader", w[i].index,
                    w[i].err);
    }
    for (int i = NWRITERS; i < NREADERS + NWRITERS; i++)
        CHECK(w[i].rounds > 0);
    printf("threads: %d writers x %d batches, reader rounds %ld %ld %ld\n", NWRITERS,
           PER_WRITER / WBATCH, w[NWRITERS].rounds, w[NWRITERS + 1].rounds, w[NWRITERS + 2].rounds);
    pthread_barrier_destroy(&sh.start);
    for (size_t i = 0; i < n; i++)
        event_free(sh.evs[i]);
    free(sh.evs);
}

static void remove_tree(const char *dir)
{
    static const char *const names[] = {"migrate.db", "threads.db", "v1.db", "v3.db"};
    static const char *const sfx[] = {"", "-wal", "-shm"};
    char p[600];

    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        for (size_t k = 0; k < 3; k++) {
            snprintf(p, sizeof p, "%s/%s%s", dir, names[i], sfx[k]);
            unlink(p);
        }
    }
    rmdir(dir);
}

/* store_get_sig: the signature from the stored JSON's end, and 0 when that end is not ours. */
static void test_get_sig(const char *dir)
{
    char path[512], err[STORE_ERRLEN];
    struct event *ev = mk(1, 500, 1, "a \"sig\":\"quoted\" note", TAGS("t", "sig"));
    struct store_result r;
    struct store *st;
    uint8_t sig[64], missing[32] = {0};
    sqlite3 *db;

    snprintf(path, sizeof path, "%s/sig.db", dir);
    st = store_open(path, err, sizeof err);
    CHECK_MSG(st != NULL, "%s", err);
    if (st == NULL) {
        event_free(ev);
        return;
    }
    CHECK_MSG(store_insert_batch(st, &ev, 1, &r, err, sizeof err) == 0, "%s", err);
    memset(sig, 0, sizeof sig);
    CHECK_MSG(store_get_sig(st, ev->id, sig, err, sizeof err) == 1, "%s", err);
    CHECK(memcmp(sig, ev->sig, 64) == 0);
    CHECK(store_get_sig(st, missing, sig, err, sizeof err) == 0);
    store_close(st);

    /* JSON that does not end the way event_to_json ends it gives no signature. */
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    CHECK_MSG(sqlite3_exec(db, "UPDATE events SET json = json || ' '", NULL, NULL, NULL) ==
                  SQLITE_OK,
              "%s", sqlite3_errmsg(db));
    sqlite3_close(db);
    st = store_open(path, err, sizeof err);
    CHECK_MSG(st != NULL, "%s", err);
    if (st != NULL) {
        CHECK(store_get_sig(st, ev->id, sig, err, sizeof err) == 0);
        store_close(st);
    }
    event_free(ev);
}

/* ---- read-only opening (export) ---- */

static int file_exists(const char *dir, const char *name)
{
    char path[512];

    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

static void test_open_readonly(const char *dir)
{
    const char *src = getenv("top_srcdir");
    char path[512], fixture[1024], err[STORE_ERRLEN];
    char *sql;
    struct event *a = mk(1, 100, 1, "stored", NULL), *b = mk(2, 200, 1, "refused", NULL);
    struct store_result r;
    struct store *st;
    uint64_t n = 0;
    sqlite3 *db;
    FILE *f;

    /* Never created. */
    snprintf(path, sizeof path, "%s/ro-missing.db", dir);
    CHECK(store_open_readonly(path, err, sizeof err) == NULL);
    CHECK_MSG(strstr(err, "No such file or directory") != NULL, "%s", err);
    CHECK(!file_exists(dir, "ro-missing.db"));

    snprintf(path, sizeof path, "%s/ro.db", dir);
    st = store_open(path, err, sizeof err);
    CHECK_MSG(st != NULL, "%s", err);
    if (st == NULL)
        goto out;
    CHECK_MSG(store_insert_batch(st, &a, 1, &r, err, sizeof err) == 0, "%s", err);
    store_close(st);

    st = store_open_readonly(path, err, sizeof err);
    CHECK_MSG(st != NULL, "%s", err);
    if (st == NULL)
        goto out;
    CHECK_MSG(store_count(st, NULL, &n, err, sizeof err) == 0 && n == 1, "%s", err);
    /* Whatever the file allows, nothing is written through it. */
    CHECK(store_insert_batch(st, &b, 1, &r, err, sizeof err) < 0);
    CHECK_MSG(store_count(st, NULL, &n, err, sizeof err) == 0 && n == 1, "%s", err);
    store_close(st);
    /* The last connection closed as any other: no -wal or -shm file left. */
    CHECK(!file_exists(dir, "ro.db-wal") && !file_exists(dir, "ro.db-shm"));

    /* A database from a newer negsync is refused. */
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db, "PRAGMA user_version = 999", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    CHECK(store_open_readonly(path, err, sizeof err) == NULL);
    CHECK_MSG(strstr(err, "schema version 999 is newer") != NULL, "%s", err);
    snprintf(path, sizeof path, "%s/ro-empty.db", dir);
    if ((f = fopen(path, "w")) != NULL)
        fclose(f);
    CHECK(store_open_readonly(path, err, sizeof err) == NULL);
    CHECK_MSG(strstr(err, "not a negsync database") != NULL, "%s", err);
    if ((f = fopen(path, "r")) != NULL) {
        CHECK(fgetc(f) == EOF);
        fclose(f);
    }

    /* An older schema is migrated where the file can be written, as store_open does. */
    snprintf(fixture, sizeof fixture, "%s/tests/store-v1.sql", src != NULL ? src : ".");
    sql = read_file(fixture);
    CHECK_MSG(sql != NULL, "cannot read %s (is top_srcdir set?)", fixture);
    if (sql != NULL) {
        snprintf(path, sizeof path, "%s/ro-v1.db", dir);
        CHECK(sqlite3_open(path, &db) == SQLITE_OK);
        CHECK_MSG(sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK, "%s", sqlite3_errmsg(db));
        sqlite3_close(db);
        free(sql);
        /* store_open_unchanged (sync --dry-run) refuses it and leaves it as it was. */
        CHECK(store_open_unchanged(path, err, sizeof err) == NULL);
        CHECK_MSG(strstr(err, "does not upgrade it") != NULL, "%s", err);
        CHECK(sqlite3_open(path, &db) == SQLITE_OK);
        {
            sqlite3_stmt *s = NULL;
            CHECK(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL) == SQLITE_OK);
            CHECK(sqlite3_step(s) == SQLITE_ROW && sqlite3_column_int(s, 0) == 1);
            sqlite3_finalize(s);
        }
        sqlite3_close(db);
        st = store_open_readonly(path, err, sizeof err);
        CHECK_MSG(st != NULL, "v1: %s", err);
        if (st != NULL) {
            CHECK(count_filter(st, NULL) == 5);
            CHECK(count_filter(st, "{\"#t\":[\"fixture\"]}") == 2);
            store_close(st);
        }
    }
out:
    event_free(a);
    event_free(b);
}

int main(void)
{
    char dir[] = "/tmp/test-store.XXXXXX";

    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 99;
    }
    test_outcomes();
    test_convergence();
    test_queries();
    test_plans();
    test_newest();
    test_migrations(dir);
    test_migrate_v1(dir);
    test_migrate_v3(dir);
    test_repeated_tags();
    test_batch_tags();
    test_threads(dir);
    test_get_sig(dir);
    test_open_readonly(dir);
    remove_tree(dir);
    return test_summary("test-store");
}
