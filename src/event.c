/*
 * event: Nostr events (NIP-01).
 *
 * Parsing is strict because everything negsync stores comes from relays it
 * does not control: every field is type-checked, hex must be lowercase and
 * of the exact length, and every rejection says which field is wrong. Unknown
 * extra fields are ignored, as NIP-01 allows other NIPs to add fields.
 *
 * Strings are kept as bytes plus length, because JSON may carry U+0000 (as
 * "\u0000") and the id is computed over the exact bytes; a NUL-terminated view
 * would silently change the event.
 *
 * The canonical serialization and the compact JSON output share one string
 * escaper that reproduces what JavaScript's JSON.stringify (and so nostr-tools
 * and most clients) emits: the seven short escapes, \u00xx with lowercase hex
 * for the other control characters, and everything else verbatim. Our own
 * serializer, rather than jansson's, keeps the output byte-stable across
 * library versions, which matters because the JSON is what the store keeps.
 *
 * One secp256k1 context is created on first use (pthread_once) and shared
 * read-only by all threads; libsecp256k1 allows that for a const context.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/sha.h>
#include <secp256k1.h>
#include <secp256k1_extrakeys.h>
#include <secp256k1_schnorrsig.h>

#include "event.h"
#include "util.h"

/* ---------------------------------------------------------------- secp256k1 */

static secp256k1_context *event_secp_ctx;
static pthread_once_t event_secp_once = PTHREAD_ONCE_INIT;

static int event_random_bytes(uint8_t *out, size_t n);

static void event_secp_init(void)
{
    uint8_t seed[32];

    event_secp_ctx = secp256k1_context_create(SECP256K1_CONTEXT_NONE);
    if (event_secp_ctx == NULL)
        abort();
    /*
     * Randomizing blinds signing against side channels. It happens once,
     * here, before any thread can use the context, so sharing stays safe.
     */
    if (event_random_bytes(seed, sizeof seed) == 0 &&
        !secp256k1_context_randomize(event_secp_ctx, seed))
        abort();
    memset(seed, 0, sizeof seed);
}

static const secp256k1_context *event_secp(void)
{
    if (pthread_once(&event_secp_once, event_secp_init) != 0)
        abort();
    return event_secp_ctx;
}

/* /dev/urandom; 0 on success. */
static int event_random_bytes(uint8_t *out, size_t n)
{
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, out + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            close(fd);
            return -1;
        }
        got += (size_t)r;
    }
    close(fd);
    return 0;
}

/* -------------------------------------------------------------------- errors */

/* -------------------------------------------------------------------- UTF-8 */

/*
 * Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above
 * U+10FFFF. jansson already enforces this on text it loads; this guards
 * objects built by hand (json_stringn_nocheck) and strings given to
 * event_sign.
 */
static int event_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;

    while (i < len) {
        unsigned char c = p[i];
        size_t need;
        uint32_t cp, min;

        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            need = 1, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            need = 2, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            need = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return 0;
        }
        if (len - i - 1 < need)
            return 0;
        for (size_t k = 1; k <= need; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return 0;
            cp = cp << 6 | (p[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += need + 1;
    }
    return 1;
}

/* ------------------------------------------------------------------ parsing */

static int event_get_hex(const json_t *obj, const char *name, uint8_t *out, size_t n, char *err,
                         size_t errlen)
{
    const json_t *v = json_object_get(obj, name);

    if (v == NULL) {
        set_error(err, errlen, "missing field: %s", name);
        return -1;
    }
    if (!json_is_string(v)) {
        set_error(err, errlen, "%s: not a string", name);
        return -1;
    }
    if (hex_decode(json_string_value(v), json_string_length(v), out, n, 1) != 0) {
        /* Uppercase fails here too: NIP-01 hex is lowercase, and the id is over it. */
        set_error(err, errlen, "%s: not %zu hex chars", name, 2 * n);
        return -1;
    }
    return 0;
}

static int event_get_uint(const json_t *obj, const char *name, uint64_t max, uint64_t *out,
                          char *err, size_t errlen)
{
    const json_t *v = json_object_get(obj, name);

    if (v == NULL) {
        set_error(err, errlen, "missing field: %s", name);
        return -1;
    }
    /* 1.0 and 1e3 are reals to jansson; NIP-01 wants integers. */
    if (!json_is_integer(v)) {
        set_error(err, errlen, "%s: not an integer", name);
        return -1;
    }
    json_int_t x = json_integer_value(v);
    if (x < 0 || (uint64_t)x > max) {
        set_error(err, errlen, "%s: %lld out of range 0..%llu", name, (long long)x,
                  (unsigned long long)max);
        return -1;
    }
    *out = (uint64_t)x;
    return 0;
}

/* Copies a JSON string into a NUL-terminated buffer; the length counts inner NULs. */
static char *event_copy_string(const json_t *v, size_t *len)
{
    size_t n = json_string_length(v);
    char *s = xmalloc(n + 1);

    memcpy(s, json_string_value(v), n);
    s[n] = '\0';
    *len = n;
    return s;
}

void event_free(struct event *ev)
{
    if (ev == NULL)
        return;
    for (size_t i = 0; i < ev->ntags; i++) {
        struct event_tag *t = &ev->tags[i];
        for (size_t j = 0; j < t->nfields; j++)
            free(t->fields[j]);
        free(t->fields);
        free(t->lens);
    }
    free(ev->tags);
    free(ev->content);
    free(ev);
}

static int event_parse_tags(struct event *ev, const json_t *tags, char *err, size_t errlen)
{
    if (tags == NULL) {
        set_error(err, errlen, "missing field: tags");
        return -1;
    }
    if (!json_is_array(tags)) {
        set_error(err, errlen, "tags: not an array");
        return -1;
    }
    size_t n = json_array_size(tags);
    ev->tags = xcalloc(n, sizeof *ev->tags);
    for (size_t i = 0; i < n; i++) {
        const json_t *tag = json_array_get(tags, i);
        if (!json_is_array(tag)) {
            set_error(err, errlen, "tags[%zu]: not an array", i);
            return -1;
        }
        size_t m = json_array_size(tag);
        if (m == 0) {
            set_error(err, errlen, "tags[%zu]: empty tag", i);
            return -1;
        }
        /* Validate before allocating, so ev->ntags only counts complete tags. */
        for (size_t j = 0; j < m; j++) {
            const json_t *f = json_array_get(tag, j);
            if (!json_is_string(f)) {
                set_error(err, errlen, "tags[%zu][%zu]: not a string", i, j);
                return -1;
            }
            if (!event_utf8_valid(json_string_value(f), json_string_length(f))) {
                set_error(err, errlen, "tags[%zu][%zu]: invalid UTF-8", i, j);
                return -1;
            }
        }
        struct event_tag *t = &ev->tags[i];
        t->fields = xcalloc(m, sizeof *t->fields);
        t->lens = xcalloc(m, sizeof *t->lens);
        for (size_t j = 0; j < m; j++)
            t->fields[j] = event_copy_string(json_array_get(tag, j), &t->lens[j]);
        t->nfields = m;
        ev->ntags = i + 1;
    }
    return 0;
}

struct event *event_from_json(const json_t *obj, char *err, size_t errlen)
{
    struct event *ev;
    uint64_t kind;
    const json_t *content;

    if (!json_is_object(obj)) {
        set_error(err, errlen, "event: not a JSON object");
        return NULL;
    }
    ev = xcalloc(1, sizeof *ev);
    if (event_get_hex(obj, "id", ev->id, 32, err, errlen) != 0 ||
        event_get_hex(obj, "pubkey", ev->pubkey, 32, err, errlen) != 0 ||
        event_get_uint(obj, "created_at", INT64_MAX, &ev->created_at, err, errlen) != 0 ||
        event_get_uint(obj, "kind", 65535, &kind, err, errlen) != 0 ||
        event_parse_tags(ev, json_object_get(obj, "tags"), err, errlen) != 0)
        goto fail;
    ev->kind = (uint32_t)kind;

    content = json_object_get(obj, "content");
    if (content == NULL) {
        set_error(err, errlen, "missing field: content");
        goto fail;
    }
    if (!json_is_string(content)) {
        set_error(err, errlen, "content: not a string");
        goto fail;
    }
    if (!event_utf8_valid(json_string_value(content), json_string_length(content))) {
        set_error(err, errlen, "content: invalid UTF-8");
        goto fail;
    }
    ev->content = event_copy_string(content, &ev->content_len);

    if (event_get_hex(obj, "sig", ev->sig, 64, err, errlen) != 0)
        goto fail;
    return ev;

fail:
    event_free(ev);
    return NULL;
}

struct event *event_parse(const char *text, size_t len, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *obj;
    struct event *ev;

    /*
     * JSON_ALLOW_NUL: "\u0000" is legal JSON and legal in an event; refusing
     * it would drop valid events. JSON_REJECT_DUPLICATES: with two "id"
     * fields, which one is the event? Refuse to guess.
     */
    obj = json_loadb(text, len, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &jerr);
    if (obj == NULL) {
        set_error(err, errlen, "invalid JSON: %s (column %d)", jerr.text, jerr.column);
        return NULL;
    }
    ev = event_from_json(obj, err, errlen);
    json_decref(obj);
    return ev;
}

/* ----------------------------------------------------------- serialization */

/* Whether JSON.stringify escapes byte c: a control character, a quote or a backslash. */
static int event_needs_escape(unsigned char c)
{
    return c < 0x20 || c == '"' || c == '\\';
}

/* The letter of c's two-byte escape (n for a newline), or 0 when it is written as \u00XX. */
static char event_short_escape(unsigned char c)
{
    switch (c) {
    case '"': return '"';
    case '\\': return '\\';
    case '\b': return 'b';
    case '\f': return 'f';
    case '\n': return 'n';
    case '\r': return 'r';
    case '\t': return 't';
    default: return 0;
    }
}

/* JSON.stringify's escaping of a string of len bytes (valid UTF-8), quotes included. */
static void event_put_string(struct buf *b, const char *s, size_t len)
{
    static const char hexd[] = "0123456789abcdef";
    size_t run = 0;

    buf_reserve(b, len + 2);
    buf_push(b, '"');
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (!event_needs_escape(c))
            continue;
        /* Flush the verbatim run before this char, then its escape. */
        buf_append(b, s + run, i - run);
        run = i + 1;
        char esc = event_short_escape(c);
        if (esc) {
            buf_push(b, '\\');
            buf_push(b, (uint8_t)esc);
        } else {
            char u[6] = {'\\', 'u', '0', '0', hexd[c >> 4], hexd[c & 15]};
            buf_append(b, u, sizeof u);
        }
    }
    buf_append(b, s + run, len - run);
    buf_push(b, '"');
}

static void event_put_cstr(struct buf *b, const char *s)
{
    buf_append(b, s, strlen(s));
}

static void event_put_uint(struct buf *b, uint64_t x)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)x);
    buf_append(b, tmp, (size_t)n);
}

static void event_put_hex(struct buf *b, const uint8_t *p, size_t n)
{
    char tmp[129];

    hex_encode(p, n, tmp);
    buf_push(b, '"');
    buf_append(b, tmp, 2 * n);
    buf_push(b, '"');
}

static void event_put_tags(struct buf *b, const struct event *ev)
{
    buf_push(b, '[');
    for (size_t i = 0; i < ev->ntags; i++) {
        const struct event_tag *t = &ev->tags[i];
        if (i)
            buf_push(b, ',');
        buf_push(b, '[');
        for (size_t j = 0; j < t->nfields; j++) {
            if (j)
                buf_push(b, ',');
            event_put_string(b, t->fields[j], t->lens[j]);
        }
        buf_push(b, ']');
    }
    buf_push(b, ']');
}

/* Hands the buffer's bytes to the caller as a NUL-terminated string. */
static char *event_buf_finish(struct buf *b, size_t *len)
{
    buf_push(b, '\0');
    if (len != NULL)
        *len = b->len - 1;
    return (char *)b->data;
}

char *event_serialize_canonical(const struct event *ev, size_t *len)
{
    struct buf b = {0};

    event_put_cstr(&b, "[0,");
    event_put_hex(&b, ev->pubkey, 32);
    buf_push(&b, ',');
    event_put_uint(&b, ev->created_at);
    buf_push(&b, ',');
    event_put_uint(&b, ev->kind);
    buf_push(&b, ',');
    event_put_tags(&b, ev);
    buf_push(&b, ',');
    event_put_string(&b, ev->content, ev->content_len);
    buf_push(&b, ']');
    return event_buf_finish(&b, len);
}

void event_compute_id(const struct event *ev, uint8_t out[32])
{
    size_t len;
    char *s = event_serialize_canonical(ev, &len);

    SHA256((const unsigned char *)s, len, out);
    free(s);
}

char *event_to_json(const struct event *ev, size_t *len)
{
    struct buf b = {0};

    event_put_cstr(&b, "{\"id\":");
    event_put_hex(&b, ev->id, 32);
    event_put_cstr(&b, ",\"pubkey\":");
    event_put_hex(&b, ev->pubkey, 32);
    event_put_cstr(&b, ",\"created_at\":");
    event_put_uint(&b, ev->created_at);
    event_put_cstr(&b, ",\"kind\":");
    event_put_uint(&b, ev->kind);
    event_put_cstr(&b, ",\"tags\":");
    event_put_tags(&b, ev);
    event_put_cstr(&b, ",\"content\":");
    event_put_string(&b, ev->content, ev->content_len);
    event_put_cstr(&b, ",\"sig\":");
    event_put_hex(&b, ev->sig, 64);
    buf_push(&b, '}');
    return event_buf_finish(&b, len);
}

/* event_put_string's output length for s: escapes are 2 bytes, or 6 as \u00XX. */
static size_t event_string_size(const char *s, size_t len)
{
    size_t n = len + 2;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (event_needs_escape(c))
            n += event_short_escape(c) ? 1 : 5;
    }
    return n;
}

static size_t event_uint_size(uint64_t x)
{
    size_t n = 1;

    while (x >= 10) {
        x /= 10;
        n++;
    }
    return n;
}

size_t event_json_size(const struct event *ev)
{
    /* What event_to_json writes around the values, and the hex values' quotes and digits. */
    static const char keys[] = "{\"id\":,\"pubkey\":,\"created_at\":,\"kind\":,\"tags\":,"
                               "\"content\":,\"sig\":}";
    size_t n = sizeof keys - 1;

    n += (2 + 64) * 2 + 2 + 128;
    n += event_uint_size(ev->created_at) + event_uint_size(ev->kind);
    n += 2 + (ev->ntags > 0 ? ev->ntags - 1 : 0); /* [ , ] */
    for (size_t i = 0; i < ev->ntags; i++) {
        const struct event_tag *t = &ev->tags[i];
        n += 2 + (t->nfields > 0 ? t->nfields - 1 : 0);
        for (size_t j = 0; j < t->nfields; j++)
            n += event_string_size(t->fields[j], t->lens[j]);
    }
    return n + event_string_size(ev->content, ev->content_len);
}

/* ------------------------------------------------------- verify and sign */

/*
 * The key cache: KEYCACHE_SETS sets of KEYCACHE_WAYS entries, a set picked
 * by bytes of the key (x coordinates are uniform, and a key that collides on
 * purpose only costs its author a re-parse). Hits compare all 32 bytes.
 */
#define KEYCACHE_SETS 512
#define KEYCACHE_WAYS 4

struct keycache_entry {
    uint8_t key[32];
    secp256k1_xonly_pubkey pk;
};

struct event_keycache {
    struct keycache_entry entry[KEYCACHE_SETS][KEYCACHE_WAYS];
    /* Per set: ways in use, and way numbers from most to least recently used. */
    uint8_t used[KEYCACHE_SETS];
    uint8_t order[KEYCACHE_SETS][KEYCACHE_WAYS];
    uint64_t hits, misses;
};

struct event_keycache *event_keycache_new(void)
{
    return xcalloc(1, sizeof(struct event_keycache));
}

void event_keycache_free(struct event_keycache *kc)
{
    free(kc);
}

void event_keycache_stats(const struct event_keycache *kc, uint64_t *hits, uint64_t *misses)
{
    *hits = kc != NULL ? kc->hits : 0;
    *misses = kc != NULL ? kc->misses : 0;
}

/* Moves way w to the front of set s's recency order (position pos now). */
static void keycache_touch(struct event_keycache *kc, unsigned s, unsigned pos)
{
    uint8_t w = kc->order[s][pos];

    memmove(&kc->order[s][1], &kc->order[s][0], pos);
    kc->order[s][0] = w;
}

/* The parsed form of key, from kc or parsed now (and cached). 0, or -1 if not a valid key. */
static int keycache_get(struct event_keycache *kc, const secp256k1_context *ctx,
                        const uint8_t key[32], secp256k1_xonly_pubkey *out)
{
    unsigned s, w;

    if (kc == NULL)
        return secp256k1_xonly_pubkey_parse(ctx, out, key) ? 0 : -1;
    s = ((unsigned)key[0] | (unsigned)key[1] << 8) % KEYCACHE_SETS;
    for (unsigned pos = 0; pos < kc->used[s]; pos++) {
        struct keycache_entry *e = &kc->entry[s][kc->order[s][pos]];
        if (memcmp(e->key, key, 32) == 0) {
            *out = e->pk;
            keycache_touch(kc, s, pos);
            kc->hits++;
            return 0;
        }
    }
    kc->misses++;
    if (!secp256k1_xonly_pubkey_parse(ctx, out, key))
        return -1;
    if (kc->used[s] < KEYCACHE_WAYS) {
        w = kc->used[s];
        kc->order[s][w] = (uint8_t)w;
        kc->used[s]++;
    } else {
        w = kc->order[s][KEYCACHE_WAYS - 1]; /* least recently used */
    }
    memcpy(kc->entry[s][w].key, key, 32);
    kc->entry[s][w].pk = *out;
    for (unsigned pos = 0; pos < kc->used[s]; pos++) {
        if (kc->order[s][pos] == w) {
            keycache_touch(kc, s, pos);
            break;
        }
    }
    return 0;
}

int event_check_id(const struct event *ev, char *err, size_t errlen)
{
    uint8_t id[32];

    event_compute_id(ev, id);
    if (memcmp(id, ev->id, 32) != 0) {
        set_error(err, errlen, "id mismatch");
        return -1;
    }
    return 0;
}

int event_verify_cached(const struct event *ev, struct event_keycache *kc, char *err, size_t errlen)
{
    const secp256k1_context *ctx = event_secp();
    secp256k1_xonly_pubkey pk;

    /* The id first: it is cheap, and a tampered body is the common failure. */
    if (event_check_id(ev, err, errlen) < 0)
        return -1;
    if (keycache_get(kc, ctx, ev->pubkey, &pk) < 0) {
        set_error(err, errlen, "invalid pubkey");
        return -1;
    }
    if (!secp256k1_schnorrsig_verify(ctx, ev->sig, ev->id, 32, &pk)) {
        set_error(err, errlen, "bad signature");
        return -1;
    }
    return 0;
}

struct event *event_from_json_verified(const json_t *obj, struct event_keycache *kc, char *err,
                                       size_t errlen)
{
    struct event *ev = event_from_json(obj, err, errlen);

    if (ev != NULL && event_verify_cached(ev, kc, err, errlen) < 0) {
        event_free(ev);
        ev = NULL;
    }
    return ev;
}

int event_verify(const struct event *ev, char *err, size_t errlen)
{
    return event_verify_cached(ev, NULL, err, errlen);
}

int event_finalize(struct event *ev, const uint8_t seckey[32])
{
    const secp256k1_context *ctx = event_secp();
    secp256k1_keypair kp;
    secp256k1_xonly_pubkey pk;
    uint8_t aux[32];
    int rc = -1;

    if (ev->created_at > INT64_MAX || ev->kind > 65535 ||
        !event_utf8_valid(ev->content, ev->content_len))
        return -1;
    for (size_t i = 0; i < ev->ntags; i++) {
        if (ev->tags[i].nfields == 0)
            return -1;
        for (size_t j = 0; j < ev->tags[i].nfields; j++)
            if (!event_utf8_valid(ev->tags[i].fields[j], ev->tags[i].lens[j]))
                return -1;
    }
    if (!secp256k1_keypair_create(ctx, &kp, seckey))
        return -1;
    if (!secp256k1_keypair_xonly_pub(ctx, &pk, NULL, &kp) ||
        !secp256k1_xonly_pubkey_serialize(ctx, ev->pubkey, &pk))
        goto out;
    event_compute_id(ev, ev->id);
    /* BIP-340 allows NULL aux randomness; fresh randomness is the recommended default. */
    if (!secp256k1_schnorrsig_sign32(ctx, ev->sig, ev->id, &kp,
                                     event_random_bytes(aux, sizeof aux) == 0 ? aux : NULL))
        goto out;
    rc = 0;
out:
    memset(&kp, 0, sizeof kp);
    memset(aux, 0, sizeof aux);
    return rc;
}

struct event *event_sign(const uint8_t seckey[32], uint64_t created_at, uint32_t kind,
                         const char *const *const *tags, const size_t *tag_lens, size_t ntags,
                         const char *content)
{
    struct event *ev = xcalloc(1, sizeof *ev);

    ev->created_at = created_at;
    ev->kind = kind;
    ev->tags = xcalloc(ntags, sizeof *ev->tags);
    for (size_t i = 0; i < ntags; i++) {
        struct event_tag *t = &ev->tags[i];
        size_t m = tag_lens[i];
        t->fields = xcalloc(m, sizeof *t->fields);
        t->lens = xcalloc(m, sizeof *t->lens);
        for (size_t j = 0; j < m; j++) {
            t->fields[j] = xstrdup(tags[i][j]);
            t->lens[j] = strlen(tags[i][j]);
        }
        t->nfields = m;
        ev->ntags = i + 1;
    }
    ev->content = xstrdup(content != NULL ? content : "");
    ev->content_len = strlen(ev->content);
    if (event_finalize(ev, seckey) != 0) {
        event_free(ev);
        return NULL;
    }
    return ev;
}

/* ------------------------------------------------------------------ queries */

const char *event_tag_value(const struct event *ev, const char *name)
{
    size_t n = strlen(name);

    for (size_t i = 0; i < ev->ntags; i++) {
        const struct event_tag *t = &ev->tags[i];
        if (t->nfields >= 2 && t->lens[0] == n && memcmp(t->fields[0], name, n) == 0)
            return t->fields[1];
    }
    return NULL;
}

int event_kind_is_replaceable(uint32_t kind)
{
    return kind == 0 || kind == 3 || (kind >= 10000 && kind < 20000);
}

int event_kind_is_ephemeral(uint32_t kind)
{
    return kind >= 20000 && kind < 30000;
}

int event_kind_is_addressable(uint32_t kind)
{
    return kind >= 30000 && kind < 40000;
}
