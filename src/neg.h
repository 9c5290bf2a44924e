/*
 * neg: Negentropy protocol v1 (range-based set reconciliation, NIP-77).
 *
 * Pure computation: no I/O, nothing of Nostr or JSON. Items are (timestamp,
 * 32-byte id) pairs kept in a sorted vector. A sealed storage is immutable and
 * may be shared read-only by any number of sessions and threads.
 *
 * Every message produced is byte-identical to the reference implementations
 * (hoytech/negentropy, C++ and JavaScript) for the same items and frame size
 * limit, unless an initiator opts into adaptive splitting. Every message
 * parsed is treated as hostile: lengths are checked against what remains,
 * varints are bounded, and a bad message yields -1 and a reason, never a
 * crash or an allocation sized by the peer.
 */
#ifndef NEGSYNC_NEG_H
#define NEGSYNC_NEG_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define NEG_PROTOCOL_VERSION     0x61
#define NEG_ID_SIZE              32
#define NEG_FINGERPRINT_SIZE     16
#define NEG_ERRLEN               128
#define NEG_MIN_FRAME_SIZE_LIMIT 4096

struct neg_item {
    uint64_t timestamp;
    uint8_t id[NEG_ID_SIZE];
};

struct neg_storage;

/* A new, empty, unsealed storage; free with neg_storage_free. */
struct neg_storage *neg_storage_new(void);
void neg_storage_free(struct neg_storage *st);
/* Pre-sizes the item vector for n items in all (avoids the doubling slack). */
void neg_storage_reserve(struct neg_storage *st, size_t n);
/*
 * Adds an item (in any order). -1 with a reason if the storage is sealed or
 * the timestamp is 2^64-1 (reserved for "infinity").
 */
int neg_storage_insert(struct neg_storage *st, uint64_t timestamp, const uint8_t id[NEG_ID_SIZE],
                       char *err, size_t errlen);
/* Sorts by (timestamp, id) and builds the fingerprint index; -1 on a duplicate item. */
int neg_storage_seal(struct neg_storage *st, char *err, size_t errlen);
size_t neg_storage_size(const struct neg_storage *st);
const struct neg_item *neg_storage_item(const struct neg_storage *st, size_t i);
/* Fingerprint of items [lo, hi) of a sealed storage. */
void neg_storage_fingerprint(const struct neg_storage *st, size_t lo, size_t hi,
                             uint8_t out[NEG_FINGERPRINT_SIZE]);

/* A list of ids discovered by the initiator; the caller owns and frees it. */
struct neg_ids {
    uint8_t (*ids)[NEG_ID_SIZE];
    size_t n, cap;
};
void neg_ids_free(struct neg_ids *ids);

/*
 * One reconciliation session over a sealed storage (which must outlive it).
 * frame_size_limit is 0 (none) or at least 4096: every message produced is
 * then at most that many bytes.
 */
struct neg;
struct neg *neg_new(const struct neg_storage *st, uint64_t frame_size_limit, char *err,
                    size_t errlen);
void neg_free(struct neg *n);

/* Makes this session the initiator and writes its first message to out. */
int neg_initiate(struct neg *n, struct buf *out, char *err, size_t errlen);

/*
 * Initiator: processes a reply. Appends what this round discovered to have
 * (ids we have and the peer lacks) and need (ids the peer has and we lack),
 * and writes the next message to out; out->len == 0 means reconciliation is
 * complete. Responder (a session that never called neg_initiate): writes the
 * reply to out; have and need may be NULL and are not touched.
 * out is overwritten (its length reset), not appended to.
 * Returns 0, or -1 with a reason for a malformed message.
 */
int neg_reconcile(struct neg *n, const uint8_t *msg, size_t len, struct buf *out,
                  struct neg_ids *have, struct neg_ids *need, char *err, size_t errlen);

int neg_is_initiator(const struct neg *n);

/*
 * Initiator only, any time before the session ends: cut differing ranges by
 * an estimate of how dense the differences are, instead of always into 16
 * buckets (see choose_split in neg.c). The protocol leaves the split to each
 * side, so any conforming peer follows; but messages are then no longer
 * byte-identical to the reference implementation's. Off by default.
 */
void neg_set_adaptive(struct neg *n, int on);
/* The current estimate of differences per item of ours; negative if none yet. */
double neg_density(const struct neg *n);

/* Varint helpers, exposed for tests and for callers that frame messages. */
size_t neg_varint_encode(uint64_t v, uint8_t out[10]);
/* Decodes a varint at *p (< end); advances *p. -1 if truncated or over 64 bits. */
int neg_varint_decode(const uint8_t **p, const uint8_t *end, uint64_t *out);

#endif
