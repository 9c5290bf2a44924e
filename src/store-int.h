/*
 * store-int.h: what the store's own files share and nothing else includes.
 * store.c opens, migrates and closes the database and owns the per-connection
 * statements below; store-insert.c writes events, store-query.c reads them,
 * store-meta.c writes and reads the sync engine's and caps' tables. All of
 * them work on struct store, defined here.
 */
#ifndef NEGSYNC_STORE_INT_H
#define NEGSYNC_STORE_INT_H

#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "store.h"

/*
 * Every statement the insert path runs, prepared once per connection on first
 * use. Query statements depend on the filter and are prepared per call.
 */
enum stmt_id {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_HAS_ID,
    ST_GET_JSON,
    ST_INSERT_EVENT,
    ST_ANY_TOMB,
    ST_DELETE_TAG,
    ST_DELETE_TAGS_SCAN,
    ST_JSON_BY_SEQ,
    ST_TOMB_BY_ID,
    ST_TOMB_BY_ADDR,
    ST_ADDR_ROWS,
    ST_ADDR_ROWS_UNTIL,
    ST_HEAD_GET,
    ST_HEAD_PUT,
    ST_DELETE_SEQ,
    ST_AUTHOR_GET,
    ST_AUTHOR_NEW,
    ST_DELETE_AUTHOR,
    ST_INSERT_TOMB,
    ST_EVENT_BY_ID,
    ST_COUNT
};

/* Rows per INSERT statement when writing queued tag and author entries (tags_flush). */
#define FLUSH_ROWS 8

/*
 * A tag entry of an event stored in the batch in progress, not yet written
 * (see tags_flush). The value is raw (is_blob, 64 lowercase hex chars as
 * filter_tag_value_blob maps them) or points into the caller's event, which
 * outlives the batch.
 */
struct pending_tag {
    uint64_t key; /* the first bytes of (name, is_blob, value), see tags_flush */
    sqlite3_int64 seq;
    const char *text;
    size_t len;
    char name;
    unsigned char is_blob;
    uint8_t raw[32];
};

/* The events_by_author entry of an event stored in the batch in progress (see tags_flush). */
struct pending_author {
    sqlite3_int64 author, seq;
    uint64_t created_at;
    uint32_t kind;
};

/*
 * Author numbers already looked up or assigned (authors table), so that an
 * insert needs no query for them: open addressing on the pubkey's first
 * bytes. A pubkey whose probe runs long (keys made to collide) is simply
 * not cached. Cleared when a batch rolls back, which may take numbers
 * assigned in it back.
 */
#define AUTHOR_CACHE_SLOTS  16384 /* a power of two */
#define AUTHOR_CACHE_PROBES 16

struct author_slot {
    uint8_t pubkey[32];
    sqlite3_int64 author; /* 0: empty */
};

struct store {
    sqlite3 *db;
    char *path;
    sqlite3_stmt *stmts[ST_COUNT];
    sqlite3_stmt *tag_stmts[FLUSH_ROWS];    /* [k]: INSERT of k + 1 tag rows */
    sqlite3_stmt *author_stmts[FLUSH_ROWS]; /* [k]: INSERT of k + 1 events_by_author rows */
    /* Index entries not yet written, of the batch in progress (tags_flush). */
    struct pending_tag *pending;
    size_t npending, pending_cap;
    struct pending_author *pending_authors;
    size_t npending_authors, pending_authors_cap;
    struct author_slot *authors; /* AUTHOR_CACHE_SLOTS, allocated on first use */
    size_t nauthors;             /* used slots */
    /*
     * Set for the batch in progress while the deletions table is empty, as
     * it is in most databases: no event needs a tombstone lookup then.
     */
    int no_tombstones;
    int bulk_cache; /* STORE_BULK_CACHE_KB is set */
};

/* The SQL of each statement in enum stmt_id. */
extern const char *const store_stmt_sql[ST_COUNT];

/* Sets err to "<path>: <what>: <SQLite's message>"; returns -1. */
int store_db_err(struct store *st, char *err, size_t errlen, const char *what);

/* Statement which, reset and unbound, prepared on first use; NULL with a reason in err. */
sqlite3_stmt *store_stmt_get(struct store *st, enum stmt_id which, char *err, size_t errlen);

/* Runs a statement that returns no rows (or whose rows we ignore). */
int store_stmt_run(struct store *st, sqlite3_stmt *s, char *err, size_t errlen, const char *what);

/* Runs sql (no rows) on st's connection. */
int store_exec_sql(struct store *st, const char *sql, char *err, size_t errlen, const char *what);

/* The integer a one-row PRAGMA query returns, in *out. */
int store_pragma_int(struct store *st, const char *sql, int *out, char *err, size_t errlen);

/* The connection of st; it stays st's. */
sqlite3 *store_connection(struct store *st);

#endif
