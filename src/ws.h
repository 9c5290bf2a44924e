/*
 * ws: the websocket protocol as a client speaks it (RFC 6455), with
 * permessage-deflate (RFC 7692), and the HTTP/1.1 response heads both the
 * upgrade and the NIP-11 fetch read. No I/O: relay.c moves the bytes.
 *
 * Why our own: libwebsockets 4.1's client (Debian 12) never consumes an
 * uncompressed frame on a connection that negotiated permessage-deflate
 * (upstream issue 2794, open), which spins one worker re-parsing the same
 * message and eats all memory against nostream and strfry; and returning
 * from its receive callback mid-frame lets it write past its buffer. A
 * client needs little of the protocol, and owning it means every limit and
 * every deadline is ours.
 *
 * The receiver (struct ws_rx) is an incremental parser: feed it whatever the
 * socket gave, it consumes bytes up to the next complete event (a data
 * message, a ping, a pong, a close, or an error that must fail the
 * connection) and says how many it took. It never holds more than
 * max_message bytes of a message, compressed or inflated: past that it
 * stops with WS_ERR_TOO_BIG, so a flood or a deflate bomb costs a bounded
 * amount of memory.
 */
#ifndef NEGSYNC_WS_H
#define NEGSYNC_WS_H

#include <stddef.h>
#include <stdint.h>

#include <zlib.h>

#include "util.h"

enum ws_opcode {
    WS_OP_CONT = 0x0,
    WS_OP_TEXT = 0x1,
    WS_OP_BINARY = 0x2,
    WS_OP_CLOSE = 0x8,
    WS_OP_PING = 0x9,
    WS_OP_PONG = 0xa,
};

/* Close codes we send or report. */
enum {
    WS_CLOSE_NORMAL = 1000,
    WS_CLOSE_NO_STATUS = 1005,
    WS_CLOSE_PROTOCOL = 1002,
    WS_CLOSE_INVALID_DATA = 1007,
    WS_CLOSE_TOO_BIG = 1009,
};

/* ---- handshake ---------------------------------------------------------------- */

/* A fresh Sec-WebSocket-Key (16 random bytes in base64): 24 characters and a NUL. */
void ws_make_key(char key[25]);
/* The Sec-WebSocket-Accept a server must answer key with: 28 characters and a NUL. */
void ws_accept_for(const char *key, char out[29]);

/* The negotiated permessage-deflate parameters. */
struct ws_pmd {
    int on;
    int server_no_context_takeover;
    int client_no_context_takeover;
    int server_max_window_bits; /* 8..15; 15 when not given */
    int client_max_window_bits; /* 8..15; 15 when not given */
};

/* What we offer when compression is wanted. */
#define WS_PMD_OFFER "permessage-deflate; client_max_window_bits"

/*
 * Reads a server's Sec-WebSocket-Extensions answer (NULL: none). A client
 * must fail the connection on an extension it did not offer, a parameter it
 * does not know, a repeated one or a bad value; offered says whether we
 * offered permessage-deflate at all. 0, or -1 with a reason.
 */
int ws_pmd_parse(const char *value, int offered, struct ws_pmd *out, char *err, size_t errlen);

/* ---- HTTP response heads ---------------------------------------------------------- */

#define HTTP_HEAD_MAX    (16 * 1024)
#define HTTP_HEADERS_MAX 64

struct http_head {
    int status;
    char *text; /* a copy of the head; names and values point into it */
    size_t n;
    struct {
        const char *name, *value;
    } h[HTTP_HEADERS_MAX];
};

/*
 * Where the head ends in data (the offset just past the blank line), 0 when
 * it has not ended yet, -1 when it is longer than HTTP_HEAD_MAX.
 */
long http_head_end(const uint8_t *data, size_t len);
/* Parses a complete head of len bytes; 0, or -1 with a reason. Free with http_head_free. */
int http_head_parse(const char *data, size_t len, struct http_head *h, char *err, size_t errlen);
/* The first value of a header (case-insensitive name), or NULL. */
const char *http_head_get(const struct http_head *h, const char *name);
/* 1 if a comma-separated header value contains token (case-insensitive). */
int http_token_in(const char *value, const char *token);
void http_head_free(struct http_head *h);

/* ---- receiving -------------------------------------------------------------------- */

enum ws_event_type {
    WS_EV_NONE,    /* more bytes needed */
    WS_EV_MESSAGE, /* a complete data message: rx->msg, binary says which kind */
    WS_EV_PING,    /* payload in ev->data / ev->len (at most 125 bytes) */
    WS_EV_PONG,
    WS_EV_CLOSE, /* ev->close_code (WS_CLOSE_NO_STATUS if none), ev->data / len: reason */
    WS_EV_ERROR, /* the connection must fail: ev->close_code to send, rx->err says why */
};

/* Why an error event happened. */
enum ws_rx_error {
    WS_ERR_PROTOCOL = 1, /* a frame no server may send */
    WS_ERR_TOO_BIG,      /* a message beyond max_message */
    WS_ERR_INFLATE,      /* compressed data that does not inflate */
};

struct ws_event {
    enum ws_event_type type;
    int binary;
    const uint8_t *data;
    size_t len;
    int close_code;
    enum ws_rx_error error;
};

struct ws_rx {
    size_t max_message;
    struct ws_pmd pmd;
    z_stream z;
    int z_ready;
    /* the frame being read */
    uint8_t hdr[14];
    size_t hdr_have;
    int hdr_done;
    int fin, rsv1, opcode;
    uint64_t left; /* payload bytes of this frame still to come */
    uint8_t ctl[125];
    size_t ctl_len;
    /* the message being reassembled */
    int in_message, msg_binary, msg_compressed;
    uint64_t msg_wire; /* payload bytes received for it, compressed or not */
    struct buf msg;
    int failed; /* an error was reported: nothing more is read */
    char err[160];
};

/* max_message: the cap on one message (0: 16 MiB). pmd: the negotiated parameters, or NULL. */
void ws_rx_init(struct ws_rx *rx, size_t max_message, const struct ws_pmd *pmd);
void ws_rx_free(struct ws_rx *rx);

/*
 * Consumes bytes of in (at most n) up to and including the next event, and
 * returns how many it took; ev says what happened (WS_EV_NONE once all of in
 * was taken without completing anything). A message's text stays in rx->msg
 * until the next call. After WS_EV_ERROR every call takes nothing.
 */
size_t ws_rx_feed(struct ws_rx *rx, const uint8_t *in, size_t n, struct ws_event *ev);

/* ---- sending ------------------------------------------------------------------------ */

struct ws_tx {
    struct ws_pmd pmd;
    z_stream z;
    int z_ready;
    int compress; /* 0 when the negotiated window cannot be honoured (8 bits) */
    uint32_t mask_state[4];
};

/* Messages shorter than this go uncompressed, as ws and uWebSockets servers do. */
#define WS_COMPRESS_MIN 64

void ws_tx_init(struct ws_tx *tx, const struct ws_pmd *pmd);
void ws_tx_free(struct ws_tx *tx);
/*
 * Appends one complete masked frame to out: a data message (WS_OP_TEXT or
 * WS_OP_BINARY; compressed when permessage-deflate is on and it is long
 * enough) or a control frame (payload at most 125 bytes, never compressed).
 */
void ws_tx_frame(struct ws_tx *tx, struct buf *out, int opcode, const void *payload, size_t len);
/* The bytes a close frame with code and reason carries (reason cut to fit): into out[125]. */
size_t ws_close_payload(int code, const char *reason, uint8_t out[125]);

#endif
