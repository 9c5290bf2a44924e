/*
 * ws: RFC 6455 framing for a client, RFC 7692 permessage-deflate with zlib,
 * and HTTP response heads. See ws.h for why this is ours and not
 * libwebsockets'.
 *
 * Inflating. A compressed message is the concatenation of its frames'
 * payloads followed by the four bytes 00 00 ff ff that the sender stripped
 * (an empty stored block's trailer). It is inflated as it arrives, in
 * bounded steps, so the inflated text never exceeds max_message: a message
 * that would is cut short with WS_ERR_TOO_BIG, however well it compresses.
 * With server_no_context_takeover the inflater is reset after each message;
 * otherwise its window carries over, which is why an uncompressed message
 * (RSV1 clear, as ws and uWebSockets send short ones) must bypass it.
 */
#include "config.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "ws.h"

#define MIB          (1024 * 1024)
#define INFLATE_STEP (64 * 1024)

static const uint8_t pmd_trailer[4] = {0x00, 0x00, 0xff, 0xff};

/* ---- handshake ------------------------------------------------------------------ */

void ws_make_key(char key[25])
{
    unsigned char raw[16];
    if (RAND_bytes(raw, sizeof raw) != 1) {
        /* The key only proves the server speaks websocket; it is no secret. */
        for (size_t i = 0; i < sizeof raw; i++)
            raw[i] = (unsigned char)rand();
    }
    EVP_EncodeBlock((unsigned char *)key, raw, sizeof raw);
    key[24] = '\0';
}

void ws_accept_for(const char *key, char out[29])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    char in[128];
    int n = snprintf(in, sizeof in, "%s%s", key, guid);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdl = 0;
    EVP_Digest(in, (size_t)n, md, &mdl, EVP_sha1(), NULL);
    EVP_EncodeBlock((unsigned char *)out, md, (int)mdl);
    out[28] = '\0';
}

static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* A window size parameter's value: 8..15. */
static int window_bits(const char *v, size_t n)
{
    if (n == 0 || n > 2)
        return -1;
    int x = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)v[i]))
            return -1;
        x = x * 10 + (v[i] - '0');
    }
    return x >= 8 && x <= 15 ? x : -1;
}

int ws_pmd_parse(const char *value, int offered, struct ws_pmd *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    out->server_max_window_bits = out->client_max_window_bits = 15;
    if (value == NULL || *skip_ws(value) == '\0')
        return 0;
    if (!offered) {
        set_error(err, errlen, "server chose an extension we did not offer: %.60s", value);
        return -1;
    }
    const char *p = skip_ws(value);
    size_t nl = strcspn(p, ";, \t");
    if (nl != strlen("permessage-deflate") || strncasecmp(p, "permessage-deflate", nl) != 0) {
        set_error(err, errlen, "server chose an extension we did not offer: %.60s", value);
        return -1;
    }
    p = skip_ws(p + nl);
    int seen[4] = {0, 0, 0, 0};
    while (*p == ';') {
        p = skip_ws(p + 1);
        size_t kl = strcspn(p, "=;, \t");
        const char *k = p;
        p = skip_ws(p + kl);
        const char *v = NULL;
        size_t vl = 0;
        if (*p == '=') {
            p = skip_ws(p + 1);
            int quoted = *p == '"';
            if (quoted)
                p++;
            v = p;
            vl = strcspn(p, quoted ? "\"" : ";, \t");
            p += vl;
            if (quoted && *p == '"')
                p++;
            p = skip_ws(p);
        }
        static const char *const names[4] = {"server_no_context_takeover",
                                             "client_no_context_takeover", "server_max_window_bits",
                                             "client_max_window_bits"};
        int which = -1;
        for (int i = 0; i < 4; i++)
            if (kl == strlen(names[i]) && strncasecmp(k, names[i], kl) == 0)
                which = i;
        if (which < 0) {
            set_error(err, errlen, "unknown permessage-deflate parameter \"%.*s\"",
                      (int)(kl > 40 ? 40 : kl), k);
            return -1;
        }
        if (seen[which]++) {
            set_error(err, errlen, "permessage-deflate parameter %s given twice", names[which]);
            return -1;
        }
        if (which < 2 && v != NULL) {
            set_error(err, errlen, "permessage-deflate parameter %s takes no value", names[which]);
            return -1;
        }
        if (which >= 2) {
            int bits = v ? window_bits(v, vl) : -1;
            if (bits < 0) {
                set_error(err, errlen, "permessage-deflate %s needs a value from 8 to 15",
                          names[which]);
                return -1;
            }
            if (which == 2)
                out->server_max_window_bits = bits;
            else
                out->client_max_window_bits = bits;
        } else if (which == 0) {
            out->server_no_context_takeover = 1;
        } else {
            out->client_no_context_takeover = 1;
        }
    }
    if (*p != '\0') {
        set_error(err, errlen, "server accepted more than one extension: %.60s", value);
        return -1;
    }
    out->on = 1;
    return 0;
}

/* ---- HTTP heads ------------------------------------------------------------------- */

long http_head_end(const uint8_t *data, size_t len)
{
    for (size_t i = 3; i < len; i++)
        if (data[i] == '\n' && data[i - 1] == '\r' && data[i - 2] == '\n' && data[i - 3] == '\r')
            return (long)(i + 1);
    return len > HTTP_HEAD_MAX ? -1 : 0;
}

int http_head_parse(const char *data, size_t len, struct http_head *h, char *err, size_t errlen)
{
    memset(h, 0, sizeof *h);
    h->text = xmalloc(len + 1);
    memcpy(h->text, data, len);
    h->text[len] = '\0';
    if (memchr(h->text, '\0', len) != NULL) {
        set_error(err, errlen, "NUL byte in the HTTP answer");
        return -1;
    }
    char *line = h->text, *eol = strstr(line, "\r\n");
    if (eol == NULL || strncmp(line, "HTTP/1.", 7) != 0) {
        set_error(err, errlen, "not an HTTP/1.x answer");
        return -1;
    }
    *eol = '\0';
    char *sp = strchr(line, ' ');
    if (sp == NULL || !isdigit((unsigned char)sp[1]) || !isdigit((unsigned char)sp[2]) ||
        !isdigit((unsigned char)sp[3]) || (sp[4] != ' ' && sp[4] != '\0')) {
        set_error(err, errlen, "bad HTTP status line");
        return -1;
    }
    h->status = (sp[1] - '0') * 100 + (sp[2] - '0') * 10 + (sp[3] - '0');
    for (line = eol + 2; *line != '\0' && strncmp(line, "\r\n", 2) != 0; line = eol + 2) {
        eol = strstr(line, "\r\n");
        if (eol == NULL)
            break;
        *eol = '\0';
        char *colon = strchr(line, ':');
        if (colon == NULL || colon == line) {
            set_error(err, errlen, "bad HTTP header line");
            return -1;
        }
        if (h->n == HTTP_HEADERS_MAX) {
            set_error(err, errlen, "more than %d HTTP headers", HTTP_HEADERS_MAX);
            return -1;
        }
        *colon = '\0';
        char *v = (char *)skip_ws(colon + 1);
        size_t vl = strlen(v);
        while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
            v[--vl] = '\0';
        h->h[h->n].name = line;
        h->h[h->n].value = v;
        h->n++;
    }
    return 0;
}

const char *http_head_get(const struct http_head *h, const char *name)
{
    for (size_t i = 0; i < h->n; i++)
        if (strcasecmp(h->h[i].name, name) == 0)
            return h->h[i].value;
    return NULL;
}

int http_token_in(const char *value, const char *token)
{
    size_t tl = strlen(token);
    for (const char *p = value; p != NULL && *p;) {
        p = skip_ws(p);
        size_t n = strcspn(p, ",");
        size_t m = n;
        while (m > 0 && (p[m - 1] == ' ' || p[m - 1] == '\t'))
            m--;
        if (m == tl && strncasecmp(p, token, tl) == 0)
            return 1;
        p += n;
        if (*p == ',')
            p++;
    }
    return 0;
}

void http_head_free(struct http_head *h)
{
    free(h->text);
    memset(h, 0, sizeof *h);
}

/* ---- receiving ------------------------------------------------------------------------ */

void ws_rx_init(struct ws_rx *rx, size_t max_message, const struct ws_pmd *pmd)
{
    memset(rx, 0, sizeof *rx);
    rx->max_message = max_message ? max_message : 16 * MIB;
    if (pmd != NULL)
        rx->pmd = *pmd;
}

void ws_rx_free(struct ws_rx *rx)
{
    if (rx->z_ready)
        inflateEnd(&rx->z);
    buf_free(&rx->msg);
    memset(rx, 0, sizeof *rx);
}

static size_t rx_fail(struct ws_rx *rx, struct ws_event *ev, enum ws_rx_error e, int code,
                      size_t used, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static size_t rx_fail(struct ws_rx *rx, struct ws_event *ev, enum ws_rx_error e, int code,
                      size_t used, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rx->err, sizeof rx->err, fmt, ap);
    va_end(ap);
    rx->failed = 1;
    rx->msg.len = 0;
    ev->type = WS_EV_ERROR;
    ev->error = e;
    ev->close_code = code;
    return used;
}

static void too_big_text(const struct ws_rx *rx, char *out, size_t outlen)
{
    if (rx->max_message >= MIB && rx->max_message % MIB == 0)
        snprintf(out, outlen, "%zu MiB", rx->max_message / MIB);
    else
        snprintf(out, outlen, "%zu bytes", rx->max_message);
}

/* Room for extra more bytes of message, growing by doubling but never past max_message + 1. */
static void msg_reserve(struct ws_rx *rx, size_t extra)
{
    size_t need = rx->msg.len + extra;
    if (need <= rx->msg.cap)
        return;
    size_t ncap = rx->msg.cap ? rx->msg.cap : 4096;
    while (ncap < need)
        ncap *= 2;
    if (ncap > rx->max_message + 1)
        ncap = rx->max_message + 1 > need ? rx->max_message + 1 : need;
    rx->msg.data = xrealloc(rx->msg.data, ncap);
    rx->msg.cap = ncap;
}

/*
 * Inflates n bytes into the message, never past max_message. Returns 0, 1
 * when the message grew too big, -1 on bad data.
 */
static int rx_inflate(struct ws_rx *rx, const uint8_t *in, size_t n)
{
    if (!rx->z_ready) {
        memset(&rx->z, 0, sizeof rx->z);
        /* -15 inflates any window the server may use (8..15). */
        if (inflateInit2(&rx->z, -15) != Z_OK)
            return -1;
        rx->z_ready = 1;
    }
    rx->z.next_in = (Bytef *)in;
    rx->z.avail_in = (uInt)n;
    while (rx->z.avail_in > 0) {
        size_t room = rx->max_message + 1 - rx->msg.len;
        if (room == 0)
            return 1;
        size_t step = room < INFLATE_STEP ? room : INFLATE_STEP;
        msg_reserve(rx, step);
        rx->z.next_out = rx->msg.data + rx->msg.len;
        rx->z.avail_out = (uInt)step;
        int zr = inflate(&rx->z, Z_SYNC_FLUSH);
        rx->msg.len += step - rx->z.avail_out;
        if (rx->msg.len > rx->max_message)
            return 1;
        if (zr == Z_STREAM_END) {
            /*
             * A block with BFINAL set ended the stream; RFC 7692 allows it.
             * Later messages may still refer to this window, so it is kept.
             */
            uint8_t dict[32768];
            uInt dl = sizeof dict;
            if (inflateGetDictionary(&rx->z, dict, &dl) != Z_OK || inflateReset(&rx->z) != Z_OK ||
                (dl > 0 && inflateSetDictionary(&rx->z, dict, dl) != Z_OK))
                return -1;
            continue;
        }
        if (zr == Z_BUF_ERROR && rx->z.avail_out > 0)
            break; /* needs more input */
        if (zr != Z_OK && zr != Z_BUF_ERROR)
            return -1;
    }
    return 0;
}

/* rx_inflate, its failures turned into the error event. */
static size_t rx_inflate_checked(struct ws_rx *rx, const uint8_t *in, size_t n, struct ws_event *ev,
                                 size_t used)
{
    char sz[32];
    int zr = rx_inflate(rx, in, n);

    if (zr > 0) {
        too_big_text(rx, sz, sizeof sz);
        return rx_fail(rx, ev, WS_ERR_TOO_BIG, WS_CLOSE_TOO_BIG, used,
                       "message larger than %s (inflated)", sz);
    }
    if (zr < 0)
        return rx_fail(rx, ev, WS_ERR_INFLATE, WS_CLOSE_INVALID_DATA, used,
                       "compressed message does not inflate (%s)",
                       rx->z.msg ? rx->z.msg : "bad data");
    return used;
}

/* Takes payload bytes of a data frame into the message. */
static size_t rx_data(struct ws_rx *rx, const uint8_t *in, size_t n, struct ws_event *ev,
                      size_t used)
{
    char sz[32];
    rx->msg_wire += n;
    if (rx->msg_wire > rx->max_message) {
        too_big_text(rx, sz, sizeof sz);
        return rx_fail(rx, ev, WS_ERR_TOO_BIG, WS_CLOSE_TOO_BIG, used, "message larger than %s",
                       sz);
    }
    if (!rx->msg_compressed) {
        msg_reserve(rx, n);
        memcpy(rx->msg.data + rx->msg.len, in, n);
        rx->msg.len += n;
        return used;
    }
    return rx_inflate_checked(rx, in, n, ev, used);
}

/* The end of a data message: the deflate trailer, then the event. */
static size_t rx_message_end(struct ws_rx *rx, struct ws_event *ev, size_t used)
{
    if (rx->msg_compressed) {
        rx_inflate_checked(rx, pmd_trailer, sizeof pmd_trailer, ev, used);
        if (rx->failed)
            return used;
        if (rx->pmd.server_no_context_takeover && inflateReset(&rx->z) != Z_OK)
            return rx_fail(rx, ev, WS_ERR_INFLATE, WS_CLOSE_INVALID_DATA, used,
                           "cannot reset the inflater");
    }
    rx->in_message = 0;
    ev->type = WS_EV_MESSAGE;
    ev->binary = rx->msg_binary;
    ev->data = rx->msg.data;
    ev->len = rx->msg.len;
    return used;
}

/* The header is complete: check it as a client must. */
static int rx_header_check(struct ws_rx *rx)
{
    const uint8_t *h = rx->hdr;
    rx->fin = h[0] >> 7;
    rx->rsv1 = (h[0] >> 6) & 1;
    rx->opcode = h[0] & 0x0f;
    if (h[0] & 0x30) {
        snprintf(rx->err, sizeof rx->err, "frame with reserved bits RSV2/RSV3 set");
        return -1;
    }
    if (h[1] & 0x80) {
        snprintf(rx->err, sizeof rx->err, "masked frame from the server");
        return -1;
    }
    int control = rx->opcode & 0x08;
    if (control) {
        if (rx->opcode != WS_OP_CLOSE && rx->opcode != WS_OP_PING && rx->opcode != WS_OP_PONG) {
            snprintf(rx->err, sizeof rx->err, "unknown control opcode %d", rx->opcode);
            return -1;
        }
        if (!rx->fin || rx->left > 125 || rx->rsv1) {
            snprintf(rx->err, sizeof rx->err, "fragmented, compressed or long control frame");
            return -1;
        }
        return 0;
    }
    if (rx->opcode != WS_OP_CONT && rx->opcode != WS_OP_TEXT && rx->opcode != WS_OP_BINARY) {
        snprintf(rx->err, sizeof rx->err, "unknown data opcode %d", rx->opcode);
        return -1;
    }
    if (rx->opcode == WS_OP_CONT) {
        if (!rx->in_message) {
            snprintf(rx->err, sizeof rx->err, "continuation frame outside a message");
            return -1;
        }
        if (rx->rsv1) {
            snprintf(rx->err, sizeof rx->err, "RSV1 set on a continuation frame");
            return -1;
        }
        return 0;
    }
    if (rx->in_message) {
        snprintf(rx->err, sizeof rx->err, "new message before the last one ended");
        return -1;
    }
    if (rx->rsv1 && !rx->pmd.on) {
        snprintf(rx->err, sizeof rx->err, "compressed frame without permessage-deflate");
        return -1;
    }
    rx->in_message = 1;
    rx->msg_binary = rx->opcode == WS_OP_BINARY;
    rx->msg_compressed = rx->rsv1;
    rx->msg_wire = 0;
    rx->msg.len = 0;
    return 0;
}

/* Bytes the header needs in all, once its first two bytes are known. */
static size_t header_size(const uint8_t *h)
{
    size_t n = 2;
    uint8_t l = h[1] & 0x7f;
    if (l == 126)
        n += 2;
    else if (l == 127)
        n += 8;
    if (h[1] & 0x80)
        n += 4;
    return n;
}

size_t ws_rx_feed(struct ws_rx *rx, const uint8_t *in, size_t n, struct ws_event *ev)
{
    memset(ev, 0, sizeof *ev);
    ev->type = WS_EV_NONE;
    if (rx->failed)
        return 0;
    size_t used = 0;
    while (used < n || (rx->hdr_done && rx->left == 0)) {
        if (!rx->hdr_done) {
            size_t need = rx->hdr_have < 2 ? 2 : header_size(rx->hdr);
            while (rx->hdr_have < need && used < n) {
                rx->hdr[rx->hdr_have++] = in[used++];
                if (rx->hdr_have == 2)
                    need = header_size(rx->hdr);
            }
            if (rx->hdr_have < need)
                return used;
            uint64_t len = rx->hdr[1] & 0x7f;
            if (len == 126) {
                len = ((uint64_t)rx->hdr[2] << 8) | rx->hdr[3];
            } else if (len == 127) {
                len = 0;
                for (int i = 0; i < 8; i++)
                    len = (len << 8) | rx->hdr[2 + i];
                if (len >> 63)
                    return rx_fail(rx, ev, WS_ERR_PROTOCOL, WS_CLOSE_PROTOCOL, used,
                                   "frame length with the top bit set");
            }
            rx->left = len;
            if (rx_header_check(rx) < 0) {
                char why[160];
                snprintf(why, sizeof why, "%s", rx->err);
                return rx_fail(rx, ev, WS_ERR_PROTOCOL, WS_CLOSE_PROTOCOL, used, "%s", why);
            }
            rx->hdr_done = 1;
            rx->ctl_len = 0;
            /* A data frame announcing more than the cap is refused before any of it is read. */
            if (!(rx->opcode & 0x08) && rx->msg_wire + len > rx->max_message) {
                char sz[32];
                too_big_text(rx, sz, sizeof sz);
                return rx_fail(rx, ev, WS_ERR_TOO_BIG, WS_CLOSE_TOO_BIG, used,
                               "message larger than %s", sz);
            }
        }
        size_t take = n - used;
        if (take > rx->left)
            take = (size_t)rx->left;
        if (rx->opcode & 0x08) {
            memcpy(rx->ctl + rx->ctl_len, in + used, take);
            rx->ctl_len += take;
        } else if (take > 0) {
            rx_data(rx, in + used, take, ev, 0);
            if (rx->failed)
                return used + take;
        }
        used += take;
        rx->left -= take;
        if (rx->left > 0)
            return used;
        /* The frame is complete. */
        rx->hdr_done = 0;
        rx->hdr_have = 0;
        switch (rx->opcode) {
        case WS_OP_PING:
        case WS_OP_PONG:
            ev->type = rx->opcode == WS_OP_PING ? WS_EV_PING : WS_EV_PONG;
            ev->data = rx->ctl;
            ev->len = rx->ctl_len;
            return used;
        case WS_OP_CLOSE:
            if (rx->ctl_len == 1)
                return rx_fail(rx, ev, WS_ERR_PROTOCOL, WS_CLOSE_PROTOCOL, used,
                               "close frame with a 1-byte payload");
            ev->type = WS_EV_CLOSE;
            ev->close_code = rx->ctl_len >= 2 ? (rx->ctl[0] << 8) | rx->ctl[1] : WS_CLOSE_NO_STATUS;
            ev->data = rx->ctl_len >= 2 ? rx->ctl + 2 : rx->ctl;
            ev->len = rx->ctl_len >= 2 ? rx->ctl_len - 2 : 0;
            rx->failed = 1; /* nothing may follow a close */
            return used;
        default:
            if (rx->fin)
                return rx_message_end(rx, ev, used);
            break;
        }
    }
    return used;
}

/* ---- sending ---------------------------------------------------------------------------- */

void ws_tx_init(struct ws_tx *tx, const struct ws_pmd *pmd)
{
    memset(tx, 0, sizeof *tx);
    if (pmd != NULL)
        tx->pmd = *pmd;
    /* zlib cannot make a raw deflate stream with an 8-bit window: send such peers plain text. */
    tx->compress = tx->pmd.on && tx->pmd.client_max_window_bits >= 9;
    if (RAND_bytes((unsigned char *)tx->mask_state, sizeof tx->mask_state) != 1)
        tx->mask_state[0] = (uint32_t)rand() | 1u;
    if ((tx->mask_state[0] | tx->mask_state[1] | tx->mask_state[2] | tx->mask_state[3]) == 0)
        tx->mask_state[0] = 1;
}

void ws_tx_free(struct ws_tx *tx)
{
    if (tx->z_ready)
        deflateEnd(&tx->z);
    memset(tx, 0, sizeof *tx);
}

/*
 * xorshift128, seeded from the system's random source: masks only need to be
 * unpredictable to script in a browser, which is not our threat, but they
 * should not repeat.
 */
static uint32_t mask_next(struct ws_tx *tx)
{
    uint32_t *s = tx->mask_state;
    uint32_t t = s[3], x = s[0];
    s[3] = s[2];
    s[2] = s[1];
    s[1] = x;
    t ^= t << 11;
    t ^= t >> 8;
    s[0] = t ^ x ^ (x >> 19);
    return s[0];
}

static void frame_header(struct buf *out, int fin_rsv_op, size_t len, uint8_t mask[4])
{
    uint8_t h[14];
    size_t hl = 0;
    h[hl++] = (uint8_t)fin_rsv_op;
    if (len < 126) {
        h[hl++] = (uint8_t)(0x80 | len);
    } else if (len < 65536) {
        h[hl++] = 0x80 | 126;
        h[hl++] = (uint8_t)(len >> 8);
        h[hl++] = (uint8_t)len;
    } else {
        h[hl++] = 0x80 | 127;
        for (int i = 0; i < 8; i++)
            h[hl++] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
    }
    memcpy(h + hl, mask, 4);
    hl += 4;
    buf_append(out, h, hl);
}

static void mask_bytes(uint8_t *p, size_t n, const uint8_t mask[4])
{
    for (size_t i = 0; i < n; i++)
        p[i] ^= mask[i & 3];
}

/* Deflates p into out (appended), the trailer stripped; -1 if zlib fails. */
static int tx_deflate(struct ws_tx *tx, struct buf *out, const void *p, size_t len)
{
    if (!tx->z_ready) {
        memset(&tx->z, 0, sizeof tx->z);
        if (deflateInit2(&tx->z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -tx->pmd.client_max_window_bits,
                         8, Z_DEFAULT_STRATEGY) != Z_OK)
            return -1;
        tx->z_ready = 1;
    }
    size_t start = out->len;
    tx->z.next_in = (Bytef *)p;
    tx->z.avail_in = (uInt)len;
    for (;;) {
        size_t step = deflateBound(&tx->z, tx->z.avail_in) + 16;
        buf_reserve(out, step);
        tx->z.next_out = out->data + out->len;
        tx->z.avail_out = (uInt)step;
        int zr = deflate(&tx->z, Z_SYNC_FLUSH);
        out->len += step - tx->z.avail_out;
        if (zr != Z_OK && zr != Z_BUF_ERROR)
            return -1;
        if (tx->z.avail_in == 0 && tx->z.avail_out > 0)
            break;
    }
    if (out->len - start < 4 || memcmp(out->data + out->len - 4, pmd_trailer, 4) != 0)
        return -1;
    out->len -= 4;
    if (tx->pmd.client_no_context_takeover && deflateReset(&tx->z) != Z_OK)
        return -1;
    return 0;
}

void ws_tx_frame(struct ws_tx *tx, struct buf *out, int opcode, const void *payload, size_t len)
{
    uint32_t m = mask_next(tx);
    uint8_t mask[4] = {(uint8_t)(m >> 24), (uint8_t)(m >> 16), (uint8_t)(m >> 8), (uint8_t)m};
    int control = opcode & 0x08;
    if (!control && tx->compress && len >= WS_COMPRESS_MIN) {
        struct buf z = {0};
        if (tx_deflate(tx, &z, payload, len) == 0) {
            frame_header(out, 0x80 | 0x40 | opcode, z.len, mask);
            mask_bytes(z.data, z.len, mask);
            buf_append(out, z.data, z.len);
            buf_free(&z);
            return;
        }
        /*
         * zlib failing on memory it already has is not expected; if it does,
         * the window is in an unknown state, so compression stops for good
         * and this message goes plain (the peer's inflater is unaffected).
         */
        buf_free(&z);
        tx->compress = 0;
    }
    frame_header(out, 0x80 | opcode, len, mask);
    size_t at = out->len;
    buf_append(out, payload, len);
    mask_bytes(out->data + at, len, mask);
}

size_t ws_close_payload(int code, const char *reason, uint8_t out[125])
{
    out[0] = (uint8_t)(code >> 8);
    out[1] = (uint8_t)code;
    size_t rl = reason ? strlen(reason) : 0;
    if (rl > 123)
        rl = 123;
    if (rl)
        memcpy(out + 2, reason, rl);
    return 2 + rl;
}
