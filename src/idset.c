/*
 * idset: see idset.h. Split out of the sync engine, which keeps many of these
 * per job (ids queued, claimed, fetched, uploaded).
 */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "idset.h"
#include "util.h"

static size_t idset_slot(const struct idset *s, const uint8_t id[32])
{
    uint64_t h;

    /* Ids are hashes, but a relay chooses what it sends: mix before masking. */
    memcpy(&h, id + 8, sizeof h);
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return (size_t)h & (s->cap - 1);
}

static void idset_insert(struct idset *s, const uint8_t id[32], void *val);

static void idset_grow(struct idset *s)
{
    struct idset old = *s;

    s->cap = old.cap == 0 ? 64 : old.cap * 2;
    s->keys = xcalloc(s->cap, sizeof *s->keys);
    s->used = xcalloc(s->cap, 1);
    s->vals = s->map ? xcalloc(s->cap, sizeof *s->vals) : NULL;
    s->n = 0;
    for (size_t i = 0; i < old.cap; i++)
        if (old.used[i])
            idset_insert(s, old.keys[i], old.vals != NULL ? old.vals[i] : NULL);
    free(old.keys);
    free(old.used);
    free(old.vals);
}

/* The slot holding id, or -1. */
static ptrdiff_t idset_find(const struct idset *s, const uint8_t id[32])
{
    if (s->n == 0)
        return -1;
    for (size_t i = idset_slot(s, id);; i = (i + 1) & (s->cap - 1)) {
        if (!s->used[i])
            return -1;
        if (memcmp(s->keys[i], id, 32) == 0)
            return (ptrdiff_t)i;
    }
}

int idset_has(const struct idset *s, const uint8_t id[32])
{
    return idset_find(s, id) >= 0;
}

/* Adds id; 1 if it was new, 0 if already there. */
int idset_put(struct idset *s, const uint8_t id[32])
{
    if (idset_has(s, id))
        return 0;
    idset_add(s, id);
    return 1;
}

static void idset_insert(struct idset *s, const uint8_t id[32], void *val)
{
    size_t i;

    if ((s->n + 1) * 2 > s->cap)
        idset_grow(s);
    for (i = idset_slot(s, id); s->used[i]; i = (i + 1) & (s->cap - 1))
        ;
    memcpy(s->keys[i], id, 32);
    s->used[i] = 1;
    if (s->vals != NULL)
        s->vals[i] = val;
    s->n++;
}

void idset_add(struct idset *s, const uint8_t id[32])
{
    idset_insert(s, id, NULL);
}

/* Maps id to val unless id is there already (a set used so from the start). */
void idset_map_put(struct idset *s, const uint8_t id[32], void *val)
{
    s->map = 1;
    if (!idset_has(s, id))
        idset_insert(s, id, val);
}

void *idset_map_get(const struct idset *s, const uint8_t id[32])
{
    ptrdiff_t i = idset_find(s, id);

    return i >= 0 && s->vals != NULL ? s->vals[i] : NULL;
}

void idset_del(struct idset *s, const uint8_t id[32])
{
    ptrdiff_t found = idset_find(s, id);
    size_t i, j;

    if (found < 0)
        return;
    i = (size_t)found;
    s->used[i] = 0;
    s->n--;
    /* Move later members of the probe run back over the hole. */
    for (j = (i + 1) & (s->cap - 1); s->used[j]; j = (j + 1) & (s->cap - 1)) {
        size_t home = idset_slot(s, s->keys[j]);
        int between = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (between)
            continue;
        memcpy(s->keys[i], s->keys[j], 32);
        if (s->vals != NULL)
            s->vals[i] = s->vals[j];
        s->used[i] = 1;
        s->used[j] = 0;
        i = j;
    }
}

void idset_clear(struct idset *s)
{
    free(s->keys);
    free(s->used);
    free(s->vals);
    memset(s, 0, sizeof *s);
}

void idq_push(struct idq *q, const uint8_t id[32])
{
    if (q->head > 0 && q->head == q->n) {
        q->head = q->n = 0;
    }
    if (q->n == q->cap) {
        if (q->head > q->cap / 2) {
            memmove(q->ids, q->ids + q->head, (q->n - q->head) * 32);
            q->n -= q->head;
            q->head = 0;
        } else {
            q->cap = q->cap == 0 ? 256 : q->cap * 2;
            q->ids = xreallocarray(q->ids, q->cap, 32);
        }
    }
    memcpy(q->ids[q->n++], id, 32);
}

size_t idq_len(const struct idq *q)
{
    return q->n - q->head;
}

const uint8_t *idq_pop(struct idq *q)
{
    return q->head < q->n ? q->ids[q->head++] : NULL;
}

void idq_free(struct idq *q)
{
    free(q->ids);
    memset(q, 0, sizeof *q);
}
