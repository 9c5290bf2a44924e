/*
 * gen-events: writes signed Nostr events as JSON lines, for the sync tests and
 * benchmarks. Deterministic: the same options give the same events (keys and
 * times come from a seeded splitmix64), so a test can make a relay's set and
 * a local subset of it from one seed. Only the signatures differ from run to
 * run (event_sign uses fresh BIP-340 aux randomness); the ids do not.
 *
 *   gen-events [-n N] [-k KEYS] [-t BASE] [-s SPAN] [-K KIND[,KIND...]] [-S SEED]
 *              [-D M] [-R] [-p]
 *
 * N events (default 100) by KEYS authors (default 4), created_at spread over
 * [BASE, BASE+SPAN) (default 1700000000, 1000), kinds taken in turn from the
 * list (default 1). -D M follows every M-th event with a NIP-09 deletion of
 * it (kind 5, same author, one second later, an "e" tag), on a line of its
 * own: a store that holds the deletion refuses the event (tests of OK false).
 * -p prints the authors' public keys instead, one a line.
 *
 * Without -R an event is a stub: no tags, content "gen-events seed S event I",
 * about 370 bytes of JSON. -R ("realistic note shape") gives each event the
 * tags and content of a real kind-1 note instead, because byte figures depend
 * on event size (negentropy's cost is per event, a REQ's per byte). The shape
 * follows the 146 kind-1 notes in nostream's seed data (2022; the
 * real-events-nostream-seeds.jsonl test file): 0-7 tags in their proportions
 * (38 % none, 8 % one, 16 % two, 21 % three, 17 % four or more); "e" and "p"
 * tags about 59:41, a third of the "e" and three fifths of the "p" tags with
 * a relay URL, no NIP-10 markers (those notes have none); a PoW "nonce" tag
 * last on 2 in 7 tagged notes; content of English words, sometimes a link,
 * a line break or a quoted word, its length drawn from their quantiles (mean
 * 84, median 76, at most 375 bytes) and ending in "(S/I)" so that it stays
 * unique. That makes a line about 570 bytes, like theirs. The shape comes
 * from a stream of its own, so authors and times are those of the stubs.
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "event.h"
#include "util.h"

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void usage(void)
{
    fputs("usage: gen-events [-n N] [-k KEYS] [-t BASE] [-s SPAN] [-K KIND,...] [-S SEED]"
          " [-D M] [-R] [-p]\n"
          "  -R  realistic note shape: tags and content like real kind-1 notes\n",
          stderr);
    exit(2);
}

/* The argument s of option -opt as a number from min to max, or a usage error that names it. */
static uint64_t num(int opt, const char *s, uint64_t min, uint64_t max)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(s, &end, 10);
    if (*s < '0' || *s > '9' || *end != '\0' || errno != 0 || v < min || v > max) {
        fprintf(stderr, "gen-events: -%c: '%s' is not a number from %llu to %llu\n", opt, s,
                (unsigned long long)min, (unsigned long long)max);
        usage();
    }
    return v;
}

/* ---- -R: tags and content shaped like real kind-1 notes ------------------ */

#define NOTE_TAGS_MAX    7
#define NOTE_CONTENT_MAX 375

/* Of the 146 real notes, how many have 0, 1, ... 7 tags. */
static const unsigned note_tag_counts[NOTE_TAGS_MAX + 1] = {55, 12, 24, 30, 17, 5, 2, 1};

/* Their content lengths in bytes at each permille (interpolated quantiles). */
static const struct {
    unsigned permille, bytes;
} note_lengths[] = {{0, 1},
                    {50, 6},
                    {100, 8},
                    {150, 13},
                    {200, 21},
                    {250, 29},
                    {300, 34},
                    {350, 41},
                    {400, 54},
                    {450, 65},
                    {500, 76},
                    {550, 82},
                    {600, 92},
                    {650, 107},
                    {700, 117},
                    {750, 125},
                    {800, 133},
                    {850, 146},
                    {900, 168},
                    {950, 203},
                    {975, 247},
                    {990, 285},
                    {1000, NOTE_CONTENT_MAX}};

/* Relay hints, as long on average (27 bytes) as the real ones. */
static const char *const note_relays[] = {
    "wss://relay.example.com",          "wss://nostr.example.org",
    "wss://nostr-pub.example.net",      "wss://nostr-relay.example.space",
    "wss://relay.nostr.example.social",
};

static const char *const note_words[] = {
    "the",    "a",       "to",      "and",      "of",        "is",       "it",      "i",
    "you",    "that",    "in",      "this",     "for",       "on",       "with",    "not",
    "but",    "just",    "have",    "be",       "are",       "my",       "so",      "was",
    "what",   "can",     "if",      "we",       "all",       "like",     "now",     "one",
    "nostr",  "relay",   "relays",  "client",   "key",       "keys",     "note",    "notes",
    "event",  "sats",    "zap",     "bitcoin",  "lightning", "node",     "app",     "post",
    "people", "think",   "really",  "good",     "great",     "nice",     "thanks",  "today",
    "time",   "working", "build",   "protocol", "simple",    "network",  "social",  "media",
    "open",   "source",  "code",    "bug",      "fix",       "release",  "version", "server",
    "phone",  "coffee",  "morning", "night",    "world",     "everyone", "anyone",  "friends",
};

/* A byte string being built, never past its capacity. */
struct note_buf {
    char *p;
    size_t len, cap;
};

static void note_put(struct note_buf *b, const char *s, size_t n)
{
    if (n > b->cap - 1 - b->len)
        n = b->cap - 1 - b->len;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

/* A content length drawn from the real notes' quantiles. */
static size_t note_length(uint64_t *rng)
{
    unsigned u = (unsigned)(splitmix64(rng) % 1000000), lo, hi;
    size_t k = 1;

    while (note_lengths[k].permille * 1000 < u)
        k++;
    lo = note_lengths[k - 1].permille * 1000;
    hi = note_lengths[k].permille * 1000;
    return note_lengths[k - 1].bytes +
           (size_t)(note_lengths[k].bytes - note_lengths[k - 1].bytes) * (u - lo) / (hi - lo);
}

/*
 * Words into b up to about budget bytes (stopping at whichever side of it is
 * nearer): sentences of 3-12 words, capitalised and ended by '.', '?' or '!',
 * separated by a space or now and then a blank line; a word is quoted now and
 * then, so that the JSON needs escapes as real notes' do.
 */
static void note_words_put(struct note_buf *b, size_t budget, uint64_t *rng)
{
    size_t start = b->len, nwords = sizeof note_words / sizeof note_words[0];
    unsigned left = 0;

    for (;;) {
        char tok[32];
        size_t used = b->len - start, n = 0;
        uint64_t r = splitmix64(rng);
        const char *w = note_words[r % nwords];
        int first = left == 0, quoted = (r >> 44) % 256 == 0;

        if (first)
            left = 3 + (unsigned)(r >> 32) % 10;
        if (used > 0) {
            if (first && (r >> 40) % 8 == 0) {
                tok[n++] = '\n';
                tok[n++] = '\n';
            } else {
                tok[n++] = ' ';
            }
        }
        if (quoted)
            tok[n++] = '"';
        for (size_t j = 0; w[j] != '\0'; j++)
            tok[n++] = (char)(first && j == 0 && w[j] >= 'a' ? w[j] - 'a' + 'A' : w[j]);
        if (quoted)
            tok[n++] = '"';
        if (--left == 0)
            tok[n++] = ".?!"[(r >> 52) % 8 == 0 ? 1 + (r >> 56) % 2 : 0];
        if (used + n > budget && used + n - budget >= budget - used)
            return;
        note_put(b, tok, n);
        if (used + n >= budget)
            return;
    }
}

/*
 * Content like a real note's: words, in half the notes long enough for it (a
 * third of all, as in the real ones) ending in a link, then "(seed/index)" so
 * that no two events share it.
 */
static void note_content(char *out, size_t cap, uint64_t *rng, uint64_t seed, uint64_t i)
{
    struct note_buf b = {out, 0, cap};
    char mark[48];
    size_t target = note_length(rng), mlen, budget, link = 0;

    out[0] = '\0';
    mlen = (size_t)snprintf(mark, sizeof mark, "(%llu/%llu)", (unsigned long long)seed,
                            (unsigned long long)i);
    budget = target > mlen + 1 ? target - mlen - 1 : 0;
    if (budget >= 30 && splitmix64(rng) % 2 == 0) {
        link = 28 + splitmix64(rng) % 60;
        if (link > budget)
            link = budget;
        budget = budget > link + 1 ? budget - link - 1 : 0;
    }
    note_words_put(&b, budget, rng);
    if (link > 0) {
        static const char path[] = "abcdefghijklmnopqrstuvwxyz0123456789/-"; /* '/-' not first */
        if (b.len > 0)
            note_put(&b, " ", 1);
        note_put(&b, "https://example.com/", 20);
        for (size_t j = 20; j < link; j++)
            note_put(&b, &path[splitmix64(rng) % (sizeof path - (j == 20 ? 3 : 1))], 1);
    }
    if (b.len > 0)
        note_put(&b, " ", 1);
    note_put(&b, mark, mlen);
}

/* The tags of one note; the strings live in the struct. */
struct note_tags {
    char hex[NOTE_TAGS_MAX][65], nonce[12];
    const char *field[NOTE_TAGS_MAX][3];
    const char *const *tag[NOTE_TAGS_MAX];
    size_t len[NOTE_TAGS_MAX], n;
};

/*
 * Tags like a real note's: ["e", id] or ["e", id, relay] and ["p", pubkey]
 * or ["p", pubkey, relay] in the proportions of the real notes (ids and keys
 * random), and on 2 in 7 tagged notes a PoW ["nonce", N] last.
 */
static void note_tags_make(struct note_tags *t, uint64_t *rng)
{
    unsigned u = (unsigned)(splitmix64(rng) % 146), nonce;
    size_t nrelays = sizeof note_relays / sizeof note_relays[0];

    for (t->n = 0; u >= note_tag_counts[t->n]; t->n++)
        u -= note_tag_counts[t->n];
    nonce = t->n > 0 && splitmix64(rng) % 7 < 2;
    for (size_t k = 0; k < t->n; k++) {
        uint64_t r = splitmix64(rng);

        t->tag[k] = t->field[k];
        if (nonce && k == t->n - 1) {
            snprintf(t->nonce, sizeof t->nonce, "%u", (unsigned)(1 + r % 4000));
            t->field[k][0] = "nonce";
            t->field[k][1] = t->nonce;
            t->len[k] = 2;
            continue;
        }
        for (int j = 0; j < 4; j++) {
            uint64_t v = splitmix64(rng);
            uint8_t bytes[8];
            memcpy(bytes, &v, 8);
            hex_encode(bytes, 8, t->hex[k] + 16 * j);
        }
        /* e:p 137:96; relay hints on 48 of 137 e and 59 of 96 p tags */
        if (r % 233 < 137) {
            t->field[k][0] = "e";
            t->len[k] = (r >> 16) % 137 < 48 ? 3 : 2;
        } else {
            t->field[k][0] = "p";
            t->len[k] = (r >> 16) % 96 < 59 ? 3 : 2;
        }
        t->field[k][1] = t->hex[k];
        t->field[k][2] = note_relays[(r >> 32) % nrelays];
    }
}

/* A kind-5 deletion of ev by its author, a second after it, as one JSON line. */
static int print_deletion(const uint8_t key[32], const struct event *ev)
{
    char hex[65], *json;
    const char *tag[2] = {"e", hex};
    const char *const *tags[1] = {tag};
    size_t tag_len[1] = {2}, len;
    struct event *del;

    hex_encode(ev->id, 32, hex);
    del = event_sign(key, ev->created_at + 1, 5, tags, tag_len, 1, "gen-events deletion");
    if (del == NULL) {
        fprintf(stderr, "gen-events: cannot sign a deletion\n");
        return -1;
    }
    json = event_to_json(del, &len);
    fwrite(json, 1, len, stdout);
    putchar('\n');
    free(json);
    event_free(del);
    return 0;
}

int main(int argc, char **argv)
{
    uint64_t n = 100, nkeys = 4, base = 1700000000, span = 1000, seed = 1, del_every = 0, rng;
    uint64_t shape;
    uint32_t kinds[64] = {1};
    size_t nkinds = 1;
    int pubkeys = 0, realistic = 0, c;
    uint8_t(*keys)[32];

    while ((c = getopt(argc, argv, "n:k:t:s:K:S:D:Rp")) != -1) {
        switch (c) {
        case 'n': n = num(c, optarg, 0, UINT64_MAX); break;
        case 'k': nkeys = num(c, optarg, 1, UINT32_MAX); break;
        case 't': base = num(c, optarg, 0, INT64_MAX); break;
        case 's': span = num(c, optarg, 1, INT64_MAX); break;
        case 'S': seed = num(c, optarg, 0, UINT64_MAX); break;
        case 'D': del_every = num(c, optarg, 0, UINT64_MAX); break;
        case 'R': realistic = 1; break;
        case 'p': pubkeys = 1; break;
        case 'K': {
            char *save = NULL, *tok, *list = xstrdup(optarg);
            nkinds = 0;
            for (tok = strtok_r(list, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
                if (nkinds == sizeof kinds / sizeof kinds[0]) {
                    fprintf(stderr, "gen-events: -K: more than %zu kinds\n", nkinds);
                    usage();
                }
                kinds[nkinds++] = (uint32_t)num(c, tok, 0, 65535);
            }
            free(list);
            if (nkinds == 0) {
                fprintf(stderr, "gen-events: -K: no kinds\n");
                usage();
            }
            break;
        }
        default: usage();
        }
    }
    if (optind != argc)
        usage();
    /* created_at stays below 2^63, a deletion's second after it too. */
    if (span > (uint64_t)INT64_MAX - base) {
        fprintf(stderr, "gen-events: -t BASE plus -s SPAN passes 2^63-1\n");
        usage();
    }

    rng = seed * 0x2545f4914f6cdd1dULL + 7;
    shape = seed * 0xd1342543de82ef95ULL + 0x5eed;
    keys = xcalloc(nkeys, sizeof *keys);
    for (uint64_t k = 0; k < nkeys; k++) {
        for (int i = 0; i < 4; i++) {
            uint64_t v = splitmix64(&rng);
            memcpy(keys[k] + 8 * i, &v, 8);
        }
        keys[k][0] &= 0x7f; /* below the curve order */
        keys[k][31] |= 1;   /* not zero */
    }
    for (uint64_t i = 0; i < n || (pubkeys && i < nkeys); i++) {
        char content[NOTE_CONTENT_MAX + 128], *json;
        struct event *ev;
        size_t len;
        uint64_t k = pubkeys ? i : splitmix64(&rng) % nkeys;
        uint64_t t = base + splitmix64(&rng) % span;

        if (pubkeys && i >= nkeys)
            break;
        if (realistic) {
            struct note_tags tags;

            note_tags_make(&tags, &shape);
            note_content(content, sizeof content, &shape, seed, i);
            ev = event_sign(keys[k], t, kinds[i % nkinds], tags.tag, tags.len, tags.n, content);
        } else {
            snprintf(content, sizeof content, "gen-events seed %llu event %llu",
                     (unsigned long long)seed, (unsigned long long)i);
            ev = event_sign(keys[k], t, kinds[i % nkinds], NULL, NULL, 0, content);
        }
        if (ev == NULL) {
            fprintf(stderr, "gen-events: cannot sign event %llu\n", (unsigned long long)i);
            return 1;
        }
        if (pubkeys) {
            char hex[65];
            hex_encode(ev->pubkey, 32, hex);
            printf("%s\n", hex);
        } else {
            json = event_to_json(ev, &len);
            fwrite(json, 1, len, stdout);
            putchar('\n');
            free(json);
            if (del_every > 0 && (i + 1) % del_every == 0 && print_deletion(keys[k], ev) < 0) {
                event_free(ev);
                return 1;
            }
        }
        event_free(ev);
    }
    free(keys);
    return fflush(stdout) == 0 ? 0 : 1;
}
