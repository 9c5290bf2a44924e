/*
 * store: the SQLite event store. Schema and forward migrations, batched
 * inserts with relay semantics (replaceable, addressable, ephemeral kinds and
 * NIP-09 deletions), queries by filter, and the (created_at, id) listing the
 * negentropy sessions are built from.
 *
 * One struct store is one connection. It is not shared between threads: each
 * worker opens its own with store_open, and every connection is configured
 * the same way (WAL, synchronous=NORMAL, foreign keys, busy timeout), so
 * several readers and one writer run at once without "database is locked"
 * reaching the user. A command that only reads opens with
 * store_open_readonly instead, which changes nothing in the file.
 */
#ifndef NEGSYNC_STORE_H
#define NEGSYNC_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "event.h"
#include "filter.h"

#define STORE_ERRLEN 256

struct store;

/*
 * Opens (creating if needed) the database at path and brings its schema up
 * to date. Returns NULL with a reason in err. Close with store_close.
 */
struct store *store_open(const char *path, char *err, size_t errlen);
/*
 * Opens an existing database at path for reading only: nothing is created
 * or switched to WAL, and every write fails, so a command that only reads
 * (export) works on a database in a directory, or a file, this user cannot
 * write. The one write it may make is store_open's migration of an older
 * schema, where the file can be written. Returns NULL with a reason in err:
 * the file is missing, its schema is not this negsync's (and cannot be
 * migrated here), or it cannot be read here (a -wal file without a -shm file
 * this user can create).
 */
struct store *store_open_readonly(const char *path, char *err, size_t errlen);
/*
 * store_open_readonly for a command that promises to change nothing (sync
 * --dry-run): an older schema is refused instead of upgraded, so the file's
 * content is what it was. (Closing the last connection still folds a -wal
 * file a crashed writer left into the database, as any reader's close does.)
 */
struct store *store_open_unchanged(const char *path, char *err, size_t errlen);
void store_close(struct store *st);

struct sqlite3;

/*
 * Gives a connection opened outside store_open (the sync engine's cursors
 * and runs, the capability cache) the per-connection settings every store
 * connection has: synchronous=NORMAL, the same automatic checkpoint size and
 * WAL size limit. Without them a one-row cursor update would fsync the WAL
 * and run a whole checkpoint of the events the workers wrote. 0, or -1 with
 * a reason in err.
 */
int store_configure(struct sqlite3 *db, char *err, size_t errlen);

/*
 * The default database path, $XDG_DATA_HOME/negsync/negsync.db (or
 * ~/.local/share/negsync/negsync.db), creating the directory. Caller frees;
 * NULL with a reason in err.
 */
char *store_default_path(char *err, size_t errlen);

/* What happened to one event handed to store_insert_batch. */
enum store_outcome {
    STORE_INSERTED,  /* stored */
    STORE_DUPLICATE, /* already stored, nothing changed */
    STORE_REPLACED,  /* stored, and an older version of it was removed */
    STORE_REJECTED,  /* not stored; reason says why */
    STORE_DELETED,   /* not stored: a stored deletion (kind 5) covers it */
};

struct store_result {
    enum store_outcome outcome;
    const char *reason; /* static text for REJECTED and DELETED, else NULL */
};

/* "inserted", "duplicate", ... for summaries and logs. */
const char *store_outcome_name(enum store_outcome o);

/*
 * Stores n events, which the caller has parsed and verified, in one
 * transaction, in array order; results[i] says what happened to evs[i].
 * Returns 0, or -1 with a reason in err, in which case nothing of the batch
 * was stored. Larger batches cost much less per event (each transaction
 * rewrites the index pages it touches): `negsync import` writes 20 000 per
 * batch, and a connection that writes batches of 1 000 or more gets a larger
 * page cache; bench/ingest-bench measures it.
 */
int store_insert_batch(struct store *st, struct event *const *evs, size_t n,
                       struct store_result *results, char *err, size_t errlen);

/* Callback for stored events as compact JSON (len bytes, NUL-terminated). Non-zero stops. */
typedef int (*store_json_cb)(void *ctx, const char *json, size_t len);
/* Callback for the negentropy listing. Non-zero stops. */
typedef int (*store_id_cb)(void *ctx, uint64_t created_at, const uint8_t id[32]);

enum store_order {
    STORE_NEWEST_FIRST, /* created_at descending, then id ascending (REQ order) */
    STORE_OLDEST_FIRST, /* created_at ascending, then id ascending (export order) */
};

/*
 * Calls cb for every stored event matching f (NULL = everything), in the
 * given order. A filter limit keeps the newest `limit` events, whatever the
 * order they are then delivered in. Returns 0, 1 if cb stopped the
 * iteration, or -1 with a reason in err.
 */
int store_query(struct store *st, const struct filter *f, enum store_order order, store_json_cb cb,
                void *ctx, char *err, size_t errlen);

/* Number of stored events matching f (NULL = all; limit ignored). 0, or -1. */
int store_count(struct store *st, const struct filter *f, uint64_t *count, char *err,
                size_t errlen);
/* The newest created_at among them (-1 if none), through the index where there is one. 0, or -1. */
int store_newest(struct store *st, const struct filter *f, int64_t *created_at, char *err,
                 size_t errlen);

/*
 * (created_at, id) of every stored event matching f (NULL = all; limit
 * ignored), ascending, without reading event bodies. For negentropy.
 * Returns 0, 1 if cb stopped the iteration, or -1 with a reason in err.
 */
int store_list_ids(struct store *st, const struct filter *f, store_id_cb cb, void *ctx, char *err,
                   size_t errlen);

/* Callback for store_list_sizes. Non-zero stops. */
typedef int (*store_size_cb)(void *ctx, const uint8_t id[32], size_t json_len);

/*
 * The id and the stored JSON's length in bytes of every stored event
 * matching f (NULL = all; limit ignored), in no particular order. Returns 0,
 * 1 if cb stopped the iteration, or -1 with a reason in err.
 */
int store_list_sizes(struct store *st, const struct filter *f, store_size_cb cb, void *ctx,
                     char *err, size_t errlen);

/* 1 if an event with this id is stored, 0 if not, -1 with a reason in err. */
int store_has_id(struct store *st, const uint8_t id[32], char *err, size_t errlen);

/*
 * The signature of the stored event with this id: 1 and sig, or 0 if no such
 * event is stored or its JSON does not end the way event_to_json ends it
 * (then the caller has no signature to compare with); -1 with a reason.
 */
int store_get_sig(struct store *st, const uint8_t id[32], uint8_t sig[64], char *err,
                  size_t errlen);

/*
 * The stored JSON of the event with this id: 1 and *json (caller frees,
 * NUL-terminated, *len bytes if len is not NULL), 0 if not stored, or -1.
 */
int store_get_json(struct store *st, const uint8_t id[32], char **json, size_t *len, char *err,
                   size_t errlen);

/*
 * The query plan (EXPLAIN QUERY PLAN detail lines, newline-separated) of the
 * statement the function named by which would run for f. For tests and for
 * anyone wondering why a filter is slow.
 */
enum store_plan {
    STORE_PLAN_LIST_IDS,
    STORE_PLAN_QUERY_NEWEST,
    STORE_PLAN_QUERY_OLDEST,
    STORE_PLAN_COUNT,
    STORE_PLAN_ADDRESS, /* the versions at an address, looked up on insert; f ignored */
};
int store_query_plan(struct store *st, enum store_plan which, const struct filter *f, char *out,
                     size_t outlen, char *err, size_t errlen);

/* PRAGMA integrity_check and foreign_key_check: 0 if both are clean, else -1 and the first problem. */
int store_check(struct store *st, char *err, size_t errlen);

/* The schema version this build writes (PRAGMA user_version after store_open). */
int store_schema_version(void);

/* ---- the tables the sync engine and caps keep: readers (negsync status) ---------- */

/* One row of relay_caps, the capability cache caps.c keeps. store_caps_clear frees it. */
struct store_caps {
    int supported; /* 1: NIP-77 works; 0: it does not */
    char *reason;
    int64_t checked_at;                   /* unix time */
    int64_t latency_ms;                   /* -1: none */
    char *nip11_software, *nip11_version; /* NULL when absent */
    char *nip11_supported_nips;           /* a JSON array; NULL when absent */
    char *nip11_raw;                      /* the document; NULL when there was no usable one */
};

/* The cached row for relay (as caps keys it): 1 and out, 0 none, -1 with a reason in err. */
int store_caps_get(struct store *st, const char *relay, struct store_caps *out, char *err,
                   size_t errlen);
void store_caps_clear(struct store_caps *c);

/*
 * The saved negentropy override of relay (relay_settings): 1 with "on" or
 * "off" in value, 0 when there is none (or it says "auto", which is none),
 * -1 with a reason in err.
 */
int store_setting_negentropy(struct store *st, const char *relay, char value[8], char *err,
                             size_t errlen);

/*
 * The REQ cursor row of (relay, filter_name): 1 with *cursor (unix time)
 * and, if filter_json is not NULL, the filter it was recorded for (the
 * sync engine restarts from 0 when that differs; caller frees); 0 when
 * there is none; -1 with a reason in err.
 */
int store_cursor_row(struct store *st, const char *relay, const char *filter_name, int64_t *cursor,
                     char **filter_json, char *err, size_t errlen);

/* One row of sync_runs. Text longer than the fields is cut. */
struct store_run {
    int64_t run;     /* its row id: later runs have larger ones */
    char mode[8];    /* "neg" | "req" */
    char result[16]; /* "ok" | "error" */
    int64_t started; /* unix time */
    int64_t duration_ms;
    uint64_t rounds, bytes_sent, bytes_received, wire_sent, wire_received, est_req_bytes;
    uint64_t have, need, fetched, stored, duplicates, invalid, uploaded_ok, uploaded_rejected;
    char fallback_reason[STORE_ERRLEN]; /* "" for none */
    char error[STORE_ERRLEN];           /* "" for none */
};

/* The newest run of (relay, filter): 1 and out, 0 none, -1 with a reason in err. */
int store_run_last(struct store *st, const char *relay, const char *filter, struct store_run *out,
                   char *err, size_t errlen);

/* Sums over recorded runs. */
struct store_run_totals {
    uint64_t runs, runs_ok;
    uint64_t bytes_sent, bytes_received; /* payload */
    uint64_t wire_sent, wire_received;
    uint64_t fetched, stored;
    /*
     * Over the runs that have a REQ estimate (est_req_bytes > 0; failed runs
     * have none): their estimates and the payload bytes they moved, so
     * that est_req_bytes - compared_bytes is what those runs saved.
     */
    uint64_t compared_runs, est_req_bytes, compared_bytes;
    int64_t first_started, last_started; /* unix time; 0 when no runs */
};

/* Sums over the runs of relay (NULL: every run recorded). 0, or -1 with a reason in err. */
int store_run_totals(struct store *st, const char *relay, struct store_run_totals *out, char *err,
                     size_t errlen);

/* The database's size in bytes (page_count * page_size, its committed WAL pages included). */
int store_size(struct store *st, uint64_t *bytes, char *err, size_t errlen);

/* ---- the tables the sync engine and caps keep: writers (store-meta.c) ----------- */

/* Records the REQ cursor of (relay, filter_name) for the filter filter_json. 0 or -1. */
int store_cursor_set(struct store *st, const char *relay, const char *filter_name,
                     const char *filter_json, int64_t cursor, char *err, size_t errlen);

/* Appends a row to sync_runs; r->run is ignored, "" texts are stored as NULL. 0 or -1. */
int store_run_insert(struct store *st, const char *relay, const char *filter,
                     const struct store_run *r, char *err, size_t errlen);

/* Saves relay's negentropy override ("auto", "on" or "off"). 0 or -1. */
int store_setting_negentropy_set(struct store *st, const char *relay, const char *value, char *err,
                                 size_t errlen);

/*
 * Writes (replaces) relay's capability cache row. The NIP-11 columns are
 * written when c->nip11_raw is not NULL (there was a usable document), NULL
 * otherwise. 0 or -1.
 */
int store_caps_put(struct store *st, const char *relay, const struct store_caps *c, char *err,
                   size_t errlen);

/* Copies what the WAL holds into the database file without waiting for anyone (PASSIVE). */
void store_checkpoint(struct store *st);

#endif
