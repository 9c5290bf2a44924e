/*
 * test-idset: the sync engine's id set and id queue (src/idset.c), which the
 * shell tests only reach through whole syncs. Ids that share the bytes the
 * hash reads collide on purpose, so deletions have probe runs to repair.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "idset.h"
#include "testutil.h"

/* Id number i; with crowd, ids share their hashed bytes (8..15) in groups of 8. */
static void id_of(uint8_t id[32], uint32_t i, int crowd)
{
    memset(id, 0, 32);
    memcpy(id, &i, sizeof i);
    uint64_t h = crowd ? i / 8 : (uint64_t)i * 0x9e3779b97f4a7c15ULL;
    memcpy(id + 8, &h, sizeof h);
}

static void test_set(int crowd)
{
    struct idset s = {0};
    uint8_t id[32];
    const uint32_t n = 5000;

    CHECK(!idset_has(&s, (uint8_t[32]){0}));
    for (uint32_t i = 0; i < n; i++) {
        id_of(id, i, crowd);
        CHECK(idset_put(&s, id) == 1);
    }
    CHECK(s.n == n);
    for (uint32_t i = 0; i < n; i++) {
        id_of(id, i, crowd);
        CHECK(idset_put(&s, id) == 0);
    }
    /* Every third one goes; the others must stay findable across the repaired runs. */
    for (uint32_t i = 0; i < n; i += 3) {
        id_of(id, i, crowd);
        idset_del(&s, id);
    }
    idset_del(&s, (uint8_t[32]){0xff}); /* absent: nothing happens */
    int wrong = 0;
    for (uint32_t i = 0; i < n; i++) {
        id_of(id, i, crowd);
        if (idset_has(&s, id) != (i % 3 != 0))
            wrong++;
    }
    CHECK_MSG(wrong == 0, "crowd %d: %d ids wrong after deletions", crowd, wrong);
    CHECK(s.n == n - (n + 2) / 3);
    idset_clear(&s);
    CHECK(s.n == 0 && s.cap == 0);
    id_of(id, 1, crowd);
    CHECK(!idset_has(&s, id) && idset_put(&s, id) == 1);
    idset_clear(&s);
}

static void test_map(void)
{
    struct idset m = {0};
    uint8_t id[32];
    static int vals[300];

    for (uint32_t i = 0; i < 300; i++) {
        id_of(id, i, 1);
        idset_map_put(&m, id, &vals[i]);
    }
    id_of(id, 7, 1);
    idset_map_put(&m, id, &vals[0]); /* already there: keeps its value */
    CHECK(idset_map_get(&m, id) == &vals[7]);
    for (uint32_t i = 0; i < 300; i += 2) {
        id_of(id, i, 1);
        idset_del(&m, id);
    }
    int wrong = 0;
    for (uint32_t i = 0; i < 300; i++) {
        id_of(id, i, 1);
        if (idset_map_get(&m, id) != (i % 2 ? &vals[i] : NULL))
            wrong++;
    }
    CHECK_MSG(wrong == 0, "%d values wrong", wrong);
    idset_clear(&m);
}

static void test_queue(void)
{
    struct idq q = {0};
    uint8_t id[32];
    uint32_t next = 0, popped = 0;
    const uint8_t *p;

    CHECK(idq_pop(&q) == NULL && idq_len(&q) == 0);
    /* Pushes and pops interleaved: the queue compacts and grows, and stays FIFO. */
    for (int round = 0; round < 50; round++) {
        for (int k = 0; k < 300; k++) {
            id_of(id, next++, 0);
            idq_push(&q, id);
        }
        for (int k = 0; k < 250 && (p = idq_pop(&q)) != NULL; k++) {
            id_of(id, popped++, 0);
            CHECK(memcmp(p, id, 32) == 0);
        }
        CHECK(idq_len(&q) == next - popped);
    }
    while ((p = idq_pop(&q)) != NULL) {
        id_of(id, popped++, 0);
        CHECK(memcmp(p, id, 32) == 0);
    }
    CHECK(popped == next && idq_len(&q) == 0);
    idq_free(&q);
    CHECK(idq_len(&q) == 0);
}

int main(void)
{
    test_set(0);
    test_set(1);
    test_map();
    test_queue();
    return test_summary("test-idset");
}
