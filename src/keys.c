/*
 * keys: the secret key file, the key in locked memory, NIP-19 bech32 and
 * NIP-42 AUTH events. See keys.h for the rules a key file must meet.
 *
 * The file is read with read(2) into a stack buffer that is wiped before
 * returning (no stdio buffer keeps a copy), and the checks are made on the
 * opened descriptor (fstat), so the file that passed them is the file read.
 * The key and its pubkey live in one anonymous page: mlock keeps it out of
 * swap where RLIMIT_MEMLOCK allows (the key is still used when it does not;
 * keys_locked says which), MADV_DONTDUMP out of core files.
 *
 * Error messages are built only from lengths, positions and fixed text,
 * never from the bytes of the file, so no branch can leak a key into a log.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <secp256k1.h>
#include <secp256k1_extrakeys.h>

#include "event.h"
#include "keys.h"
#include "util.h"

/* A key file is one line: 63 characters of nsec, or 64 of hex, and some whitespace. */
#define KEYS_MAX_FILE 256

struct keys_secret {
    uint8_t seckey[32];
    uint8_t pubkey[32];
    size_t mapsize;
    int locked;
};

/* ---------------------------------------------------------------- secp256k1 */

static secp256k1_context *keys_ctx;
static pthread_once_t keys_once = PTHREAD_ONCE_INIT;

static void keys_ctx_init(void)
{
    uint8_t seed[32];

    keys_ctx = secp256k1_context_create(SECP256K1_CONTEXT_NONE);
    if (keys_ctx == NULL)
        abort();
    /* Blinding for the one secret-dependent operation here, deriving the pubkey. */
    if (getrandom(seed, sizeof seed, 0) == (ssize_t)sizeof seed &&
        !secp256k1_context_randomize(keys_ctx, seed))
        abort();
    explicit_bzero(seed, sizeof seed);
}

static const secp256k1_context *keys_secp(void)
{
    if (pthread_once(&keys_once, keys_ctx_init) != 0)
        abort();
    return keys_ctx;
}

/* ------------------------------------------------------------------- bech32 */

static const char keys_charset[] = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";

static uint32_t keys_polymod_step(uint32_t chk, uint8_t v)
{
    static const uint32_t gen[5] = {0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3};
    uint8_t top = (uint8_t)(chk >> 25);

    chk = (chk & 0x1ffffff) << 5 ^ v;
    for (int i = 0; i < 5; i++)
        if ((top >> i) & 1)
            chk ^= gen[i];
    return chk;
}

/* The checksum state after the expanded human-readable part (BIP-173 hrp_expand). */
static uint32_t keys_hrp_polymod(const char *hrp, size_t n)
{
    uint32_t chk = 1;

    for (size_t i = 0; i < n; i++)
        chk = keys_polymod_step(chk, (uint8_t)((unsigned char)hrp[i] >> 5));
    chk = keys_polymod_step(chk, 0);
    for (size_t i = 0; i < n; i++)
        chk = keys_polymod_step(chk, (uint8_t)(hrp[i] & 31));
    return chk;
}

static int keys_charset_value(unsigned char c)
{
    const char *p;

    if (c >= 'A' && c <= 'Z')
        c = (unsigned char)(c - 'A' + 'a');
    if (c == '\0' || (p = strchr(keys_charset, c)) == NULL)
        return -1;
    return (int)(p - keys_charset);
}

int keys_bech32_decode(const char *s, size_t len, char *hrp, size_t hrpsize, uint8_t *data,
                       size_t datasize, size_t *datalen, char *err, size_t errlen)
{
    size_t sep = 0, ndata, out = 0;
    int lower = 0, upper = 0, bits = 0, have_sep = 0;
    uint32_t chk, acc = 0;

    *datalen = 0;
    if (len > 1023) {
        set_error(err, errlen, "too long (%zu characters)", len);
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 33 || c > 126) {
            set_error(err, errlen, "character %zu is not printable ASCII", i + 1);
            return -1;
        }
        lower |= c >= 'a' && c <= 'z';
        upper |= c >= 'A' && c <= 'Z';
        if (c == '1')
            sep = i, have_sep = 1;
    }
    if (lower && upper) {
        set_error(err, errlen, "mixes upper and lower case");
        return -1;
    }
    if (!have_sep || sep == 0) {
        set_error(err, errlen, "no '1' separating the prefix from the data");
        return -1;
    }
    if (len - sep - 1 < 6) {
        set_error(err, errlen, "too short for a checksum");
        return -1;
    }
    if (sep + 1 > hrpsize) {
        set_error(err, errlen, "prefix too long (%zu characters)", sep);
        return -1;
    }
    for (size_t i = 0; i < sep; i++) {
        char c = s[i];
        hrp[i] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
    }
    hrp[sep] = '\0';

    chk = keys_hrp_polymod(hrp, sep);
    ndata = len - sep - 1 - 6;
    for (size_t i = sep + 1; i < len; i++) {
        int v = keys_charset_value((unsigned char)s[i]);
        if (v < 0) {
            set_error(err, errlen, "character %zu is not in the bech32 alphabet", i + 1);
            return -1;
        }
        chk = keys_polymod_step(chk, (uint8_t)v);
        if (i < sep + 1 + ndata) {
            /* 5-bit groups to bytes, as NIP-19 packs them. */
            acc = (acc << 5 | (uint32_t)v) & 0xfff;
            bits += 5;
            if (bits >= 8) {
                bits -= 8;
                if (out == datasize) {
                    set_error(err, errlen, "more data than the %zu bytes expected", datasize);
                    goto fail;
                }
                data[out++] = (uint8_t)(acc >> bits);
            }
        }
    }
    if (chk != 1) {
        set_error(err, errlen, "bad checksum (a character is wrong or missing)");
        goto fail;
    }
    /* Leftover bits are padding: fewer than 5 of them, and all zero. */
    if (bits >= 5 || (acc & ((1u << bits) - 1)) != 0) {
        set_error(err, errlen, "bad padding");
        goto fail;
    }
    *datalen = out;
    acc = 0;
    return 0;
fail:
    explicit_bzero(data, datasize);
    acc = 0;
    return -1;
}

int keys_bech32_encode(const char *hrp, const uint8_t *data, size_t len, char *out, size_t outsize)
{
    size_t n = strlen(hrp), ngroups = (len * 8 + 4) / 5, pos = 0;
    uint32_t chk, acc = 0;
    int bits = 0;

    if (n + 1 + ngroups + 6 + 1 > outsize)
        return -1;
    memcpy(out, hrp, n);
    out[n] = '1';
    pos = n + 1;
    chk = keys_hrp_polymod(hrp, n);
    for (size_t i = 0; i < len; i++) {
        acc = (acc << 8 | data[i]) & 0xfff;
        bits += 8;
        while (bits >= 5) {
            bits -= 5;
            uint8_t v = (uint8_t)((acc >> bits) & 31);
            chk = keys_polymod_step(chk, v);
            out[pos++] = keys_charset[v];
        }
    }
    if (bits > 0) {
        uint8_t v = (uint8_t)((acc << (5 - bits)) & 31);
        chk = keys_polymod_step(chk, v);
        out[pos++] = keys_charset[v];
    }
    for (int i = 0; i < 6; i++)
        chk = keys_polymod_step(chk, 0);
    chk ^= 1;
    for (int i = 0; i < 6; i++)
        out[pos++] = keys_charset[(chk >> (5 * (5 - i))) & 31];
    out[pos] = '\0';
    return 0;
}

void keys_npub(const uint8_t pubkey[32], char out[KEYS_NPUB_SIZE])
{
    if (keys_bech32_encode("npub", pubkey, 32, out, KEYS_NPUB_SIZE) < 0)
        abort(); /* 63 characters always fit */
}

/* ------------------------------------------------------------------ parsing */

static int keys_is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static int keys_has_prefix(const char *s, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);

    if (len < n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != prefix[i])
            return 0;
    }
    return 1;
}

int keys_parse_secret(const char *text, size_t len, uint8_t out[32], char *err, size_t errlen)
{
    char hrp[16], why[128];
    size_t n;

    while (len > 0 && keys_is_space(text[0]))
        text++, len--;
    while (len > 0 && keys_is_space(text[len - 1]))
        len--;
    for (size_t i = 0; i < len; i++) {
        if (keys_is_space(text[i])) {
            set_error(err, errlen, "more than one word; the file holds one nsec or 64 hex digits");
            goto fail;
        }
    }
    if (len == 0) {
        set_error(err, errlen, "empty; put an nsec or 64 hex digits in it");
        goto fail;
    }
    if (keys_has_prefix(text, len, "npub1")) {
        set_error(err, errlen,
                  "holds an npub, a public key; the file needs the secret key "
                  "(nsec or 64 hex digits)");
        goto fail;
    }
    if (keys_has_prefix(text, len, "ncryptsec1")) {
        set_error(err, errlen,
                  "holds an ncryptsec (NIP-49, encrypted with a password), which "
                  "negsync cannot use; store the nsec instead");
        goto fail;
    }
    if (keys_has_prefix(text, len, "nsec1")) {
        if (keys_bech32_decode(text, len, hrp, sizeof hrp, out, 32, &n, why, sizeof why) < 0) {
            set_error(err, errlen, "not a valid nsec: %s", why);
            goto fail;
        }
        if (n != 32) {
            set_error(err, errlen, "not a valid nsec: it holds %zu bytes, a key is 32", n);
            goto fail;
        }
    } else if (len == 64) {
        if (hex_decode(text, len, out, 32, 0) < 0) {
            set_error(err, errlen,
                      "64 characters but not all hex digits; the file holds an "
                      "nsec or 64 hex digits");
            goto fail;
        }
    } else {
        int hex = 1;
        for (size_t i = 0; i < len && hex; i++)
            hex = (text[i] >= '0' && text[i] <= '9') || (text[i] >= 'a' && text[i] <= 'f') ||
                  (text[i] >= 'A' && text[i] <= 'F');
        if (hex)
            set_error(err, errlen, "%zu hex digits; a key is 64", len);
        else
            set_error(err, errlen, "not an nsec or 64 hex digits (%zu characters)", len);
        goto fail;
    }
    if (!secp256k1_ec_seckey_verify(keys_secp(), out)) {
        set_error(err, errlen, "not a valid secret key (zero, or not below the curve order)");
        goto fail;
    }
    return 0;
fail:
    explicit_bzero(out, 32);
    return -1;
}

/* ---------------------------------------------------------------- the key */

struct keys_secret *keys_from_bytes(const uint8_t seckey[32], char *err, size_t errlen)
{
    const secp256k1_context *ctx = keys_secp();
    long page = sysconf(_SC_PAGESIZE);
    size_t size = page > 0 && (size_t)page >= sizeof(struct keys_secret) ? (size_t)page : 4096;
    struct keys_secret *k;
    secp256k1_keypair kp;
    secp256k1_xonly_pubkey pk;
    int ok;

    k = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (k == MAP_FAILED) {
        set_error(err, errlen, "cannot map memory for the key: %s", strerror(errno));
        return NULL;
    }
    k->mapsize = size;
    /* Where RLIMIT_MEMLOCK is 0 the key is still used, just not locked. */
    k->locked = mlock(k, size) == 0;
#ifdef MADV_DONTDUMP
    (void)madvise(k, size, MADV_DONTDUMP);
#endif
    memcpy(k->seckey, seckey, 32);
    ok = secp256k1_keypair_create(ctx, &kp, k->seckey) &&
         secp256k1_keypair_xonly_pub(ctx, &pk, NULL, &kp) &&
         secp256k1_xonly_pubkey_serialize(ctx, k->pubkey, &pk);
    explicit_bzero(&kp, sizeof kp);
    if (!ok) {
        set_error(err, errlen, "not a valid secret key (zero, or not below the curve order)");
        keys_free(k);
        return NULL;
    }
    return k;
}

void keys_free(struct keys_secret *k)
{
    size_t size;

    if (k == NULL)
        return;
    size = k->mapsize;
    explicit_bzero(k, sizeof *k);
    munlock(k, size);
    munmap(k, size);
}

const uint8_t *keys_pubkey(const struct keys_secret *k)
{
    return k->pubkey;
}

int keys_locked(const struct keys_secret *k)
{
    return k->locked;
}

struct keys_secret *keys_load_file(const char *path, char *err, size_t errlen)
{
    char text[KEYS_MAX_FILE + 1], why[KEYS_ERRLEN];
    uint8_t sk[32];
    struct keys_secret *k = NULL;
    struct stat st;
    size_t n = 0;
    int fd;

    /* O_NONBLOCK: a FIFO must not hang the load; it is refused below anyway. */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        set_error(err, errlen, "secret_key_file %s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) < 0) {
        set_error(err, errlen, "secret_key_file %s: %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        set_error(err, errlen, "secret_key_file %s: not a regular file", path);
        goto out;
    }
    if (st.st_uid != geteuid()) {
        set_error(err, errlen,
                  "secret_key_file %s: owned by uid %lu, not by you (uid %lu); a secret key "
                  "file must be your own (chown it, or make your own copy with mode 600)",
                  path, (unsigned long)st.st_uid, (unsigned long)geteuid());
        goto out;
    }
    if ((st.st_mode & 077) != 0) {
        set_error(err, errlen,
                  "secret_key_file %s: mode %04o lets %s read or change it; run: chmod 600 %s",
                  path, (unsigned)(st.st_mode & 07777),
                  (st.st_mode & 007) != 0 ? "every user" : "your group", path);
        goto out;
    }
    for (;;) {
        ssize_t r = read(fd, text + n, sizeof text - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            set_error(err, errlen, "secret_key_file %s: read error: %s", path, strerror(errno));
            goto out;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n == sizeof text) {
            set_error(err, errlen,
                      "secret_key_file %s: longer than %d bytes; the file holds one nsec or 64 "
                      "hex digits",
                      path, KEYS_MAX_FILE);
            goto out;
        }
    }
    if (memchr(text, '\0', n) != NULL) {
        set_error(err, errlen,
                  "secret_key_file %s: holds a NUL byte; the file holds one nsec or "
                  "64 hex digits",
                  path);
        goto out;
    }
    if (keys_parse_secret(text, n, sk, why, sizeof why) < 0) {
        set_error(err, errlen, "secret_key_file %s: %s", path, why);
        goto out;
    }
    k = keys_from_bytes(sk, why, sizeof why);
    if (k == NULL)
        set_error(err, errlen, "secret_key_file %s: %s", path, why);
out:
    explicit_bzero(text, sizeof text);
    explicit_bzero(sk, sizeof sk);
    close(fd);
    return k;
}

/* --------------------------------------------------------------------- AUTH */

struct event *keys_sign_auth(const struct keys_secret *k, const char *relay_url,
                             const char *challenge, size_t challenge_len, uint64_t created_at,
                             char *err, size_t errlen)
{
    const char *relay_tag[2] = {"relay", relay_url};
    const char *challenge_tag[2] = {"challenge", challenge};
    const char *const *tags[2] = {relay_tag, challenge_tag};
    const size_t lens[2] = {2, 2};
    struct event *ev;

    if (challenge_len > KEYS_MAX_CHALLENGE) {
        set_error(err, errlen, "AUTH challenge of %zu bytes; at most %d are signed", challenge_len,
                  KEYS_MAX_CHALLENGE);
        return NULL;
    }
    if (memchr(challenge, '\0', challenge_len) != NULL) {
        set_error(err, errlen, "AUTH challenge holds a NUL character");
        return NULL;
    }
    ev = event_sign(k->seckey, created_at, KEYS_AUTH_KIND, tags, lens, 2, "");
    if (ev == NULL)
        set_error(err, errlen,
                  "cannot sign the AUTH event (invalid UTF-8 in the challenge or "
                  "the relay URL)");
    return ev;
}
