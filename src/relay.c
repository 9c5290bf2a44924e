/*
 * relay: one websocket connection to one Nostr relay (our own RFC 6455
 * client over net.c, permessage-deflate by ws.c), and relay URLs. Nostr
 * message parsing lives in relay-msg.c, the NIP-11 document in relay-nip11.c.
 *
 * Threading. A struct relay is used by one thread at a time; its calls are
 * synchronous. relay_connect / relay_send / relay_recv / relay_close each
 * run one loop (pump) on the calling thread: write what is queued, read what
 * is there, feed it to the websocket parser, queue the complete messages,
 * and poll() the socket and the relay's interrupt pipe until the call's
 * condition holds or its deadline passes. Every pass of that loop checks the
 * deadline and the interrupt, and reads at most READ_BUDGET bytes, so no
 * relay, however it floods or stalls, can keep a call past its deadline or
 * deaf to relay_interrupt, which any thread may call (it sets a flag and
 * writes a byte to the pipe).
 *
 * Memory. One incoming message is capped at max_message (inflated or not:
 * ws.c never holds more), the messages received but not yet taken by
 * relay_recv at max_queued, and what we queue to send is one message and a
 * few control frames. Past a cap the connection fails with a clear error;
 * nothing grows.
 *
 * Wire bytes are read from the kernel (TCP_INFO and the send queue, see
 * net_wire): HTTP upgrade, TLS records, websocket framing and masks,
 * compression, pings and the close handshake included; TCP/IP headers not.
 * They are sampled after every pass of the loop and just before the socket
 * closes. Linux only; elsewhere the wire counters stay 0.
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

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include "net.h"
#include "relay-int.h"
#include "relay.h"
#include "util.h"
#include "ws.h"

#define RX_CHUNK            (64 * 1024)
#define READ_BUDGET         (4 * RX_CHUNK) /* per pass of the loop */
#define CLOSE_WAIT_MS       1000
#define MAX_QUEUED          (64 * MIB)
#define MAX_PENDING_CONTROL 4096 /* bytes of pongs we queue at most */

/* ---- small helpers -------------------------------------------------------- */

void log_excerpt(const char *text, size_t len, char *out, size_t outlen)
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
    o.max_queued = MAX_QUEUED;
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

void url_clear(struct relay_url *u)
{
    free(u->path);
    u->path = NULL;
}

/*
 * Splits a ws:// or wss:// URL (see relay-int.h). Paranoid: the host and path end up in an
 * HTTP request line and headers, so any byte at or below space, DEL, or a
 * non-ASCII byte is refused rather than escaped.
 */
int url_parse(const char *url, struct relay_url *u, char *err, size_t errlen)
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

void url_host_header(const struct relay_url *u, char *out, size_t outlen)
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
    /*
     * The one key form of a relay URL (the config, the capability cache, the
     * database and the engine all use it): "wss://h/", "wss://h" and
     * "wss://h//" name the same relay, as do "wss://h/x/" and "wss://h/x", and
     * "wss://h/x/?a=1" and "wss://h/x?a=1": trailing slashes of the path go,
     * the query stays as written.
     */
    size_t qoff = strcspn(u.path, "?"), plen = qoff;
    while (plen > 0 && u.path[plen - 1] == '/')
        plen--;
    const char *scheme = u.tls ? "wss://" : "ws://";
    size_t sl = strlen(scheme), hl = strlen(hosthdr), ql = strlen(u.path + qoff);
    char *out = xmalloc(sl + hl + plen + ql + 1);
    memcpy(out, scheme, sl);
    memcpy(out + sl, hosthdr, hl);
    memcpy(out + sl + hl, u.path, plen);
    memcpy(out + sl + hl + plen, u.path + qoff, ql + 1);
    url_clear(&u);
    return out;
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

    struct net_conn *nc;
    enum conn_state state;
    int err_code; /* why the connection failed or ended */
    char err_msg[RELAY_ERRLEN];
    int peer_close_code;
    char peer_close_reason[124];
    int want_close; /* relay_close sent a close frame */

    struct ws_rx rx;
    struct ws_tx tx;
    struct buf out; /* frames to write; out_off of them are written */
    size_t out_off;
    uint64_t out_written; /* bytes of frames written on this connection */
    int send_active;      /* relay_send's message is not all written yet */
    uint64_t send_until;  /* ... until out_written reaches this */
    size_t send_len;
    uint8_t *rbuf; /* RX_CHUNK */

    struct msg_node *qhead, *qtail;
    size_t queued; /* raw bytes of the queued messages */

    int64_t last_rx_ms; /* keepalive: when the relay last sent anything */
    int ping_out;       /* a ping went out after that */

    int intr_pipe[2];
    atomic_int interrupted;

    struct relay_counters conn, done; /* done: all previous connections */
    uint64_t wire_sent, wire_recv;    /* the current socket's last sample */

    unsigned failures;
    uint64_t rng;
    uint64_t conn_id; /* relay_connection_id; 0 before the first connection */
};

/* Connections opened so far by every struct relay of the process (relay_connection_id). */
static atomic_uint_fast64_t relay_conn_seq;

static void relay_log(struct relay *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

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
 * -v: one line per message in (<) and out (>), its type and size; -vv also
 * the text, cut. The type of an outgoing message is read off its start.
 */
static void trace(struct relay *r, char dir, const char *type, const char *text, size_t len)
{
    if (r->o.trace <= 0)
        return;
    char t[24];
    if (type == NULL) {
        size_t i = 0;
        const char *p = memchr(text, '"', len < 16 ? len : 16);
        if (p != NULL)
            for (p++; p < text + len && *p != '"' && i < sizeof t - 1; p++)
                t[i++] = *p;
        t[i] = '\0';
        log_excerpt(t, i, t, sizeof t);
        type = t;
    }
    if (r->o.trace == 1) {
        relay_log(r, "%c %s %zu bytes", dir, type, len);
        return;
    }
    char ex[LOG_TRUNCATE + 8];
    log_excerpt(text, len, ex, sizeof ex);
    relay_log(r, "%c %s %zu bytes: %s", dir, type, len, ex);
}

static const char *msg_type_name(enum relay_msg_type t)
{
    static const char *const names[] = {"EVENT",   "EOSE",    "OK",        "NOTICE", "CLOSED",
                                        "NEG-MSG", "NEG-ERR", "NEG-CLOSE", "AUTH",   "COUNT"};
    return (size_t)t < sizeof names / sizeof names[0] ? names[t] : "?";
}

/* A sample of the socket's wire counters; they never go down. */
static void wire_sample(struct relay *r)
{
    uint64_t s, v;
    if (r->nc == NULL || net_wire(r->nc, &s, &v) < 0)
        return;
    if (s > r->wire_sent)
        r->wire_sent = s;
    if (v > r->wire_recv)
        r->wire_recv = v;
    r->conn.sent_wire = r->wire_sent;
    r->conn.recv_wire = r->wire_recv;
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
    r->queued += m->raw_len;
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
    r->queued -= m->raw_len;
    return m;
}

static void queue_clear(struct relay *r)
{
    struct relay_msg *m;
    while ((m = queue_pop(r)) != NULL)
        relay_msg_free(m);
    r->queued = 0;
}

/* Records why the connection ended, unless an earlier, more precise reason exists. */
static void conn_fail(struct relay *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

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

/* Tears the connection down at once: the last wire sample, then the socket. */
static void conn_drop(struct relay *r)
{
    if (r->nc != NULL) {
        wire_sample(r);
        net_close(r->nc);
        r->nc = NULL;
    }
    ws_rx_free(&r->rx);
    ws_tx_free(&r->tx);
    buf_free(&r->out);
    r->out_off = 0;
    r->send_active = 0;
    if (r->state == CONN_OPEN || r->state == CONN_CONNECTING)
        r->state = CONN_CLOSED;
}

/* Writes what the socket takes now; -1 when the connection failed (and is dropped). */
static int flush_out(struct relay *r)
{
    while (r->nc != NULL && r->out_off < r->out.len) {
        ssize_t w = net_write(r->nc, r->out.data + r->out_off, r->out.len - r->out_off);
        if (w == NET_AGAIN)
            break;
        if (w < 0) {
            conn_fail(r, RELAY_ERR_CLOSED, "write to the relay failed: %s", net_error_text(r->nc));
            conn_drop(r);
            return -1;
        }
        r->out_off += (size_t)w;
        r->out_written += (uint64_t)w;
    }
    if (r->out_off == r->out.len)
        r->out.len = r->out_off = 0;
    if (r->send_active && r->out_written >= r->send_until) {
        r->send_active = 0;
        r->conn.sent_msgs++;
        r->conn.sent_payload += r->send_len;
    }
    return 0;
}

/* Queues a control frame, unless too many are waiting already (a ping flood). */
static void queue_control(struct relay *r, int opcode, const void *p, size_t n)
{
    if (r->out.len - r->out_off > MAX_PENDING_CONTROL && !r->send_active)
        return;
    ws_tx_frame(&r->tx, &r->out, opcode, p, n);
}

/* Fails the connection on our side: a close frame with code if it can go now, then the socket. */
static void conn_abort(struct relay *r, int err_code, int close_code, const char *why)
{
    conn_fail(r, err_code, "%s", why);
    if (r->nc != NULL && close_code) {
        uint8_t cp[125];
        size_t cl = ws_close_payload(close_code, why, cp);
        ws_tx_frame(&r->tx, &r->out, WS_OP_CLOSE, cp, cl);
        flush_out(r);
    }
    conn_drop(r);
}

static void message_done(struct relay *r, const struct ws_event *ev)
{
    r->conn.recv_msgs++;
    r->conn.recv_payload += ev->len;
    char err[160];
    struct relay_msg *m = NULL;
    if (ev->binary) {
        snprintf(err, sizeof err, "binary websocket message");
    } else if (relay_msg_parse((const char *)ev->data, ev->len, &m, err, sizeof err) == 0) {
        trace(r, '<', msg_type_name(m->type), (const char *)ev->data, ev->len);
        queue_push(r, m);
        if (r->queued > r->o.max_queued) {
            char sz[32], why[160];
            format_size(r->o.max_queued, sz, sizeof sz);
            snprintf(why, sizeof why, "more than %s of messages arrived unread", sz);
            relay_log(r, "closing: %s", why);
            conn_abort(r, RELAY_ERR_TOO_BIG, WS_CLOSE_TOO_BIG, why);
        }
        return;
    }
    char ex[LOG_TRUNCATE + 8];
    log_excerpt((const char *)ev->data, ev->len, ex, sizeof ex);
    relay_log(r, "skipped message (%s): %s", err, ex);
}

/* Feeds bytes read from the socket to the websocket parser; -1 once the connection is gone. */
static int feed(struct relay *r, const uint8_t *p, size_t n)
{
    size_t off = 0;
    while (r->nc != NULL && off < n) {
        struct ws_event ev;
        size_t used = ws_rx_feed(&r->rx, p + off, n - off, &ev);
        off += used;
        switch (ev.type) {
        case WS_EV_NONE:
            if (used == 0)
                return 0;
            break;
        case WS_EV_MESSAGE: message_done(r, &ev); break;
        case WS_EV_PING:
            trace(r, '<', "ping", (const char *)ev.data, ev.len);
            queue_control(r, WS_OP_PONG, ev.data, ev.len);
            break;
        case WS_EV_PONG: break;
        case WS_EV_CLOSE:
            r->peer_close_code = ev.close_code;
            log_excerpt((const char *)ev.data, ev.len, r->peer_close_reason,
                        sizeof r->peer_close_reason);
            if (r->want_close) {
                conn_fail(r, RELAY_ERR_CLOSED, "connection closed");
            } else {
                conn_fail(r, RELAY_ERR_CLOSED, "relay closed the connection (code %d%s%s)",
                          r->peer_close_code, r->peer_close_reason[0] ? ": " : "",
                          r->peer_close_reason);
                /* Echo the close, if the socket takes it now. */
                uint8_t cp[125];
                ws_tx_frame(&r->tx, &r->out, WS_OP_CLOSE, cp,
                            ev.close_code == WS_CLOSE_NO_STATUS
                                ? 0
                                : ws_close_payload(ev.close_code, NULL, cp));
                flush_out(r);
            }
            conn_drop(r);
            return -1;
        case WS_EV_ERROR:
            relay_log(r, "closing: %s", r->rx.err);
            conn_abort(r, ev.error == WS_ERR_TOO_BIG ? RELAY_ERR_TOO_BIG : RELAY_ERR_CLOSED,
                       ev.close_code, r->rx.err);
            return -1;
        }
    }
    return r->nc != NULL ? 0 : -1;
}

/*
 * Reads what the socket has, up to READ_BUDGET bytes. 1 if anything came,
 * 0 if nothing did, -1 once the connection is gone.
 */
static int read_some(struct relay *r)
{
    size_t got = 0;
    while (r->nc != NULL && got < READ_BUDGET) {
        ssize_t n = net_read(r->nc, r->rbuf, RX_CHUNK);
        if (n == NET_AGAIN)
            break;
        if (n == 0) {
            conn_fail(r, RELAY_ERR_CLOSED, "connection lost (closed without a close frame)");
            conn_drop(r);
            return -1;
        }
        if (n < 0) {
            conn_fail(r, RELAY_ERR_CLOSED, "connection lost: %s", net_error_text(r->nc));
            conn_drop(r);
            return -1;
        }
        got += (size_t)n;
        r->last_rx_ms = net_now_ms();
        r->ping_out = 0;
        if (feed(r, r->rbuf, (size_t)n) < 0)
            return -1;
        if ((size_t)n < RX_CHUNK && !net_pending(r->nc))
            break;
    }
    return got > 0;
}

/*
 * Keepalive: a ping after ping_interval_s without a byte from the relay, and
 * the connection fails after twice that. Returns when to look again.
 */
static int64_t keepalive(struct relay *r, int64_t now)
{
    if (r->o.ping_interval_s <= 0 || r->state != CONN_OPEN)
        return INT64_MAX;
    int64_t iv = (int64_t)r->o.ping_interval_s * 1000;
    if (now - r->last_rx_ms >= 2 * iv) {
        char why[96];
        snprintf(why, sizeof why, "no answer to a ping within %d s", r->o.ping_interval_s);
        relay_log(r, "closing: %s", why);
        conn_abort(r, RELAY_ERR_CLOSED, WS_CLOSE_NORMAL, why);
        return INT64_MAX;
    }
    if (!r->ping_out && now - r->last_rx_ms >= iv) {
        queue_control(r, WS_OP_PING, "negsync", 7);
        r->ping_out = 1;
    }
    return r->last_rx_ms + (r->ping_out ? 2 * iv : iv);
}

static void drain_interrupt(struct relay *r)
{
    char b[64];
    while (read(r->intr_pipe[0], b, sizeof b) > 0)
        ;
}

/*
 * Services the connection until done(r) holds, the deadline passes or
 * relay_interrupt is called. With a deadline already due it still makes one
 * non-blocking pass, so "timeout 0" picks up what is readable now.
 */
static int pump(struct relay *r, int64_t deadline, int (*done)(const struct relay *))
{
    int last_pass = 0;
    struct net_interrupt intr = {r->intr_pipe[0], &r->interrupted, r->o.cancel};
    for (;;) {
        if (done(r))
            return 0;
        if (atomic_exchange(&r->interrupted, 0)) {
            drain_interrupt(r);
            return RELAY_ERR_INTERRUPTED;
        }
        if (r->o.cancel != NULL && atomic_load(r->o.cancel))
            return RELAY_ERR_INTERRUPTED;
        if (r->nc == NULL)
            return 0;
        int64_t now = net_now_ms();
        int64_t wake = keepalive(r, now);
        int progress = 0;
        if (r->nc != NULL && flush_out(r) == 0)
            progress = read_some(r) > 0;
        wire_sample(r);
        if (done(r))
            return 0;
        if (r->nc == NULL)
            continue;
        if (net_now_ms() >= deadline) {
            if (last_pass)
                return RELAY_ERR_TIMEOUT;
            last_pass = 1;
            continue;
        }
        if (progress || net_pending(r->nc))
            continue;
        short ev = POLLIN;
        if (r->out_off < r->out.len || net_wants(r->nc, 1) == POLLOUT)
            ev |= POLLOUT;
        int w = net_wait(net_fd(r->nc), ev, wake < deadline ? wake : deadline, &intr);
        if (w == NET_ERR_INTERNAL)
            return RELAY_ERR_INTERNAL;
    }
}

static int done_sending(const struct relay *r)
{
    return !r->send_active || r->state != CONN_OPEN;
}

static int done_receiving(const struct relay *r)
{
    return r->qhead != NULL || r->state != CONN_OPEN;
}

static int done_closing(const struct relay *r)
{
    return r->nc == NULL;
}

struct relay *relay_new(const char *url, const struct relay_opts *opts, char *err, size_t errlen)
{
    struct relay *r = xcalloc(1, sizeof *r);
    if (url_parse(url, &r->u, err, errlen) < 0) {
        free(r);
        return NULL;
    }
    if (pipe2(r->intr_pipe, O_NONBLOCK | O_CLOEXEC) < 0) {
        set_error(err, errlen, "cannot make a pipe: %s", strerror(errno));
        url_clear(&r->u);
        free(r);
        return NULL;
    }
    r->url = xstrdup(url);
    r->o = opts ? *opts : relay_opts_default();
    if (r->o.max_message == 0)
        r->o.max_message = 16 * MIB;
    if (r->o.max_queued == 0)
        r->o.max_queued = MAX_QUEUED;
    if (r->o.connect_timeout_ms <= 0)
        r->o.connect_timeout_ms = 10000;
    if (r->o.send_timeout_ms <= 0)
        r->o.send_timeout_ms = 30000;
    if (r->o.ping_interval_s < 0)
        r->o.ping_interval_s = 0;
    if (r->o.ping_interval_s > 30000)
        r->o.ping_interval_s = 30000;
    url_host_header(&r->u, r->hosthdr, sizeof r->hosthdr);
    r->rbuf = xmalloc(RX_CHUNK);
    atomic_init(&r->interrupted, 0);
    /* Any seed will do; it only decorrelates the retries of different relays. */
    r->rng = (uint64_t)net_now_ms() ^ ((uint64_t)(uintptr_t)r << 16) ^ 0x9e3779b97f4a7c15ULL;
    return r;
}

const char *relay_url(const struct relay *r)
{
    return r->url;
}

int relay_is_connected(const struct relay *r)
{
    return r->state == CONN_OPEN && r->nc != NULL;
}

unsigned relay_failures(const struct relay *r)
{
    return r->failures;
}

uint64_t relay_connection_id(const struct relay *r)
{
    return r->conn_id;
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
    ssize_t w = write(r->intr_pipe[1], "x", 1);
    (void)w; /* a full pipe already wakes the poll */
}

void relay_get_counters(struct relay *r, struct relay_counters *conn, struct relay_counters *total)
{
    wire_sample(r);
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
    r->wire_sent = r->wire_recv = 0;
}

void relay_close(struct relay *r)
{
    if (r->nc != NULL && r->state == CONN_OPEN) {
        r->want_close = 1;
        uint8_t cp[125];
        size_t cl = ws_close_payload(WS_CLOSE_NORMAL, "bye", cp);
        ws_tx_frame(&r->tx, &r->out, WS_OP_CLOSE, cp, cl);
        int rc = pump(r, net_now_ms() + CLOSE_WAIT_MS, done_closing);
        if (rc == RELAY_ERR_INTERRUPTED)
            atomic_store(&r->interrupted, 1); /* still owed to the next blocking call */
    }
    conn_drop(r);
    conn_fail(r, RELAY_ERR_CLOSED, "connection closed");
    r->state = CONN_IDLE;
    queue_clear(r);
}

/*
 * The websocket upgrade over a fresh connection: our request, the server's
 * 101 with the right accept key, and the extension it chose. Bytes that came
 * after the head are the first frames. 0, or a relay error with err set.
 */
static int ws_upgrade(struct relay *r, int64_t deadline, char *err, size_t errlen)
{
    struct net_interrupt intr = {r->intr_pipe[0], &r->interrupted, r->o.cancel};
    char key[25], want[29];
    ws_make_key(key);
    ws_accept_for(key, want);
    char req[2048];
    int n =
        snprintf(req, sizeof req,
                 "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                 "Sec-WebSocket-Version: 13\r\n%s%s%sUser-Agent: " RELAY_USER_AGENT "\r\n\r\n",
                 r->u.path, r->hosthdr, key, r->o.compression ? "Sec-WebSocket-Extensions: " : "",
                 r->o.compression ? WS_PMD_OFFER : "", r->o.compression ? "\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof req) {
        set_error(err, errlen, "URL path too long");
        return RELAY_ERR_INVALID;
    }
    int rc = net_write_all(r->nc, req, (size_t)n, deadline, &intr, err, errlen);
    if (rc < 0)
        return rc == NET_ERR_UNREACHABLE ? RELAY_ERR_HANDSHAKE : rc;
    struct buf in = {0};
    long end = 0;
    while (end == 0) {
        buf_reserve(&in, 4096);
        ssize_t got = net_read_wait(r->nc, in.data + in.len, 4096, deadline, &intr, err, errlen);
        if (got <= 0) {
            buf_free(&in);
            if (got == 0) {
                set_error(err, errlen,
                          "websocket handshake failed: connection closed before an answer");
                return RELAY_ERR_HANDSHAKE;
            }
            return got == NET_ERR_UNREACHABLE ? RELAY_ERR_HANDSHAKE : (int)got;
        }
        in.len += (size_t)got;
        end = http_head_end(in.data, in.len);
    }
    if (end < 0) {
        buf_free(&in);
        set_error(err, errlen, "websocket handshake failed: HTTP answer head too long");
        return RELAY_ERR_HANDSHAKE;
    }
    struct http_head h;
    char why[160] = "";
    rc = RELAY_ERR_HANDSHAKE;
    if (http_head_parse((const char *)in.data, (size_t)end, &h, why, sizeof why) < 0) {
        set_error(err, errlen, "websocket handshake failed: %s", why);
    } else if (h.status != 101) {
        set_error(err, errlen, "websocket handshake failed: HTTP status %d", h.status);
    } else if (!http_token_in(http_head_get(&h, "upgrade"), "websocket") ||
               !http_token_in(http_head_get(&h, "connection"), "upgrade")) {
        set_error(err, errlen, "websocket handshake failed: no websocket upgrade in the answer");
    } else if (http_head_get(&h, "sec-websocket-accept") == NULL ||
               strcmp(http_head_get(&h, "sec-websocket-accept"), want) != 0) {
        set_error(err, errlen, "websocket handshake failed: wrong Sec-WebSocket-Accept");
    } else {
        struct ws_pmd pmd;
        if (ws_pmd_parse(http_head_get(&h, "sec-websocket-extensions"), r->o.compression, &pmd, why,
                         sizeof why) < 0) {
            set_error(err, errlen, "websocket handshake failed: %s", why);
        } else {
            ws_rx_init(&r->rx, r->o.max_message, &pmd);
            ws_tx_init(&r->tx, &pmd);
            r->state = CONN_OPEN;
            r->last_rx_ms = net_now_ms();
            r->ping_out = 0;
            rc = 0;
            if (pmd.on && r->o.trace > 0)
                relay_log(r, "permessage-deflate:%s%s server window %d, ours %d",
                          pmd.server_no_context_takeover ? " server_no_context_takeover" : "",
                          pmd.client_no_context_takeover ? " client_no_context_takeover" : "",
                          pmd.server_max_window_bits, pmd.client_max_window_bits);
        }
    }
    http_head_free(&h);
    if (rc == 0 && in.len > (size_t)end)
        feed(r, in.data + end, in.len - (size_t)end);
    buf_free(&in);
    return rc;
}

int relay_connect(struct relay *r, int timeout_ms, char *err, size_t errlen)
{
    if (r->nc != NULL)
        relay_close(r);
    if (timeout_ms <= 0)
        timeout_ms = r->o.connect_timeout_ms;
    counters_rollover(r);
    queue_clear(r);
    r->err_code = 0;
    r->err_msg[0] = '\0';
    r->peer_close_code = 0;
    r->peer_close_reason[0] = '\0';
    r->want_close = 0;
    r->send_active = 0;
    r->out_written = 0;
    r->state = CONN_CONNECTING;
    int64_t deadline = net_now_ms() + timeout_ms;
    struct net_target t = {r->u.host, r->u.port, r->u.tls, r->o.tls_verify};
    struct net_interrupt intr = {r->intr_pipe[0], &r->interrupted, r->o.cancel};
    char why[RELAY_ERRLEN + 128] = "";
    int rc = net_connect(&t, deadline, &intr, &r->nc, why, sizeof why);
    if (rc == 0) {
        wire_sample(r);
        rc = ws_upgrade(r, deadline, why, sizeof why);
    }
    if (rc == 0) {
        /*
         * Connected, even if frames that came with the answer ended the
         * connection already: the next relay_recv reports that.
         */
        r->failures = 0;
        r->conn_id = atomic_fetch_add(&relay_conn_seq, 1) + 1;
        return 0;
    }
    if (rc == RELAY_ERR_TIMEOUT)
        snprintf(why, sizeof why, "no websocket connection to %s within %d ms", r->hosthdr,
                 timeout_ms);
    if (rc == RELAY_ERR_INTERRUPTED)
        atomic_store(&r->interrupted, 0), drain_interrupt(r);
    conn_drop(r);
    r->err_code = 0;
    conn_fail(r, rc, "%s", why[0] ? why : "connection failed");
    r->state = CONN_CLOSED;
    r->failures++;
    set_error(err, errlen, "%s", r->err_msg);
    return rc;
}

int relay_reconnect(struct relay *r, int timeout_ms, char *err, size_t errlen)
{
    int64_t d = relay_backoff_ms(r);
    if (d > 0) {
        struct net_interrupt intr = {r->intr_pipe[0], &r->interrupted, r->o.cancel};
        int w = net_wait(-1, 0, net_now_ms() + d, &intr);
        if (w == NET_ERR_INTERRUPTED || atomic_load(&r->interrupted) ||
            (r->o.cancel != NULL && atomic_load(r->o.cancel))) {
            atomic_store(&r->interrupted, 0);
            drain_interrupt(r);
            set_error(err, errlen, "interrupted");
            return RELAY_ERR_INTERRUPTED;
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
    if (r->state != CONN_OPEN || r->nc == NULL)
        return not_open(r, err, errlen);
    trace(r, '>', NULL, text, len);
    ws_tx_frame(&r->tx, &r->out, WS_OP_TEXT, text, len);
    r->send_active = 1;
    r->send_until = r->out_written + (r->out.len - r->out_off);
    r->send_len = len;
    int rc = pump(r, net_now_ms() + r->o.send_timeout_ms, done_sending);
    if (rc == 0 && !r->send_active && r->state == CONN_OPEN)
        return 0;
    if (rc == 0 && !r->send_active && r->out_written >= r->send_until)
        return 0; /* all of it went out; the connection ended after */
    if (rc == 0)
        return not_open(r, err, errlen);
    /* A half-sent frame cannot be taken back, so the connection goes. */
    if (rc == RELAY_ERR_TIMEOUT) {
        conn_fail(r, RELAY_ERR_TIMEOUT, "relay did not accept %zu bytes within %d ms", len,
                  r->o.send_timeout_ms);
        set_error(err, errlen, "%s", r->err_msg);
    } else {
        conn_fail(r, rc,
                  rc == RELAY_ERR_INTERRUPTED ? "interrupted while sending" : "service failed");
        set_error(err, errlen, "%s", rc == RELAY_ERR_INTERRUPTED ? "interrupted" : r->err_msg);
    }
    if (r->send_active)
        conn_drop(r);
    r->send_active = 0;
    return rc;
}

int relay_recv(struct relay *r, int timeout_ms, struct relay_msg **out, char *err, size_t errlen)
{
    *out = NULL;
    if (r->qhead == NULL) {
        if (r->state != CONN_OPEN || r->nc == NULL)
            return not_open(r, err, errlen);
        int rc = pump(r, net_now_ms() + (timeout_ms > 0 ? timeout_ms : 0), done_receiving);
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
    queue_clear(r);
    close(r->intr_pipe[0]);
    close(r->intr_pipe[1]);
    url_clear(&r->u);
    free(r->rbuf);
    free(r->url);
    free(r);
}
