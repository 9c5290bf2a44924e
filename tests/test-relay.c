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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

static int64_t
now_ms(void)
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

static void
logcap_fn(void *arg, const char *url, const char *line)
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

static void
logcap_init(struct logcap *l)
{
    memset(l, 0, sizeof *l);
    pthread_mutex_init(&l->mu, NULL);
}

static struct relay_opts
quiet_opts(struct logcap *l)
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

static struct relay_msg *
parse_ok(const char *s)
{
    char err[RELAY_ERRLEN];
    struct relay_msg *m = NULL;
    int rc = relay_msg_parse(s, strlen(s), &m, err, sizeof err);
    CHECK_MSG(rc == 0 && m != NULL, "%s: %s", s, err);
    return rc == 0 ? m : NULL;
}

static void
parse_bad(const char *s, const char *want)
{
    char err[RELAY_ERRLEN] = "";
    struct relay_msg *m = (struct relay_msg *)1;
    int rc = relay_msg_parse(s, strlen(s), &m, err, sizeof err);
    CHECK_MSG(rc == -1 && m == NULL, "accepted: %s", s);
    CHECK_MSG(strstr(err, want) != NULL, "%s: error \"%s\" lacks \"%s\"", s, err, want);
}

static void
test_parse(void)
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
        CHECK(m->has_neg_limit == 0);   /* advisory field of the wrong type: ignored */
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

static void
test_backoff(void)
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
    unsigned big[] = { 10, 11, 20, 21, 63, 64, 65, 1000, 0xffffffffu };
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
        CHECK(relay_backoff_delay_ms(big[i], mid) == 300000);
        CHECK(relay_backoff_delay_ms(big[i], lo) == 240000);
        CHECK(relay_backoff_delay_ms(big[i], hi) == 360000);
    }
    /* Jitter stays in [0.8, 1.2] and actually spreads: a uniform source fills the range. */
    uint64_t st = 7;
    int64_t mn = INT64_MAX, mx = 0;
    int buckets[4] = { 0 };
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

static void
norm_is(const char *in, const char *want)
{
    char err[RELAY_ERRLEN] = "";
    char *got = relay_url_normalize(in, err, sizeof err);
    CHECK_MSG(got != NULL && strcmp(got, want) == 0, "%s -> %s (%s), want %s", in,
              got ? got : "NULL", err, want);
    free(got);
}

static void
norm_bad(const char *in)
{
    char err[RELAY_ERRLEN] = "";
    char *got = relay_url_normalize(in, err, sizeof err);
    CHECK_MSG(got == NULL && err[0], "%s accepted as %s", in, got ? got : "NULL");
    free(got);
    struct relay *r = relay_new(in, NULL, err, sizeof err);
    CHECK_MSG(r == NULL, "relay_new accepted %s", in);
    relay_free(r);
}

static void
test_urls(void)
{
    norm_is("wss://Relay.Example.com:443/", "wss://relay.example.com");
    norm_is("WSS://relay.example.com", "wss://relay.example.com");
    norm_is("ws://relay.example.com:80", "ws://relay.example.com");
    norm_is("ws://relay.example.com:443", "ws://relay.example.com:443");
    norm_is("wss://relay.example.com:80/", "wss://relay.example.com:80");
    norm_is("wss://relay.example.com:7777/Path/", "wss://relay.example.com:7777/Path");
    norm_is("wss://relay.example.com//", "wss://relay.example.com");
    norm_is("wss://relay.example.com?x=1", "wss://relay.example.com/?x=1");
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

static struct relay_nip11 *
nip11(const char *s)
{
    return relay_nip11_parse(s, strlen(s));
}

static void
test_nip11_parse(void)
{
    struct relay_nip11 *n = nip11(
        "{\"name\":\"test\",\"software\":\"git+https://github.com/hoytech/strfry.git\","
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
    CHECK(n->limitation.max_filters == -1);     /* a string: ignored */
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
        "{\"name\":5,\"software\":[\"strfry\"],\"version\":1.2,\"supported_nips\":\"1,77\","
        "\"limitation\":\"none\"}",
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
    int nconn;                  /* connections to serve, one after the other */
    atomic_size_t rd, wr;
    char req[8192];             /* the last request head */
    int failures;               /* server-side checks that failed */
    char why[256];
    const void *arg;            /* scenario input */
    struct buf got;             /* scenario output: a received payload */
    int close_code;             /* the client's close code, -1 if none came */
    atomic_int stop;
    atomic_int conns_done;      /* connections served and closed */
    atomic_int phase;           /* scenario progress, for the client side to wait on */
};

static void
srv_fail(struct srv *s, const char *why)
{
    if (!s->failures++)
        snprintf(s->why, sizeof s->why, "%s", why);
}

static int
srv_listen(struct srv *s, int port)
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

static int
wait_fd(int fd, short ev, int timeout_ms)
{
    struct pollfd p = { fd, ev, 0 };
    int rc;
    do
        rc = poll(&p, 1, timeout_ms);
    while (rc < 0 && errno == EINTR);
    return rc > 0 ? 0 : -1;
}

/* Reads exactly n bytes within timeout_ms; -1 on EOF, error or timeout. */
static int
srv_read(struct srv *s, int fd, void *p, size_t n, int timeout_ms)
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

static int
srv_write(struct srv *s, int fd, const void *p, size_t n)
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
static int
srv_handshake(struct srv *s, int fd, const char *status_line)
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
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", b64);
    return srv_write(s, fd, resp, (size_t)l);
}

/* One unmasked frame from the server. */
static int
srv_frame(struct srv *s, int fd, int fin, int opcode, const void *p, size_t n)
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

static int
srv_text(struct srv *s, int fd, const char *text)
{
    return srv_frame(s, fd, 1, 1, text, strlen(text));
}

/* One masked frame from the client; payload appended to out. */
static int
srv_read_frame(struct srv *s, int fd, int *fin, int *opcode, struct buf *out, int timeout_ms)
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
static int
srv_read_message(struct srv *s, int fd, int timeout_ms)
{
    s->got.len = 0;
    int first = -1;
    for (;;) {
        int fin, op;
        struct buf f = { 0 };
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
static void
srv_finish(struct srv *s, int fd)
{
    for (;;) {
        int op = srv_read_message(s, fd, 5000);
        if (op < 0)
            return;
        if (op == 8) {
            unsigned char c[2] = { (unsigned char)(s->close_code >> 8),
                                   (unsigned char)s->close_code };
            srv_frame(s, fd, 1, 8, c, 2);
            return;
        }
    }
}

static void *
srv_main(void *arg)
{
    struct srv *s = arg;
    for (int i = 0; i < s->nconn && !s->stop; i++) {
        if (wait_fd(s->lfd, POLLIN, 10000) < 0) {
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

static int
srv_start(struct srv *s, void (*fn)(struct srv *, int), const void *arg, int port)
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
static void
srv_join(struct srv *s)
{
    if (s->started)
        pthread_join(s->th, NULL);
    s->started = 0;
    if (s->lfd >= 0)
        close(s->lfd);
    s->lfd = -1;
    CHECK_MSG(s->failures == 0, "server: %s", s->why);
}

static void
srv_url(const struct srv *s, char *out, size_t n)
{
    snprintf(out, n, "ws://127.0.0.1:%d/", s->port);
}

static struct relay *
open_relay(const struct srv *s, const struct relay_opts *o)
{
    char url[64], err[RELAY_ERRLEN];
    srv_url(s, url, sizeof url);
    struct relay *r = relay_new(url, o, err, sizeof err);
    CHECK_MSG(r != NULL, "%s", err);
    return r;
}

static int
connect_ok(struct relay *r)
{
    char err[RELAY_ERRLEN] = "";
    int rc = relay_connect(r, 5000, err, sizeof err);
    CHECK_MSG(rc == 0, "connect: %s (%s)", relay_error_name(rc), err);
    return rc;
}

/* ---- scenario: exact counters ---------------------------------------------------- */

struct counters_script {
    size_t in_len;              /* the client's message, checked byte for byte */
    const char *in;
    const char *out1;           /* sent in one frame */
    const char *out2;           /* sent in three fragments */
};

static void
scn_counters(struct srv *s, int fd)
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

static void
test_counters(void)
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
    struct counters_script c = { in_len, in, out1, out2 };

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

int
main(void)
{
    test_parse();
    test_backoff();
    test_urls();
    test_nip11_parse();
    test_counters();
    return test_summary("test-relay");
}
