/*
 * caps: NIP-77 capability detection and its cache (see caps.h for the
 * policy).
 *
 * The handshake is written against struct caps_transport so the tests can
 * play any relay's behaviour message by message; caps_probe plugs a real
 * struct relay into it. Every wait is a deadline on the monotonic clock, so a
 * relay that trickles harmless notices cannot stretch a probe past its
 * timeout.
 *
 * The cache is the relay_caps table of the caller's database: every
 * function here takes the caller's connection (struct store, one per
 * thread), and the SQL is store-meta.c's (store_caps_get / store_caps_put).
 */
#include "config.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>

#include "caps.h"
#include "neg.h"
#include "net.h"
#include "relay.h"
#include "store.h"
#include "util.h"

#define CAPS_DEFAULT_TIMEOUT_MS 5000
#define SECONDS_PER_DAY         86400
#define LOG_TRUNCATE            160

static int64_t wall_now(const struct caps_opts *o)
{
    if (o->now != NULL)
        return o->now(o->now_arg);
    return (int64_t)time(NULL);
}

/* Compares two optional strings: NULL equals only NULL. */
static int same_text(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

static char *dup_or_null(const char *s)
{
    return s != NULL ? xstrdup(s) : NULL;
}

const char *caps_verdict_name(enum caps_verdict v)
{
    switch (v) {
    case CAPS_SUPPORTED: return "supported";
    case CAPS_UNSUPPORTED: return "unsupported";
    case CAPS_UNREACHABLE: return "unreachable";
    }
    return "?";
}

const char *caps_source_name(enum caps_source s)
{
    switch (s) {
    case CAPS_FROM_CACHE: return "cache";
    case CAPS_CHECK_NEW: return "new";
    case CAPS_CHECK_EXPIRED: return "expired";
    case CAPS_CHECK_NIP11_CHANGED: return "nip11-changed";
    case CAPS_CHECK_FORCED: return "forced";
    }
    return "?";
}

/* ---- NIP-11 ------------------------------------------------------------------ */

void caps_nip11_clear(struct caps_nip11 *n)
{
    free(n->software);
    free(n->version);
    free(n->supported_nips);
    free(n->raw);
    memset(n, 0, sizeof *n);
}

/*
 * relay.c ignores wrongly typed fields one by one, which is right for the
 * limits a sync reads; but a document whose software, version or
 * supported_nips has the wrong type is one caps cannot compare or trust, so
 * it counts as no NIP-11 at all. Returns NULL when the three fields are
 * fine, else what is wrong.
 */
static const char *nip11_type_problem(const char *raw)
{
    json_t *doc, *v;
    const char *problem = NULL;
    size_t i;

    doc = json_loads(raw, JSON_DECODE_ANY, NULL);
    if (doc == NULL || !json_is_object(doc)) {
        json_decref(doc);
        return "not a JSON object";
    }
    if ((v = json_object_get(doc, "software")) != NULL && !json_is_string(v))
        problem = "software is not a string";
    else if ((v = json_object_get(doc, "version")) != NULL && !json_is_string(v))
        problem = "version is not a string";
    else if ((v = json_object_get(doc, "supported_nips")) != NULL) {
        if (!json_is_array(v))
            problem = "supported_nips is not an array";
        for (i = 0; problem == NULL && i < json_array_size(v); i++) {
            if (!json_is_integer(json_array_get(v, i)))
                problem = "supported_nips holds a non-integer";
        }
    }
    json_decref(doc);
    return problem;
}

void caps_nip11_from_relay(const struct relay_nip11 *n, const char *fetch_err,
                           struct caps_nip11 *out)
{
    const char *problem;

    caps_nip11_clear(out);
    if (n == NULL) {
        snprintf(out->reason, sizeof out->reason, "not fetched: %s",
                 fetch_err != NULL ? fetch_err : "unknown error");
        return;
    }
    if (!n->present) {
        snprintf(out->reason, sizeof out->reason, "%s", n->reason[0] ? n->reason : "absent");
        return;
    }
    if (n->raw == NULL) {
        snprintf(out->reason, sizeof out->reason, "no document");
        return;
    }
    if ((problem = nip11_type_problem(n->raw)) != NULL) {
        snprintf(out->reason, sizeof out->reason, "wrong types: %s", problem);
        return;
    }
    out->present = 1;
    out->software = dup_or_null(n->software);
    out->version = dup_or_null(n->version);
    out->has_supported_nips = n->has_supported_nips;
    if (n->n_supported_nips > 0) {
        out->n_supported_nips = n->n_supported_nips;
        out->supported_nips = xreallocarray(NULL, n->n_supported_nips, sizeof(int64_t));
        memcpy(out->supported_nips, n->supported_nips, n->n_supported_nips * sizeof(int64_t));
    }
    out->raw = xstrdup(n->raw);
}

int caps_nip11_lists(const struct caps_nip11 *n, int nip)
{
    if (!n->present)
        return 0;
    for (size_t i = 0; i < n->n_supported_nips; i++) {
        if (n->supported_nips[i] == nip)
            return 1;
    }
    return 0;
}

void caps_result_clear(struct caps_result *r)
{
    free(r->url);
    caps_nip11_clear(&r->nip11);
    memset(r, 0, sizeof *r);
}

/* ---- classification ---------------------------------------------------------- */

/* Case-insensitive substring search. */
static int contains_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);

    for (; *hay != '\0'; hay++) {
        if (strncasecmp(hay, needle, n) == 0)
            return 1;
    }
    return 0;
}

/* "NEG" as a word of its own (or the start of NEG-OPEN, NEG-MSG...), upper case as relays write it. */
static int names_neg(const char *text)
{
    for (const char *p = strstr(text, "NEG"); p != NULL; p = strstr(p + 1, "NEG")) {
        int before_ok = p == text || !isalnum((unsigned char)p[-1]);
        int after_ok = !isalnum((unsigned char)p[3]);
        if (before_ok && after_ok)
            return 1;
    }
    return 0;
}

/* ---- reasons ---------------------------------------------------------------- */

/* Bytes of text that fit before a cut of at most max bytes, at a word boundary if one is near. */
static size_t cut_point(const char *text, size_t max)
{
    size_t cut = max;

    for (size_t i = max; i > max / 2; i--) {
        if (isspace((unsigned char)text[i])) {
            /* Before the space, and before the punctuation that ends a word's clause. */
            cut = i;
            while (cut > 0 && (isspace((unsigned char)text[cut - 1]) || text[cut - 1] == ',' ||
                               text[cut - 1] == ';' || text[cut - 1] == ':'))
                cut--;
            return cut;
        }
    }
    /* One long word: cut it, but not inside a UTF-8 character. */
    while (cut > 0 && ((unsigned char)text[cut] & 0xc0) == 0x80)
        cut--;
    return cut;
}

/* caps_quote, with or without the quotes. */
static size_t put_text(char *out, size_t outlen, const char *text, int quoted)
{
    static const char ellipsis[] = "\xe2\x80\xa6"; /* U+2026 */
    size_t len = text != NULL ? strlen(text) : 0;
    size_t marks = quoted ? 2 : 0, room, n, pos = 0;

    if (outlen == 0)
        return 0;
    if (outlen < marks + 1) {
        out[0] = '\0';
        return 0;
    }
    room = outlen - marks - 1;
    if (room > CAPS_QUOTE_MAX)
        room = CAPS_QUOTE_MAX;
    n = len;
    if (len > room) {
        room = room > sizeof ellipsis - 1 ? room - (sizeof ellipsis - 1) : 0;
        n = cut_point(text, room);
    }
    if (quoted)
        out[pos++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)text[i];
        out[pos++] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
    }
    if (n < len && room > 0) {
        memcpy(out + pos, ellipsis, sizeof ellipsis - 1);
        pos += sizeof ellipsis - 1;
    }
    if (quoted)
        out[pos++] = '"';
    out[pos] = '\0';
    return pos;
}

size_t caps_quote(char *out, size_t outlen, const char *text)
{
    return put_text(out, outlen, text, 1);
}

/* "5 s", "0.5 s". */
static void format_seconds(char *out, size_t outlen, int ms)
{
    if (ms % 1000 == 0)
        snprintf(out, outlen, "%d s", ms / 1000);
    else
        snprintf(out, outlen, "%g s", ms / 1000.0);
}

void caps_neg_open_reason(char *out, size_t outlen, const struct relay_msg *m, int rc,
                          const char *detail, int timeout_ms)
{
    char q[CAPS_QUOTE_MAX + 8], secs[32];
    const char *type;

    if (m != NULL) {
        type = m->type == RELAY_MSG_NOTICE    ? "NOTICE"
               : m->type == RELAY_MSG_NEG_ERR ? "NEG-ERR"
               : m->type == RELAY_MSG_CLOSED  ? "CLOSED"
                                              : "an unexpected message";
        if (m->text != NULL && m->text[0] != '\0') {
            caps_quote(q, sizeof q, m->text);
            snprintf(out, outlen, "the relay answered NEG-OPEN with %s %s", type, q);
        } else {
            snprintf(out, outlen, "the relay answered NEG-OPEN with %s with no reason", type);
        }
    } else if (rc == RELAY_ERR_TIMEOUT) {
        format_seconds(secs, sizeof secs, timeout_ms);
        snprintf(out, outlen, "no reply to NEG-OPEN within %s", secs);
    } else if (detail != NULL && detail[0] != '\0' && strcmp(detail, "connection closed") != 0) {
        /* Our own text, but it may carry the peer's close reason: cut, unquoted. */
        put_text(q, sizeof q, detail, 0);
        snprintf(out, outlen, "the relay closed the connection on NEG-OPEN (%s)", q);
    } else {
        snprintf(out, outlen, "the relay closed the connection on NEG-OPEN");
    }
}

#define FALLBACK_PREFIX "no NIP-77: "

void caps_fallback_reason(char *out, size_t outlen, const struct relay_msg *m, int rc,
                          const char *detail, int timeout_ms)
{
    char why[CAPS_REASONLEN];

    caps_neg_open_reason(why, sizeof why, m, rc, detail, timeout_ms);
    snprintf(out, outlen, FALLBACK_PREFIX "%s", why);
}

void caps_result_fallback(const struct caps_result *r, char *out, size_t outlen)
{
    snprintf(out, outlen, FALLBACK_PREFIX "%s%s", r->reason, r->cached ? " (cached)" : "");
}

/* An unsupported verdict that rests on silence alone: kept briefly (see caps_recheck_reason). */
static int reason_is_silence(const char *reason)
{
    return strncmp(reason, "no reply to NEG-OPEN", 20) == 0 ||
           /* What older versions cached: the probe's and a sync job's wording. */
           strcmp(reason, "timeout") == 0 || strncmp(reason, "no answer on NEG-OPEN", 21) == 0;
}

int caps_notice_is_refusal(const char *text, enum caps_notice_conn conn)
{
    /* Words that say the message kind is unknown, off or unparsed, or name NIP-77. */
    static const char *const kind_words[] = {
        "unrecognized",     "unrecognised",    "unknown cmd",     "unknown command",
        "unknown envelope", "unknown message", "invalid message", "could not parse",
        "failed to parse",  "bad msg",         "bad message",     "disabled",
        "unsupported",      "not supported",   "not implemented", "negentropy",
        "neg-open",
    };
    /* Words any error says: NEG-OPEN's only if nothing else is open on the connection. */
    static const char *const error_words[] = {"error", "invalid", "unknown"};

    if (text == NULL)
        return 0;
    for (size_t i = 0; i < sizeof kind_words / sizeof kind_words[0]; i++) {
        if (contains_ci(text, kind_words[i]))
            return 1;
    }
    if (names_neg(text))
        return 1;
    if (conn == CAPS_NOTICE_SHARED)
        return 0;
    for (size_t i = 0; i < sizeof error_words / sizeof error_words[0]; i++) {
        if (contains_ci(text, error_words[i]))
            return 1;
    }
    return 0;
}

char *caps_neg_open_message(void)
{
    char err[NEG_ERRLEN];
    struct neg_storage *st = neg_storage_new();
    struct neg *n = NULL;
    struct buf msg = {0};
    char *hex, *text;
    json_t *filter, *arr;

    if (neg_storage_seal(st, err, sizeof err) < 0 ||
        (n = neg_new(st, 0, err, sizeof err)) == NULL ||
        neg_initiate(n, &msg, err, sizeof err) < 0) {
        /* An empty set cannot fail to seal or initiate. */
        fprintf(stderr, "caps: cannot build the probe's negentropy message: %s\n", err);
        abort();
    }
    hex = xmalloc(msg.len * 2 + 1);
    hex_encode(msg.data, msg.len, hex);
    /*
     * No "limit": khatru refuses "limit":0 in a NEG-OPEN ("invalid limit 0"),
     * and an ephemeral kind is an empty set on every relay anyway.
     */
    filter = json_pack("{s:[i]}", "kinds", CAPS_PROBE_KIND);
    arr = json_pack("[s, s, o, s]", "NEG-OPEN", CAPS_PROBE_SUBID, filter, hex);
    text = json_dumps(arr, JSON_COMPACT);
    if (text == NULL)
        abort();
    json_decref(arr);
    free(hex);
    buf_free(&msg);
    neg_free(n);
    neg_storage_free(st);
    return text;
}

static void handshake_log(const struct caps_transport *t, const char *fmt, ...)
{
    char line[LOG_TRUNCATE + 64];
    va_list ap;

    if (t->log == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    t->log(t->log_arg, t->url != NULL ? t->url : "", line);
}

static void decide(struct caps_result *out, enum caps_verdict v, const char *reason,
                   int64_t started)
{
    out->verdict = v;
    snprintf(out->reason, sizeof out->reason, "%s", reason);
    out->latency_ms = net_now_ms() - started;
}

/* A send or receive error: what it says about the relay (0), or -1 if nothing. */
static int decide_on_error(struct caps_result *out, int rc, const char *err, int timeout_ms,
                           int64_t started)
{
    char why[CAPS_REASONLEN];

    switch (rc) {
    case RELAY_ERR_TIMEOUT:
    case RELAY_ERR_CLOSED:
    case RELAY_ERR_NOT_CONNECTED:
        caps_neg_open_reason(why, sizeof why, NULL, rc, rc == RELAY_ERR_CLOSED ? err : NULL,
                             timeout_ms);
        decide(out, CAPS_UNSUPPORTED, why, started);
        return 0;
    default:
        /*
         * Unreachable, TLS, or a relay whose message broke our limits
         * (RELAY_ERR_TOO_BIG): no answer about NIP-77 either way, and not
         * one to cache as one.
         */
        out->verdict = CAPS_UNREACHABLE;
        snprintf(out->reason, sizeof out->reason, "%s", err[0] ? err : relay_error_name(rc));
        out->latency_ms = -1;
        return -1;
    }
}

/*
 * One incoming message: 1 if it decided the probe, 0 if the wait goes on.
 * Only messages for our subscription id count, except NOTICE and AUTH, which
 * have none.
 */
static int classify(const struct caps_transport *t, const struct relay_msg *m,
                    struct caps_result *out, int64_t started)
{
    int ours = m->subid != NULL && strcmp(m->subid, CAPS_PROBE_SUBID) == 0;
    char why[CAPS_REASONLEN];

    switch (m->type) {
    case RELAY_MSG_NEG_MSG:
        if (!ours)
            break;
        decide(out, CAPS_SUPPORTED, "NEG-MSG", started);
        return 1;
    case RELAY_MSG_NEG_ERR:
    case RELAY_MSG_CLOSED:
        if (!ours)
            break;
        caps_neg_open_reason(why, sizeof why, m, 0, NULL, 0);
        decide(out, CAPS_UNSUPPORTED, why, started);
        return 1;
    case RELAY_MSG_NOTICE:
        if (caps_notice_is_refusal(m->text, CAPS_NOTICE_NEG_ONLY)) {
            caps_neg_open_reason(why, sizeof why, m, 0, NULL, 0);
            decide(out, CAPS_UNSUPPORTED, why, started);
            return 1;
        }
        handshake_log(t, "probe: ignoring NOTICE \"%.*s\"", LOG_TRUNCATE, m->text);
        return 0;
    case RELAY_MSG_AUTH:
        /* NIP-42: noted for the day negsync authenticates, not answered. */
        out->auth_challenge = 1;
        handshake_log(t, "probe: the relay sent an AUTH challenge (NIP-42); not answered");
        return 0;
    default: break;
    }
    handshake_log(t, "probe: ignoring a message of %zu bytes not about our NEG-OPEN", m->raw_len);
    return 0;
}

int caps_handshake(const struct caps_transport *t, int timeout_ms, struct caps_result *out)
{
    char err[RELAY_ERRLEN] = "";
    char *open = caps_neg_open_message();
    int64_t started = net_now_ms();
    int64_t deadline;
    int rc;

    if (timeout_ms <= 0)
        timeout_ms = CAPS_DEFAULT_TIMEOUT_MS;
    deadline = started + timeout_ms;
    out->latency_ms = -1;
    out->auth_challenge = 0;
    rc = t->send(t->arg, open, strlen(open), err, sizeof err);
    free(open);
    if (rc < 0)
        return decide_on_error(out, rc, err, timeout_ms, started);

    for (;;) {
        struct relay_msg *m = NULL;
        int64_t left = deadline - net_now_ms();
        int decided;

        if (left <= 0)
            return decide_on_error(out, RELAY_ERR_TIMEOUT, "", timeout_ms, started);
        err[0] = '\0';
        rc = t->recv(t->arg, (int)left, &m, err, sizeof err);
        if (rc < 0)
            return decide_on_error(out, rc, err, timeout_ms, started);
        decided = classify(t, m, out, started);
        relay_msg_free(m);
        if (decided)
            break;
    }
    if (out->verdict == CAPS_SUPPORTED) {
        static const char close_msg[] = "[\"NEG-CLOSE\",\"" CAPS_PROBE_SUBID "\"]";
        /* Politeness only: the verdict stands whatever happens to it. */
        (void)t->send(t->arg, close_msg, sizeof close_msg - 1, err, sizeof err);
    }
    return 0;
}

/* ---- the first message on a connection ---------------------------------------- */

int caps_first_wait_ms(int timeout_ms)
{
    int w = timeout_ms / 3;

    return w < CAPS_FIRST_WAIT_MAX_MS ? w : CAPS_FIRST_WAIT_MAX_MS;
}

static void guard_log(const struct caps_guard *g, struct relay *r, const char *fmt, ...)
{
    char line[256];
    va_list ap;

    if (g->log == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    g->log(g->log_arg, relay_url(r), line);
}

static void guard_forget(struct caps_guard *g)
{
    free(g->first);
    g->first = NULL;
    g->first_len = 0;
    g->lost_ms = 0;
}

void caps_guard_clear(struct caps_guard *g)
{
    guard_forget(g);
}

int caps_guard_send(struct caps_guard *g, struct relay *r, const char *text, size_t len, char *err,
                    size_t errlen)
{
    struct relay_counters conn, total;
    int first, rc;

    relay_get_counters(r, &conn, NULL);
    first = relay_is_connected(r) && conn.sent_msgs == 0;
    /* A second message: the first can no longer be replayed on its own. */
    guard_forget(g);
    rc = relay_send(r, text, len, err, errlen);
    if (first && rc == 0) {
        g->first = xmalloc(len + 1);
        memcpy(g->first, text, len);
        g->first[len] = '\0';
        g->first_len = len;
        relay_get_counters(r, NULL, &total);
        g->sent_total = total.sent_msgs;
        g->sent_ms = net_now_ms();
        g->recv_base = conn.recv_msgs;
        g->auths = g->replies = 0;
        g->retried = 0;
    }
    return rc;
}

/*
 * 1 while the first message is all this connection has carried: sent, the
 * only one sent, and nothing received since but AUTH challenges (which
 * relays send on connect, whatever they were sent).
 */
static int guard_pending(const struct caps_guard *g, struct relay *r)
{
    struct relay_counters conn, total;

    if (g->first == NULL || g->retried || g->replies > 0 || !relay_is_connected(r))
        return 0;
    relay_get_counters(r, &conn, &total);
    return conn.sent_msgs == 1 && total.sent_msgs == g->sent_total &&
           conn.recv_msgs - g->recv_base <= g->auths;
}

/* A fresh connection, a pause, the first message again. 0, or a relay error. */
static int guard_retry(struct caps_guard *g, struct relay *r, int connect_ms, char *err,
                       size_t errlen)
{
    struct relay_counters total;
    struct timespec pause = {CAPS_RETRY_PAUSE_MS / 1000, CAPS_RETRY_PAUSE_MS % 1000 * 1000000L};
    int64_t first_ms = g->sent_ms;
    int rc;

    guard_log(g, r,
              "no reply at all to the first message on this connection within %lld ms;"
              " sending it again on a fresh connection after %d ms (a relay may lose what"
              " arrives before it is ready, as nostream does)",
              (long long)(net_now_ms() - g->sent_ms), CAPS_RETRY_PAUSE_MS);
    g->retried = 1;
    g->retries++;
    if ((rc = relay_connect(r, connect_ms, err, errlen)) < 0)
        return rc;
    nanosleep(&pause, NULL);
    if ((rc = relay_send(r, g->first, g->first_len, err, errlen)) < 0)
        return rc;
    relay_get_counters(r, NULL, &total);
    g->sent_total = total.sent_msgs;
    g->sent_ms = net_now_ms();
    g->retry_delay_ms = g->sent_ms - first_ms;
    g->recv_base = 0;
    g->auths = g->replies = 0;
    return 0;
}

int caps_guard_recv(struct caps_guard *g, struct relay *r, int timeout_ms, struct relay_msg **out,
                    char *err, size_t errlen)
{
    int64_t deadline = net_now_ms() + (timeout_ms > 0 ? timeout_ms : 0);

    for (;;) {
        int64_t now = net_now_ms(), until = deadline;
        int armed = guard_pending(g, r), rc;

        if (armed) {
            if (g->lost_ms == 0)
                g->lost_ms = g->sent_ms + caps_first_wait_ms(timeout_ms);
            if (g->lost_ms < until)
                until = g->lost_ms;
        }
        rc = relay_recv(r, until > now ? (int)(until - now) : 0, out, err, errlen);
        if (rc == 0 && g->first != NULL) {
            if ((*out)->type == RELAY_MSG_AUTH)
                g->auths++;
            else
                g->replies++;
        }
        if (rc != RELAY_ERR_TIMEOUT || !armed || until == deadline)
            return rc;
        if (!guard_pending(g, r))
            continue; /* something came after all (a message it could not read): wait on */
        rc = guard_retry(g, r,
                         g->within_timeout
                             ? (int)(deadline - net_now_ms() > 1 ? deadline - net_now_ms() : 1)
                             : 0,
                         err, errlen);
        if (rc == RELAY_ERR_INTERRUPTED)
            return rc;
        if (rc < 0) {
            char why[RELAY_ERRLEN];
            snprintf(why, sizeof why, "%s", err);
            set_error(err, errlen, "no reply, and no fresh connection: %s", why);
            guard_forget(g);
            return RELAY_ERR_TIMEOUT;
        }
        if (!g->within_timeout)
            deadline = g->sent_ms + (timeout_ms > 0 ? timeout_ms : 0);
    }
}

/* ---- cache policy -------------------------------------------------------------- */

enum caps_source caps_recheck_reason(const struct caps_result *cached,
                                     const struct caps_nip11 *nip11_now, int64_t now,
                                     unsigned recheck_days, int force)
{
    int64_t age, life;

    if (force)
        return CAPS_CHECK_FORCED;
    if (cached == NULL)
        return CAPS_CHECK_NEW;
    age = now - cached->checked_at;
    life = (int64_t)recheck_days * SECONDS_PER_DAY;
    if (cached->verdict == CAPS_UNSUPPORTED && reason_is_silence(cached->reason) &&
        life > CAPS_SILENCE_RECHECK_S)
        life = CAPS_SILENCE_RECHECK_S;
    if (life == 0 || age < 0 || age >= life)
        return CAPS_CHECK_EXPIRED;
    if (nip11_now != NULL && (nip11_now->present != cached->nip11.present ||
                              !same_text(nip11_now->software, cached->nip11.software) ||
                              !same_text(nip11_now->version, cached->nip11.version)))
        return CAPS_CHECK_NIP11_CHANGED;
    return CAPS_FROM_CACHE;
}

/* ---- the cache ------------------------------------------------------------------- */

/* The supported_nips column, a JSON array of integers; anything else is treated as absent. */
static void nips_from_json(const char *text, struct caps_nip11 *n)
{
    json_t *arr = text != NULL ? json_loads(text, 0, NULL) : NULL;
    size_t i;

    if (json_is_array(arr)) {
        n->has_supported_nips = 1;
        if (json_array_size(arr) > 0)
            n->supported_nips = xreallocarray(NULL, json_array_size(arr), sizeof(int64_t));
        for (i = 0; i < json_array_size(arr); i++) {
            json_t *v = json_array_get(arr, i);
            if (json_is_integer(v))
                n->supported_nips[n->n_supported_nips++] = json_integer_value(v);
        }
    }
    json_decref(arr);
}

static char *nips_to_json(const struct caps_nip11 *n)
{
    json_t *arr;
    char *text;

    if (!n->present || !n->has_supported_nips)
        return NULL;
    arr = json_array();
    for (size_t i = 0; i < n->n_supported_nips; i++)
        json_array_append_new(arr, json_integer(n->supported_nips[i]));
    text = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    return text;
}

int caps_cache_get(struct store *st, const char *url, struct caps_result *out, char *err,
                   size_t errlen)
{
    struct store_caps row;
    char serr[STORE_ERRLEN];
    int found;

    caps_result_clear(out);
    found = store_caps_get(st, url, &row, serr, sizeof serr);
    if (found < 0) {
        set_error(err, errlen, "%s", serr);
        return -1;
    }
    if (found == 0)
        return 0;
    out->url = xstrdup(url);
    out->verdict = row.supported ? CAPS_SUPPORTED : CAPS_UNSUPPORTED;
    snprintf(out->reason, sizeof out->reason, "%s", row.reason != NULL ? row.reason : "");
    out->checked_at = row.checked_at;
    out->latency_ms = row.latency_ms;
    out->nip11.software = row.nip11_software;
    out->nip11.version = row.nip11_version;
    out->nip11.raw = row.nip11_raw;
    row.nip11_software = row.nip11_version = row.nip11_raw = NULL;
    /* The raw document is kept exactly when there was a usable NIP-11. */
    out->nip11.present = out->nip11.raw != NULL;
    if (out->nip11.present)
        nips_from_json(row.nip11_supported_nips, &out->nip11);
    else
        snprintf(out->nip11.reason, sizeof out->nip11.reason, "none when last checked");
    out->cached = 1;
    out->source = CAPS_FROM_CACHE;
    store_caps_clear(&row);
    return 1;
}

int caps_cache_put(struct store *st, const struct caps_result *r, char *err, size_t errlen)
{
    const struct caps_nip11 *n = &r->nip11;
    struct store_caps row = {0};
    char serr[STORE_ERRLEN];
    char *nips;
    int rc;

    if (r->verdict == CAPS_UNREACHABLE || r->url == NULL) {
        set_error(err, errlen, "capability cache: %s",
                  r->url == NULL ? "no URL" : "an unreachable relay is not cached");
        return -1;
    }
    nips = nips_to_json(n);
    row.supported = r->verdict == CAPS_SUPPORTED;
    row.reason = (char *)r->reason;
    row.checked_at = r->checked_at;
    row.latency_ms = r->latency_ms;
    if (n->present) {
        row.nip11_software = n->software;
        row.nip11_version = n->version;
        row.nip11_supported_nips = nips;
        /* A present document always has a non-NULL raw column: "{}" if it was somehow lost. */
        row.nip11_raw = n->raw != NULL ? n->raw : (char *)"{}";
    }
    rc = store_caps_put(st, r->url, &row, serr, sizeof serr);
    if (rc < 0)
        set_error(err, errlen, "%s", serr);
    free(nips);
    return rc;
}

int caps_mark_unsupported(struct store *st, const char *url, const char *reason, int64_t now,
                          char *err, size_t errlen)
{
    struct caps_result r = {0};
    char *key = relay_url_normalize(url, err, errlen);
    int rc;

    if (key == NULL)
        return -1;
    rc = caps_cache_get(st, key, &r, err, errlen);
    if (rc < 0) {
        free(key);
        return -1;
    }
    if (rc == 0) {
        r.url = key;
        key = NULL;
        r.latency_ms = -1;
        snprintf(r.nip11.reason, sizeof r.nip11.reason, "not fetched");
    }
    r.verdict = CAPS_UNSUPPORTED;
    if (reason != NULL && strncmp(reason, FALLBACK_PREFIX, sizeof FALLBACK_PREFIX - 1) == 0)
        reason += sizeof FALLBACK_PREFIX - 1;
    snprintf(r.reason, sizeof r.reason, "%s", reason != NULL && reason[0] ? reason : "refused");
    r.auth_challenge = 0;
    r.checked_at = now;
    rc = caps_cache_put(st, &r, err, errlen);
    caps_result_clear(&r);
    free(key);
    return rc;
}

/* ---- probing ------------------------------------------------------------------------ */

struct caps_opts caps_opts_default(void)
{
    struct caps_opts o;

    memset(&o, 0, sizeof o);
    o.timeout_ms = CAPS_DEFAULT_TIMEOUT_MS;
    o.recheck_days = 7;
    o.check_nip11 = 1;
    o.relay = relay_opts_default();
    return o;
}

/* The probe's connection: a relay behind a guard, whose retry comes out of the probe's budget. */
struct probe_link {
    struct relay *r;
    struct caps_guard g;
};

static int relay_transport_send(void *arg, const char *text, size_t len, char *err, size_t errlen)
{
    struct probe_link *l = arg;

    return caps_guard_send(&l->g, l->r, text, len, err, errlen);
}

static int relay_transport_recv(void *arg, int timeout_ms, struct relay_msg **out, char *err,
                                size_t errlen)
{
    struct probe_link *l = arg;

    return caps_guard_recv(&l->g, l->r, timeout_ms, out, err, errlen);
}

/* Fetches NIP-11 into *n; 1 if the relay answered the HTTP request at all. */
static int fetch_nip11(const char *url, const struct caps_opts *o, struct caps_nip11 *n)
{
    struct relay_nip11 *doc = NULL;
    char err[RELAY_ERRLEN] = "";
    int rc = relay_fetch_nip11(url, &o->relay, o->timeout_ms, &doc, err, sizeof err);

    caps_nip11_from_relay(rc == 0 ? doc : NULL, err, n);
    relay_nip11_free(doc);
    return rc == 0;
}

/* Connects and runs the handshake; fills verdict, reason, latency. -1 only when interrupted. */
static int probe_connection(const char *url, const struct caps_opts *o, struct caps_result *out)
{
    char err[RELAY_ERRLEN] = "";
    struct relay_opts ro = o->relay;
    struct relay *r;
    struct caps_transport t;
    struct probe_link link;
    int rc;

    ro.connect_timeout_ms = o->timeout_ms;
    ro.send_timeout_ms = o->timeout_ms;
    r = relay_new(url, &ro, err, sizeof err);
    if (r == NULL) {
        out->verdict = CAPS_UNREACHABLE;
        snprintf(out->reason, sizeof out->reason, "%s", err);
        out->latency_ms = -1;
        return 0;
    }
    rc = relay_connect(r, o->timeout_ms, err, sizeof err);
    if (rc < 0) {
        out->verdict = CAPS_UNREACHABLE;
        snprintf(out->reason, sizeof out->reason, "%s", err[0] ? err : relay_error_name(rc));
        out->latency_ms = -1;
        relay_free(r);
        return rc == RELAY_ERR_INTERRUPTED ? -1 : 0;
    }
    memset(&link, 0, sizeof link);
    link.r = r;
    link.g.log = ro.log;
    link.g.log_arg = ro.log_arg;
    link.g.within_timeout = 1;
    memset(&t, 0, sizeof t);
    t.send = relay_transport_send;
    t.recv = relay_transport_recv;
    t.arg = &link;
    t.log = ro.log;
    t.log_arg = ro.log_arg;
    t.url = url;
    rc = caps_handshake(&t, o->timeout_ms, out);
    if (rc == 0 && link.g.retries > 0) {
        out->first_message_lost = 1;
        /* An answer to the NEG-OPEN sent again: its latency, not the lost one's wait. */
        if (out->latency_ms >= 0 && !reason_is_silence(out->reason))
            out->latency_ms -= link.g.retry_delay_ms;
    }
    caps_guard_clear(&link.g);
    relay_free(r);
    return rc;
}

int caps_probe(struct store *cache, const char *url, const struct caps_opts *opts,
               struct caps_result *out, char *err, size_t errlen)
{
    struct caps_opts o = opts != NULL ? *opts : caps_opts_default();
    struct caps_result cached = {0};
    struct caps_nip11 nip11 = {0};
    int have = 0, answered = 0, fetched = 0;
    char *norm;
    int64_t now;
    enum caps_source why;

    caps_result_clear(out);
    if (o.timeout_ms <= 0)
        o.timeout_ms = CAPS_DEFAULT_TIMEOUT_MS;
    if ((norm = relay_url_normalize(url, err, errlen)) == NULL)
        return -1;
    if (cache != NULL && !o.force) {
        have = caps_cache_get(cache, norm, &cached, err, errlen);
        if (have < 0) {
            free(norm);
            return -1;
        }
    }
    now = wall_now(&o);
    why = caps_recheck_reason(have ? &cached : NULL, NULL, now, o.recheck_days, o.force);
    if (why == CAPS_FROM_CACHE && o.check_nip11) {
        /* Fresh: only a changed NIP-11 (software, version) makes it check again. */
        answered = fetch_nip11(norm, &o, &nip11);
        fetched = 1;
        why = caps_recheck_reason(&cached, answered ? &nip11 : NULL, now, o.recheck_days, 0);
    }
    if (why == CAPS_FROM_CACHE) {
        *out = cached;
        free(norm);
        caps_nip11_clear(&nip11);
        return 0;
    }
    caps_result_clear(&cached);

    if (!fetched)
        fetch_nip11(norm, &o, &nip11);
    out->url = norm;
    out->source = why;
    out->nip11 = nip11;
    if (probe_connection(norm, &o, out) < 0) {
        set_error(err, errlen, "%s: %s", norm, out->reason);
        return -1;
    }
    /* Stamped when the verdict is in, so a slow probe is not already aged. */
    out->checked_at = wall_now(&o);
    if (cache != NULL && !o.cache_read_only && out->verdict != CAPS_UNREACHABLE &&
        caps_cache_put(cache, out, err, errlen) < 0)
        return -1;
    return 0;
}
