/*
 * stats: the live per-relay model that front ends read (the TUI, the
 * headless progress line) and the sync engine writes. DESIGN.md's "stats
 * model (per relay, mutex)".
 *
 * The engine reports what happens (a job started, its phase, rounds,
 * counts and live bytes, a run finished, a capability verdict, the next run
 * time, a setting changed) through the stats_* setters, from any thread.
 * A front end takes a consistent copy with stats_snapshot, as often as it
 * likes: the model has its own mutex, held only for copies, so readers never
 * compete with the engine's hot paths (the setters are called at most every
 * SYNC_PROGRESS_MS per job, and on state changes).
 *
 * Every change moves a generation number; a setter call that changes
 * nothing moves nothing (so an idle engine wakes no front end), and one
 * with a relay index out of range is ignored. stats_notify_fd is a
 * descriptor that becomes readable when the generation moved since the
 * reader last called stats_notify_ack: many changes in a burst wake a
 * poll() once.
 *
 * Strings are copied in and cut to the field sizes (at a UTF-8 character
 * boundary, so a cut never leaves half a character); ASCII control
 * characters become spaces, so a relay's reason text cannot move a
 * terminal's cursor. Nothing the caller passes is kept.
 *
 * Times: fields named *_ms are CLOCK_MONOTONIC milliseconds (stats_mono_ms,
 * the clock the snapshot's now_ms is read from); the others are unix seconds.
 */
#ifndef NEGSYNC_STATS_H
#define NEGSYNC_STATS_H

#include <stddef.h>
#include <stdint.h>

#define STATS_URL_MAX    256
#define STATS_NAME_MAX   64
#define STATS_REASON_MAX 256
#define STATS_HISTORY    8 /* runs kept per filter for a sparkline */

/* Where a job is. */
enum stats_phase {
    STATS_PHASE_IDLE,        /* no job running */
    STATS_PHASE_QUEUED,      /* waiting for a worker */
    STATS_PHASE_CONNECTING,  /* opening the websocket */
    STATS_PHASE_PROBING,     /* the capability test (NIP-11, NEG-OPEN) */
    STATS_PHASE_RECONCILING, /* negentropy rounds */
    STATS_PHASE_FETCHING,    /* REQ {"ids":[...]} for what negentropy found */
    STATS_PHASE_UPLOADING,   /* EVENTs the relay lacks */
    STATS_PHASE_REQ,         /* paging a classic REQ */
    STATS_PHASE_BACKOFF,     /* waiting before a reconnect */
};
/* "idle", "queued", "connecting", "probing", "reconciling", "fetching", "uploading", "REQ", "backoff". */
const char *stats_phase_name(enum stats_phase p);

/* The relay's negentropy setting and where it comes from. */
enum stats_neg_setting { STATS_NEG_AUTO, STATS_NEG_ON, STATS_NEG_OFF };
enum stats_neg_source {
    STATS_NEG_FROM_CONFIG,   /* the config file (or the default) */
    STATS_NEG_FROM_OVERRIDE, /* a saved per-relay override (the TUI's n key) */
};

/* What negsync knows of the relay's NIP-77 support. */
enum stats_cap {
    STATS_CAP_UNKNOWN, /* never checked */
    STATS_CAP_SUPPORTED,
    STATS_CAP_UNSUPPORTED,
    STATS_CAP_UNREACHABLE, /* the last check could not connect */
};
enum stats_cap_source {
    STATS_CAP_FROM_NONE,
    STATS_CAP_FROM_PROBE,   /* a capability test this process ran */
    STATS_CAP_FROM_CACHE,   /* the database's capability cache */
    STATS_CAP_FROM_SESSION, /* a refusal (or success) during a sync session */
};

/* Whether a failed run ended for want of NIP-42 AUTH. */
enum stats_auth {
    STATS_AUTH_NONE,
    STATS_AUTH_NEEDED, /* the relay asked for AUTH, and this relay may not sign (auth = never) */
    STATS_AUTH_FAILED, /* AUTH was refused, did not help or could not be done; restricted: */
};

/* The last finished run of one (relay, filter). */
struct stats_run {
    int valid;     /* 0: no run yet */
    int mode_neg;  /* 1 negentropy, 0 REQ */
    int ok;        /* result ok */
    int64_t ended; /* unix time */
    int64_t duration_ms;
    uint64_t rounds;
    uint64_t bytes_sent, bytes_received, wire_sent, wire_received, est_req_bytes;
    uint64_t have, need, fetched, stored, invalid, uploaded;
    char fallback_reason[STATS_REASON_MAX]; /* "" for negentropy */
    char error[STATS_REASON_MAX];           /* when !ok */
    enum stats_auth auth;                   /* when !ok */
};

/* What a sparkline of the last runs needs (struct stats_run is too big to keep eight of). */
struct stats_history {
    int mode_neg, ok;
    uint64_t bytes;         /* payload bytes sent + received */
    uint64_t est_req_bytes; /* what a REQ would have cost; 0 unknown */
};

struct stats_filter {
    char name[STATS_NAME_MAX];
    struct stats_run last;
    struct stats_history history[STATS_HISTORY]; /* the last runs, oldest first */
    size_t nhistory;
};

struct stats_relay {
    char url[STATS_URL_MAX];
    int enabled;
    enum stats_neg_setting neg_setting;
    enum stats_neg_source neg_source;
    enum stats_cap cap;
    enum stats_cap_source cap_source;
    char cap_reason[STATS_REASON_MAX];
    int64_t cap_checked_at;                                 /* unix time; 0 never */
    char software[STATS_NAME_MAX], version[STATS_NAME_MAX]; /* from NIP-11, may be "" */
    int auth_challenge;                                     /* the relay sent AUTH */
    int64_t max_message_length, max_limit;                  /* NIP-11 limitation; 0 not given */

    /*
     * The running job, if any (phase != IDLE). When a job ends, filter and
     * the counters keep its final values until the next stats_job_start.
     */
    enum stats_phase phase;
    int64_t
        phase_since_ms; /* monotonic ms: when phase (or progress) last changed, for a stall timer */
    char filter[STATS_NAME_MAX];
    uint64_t round;
    uint64_t have, need; /* negentropy's counts so far */
    uint64_t fetched;    /* valid events received so far */
    uint64_t total;      /* known missing so far (0: unknown, REQ) */
    uint64_t bytes_sent, bytes_received, wire_sent, wire_received; /* this job so far */
    uint64_t est_req_bytes; /* running estimate of what a REQ would cost */

    int64_t next_run_ms; /* monotonic ms of the next scheduled run; -1 none */
    unsigned failures;   /* consecutive failed runs (backoff) */

    /*
     * Sums over the runs this model saw end (stats_job_end): payload bytes
     * sent + received, and the REQ estimate of the runs that had one (and
     * their bytes), for a "saved" figure that ignores runs with nothing to
     * compare against.
     */
    uint64_t runs, runs_bytes, runs_est_req_bytes, runs_est_bytes;

    struct stats_filter *filters; /* one per configured filter, in config order */
    size_t nfilters;
};

struct stats_snapshot {
    uint64_t generation;
    struct stats_relay *relays; /* in config order */
    size_t nrelays;
    unsigned workers_busy, workers_total;
    uint64_t events_stored; /* as last reported by stats_set_events_stored */
    int64_t now_ms;         /* monotonic ms when the copy was taken */
};

struct stats;

/*
 * A model for nrelays relays (urls) and nfilters filters (names), all idle,
 * nothing known. NULL with a reason in err (the notify descriptor could not
 * be made). Free with stats_free.
 */
struct stats *stats_new(const char *const *urls, size_t nrelays, const char *const *filters,
                        size_t nfilters, unsigned workers, char *err, size_t errlen);
void stats_free(struct stats *st);

/* The index of a relay URL (as given to stats_new), or -1. */
int stats_relay_index(const struct stats *st, const char *url);

/* CLOCK_MONOTONIC in milliseconds: the clock of every *_ms field. */
int64_t stats_mono_ms(void);

/* ---- the engine's side: any thread --------------------------------------------- */

void stats_set_enabled(struct stats *st, size_t relay, int enabled);
void stats_set_negentropy(struct stats *st, size_t relay, enum stats_neg_setting s,
                          enum stats_neg_source src);
/* software and version may be NULL. */
void stats_set_cap(struct stats *st, size_t relay, enum stats_cap cap, enum stats_cap_source src,
                   const char *reason, int64_t checked_at, const char *software,
                   const char *version, int auth_challenge);
/* A job of filter starts (phase CONNECTING); the live counters reset. */
void stats_job_start(struct stats *st, size_t relay, const char *filter);
void stats_job_phase(struct stats *st, size_t relay, enum stats_phase phase);
/* Live counters of the running job (absolute values, not increments). */
void stats_job_progress(struct stats *st, size_t relay, uint64_t round, uint64_t have,
                        uint64_t need, uint64_t fetched, uint64_t total, uint64_t bytes_sent,
                        uint64_t bytes_received, uint64_t wire_sent, uint64_t wire_received,
                        uint64_t est_req_bytes);
/* The job of filter ended: its run becomes the filter's last; phase IDLE. */
void stats_job_end(struct stats *st, size_t relay, const char *filter, const struct stats_run *run);
void stats_set_schedule(struct stats *st, size_t relay, int64_t next_run_ms, unsigned failures);
void stats_set_workers_busy(struct stats *st, unsigned busy);
/* NIP-11's limits that matter to a sync (0: not given). */
void stats_set_limits(struct stats *st, size_t relay, int64_t max_message_length,
                      int64_t max_limit);
/* The number of events in the database (the header's count). */
void stats_set_events_stored(struct stats *st, uint64_t n);

/* ---- a front end's side -------------------------------------------------------------- */

/* A consistent copy; free with stats_snapshot_free. */
void stats_snapshot(struct stats *st, struct stats_snapshot *out);
void stats_snapshot_free(struct stats_snapshot *s);
/* The current generation, without a copy. */
uint64_t stats_generation(struct stats *st);
/* Readable when the generation moved since the last stats_notify_ack. */
int stats_notify_fd(const struct stats *st);
/* Consumes the wake-up (call before taking the snapshot it prompted). */
void stats_notify_ack(struct stats *st);

#endif
