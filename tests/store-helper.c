/*
 * store-helper: what the store's shell tests need and the shell lacks.
 *
 *   store-helper gen N [SEED]   N signed kind-1 events, JSON lines, created_at
 *                               ascending from 1700000000, 16 authors
 *   store-helper big BYTES      one signed event whose content is BYTES long
 *   store-helper mixed          a fixed file of replaceable, ephemeral and
 *                               deletion cases; the counts an import must
 *                               report are in tests/store-import.sh
 *   store-helper count DB       number of stored events
 *   store-helper check DB       "ok" if integrity and foreign keys are clean
 *   store-helper ids DB         stored ids, hex, one a line, ascending by
 *                               (created_at, id)
 *
 * Opening a database goes through store_open like every other connection, so
 * polling a database another process is writing is safe (WAL).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "store.h"
#include "util.h"

static void seckey_of(uint64_t who, uint8_t sk[32])
{
    memset(sk, 0, 32);
    sk[0] = 0x11;
    for (int i = 0; i < 8; i++)
        sk[24 + i] = (uint8_t)(who >> (8 * (7 - i)));
    sk[31] |= 1; /* never zero */
}

static void print_event(const struct event *ev)
{
    size_t len;
    char *json = event_to_json(ev, &len);

    fwrite(json, 1, len, stdout);
    putchar('\n');
    free(json);
}

static struct event *sign1(uint64_t who, uint64_t at, uint32_t kind, const char *content,
                           const char *tname, const char *tval)
{
    const char *fields[2] = {tname, tval};
    const char *const *tags[1] = {fields};
    size_t lens[1] = {2};
    uint8_t sk[32];
    struct event *ev;

    seckey_of(who, sk);
    ev = event_sign(sk, at, kind, tname ? tags : NULL, tname ? lens : NULL, tname ? 1 : 0, content);
    if (ev == NULL) {
        fprintf(stderr, "store-helper: event_sign failed\n");
        exit(1);
    }
    return ev;
}

static int gen(uint64_t n, uint64_t seed)
{
    char content[96];

    for (uint64_t i = 0; i < n; i++) {
        struct event *ev;
        snprintf(content, sizeof content, "generated note %llu of %llu, seed %llu",
                 (unsigned long long)i, (unsigned long long)n, (unsigned long long)seed);
        ev = sign1(seed * 16 + i % 16, 1700000000 + i, 1, content, NULL, NULL);
        print_event(ev);
        event_free(ev);
    }
    return fflush(stdout) == 0 ? 0 : 1;
}

static int big(size_t bytes)
{
    char *content = xmalloc(bytes + 1);
    struct event *ev;

    for (size_t i = 0; i < bytes; i++)
        content[i] = (char)('a' + i % 26);
    content[bytes] = '\0';
    ev = sign1(7, 1700000000, 1, content, "t", "big");
    print_event(ev);
    event_free(ev);
    free(content);
    return fflush(stdout) == 0 ? 0 : 1;
}

/*
 * The mixed file, in this order (outcome on a first import):
 *   1 profile v1 (t=100)          inserted
 *   2 profile v2 (t=200)          replaced
 *   3 profile v0 (t=50)           rejected: replaced by newer version
 *   4 ephemeral kind 20001        rejected: ephemeral
 *   5 note X                      inserted
 *   6 deletion of X (kind 5)      inserted (and X is removed)
 *   7 note X again                deleted
 *   8 deletion of Y (kind 5)      inserted
 *   9 note Y                      deleted
 *  10 article d=a v1 (t=100)      inserted
 *  11 article d=a v2 (t=300)      replaced
 */
static int mixed(void)
{
    struct event *ev[11];
    char idx[65];

    ev[0] = sign1(1, 100, 0, "{\"name\":\"v1\"}", NULL, NULL);
    ev[1] = sign1(1, 200, 0, "{\"name\":\"v2\"}", NULL, NULL);
    ev[2] = sign1(1, 50, 0, "{\"name\":\"v0\"}", NULL, NULL);
    ev[3] = sign1(1, 100, 20001, "ephemeral", NULL, NULL);
    ev[4] = sign1(1, 100, 1, "note X", NULL, NULL);
    hex_encode(ev[4]->id, 32, idx);
    ev[5] = sign1(1, 110, 5, "", "e", idx);
    ev[6] = sign1(1, 100, 1, "note X", NULL, NULL);
    ev[8] = sign1(1, 120, 1, "note Y", NULL, NULL);
    hex_encode(ev[8]->id, 32, idx);
    ev[7] = sign1(1, 130, 5, "", "e", idx);
    ev[9] = sign1(1, 100, 30023, "article v1", "d", "a");
    ev[10] = sign1(1, 300, 30023, "article v2", "d", "a");
    for (int i = 0; i < 11; i++) {
        print_event(ev[i]);
        event_free(ev[i]);
    }
    return fflush(stdout) == 0 ? 0 : 1;
}

static int print_id(void *ctx, uint64_t created_at, const uint8_t id[32])
{
    char hex[65];

    (void)ctx;
    (void)created_at;
    hex_encode(id, 32, hex);
    puts(hex);
    return 0;
}

int main(int argc, char **argv)
{
    char err[STORE_ERRLEN];
    struct store *st;
    int rc = 0;

    if (argc >= 3 && strcmp(argv[1], "gen") == 0)
        return gen(strtoull(argv[2], NULL, 10), argc > 3 ? strtoull(argv[3], NULL, 10) : 1);
    if (argc == 3 && strcmp(argv[1], "big") == 0)
        return big(strtoull(argv[2], NULL, 10));
    if (argc == 2 && strcmp(argv[1], "mixed") == 0)
        return mixed();
    if (argc != 3) {
        fprintf(stderr,
                "usage: store-helper gen N [SEED] | big BYTES | mixed | count|check|ids DB\n");
        return 2;
    }
    if ((st = store_open(argv[2], err, sizeof err)) == NULL) {
        fprintf(stderr, "store-helper: %s\n", err);
        return 1;
    }
    if (strcmp(argv[1], "count") == 0) {
        uint64_t n;
        if ((rc = store_count(st, NULL, &n, err, sizeof err)) == 0)
            printf("%llu\n", (unsigned long long)n);
    } else if (strcmp(argv[1], "check") == 0) {
        if ((rc = store_check(st, err, sizeof err)) == 0)
            puts("ok");
    } else if (strcmp(argv[1], "ids") == 0) {
        rc = store_list_ids(st, NULL, print_id, NULL, err, sizeof err);
    } else {
        fprintf(stderr, "store-helper: unknown command %s\n", argv[1]);
        rc = -2;
    }
    if (rc == -1)
        fprintf(stderr, "store-helper: %s\n", err);
    store_close(st);
    return rc == 0 ? 0 : rc == -2 ? 2 : 1;
}
