/*
 * testrelay: the pieces of tests/negsync-testrelay, a small Nostr relay (NIP-01,
 * NIP-11, NIP-77 responder) built on the project's own event, filter, store and
 * neg modules, with fault modes that stand in for the relays out there.
 *
 * One thread runs everything: the libwebsockets service loop owns the context,
 * every connection and the store. Replies are queued on the connection and
 * written only from LWS_CALLBACK_SERVER_WRITEABLE.
 *
 *   negsync-testrelay.c  options, context, service loop, signals, preload
 *   testrelay/conn.c     the lws protocol callback: websocket framing, the send
 *                        queue (delays, drops, garbage), NIP-11 over HTTP, stats
 *   testrelay/handle.c   what one client message means: EVENT, REQ, CLOSE,
 *                        NEG-OPEN / NEG-MSG / NEG-CLOSE and the NIP-77 faults
 */
#ifndef NEGSYNC_TESTRELAY_H
#define NEGSYNC_TESTRELAY_H

#include <stddef.h>
#include <stdint.h>

#include <libwebsockets.h>

#include "neg.h"
#include "store.h"

/* Incoming websocket messages larger than this are refused (NOTICE, then dropped): --max-message. */
#define TR_MAX_MESSAGE (16u * 1024 * 1024)
/* strfry's default frame size limit for its negentropy replies. */
#define TR_NEG_FRAME_LIMIT 500000
#define TR_MAX_SUBID       64

enum tr_nip11_mode {
    TR_NIP11_OK,
    TR_NIP11_ABSENT,     /* 404 */
    TR_NIP11_INVALID,    /* 200 application/nostr+json that is not JSON */
    TR_NIP11_WRONGTYPES, /* JSON with the wrong types for well-known fields */
    TR_NIP11_HUGE,       /* a valid 5 MiB document */
};

enum tr_nonip77 {
    TR_NIP77_ON,
    TR_NIP77_NOTICE,     /* ["NOTICE","ERROR: bad msg: negentropy disabled"] (strfry) */
    TR_NIP77_UNKNOWN,    /* ["NOTICE","ERROR: bad msg: unknown cmd"] (older strfry) */
    TR_NIP77_NEG_ERR,    /* ["NEG-ERR",id,"blocked: Negentropy sync is disabled"] (chorus) */
    TR_NIP77_CLOSED,     /* ["CLOSED",id,"error: NEG not supported"] */
    TR_NIP77_SILENT,     /* no answer at all */
    TR_NIP77_DISCONNECT, /* the connection is dropped on NEG-OPEN */
};

struct tr_config {
    int port;
    const char *db_path;      /* NULL: an in-memory store */
    const char *events_path;  /* JSON lines to preload, or NULL */
    uint64_t req_limit;       /* at most this many events per REQ */
    uint64_t max_sync_events; /* NEG-OPEN over more matches is blocked */
    const char *nip11_nips;   /* "1,11,77" */
    const char *software;
    const char *version;
    enum tr_nip11_mode nip11;
    const char *nip11_file; /* served verbatim instead, or NULL */
    enum tr_nonip77 nonip77;
    const char *notice_text;    /* overrides the NOTICE text of notice/unknown */
    const char *welcome_notice; /* NULL: none */
    int64_t ignore_first_ms;    /* -1: off; else drop what arrives this soon after opening */
    int auth_challenge;         /* send ["AUTH", challenge] when a connection opens */
    /*
     * --auth KINDS: events of these kinds are served (REQ, NEG-OPEN) and
     * taken (EVENT) only on a connection that authenticated (NIP-42) as one
     * of auth_pubkeys (--auth-pubkey; none given: any pubkey). Implies
     * auth_challenge.
     */
    uint32_t *auth_kinds;
    size_t nauth_kinds;
    uint8_t (*auth_pubkeys)[32];
    size_t nauth_pubkeys;
    int auth_writes_only; /* --auth-writes-only: REQ and NEG-OPEN serve those kinds to anyone */
    int auth_strict;      /* --auth-strict: a REQ naming no kinds is refused, not filtered */
    /*
     * --auth-refuse: every valid AUTH gets OK false with this reason (NULL:
     * off); --auth-unheeded: OK true, and the connection stays as it was.
     */
    const char *auth_refuse;
    int auth_unheeded;
    int64_t neg_err_after;   /* -1: off */
    int64_t neg_close_after; /* -1: off */
    const char *req_closed;  /* NULL: off; else every REQ gets CLOSED with it */
    int64_t drop_after;      /* -1: off */
    int64_t stall_after;     /* -1: off; else stop reading after K messages */
    size_t big_notice;       /* 0: off; else a NOTICE this long on connect */
    unsigned delay_ms;
    size_t max_message; /* the longest message read (and NIP-11 max_message_length) */
    double garbage;     /* fraction of replies garbled */
    double bad_events;  /* fraction of served events altered */
    uint64_t req_hide;  /* 0: off; else REQ never serves the K-th newest event (see handle.c) */
    uint64_t neg_cap;   /* 0: off; else NEG-OPEN lists only the first N matches, oldest first */
    uint64_t seed;
    const char *tls_cert, *tls_key; /* both or neither */
    const char *stats_file;
    int deflate; /* offer permessage-deflate */
    /*
     * --deflate-no-context-takeover: announce server_no_context_takeover and
     * start the compressor afresh for every message (nostream's ws).
     */
    int deflate_no_context_takeover;
    size_t deflate_threshold; /* shorter messages go uncompressed (ws: 1024) */
    int flood;                /* --flood: NOTICEs without end once connected */
    int neg_refuse_limit0;    /* NEG-OPEN with "limit":0 gets NEG-ERR (khatru) */
    int verbose;
};

/* Message types counted in the stats; anything else is "other", unparsable is "invalid". */
enum tr_type {
    TR_T_EVENT,
    TR_T_REQ,
    TR_T_CLOSE,
    TR_T_NEG_OPEN,
    TR_T_NEG_MSG,
    TR_T_NEG_CLOSE,
    TR_T_OK,
    TR_T_EOSE,
    TR_T_CLOSED,
    TR_T_NOTICE,
    TR_T_NEG_ERR,
    TR_T_AUTH,
    TR_T_COUNT,
    TR_T_OTHER,
    TR_T_INVALID,
    TR_NTYPES
};

enum tr_type tr_type_from_name(const char *name);
const char *tr_type_name(enum tr_type t);

/*
 * Payload bytes (websocket message bodies, without framing) and messages by
 * type; and NIP-42: AUTH events accepted and refused, and the queries and
 * events answered auth-required: or restricted:.
 */
struct tr_counts {
    uint64_t rx_bytes, tx_bytes;
    uint64_t rx_msgs, tx_msgs;
    uint64_t rx[TR_NTYPES], tx[TR_NTYPES];
    uint64_t auth_ok, auth_failed, auth_required, restricted;
};

/* The counters of one finished connection, kept for --stats-file. */
struct tr_conn_record {
    uint64_t id;
    struct tr_counts counts;
};

struct tr_server {
    const struct tr_config *cfg;
    int port; /* the one listened on, for the relay tag of AUTH events */
    struct store *store;
    struct lws_context *ctx;
    uint64_t rng; /* splitmix64 state, from --seed */
    uint64_t next_conn_id;
    uint64_t http_requests;
    struct tr_conn_record *records; /* closed connections */
    size_t nrecords, caprecords;
    struct tr_conn *live; /* open websocket connections */
    char *nip11_doc;      /* built once at startup */
    size_t nip11_len;
    const char *nip11_type; /* its content type */
    int nip11_status;
    int hidden_known; /* --req-hide: hidden_id was looked up (at the first REQ) */
    int hidden_set;   /* ... and there was such an event */
    uint8_t hidden_id[32];
};

/* One outgoing websocket message, with LWS_PRE bytes of headroom before data. */
struct tr_msg {
    struct tr_msg *next;
    lws_usec_t due;    /* not written before this time (--delay-ms) */
    enum tr_type type; /* for the stats */
    size_t len;
    unsigned char buf[]; /* LWS_PRE + len */
};

struct tr_neg_session {
    struct tr_neg_session *next;
    char *id;
    struct neg_storage *storage;
    struct neg *neg;
    uint64_t replies; /* NEG-MSG replies sent so far */
};

/* Per-connection state: lws's per_session_data for the one protocol. */
struct tr_conn {
    struct tr_server *srv;
    struct tr_conn *next_live; /* srv->live */
    struct lws *wsi;
    int is_ws; /* set on ESTABLISHED; HTTP connections leave it 0 */
    uint64_t id;
    struct buf rx;  /* the message being reassembled from fragments */
    int rx_too_big; /* the current message exceeded cfg->max_message */
    int rx_binary;
    struct tr_msg *qhead, *qtail;
    /*
     * The message lws_write last took: with permessage-deflate lws may go on
     * compressing it from our buffer after lws_write returns, so it is freed
     * at the next WRITEABLE (lws drains the extension first) or at close.
     */
    struct tr_msg *held;
    uint64_t sent;      /* messages written, for --drop-after */
    int closing;        /* stop reading; close once the queue is empty */
    lws_usec_t opened;  /* when the websocket opened (--ignore-first-message) */
    char challenge[40]; /* the NIP-42 challenge sent, or "" */
    int authed;         /* an AUTH event was accepted */
    int auth_allowed;   /* ... for a pubkey --auth-pubkey allows */
    struct tr_counts counts;
    struct tr_neg_session *negs;
    /* HTTP (NIP-11) response body in progress */
    const char *http_body;
    size_t http_len, http_pos;
};

/* conn.c */
extern const struct lws_protocols tr_protocols[];
uint64_t tr_rng_next(struct tr_server *srv);
/* 1 with probability p (consumes no randomness when p <= 0). */
int tr_rng_chance(struct tr_server *srv, double p);
/*
 * Queues text (len bytes) to the client, applying --delay-ms and --garbage,
 * and asks lws for a WRITEABLE callback. type is what the stats count it as.
 */
void tr_conn_send_text(struct tr_conn *c, enum tr_type type, const char *text, size_t len);
/* Same for a JSON array, serialized compactly; steals the reference to msg. */
void tr_conn_send_json(struct tr_conn *c, json_t *msg);
void tr_conn_send_notice(struct tr_conn *c, const char *text);
/* Builds the NIP-11 document the configuration asks for; -1 with a reason. */
int tr_nip11_build(struct tr_server *srv, char *err, size_t errlen);
/*
 * Writes --stats-file (atomically, via a temporary file): closed connections,
 * then open ones so far ("open": true); -1 with a reason.
 */
int tr_stats_write(struct tr_server *srv, char *err, size_t errlen);

/* handle.c */
/*
 * Handles one complete text message from the client. Returns 0, or -1 to
 * drop the connection at once (--no-nip77=disconnect).
 */
int tr_handle_message(struct tr_conn *c, const char *text, size_t len);
void tr_neg_sessions_free(struct tr_conn *c);

#endif
