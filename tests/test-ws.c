/*
 * test-ws: the websocket framing and permessage-deflate of src/ws.c, without
 * sockets. Server frames are built here (with zlib for the compressed ones,
 * the way ws and uWebSockets servers make them) and fed to the receiver in
 * every split, so the parser's state across reads is exercised too.
 *
 * The cases that took the libwebsockets client down are here by name: an
 * uncompressed message on a connection that negotiated deflate (nostream's
 * short messages), server_no_context_takeover, and messages over the cap,
 * plain and as a deflate bomb, which must fail with bounded memory.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "testutil.h"
#include "util.h"
#include "ws.h"

#define MIB (1024 * 1024)

/* ---- building server frames ---------------------------------------------------- */

static void frame(struct buf *out, int fin, int rsv1, int opcode, const void *p, size_t n)
{
    uint8_t h[10];
    size_t hl = 0;
    h[hl++] = (uint8_t)((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | opcode);
    if (n < 126) {
        h[hl++] = (uint8_t)n;
    } else if (n < 65536) {
        h[hl++] = 126;
        h[hl++] = (uint8_t)(n >> 8);
        h[hl++] = (uint8_t)n;
    } else {
        h[hl++] = 127;
        for (int i = 0; i < 8; i++)
            h[hl++] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
    }
    buf_append(out, h, hl);
    buf_append(out, p, n);
}

/* A server-side compressor: raw deflate, sync flush, the trailer stripped. */
struct zsrv {
    z_stream z;
    int reset_each; /* server_no_context_takeover */
};

static void zsrv_init(struct zsrv *s, int bits, int reset_each)
{
    memset(s, 0, sizeof *s);
    CHECK(deflateInit2(&s->z, 6, Z_DEFLATED, -bits, 8, Z_DEFAULT_STRATEGY) == Z_OK);
    s->reset_each = reset_each;
}

static void zsrv_compress(struct zsrv *s, const void *p, size_t n, struct buf *out, int final)
{
    s->z.next_in = (Bytef *)p;
    s->z.avail_in = (uInt)n;
    do {
        buf_reserve(out, 65536);
        s->z.next_out = out->data + out->len;
        s->z.avail_out = 65536;
        deflate(&s->z, final ? Z_FINISH : Z_SYNC_FLUSH);
        out->len += 65536 - s->z.avail_out;
    } while (s->z.avail_out == 0);
    if (!final && out->len >= 4)
        out->len -= 4;
    /*
     * RFC 7692 7.2.1: a message ending in a BFINAL block gets an empty
     * stored block before the four trailer bytes are stripped: one 0 byte.
     */
    if (final)
        buf_push(out, 0);
    if (s->reset_each || final)
        deflateReset(&s->z);
}

/* ---- feeding --------------------------------------------------------------------- */

struct got {
    int messages, pings, pongs, closes, errors;
    enum ws_rx_error error;
    int close_code;
    struct buf last; /* the last message */
    struct buf all;  /* every message, NUL-separated */
};

static void got_free(struct got *g)
{
    buf_free(&g->last);
    buf_free(&g->all);
}

/* Feeds data in pieces of step bytes (0: all at once) and records the events. */
static void feed(struct ws_rx *rx, const struct buf *data, size_t step, struct got *g)
{
    size_t off = 0;
    while (off < data->len) {
        size_t n = data->len - off;
        if (step && n > step)
            n = step;
        size_t at = 0;
        while (at < n) {
            struct ws_event ev;
            size_t used = ws_rx_feed(rx, data->data + off + at, n - at, &ev);
            at += used;
            switch (ev.type) {
            case WS_EV_NONE: break;
            case WS_EV_MESSAGE:
                g->messages++;
                g->last.len = 0;
                buf_append(&g->last, ev.data, ev.len);
                buf_append(&g->all, ev.data, ev.len);
                buf_push(&g->all, 0);
                break;
            case WS_EV_PING: g->pings++; break;
            case WS_EV_PONG: g->pongs++; break;
            case WS_EV_CLOSE:
                g->closes++;
                g->close_code = ev.close_code;
                break;
            case WS_EV_ERROR:
                g->errors++;
                g->error = ev.error;
                g->close_code = ev.close_code;
                return;
            }
            if (used == 0 && ev.type == WS_EV_NONE)
                break;
            if (ev.type == WS_EV_CLOSE)
                return;
        }
        off += n;
    }
}

static const size_t steps[] = {0, 1, 2, 3, 7, 100, 4096};
#define NSTEPS (sizeof steps / sizeof steps[0])

/* ---- cases ---------------------------------------------------------------------- */

static void test_pmd_parse(void)
{
    struct ws_pmd p;
    char err[160];
    CHECK(ws_pmd_parse(NULL, 1, &p, err, sizeof err) == 0 && !p.on);
    CHECK(ws_pmd_parse("permessage-deflate", 1, &p, err, sizeof err) == 0 && p.on &&
          p.server_max_window_bits == 15 && !p.server_no_context_takeover);
    CHECK(ws_pmd_parse("permessage-deflate; server_no_context_takeover; client_max_window_bits=10",
                       1, &p, err, sizeof err) == 0 &&
          p.on && p.server_no_context_takeover && p.client_max_window_bits == 10);
    CHECK(ws_pmd_parse("permessage-deflate;client_no_context_takeover;server_max_window_bits=\"9\"",
                       1, &p, err, sizeof err) == 0 &&
          p.client_no_context_takeover && p.server_max_window_bits == 9);
    CHECK(ws_pmd_parse("permessage-deflate", 0, &p, err, sizeof err) < 0);
    CHECK(ws_pmd_parse("x-webkit-deflate-frame", 1, &p, err, sizeof err) < 0);
    CHECK(ws_pmd_parse("permessage-deflate; foo", 1, &p, err, sizeof err) < 0 &&
          strstr(err, "foo") != NULL);
    CHECK(ws_pmd_parse("permessage-deflate; server_max_window_bits=16", 1, &p, err, sizeof err) <
          0);
    CHECK(ws_pmd_parse("permessage-deflate; server_max_window_bits", 1, &p, err, sizeof err) < 0);
    CHECK(ws_pmd_parse("permessage-deflate; server_no_context_takeover; server_no_context_takeover",
                       1, &p, err, sizeof err) < 0);
    CHECK(ws_pmd_parse("permessage-deflate, permessage-deflate", 1, &p, err, sizeof err) < 0);
}

static void test_http_head(void)
{
    const char *h = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    "Connection: keep-alive, Upgrade\r\nX-Empty:\r\n\r\nrest";
    long end = http_head_end((const uint8_t *)h, strlen(h));
    CHECK(end == (long)(strlen(h) - 4));
    struct http_head hh;
    char err[160];
    CHECK(http_head_parse(h, (size_t)end, &hh, err, sizeof err) == 0);
    CHECK(hh.status == 101);
    CHECK(http_token_in(http_head_get(&hh, "connection"), "upgrade"));
    CHECK(!http_token_in(http_head_get(&hh, "connection"), "close"));
    CHECK(http_head_get(&hh, "UPGRADE") && strcmp(http_head_get(&hh, "upgrade"), "websocket") == 0);
    CHECK(http_head_get(&hh, "x-empty") && *http_head_get(&hh, "x-empty") == '\0');
    CHECK(http_head_get(&hh, "missing") == NULL);
    http_head_free(&hh);
    CHECK(http_head_end((const uint8_t *)"HTTP/1.1 200", 12) == 0);
    struct buf big = {0};
    for (int i = 0; i < HTTP_HEAD_MAX / 8 + 1; i++)
        buf_append(&big, "X: yyy\r\n", 8);
    CHECK(http_head_end(big.data, big.len) == -1);
    buf_free(&big);
    CHECK(http_head_parse("SSH-2.0\r\n\r\n", 11, &hh, err, sizeof err) < 0);
    http_head_free(&hh);
    char key[25], acc[29];
    /* RFC 6455's own example. */
    ws_accept_for("dGhlIHNhbXBsZSBub25jZQ==", acc);
    CHECK(strcmp(acc, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") == 0);
    ws_make_key(key);
    CHECK(strlen(key) == 24);
}

/* Plain text, fragments, control frames between fragments, in every split. */
static void test_plain(void)
{
    struct buf d = {0};
    frame(&d, 1, 0, WS_OP_TEXT, "[\"EOSE\",\"a\"]", 12);
    frame(&d, 0, 0, WS_OP_TEXT, "hel", 3);
    frame(&d, 1, 0, WS_OP_PING, "p", 1);
    frame(&d, 0, 0, WS_OP_CONT, "lo ", 3);
    frame(&d, 1, 0, WS_OP_PONG, "", 0);
    frame(&d, 1, 0, WS_OP_CONT, "world", 5);
    frame(&d, 1, 0, WS_OP_TEXT, "", 0);
    uint8_t big[70000];
    memset(big, 'x', sizeof big);
    frame(&d, 1, 0, WS_OP_BINARY, big, sizeof big);
    uint8_t cp[125];
    size_t cl = ws_close_payload(1001, "going away", cp);
    frame(&d, 1, 0, WS_OP_CLOSE, cp, cl);
    for (size_t i = 0; i < NSTEPS; i++) {
        struct ws_rx rx;
        ws_rx_init(&rx, 0, NULL);
        struct got g = {0};
        feed(&rx, &d, steps[i], &g);
        CHECK_MSG(g.messages == 4 && g.pings == 1 && g.pongs == 1 && g.closes == 1 &&
                      g.errors == 0 && g.close_code == 1001,
                  "step %zu: %d messages %d errors (%s)", steps[i], g.messages, g.errors, rx.err);
        CHECK(g.all.len >= 12 + 1 + 11 + 1 + 1 &&
              memcmp(g.all.data, "[\"EOSE\",\"a\"]\0hello world\0\0", 26) == 0);
        CHECK(g.last.len == sizeof big);
        got_free(&g);
        ws_rx_free(&rx);
    }
    buf_free(&d);
}

/*
 * nostream (ws) and strfry: compressed messages with and without context
 * takeover, short messages uncompressed between them, one compressed message
 * split over three frames, and one ending in a BFINAL block.
 */
static void test_deflate_mixed(int no_context_takeover)
{
    struct zsrv zs;
    zsrv_init(&zs, 15, no_context_takeover);
    struct buf d = {0};
    char msg[2048];
    int want = 0;
    for (int i = 0; i < 20; i++) {
        int n =
            snprintf(msg, sizeof msg, "[\"EVENT\",\"sub\",{\"id\":\"%064d\",\"content\":\"%0*d\"}]",
                     i, 200 + i * 40, i);
        struct buf z = {0};
        zsrv_compress(&zs, msg, (size_t)n, &z, 0);
        if (i == 7) {
            size_t a = z.len / 3, b = 2 * z.len / 3;
            frame(&d, 0, 1, WS_OP_TEXT, z.data, a);
            frame(&d, 0, 0, WS_OP_CONT, z.data + a, b - a);
            frame(&d, 1, 0, WS_OP_PING, "", 0);
            frame(&d, 1, 0, WS_OP_CONT, z.data + b, z.len - b);
        } else {
            frame(&d, 1, 1, WS_OP_TEXT, z.data, z.len);
        }
        buf_free(&z);
        want++;
        /* A short NOTICE sent plain, as ws does below its threshold. */
        frame(&d, 1, 0, WS_OP_TEXT, "[\"NOTICE\",\"hi\"]", 15);
        want++;
    }
    /* A message whose last block has BFINAL set. */
    struct buf z = {0};
    zsrv_compress(&zs, "[\"EOSE\",\"sub\"]", 14, &z, 1);
    frame(&d, 1, 1, WS_OP_TEXT, z.data, z.len);
    buf_free(&z);
    want++;
    z.len = 0;
    zsrv_compress(&zs, "[\"EOSE\",\"sub2\"]", 15, &z, 0);
    frame(&d, 1, 1, WS_OP_TEXT, z.data, z.len);
    buf_free(&z);
    want++;
    deflateEnd(&zs.z);

    struct ws_pmd pmd = {1, no_context_takeover, 0, 15, 15};
    for (size_t i = 0; i < NSTEPS; i++) {
        struct ws_rx rx;
        ws_rx_init(&rx, 0, &pmd);
        struct got g = {0};
        feed(&rx, &d, steps[i], &g);
        CHECK_MSG(g.messages == want && g.errors == 0 && g.pings == 1,
                  "takeover %d step %zu: %d of %d messages, %d errors (%s)", !no_context_takeover,
                  steps[i], g.messages, want, g.errors, rx.err);
        CHECK(g.last.len == 15 && memcmp(g.last.data, "[\"EOSE\",\"sub2\"]", 15) == 0);
        /* Message 14 (the 8th event) came in three frames. */
        const uint8_t *p = g.all.data;
        for (int k = 0; k < 14 && p != NULL; k++)
            p = memchr(p, 0, g.all.len - (size_t)(p - g.all.data)), p = p ? p + 1 : NULL;
        CHECK(p != NULL && memcmp(p, "[\"EVENT\",\"sub\",{\"id\":\"", 21) == 0 &&
              strstr((const char *)p, "\"content\":\"") != NULL);
        got_free(&g);
        ws_rx_free(&rx);
    }
    buf_free(&d);
}

/* Frames no server may send fail the connection with a protocol error. */
static void test_protocol_errors(void)
{
    struct {
        const char *what;
        uint8_t bytes[16];
        size_t n;
        int pmd;
    } cases[] = {
        {"masked", {0x81, 0x81, 1, 2, 3, 4, 'x'}, 7, 0},
        {"rsv2", {0xa1, 0x00}, 2, 0},
        {"rsv1 without deflate", {0xc1, 0x00}, 2, 0},
        {"rsv1 on a continuation", {0x01, 0x01, 'a', 0xc0, 0x00}, 5, 1},
        {"continuation alone", {0x80, 0x00}, 2, 0},
        {"new message mid-message", {0x01, 0x01, 'a', 0x81, 0x00}, 5, 0},
        {"fragmented ping", {0x09, 0x00}, 2, 0},
        {"long ping", {0x89, 0x7e, 0x00, 0x7e}, 4, 0},
        {"opcode 3", {0x83, 0x00}, 2, 0},
        {"opcode 11", {0x8b, 0x00}, 2, 0},
        {"close of one byte", {0x88, 0x01, 0x03}, 3, 0},
        {"64-bit length with the top bit", {0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 1}, 10, 0},
        {"bad deflate data", {0xc1, 0x03, 0xff, 0xff, 0xff}, 5, 1},
    };
    struct ws_pmd pmd = {1, 0, 0, 15, 15};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct ws_rx rx;
        ws_rx_init(&rx, 0, cases[i].pmd ? &pmd : NULL);
        struct buf d = {0};
        buf_append(&d, cases[i].bytes, cases[i].n);
        struct got g = {0};
        feed(&rx, &d, 0, &g);
        CHECK_MSG(g.errors == 1 && g.messages == 0, "%s: %d errors, %d messages", cases[i].what,
                  g.errors, g.messages);
        CHECK_MSG(g.close_code == WS_CLOSE_PROTOCOL || g.close_code == WS_CLOSE_INVALID_DATA,
                  "%s: close code %d", cases[i].what, g.close_code);
        /* Nothing is read after an error. */
        struct ws_event ev;
        CHECK(ws_rx_feed(&rx, (const uint8_t *)"\x81\x00", 2, &ev) == 0);
        got_free(&g);
        buf_free(&d);
        ws_rx_free(&rx);
    }
}

/*
 * Over the cap: announced by a frame header (refused before the payload),
 * built from many small fragments, and a deflate bomb (20 MiB of one byte
 * in about 20 kB). Each stops with WS_ERR_TOO_BIG holding at most the cap.
 */
static void test_too_big(void)
{
    const size_t cap = 1 * MIB;
    struct ws_rx rx;
    struct got g = {0};
    struct buf d = {0};

    ws_rx_init(&rx, cap, NULL);
    uint8_t h[10] = {0x81, 0x7f, 0, 0, 0, 0, 0x01, 0x10, 0, 0}; /* 17 MiB */
    buf_append(&d, h, sizeof h);
    feed(&rx, &d, 0, &g);
    CHECK(g.errors == 1 && g.error == WS_ERR_TOO_BIG && g.close_code == WS_CLOSE_TOO_BIG);
    CHECK(strstr(rx.err, "1 MiB") != NULL);
    CHECK(rx.msg.cap <= cap + 1);
    ws_rx_free(&rx);
    got_free(&g);

    memset(&g, 0, sizeof g);
    d.len = 0;
    uint8_t piece[60000];
    memset(piece, 'a', sizeof piece);
    frame(&d, 0, 0, WS_OP_TEXT, piece, sizeof piece);
    for (int i = 0; i < 30; i++)
        frame(&d, 0, 0, WS_OP_CONT, piece, sizeof piece);
    ws_rx_init(&rx, cap, NULL);
    feed(&rx, &d, 5000, &g);
    CHECK(g.errors == 1 && g.error == WS_ERR_TOO_BIG);
    CHECK(rx.msg.cap <= cap + 1);
    ws_rx_free(&rx);
    got_free(&g);

    memset(&g, 0, sizeof g);
    d.len = 0;
    struct zsrv zs;
    zsrv_init(&zs, 15, 0);
    uint8_t *zeros = xcalloc(20 * MIB, 1);
    struct buf z = {0};
    zsrv_compress(&zs, zeros, 20 * MIB, &z, 0);
    free(zeros);
    deflateEnd(&zs.z);
    CHECK(z.len < cap);
    frame(&d, 1, 1, WS_OP_TEXT, z.data, z.len);
    buf_free(&z);
    struct ws_pmd pmd = {1, 0, 0, 15, 15};
    ws_rx_init(&rx, cap, &pmd);
    feed(&rx, &d, 0, &g);
    CHECK(g.errors == 1 && g.error == WS_ERR_TOO_BIG && strstr(rx.err, "inflated") != NULL);
    CHECK_MSG(rx.msg.cap <= cap + 1, "held %zu bytes", rx.msg.cap);
    ws_rx_free(&rx);
    got_free(&g);
    buf_free(&d);
}

/*
 * What we send: masked, compressed when long enough with RSV1 on the first
 * frame only, plain below WS_COMPRESS_MIN and for control frames, and with
 * client_no_context_takeover every message inflates on its own.
 */
static void test_tx(int no_context_takeover)
{
    struct ws_pmd pmd = {1, 0, no_context_takeover, 15, 15};
    struct ws_tx tx;
    ws_tx_init(&tx, &pmd);
    z_stream zi;
    memset(&zi, 0, sizeof zi);
    CHECK(inflateInit2(&zi, -15) == Z_OK);
    char msg[4000];
    for (int i = 0; i < 10; i++) {
        size_t n = i == 3 ? 10
                          : (size_t)snprintf(msg, sizeof msg, "[\"NEG-MSG\",\"s\",\"%0*d\"]",
                                             1000 + 300 * i, i);
        if (i == 3)
            memcpy(msg, "[\"CLOSE\"]1", 10);
        struct buf out = {0};
        ws_tx_frame(&tx, &out, WS_OP_TEXT, msg, n);
        CHECK(out.len >= 6 && (out.data[1] & 0x80)); /* masked */
        int rsv1 = (out.data[0] >> 6) & 1;
        CHECK(rsv1 == (n >= WS_COMPRESS_MIN));
        size_t len = out.data[1] & 0x7f, hl = 2;
        if (len == 126) {
            len = (size_t)(out.data[2] << 8 | out.data[3]);
            hl = 4;
        }
        CHECK(hl + 4 + len == out.len);
        uint8_t *p = out.data + hl + 4, *mask = out.data + hl;
        for (size_t k = 0; k < len; k++)
            p[k] ^= mask[k & 3];
        if (!rsv1) {
            CHECK(len == n && memcmp(p, msg, n) == 0);
        } else {
            CHECK(len < n);
            buf_append(&out, "\x00\x00\xff\xff", 4);
            p = out.data + hl + 4;
            uint8_t back[8000];
            zi.next_in = p;
            zi.avail_in = (uInt)len + 4;
            zi.next_out = back;
            zi.avail_out = sizeof back;
            int zr = inflate(&zi, Z_SYNC_FLUSH);
            CHECK(zr == Z_OK && sizeof back - zi.avail_out == n && memcmp(back, msg, n) == 0);
            if (no_context_takeover)
                inflateReset(&zi);
        }
        buf_free(&out);
    }
    struct buf out = {0};
    ws_tx_frame(&tx, &out, WS_OP_PING,
                "0123456789012345678901234567890123456789012345678901234567"
                "8901234567890123456789",
                80);
    CHECK((out.data[0] & 0x40) == 0 && (out.data[0] & 0x0f) == WS_OP_PING);
    buf_free(&out);
    inflateEnd(&zi);
    ws_tx_free(&tx);

    /* An 8-bit window zlib cannot make: everything goes plain. */
    struct ws_pmd small = {1, 0, 0, 15, 8};
    ws_tx_init(&tx, &small);
    memset(msg, 'a', 500);
    ws_tx_frame(&tx, &out, WS_OP_TEXT, msg, 500);
    CHECK((out.data[0] & 0x40) == 0);
    buf_free(&out);
    ws_tx_free(&tx);
}

int main(void)
{
    test_pmd_parse();
    test_http_head();
    test_plain();
    test_deflate_mixed(0);
    test_deflate_mixed(1);
    test_protocol_errors();
    test_too_big();
    test_tx(0);
    test_tx(1);
    return test_summary("test-ws");
}
