/*
 * test-relay: the relay module without the internet.
 *
 * Pure parts first (message parsing with its type checks, the backoff
 * schedule with injected randomness, URL handling, NIP-11 documents), then
 * the connection against servers that live in this process:
 *
 *  - a hand-written websocket server over a plain socket ("raw server"),
 *    which lets a test say exactly which bytes go on the wire: garbage
 *    frames, oversize and fragmented messages, a peer that stops reading,
 *    a peer that closes or dies, a relay that restarts. Because it counts
 *    every byte it reads and writes, the client's wire counters can be
 *    checked for equality, not plausibility;
 *  - a libwebsockets echo server, for permessage-deflate and for TLS with a
 *    self-signed certificate made here with OpenSSL.
 *
 * Every wait has a deadline; servers run on 127.0.0.1 port 0 in threads and
 * are joined before the test ends.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <libwebsockets.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "relay.h"
#include "testutil.h"
#include "util.h"

#define MIB (1024 * 1024)

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- captured log lines ----------------------------------------------------- */

struct logcap {
    pthread_mutex_t mu;
    int n;
    size_t longest;
    char last[1024];
    char all[16384];
};

static void logcap_fn(void *arg, const char *url, const char *line)
{
    struct logcap *l = arg;
    pthread_mutex_lock(&l->mu);
    l->n++;
    size_t n = strlen(line);
    if (n > l->longest)
        l->longest = n;
    snprintf(l->last, sizeof l->last, "%s", line);
    size_t used = strlen(l->all);
    snprintf(l->all + used, sizeof l->all - used, "%s\n", line);
    pthread_mutex_unlock(&l->mu);
    if (getenv("TEST_RELAY_VERBOSE"))
        fprintf(stderr, "log %s: %s\n", url, line);
}

static void logcap_init(struct logcap *l)
{
    memset(l, 0, sizeof *l);
    pthread_mutex_init(&l->mu, NULL);
}

static struct relay_opts quiet_opts(struct logcap *l)
{
    struct relay_opts o = relay_opts_default();
    o.log = logcap_fn;
    o.log_arg = l;
    o.connect_timeout_ms = 5000;
    o.send_timeout_ms = 5000;
    o.ping_interval_s = 0;
    return o;
}

/* ---- message parsing ---------------------------------------------------------- */

static struct relay_msg *parse_ok(const char *s)
{
    char err[RELAY_ERRLEN];
    struct relay_msg *m = NULL;
    int rc = relay_msg_parse(s, strlen(s), &m, err, sizeof err);
    CHECK_MSG(rc == 0 && m != NULL, "%s: %s", s, err);
    return rc == 0 ? m : NULL;
}

static void parse_bad(const char *s, const char *want)
{
    char err[RELAY_ERRLEN] = "";
    struct relay_msg *m = (struct relay_msg *)1;
    int rc = relay_msg_parse(s, strlen(s), &m, err, sizeof err);
    CHECK_MSG(rc == -1 && m == NULL, "accepted: %s", s);
    CHECK_MSG(strstr(err, want) != NULL, "%s: error \"%s\" lacks \"%s\"", s, err, want);
}

static void test_parse(void)
{
    const char *id = "5c83da77af1dec6d7289834998ad7aafbd9e2191396d75ec3cc27f5a77226f36";
    char buf[512];
    struct relay_msg *m;

    m = parse_ok("[\"EVENT\",\"sub1\",{\"id\":\"x\",\"kind\":1}]");
    if (m) {
        CHECK(m->type == RELAY_MSG_EVENT);
        CHECK(strcmp(m->subid, "sub1") == 0);
        CHECK(json_is_object(m->event));
        CHECK(json_integer_value(json_object_get(m->event, "kind")) == 1);
        CHECK(m->raw_len == strlen("[\"EVENT\",\"sub1\",{\"id\":\"x\",\"kind\":1}]"));
        relay_msg_free(m);
    }
    m = parse_ok("[\"EOSE\",\"s\"]");
    if (m) {
        CHECK(m->type == RELAY_MSG_EOSE && strcmp(m->subid, "s") == 0);
        relay_msg_free(m);
    }
    snprintf(buf, sizeof buf, "[\"OK\",\"%s\",false,\"duplicate: have it\"]", id);
    m = parse_ok(buf);
    if (m) {
        CHECK(m->type == RELAY_MSG_OK && strcmp(m->ok_id, id) == 0 && m->ok_accepted == 0);
        CHECK(strcmp(m->text, "duplicate: have it") == 0);
        relay_msg_free(m);
    }
    snprintf(buf, sizeof buf, "[\"OK\",\"%s\",true]", id);
    m = parse_ok(buf);
    if (m) {
        CHECK(m->ok_accepted == 1 && strcmp(m->text, "") == 0);
        relay_msg_free(m);
    }
    m = parse_ok("[\"NOTICE\",\"ERROR: bad msg: negentropy disabled\"]");
    if (m) {
        CHECK(m->type == RELAY_MSG_NOTICE);
        CHECK(strcmp(m->text, "ERROR: bad msg: negentropy disabled") == 0);
        CHECK(m->subid == NULL && m->event == NULL && m->neg_hex == NULL);
        relay_msg_free(m);
    }
    m = parse_ok("[\"CLOSED\",\"q\",\"error: bad filter\"]");
    if (m) {
        CHECK(m->type == RELAY_MSG_CLOSED && strcmp(m->subid, "q") == 0);
        CHECK(strcmp(m->text, "error: bad filter") == 0);
        relay_msg_free(m);
    }
    m = parse_ok("[\"CLOSED\",\"q\"]");
    if (m) {
        CHECK(m->type == RELAY_MSG_CLOSED && strcmp(m->text, "") == 0);
        relay_msg_free(m);
    }
    m = parse_ok("[\"NEG-MSG\",\"n1\",\"61AbCd00\"]");
    if (m) {
        CHECK(m->type == RELAY_MSG_NEG_MSG && strcmp(m->subid, "n1") == 0);
        CHECK(m->neg_hex_len == 8 && strcmp(m->neg_hex, "61AbCd00") == 0);
        relay_msg_free(m);
    }
    m = parse_ok("[\"NEG-ERR\",\"n1\",\"blocked: too many query results\",1000000]");
    if (m) {
        CHECK(m->type == RELAY_MSG_NEG_ERR && strcmp(m->subid, "n1") == 0);
        CHECK(strcmp(m->text, "blocked: too many query results") == 0);
        CHECK(m->has_neg_limit == 1 && m->neg_limit == 1000000);
        relay_msg_free(m);
    }
    m = parse_ok("[\"NEG-ERR\",\"n1\",\"closed: unknown subscription handle\"]");
    if (m) {
        CHECK(m->has_neg_limit == 0);
        relay_msg_free(m);
    }
    m = parse_ok("[\"NEG-ERR\",\"n1\",\"x\",\"not a number\"]");
    if (m) {
        CHECK(m->has_neg_limit == 0); /* advisory field of the wrong type: ignored */
        relay_msg_free(m);
    }
    /* A relay ending a session itself (khatru); what follows the subid is ignored. */
    m = parse_ok("[\"NEG-CLOSE\",\"n1\"]");
    if (m) {
        CHECK(m->type == RELAY_MSG_NEG_CLOSE && strcmp(m->subid, "n1") == 0);
        CHECK(m->text == NULL && m->neg_hex == NULL);
        relay_msg_free(m);
    }
    m = parse_ok("[\"NEG-CLOSE\",\"n1\",\"done\"]");
    if (m) {
        CHECK(m->type == RELAY_MSG_NEG_CLOSE && strcmp(m->subid, "n1") == 0);
        relay_msg_free(m);
    }
    m = parse_ok("[\"AUTH\",\"challenge-123\"]");
    if (m) {
        CHECK(m->type == RELAY_MSG_AUTH && strcmp(m->text, "challenge-123") == 0);
        relay_msg_free(m);
    }
    m = parse_ok("[\"COUNT\",\"c\",{\"count\":42}]");
    if (m) {
        CHECK(m->type == RELAY_MSG_COUNT && m->count == 42);
        relay_msg_free(m);
    }
    /* Not NUL-terminated: the parser must stop at len. */
    const char *two = "[\"EOSE\",\"a\"][\"EOSE\",\"b\"]";
    char err[RELAY_ERRLEN];
    CHECK(relay_msg_parse(two, 12, &m, err, sizeof err) == 0 && m != NULL &&
          strcmp(m->subid, "a") == 0);
    relay_msg_free(m);
    /* A NUL inside a notice truncates the copy, it does not break parsing. */
    m = parse_ok("[\"NOTICE\",\"a\\u0000b\"]");
    if (m) {
        CHECK(strcmp(m->text, "a") == 0);
        relay_msg_free(m);
    }

    /* Shapes that are not messages at all. */
    parse_bad("", "invalid JSON");
    parse_bad("not json", "invalid JSON");
    parse_bad("[\"NOTICE\",\"unterminated", "invalid JSON");
    parse_bad("{\"NOTICE\":\"x\"}", "not a JSON array");
    parse_bad("\"NOTICE\"", "not a JSON array");
    parse_bad("[]", "empty array");
    parse_bad("[1,\"x\"]", "element 0 is not a string");
    parse_bad("[null]", "element 0 is not a string");
    parse_bad("[\"FOO\",\"x\"]", "unknown message type \"FOO\"");
    parse_bad("[\"notice\",\"x\"]", "unknown message type");
    parse_bad("[\"NOT\\u0000ICE\",\"x\"]", "NUL");
    /* Known types with the wrong element types. */
    parse_bad("[\"EVENT\",\"s\"]", "EVENT: expected 3 elements");
    parse_bad("[\"EVENT\",1,{}]", "EVENT: subscription id is not a string");
    parse_bad("[\"EVENT\",\"s\",[]]", "EVENT: element 2 is not an object");
    parse_bad("[\"EVENT\",\"s\",\"{}\"]", "EVENT: element 2 is not an object");
    parse_bad("[\"EOSE\"]", "EOSE: no subscription id");
    parse_bad("[\"EOSE\",null]", "EOSE: subscription id is not a string");
    parse_bad("[\"EOSE\",\"a\\u0000b\"]", "NUL");
    snprintf(buf, sizeof buf, "[\"OK\",\"%s\",\"true\",\"\"]", id);
    parse_bad(buf, "OK: element 2 is not a boolean");
    snprintf(buf, sizeof buf, "[\"OK\",\"%.63s\",true,\"\"]", id);
    parse_bad(buf, "OK: element 1");
    parse_bad("[\"OK\",\"5C83DA77AF1DEC6D7289834998AD7AAFBD9E2191396D75EC3CC27F5A77226F36\","
              "true,\"\"]",
              "OK: element 1");
    snprintf(buf, sizeof buf, "[\"OK\",\"%s\",true,5]", id);
    parse_bad(buf, "OK: element 3 is not a string");
    parse_bad("[\"OK\",\"x\"]", "OK: expected");
    parse_bad("[\"NOTICE\"]", "NOTICE: element 1 missing");
    parse_bad("[\"NOTICE\",42]", "NOTICE: element 1 is not a string");
    parse_bad("[\"CLOSED\"]", "CLOSED: no subscription id");
    parse_bad("[\"CLOSED\",\"q\",{}]", "CLOSED: element 2 is not a string");
    parse_bad("[\"NEG-MSG\",\"n\"]", "NEG-MSG: expected 3 elements");
    parse_bad("[\"NEG-MSG\",\"n\",61]", "NEG-MSG: element 2 is not a string");
    parse_bad("[\"NEG-MSG\",\"n\",\"abc\"]", "NEG-MSG: element 2 is not hex of even length");
    parse_bad("[\"NEG-MSG\",\"n\",\"zz\"]", "NEG-MSG: element 2 is not hex of even length");
    parse_bad("[\"NEG-MSG\",5,\"61\"]", "NEG-MSG: subscription id is not a string");
    parse_bad("[\"NEG-ERR\"]", "NEG-ERR: no subscription id");
    parse_bad("[\"NEG-ERR\",\"n\",false]", "NEG-ERR: element 2 is not a string");
    parse_bad("[\"NEG-CLOSE\"]", "NEG-CLOSE: no subscription id");
    parse_bad("[\"NEG-CLOSE\",7]", "NEG-CLOSE: subscription id is not a string");
    parse_bad("[\"AUTH\"]", "AUTH: element 1 missing");
    parse_bad("[\"AUTH\",{}]", "AUTH: element 1 is not a string");
    parse_bad("[\"COUNT\",\"c\",{\"count\":-1}]", "COUNT");
    parse_bad("[\"COUNT\",\"c\",{\"count\":\"5\"}]", "COUNT");
    /* Duplicate keys have no single meaning. */
    parse_bad("[\"EVENT\",\"s\",{\"content\":\"a\",\"content\":\"b\"}]", "invalid JSON");

    /* A subscription id is bounded. */
    size_t big = 5000;
    char *s = xmalloc(big + 32);
    memcpy(s, "[\"EOSE\",\"", 9);
    memset(s + 9, 'a', big);
    memcpy(s + 9 + big, "\"]", 3);
    parse_bad(s, "too long");
    free(s);

    /* The error text quotes an unknown type truncated, never overflowing err. */
    char huge_type[3000];
    memcpy(huge_type, "[\"", 2);
    memset(huge_type + 2, 'X', 2900);
    memcpy(huge_type + 2902, "\"]", 3);
    char small[40];
    m = NULL;
    CHECK(relay_msg_parse(huge_type, strlen(huge_type), &m, small, sizeof small) == -1);
    CHECK(strlen(small) < sizeof small && strncmp(small, "unknown message type", 20) == 0);
    relay_msg_free(NULL);
}

/* ---- backoff -------------------------------------------------------------------- */

static void test_backoff(void)
{
    const uint64_t lo = 0, hi = UINT64_MAX, mid = 1ULL << 63;
    CHECK(relay_backoff_delay_ms(0, lo) == 0);
    CHECK(relay_backoff_delay_ms(0, hi) == 0);
    /* 1 s, 2 s, 4 s ... with jitter factor 1.0 in the middle of the range. */
    int64_t want = 1000;
    for (unsigned f = 1; f <= 9; f++) {
        CHECK_MSG(relay_backoff_delay_ms(f, mid) == want, "failures %u: %lld", f,
                  (long long)relay_backoff_delay_ms(f, mid));
        CHECK(relay_backoff_delay_ms(f, lo) == want * 8 / 10);
        CHECK(relay_backoff_delay_ms(f, hi) == want * 12 / 10);
        want *= 2;
    }
    /* 2^9 s = 512 s is past the cap: 300 s from there on, forever, without overflow. */
    unsigned big[] = {10, 11, 20, 21, 63, 64, 65, 1000, 0xffffffffu};
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
        CHECK(relay_backoff_delay_ms(big[i], mid) == 300000);
        CHECK(relay_backoff_delay_ms(big[i], lo) == 240000);
        CHECK(relay_backoff_delay_ms(big[i], hi) == 360000);
    }
    /* Jitter stays in [0.8, 1.2] and actually spreads: a uniform source fills the range. */
    uint64_t st = 7;
    int64_t mn = INT64_MAX, mx = 0;
    int buckets[4] = {0};
    for (int i = 0; i < 4000; i++) {
        int64_t d = relay_backoff_delay_ms(3, test_rand(&st));
        if (d < mn)
            mn = d;
        if (d > mx)
            mx = d;
        int b = (int)((d - 3200) * 4 / 1601);
        if (b >= 0 && b < 4)
            buckets[b]++;
    }
    CHECK(mn >= 3200 && mx <= 4800);
    CHECK(mn < 3300 && mx > 4700);
    for (int b = 0; b < 4; b++)
        CHECK_MSG(buckets[b] > 800, "bucket %d: %d", b, buckets[b]);
    /* Monotone in failures for a fixed random value: a failing relay never speeds up. */
    for (int k = 0; k < 50; k++) {
        uint64_t rnd = test_rand(&st);
        int64_t prev = 0;
        for (unsigned f = 0; f < 40; f++) {
            int64_t d = relay_backoff_delay_ms(f, rnd);
            CHECK(d >= prev);
            prev = d;
        }
    }
    /* A fresh relay has no failures and no delay. */
    char err[RELAY_ERRLEN];
    struct relay *r = relay_new("ws://127.0.0.1:1", NULL, err, sizeof err);
    CHECK(r != NULL);
    if (r) {
        CHECK(relay_failures(r) == 0);
        CHECK(relay_backoff_ms(r) == 0);
        CHECK(!relay_is_connected(r));
        CHECK(strcmp(relay_url(r), "ws://127.0.0.1:1") == 0);
        relay_free(r);
    }
}

/* ---- URLs ----------------------------------------------------------------------- */

static void norm_is(const char *in, const char *want)
{
    char err[RELAY_ERRLEN] = "";
    char *got = relay_url_normalize(in, err, sizeof err);
    CHECK_MSG(got != NULL && strcmp(got, want) == 0, "%s -> %s (%s), want %s", in,
              got ? got : "NULL", err, want);
    free(got);
}

static void norm_bad(const char *in)
{
    char err[RELAY_ERRLEN] = "";
    char *got = relay_url_normalize(in, err, sizeof err);
    CHECK_MSG(got == NULL && err[0], "%s accepted as %s", in, got ? got : "NULL");
    free(got);
    struct relay *r = relay_new(in, NULL, err, sizeof err);
    CHECK_MSG(r == NULL, "relay_new accepted %s", in);
    relay_free(r);
}

static void test_urls(void)
{
    norm_is("wss://Relay.Example.com:443/", "wss://relay.example.com");
    norm_is("WSS://relay.example.com", "wss://relay.example.com");
    norm_is("ws://relay.example.com:80", "ws://relay.example.com");
    norm_is("ws://relay.example.com:443", "ws://relay.example.com:443");
    norm_is("wss://relay.example.com:80/", "wss://relay.example.com:80");
    norm_is("wss://relay.example.com:7777/Path/", "wss://relay.example.com:7777/Path");
    norm_is("wss://relay.example.com//", "wss://relay.example.com");
    norm_is("wss://relay.example.com?x=1", "wss://relay.example.com?x=1");
    norm_is("wss://relay.example.com/?x=1", "wss://relay.example.com?x=1");
    norm_is("wss://h.example/x/?a=1", "wss://h.example/x?a=1");
    norm_is("wss://h.example/x//?a=1/", "wss://h.example/x?a=1/");
    norm_is("ws://[::1]:7000/", "ws://[::1]:7000");
    norm_is("ws://[::1]:80", "ws://[::1]");
    norm_is("ws://127.0.0.1:8080/", "ws://127.0.0.1:8080");
    norm_bad("https://relay.example.com");
    norm_bad("relay.example.com");
    norm_bad("wss://");
    norm_bad("wss:///path");
    norm_bad("wss://user@relay.example.com");
    norm_bad("wss://relay.example.com:0");
    norm_bad("wss://relay.example.com:65536");
    norm_bad("wss://relay.example.com:99999999999999999999");
    norm_bad("wss://relay.example.com:");
    norm_bad("wss://relay.example.com:12a");
    norm_bad("wss://relay.example.com/#frag");
    norm_bad("wss://relay example.com");
    norm_bad("wss://relay.example.com/\r\nX-Injected: 1");
    norm_bad("wss://rélay.example.com");
    norm_bad("ws://[::1");
    norm_bad("ws://[::1]x");
    norm_bad("ws://[zz::1]");
    norm_bad("");
    char err[RELAY_ERRLEN];
    CHECK(relay_url_normalize(NULL, err, sizeof err) == NULL);
    char host[400];
    memcpy(host, "ws://", 5);
    memset(host + 5, 'a', 300);
    host[305] = '\0';
    norm_bad(host);

    for (int c = -20; c <= 0; c++)
        CHECK(strcmp(relay_error_name(c), "unknown") != 0 || c < RELAY_ERR_INTERNAL);
    CHECK(strcmp(relay_error_name(RELAY_ERR_TLS_CERT), "tls-cert") == 0);
    CHECK(strcmp(relay_error_name(12345), "unknown") == 0);
}

/* ---- NIP-11 documents ------------------------------------------------------------- */

static struct relay_nip11 *nip11(const char *s)
{
    return relay_nip11_parse(s, strlen(s));
}

static void test_nip11_parse(void)
{
    struct relay_nip11 *n =
        nip11("{\"name\":\"test\",\"software\":\"git+https://github.com/hoytech/strfry.git\","
              "\"version\":\"1.0.4\",\"supported_nips\":[1,2,9,11,\"x\",77,40.5],"
              "\"negentropy\":1,\"limitation\":{\"max_message_length\":131072,"
              "\"max_subscriptions\":20,\"max_limit\":500,\"max_filters\":\"10\","
              "\"auth_required\":false,\"payment_required\":\"no\"}}");
    CHECK(n->present == 1);
    CHECK(n->name && strcmp(n->name, "test") == 0);
    CHECK(n->software && strstr(n->software, "strfry") != NULL);
    CHECK(n->version && strcmp(n->version, "1.0.4") == 0);
    CHECK(n->has_supported_nips && n->n_supported_nips == 5);
    CHECK(relay_nip11_lists(n, 77) && relay_nip11_lists(n, 11) && !relay_nip11_lists(n, 42));
    CHECK(n->negentropy && strcmp(n->negentropy, "1") == 0);
    CHECK(n->limitation.max_message_length == 131072);
    CHECK(n->limitation.max_subscriptions == 20 && n->limitation.max_limit == 500);
    CHECK(n->limitation.max_filters == -1); /* a string: ignored */
    CHECK(n->limitation.auth_required == 0 && n->limitation.payment_required == -1);
    CHECK(n->raw != NULL && n->raw_len == strlen(n->raw));
    relay_nip11_free(n);

    n = nip11("{\"name\":\"x\",\"negentropy\":\"v1\"}");
    CHECK(n->present && !n->has_supported_nips && n->negentropy &&
          strcmp(n->negentropy, "v1") == 0);
    CHECK(n->limitation.max_limit == -1 && n->limitation.auth_required == -1);
    CHECK(!relay_nip11_lists(n, 77));
    relay_nip11_free(n);

    /* Each field of the wrong type is ignored on its own. */
    n = nip11("{\"name\":\"ok\",\"software\":7,\"supported_nips\":\"1,11,77\","
              "\"limitation\":[1]}");
    CHECK(n->present && n->name && n->software == NULL && !n->has_supported_nips);
    CHECK(!relay_nip11_lists(n, 77) && n->limitation.max_message_length == -1);
    relay_nip11_free(n);

    /* "no NIP-11": never fatal, with a reason. */
    const char *bad[] = {
        "",
        "<html><body>Please use a Nostr client</body></html>",
        "{\"name\":\"truncated",
        "[1,11,77]",
        "\"relay\"",
        "null",
        "{}",
        "{\"description\":\"only a description\",\"name\":42,\"version\":[\"1.0\"]}",
        ("{\"name\":5,\"software\":[\"strfry\"],\"version\":1.2,\"supported_nips\":\"1,77\","
         "\"limitation\":\"none\"}"),
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        n = nip11(bad[i]);
        CHECK_MSG(n->present == 0 && n->reason[0], "doc %zu: present %d", i, n->present);
        CHECK(n->name == NULL && n->software == NULL && n->n_supported_nips == 0);
        CHECK(!relay_nip11_lists(n, 1));
        relay_nip11_free(n);
    }
    n = relay_nip11_parse(NULL, 0);
    CHECK(n->present == 0 && n->reason[0]);
    relay_nip11_free(n);
    CHECK(!relay_nip11_lists(NULL, 77));
    relay_nip11_free(NULL);

    /* 5 MiB of otherwise valid JSON: refused by size, and not kept. */
    size_t sz = 5 * MIB;
    char *big = xmalloc(sz + 1);
    memset(big, ' ', sz);
    memcpy(big, "{\"name\":\"big\",\"description\":\"", 30);
    memset(big + 30, 'x', sz - 40);
    memcpy(big + sz - 10, "\"}", 2);
    big[sz] = '\0';
    n = relay_nip11_parse(big, sz);
    CHECK(n->present == 0 && strstr(n->reason, "1 MiB") != NULL);
    CHECK(n->raw == NULL);
    relay_nip11_free(n);
    free(big);
}

/* ---- the raw websocket server ------------------------------------------------------ */

/*
 * A websocket server written against RFC 6455 by hand, one thread, one
 * scenario function per test. It counts every byte it reads and writes.
 */
struct srv {
    int lfd, port;
    pthread_t th;
    int started;
    void (*fn)(struct srv *, int fd);
    int nconn; /* connections to serve, one after the other */
    atomic_size_t rd, wr;
    char req[8192]; /* the last request head */
    int failures;   /* server-side checks that failed */
    char why[256];
    const void *arg; /* scenario input */
    struct buf got;  /* scenario output: a received payload */
    int close_code;  /* the client's close code, -1 if none came */
    atomic_int stop;
    atomic_int conns_done; /* connections served and closed */
    atomic_int phase;      /* scenario progress, for the client side to wait on */
};

static void srv_fail(struct srv *s, const char *why)
{
    if (!s->failures++)
        snprintf(s->why, sizeof s->why, "%s", why);
}

static int srv_listen(struct srv *s, int port)
{
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    if (bind(s->lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(s->lfd, 8) < 0) {
        close(s->lfd);
        s->lfd = -1;
        return -1;
    }
    socklen_t al = sizeof a;
    getsockname(s->lfd, (struct sockaddr *)&a, &al);
    s->port = ntohs(a.sin_port);
    return 0;
}

static int wait_fd(int fd, short ev, int timeout_ms)
{
    struct pollfd p = {fd, ev, 0};
    int rc;
    do
        rc = poll(&p, 1, timeout_ms);
    while (rc < 0 && errno == EINTR);
    return rc > 0 ? 0 : -1;
}

/* Reads exactly n bytes within timeout_ms; -1 on EOF, error or timeout. */
static int srv_read(struct srv *s, int fd, void *p, size_t n, int timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    size_t got = 0;
    while (got < n) {
        int left = (int)(deadline - now_ms());
        if (left <= 0 || wait_fd(fd, POLLIN, left) < 0)
            return -1;
        ssize_t r = recv(fd, (char *)p + got, n - got, 0);
        if (r <= 0)
            return -1;
        got += (size_t)r;
        s->rd += (size_t)r;
    }
    return 0;
}

static int srv_write(struct srv *s, int fd, const void *p, size_t n)
{
    size_t done = 0;
    while (done < n) {
        if (wait_fd(fd, POLLOUT, 5000) < 0)
            return -1;
        ssize_t w = send(fd, (const char *)p + done, n - done, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        done += (size_t)w;
        s->wr += (size_t)w;
    }
    return 0;
}

/* Reads the request head; answers 101 with the right accept key, or `status` as given. */
static int srv_handshake(struct srv *s, int fd, const char *status_line)
{
    size_t n = 0;
    while (n < sizeof s->req - 1) {
        if (srv_read(s, fd, s->req + n, 1, 5000) < 0) {
            srv_fail(s, "no complete request head");
            return -1;
        }
        n++;
        if (n >= 4 && memcmp(s->req + n - 4, "\r\n\r\n", 4) == 0)
            break;
    }
    s->req[n] = '\0';
    if (status_line != NULL) {
        char resp[256];
        int l = snprintf(resp, sizeof resp, "%s\r\nContent-Length: 0\r\n\r\n", status_line);
        return srv_write(s, fd, resp, (size_t)l);
    }
    const char *k = strcasestr(s->req, "\r\nSec-WebSocket-Key:");
    if (k == NULL) {
        srv_fail(s, "no Sec-WebSocket-Key");
        return -1;
    }
    k += 20;
    while (*k == ' ')
        k++;
    char key[128];
    size_t kl = strcspn(k, "\r\n ");
    if (kl >= 64) {
        srv_fail(s, "bad key");
        return -1;
    }
    snprintf(key, sizeof key, "%.*s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", (int)kl, k);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdl = 0;
    EVP_Digest(key, strlen(key), md, &mdl, EVP_sha1(), NULL);
    unsigned char b64[64];
    EVP_EncodeBlock(b64, md, (int)mdl);
    char resp[512];
    int l = snprintf(resp, sizeof resp,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                     b64);
    return srv_write(s, fd, resp, (size_t)l);
}

/* One unmasked frame from the server. */
static int srv_frame(struct srv *s, int fd, int fin, int opcode, const void *p, size_t n)
{
    unsigned char h[10];
    size_t hl;
    h[0] = (unsigned char)((fin ? 0x80 : 0) | opcode);
    if (n < 126) {
        h[1] = (unsigned char)n;
        hl = 2;
    } else if (n < 65536) {
        h[1] = 126;
        h[2] = (unsigned char)(n >> 8);
        h[3] = (unsigned char)n;
        hl = 4;
    } else {
        h[1] = 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (unsigned char)((uint64_t)n >> (56 - 8 * i));
        hl = 10;
    }
    /* One write, so a small frame leaves in one segment, as real servers send it. */
    uint8_t *f = xmalloc(hl + n + 1);
    memcpy(f, h, hl);
    if (n)
        memcpy(f + hl, p, n);
    int rc = srv_write(s, fd, f, hl + n);
    free(f);
    return rc;
}

static int srv_text(struct srv *s, int fd, const char *text)
{
    return srv_frame(s, fd, 1, 1, text, strlen(text));
}

/* One masked frame from the client; payload appended to out. */
static int srv_read_frame(struct srv *s, int fd, int *fin, int *opcode, struct buf *out,
                          int timeout_ms)
{
    unsigned char h[14];
    if (srv_read(s, fd, h, 2, timeout_ms) < 0)
        return -1;
    *fin = h[0] >> 7;
    *opcode = h[0] & 0x0f;
    if (!(h[1] & 0x80)) {
        srv_fail(s, "client frame not masked");
        return -1;
    }
    uint64_t n = h[1] & 0x7f;
    if (n == 126) {
        if (srv_read(s, fd, h, 2, timeout_ms) < 0)
            return -1;
        n = ((uint64_t)h[0] << 8) | h[1];
    } else if (n == 127) {
        if (srv_read(s, fd, h, 8, timeout_ms) < 0)
            return -1;
        n = 0;
        for (int i = 0; i < 8; i++)
            n = (n << 8) | h[i];
    }
    unsigned char mask[4];
    if (srv_read(s, fd, mask, 4, timeout_ms) < 0 || n > 256 * MIB)
        return -1;
    size_t at = out->len;
    if (n == 0)
        return 0; /* an empty frame: nothing to read (and out->data may be NULL) */
    buf_reserve(out, (size_t)n);
    if (srv_read(s, fd, out->data + at, (size_t)n, timeout_ms) < 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        out->data[at + i] ^= mask[i & 3];
    out->len = at + (size_t)n;
    return 0;
}

/*
 * The next complete data message (fragments joined) into s->got; answers
 * pings. Returns its opcode, 8 for a close (code in s->close_code), -1.
 */
static int srv_read_message(struct srv *s, int fd, int timeout_ms)
{
    s->got.len = 0;
    int first = -1;
    for (;;) {
        int fin, op;
        struct buf f = {0};
        if (srv_read_frame(s, fd, &fin, &op, &f, timeout_ms) < 0) {
            buf_free(&f);
            return -1;
        }
        if (op == 9) {
            srv_frame(s, fd, 1, 10, f.data, f.len);
            buf_free(&f);
            continue;
        }
        if (op == 10) {
            buf_free(&f);
            continue;
        }
        if (op == 8) {
            s->close_code = f.len >= 2 ? (f.data[0] << 8 | f.data[1]) : 1005;
            buf_free(&f);
            return 8;
        }
        if (first < 0)
            first = op;
        buf_append(&s->got, f.data, f.len);
        buf_free(&f);
        if (fin)
            return first;
    }
}

/* Waits for the client's close frame and answers it; any data before it is dropped. */
static void srv_finish(struct srv *s, int fd)
{
    for (;;) {
        int op = srv_read_message(s, fd, 5000);
        if (op < 0)
            return;
        if (op == 8) {
            unsigned char c[2] = {(unsigned char)(s->close_code >> 8),
                                  (unsigned char)s->close_code};
            srv_frame(s, fd, 1, 8, c, 2);
            return;
        }
    }
}

static void *srv_main(void *arg)
{
    struct srv *s = arg;
    for (int i = 0; i < s->nconn && !s->stop; i++) {
        /* Generous: under valgrind the client's first context loads the CA store slowly. */
        if (wait_fd(s->lfd, POLLIN, 60000) < 0) {
            srv_fail(s, "no connection came");
            break;
        }
        int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            break;
        s->fn(s, fd);
        close(fd);
        s->conns_done++;
    }
    return NULL;
}

static int srv_start(struct srv *s, void (*fn)(struct srv *, int), const void *arg, int port)
{
    memset(s, 0, sizeof *s);
    s->fn = fn;
    s->arg = arg;
    s->nconn = 1;
    s->close_code = -1;
    if (srv_listen(s, port) < 0)
        return -1;
    pthread_create(&s->th, NULL, srv_main, s);
    s->started = 1;
    return 0;
}

/* Joins the thread and reports any server-side check that failed. */
static void srv_join(struct srv *s)
{
    if (s->started)
        pthread_join(s->th, NULL);
    s->started = 0;
    if (s->lfd >= 0)
        close(s->lfd);
    s->lfd = -1;
    CHECK_MSG(s->failures == 0, "server: %s", s->why);
}

static void srv_url(const struct srv *s, char *out, size_t n)
{
    snprintf(out, n, "ws://127.0.0.1:%d/", s->port);
}

static struct relay *open_relay(const struct srv *s, const struct relay_opts *o)
{
    char url[64], err[RELAY_ERRLEN];
    srv_url(s, url, sizeof url);
    struct relay *r = relay_new(url, o, err, sizeof err);
    CHECK_MSG(r != NULL, "%s", err);
    return r;
}

static int connect_ok(struct relay *r)
{
    char err[RELAY_ERRLEN] = "";
    int rc = relay_connect(r, 20000, err, sizeof err);
    CHECK_MSG(rc == 0, "connect: %s (%s)", relay_error_name(rc), err);
    return rc;
}

/* ---- scenario: exact counters ---------------------------------------------------- */

struct counters_script {
    size_t in_len; /* the client's message, checked byte for byte */
    const char *in;
    const char *out1; /* sent in one frame */
    const char *out2; /* sent in three fragments */
};

static void scn_counters(struct srv *s, int fd)
{
    const struct counters_script *c = s->arg;
    if (srv_handshake(s, fd, NULL) < 0)
        return;
    int op = srv_read_message(s, fd, 5000);
    if (op != 1 || s->got.len != c->in_len || memcmp(s->got.data, c->in, c->in_len) != 0)
        srv_fail(s, "client message did not arrive intact");
    srv_text(s, fd, c->out1);
    size_t l = strlen(c->out2), a = l / 3, b = 2 * l / 3;
    srv_frame(s, fd, 0, 1, c->out2, a);
    srv_frame(s, fd, 0, 0, c->out2 + a, b - a);
    srv_frame(s, fd, 1, 0, c->out2 + b, l - b);
    s->phase++;
    srv_finish(s, fd);
}

static void test_counters(void)
{
    struct logcap lc;
    logcap_init(&lc);
    /* 70 000 bytes: more than one TX_CHUNK, a 64-bit frame length. */
    size_t in_len = 70000;
    char *in = xmalloc(in_len);
    memcpy(in, "[\"NOTICE\",\"", 11);
    for (size_t i = 11; i < in_len - 2; i++)
        in[i] = (char)('a' + i % 26);
    memcpy(in + in_len - 2, "\"]", 2);
    char out1[400];
    snprintf(out1, sizeof out1, "[\"NOTICE\",\"%0300d\"]", 7);
    const char *out2 = "[\"EOSE\",\"a-subscription-id-in-three-fragments\"]";
    struct counters_script c = {in_len, in, out1, out2};

    struct srv s;
    CHECK(srv_start(&s, scn_counters, &c, 0) == 0);
    s.nconn = 2;
    struct relay_opts o = quiet_opts(&lc);
    o.compression = 0;
    struct relay *r = open_relay(&s, &o);
    char err[RELAY_ERRLEN];
    struct relay_counters cc, tot;
    for (int round = 0; round < 2 && r; round++) {
        size_t rd0 = s.rd, wr0 = s.wr;
        if (connect_ok(r) != 0)
            break;
        CHECK(relay_is_connected(r));
        CHECK(strstr(s.req, "permessage-deflate") == NULL);
        CHECK(strcasestr(s.req, "\r\nHost: 127.0.0.1:") != NULL);
        CHECK(relay_send(r, in, in_len, err, sizeof err) == 0);
        struct relay_msg *m1 = NULL, *m2 = NULL;
        CHECK(relay_recv(r, 5000, &m1, err, sizeof err) == 0);
        CHECK(relay_recv(r, 5000, &m2, err, sizeof err) == 0);
        CHECK(m1 && m1->type == RELAY_MSG_NOTICE && m1->raw_len == strlen(out1));
        CHECK(m2 && m2->type == RELAY_MSG_EOSE &&
              strcmp(m2->subid, "a-subscription-id-in-three-fragments") == 0);
        relay_msg_free(m1);
        relay_msg_free(m2);
        /*
         * The wire while connected: exactly what the server read and wrote
         * (HTTP upgrade, frame headers, masks), once it has written all.
         */
        int64_t dl = now_ms() + 5000;
        while (s.phase < round + 1 && now_ms() < dl)
            usleep(1000);
        relay_get_counters(r, &cc, NULL);
        CHECK_MSG(cc.sent_wire == s.rd - rd0, "sent_wire %llu, server read %zu",
                  (unsigned long long)cc.sent_wire, s.rd - rd0);
        CHECK_MSG(cc.recv_wire == s.wr - wr0, "recv_wire %llu, server wrote %zu",
                  (unsigned long long)cc.recv_wire, s.wr - wr0);
        relay_close(r);
        CHECK(!relay_is_connected(r));
        /* Wait for the server to finish this connection, so its counts are final. */
        dl = now_ms() + 5000;
        while (s.conns_done < round + 1 && now_ms() < dl)
            usleep(1000);
        CHECK(s.close_code == 1000);
        relay_get_counters(r, &cc, &tot);
        CHECK(cc.sent_payload == in_len);
        CHECK(cc.recv_payload == strlen(out1) + strlen(out2));
        CHECK(cc.sent_msgs == 1 && cc.recv_msgs == 2);
        /*
         * After the close: our close frame (2 + 4 mask + 2 code + "bye") was
         * read by the server. Whether the server's close answer reached us
         * before lws dropped the socket is timing, so recv only has a bound.
         */
        CHECK_MSG(cc.sent_wire == s.rd - rd0, "sent_wire %llu, server read %zu",
                  (unsigned long long)cc.sent_wire, s.rd - rd0);
        CHECK(cc.recv_wire <= s.wr - wr0 && cc.recv_wire + 4 >= s.wr - wr0);
        CHECK(tot.sent_payload == (round + 1) * in_len);
        CHECK(tot.sent_msgs == (uint64_t)round + 1 && tot.recv_msgs == 2 * ((uint64_t)round + 1));
        CHECK(tot.sent_wire == s.rd && tot.recv_wire <= s.wr);
        s.close_code = -1;
    }
    relay_free(r);
    srv_join(&s);
    CHECK(lc.n == 0 || strstr(lc.all, "skipped") == NULL);
    free(in);
    buf_free(&s.got);
}

/* ---- scenario: garbage ------------------------------------------------------------ */

static const char *const garbage[] = {
    "not json at all",
    "{\"NOTICE\":\"an object\"}",
    "[]",
    "[1,2]",
    "[\"FOO\",\"unknown type\"]",
    "[\"EVENT\",\"s\",\"not an object\"]",
    "[\"NOTICE\",\"\xff\xfe invalid utf-8\"]",
    "[\"OK\",\"short\",true,\"\"]",
};

static void scn_garbage(struct srv *s, int fd)
{
    if (srv_handshake(s, fd, NULL) < 0)
        return;
    for (size_t i = 0; i < sizeof garbage / sizeof garbage[0]; i++)
        srv_text(s, fd, garbage[i]);
    srv_frame(s, fd, 1, 2, "[\"NOTICE\",\"binary\"]", 19);
    /* 5000 bytes with control characters: the log line must be short and printable. */
    char junk[5000];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (char)(i % 7 == 0 ? '\n' : i % 5 == 0 ? '\033' : 'g');
    srv_frame(s, fd, 1, 1, junk, sizeof junk);
    srv_frame(s, fd, 1, 9, "ping", 4);
    srv_text(s, fd, "[\"NOTICE\",\"still here\"]");
    /* The client answers our ping, then sends a message. */
    int op = srv_read_message(s, fd, 5000);
    if (op != 1 || s->got.len != 8 || memcmp(s->got.data, "[\"PING\"]", 8) != 0)
        srv_fail(s, "no message after the garbage");
    /* A reserved opcode is a protocol error: the client must hang up, not crash. */
    srv_frame(s, fd, 1, 3, "x", 1);
    s->phase++;
    srv_finish(s, fd);
}

static void test_garbage(void)
{
    struct logcap lc;
    logcap_init(&lc);
    struct srv s;
    CHECK(srv_start(&s, scn_garbage, NULL, 0) == 0);
    struct relay_opts o = quiet_opts(&lc); /* compression offered, the server declines */
    struct relay *r = open_relay(&s, &o);
    char err[RELAY_ERRLEN];
    if (r && connect_ok(r) == 0) {
        CHECK(strstr(s.req, "permessage-deflate") != NULL);
        struct relay_msg *m = NULL;
        CHECK(relay_recv(r, 5000, &m, err, sizeof err) == 0);
        CHECK(m && m->type == RELAY_MSG_NOTICE && strcmp(m->text, "still here") == 0);
        relay_msg_free(m);
        size_t ng = sizeof garbage / sizeof garbage[0] + 2;
        CHECK_MSG(lc.n == (int)ng, "%d log lines:\n%s", lc.n, lc.all);
        CHECK(lc.longest < 400);
        CHECK(strstr(lc.all, "unknown message type \"FOO\"") != NULL);
        CHECK(strstr(lc.all, "binary") != NULL);
        CHECK(strstr(lc.all, "\033") == NULL);
        struct relay_counters cc;
        relay_get_counters(r, &cc, NULL);
        CHECK(cc.recv_msgs == ng + 1);
        CHECK(relay_send(r, "[\"PING\"]", 8, err, sizeof err) == 0);
        int rc = relay_recv(r, 5000, &m, err, sizeof err);
        CHECK_MSG(rc == RELAY_ERR_CLOSED, "%s: %s", relay_error_name(rc), err);
        CHECK(!relay_is_connected(r));
        CHECK(relay_send(r, "[]", 2, err, sizeof err) == RELAY_ERR_CLOSED);
    }
    relay_free(r);
    srv_join(&s);
    buf_free(&s.got);
}

/* ---- scenario: oversize messages ---------------------------------------------------- */

static void scn_oversize(struct srv *s, int fd)
{
    if (srv_handshake(s, fd, NULL) < 0)
        return;
    char big[6000];
    memset(big, 'x', sizeof big);
    memcpy(big, "[\"NOTICE\",\"", 11);
    memcpy(big + 1000 - 2, "\"]", 2);
    srv_frame(s, fd, 1, 1, big, 1000); /* fits */
    memcpy(big + 5000 - 2, "\"]", 2);
    if (s->conns_done == 0) {
        srv_frame(s, fd, 1, 1, big, 5000); /* one frame over the cap */
    } else {
        srv_frame(s, fd, 0, 1, big, 2000); /* over the cap only when joined */
        srv_frame(s, fd, 0, 0, big + 2000, 2000);
        srv_frame(s, fd, 1, 0, big + 4000, 1000);
    }
    s->close_code = -1;
    int op = srv_read_message(s, fd, 5000);
    if (op != 8)
        srv_fail(s, "no close frame after an oversize message");
    s->phase++;
}

static void test_oversize(void)
{
    struct logcap lc;
    logcap_init(&lc);
    struct srv s;
    CHECK(srv_start(&s, scn_oversize, NULL, 0) == 0);
    s.nconn = 2;
    struct relay_opts o = quiet_opts(&lc);
    o.max_message = 4096;
    struct relay *r = open_relay(&s, &o);
    char err[RELAY_ERRLEN];
    for (int round = 0; round < 2 && r; round++) {
        if (connect_ok(r) != 0)
            break;
        struct relay_msg *m = NULL;
        CHECK(relay_recv(r, 5000, &m, err, sizeof err) == 0);
        CHECK(m && m->type == RELAY_MSG_NOTICE && m->raw_len == 1000);
        relay_msg_free(m);
        int rc = relay_recv(r, 5000, &m, err, sizeof err);
        CHECK_MSG(rc == RELAY_ERR_TOO_BIG, "%s: %s", relay_error_name(rc), err);
        CHECK(strstr(err, "larger than 4096 bytes") != NULL);
        CHECK(!relay_is_connected(r));
        rc = relay_recv(r, 0, &m, err, sizeof err);
        CHECK(rc == RELAY_ERR_TOO_BIG && m == NULL);
        int64_t dl = now_ms() + 5000;
        while (s.phase < round + 1 && now_ms() < dl)
            usleep(1000);
        /* "closes cleanly": the server got a close frame saying 1009. */
        CHECK_MSG(s.close_code == 1009, "close code %d", s.close_code);
    }
    CHECK(strstr(lc.all, "larger than 4096 bytes") != NULL);
    relay_free(r);
    srv_join(&s);
    buf_free(&s.got);
}

/* ---- scenario: a peer that stops reading; interrupts ------------------------------------ */

/* Holds the connection open, reading nothing, until the test says stop. */
static void srv_hold(struct srv *s)
{
    int64_t dl = now_ms() + 20000;
    while (!s->stop && now_ms() < dl)
        usleep(2000);
}

static void scn_idle(struct srv *s, int fd)
{
    if (srv_handshake(s, fd, NULL) < 0)
        return;
    s->phase++;
    srv_hold(s);
}

struct interrupter {
    struct relay *r;
    int delay_ms;
};

static void *interrupt_main(void *arg)
{
    struct interrupter *it = arg;
    usleep((useconds_t)it->delay_ms * 1000);
    relay_interrupt(it->r);
    return NULL;
}

static void test_stalled_peer(void)
{
    struct logcap lc;
    logcap_init(&lc);
    struct srv s;
    CHECK(srv_start(&s, scn_idle, NULL, 0) == 0);
    struct relay_opts o = quiet_opts(&lc);
    o.send_timeout_ms = 1000;
    struct relay *r = open_relay(&s, &o);
    char err[RELAY_ERRLEN];
    if (r && connect_ok(r) == 0) {
        /* Interrupt from another thread while blocked in relay_recv. */
        struct interrupter it = {r, 200};
        pthread_t th;
        pthread_create(&th, NULL, interrupt_main, &it);
        struct relay_msg *m = NULL;
        int64_t t0 = now_ms();
        int rc = relay_recv(r, 10000, &m, err, sizeof err);
        int64_t took = now_ms() - t0;
        pthread_join(th, NULL);
        CHECK_MSG(rc == RELAY_ERR_INTERRUPTED, "%s", relay_error_name(rc));
        CHECK(took >= 150 && took < 9000);
        CHECK(relay_is_connected(r));
        /* An interrupt with nobody blocked is kept for the next call. */
        relay_interrupt(r);
        CHECK(relay_recv(r, 10000, &m, err, sizeof err) == RELAY_ERR_INTERRUPTED);
        CHECK(relay_recv(r, 50, &m, err, sizeof err) == RELAY_ERR_TIMEOUT);
        CHECK(relay_recv(r, 0, &m, err, sizeof err) == RELAY_ERR_TIMEOUT);

        /* 64 MiB to a peer that reads nothing: the socket buffers fill, the send gives up. */
        size_t n = 64 * MIB;
        char *big = xmalloc(n);
        memset(big, 'a', n);
        t0 = now_ms();
        rc = relay_send(r, big, n, err, sizeof err);
        took = now_ms() - t0;
        CHECK_MSG(rc == RELAY_ERR_TIMEOUT, "%s: %s", relay_error_name(rc), err);
        CHECK(took >= 900 && took < 30000);
        CHECK(!relay_is_connected(r));
        struct relay_counters cc;
        relay_get_counters(r, &cc, NULL);
        CHECK(cc.sent_msgs == 0 && cc.sent_payload == 0);
        CHECK(cc.sent_wire > 0 && cc.sent_wire < n);
        rc = relay_recv(r, 1000, &m, err, sizeof err);
        CHECK(rc == RELAY_ERR_CLOSED || rc == RELAY_ERR_NOT_CONNECTED);
        free(big);
    }
    s.stop = 1;
    relay_free(r);
    srv_join(&s);
}

/*
 * A peer slow to start reading: a large message fills the socket buffers
 * (a write would block), then goes out, then nothing comes back.
 */
static void scn_slow_reader(struct srv *s, int fd)
{
    if (srv_handshake(s, fd, NULL) < 0)
        return;
    struct timespec ts = {0, 300 * 1000 * 1000};
    nanosleep(&ts, NULL);
    if (srv_read_message(s, fd, 20000) != 1)
        srv_fail(s, "the big message did not arrive");
    s->phase++;
    srv_finish(s, fd);
}

static int64_t thread_cpu_ms(void)
{
    struct rusage ru;
    getrusage(RUSAGE_THREAD, &ru);
    return (int64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000 +
           (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000;
}

/*
 * After a send that had to wait for the socket, waiting for a reply costs no
 * CPU: a stale "wants POLLOUT" once made every later poll return at once, a
 * busy loop for as long as the relay took to answer.
 */
static void test_wait_after_blocked_send(void)
{
    struct logcap lc;
    logcap_init(&lc);
    struct srv s;
    CHECK(srv_start(&s, scn_slow_reader, NULL, 0) == 0);
    struct relay_opts o = quiet_opts(&lc);
    struct relay *r = open_relay(&s, &o);
    char err[RELAY_ERRLEN];
    if (r && connect_ok(r) == 0) {
        size_t n = 48 * MIB; /* more than loopback's socket buffers hold */
        char *big = xmalloc(n);
        memset(big, 'b', n);
        int rc = relay_send(r, big, n, err, sizeof err);
        CHECK_MSG(rc == 0, "%s: %s", relay_error_name(rc), err);
        free(big);
        struct relay_msg *m = NULL;
        int64_t cpu0 = thread_cpu_ms();
        rc = relay_recv(r, 1500, &m, err, sizeof err);
        int64_t cpu = thread_cpu_ms() - cpu0;
        CHECK_MSG(rc == RELAY_ERR_TIMEOUT, "%s", relay_error_name(rc));
        CHECK_MSG(cpu < 200, "waiting 1.5 s for a reply took %lld ms of CPU", (long long)cpu);
        relay_msg_free(m);
    }
    relay_free(r);
    srv_join(&s);
    buf_free(&s.got);
}

/* ---- scenario: the peer closes; the relay restarts ------------------------------------- */

static void scn_close_1001(struct srv *s, int fd)
{
    if (srv_handshake(s, fd, NULL) < 0)
        return;
    srv_text(s, fd, "[\"NOTICE\",\"bye soon\"]");
    unsigned char c[] = {0x03, 0xe9, 'g', 'o', 'i', 'n', 'g', ' ', 'a', 'w', 'a', 'y'};
    srv_frame(s, fd, 1, 8, c, sizeof c);
    srv_read_message(s, fd, 5000);
}

static void scn_notice_then_vanish(struct srv *s, int fd)
{
    if (srv_handshake(s, fd, NULL) < 0)
        return;
    srv_text(s, fd, s->arg);
    /* No close frame: the process "dies". */
}

static void test_peer_close_and_restart(void)
{
    struct logcap lc;
    logcap_init(&lc);
    struct srv s;
    char err[RELAY_ERRLEN];
    struct relay_msg *m = NULL;
    CHECK(srv_start(&s, scn_close_1001, NULL, 0) == 0);
    struct relay_opts o = quiet_opts(&lc);
    struct relay *r = open_relay(&s, &o);
    if (r && connect_ok(r) == 0) {
        CHECK(relay_recv(r, 5000, &m, err, sizeof err) == 0);
        relay_msg_free(m);
        int rc = relay_recv(r, 5000, &m, err, sizeof err);
        CHECK(rc == RELAY_ERR_CLOSED);
        CHECK_MSG(strstr(err, "1001") && strstr(err, "going away"), "%s", err);
    }
    relay_free(r);
    srv_join(&s);

    CHECK(srv_start(&s, scn_notice_then_vanish, "[\"NOTICE\",\"one\"]", 0) == 0);
    int port = s.port;
    r = open_relay(&s, &o);
    if (r && connect_ok(r) == 0) {
        CHECK(relay_recv(r, 5000, &m, err, sizeof err) == 0);
        CHECK(m && strcmp(m->text, "one") == 0);
        relay_msg_free(m);
        int rc = relay_recv(r, 5000, &m, err, sizeof err);
        CHECK_MSG(rc == RELAY_ERR_CLOSED && strstr(err, "without a close frame"), "%s", err);
    }
    srv_join(&s); /* the relay is down */
    if (r) {
        int rc = relay_connect(r, 2000, err, sizeof err);
        CHECK_MSG(rc == RELAY_ERR_UNREACHABLE, "%s: %s", relay_error_name(rc), err);
        CHECK(strstr(err, "127.0.0.1") != NULL);
        CHECK(relay_failures(r) == 1);
        int64_t d = relay_backoff_ms(r);
        CHECK(d >= 800 && d <= 1200);
        /* A stop request cuts the backoff wait short. */
        relay_interrupt(r);
        CHECK(relay_reconnect(r, 2000, err, sizeof err) == RELAY_ERR_INTERRUPTED);
        CHECK(relay_failures(r) == 1);
        /* The relay comes back on the same port; reconnect waits its backoff, then connects. */
        CHECK(srv_start(&s, scn_notice_then_vanish, "[\"NOTICE\",\"two\"]", port) == 0);
        int64_t t0 = now_ms();
        rc = relay_reconnect(r, 2000, err, sizeof err);
        int64_t took = now_ms() - t0;
        CHECK_MSG(rc == 0, "%s: %s", relay_error_name(rc), err);
        CHECK_MSG(took >= 750 && took < 15000, "took %lld ms", (long long)took);
        CHECK(relay_failures(r) == 0 && relay_backoff_ms(r) == 0);
        CHECK(relay_recv(r, 5000, &m, err, sizeof err) == 0);
        CHECK(m && strcmp(m->text, "two") == 0);
        relay_msg_free(m);
        srv_join(&s);
        struct relay_counters tot;
        relay_get_counters(r, NULL, &tot);
        CHECK(tot.recv_msgs == 2);
    }
    relay_free(r);
}

/* ---- scenario: connection failures ------------------------------------------------------ */

static void scn_http_404(struct srv *s, int fd)
{
    srv_handshake(s, fd, s->arg);
}

static void test_connect_failures(void)
{
    struct logcap lc;
    logcap_init(&lc);
    struct relay_opts o = quiet_opts(&lc);
    char err[RELAY_ERRLEN];
    const char *answers[] = {"HTTP/1.1 404 Not Found", "HTTP/1.1 200 OK"};
    for (int i = 0; i < 2; i++) {
        struct srv s;
        CHECK(srv_start(&s, scn_http_404, answers[i], 0) == 0);
        struct relay *r = open_relay(&s, &o);
        int rc = r ? relay_connect(r, 3000, err, sizeof err) : 0;
        CHECK_MSG(rc == RELAY_ERR_HANDSHAKE, "%s: %s: %s", answers[i], relay_error_name(rc), err);
        CHECK(r && relay_failures(r) == 1);
        relay_free(r);
        srv_join(&s);
    }
    /* A listener that never accepts: TCP completes, the upgrade never does. */
    struct srv s;
    memset(&s, 0, sizeof s);
    CHECK(srv_listen(&s, 0) == 0);
    struct relay *r = open_relay(&s, &o);
    int64_t t0 = now_ms();
    int rc = r ? relay_connect(r, 500, err, sizeof err) : 0;
    int64_t took = now_ms() - t0;
    CHECK_MSG(rc == RELAY_ERR_TIMEOUT, "%s: %s", relay_error_name(rc), err);
    CHECK(took >= 450 && took < 10000);
    /* And refused, once the listener is gone. */
    close(s.lfd);
    rc = r ? relay_connect(r, 2000, err, sizeof err) : 0;
    CHECK_MSG(rc == RELAY_ERR_UNREACHABLE, "%s: %s", relay_error_name(rc), err);
    CHECK(r && relay_failures(r) == 2);
    struct relay_msg *m = (struct relay_msg *)1;
    CHECK(r && relay_recv(r, 0, &m, err, sizeof err) == RELAY_ERR_CLOSED && m == NULL);
    relay_free(r);
    r = relay_new("ws://127.0.0.1:9/", &o, err, sizeof err);
    if (r) {
        CHECK(relay_send(r, "[]", 2, err, sizeof err) == RELAY_ERR_NOT_CONNECTED);
        CHECK(relay_recv(r, 0, &m, err, sizeof err) == RELAY_ERR_NOT_CONNECTED);
        relay_close(r);
        relay_free(r);
    }
}

/* ---- scenario: keepalive ----------------------------------------------------------------- */

static void scn_ping(struct srv *s, int fd)
{
    if (srv_handshake(s, fd, NULL) < 0)
        return;
    /* First ping answered, the second one not: the client must hang up. */
    for (int i = 0; i < 2; i++) {
        int fin, op;
        struct buf f = {0};
        if (srv_read_frame(s, fd, &fin, &op, &f, 4000) < 0 || op != 9) {
            srv_fail(s, "no ping from the client");
            buf_free(&f);
            return;
        }
        s->phase++;
        if (i == 0)
            srv_frame(s, fd, 1, 10, f.data, f.len);
        buf_free(&f);
    }
    char c;
    int64_t dl = now_ms() + 8000;
    while (now_ms() < dl && srv_read(s, fd, &c, 1, 100) == 0)
        ;
}

static void test_keepalive(void)
{
    struct logcap lc;
    logcap_init(&lc);
    struct srv s;
    CHECK(srv_start(&s, scn_ping, NULL, 0) == 0);
    struct relay_opts o = quiet_opts(&lc);
    o.ping_interval_s = 1;
    struct relay *r = open_relay(&s, &o);
    char err[RELAY_ERRLEN];
    if (r && connect_ok(r) == 0) {
        struct relay_msg *m = NULL;
        int64_t t0 = now_ms();
        int rc = relay_recv(r, 10000, &m, err, sizeof err);
        int64_t took = now_ms() - t0;
        CHECK_MSG(rc == RELAY_ERR_CLOSED, "%s: %s", relay_error_name(rc), err);
        /* CLOSED, not TIMEOUT: the missing pong ended it, well before the 10 s wait. */
        CHECK(s.phase == 2);
        CHECK_MSG(took < 9500, "took %lld", (long long)took);
    }
    relay_free(r);
    srv_join(&s);
}

/* ---- NIP-11 over HTTP, from the raw server ----------------------------------------------- */

struct http_answer {
    const char *head; /* status line and headers, without the final CRLF CRLF */
    const char *body; /* NULL: big_body */
    size_t body_len;
};

static char *big_body;
static size_t big_body_len;

static void scn_http(struct srv *s, int fd)
{
    const struct http_answer *a = s->arg;
    /* Read the request head (srv_handshake does that when given a status line). */
    size_t n = 0;
    while (n < sizeof s->req - 1) {
        if (srv_read(s, fd, s->req + n, 1, 5000) < 0)
            return;
        n++;
        if (n >= 4 && memcmp(s->req + n - 4, "\r\n\r\n", 4) == 0)
            break;
    }
    s->req[n] = '\0';
    if (a->head == NULL) { /* silent: never answers */
        srv_hold(s);
        return;
    }
    const char *body = a->body ? a->body : big_body;
    size_t bl = a->body ? strlen(a->body) : big_body_len;
    char head[512];
    int hl = snprintf(head, sizeof head, "%s\r\n\r\n", a->head);
    if (srv_write(s, fd, head, (size_t)hl) < 0)
        return;
    srv_write(s, fd, body, bl); /* may fail when the client stops at 1 MiB */
    s->phase++;
}

static struct relay_nip11 *fetch_from(const struct http_answer *a, int timeout_ms, int *rc,
                                      char *req_out, size_t req_len)
{
    struct srv s;
    struct relay_nip11 *n = NULL;
    char err[RELAY_ERRLEN] = "";
    CHECK(srv_start(&s, scn_http, a, 0) == 0);
    char url[64];
    srv_url(&s, url, sizeof url);
    struct relay_opts o = relay_opts_default();
    *rc = relay_fetch_nip11(url, &o, timeout_ms, &n, err, sizeof err);
    if (*rc != 0)
        CHECK_MSG(n == NULL && err[0], "rc %d with a document", *rc);
    s.stop = 1;
    srv_join(&s);
    if (req_out)
        snprintf(req_out, req_len, "%s", s.req);
    return n;
}

static void test_nip11_fetch(void)
{
    char len_hdr[128];
    const char *doc = "{\"name\":\"raw\",\"software\":\"negsync-test\",\"version\":\"0.1\","
                      "\"supported_nips\":[1,11,77]}";
    snprintf(len_hdr, sizeof len_hdr,
             "HTTP/1.1 200 OK\r\nContent-Type: application/nostr+json\r\nContent-Length: %zu",
             strlen(doc));
    struct http_answer ok = {len_hdr, doc, 0};
    int rc;
    char req[8192];
    struct relay_nip11 *n = fetch_from(&ok, 3000, &rc, req, sizeof req);
    CHECK(rc == 0 && n && n->present == 1 && n->http_status == 200);
    CHECK(n && n->name && strcmp(n->name, "raw") == 0 && relay_nip11_lists(n, 77));
    CHECK(n && n->raw && strcmp(n->raw, doc) == 0);
    CHECK(strncmp(req, "GET / HTTP/1.1\r\n", 16) == 0);
    CHECK(strcasestr(req, "\r\naccept: application/nostr+json\r\n") != NULL);
    CHECK(strcasestr(req, "\r\nupgrade:") == NULL);
    relay_nip11_free(n);

    /* No Content-Length: the body ends when the server closes. */
    struct http_answer eof = {"HTTP/1.1 200 OK\r\nConnection: close", doc, 0};
    n = fetch_from(&eof, 3000, &rc, NULL, 0);
    CHECK_MSG(rc == 0 && n && n->present == 1, "rc %d present %d reason %s", rc,
              n ? n->present : -1, n ? n->reason : "");
    relay_nip11_free(n);

    /* Chunked. */
    struct http_answer chunked = {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked",
                                  "5\r\n{\"nam\r\n8\r\ne\":\"ch\"}\r\n0\r\n\r\n", 0};
    n = fetch_from(&chunked, 3000, &rc, NULL, 0);
    CHECK_MSG(rc == 0 && n && n->present == 1 && n->name && strcmp(n->name, "ch") == 0,
              "rc %d present %d reason %s", rc, n ? n->present : -1, n ? n->reason : "");
    relay_nip11_free(n);

    /* "no NIP-11", recorded with a reason, never an error. */
    struct {
        struct http_answer a;
        const char *reason;
    } no[] = {
        {{"HTTP/1.1 404 Not Found\r\nContent-Length: 9", "not found", 0}, "404"},
        {{"HTTP/1.1 200 OK\r\nContent-Length: 22", "<html>a relay</html>\r\n", 0}, "JSON"},
        {{"HTTP/1.1 200 OK\r\nContent-Length: 38", "{\"name\":1,\"supported_nips\":\"1,11,77\"}",
          0},
         "right type"},
        {{"HTTP/1.1 200 OK\r\nContent-Length: 5242880", NULL, 0}, "1 MiB"},
        {{"HTTP/1.1 200 OK\r\nConnection: close", NULL, 0}, "1 MiB"},
    };
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        n = fetch_from(&no[i].a, 5000, &rc, NULL, 0);
        CHECK_MSG(rc == 0 && n && n->present == 0, "case %zu: rc %d", i, rc);
        CHECK_MSG(n && strstr(n->reason, no[i].reason) != NULL, "case %zu: reason \"%s\"", i,
                  n ? n->reason : "");
        CHECK(n && n->name == NULL && !relay_nip11_lists(n, 77));
        if (i >= 3)
            CHECK(n && n->raw == NULL);
        relay_nip11_free(n);
    }

    /* A server that never answers: a timeout, within the deadline. */
    struct http_answer silent = {NULL, NULL, 0};
    int64_t t0 = now_ms();
    n = fetch_from(&silent, 500, &rc, NULL, 0);
    CHECK_MSG(rc == RELAY_ERR_TIMEOUT && n == NULL, "rc %s", relay_error_name(rc));
    CHECK(now_ms() - t0 < 3000);

    /* Nobody listening. */
    struct srv s;
    memset(&s, 0, sizeof s);
    CHECK(srv_listen(&s, 0) == 0);
    char url[64], err[RELAY_ERRLEN];
    srv_url(&s, url, sizeof url);
    close(s.lfd);
    n = NULL;
    rc = relay_fetch_nip11(url, NULL, 2000, &n, err, sizeof err);
    CHECK_MSG(rc == RELAY_ERR_UNREACHABLE && n == NULL, "%s: %s", relay_error_name(rc), err);
    rc = relay_fetch_nip11("http://x", NULL, 2000, &n, err, sizeof err);
    CHECK(rc == RELAY_ERR_INVALID && n == NULL);
}

/* ---- a libwebsockets echo server: permessage-deflate and TLS ------------------------------- */

struct lsrv {
    struct lws_context *ctx;
    pthread_t th;
    atomic_int stop;
    int port;
    struct buf rx;
    uint8_t *tx; /* LWS_PRE + the message being echoed */
    size_t tx_len, tx_off;
    atomic_size_t last_len; /* length of the last complete message received */
    atomic_int msgs;
    const char *doc; /* the NIP-11 document served over HTTP */
    int doc_sent;
};

static int lsrv_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                   size_t len)
{
    struct lws_context *cx = lws_get_context(wsi);
    struct lsrv *l = cx ? lws_context_user(cx) : NULL;
    if (l == NULL)
        return 0;
    switch (reason) {
    case LWS_CALLBACK_HTTP: {
        uint8_t hdr[LWS_PRE + 1024], *start = hdr + LWS_PRE, *p = start, *end = hdr + sizeof hdr;
        if (lws_add_http_common_headers(wsi, HTTP_STATUS_OK, "application/nostr+json",
                                        strlen(l->doc), &p, end) ||
            lws_finalize_write_http_header(wsi, start, &p, end))
            return 1;
        l->doc_sent = 0;
        lws_callback_on_writable(wsi);
        return 0;
    }
    case LWS_CALLBACK_HTTP_WRITEABLE: {
        if (l->doc_sent)
            return 0;
        size_t dl = strlen(l->doc);
        uint8_t *b = xmalloc(LWS_PRE + dl);
        memcpy(b + LWS_PRE, l->doc, dl);
        int w = lws_write(wsi, b + LWS_PRE, dl, LWS_WRITE_HTTP_FINAL);
        free(b);
        l->doc_sent = 1;
        if (w < (int)dl || lws_http_transaction_completed(wsi))
            return -1;
        return 0;
    }
    case LWS_CALLBACK_RECEIVE:
        buf_append(&l->rx, in, len);
        if (lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0) {
            free(l->tx);
            l->tx = xmalloc(LWS_PRE + l->rx.len + 1);
            memcpy(l->tx + LWS_PRE, l->rx.data, l->rx.len);
            l->tx_len = l->rx.len;
            l->tx_off = 0;
            l->last_len = l->rx.len;
            l->msgs++;
            l->rx.len = 0;
            lws_callback_on_writable(wsi);
        }
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE: {
        if (l->tx == NULL || l->tx_off >= l->tx_len)
            return 0;
        size_t n = l->tx_len - l->tx_off;
        if (n > 16384)
            n = 16384;
        /* lws_write may scribble LWS_PRE bytes before the buffer: copy into place. */
        uint8_t *b = xmalloc(LWS_PRE + n);
        memcpy(b + LWS_PRE, l->tx + LWS_PRE + l->tx_off, n);
        int fl = lws_write_ws_flags(LWS_WRITE_TEXT, l->tx_off == 0, l->tx_off + n == l->tx_len);
        int w = lws_write(wsi, b + LWS_PRE, n, (enum lws_write_protocol)fl);
        free(b);
        if (w < (int)n)
            return -1;
        l->tx_off += n;
        if (l->tx_off < l->tx_len)
            lws_callback_on_writable(wsi);
        return 0;
    }
    default: return 0;
    }
}

static const struct lws_protocols lsrv_protocols[] = {
    {"echo", lsrv_cb, 0, 65536, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static const struct lws_extension lsrv_extensions[] = {
    {"permessage-deflate", lws_extension_callback_pm_deflate, "permessage-deflate"},
    {NULL, NULL, NULL},
};

/*
 * libwebsockets 4.1 never frees the SSL_CTX of a server vhost (with the CA
 * store it loaded) when the context is destroyed: valgrind shows every lost
 * block allocated under lsrv_start. That is the test server's leak, not the
 * client's. LeakSanitizer's fast unwinder stops inside libcrypto (no frame
 * pointers there), so it cannot see lsrv_start; it is told to ignore leaks
 * rooted in OpenSSL instead. relay.c allocates no OpenSSL objects itself.
 */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:libcrypto.so\nleak:libssl.so\n";
}

static void *lsrv_main(void *arg)
{
    struct lsrv *l = arg;
    while (!l->stop)
        if (lws_service(l->ctx, 0) < 0)
            break;
    lws_context_destroy(l->ctx);
    return NULL;
}

static int lsrv_start(struct lsrv *l, const char *cert, const char *key, const char *doc)
{
    memset(l, 0, sizeof *l);
    l->doc = doc;
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = 0;
    info.iface = "127.0.0.1";
    info.protocols = lsrv_protocols;
    info.extensions = lsrv_extensions;
    info.user = l;
    info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
    if (cert) {
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.ssl_cert_filepath = cert;
        info.ssl_private_key_filepath = key;
    }
    l->ctx = lws_create_context(&info);
    if (l->ctx == NULL)
        return -1;
    l->port = lws_get_vhost_listen_port(lws_get_vhost_by_name(l->ctx, "default"));
    pthread_create(&l->th, NULL, lsrv_main, l);
    return 0;
}

static void lsrv_stop(struct lsrv *l)
{
    if (l->ctx == NULL)
        return;
    l->stop = 1;
    lws_cancel_service(l->ctx);
    pthread_join(l->th, NULL);
    l->ctx = NULL;
    buf_free(&l->rx);
    free(l->tx);
}

/* Sends text and waits for its echo; returns 0 when it came back intact. */
static int echo_roundtrip(struct relay *r, const char *text, size_t len)
{
    char err[RELAY_ERRLEN];
    int rc = relay_send(r, text, len, err, sizeof err);
    CHECK_MSG(rc == 0, "send: %s", err);
    struct relay_msg *m = NULL;
    rc = relay_recv(r, 10000, &m, err, sizeof err);
    CHECK_MSG(rc == 0 && m && m->raw_len == len, "recv: %s: %s", relay_error_name(rc), err);
    relay_msg_free(m);
    return rc;
}

/* A compressible 200 kB NOTICE, as event JSON and hex are. */
static char *compressible(size_t *len)
{
    size_t n = 200000;
    char *t = xmalloc(n + 1);
    memcpy(t, "[\"NOTICE\",\"", 11);
    for (size_t i = 11; i < n - 2; i++)
        t[i] = "0123456789abcdef"[(i / 64) % 16];
    memcpy(t + n - 2, "\"]", 3);
    *len = n;
    return t;
}

static void test_deflate(void)
{
    struct logcap lc;
    logcap_init(&lc);
    struct lsrv l;
    CHECK(lsrv_start(&l, NULL, NULL, "{\"name\":\"lws\",\"supported_nips\":[11]}") == 0);
    size_t len;
    char *text = compressible(&len);
    for (int comp = 1; comp >= 0; comp--) {
        struct relay_opts o = quiet_opts(&lc);
        o.compression = comp;
        char url[64], err[RELAY_ERRLEN];
        snprintf(url, sizeof url, "ws://127.0.0.1:%d", l.port);
        struct relay *r = relay_new(url, &o, err, sizeof err);
        if (r && connect_ok(r) == 0 && echo_roundtrip(r, text, len) == 0) {
            CHECK(l.last_len == len);
            struct relay_counters cc;
            relay_get_counters(r, &cc, NULL);
            /* Payload counters count the text; wire counters what went over TCP. */
            CHECK(cc.sent_payload == len && cc.recv_payload == len);
            CHECK(cc.sent_msgs == 1 && cc.recv_msgs == 1);
            if (comp) {
                CHECK_MSG(cc.sent_wire < len / 4 && cc.recv_wire < len / 4,
                          "deflate: wire %llu/%llu for %zu", (unsigned long long)cc.sent_wire,
                          (unsigned long long)cc.recv_wire, len);
            } else {
                CHECK_MSG(cc.sent_wire > len && cc.recv_wire > len, "plain: wire %llu/%llu",
                          (unsigned long long)cc.sent_wire, (unsigned long long)cc.recv_wire);
            }
        }
        relay_free(r);
    }
    /* NIP-11 from a real HTTP server (lws). */
    char url[64], err[RELAY_ERRLEN];
    snprintf(url, sizeof url, "ws://127.0.0.1:%d", l.port);
    struct relay_nip11 *n = NULL;
    int rc = relay_fetch_nip11(url, NULL, 3000, &n, err, sizeof err);
    CHECK_MSG(rc == 0 && n && n->present && n->name && strcmp(n->name, "lws") == 0, "%s: %s",
              relay_error_name(rc), n ? n->reason : err);
    relay_nip11_free(n);
    free(text);
    lsrv_stop(&l);
}

/* A self-signed certificate for CN=localhost, written as PEM into dir. */
static int make_cert(const char *cert, const char *key)
{
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    if (pk == NULL || x == NULL)
        return -1;
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, pk);
    X509_NAME *nm = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1,
                               0);
    X509_set_issuer_name(x, nm);
    int rc = X509_sign(x, pk, EVP_sha256()) > 0 ? 0 : -1;
    FILE *f = fopen(cert, "w");
    if (f == NULL || !PEM_write_X509(f, x))
        rc = -1;
    if (f)
        fclose(f);
    f = fopen(key, "w");
    if (f == NULL || !PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL))
        rc = -1;
    if (f)
        fclose(f);
    X509_free(x);
    EVP_PKEY_free(pk);
    return rc;
}

static void test_tls(void)
{
    char dir[] = "/tmp/test-relay-tls.XXXXXX";
    if (mkdtemp(dir) == NULL) {
        CHECK(!"mkdtemp");
        return;
    }
    char cert[64], key[64];
    snprintf(cert, sizeof cert, "%s/cert.pem", dir);
    snprintf(key, sizeof key, "%s/key.pem", dir);
    CHECK(make_cert(cert, key) == 0);
    struct lsrv l;
    int started = lsrv_start(&l, cert, key, "{\"name\":\"tls\"}") == 0;
    CHECK(started);
    struct logcap lc;
    logcap_init(&lc);
    char url[64], err[RELAY_ERRLEN];
    const char *hosts[] = {"127.0.0.1", "localhost"};
    for (size_t h = 0; started && h < 2; h++) {
        snprintf(url, sizeof url, "wss://%s:%d/", hosts[h], l.port);
        /* Verified against the system store: refused, and the error says why. */
        struct relay_opts o = quiet_opts(&lc);
        struct relay *r = relay_new(url, &o, err, sizeof err);
        int rc = r ? relay_connect(r, 5000, err, sizeof err) : 0;
        CHECK_MSG(rc == RELAY_ERR_TLS_CERT, "%s: %s: %s", url, relay_error_name(rc), err);
        CHECK_MSG(strstr(err, "certificate") != NULL, "%s", err);
        relay_free(r);
        struct relay_nip11 *n = NULL;
        rc = relay_fetch_nip11(url, &o, 5000, &n, err, sizeof err);
        CHECK_MSG(rc == RELAY_ERR_TLS_CERT && n == NULL, "nip11 %s: %s", relay_error_name(rc), err);
        CHECK(strstr(err, "certificate") != NULL);
        /* tls_verify = false: accepted, and the connection works. */
        o.tls_verify = 0;
        r = relay_new(url, &o, err, sizeof err);
        if (r && connect_ok(r) == 0)
            echo_roundtrip(r, "[\"NOTICE\",\"over tls\"]", 21);
        relay_free(r);
        rc = relay_fetch_nip11(url, &o, 5000, &n, err, sizeof err);
        CHECK_MSG(rc == 0 && n && n->present && strcmp(n->name, "tls") == 0, "nip11 %s: %s",
                  relay_error_name(rc), n ? n->reason : err);
        relay_nip11_free(n);
    }
    if (started)
        lsrv_stop(&l);
    unlink(cert);
    unlink(key);
    rmdir(dir);
}

/* ---- client modes, driven by tests/relay-*.sh against tests/negsync-testrelay ------------- */

/*
 * test-relay exchange URL [--no-verify] [--no-compression] [--max BYTES] N
 *   NIP-11 fetch, connect, N REQs that match nothing, read until N EOSE or
 *   2 s of silence, clean close; prints what happened, one fact a line.
 * test-relay stall URL
 *   connect, one REQ, then 64 MiB to a relay that has stopped reading.
 * test-relay reconnect URL
 *   connect, wait for the connection to die, reconnect with backoff until the
 *   relay is back (30 s), one REQ/EOSE on the new connection.
 * Exit status 0 when the connection part went as the mode expects.
 */
static void print_counters(const char *what, const struct relay_counters *c)
{
    printf("%s sent_payload=%llu recv_payload=%llu sent_msgs=%llu recv_msgs=%llu "
           "sent_wire=%llu recv_wire=%llu\n",
           what, (unsigned long long)c->sent_payload, (unsigned long long)c->recv_payload,
           (unsigned long long)c->sent_msgs, (unsigned long long)c->recv_msgs,
           (unsigned long long)c->sent_wire, (unsigned long long)c->recv_wire);
}

static void print_log(void *arg, const char *url, const char *line)
{
    (void)arg;
    (void)url;
    printf("log %s\n", line);
}

static int send_req(struct relay *r, int i, char *err, size_t errlen)
{
    /* Twenty authors: about 1.5 kB, compressible the way real filters are. */
    char req[2048];
    int n = snprintf(req, sizeof req, "[\"REQ\",\"s%d\",{\"kinds\":[23456],\"authors\":[", i);
    for (int a = 0; a < 20; a++)
        n += snprintf(req + n, sizeof req - (size_t)n, "%s\"%062d%02d\"", a ? "," : "", 0, a);
    n += snprintf(req + n, sizeof req - (size_t)n, "],\"limit\":1}]");
    return relay_send(r, req, (size_t)n, err, errlen);
}

static int client_main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN); /* as negsync does: a dead relay is an error, not a signal */
    if (argc < 3) {
        fprintf(stderr, "usage: test-relay exchange|stall|reconnect URL [options] [N]\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *mode = argv[1], *url = argv[2];
    struct relay_opts o = relay_opts_default();
    o.log = print_log;
    o.ping_interval_s = 0;
    o.send_timeout_ms = 2000;
    int nreq = 1;
    for (int i = 3; i < argc; i++) {
        if (strcmp(argv[i], "--no-verify") == 0)
            o.tls_verify = 0;
        else if (strcmp(argv[i], "--no-compression") == 0)
            o.compression = 0;
        else if (strcmp(argv[i], "--max") == 0 && i + 1 < argc)
            o.max_message = (size_t)strtoull(argv[++i], NULL, 10);
        else
            nreq = atoi(argv[i]);
    }
    char err[RELAY_ERRLEN] = "";
    struct relay *r = relay_new(url, &o, err, sizeof err);
    if (r == NULL) {
        printf("new: %s\n", err);
        return 2;
    }
    int status = 1;
    struct relay_counters cc;
    if (strcmp(mode, "exchange") == 0) {
        struct relay_nip11 *n = NULL;
        int rc = relay_fetch_nip11(url, &o, 5000, &n, err, sizeof err);
        if (rc != 0)
            printf("nip11 error=%s: %s\n", relay_error_name(rc), err);
        else
            printf("nip11 present=%d lists77=%d reason=%s\n", n->present, relay_nip11_lists(n, 77),
                   n->reason);
        relay_nip11_free(n);
        rc = relay_connect(r, 10000, err, sizeof err);
        printf("connect %s%s%s\n", relay_error_name(rc), rc ? ": " : "", rc ? err : "");
        status = 0; /* the script judges what was printed */
        if (rc != 0)
            goto out;
        for (int i = 0; i < nreq && rc == 0; i++)
            rc = send_req(r, i, err, sizeof err);
        int eose = 0;
        while (rc == 0 && eose < nreq) {
            struct relay_msg *m = NULL;
            rc = relay_recv(r, 2000, &m, err, sizeof err);
            if (rc == 0 && m->type == RELAY_MSG_EOSE)
                eose++;
            else if (rc == 0 && m->type == RELAY_MSG_NOTICE)
                printf("notice bytes=%zu\n", m->raw_len);
            relay_msg_free(m);
        }
        printf("eose %d\n", eose);
        printf("recv %s%s%s\n", relay_error_name(rc), rc ? ": " : "", rc ? err : "");
        printf("connected %d\n", relay_is_connected(r));
        relay_close(r);
        relay_get_counters(r, &cc, NULL);
        print_counters("counters", &cc);
        status = 0;
    } else if (strcmp(mode, "stall") == 0) {
        int rc = relay_connect(r, 10000, err, sizeof err);
        if (rc == 0)
            rc = send_req(r, 0, err, sizeof err);
        if (rc == 0) {
            size_t big = 64 * MIB;
            char *text = xmalloc(big);
            memset(text, 'x', big);
            rc = relay_send(r, text, big, err, sizeof err);
            free(text);
            printf("send %s: %s\n", relay_error_name(rc), err);
            printf("connected %d\n", relay_is_connected(r));
            status = rc == RELAY_ERR_TIMEOUT && !relay_is_connected(r) ? 0 : 1;
        } else {
            printf("connect %s: %s\n", relay_error_name(rc), err);
        }
    } else if (strcmp(mode, "reconnect") == 0) {
        int rc = relay_connect(r, 10000, err, sizeof err);
        if (rc != 0) {
            printf("connect %s: %s\n", relay_error_name(rc), err);
            goto out;
        }
        printf("connected\n");
        struct relay_msg *m = NULL;
        int64_t dl = now_ms() + 30000;
        while ((rc = relay_recv(r, 1000, &m, err, sizeof err)) == 0 || rc == RELAY_ERR_TIMEOUT) {
            relay_msg_free(m);
            m = NULL;
            if (now_ms() > dl)
                break;
        }
        printf("lost %s: %s\n", relay_error_name(rc), err);
        int attempts = 0;
        do {
            rc = relay_reconnect(r, 2000, err, sizeof err);
            attempts++;
        } while (rc != 0 && now_ms() < dl);
        printf("reconnect %s after %d attempts, failures now %u\n", relay_error_name(rc), attempts,
               relay_failures(r));
        if (rc == 0 && send_req(r, 1, err, sizeof err) == 0 &&
            relay_recv(r, 5000, &m, err, sizeof err) == 0) {
            printf("after reconnect: %s\n", m->type == RELAY_MSG_EOSE ? "EOSE" : "other");
            status = m->type == RELAY_MSG_EOSE ? 0 : 1;
            relay_msg_free(m);
        }
    }
out:
    relay_free(r);
    return status;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        return client_main(argc, argv);
    /* The 5 MiB NIP-11 body for the size cases. */
    big_body_len = 5 * MIB;
    big_body = xmalloc(big_body_len);
    memset(big_body, ' ', big_body_len);
    memcpy(big_body, "{\"name\":\"big\"}", 14);

    test_parse();
    test_backoff();
    test_urls();
    test_nip11_parse();
    test_counters();
    test_garbage();
    test_oversize();
    test_stalled_peer();
    test_wait_after_blocked_send();
    test_peer_close_and_restart();
    test_connect_failures();
    test_keepalive();
    test_nip11_fetch();
    test_deflate();
    test_tls();
    free(big_body);
    return test_summary("test-relay");
}
