/*
 * caps: does a relay speak NIP-77, and the cache of the answer.
 *
 * The decision is made by a real handshake; NIP-11 is only a hint (relays
 * list 77 and then refuse it, others answer without listing it). caps_probe
 * sends NEG-OPEN with a filter object that matches nothing anywhere and the
 * initial message of an empty negentropy set, then classifies the first reply
 * that concerns it (see caps_handshake). The verdict is kept per normalized
 * relay URL in the database's relay_caps table and reused until it is older
 * than recheck_days, the relay's NIP-11 software or version changes, or the
 * caller forces a re-check. A relay that cannot be reached at all is
 * "unreachable", which is never written to the cache: a relay that is down
 * today has not stopped speaking NIP-77. Silence is weak evidence too: a
 * NEG-OPEN that got no reply at all is cached as unsupported for at most
 * CAPS_SILENCE_RECHECK_S, not recheck_days.
 *
 * Some relays lose the first message of a new connection: nostream with its
 * default rate limiter attaches its message handler only after an
 * asynchronous Redis check, so on loopback or a LAN whatever arrives first is
 * dropped without a word. struct caps_guard (below) sends that first message
 * again, once, on a fresh connection; the probe and the sync jobs both send
 * through it.
 *
 * Wall-clock time (checked_at, the cache's age) comes from an injectable
 * clock so tests can age the cache; latencies use the monotonic clock.
 */
#ifndef NEGSYNC_CAPS_H
#define NEGSYNC_CAPS_H

#include <stddef.h>
#include <stdint.h>

#include "relay.h"

struct store;

#define CAPS_ERRLEN    256
#define CAPS_REASONLEN 256

/* The most bytes of a relay's own text a reason quotes (caps_quote). */
#define CAPS_QUOTE_MAX 120
/* How long a NEG-OPEN that got no reply at all stays cached as unsupported. */
#define CAPS_SILENCE_RECHECK_S 3600
/* The pause between opening the fresh connection and sending the lost message again. */
#define CAPS_RETRY_PAUSE_MS 500
/* The longest wait for a reply to the first message before it counts as lost. */
#define CAPS_FIRST_WAIT_MAX_MS 3000

/* The subscription id of the probe's NEG-OPEN. */
#define CAPS_PROBE_SUBID "negsync-probe"
/*
 * The kind the probe's filter asks for: in the ephemeral range, which relays
 * never store, so the set is empty on every relay and any "blocked: too many
 * results" style answer really means "no".
 */
#define CAPS_PROBE_KIND 29999

enum caps_verdict {
    CAPS_SUPPORTED,   /* the relay answered NEG-MSG */
    CAPS_UNSUPPORTED, /* NEG-ERR, CLOSED, a refusal NOTICE, a close, or silence */
    CAPS_UNREACHABLE, /* no websocket connection at all; never cached */
};

/* Why a result is what it is: the cache answered, or why the handshake ran. */
enum caps_source {
    CAPS_FROM_CACHE,
    CAPS_CHECK_NEW,           /* nothing cached */
    CAPS_CHECK_EXPIRED,       /* cached longer than recheck_days */
    CAPS_CHECK_NIP11_CHANGED, /* NIP-11 software or version differs from the cached one */
    CAPS_CHECK_FORCED,        /* the caller asked (probe --force, the TUI's re-probe key) */
};

/* "supported", "unsupported", "unreachable". */
const char *caps_verdict_name(enum caps_verdict v);
/* "cache", "new", "expired", "nip11-changed", "forced". */
const char *caps_source_name(enum caps_source s);

/*
 * What caps keeps of a NIP-11 document. present = 0 is "no NIP-11" and
 * reason says why: missing, HTTP error, not JSON, larger than 1 MiB, or
 * wrongly typed (software or version not a string, supported_nips not an
 * array of integers), or the relay could not be asked.
 */
struct caps_nip11 {
    int present;
    char reason[160];
    char *software, *version; /* NULL when absent */
    int has_supported_nips;
    int64_t *supported_nips;
    size_t n_supported_nips;
    char *raw; /* the document, for the cache; NULL when not present */
};

/*
 * Fills out from a fetched document (n may be NULL: not fetched, with why in
 * fetch_err). out must be zeroed or cleared; caps_nip11_clear frees it.
 */
void caps_nip11_from_relay(const struct relay_nip11 *n, const char *fetch_err,
                           struct caps_nip11 *out);
/* 1 if present and supported_nips lists nip. */
int caps_nip11_lists(const struct caps_nip11 *n, int nip);
void caps_nip11_clear(struct caps_nip11 *n);

/* One relay's answer. Zero it before first use; caps_result_clear frees its members. */
struct caps_result {
    char *url; /* normalized */
    enum caps_verdict verdict;
    /*
     * "NEG-MSG"; what the relay did with NEG-OPEN (caps_neg_open_reason:
     * 'the relay answered NEG-OPEN with NOTICE "..."', "no reply to
     * NEG-OPEN within 5 s", ...); or the connection error for unreachable.
     */
    char reason[CAPS_REASONLEN];
    int64_t checked_at; /* unix seconds, from the injected clock */
    int64_t latency_ms; /* NEG-OPEN sent to the deciding reply; -1 when none */
    struct caps_nip11 nip11;
    int cached; /* 1: this came from the cache, no handshake ran */
    enum caps_source source;
    /*
     * The relay sent ["AUTH", challenge] (NIP-42) before the decision; it is
     * not answered. Not cached: 0 when cached.
     */
    int auth_challenge;
    /*
     * The relay said nothing at all to the first NEG-OPEN, which went again
     * on a fresh connection (struct caps_guard); latency_ms is then the
     * second one's. Not cached either.
     */
    int first_message_lost;
};

void caps_result_clear(struct caps_result *r);

/* ---- classification ---------------------------------------------------------- */

/*
 * What else is open on the connection a NOTICE came on: a NOTICE names no
 * subscription, so how sure we are that it answers NEG-OPEN depends on it.
 */
enum caps_notice_conn {
    CAPS_NOTICE_NEG_ONLY, /* nothing but our NEG-OPEN (the probe; a job before it fetches) */
    CAPS_NOTICE_SHARED,   /* REQs or EVENTs of ours are open too (a job mid-sync) */
};

/*
 * The one rule for "this NOTICE refuses NEG-OPEN", for the probe and the
 * sync engine alike; it applies to a NOTICE that arrives before any NEG-MSG.
 * It is a refusal if it says the message kind is unknown, unparsed or off
 * (unrecognized, unrecognised, unknown cmd, unknown command, unknown
 * envelope, unknown message, invalid message, could not parse, failed to
 * parse, bad msg, bad message, disabled, unsupported, not supported, not
 * implemented; any case) or names NIP-77 ("NEG" as a word, NEG-OPEN,
 * negentropy). With conn CAPS_NOTICE_NEG_ONLY a bare error word (error,
 * invalid, unknown) is one too: nothing else on the connection could have
 * earned it. With CAPS_NOTICE_SHARED it is not ("ERROR: too many
 * concurrent REQs" is about a REQ). A welcome banner is never one.
 */
int caps_notice_is_refusal(const char *text, enum caps_notice_conn conn);

/*
 * A relay's text as a reason quotes it: in double quotes, control
 * characters as spaces, and when longer than CAPS_QUOTE_MAX bytes (or than
 * out allows) cut at a word boundary with an ellipsis ("…") rather than
 * mid-word (mid-word only for a word longer than half the room, and then
 * never inside a UTF-8 character). NULL quotes as "". out always ends in
 * NUL; returns the length written.
 */
size_t caps_quote(char *out, size_t outlen, const char *text);

/*
 * What a relay did with a NEG-OPEN, in words a person can act on; the
 * probe's reason and what the cache keeps:
 *   m a NOTICE, NEG-ERR or CLOSED  the relay answered NEG-OPEN with NOTICE "<text>"
 *                                  (its text through caps_quote; none: "with no reason")
 *   m NULL, rc RELAY_ERR_TIMEOUT   no reply to NEG-OPEN within <timeout_ms> s
 *   m NULL, any other rc           the relay closed the connection on NEG-OPEN (<detail>)
 * detail (may be NULL or "") is the connection's error text.
 */
void caps_neg_open_reason(char *out, size_t outlen, const struct relay_msg *m, int rc,
                          const char *detail, int timeout_ms);
/* The same after "no NIP-77: ": a sync job's reason for falling back to REQ. */
void caps_fallback_reason(char *out, size_t outlen, const struct relay_msg *m, int rc,
                          const char *detail, int timeout_ms);
/*
 * The fallback reason of a probe's unsupported verdict: "no NIP-77: " and
 * its reason, then " (cached)" when it came from the cache.
 */
void caps_result_fallback(const struct caps_result *r, char *out, size_t outlen);

/*
 * How the handshake talks to the relay: relay_send / relay_recv on a real
 * connection (caps_probe), or a script in the tests. recv returns 0 with a
 * message or a negative enum relay_error, as relay_recv does.
 */
struct caps_transport {
    int (*send)(void *arg, const char *text, size_t len, char *err, size_t errlen);
    int (*recv)(void *arg, int timeout_ms, struct relay_msg **out, char *err, size_t errlen);
    void *arg;
    /* Where ignored notices and messages are reported; NULL: nowhere. */
    void (*log)(void *log_arg, const char *url, const char *line);
    void *log_arg;
    const char *url; /* for the log */
};

/* ---- the first message on a connection ---------------------------------------- */

/*
 * Sends and receives on a struct relay like relay_send / relay_recv, and
 * watches the first message of each connection: when the wait for a reply
 * to it passes caps_first_wait_ms with nothing at all received since it was
 * sent (no reply, no notice, not even a message it could not read; an AUTH
 * challenge is no reply), the message counts as lost. The guard then opens a fresh connection
 * (relay_connect), pauses CAPS_RETRY_PAUSE_MS and sends it again, once per
 * first message; a relay that is just slow costs a reconnect, not a
 * failure. A relay that said anything, or a connection that closed, is left
 * to the caller as it is. Zero it before use (the log fields may be set);
 * caps_guard_clear frees what it holds.
 */
struct caps_guard {
    /* Where a retry is reported; NULL: nowhere. */
    void (*log)(void *log_arg, const char *url, const char *line);
    void *log_arg;
    /*
     * 1: the retry comes out of the caller's wait (the probe: one budget for
     * the whole handshake); 0: the message sent again gets a whole wait of
     * its own.
     */
    int within_timeout;
    /* The rest is the guard's own. */
    char *first; /* the first message of the current connection, until a second is sent */
    size_t first_len;
    uint64_t sent_total;    /* the relay's total sent_msgs once it had gone out */
    uint64_t recv_base;     /* the connection's recv_msgs before it went out */
    uint64_t auths;         /* AUTH messages returned since */
    uint64_t replies;       /* other messages returned since */
    int64_t sent_ms;        /* when it went out (monotonic) */
    int64_t lost_ms;        /* when it counts as lost; 0: not yet set */
    int retried;            /* sent again already */
    int retries;            /* how many times this guard retried */
    int64_t retry_delay_ms; /* the last retry: from the first send to the second */
};

/* min(timeout_ms / 3, CAPS_FIRST_WAIT_MAX_MS): how long the reply may take before the retry. */
int caps_first_wait_ms(int timeout_ms);
/* relay_send through the guard. */
int caps_guard_send(struct caps_guard *g, struct relay *r, const char *text, size_t len, char *err,
                    size_t errlen);
/*
 * relay_recv through the guard: the retry happens inside. If reconnecting
 * fails, RELAY_ERR_TIMEOUT (the message got no reply) with the reason in err.
 */
int caps_guard_recv(struct caps_guard *g, struct relay *r, int timeout_ms, struct relay_msg **out,
                    char *err, size_t errlen);
void caps_guard_clear(struct caps_guard *g);

/*
 * The NEG-OPEN the probe sends, as compact JSON (caller frees):
 * ["NEG-OPEN","negsync-probe",{"kinds":[29999]},"<hex>"], the hex
 * being the initial message of an empty negentropy set.
 */
char *caps_neg_open_message(void);

/*
 * Sends the probe's NEG-OPEN and waits at most timeout_ms (a deadline over
 * the whole wait) for the first reply that concerns it:
 *   NEG-MSG for our id           -> SUPPORTED, reason "NEG-MSG" (NEG-CLOSE is sent)
 *   NEG-ERR or CLOSED for our id -> UNSUPPORTED, 'the relay answered NEG-OPEN with NEG-ERR "..."'
 *   a refusal NOTICE             -> UNSUPPORTED, 'the relay answered NEG-OPEN with NOTICE "..."'
 *   AUTH                         -> auth_challenge = 1 (not answered), the wait goes on
 *   any other NOTICE or message  -> logged, the wait goes on
 *   the connection closes        -> UNSUPPORTED, "the relay closed the connection on NEG-OPEN"
 *   the deadline passes          -> UNSUPPORTED, "no reply to NEG-OPEN within N s"
 * (caps_neg_open_reason words them). Sets out->verdict, reason, latency_ms
 * and auth_challenge. Returns 0, or -1 when the wait was interrupted or
 * failed for a reason that says nothing about the relay (then reason holds
 * the error).
 */
int caps_handshake(const struct caps_transport *t, int timeout_ms, struct caps_result *out);

/* ---- cache policy -------------------------------------------------------------- */

/*
 * Whether a cached result may be reused. cached NULL: nothing cached.
 * nip11_now: the document fetched on this connection, or NULL if it was not
 * fetched or the relay could not be asked (then it does not count as a
 * change). recheck_days 0 means never reuse. An unsupported verdict whose
 * reason is silence (no reply to NEG-OPEN; "timeout" from older versions)
 * expires after CAPS_SILENCE_RECHECK_S, or recheck_days if that is shorter.
 * A cached result from the future (the clock went back) counts as expired.
 * Returns CAPS_FROM_CACHE or why to check again.
 */
enum caps_source caps_recheck_reason(const struct caps_result *cached,
                                     const struct caps_nip11 *nip11_now, int64_t now,
                                     unsigned recheck_days, int force);

/* ---- the cache ------------------------------------------------------------------- */

/*
 * The cache is the relay_caps table of the database st is connected to
 * (created by store_open's migrations). st is the caller's connection, used
 * by one thread at a time as every struct store is.
 */
/*
 * The cached result for url (normalized): 1 with out filled (cached = 1,
 * source CAPS_FROM_CACHE), 0 when there is none, -1 with a reason in err.
 * out must be zeroed or cleared.
 */
int caps_cache_get(struct store *st, const char *url, struct caps_result *out, char *err,
                   size_t errlen);

/*
 * Stores r (replacing what was cached for r->url). An unreachable result is
 * refused (-1): it would overwrite a real answer with a network hiccup.
 */
int caps_cache_put(struct store *st, const struct caps_result *r, char *err, size_t errlen);

/*
 * A sync job got an unsupported-style answer (NEG-ERR, a refusal NOTICE...)
 * from a relay thought to support NIP-77: mark it unsupported at once with
 * that reason, keeping the cached NIP-11 facts. url in any spelling: the
 * entry is the one relay_url_normalize's form names. A
 * fallback reason (caps_fallback_reason) is stored without its "no NIP-77: ",
 * as the probe words the same answer.
 */
int caps_mark_unsupported(struct store *st, const char *url, const char *reason, int64_t now,
                          char *err, size_t errlen);

/* ---- probing ------------------------------------------------------------------------ */

struct caps_opts {
    /*
     * Bounds each step: the NIP-11 fetch, the websocket connect and the wait
     * for an answer to NEG-OPEN (config probe_timeout). Default 5000.
     */
    int timeout_ms;
    unsigned recheck_days; /* default 7; 0: always check */
    int force;             /* check whatever the cache says */
    /*
     * 1 (default): when the cache is fresh, fetch NIP-11 anyway and check
     * again if its software or version changed.
     */
    int check_nip11;
    /*
     * 1: the cache is read but never written (sync --dry-run): a verdict the
     * handshake finds is only returned. Default 0.
     */
    int cache_read_only;
    struct relay_opts relay; /* tls_verify, compression, log */
    /* Wall clock in unix seconds; NULL: time(NULL). */
    int64_t (*now)(void *now_arg);
    void *now_arg;
};

struct caps_opts caps_opts_default(void);

/*
 * The capability of the relay at url, from the cache when it may be reused,
 * otherwise by fetching NIP-11 and running the handshake; a verdict other
 * than unreachable is written to the cache (the database cache is connected
 * to; NULL: no caching; opts->cache_read_only: read, not written).
 * Returns 0 with out filled (any verdict), or -1 with a reason in err for a
 * bad URL, a cache error, or an interrupted probe. out must be zeroed or
 * cleared.
 */
int caps_probe(struct store *cache, const char *url, const struct caps_opts *opts,
               struct caps_result *out, char *err, size_t errlen);

#endif
