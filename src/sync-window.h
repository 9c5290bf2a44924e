/*
 * sync-window: the time windows a negentropy job cuts a filter's span into,
 * and the listings it reconciles them over (sync-neg.c). Where to cut the
 * local events' timestamps into windows, where to halve a window the relay
 * finds too big, and the merge of the events waiting for the store writer
 * into a window's stored listing. Pure: no job, no store, no I/O
 * (tests/test-sync-window.c).
 */
#ifndef NEGSYNC_SYNC_WINDOW_H
#define NEGSYNC_SYNC_WINDOW_H

#include <stddef.h>
#include <stdint.h>

struct pend_item; /* sync-share.h */

struct window {
    uint64_t lo, hi; /* created_at in [lo, hi] */
    int hi_open;     /* no upper bound (hi is then only for splitting) */
    int depth;       /* halvings so far */
};

/* Windows to reconcile, the top (last pushed) first. A zeroed one is empty; free v. */
struct wstack {
    struct window *v;
    size_t n, cap;
};

void wstack_push(struct wstack *st, struct window w);

/* Timestamps (created_at) of local events. A zeroed one is empty; free v. */
struct ts_list {
    uint64_t *v;
    size_t n, cap;
};

void ts_list_push(struct ts_list *l, uint64_t t);
/*
 * Adds the created_at of the n pending items (sorted by created_at) from lo
 * on to l, ascending, and keeps l ascending.
 */
void ts_list_add_pending(struct ts_list *l, const struct pend_item *v, size_t n, uint64_t lo);
/* Drops the timestamps from lo on from the end of the ascending l. */
void ts_list_drop_from(struct ts_list *l, uint64_t lo);

/*
 * Cuts the span [lo, l->v[n-1]] of the ascending timestamps l into windows
 * and pushes them oldest first (so the newest is reconciled first). Up to
 * cursor (> 0: the relay was synced to there by REQ) one window, whatever
 * its size; after it, windows of about per_window timestamps each. A
 * window never splits a second. Nothing for an empty l.
 */
void wstack_push_times(struct wstack *st, uint64_t lo, const struct ts_list *l, int64_t cursor,
                       size_t per_window);

/*
 * Where to halve w (w->lo < w->hi): at the median of times (the n ascending
 * timestamps of our events in it) when there are two or more and it lies in
 * [lo, hi), else at the middle of the span. Always in [lo, hi).
 */
uint64_t window_split_point(const struct window *w, const uint64_t *times, size_t n);

/*
 * A stored listing in (created_at, id) order with the pending items (in the
 * same order, no duplicates) merged in: every item goes to add once, in
 * order; a pending item the listing also holds (stored since the pending
 * list was taken) goes once. add returns nonzero to stop.
 */
struct listing_merge {
    const struct pend_item *pend;
    size_t npend;
    size_t next; /* the first pending item not added yet */
    int (*add)(void *arg, uint64_t created_at, const uint8_t id[32]);
    void *arg;
};

/*
 * A stored item (m: a struct listing_merge; a store_id_cb): the pending items
 * before it, then it. add's nonzero return, or 0.
 */
int listing_merge_stored(void *m, uint64_t created_at, const uint8_t id[32]);
/* The end of the stored listing: the pending items left. add's nonzero return, or 0. */
int listing_merge_end(struct listing_merge *m);

#endif
