/*
 * sync-share: what the jobs of different relays share: the ids some job is
 * fetching (claims), the parts of a filter's tail jobs fetch by REQ (struct
 * tail_slice) and the sealed window listings (struct shared_listing).
 */

#include "config.h"

#include "sync-int.h"

/* Unused window listings kept for other relays' jobs (see struct shared_listing). */
#define SYNC_LISTINGS_KEPT 4

/* Claims id for fetching; 0 if another job already fetches it. */
int engine_claim(struct sync_engine *e, const uint8_t id[32])
{
    int ok;

    pthread_mutex_lock(&e->mu);
    ok = idset_put(&e->claims, id);
    pthread_mutex_unlock(&e->mu);
    return ok;
}

void engine_release(struct sync_engine *e, const uint8_t id[32])
{
    pthread_mutex_lock(&e->mu);
    idset_del(&e->claims, id);
    pthread_cond_broadcast(&e->claim_cv);
    pthread_mutex_unlock(&e->mu);
}

void engine_wait_claims(struct sync_engine *e, const struct idq *q, int64_t wait_ms)
{
    struct timespec ts;

    abs_deadline(&ts, wait_ms);
    pthread_mutex_lock(&e->mu);
    while (!e->stopping) {
        int busy = 0;
        for (size_t i = q->head; i < q->n && !busy; i++)
            busy = idset_has(&e->claims, q->ids[i]);
        if (!busy || pthread_cond_timedwait(&e->claim_cv, &e->mu, &ts) == ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&e->mu);
}

/* A new slice [lo, until] of cf's tail, linked in. With e->mu held. */
static struct tail_slice *slice_add(struct sync_engine *e, const struct config_filter *cf,
                                    uint64_t lo, uint64_t until, int has_until)
{
    struct tail_slice *s = xcalloc(1, sizeof *s);

    s->cf = cf;
    s->lo = lo;
    s->until = until;
    s->has_until = has_until;
    s->top = has_until ? until : lo;
    s->more = 1;
    s->next = e->slices;
    e->slices = s;
    return s;
}

/* Unlinks and frees s, and wakes the jobs waiting on the tail. With e->mu held. */
static void slice_remove(struct sync_engine *e, struct tail_slice *s)
{
    for (struct tail_slice **p = &e->slices; *p != NULL; p = &(*p)->next) {
        if (*p == s) {
            *p = s->next;
            break;
        }
    }
    free(s);
    pthread_cond_broadcast(&e->claim_cv);
}

/*
 * The tail of a filter (what is newer than every local event) is fetched by
 * REQ, by one job at a time for each part of it: N relays holding the same
 * new events send them once, not N times. The job that finds no part of the
 * filter's tail being fetched claims it whole, [lo, hi] (hi_open: no upper
 * bound); NULL when some job is on it.
 */
struct tail_slice *engine_tail_claim(struct sync_engine *e, const struct config_filter *cf,
                                     uint64_t lo, uint64_t hi, int hi_open)
{
    struct tail_slice *s;

    pthread_mutex_lock(&e->mu);
    for (s = e->slices; s != NULL && s->cf != cf; s = s->next)
        ;
    s = s == NULL ? slice_add(e, cf, lo, hi, !hi_open) : NULL;
    pthread_mutex_unlock(&e->mu);
    return s;
}

/*
 * The lowest created_at of cf's tail that jobs are fetching right now: 1
 * and *lo, or 0 when none is.
 */
int engine_tail_busy_lo(struct sync_engine *e, const struct config_filter *cf, uint64_t *lo)
{
    int busy = 0;

    pthread_mutex_lock(&e->mu);
    for (struct tail_slice *s = e->slices; s != NULL; s = s->next) {
        if (s->cf == cf && (!busy || s->lo < *lo)) {
            *lo = s->lo;
            busy = 1;
        }
    }
    pthread_mutex_unlock(&e->mu);
    return busy;
}

/* The events a slice still has to send, estimated from its pages so far. */
static uint64_t tail_slice_left(const struct tail_slice *s)
{
    if (!s->has_until || !s->more || s->n == 0 || s->until <= s->lo || s->top < s->until)
        return 0;
    return (uint64_t)((double)s->n * (double)(s->until - s->lo) / (double)(s->top - s->until + 1));
}

/*
 * For a job whose filter's tail another job is fetching: waits until a part
 * of it has at least 2 * page events left by its density so far (so that the
 * page its owner has asked for meanwhile stays above the cut), and takes its
 * older half, or until no part of the tail is being fetched any more (NULL).
 */
struct tail_slice *engine_tail_help(struct sync_engine *e, const struct config_filter *cf,
                                    uint64_t page)
{
    struct tail_slice *best = NULL, *h = NULL;

    pthread_mutex_lock(&e->mu);
    while (!e->stopping) {
        uint64_t most = 0;
        int busy = 0;

        best = NULL;
        for (struct tail_slice *s = e->slices; s != NULL; s = s->next) {
            uint64_t left;
            if (s->cf != cf)
                continue;
            busy = 1;
            left = tail_slice_left(s);
            if (left >= 2 * page && left > most) {
                most = left;
                best = s;
            }
        }
        if (!busy)
            break;
        if (best != NULL) {
            uint64_t mid = best->lo + (best->until - best->lo) / 2;
            h = slice_add(e, cf, best->lo, mid, 1);
            best->lo = mid + 1;
            best->split = 1;
            break;
        }
        /* Woken by every page and every release. */
        pthread_cond_wait(&e->claim_cv, &e->mu);
    }
    pthread_mutex_unlock(&e->mu);
    return h;
}

/*
 * Before a page of a tail slice: the slice's lower end, which another job
 * may have raised. 0 when the slice is done.
 */
int tail_slice_bounds(struct sync_engine *e, struct tail_slice *s, uint64_t *since, int has_until,
                      uint64_t until)
{
    pthread_mutex_lock(&e->mu);
    if (s->lo > *since)
        *since = s->lo;
    pthread_mutex_unlock(&e->mu);
    return !(has_until && until < *since);
}

/* After a page of n events in [oldest, newest]; full: there is more below oldest. */
void tail_slice_page(struct sync_engine *e, struct tail_slice *s, uint64_t n, uint64_t oldest,
                     uint64_t newest, int full)
{
    pthread_mutex_lock(&e->mu);
    s->n += n;
    if (n > 0 && newest > s->top)
        s->top = newest;
    s->more = full;
    if (full) {
        s->until = oldest;
        s->has_until = 1;
    }
    pthread_cond_broadcast(&e->claim_cv);
    pthread_mutex_unlock(&e->mu);
}

/* Ends a slice; 1 when another job took part of it. */
int engine_tail_done(struct sync_engine *e, struct tail_slice *s)
{
    int split;

    pthread_mutex_lock(&e->mu);
    split = s->split;
    slice_remove(e, s);
    pthread_mutex_unlock(&e->mu);
    return split;
}

static void listing_free(struct shared_listing *l)
{
    neg_storage_free(l->ns);
    free(l->pend.v);
    free(l->key);
    free(l);
}

/*
 * Unlinks and frees the listings no job uses that are stale or failed, or
 * all unused ones (all set), or the oldest unused ones beyond
 * SYNC_LISTINGS_KEPT. With e->mu held.
 */
void engine_listings_prune(struct sync_engine *e, int all)
{
    size_t unused = 0;

    for (struct shared_listing **p = &e->listings; *p != NULL;) {
        struct shared_listing *l = *p;
        int failed = l->ready && l->ns == NULL;
        if (l->refs == 0 && (all || l->stale || failed || ++unused > SYNC_LISTINGS_KEPT)) {
            *p = l->next;
            listing_free(l);
        } else {
            p = &l->next;
        }
    }
}

/*
 * After the store writer's transaction: the listings it may have changed
 * are stale (every one when it replaced or deleted events, or failed; else
 * those with an event in their span that they do not hold, queued after
 * their snapshot of the queue, or that they hold but the store refused),
 * and the checkpointer has work.
 */
void engine_store_changed(struct sync_engine *e, const struct landed *v, size_t n, int any)
{
    pthread_mutex_lock(&e->mu);
    for (struct shared_listing *l = e->listings; l != NULL; l = l->next) {
        for (size_t i = 0; i < n && !any && !l->stale; i++)
            if ((v[i].gone ? v[i].seq < l->snap_seq : v[i].seq >= l->snap_seq) &&
                v[i].created_at >= l->lo && v[i].created_at <= l->hi)
                l->stale = 1;
        if (any)
            l->stale = 1;
    }
    engine_listings_prune(e, 0);
    e->ckpt_want++;
    pthread_cond_signal(&e->ckpt_cv);
    pthread_mutex_unlock(&e->mu);
}

/* The pending item with id, or NULL. */
const struct pend_item *pend_find(const struct pend_list *p, uint64_t created_at,
                                  const uint8_t id[32])
{
    struct pend_item key;

    key.created_at = created_at;
    memcpy(key.id, id, 32);
    return p->n == 0 ? NULL : bsearch(&key, p->v, p->n, sizeof *p->v, pend_cmp);
}

/*
 * The listing of the window whose filter is key: one another job has (or is
 * making: then waits for it) if the store has not changed since it began;
 * else a new entry the caller lists into and hands over with
 * engine_listing_ready. *mine says which.
 */
struct shared_listing *engine_listing_take(struct sync_engine *e, const char *key, uint64_t lo,
                                           uint64_t hi, int *mine)
{
    struct shared_listing *l;

    pthread_mutex_lock(&e->mu);
    for (;;) {
        for (l = e->listings; l != NULL; l = l->next)
            if (!l->stale && !(l->ready && l->ns == NULL) && strcmp(l->key, key) == 0)
                break;
        if (l == NULL || l->ready || e->stopping)
            break;
        pthread_cond_wait(&e->listing_cv, &e->mu);
    }
    if (l != NULL && l->ready) {
        l->refs++;
        *mine = 0;
    } else {
        l = xcalloc(1, sizeof *l);
        l->key = xstrdup(key);
        l->lo = lo;
        l->hi = hi;
        l->snap_seq = UINT64_MAX; /* until engine_pending: what lands is in the store it reads */
        l->refs = 1;
        l->next = e->listings;
        e->listings = l;
        *mine = 1;
    }
    pthread_mutex_unlock(&e->mu);
    return l;
}

/* Hands over the listing made for l (ns sealed, or NULL when it failed). */
void engine_listing_ready(struct sync_engine *e, struct shared_listing *l, struct neg_storage *ns)
{
    pthread_mutex_lock(&e->mu);
    l->ns = ns;
    l->ready = 1;
    pthread_cond_broadcast(&e->listing_cv);
    pthread_mutex_unlock(&e->mu);
}

void engine_listing_release(struct sync_engine *e, struct shared_listing *l)
{
    pthread_mutex_lock(&e->mu);
    l->refs--;
    engine_listings_prune(e, 0);
    pthread_mutex_unlock(&e->mu);
}
