/*
 * event: Nostr events (NIP-01). Strict parsing from JSON, the canonical
 * serialization the id is computed over, id and BIP-340 signature checks, signing,
 * and the compact JSON form that is stored and exported.
 *
 * An event that event_parse accepted is well-formed; one that event_verify
 * accepted is authentic. Nothing enters the store without both.
 */
#ifndef NEGSYNC_EVENT_H
#define NEGSYNC_EVENT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define EVENT_ERRLEN 160

/*
 * Strings are valid UTF-8 and always NUL-terminated, but may also contain
 * U+0000 (decoded from "\u0000"), so the byte lengths in lens / content_len
 * are authoritative: use them whenever the exact bytes matter (hashing,
 * storing, comparing).
 */
struct event_tag {
    size_t nfields; /* >= 1 */
    char **fields;  /* UTF-8, NUL-terminated */
    size_t *lens;   /* byte lengths of fields */
};

struct event {
    uint8_t id[32];
    uint8_t pubkey[32];
    uint8_t sig[64];
    uint64_t created_at; /* 0..INT64_MAX (fits SQLite's signed integer) */
    uint32_t kind;       /* 0..65535 */
    size_t ntags;
    struct event_tag *tags;
    char *content; /* UTF-8 */
    size_t content_len;
};

/*
 * Parses and validates one event from a JSON object. Returns a new event
 * (caller frees with event_free), or NULL with a reason a user can read in err
 * ("sig: not 128 hex chars", "tags[3][1]: not a string", "missing field: pubkey").
 * Unknown extra fields are ignored. Does not check the id or signature.
 */
struct event *event_from_json(const json_t *obj, char *err, size_t errlen);
/*
 * Same, from JSON text (len bytes). Accepts "\u0000" in strings; refuses
 * invalid UTF-8, lone surrogates and duplicate keys ("invalid JSON: ...").
 */
struct event *event_parse(const char *text, size_t len, char *err, size_t errlen);
void event_free(struct event *ev);

/* Canonical [0,pubkey,created_at,kind,tags,content] serialization; caller frees. */
char *event_serialize_canonical(const struct event *ev, size_t *len);
/* SHA-256 of the canonical serialization. */
void event_compute_id(const struct event *ev, uint8_t out[32]);
/* 0 if ev's id is the hash of its content; -1 with "id mismatch". The signature is not looked at. */
int event_check_id(const struct event *ev, char *err, size_t errlen);
/*
 * 0 if id and signature both hold; -1 with a reason: "id mismatch",
 * "invalid pubkey" (not an x-only point on the curve) or "bad signature".
 * Thread-safe.
 */
int event_verify(const struct event *ev, char *err, size_t errlen);

/*
 * A cache of parsed public keys. Lifting an x-only key onto the curve
 * (secp256k1_xonly_pubkey_parse, a field square root) is a noticeable part
 * of verifying an event, and a sync sees the same few authors again and
 * again. A cache is plain per-thread state: one per worker or verifier
 * thread, never shared without a lock. It holds up to a few thousand keys
 * (about 200 KB) and evicts by set, least recently used first.
 */
struct event_keycache;
struct event_keycache *event_keycache_new(void); /* caller frees */
void event_keycache_free(struct event_keycache *kc);
/* Lookups that found the key parsed already, and those that had to parse it. */
void event_keycache_stats(const struct event_keycache *kc, uint64_t *hits, uint64_t *misses);
/*
 * event_verify with a key cache (kc NULL: none). Same results and reasons;
 * keys that fail to parse are never cached.
 */
int event_verify_cached(const struct event *ev, struct event_keycache *kc, char *err,
                        size_t errlen);
/*
 * event_from_json, then event_verify_cached: the authentic event (caller
 * frees), or NULL with the reason in err.
 */
struct event *event_from_json_verified(const json_t *obj, struct event_keycache *kc, char *err,
                                       size_t errlen);

/*
 * Builds and signs an event with a 32-byte secret key. Tag i has tag_lens[i]
 * fields tags[i][0..]; tags and tag_lens may be NULL when ntags is 0; strings
 * are copied; content NULL means "". Returns NULL on a bad key or bad input
 * (invalid UTF-8, a tag with no fields, kind above 65535, created_at above
 * INT64_MAX). Caller frees.
 */
struct event *event_sign(const uint8_t seckey[32], uint64_t created_at, uint32_t kind,
                         const char *const *const *tags, const size_t *tag_lens, size_t ntags,
                         const char *content);
/*
 * Signs an event built by hand (created_at, kind, tags, content filled in;
 * strings may hold NUL bytes): sets pubkey, id and sig. 0, or -1 on a bad
 * key or the bad input listed for event_sign (ev is then unchanged except
 * possibly pubkey and id).
 */
int event_finalize(struct event *ev, const uint8_t seckey[32]);

/* Compact JSON {"id","pubkey","created_at","kind","tags","content","sig"}; caller frees. */
char *event_to_json(const struct event *ev, size_t *len);
/* The length event_to_json gives, worked out without building the text. */
size_t event_json_size(const struct event *ev);

/*
 * The value (second field) of the first tag named name that has one, e.g.
 * "d"; NULL if there is none. Tags with only a name are skipped.
 */
const char *event_tag_value(const struct event *ev, const char *name);

/* Kind classes (NIP-01). */
int event_kind_is_replaceable(uint32_t kind); /* 0, 3, 10000..19999 */
int event_kind_is_ephemeral(uint32_t kind);   /* 20000..29999 */
int event_kind_is_addressable(uint32_t kind); /* 30000..39999 */

#endif
