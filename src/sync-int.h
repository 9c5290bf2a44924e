/*
 * sync-int: what the parts of the sync engine share (the engine, its relays,
 * a job and the functions one part calls in another). Private to src/sync*.c.
 */
#ifndef NEGSYNC_SYNC_INT_H
#define NEGSYNC_SYNC_INT_H

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>

#include "caps.h"
#include "cfg.h"
#include "event.h"
#include "filter.h"
#include "idset.h"
#include "keys.h"
#include "neg.h"
#include "net.h"
#include "relay.h"
#include "stats.h"
#include "store.h"
#include "sync.h"
#include "sync-share.h"
#include "verifier.h"
#include "util.h"

#define SYNC_STORE_BATCH      2048 /* queued events that wake the store writer (writer_main) */
#define SYNC_LOOKAHEAD        256  /* messages read ahead while their events are verified */
#define SYNC_MAX_VERIFIERS    8    /* verifier threads at most (one per core) */
#define SYNC_UPLOAD_IN_FLIGHT 64   /* EVENTs awaiting OK */
#define SYNC_SPLIT_DEPTH      24   /* window halvings after "blocked" */
#define SYNC_REQ_SPLIT_DEPTH  16   /* author/kind halvings for a crowded second */
#define SYNC_REQ_SUBID_LEN    12   /* the length of our subscription ids, for est_req_bytes */
/*
 * Within a relay's NIP-11 max_message_length: what a REQ {"ids":[...]} adds
 * to its ids (["REQ","<subid>",{"ids":[],"limit":N}] with room to spare) and
 * what each id takes ("<64 hex>",); what a NEG-OPEN adds to its filter and
 * its message's hex (["NEG-OPEN","<subid>",,""]), with room to spare.
 */
#define SYNC_FETCH_REQ_OVERHEAD 96
#define SYNC_FETCH_ID_BYTES     67
#define SYNC_NEG_MSG_OVERHEAD   64
/*
 * Local events per negentropy session. The reference splits a range into 16
 * by count, and a side holding fewer than 32 items in a range sends their
 * ids instead; with 8192..16383 local items in a session our second split
 * lands on ranges of 32..63 of them, whose 16 fingerprints cover 2..4 events
 * each, so where a few events are missing the relay answers with the ids of
 * small ranges only. Bigger sets are cut into time windows of about this
 * many local events (see job_neg).
 */
#define SYNC_NEG_WINDOW 12000

/* ---- the engine ------------------------------------------------------------- */

/* What the engine knows of a relay's NIP-77 support (struct sync_relay's neg_known). */
enum sync_nip77 {
    SYNC_NIP77_UNKNOWN,     /* not known: a job tries NEG-OPEN and sees */
    SYNC_NIP77_WORKS,       /* the probe or the cache says so, or a session got NEG-MSG */
    SYNC_NIP77_REFUSED,     /* the relay does not speak it (neg_reason says why) */
    SYNC_NIP77_UNREACHABLE, /* the check could not connect (neg_reason); the next job asks again */
};

/*
 * NIP-42 on a relay's current connection, kept across the jobs that share
 * it (sync-auth.c). Only the worker running the relay's jobs touches it, so
 * it needs no lock. conn is the relay_connection_id it describes: another
 * connection (a reconnect, caps_guard's fresh one, the next run's) starts
 * again from nothing.
 */
struct sync_auth {
    uint64_t conn;
    char challenge[KEYS_MAX_CHALLENGE + 1]; /* the latest ["AUTH", challenge] */
    int has_challenge;
    int too_long; /* the latest challenge was longer than keys_sign_auth signs */
    enum { SYNC_AUTH_NONE, SYNC_AUTH_OK, SYNC_AUTH_REFUSED } state; /* our AUTH on it */
    char refused[SYNC_ERRLEN]; /* SYNC_AUTH_REFUSED: the relay's answer, for later jobs */
};

struct sync_relay {
    char *url;
    struct config_relay cr; /* a copy; cr.url aliases url */
    int override;           /* -1: none, else enum config_negentropy */
    int64_t due_ms;         /* monotonic; -1: not queued */
    int running;
    struct relay *conn; /* while running, for sync_engine_stop */
    enum sync_nip77 neg_known;
    char neg_reason[SYNC_ERRLEN];
    int probed;          /* caps consulted since the last re-probe request */
    int force_probe;     /* the next job re-checks whatever the cache says */
    int nip11_done;      /* NIP-11 read (by caps or directly) */
    int64_t max_limit;   /* NIP-11 limitation.max_limit; -1 unknown */
    int64_t max_message; /* NIP-11 limitation.max_message_length; -1 unknown */
    /*
     * Runs in a row in which the relay closed one of our subscriptions
     * (CLOSED "rate-limited:", "error:", ...; NIP-42's auth-required: is
     * no refusal) and a job failed for it; the relay's next run waits
     * until not_before_ms (monotonic), relay_backoff_delay_ms of that count.
     */
    unsigned refusals;
    int64_t not_before_ms;
    uint64_t rng;
    /* sync_engine_set_negentropy's value until the checkpointer saved it */
    enum config_negentropy setting_value;
    int setting_dirty;
    struct sync_auth auth; /* the running worker's own (see struct sync_auth) */
};

struct job;

/* An event for the store and the job whose counters its outcome goes to. */
struct pending_event {
    struct event *ev;
    struct job *j;
    uint64_t seq; /* order of queueing (struct shared_listing's snap_seq) */
};

/*
 * The engine. Each part keeps its state under a lock of its own:
 *
 *   mu          the scheduler and what the engine knows of each relay:
 *               stopping, nrunning, and of struct sync_relay override,
 *               due_ms, running, conn, neg_known and neg_reason, probed,
 *               force_probe, nip11_done, the NIP-11 limits, the backoff
 *               (refusals, not_before_ms, rng) and the unsaved setting;
 *               settings_dirty and the checkpointer's ckpt_want and
 *               ckpt_done. work_cv, idle_cv and ckpt_cv wait on it.
 *   wq_mu       the store writer's queue and the jobs' struct committed
 *               (sync-writer.c; see below).
 *   share       claims, tail slices and listings, three locks of its own
 *               (sync-share.h).
 *   stats       the live model's own lock (stats.c), held only for copies.
 *
 * Set before the threads start and read only after: o, cfg, db_path,
 * relays[i].url and .cr, the filters, vpool. Atomic: cancel,
 * events_stored, subseq. Only the worker running a relay's jobs touches its
 * auth (struct sync_auth).
 *
 * Order: mu may be held while taking a share lock or the stats lock (the
 * scheduler prunes the listings and reports to the model under mu); those
 * are leaves and take nothing else. wq_mu is a leaf too: the writer drops
 * it before it tells the share what landed (share_store_changed) and then
 * wakes the checkpointer under mu. Nothing takes mu while holding wq_mu, a
 * share lock or the stats lock.
 */
struct sync_engine {
    struct sync_engine_opts o;
    const struct config *cfg;
    char *db_path;
    struct sync_relay *relays;
    size_t nrelays;
    const struct config_filter **filters;
    size_t nfilters;

    pthread_mutex_t mu;
    pthread_cond_t work_cv, idle_cv;
    pthread_t *threads;
    size_t nthreads;
    int stopping;
    /*
     * Set with stopping; every relay the engine opens (probes and NIP-11
     * fetches included) looks at it, so a stop reaches a connection no
     * relay_interrupt knows of.
     */
    atomic_int cancel;
    /* The live model front ends read (stats.h); index i is relays[i]. */
    struct stats *stats;
    /*
     * Overrides set by sync_engine_set_negentropy, not yet in the database:
     * the checkpointer writes them (its own connection), so the caller's
     * thread never waits on SQLite.
     */
    int settings_dirty;
    /* Events in the database: counted at start, then each run's stored added (atomic). */
    uint64_t events_stored;
    size_t nrunning;
    struct share share; /* what jobs of different relays share (sync-share.h) */
    /*
     * Verified events of every job, waiting for the store writer (see
     * writer_main); wq_mu guards them, the jobs' struct committed and the
     * rest of these.
     */
    pthread_mutex_t wq_mu;
    pthread_cond_t write_cv;   /* wakes the writer */
    pthread_cond_t written_cv; /* a transaction ended */
    struct pending_event *wq;
    size_t wq_n, wq_cap;
    struct idset wq_map;           /* id -> struct event *, of wq and wq_busy */
    struct pending_event *wq_busy; /* the batch the writer is committing */
    size_t wq_busy_n;
    uint64_t wq_seq;                /* pending events queued so far */
    uint64_t flush_req, flush_done; /* commits asked for, and done */
    int writer_running, writer_stop;
    pthread_t writer_thread;
    char store_err[SYNC_ERRLEN]; /* the last failed transaction's reason */
    pthread_t ckpt_thread;       /* see ckpt_main */
    int ckpt_running;
    pthread_cond_t ckpt_cv;
    uint64_t ckpt_want, ckpt_done; /* commits signalled, commits checkpointed */
    atomic_uint_fast64_t subseq; /* our subscription ids so far (job_subid) */
    struct vpool *vpool; /* verifies incoming events beside the workers; NULL: inline */
};

/* ---- one job ---------------------------------------------------------------- */

/* A REQ {"ids":[...]} in flight. */
struct fetch_sub {
    char subid[32];
    uint8_t (*ids)[32];
    size_t nids;
    struct idset asked, got;
};

struct job {
    struct sync_engine *e;
    struct sync_relay *rel;
    const struct config_filter *cf;
    struct filter *f; /* resolved now; no limit */
    struct relay *r;
    struct caps_guard guard; /* sends and waits on r: the first message of a connection */
    struct store *st;
    struct sync_run *run;
    int64_t timeout_ms; /* neg_timeout */
    int down, up;       /* direction */

    /* fetching what negentropy found */
    struct idset queued;  /* every id ever queued: dedupe across rounds */
    struct idset retried; /* ids asked again after a short reply */
    struct idq pending, deferred;
    int no_defer; /* drain: ask for ids even if another job claims them */
    struct fetch_sub *subs;
    size_t nsubs;
    size_t batch;           /* ids per REQ; shrinks to the relay's cap */
    uint64_t fetched_bytes; /* raw EVENT messages of fetched events */
    uint64_t missing;       /* asked for, never sent */
    int64_t max_fetched_at;

    /* uploading what the relay lacks */
    struct idq upq;
    struct idset up_inflight;

    struct idq dry_fetch, dry_up; /* a dry run's ids, with opts.dry_run_ids (sync-dry.c) */

    /*
     * Events in the engine's queue for the store, and what became of those
     * another job's transaction took (guarded by the engine's wq_mu; folded
     * into run and max_stored_at by job_flush).
     */
    struct committed {
        size_t pending;
        uint64_t stored, duplicates, rejected;
        int64_t max_at;
        int failed;
    } cm;
    int64_t max_stored_at; /* newest created_at a committed batch held; -1 none */

    /* negentropy bookkeeping */
    struct idset have, need;
    int neg_logged;
    int neg_answered;    /* the relay answered a NEG-OPEN of this job with NEG-MSG */
    uint64_t est_common; /* stored JSON + framing of the windows' local events */
    uint64_t est_have;   /* the same for have ids (not on the relay) */
    int64_t cursor;
    char *fkey;                /* the filter as the cursor row records it */
    int64_t neg_max_common_at; /* newest created_at both sides had; -1 none */

    int in_tail;              /* req_page serves the tail (see job_neg) */
    struct tail_slice *slice; /* the part of it req_window fetches, or NULL */
    enum sync_phase phase;    /* for progress reports */
    int64_t progress_at;      /* monotonic ms of the last report */
    char closed[SYNC_ERRLEN]; /* the first CLOSED reason on a REQ of ours, or "" */

    /*
     * Messages received ahead of the one being handled, their events handed
     * to the engine's verifier pool meanwhile; then the pool's result for the
     * EVENT message job_recv returned last (see job_take_event).
     */
    struct ahead {
        struct relay_msg *m;
        struct vtask *t;
        int known; /* a copy of an event we hold: no task (job_known_copy) */
    } ahead[SYNC_LOOKAHEAD];
    size_t ahead_head, ahead_n;
    int ahead_rc; /* the error relay_recv gave while reading ahead; 0 none */
    char ahead_err[RELAY_ERRLEN];
    const json_t *pre_obj;
    struct vtask *pre_task;
    int pre_known;
    struct event_keycache *kc; /* the worker's, for what this thread verifies itself */

    int64_t max_limit;   /* the relay's NIP-11 max_limit, -1 unknown */
    int64_t max_message; /* the relay's NIP-11 max_message_length, -1 unknown */
    int64_t idle_deadline;
    /*
     * Messages relay_recv returned to this job, and the connection's count
     * of received messages when the job began: together they tell how many
     * it skipped (not JSON, cut short: see job_recv_skew).
     */
    uint64_t recv_returned, recv_base;
    struct relay_counters c0; /* the connection's totals when the job began */
    int take_forged;          /* the last event job_take_event dropped failed its id or signature */
    char fatal[SYNC_ERRLEN];  /* store failure, interrupted, no AUTH (auth_end): ends the job */
    int interrupted;
    /*
     * NIP-42 (sync-auth.c): our AUTH awaits its OK (job_recv neither fetches
     * nor uploads meanwhile, job_route puts back what asks for AUTH); the job
     * ends for want of AUTH, or for what the relay said of it (JOB_AUTH;
     * SYNC_AUTH_END_NONE, 0, else); the refusal was of a NEG-OPEN, or of a
     * REQ of negentropy mode to a relay known to speak NIP-77 (it does, not
     * to us).
     */
    int authing;
    enum sync_auth_end auth_end;
    int auth_on_neg;
};

enum job_outcome {
    JOB_OK,
    JOB_UNSUPPORTED, /* NIP-77 refused: fall back or, strict, an error */
    JOB_FAILED,      /* failed twice: fall back or error */
    JOB_FATAL,       /* store error, interrupted */
    JOB_AUTH,        /* auth-required: or restricted: (NIP-42) that AUTH did not clear */
};

struct req_state {
    int64_t incomplete_at; /* oldest second we could not list completely; -1 none */
    /*
     * The cursor may not pass this (-1: no limit): the oldest created_at of an
     * event we could not take (bad id or signature, not parsable), or of a
     * page a message of which could not be read (relay_recv skipped it), so a
     * later run, or another relay, is asked for it again.
     */
    int64_t lost_at;
    uint64_t bad, unreadable; /* such events, such messages */
    int count_unreadable;     /* the job's only subscription is the page's (req_job) */
    uint64_t page_limit;
    int cap_known; /* page_limit is within the relay's NIP-11 max_limit */
};

/* sync.c */
void engine_log(struct sync_engine *e, const char *fmt, ...);
void engine_relay_log(void *arg, const char *url, const char *line);
int engine_stopping(struct sync_engine *e);
void abs_deadline(struct timespec *ts, int64_t ms_from_now);

/* sync-writer.c */
int pend_cmp(const void *a, const void *b);
uint64_t engine_pending(struct sync_engine *e, const struct filter *f, int sizes,
                        struct pend_list *out);
char *engine_pending_json(struct sync_engine *e, const uint8_t id[32], size_t *len);
int engine_is_pending(struct sync_engine *e, const uint8_t id[32]);
void *writer_main(void *arg);
int job_flush(struct job *j);
int job_queue_event(struct job *j, struct event *ev);
void *ckpt_main(void *arg);
void engine_stats_setting(struct sync_engine *e, struct sync_relay *rel);
void engine_persist_settings(struct sync_engine *e, struct store *db);

/* sync-req.c */
int req_window(struct job *j, const struct filter *base, uint64_t since, int has_until,
               uint64_t until, int depth, struct req_state *rs, char *err, size_t errlen);
enum job_outcome req_job(struct job *j, char *reason, size_t rlen);

/* sync-neg.c */
void job_neg_log_using(struct job *j);
uint64_t job_page_limit(const struct job *j, int *cap_known);
enum job_outcome job_neg(struct job *j, char *reason, size_t rlen);

/* sync-fetch.c */
void fetch_queue(struct job *j, const uint8_t id[32]);
int fetch_pump(struct job *j, int final, char *err, size_t errlen);
struct fetch_sub *fetch_find(struct job *j, const char *subid);
void fetch_reset(struct job *j);
int upload_pump(struct job *j, char *err, size_t errlen);
int job_route(struct job *j, struct relay_msg *m);
int job_drain(struct job *j, char *err, size_t errlen);

/* sync-job.c */
void job_subid(struct job *j, const char *prefix, char *out, size_t outlen);
int job_send_json(struct job *j, json_t *msg, char *err, size_t errlen);
void job_close_sub(struct job *j, const char *subid);
int job_take_event(struct job *j, const json_t *obj, const struct filter *f, struct fetch_sub *sub,
                   int64_t *taken_at);
size_t rel_index(const struct sync_engine *e, const struct sync_relay *rel);
void job_progress(struct job *j, int done);
void job_ahead_clear(struct job *j);
int64_t job_recv_skew(struct job *j);
int job_recv(struct job *j, int final, struct relay_msg **out, char *err, size_t errlen);
int job_connect(struct job *j, char *err, size_t errlen);

/* sync-dry.c */
void dry_note_fetch(struct job *j, const uint8_t id[32]);
void dry_note_upload(struct job *j, const uint8_t id[32]);
/* A verified event of a REQ page (takes ev): counted unless stored. 0, or -1 (j->fatal). */
int dry_take_event(struct job *j, struct event *ev);
/* Into the job's run: dry_run, the ids (opts.dry_run_ids); no REQ estimate. */
void dry_finish(struct job *j);

/* sync-auth.c */
enum { AUTH_REQUIRED = 1, AUTH_RESTRICTED = 2 };
/* AUTH_REQUIRED for a reason starting "auth-required:", AUTH_RESTRICTED for "restricted:", else 0. */
int auth_prefix(const char *text);
/* Keeps an ["AUTH", challenge] the relay sent (job_recv calls it for each). */
void job_auth_note(struct job *j, const struct relay_msg *m);
/*
 * m (a NEG-ERR, CLOSED or OK false answering what: "NEG-OPEN", "REQ",
 * "EVENT") says auth-required: or restricted:. 0 when AUTH went through
 * just now: send it again, once. -1 when the job ends: j->fatal says why
 * and auth_end is set (or j->interrupted, or a store failure in j->fatal).
 */
int job_auth_required(struct job *j, const char *what, const struct relay_msg *m);
/*
 * A job that ended for want of AUTH (JOB_AUTH): the log line, and when the
 * relay speaks NIP-77 (auth_on_neg), the verdict of the stats model: NIP-77
 * supported, needing AUTH for the job's filter.
 */
void job_auth_report(struct job *j);

/* sync-run.c */
void engine_stats_cap(struct sync_engine *e, struct sync_relay *rel, const struct caps_result *res);
int job_run(struct sync_engine *e, struct sync_relay *rel, struct relay *r, struct store *st,
            struct event_keycache *kc, const struct config_filter *cf, struct sync_run *run);

#endif
