/*
 * conn.c — the test relay's side of libwebsockets: one protocol that serves
 * both the websocket (Nostr messages) and plain HTTP (the NIP-11 document).
 *
 * Outgoing messages are queued per connection and written one per
 * LWS_CALLBACK_SERVER_WRITEABLE, the only place the relay writes to a socket.
 * The queue is where the transport-level fault modes live: --delay-ms holds a
 * message until its due time (an lws timer wakes the connection, nothing
 * sleeps), --drop-after closes after K messages, and --garbage garbles some
 * replies on their way in. Counters are taken when bytes are actually written,
 * so --stats-file reports what went over the wire, not what was queued.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <libwebsockets.h>

#include "testrelay.h"
#include "util.h"

static const char *const type_names[TR_NTYPES] = {
    [TR_T_EVENT] = "EVENT",     [TR_T_REQ] = "REQ",
    [TR_T_CLOSE] = "CLOSE",     [TR_T_NEG_OPEN] = "NEG-OPEN",
    [TR_T_NEG_MSG] = "NEG-MSG", [TR_T_NEG_CLOSE] = "NEG-CLOSE",
    [TR_T_OK] = "OK",           [TR_T_EOSE] = "EOSE",
    [TR_T_CLOSED] = "CLOSED",   [TR_T_NOTICE] = "NOTICE",
    [TR_T_NEG_ERR] = "NEG-ERR", [TR_T_AUTH] = "AUTH",
    [TR_T_COUNT] = "COUNT",     [TR_T_OTHER] = "other",
    [TR_T_INVALID] = "invalid",
};

enum tr_type tr_type_from_name(const char *name)
{
    for (int t = 0; t < TR_T_OTHER; t++) {
        if (strcmp(name, type_names[t]) == 0)
            return (enum tr_type)t;
    }
    return TR_T_OTHER;
}

const char *tr_type_name(enum tr_type t)
{
    return (unsigned)t < TR_NTYPES ? type_names[t] : "?";
}

/* splitmix64: tiny, seedable, and good enough to pick which replies to spoil. */
uint64_t tr_rng_next(struct tr_server *srv)
{
    uint64_t z = (srv->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

int tr_rng_chance(struct tr_server *srv, double p)
{
    if (p <= 0)
        return 0;
    return (double)(tr_rng_next(srv) >> 11) * 0x1.0p-53 < p;
}

static void conn_log(const struct tr_conn *c, const char *dir, const char *text, size_t len)
{
    if (!c->srv->cfg->verbose)
        return;
    fprintf(stderr, "testrelay: conn %llu %s %.*s%s\n", (unsigned long long)c->id, dir,
            (int)(len > 300 ? 300 : len), text, len > 300 ? "..." : "");
}

static void conn_enqueue(struct tr_conn *c, enum tr_type type, const char *text, size_t len,
                         lws_usec_t due)
{
    struct tr_msg *m = xmalloc(sizeof *m + LWS_PRE + len);

    m->next = NULL;
    m->due = due;
    m->type = type;
    m->len = len;
    memcpy(m->buf + LWS_PRE, text, len);
    if (c->qtail != NULL)
        c->qtail->next = m;
    else
        c->qhead = m;
    c->qtail = m;
    lws_callback_on_writable(c->wsi);
}

/*
 * --garbage: a chosen reply gets one of three treatments, picked at random:
 *   0. it is preceded by a frame that is not JSON (the reply itself follows);
 *   1. it is replaced by its own first half (invalid JSON; the reply is lost);
 *   2. (NEG-MSG only) its hex payload starts with "zz" (bad hex).
 */
void tr_conn_send_text(struct tr_conn *c, enum tr_type type, const char *text, size_t len)
{
    struct tr_server *srv = c->srv;
    const struct tr_config *cfg = srv->cfg;
    lws_usec_t due = 0;

    if (c->wsi == NULL || !c->is_ws)
        return;
    if (cfg->delay_ms > 0)
        due = lws_now_usecs() + (lws_usec_t)cfg->delay_ms * 1000;
    if (tr_rng_chance(srv, cfg->garbage)) {
        unsigned variant = (unsigned)(tr_rng_next(srv) % (type == TR_T_NEG_MSG ? 3 : 2));
        static const char junk[] = "garbage{\"this is\":not json]";

        if (variant == 0) {
            conn_enqueue(c, TR_T_INVALID, junk, sizeof junk - 1, due);
        } else if (variant == 1) {
            conn_enqueue(c, TR_T_INVALID, text, len > 1 ? len / 2 : 1, due);
            return;
        } else {
            /* ["NEG-MSG",<sub>,"<hex>"]: the hex is the last string, so it starts
             * after the quote that precedes the closing "] (hex has no quotes). */
            char *copy = xmalloc(len);
            size_t q;

            memcpy(copy, text, len);
            for (q = len >= 3 ? len - 3 : 0; q > 0 && copy[q] != '"'; q--)
                ;
            if (q > 0 && q + 2 < len - 2) {
                copy[q + 1] = 'z';
                copy[q + 2] = 'z';
            }
            conn_enqueue(c, TR_T_NEG_MSG, copy, len, due);
            free(copy);
            return;
        }
    }
    conn_enqueue(c, type, text, len, due);
}

void tr_conn_send_json(struct tr_conn *c, json_t *msg)
{
    enum tr_type type = TR_T_OTHER;
    json_t *head = json_array_get(msg, 0);
    char *text;

    if (json_is_string(head))
        type = tr_type_from_name(json_string_value(head));
    text = json_dumps(msg, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
    json_decref(msg);
    if (text == NULL) {
        fprintf(stderr, "testrelay: cannot serialize a reply\n");
        return;
    }
    tr_conn_send_text(c, type, text, strlen(text));
    free(text);
}

void tr_conn_send_notice(struct tr_conn *c, const char *text)
{
    tr_conn_send_json(c, json_pack("[ss]", "NOTICE", text));
}

static void conn_queue_free(struct tr_conn *c)
{
    struct tr_msg *m, *next;

    for (m = c->qhead; m != NULL; m = next) {
        next = m->next;
        free(m);
    }
    c->qhead = c->qtail = NULL;
    free(c->held);
    c->held = NULL;
}

static void conn_close_reason(struct tr_conn *c, const char *why)
{
    lws_close_reason(c->wsi, LWS_CLOSE_STATUS_NORMAL, (unsigned char *)(uintptr_t)why, strlen(why));
}

/*
 * A whole text message in one frame with RSV1 clear, written past lws's
 * permessage-deflate: what ws (below its threshold) and uWebSockets send on a
 * compressed connection. The frame header goes into the LWS_PRE headroom;
 * the bytes leave as they are (lws buffers what the socket does not take).
 * A compressor without context takeover is not disturbed by it, and one with
 * context never saw these bytes, nor does the client's inflater.
 */
static int conn_write_plain_frame(struct tr_conn *c, struct tr_msg *m)
{
    unsigned char h[10];
    size_t hl = 0, n = m->len;

    h[hl++] = 0x81;
    if (n < 126) {
        h[hl++] = (unsigned char)n;
    } else if (n < 65536) {
        h[hl++] = 126;
        h[hl++] = (unsigned char)(n >> 8);
        h[hl++] = (unsigned char)n;
    } else {
        h[hl++] = 127;
        for (int i = 0; i < 8; i++)
            h[hl++] = (unsigned char)((uint64_t)n >> (56 - 8 * i));
    }
    memcpy(m->buf + LWS_PRE - hl, h, hl);
    int w = lws_write(c->wsi, m->buf + LWS_PRE - hl, hl + n, LWS_WRITE_HTTP);
    return w < 0 || (size_t)w < hl + n ? -1 : 0;
}

/*
 * --deflate-no-context-takeover: a libwebsockets server only echoes the
 * parameters a client asked for, so server_no_context_takeover is added to
 * the Sec-WebSocket-Extensions line lws just wrote (the line ends right
 * before args->p).
 */
static void announce_no_context_takeover(struct lws_process_html_args *args)
{
    static const char ext[] = "Sec-WebSocket-Extensions: permessage-deflate";
    static const char add[] = "; server_no_context_takeover\r\n";
    char *p = args->p;
    char *line = p - 2;

    if (args->max_len < (int)sizeof add || memcmp(p - 2, "\r\n", 2) != 0)
        return;
    while (line > p - 300 && !(line[-2] == '\r' && line[-1] == '\n'))
        line--;
    if (strncasecmp(line, ext, sizeof ext - 1) != 0)
        return;
    memcpy(p - 2, add, sizeof add - 1);
    args->p = p - 2 + sizeof add - 1;
    args->max_len -= (int)(sizeof add - 3);
}

/* Writes the head of the queue if it is due. -1 closes the connection. */
static int conn_writeable(struct tr_conn *c)
{
    const struct tr_config *cfg = c->srv->cfg;
    struct tr_msg *m;
    int n;

    if (cfg->drop_after >= 0 && c->sent >= (uint64_t)cfg->drop_after) {
        conn_close_reason(c, "drop-after");
        return -1;
    }
    free(c->held);
    c->held = NULL;
    m = c->qhead;
    if (m == NULL)
        return c->closing ? -1 : 0;
    if (m->due != 0) {
        lws_usec_t now = lws_now_usecs();
        if (m->due > now) {
            lws_set_timer_usecs(c->wsi, m->due - now);
            return 0;
        }
    }
    /* lws buffers whatever the socket does not take now, so a short count is an error. */
    if (cfg->deflate && m->len < cfg->deflate_threshold) {
        if (conn_write_plain_frame(c, m) < 0)
            return -1;
    } else {
        n = lws_write(c->wsi, m->buf + LWS_PRE, m->len, LWS_WRITE_TEXT);
        if (n < 0 || (size_t)n < m->len)
            return -1;
    }
    conn_log(c, ">", (const char *)m->buf + LWS_PRE, m->len);
    c->counts.tx_bytes += m->len;
    c->counts.tx_msgs++;
    c->counts.tx[m->type]++;
    c->sent++;
    c->qhead = m->next;
    if (c->qhead == NULL)
        c->qtail = NULL;
    c->held = m;
    if (cfg->flood && c->qhead == NULL && !c->closing)
        tr_conn_send_notice(c, "flood: this relay sends NOTICEs without end (--flood)");
    if (c->qhead != NULL || c->closing ||
        (cfg->drop_after >= 0 && c->sent >= (uint64_t)cfg->drop_after))
        lws_callback_on_writable(c->wsi);
    return 0;
}

static void conn_record(struct tr_conn *c)
{
    struct tr_server *srv = c->srv;

    if (srv->nrecords == srv->caprecords) {
        srv->caprecords = srv->caprecords ? srv->caprecords * 2 : 16;
        srv->records = xreallocarray(srv->records, srv->caprecords, sizeof *srv->records);
    }
    srv->records[srv->nrecords].id = c->id;
    srv->records[srv->nrecords].counts = c->counts;
    srv->nrecords++;
}

static void conn_closed(struct tr_conn *c)
{
    char err[256];

    for (struct tr_conn **pp = &c->srv->live; *pp != NULL; pp = &(*pp)->next_live) {
        if (*pp == c) {
            *pp = c->next_live;
            break;
        }
    }
    conn_queue_free(c);
    tr_neg_sessions_free(c);
    buf_free(&c->rx);
    conn_record(c);
    if (c->srv->cfg->verbose)
        fprintf(stderr, "testrelay: conn %llu closed\n", (unsigned long long)c->id);
    if (c->srv->cfg->stats_file != NULL && tr_stats_write(c->srv, err, sizeof err) < 0)
        fprintf(stderr, "testrelay: %s\n", err);
    c->is_ws = 0;
    c->wsi = NULL;
}

static int conn_receive(struct tr_conn *c, const void *in, size_t len)
{
    c->counts.rx_bytes += len;
    if (c->rx.len == 0 && !c->rx_too_big && !c->rx_binary)
        c->rx_binary = lws_frame_is_binary(c->wsi);
    if (!c->rx_too_big) {
        if (len > c->srv->cfg->max_message - c->rx.len) {
            c->rx_too_big = 1;
            buf_free(&c->rx);
        } else {
            buf_append(&c->rx, in, len);
        }
    }
    if (!lws_is_final_fragment(c->wsi) || lws_remaining_packet_payload(c->wsi) > 0)
        return 0;

    /* A complete message. */
    int rc = 0;
    c->counts.rx_msgs++;
    if (c->rx_too_big) {
        c->counts.rx[TR_T_INVALID]++;
        char text[64];
        snprintf(text, sizeof text, "ERROR: bad msg: message too large (limit %zu bytes)",
                 c->srv->cfg->max_message);
        tr_conn_send_notice(c, text);
    } else if (c->rx_binary) {
        c->counts.rx[TR_T_INVALID]++;
        tr_conn_send_notice(c, "ERROR: bad msg: binary messages are not supported");
    } else if (c->srv->cfg->ignore_first_ms >= 0 &&
               lws_now_usecs() - c->opened < (lws_usec_t)c->srv->cfg->ignore_first_ms * 1000) {
        /* --ignore-first-message: no handler yet, as nostream before its Redis check. */
        fprintf(stderr, "testrelay: conn %llu: ignored a message %lld ms after opening: %.*s\n",
                (unsigned long long)c->id, (long long)((lws_now_usecs() - c->opened) / 1000),
                (int)(c->rx.len < 60 ? c->rx.len : 60), c->rx.len ? (const char *)c->rx.data : "");
    } else {
        conn_log(c, "<", (const char *)c->rx.data, c->rx.len);
        rc = tr_handle_message(c, c->rx.len ? (const char *)c->rx.data : "", c->rx.len);
    }
    /* --stall-after: from now on the client's bytes stay in the socket buffers. */
    if (c->srv->cfg->stall_after >= 0 && c->counts.rx_msgs >= (uint64_t)c->srv->cfg->stall_after)
        lws_rx_flow_control(c->wsi, 0);
    c->rx.len = 0;
    c->rx_too_big = 0;
    c->rx_binary = 0;
    return rc;
}

/* ---- NIP-11 over HTTP ---- */

static const char plain_page[] = "negsync-testrelay: a Nostr relay for negsync's tests.\n"
                                 "Connect with a websocket, or ask for the NIP-11 document with "
                                 "Accept: application/nostr+json.\n";
static const char absent_page[] = "404: no relay information document here\n";

static int conn_http_request(struct tr_conn *c, struct lws *wsi)
{
    struct tr_server *srv = c->srv;
    unsigned char hbuf[LWS_PRE + 1024];
    unsigned char *start = hbuf + LWS_PRE, *p = start, *end = hbuf + sizeof hbuf - 1;
    char accept[2048] = "";
    const char *body = plain_page, *type = "text/plain";
    size_t len = sizeof plain_page - 1;
    unsigned status = 200;

    srv->http_requests++;
    if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_ACCEPT) > 0 &&
        lws_hdr_copy(wsi, accept, sizeof accept, WSI_TOKEN_HTTP_ACCEPT) < 0)
        accept[0] = '\0';
    if (strstr(accept, "application/nostr+json") != NULL) {
        if (srv->cfg->nip11 == TR_NIP11_ABSENT) {
            status = 404;
            body = absent_page;
            len = sizeof absent_page - 1;
        } else {
            body = srv->nip11_doc;
            len = srv->nip11_len;
            type = "application/nostr+json";
        }
    }
    if (srv->cfg->verbose)
        fprintf(stderr, "testrelay: HTTP GET (Accept: %s) -> %u, %zu bytes\n", accept, status, len);
    /* NIP-11: relays must send CORS headers so browser clients can read the document. */
    if (lws_add_http_common_headers(wsi, status, type, len, &p, end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_ACCESS_CONTROL_ALLOW_ORIGIN,
                                     (const unsigned char *)"*", 1, &p, end) ||
        lws_finalize_write_http_header(wsi, start, &p, end))
        return 1;
    c->http_body = body;
    c->http_len = len;
    c->http_pos = 0;
    lws_callback_on_writable(wsi);
    return 0;
}

/* Sends the body in slices, so even the 5 MiB document never blocks the loop. */
static int conn_http_writeable(struct tr_conn *c, struct lws *wsi)
{
    enum { SLICE = 65536 };
    static unsigned char slice[LWS_PRE + SLICE];
    size_t n;
    int final;

    if (c->http_body == NULL)
        return 0;
    n = c->http_len - c->http_pos;
    if (n > SLICE)
        n = SLICE;
    final = c->http_pos + n == c->http_len;
    memcpy(slice + LWS_PRE, c->http_body + c->http_pos, n);
    if (lws_write(wsi, slice + LWS_PRE, n, final ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) < 0)
        return -1;
    c->http_pos += n;
    if (!final) {
        lws_callback_on_writable(wsi);
        return 0;
    }
    c->http_body = NULL;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* --big-notice: ["NOTICE","xxx…"], exactly n bytes in all (n >= 13). */
static void conn_send_big_notice(struct tr_conn *c, size_t n)
{
    char *text = xmalloc(n);

    memcpy(text, "[\"NOTICE\",\"", 11);
    memset(text + 11, 'x', n - 13);
    memcpy(text + n - 2, "\"]", 2);
    conn_enqueue(c, TR_T_NOTICE, text, n, 0);
    free(text);
}

static int conn_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                         size_t len)
{
    struct tr_conn *c = user;
    struct tr_server *srv = lws_context_user(lws_get_context(wsi));

    switch (reason) {
    case LWS_CALLBACK_ESTABLISHED:
        /* The HTTP upgrade may have used this memory: start from nothing. */
        memset(c, 0, sizeof *c);
        c->srv = srv;
        c->wsi = wsi;
        c->is_ws = 1;
        c->id = ++srv->next_conn_id;
        c->next_live = srv->live;
        srv->live = c;
        if (srv->cfg->verbose)
            fprintf(stderr, "testrelay: conn %llu open\n", (unsigned long long)c->id);
        c->opened = lws_now_usecs();
        if (srv->cfg->auth_challenge) {
            snprintf(c->challenge, sizeof c->challenge, "negsync-testrelay-%016llx",
                     (unsigned long long)tr_rng_next(srv));
            tr_conn_send_json(c, json_pack("[ss]", "AUTH", c->challenge));
        }
        if (srv->cfg->welcome_notice != NULL)
            tr_conn_send_notice(c, srv->cfg->welcome_notice);
        if (srv->cfg->big_notice > 0)
            conn_send_big_notice(c, srv->cfg->big_notice);
        if (srv->cfg->deflate_no_context_takeover)
            lws_set_extension_option(wsi, "permessage-deflate", "client_no_context_takeover", "1");
        if (srv->cfg->flood)
            tr_conn_send_notice(c, "flood: this relay sends NOTICEs without end (--flood)");
        if (srv->cfg->stall_after == 0)
            lws_rx_flow_control(wsi, 0);
        if (srv->cfg->drop_after == 0)
            lws_callback_on_writable(wsi);
        return 0;

    case LWS_CALLBACK_RECEIVE:
        if (c == NULL || !c->is_ws)
            return -1;
        return conn_receive(c, in, len);

    case LWS_CALLBACK_SERVER_WRITEABLE:
        if (c == NULL || !c->is_ws)
            return 0;
        return conn_writeable(c);

    case LWS_CALLBACK_TIMER:
        /* A delayed message fell due. */
        if (c != NULL && c->is_ws)
            lws_callback_on_writable(wsi);
        return 0;

    case LWS_CALLBACK_CLOSED:
        if (c != NULL && c->is_ws)
            conn_closed(c);
        return 0;

    case LWS_CALLBACK_HTTP:
        if (c == NULL)
            return -1;
        c->srv = srv;
        return conn_http_request(c, wsi);

    case LWS_CALLBACK_ADD_HEADERS:
        if (srv->cfg->deflate_no_context_takeover && in != NULL)
            announce_no_context_takeover(in);
        return 0;

    case LWS_CALLBACK_HTTP_WRITEABLE:
        if (c == NULL)
            return 0;
        return conn_http_writeable(c, wsi);

    default: break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

const struct lws_protocols tr_protocols[] = {
    /* First in the list, so it also gets plain HTTP and websockets without a subprotocol. */
    {"nostr", conn_callback, sizeof(struct tr_conn), 65536, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* ---- NIP-11 document ---- */

static int nip11_parse_nips(const char *list, json_t *out, char *err, size_t errlen)
{
    const char *p = list;

    while (*p != '\0') {
        char *end;
        long v;

        errno = 0;
        v = strtol(p, &end, 10);
        if (end == p || errno != 0 || v < 0 || v > 1000000 || (*end != ',' && *end != '\0')) {
            snprintf(err, errlen, "--nip11-nips: not a comma-separated list of integers: %s", list);
            return -1;
        }
        json_array_append_new(out, json_integer(v));
        p = *end == ',' ? end + 1 : end;
    }
    return 0;
}

/* --nip11-file: the document is whatever the file holds, byte for byte. */
static int nip11_read_file(struct tr_server *srv, const char *path, char *err, size_t errlen)
{
    FILE *fp = fopen(path, "rb");
    struct buf b = {0};
    char chunk[65536];
    size_t n;

    if (fp == NULL) {
        snprintf(err, errlen, "--nip11-file: %s: %s", path, strerror(errno));
        return -1;
    }
    while ((n = fread(chunk, 1, sizeof chunk, fp)) > 0)
        buf_append(&b, chunk, n);
    if (ferror(fp)) {
        snprintf(err, errlen, "--nip11-file: %s: read error", path);
        fclose(fp);
        buf_free(&b);
        return -1;
    }
    fclose(fp);
    buf_push(&b, '\0');
    srv->nip11_doc = (char *)b.data;
    srv->nip11_len = b.len - 1;
    return 0;
}

int tr_nip11_build(struct tr_server *srv, char *err, size_t errlen)
{
    const struct tr_config *cfg = srv->cfg;
    json_t *doc;
    char *text;

    srv->nip11_type = "application/nostr+json";
    if (cfg->nip11_file != NULL)
        return nip11_read_file(srv, cfg->nip11_file, err, errlen);
    switch (cfg->nip11) {
    case TR_NIP11_ABSENT:
    case TR_NIP11_OK:
    case TR_NIP11_HUGE: break;
    case TR_NIP11_INVALID: {
        static const char bad[] = "{\"name\": \"negsync-testrelay\", \"supported_nips\": [1, 11,";
        srv->nip11_doc = xstrdup(bad);
        srv->nip11_len = sizeof bad - 1;
        return 0;
    }
    case TR_NIP11_WRONGTYPES:
        doc = json_pack("{s:i, s:s, s:i, s:[s], s:s, s:s}", "name", 42, "description",
                        "negsync test relay with wrongly typed fields", "software", 12345,
                        "version", "1.0", "supported_nips", "1,11,77", "limitation", "none");
        goto dump;
    }

    json_t *nips = json_array();
    if (nip11_parse_nips(cfg->nip11_nips, nips, err, errlen) < 0) {
        json_decref(nips);
        return -1;
    }
    doc = json_pack("{s:s, s:s, s:s, s:s, s:o, s:{s:I, s:I, s:I}}", "name", "negsync-testrelay",
                    "description", "a local Nostr relay for negsync's tests and benchmarks",
                    "software", cfg->software, "version", cfg->version, "supported_nips", nips,
                    "limitation", "max_limit", (json_int_t)cfg->req_limit, "max_message_length",
                    (json_int_t)cfg->max_message, "max_subid_length", (json_int_t)TR_MAX_SUBID);
    /* Like strfry: a relay that lists NIP-77 names the negentropy protocol version it speaks. */
    for (size_t i = 0; doc != NULL && i < json_array_size(nips); i++) {
        if (json_integer_value(json_array_get(nips, i)) == 77) {
            json_object_set_new(doc, "negentropy", json_integer(NEG_PROTOCOL_VERSION - 0x60));
            break;
        }
    }
    if (doc != NULL && cfg->nip11 == TR_NIP11_HUGE) {
        /* A valid document of a little over 5 MiB, to test the client's size cap. */
        size_t n = 5u * 1024 * 1024;
        char *pad = xmalloc(n + 1);
        memset(pad, 'x', n);
        pad[n] = '\0';
        json_object_set_new(doc, "description", json_string(pad));
        free(pad);
    }
dump:
    if (doc == NULL) {
        snprintf(err, errlen, "cannot build the NIP-11 document");
        return -1;
    }
    text = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(doc);
    if (text == NULL) {
        snprintf(err, errlen, "cannot serialize the NIP-11 document");
        return -1;
    }
    srv->nip11_doc = text;
    srv->nip11_len = strlen(text);
    return 0;
}

/* ---- --stats-file ---- */

static json_t *stats_types(const uint64_t *counts)
{
    json_t *o = json_object();

    for (int t = 0; t < TR_NTYPES; t++) {
        if (counts[t] != 0)
            json_object_set_new(o, type_names[t], json_integer((json_int_t)counts[t]));
    }
    return o;
}

static json_t *stats_counts(const struct tr_counts *k)
{
    json_t *o =
        json_pack("{s:I, s:I, s:I, s:I, s:o, s:o}", "rx_bytes", (json_int_t)k->rx_bytes, "tx_bytes",
                  (json_int_t)k->tx_bytes, "rx_msgs", (json_int_t)k->rx_msgs, "tx_msgs",
                  (json_int_t)k->tx_msgs, "rx", stats_types(k->rx), "tx", stats_types(k->tx));

    /* NIP-42, only where it happened: AUTH events accepted and refused, replies that asked for it. */
    if (k->auth_ok + k->auth_failed + k->auth_required + k->restricted != 0)
        json_object_set_new(o, "auth",
                            json_pack("{s:I, s:I, s:I, s:I}", "ok", (json_int_t)k->auth_ok,
                                      "failed", (json_int_t)k->auth_failed, "auth_required",
                                      (json_int_t)k->auth_required, "restricted",
                                      (json_int_t)k->restricted));
    return o;
}

static void stats_add(json_t *conns, struct tr_counts *total, uint64_t id,
                      const struct tr_counts *k, int open)
{
    json_t *one = stats_counts(k);

    json_object_set_new(one, "id", json_integer((json_int_t)id));
    if (open)
        json_object_set_new(one, "open", json_true());
    json_array_append_new(conns, one);
    total->rx_bytes += k->rx_bytes;
    total->tx_bytes += k->tx_bytes;
    total->rx_msgs += k->rx_msgs;
    total->tx_msgs += k->tx_msgs;
    total->auth_ok += k->auth_ok;
    total->auth_failed += k->auth_failed;
    total->auth_required += k->auth_required;
    total->restricted += k->restricted;
    for (int t = 0; t < TR_NTYPES; t++) {
        total->rx[t] += k->rx[t];
        total->tx[t] += k->tx[t];
    }
}

/*
 * {"connections":[{"id":1,"rx_bytes":..,"tx_bytes":..,"rx_msgs":..,"tx_msgs":..,
 *   "rx":{"REQ":1},"tx":{"EVENT":3,"EOSE":1}}, ...],
 * with "auth":{"ok":..,"failed":..,"auth_required":..,"restricted":..} where
 * NIP-42 was used (AUTH events accepted / refused, replies of those prefixes),
 *  "total":{"connections":N, ...same counters...}, "http_requests":N}
 * Connections still open when it is written (SIGUSR1) come last, with "open":true.
 * Bytes are websocket payload bytes (message bodies without framing, before
 * any compression), counted as lws reads and writes them.
 */
int tr_stats_write(struct tr_server *srv, char *err, size_t errlen)
{
    const char *path = srv->cfg->stats_file;
    struct tr_counts total;
    json_t *conns = json_array(), *doc, *tot;
    size_t plen = strlen(path);
    char *tmp = xmalloc(plen + 8);
    int rc = 0;

    memset(&total, 0, sizeof total);
    for (size_t i = 0; i < srv->nrecords; i++)
        stats_add(conns, &total, srv->records[i].id, &srv->records[i].counts, 0);
    for (const struct tr_conn *c = srv->live; c != NULL; c = c->next_live)
        stats_add(conns, &total, c->id, &c->counts, 1);
    tot = stats_counts(&total);
    json_object_set_new(tot, "connections", json_integer((json_int_t)json_array_size(conns)));
    doc = json_pack("{s:o, s:o, s:I}", "connections", conns, "total", tot, "http_requests",
                    (json_int_t)srv->http_requests);
    snprintf(tmp, plen + 8, "%s.tmp", path);
    if (doc == NULL || json_dump_file(doc, tmp, JSON_INDENT(1) | JSON_PRESERVE_ORDER) < 0) {
        snprintf(err, errlen, "%s: cannot write the stats", tmp);
        rc = -1;
    } else if (rename(tmp, path) < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        rc = -1;
    }
    json_decref(doc);
    free(tmp);
    return rc;
}
