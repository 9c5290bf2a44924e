/*
 * sync-share: what the jobs of different relays share, with its own locks:
 * the ids some job is fetching (claims), the parts of a filter's tail jobs
 * fetch by REQ (struct tail_slice) and the sealed window listings (struct
 * shared_listing). The engine holds one struct share (sync-int.h); it needs
 * no engine, so tests build one of their own (tests/test-sync-share.c).
 *
 * Locks: three, one per kind of state, because each is used on its own:
 * claims_mu for every id a job fetches (hot), tail_mu for the tail slices,
 * listings_mu for the listings (a few per window). Each is a leaf: nothing
 * here takes another lock while holding one, and the functions below take
 * and drop theirs, so a caller may hold the engine's mu around them but
 * never the other way round (sync-int.h has the whole order).
 */
#ifndef NEGSYNC_SYNC_SHARE_H
#define NEGSYNC_SYNC_SHARE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "cfg.h"
#include "idset.h"
#include "neg.h"

/*
 * A part of a filter's tail one job is fetching by REQ, newest first:
 * [lo, until], until being where its next page ends. The job that claimed
 * the tail owns the first; jobs that would otherwise wait for it take the
 * older half of the part with the most left (share_tail_help), so several
 * relays serve the new events at once and each still sends them once.
 * Its fields are tail_mu's: read them through the functions below.
 */
struct tail_slice {
    const struct config_filter *cf;
    uint64_t lo;    /* since; raised when another job takes the older part */
    uint64_t until; /* the next page ends here (inclusive) when has_until */
    int has_until;  /* 0 before the first page of an open tail */
    uint64_t top;   /* the newest created_at seen, for the density */
    uint64_t n;     /* events received */
    int more;       /* the last page was full: there is more below until */
    int split;      /* another job took part of it */
    struct tail_slice *next;
};

/*
 * Verified events not stored yet (queued for the store writer, or in the
 * transaction it is writing) that match a filter: what the local view adds
 * to the store's (see engine_pending). Sorted by (created_at, id), no
 * duplicates.
 */
struct pend_item {
    uint64_t created_at;
    uint8_t id[32];
    size_t json_len; /* of the JSON the store will keep; 0 unless asked for */
};

struct pend_list {
    struct pend_item *v;
    size_t n, cap;
};

/*
 * A window's sealed listing, shared by the jobs of other relays that
 * reconcile the same window of the same filter (the everyday case: every
 * relay synced up to the same cursor, each listing the same hundred thousand
 * events). It holds the stored events and those waiting for the store writer
 * at the time (engine_pending), so a job need not wait for the writer
 * before it reconciles. Kept until the engine writes into its time span an
 * event queued after that (or writes something that may remove events: a
 * replacement, a deletion), or, once no job uses it, until the engine goes
 * idle or more than SYNC_LISTINGS_KEPT unused ones pile up.
 *
 * listings_mu guards snap_seq, ready, stale, refs and next. ns and pend
 * are written by the job that makes the listing before share_listing_ready
 * and only read after it: no lock needed to read them once taken.
 */
struct shared_listing {
    char *key;              /* the window's filter as JSON */
    uint64_t lo, hi;        /* its created_at span */
    struct neg_storage *ns; /* sealed, read only; NULL when listing failed */
    struct pend_list pend;  /* its events that were not stored yet, for their sizes */
    uint64_t snap_seq;      /* events queued from this one on are not in it */
    int ready;              /* listed (or failed) */
    int stale;              /* the store changed in its span since it began */
    unsigned refs;
    struct shared_listing *next;
};

/* An event a transaction stored (or refused: gone), for the listings it makes stale. */
struct landed {
    uint64_t created_at, seq;
    int gone;
};

struct share {
    pthread_mutex_t claims_mu;
    pthread_cond_t claims_cv; /* broadcast whenever claims are released */
    struct idset claims;      /* ids some job is fetching right now */

    pthread_mutex_t tail_mu;
    pthread_cond_t tail_cv;    /* a page of a slice came in, or a slice ended */
    struct tail_slice *slices; /* the parts of tails jobs are fetching right now */

    pthread_mutex_t listings_mu;
    pthread_cond_t listings_cv; /* a listing is ready */
    struct shared_listing *listings;

    /* Set by share_stop: nothing waits any more. */
    atomic_int stopping;
};

/* An empty share; share_free frees what it holds (no thread may use it any more). */
void share_init(struct share *sh);
void share_free(struct share *sh);
/* Wakes every waiter and makes every later wait return at once. */
void share_stop(struct share *sh);

/* Claims id for fetching; 0 if another job already fetches it. */
int share_claim(struct share *sh, const uint8_t id[32]);
void share_release(struct share *sh, const uint8_t id[32]);
/*
 * Waits until no id of q (from its head on) is claimed, at most wait_ms;
 * 1 when none is, 0 on the deadline or a stop.
 */
int share_wait_claims(struct share *sh, const struct idq *q, int64_t wait_ms);

struct tail_slice *share_tail_claim(struct share *sh, const struct config_filter *cf, uint64_t lo,
                                    uint64_t hi, int hi_open);
int share_tail_busy_lo(struct share *sh, const struct config_filter *cf, uint64_t *lo);
struct tail_slice *share_tail_help(struct share *sh, const struct config_filter *cf, uint64_t page);
void share_tail_range(struct share *sh, const struct tail_slice *s, uint64_t *lo, uint64_t *until,
                      int *has_until);
int share_tail_bounds(struct share *sh, const struct tail_slice *s, uint64_t *since, int has_until,
                      uint64_t until);
void share_tail_page(struct share *sh, struct tail_slice *s, uint64_t n, uint64_t oldest,
                     uint64_t newest, int full);
int share_tail_done(struct share *sh, struct tail_slice *s);

struct shared_listing *share_listing_take(struct share *sh, const char *key, uint64_t lo,
                                          uint64_t hi, int *mine);
void share_listing_snap(struct share *sh, struct shared_listing *l, uint64_t seq);
void share_listing_ready(struct share *sh, struct shared_listing *l, struct neg_storage *ns);
void share_listing_release(struct share *sh, struct shared_listing *l);
void share_listings_prune(struct share *sh, int all);
void share_store_changed(struct share *sh, const struct landed *v, size_t n, int any);

/* The pending item with id, or NULL. */
const struct pend_item *pend_find(const struct pend_list *p, uint64_t created_at,
                                  const uint8_t id[32]);

#endif
