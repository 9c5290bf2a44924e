/*
 * test-sync-share: what the jobs of different relays share, without an
 * engine or a relay (src/sync-share.h): id claims and the wait for them,
 * the tail hand-out (a helper takes the older half of the part with the
 * most left), and the window listings (one maker, takers that wait for it
 * and share it, stale once the store changes in its span, pruned when
 * unused). Waits between threads are on conditions with deadlines; where a
 * test wants a thread to be asleep in its wait before it wakes it, it looks
 * at the thread's state in /proc rather than sleeping and hoping.
 */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "sync-share.h"
#include "testutil.h"

static int64_t ms_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void id_of(uint8_t id[32], unsigned n)
{
    memset(id, 0, 32);
    id[0] = (uint8_t)n;
    id[31] = (uint8_t)(n >> 8);
}

/* ---- a thread the test waits for, with a deadline --------------------------- */

struct bg {
    pthread_t t;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int started, done;
    pid_t tid;
    int64_t done_ms;
    void (*fn)(struct bg *);
    /* what fn works on and gives back */
    struct share *sh;
    struct idq *q;
    const struct config_filter *cf;
    uint64_t page;
    int64_t wait_ms;
    int rc, mine;
    struct tail_slice *slice;
    struct shared_listing *listing;
};

static void *bg_main(void *arg)
{
    struct bg *b = arg;

    pthread_mutex_lock(&b->mu);
    b->tid = (pid_t)syscall(SYS_gettid);
    b->started = 1;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    b->fn(b);
    pthread_mutex_lock(&b->mu);
    b->done = 1;
    b->done_ms = ms_now();
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

static void bg_start(struct bg *b, void (*fn)(struct bg *))
{
    pthread_condattr_t ca;

    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, &ca);
    pthread_condattr_destroy(&ca);
    b->fn = fn;
    if (pthread_create(&b->t, NULL, bg_main, b) != 0) {
        fprintf(stderr, "pthread_create failed\n");
        exit(1);
    }
    pthread_mutex_lock(&b->mu);
    while (!b->started)
        pthread_cond_wait(&b->cv, &b->mu);
    pthread_mutex_unlock(&b->mu);
}

static int bg_done(struct bg *b)
{
    int d;

    pthread_mutex_lock(&b->mu);
    d = b->done;
    pthread_mutex_unlock(&b->mu);
    return d;
}

/* Waits up to ms for the thread's function to return; 1 if it did. */
static int bg_wait(struct bg *b, int64_t ms)
{
    struct timespec ts;
    int d;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&b->mu);
    while (!b->done && pthread_cond_timedwait(&b->cv, &b->mu, &ts) == 0)
        ;
    d = b->done;
    pthread_mutex_unlock(&b->mu);
    return d;
}

/*
 * Waits up to ms for the thread's function to return, then joins it; 1 if
 * it returned in time. If not, a stop frees it (so a failing test ends).
 */
static int bg_end(struct bg *b, int64_t ms)
{
    int in_time = bg_wait(b, ms);

    if (!in_time)
        share_stop(b->sh);
    pthread_join(b->t, NULL);
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
    return in_time;
}

/* Whether the thread sleeps in the kernel (a futex: its condition wait) right now. */
static int bg_asleep(struct bg *b)
{
    char path[64], buf[512], *p;
    FILE *f;
    size_t n;

    snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)b->tid);
    if ((f = fopen(path, "r")) == NULL)
        return 0;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* pid (comm) state ...: comm may hold anything, the state follows the last ')'. */
    if ((p = strrchr(buf, ')')) == NULL || p[1] != ' ')
        return 0;
    return p[2] == 'S';
}

/*
 * Waits (up to 5 s) until the thread sleeps in its wait, or returned
 * (then the caller's checks say whether it should have). 1 when asleep.
 */
static int bg_wait_asleep(struct bg *b)
{
    int64_t deadline = ms_now() + 5000;

    while (ms_now() < deadline) {
        if (bg_done(b))
            return 0;
        if (bg_asleep(b))
            return 1;
        sched_yield();
    }
    return 0;
}

/* ---- id claims -------------------------------------------------------------- */

static void do_wait_claims(struct bg *b)
{
    b->rc = share_wait_claims(b->sh, b->q, b->wait_ms);
}

static void test_claims(void)
{
    struct share sh;
    uint8_t a[32], c[32];
    struct idq q = {0};
    struct bg b = {0};
    int64_t t0, released_ms;

    share_init(&sh);
    id_of(a, 1);
    id_of(c, 2);
    CHECK(share_claim(&sh, a) == 1);
    CHECK(share_claim(&sh, a) == 0); /* another job fetches it */
    CHECK(share_claim(&sh, c) == 1);
    share_release(&sh, a);
    CHECK(share_claim(&sh, a) == 1); /* free again */

    /* Nothing of the queue claimed: no wait at all. */
    id_of(a, 3);
    idq_push(&q, a);
    CHECK(share_wait_claims(&sh, &q, 10000) == 1);
    idq_free(&q);

    /* Claimed the whole time: the deadline ends the wait, not before. */
    id_of(a, 1);
    idq_push(&q, a);
    t0 = ms_now();
    CHECK(share_wait_claims(&sh, &q, 100) == 0);
    CHECK(ms_now() - t0 >= 100);

    /*
     * Waiting on another thread with a long deadline: the release wakes it
     * (asleep before the release, so the wake-up is the broadcast's), and
     * only once the last id of the queue is free: c too is in the queue.
     */
    idq_push(&q, c);
    b.sh = &sh;
    b.q = &q;
    b.wait_ms = 60000;
    bg_start(&b, do_wait_claims);
    CHECK_MSG(bg_wait_asleep(&b), "the waiter did not wait for claimed ids");
    share_release(&sh, a);
    /* c is still claimed: it sleeps again rather than return. */
    CHECK_MSG(bg_wait_asleep(&b), "the waiter returned while an id was still claimed");
    released_ms = ms_now();
    share_release(&sh, c);
    CHECK_MSG(bg_end(&b, 10000), "the release did not wake the waiter within 10 s");
    CHECK(b.rc == 1 && b.done_ms >= released_ms);

    /* A stop wakes a waiter, which says the ids are still claimed. */
    CHECK(share_claim(&sh, a) == 1);
    memset(&b, 0, sizeof b);
    b.sh = &sh;
    b.q = &q;
    b.wait_ms = 60000;
    bg_start(&b, do_wait_claims);
    CHECK(bg_wait_asleep(&b));
    share_stop(&sh);
    CHECK_MSG(bg_end(&b, 10000), "share_stop did not wake the waiter within 10 s");
    CHECK(b.rc == 0);
    /* Stopped: later waits return at once. */
    t0 = ms_now();
    CHECK(share_wait_claims(&sh, &q, 60000) == 0);
    CHECK(ms_now() - t0 < 10000);

    idq_free(&q);
    share_free(&sh); /* frees the claims still held */
}

/* ---- the tail hand-out ------------------------------------------------------ */

static struct config_filter notes = {.name = "notes"}, dms = {.name = "dms"};

static size_t slices_of(struct share *sh, const struct config_filter *cf)
{
    size_t n = 0;

    for (struct tail_slice *s = sh->slices; s != NULL; s = s->next)
        n += s->cf == cf;
    return n;
}

static void do_tail_help(struct bg *b)
{
    b->slice = share_tail_help(b->sh, b->cf, b->page);
}

static void test_tail(void)
{
    struct share sh;
    struct tail_slice *a, *h, *h2, *d;
    uint64_t lo, until, since;
    int has_until;
    struct bg b = {0};

    share_init(&sh);
    /* Nobody on the tail: the first job claims it whole, the next finds it taken. */
    CHECK(!share_tail_busy_lo(&sh, &notes, &lo));
    a = share_tail_claim(&sh, &notes, 100, 0, 1);
    CHECK(a != NULL);
    CHECK(share_tail_claim(&sh, &notes, 100, 0, 1) == NULL);
    d = share_tail_claim(&sh, &dms, 50, 80, 0); /* another filter's tail is its own */
    CHECK(d != NULL);
    CHECK(share_tail_busy_lo(&sh, &notes, &lo) && lo == 100);
    share_tail_range(&sh, a, &lo, &until, &has_until);
    CHECK(lo == 100 && !has_until); /* open: the first page has no until */
    share_tail_range(&sh, d, &lo, &until, &has_until);
    CHECK(lo == 50 && until == 80 && has_until);

    /*
     * Before a's first page nothing is known of its density: a helper
     * waits. The first full page (100 events in [900, 1000]) says about
     * 100 * 800 / 101 = 792 are left in [100, 900]: worth 2 pages of 100,
     * so the helper wakes and takes the older half, [100, 500].
     */
    b.sh = &sh;
    b.cf = &notes;
    b.page = 100;
    bg_start(&b, do_tail_help);
    CHECK_MSG(bg_wait_asleep(&b), "the helper did not wait for a part worth taking");
    share_tail_page(&sh, a, 100, 900, 1000, 1);
    CHECK_MSG(bg_end(&b, 10000), "a page did not wake the helper within 10 s");
    h = b.slice;
    CHECK(h != NULL && h != a);
    if (h == NULL) {
        share_free(&sh);
        return;
    }
    share_tail_range(&sh, h, &lo, &until, &has_until);
    CHECK(lo == 100 && until == 500 && has_until);
    /* The owner's next page starts above the cut; a page wholly below it is not asked. */
    since = 100;
    CHECK(share_tail_bounds(&sh, a, &since, 1, 900) == 1 && since == 501);
    since = 100;
    CHECK(share_tail_bounds(&sh, a, &since, 1, 400) == 0);
    since = 700;
    CHECK(share_tail_bounds(&sh, a, &since, 1, 900) == 1 && since == 700);
    CHECK(share_tail_busy_lo(&sh, &notes, &lo) && lo == 100);

    /*
     * Two parts now: h has 50 events in [300, 500] (about 49 left in [100,
     * 300]), a 100 in [900, 1000] (395 left in [501, 900]). The next helper
     * takes the older half of a, the part with the most left though it is
     * the oldest slice: [501, 700].
     */
    share_tail_page(&sh, h, 50, 300, 500, 1);
    h2 = share_tail_help(&sh, &notes, 10);
    CHECK(h2 != NULL);
    if (h2 != NULL) {
        share_tail_range(&sh, h2, &lo, &until, &has_until);
        CHECK(lo == 501 && until == 700 && has_until);
    }
    share_tail_range(&sh, a, &lo, &until, &has_until);
    CHECK(lo == 701 && until == 900);
    CHECK(slices_of(&sh, &notes) == 3 && slices_of(&sh, &dms) == 1);

    /* A last page (not full) leaves nothing to take: a helper waits, and the tail's end frees it. */
    share_tail_page(&sh, a, 20, 701, 900, 0);
    share_tail_page(&sh, h, 10, 100, 300, 0);
    if (h2 != NULL)
        share_tail_page(&sh, h2, 5, 501, 700, 0);
    memset(&b, 0, sizeof b);
    b.sh = &sh;
    b.cf = &notes;
    b.page = 1;
    bg_start(&b, do_tail_help);
    CHECK(bg_wait_asleep(&b));
    CHECK(share_tail_done(&sh, a) == 1); /* others took part of it */
    CHECK(share_tail_done(&sh, h) == 0);
    CHECK(!bg_done(&b) || b.slice == NULL);
    if (h2 != NULL)
        CHECK(share_tail_done(&sh, h2) == 0);
    CHECK_MSG(bg_end(&b, 10000), "the tail's end did not free the helper within 10 s");
    CHECK(b.slice == NULL);
    CHECK(slices_of(&sh, &notes) == 0);
    CHECK(!share_tail_busy_lo(&sh, &notes, &lo));
    CHECK(share_tail_busy_lo(&sh, &dms, &lo) && lo == 50);

    /* The next round claims the tail afresh. */
    a = share_tail_claim(&sh, &notes, 1000, 0, 1);
    CHECK(a != NULL);

    /* A stop frees a helper with nothing. */
    memset(&b, 0, sizeof b);
    b.sh = &sh;
    b.cf = &notes;
    b.page = 100;
    bg_start(&b, do_tail_help);
    CHECK(bg_wait_asleep(&b));
    share_stop(&sh);
    CHECK_MSG(bg_end(&b, 10000), "share_stop did not free the helper within 10 s");
    CHECK(b.slice == NULL);
    share_free(&sh); /* frees a and d, still linked */
}

/* ---- window listings -------------------------------------------------------- */

static struct neg_storage *sealed(unsigned n)
{
    struct neg_storage *ns = neg_storage_new();
    char err[NEG_ERRLEN];
    uint8_t id[32];

    for (unsigned i = 0; i < n; i++) {
        id_of(id, i + 1);
        CHECK(neg_storage_insert(ns, 10 + i, id, err, sizeof err) == 0);
    }
    CHECK(neg_storage_seal(ns, err, sizeof err) == 0);
    return ns;
}

static size_t listings_of(struct share *sh)
{
    size_t n = 0;

    for (struct shared_listing *l = sh->listings; l != NULL; l = l->next)
        n++;
    return n;
}

static void do_listing_take(struct bg *b)
{
    b->listing = share_listing_take(b->sh, "w1", 10, 20, &b->mine);
}

static void test_listings(void)
{
    struct share sh;
    struct shared_listing *l, *l2, *l3, *m[6];
    struct bg b = {0};
    int mine;
    char key[16];

    share_init(&sh);
    l = share_listing_take(&sh, "w1", 10, 20, &mine);
    CHECK(mine && l != NULL && !l->ready);
    /* Another relay's job on the same window waits for it, then shares it. */
    b.sh = &sh;
    bg_start(&b, do_listing_take);
    CHECK_MSG(bg_wait_asleep(&b), "the second taker did not wait for the listing");
    share_listing_snap(&sh, l, 5);
    share_listing_ready(&sh, l, sealed(3));
    CHECK_MSG(bg_end(&b, 10000), "a ready listing did not wake its taker within 10 s");
    CHECK(b.listing == l && !b.mine);
    CHECK(l->ready && l->refs == 2 && neg_storage_size(l->ns) == 3);
    /* A different window is a listing of its own. */
    l2 = share_listing_take(&sh, "w2", 30, 40, &mine);
    CHECK(mine && l2 != l);
    share_listing_ready(&sh, l2, sealed(1));

    /*
     * What the writer stored: outside the span, or queued before the
     * snapshot (in the listing already), leaves it fresh; a refused event
     * queued after the snapshot was never in it.
     */
    share_store_changed(&sh, (struct landed[]){{25, 9, 0}, {15, 4, 0}, {12, 8, 1}}, 3, 0);
    CHECK(!l->stale && !l2->stale);
    l3 = share_listing_take(&sh, "w1", 10, 20, &mine);
    CHECK(l3 == l && !mine && l->refs == 3);
    share_listing_release(&sh, l3);
    /* An event queued after the snapshot landing in its span makes it stale... */
    share_store_changed(&sh, (struct landed[]){{20, 5, 0}}, 1, 0);
    CHECK(l->stale && !l2->stale);
    /* ...so the next job lists afresh, while the old one's users keep theirs. */
    l3 = share_listing_take(&sh, "w1", 10, 20, &mine);
    CHECK(l3 != l && mine);
    CHECK(listings_of(&sh) == 3);
    share_listing_ready(&sh, l3, NULL); /* this listing failed */
    /* A failed listing is never handed out: the next taker makes its own. */
    share_listing_release(&sh, l3); /* unused and failed: pruned */
    CHECK(listings_of(&sh) == 2);
    l3 = share_listing_take(&sh, "w1", 10, 20, &mine);
    CHECK(mine);
    share_listing_snap(&sh, l3, 100);
    share_listing_ready(&sh, l3, sealed(2));
    /* One it held that the store refused (queued before its snapshot, gone) makes it stale. */
    share_store_changed(&sh, (struct landed[]){{11, 50, 1}}, 1, 0);
    CHECK(l3->stale);
    share_listing_release(&sh, l3); /* stale and unused: pruned at once */
    /* The stale one stays while used; its last release prunes it. */
    share_listing_release(&sh, l);
    CHECK(listings_of(&sh) == 2);
    share_listing_release(&sh, l);
    CHECK(listings_of(&sh) == 1 && sh.listings == l2);
    /* A replacement or a deletion (any) makes every listing stale. */
    l = share_listing_take(&sh, "w2", 30, 40, &mine);
    CHECK(l == l2 && !mine);
    share_store_changed(&sh, NULL, 0, 1);
    CHECK(l2->stale);
    share_listing_release(&sh, l);
    CHECK(listings_of(&sh) == 1); /* the first taker still uses it */
    share_listing_release(&sh, l2);
    CHECK(listings_of(&sh) == 0);

    /* Unused, fresh listings: the newest SYNC_LISTINGS_KEPT (4) stay, all go when idle. */
    for (int i = 0; i < 6; i++) {
        snprintf(key, sizeof key, "k%d", i);
        m[i] = share_listing_take(&sh, key, 0, 100, &mine);
        share_listing_ready(&sh, m[i], sealed(1));
    }
    for (int i = 0; i < 6; i++)
        share_listing_release(&sh, m[i]);
    CHECK(listings_of(&sh) == 4);
    l = share_listing_take(&sh, "k5", 0, 100, &mine);
    CHECK(l == m[5] && !mine);
    share_listing_release(&sh, l);
    share_listings_prune(&sh, 0);
    CHECK(listings_of(&sh) == 4);
    share_listings_prune(&sh, 1);
    CHECK(listings_of(&sh) == 0);

    /* A stop frees a taker waiting for a listing that is never ready: it gets one of its own. */
    l = share_listing_take(&sh, "w1", 10, 20, &mine);
    memset(&b, 0, sizeof b);
    b.sh = &sh;
    bg_start(&b, do_listing_take);
    CHECK(bg_wait_asleep(&b));
    share_stop(&sh);
    CHECK_MSG(bg_end(&b, 10000), "share_stop did not free the taker within 10 s");
    CHECK(b.listing != NULL && b.listing != l && b.mine);
    share_free(&sh); /* frees both, in use or not */
}

static void test_pend_find(void)
{
    struct pend_item v[3] = {{10, {1}, 100}, {10, {2}, 200}, {12, {0}, 300}};
    struct pend_list p = {v, 3, 3};
    struct pend_list none = {0};
    uint8_t id[32] = {2};

    CHECK(pend_find(&p, 10, id) == &v[1]);
    CHECK(pend_find(&p, 11, id) == NULL);
    id[0] = 0;
    CHECK(pend_find(&p, 12, id) == &v[2]);
    CHECK(pend_find(&none, 12, id) == NULL);
}

int main(void)
{
    test_claims();
    test_tail();
    test_listings();
    test_pend_find();
    return test_summary("test-sync-share");
}
