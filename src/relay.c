/*
 * relay: one websocket connection to one Nostr relay, and the NIP-11 fetch.
 *
 * Threading. Every struct relay owns its own lws_context, created on the
 * first connect and destroyed by relay_free, and only the thread that calls
 * relay_connect / relay_send / relay_recv / relay_close ever services it.
 * Those calls are synchronous: each one runs lws_service() on the calling
 * thread until its condition holds or its deadline passes. A sorted-usec
 * timer (lws_sul) is armed at the deadline because in lws 4.x the timeout
 * argument of lws_service() no longer bounds the poll wait; the timer does.
 * The only thing another thread may do is relay_interrupt(), which sets an
 * atomic flag and calls lws_cancel_service() (documented as thread-safe) so
 * the poll wakes up and the loop sees the flag. Sending follows the lws
 * pattern: relay_send queues the text and asks for WRITEABLE; the callback
 * writes it in fragments of TX_CHUNK bytes, one per WRITEABLE, so a large
 * message never sits whole in lws's partial-write buffer and
 * permessage-deflate compresses it fragment by fragment.
 *
 * A context per relay costs one SSL_CTX and a couple of file descriptors;
 * with the 5-50 relays negsync syncs that is cheap, and it means no locks,
 * no cross-thread queues and a connection whose failures cannot disturb any
 * other relay.
 *
 * Wire bytes. lws 4.1 has no hook that sees the raw socket bytes of a plain
 * ws:// connection (it calls recv()/send() itself) and the TLS BIO is not
 * ours either, so the wire counters come from the kernel: TCP_INFO's
 * tcpi_bytes_received and tcpi_bytes_acked plus the unacknowledged send
 * queue (SIOCOUTQ), corrected for the SYN and FIN that Linux counts as one
 * sequence byte each. That is exact for whatever the connection carried
 * (HTTP upgrade, TLS, framing, compression, pings, close) and is sampled on
 * every callback of the connection and after every service pass, including
 * just before the socket is closed. Linux only; elsewhere the wire counters
 * stay 0.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libwebsockets.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#if defined(__linux__)
#include <sys/ioctl.h>
#include <linux/sockios.h>
#include <linux/tcp.h>
#endif

#include "relay.h"
#include "util.h"

#define MIB           (1024 * 1024)
#define TX_CHUNK      (16 * 1024)
#define RX_CHUNK      (64 * 1024)
#define LOG_TRUNCATE  200
#define SUBID_MAX     1024
#define NIP11_MAX     MIB
#define CLOSE_WAIT_MS 1000

/* ---- small helpers -------------------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * A printable, truncated copy of untrusted text for a log line: control
 * bytes become '?', and at most LOG_TRUNCATE bytes are shown.
 */
static void log_excerpt(const char *text, size_t len, char *out, size_t outlen)
{
    size_t n = len < LOG_TRUNCATE ? len : LOG_TRUNCATE;
    if (n > outlen - 1)
        n = outlen - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)text[i];
        out[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    out[n] = '\0';
    if (len > n && outlen - n > 4)
        strcpy(out + n, "...");
}

/*
 * lws logs to stderr by default, which would scribble over the TUI. It is a
 * process-wide setting, set once: errors and warnings only when
 * NEGSYNC_LWS_LOG is set (to a LLL_ bit mask), otherwise nothing.
 */
static pthread_once_t lws_log_once = PTHREAD_ONCE_INIT;

static void lws_log_init(void)
{
    const char *s = getenv("NEGSYNC_LWS_LOG");
    lws_set_log_level(s != NULL ? atoi(s) : 0, NULL);
}

const char *relay_error_name(int code)
{
    switch (code) {
    case RELAY_OK: return "ok";
    case RELAY_ERR_INVALID: return "invalid";
    case RELAY_ERR_UNREACHABLE: return "unreachable";
    case RELAY_ERR_TLS_CERT: return "tls-cert";
    case RELAY_ERR_TLS: return "tls";
    case RELAY_ERR_HANDSHAKE: return "handshake";
    case RELAY_ERR_CLOSED: return "closed";
    case RELAY_ERR_TOO_BIG: return "too-big";
    case RELAY_ERR_TIMEOUT: return "timeout";
    case RELAY_ERR_INTERRUPTED: return "interrupted";
    case RELAY_ERR_NOT_CONNECTED: return "not-connected";
    case RELAY_ERR_INTERNAL: return "internal";
    }
    return "unknown";
}

struct relay_opts relay_opts_default(void)
{
    struct relay_opts o;
    memset(&o, 0, sizeof o);
    o.tls_verify = 1;
    o.compression = 1;
    o.max_message = 16 * MIB;
    o.connect_timeout_ms = 10000;
    o.send_timeout_ms = 30000;
    o.ping_interval_s = 30;
    return o;
}

/* "16 MiB" when the cap is a whole number of MiB, else "N bytes". */
static void format_size(size_t n, char *out, size_t outlen)
{
    if (n >= MIB && n % MIB == 0)
        snprintf(out, outlen, "%zu MiB", n / MIB);
    else
        snprintf(out, outlen, "%zu bytes", n);
}

/* ---- URLs ------------------------------------------------------------------ */

struct relay_url {
    int tls;
    char host[256]; /* lowercase; an IPv6 literal without brackets */
    int ipv6;
    int port; /* always set: the default when the URL has none */
    int port_given;
    char *path; /* starts with '/'; may carry a query */
};

static void url_clear(struct relay_url *u)
{
    free(u->path);
    u->path = NULL;
}

/*
 * Splits a ws:// or wss:// URL. Paranoid: the host and path end up in an
 * HTTP request line and headers, so any byte at or below space, DEL, or a
 * non-ASCII byte is refused rather than escaped.
 */
static int url_parse(const char *url, struct relay_url *u, char *err, size_t errlen)
{
    memset(u, 0, sizeof *u);
    if (url == NULL) {
        set_error(err, errlen, "no URL");
        return -1;
    }
    for (const char *c = url; *c; c++) {
        unsigned char ch = (unsigned char)*c;
        if (ch <= 0x20 || ch >= 0x7f) {
            set_error(err, errlen, "URL contains a space, control or non-ASCII character");
            return -1;
        }
    }
    const char *p;
    if (strncasecmp(url, "wss://", 6) == 0) {
        u->tls = 1;
        p = url + 6;
    } else if (strncasecmp(url, "ws://", 5) == 0) {
        p = url + 5;
    } else {
        set_error(err, errlen, "not a ws:// or wss:// URL: %.80s", url);
        return -1;
    }
    size_t alen = strcspn(p, "/?#");
    const char *rest = p + alen;
    if (memchr(p, '@', alen) != NULL) {
        set_error(err, errlen, "user info in relay URLs is not supported");
        return -1;
    }
    const char *hs = p, *he, *portp = NULL;
    if (alen > 0 && *p == '[') {
        const char *close = memchr(p, ']', alen);
        if (close == NULL) {
            set_error(err, errlen, "unterminated IPv6 address in URL");
            return -1;
        }
        hs = p + 1;
        he = close;
        u->ipv6 = 1;
        if (close + 1 < p + alen) {
            if (close[1] != ':') {
                set_error(err, errlen, "junk after IPv6 address in URL");
                return -1;
            }
            portp = close + 2;
        }
        for (const char *c = hs; c < he; c++)
            if (!isxdigit((unsigned char)*c) && *c != ':' && *c != '.') {
                set_error(err, errlen, "bad IPv6 address in URL");
                return -1;
            }
    } else {
        const char *colon = memchr(p, ':', alen);
        he = colon ? colon : p + alen;
        if (colon)
            portp = colon + 1;
        for (const char *c = hs; c < he; c++)
            if (!isalnum((unsigned char)*c) && *c != '-' && *c != '.' && *c != '_') {
                set_error(err, errlen, "bad character '%c' in host name", *c);
                return -1;
            }
    }
    size_t hlen = (size_t)(he - hs);
    if (hlen == 0) {
        set_error(err, errlen, "no host in URL");
        return -1;
    }
    if (hlen >= sizeof u->host) {
        set_error(err, errlen, "host name too long");
        return -1;
    }
    for (size_t i = 0; i < hlen; i++)
        u->host[i] = (char)tolower((unsigned char)hs[i]);
    u->host[hlen] = '\0';
    u->port = u->tls ? 443 : 80;
    if (portp != NULL) {
        const char *pe = p + alen;
        long port = 0;
        if (portp == pe) {
            set_error(err, errlen, "empty port in URL");
            return -1;
        }
        for (const char *c = portp; c < pe; c++) {
            if (!isdigit((unsigned char)*c) || port > 65535) {
                set_error(err, errlen, "bad port in URL");
                return -1;
            }
            port = port * 10 + (*c - '0');
        }
        if (port < 1 || port > 65535) {
            set_error(err, errlen, "port out of range in URL");
            return -1;
        }
        u->port = (int)port;
        u->port_given = 1;
    }
    const char *frag = strchr(rest, '#');
    size_t plen = frag ? (size_t)(frag - rest) : strlen(rest);
    if (frag != NULL) {
        set_error(err, errlen, "fragment (#...) in relay URL");
        return -1;
    }
    u->path = xmalloc(plen + 2);
    if (plen == 0 || rest[0] != '/') {
        u->path[0] = '/';
        memcpy(u->path + 1, rest, plen);
        u->path[plen + 1] = '\0';
    } else {
        memcpy(u->path, rest, plen);
        u->path[plen] = '\0';
    }
    return 0;
}

/* The Host header value: brackets for IPv6, the port when not the default. */
static void url_host_header(const struct relay_url *u, char *out, size_t outlen)
{
    int dflt = u->port == (u->tls ? 443 : 80);
    if (u->ipv6)
        snprintf(out, outlen, dflt ? "[%s]" : "[%s]:%d", u->host, u->port);
    else
        snprintf(out, outlen, dflt ? "%s" : "%s:%d", u->host, u->port);
}

char *relay_url_normalize(const char *url, char *err, size_t errlen)
{
    struct relay_url u;
    if (url_parse(url, &u, err, errlen) < 0)
        return NULL;
    char hosthdr[300];
    url_host_header(&u, hosthdr, sizeof hosthdr);
    size_t plen = strlen(u.path);
    /* "/" and "" are the same resource; so are "/x/" and "/x" for relays. */
    while (plen > 0 && u.path[plen - 1] == '/' && strchr(u.path, '?') == NULL)
        u.path[--plen] = '\0';
    const char *scheme = u.tls ? "wss://" : "ws://";
    size_t sl = strlen(scheme), hl = strlen(hosthdr);
    char *out = xmalloc(sl + hl + plen + 1);
    memcpy(out, scheme, sl);
    memcpy(out + sl, hosthdr, hl);
    memcpy(out + sl + hl, u.path, plen + 1);
    url_clear(&u);
    return out;
}

/* ---- message parsing -------------------------------------------------------- */

static char *dup_json_string(const json_t *s)
{
    size_t n = json_string_length(s);
    char *out = xmalloc(n + 1);
    memcpy(out, json_string_value(s), n);
    out[n] = '\0';
    return out;
}

/* A subscription id: a string without NUL bytes, at most SUBID_MAX bytes. */
static int take_subid(const char *type, const json_t *v, struct relay_msg *m, char *err,
                      size_t errlen)
{
    if (!json_is_string(v)) {
        set_error(err, errlen, "%s: subscription id is not a string", type);
        return -1;
    }
    size_t n = json_string_length(v);
    if (n > SUBID_MAX || memchr(json_string_value(v), '\0', n) != NULL) {
        set_error(err, errlen, "%s: subscription id too long or with a NUL byte", type);
        return -1;
    }
    m->subid = dup_json_string(v);
    return 0;
}

/* A message whose only payload is a subscription id (EOSE, NEG-CLOSE). */
static int take_only_subid(const char *type, const json_t *a, size_t n, struct relay_msg *m,
                           char *err, size_t errlen)
{
    if (n < 2) {
        set_error(err, errlen, "%s: no subscription id", type);
        return -1;
    }
    return take_subid(type, json_array_get(a, 1), m, err, errlen);
}

/* An optional reason at index i: absent is "", anything but a string is an error. */
static int take_text(const char *type, const json_t *arr, size_t i, int required,
                     struct relay_msg *m, char *err, size_t errlen)
{
    const json_t *v = json_array_get(arr, i);
    if (v == NULL) {
        if (required) {
            set_error(err, errlen, "%s: element %zu missing", type, i);
            return -1;
        }
        m->text = xstrdup("");
        return 0;
    }
    if (!json_is_string(v)) {
        set_error(err, errlen, "%s: element %zu is not a string", type, i);
        return -1;
    }
    m->text = dup_json_string(v);
    return 0;
}

static int is_hex(const char *s, size_t n, int lower_only)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
              (!lower_only && c >= 'A' && c <= 'F')))
            return 0;
    }
    return 1;
}

void relay_msg_free(struct relay_msg *m)
{
    if (m == NULL)
        return;
    free(m->subid);
    json_decref(m->event);
    free(m->text);
    free(m->neg_hex);
    free(m);
}

static int msg_fill(const char *type, const json_t *a, struct relay_msg *m, char *err,
                    size_t errlen)
{
    size_t n = json_array_size(a);
    if (strcmp(type, "EVENT") == 0) {
        m->type = RELAY_MSG_EVENT;
        if (n < 3) {
            set_error(err, errlen, "EVENT: expected 3 elements, got %zu", n);
            return -1;
        }
        if (take_subid(type, json_array_get(a, 1), m, err, errlen) < 0)
            return -1;
        json_t *ev = json_array_get(a, 2);
        if (!json_is_object(ev)) {
            set_error(err, errlen, "EVENT: element 2 is not an object");
            return -1;
        }
        m->event = json_incref(ev);
    } else if (strcmp(type, "EOSE") == 0) {
        m->type = RELAY_MSG_EOSE;
        return take_only_subid(type, a, n, m, err, errlen);
    } else if (strcmp(type, "OK") == 0) {
        m->type = RELAY_MSG_OK;
        if (n < 3) {
            set_error(err, errlen, "OK: expected 4 elements, got %zu", n);
            return -1;
        }
        const json_t *id = json_array_get(a, 1), *acc = json_array_get(a, 2);
        if (!json_is_string(id) || json_string_length(id) != 64 ||
            !is_hex(json_string_value(id), 64, 1)) {
            set_error(err, errlen, "OK: element 1 is not a 64-char lowercase hex id");
            return -1;
        }
        if (!json_is_boolean(acc)) {
            set_error(err, errlen, "OK: element 2 is not a boolean");
            return -1;
        }
        memcpy(m->ok_id, json_string_value(id), 64);
        m->ok_id[64] = '\0';
        m->ok_accepted = json_is_true(acc);
        return take_text(type, a, 3, 0, m, err, errlen);
    } else if (strcmp(type, "NOTICE") == 0) {
        m->type = RELAY_MSG_NOTICE;
        return take_text(type, a, 1, 1, m, err, errlen);
    } else if (strcmp(type, "CLOSED") == 0) {
        m->type = RELAY_MSG_CLOSED;
        if (n < 2) {
            set_error(err, errlen, "CLOSED: no subscription id");
            return -1;
        }
        if (take_subid(type, json_array_get(a, 1), m, err, errlen) < 0)
            return -1;
        return take_text(type, a, 2, 0, m, err, errlen);
    } else if (strcmp(type, "NEG-MSG") == 0) {
        m->type = RELAY_MSG_NEG_MSG;
        if (n < 3) {
            set_error(err, errlen, "NEG-MSG: expected 3 elements, got %zu", n);
            return -1;
        }
        if (take_subid(type, json_array_get(a, 1), m, err, errlen) < 0)
            return -1;
        const json_t *h = json_array_get(a, 2);
        if (!json_is_string(h)) {
            set_error(err, errlen, "NEG-MSG: element 2 is not a string");
            return -1;
        }
        size_t hl = json_string_length(h);
        if (hl % 2 != 0 || !is_hex(json_string_value(h), hl, 0)) {
            set_error(err, errlen, "NEG-MSG: element 2 is not hex of even length");
            return -1;
        }
        m->neg_hex = dup_json_string(h);
        m->neg_hex_len = hl;
    } else if (strcmp(type, "NEG-ERR") == 0) {
        m->type = RELAY_MSG_NEG_ERR;
        if (n < 2) {
            set_error(err, errlen, "NEG-ERR: no subscription id");
            return -1;
        }
        if (take_subid(type, json_array_get(a, 1), m, err, errlen) < 0)
            return -1;
        if (take_text(type, a, 2, 0, m, err, errlen) < 0)
            return -1;
        /*
         * strfry appends the record limit it enforces. It is advisory, so a
         * 4th element of another type is ignored rather than costing us
         * the NEG-ERR itself (the session would then wait for its timeout).
         */
        const json_t *lim = json_array_get(a, 3);
        if (json_is_integer(lim)) {
            m->has_neg_limit = 1;
            m->neg_limit = (int64_t)json_integer_value(lim);
        }
    } else if (strcmp(type, "NEG-CLOSE") == 0) {
        m->type = RELAY_MSG_NEG_CLOSE;
        return take_only_subid(type, a, n, m, err, errlen);
    } else if (strcmp(type, "AUTH") == 0) {
        m->type = RELAY_MSG_AUTH;
        return take_text(type, a, 1, 1, m, err, errlen);
    } else if (strcmp(type, "COUNT") == 0) {
        m->type = RELAY_MSG_COUNT;
        if (n < 3) {
            set_error(err, errlen, "COUNT: expected 3 elements, got %zu", n);
            return -1;
        }
        if (take_subid(type, json_array_get(a, 1), m, err, errlen) < 0)
            return -1;
        const json_t *c = json_object_get(json_array_get(a, 2), "count");
        if (!json_is_integer(c) || json_integer_value(c) < 0) {
            set_error(err, errlen, "COUNT: element 2 has no non-negative integer \"count\"");
            return -1;
        }
        m->count = (uint64_t)json_integer_value(c);
    } else {
        char t[48];
        log_excerpt(type, strlen(type), t, sizeof t);
        set_error(err, errlen, "unknown message type \"%s\"", t);
        return -1;
    }
    return 0;
}

int relay_msg_parse(const char *text, size_t len, struct relay_msg **out, char *err, size_t errlen)
{
    *out = NULL;
    json_error_t jerr;
    /*
     * \u0000 is allowed because event content may hold it (the event module
     * keeps exact lengths); duplicate keys are refused because an event
     * with two "content" keys has no single canonical form.
     */
    json_t *root =
        json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL | JSON_DECODE_ANY, &jerr);
    if (root == NULL) {
        set_error(err, errlen, "invalid JSON: %s", jerr.text);
        return -1;
    }
    if (!json_is_array(root)) {
        json_decref(root);
        set_error(err, errlen, "not a JSON array");
        return -1;
    }
    const json_t *t = json_array_get(root, 0);
    if (!json_is_string(t)) {
        set_error(err, errlen, json_array_size(root) ? "element 0 is not a string" : "empty array");
        json_decref(root);
        return -1;
    }
    if (memchr(json_string_value(t), '\0', json_string_length(t)) != NULL) {
        json_decref(root);
        set_error(err, errlen, "message type contains a NUL byte");
        return -1;
    }
    struct relay_msg *m = xcalloc(1, sizeof *m);
    m->raw_len = len;
    if (msg_fill(json_string_value(t), root, m, err, errlen) < 0) {
        relay_msg_free(m);
        json_decref(root);
        return -1;
    }
    json_decref(root);
    *out = m;
    return 0;
}

/* ---- backoff -------------------------------------------------------------- */

int64_t relay_backoff_delay_ms(unsigned failures, uint64_t rnd)
{
    if (failures == 0)
        return 0;
    const int64_t base = 1000, cap = 5 * 60 * 1000;
    int64_t d = cap;
    if (failures - 1 < 20) {
        d = base << (failures - 1);
        if (d > cap)
            d = cap;
    }
    /* 53 random bits -> [0, 1) -> jitter factor [0.8, 1.2). */
    double u = (double)(rnd >> 11) / 9007199254740992.0;
    return (int64_t)llround((double)d * (0.8 + 0.4 * u));
}

/* ---- the connection ---------------------------------------------------------- */

enum conn_state {
    CONN_IDLE, /* never connected, or cleanly gone */
    CONN_CONNECTING,
    CONN_OPEN,
    CONN_CLOSED, /* gone; err_code / err_msg say why */
};

struct msg_node {
    struct relay_msg *m;
    struct msg_node *next;
};

struct relay {
    char *url;
    struct relay_url u;
    char hosthdr[300];
    struct relay_opts o;
    lws_retry_bo_t retry;

    struct lws_context *ctx;
    struct lws *wsi;
    enum conn_state state;
    int err_code; /* why the connection failed or ended */
    char err_msg[RELAY_ERRLEN];
    char tls_verify_err[160]; /* from the certificate callback during connect */
    int peer_close_code;
    char peer_close_reason[124];
    int want_close; /* relay_close asked for a close frame */

    struct buf rx; /* the message being reassembled */
    struct msg_node *qhead, *qtail;

    const char *tx; /* the message relay_send is writing */
    size_t tx_len, tx_off;
    int tx_active, tx_flushing;
    uint8_t *txbuf; /* LWS_PRE + TX_CHUNK */

    lws_sorted_usec_list_t sul; /* deadline wake-up */
    atomic_int interrupted;

    struct relay_counters conn, done; /* done: all previous connections */
    int wire_fd;
    uint64_t wire_base_sent, wire_base_recv; /* from earlier sockets of this connection */
    uint64_t wire_cur_sent, wire_cur_recv;   /* last sample of the current socket */

    unsigned failures;
    uint64_t rng;
};

static void relay_log(struct relay *r, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (r->o.log != NULL)
        r->o.log(r->o.log_arg, r->url, line);
    else
        fprintf(stderr, "negsync: %s: %s\n", r->url, line);
}

/*
 * The kernel's view of the socket, as bytes the application wrote and bytes
 * that arrived. Linux counts our SYN in bytes_acked and a FIN in either
 * direction as one sequence byte; SIOCOUTQ covers written but unacked data.
 */
static int wire_read_fd(int fd, uint64_t *sent, uint64_t *recvd)
{
#if defined(__linux__)
    struct tcp_info ti;
    socklen_t tl = sizeof ti;
    memset(&ti, 0, sizeof ti);
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) < 0 ||
        tl < offsetof(struct tcp_info, tcpi_bytes_received) + sizeof ti.tcpi_bytes_received)
        return -1;
    int outq = 0;
    if (ioctl(fd, SIOCOUTQ, &outq) < 0 || outq < 0)
        outq = 0;
    /* Linux TCP states (include/net/tcp_states.h). */
    enum {
        ST_SYN_SENT = 2,
        ST_FIN_WAIT1 = 4,
        ST_FIN_WAIT2 = 5,
        ST_TIME_WAIT = 6,
        ST_CLOSE_WAIT = 8,
        ST_LAST_ACK = 9,
        ST_CLOSING = 11
    };
    unsigned st = ti.tcpi_state;
    int fin_out = st == ST_FIN_WAIT1 || st == ST_FIN_WAIT2 || st == ST_CLOSING ||
                  st == ST_LAST_ACK || st == ST_TIME_WAIT;
    int fin_in = st == ST_CLOSE_WAIT || st == ST_LAST_ACK || st == ST_CLOSING || st == ST_TIME_WAIT;
    uint64_t s = ti.tcpi_bytes_acked + (uint64_t)outq;
    if (st != ST_SYN_SENT && s > 0)
        s--; /* our SYN */
    if (fin_out && s > 0)
        s--;
    uint64_t rv = ti.tcpi_bytes_received;
    if (fin_in && rv > 0)
        rv--;
    *sent = s;
    *recvd = rv;
    return 0;
#else
    (void)fd;
    (void)sent;
    (void)recvd;
    return -1;
#endif
}

/*
 * Takes a wire sample of the connection's socket. lws may try several
 * addresses, each with its own socket; what earlier sockets carried is kept
 * in the base; a received count that goes backwards means a new socket that
 * happened to get the same descriptor number.
 */
static void wire_sample(struct relay *r, struct lws *wsi)
{
    if (wsi == NULL)
        return;
    int fd = (int)lws_get_socket_fd(wsi);
    if (fd < 0)
        return;
    uint64_t s, v;
    if (wire_read_fd(fd, &s, &v) < 0)
        return;
    /*
     * The sent count may step back on the same socket: an ACK arriving
     * between the TCP_INFO read and SIOCOUTQ moves bytes out of the queue
     * that bytes_acked did not show yet (and a FIN correction takes one
     * byte). So a sample never lowers it, and only the received count, which
     * just grows (but for the FIN byte), tells a new socket on the same
     * descriptor. Taking every dip in the sent count for a new socket had
     * counted some connections' bytes up to twice.
     */
    if (fd != r->wire_fd || v + 1 < r->wire_cur_recv) {
        r->wire_base_sent += r->wire_cur_sent;
        r->wire_base_recv += r->wire_cur_recv;
        r->wire_fd = fd;
        r->wire_cur_sent = r->wire_cur_recv = 0;
    }
    if (s > r->wire_cur_sent)
        r->wire_cur_sent = s;
    if (v > r->wire_cur_recv)
        r->wire_cur_recv = v;
    s = r->wire_cur_sent;
    v = r->wire_cur_recv;
    r->conn.sent_wire = r->wire_base_sent + s;
    r->conn.recv_wire = r->wire_base_recv + v;
}

static void queue_push(struct relay *r, struct relay_msg *m)
{
    struct msg_node *n = xmalloc(sizeof *n);
    n->m = m;
    n->next = NULL;
    if (r->qtail)
        r->qtail->next = n;
    else
        r->qhead = n;
    r->qtail = n;
}

static struct relay_msg *queue_pop(struct relay *r)
{
    struct msg_node *n = r->qhead;
    if (n == NULL)
        return NULL;
    r->qhead = n->next;
    if (r->qhead == NULL)
        r->qtail = NULL;
    struct relay_msg *m = n->m;
    free(n);
    return m;
}

static void queue_clear(struct relay *r)
{
    struct relay_msg *m;
    while ((m = queue_pop(r)) != NULL)
        relay_msg_free(m);
}

/* Records why the connection ended, unless an earlier, more precise reason exists. */
static void conn_fail(struct relay *r, int code, const char *fmt, ...)
{
    if (r->err_code != 0)
        return;
    r->err_code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err_msg, sizeof r->err_msg, fmt, ap);
    va_end(ap);
}

/*
 * Sorts the strings lws 4.1 hands to CLIENT_CONNECTION_ERROR into our
 * classes. The certificate case is recognised from our own verify callback,
 * not from the string, which only says "SSL" something.
 */
static void classify_connect_error(struct relay *r, const char *why)
{
    if (why == NULL || !*why)
        why = "connection failed";
    if (r->tls_verify_err[0]) {
        conn_fail(r, RELAY_ERR_TLS_CERT, "TLS certificate verification failed: %s",
                  r->tls_verify_err);
    } else if (strncmp(why, "HS:", 3) == 0 || strstr(why, "upgrade") != NULL ||
               strstr(why, "handshake") != NULL) {
        conn_fail(r, RELAY_ERR_HANDSHAKE, "websocket handshake failed: %s", why);
    } else if (strcasestr(why, "ssl") != NULL || strcasestr(why, "tls") != NULL) {
        conn_fail(r, RELAY_ERR_TLS, "TLS failed: %s", why);
    } else {
        conn_fail(r, RELAY_ERR_UNREACHABLE, "cannot connect to %s port %d: %s", r->u.host,
                  r->u.port, why);
    }
}

/*
 * The certificate callback, shared by the websocket and the NIP-11 clients.
 * It remembers the first verification error so the failure can be reported
 * as what it is, and with tls_verify = 0 it accepts anything (lws itself
 * only waives self-signed, expired and unknown-issuer errors).
 */
static int tls_verify_cb(char *verr, size_t verrlen, int tls_verify, void *x509_ctx,
                         size_t preverify_ok)
{
    if (preverify_ok)
        return 0;
    X509_STORE_CTX *xs = x509_ctx;
    int e = X509_STORE_CTX_get_error(xs);
    if (e == X509_V_OK)
        return 0;
    if (!tls_verify) {
        X509_STORE_CTX_set_error(xs, X509_V_OK);
        return 0;
    }
    if (!verr[0])
        snprintf(verr, verrlen, "%s (depth %d)", X509_verify_cert_error_string(e),
                 X509_STORE_CTX_get_error_depth(xs));
    return 0;
}

static void rx_message_done(struct relay *r, struct lws *wsi)
{
    r->conn.recv_msgs++;
    r->conn.recv_payload += r->rx.len;
    char err[160];
    struct relay_msg *m = NULL;
    if (lws_frame_is_binary(wsi)) {
        snprintf(err, sizeof err, "binary websocket message");
    } else if (relay_msg_parse((const char *)r->rx.data, r->rx.len, &m, err, sizeof err) == 0) {
        queue_push(r, m);
        r->rx.len = 0;
        return;
    }
    char ex[LOG_TRUNCATE + 8];
    log_excerpt((const char *)r->rx.data, r->rx.len, ex, sizeof ex);
    relay_log(r, "skipped message (%s): %s", err, ex);
    r->rx.len = 0;
}

static int ws_writeable(struct relay *r, struct lws *wsi)
{
    if (r->want_close) {
        lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, (unsigned char *)"bye", 3);
        return -1;
    }
    if (r->tx_flushing) {
        /*
         * lws only calls WRITEABLE once its own partial-write buffer is
         * empty, so reaching here means the last fragment left for the
         * kernel: the send is complete.
         */
        r->tx_flushing = 0;
        r->tx_active = 0;
        r->conn.sent_msgs++;
        r->conn.sent_payload += r->tx_len;
        return 0;
    }
    if (!r->tx_active)
        return 0;
    size_t n = r->tx_len - r->tx_off;
    if (n > TX_CHUNK)
        n = TX_CHUNK;
    int flags = lws_write_ws_flags(LWS_WRITE_TEXT, r->tx_off == 0, r->tx_off + n == r->tx_len);
    if (n)
        memcpy(r->txbuf + LWS_PRE, r->tx + r->tx_off, n);
    int w = lws_write(wsi, r->txbuf + LWS_PRE, n, (enum lws_write_protocol)flags);
    if (w < (int)n) {
        conn_fail(r, RELAY_ERR_CLOSED, "write to the relay failed");
        return -1;
    }
    r->tx_off += n;
    if (r->tx_off == r->tx_len)
        r->tx_flushing = 1;
    lws_callback_on_writable(wsi);
    return 0;
}

static int ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                       size_t len)
{
    struct lws_context *cx = lws_get_context(wsi);
    struct relay *r = cx ? lws_context_user(cx) : NULL;
    if (r == NULL)
        return 0;
    if (reason == LWS_CALLBACK_OPENSSL_PERFORM_SERVER_CERT_VERIFICATION)
        return tls_verify_cb(r->tls_verify_err, sizeof r->tls_verify_err, r->o.tls_verify, user,
                             len);
    /* Callbacks of a connection we already gave up on are of no interest. */
    if (wsi != r->wsi)
        return 0;
    /*
     * Two system calls a sample: not for every fragment read or written on
     * an open connection (thousands a second), whose counters are sampled
     * when read and before it closes; but while connecting, when lws may
     * move on to another address's socket, and on everything else.
     */
    if (r->state != CONN_OPEN ||
        (reason != LWS_CALLBACK_CLIENT_RECEIVE && reason != LWS_CALLBACK_CLIENT_WRITEABLE))
        wire_sample(r, wsi);

    switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        classify_connect_error(r, in ? (const char *)in : NULL);
        r->state = CONN_CLOSED;
        r->wsi = NULL;
        break;
    case LWS_CALLBACK_CLIENT_ESTABLISHED: r->state = CONN_OPEN; break;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        if (r->rx.len + len > r->o.max_message) {
            char sz[32];
            format_size(r->o.max_message, sz, sizeof sz);
            conn_fail(r, RELAY_ERR_TOO_BIG, "message larger than %s", sz);
            relay_log(r, "closing: message larger than %s", sz);
            r->rx.len = 0;
            lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE,
                             (unsigned char *)"message too big", 15);
            return -1;
        }
        buf_append(&r->rx, in, len);
        if (lws_is_final_fragment(wsi))
            rx_message_done(r, wsi);
        break;
    case LWS_CALLBACK_CLIENT_WRITEABLE: return ws_writeable(r, wsi);
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (len >= 2 && in != NULL) {
            const unsigned char *p = in;
            r->peer_close_code = (p[0] << 8) | p[1];
            log_excerpt((const char *)p + 2, len - 2, r->peer_close_reason,
                        sizeof r->peer_close_reason);
        } else {
            r->peer_close_code = LWS_CLOSE_STATUS_NO_STATUS;
        }
        break;
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (r->peer_close_code)
            conn_fail(r, RELAY_ERR_CLOSED, "relay closed the connection (code %d%s%s)",
                      r->peer_close_code, r->peer_close_reason[0] ? ": " : "",
                      r->peer_close_reason);
        else if (r->want_close)
            conn_fail(r, RELAY_ERR_CLOSED, "connection closed");
        else
            conn_fail(r, RELAY_ERR_CLOSED, "connection lost (closed without a close frame)");
        r->state = CONN_CLOSED;
        r->wsi = NULL;
        break;
    default: break;
    }
    return 0;
}

static const struct lws_protocols ws_protocols[] = {
    {"negsync-relay", ws_callback, 0, RX_CHUNK, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/*
 * permessage-deflate, both sides keeping their history between messages.
 * No client_no_context_takeover hint, though what we send is small: a
 * libwebsockets server takes that parameter as its own and ends its
 * compressor after every message it sends, which costs a test relay half its
 * CPU time on a page of EVENTs (a deflateInit, 300 KB zeroed and freed per
 * event) and compresses each event alone.
 */
static const struct lws_extension ws_extensions[] = {
    {"permessage-deflate", lws_extension_callback_pm_deflate,
     "permessage-deflate; client_max_window_bits"},
    {NULL, NULL, NULL},
};

static void sul_wake(lws_sorted_usec_list_t *sul)
{
    (void)sul; /* only here so the poll returns at the deadline */
}

/*
 * Services the context until done(r) holds, the deadline passes or
 * relay_interrupt is called. With a deadline already due it still makes
 * one non-blocking pass so "timeout 0" picks up what is readable now.
 */
static int service_until(struct relay *r, struct lws_context *ctx, int64_t deadline,
                         int (*done)(const struct relay *))
{
    int rc = 0, last_pass = 0;
    for (;;) {
        if (r != NULL) {
            if (r->state != CONN_OPEN)
                wire_sample(r, r->wsi);
            if (done != NULL && done(r))
                break;
            if (atomic_exchange(&r->interrupted, 0)) {
                rc = RELAY_ERR_INTERRUPTED;
                break;
            }
        }
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            if (last_pass) {
                rc = RELAY_ERR_TIMEOUT;
                break;
            }
            last_pass = 1;
            if (lws_service(ctx, -1) < 0) {
                rc = RELAY_ERR_INTERNAL;
                break;
            }
            continue;
        }
        if (r != NULL)
            lws_sul_schedule(ctx, 0, &r->sul, sul_wake, (lws_usec_t)left * LWS_US_PER_MS);
        if (lws_service(ctx, 0) < 0) {
            rc = RELAY_ERR_INTERNAL;
            break;
        }
    }
    if (r != NULL)
        lws_sul_cancel(&r->sul);
    return rc;
}

static int done_connecting(const struct relay *r)
{
    return r->state != CONN_CONNECTING;
}

static int done_sending(const struct relay *r)
{
    return !r->tx_active || r->state != CONN_OPEN;
}

static int done_receiving(const struct relay *r)
{
    return r->qhead != NULL || r->state != CONN_OPEN;
}

static int done_closing(const struct relay *r)
{
    return r->wsi == NULL;
}

static int done_never(const struct relay *r)
{
    (void)r;
    return 0;
}

/* Tears the connection down at once, without a close handshake. */
static void conn_drop(struct relay *r)
{
    struct lws *w = r->wsi;
    if (w != NULL) {
        wire_sample(r, w);
        /* Closes synchronously; CLIENT_CLOSED takes the last sample. */
        lws_set_timeout(w, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_SYNC);
    }
    r->wsi = NULL;
    if (r->state == CONN_OPEN || r->state == CONN_CONNECTING)
        r->state = CONN_CLOSED;
}

/*
 * TLS and threads. lws 4.1 acquires new OpenSSL ex_data indexes (where it
 * finds the wsi behind an SSL, and the vhost behind an SSL_CTX) every time a
 * context is created with LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT, and keeps
 * them in unlocked globals. With a context per relay and several workers, a
 * context created on one thread moved the indexes under another thread's
 * live connections: certificate checks lost their wsi ("TLS failed: connect
 * SSL err 1") and vhost teardown lost track of its client SSL_CTX (leaked, as
 * LeakSanitizer showed with two wss relays on two workers, never with one).
 *
 * So the global init happens exactly once, in an anchor context that lives
 * as long as the process, and every relay context is created without it:
 * its vhost is created explicitly, asking for client TLS on the vhost only,
 * with one SSL_CTX of ours (system CA store loaded once, shared read-only by
 * all connections; OpenSSL allows SSL_new from one SSL_CTX on many threads).
 * lws never frees a provided SSL_CTX; this one and the anchor stay reachable
 * until exit. Plain ws:// contexts get no TLS at all.
 */
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static struct lws_context *tls_anchor;
static SSL_CTX *tls_client_ctx;

static int anchor_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                           size_t len)
{
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static const struct lws_protocols anchor_protocols[] = {
    {"negsync-tls-anchor", anchor_callback, 0, 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void tls_global_init(void)
{
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = anchor_protocols;
    info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT | LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
    tls_anchor = lws_create_context(&info);
    tls_client_ctx = SSL_CTX_new(TLS_client_method());
    if (tls_client_ctx != NULL && SSL_CTX_set_default_verify_paths(tls_client_ctx) != 1) {
        SSL_CTX_free(tls_client_ctx);
        tls_client_ctx = NULL;
    }
}

/*
 * A context with one vhost made from info; client TLS on it when tls is set.
 * NULL with a reason on failure.
 */
static struct lws_context *ctx_create(const struct lws_context_creation_info *info, int tls,
                                      char *err, size_t errlen)
{
    if (tls) {
        pthread_once(&tls_once, tls_global_init);
        if (tls_anchor == NULL || tls_client_ctx == NULL) {
            set_error(err, errlen, "cannot set up TLS (OpenSSL or the system CA store)");
            return NULL;
        }
    }
    struct lws_context_creation_info ci = *info;
    ci.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
    struct lws_context *ctx = lws_create_context(&ci);
    if (ctx == NULL) {
        set_error(err, errlen, "cannot create a libwebsockets context");
        return NULL;
    }
    struct lws_context_creation_info vi = *info;
    vi.options = tls ? LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT : 0;
    vi.provided_client_ssl_ctx = tls ? tls_client_ctx : NULL;
    if (lws_create_vhost(ctx, &vi) == NULL) {
        lws_context_destroy(ctx);
        set_error(err, errlen, "cannot create a libwebsockets vhost");
        return NULL;
    }
    return ctx;
}

static void ctx_destroy(struct lws_context *ctx)
{
    lws_context_destroy(ctx);
}

static int relay_ensure_context(struct relay *r, char *err, size_t errlen)
{
    if (r->ctx != NULL)
        return 0;
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = ws_protocols;
    info.extensions = r->o.compression ? ws_extensions : NULL;
    info.user = r;
    info.fd_limit_per_thread = 8;
    info.pt_serv_buf_size = 32 * 1024;
    /* lws's own handshake timeouts must never beat ours. */
    info.timeout_secs = (unsigned)(r->o.connect_timeout_ms / 1000 + 30);
    r->ctx = ctx_create(&info, r->u.tls, err, errlen);
    if (r->ctx == NULL)
        return -1;
    return 0;
}

struct relay *relay_new(const char *url, const struct relay_opts *opts, char *err, size_t errlen)
{
    pthread_once(&lws_log_once, lws_log_init);
    struct relay *r = xcalloc(1, sizeof *r);
    if (url_parse(url, &r->u, err, errlen) < 0) {
        free(r);
        return NULL;
    }
    r->url = xstrdup(url);
    r->o = opts ? *opts : relay_opts_default();
    if (r->o.max_message == 0)
        r->o.max_message = 16 * MIB;
    if (r->o.connect_timeout_ms <= 0)
        r->o.connect_timeout_ms = 10000;
    if (r->o.send_timeout_ms <= 0)
        r->o.send_timeout_ms = 30000;
    if (r->o.ping_interval_s < 0)
        r->o.ping_interval_s = 0;
    if (r->o.ping_interval_s > 30000)
        r->o.ping_interval_s = 30000;
    url_host_header(&r->u, r->hosthdr, sizeof r->hosthdr);
    r->retry.secs_since_valid_ping = (uint16_t)r->o.ping_interval_s;
    r->retry.secs_since_valid_hangup =
        (uint16_t)(r->o.ping_interval_s ? 2 * r->o.ping_interval_s : 0);
    r->txbuf = xmalloc(LWS_PRE + TX_CHUNK);
    r->wire_fd = -1;
    atomic_init(&r->interrupted, 0);
    /* Any seed will do; it only decorrelates the retries of different relays. */
    r->rng = (uint64_t)now_ms() ^ ((uint64_t)(uintptr_t)r << 16) ^ 0x9e3779b97f4a7c15ULL;
    return r;
}

const char *relay_url(const struct relay *r)
{
    return r->url;
}

int relay_is_connected(const struct relay *r)
{
    return r->state == CONN_OPEN && r->wsi != NULL;
}

unsigned relay_failures(const struct relay *r)
{
    return r->failures;
}

int64_t relay_backoff_ms(struct relay *r)
{
    /* splitmix64 */
    uint64_t z = (r->rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return relay_backoff_delay_ms(r->failures, z ^ (z >> 31));
}

void relay_interrupt(struct relay *r)
{
    atomic_store(&r->interrupted, 1);
    if (r->ctx != NULL)
        lws_cancel_service(r->ctx);
}

void relay_get_counters(struct relay *r, struct relay_counters *conn, struct relay_counters *total)
{
    if (r->state == CONN_OPEN)
        wire_sample(r, r->wsi);
    if (conn != NULL)
        *conn = r->conn;
    if (total != NULL) {
        total->sent_payload = r->done.sent_payload + r->conn.sent_payload;
        total->recv_payload = r->done.recv_payload + r->conn.recv_payload;
        total->sent_wire = r->done.sent_wire + r->conn.sent_wire;
        total->recv_wire = r->done.recv_wire + r->conn.recv_wire;
        total->sent_msgs = r->done.sent_msgs + r->conn.sent_msgs;
        total->recv_msgs = r->done.recv_msgs + r->conn.recv_msgs;
    }
}

/* Moves the current connection's counters into the totals and starts afresh. */
static void counters_rollover(struct relay *r)
{
    r->done.sent_payload += r->conn.sent_payload;
    r->done.recv_payload += r->conn.recv_payload;
    r->done.sent_wire += r->conn.sent_wire;
    r->done.recv_wire += r->conn.recv_wire;
    r->done.sent_msgs += r->conn.sent_msgs;
    r->done.recv_msgs += r->conn.recv_msgs;
    memset(&r->conn, 0, sizeof r->conn);
    r->wire_fd = -1;
    r->wire_base_sent = r->wire_base_recv = 0;
    r->wire_cur_sent = r->wire_cur_recv = 0;
}

void relay_close(struct relay *r)
{
    if (r->wsi != NULL && r->state == CONN_OPEN && r->ctx != NULL) {
        r->want_close = 1;
        lws_callback_on_writable(r->wsi);
        int rc = service_until(r, r->ctx, now_ms() + CLOSE_WAIT_MS, done_closing);
        if (rc == RELAY_ERR_INTERRUPTED)
            atomic_store(&r->interrupted, 1); /* still owed to the next blocking call */
    }
    conn_drop(r);
    conn_fail(r, RELAY_ERR_CLOSED, "connection closed");
    r->state = CONN_IDLE;
    r->tx_active = r->tx_flushing = 0;
    r->rx.len = 0;
    queue_clear(r);
}

int relay_connect(struct relay *r, int timeout_ms, char *err, size_t errlen)
{
    if (r->wsi != NULL)
        relay_close(r);
    if (timeout_ms <= 0)
        timeout_ms = r->o.connect_timeout_ms;
    if (relay_ensure_context(r, err, errlen) < 0) {
        r->failures++;
        return RELAY_ERR_INTERNAL;
    }
    counters_rollover(r);
    queue_clear(r);
    r->rx.len = 0;
    r->err_code = 0;
    r->err_msg[0] = '\0';
    r->tls_verify_err[0] = '\0';
    r->peer_close_code = 0;
    r->peer_close_reason[0] = '\0';
    r->want_close = 0;
    r->tx_active = r->tx_flushing = 0;
    r->state = CONN_CONNECTING;

    struct lws_client_connect_info i;
    memset(&i, 0, sizeof i);
    i.context = r->ctx;
    i.address = r->u.host;
    i.port = r->u.port;
    i.path = r->u.path;
    i.host = r->hosthdr;
    i.origin = r->hosthdr;
    if (r->u.tls) {
        i.ssl_connection = LCCSCF_USE_SSL;
        if (!r->o.tls_verify)
            i.ssl_connection |= LCCSCF_ALLOW_SELFSIGNED | LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK |
                                LCCSCF_ALLOW_EXPIRED | LCCSCF_ALLOW_INSECURE;
    }
    /* No subprotocol: relays do not use one, and some refuse an unknown one. */
    i.local_protocol_name = ws_protocols[0].name;
    i.alpn = "http/1.1";
    i.retry_and_idle_policy = &r->retry;
    i.pwsi = &r->wsi;
    int64_t deadline = now_ms() + timeout_ms;
    struct lws *w = lws_client_connect_via_info(&i);
    int rc;
    if (w == NULL && r->state == CONN_CONNECTING) {
        /* Refused before any callback: lws 4.1 does DNS right here. */
        r->wsi = NULL;
        r->state = CONN_CLOSED;
        if (r->err_code == 0)
            classify_connect_error(r, "name lookup or socket setup failed");
        rc = r->err_code;
    } else {
        rc = service_until(r, r->ctx, deadline, done_connecting);
        if (rc == RELAY_ERR_TIMEOUT) {
            conn_drop(r);
            r->err_code = 0;
            conn_fail(r, RELAY_ERR_TIMEOUT, "no websocket connection to %s within %d ms",
                      r->hosthdr, timeout_ms);
        } else if (rc == RELAY_ERR_INTERRUPTED || rc == RELAY_ERR_INTERNAL) {
            conn_drop(r);
            r->err_code = 0;
            conn_fail(r, rc, rc == RELAY_ERR_INTERRUPTED ? "interrupted" : "service failed");
        } else if (r->state == CONN_OPEN) {
            r->failures = 0;
            return 0;
        }
        rc = r->err_code ? r->err_code : RELAY_ERR_UNREACHABLE;
        if (!r->err_msg[0])
            snprintf(r->err_msg, sizeof r->err_msg, "connection failed");
    }
    r->failures++;
    set_error(err, errlen, "%s", r->err_msg);
    return rc;
}

int relay_reconnect(struct relay *r, int timeout_ms, char *err, size_t errlen)
{
    int64_t d = relay_backoff_ms(r);
    if (d > 0) {
        if (relay_ensure_context(r, err, errlen) < 0)
            return RELAY_ERR_INTERNAL;
        int rc = service_until(r, r->ctx, now_ms() + d, done_never);
        if (rc == RELAY_ERR_INTERRUPTED) {
            set_error(err, errlen, "interrupted");
            return rc;
        }
    }
    return relay_connect(r, timeout_ms, err, errlen);
}

/* The error for a call on a connection that is not open. */
static int not_open(struct relay *r, char *err, size_t errlen)
{
    if (r->state == CONN_CLOSED && r->err_code != 0) {
        set_error(err, errlen, "%s", r->err_msg);
        return r->err_code == RELAY_ERR_TOO_BIG ? RELAY_ERR_TOO_BIG : RELAY_ERR_CLOSED;
    }
    set_error(err, errlen, "not connected");
    return RELAY_ERR_NOT_CONNECTED;
}

int relay_send(struct relay *r, const char *text, size_t len, char *err, size_t errlen)
{
    if (text == NULL && len > 0) {
        set_error(err, errlen, "no text");
        return RELAY_ERR_INVALID;
    }
    if (r->state != CONN_OPEN || r->wsi == NULL)
        return not_open(r, err, errlen);
    r->tx = text;
    r->tx_len = len;
    r->tx_off = 0;
    r->tx_active = 1;
    r->tx_flushing = 0;
    lws_callback_on_writable(r->wsi);
    int rc = service_until(r, r->ctx, now_ms() + r->o.send_timeout_ms, done_sending);
    r->tx = NULL;
    if (rc == 0 && !r->tx_active)
        return 0;
    if (rc == 0)
        return not_open(r, err, errlen);
    /* A half-sent frame cannot be taken back, so the connection goes. */
    int was_active = r->tx_active;
    r->tx_active = r->tx_flushing = 0;
    if (rc == RELAY_ERR_TIMEOUT) {
        conn_fail(r, RELAY_ERR_TIMEOUT, "relay did not accept %zu bytes within %d ms", len,
                  r->o.send_timeout_ms);
        set_error(err, errlen, "%s", r->err_msg);
    } else {
        conn_fail(r, rc,
                  rc == RELAY_ERR_INTERRUPTED ? "interrupted while sending" : "service failed");
        set_error(err, errlen, "%s", rc == RELAY_ERR_INTERRUPTED ? "interrupted" : r->err_msg);
    }
    if (was_active)
        conn_drop(r);
    return rc;
}

int relay_recv(struct relay *r, int timeout_ms, struct relay_msg **out, char *err, size_t errlen)
{
    *out = NULL;
    if (r->qhead == NULL) {
        if (r->state != CONN_OPEN || r->wsi == NULL || r->ctx == NULL)
            return not_open(r, err, errlen);
        int rc =
            service_until(r, r->ctx, now_ms() + (timeout_ms > 0 ? timeout_ms : 0), done_receiving);
        if (rc == RELAY_ERR_TIMEOUT || rc == RELAY_ERR_INTERRUPTED || rc == RELAY_ERR_INTERNAL) {
            set_error(err, errlen, "%s",
                      rc == RELAY_ERR_TIMEOUT       ? "no message within the timeout"
                      : rc == RELAY_ERR_INTERRUPTED ? "interrupted"
                                                    : "service failed");
            return rc;
        }
        if (r->qhead == NULL)
            return not_open(r, err, errlen);
    }
    *out = queue_pop(r);
    return 0;
}

void relay_free(struct relay *r)
{
    if (r == NULL)
        return;
    relay_close(r);
    if (r->ctx != NULL)
        ctx_destroy(r->ctx);
    queue_clear(r);
    buf_free(&r->rx);
    url_clear(&r->u);
    free(r->txbuf);
    free(r->url);
    free(r);
}

/* ---- NIP-11 ---------------------------------------------------------------- */

void relay_nip11_free(struct relay_nip11 *n)
{
    if (n == NULL)
        return;
    free(n->raw);
    free(n->name);
    free(n->software);
    free(n->version);
    free(n->supported_nips);
    free(n->negentropy);
    free(n);
}

static struct relay_nip11 *nip11_empty(void)
{
    struct relay_nip11 *n = xcalloc(1, sizeof *n);
    n->limitation.max_message_length = -1;
    n->limitation.max_subscriptions = -1;
    n->limitation.max_limit = -1;
    n->limitation.max_filters = -1;
    n->limitation.auth_required = -1;
    n->limitation.payment_required = -1;
    return n;
}

static char *nip11_string(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? dup_json_string(v) : NULL;
}

static int64_t nip11_int(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : -1;
}

static int nip11_bool(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    return json_is_boolean(v) ? json_is_true(v) : -1;
}

struct relay_nip11 *relay_nip11_parse(const char *text, size_t len)
{
    struct relay_nip11 *n = nip11_empty();
    if (text == NULL) {
        snprintf(n->reason, sizeof n->reason, "no document");
        return n;
    }
    if (len > NIP11_MAX) {
        snprintf(n->reason, sizeof n->reason, "document larger than 1 MiB");
        return n;
    }
    n->raw = xmalloc(len + 1);
    memcpy(n->raw, text, len);
    n->raw[len] = '\0';
    n->raw_len = len;
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_ALLOW_NUL, &jerr);
    if (root == NULL) {
        set_error(n->reason, sizeof n->reason, "not JSON: %s (line %d)", jerr.text, jerr.line);
        return n;
    }
    if (!json_is_object(root)) {
        snprintf(n->reason, sizeof n->reason, "not a JSON object");
        json_decref(root);
        return n;
    }
    n->name = nip11_string(root, "name");
    n->software = nip11_string(root, "software");
    n->version = nip11_string(root, "version");
    const json_t *nips = json_object_get(root, "supported_nips");
    if (json_is_array(nips)) {
        n->has_supported_nips = 1;
        size_t cnt = json_array_size(nips);
        n->supported_nips = xreallocarray(NULL, cnt ? cnt : 1, sizeof *n->supported_nips);
        for (size_t i = 0; i < cnt; i++) {
            const json_t *v = json_array_get(nips, i);
            if (json_is_integer(v))
                n->supported_nips[n->n_supported_nips++] = (int64_t)json_integer_value(v);
        }
    }
    const json_t *neg = json_object_get(root, "negentropy");
    if (json_is_integer(neg)) {
        char tmp[32];
        snprintf(tmp, sizeof tmp, "%" JSON_INTEGER_FORMAT, json_integer_value(neg));
        n->negentropy = xstrdup(tmp);
    } else if (json_is_string(neg)) {
        n->negentropy = dup_json_string(neg);
    }
    const json_t *lim = json_object_get(root, "limitation");
    if (json_is_object(lim)) {
        n->limitation.max_message_length = nip11_int(lim, "max_message_length");
        n->limitation.max_subscriptions = nip11_int(lim, "max_subscriptions");
        n->limitation.max_limit = nip11_int(lim, "max_limit");
        n->limitation.max_filters = nip11_int(lim, "max_filters");
        n->limitation.auth_required = nip11_bool(lim, "auth_required");
        n->limitation.payment_required = nip11_bool(lim, "payment_required");
    }
    /*
     * What negsync uses a document for is who the relay is and what it
     * claims: name, software, version, supported_nips, negentropy. An object
     * with none of those correctly typed ({}, or {"name": 5, "software": 1,
     * "supported_nips": "1,77", "description": "..."}) tells us nothing and
     * counts as no NIP-11 rather than an empty row in the cache.
     */
    int usable = n->name || n->software || n->version || n->has_supported_nips || n->negentropy;
    json_decref(root);
    if (!usable) {
        snprintf(n->reason, sizeof n->reason, "no NIP-11 field of the right type");
        free(n->name);
        free(n->software);
        free(n->version);
        free(n->supported_nips);
        free(n->negentropy);
        n->name = n->software = n->version = n->negentropy = NULL;
        n->supported_nips = NULL;
        n->has_supported_nips = 0;
        n->n_supported_nips = 0;
        return n;
    }
    n->present = 1;
    return n;
}

int relay_nip11_lists(const struct relay_nip11 *n, int nip)
{
    if (n == NULL || !n->present)
        return 0;
    for (size_t i = 0; i < n->n_supported_nips; i++)
        if (n->supported_nips[i] == nip)
            return 1;
    return 0;
}

struct nip11_fetch {
    const struct relay_opts *o;
    struct lws *wsi;
    int done;      /* the exchange ended, one way or another */
    int completed; /* the whole body arrived */
    int http_status;
    int too_big;
    int err_code;
    char err_msg[RELAY_ERRLEN];
    char tls_verify_err[160];
    struct buf body;
    const char *host;
    int port;
};

static int nip11_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                          size_t len)
{
    struct lws_context *cx = lws_get_context(wsi);
    struct nip11_fetch *f = cx ? lws_context_user(cx) : NULL;
    if (f == NULL)
        return 0;
    switch (reason) {
    case LWS_CALLBACK_OPENSSL_PERFORM_SERVER_CERT_VERIFICATION:
        return tls_verify_cb(f->tls_verify_err, sizeof f->tls_verify_err, f->o->tls_verify, user,
                             len);
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: {
        const char *why = in ? (const char *)in : "connection failed";
        if (f->tls_verify_err[0]) {
            f->err_code = RELAY_ERR_TLS_CERT;
            snprintf(f->err_msg, sizeof f->err_msg, "TLS certificate verification failed: %s",
                     f->tls_verify_err);
        } else if (strcasestr(why, "ssl") != NULL || strcasestr(why, "tls") != NULL) {
            f->err_code = RELAY_ERR_TLS;
            snprintf(f->err_msg, sizeof f->err_msg, "TLS failed: %s", why);
        } else if (strncmp(why, "HS:", 3) == 0) {
            /* lws reports an HTTP answer it did not like here; it is still an answer. */
            f->err_code = RELAY_ERR_HANDSHAKE;
            snprintf(f->err_msg, sizeof f->err_msg, "HTTP request failed: %s", why);
        } else {
            f->err_code = RELAY_ERR_UNREACHABLE;
            snprintf(f->err_msg, sizeof f->err_msg, "cannot connect to %s port %d: %s", f->host,
                     f->port, why);
        }
        f->done = 1;
        f->wsi = NULL;
        break;
    }
    case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER: {
        unsigned char **p = (unsigned char **)in, *end = (*p) + len;
        static const char accept[] = "application/nostr+json";
        if (lws_add_http_header_by_name(wsi, (const unsigned char *)"accept:",
                                        (const unsigned char *)accept, (int)strlen(accept), p, end))
            return -1;
        break;
    }
    case LWS_CALLBACK_ESTABLISHED_CLIENT_HTTP:
        f->http_status = (int)lws_http_client_http_response(wsi);
        break;
    case LWS_CALLBACK_RECEIVE_CLIENT_HTTP: {
        char buffer[4096 + LWS_PRE];
        char *px = buffer + LWS_PRE;
        int lenx = (int)sizeof buffer - LWS_PRE;
        if (lws_http_client_read(wsi, &px, &lenx) < 0)
            return -1;
        break;
    }
    case LWS_CALLBACK_RECEIVE_CLIENT_HTTP_READ:
        if (f->body.len + len > NIP11_MAX) {
            f->too_big = 1;
            f->done = 1;
            return -1;
        }
        buf_append(&f->body, in, len);
        break;
    case LWS_CALLBACK_COMPLETED_CLIENT_HTTP:
        f->completed = 1;
        f->done = 1;
        break;
    case LWS_CALLBACK_CLOSED_CLIENT_HTTP:
        f->done = 1;
        f->wsi = NULL;
        break;
    default: break;
    }
    return 0;
}

static const struct lws_protocols nip11_protocols[] = {
    {"negsync-nip11", nip11_callback, 0, 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static int nip11_service(struct lws_context *ctx, struct nip11_fetch *f, int64_t deadline)
{
    lws_sorted_usec_list_t sul;
    memset(&sul, 0, sizeof sul);
    while (!f->done) {
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            lws_sul_cancel(&sul);
            return RELAY_ERR_TIMEOUT;
        }
        lws_sul_schedule(ctx, 0, &sul, sul_wake, (lws_usec_t)left * LWS_US_PER_MS);
        if (lws_service(ctx, 0) < 0) {
            lws_sul_cancel(&sul);
            return RELAY_ERR_INTERNAL;
        }
    }
    lws_sul_cancel(&sul);
    return 0;
}

int relay_fetch_nip11(const char *url, const struct relay_opts *opts, int timeout_ms,
                      struct relay_nip11 **out, char *err, size_t errlen)
{
    pthread_once(&lws_log_once, lws_log_init);
    *out = NULL;
    struct relay_opts o = opts ? *opts : relay_opts_default();
    struct relay_url u;
    if (url_parse(url, &u, err, errlen) < 0)
        return RELAY_ERR_INVALID;
    if (timeout_ms <= 0)
        timeout_ms = o.connect_timeout_ms > 0 ? o.connect_timeout_ms : 10000;
    char hosthdr[300];
    url_host_header(&u, hosthdr, sizeof hosthdr);

    struct nip11_fetch f;
    memset(&f, 0, sizeof f);
    f.o = &o;
    f.host = u.host;
    f.port = u.port;

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = nip11_protocols;
    info.user = &f;
    info.fd_limit_per_thread = 8;
    info.timeout_secs = (unsigned)(timeout_ms / 1000 + 30);
    struct lws_context *ctx = ctx_create(&info, u.tls, err, errlen);
    if (ctx == NULL) {
        url_clear(&u);
        return RELAY_ERR_INTERNAL;
    }

    struct lws_client_connect_info i;
    memset(&i, 0, sizeof i);
    i.context = ctx;
    i.address = u.host;
    i.port = u.port;
    i.path = u.path;
    i.host = hosthdr;
    i.origin = hosthdr;
    i.method = "GET";
    i.protocol = nip11_protocols[0].name;
    i.alpn = "http/1.1";
    if (u.tls) {
        i.ssl_connection = LCCSCF_USE_SSL;
        if (!o.tls_verify)
            i.ssl_connection |= LCCSCF_ALLOW_SELFSIGNED | LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK |
                                LCCSCF_ALLOW_EXPIRED | LCCSCF_ALLOW_INSECURE;
    }
    i.pwsi = &f.wsi;
    int64_t deadline = now_ms() + timeout_ms;
    int rc = 0;
    if (lws_client_connect_via_info(&i) == NULL && !f.done) {
        f.err_code = RELAY_ERR_UNREACHABLE;
        set_error(f.err_msg, sizeof f.err_msg,
                  "cannot connect to %s port %d: name lookup or "
                  "socket setup failed",
                  u.host, u.port);
        f.done = 1;
    }
    rc = nip11_service(ctx, &f, deadline);
    ctx_destroy(ctx);

    if (rc == RELAY_ERR_TIMEOUT && f.http_status == 0) {
        set_error(err, errlen, "no NIP-11 answer from %s within %d ms", hosthdr, timeout_ms);
    } else if (rc == RELAY_ERR_INTERNAL) {
        set_error(err, errlen, "service failed");
    } else if (f.err_code != 0 && f.err_code != RELAY_ERR_HANDSHAKE && f.http_status == 0) {
        rc = f.err_code;
        set_error(err, errlen, "%s", f.err_msg);
    } else {
        /* The server answered: whatever it said, the result is a document or "no NIP-11". */
        struct relay_nip11 *n;
        if (f.too_big) {
            n = nip11_empty();
            snprintf(n->reason, sizeof n->reason, "document larger than 1 MiB");
        } else if (f.http_status != 200) {
            n = nip11_empty();
            if (f.http_status)
                snprintf(n->reason, sizeof n->reason, "HTTP status %d", f.http_status);
            else
                set_error(n->reason, sizeof n->reason, "%s",
                          f.err_msg[0] ? f.err_msg : "no HTTP answer");
            if (f.body.len) {
                n->raw = xmalloc(f.body.len + 1);
                memcpy(n->raw, f.body.data, f.body.len);
                n->raw[f.body.len] = '\0';
                n->raw_len = f.body.len;
            }
        } else if (!f.completed && rc == RELAY_ERR_TIMEOUT) {
            n = nip11_empty();
            snprintf(n->reason, sizeof n->reason, "document not complete within %d ms", timeout_ms);
        } else {
            n = relay_nip11_parse((const char *)f.body.data, f.body.len);
            if (f.body.data == NULL)
                snprintf(n->reason, sizeof n->reason, "empty document");
        }
        n->http_status = f.http_status;
        *out = n;
        rc = 0;
    }
    buf_free(&f.body);
    url_clear(&u);
    return rc;
}
