/*
 * idset: a set of 32-byte ids (event ids) with an optional value per id, and
 * a FIFO of ids. Open addressing with backward-shift deletion; ids are
 * hashes, but a relay chooses what it sends, so they are mixed before use.
 * Pure memory: no locks (the owner guards a shared one), no I/O.
 */
#ifndef NEGSYNC_IDSET_H
#define NEGSYNC_IDSET_H

#include <stddef.h>
#include <stdint.h>

struct idset {
    uint8_t (*keys)[32];
    uint8_t *used;
    void **vals; /* a value per key once idset_map_put was used (idset_map_get) */
    int map;
    size_t cap, n;
};

/* A zeroed struct idset is an empty set; idset_clear frees it and leaves it empty. */
int idset_has(const struct idset *s, const uint8_t id[32]);
/* Adds id; 1 if it was new, 0 if already there. */
int idset_put(struct idset *s, const uint8_t id[32]);
/* Adds id, which the caller knows is not there. */
void idset_add(struct idset *s, const uint8_t id[32]);
/* Maps id to val unless id is there already (a set used so from the start). */
void idset_map_put(struct idset *s, const uint8_t id[32], void *val);
/* id's value, or NULL. */
void *idset_map_get(const struct idset *s, const uint8_t id[32]);
void idset_del(struct idset *s, const uint8_t id[32]);
void idset_clear(struct idset *s);

/* A FIFO of ids. */
struct idq {
    uint8_t (*ids)[32];
    size_t head, n, cap;
};

/* A zeroed struct idq is empty; idq_free frees it. */
void idq_push(struct idq *q, const uint8_t id[32]);
size_t idq_len(const struct idq *q);
/* The oldest id, or NULL when empty; valid until the next push. */
const uint8_t *idq_pop(struct idq *q);
void idq_free(struct idq *q);

#endif
