/*
 * test-caps: capability detection without and with a network.
 *
 * Without: which notices read as refusals, the exact NEG-OPEN the probe
 * sends, the handshake against a scripted transport (every reply rule of
 * caps_handshake, its deadline, NEG-CLOSE after NEG-MSG), NIP-11 documents
 * to "no NIP-11", the recheck policy, and the cache table.
 *
 * With: caps_probe against tests/negsync-testrelay (found through
 * $top_builddir, as make check sets it), driven by an injected clock: a
 * fresh answer is reused, an expired one and a changed NIP-11 version are
 * checked again, --force checks again, and a relay that is down is reported
 * unreachable without touching the cache. Then relays with quirks: one that
 * loses the first message of a connection (the guard sends it again), with
 * an AUTH challenge on connect, with silence besides (an hour in the
 * cache), and one that is only slow.
 *
 * `test-caps json-field KEY` is a helper for the shell tests: it prints KEY
 * of each JSON object read from stdin, one per line (strings raw, null as
 * "null", anything else as compact JSON).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "caps.h"
#include "neg.h"
#include "relay.h"
#include "store.h"
#include "testutil.h"
#include "util.h"

#define DAY 86400

/* ---- notices ------------------------------------------------------------------ */

static void test_notices(void)
{
    /* What relays out there answer to a NEG-OPEN they do not understand. */
    static const char *const refusals[] = {
        "ERROR: bad msg: negentropy disabled",                        /* strfry */
        "ERROR: bad msg: unknown cmd",                                /* strfry */
        "failed to parse envelope: unknown envelope label",           /* khatru */
        "could not parse command",                                    /* nostr-rs-relay */
        "Command unrecognized",                                       /* chorus */
        "invalid: \"value\" does not match any of the allowed types", /* nostream */
        "NEG-OPEN is not supported here",
        "NEG not enabled",
        "negentropy is off",
        "Unsupported message type",
        "bad message",
        "not implemented",
    };
    static const char *const harmless[] = {
        "Welcome to my relay! Be nice.", "Hello from relay.example.com, powered by love",
        "rate limited: slow down",       "",
        "NEGATIVE feedback welcome", /* "NEG" inside a word names nothing */
    };

    /* About a REQ as well as NEG-OPEN: a refusal only when nothing else is open. */
    static const char *const generic[] = {
        "ERROR: too many concurrent REQs",
        "invalid: \"value\" does not match any of the allowed types", /* nostream */
        "error: rate-limited",
        "unknown subscription",
    };
    /* Refusals on a connection that carries REQs too: they name the message kind. */
    static const char *const shared[] = {
        "ERROR: feature not implemented", "ERROR: bad msg: negentropy disabled",
        "ERROR: bad msg: unknown cmd",    "could not parse command",
        "Command unrecognized",           "NEG not enabled",
    };

    for (size_t i = 0; i < sizeof refusals / sizeof refusals[0]; i++)
        CHECK_MSG(caps_notice_is_refusal(refusals[i], CAPS_NOTICE_NEG_ONLY), "\"%s\"", refusals[i]);
    for (size_t i = 0; i < sizeof harmless / sizeof harmless[0]; i++) {
        CHECK_MSG(!caps_notice_is_refusal(harmless[i], CAPS_NOTICE_NEG_ONLY), "\"%s\"",
                  harmless[i]);
        CHECK_MSG(!caps_notice_is_refusal(harmless[i], CAPS_NOTICE_SHARED), "\"%s\"", harmless[i]);
    }
    for (size_t i = 0; i < sizeof generic / sizeof generic[0]; i++) {
        CHECK_MSG(caps_notice_is_refusal(generic[i], CAPS_NOTICE_NEG_ONLY), "\"%s\"", generic[i]);
        CHECK_MSG(!caps_notice_is_refusal(generic[i], CAPS_NOTICE_SHARED), "\"%s\"", generic[i]);
    }
    for (size_t i = 0; i < sizeof shared / sizeof shared[0]; i++)
        CHECK_MSG(caps_notice_is_refusal(shared[i], CAPS_NOTICE_SHARED), "\"%s\"", shared[i]);
    CHECK(!caps_notice_is_refusal(NULL, CAPS_NOTICE_NEG_ONLY));
    CHECK(!caps_notice_is_refusal(NULL, CAPS_NOTICE_SHARED));
}

/* ---- reasons ------------------------------------------------------------------------ */

static void expect_quote(const char *text, size_t outlen, const char *want)
{
    char out[512];

    CHECK(outlen <= sizeof out);
    caps_quote(out, outlen, text);
    CHECK_MSG(strcmp(out, want) == 0, "quote of \"%s\" in %zu: got %s, want %s",
              text != NULL ? text : "(null)", outlen, out, want);
    CHECK(strlen(out) < outlen);
}

static void test_quote(void)
{
    /* 130 bytes of words; the room is CAPS_QUOTE_MAX (120) less the ellipsis (3). */
    static const char words[] = "The quick brown fox jumps over the lazy dog, and then the "
                                "quick brown fox jumps over the lazy dog again, and again, "
                                "and again and";
    char exact[CAPS_QUOTE_MAX + 2], over[CAPS_QUOTE_MAX + 2], want[CAPS_QUOTE_MAX + 16];

    expect_quote("ERROR: bad msg: negentropy disabled", 256,
                 "\"ERROR: bad msg: negentropy disabled\"");
    expect_quote(NULL, 256, "\"\"");
    expect_quote("", 256, "\"\"");
    /* Control characters would break a one-line reason (or a terminal): spaces. */
    expect_quote("line one\nline two\t\x1b[31mred", 256, "\"line one line two  [31mred\"");
    /* Long: cut after a whole word (and the comma that ends it), then an ellipsis. */
    CHECK(sizeof words - 1 > CAPS_QUOTE_MAX);
    expect_quote(words, 256,
                 "\"The quick brown fox jumps over the lazy dog, and then the quick brown fox "
                 "jumps over the lazy dog again, and again\xe2\x80\xa6\"");
    /* Exactly CAPS_QUOTE_MAX bytes: whole; one more: cut. */
    memset(exact, 'a', CAPS_QUOTE_MAX);
    exact[CAPS_QUOTE_MAX] = '\0';
    memcpy(exact, "word ", 5);
    snprintf(want, sizeof want, "\"%s\"", exact);
    expect_quote(exact, 256, want);
    /*
     * One more byte: a single 116-byte word after "word " is longer than half
     * the room, so it is cut mid-word rather than leaving only "word".
     */
    snprintf(over, sizeof over, "%sa", exact);
    snprintf(want, sizeof want, "\"%.*s\xe2\x80\xa6\"", CAPS_QUOTE_MAX - 3, over);
    expect_quote(over, 256, want);
    /* A small buffer cuts sooner; the quotes and the NUL always fit. */
    expect_quote("negentropy disabled here", 16, "\"negentropy\xe2\x80\xa6\"");
    expect_quote("abc", 3, "\"\"");
    expect_quote("abc", 2, "");
    /* Never inside a UTF-8 character: "é" is two bytes, "€" three. */
    {
        char utf[CAPS_QUOTE_MAX + 8];
        size_t n = 0;
        while (n + 3 <= CAPS_QUOTE_MAX + 4) {
            memcpy(utf + n, "\xe2\x82\xac", 3);
            n += 3;
        }
        utf[n] = '\0';
        caps_quote(want, sizeof want, utf);
        /* 117 bytes of room hold 39 whole euro signs. */
        CHECK_MSG(strlen(want) == 2 + 39 * 3 + 3, "%zu", strlen(want));
        CHECK(strncmp(want + 1 + 39 * 3, "\xe2\x80\xa6\"", 4) == 0);
    }
}

static void test_reasons(void)
{
    char out[CAPS_REASONLEN], longtext[400];
    struct relay_msg m = {0};
    struct caps_result r = {0};

    m.type = RELAY_MSG_NOTICE;
    m.text = "ERROR: bad msg: negentropy disabled";
    caps_fallback_reason(out, sizeof out, &m, 0, NULL, 0);
    CHECK_MSG(strcmp(out, "no NIP-77: the relay answered NEG-OPEN with NOTICE \"ERROR: bad msg: "
                          "negentropy disabled\"") == 0,
              "%s", out);
    m.type = RELAY_MSG_NEG_ERR;
    m.text = "";
    caps_neg_open_reason(out, sizeof out, &m, 0, NULL, 0);
    CHECK_MSG(strcmp(out, "the relay answered NEG-OPEN with NEG-ERR with no reason") == 0, "%s",
              out);
    m.type = RELAY_MSG_CLOSED;
    m.text = "auth-required: sign in first";
    caps_neg_open_reason(out, sizeof out, &m, 0, NULL, 0);
    CHECK_MSG(strcmp(out, "the relay answered NEG-OPEN with CLOSED \"auth-required: sign in "
                          "first\"") == 0,
              "%s", out);
    caps_fallback_reason(out, sizeof out, NULL, RELAY_ERR_TIMEOUT, "no reply within 10 s", 10000);
    CHECK_MSG(strcmp(out, "no NIP-77: no reply to NEG-OPEN within 10 s") == 0, "%s", out);
    caps_neg_open_reason(out, sizeof out, NULL, RELAY_ERR_CLOSED,
                         "peer closed the connection (1001 going away)", 0);
    CHECK_MSG(strcmp(out, "the relay closed the connection on NEG-OPEN (peer closed the "
                          "connection (1001 going away))") == 0,
              "%s", out);
    caps_neg_open_reason(out, sizeof out, NULL, RELAY_ERR_CLOSED, "", 0);
    CHECK(strcmp(out, "the relay closed the connection on NEG-OPEN") == 0);

    /* A relay's essay is cut at a word, and the reason still fits. */
    memset(longtext, 0, sizeof longtext);
    for (size_t i = 0; strlen(longtext) + 12 < sizeof longtext; i++)
        strcat(longtext, i % 2 ? "negentropy " : "disabled, ");
    m.type = RELAY_MSG_NOTICE;
    m.text = longtext;
    caps_fallback_reason(out, sizeof out, &m, 0, NULL, 0);
    CHECK(strlen(out) < sizeof out - 1);
    CHECK_MSG(strstr(out, "negentropy\xe2\x80\xa6\"") != NULL ||
                  strstr(out, "disabled\xe2\x80\xa6\"") != NULL,
              "%s", out);

    r.verdict = CAPS_UNSUPPORTED;
    snprintf(r.reason, sizeof r.reason, "no reply to NEG-OPEN within 5 s");
    caps_result_fallback(&r, out, sizeof out);
    CHECK(strcmp(out, "no NIP-77: no reply to NEG-OPEN within 5 s") == 0);
    r.cached = 1;
    caps_result_fallback(&r, out, sizeof out);
    CHECK(strcmp(out, "no NIP-77: no reply to NEG-OPEN within 5 s (cached)") == 0);
}

/* ---- the NEG-OPEN message ------------------------------------------------------- */

/* The hex of the initial message of an empty set, computed here independently of caps. */
static char *empty_set_hex(void)
{
    char err[NEG_ERRLEN];
    struct neg_storage *st = neg_storage_new();
    struct neg *n;
    struct buf b = {0};
    char *hex;

    CHECK(neg_storage_seal(st, err, sizeof err) == 0);
    n = neg_new(st, 0, err, sizeof err);
    CHECK(n != NULL && neg_initiate(n, &b, err, sizeof err) == 0);
    hex = xmalloc(b.len * 2 + 1);
    hex_encode(b.data, b.len, hex);
    buf_free(&b);
    neg_free(n);
    neg_storage_free(st);
    return hex;
}

static void test_neg_open_message(void)
{
    char *text = caps_neg_open_message();
    char *hex = empty_set_hex();
    json_error_t jerr;
    json_t *arr = json_loads(text, 0, &jerr);
    json_t *filter, *kinds;

    CHECK_MSG(json_is_array(arr) && json_array_size(arr) == 4, "%s", text);
    CHECK(json_is_string(json_array_get(arr, 0)) &&
          strcmp(json_string_value(json_array_get(arr, 0)), "NEG-OPEN") == 0);
    CHECK(strcmp(json_string_value(json_array_get(arr, 1)), CAPS_PROBE_SUBID) == 0);
    /* An object, never an array: strfry rejects arrays. */
    filter = json_array_get(arr, 2);
    CHECK(json_is_object(filter));
    CHECK(json_object_size(filter) == 1);
    kinds = json_object_get(filter, "kinds");
    CHECK(json_is_array(kinds) && json_array_size(kinds) == 1 &&
          json_integer_value(json_array_get(kinds, 0)) == CAPS_PROBE_KIND);
    /* No "limit": khatru answers "limit":0 with NEG-ERR "invalid limit 0". */
    CHECK(json_object_get(filter, "limit") == NULL);
    CHECK(json_is_string(json_array_get(arr, 3)));
    CHECK_MSG(strcmp(json_string_value(json_array_get(arr, 3)), hex) == 0, "%s vs %s",
              json_string_value(json_array_get(arr, 3)), hex);
    /* Version byte 0x61 first, lowercase hex throughout. */
    CHECK(strncmp(hex, "61", 2) == 0);
    for (const char *p = hex; *p; p++)
        CHECK(strchr("0123456789abcdef", *p) != NULL);
    /* Compact: no spaces a strict relay might trip on. */
    CHECK(strchr(text, ' ') == NULL);
    json_decref(arr);
    free(hex);
    free(text);
}

/* ---- the handshake against a script ---------------------------------------------- */

enum step_kind { STEP_MSG, STEP_ERR, STEP_FOREVER };

struct step {
    enum step_kind kind;
    const char *text; /* STEP_MSG, STEP_FOREVER: the message */
    int rc;           /* STEP_ERR */
};

struct script {
    const struct step *steps;
    size_t n, pos;
    int send_rc; /* what send returns (0 normally) */
    char *sent[4];
    size_t nsent;
    int last_timeout, timeouts_grew, nrecv;
    int nlogged;
};

static int script_send(void *arg, const char *text, size_t len, char *err, size_t errlen)
{
    struct script *s = arg;

    if (s->nsent < 4) {
        s->sent[s->nsent] = xmalloc(len + 1);
        memcpy(s->sent[s->nsent], text, len);
        s->sent[s->nsent][len] = '\0';
        s->nsent++;
    }
    if (s->send_rc != 0)
        snprintf(err, errlen, "scripted send failure");
    return s->send_rc;
}

static int script_recv(void *arg, int timeout_ms, struct relay_msg **out, char *err, size_t errlen)
{
    struct script *s = arg;
    const struct step *st;

    if (s->nrecv++ > 0 && timeout_ms > s->last_timeout)
        s->timeouts_grew = 1;
    s->last_timeout = timeout_ms;
    if (s->pos >= s->n) {
        snprintf(err, errlen, "no message within the timeout");
        return RELAY_ERR_TIMEOUT; /* silence, as relay_recv reports it */
    }
    st = &s->steps[s->pos];
    if (st->kind != STEP_FOREVER)
        s->pos++;
    if (st->kind == STEP_ERR) {
        snprintf(err, errlen, "scripted %s", relay_error_name(st->rc));
        return st->rc;
    }
    return relay_msg_parse(st->text, strlen(st->text), out, err, errlen) == 0 ? 0
                                                                              : RELAY_ERR_INTERNAL;
}

static void script_log(void *arg, const char *url, const char *line)
{
    (void)url;
    (void)line;
    ((struct script *)arg)->nlogged++;
}

/* Runs the handshake over steps; the caller checks the result and frees via script_free. */
static int run_script(struct script *s, const struct step *steps, size_t n, int timeout_ms,
                      struct caps_result *r)
{
    struct caps_transport t = {script_send, script_recv, s, script_log, s, "ws://script"};

    s->steps = steps;
    s->n = n;
    memset(r, 0, sizeof *r);
    return caps_handshake(&t, timeout_ms, r);
}

static void script_free(struct script *s)
{
    for (size_t i = 0; i < s->nsent; i++)
        free(s->sent[i]);
}

#define NSTEPS(a) (sizeof(a) / sizeof((a)[0]))

static void expect_script(const char *what, const struct step *steps, size_t n,
                          enum caps_verdict verdict, const char *reason)
{
    struct script s = {0};
    struct caps_result r;
    int rc = run_script(&s, steps, n, 2000, &r);

    CHECK_MSG(rc == 0, "%s: rc %d", what, rc);
    CHECK_MSG(r.verdict == verdict, "%s: got %s", what, caps_verdict_name(r.verdict));
    CHECK_MSG(strcmp(r.reason, reason) == 0, "%s: reason \"%s\", want \"%s\"", what, r.reason,
              reason);
    CHECK_MSG(r.latency_ms >= 0, "%s: latency %lld", what, (long long)r.latency_ms);
    CHECK_MSG(s.nsent >= 1 && strncmp(s.sent[0], "[\"NEG-OPEN\",", 12) == 0, "%s", what);
    /* NEG-CLOSE follows a NEG-MSG and nothing else. */
    CHECK_MSG(s.nsent == (verdict == CAPS_SUPPORTED ? 2u : 1u), "%s: %zu sent", what, s.nsent);
    if (verdict == CAPS_SUPPORTED && s.nsent == 2)
        CHECK(strcmp(s.sent[1], "[\"NEG-CLOSE\",\"" CAPS_PROBE_SUBID "\"]") == 0);
    CHECK_MSG(!s.timeouts_grew, "%s: the wait is one deadline, not a timeout per message", what);
    script_free(&s);
}

static void test_handshake(void)
{
    const struct step neg_msg[] = {{STEP_MSG, "[\"NEG-MSG\",\"negsync-probe\",\"6100000200\"]", 0}};
    const struct step neg_err[] = {
        {STEP_MSG, "[\"NEG-ERR\",\"negsync-probe\",\"blocked: Negentropy sync is disabled\"]", 0}};
    const struct step neg_err_empty[] = {{STEP_MSG, "[\"NEG-ERR\",\"negsync-probe\"]", 0}};
    const struct step neg_err_limit[] = {
        {STEP_MSG, "[\"NEG-ERR\",\"negsync-probe\",\"blocked: too many query results\",1000000]",
         0}};
    const struct step closed[] = {
        {STEP_MSG, "[\"CLOSED\",\"negsync-probe\",\"error: NEG not supported\"]", 0}};
    const struct step notice[] = {
        {STEP_MSG, "[\"NOTICE\",\"ERROR: bad msg: negentropy disabled\"]", 0}};
    const struct step welcome_then_msg[] = {
        {STEP_MSG, "[\"NOTICE\",\"Welcome! Be nice.\"]", 0},
        {STEP_MSG, "[\"AUTH\",\"challenge\"]", 0},
        {STEP_MSG, "[\"EOSE\",\"something-else\"]", 0},
        {STEP_MSG, "[\"NEG-MSG\",\"negsync-probe\",\"6100000200\"]", 0}};
    const struct step welcome_then_refusal[] = {
        {STEP_MSG, "[\"NOTICE\",\"Welcome! Be nice.\"]", 0},
        {STEP_MSG, "[\"NOTICE\",\"Command unrecognized\"]", 0}};
    const struct step welcome_then_silence[] = {{STEP_MSG, "[\"NOTICE\",\"hello there\"]", 0}};
    /* Replies about other subscriptions say nothing about ours. */
    const struct step others_then_closed[] = {
        {STEP_MSG, "[\"NEG-MSG\",\"someone-else\",\"6100000200\"]", 0},
        {STEP_MSG, "[\"NEG-ERR\",\"someone-else\",\"blocked\"]", 0},
        {STEP_MSG, "[\"CLOSED\",\"someone-else\",\"nope\"]", 0},
        {STEP_ERR, NULL, RELAY_ERR_CLOSED}};
    const struct step closed_conn[] = {{STEP_ERR, NULL, RELAY_ERR_CLOSED}};
    const struct step too_big[] = {{STEP_ERR, NULL, RELAY_ERR_TOO_BIG}};
    const struct step silence[] = {{STEP_ERR, NULL, RELAY_ERR_TIMEOUT}};

    expect_script("NEG-MSG", neg_msg, NSTEPS(neg_msg), CAPS_SUPPORTED, "NEG-MSG");
    expect_script("NEG-ERR", neg_err, NSTEPS(neg_err), CAPS_UNSUPPORTED,
                  "the relay answered NEG-OPEN with NEG-ERR \"blocked: Negentropy sync is "
                  "disabled\"");
    expect_script("NEG-ERR without reason", neg_err_empty, NSTEPS(neg_err_empty), CAPS_UNSUPPORTED,
                  "the relay answered NEG-OPEN with NEG-ERR with no reason");
    expect_script("NEG-ERR blocked on an empty query", neg_err_limit, NSTEPS(neg_err_limit),
                  CAPS_UNSUPPORTED,
                  "the relay answered NEG-OPEN with NEG-ERR \"blocked: too many query results\"");
    expect_script("CLOSED", closed, NSTEPS(closed), CAPS_UNSUPPORTED,
                  "the relay answered NEG-OPEN with CLOSED \"error: NEG not supported\"");
    expect_script("refusal NOTICE", notice, NSTEPS(notice), CAPS_UNSUPPORTED,
                  "the relay answered NEG-OPEN with NOTICE \"ERROR: bad msg: negentropy "
                  "disabled\"");
    expect_script("welcome, AUTH, EOSE, then NEG-MSG", welcome_then_msg, NSTEPS(welcome_then_msg),
                  CAPS_SUPPORTED, "NEG-MSG");
    expect_script("welcome then refusal", welcome_then_refusal, NSTEPS(welcome_then_refusal),
                  CAPS_UNSUPPORTED,
                  "the relay answered NEG-OPEN with NOTICE \"Command unrecognized\"");
    expect_script("welcome then silence", welcome_then_silence, NSTEPS(welcome_then_silence),
                  CAPS_UNSUPPORTED, "no reply to NEG-OPEN within 2 s");
    expect_script("other subscriptions, then close", others_then_closed, NSTEPS(others_then_closed),
                  CAPS_UNSUPPORTED,
                  "the relay closed the connection on NEG-OPEN (scripted closed)");
    expect_script("connection closed", closed_conn, NSTEPS(closed_conn), CAPS_UNSUPPORTED,
                  "the relay closed the connection on NEG-OPEN (scripted closed)");
    /*
     * A message over our cap is no answer about NIP-77: the probe fails
     * (unreachable, not cached) and says why.
     */
    {
        struct script s = {0};
        struct caps_result r;
        int rc = run_script(&s, too_big, NSTEPS(too_big), 2000, &r);
        CHECK_MSG(rc < 0 && r.verdict == CAPS_UNREACHABLE, "oversize message: rc %d, %s", rc,
                  caps_verdict_name(r.verdict));
        CHECK_MSG(strcmp(r.reason, "scripted too-big") == 0, "oversize message: \"%s\"", r.reason);
        caps_result_clear(&r);
        script_free(&s);
    }
    expect_script("silence", silence, NSTEPS(silence), CAPS_UNSUPPORTED,
                  "no reply to NEG-OPEN within 2 s");

    /* The welcome notice was logged, not taken for an answer; the AUTH challenge is noted. */
    {
        struct script s = {0};
        struct caps_result r;
        run_script(&s, welcome_then_msg, NSTEPS(welcome_then_msg), 2000, &r);
        CHECK(s.nlogged == 3);
        CHECK(r.auth_challenge);
        /* Noted, never answered: NEG-OPEN and NEG-CLOSE are all the probe sent. */
        CHECK(s.nsent == 2);
        script_free(&s);
        memset(&s, 0, sizeof s);
        run_script(&s, neg_msg, NSTEPS(neg_msg), 2000, &r);
        CHECK(!r.auth_challenge);
        script_free(&s);
    }

    /* A relay that trickles harmless notices forever cannot stretch the deadline. */
    {
        const struct step trickle[] = {{STEP_FOREVER, "[\"NOTICE\",\"still here\"]", 0}};
        struct script s = {0};
        struct caps_result r;
        int rc = run_script(&s, trickle, 1, 50, &r);
        CHECK(rc == 0);
        CHECK(r.verdict == CAPS_UNSUPPORTED &&
              strcmp(r.reason, "no reply to NEG-OPEN within 0.05 s") == 0);
        CHECK(r.latency_ms >= 50);
        CHECK(s.nrecv > 1 && !s.timeouts_grew);
        script_free(&s);
    }

    /* The connection dying under NEG-OPEN, or the send timing out. */
    {
        struct script s = {0};
        struct caps_result r;
        s.send_rc = RELAY_ERR_CLOSED;
        CHECK(run_script(&s, NULL, 0, 2000, &r) == 0);
        CHECK(r.verdict == CAPS_UNSUPPORTED &&
              strcmp(r.reason, "the relay closed the connection on NEG-OPEN (scripted send "
                               "failure)") == 0);
        CHECK(s.nrecv == 0);
        script_free(&s);
        memset(&s, 0, sizeof s);
        s.send_rc = RELAY_ERR_TIMEOUT;
        CHECK(run_script(&s, NULL, 0, 2000, &r) == 0);
        CHECK(r.verdict == CAPS_UNSUPPORTED &&
              strcmp(r.reason, "no reply to NEG-OPEN within 2 s") == 0);
        script_free(&s);
    }

    /* Interrupted: no verdict about the relay. */
    {
        const struct step intr[] = {{STEP_ERR, NULL, RELAY_ERR_INTERRUPTED}};
        struct script s = {0};
        struct caps_result r;
        CHECK(run_script(&s, intr, 1, 2000, &r) == -1);
        CHECK(r.verdict == CAPS_UNREACHABLE);
        script_free(&s);
    }
}

/* ---- NIP-11 ------------------------------------------------------------------------ */

static void nip11_of(const char *doc, struct caps_nip11 *out)
{
    struct relay_nip11 *n = relay_nip11_parse(doc, strlen(doc));
    caps_nip11_from_relay(n, NULL, out);
    relay_nip11_free(n);
}

static void test_nip11(void)
{
    struct caps_nip11 n = {0};
    static const char *const no_nip11[] = {
        "",
        "not json",
        "[1,2,3]",
        "\"a string\"",
        "{\"software\":12345,\"version\":\"1.0\"}",
        "{\"software\":\"x\",\"version\":2}",
        "{\"supported_nips\":\"1,11,77\"}",
        "{\"supported_nips\":[1,\"77\"]}",
    };

    nip11_of("{\"name\":\"r\",\"software\":\"git+https://github.com/hoytech/strfry.git\","
             "\"version\":\"1.0.4\",\"supported_nips\":[1,2,4,9,11,22,28,40,70,77],"
             "\"negentropy\":1}",
             &n);
    CHECK(n.present);
    CHECK(n.software && strcmp(n.software, "git+https://github.com/hoytech/strfry.git") == 0);
    CHECK(n.version && strcmp(n.version, "1.0.4") == 0);
    CHECK(n.has_supported_nips && n.n_supported_nips == 10);
    CHECK(caps_nip11_lists(&n, 77));
    CHECK(!caps_nip11_lists(&n, 3));
    CHECK(n.raw != NULL);

    /* Fields simply absent are fine: present, with nothing in them. */
    nip11_of("{\"name\":\"minimal\"}", &n);
    CHECK(n.present && n.software == NULL && n.version == NULL && !n.has_supported_nips);
    CHECK(!caps_nip11_lists(&n, 77));

    for (size_t i = 0; i < sizeof no_nip11 / sizeof no_nip11[0]; i++) {
        nip11_of(no_nip11[i], &n);
        CHECK_MSG(!n.present, "\"%s\" should be no NIP-11", no_nip11[i]);
        CHECK_MSG(n.reason[0] != '\0', "\"%s\": a reason", no_nip11[i]);
        CHECK(n.software == NULL && n.raw == NULL);
    }
    nip11_of("{\"name\":\"x\",\"software\":12345}", &n);
    CHECK_MSG(strstr(n.reason, "software") != NULL, "%s", n.reason);

    caps_nip11_from_relay(NULL, "cannot connect", &n);
    CHECK(!n.present && strstr(n.reason, "cannot connect") != NULL);
    caps_nip11_clear(&n);
}

/* ---- recheck policy ------------------------------------------------------------------ */

static void test_recheck(void)
{
    struct caps_result c = {0};
    struct caps_nip11 same = {0}, newer = {0}, none = {0};
    const int64_t t0 = 1700000000;

    c.checked_at = t0;
    c.nip11.present = 1;
    c.nip11.software = xstrdup("strfry");
    c.nip11.version = xstrdup("1.0.0");
    same.present = newer.present = 1;
    same.software = xstrdup("strfry");
    same.version = xstrdup("1.0.0");
    newer.software = xstrdup("strfry");
    newer.version = xstrdup("1.0.1");
    snprintf(none.reason, sizeof none.reason, "HTTP status 404");

    CHECK(caps_recheck_reason(NULL, NULL, t0, 7, 0) == CAPS_CHECK_NEW);
    CHECK(caps_recheck_reason(NULL, NULL, t0, 7, 1) == CAPS_CHECK_FORCED);
    CHECK(caps_recheck_reason(&c, NULL, t0, 7, 1) == CAPS_CHECK_FORCED);
    CHECK(caps_recheck_reason(&c, NULL, t0, 7, 0) == CAPS_FROM_CACHE);
    CHECK(caps_recheck_reason(&c, NULL, t0 + 7 * DAY - 1, 7, 0) == CAPS_FROM_CACHE);
    CHECK(caps_recheck_reason(&c, NULL, t0 + 7 * DAY, 7, 0) == CAPS_CHECK_EXPIRED);
    CHECK(caps_recheck_reason(&c, NULL, t0 + 1 * DAY, 1, 0) == CAPS_CHECK_EXPIRED);
    CHECK(caps_recheck_reason(&c, NULL, t0, 0, 0) == CAPS_CHECK_EXPIRED);
    /* A clock that went back does not keep an answer forever. */
    CHECK(caps_recheck_reason(&c, NULL, t0 - 10, 7, 0) == CAPS_CHECK_EXPIRED);
    CHECK(caps_recheck_reason(&c, &same, t0 + DAY, 7, 0) == CAPS_FROM_CACHE);
    CHECK(caps_recheck_reason(&c, &newer, t0 + DAY, 7, 0) == CAPS_CHECK_NIP11_CHANGED);
    CHECK(caps_recheck_reason(&c, &none, t0 + DAY, 7, 0) == CAPS_CHECK_NIP11_CHANGED);
    free(newer.software);
    newer.software = xstrdup("khatru");
    free(newer.version);
    newer.version = xstrdup("1.0.0");
    CHECK(caps_recheck_reason(&c, &newer, t0 + DAY, 7, 0) == CAPS_CHECK_NIP11_CHANGED);
    /* No NIP-11 then, none now: nothing changed. */
    caps_nip11_clear(&c.nip11);
    CHECK(caps_recheck_reason(&c, &none, t0 + DAY, 7, 0) == CAPS_FROM_CACHE);
    CHECK(caps_recheck_reason(&c, &same, t0 + DAY, 7, 0) == CAPS_CHECK_NIP11_CHANGED);

    /*
     * Silence is no verdict to keep for a week: an hour (CAPS_SILENCE_RECHECK_S),
     * whatever the wording (this version's, or the probe's and a sync job's
     * from older versions); an answer the relay gave is kept recheck_days.
     */
    {
        static const char *const silences[] = {
            "no reply to NEG-OPEN within 5 s",
            "timeout",
            "no answer on NEG-OPEN (no reply within 10 s)",
        };
        struct caps_result q = {0};

        q.checked_at = t0;
        q.verdict = CAPS_UNSUPPORTED;
        for (size_t i = 0; i < sizeof silences / sizeof silences[0]; i++) {
            snprintf(q.reason, sizeof q.reason, "%s", silences[i]);
            CHECK_MSG(caps_recheck_reason(&q, NULL, t0 + CAPS_SILENCE_RECHECK_S - 1, 7, 0) ==
                          CAPS_FROM_CACHE,
                      "%s", silences[i]);
            CHECK_MSG(caps_recheck_reason(&q, NULL, t0 + CAPS_SILENCE_RECHECK_S, 7, 0) ==
                          CAPS_CHECK_EXPIRED,
                      "%s", silences[i]);
        }
        snprintf(q.reason, sizeof q.reason,
                 "the relay answered NEG-OPEN with NOTICE \"ERROR: bad msg: negentropy "
                 "disabled\"");
        CHECK(caps_recheck_reason(&q, NULL, t0 + CAPS_SILENCE_RECHECK_S, 7, 0) == CAPS_FROM_CACHE);
        CHECK(caps_recheck_reason(&q, NULL, t0 + 6 * DAY, 7, 0) == CAPS_FROM_CACHE);
        /* The relay answered "timeout" itself, in a NOTICE: an answer. */
        snprintf(q.reason, sizeof q.reason, "the relay answered NEG-OPEN with NOTICE \"timeout\"");
        CHECK(caps_recheck_reason(&q, NULL, t0 + CAPS_SILENCE_RECHECK_S, 7, 0) == CAPS_FROM_CACHE);
        /* recheck_days 0 still means never reuse. */
        snprintf(q.reason, sizeof q.reason, "timeout");
        CHECK(caps_recheck_reason(&q, NULL, t0, 0, 0) == CAPS_CHECK_EXPIRED);
        /* A relay that answered NEG-OPEN is not short-lived, whatever its reason says. */
        q.verdict = CAPS_SUPPORTED;
        CHECK(caps_recheck_reason(&q, NULL, t0 + CAPS_SILENCE_RECHECK_S, 7, 0) == CAPS_FROM_CACHE);
    }

    caps_result_clear(&c);
    caps_nip11_clear(&same);
    caps_nip11_clear(&newer);
}

/* ---- the cache table -------------------------------------------------------------------- */

static char tmpdir[] = "/tmp/test-caps.XXXXXX";

static struct store *open_test_cache(const char *name)
{
    char path[256], err[STORE_ERRLEN];
    struct store *st;

    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    st = store_open(path, err, sizeof err);
    CHECK_MSG(st != NULL, "%s", err);
    return st;
}

static void test_cache_table(void)
{
    char err[CAPS_ERRLEN];
    struct store *c = open_test_cache("table.db");
    struct caps_result r = {0}, got = {0};

    if (c == NULL)
        return;
    CHECK(caps_cache_get(c, "wss://nothing.example", &got, err, sizeof err) == 0);

    r.url = xstrdup("wss://relay.example");
    r.verdict = CAPS_SUPPORTED;
    snprintf(r.reason, sizeof r.reason, "NEG-MSG");
    r.checked_at = 1700000000;
    r.latency_ms = 42;
    nip11_of("{\"software\":\"strfry\",\"version\":\"1.0.4\",\"supported_nips\":[1,11,77]}",
             &r.nip11);
    CHECK(caps_cache_put(c, &r, err, sizeof err) == 0);
    CHECK(caps_cache_get(c, "wss://relay.example", &got, err, sizeof err) == 1);
    CHECK(got.cached && got.source == CAPS_FROM_CACHE);
    CHECK(got.verdict == CAPS_SUPPORTED && strcmp(got.reason, "NEG-MSG") == 0);
    CHECK(got.checked_at == 1700000000 && got.latency_ms == 42);
    CHECK(got.nip11.present && strcmp(got.nip11.software, "strfry") == 0 &&
          strcmp(got.nip11.version, "1.0.4") == 0);
    CHECK(got.nip11.n_supported_nips == 3 && caps_nip11_lists(&got.nip11, 77));

    /* An unreachable relay never overwrites a real answer. */
    r.verdict = CAPS_UNREACHABLE;
    CHECK(caps_cache_put(c, &r, err, sizeof err) == -1);
    CHECK(caps_cache_get(c, "wss://relay.example", &got, err, sizeof err) == 1);
    CHECK(got.verdict == CAPS_SUPPORTED);

    /* No NIP-11 round-trips as no NIP-11, latency unknown as -1. */
    caps_nip11_clear(&r.nip11);
    r.verdict = CAPS_UNSUPPORTED;
    snprintf(r.reason, sizeof r.reason, "timeout");
    r.latency_ms = -1;
    CHECK(caps_cache_put(c, &r, err, sizeof err) == 0);
    CHECK(caps_cache_get(c, "wss://relay.example", &got, err, sizeof err) == 1);
    CHECK(got.verdict == CAPS_UNSUPPORTED && strcmp(got.reason, "timeout") == 0);
    CHECK(!got.nip11.present && got.nip11.software == NULL && got.latency_ms == -1);

    /* A sync that met a refusal marks the relay at once, keeping its NIP-11 facts. */
    nip11_of("{\"software\":\"strfry\",\"version\":\"1.0.4\",\"supported_nips\":[77]}", &r.nip11);
    r.verdict = CAPS_SUPPORTED;
    CHECK(caps_cache_put(c, &r, err, sizeof err) == 0);
    CHECK(caps_mark_unsupported(c, "wss://relay.example", "ERROR: bad msg: negentropy disabled",
                                1700000500, err, sizeof err) == 0);
    CHECK(caps_cache_get(c, "wss://relay.example", &got, err, sizeof err) == 1);
    CHECK(got.verdict == CAPS_UNSUPPORTED && got.checked_at == 1700000500);
    CHECK(strcmp(got.reason, "ERROR: bad msg: negentropy disabled") == 0);
    CHECK(got.nip11.present && strcmp(got.nip11.software, "strfry") == 0);
    /* A sync job's fallback reason is kept as the probe words the same answer. */
    CHECK(caps_mark_unsupported(c, "wss://relay.example",
                                "no NIP-77: the relay answered NEG-OPEN with NOTICE \"x\"",
                                1700000550, err, sizeof err) == 0);
    CHECK(caps_cache_get(c, "wss://relay.example", &got, err, sizeof err) == 1);
    CHECK_MSG(strcmp(got.reason, "the relay answered NEG-OPEN with NOTICE \"x\"") == 0, "%s",
              got.reason);
    CHECK(caps_mark_unsupported(c, "wss://new.example", "NEG-ERR", 1700000600, err, sizeof err) ==
          0);
    CHECK(caps_cache_get(c, "wss://new.example", &got, err, sizeof err) == 1);
    CHECK(got.verdict == CAPS_UNSUPPORTED && !got.nip11.present);

    caps_result_clear(&r);
    caps_result_clear(&got);
    store_close(c);

    /* A file that is not a migrated negsync database is refused with a reason. */
    {
        char path[256];
        FILE *f;
        snprintf(path, sizeof path, "%s/empty.db", tmpdir);
        f = fopen(path, "w");
        CHECK(f != NULL);
        if (f != NULL)
            fclose(f);
        /* The cache opens the database through the store, which creates the schema. */
        struct caps_result none = {0};
        c = store_open(path, err, sizeof err);
        CHECK_MSG(c != NULL, "%s", err);
        CHECK(c != NULL && caps_cache_get(c, "wss://relay.example", &none, err, sizeof err) == 0);
        caps_result_clear(&none);
        store_close(c);
    }
}

/* ---- caps_probe against the test relay, with an injected clock --------------------------- */

struct test_relay {
    pid_t pid;
    int port;
    char url[64];
};

/* Starts tests/negsync-testrelay with args; waits (deadline 20 s) for its port. */
static int relay_start(struct test_relay *tr, const char *const *args)
{
    const char *builddir = getenv("top_builddir");
    char bin[1024], line[128];
    const char *argv[32];
    int fds[2], n = 0;
    size_t len = 0;
    time_t deadline = time(NULL) + 20;

    snprintf(bin, sizeof bin, "%s/tests/negsync-testrelay", builddir != NULL ? builddir : ".");
    if (access(bin, X_OK) != 0)
        return -1;
    argv[n++] = bin;
    argv[n++] = "--port";
    argv[n++] = "0";
    for (; args != NULL && *args != NULL && n < 30; args++)
        argv[n++] = *args;
    argv[n] = NULL;
    if (pipe(fds) != 0)
        return -1;
    tr->pid = fork();
    if (tr->pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(fds[1], 1);
        dup2(null, 2);
        close(fds[0]);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    while (len < sizeof line - 1 && memchr(line, '\n', len) == NULL) {
        struct pollfd p = {fds[0], POLLIN, 0};
        ssize_t got;
        if (time(NULL) > deadline || poll(&p, 1, 1000) < 0)
            break;
        if (!(p.revents & (POLLIN | POLLHUP)))
            continue;
        got = read(fds[0], line + len, sizeof line - 1 - len);
        if (got <= 0)
            break;
        len += (size_t)got;
    }
    close(fds[0]);
    line[len] = '\0';
    if (sscanf(line, "listening on 127.0.0.1:%d", &tr->port) != 1) {
        kill(tr->pid, SIGKILL);
        waitpid(tr->pid, NULL, 0);
        fprintf(stderr, "test relay did not start: \"%s\"\n", line);
        return -1;
    }
    snprintf(tr->url, sizeof tr->url, "ws://127.0.0.1:%d", tr->port);
    return 0;
}

static void relay_stop(struct test_relay *tr)
{
    int status;

    kill(tr->pid, SIGTERM);
    waitpid(tr->pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

struct fake_clock {
    int64_t now;
};

static int64_t fake_now(void *arg)
{
    return ((struct fake_clock *)arg)->now;
}

static void quiet_log(void *arg, const char *url, const char *line)
{
    (void)arg;
    (void)url;
    (void)line;
}

static int probe(struct store *c, const char *url, struct caps_opts *o, struct caps_result *r)
{
    char err[CAPS_ERRLEN] = "";
    int rc = caps_probe(c, url, o, r, err, sizeof err);
    CHECK_MSG(rc == 0, "caps_probe %s: %s", url, err);
    return rc;
}

static void test_probe_cache(void)
{
    static const char *const v1[] = {"--version", "1.0", NULL};
    struct test_relay tr;
    struct store *c;
    struct fake_clock clock = {1700000000};
    struct caps_opts o = caps_opts_default();
    struct caps_result r = {0}, got = {0};
    char err[CAPS_ERRLEN], upper[96];
    const int64_t t0 = clock.now;

    if (relay_start(&tr, v1) < 0) {
        printf("test-caps: no test relay (set top_builddir); skipping the probe tests\n");
        return;
    }
    c = open_test_cache("probe.db");
    o.timeout_ms = 5000;
    o.recheck_days = 7;
    o.now = fake_now;
    o.now_arg = &clock;
    o.relay.log = quiet_log;

    /* Nothing cached: the handshake decides, the answer is stored at the clock's time. */
    probe(c, tr.url, &o, &r);
    CHECK(!r.cached && r.source == CAPS_CHECK_NEW);
    CHECK(r.verdict == CAPS_SUPPORTED && strcmp(r.reason, "NEG-MSG") == 0);
    CHECK(r.checked_at == t0 && r.latency_ms >= 0);
    CHECK(r.nip11.present && strcmp(r.nip11.version, "1.0") == 0);
    CHECK(caps_cache_get(c, tr.url, &got, err, sizeof err) == 1 && got.checked_at == t0);

    /* Six days later: reused. The URL is normalized for the cache key. */
    clock.now = t0 + 6 * DAY;
    snprintf(upper, sizeof upper, "WS://127.0.0.1:%d/", tr.port);
    probe(c, upper, &o, &r);
    CHECK(r.cached && r.source == CAPS_FROM_CACHE && r.checked_at == t0);
    CHECK(strcmp(r.url, tr.url) == 0);
    CHECK(r.verdict == CAPS_SUPPORTED);

    /* Seven days after the check: expired, checked again, re-stamped. */
    clock.now = t0 + 7 * DAY;
    probe(c, tr.url, &o, &r);
    CHECK(!r.cached && r.source == CAPS_CHECK_EXPIRED && r.checked_at == t0 + 7 * DAY);
    CHECK(caps_cache_get(c, tr.url, &got, err, sizeof err) == 1 && got.checked_at == t0 + 7 * DAY);

    /* Forced: checked although fresh. */
    clock.now += 60;
    o.force = 1;
    probe(c, tr.url, &o, &r);
    CHECK(!r.cached && r.source == CAPS_CHECK_FORCED && r.checked_at == clock.now);
    o.force = 0;

    /* The cache says version 0.9, the relay now says 1.0: an upgrade, checked again. */
    caps_cache_get(c, tr.url, &got, err, sizeof err);
    free(got.nip11.version);
    got.nip11.version = xstrdup("0.9");
    got.verdict = CAPS_UNSUPPORTED;
    snprintf(got.reason, sizeof got.reason, "ERROR: bad msg: negentropy disabled");
    CHECK(caps_cache_put(c, &got, err, sizeof err) == 0);
    clock.now += 60;
    probe(c, tr.url, &o, &r);
    CHECK(!r.cached && r.source == CAPS_CHECK_NIP11_CHANGED);
    CHECK(r.verdict == CAPS_SUPPORTED);
    CHECK(caps_cache_get(c, tr.url, &got, err, sizeof err) == 1 &&
          strcmp(got.nip11.version, "1.0") == 0 && got.verdict == CAPS_SUPPORTED);

    /* Without the NIP-11 check, a fresh answer is reused as it is. */
    got.nip11.version[0] = '7';
    CHECK(caps_cache_put(c, &got, err, sizeof err) == 0);
    o.check_nip11 = 0;
    probe(c, tr.url, &o, &r);
    CHECK(r.cached);
    o.check_nip11 = 1;

    relay_stop(&tr);

    /* Down, cache fresh: the cached answer stands (NIP-11 could not be asked). */
    probe(c, tr.url, &o, &r);
    CHECK(r.cached && r.verdict == CAPS_SUPPORTED);

    /* Down, forced: unreachable, and the cached answer is untouched. */
    o.force = 1;
    probe(c, tr.url, &o, &r);
    CHECK(!r.cached && r.verdict == CAPS_UNREACHABLE && r.reason[0] != '\0');
    CHECK(r.latency_ms == -1);
    CHECK(caps_cache_get(c, tr.url, &got, err, sizeof err) == 1 && got.verdict == CAPS_SUPPORTED);
    o.force = 0;

    /* Down, expired: unreachable, still not cached as anything. */
    clock.now += 30 * DAY;
    probe(c, tr.url, &o, &r);
    CHECK(r.verdict == CAPS_UNREACHABLE && r.source == CAPS_CHECK_EXPIRED);
    CHECK(caps_cache_get(c, tr.url, &got, err, sizeof err) == 1 && got.verdict == CAPS_SUPPORTED);

    /* Never seen and down: nothing cached at all. */
    probe(c, "ws://127.0.0.1:1", &o, &r);
    CHECK(r.verdict == CAPS_UNREACHABLE);
    CHECK(caps_cache_get(c, "ws://127.0.0.1:1", &got, err, sizeof err) == 0);

    /* A bad URL is the caller's error, not a relay's verdict. */
    CHECK(caps_probe(c, "http://127.0.0.1:1", &o, &r, err, sizeof err) == -1);

    caps_result_clear(&r);
    caps_result_clear(&got);
    store_close(c);
}

/* Connects to url; NULL (and a failed check) if it cannot. */
static struct relay *connect_relay(const char *url)
{
    char err[RELAY_ERRLEN];
    struct relay_opts ro = relay_opts_default();
    struct relay *r;

    ro.log = quiet_log;
    r = relay_new(url, &ro, err, sizeof err);
    CHECK_MSG(r != NULL, "%s", err);
    if (r != NULL && relay_connect(r, 5000, err, sizeof err) < 0) {
        CHECK_MSG(0, "connect %s: %s", url, err);
        relay_free(r);
        r = NULL;
    }
    return r;
}

/* Sends a REQ through a guard and waits for its EOSE; returns the guard's retries, -1 if none came. */
static int guarded_req(const char *url, int within_timeout, int timeout_ms, int64_t *took_ms)
{
    static const char req[] = "[\"REQ\",\"guard-test\",{\"kinds\":[1],\"limit\":1}]";
    struct caps_guard g = {0};
    struct relay *r = connect_relay(url);
    char err[RELAY_ERRLEN];
    struct timespec t0, t1;
    int rc, got = 0;

    if (r == NULL)
        return -1;
    g.within_timeout = within_timeout;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK(caps_guard_send(&g, r, req, sizeof req - 1, err, sizeof err) == 0);
    for (;;) {
        struct relay_msg *m = NULL;
        rc = caps_guard_recv(&g, r, timeout_ms, &m, err, sizeof err);
        if (rc < 0)
            break;
        got = m->type == RELAY_MSG_EOSE;
        relay_msg_free(m);
        if (got)
            break;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    *took_ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    rc = got ? g.retries : -1;
    caps_guard_clear(&g);
    relay_free(r);
    return rc;
}

/*
 * Relays with quirks, through caps_probe and the guard: one that loses the
 * first message of every connection (nostream before its Redis check), one
 * that also sends AUTH on connect (n0str), one that is silent besides, one
 * that is just slow, and one that is well behaved.
 */
static void test_probe_quirks(void)
{
    static const char *const lossy[] = {"--ignore-first-message", NULL};
    static const char *const lossy_auth[] = {"--ignore-first-message", "--auth-challenge", NULL};
    static const char *const lossy_silent[] = {"--ignore-first-message", "--no-nip77=silent", NULL};
    static const char *const slow[] = {"--delay-ms", "900", NULL};
    struct test_relay tr;
    struct store *c;
    struct fake_clock clock = {1700000000};
    struct caps_opts o = caps_opts_default();
    struct caps_result r = {0}, got = {0};
    char err[CAPS_ERRLEN];
    int64_t took;

    if (relay_start(&tr, lossy) < 0) {
        printf("test-caps: no test relay (set top_builddir); skipping the quirk tests\n");
        return;
    }
    c = open_test_cache("quirks.db");
    o.timeout_ms = 3000;
    o.now = fake_now;
    o.now_arg = &clock;
    o.relay.log = quiet_log;

    /* Lost, sent again on a fresh connection: supported, and cached so. */
    probe(c, tr.url, &o, &r);
    CHECK_MSG(r.verdict == CAPS_SUPPORTED, "%s", r.reason);
    CHECK(r.first_message_lost && !r.auth_challenge);
    /* The latency is the second NEG-OPEN's, not the wait for the lost one. */
    CHECK_MSG(r.latency_ms >= 0 && r.latency_ms < caps_first_wait_ms(3000), "%lld",
              (long long)r.latency_ms);
    CHECK(caps_cache_get(c, tr.url, &got, err, sizeof err) == 1 && got.verdict == CAPS_SUPPORTED);
    /* The guard alone, the sync's way (the message sent again gets a whole wait). */
    CHECK(guarded_req(tr.url, 0, 3000, &took) == 1);
    relay_stop(&tr);

    /* An AUTH challenge on connect is no reply: the lost message is still sent again. */
    if (relay_start(&tr, lossy_auth) == 0) {
        o.force = 1;
        probe(c, tr.url, &o, &r);
        CHECK_MSG(r.verdict == CAPS_SUPPORTED, "%s", r.reason);
        CHECK(r.first_message_lost && r.auth_challenge);
        o.force = 0;
        relay_stop(&tr);
    }

    /*
     * Lost and then silent: classified within the budget (the retry comes
     * out of it), cached as unsupported for an hour, not for recheck_days.
     */
    if (relay_start(&tr, lossy_silent) == 0) {
        o.force = 1;
        o.timeout_ms = 1500;
        probe(c, tr.url, &o, &r);
        CHECK(r.verdict == CAPS_UNSUPPORTED && r.first_message_lost);
        CHECK_MSG(strcmp(r.reason, "no reply to NEG-OPEN within 1.5 s") == 0, "%s", r.reason);
        CHECK_MSG(r.latency_ms >= 1500 && r.latency_ms < 1500 + 1000, "%lld",
                  (long long)r.latency_ms);
        o.force = 0;
        o.timeout_ms = 3000;
        clock.now += CAPS_SILENCE_RECHECK_S - 1;
        probe(c, tr.url, &o, &r);
        CHECK(r.cached && r.verdict == CAPS_UNSUPPORTED);
        clock.now += 1;
        probe(c, tr.url, &o, &r);
        CHECK(!r.cached && r.source == CAPS_CHECK_EXPIRED);
        relay_stop(&tr);
    }

    /*
     * Slow, not lossy (900 ms, past the first wait of 2000 / 3): a reconnect,
     * and the answer to the message sent again, not a failure.
     */
    if (relay_start(&tr, slow) == 0) {
        CHECK(guarded_req(tr.url, 0, 2000, &took) == 1);
        relay_stop(&tr);
    }

    /* Well behaved: no retry, no delay. */
    if (relay_start(&tr, NULL) == 0) {
        CHECK(guarded_req(tr.url, 0, 3000, &took) == 0);
        CHECK_MSG(took < caps_first_wait_ms(3000), "%lld ms", (long long)took);
        relay_stop(&tr);
    }

    caps_result_clear(&r);
    caps_result_clear(&got);
    store_close(c);
}

/* ---- helper for the shell tests -------------------------------------------------------- */

static int json_field(const char *key)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int status = 0;

    while ((len = getline(&line, &cap, stdin)) > 0) {
        json_error_t jerr;
        json_t *o = json_loadb(line, (size_t)len, 0, &jerr);
        json_t *v = json_is_object(o) ? json_object_get(o, key) : NULL;

        if (v == NULL) {
            fprintf(stderr, "json-field: no \"%s\" in %s", key, line);
            status = 1;
        } else if (json_is_string(v)) {
            puts(json_string_value(v));
        } else {
            char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
            puts(s);
            free(s);
        }
        json_decref(o);
    }
    free(line);
    return status;
}

int main(int argc, char **argv)
{
    char cmd[64];

    if (argc == 3 && strcmp(argv[1], "json-field") == 0)
        return json_field(argv[2]);
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    test_notices();
    test_quote();
    test_reasons();
    test_neg_open_message();
    test_handshake();
    test_nip11();
    test_recheck();
    test_cache_table();
    test_probe_cache();
    test_probe_quirks();
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "test-caps: could not remove %s\n", tmpdir);
    return test_summary("test-caps");
}
