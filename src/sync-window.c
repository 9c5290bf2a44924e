/*
 * sync-window: see sync-window.h. Split out of sync-neg.c so that the
 * arithmetic of windows and listings can be tested without a relay.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "sync-share.h"
#include "sync-window.h"
#include "util.h"

void wstack_push(struct wstack *st, struct window w)
{
    if (st->n == st->cap) {
        st->cap = st->cap == 0 ? 16 : st->cap * 2;
        st->v = xreallocarray(st->v, st->cap, sizeof *st->v);
    }
    st->v[st->n++] = w;
}

void ts_list_push(struct ts_list *l, uint64_t t)
{
    if (l->n == l->cap) {
        l->cap = l->cap == 0 ? 1024 : l->cap * 2;
        l->v = xreallocarray(l->v, l->cap, sizeof *l->v);
    }
    l->v[l->n++] = t;
}

static int u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

void ts_list_add_pending(struct ts_list *l, const struct pend_item *v, size_t n, uint64_t lo)
{
    size_t had = l->n;

    for (size_t i = 0; i < n; i++)
        if (v[i].created_at >= lo)
            ts_list_push(l, v[i].created_at);
    if (l->n > had)
        qsort(l->v, l->n, sizeof *l->v, u64_cmp);
}

void ts_list_drop_from(struct ts_list *l, uint64_t lo)
{
    while (l->n > 0 && l->v[l->n - 1] >= lo)
        l->n--;
}

/*
 * Up to the REQ cursor (the relay was synced to there) few differences are
 * expected, and one session settles a matching span with a round of
 * fingerprints, whatever its size: one window. After it, m windows of about
 * per_window timestamps, each ending at a timestamp and the next starting a
 * second later, so a second with more than a window's share of events is one
 * window's and the next cut that falls into it is skipped.
 */
void wstack_push_times(struct wstack *st, uint64_t lo, const struct ts_list *l, int64_t cursor,
                       size_t per_window)
{
    size_t k = 0, m;
    uint64_t start = lo;

    if (cursor > 0 && (uint64_t)cursor >= lo) {
        while (k < l->n && l->v[k] <= (uint64_t)cursor)
            k++;
        if (k > 0) {
            uint64_t end = k == l->n ? l->v[l->n - 1] : (uint64_t)cursor;
            wstack_push(st, (struct window){start, end, 0, 0});
            start = end + 1;
        }
    }
    if (k == l->n)
        return;
    if (per_window == 0)
        per_window = 1;
    m = (l->n - k + per_window / 2) / per_window;
    if (m == 0)
        m = 1;
    for (size_t i = 0; i < m; i++) {
        uint64_t end = l->v[k + (i + 1) * (l->n - k) / m - 1];
        if (i + 1 == m)
            end = l->v[l->n - 1];
        if (end < start)
            continue;
        wstack_push(st, (struct window){start, end, 0, 0});
        start = end + 1;
    }
}

uint64_t window_split_point(const struct window *w, const uint64_t *times, size_t n)
{
    uint64_t mid = w->lo + (w->hi - w->lo) / 2;

    if (n >= 2) {
        uint64_t m = times[n / 2 - 1];
        if (m >= w->lo && m < w->hi)
            mid = m;
    }
    return mid;
}

/* Adds the pending items before (created_at, id), or all that are left (id NULL). */
static int listing_merge_pending(struct listing_merge *m, uint64_t created_at, const uint8_t *id)
{
    int rc;

    for (; m->next < m->npend; m->next++) {
        const struct pend_item *p = &m->pend[m->next];
        int c = -1; /* the end of the listing (id NULL): the rest goes in */
        if (id != NULL && p->created_at != created_at)
            c = p->created_at < created_at ? -1 : 1;
        else if (id != NULL)
            c = memcmp(p->id, id, 32);
        if (c > 0)
            break;
        if (c == 0) { /* stored since the pending list was taken: the listing adds it */
            m->next++;
            break;
        }
        if ((rc = m->add(m->arg, p->created_at, p->id)) != 0)
            return rc;
    }
    return 0;
}

int listing_merge_stored(void *arg, uint64_t created_at, const uint8_t id[32])
{
    struct listing_merge *m = arg;
    int rc = listing_merge_pending(m, created_at, id);

    return rc != 0 ? rc : m->add(m->arg, created_at, id);
}

int listing_merge_end(struct listing_merge *m)
{
    return listing_merge_pending(m, 0, NULL);
}
