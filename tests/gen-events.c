/*
 * gen-events: writes signed Nostr events as JSON lines, for the sync tests and
 * benchmarks. Deterministic: the same options give the same events (keys and
 * times come from a seeded splitmix64), so a test can make a relay's set and
 * a local subset of it from one seed.
 *
 *   gen-events [-n N] [-k KEYS] [-t BASE] [-s SPAN] [-K KIND[,KIND...]] [-S SEED]
 *              [-D M] [-p]
 *
 * N events (default 100) by KEYS authors (default 4), created_at spread over
 * [BASE, BASE+SPAN) (default 1700000000, 1000), kinds taken in turn from the
 * list (default 1). -D M follows every M-th event with a NIP-09 deletion of
 * it (kind 5, same author, one second later, an "e" tag), on a line of its
 * own: a store that holds the deletion refuses the event (tests of OK false).
 * -p prints the authors' public keys instead, one a line.
 */
#include "config.h"

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
          " [-D M] [-p]\n",
          stderr);
    exit(2);
}

static uint64_t num(const char *s)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);

    if (*s == '\0' || *end != '\0')
        usage();
    return v;
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
    uint32_t kinds[64] = {1};
    size_t nkinds = 1;
    int pubkeys = 0, c;
    uint8_t(*keys)[32];

    while ((c = getopt(argc, argv, "n:k:t:s:K:S:D:p")) != -1) {
        switch (c) {
        case 'n': n = num(optarg); break;
        case 'k': nkeys = num(optarg); break;
        case 't': base = num(optarg); break;
        case 's': span = num(optarg); break;
        case 'S': seed = num(optarg); break;
        case 'D': del_every = num(optarg); break;
        case 'p': pubkeys = 1; break;
        case 'K': {
            char *save = NULL, *tok, *list = xstrdup(optarg);
            nkinds = 0;
            for (tok = strtok_r(list, ",", &save); tok != NULL && nkinds < 64;
                 tok = strtok_r(NULL, ",", &save))
                kinds[nkinds++] = (uint32_t)num(tok);
            free(list);
            if (nkinds == 0)
                usage();
            break;
        }
        default: usage();
        }
    }
    if (nkeys == 0 || span == 0 || optind != argc)
        usage();

    rng = seed * 0x2545f4914f6cdd1dULL + 7;
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
        char content[96], *json;
        struct event *ev;
        size_t len;
        uint64_t k = pubkeys ? i : splitmix64(&rng) % nkeys;
        uint64_t t = base + splitmix64(&rng) % span;

        if (pubkeys && i >= nkeys)
            break;
        snprintf(content, sizeof content, "gen-events seed %llu event %llu",
                 (unsigned long long)seed, (unsigned long long)i);
        ev = event_sign(keys[k], t, kinds[i % nkinds], NULL, NULL, 0, content);
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
