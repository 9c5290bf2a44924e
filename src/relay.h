/*
 * relay: one websocket connection to one Nostr relay (our own RFC 6455
 * client with permessage-deflate, over OpenSSL), and the NIP-11 relay
 * information document.
 *
 * The API is synchronous and meant for one worker thread: relay_connect,
 * relay_send and relay_recv service the connection on the calling thread
 * until their condition holds or their deadline passes, whatever the relay
 * sends meanwhile. A struct relay must only
 * be used by one thread at a time; the one exception is relay_interrupt,
 * which any thread may call to make the blocked call return
 * RELAY_ERR_INTERRUPTED promptly (a stop request from the engine or the TUI).
 *
 * Incoming text is parsed into struct relay_msg. Anything that is not a JSON
 * array with a known string first element and correctly typed fields is
 * logged (truncated) and skipped: relay_recv never returns it. Messages that
 * arrive while relay_send or relay_connect is servicing the connection are
 * queued for the next relay_recv, so NEG rounds and REQ fetches can share one
 * connection.
 *
 * Byte counters: the payload counters are exact (the text bytes of each
 * message). The wire counters are the bytes the TCP connection carried, read
 * from the kernel (TCP_INFO and the socket queues): HTTP upgrade, TLS records,
 * websocket framing and masks, permessage-deflate output, pings and the close
 * handshake all included; TCP/IP headers are not. See relay_get_counters.
 */
#ifndef NEGSYNC_RELAY_H
#define NEGSYNC_RELAY_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define RELAY_ERRLEN 256

/* Results: 0 for success, one of these (all negative) otherwise. */
enum relay_error {
    RELAY_OK = 0,
    RELAY_ERR_INVALID = -1,     /* bad URL or argument; nothing was tried */
    RELAY_ERR_UNREACHABLE = -2, /* DNS failure, connection refused or reset, no route */
    RELAY_ERR_TLS_CERT = -3,    /* "TLS certificate verification failed: ..." */
    RELAY_ERR_TLS = -4,         /* any other TLS failure (protocol, handshake) */
    RELAY_ERR_HANDSHAKE = -5,   /* HTTP answered but not with a websocket upgrade */
    RELAY_ERR_CLOSED = -6,      /* the connection is closed (by the peer, or after an error) */
    RELAY_ERR_TOO_BIG = -7,     /* an incoming message exceeded max_message; connection closed */
    RELAY_ERR_TIMEOUT =
        -8, /* the deadline passed; for connect and send the connection is dropped */
    RELAY_ERR_INTERRUPTED = -9,    /* relay_interrupt was called */
    RELAY_ERR_NOT_CONNECTED = -10, /* send/recv without an open connection */
    RELAY_ERR_INTERNAL = -11,      /* libwebsockets refused to create a context or connection */
};

/* "unreachable", "tls-cert", ... for logs and the status table; never NULL. */
const char *relay_error_name(int code);

struct relay_opts {
    int tls_verify;         /* 1 (default): verify the certificate chain against the system
                             * store and the host name; 0: accept self-signed certificates
                             * and any host name (an explicit per-relay opt-in) */
    int compression;        /* 1 (default): offer permessage-deflate; 0: do not */
    size_t max_message;     /* cap on one incoming message (inflated), default 16 MiB */
    size_t max_queued;      /* cap on received messages not yet taken by relay_recv,
                             * default 64 MiB; past either cap the connection fails
                             * with RELAY_ERR_TOO_BIG */
    int connect_timeout_ms; /* default 10000; used when relay_connect gets timeout_ms <= 0 */
    int send_timeout_ms;    /* default 30000: relay_send gives up (and drops the
                             * connection) when the peer stops reading */
    int ping_interval_s;    /* default 30: ping after this long without traffic, hang up
                             * after twice as long without a pong; 0 disables.
                             * Pings only happen while a relay_* call services the
                             * connection. */
    int trace; /* 1: log every message's type and size, in and out; 2: and its text, cut */
    /*
     * A flag the caller owns (e.g. an engine stopping): once set, every
     * blocking call of this relay, and relay_fetch_nip11, returns
     * RELAY_ERR_INTERRUPTED within about 100 ms. NULL: none.
     */
    const atomic_int *cancel;
    /* Where skipped messages and connection events are reported; NULL: stderr.
     * Called on the thread that uses the relay. */
    void (*log)(void *log_arg, const char *url, const char *line);
    void *log_arg;
};

/* The defaults above. */
struct relay_opts relay_opts_default(void);

/* ---- messages from the relay ---------------------------------------------- */

enum relay_msg_type {
    RELAY_MSG_EVENT,   /* ["EVENT", subid, {event}] */
    RELAY_MSG_EOSE,    /* ["EOSE", subid] */
    RELAY_MSG_OK,      /* ["OK", id, true|false, reason] */
    RELAY_MSG_NOTICE,  /* ["NOTICE", text] */
    RELAY_MSG_CLOSED,  /* ["CLOSED", subid, reason] (reason may be missing: "") */
    RELAY_MSG_NEG_MSG, /* ["NEG-MSG", subid, hex] */
    RELAY_MSG_NEG_ERR, /* ["NEG-ERR", subid, reason (, limit)] (reason may be missing: "") */
    /*
     * ["NEG-CLOSE", subid]: a relay ending a session itself (khatru, once it
     * has nothing more to say). Extra elements are ignored.
     */
    RELAY_MSG_NEG_CLOSE,
    RELAY_MSG_AUTH,  /* ["AUTH", challenge] */
    RELAY_MSG_COUNT, /* ["COUNT", subid, {"count": n, ...}] */
};

/*
 * One parsed message; the caller frees it with relay_msg_free. Fields that do
 * not apply to the type are NULL / 0. Strings are NUL-terminated copies (a
 * "\u0000" inside a reason or notice truncates it; subids and hex never hold
 * one).
 */
struct relay_msg {
    enum relay_msg_type type;
    size_t raw_len;  /* bytes of the message text, framing included ("saved bytes" maths) */
    char *subid;     /* EVENT, EOSE, CLOSED, NEG-MSG, NEG-ERR, NEG-CLOSE, COUNT */
    json_t *event;   /* EVENT: the event object, shape not yet checked (event_from_json
                         * does that); the caller may take it: set to NULL after taking */
    char ok_id[65];  /* OK: the event id, 64 lowercase hex */
    int ok_accepted; /* OK: 1 for true, 0 for false */
    char *text;      /* OK reason, NOTICE text, CLOSED / NEG-ERR reason, AUTH challenge */
    char *neg_hex;   /* NEG-MSG: hex of even length (case not normalized) */
    size_t neg_hex_len;
    int has_neg_limit; /* NEG-ERR: a 4th element was present (strfry: the max record count) */
    int64_t neg_limit;
    uint64_t count; /* COUNT */
};

/*
 * Parses one message of len bytes. Returns 0 and a new message in *out, or
 * -1 with a reason in err ("not a JSON array", "unknown message type \"FOO\"",
 * "EVENT: element 2 is not an object", "invalid JSON: ..."). Never reads past
 * len; text need not be NUL-terminated.
 */
int relay_msg_parse(const char *text, size_t len, struct relay_msg **out, char *err, size_t errlen);
void relay_msg_free(struct relay_msg *m);

/* ---- connections ------------------------------------------------------------ */

struct relay;

/*
 * Validates the URL (ws:// or wss://, a host, an optional port 1..65535, a
 * path) and prepares a relay; no network traffic yet. opts NULL means the
 * defaults. Returns NULL with a reason in err. Caller frees with relay_free.
 */
struct relay *relay_new(const char *url, const struct relay_opts *opts, char *err, size_t errlen);
/* Closes the connection if any (cleanly, briefly) and frees everything. NULL is fine. */
void relay_free(struct relay *r);

/* The URL as given to relay_new. */
const char *relay_url(const struct relay *r);
/* 1 while the websocket is open. */
int relay_is_connected(const struct relay *r);
/*
 * The current (or last) connection's number, unique in the process across
 * every struct relay: what a connection's state (a NIP-42 challenge, being
 * authenticated) is tied to. 0 before the first successful relay_connect.
 */
uint64_t relay_connection_id(const struct relay *r);

/*
 * Opens the websocket (closing any previous connection first), waiting at
 * most timeout_ms (<= 0: opts.connect_timeout_ms). 0, or a negative
 * enum relay_error with the reason in err. Every failure counts towards the
 * backoff; a success resets it.
 */
int relay_connect(struct relay *r, int timeout_ms, char *err, size_t errlen);

/*
 * Sleeps for relay_backoff_ms(r) (interruptibly; nothing when the last
 * attempt succeeded), then relay_connect.
 */
int relay_reconnect(struct relay *r, int timeout_ms, char *err, size_t errlen);

/*
 * Sends one text message (len bytes, need not be NUL-terminated). Returns
 * when libwebsockets has written all of it to the socket, or fails after
 * opts.send_timeout_ms (the connection is then dropped: a half-written frame
 * cannot be resumed). Messages received meanwhile are queued for relay_recv.
 */
int relay_send(struct relay *r, const char *text, size_t len, char *err, size_t errlen);

/*
 * The next valid incoming message, waiting at most timeout_ms (0: only what
 * is already queued or readable now). 0 with *out set (caller frees with
 * relay_msg_free); RELAY_ERR_TIMEOUT; RELAY_ERR_CLOSED once the connection is
 * gone and the queue is empty (err says why: peer closed with code/reason,
 * ping timeout...); RELAY_ERR_TOO_BIG ("message larger than 16 MiB"; the
 * connection has been closed); RELAY_ERR_INTERRUPTED.
 */
int relay_recv(struct relay *r, int timeout_ms, struct relay_msg **out, char *err, size_t errlen);

/*
 * Clean close: sends a websocket close (1000) and waits up to a second for
 * the peer's answer. Queued incoming messages are dropped. Safe when not
 * connected.
 */
void relay_close(struct relay *r);

/*
 * Thread-safe: makes the current (or, if none is running, the next) blocking
 * relay_connect / relay_reconnect / relay_send / relay_recv on r return
 * RELAY_ERR_INTERRUPTED. The connection stays as it was (a send that was cut
 * short drops it).
 */
void relay_interrupt(struct relay *r);

/* ---- counters ------------------------------------------------------------------ */

struct relay_counters {
    uint64_t sent_payload; /* text bytes of messages handed to relay_send and fully written */
    uint64_t recv_payload; /* text bytes of every complete message received, skipped ones too */
    uint64_t sent_wire;    /* bytes written to the TCP connection (see top of file) */
    uint64_t recv_wire;    /* bytes read from the TCP connection */
    uint64_t sent_msgs;
    uint64_t recv_msgs; /* complete messages received, skipped ones too */
};

/*
 * conn: the current (or last) connection, from the start of its TCP
 * handshake; total: everything since relay_new, across reconnects. Either
 * may be NULL. The wire counters of an open connection are read from its
 * socket here (so call it from the thread that uses r), and taken while
 * connecting and just before it closes.
 */
void relay_get_counters(struct relay *r, struct relay_counters *conn, struct relay_counters *total);

/* ---- reconnect policy -------------------------------------------------------- */

/* Consecutive failed relay_connect calls since the last success. */
unsigned relay_failures(const struct relay *r);

/*
 * The pure backoff policy: the delay before attempt number failures+1 when
 * failures attempts in a row have failed: 0 for 0 failures, else
 * 1 s * 2^(failures-1) capped at 5 min, times a jitter factor in [0.8, 1.2]
 * taken from rnd (any 64-bit value; uniform rnd gives uniform jitter).
 */
int64_t relay_backoff_delay_ms(unsigned failures, uint64_t rnd);
/* relay_backoff_delay_ms(relay_failures(r), next value of r's own PRNG). */
int64_t relay_backoff_ms(struct relay *r);

/* ---- URLs --------------------------------------------------------------------- */

/*
 * The key form of a relay URL, the only one: the config, the capability
 * cache, the database and the engine all name a relay by it. Scheme and host
 * lowercased, the default port (80 for ws, 443 for wss) dropped, trailing
 * slashes of the path dropped, the query kept as written
 * ("wss://Relay.Example.com:443/" -> "wss://relay.example.com",
 * "wss://h/x/?a=1" -> "wss://h/x?a=1", "wss://h/?a=1" -> "wss://h?a=1").
 * Refuses anything but ws:// and wss://, user info, fragments and bad ports.
 * Caller frees; NULL with a reason in err.
 */
char *relay_url_normalize(const char *url, char *err, size_t errlen);

/* ---- NIP-11 ------------------------------------------------------------------- */

/*
 * A relay information document. present = 0 means "no NIP-11" (missing,
 * HTTP error, not JSON, not an object, larger than 1 MiB, or an object in
 * which none of name, software, version, supported_nips, negentropy has the
 * right type) and reason says why;
 * then only http_status (and raw, if a body of at most 1 MiB came) may be
 * set. Otherwise fields with the wrong type are ignored one by one.
 * Integers absent or ignored are -1.
 */
struct relay_nip11 {
    int present;
    char reason[160];
    int http_status; /* 0 when parsed from text */
    char *raw;       /* the body as received (NUL-terminated), for the cache; may be NULL */
    size_t raw_len;
    char *name, *software, *version; /* NULL when absent */
    int has_supported_nips;
    int64_t *supported_nips; /* the integer entries, in document order */
    size_t n_supported_nips;
    char *negentropy; /* the "negentropy" field as text: an integer is rendered in
                             * decimal, a string kept as is; NULL when absent */
    struct {
        int64_t max_message_length, max_subscriptions, max_limit, max_filters;
        int auth_required, payment_required; /* 1, 0, or -1 when absent */
    } limitation;
};

/*
 * GET of the relay URL over http(s) (ws -> http, wss -> https) with
 * "Accept: application/nostr+json", the TLS rules of opts, at most
 * timeout_ms and 1 MiB. Returns 0 with *out set whenever the server
 * answered (check present), or a negative enum relay_error with err set and
 * *out NULL when it could not be reached (unreachable, TLS, timeout).
 */
int relay_fetch_nip11(const char *url, const struct relay_opts *opts, int timeout_ms,
                      struct relay_nip11 **out, char *err, size_t errlen);
/* Parses a document (e.g. from the cache); never NULL. */
struct relay_nip11 *relay_nip11_parse(const char *text, size_t len);
/* 1 if supported_nips contains nip. */
int relay_nip11_lists(const struct relay_nip11 *n, int nip);
void relay_nip11_free(struct relay_nip11 *n);

#endif
