/*
 * test-filter: NIP-01 filters. Parse errors name the key at fault; JSON
 * output round-trips; filter_match follows NIP-01 case by case; and, the
 * property the store depends on, filter_match and the SQL translation select
 * the same events on a random corpus (signed events plus the real ones) in an
 * in-memory database with the store's schema.
 *
 * Set TEST_SEED to replay a random run; the seed is printed on failure.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "event.h"
#include "filter.h"
#include "testutil.h"
#include "util.h"

static const char ID1[] = "5c83da77af1dec6d7289834998ad7aafbd9e2191396d75ec3cc27f5a77226f36";
static const char PK1[] = "f7234bd4c1394dda46d09f35bd384dd30cc552ad5541990f98844fb06676e9ca";

/* ---------------------------------------------------------------- parsing */

static void expect_parse_error(const char *text, const char *want)
{
    char err[FILTER_ERRLEN] = "";
    struct filter *f = filter_parse(text, err, sizeof err);

    CHECK_MSG(f == NULL && strncmp(err, want, strlen(want)) == 0, "%s: got %s \"%s\", want \"%s\"",
              text, f ? "accepted" : "rejected", err, want);
    filter_free(f);
}

static void expect_roundtrip(const char *text)
{
    char err[FILTER_ERRLEN] = "";
    struct filter *f = filter_parse(text, err, sizeof err);

    CHECK_MSG(f != NULL, "%s: %s", text, err);
    if (f == NULL)
        return;
    char *s = filter_to_string(f);
    CHECK_MSG(strcmp(s, text) == 0, "round trip of %s gave %s", text, s);
    struct filter *d = filter_dup(f);
    char *s2 = filter_to_string(d);
    CHECK_MSG(strcmp(s, s2) == 0, "dup of %s gave %s", text, s2);
    free(s2);
    free(s);
    filter_free(d);
    filter_free(f);
}

static void test_parse(void)
{
    char text[512];

    expect_parse_error("[]", "filter: not a JSON object");
    expect_parse_error("{\"kinds\":[1]", "invalid JSON");
    expect_parse_error("{\"kinds\":[1],\"kinds\":[2]}", "invalid JSON");
    expect_parse_error("{\"ids\":\"abc\"}", "ids: not an array");
    expect_parse_error("{\"ids\":[\"abcd\"]}",
                       "ids[0]: not 64 lowercase hex chars (full event ids only, no prefixes)");
    snprintf(text, sizeof text, "{\"authors\":[\"%s\",\"%.63sA\"]}", PK1, PK1);
    expect_parse_error(text, "authors[1]: not 64 lowercase hex chars (full pubkeys only, "
                             "no prefixes)");
    expect_parse_error("{\"authors\":[1]}", "authors[0]: not 64 lowercase hex chars");
    expect_parse_error("{\"kinds\":1}", "kinds: not an array");
    expect_parse_error("{\"kinds\":[1,\"2\"]}", "kinds[1]: not an integer 0..65535");
    expect_parse_error("{\"kinds\":[65536]}", "kinds[0]: not an integer 0..65535");
    expect_parse_error("{\"kinds\":[-1]}", "kinds[0]: not an integer 0..65535");
    expect_parse_error("{\"kinds\":[1.0]}", "kinds[0]: not an integer 0..65535");
    expect_parse_error("{\"#e\":[\"abc\"]}", "#e[0]: not 64 lowercase hex chars");
    snprintf(text, sizeof text, "{\"#p\":[\"%s\",\"%.60s\"]}", PK1, PK1);
    expect_parse_error(text, "#p[1]: not 64 lowercase hex chars");
    expect_parse_error("{\"#t\":\"nostr\"}", "#t: not an array");
    expect_parse_error("{\"#t\":[\"nostr\",1]}", "#t[1]: not a string");
    expect_parse_error("{\"#tt\":[\"x\"]}", "#tt: tag filters take a single letter a-z or A-Z");
    expect_parse_error("{\"#1\":[\"x\"]}", "#1: tag filters take a single letter");
    expect_parse_error("{\"#\":[\"x\"]}", "#: tag filters take a single letter");
    expect_parse_error("{\"since\":-1}", "since: not a non-negative integer");
    expect_parse_error("{\"until\":1.5}", "until: not a non-negative integer");
    expect_parse_error("{\"limit\":\"10\"}", "limit: not a non-negative integer");
    expect_parse_error("{\"since\":null}", "since: not a non-negative integer");
    expect_parse_error("{\"since\":99999999999999999999}", "invalid JSON");
    expect_parse_error("{\"search\":\"bitcoin\"}", "search: not supported");
    expect_parse_error("{\"kinds\":[1],\"foo\":1}", "unknown key: foo");
    expect_parse_error("{\"Kinds\":[1]}", "unknown key: Kinds");
    expect_parse_error("{\"a\\u0001b\":1}", "unknown key: a?b");
    expect_parse_error("{\"#t\":[\"a\\u0000b\"]}", "invalid JSON");
    expect_parse_error("{\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\":1}",
                       "unknown key: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...");

    /* An object built in memory may carry U+0000, which the struct cannot hold. */
    {
        char err[FILTER_ERRLEN] = "";
        json_t *o = json_pack("{s:[s#]}", "#t", "a\0b", (size_t)3);
        struct filter *f = filter_from_json(o, err, sizeof err);
        CHECK_MSG(f == NULL && strcmp(err, "#t[0]: contains U+0000") == 0, "NUL tag value: %s",
                  err);
        filter_free(f);
        json_decref(o);
        o = json_array();
        f = filter_from_json(o, err, sizeof err);
        CHECK_MSG(f == NULL && strcmp(err, "filter: not a JSON object") == 0, "array: %s", err);
        json_decref(o);
    }

    /* Accepted filters serialize back to exactly the same compact JSON. */
    expect_roundtrip("{}");
    expect_roundtrip("{\"kinds\":[]}");
    expect_roundtrip("{\"ids\":[],\"authors\":[],\"#t\":[]}");
    snprintf(text, sizeof text,
             "{\"ids\":[\"%s\"],\"authors\":[\"%s\",\"%s\"],\"kinds\":[0,1,65535],"
             "\"#e\":[\"%s\"],\"#t\":[\"nostr\",\"\xc3\xbc\"],\"#T\":[\"\"],"
             "\"since\":0,\"until\":9223372036854775807,\"limit\":500}",
             ID1, PK1, ID1, ID1);
    expect_roundtrip(text);

    /* Keys come out in our order whatever the input order. */
    {
        char err[FILTER_ERRLEN] = "";
        struct filter *f =
            filter_parse("{\"limit\":5,\"#t\":[\"x\"],\"kinds\":[7],\"since\":3}", err, sizeof err);
        char *s = f ? filter_to_string(f) : NULL;
        CHECK_MSG(s && strcmp(s, "{\"kinds\":[7],\"#t\":[\"x\"],\"since\":3,\"limit\":5}") == 0,
                  "order: %s", s ? s : err);
        free(s);
        filter_free(f);
    }

    /* Hand-built filters: a bare count is in force; values above INT64_MAX clamp. */
    {
        struct filter *f = filter_new();
        char *s = filter_to_string(f);
        CHECK_MSG(strcmp(s, "{}") == 0, "empty filter: %s", s);
        free(s);
        f->kinds = xmalloc(sizeof *f->kinds);
        f->kinds[0] = 1;
        f->nkinds = 1;
        f->has_until = 1;
        f->until = UINT64_MAX;
        s = filter_to_string(f);
        CHECK_MSG(strcmp(s, "{\"kinds\":[1],\"until\":9223372036854775807}") == 0, "hand-built: %s",
                  s);
        free(s);
        filter_free(f);
    }
}

/* ---------------------------------------------------------------- matching */

static struct event *sign(unsigned key, uint64_t created_at, uint32_t kind, size_t ntags,
                          const char *const *const *tags, const size_t *lens, const char *content)
{
    uint8_t sk[32] = {0};

    sk[30] = (uint8_t)(key >> 8);
    sk[31] = (uint8_t)key;
    struct event *ev = event_sign(sk, created_at, kind, tags, lens, ntags, content);
    if (ev == NULL)
        abort();
    return ev;
}

static int match(const char *text, const struct event *ev)
{
    char err[FILTER_ERRLEN] = "";
    struct filter *f = filter_parse(text, err, sizeof err);

    if (f == NULL) {
        CHECK_MSG(0, "%s: %s", text, err);
        return -1;
    }
    int m = filter_match(f, ev);
    filter_free(f);
    return m;
}

static void test_match(void)
{
    const char *t0[] = {"e", ID1, "wss://relay"};
    const char *t1[] = {"t", "nostr"};
    const char *t2[] = {"t"};             /* no value: never matches #t */
    const char *t3[] = {"tt", "bitcoin"}; /* not a single-letter name */
    const char *t4[] = {"T", "Upper"};
    const char *const *tags[] = {t0, t1, t2, t3, t4};
    const size_t lens[] = {3, 2, 1, 2, 2};
    struct event *ev = sign(1, 1000, 1, 5, tags, lens, "hi");
    char idhex[65], pkhex[65], text[512];

    hex_encode(ev->id, 32, idhex);
    hex_encode(ev->pubkey, 32, pkhex);

    CHECK_MSG(match("{}", ev) == 1, "empty filter");
    CHECK_MSG(match("{\"limit\":0}", ev) == 1, "limit is ignored");
    snprintf(text, sizeof text, "{\"ids\":[\"%s\",\"%s\"]}", ID1, idhex);
    CHECK_MSG(match(text, ev) == 1, "ids OR");
    snprintf(text, sizeof text, "{\"ids\":[\"%s\"]}", ID1);
    CHECK_MSG(match(text, ev) == 0, "other id");
    snprintf(text, sizeof text, "{\"authors\":[\"%s\"]}", pkhex);
    CHECK_MSG(match(text, ev) == 1, "author");
    snprintf(text, sizeof text, "{\"authors\":[\"%s\"]}", PK1);
    CHECK_MSG(match(text, ev) == 0, "other author");
    CHECK_MSG(match("{\"kinds\":[0,1]}", ev) == 1, "kind in list");
    CHECK_MSG(match("{\"kinds\":[0,7]}", ev) == 0, "kind not in list");
    CHECK_MSG(match("{\"kinds\":[]}", ev) == 0, "empty kinds matches nothing");
    CHECK_MSG(match("{\"ids\":[]}", ev) == 0, "empty ids matches nothing");
    CHECK_MSG(match("{\"authors\":[]}", ev) == 0, "empty authors matches nothing");
    CHECK_MSG(match("{\"#t\":[]}", ev) == 0, "empty #t matches nothing");
    snprintf(text, sizeof text, "{\"#e\":[\"%s\"]}", ID1);
    CHECK_MSG(match(text, ev) == 1, "#e (third field ignored)");
    CHECK_MSG(match("{\"#t\":[\"bitcoin\",\"nostr\"]}", ev) == 1, "#t OR");
    CHECK_MSG(match("{\"#t\":[\"Nostr\"]}", ev) == 0, "#t is case-sensitive");
    CHECK_MSG(match("{\"#t\":[\"wss://relay\"]}", ev) == 0, "only the second field counts");
    CHECK_MSG(match("{\"#T\":[\"Upper\"]}", ev) == 1, "#T is its own letter");
    CHECK_MSG(match("{\"#t\":[\"Upper\"]}", ev) == 0, "#t does not see T tags");
    CHECK_MSG(match("{\"#b\":[\"bitcoin\"]}", ev) == 0, "multi-letter tag names are not #x");
    CHECK_MSG(match("{\"#t\":[\"nostr\"],\"#T\":[\"x\"]}", ev) == 0, "tag conditions AND");
    CHECK_MSG(match("{\"since\":1000,\"until\":1000}", ev) == 1, "since <= created_at <= until");
    CHECK_MSG(match("{\"since\":1001}", ev) == 0, "since excludes older");
    CHECK_MSG(match("{\"until\":999}", ev) == 0, "until excludes newer");
    CHECK_MSG(match("{\"since\":1001,\"until\":999}", ev) == 0, "empty window");
    snprintf(text, sizeof text, "{\"authors\":[\"%s\"],\"kinds\":[1],\"#t\":[\"nostr\"]}", pkhex);
    CHECK_MSG(match(text, ev) == 1, "all conditions");
    snprintf(text, sizeof text, "{\"authors\":[\"%s\"],\"kinds\":[2],\"#t\":[\"nostr\"]}", pkhex);
    CHECK_MSG(match(text, ev) == 0, "one condition fails");

    /* Tag values with a NUL byte never equal a filter value (which has none). */
    const char *n0[] = {"t", "a\0b"};
    const char *const *ntags[] = {n0};
    const size_t nlens[] = {2};
    struct event *nev = sign(2, 5, 1, 1, ntags, nlens, "");
    /* event_sign copies C strings; put the real bytes back (matching ignores the sig). */
    free(nev->tags[0].fields[1]);
    nev->tags[0].fields[1] = xmalloc(4);
    memcpy(nev->tags[0].fields[1], "a\0b", 4);
    nev->tags[0].lens[1] = 3;
    CHECK_MSG(match("{\"#t\":[\"a\"]}", nev) == 0, "value with NUL vs its prefix");
    event_free(nev);

    /* Hand-set since above INT64_MAX matches nothing; until above it everything. */
    struct filter *f = filter_new();
    f->has_since = 1;
    f->since = (uint64_t)INT64_MAX + 1;
    CHECK_MSG(filter_match(f, ev) == 0, "since 2^63");
    f->has_since = 0;
    f->has_until = 1;
    f->until = UINT64_MAX;
    CHECK_MSG(filter_match(f, ev) == 1, "until 2^64-1");
    filter_free(f);
    event_free(ev);
}

/* --------------------------------------------------------------------- SQL */

static void test_sql_text(void)
{
    char err[FILTER_ERRLEN] = "";
    char text[512];
    char *sql = NULL;
    int p = 1;
    struct filter *f = filter_new();

    CHECK_MSG(filter_sql_where(f, &sql, &p) == 0 && strcmp(sql, "1") == 0 && p == 1,
              "empty filter: %s", sql);
    free(sql);
    filter_free(f);

    snprintf(text, sizeof text,
             "{\"ids\":[\"%s\",\"%s\"],\"authors\":[\"%s\"],\"kinds\":[1,7],\"#t\":[\"a\",\"b\"],"
             "\"#e\":[],\"since\":5,\"until\":9,\"limit\":3}",
             ID1, ID1, PK1);
    f = filter_parse(text, err, sizeof err);
    CHECK_MSG(f != NULL, "%s", err);
    if (f == NULL)
        return;
    sql = xstrdup("SELECT e.seq FROM events e WHERE e.kind <> ?1 AND ");
    p = 2;
    CHECK_MSG(filter_sql_where(f, &sql, &p) == 0, "where");
    const char *want = "SELECT e.seq FROM events e WHERE e.kind <> ?1 AND "
                       "(e.id IN (?2,?3) AND e.pubkey IN (?4) AND e.kind IN (?5,?6) AND "
                       "e.seq IN (SELECT t.seq FROM tags t WHERE t.name = ?7 AND "
                       "t.value IN (?8,?9)) AND 0 AND e.created_at >= ?10 AND "
                       "e.created_at <= ?11)";
    CHECK_MSG(strcmp(sql, want) == 0, "SQL:\n got %s\nwant %s", sql, want);
    CHECK_MSG(p == 12, "next param %d", p);
    free(sql);

    /* Too many values for one statement are refused, not truncated. */
    struct filter *big = filter_new();
    big->nkinds = 40000;
    big->kinds = xcalloc(big->nkinds, sizeof *big->kinds);
    sql = NULL;
    p = 1;
    CHECK_MSG(filter_sql_where(big, &sql, &p) == -1 && sql == NULL && p == 1, "40000 params");
    big->nkinds = 32766;
    CHECK_MSG(filter_sql_where(big, &sql, &p) == 0 && p == 32767, "32766 params");
    free(sql);
    sql = NULL;
    p = 2;
    CHECK_MSG(filter_sql_where(big, &sql, &p) == -1, "32766 params from ?2");
    filter_free(big);
    filter_free(f);
}

static const char schema[] =
    "CREATE TABLE events (seq INTEGER PRIMARY KEY, id BLOB NOT NULL UNIQUE,"
    " pubkey BLOB NOT NULL, created_at INTEGER NOT NULL, kind INTEGER NOT NULL,"
    " dtag TEXT, json TEXT NOT NULL);"
    "CREATE TABLE tags (name TEXT NOT NULL, value NOT NULL, seq INTEGER NOT NULL,"
    " PRIMARY KEY (name, value, seq)) WITHOUT ROWID;";

static void db_exec(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        fprintf(stderr, "FAIL: %s: %s\n", sql, msg);
        exit(1);
    }
}

/* Inserts ev as store.c would: the row, then one tags row per single-letter tag with a value. */
static void db_insert(sqlite3 *db, sqlite3_stmt *ins_ev, sqlite3_stmt *ins_tag,
                      const struct event *ev)
{
    size_t len;
    char *json = event_to_json(ev, &len);
    const char *d = event_tag_value(ev, "d");

    sqlite3_bind_blob(ins_ev, 1, ev->id, 32, SQLITE_STATIC);
    sqlite3_bind_blob(ins_ev, 2, ev->pubkey, 32, SQLITE_STATIC);
    sqlite3_bind_int64(ins_ev, 3, (sqlite3_int64)ev->created_at);
    sqlite3_bind_int64(ins_ev, 4, ev->kind);
    if (d != NULL)
        sqlite3_bind_text(ins_ev, 5, d, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(ins_ev, 5);
    sqlite3_bind_text(ins_ev, 6, json, (int)len, SQLITE_STATIC);
    if (sqlite3_step(ins_ev) != SQLITE_DONE) {
        fprintf(stderr, "FAIL: insert event: %s\n", sqlite3_errmsg(db));
        exit(1);
    }
    sqlite3_reset(ins_ev);
    sqlite3_int64 seq = sqlite3_last_insert_rowid(db);
    for (size_t i = 0; i < ev->ntags; i++) {
        const struct event_tag *t = &ev->tags[i];
        if (t->nfields < 2 || t->lens[0] != 1)
            continue;
        sqlite3_bind_int64(ins_tag, 1, seq);
        sqlite3_bind_text(ins_tag, 2, t->fields[0], 1, SQLITE_STATIC);
        /* As the store keeps them: 64 lowercase hex as 32 bytes, the rest as text. */
        if (filter_sql_bind_tag_value(ins_tag, 3, t->fields[1], t->lens[1]) != 0) {
            fprintf(stderr, "FAIL: bind tag: %s\n", sqlite3_errmsg(db));
            exit(1);
        }
        if (sqlite3_step(ins_tag) != SQLITE_DONE) {
            fprintf(stderr, "FAIL: insert tag: %s\n", sqlite3_errmsg(db));
            exit(1);
        }
        sqlite3_reset(ins_tag);
    }
    free(json);
}

static uint64_t rng_state;

static uint64_t rng(void)
{
    /* xorshift64*: deterministic for a seed, good enough to pick test cases. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

static size_t pick(size_t n)
{
    return (size_t)(rng() % n);
}

#define NKEYS    6
#define NEVENTS  300
#define NFILTERS 1500

/*
 * The store keeps a value of 64 lowercase hex chars as 32 bytes and every
 * other value as text: hex-looking values that are not quite that must stay
 * text on both sides.
 */
static const char *const pool_t[] = {
    "nostr",
    "bitcoin",
    "Nostr",
    "",
    "\xc3\xbc",
    "x y",
    "00000000000000000000000000000000000000000000000000000000000000ab", /* 64 hex */
    "00000000000000000000000000000000000000000000000000000000000000AB", /* uppercase */
    "0000000000000000000000000000000000000000000000000000000000000ab",  /* 63 chars */
    "00000000000000000000000000000000000000000000000000000000000000ag", /* not hex */
};
static const uint32_t pool_kinds[] = {0, 1, 3, 7, 1984, 30023, 20001, 4};
#define NREFS 8
static char pool_ref[NREFS][65]; /* random event ids for #e */

static uint64_t random_time(void)
{
    switch (pick(12)) {
    case 0: return 0;
    case 1: return INT64_MAX;
    default: return 1000 + pick(100);
    }
}

static struct event *random_event(const char (*pks)[65], size_t n)
{
    char content[32];
    uint8_t sk[32] = {0};
    size_t ntags = pick(6);
    const char *fields[64][3];
    const char *const *tags[64];
    size_t lens[64];

    for (size_t i = 0; i < ntags; i++) {
        lens[i] = 2 + pick(2); /* sometimes with a relay hint as third field */
        switch (pick(7)) {
        case 0:
        case 1:
            fields[i][0] = "e";
            fields[i][1] = pool_ref[pick(NREFS)];
            break;
        case 2:
            fields[i][0] = "p";
            fields[i][1] = pks[pick(NKEYS)];
            break;
        case 3:
        case 4:
            fields[i][0] = pick(4) ? "t" : "T";
            fields[i][1] = pool_t[pick(sizeof pool_t / sizeof *pool_t)];
            break;
        case 5:
            fields[i][0] = "tt"; /* not a single letter: never indexed */
            fields[i][1] = "nostr";
            break;
        default:
            fields[i][0] = pick(2) ? "t" : "e";
            lens[i] = 1; /* a name with no value */
            break;
        }
        fields[i][2] = "wss://relay.example";
        tags[i] = fields[i];
    }
    sk[31] = (uint8_t)(1 + pick(NKEYS));
    snprintf(content, sizeof content, "random %zu", n); /* ids stay unique */
    struct event *ev =
        event_sign(sk, random_time(), pool_kinds[pick(8)], tags, lens, ntags, content);
    if (ev == NULL)
        abort();
    return ev;
}

/* A random list of up to 3 values (sometimes empty) from a pool of hex strings. */
static void random_hex_list(uint8_t (**out)[32], size_t *n, int *has, struct event **evs,
                            size_t nevs, int which, const char (*pks)[65])
{
    size_t m = pick(5) == 0 ? 0 : 1 + pick(3);
    *has = 1;
    *n = m;
    *out = xreallocarray(NULL, m, 32);
    for (size_t i = 0; i < m; i++) {
        if (pick(5) == 0)
            hex_decode(ID1, 64, (*out)[i], 32, 1); /* matches nothing */
        else if (which == 0)
            memcpy((*out)[i], evs[pick(nevs)]->id, 32);
        else
            hex_decode(pks[pick(NKEYS)], 64, (*out)[i], 32, 1);
    }
}

static void random_tag(struct filter *f, char name, const char (*pks)[65])
{
    f->tags = xreallocarray(f->tags, f->ntags + 1, sizeof *f->tags);
    struct filter_tag *t = &f->tags[f->ntags++];
    size_t m = pick(6) == 0 ? 0 : 1 + pick(3);
    t->name = name;
    t->nvalues = m;
    t->values = xcalloc(m, sizeof *t->values);
    for (size_t i = 0; i < m; i++) {
        const char *v;
        if (name == 'e')
            v = pool_ref[pick(NREFS)];
        else if (name == 'p')
            v = pks[pick(NKEYS)];
        else
            v = pool_t[pick(sizeof pool_t / sizeof *pool_t)];
        t->values[i] = xstrdup(v);
    }
}

static uint64_t random_bound(void)
{
    switch (pick(10)) {
    case 0: return 0;
    case 1: return INT64_MAX;
    case 2: return (uint64_t)INT64_MAX + 1 + pick(1000); /* only settable by hand */
    case 3: return UINT64_MAX;
    default: return 1000 + pick(100);
    }
}

static struct filter *random_filter(struct event **evs, size_t nevs, const char (*pks)[65])
{
    struct filter *f = filter_new();

    if (pick(5) == 0)
        random_hex_list(&f->ids, &f->nids, &f->has_ids, evs, nevs, 0, pks);
    if (pick(3) == 0)
        random_hex_list(&f->authors, &f->nauthors, &f->has_authors, evs, nevs, 1, pks);
    if (pick(3) == 0) {
        size_t m = pick(5) == 0 ? 0 : 1 + pick(3);
        f->has_kinds = 1;
        f->nkinds = m;
        f->kinds = xreallocarray(NULL, m, sizeof *f->kinds);
        for (size_t i = 0; i < m; i++)
            f->kinds[i] = pool_kinds[pick(8)] + (pick(10) == 0);
    }
    if (pick(3) == 0)
        random_tag(f, 'e', pks);
    if (pick(3) == 0)
        random_tag(f, 'p', pks);
    if (pick(3) == 0)
        random_tag(f, 't', pks);
    if (pick(8) == 0)
        random_tag(f, 'T', pks);
    if (pick(3) == 0) {
        f->has_since = 1;
        f->since = random_bound();
    }
    if (pick(3) == 0) {
        f->has_until = 1;
        f->until = random_bound();
    }
    if (pick(4) == 0) {
        f->has_limit = 1;
        f->limit = pick(10);
    }
    return f;
}

static void test_sql_agrees(uint64_t seed)
{
    sqlite3 *db;
    sqlite3_stmt *ins_ev, *ins_tag;
    struct event **evs = NULL;
    size_t nevs = 0;
    char pks[NKEYS][65];
    size_t total_selected = 0, nonempty = 0;
    int failed_before = test_failures;

    rng_state = seed ? seed : 1;
    for (int k = 0; k < NKEYS; k++) {
        uint8_t sk[32] = {0};
        sk[31] = (uint8_t)(k + 1);
        struct event *ev = event_sign(sk, 0, 1, NULL, NULL, 0, "");
        hex_encode(ev->pubkey, 32, pks[k]);
        event_free(ev);
    }
    for (int i = 0; i < NREFS; i++) {
        uint8_t r[32];
        for (int j = 0; j < 32; j++)
            r[j] = (uint8_t)rng();
        hex_encode(r, 32, pool_ref[i]);
    }

    if (sqlite3_open(":memory:", &db) != SQLITE_OK)
        abort();
    db_exec(db, schema);
    db_exec(db, "BEGIN");
    sqlite3_prepare_v2(db,
                       "INSERT INTO events (id, pubkey, created_at, kind, dtag, json)"
                       " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                       -1, &ins_ev, NULL);
    sqlite3_prepare_v2(db, "INSERT OR IGNORE INTO tags (seq, name, value) VALUES (?1, ?2, ?3)", -1,
                       &ins_tag, NULL);

    for (size_t i = 0; i < NEVENTS; i++) {
        evs = xreallocarray(evs, nevs + 1, sizeof *evs);
        evs[nevs++] = random_event((const char(*)[65])pks, i);
    }
    /* The real events too: many tags, real-world values. */
    {
        const char *srcdir = getenv("top_srcdir");
        char path[4096];
        snprintf(path, sizeof path, "%s/tests/data/real-events-nostream-seeds.jsonl",
                 srcdir != NULL && srcdir[0] != '\0' ? srcdir : ".");
        FILE *fp = fopen(path, "r");
        char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        CHECK_MSG(fp != NULL, "cannot read %s", path);
        while (fp != NULL && (n = getline(&line, &cap, fp)) > 0) {
            char err[EVENT_ERRLEN];
            struct event *ev = event_parse(line, (size_t)n, err, sizeof err);
            if (ev == NULL)
                continue;
            evs = xreallocarray(evs, nevs + 1, sizeof *evs);
            evs[nevs++] = ev;
        }
        free(line);
        if (fp != NULL)
            fclose(fp);
        CHECK_MSG(nevs - NEVENTS == 463, "%s: %zu real events, want 463", path, nevs - NEVENTS);
    }
    for (size_t i = 0; i < nevs; i++)
        db_insert(db, ins_ev, ins_tag, evs[i]);
    db_exec(db, "COMMIT");

    unsigned char *selected = xcalloc(nevs, 1);
    for (int round = 0; round < NFILTERS; round++) {
        struct filter *f = random_filter(evs, nevs, (const char(*)[65])pks);
        if (round % 10 == 0 && nevs > NEVENTS) {
            /* Sometimes aim at a real event's own tag values. */
            const struct event *r = evs[NEVENTS + pick(nevs - NEVENTS)];
            for (size_t i = 0; i < r->ntags; i++) {
                const struct event_tag *t = &r->tags[i];
                if (t->nfields >= 2 && t->lens[0] == 1 && strlen(t->fields[1]) == t->lens[1]) {
                    f->tags = xreallocarray(f->tags, f->ntags + 1, sizeof *f->tags);
                    struct filter_tag *ft = &f->tags[f->ntags++];
                    ft->name = t->fields[0][0];
                    ft->nvalues = 1;
                    ft->values = xcalloc(1, sizeof *ft->values);
                    ft->values[0] = xstrdup(t->fields[1]);
                    break;
                }
            }
        }
        char *sql = xstrdup("SELECT e.seq FROM events e WHERE ");
        int p = 1;
        sqlite3_stmt *st = NULL;
        if (filter_sql_where(f, &sql, &p) != 0 ||
            sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK ||
            filter_sql_bind(f, st, 1) != 0) {
            CHECK_MSG(0, "seed %llu round %d: SQL failed: %s: %s", (unsigned long long)seed, round,
                      sql, sqlite3_errmsg(db));
            sqlite3_finalize(st);
            free(sql);
            filter_free(f);
            continue;
        }
        CHECK_MSG(sqlite3_bind_parameter_count(st) == p - 1, "param count %d vs %d",
                  sqlite3_bind_parameter_count(st), p - 1);
        memset(selected, 0, nevs);
        int rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            sqlite3_int64 seq = sqlite3_column_int64(st, 0);
            if (seq >= 1 && (size_t)seq <= nevs)
                selected[seq - 1] = 1;
        }
        CHECK_MSG(rc == SQLITE_DONE, "step: %s", sqlite3_errmsg(db));
        size_t count = 0;
        for (size_t i = 0; i < nevs; i++) {
            int m = filter_match(f, evs[i]);
            count += m;
            if (m != selected[i]) {
                char *fs = filter_to_string(f);
                CHECK_MSG(0,
                          "seed %llu round %d: event %zu: filter_match %d, SQL %d\n  filter %s\n  "
                          "sql %s",
                          (unsigned long long)seed, round, i, m, selected[i], fs, sql);
                free(fs);
                break;
            }
        }
        total_selected += count;
        nonempty += count > 0;
        sqlite3_finalize(st);
        free(sql);
        filter_free(f);
        if (test_failures - failed_before > 5)
            break;
    }
    printf("filter vs SQL: %d random filters over %zu events (seed %llu): %zu selected in all, "
           "%zu filters non-empty\n",
           NFILTERS, nevs, (unsigned long long)seed, total_selected, nonempty);
    CHECK_MSG(nonempty > NFILTERS / 10, "random filters too rarely match anything (%zu)", nonempty);

    free(selected);
    for (size_t i = 0; i < nevs; i++)
        event_free(evs[i]);
    free(evs);
    sqlite3_finalize(ins_ev);
    sqlite3_finalize(ins_tag);
    sqlite3_close(db);
}

/* Values are bound, never pasted: SQL-looking input is just a string. */
static void test_sql_injection(void)
{
    sqlite3 *db;
    sqlite3_stmt *ins_ev, *ins_tag, *st = NULL;
    const char *evil = "x') OR 1=1; DROP TABLE events; --";
    const char *t0[] = {"t", evil};
    const char *const *tags[] = {t0};
    const size_t lens[] = {2};
    char err[FILTER_ERRLEN] = "";

    if (sqlite3_open(":memory:", &db) != SQLITE_OK)
        abort();
    db_exec(db, schema);
    sqlite3_prepare_v2(db,
                       "INSERT INTO events (id, pubkey, created_at, kind, dtag, json)"
                       " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                       -1, &ins_ev, NULL);
    sqlite3_prepare_v2(db, "INSERT OR IGNORE INTO tags (seq, name, value) VALUES (?1, ?2, ?3)", -1,
                       &ins_tag, NULL);
    struct event *a = sign(1, 10, 1, 1, tags, lens, "a");
    struct event *b = sign(2, 10, 1, 0, NULL, NULL, "b");
    db_insert(db, ins_ev, ins_tag, a);
    db_insert(db, ins_ev, ins_tag, b);

    json_t *o = json_pack("{s:[s]}", "#t", evil);
    struct filter *f = filter_from_json(o, err, sizeof err);
    json_decref(o);
    char *sql = xstrdup("SELECT count(*) FROM events e WHERE ");
    int p = 1;
    CHECK_MSG(f && filter_sql_where(f, &sql, &p) == 0 && strstr(sql, "DROP") == NULL, "sql %s",
              sql);
    CHECK_MSG(sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
                  filter_sql_bind(f, st, 1) == 0 && sqlite3_step(st) == SQLITE_ROW &&
                  sqlite3_column_int(st, 0) == 1,
              "evil value should select exactly one event");
    sqlite3_finalize(st);
    free(sql);
    filter_free(f);
    event_free(a);
    event_free(b);
    sqlite3_finalize(ins_ev);
    sqlite3_finalize(ins_tag);
    sqlite3_close(db);
}

int main(void)
{
    const char *s = getenv("TEST_SEED");
    uint64_t seed = s ? strtoull(s, NULL, 0) : (uint64_t)time(NULL);

    test_parse();
    test_match();
    test_sql_text();
    test_sql_injection();
    test_sql_agrees(seed);

    if (test_failures)
        fprintf(stderr, "test-filter: rerun with TEST_SEED=%llu\n", (unsigned long long)seed);
    return test_summary("test-filter");
}
