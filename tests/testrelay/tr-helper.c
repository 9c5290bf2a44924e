/*
 * tr-helper — what the test relay's tests need from negsync's own modules.
 *
 *   tr-helper gen N SEED AUTHORS
 *       N signed events, JSON lines, from AUTHORS keys derived from SEED:
 *       regular kinds only (so a relay keeps every one), created_at bunched so
 *       that many share a second (ties are ordered by id), and e, p and t tags
 *       drawn from small pools so tag filters match something.
 *   tr-helper match EVENTS.jsonl REQ_LIMIT
 *       For each line of stdin, a JSON array of filters (what follows the
 *       subscription id in a REQ), prints the ids a relay must answer, in
 *       REQ order, decided by filter_match over every event of the file: per
 *       filter the newest min(limit, REQ_LIMIT) matches, their union, newest
 *       first (ties by id), at most REQ_LIMIT. One line per REQ, ids separated
 *       by spaces (an empty line for no result), or "error: ..." for a
 *       filter the parser refuses.
 *
 * The relay answers from SQLite through store_query; this answers from
 * filter_match in memory, so the test compares two independent paths.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "event.h"
#include "filter.h"
#include "util.h"

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void rng_bytes(uint64_t *s, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (uint8_t)rng_next(s);
}

static int gen(uint64_t n, uint64_t seed, uint64_t nauthors)
{
    static const uint32_t kinds[] = {1, 1, 1, 1, 7, 7, 6, 1111, 9802};
    static const char *const words[] = {"nostr", "sync", "negentropy", "caf\xc3\xa9"};
    enum { NPOOL = 16 };
    uint8_t(*keys)[32] = xcalloc(nauthors, 32);
    char(*pubhex)[65] = xcalloc(nauthors, 65);
    char pool[NPOOL][65];
    uint64_t s = seed * 0x100000001b3ull + 17, spread = n / 3 + 1;

    for (uint64_t a = 0; a < nauthors; a++) {
        struct event *probe;

        /* A random 32-byte string is a valid key but for a chance of 2^-128. */
        do {
            rng_bytes(&s, keys[a], 32);
            probe = event_sign(keys[a], 0, 1, NULL, NULL, 0, "");
        } while (probe == NULL);
        hex_encode(probe->pubkey, 32, pubhex[a]);
        event_free(probe);
    }
    for (int i = 0; i < NPOOL; i++) {
        uint8_t id[32];
        rng_bytes(&s, id, 32);
        hex_encode(id, 32, pool[i]);
    }
    for (uint64_t i = 0; i < n; i++) {
        const char *tagv[3][2];
        const char *const *tags[3];
        size_t lens[3], ntags = 0;
        char content[96];
        uint64_t a = rng_next(&s) % nauthors;
        uint64_t created_at = 1700000000 + rng_next(&s) % spread;
        uint32_t kind = kinds[rng_next(&s) % (sizeof kinds / sizeof kinds[0])];
        struct event *ev;
        char *json;
        size_t len;

        if (rng_next(&s) % 2) {
            tagv[ntags][0] = "e";
            tagv[ntags][1] = pool[rng_next(&s) % NPOOL];
            ntags++;
        }
        if (rng_next(&s) % 2) {
            tagv[ntags][0] = "p";
            tagv[ntags][1] = pubhex[rng_next(&s) % nauthors];
            ntags++;
        }
        if (rng_next(&s) % 3 == 0) {
            tagv[ntags][0] = "t";
            tagv[ntags][1] = words[rng_next(&s) % 4];
            ntags++;
        }
        for (size_t t = 0; t < ntags; t++) {
            tags[t] = tagv[t];
            lens[t] = 2;
        }
        snprintf(content, sizeof content, "test relay event %llu, seed %llu", (unsigned long long)i,
                 (unsigned long long)seed);
        ev = event_sign(keys[a], created_at, kind, ntags ? tags : NULL, ntags ? lens : NULL, ntags,
                        content);
        if (ev == NULL) {
            fprintf(stderr, "tr-helper: event_sign failed\n");
            return 1;
        }
        json = event_to_json(ev, &len);
        fwrite(json, 1, len, stdout);
        putchar('\n');
        free(json);
        event_free(ev);
    }
    free(keys);
    free(pubhex);
    return fflush(stdout) == 0 ? 0 : 1;
}

/* REQ order: newest first, ties by id. */
static int newest_first(const void *a, const void *b)
{
    const struct event *x = *(struct event *const *)a, *y = *(struct event *const *)b;

    if (x->created_at != y->created_at)
        return x->created_at > y->created_at ? -1 : 1;
    return memcmp(x->id, y->id, 32);
}

static int match_line(struct event **evs, size_t nev, const char *line, uint64_t req_limit)
{
    json_error_t jerr;
    json_t *arr = json_loads(line, JSON_REJECT_DUPLICATES, &jerr);
    struct event **hits = NULL;
    size_t nhits = 0, cap = 0, i, j, sent;
    char err[FILTER_ERRLEN];

    if (!json_is_array(arr)) {
        fprintf(stderr, "tr-helper: not a JSON array: %s\n", line);
        json_decref(arr);
        return -1;
    }
    for (i = 0; i < json_array_size(arr); i++) {
        struct filter *f = filter_from_json(json_array_get(arr, i), err, sizeof err);
        size_t first = nhits, take;

        if (f == NULL) {
            printf("error: %s\n", err);
            goto out;
        }
        for (j = 0; j < nev; j++) {
            if (!filter_match(f, evs[j]))
                continue;
            if (nhits == cap) {
                cap = cap ? cap * 2 : 64;
                hits = xreallocarray(hits, cap, sizeof *hits);
            }
            hits[nhits++] = evs[j];
        }
        if (nhits - first > 1)
            qsort(hits + first, nhits - first, sizeof *hits, newest_first);
        take = nhits - first;
        if (f->has_limit && f->limit < take)
            take = (size_t)f->limit;
        if (req_limit < take)
            take = (size_t)req_limit;
        nhits = first + take;
        filter_free(f);
    }
    if (nhits > 1)
        qsort(hits, nhits, sizeof *hits, newest_first);
    for (i = 0, sent = 0; i < nhits && sent < req_limit; i++) {
        char hex[65];

        if (i > 0 && hits[i] == hits[i - 1])
            continue;
        hex_encode(hits[i]->id, 32, hex);
        printf("%s%s", sent ? " " : "", hex);
        sent++;
    }
    putchar('\n');
out:
    free(hits);
    json_decref(arr);
    return 0;
}

static int match(const char *path, uint64_t req_limit)
{
    FILE *fp = fopen(path, "r");
    struct event **evs = NULL;
    size_t nev = 0, cap = 0, lcap = 0, lineno = 0;
    char *line = NULL, err[EVENT_ERRLEN];
    ssize_t len;
    int rc = 0;

    if (fp == NULL) {
        fprintf(stderr, "tr-helper: %s: %s\n", path, strerror(errno));
        return 1;
    }
    while ((len = getline(&line, &lcap, fp)) > 0) {
        lineno++;
        if (line[len - 1] == '\n')
            len--;
        if (len == 0)
            continue;
        if (nev == cap) {
            cap = cap ? cap * 2 : 256;
            evs = xreallocarray(evs, cap, sizeof *evs);
        }
        evs[nev] = event_parse(line, (size_t)len, err, sizeof err);
        if (evs[nev] == NULL) {
            fprintf(stderr, "tr-helper: %s:%zu: %s\n", path, lineno, err);
            rc = 1;
            break;
        }
        nev++;
    }
    fclose(fp);
    while (rc == 0 && (len = getline(&line, &lcap, stdin)) > 0) {
        if (line[len - 1] == '\n')
            line[len - 1] = '\0';
        if (match_line(evs, nev, line, req_limit) < 0)
            rc = 1;
        fflush(stdout);
    }
    for (size_t i = 0; i < nev; i++)
        event_free(evs[i]);
    free(evs);
    free(line);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "gen") == 0)
        return gen(strtoull(argv[2], NULL, 10), strtoull(argv[3], NULL, 10),
                   strtoull(argv[4], NULL, 10) ? strtoull(argv[4], NULL, 10) : 1);
    if (argc == 4 && strcmp(argv[1], "match") == 0)
        return match(argv[2], strtoull(argv[3], NULL, 10));
    fprintf(stderr, "usage: tr-helper gen N SEED AUTHORS | match EVENTS.jsonl REQ_LIMIT\n");
    return 2;
}
