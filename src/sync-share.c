/*
 * sync-share: what the jobs of different relays share: the ids some job is
 * fetching (claims), the parts of a filter's tail jobs fetch by REQ (struct
 * tail_slice) and the sealed window listings (struct shared_listing), each
 * under a lock of its own (see sync-share.h).
 */

#include "config.h"

#include "sync-int.h"

/* Unused window listings kept for other relays' jobs (see struct shared_listing). */
#define SYNC_LISTINGS_KEPT 4

void share_init(struct share *sh)
{
    pthread_condattr_t ca;

    memset(sh, 0, sizeof *sh);
    /* Timed waits count on the monotonic clock (abs_deadline). */
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&sh->claims_mu, NULL);
    pthread_cond_init(&sh->claims_cv, &ca);
    pthread_mutex_init(&sh->tail_mu, NULL);
    pthread_cond_init(&sh->tail_cv, &ca);
    pthread_mutex_init(&sh->listings_mu, NULL);
    pthread_cond_init(&sh->listings_cv, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&sh->stopping, 0);
}

static void listing_free(struct shared_listing *l)
{
    neg_storage_free(l->ns);
    free(l->pend.v);
    free(l->key);
    free(l);
}

void share_free(struct share *sh)
{
    idset_clear(&sh->claims);
    while (sh->slices != NULL) {
        struct tail_slice *s = sh->slices;
        sh->slices = s->next;
        free(s);
    }
    while (sh->listings != NULL) {
        struct shared_listing *l = sh->listings;
        sh->listings = l->next;
        listing_free(l);
    }
    pthread_cond_destroy(&sh->claims_cv);
    pthread_mutex_destroy(&sh->claims_mu);
    pthread_cond_destroy(&sh->tail_cv);
    pthread_mutex_destroy(&sh->tail_mu);
    pthread_cond_destroy(&sh->listings_cv);
    pthread_mutex_destroy(&sh->listings_mu);
}

/*
 * Each waiter checks stopping under its mutex before it sleeps, and the
 * broadcast below comes under the same mutex after the store: none misses it.
 */
void share_stop(struct share *sh)
{
    atomic_store(&sh->stopping, 1);
    pthread_mutex_lock(&sh->claims_mu);
    pthread_cond_broadcast(&sh->claims_cv);
    pthread_mutex_unlock(&sh->claims_mu);
    pthread_mutex_lock(&sh->tail_mu);
    pthread_cond_broadcast(&sh->tail_cv); /* jobs waiting for another's tail */
    pthread_mutex_unlock(&sh->tail_mu);
    pthread_mutex_lock(&sh->listings_mu);
    pthread_cond_broadcast(&sh->listings_cv);
    pthread_mutex_unlock(&sh->listings_mu);
}

static int share_stopping(struct share *sh)
{
    return atomic_load(&sh->stopping);
}

/* ---- id claims -------------------------------------------------------------- */

int share_claim(struct share *sh, const uint8_t id[32])
{
    int ok;

    pthread_mutex_lock(&sh->claims_mu);
    ok = idset_put(&sh->claims, id);
    pthread_mutex_unlock(&sh->claims_mu);
    return ok;
}

void share_release(struct share *sh, const uint8_t id[32])
{
    pthread_mutex_lock(&sh->claims_mu);
    idset_del(&sh->claims, id);
    pthread_cond_broadcast(&sh->claims_cv);
    pthread_mutex_unlock(&sh->claims_mu);
}

int share_wait_claims(struct share *sh, const struct idq *q, int64_t wait_ms)
{
    struct timespec ts;
    int busy = 1;

    abs_deadline(&ts, wait_ms);
    pthread_mutex_lock(&sh->claims_mu);
    while (!share_stopping(sh)) {
        busy = 0;
        for (size_t i = q->head; i < q->n && !busy; i++)
            busy = idset_has(&sh->claims, q->ids[i]);
        if (!busy || pthread_cond_timedwait(&sh->claims_cv, &sh->claims_mu, &ts) == ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&sh->claims_mu);
    return !busy;
}

/* ---- tail slices ------------------------------------------------------------ */

/* A new slice [lo, until] of cf's tail, linked in. With tail_mu held. */
static struct tail_slice *slice_add(struct share *sh, const struct config_filter *cf, uint64_t lo,
                                    uint64_t until, int has_until)
{
    struct tail_slice *s = xcalloc(1, sizeof *s);

    s->cf = cf;
    s->lo = lo;
    s->until = until;
    s->has_until = has_until;
    s->top = has_until ? until : lo;
    s->more = 1;
    s->next = sh->slices;
    sh->slices = s;
    return s;
}

/* Unlinks and frees s, and wakes the jobs waiting on the tail. With tail_mu held. */
static void slice_remove(struct share *sh, struct tail_slice *s)
{
    for (struct tail_slice **p = &sh->slices; *p != NULL; p = &(*p)->next) {
        if (*p == s) {
            *p = s->next;
            break;
        }
    }
    free(s);
    pthread_cond_broadcast(&sh->tail_cv);
}

/*
 * The tail of a filter (what is newer than every local event) is fetched by
 * REQ, by one job at a time for each part of it: N relays holding the same
 * new events send them once, not N times. The job that finds no part of the
 * filter's tail being fetched claims it whole, [lo, hi] (hi_open: no upper
 * bound); NULL when some job is on it.
 */
struct tail_slice *share_tail_claim(struct share *sh, const struct config_filter *cf, uint64_t lo,
                                    uint64_t hi, int hi_open)
{
    struct tail_slice *s;

    pthread_mutex_lock(&sh->tail_mu);
    for (s = sh->slices; s != NULL && s->cf != cf; s = s->next)
        ;
    s = s == NULL ? slice_add(sh, cf, lo, hi, !hi_open) : NULL;
    pthread_mutex_unlock(&sh->tail_mu);
    return s;
}

/*
 * The lowest created_at of cf's tail that jobs are fetching right now: 1
 * and *lo, or 0 when none is.
 */
int share_tail_busy_lo(struct share *sh, const struct config_filter *cf, uint64_t *lo)
{
    int busy = 0;

    pthread_mutex_lock(&sh->tail_mu);
    for (struct tail_slice *s = sh->slices; s != NULL; s = s->next) {
        if (s->cf == cf && (!busy || s->lo < *lo)) {
            *lo = s->lo;
            busy = 1;
        }
    }
    pthread_mutex_unlock(&sh->tail_mu);
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
struct tail_slice *share_tail_help(struct share *sh, const struct config_filter *cf, uint64_t page)
{
    struct tail_slice *best = NULL, *h = NULL;

    pthread_mutex_lock(&sh->tail_mu);
    while (!share_stopping(sh)) {
        uint64_t most = 0;
        int busy = 0;

        best = NULL;
        for (struct tail_slice *s = sh->slices; s != NULL; s = s->next) {
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
            h = slice_add(sh, cf, best->lo, mid, 1);
            best->lo = mid + 1;
            best->split = 1;
            break;
        }
        /* Woken by every page and every slice's end. */
        pthread_cond_wait(&sh->tail_cv, &sh->tail_mu);
    }
    pthread_mutex_unlock(&sh->tail_mu);
    return h;
}

/* Where a slice's first page goes: [*lo, *until] (*has_until 0: no upper bound yet). */
void share_tail_range(struct share *sh, const struct tail_slice *s, uint64_t *lo, uint64_t *until,
                      int *has_until)
{
    pthread_mutex_lock(&sh->tail_mu);
    *lo = s->lo;
    *until = s->until;
    *has_until = s->has_until;
    pthread_mutex_unlock(&sh->tail_mu);
}

/*
 * Before a page of a tail slice: the slice's lower end, which another job
 * may have raised. 0 when the slice is done.
 */
int share_tail_bounds(struct share *sh, const struct tail_slice *s, uint64_t *since, int has_until,
                      uint64_t until)
{
    pthread_mutex_lock(&sh->tail_mu);
    if (s->lo > *since)
        *since = s->lo;
    pthread_mutex_unlock(&sh->tail_mu);
    return !(has_until && until < *since);
}

/* After a page of n events in [oldest, newest]; full: there is more below oldest. */
void share_tail_page(struct share *sh, struct tail_slice *s, uint64_t n, uint64_t oldest,
                     uint64_t newest, int full)
{
    pthread_mutex_lock(&sh->tail_mu);
    s->n += n;
    if (n > 0 && newest > s->top)
        s->top = newest;
    s->more = full;
    if (full) {
        s->until = oldest;
        s->has_until = 1;
    }
    pthread_cond_broadcast(&sh->tail_cv);
    pthread_mutex_unlock(&sh->tail_mu);
}

/* Ends a slice; 1 when another job took part of it. */
int share_tail_done(struct share *sh, struct tail_slice *s)
{
    int split;

    pthread_mutex_lock(&sh->tail_mu);
    split = s->split;
    slice_remove(sh, s);
    pthread_mutex_unlock(&sh->tail_mu);
    return split;
}

/* ---- window listings -------------------------------------------------------- */

/*
 * Unlinks and frees the listings no job uses that are stale or failed, or
 * all unused ones (all set), or the oldest unused ones beyond
 * SYNC_LISTINGS_KEPT. With listings_mu held.
 */
static void listings_prune(struct share *sh, int all)
{
    size_t unused = 0;

    for (struct shared_listing **p = &sh->listings; *p != NULL;) {
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

void share_listings_prune(struct share *sh, int all)
{
    pthread_mutex_lock(&sh->listings_mu);
    listings_prune(sh, all);
    pthread_mutex_unlock(&sh->listings_mu);
}

/*
 * After the store writer's transaction: the listings it may have changed
 * are stale (every one when it replaced or deleted events, or failed; else
 * those with an event in their span that they do not hold, queued after
 * their snapshot of the queue, or that they hold but the store refused).
 */
void share_store_changed(struct share *sh, const struct landed *v, size_t n, int any)
{
    pthread_mutex_lock(&sh->listings_mu);
    for (struct shared_listing *l = sh->listings; l != NULL; l = l->next) {
        for (size_t i = 0; i < n && !any && !l->stale; i++)
            if ((v[i].gone ? v[i].seq < l->snap_seq : v[i].seq >= l->snap_seq) &&
                v[i].created_at >= l->lo && v[i].created_at <= l->hi)
                l->stale = 1;
        if (any)
            l->stale = 1;
    }
    listings_prune(sh, 0);
    pthread_mutex_unlock(&sh->listings_mu);
}

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
 * else a new entry the caller lists into (share_listing_snap, then
 * share_listing_ready hands it over). *mine says which. Either way the
 * caller holds a reference until share_listing_release.
 */
struct shared_listing *share_listing_take(struct share *sh, const char *key, uint64_t lo,
                                          uint64_t hi, int *mine)
{
    struct shared_listing *l;

    pthread_mutex_lock(&sh->listings_mu);
    for (;;) {
        for (l = sh->listings; l != NULL; l = l->next)
            if (!l->stale && !(l->ready && l->ns == NULL) && strcmp(l->key, key) == 0)
                break;
        if (l == NULL || l->ready || share_stopping(sh))
            break;
        pthread_cond_wait(&sh->listings_cv, &sh->listings_mu);
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
        l->next = sh->listings;
        sh->listings = l;
        *mine = 1;
    }
    pthread_mutex_unlock(&sh->listings_mu);
    return l;
}

/*
 * The maker's listing holds every event queued for the store before seq
 * (engine_pending's answer) and what the store held after: events queued
 * from seq on that land in its span make it stale.
 */
void share_listing_snap(struct share *sh, struct shared_listing *l, uint64_t seq)
{
    pthread_mutex_lock(&sh->listings_mu);
    l->snap_seq = seq;
    pthread_mutex_unlock(&sh->listings_mu);
}

/* Hands over the listing made for l (ns sealed, or NULL when it failed). */
void share_listing_ready(struct share *sh, struct shared_listing *l, struct neg_storage *ns)
{
    pthread_mutex_lock(&sh->listings_mu);
    l->ns = ns;
    l->ready = 1;
    pthread_cond_broadcast(&sh->listings_cv);
    pthread_mutex_unlock(&sh->listings_mu);
}

void share_listing_release(struct share *sh, struct shared_listing *l)
{
    pthread_mutex_lock(&sh->listings_mu);
    l->refs--;
    listings_prune(sh, 0);
    pthread_mutex_unlock(&sh->listings_mu);
}
