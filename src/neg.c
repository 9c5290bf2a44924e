/*
 * neg: Negentropy protocol v1 — storage, fingerprints and reconciliation.
 *
 * The message logic follows the reference implementation step by step, because
 * peers compare our messages byte for byte: the same bucket split (16 buckets,
 * an IdList below 32 items), the same minimal bounds, the same coalescing of
 * Skip ranges, and the same frame-size cut-off (stop 200 bytes short of the
 * limit and cover the rest of the space with one Fingerprint). An initiator
 * may opt out of the bucket split (neg_set_adaptive; see "Adaptive splitting"
 * below), and then only its own messages differ.
 *
 * Where we differ is cost. The reference sums every id of a range to
 * fingerprint it; with a frame size limit each round fingerprints "everything
 * after here", so a session over N items costs O(N) per round and hundreds of
 * rounds. We keep a cumulative 256-bit sum every NEG_SUM_STRIDE items (4 bytes
 * per item at a stride of 8), so any range sum is two table lookups plus at
 * most 2 * (stride - 1) additions.
 *
 * Parsing is defensive: every read is checked against the end of the message,
 * varints are limited to 64 bits, an IdList's count is checked against the
 * bytes that remain before anything is allocated for it, and bounds must not
 * go backwards.
 */
#include "config.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/random.h>
#include <time.h>

#include <openssl/evp.h>

#include "neg.h"

#define NEG_SUM_STRIDE 8
#define NEG_BUCKETS    16
#define NEG_MAX_U64    UINT64_MAX
/* The reference stops adding ranges this many bytes short of the limit. */
#define NEG_FRAME_HEADROOM 200

enum neg_mode { MODE_SKIP = 0, MODE_FINGERPRINT = 1, MODE_IDLIST = 2 };

/* A 256-bit number as four little-endian 64-bit limbs. */
struct sum256 {
    uint64_t w[4];
};

struct neg_storage {
    struct neg_item *items;
    size_t n, cap;
    int sealed;
    /* prefix[k] = sum of the ids of items[0 .. k * NEG_SUM_STRIDE). */
    struct sum256 *prefix;
};

/*
 * SHA-256 through a fetched digest and a reused context: OpenSSL 3's one-shot
 * SHA256() looks the algorithm up on every call, which made hashing five times
 * slower than the hash itself.
 */
struct hasher {
    EVP_MD *md;
    EVP_MD_CTX *ctx;
};

/* An upper bound: a timestamp and an id prefix, zero-padded to 32 bytes. */
struct bound {
    uint64_t timestamp;
    uint8_t id[NEG_ID_SIZE];
    size_t idlen;
};

struct neg {
    const struct neg_storage *st;
    struct hasher hasher;
    uint64_t hash_seed; /* secret, for the IdList table */
    uint64_t frame_size_limit;
    int initiator;
    uint64_t last_ts_in, last_ts_out;
    struct buf scratch; /* one range's output, reused between ranges */
    /* Adaptive splitting (initiator, opt-in): see choose_split. */
    int adaptive;
    double density;         /* estimated differences per item of ours; < 0 = unknown */
    struct sample *samples; /* evidence since the last estimate */
    size_t nsamples, samples_cap;
    struct buf verdicts; /* estimate_from's fingerprint comparisons, in message order */
};

/*
 * Evidence on the density: a fingerprint comparison over `count` of our items
 * (differs or not), or an IdList compared with `count` of our items that
 * showed `diffs` differences.
 */
struct sample {
    size_t count;
    size_t diffs;
    enum { SAMPLE_EQUAL, SAMPLE_DIFFERS, SAMPLE_IDLIST } kind;
};

/* A range as parsed from a message; payload points into the message. */
struct range_in {
    struct bound bound;
    uint64_t mode;
    const uint8_t *payload; /* the fingerprint, or the first id */
    uint64_t count;         /* ids in an IdList */
};

static int set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* ---- 256-bit sums ------------------------------------------------------- */

static uint64_t load_le64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

static void store_le64(uint8_t *p, uint64_t v)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    memcpy(p, &v, 8);
}

static void sum_add(struct sum256 *s, const struct sum256 *a)
{
    unsigned carry = 0;
    for (int i = 0; i < 4; i++) {
        uint64_t x = s->w[i] + a->w[i];
        unsigned c1 = x < s->w[i];
        uint64_t y = x + carry;
        unsigned c2 = y < x;
        s->w[i] = y;
        carry = c1 | c2;
    }
}

static void sum_sub(struct sum256 *s, const struct sum256 *a)
{
    unsigned borrow = 0;
    for (int i = 0; i < 4; i++) {
        uint64_t x = s->w[i] - a->w[i];
        unsigned b1 = s->w[i] < a->w[i];
        uint64_t y = x - borrow;
        unsigned b2 = x < borrow;
        s->w[i] = y;
        borrow = b1 | b2;
    }
}

static void sum_add_id(struct sum256 *s, const uint8_t id[NEG_ID_SIZE])
{
    struct sum256 a;
    for (int i = 0; i < 4; i++)
        a.w[i] = load_le64(id + 8 * i);
    sum_add(s, &a);
}

/* ---- varints and bounds ------------------------------------------------- */

size_t neg_varint_encode(uint64_t v, uint8_t out[10])
{
    uint8_t tmp[10];
    size_t n = 0;
    do {
        tmp[n++] = v & 0x7f;
        v >>= 7;
    } while (v != 0);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i] | (i + 1 < n ? 0x80 : 0);
    return n;
}

int neg_varint_decode(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
    uint64_t v = 0;
    const uint8_t *q = *p;
    for (;;) {
        if (q >= end)
            return -1;
        /* Another 7 bits would not fit in 64, or the encoding is longer than
         * the 10 digits any 64-bit value needs. */
        if (v >> 57 || q - *p == 10)
            return -1;
        uint8_t b = *q++;
        v = (v << 7) | (b & 0x7f);
        if (!(b & 0x80))
            break;
    }
    *p = q;
    *out = v;
    return 0;
}

static void put_varint(struct buf *b, uint64_t v)
{
    uint8_t tmp[10];
    buf_append(b, tmp, neg_varint_encode(v, tmp));
}

static int item_cmp(const struct neg_item *a, const struct neg_item *b)
{
    if (a->timestamp != b->timestamp)
        return a->timestamp < b->timestamp ? -1 : 1;
    return memcmp(a->id, b->id, NEG_ID_SIZE);
}

static int bound_cmp(const struct bound *a, const struct bound *b)
{
    if (a->timestamp != b->timestamp)
        return a->timestamp < b->timestamp ? -1 : 1;
    return memcmp(a->id, b->id, NEG_ID_SIZE);
}

static int item_before_bound(const struct neg_item *it, const struct bound *b)
{
    if (it->timestamp != b->timestamp)
        return it->timestamp < b->timestamp;
    return memcmp(it->id, b->id, NEG_ID_SIZE) < 0;
}

static void bound_infinity(struct bound *b)
{
    memset(b, 0, sizeof(*b));
    b->timestamp = NEG_MAX_U64;
}

static void encode_timestamp_out(struct neg *n, struct buf *b, uint64_t ts)
{
    if (ts == NEG_MAX_U64) {
        n->last_ts_out = NEG_MAX_U64;
        put_varint(b, 0);
        return;
    }
    uint64_t delta = ts - n->last_ts_out;
    n->last_ts_out = ts;
    put_varint(b, delta + 1);
}

static void encode_bound(struct neg *n, struct buf *b, const struct bound *bd)
{
    encode_timestamp_out(n, b, bd->timestamp);
    put_varint(b, bd->idlen);
    buf_append(b, bd->id, bd->idlen);
}

/* The shortest bound that separates prev (below) from curr (at or above). */
static void minimal_bound(const struct neg_item *prev, const struct neg_item *curr,
                          struct bound *out)
{
    memset(out, 0, sizeof(*out));
    out->timestamp = curr->timestamp;
    if (curr->timestamp != prev->timestamp)
        return;
    size_t shared = 0;
    while (shared < NEG_ID_SIZE && curr->id[shared] == prev->id[shared])
        shared++;
    /* Items are unique, so shared < 32 and the prefix fits. */
    out->idlen = shared + 1;
    memcpy(out->id, curr->id, out->idlen);
}

/* ---- storage ------------------------------------------------------------ */

struct neg_storage *neg_storage_new(void)
{
    return xcalloc(1, sizeof(struct neg_storage));
}

void neg_storage_free(struct neg_storage *st)
{
    if (st == NULL)
        return;
    free(st->items);
    free(st->prefix);
    free(st);
}

void neg_storage_reserve(struct neg_storage *st, size_t n)
{
    if (n <= st->cap)
        return;
    st->items = xreallocarray(st->items, n, sizeof(*st->items));
    st->cap = n;
}

int neg_storage_insert(struct neg_storage *st, uint64_t timestamp, const uint8_t id[NEG_ID_SIZE],
                       char *err, size_t errlen)
{
    if (st->sealed)
        return set_err(err, errlen, "storage already sealed");
    if (timestamp == NEG_MAX_U64)
        return set_err(err, errlen, "timestamp 2^64-1 is reserved");
    if (st->n == st->cap)
        neg_storage_reserve(st, st->cap ? st->cap + st->cap / 2 : 64);
    st->items[st->n].timestamp = timestamp;
    memcpy(st->items[st->n].id, id, NEG_ID_SIZE);
    st->n++;
    return 0;
}

static void item_swap(struct neg_item *a, struct neg_item *b)
{
    struct neg_item t = *a;
    *a = *b;
    *b = t;
}

static void heap_sift(struct neg_item *v, size_t root, size_t n)
{
    for (;;) {
        size_t child = 2 * root + 1;
        if (child >= n)
            return;
        if (child + 1 < n && item_cmp(&v[child], &v[child + 1]) < 0)
            child++;
        if (item_cmp(&v[root], &v[child]) >= 0)
            return;
        item_swap(&v[root], &v[child]);
        root = child;
    }
}

static void heap_sort(struct neg_item *v, size_t n)
{
    for (size_t i = n / 2; i-- > 0;)
        heap_sift(v, i, n);
    for (size_t i = n; i-- > 1;) {
        item_swap(&v[0], &v[i]);
        heap_sift(v, 0, i);
    }
}

/*
 * In-place introsort. qsort() would do, but glibc's merges through a copy of
 * the whole array, which doubles peak memory while sealing a large storage.
 */
static void intro_sort(struct neg_item *v, size_t n, int depth)
{
    while (n > 16) {
        if (depth-- == 0) {
            heap_sort(v, n);
            return;
        }
        size_t mid = n / 2;
        if (item_cmp(&v[mid], &v[0]) < 0)
            item_swap(&v[mid], &v[0]);
        if (item_cmp(&v[n - 1], &v[0]) < 0)
            item_swap(&v[n - 1], &v[0]);
        if (item_cmp(&v[n - 1], &v[mid]) < 0)
            item_swap(&v[n - 1], &v[mid]);
        struct neg_item pivot = v[mid];
        size_t i = 0, j = n - 1;
        for (;;) {
            while (item_cmp(&v[i], &pivot) < 0)
                i++;
            while (item_cmp(&pivot, &v[j]) < 0)
                j--;
            if (i >= j)
                break;
            item_swap(&v[i], &v[j]);
            i++;
            j--;
        }
        /* Recurse into the smaller side, loop on the larger. */
        size_t left = j + 1;
        if (left < n - left) {
            intro_sort(v, left, depth);
            v += left;
            n -= left;
        } else {
            intro_sort(v + left, n - left, depth);
            n = left;
        }
    }
    for (size_t i = 1; i < n; i++) {
        struct neg_item t = v[i];
        size_t j = i;
        while (j > 0 && item_cmp(&t, &v[j - 1]) < 0) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = t;
    }
}

int neg_storage_seal(struct neg_storage *st, char *err, size_t errlen)
{
    if (st->sealed)
        return set_err(err, errlen, "storage already sealed");
    /* Listings from the store come in order already: then one pass does. */
    size_t sorted = 1;
    while (sorted < st->n && item_cmp(&st->items[sorted - 1], &st->items[sorted]) < 0)
        sorted++;
    if (sorted < st->n) {
        int depth = 2;
        for (size_t m = st->n; m > 1; m >>= 1)
            depth += 2;
        intro_sort(st->items, st->n, depth);
        for (size_t i = 1; i < st->n; i++) {
            if (item_cmp(&st->items[i - 1], &st->items[i]) == 0) {
                char hex[2 * NEG_ID_SIZE + 1];
                hex_encode(st->items[i].id, NEG_ID_SIZE, hex);
                return set_err(err, errlen, "duplicate item %llu,%s",
                               (unsigned long long)st->items[i].timestamp, hex);
            }
        }
    }
    size_t nprefix = st->n / NEG_SUM_STRIDE + 1;
    st->prefix = xreallocarray(NULL, nprefix, sizeof(*st->prefix));
    struct sum256 acc = {{0, 0, 0, 0}};
    for (size_t i = 0; i < st->n; i++) {
        if (i % NEG_SUM_STRIDE == 0)
            st->prefix[i / NEG_SUM_STRIDE] = acc;
        sum_add_id(&acc, st->items[i].id);
    }
    if (st->n % NEG_SUM_STRIDE == 0)
        st->prefix[st->n / NEG_SUM_STRIDE] = acc;
    st->sealed = 1;
    return 0;
}

size_t neg_storage_size(const struct neg_storage *st)
{
    return st->n;
}

const struct neg_item *neg_storage_item(const struct neg_storage *st, size_t i)
{
    return i < st->n ? &st->items[i] : NULL;
}

/* Sum of the ids of items[0 .. x). */
static void prefix_sum(const struct neg_storage *st, size_t x, struct sum256 *out)
{
    size_t k = x / NEG_SUM_STRIDE;
    *out = st->prefix[k];
    for (size_t i = k * NEG_SUM_STRIDE; i < x; i++)
        sum_add_id(out, st->items[i].id);
}

static int hasher_init(struct hasher *h)
{
    h->md = EVP_MD_fetch(NULL, "SHA2-256", NULL);
    h->ctx = EVP_MD_CTX_new();
    return h->md != NULL && h->ctx != NULL ? 0 : -1;
}

static void hasher_free(struct hasher *h)
{
    EVP_MD_CTX_free(h->ctx);
    EVP_MD_free(h->md);
}

static void fingerprint(const struct neg_storage *st, size_t lo, size_t hi, struct hasher *h,
                        uint8_t out[NEG_FINGERPRINT_SIZE])
{
    struct sum256 s = {{0, 0, 0, 0}};
    if (hi - lo < 2 * NEG_SUM_STRIDE) {
        for (size_t i = lo; i < hi; i++)
            sum_add_id(&s, st->items[i].id);
    } else {
        struct sum256 below;
        prefix_sum(st, hi, &s);
        prefix_sum(st, lo, &below);
        sum_sub(&s, &below);
    }
    uint8_t input[32 + 10];
    for (int i = 0; i < 4; i++)
        store_le64(input + 8 * i, s.w[i]);
    size_t len = 32 + neg_varint_encode(hi - lo, input + 32);
    uint8_t digest[EVP_MAX_MD_SIZE];
    if (EVP_DigestInit_ex2(h->ctx, h->md, NULL) != 1 || EVP_DigestUpdate(h->ctx, input, len) != 1 ||
        EVP_DigestFinal_ex(h->ctx, digest, NULL) != 1)
        abort(); /* SHA-256 of 42 bytes cannot fail unless libcrypto is broken */
    memcpy(out, digest, NEG_FINGERPRINT_SIZE);
}

void neg_storage_fingerprint(const struct neg_storage *st, size_t lo, size_t hi,
                             uint8_t out[NEG_FINGERPRINT_SIZE])
{
    struct hasher h;
    if (hasher_init(&h) < 0)
        abort();
    fingerprint(st, lo, hi, &h, out);
    hasher_free(&h);
}

/*
 * First index in [first, last) whose item is not below b. Bounds in a message
 * only go up and ranges are usually short, so gallop forward from first
 * (1, 2, 4, ... items) and bisect only the last step: a range of k items costs
 * O(log k) probes near the current position instead of a bisection of the
 * whole remaining vector, which at a million items was a cache miss per probe.
 */
static size_t storage_lower_bound(const struct neg_storage *st, size_t first, size_t last,
                                  const struct bound *b)
{
    if (first == last || !item_before_bound(&st->items[first], b))
        return first;
    /* items[lo] is below b; find hi with items[hi] not below b (or hi == last). */
    size_t lo = first, hi, step = 1;
    for (;;) {
        hi = last - lo > step ? lo + step : last;
        if (hi == last || !item_before_bound(&st->items[hi], b))
            break;
        lo = hi;
        step *= 2;
    }
    first = lo + 1;
    last = hi;
    while (first < last) {
        size_t mid = first + (last - first) / 2;
        if (item_before_bound(&st->items[mid], b))
            first = mid + 1;
        else
            last = mid;
    }
    return first;
}

void neg_ids_free(struct neg_ids *ids)
{
    free(ids->ids);
    ids->ids = NULL;
    ids->n = ids->cap = 0;
}

static void ids_push(struct neg_ids *ids, const uint8_t id[NEG_ID_SIZE])
{
    if (ids->n == ids->cap) {
        ids->cap = ids->cap ? 2 * ids->cap : 64;
        ids->ids = xreallocarray(ids->ids, ids->cap, NEG_ID_SIZE);
    }
    memcpy(ids->ids[ids->n++], id, NEG_ID_SIZE);
}

/* ---- sessions ----------------------------------------------------------- */

struct neg *neg_new(const struct neg_storage *st, uint64_t frame_size_limit, char *err,
                    size_t errlen)
{
    if (!st->sealed) {
        set_err(err, errlen, "storage not sealed");
        return NULL;
    }
    if (frame_size_limit != 0 && frame_size_limit < NEG_MIN_FRAME_SIZE_LIMIT) {
        set_err(err, errlen, "frame size limit %llu too small (0 or at least %d)",
                (unsigned long long)frame_size_limit, NEG_MIN_FRAME_SIZE_LIMIT);
        return NULL;
    }
    struct neg *n = xcalloc(1, sizeof(*n));
    if (hasher_init(&n->hasher) < 0) {
        hasher_free(&n->hasher);
        free(n);
        set_err(err, errlen, "SHA-256 is not available from libcrypto");
        return NULL;
    }
    if (getrandom(&n->hash_seed, sizeof(n->hash_seed), 0) != sizeof(n->hash_seed))
        n->hash_seed = (uint64_t)(uintptr_t)n ^ (uint64_t)time(NULL);
    n->st = st;
    n->frame_size_limit = frame_size_limit;
    n->density = -1;
    return n;
}

void neg_free(struct neg *n)
{
    if (n == NULL)
        return;
    buf_free(&n->scratch);
    buf_free(&n->verdicts);
    hasher_free(&n->hasher);
    free(n->samples);
    free(n);
}

int neg_is_initiator(const struct neg *n)
{
    return n->initiator;
}

void neg_set_adaptive(struct neg *n, int on)
{
    n->adaptive = on != 0;
}

double neg_density(const struct neg *n)
{
    return n->density;
}

static int exceeded_frame_size(const struct neg *n, size_t size)
{
    return n->frame_size_limit != 0 && size > n->frame_size_limit - NEG_FRAME_HEADROOM;
}

/*
 * Adaptive splitting. The protocol leaves it to each side how a range it
 * cannot settle is cut up; the reference always makes 16 buckets and sends
 * its ids below 32 items. That is right when differences are rare, but when
 * they are dense (a client holding 90 % of a relay's events, scattered) every
 * bucket differs at every level and the relay ends up sending the id of every
 * event it has. An initiator that knows the density can instead cut a
 * differing range straight into ranges of a few items: the ones that match
 * cost one fingerprint, and only the others bring back the relay's ids.
 *
 * choose_split prices the choices — 16 buckets, k-item ranges, the range
 * handed back whole as one fingerprint, or our IdList — with a small
 * expected-cost model of the whole exchange below the range, using the
 * density of differences estimated from what the peer's messages showed so
 * far, and picks the cheapest. Costs are in bytes of the binary message; the
 * hex encoding doubles both directions alike.
 *
 * Measured with bench/neg-bench (100 000 items, frame limit 60 000, the
 * peer's 500 000 like strfry's): 90 % held, scattered, 2.97 MB both ways by
 * the reference split, 2.02 MB adaptive; 99 % held 0.76 / 0.43 MB; new events
 * only at the end, the same. Where half the items or more differ, nearly
 * every id must cross anyway: up to 6 % more than the reference against the
 * 500 000-byte peer, 2-15 % less against a 60 000-byte one.
 */
#define COST_FP     20.0 /* a Fingerprint range: bound, mode, 16 bytes */
#define COST_IDHEAD 4.0  /* an IdList range before its ids */
#define COST_ID     32.0
/* At most this many ranges from one split; with a frame size limit, what fits one frame. */
#define NEG_MAX_SPLIT 8192
/* A Fingerprint range's usual size, to size splits; split_range checks the real one. */
#define NEG_TYPICAL_FP_RANGE 24
/* What a split leaves free in an empty frame: the version byte and a Skip range (<= 44). */
#define NEG_SPLIT_SLACK 64

/* Probability that a range of x of our items differs, at density d. */
static double p_differs(double x, double d)
{
    return x <= 0 ? 0 : -expm1(-d * x);
}

/* Of a range of `parent` items known to differ, the share of sub-ranges of `child` that differ. */
static double p_child(double child, double parent, double d)
{
    double pp = p_differs(parent, d);
    return pp > 0 ? p_differs(child, d) / pp : 1;
}

static double cost_ours(double items, double d, size_t max_split, size_t *ranges);

/*
 * The peer's items in a differing range of `items` of ours: differences are
 * Poisson with mean d * items, conditioned on there being one at least (most
 * are the peer's: the ones we lack).
 */
static double their_items(double items, double d)
{
    double q = p_differs(items, d);
    return q > 0 ? items + d * items / q : items + 1;
}

/* Expected bytes once the peer holds a differing range of `items` of ours. */
static double cost_theirs(double items, double d, size_t max_split)
{
    double theirs = their_items(items, d);
    if (theirs < 2 * NEG_BUCKETS)
        return COST_IDHEAD + COST_ID * theirs;
    double child = items / NEG_BUCKETS;
    return NEG_BUCKETS *
           (COST_FP + p_child(child, items, d) * cost_ours(child, d, max_split, NULL));
}

/*
 * Expected bytes to settle a differing range of `items` of ours when it is our
 * turn; *ranges (if not NULL) is set to the best number of sub-ranges, or 0
 * for an IdList.
 */
static double cost_ours(double items, double d, size_t max_split, size_t *ranges)
{
    double best;
    size_t best_ranges;
    if (items < 2 * NEG_BUCKETS) {
        /* Our ids, and theirs back. */
        best = 2 * COST_IDHEAD + COST_ID * (items + their_items(items, d));
        best_ranges = 0;
    } else {
        double child = items / NEG_BUCKETS;
        best =
            NEG_BUCKETS * (COST_FP + p_child(child, items, d) * cost_theirs(child, d, max_split));
        best_ranges = NEG_BUCKETS;
    }
    /* The range whole, as our fingerprint: the peer splits it or sends its ids. */
    double echo = COST_FP + cost_theirs(items, d, max_split);
    if (echo < best) {
        best = echo;
        best_ranges = 1;
    }
    /* Ranges of k items each, small enough that the peer answers with its ids. */
    for (size_t k = 1; k < 2 * NEG_BUCKETS && their_items((double)k, d) < 2 * NEG_BUCKETS; k++) {
        double count = items / (double)k;
        if (count < 2)
            break;
        if (count > (double)max_split)
            continue;
        double c = count * (COST_FP + p_child(k, items, d) *
                                          (COST_IDHEAD + COST_ID * their_items((double)k, d)));
        if (c < best) {
            best = c;
            best_ranges = (size_t)(count + 0.5);
        }
    }
    if (ranges != NULL)
        *ranges = best_ranges;
    return best;
}

/* How to describe a differing range of num items: 0 = IdList, else that many fingerprints. */
static size_t choose_split(const struct neg *n, size_t num)
{
    /* Unknown density: split like the reference. */
    if (!n->adaptive || n->density < 0) {
        if (num < 2 * NEG_BUCKETS)
            return 0;
        return NEG_BUCKETS;
    }
    size_t max_split = NEG_MAX_SPLIT;
    if (n->frame_size_limit != 0) {
        uint64_t room =
            (n->frame_size_limit - NEG_FRAME_HEADROOM - NEG_SPLIT_SLACK) / NEG_TYPICAL_FP_RANGE;
        if (room < max_split)
            max_split = (size_t)room;
    }
    size_t ranges;
    cost_ours((double)num, n->density, max_split, &ranges);
    return ranges;
}

static void add_sample(struct neg *n, size_t count, size_t diffs, int kind)
{
    /* The model puts differences among our items; a range with none says nothing. */
    if (count == 0)
        return;
    if (n->nsamples == n->samples_cap) {
        n->samples_cap = n->samples_cap ? 2 * n->samples_cap : 256;
        n->samples = xreallocarray(n->samples, n->samples_cap, sizeof(*n->samples));
    }
    n->samples[n->nsamples].count = count;
    n->samples[n->nsamples].diffs = diffs;
    n->samples[n->nsamples].kind = kind;
    n->nsamples++;
}

/*
 * The derivative of the log-likelihood of the evidence at density d, with
 * differences in c items taken to be Poisson with mean d c: an equal range
 * has probability exp(-d c), a differing one 1 - exp(-d c), and an IdList
 * the peer sent (because a fingerprint differed) showed m differences from a
 * Poisson conditioned on m >= 1. It falls as d grows.
 */
static double density_slope(const struct neg *n, double d)
{
    double g = 0;
    for (size_t i = 0; i < n->nsamples; i++) {
        double c = (double)n->samples[i].count, m = (double)n->samples[i].diffs;
        switch (n->samples[i].kind) {
        case SAMPLE_EQUAL: g -= c; break;
        case SAMPLE_DIFFERS: g += c / expm1(d * c); break; /* c > 0: see add_sample */
        case SAMPLE_IDLIST:
            g += m / d - c;
            if (m >= 1)
                g -= c / expm1(d * c);
            break;
        }
    }
    return g;
}

/*
 * What update_density solves for d, falling as d grows: the likelihood's
 * slope, or, when every range differed and there is no IdList, the expected
 * number of equal ranges less one half.
 */
static double density_equation(const struct neg *n, double d, int floor_only)
{
    if (!floor_only)
        return density_slope(n, d);
    double f = -0.5;
    for (size_t i = 0; i < n->nsamples; i++)
        f += exp(-d * (double)n->samples[i].count);
    return f;
}

/*
 * Re-estimates the density from the evidence gathered since the last time
 * (the peer's fingerprints in this message, the IdLists of the last one):
 * the maximum-likelihood d. When every range differed and there is no IdList,
 * the likelihood has no maximum; then take the d at which half an equal range
 * would have been expected, as a floor under the earlier estimate. With too
 * little evidence the estimate stays as it was.
 */
static void update_density(struct neg *n)
{
    size_t differ = 0, lists = 0;
    for (size_t i = 0; i < n->nsamples; i++) {
        differ += n->samples[i].kind == SAMPLE_DIFFERS;
        lists += n->samples[i].kind == SAMPLE_IDLIST;
    }
    size_t fps = n->nsamples - lists;
    if (fps < 8 && lists == 0)
        return;
    if (differ == 0 && lists == 0) {
        n->density = 0;
        n->nsamples = 0;
        return;
    }
    /* Bisect (geometrically) where the equation's left side crosses zero. */
    int floor_only = differ == fps && lists == 0;
    double lo = 1e-7, hi = 1e4, d;
    for (int iter = 0; iter < 50; iter++) {
        double mid = sqrt(lo * hi);
        if (density_equation(n, mid, floor_only) > 0)
            lo = mid;
        else
            hi = mid;
    }
    d = sqrt(lo * hi);
    if (floor_only && d < n->density)
        d = n->density;
    n->density = d;
    n->nsamples = 0;
}

static void emit_buckets(struct neg *n, struct buf *o, size_t lower, size_t upper,
                         const struct bound *upper_bound, size_t buckets);

/*
 * Describes items [lower, upper) as an IdList or as fingerprinted ranges:
 * 16 of them like the reference, or as many as choose_split says.
 */
static void split_range(struct neg *n, struct buf *o, size_t lower, size_t upper,
                        const struct bound *upper_bound)
{
    const struct neg_storage *st = n->st;
    size_t num = upper - lower;
    size_t buckets = choose_split(n, num);

    if (buckets == 0) {
        encode_bound(n, o, upper_bound);
        put_varint(o, MODE_IDLIST);
        put_varint(o, num);
        for (size_t i = lower; i < upper; i++)
            buf_append(o, st->items[i].id, NEG_ID_SIZE);
        return;
    }

    size_t start_len = o->len;
    uint64_t start_ts = n->last_ts_out;
    emit_buckets(n, o, lower, upper, upper_bound, buckets);
    /*
     * One split (after a Skip) must fit an empty message, or the session could
     * not progress; a wide split over long bounds may not: use 16 buckets.
     */
    if (buckets > NEG_BUCKETS && n->frame_size_limit != 0 &&
        o->len - start_len + NEG_SPLIT_SLACK > n->frame_size_limit - NEG_FRAME_HEADROOM) {
        o->len = start_len;
        n->last_ts_out = start_ts;
        emit_buckets(n, o, lower, upper, upper_bound, NEG_BUCKETS);
    }
}

/* Items [lower, upper) as `buckets` fingerprinted ranges of near-equal size. */
static void emit_buckets(struct neg *n, struct buf *o, size_t lower, size_t upper,
                         const struct bound *upper_bound, size_t buckets)
{
    const struct neg_storage *st = n->st;
    size_t num = upper - lower;
    size_t per_bucket = num / buckets;
    size_t with_extra = num % buckets;
    size_t curr = lower;
    for (size_t i = 0; i < buckets; i++) {
        size_t size = per_bucket + (i < with_extra ? 1 : 0);
        uint8_t fp[NEG_FINGERPRINT_SIZE];
        fingerprint(st, curr, curr + size, &n->hasher, fp);
        curr += size;

        struct bound next;
        if (curr == upper)
            next = *upper_bound;
        else
            minimal_bound(&st->items[curr - 1], &st->items[curr], &next);
        encode_bound(n, o, &next);
        put_varint(o, MODE_FINGERPRINT);
        buf_append(o, fp, NEG_FINGERPRINT_SIZE);
    }
}

int neg_initiate(struct neg *n, struct buf *out, char *err, size_t errlen)
{
    if (n->initiator)
        return set_err(err, errlen, "already initiated");
    n->initiator = 1;
    n->last_ts_out = 0;
    out->len = 0;
    buf_push(out, NEG_PROTOCOL_VERSION);
    struct bound inf;
    bound_infinity(&inf);
    split_range(n, out, 0, n->st->n, &inf);
    return 0;
}

/* Timestamps arrive as deltas; a sum past 2^64-1 saturates to infinity, as in the reference. */
static int decode_timestamp_in(struct neg *n, const uint8_t **p, const uint8_t *end, uint64_t *out)
{
    uint64_t v;
    if (neg_varint_decode(p, end, &v) < 0)
        return -1;
    uint64_t ts = v == 0 ? NEG_MAX_U64 : v - 1;
    ts += n->last_ts_in;
    if (ts < n->last_ts_in)
        ts = NEG_MAX_U64;
    n->last_ts_in = ts;
    *out = ts;
    return 0;
}

static int decode_bound(struct neg *n, const uint8_t **p, const uint8_t *end, struct bound *b,
                        char *err, size_t errlen)
{
    if (decode_timestamp_in(n, p, end, &b->timestamp) < 0)
        return set_err(err, errlen, "truncated or oversized varint in bound timestamp");
    uint64_t len;
    if (neg_varint_decode(p, end, &len) < 0)
        return set_err(err, errlen, "truncated or oversized varint in bound id length");
    if (len > NEG_ID_SIZE)
        return set_err(err, errlen, "bound id prefix of %llu bytes (at most 32)",
                       (unsigned long long)len);
    if ((size_t)(end - *p) < len)
        return set_err(err, errlen, "truncated bound id prefix");
    memset(b->id, 0, sizeof(b->id));
    memcpy(b->id, *p, len);
    b->idlen = len;
    *p += len;
    return 0;
}

/*
 * Parses one range at *p: its bound (which must not go below prev), mode and
 * payload, all checked against the end of the message.
 */
static int parse_range(struct neg *n, const uint8_t **p, const uint8_t *end,
                       const struct bound *prev, struct range_in *r, char *err, size_t errlen)
{
    if (decode_bound(n, p, end, &r->bound, err, errlen) < 0)
        return -1;
    if (bound_cmp(&r->bound, prev) < 0)
        return set_err(err, errlen, "range bounds go backwards");
    if (neg_varint_decode(p, end, &r->mode) < 0)
        return set_err(err, errlen, "truncated or oversized varint in range mode");
    r->payload = *p;
    r->count = 0;
    if (r->mode == MODE_SKIP)
        return 0;
    if (r->mode == MODE_FINGERPRINT) {
        if ((size_t)(end - *p) < NEG_FINGERPRINT_SIZE)
            return set_err(err, errlen, "truncated fingerprint");
        *p += NEG_FINGERPRINT_SIZE;
        return 0;
    }
    if (r->mode == MODE_IDLIST) {
        if (neg_varint_decode(p, end, &r->count) < 0)
            return set_err(err, errlen, "truncated or oversized varint in IdList length");
        if (r->count > (uint64_t)(end - *p) / NEG_ID_SIZE)
            return set_err(err, errlen, "IdList of %llu ids longer than the message",
                           (unsigned long long)r->count);
        r->payload = *p;
        *p += r->count * NEG_ID_SIZE;
        return 0;
    }
    return set_err(err, errlen, "unknown range mode %llu", (unsigned long long)r->mode);
}

/* Whether our fingerprint of items [lower, upper) differs from the peer's. */
static int range_differs(struct neg *n, size_t lower, size_t upper,
                         const uint8_t theirs[NEG_FINGERPRINT_SIZE])
{
    uint8_t ours[NEG_FINGERPRINT_SIZE];
    fingerprint(n->st, lower, upper, &n->hasher, ours);
    return memcmp(ours, theirs, NEG_FINGERPRINT_SIZE) != 0;
}

/*
 * Adaptive initiator: a first pass over the peer's message compares its
 * fingerprints with ours and re-estimates the density before any range is
 * split. The comparisons are kept in n->verdicts for the main pass, which
 * would otherwise hash every range twice. A malformed message is left for
 * the main pass to report.
 */
static void estimate_from(struct neg *n, const uint8_t *p, const uint8_t *end)
{
    const struct neg_storage *st = n->st;
    struct bound prev;
    memset(&prev, 0, sizeof(prev));
    size_t prev_index = 0;

    n->last_ts_in = 0;
    while (p < end) {
        struct range_in r;
        if (parse_range(n, &p, end, &prev, &r, NULL, 0) < 0)
            break;
        size_t upper = storage_lower_bound(st, prev_index, st->n, &r.bound);
        if (r.mode == MODE_FINGERPRINT) {
            int differs = range_differs(n, prev_index, upper, r.payload);
            buf_push(&n->verdicts, (uint8_t)differs);
            add_sample(n, upper - prev_index, 0, differs ? SAMPLE_DIFFERS : SAMPLE_EQUAL);
        }
        prev_index = upper;
        prev = r.bound;
    }
    n->last_ts_in = 0;
    update_density(n);
}

static uint64_t id_hash(const uint8_t id[NEG_ID_SIZE], uint64_t seed)
{
    /* Ids are hashes already, but a peer picks the ones it sends: the secret
     * seed keeps it from crowding one slot of the table. */
    uint64_t z = load_le64(id) ^ load_le64(id + 8) ^ seed;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/*
 * The initiator's side of an IdList range: ours not in theirs are "have",
 * theirs not in ours are "need". ids points into the message (count * 32
 * bytes, already checked to be there). Their ids go into an open-addressing
 * table, so the comparison is linear in both lists.
 */
static size_t compare_id_list(struct neg *n, const uint8_t *ids, size_t count, size_t lower,
                              size_t upper, struct neg_ids *have, struct neg_ids *need)
{
    size_t diffs = 0;
    size_t cap = 16;
    while (cap < 2 * count)
        cap *= 2;
    size_t *slots = xcalloc(cap, sizeof(*slots)); /* index + 1; 0 = empty */
    uint8_t *matched = xcalloc(count ? count : 1, 1);

    for (size_t i = 0; i < count; i++) {
        const uint8_t *id = ids + i * NEG_ID_SIZE;
        size_t h = id_hash(id, n->hash_seed) & (cap - 1);
        while (slots[h] != 0 && memcmp(ids + (slots[h] - 1) * NEG_ID_SIZE, id, NEG_ID_SIZE) != 0)
            h = (h + 1) & (cap - 1);
        if (slots[h] == 0)
            slots[h] = i + 1;
        else
            matched[i] = 1; /* a repeat is the same element of their set */
    }
    for (size_t i = lower; i < upper; i++) {
        const uint8_t *key = n->st->items[i].id;
        size_t h = id_hash(key, n->hash_seed) & (cap - 1);
        while (slots[h] != 0 && memcmp(ids + (slots[h] - 1) * NEG_ID_SIZE, key, NEG_ID_SIZE) != 0)
            h = (h + 1) & (cap - 1);
        if (slots[h] != 0) {
            matched[slots[h] - 1] = 1;
        } else {
            diffs++;
            if (have != NULL)
                ids_push(have, key);
        }
    }
    for (size_t i = 0; i < count; i++)
        if (!matched[i]) {
            diffs++;
            if (need != NULL)
                ids_push(need, ids + i * NEG_ID_SIZE);
        }
    free(matched);
    free(slots);
    return diffs;
}

int neg_reconcile(struct neg *n, const uint8_t *msg, size_t len, struct buf *out,
                  struct neg_ids *have, struct neg_ids *need, char *err, size_t errlen)
{
    const struct neg_storage *st = n->st;
    const uint8_t *p = msg, *end = msg + len;
    struct buf *o = &n->scratch;

    n->last_ts_in = n->last_ts_out = 0;
    out->len = 0;
    buf_push(out, NEG_PROTOCOL_VERSION);

    if (len == 0)
        return set_err(err, errlen, "empty negentropy message");
    uint8_t version = *p++;
    if (version < 0x60 || version > 0x6f)
        return set_err(err, errlen, "invalid negentropy protocol version byte 0x%02x", version);
    if (version != NEG_PROTOCOL_VERSION) {
        if (n->initiator)
            return set_err(err, errlen, "peer asks for unsupported negentropy protocol version %d",
                           version - 0x60);
        return 0; /* reply with the version we speak */
    }

    size_t storage_size = st->n;
    struct bound prev_bound;
    memset(&prev_bound, 0, sizeof(prev_bound));
    size_t prev_index = 0;
    int skip = 0;
    size_t nfingerprints = 0; /* Fingerprint ranges seen, to index n->verdicts */

    n->verdicts.len = 0;
    if (n->initiator && n->adaptive)
        estimate_from(n, p, end);

    while (p < end) {
        struct range_in r;
        o->len = 0;

        if (parse_range(n, &p, end, &prev_bound, &r, err, errlen) < 0)
            return -1;
        struct bound curr = r.bound;
        size_t lower = prev_index;
        size_t upper = storage_lower_bound(st, prev_index, storage_size, &curr);

        if (r.mode == MODE_SKIP) {
            skip = 1;
        } else if (r.mode == MODE_FINGERPRINT) {
            int differs = nfingerprints < n->verdicts.len
                              ? n->verdicts.data[nfingerprints]
                              : range_differs(n, lower, upper, r.payload);
            nfingerprints++;
            if (differs) {
                if (skip) {
                    skip = 0;
                    encode_bound(n, o, &prev_bound);
                    put_varint(o, MODE_SKIP);
                }
                split_range(n, o, lower, upper, &curr);
            } else {
                skip = 1;
            }
        } else {
            const uint8_t *ids = r.payload;
            size_t count = r.count;

            if (n->initiator) {
                size_t diffs = compare_id_list(n, ids, count, lower, upper, have, need);
                if (n->adaptive)
                    add_sample(n, upper - lower, diffs, SAMPLE_IDLIST);
                skip = 1;
            } else {
                if (skip) {
                    skip = 0;
                    encode_bound(n, o, &prev_bound);
                    put_varint(o, MODE_SKIP);
                }
                /*
                 * Our ids for the range, cut short if the frame would
                 * overflow. Like the reference, measure what is already in
                 * the message plus these ids, not the pending Skip in o.
                 */
                struct bound end_bound = curr;
                size_t stop = upper;
                for (size_t i = lower; i < upper; i++) {
                    if (exceeded_frame_size(n, out->len + (i - lower) * NEG_ID_SIZE)) {
                        end_bound.timestamp = st->items[i].timestamp;
                        memcpy(end_bound.id, st->items[i].id, NEG_ID_SIZE);
                        end_bound.idlen = NEG_ID_SIZE;
                        stop = i;
                        break;
                    }
                }
                upper = stop;
                encode_bound(n, o, &end_bound);
                put_varint(o, MODE_IDLIST);
                put_varint(o, upper - lower);
                for (size_t i = lower; i < upper; i++)
                    buf_append(o, st->items[i].id, NEG_ID_SIZE);
                buf_append(out, o->data, o->len);
                o->len = 0;
            }
        }

        if (exceeded_frame_size(n, out->len + o->len)) {
            /* Stop here; one fingerprint covers everything from upper on. */
            struct bound inf;
            uint8_t fp[NEG_FINGERPRINT_SIZE];
            bound_infinity(&inf);
            fingerprint(st, upper, storage_size, &n->hasher, fp);
            encode_bound(n, out, &inf);
            put_varint(out, MODE_FINGERPRINT);
            buf_append(out, fp, NEG_FINGERPRINT_SIZE);
            break;
        }
        buf_append(out, o->data, o->len);
        prev_index = upper;
        prev_bound = curr;
    }

    if (n->initiator && out->len == 1)
        out->len = 0; /* nothing left to ask: done */
    return 0;
}
