/*
 * keys: the user's secret key, for NIP-42 AUTH and nothing else.
 *
 * A key comes from a file (secret_key_file in the config) holding an nsec
 * (NIP-19 bech32) or 64 hex digits, never from the INI file or the command
 * line. The file must be a regular file owned by the user with no group or
 * other permission bits, as ssh insists for its keys. The key is read once
 * into a page of its own, locked against swapping where the system allows
 * (mlock) and left out of core dumps, and wiped when freed. No message this
 * module writes ever quotes the file's text: a reason says what is wrong
 * with it, never what it holds.
 *
 * The pubkey is derived with libsecp256k1 and AUTH events (kind 22242) are
 * signed with BIP-340 through the event module, so what the relay checks is
 * exactly what event_verify checks.
 */
#ifndef NEGSYNC_KEYS_H
#define NEGSYNC_KEYS_H

#include <stddef.h>
#include <stdint.h>

struct event;

#define KEYS_ERRLEN 512
/* "npub1" + 52 data characters + 6 of checksum, and the NUL. */
#define KEYS_NPUB_SIZE 64
/* A challenge longer than this is refused (NIP-42 ones are a few dozen bytes). */
#define KEYS_MAX_CHALLENGE 1024
/* The NIP-42 event kind. */
#define KEYS_AUTH_KIND 22242

struct keys_secret;

/*
 * Reads the secret key file at path. Refuses (NULL, and a reason that names
 * the file and says how to fix it) anything but a regular file owned by the
 * effective user with no group/other permission bits, and any content but
 * one nsec or 64 hex digits (surrounding whitespace allowed) that is a valid
 * secp256k1 secret key. Caller frees with keys_free.
 */
struct keys_secret *keys_load_file(const char *path, char *err, size_t errlen);

/* The same from 32 bytes already in memory (tests); NULL if not a valid key. */
struct keys_secret *keys_from_bytes(const uint8_t seckey[32], char *err, size_t errlen);

/* Wipes the key and frees it. NULL does nothing. */
void keys_free(struct keys_secret *k);

/* The x-only public key (32 bytes), valid while k lives. */
const uint8_t *keys_pubkey(const struct keys_secret *k);

/* 1 if the key's memory is locked against swapping (mlock worked), else 0. */
int keys_locked(const struct keys_secret *k);

/*
 * Parses key text (len bytes; an nsec or 64 hex digits, surrounding
 * whitespace allowed) into out. 0, or -1 with a reason that never quotes the
 * text. out is wiped on failure.
 */
int keys_parse_secret(const char *text, size_t len, uint8_t out[32], char *err, size_t errlen);

/* The NIP-19 npub of a public key, NUL-terminated, into out. */
void keys_npub(const uint8_t pubkey[32], char out[KEYS_NPUB_SIZE]);

/*
 * Signs the NIP-42 AUTH event for relay_url (as configured) and the
 * challenge the relay sent (challenge_len bytes and a terminating NUL; no
 * NUL inside, valid UTF-8, at most KEYS_MAX_CHALLENGE bytes): kind 22242, tags [["relay",URL],
 * ["challenge",C]], empty content, created_at as given (pass time(NULL)).
 * Returns the event (caller frees with event_free), or NULL with a reason.
 */
struct event *keys_sign_auth(const struct keys_secret *k, const char *relay_url,
                             const char *challenge, size_t challenge_len, uint64_t created_at,
                             char *err, size_t errlen);

/*
 * BIP-173 bech32 (the checksum NIP-19 uses; not bech32m). Decoding takes
 * len characters of s (all lowercase or all uppercase), writes the
 * human-readable part, lowercased, into hrp (hrpsize bytes with its NUL) and
 * the data, converted from 5-bit groups to bytes, into data (at most
 * datasize bytes), setting *datalen. Returns 0, or -1 with a reason that
 * does not quote s. Encoding writes the lowercase string into out
 * (outsize bytes); 0, or -1 when it does not fit.
 */
int keys_bech32_decode(const char *s, size_t len, char *hrp, size_t hrpsize, uint8_t *data,
                       size_t datasize, size_t *datalen, char *err, size_t errlen);
int keys_bech32_encode(const char *hrp, const uint8_t *data, size_t len, char *out, size_t outsize);

#endif
