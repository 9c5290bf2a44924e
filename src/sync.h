/*
 * sync: the sync engine. A job is one (relay, filter) pair; a pool of worker
 * threads runs jobs, and all jobs of one relay run one after another on one
 * connection, in one worker. Per job the engine decides the mode (config,
 * per-relay override, what the relay has shown it can do), then either
 * reconciles by negentropy (NIP-77) and fetches what it lacks with
 * REQ {"ids":[...]} while later rounds continue, or pages through a classic
 * REQ from the (relay, filter) cursor kept in the database. Every event is
 * checked (id, signature, filter, was it asked for) before it is stored.
 *
 * Each finished job yields a struct sync_run (metrics, outcome), written to
 * the database (sync_runs) and handed to the caller's on_run callback, on the
 * worker's thread. Commands (sync now, sync all, re-probe, override, stop)
 * may come from any thread.
 */
#ifndef NEGSYNC_SYNC_H
#define NEGSYNC_SYNC_H

#include <stddef.h>
#include <stdint.h>

#include "cfg.h"

#define SYNC_ERRLEN        256
#define SYNC_UPLOAD_ERRORS 5 /* upload rejection reasons a run keeps */

enum sync_mode {
    SYNC_MODE_NEG,
    SYNC_MODE_REQ,
};

/* "negentropy" or "req". */
const char *sync_mode_name(enum sync_mode m);

/* Whether a job ended for want of NIP-42 AUTH (sync-auth.c), and why. */
enum sync_auth_end {
    SYNC_AUTH_END_NONE,   /* it did not */
    SYNC_AUTH_END_NEEDED, /* the relay asked for AUTH and this relay may not sign (auth = never) */
    SYNC_AUTH_END_FAILED, /* AUTH was refused, did not help, or could not be done; restricted: */
};

/* The metrics and outcome of one job. */
struct sync_run {
    char relay[512];
    char filter[128];
    enum sync_mode mode;               /* the mode that ended the job */
    char fallback_reason[SYNC_ERRLEN]; /* why REQ was used ("" for negentropy) */
    int64_t started;                   /* unix time */
    int64_t duration_ms;
    uint64_t rounds;                     /* NEG-MSG replies processed, or REQ pages */
    uint64_t bytes_sent, bytes_received; /* payload, all of the job's traffic */
    uint64_t wire_sent, wire_received;   /* on the TCP connection */
    /*
     * What a REQ from this relay's cursor for this filter would have
     * downloaded: the events the relay has in that window (stored JSON of the
     * common ones, the fetched ones as received), each with its EVENT framing,
     * plus the REQ and EOSE. For a REQ job it is the job's own traffic; for
     * a failed job 0. bytes_* count this job's connection only: the
     * capability probe (NIP-11 and a NEG-OPEN handshake on a connection of
     * its own, once per relay per recheck_days, shared by all its filters) is
     * not part of any job.
     */
    uint64_t est_req_bytes;
    uint64_t have, need; /* distinct ids negentropy reported */
    uint64_t fetched;    /* valid events received */
    uint64_t stored;     /* of those, newly stored */
    uint64_t duplicates; /* already stored (or received twice) */
    uint64_t rejected;   /* valid but refused by the store (older replaceable,
                                     * deleted, ephemeral) */
    uint64_t invalid;    /* bad id or signature, not matching, not asked for */
    uint64_t uploaded_ok, uploaded_rejected;
    /* The first few uploads the relay refused (or we could not send), and why. */
    struct sync_upload_error {
        char id[65];
        char reason[160];
    } upload_errors[SYNC_UPLOAD_ERRORS];
    size_t n_upload_errors;
    /*
     * Negentropy windows halved because the relay would not reconcile them
     * whole: it said "blocked: too many", or its set came out exactly its
     * NIP-11 max_limit (neg_cap, else 0), a set it cut without a word.
     */
    uint64_t splits;
    int64_t neg_cap;
    int ok;                  /* 1: result ok */
    char error[SYNC_ERRLEN]; /* when !ok; a warning may be set when ok */
    /* When !ok: whether the job ended for want of AUTH (it does not back off). */
    enum sync_auth_end auth_end;
    /*
     * A dry run (opts.dry_run) stores, uploads and records nothing. Its
     * would_fetch: the events the relay has that the database lacks (in
     * negentropy mode the need ids, not downloaded; in REQ mode the events
     * that verified and matched and are not stored); would_upload: the have
     * ids, when the relay's direction uploads. With opts.dry_run_ids, their
     * ids (would_fetch and would_upload of them), owned by the engine and
     * valid during on_run only; else NULL.
     */
    int dry_run;
    uint64_t would_fetch, would_upload;
    uint8_t (*fetch_ids)[32], (*upload_ids)[32];
};

/*
 * One JSON object (no newline) with the keys relay, filter, mode,
 * fallback_reason, rounds, bytes_sent, bytes_received, wire_sent,
 * wire_received, est_req_bytes, have, need, fetched, stored, duplicates,
 * rejected, invalid, uploaded, upload_rejected, upload_errors (an array of
 * {"id","reason"}, at most SYNC_UPLOAD_ERRORS), splits, neg_cap, duration_ms,
 * result, error; for a dry run also dry_run (true), would_fetch, would_upload
 * and, when the ids were collected, fetch_ids and upload_ids (arrays of hex).
 * Caller frees.
 */
char *sync_run_to_json(const struct sync_run *run);

/* Where a running job is (struct sync_progress); the stats model has a coarser enum stats_phase. */
enum sync_phase {
    SYNC_PHASE_STARTING,    /* connecting, deciding the mode */
    SYNC_PHASE_RECONCILING, /* negentropy rounds */
    SYNC_PHASE_TAIL,        /* negentropy mode fetching the newest events by REQ */
    SYNC_PHASE_FETCHING,    /* REQ {"ids":[...]} for what negentropy found */
    SYNC_PHASE_UPLOADING,   /* EVENTs the relay lacks */
    SYNC_PHASE_REQ,         /* paging a classic REQ */
    SYNC_PHASE_DONE,        /* the job ended */
};

/*
 * "starting", "reconciling", "fetching the newest", "fetching", "uploading",
 * "REQ", "done": the words of the progress line.
 */
const char *sync_phase_name(enum sync_phase p);

/*
 * Where a running job is, for a progress display: reported by the worker at
 * most every SYNC_PROGRESS_MS per job while it works, and once when it ends
 * (done set, phase SYNC_PHASE_DONE). Strings belong to the engine and last
 * only for the call.
 */
struct sync_progress {
    const char *relay, *filter;
    enum sync_phase phase;
    uint64_t rounds;
    uint64_t fetched; /* valid events received so far */
    uint64_t total;   /* events known to be missing so far; 0 when not known (REQ) */
    int done;
};
#define SYNC_PROGRESS_MS 250

/*
 * One line, no newline: "<relay> <filter>: <phase>, round R, fetched F/T"
 * ("fetched F" when the total is not known), cut to fit len (at least 1).
 * Returns the length written.
 */
size_t sync_progress_format(const struct sync_progress *p, char *buf, size_t len);

struct sync_engine;
struct stats;
struct stats_snapshot;

struct sync_engine_opts {
    const struct config *cfg; /* must outlive the engine */
    const char *db_path;      /* the store every worker opens */
    /*
     * Relays to sync (URLs; normalized here), NULL/0 for every enabled relay
     * of the config. A URL the config does not list is synced with defaults.
     */
    const char *const *relays;
    size_t nrelays;
    /* Filter names, NULL/0 for all; every name must exist in the config. */
    const char *const *filters;
    size_t nfilters;
    /* 0: each relay is synced when asked; 1: again every cfg->sync.interval s. */
    int continuous;
    /* Called on a worker thread after each job; may be NULL. */
    void (*on_run)(void *arg, const struct sync_run *run);
    /* Progress of running jobs (see struct sync_progress), on a worker thread; may be NULL. */
    void (*on_progress)(void *arg, const struct sync_progress *p);
    /* "[SYNC] ..." decisions and warnings, one line without newline; may be NULL. */
    void (*log)(void *arg, const char *line);
    void *arg;
    int verbose; /* > 0: also log relay connection chatter */
    /*
     * For tests only, 0 otherwise: the store writer holds each commit this
     * many ms (half before, half after), so that jobs overlap as they would
     * on a slow disk (tests/sync-tail.sh).
     */
    long writer_hold_ms;
    /*
     * 1: a dry run. Every job reconciles (or pages REQ) and reports what it
     * would fetch and upload (struct sync_run's would_*), and nothing
     * changes: the database is opened with store_open_unchanged (it must
     * exist), no event is stored or uploaded, no cursor, run record, setting
     * or capability verdict is written (a probe's verdict is kept in memory).
     * Negentropy lists the tail's ids too instead of downloading it, and no
     * job defers to another relay's: each relay's counts are what it alone
     * would bring. dry_run_ids: also collect the ids.
     */
    int dry_run, dry_run_ids;
};

/*
 * Checks the options, opens (and migrates) the database once, loads the
 * persisted per-relay overrides. Nothing runs until sync_engine_start.
 * NULL with a reason in err.
 */
struct sync_engine *sync_engine_new(const struct sync_engine_opts *opts, char *err, size_t errlen);
/* Starts cfg->sync.workers threads. 0, or -1 with a reason. */
int sync_engine_start(struct sync_engine *e, char *err, size_t errlen);

/* Queue every selected relay now (a relay already running is queued again). */
void sync_engine_sync_all(struct sync_engine *e);
/* Queue one relay now; -1 if the engine does not sync that URL. */
int sync_engine_sync_relay(struct sync_engine *e, const char *url);
/* Forget what the engine learned about the relay's NIP-77 support, then sync it. */
int sync_engine_reprobe(struct sync_engine *e, const char *url);
/*
 * Sets the relay's negentropy override (CONFIG_NEGENTROPY_AUTO follows the
 * config again) at once, and has it saved in relay_settings off the
 * caller's thread (the checkpointer, or sync_engine_free): no I/O here, so a
 * front end never waits on the database. 0, or -1 with a reason.
 */
int sync_engine_set_negentropy(struct sync_engine *e, const char *url, enum config_negentropy value,
                               char *err, size_t errlen);
/*
 * Asks everything to stop: running jobs store what they have received,
 * advance no cursor past it, and end (result "interrupted"). Thread-safe,
 * async-signal-unsafe. Returns at once; sync_engine_free joins.
 */
void sync_engine_stop(struct sync_engine *e);
/*
 * Waits until no job is queued or running (or the engine stopped), at most
 * timeout_ms (< 0: forever). 1 when idle, 0 on timeout.
 */
int sync_engine_wait_idle(struct sync_engine *e, int timeout_ms);
/*
 * The engine's live model (stats.h): per relay its setting, capability
 * verdict, the running job's phase and counters, the last run per filter,
 * the schedule. Owned by the engine; valid until sync_engine_free. Any
 * thread may take snapshots of it.
 */
struct stats *sync_engine_stats(struct sync_engine *e);
/* stats_snapshot of it; returns the generation (it moves whenever anything changed). */
uint64_t sync_engine_snapshot(struct sync_engine *e, struct stats_snapshot *out);
/* Readable when the generation moved since the last stats_notify_ack (coalesced). */
int sync_engine_notify_fd(struct sync_engine *e);
/* Stops, joins the workers, frees. NULL is fine. */
void sync_engine_free(struct sync_engine *e);

#endif
