/*
 * store: the SQLite event store.
 *
 * Schema. `events` holds one row per stored event: the raw 32-byte id and
 * pubkey, created_at, kind, dtag (the first d-tag value of an addressable
 * event, '' if it has none; '' for replaceable kinds; NULL for every other
 * kind, which keeps those rows out of the partial events_address index) and
 * the compact JSON we export and serve. `tags` indexes the first value of
 * every single-letter tag for `#x` filters, keyed (name, value, seq), a value
 * of 64 lowercase hex chars as its 32 bytes (filter_sql_bind_tag_value).
 * `events_by_author` has one entry per event, keyed (author, kind,
 * created_at, seq) with the pubkey's number in `authors`, for `authors`
 * filters (query_author_clause). Both are
 * written at the end of each batch, in key order (tags_flush).
 * filter_sql_where (filter.c) writes WHERE expressions over exactly these
 * names with the alias `e`; do not rename them.
 *
 * Relay semantics. So that our set converges with a relay's set whatever
 * order events arrive in, inserts follow NIP-01 and NIP-09:
 *
 *   - ephemeral kinds (20000-29999) are never stored;
 *   - replaceable (0, 3, 10000-19999) and addressable (30000-39999) kinds keep
 *     one version per address, (pubkey, kind) or (pubkey, kind, d): the
 *     newest, and on equal created_at the lowest id;
 *   - a deletion (kind 5) is stored, removes the events it names by `e` tag
 *     and the versions at an `a`-tag address with created_at <= its own, in
 *     both cases only events of the deletion's own pubkey, and leaves a
 *     tombstone in `deletions` that refuses those events if they arrive
 *     later. A deletion never removes another deletion: relays disagree on
 *     "undelete", and letting kind 5 delete kind 5 would make the outcome
 *     depend on arrival order.
 *
 * One subtlety makes arrival order matter unless handled: when the newest
 * version at an address is deleted by id, an older version arriving later
 * would find no newer row and be stored, while the order "old, new, delete"
 * stores nothing. `address_heads` therefore remembers, per address, the
 * newest version that was deleted or refused as deleted; an incoming version
 * must beat both the stored row and that mark. With it, the set stored at an
 * address is always "the best version ever seen, unless a deletion covers
 * it", which does not depend on order. The tests insert every permutation of
 * small scenarios to hold us to that.
 *
 * Connections. store_open is the only way to open the database, so every
 * connection gets WAL (readers never block the writer or each other),
 * synchronous=NORMAL (a commit survives a process crash; a power cut may
 * lose the last transactions but never corrupts), foreign keys and a busy
 * timeout. Writes take BEGIN IMMEDIATE: a deferred transaction that upgrades
 * from read to write cannot wait on the busy handler and fails at once with
 * "database is locked", which is exactly what users must never see.
 *
 * Migrations. `PRAGMA user_version` is the schema version; migrations[i]
 * takes the schema from version i to i+1. They run in one IMMEDIATE
 * transaction that re-reads the version inside it, so two processes opening
 * a fresh database at once migrate it once. Never edit a released migration;
 * append a new one.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sqlite3.h>

#include "event.h"
#include "filter.h"
#include "store-int.h"
#include "store.h"
#include "util.h"

/* Longer than any batch we write; shorter than a user's patience. */
#define STORE_BUSY_TIMEOUT_MS 30000

#define KIND_DELETION 5

/*
 * Page cache per connection, in KiB (a maximum, filled on demand); WAL pages
 * between automatic checkpoints; and the size the WAL file is cut back to
 * after one, in bytes.
 */
#define STORE_CACHE_KB "32768"
/*
 * The page cache of a connection once it writes a batch of at least
 * STORE_BULK_BATCH events (an import, a benchmark; sync writes a few hundred
 * at a time). A bulk batch touches a page of every random-keyed index (id,
 * author, e/p tag values) per event; once those indexes outgrow the cache,
 * each batch reads them back from the OS: at 200 000 events (about 30 MB of
 * such indexes) 128 MB instead of 32 MB saves about 1.2 us of the writer's
 * 13 us per event.
 */
#define STORE_BULK_CACHE_KB    "131072"
#define STORE_BULK_BATCH       1000
#define STORE_CHECKPOINT_PAGES "10000"
#define STORE_WAL_LIMIT        "67108864"

static const char migration_1[] =
    /* Events and their single-letter tags (see the top of this file). */
    "CREATE TABLE events ("
    "  seq INTEGER PRIMARY KEY,"
    "  id BLOB NOT NULL UNIQUE CHECK (length(id) = 32),"
    "  pubkey BLOB NOT NULL CHECK (length(pubkey) = 32),"
    "  created_at INTEGER NOT NULL,"
    "  kind INTEGER NOT NULL,"
    "  dtag TEXT,"
    "  json TEXT NOT NULL"
    ");"
    /* The (created_at, id) listing and time-ordered queries: a covering scan. */
    "CREATE INDEX events_created ON events(created_at, id);"
    "CREATE INDEX events_pubkey_kind ON events(pubkey, kind, created_at);"
    "CREATE INDEX events_kind ON events(kind, created_at);"
    /* Replaceable/addressable lookups by address. */
    "CREATE INDEX events_address ON events(pubkey, kind, dtag);"
    "CREATE TABLE tags ("
    "  seq INTEGER NOT NULL REFERENCES events(seq) ON DELETE CASCADE,"
    "  name TEXT NOT NULL,"
    "  value TEXT NOT NULL"
    ");"
    "CREATE INDEX tags_name_value ON tags(name, value, seq);"
    /* Without it every event deletion scans tags for the cascade. */
    "CREATE INDEX tags_seq ON tags(seq);"
    /*
     * NIP-09 tombstones: one row per e or a tag of a stored deletion, with
     * the deletion's pubkey and created_at. Exactly one target is set:
     * target_id (raw event id) or target_addr ("kind:pubkeyhex:d", "" d for
     * replaceable kinds; only addresses of the deletion's own pubkey).
     */
    "CREATE TABLE deletions ("
    "  seq INTEGER NOT NULL REFERENCES events(seq) ON DELETE CASCADE,"
    "  pubkey BLOB NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  target_id BLOB,"
    "  target_addr TEXT,"
    "  CHECK ((target_id IS NULL) <> (target_addr IS NULL))"
    ");"
    "CREATE INDEX deletions_target_id ON deletions(target_id, pubkey);"
    "CREATE INDEX deletions_target_addr ON deletions(target_addr, created_at);"
    "CREATE INDEX deletions_seq ON deletions(seq);"
    /*
     * Newest version ever seen at an address whose body is not stored
     * because a deletion removed or refused it (see the top of this file).
     * dtag is '' for replaceable kinds.
     */
    "CREATE TABLE address_heads ("
    "  pubkey BLOB NOT NULL,"
    "  kind INTEGER NOT NULL,"
    "  dtag TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  id BLOB NOT NULL,"
    "  PRIMARY KEY (pubkey, kind, dtag)"
    ") WITHOUT ROWID;"
    /* Relay capability cache (caps): NIP-11 facts and the NEG-OPEN verdict. */
    "CREATE TABLE relay_caps ("
    "  relay TEXT PRIMARY KEY,"
    "  supported INTEGER NOT NULL," /* 1 NIP-77 works, 0 it does not */
    "  reason TEXT,"
    "  checked_at INTEGER NOT NULL," /* unix time */
    "  latency_ms INTEGER,"
    "  nip11_software TEXT,"
    "  nip11_version TEXT,"
    "  nip11_supported_nips TEXT," /* JSON array */
    "  nip11_raw TEXT"
    ");"
    /* REQ fallback cursors; filter_json detects a filter edited under its name. */
    "CREATE TABLE req_cursors ("
    "  relay TEXT NOT NULL,"
    "  filter_name TEXT NOT NULL,"
    "  filter_json TEXT NOT NULL,"
    "  cursor INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (relay, filter_name)"
    ");"
    /* One row per sync job run, for `negsync status` and the benchmarks. */
    "CREATE TABLE sync_runs ("
    "  run INTEGER PRIMARY KEY,"
    "  relay TEXT NOT NULL,"
    "  filter TEXT NOT NULL,"
    "  mode TEXT NOT NULL," /* neg | req */
    "  fallback_reason TEXT,"
    "  started INTEGER NOT NULL," /* unix time */
    "  duration_ms INTEGER NOT NULL DEFAULT 0,"
    "  rounds INTEGER NOT NULL DEFAULT 0,"
    "  bytes_sent INTEGER NOT NULL DEFAULT 0,"
    "  bytes_received INTEGER NOT NULL DEFAULT 0,"
    "  wire_sent INTEGER NOT NULL DEFAULT 0,"
    "  wire_received INTEGER NOT NULL DEFAULT 0,"
    "  est_req_bytes INTEGER NOT NULL DEFAULT 0,"
    "  have INTEGER NOT NULL DEFAULT 0,"
    "  need INTEGER NOT NULL DEFAULT 0,"
    "  fetched INTEGER NOT NULL DEFAULT 0,"
    "  stored INTEGER NOT NULL DEFAULT 0,"
    "  duplicates INTEGER NOT NULL DEFAULT 0,"
    "  invalid INTEGER NOT NULL DEFAULT 0,"
    "  uploaded_ok INTEGER NOT NULL DEFAULT 0,"
    "  uploaded_rejected INTEGER NOT NULL DEFAULT 0,"
    "  result TEXT," /* ok | error | ... */
    "  error TEXT"
    ");"
    "CREATE INDEX sync_runs_relay ON sync_runs(relay, started);"
    /* Per-relay settings the TUI toggles and the config seeds. */
    "CREATE TABLE relay_settings ("
    "  relay TEXT PRIMARY KEY,"
    "  negentropy TEXT NOT NULL DEFAULT 'auto' CHECK (negentropy IN ('auto', 'on', 'off'))"
    ");";

/*
 * Cheaper inserts, same data. The address index only covers rows that have
 * an address (replaceable kinds now store dtag '' instead of NULL), so a
 * plain note no longer pays for it; and tags is clustered by (seq, name,
 * value) instead of being a rowid table with a separate seq index, one
 * b-tree fewer per tag. A tag repeated verbatim in one event is kept once,
 * which no filter can tell apart.
 */
static const char migration_2[] =
    "DROP INDEX events_address;"
    "UPDATE events SET dtag = '' WHERE dtag IS NULL AND "
    "  (kind IN (0, 3) OR kind BETWEEN 10000 AND 19999);"
    "CREATE INDEX events_address ON events(pubkey, kind, dtag) WHERE dtag IS NOT NULL;"
    "CREATE TABLE tags_new ("
    "  seq INTEGER NOT NULL REFERENCES events(seq) ON DELETE CASCADE,"
    "  name TEXT NOT NULL,"
    "  value TEXT NOT NULL,"
    "  PRIMARY KEY (seq, name, value)"
    ") WITHOUT ROWID;"
    "INSERT OR IGNORE INTO tags_new (seq, name, value) SELECT seq, name, value FROM tags;"
    "DROP TABLE tags;"
    "ALTER TABLE tags_new RENAME TO tags;"
    "CREATE INDEX tags_name_value ON tags(name, value);";

/*
 * Cheaper inserts again, same data. Every tag was two b-tree entries, a
 * (seq, name, value) row and a (name, value) index entry, and the index is
 * random-keyed: a batch dirties most of its pages, and each dirty page is
 * written to the WAL at commit. Now tags is one b-tree clustered by (name,
 * value, seq), which is what #x filters search; and a value of 64 lowercase
 * hex chars (every e and p tag) is kept as its 32 raw bytes (see
 * filter_sql_bind_tag_value), which halves it. Without a seq index there is
 * no ON DELETE CASCADE: deleting an event deletes its tags explicitly, found
 * from its JSON (event_row_delete). negsync_tag_value is the same mapping as
 * filter_sql_bind_tag_value, registered on every connection by store_open.
 */
static const char migration_3[] =
    "CREATE TABLE tags_new ("
    "  name TEXT NOT NULL,"
    "  value NOT NULL," /* text, or a 32-byte blob for 64 lowercase hex */
    "  seq INTEGER NOT NULL,"
    "  PRIMARY KEY (name, value, seq)"
    ") WITHOUT ROWID;"
    "INSERT OR IGNORE INTO tags_new (name, value, seq) "
    "  SELECT name, negsync_tag_value(value), seq FROM tags;"
    "DROP TABLE tags;"
    "ALTER TABLE tags_new RENAME TO tags;";

/*
 * Cheaper inserts again, same data. events_pubkey_kind was the costliest
 * index to maintain: a 32-byte key per event, inserted at one of as many
 * places as there are authors, in arrival order. Each pubkey now gets a
 * number in `authors`, and the index entries live in their own table,
 * events_by_author (author, kind, created_at, seq), a quarter of the size,
 * which the insert path fills like tags: queued per batch and written in
 * key order at its end (tags_flush). Queries with `authors` reach events
 * through it (query_author_clause). Author numbers are never reused or
 * removed.
 */
static const char migration_4[] = "CREATE TABLE authors ("
                                  "  author INTEGER PRIMARY KEY,"
                                  "  pubkey BLOB NOT NULL UNIQUE"
                                  ");"
                                  "INSERT INTO authors (pubkey) SELECT DISTINCT pubkey FROM events;"
                                  "CREATE TABLE events_by_author ("
                                  "  author INTEGER NOT NULL,"
                                  "  kind INTEGER NOT NULL,"
                                  "  created_at INTEGER NOT NULL,"
                                  "  seq INTEGER NOT NULL,"
                                  "  PRIMARY KEY (author, kind, created_at, seq)"
                                  ") WITHOUT ROWID;"
                                  "INSERT INTO events_by_author (author, kind, created_at, seq) "
                                  "  SELECT u.author, e.kind, e.created_at, e.seq FROM events e "
                                  "  JOIN authors u ON u.pubkey = e.pubkey "
                                  "  ORDER BY u.author, e.kind, e.created_at, e.seq;"
                                  "DROP INDEX events_pubkey_kind;";

/*
 * The negentropy listing of a filter with `kinds` (the usual sync filter)
 * went through events_kind (kind, created_at) and then to every event's row
 * for its id: a random read per event, most of a sync's time on both sides
 * of an incremental run. With the id in the index the listing of one kind is
 * an index-only scan, already in (created_at, id) order.
 */
static const char migration_5[] = "DROP INDEX events_kind;"
                                  "CREATE INDEX events_kind ON events(kind, created_at, id);";

static const char *const migrations[] = {
    migration_1, migration_2, migration_3, migration_4, migration_5,
};
#define NMIGRATIONS ((int)(sizeof(migrations) / sizeof(migrations[0])))

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

static const char *const stmt_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_HAS_ID] = "SELECT 1 FROM events WHERE id = ?1",
    [ST_GET_JSON] = "SELECT json FROM events WHERE id = ?1",
    /* A duplicate id is not an error: insert_one reads sqlite3_changes() to tell. */
    [ST_INSERT_EVENT] = "INSERT INTO events (id, pubkey, created_at, kind, dtag, json) "
                        "VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (id) DO NOTHING",
    [ST_ANY_TOMB] = "SELECT 1 FROM deletions LIMIT 1",
    [ST_DELETE_TAG] = "DELETE FROM tags WHERE name = ?1 AND value = ?2 AND seq = ?3",
    /* Only for a stored JSON that does not parse: a scan of every tag. */
    [ST_DELETE_TAGS_SCAN] = "DELETE FROM tags WHERE seq = ?1",
    [ST_JSON_BY_SEQ] = "SELECT json FROM events WHERE seq = ?1",
    [ST_TOMB_BY_ID] = "SELECT 1 FROM deletions WHERE target_id = ?1 AND pubkey = ?2 LIMIT 1",
    [ST_TOMB_BY_ADDR] = "SELECT 1 FROM deletions WHERE target_addr = ?1 AND created_at >= ?2 "
                        "LIMIT 1",
    /* "dtag = ?3" (never NULL) is what lets SQLite use the partial events_address index. */
    [ST_ADDR_ROWS] = "SELECT seq, created_at, id FROM events "
                     "WHERE pubkey = ?1 AND kind = ?2 AND dtag = ?3",
    [ST_ADDR_ROWS_UNTIL] = "SELECT seq, created_at, id FROM events "
                           "WHERE pubkey = ?1 AND kind = ?2 AND dtag = ?3 AND created_at <= ?4",
    [ST_HEAD_GET] = "SELECT created_at, id FROM address_heads "
                    "WHERE pubkey = ?1 AND kind = ?2 AND dtag = ?3",
    [ST_HEAD_PUT] = "INSERT INTO address_heads (pubkey, kind, dtag, created_at, id) "
                    "VALUES (?1, ?2, ?3, ?4, ?5) "
                    "ON CONFLICT (pubkey, kind, dtag) DO UPDATE SET "
                    "created_at = excluded.created_at, id = excluded.id "
                    "WHERE excluded.created_at > address_heads.created_at "
                    "OR (excluded.created_at = address_heads.created_at "
                    "AND excluded.id < address_heads.id)",
    [ST_DELETE_SEQ] = "DELETE FROM events WHERE seq = ?1",
    [ST_AUTHOR_GET] = "SELECT author FROM authors WHERE pubkey = ?1",
    [ST_AUTHOR_NEW] = "INSERT INTO authors (pubkey) VALUES (?1)",
    /* Before ST_DELETE_SEQ: the key comes from the event row. */
    [ST_DELETE_AUTHOR] = "DELETE FROM events_by_author "
                         "WHERE (author, kind, created_at, seq) = "
                         "(SELECT u.author, e.kind, e.created_at, e.seq FROM events e "
                         "JOIN authors u ON u.pubkey = e.pubkey WHERE e.seq = ?1)",
    [ST_INSERT_TOMB] = "INSERT INTO deletions (seq, pubkey, created_at, target_id, target_addr) "
                       "VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_EVENT_BY_ID] = "SELECT seq, pubkey, kind, dtag, created_at FROM events WHERE id = ?1",
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

/* The address of a replaceable or addressable event. */
struct address {
    uint8_t pubkey[32];
    uint32_t kind;
    int has_d; /* addressable: d below is the dtag column; replaceable: dtag '' */
    const char *d;
    size_t dlen;
};

static int db_err(struct store *st, char *err, size_t errlen, const char *what)
{
    set_error(err, errlen, "%s: %s: %s", st->path, what, sqlite3_errmsg(st->db));
    return -1;
}

static sqlite3_stmt *stmt_get(struct store *st, enum stmt_id which, char *err, size_t errlen)
{
    sqlite3_stmt *s = st->stmts[which];

    if (s != NULL) {
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
        return s;
    }
    if (sqlite3_prepare_v3(st->db, stmt_sql[which], -1, SQLITE_PREPARE_PERSISTENT, &s, NULL) !=
        SQLITE_OK) {
        db_err(st, err, errlen, "prepare");
        return NULL;
    }
    st->stmts[which] = s;
    return s;
}

/* Runs a statement that returns no rows (or whose rows we ignore). */
static int stmt_run(struct store *st, sqlite3_stmt *s, char *err, size_t errlen, const char *what)
{
    int rc;

    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        ;
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return db_err(st, err, errlen, what);
    return 0;
}

/* Runs sql on any connection, store_open's or not; path names it in err. */
static int db_exec(sqlite3 *db, const char *path, const char *sql, char *err, size_t errlen,
                   const char *what)
{
    char *msg = NULL;

    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        set_error(err, errlen, "%s: %s: %s", path, what, msg != NULL ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

static int exec_sql(struct store *st, const char *sql, char *err, size_t errlen, const char *what)
{
    return db_exec(st->db, st->path, sql, err, errlen, what);
}

int store_configure(sqlite3 *db, char *err, size_t errlen)
{
    const char *path = sqlite3_db_filename(db, "main");

    if (path == NULL || path[0] == '\0') /* a temporary or in-memory database */
        path = "database";
    return db_exec(
        db, path,
        "PRAGMA synchronous = NORMAL;"
        /* Fewer, larger checkpoints: each rewrites a hot page once, not once per batch. */
        "PRAGMA wal_autocheckpoint = " STORE_CHECKPOINT_PAGES ";"
        "PRAGMA journal_size_limit = " STORE_WAL_LIMIT ";",
        err, errlen, "configure");
}

static int pragma_int(struct store *st, const char *sql, int *out, char *err, size_t errlen)
{
    sqlite3_stmt *s;
    int rc;

    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK)
        return db_err(st, err, errlen, sql);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    if (rc != SQLITE_ROW)
        return db_err(st, err, errlen, sql);
    return 0;
}

/* SQL negsync_tag_value(v): v in the form the tags table keeps it (filter_tag_value_blob). */
static void sql_tag_value(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    uint8_t raw[32];

    (void)argc;
    if (sqlite3_value_type(argv[0]) == SQLITE_TEXT &&
        filter_tag_value_blob((const char *)sqlite3_value_text(argv[0]),
                              (size_t)sqlite3_value_bytes(argv[0]), raw))
        sqlite3_result_blob(ctx, raw, sizeof raw, SQLITE_TRANSIENT);
    else
        sqlite3_result_value(ctx, argv[0]);
}

static int store_migrate(struct store *st, char *err, size_t errlen)
{
    char sql[64];
    int version;

    /* The common case, an up-to-date schema, takes no write lock. */
    if (pragma_int(st, "PRAGMA user_version", &version, err, errlen) < 0)
        return -1;
    if (version == NMIGRATIONS)
        return 0;
    if (exec_sql(st, "BEGIN IMMEDIATE", err, errlen, "begin migration") < 0)
        return -1;
    if (pragma_int(st, "PRAGMA user_version", &version, err, errlen) < 0)
        goto fail;
    if (version > NMIGRATIONS) {
        set_error(err, errlen,
                  "%s: schema version %d is newer than this negsync understands (%d); "
                  "upgrade negsync",
                  st->path, version, NMIGRATIONS);
        goto fail;
    }
    for (; version < NMIGRATIONS; version++) {
        char what[48];
        snprintf(what, sizeof what, "migration %d", version + 1);
        if (exec_sql(st, migrations[version], err, errlen, what) < 0)
            goto fail;
    }
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", NMIGRATIONS);
    if (exec_sql(st, sql, err, errlen, "set schema version") < 0)
        goto fail;
    if (exec_sql(st, "COMMIT", err, errlen, "commit migration") < 0)
        goto fail;
    return 0;
fail:
    sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

int store_schema_version(void)
{
    return NMIGRATIONS;
}

/* What every connection, read-write or read-only, is set up with. */
static int store_setup(struct store *st, char *err, size_t errlen)
{
    if (exec_sql(st,
                 "PRAGMA foreign_keys = ON;"
                 "PRAGMA temp_store = MEMORY;"
                 /*
                  * A batch of a thousand events touches a page of each
                  * random-keyed index (id, pubkey, e/p tag values) per
                  * event; with SQLite's default 2 MB cache the writer
                  * re-reads them from the OS all the time. Readers that
                  * only stream never fill it.
                  */
                 "PRAGMA cache_size = -" STORE_CACHE_KB ";",
                 err, errlen, "configure") < 0)
        return -1;
    if (sqlite3_create_function_v2(st->db, "negsync_tag_value", 1,
                                   SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS, NULL,
                                   sql_tag_value, NULL, NULL, NULL) != SQLITE_OK)
        return db_err(st, err, errlen, "register functions");
    return 0;
}

struct store *store_open(const char *path, char *err, size_t errlen)
{
    struct store *st = xcalloc(1, sizeof *st);
    sqlite3_stmt *s = NULL;
    int rc;

    st->path = xstrdup(path);
    /* One connection per thread (see store.h), so SQLite's own mutexes are not needed. */
    rc = sqlite3_open_v2(path, &st->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        if (st->db != NULL)
            db_err(st, err, errlen, "open");
        else
            set_error(err, errlen, "%s: open: out of memory", path);
        goto fail;
    }
    sqlite3_extended_result_codes(st->db, 1);
    /* First, so that everything below waits for other connections instead of failing. */
    sqlite3_busy_timeout(st->db, STORE_BUSY_TIMEOUT_MS);

    /*
     * Switching a new file to WAL takes an exclusive lock, and when several
     * connections open the file at the same moment SQLite refuses some of
     * them at once, without the busy handler (waiting could deadlock):
     * tests/test-store's threads saw "database is locked" here about one run
     * in five. Retry for as long as the busy timeout.
     */
    for (int waited_ms = 0;; waited_ms += 10) {
        rc = sqlite3_prepare_v2(st->db, "PRAGMA journal_mode = WAL", -1, &s, NULL);
        if (rc == SQLITE_OK)
            rc = sqlite3_step(s);
        if (rc == SQLITE_ROW)
            break;
        if (((rc & 0xff) != SQLITE_BUSY && (rc & 0xff) != SQLITE_LOCKED) ||
            waited_ms >= STORE_BUSY_TIMEOUT_MS) {
            db_err(st, err, errlen, "enable WAL");
            goto fail;
        }
        sqlite3_finalize(s);
        s = NULL;
        sqlite3_sleep(10);
    }
    {
        /* "memory" for :memory: databases, which cannot use WAL and need not. */
        const char *mode = (const char *)sqlite3_column_text(s, 0);
        if (mode == NULL || (strcmp(mode, "wal") != 0 && strcmp(mode, "memory") != 0)) {
            set_error(err, errlen, "%s: cannot enable WAL (journal mode is %s)", path,
                      mode != NULL ? mode : "unknown");
            goto fail;
        }
    }
    sqlite3_finalize(s);
    s = NULL;
    if (store_setup(st, err, errlen) < 0 || store_configure(st->db, err, errlen) < 0)
        goto fail;
    if (store_migrate(st, err, errlen) < 0)
        goto fail;
    return st;
fail:
    sqlite3_finalize(s);
    store_close(st);
    return NULL;
}

/*
 * A "file:" URI for path with the query q, for what only a URI can ask
 * (immutable=1). Every byte but [A-Za-z0-9/._-~] is %-escaped, so '?', '#'
 * and '%' in a file name mean nothing. Caller frees.
 */
static char *store_uri(const char *path, const char *q)
{
    static const char hex[] = "0123456789ABCDEF";
    struct buf b = {0};

    buf_append(&b, "file:", 5);
    if (path[0] == '/')
        buf_append(&b, "//", 2); /* an empty authority: "file:///abs/path" */
    for (const unsigned char *p = (const unsigned char *)path; *p != '\0'; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            strchr("/._-~", *p) != NULL) {
            buf_push(&b, *p);
        } else {
            buf_push(&b, '%');
            buf_push(&b, (uint8_t)hex[*p >> 4]);
            buf_push(&b, (uint8_t)hex[*p & 15]);
        }
    }
    buf_push(&b, '?');
    buf_append(&b, q, strlen(q));
    buf_push(&b, '\0');
    return (char *)b.data;
}

/* Opens st->db on name (a path, or a URI with SQLITE_OPEN_URI in flags), never creating it. */
static int store_open_ro_db(struct store *st, const char *name, int flags, char *err, size_t errlen)
{
    if (sqlite3_open_v2(name, &st->db, SQLITE_OPEN_NOMUTEX | flags, NULL) != SQLITE_OK) {
        if (st->db != NULL)
            return db_err(st, err, errlen, "open");
        set_error(err, errlen, "%s: open: out of memory", st->path);
        return -1;
    }
    sqlite3_extended_result_codes(st->db, 1);
    sqlite3_busy_timeout(st->db, STORE_BUSY_TIMEOUT_MS);
    return 0;
}

/* store_open_readonly and store_open_unchanged: migrate says whether an older schema is upgraded. */
static struct store *store_open_ro(const char *path, int migrate, char *err, size_t errlen)
{
    struct store *st;
    struct stat sb;
    int version, rc;

    /* Never create it; and SQLite would only say "unable to open database file". */
    if (stat(path, &sb) < 0) {
        set_error(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    st = xcalloc(1, sizeof *st);
    st->path = xstrdup(path);
    /*
     * Read-write where the file allows it (SQLite falls back to read-only
     * where it does not), so that closing the last connection removes the
     * -wal and -shm files as any other would; query_only below keeps it
     * from writing anything else.
     */
    if (store_open_ro_db(st, path, SQLITE_OPEN_READWRITE, err, errlen) < 0)
        goto fail;
    rc = pragma_int(st, "PRAGMA user_version", &version, err, errlen);
    if (rc < 0 && ((sqlite3_extended_errcode(st->db) & 0xff) == SQLITE_READONLY ||
                   (sqlite3_extended_errcode(st->db) & 0xff) == SQLITE_CANTOPEN)) {
        /*
         * A WAL database is read through its -shm file, which SQLite cannot
         * create in a directory this user may not write. Without a -wal file
         * (the last writer closed it cleanly) the database file holds every
         * committed transaction, and it can be read as immutable: no -shm,
         * no locks. Only a writer that could create files in that directory
         * could change it meanwhile. With a -wal file, committed events may
         * be in it alone: reading without it would silently miss them.
         */
        char *wal = xmalloc(strlen(path) + 5);
        char *uri;

        sprintf(wal, "%s-wal", path);
        rc = stat(wal, &sb) == 0 && sb.st_size > 0 ? -1 : 0;
        free(wal);
        if (rc < 0) {
            set_error(err, errlen,
                      "%s: cannot read it here: its write-ahead log (-wal file) needs a -shm "
                      "file this user cannot create; open it once where its directory is "
                      "writable",
                      path);
            goto fail;
        }
        sqlite3_close_v2(st->db);
        st->db = NULL;
        uri = store_uri(path, "immutable=1");
        rc = store_open_ro_db(st, uri, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, err, errlen);
        free(uri);
        if (rc == 0)
            rc = pragma_int(st, "PRAGMA user_version", &version, err, errlen);
    }
    if (rc < 0)
        goto fail;
    if (store_setup(st, err, errlen) < 0)
        goto fail;
    /*
     * An older schema is brought up to date where the file can be written,
     * as store_open would: the queries need today's schema, and an export
     * right after upgrading negsync must not fail for it.
     */
    if (migrate && version > 0 && version < NMIGRATIONS && !sqlite3_db_readonly(st->db, "main")) {
        if (store_migrate(st, err, errlen) < 0 ||
            pragma_int(st, "PRAGMA user_version", &version, err, errlen) < 0)
            goto fail;
    }
    if (version != NMIGRATIONS) {
        if (version == 0)
            set_error(err, errlen, "%s: not a negsync database (no schema)", path);
        else if (version > NMIGRATIONS)
            set_error(err, errlen,
                      "%s: schema version %d is newer than this negsync understands (%d); "
                      "upgrade negsync",
                      path, version, NMIGRATIONS);
        else if (!migrate)
            set_error(err, errlen,
                      "%s: schema version %d is older than this negsync's (%d), and this "
                      "command does not upgrade it: run negsync sync (or import) once first",
                      path, version, NMIGRATIONS);
        else
            set_error(err, errlen,
                      "%s: schema version %d is older than this negsync's (%d), and it cannot "
                      "be upgraded here: run a command that writes (import or sync) where it "
                      "can be written",
                      path, version, NMIGRATIONS);
        goto fail;
    }
    /* query_only: a bug that tries to write gets an error, whatever the file allows. */
    if (exec_sql(st, "PRAGMA query_only = ON", err, errlen, "configure") < 0)
        goto fail;
    return st;
fail:
    store_close(st);
    return NULL;
}

struct store *store_open_readonly(const char *path, char *err, size_t errlen)
{
    return store_open_ro(path, 1, err, errlen);
}

struct store *store_open_unchanged(const char *path, char *err, size_t errlen)
{
    return store_open_ro(path, 0, err, errlen);
}

void store_close(struct store *st)
{
    if (st == NULL)
        return;
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(st->stmts[i]);
    for (int i = 0; i < FLUSH_ROWS; i++)
        sqlite3_finalize(st->tag_stmts[i]);
    for (int i = 0; i < FLUSH_ROWS; i++)
        sqlite3_finalize(st->author_stmts[i]);
    free(st->pending);
    free(st->pending_authors);
    free(st->authors);
    /* close_v2: a statement a caller leaked must not leave the file open forever. */
    sqlite3_close_v2(st->db);
    free(st->path);
    free(st);
}

/* mkdir -p for the directory part of path (everything before the last '/'). */
static int make_parent_dirs(char *path, char *err, size_t errlen)
{
    char *slash = strrchr(path, '/');

    if (slash == NULL || slash == path)
        return 0;
    *slash = '\0';
    for (char *p = path + 1; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0700) < 0 && errno != EEXIST) {
            set_error(err, errlen, "%s: %s", path, strerror(errno));
            *p = '/';
            *slash = '/';
            return -1;
        }
        *p = '/';
    }
    if (mkdir(path, 0700) < 0 && errno != EEXIST) {
        set_error(err, errlen, "%s: %s", path, strerror(errno));
        *slash = '/';
        return -1;
    }
    *slash = '/';
    return 0;
}

char *store_default_path(char *err, size_t errlen)
{
    const char *xdg = getenv("XDG_DATA_HOME");
    const char *home = getenv("HOME");
    char *path;
    size_t n;

    /* The XDG spec says a relative $XDG_DATA_HOME is invalid and must be ignored. */
    if (xdg != NULL && xdg[0] == '/') {
        n = strlen(xdg) + sizeof "/negsync/negsync.db";
        path = xmalloc(n);
        snprintf(path, n, "%s/negsync/negsync.db", xdg);
    } else if (home != NULL && home[0] != '\0') {
        n = strlen(home) + sizeof "/.local/share/negsync/negsync.db";
        path = xmalloc(n);
        snprintf(path, n, "%s/.local/share/negsync/negsync.db", home);
    } else {
        set_error(err, errlen, "neither $XDG_DATA_HOME nor $HOME is set; use -d FILE");
        return NULL;
    }
    if (make_parent_dirs(path, err, errlen) < 0) {
        free(path);
        return NULL;
    }
    return path;
}

const char *store_outcome_name(enum store_outcome o)
{
    switch (o) {
    case STORE_INSERTED: return "inserted";
    case STORE_DUPLICATE: return "duplicate";
    case STORE_REPLACED: return "replaced";
    case STORE_REJECTED: return "rejected";
    case STORE_DELETED: return "deleted";
    }
    return "?";
}

/* ---- inserts ---- */

static int kind_is_addressed(uint32_t kind)
{
    return event_kind_is_replaceable(kind) || event_kind_is_addressable(kind);
}

/*
 * The address of ev. The d value is that of the first d tag that has a value
 * (as event_tag_value and strfry pick it), "" when there is none.
 */
static void event_address(const struct event *ev, struct address *a)
{
    memcpy(a->pubkey, ev->pubkey, 32);
    a->kind = ev->kind;
    a->has_d = event_kind_is_addressable(ev->kind);
    a->d = "";
    a->dlen = 0;
    if (!a->has_d)
        return;
    for (size_t i = 0; i < ev->ntags; i++) {
        const struct event_tag *t = &ev->tags[i];
        if (t->nfields >= 2 && t->lens[0] == 1 && t->fields[0][0] == 'd') {
            a->d = t->fields[1];
            a->dlen = t->lens[1];
            break;
        }
    }
}

/* "kind:pubkeyhex:d", the form tombstones store; caller frees the buffer. */
static void address_format(const struct address *a, struct buf *out)
{
    char head[16 + 65 + 2];
    char hex[65];

    hex_encode(a->pubkey, 32, hex);
    snprintf(head, sizeof head, "%u:%s:", (unsigned)a->kind, hex);
    out->len = 0;
    buf_append(out, head, strlen(head));
    if (a->has_d)
        buf_append(out, a->d, a->dlen);
}

static void bind_address(sqlite3_stmt *s, const struct address *a)
{
    sqlite3_bind_blob(s, 1, a->pubkey, 32, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, a->kind);
    sqlite3_bind_text(s, 3, a->has_d ? a->d : "", (int)(a->has_d ? a->dlen : 0), SQLITE_STATIC);
}

/* Does version (c1, id1) win over (c2, id2)? Newer wins; on a tie, the lower id. */
static int version_beats(uint64_t c1, const uint8_t *id1, uint64_t c2, const uint8_t *id2)
{
    if (c1 != c2)
        return c1 > c2;
    return memcmp(id1, id2, 32) < 0;
}

static int is_tag_letter(const struct event_tag *t)
{
    char c;

    if (t->nfields < 2 || t->lens[0] != 1)
        return 0;
    c = t->fields[0][0];
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Queues the single-letter tag entries of the event just stored as seq (see tags_flush). */
static void tags_queue(struct store *st, const struct event *ev, sqlite3_int64 seq)
{
    for (size_t i = 0; i < ev->ntags; i++) {
        const struct event_tag *t = &ev->tags[i];
        struct pending_tag *p;
        if (!is_tag_letter(t))
            continue;
        if (st->npending == st->pending_cap) {
            st->pending_cap = st->pending_cap > 0 ? 2 * st->pending_cap : 256;
            st->pending = xreallocarray(st->pending, st->pending_cap, sizeof *st->pending);
        }
        p = &st->pending[st->npending++];
        p->seq = seq;
        p->name = t->fields[0][0];
        p->text = t->fields[1];
        p->len = t->lens[1];
        p->is_blob = (unsigned char)filter_tag_value_blob(t->fields[1], t->lens[1], p->raw);
        p->key = (uint64_t)(unsigned char)p->name << 56 | (uint64_t)p->is_blob << 48;
        for (size_t k = 0; k < 6; k++) {
            /* SQLite sorts text before blobs, and a text before its extensions. */
            unsigned c = p->is_blob ? p->raw[k] : k < p->len ? (unsigned char)p->text[k] : 0;
            p->key |= (uint64_t)c << (40 - 8 * k);
        }
    }
}

/* A queued tag entry (pending[at]) and its sort key. */
struct tag_order {
    uint64_t key;
    size_t at;
};

/*
 * Sorts n entries by key, keeping queue order among equal keys: a stable
 * radix sort, one byte per pass from the lowest, skipping bytes that all
 * keys share. tmp has room for n; returns whichever of a and tmp holds the
 * result. At 60 000 entries a batch it takes a fraction of what qsort did.
 */
static struct tag_order *tag_order_sort(struct tag_order *a, struct tag_order *tmp, size_t n)
{
    for (int shift = 0; shift < 64 && n > 1; shift += 8) {
        size_t count[256] = {0}, pos = 0;
        struct tag_order *t;
        for (size_t i = 0; i < n; i++)
            count[(a[i].key >> shift) & 0xff]++;
        if (count[(a[0].key >> shift) & 0xff] == n)
            continue;
        for (int d = 0; d < 256; d++) {
            size_t c = count[d];
            count[d] = pos;
            pos += c;
        }
        for (size_t i = 0; i < n; i++)
            tmp[count[(a[i].key >> shift) & 0xff]++] = a[i];
        t = a;
        a = tmp;
        tmp = t;
    }
    return a;
}

/* "<head> VALUES (?,...),..." with k rows of ncols, prepared once per connection in cache[k - 1]. */
static sqlite3_stmt *rows_stmt(struct store *st, sqlite3_stmt **cache, const char *head, int ncols,
                               int k, char *err, size_t errlen)
{
    struct buf sql = {0};
    sqlite3_stmt *s = cache[k - 1];
    int rc;

    if (s != NULL)
        return s;
    buf_append(&sql, head, strlen(head));
    buf_append(&sql, " VALUES ", 8);
    for (int j = 0; j < k; j++) {
        buf_append(&sql, j > 0 ? ",(?" : "(?", j > 0 ? 3 : 2);
        for (int c = 1; c < ncols; c++)
            buf_append(&sql, ",?", 2);
        buf_push(&sql, ')');
    }
    buf_push(&sql, '\0');
    rc =
        sqlite3_prepare_v3(st->db, (const char *)sql.data, -1, SQLITE_PREPARE_PERSISTENT, &s, NULL);
    buf_free(&sql);
    if (rc != SQLITE_OK) {
        db_err(st, err, errlen, "prepare");
        return NULL;
    }
    cache[k - 1] = s;
    return s;
}

static struct author_slot *author_cache_find(struct store *st, const uint8_t pubkey[32])
{
    uint64_t h;

    if (st->authors == NULL)
        st->authors = xcalloc(AUTHOR_CACHE_SLOTS, sizeof *st->authors);
    memcpy(&h, pubkey, sizeof h);
    for (int i = 0; i < AUTHOR_CACHE_PROBES; i++) {
        struct author_slot *e = &st->authors[(h + (uint64_t)i) & (AUTHOR_CACHE_SLOTS - 1)];
        if (e->author == 0 || memcmp(e->pubkey, pubkey, 32) == 0)
            return e;
    }
    return NULL;
}

static void author_cache_clear(struct store *st)
{
    if (st->authors != NULL && st->nauthors > 0)
        memset(st->authors, 0, AUTHOR_CACHE_SLOTS * sizeof *st->authors);
    st->nauthors = 0;
}

/* The number of pubkey in `authors`, assigning one if it has none; -1 on error. */
static sqlite3_int64 author_number(struct store *st, const uint8_t pubkey[32], char *err,
                                   size_t errlen)
{
    struct author_slot *e;
    sqlite3_stmt *s;
    sqlite3_int64 author = 0;
    int rc;

    /* Never more than half full, so that probes stay short. */
    if (st->nauthors >= AUTHOR_CACHE_SLOTS / 2)
        author_cache_clear(st);
    e = author_cache_find(st, pubkey);
    if (e != NULL && e->author != 0)
        return e->author;

    if ((s = stmt_get(st, ST_AUTHOR_GET, err, errlen)) == NULL)
        return -1;
    sqlite3_bind_blob(s, 1, pubkey, 32, SQLITE_STATIC);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        author = sqlite3_column_int64(s, 0);
        rc = SQLITE_DONE;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return db_err(st, err, errlen, "look up author");
    if (author == 0) {
        if ((s = stmt_get(st, ST_AUTHOR_NEW, err, errlen)) == NULL)
            return -1;
        sqlite3_bind_blob(s, 1, pubkey, 32, SQLITE_STATIC);
        if (stmt_run(st, s, err, errlen, "add author") < 0)
            return -1;
        author = sqlite3_last_insert_rowid(st->db);
    }
    if (e != NULL && author > 0) {
        memcpy(e->pubkey, pubkey, 32);
        e->author = author;
        st->nauthors++;
    }
    return author;
}

static int author_queue(struct store *st, const struct event *ev, sqlite3_int64 seq, char *err,
                        size_t errlen)
{
    struct pending_author *p;
    sqlite3_int64 author = author_number(st, ev->pubkey, err, errlen);

    if (author < 0)
        return -1;
    if (st->npending_authors == st->pending_authors_cap) {
        st->pending_authors_cap = st->pending_authors_cap > 0 ? 2 * st->pending_authors_cap : 256;
        st->pending_authors = xreallocarray(st->pending_authors, st->pending_authors_cap,
                                            sizeof *st->pending_authors);
    }
    p = &st->pending_authors[st->npending_authors++];
    p->author = author;
    p->created_at = ev->created_at;
    p->kind = ev->kind;
    p->seq = seq;
    return 0;
}

/* The order of the events_by_author primary key. */
static int pending_author_cmp(const void *pa, const void *pb)
{
    const struct pending_author *a = pa, *b = pb;

    if (a->author != b->author)
        return a->author < b->author ? -1 : 1;
    if (a->kind != b->kind)
        return a->kind < b->kind ? -1 : 1;
    if (a->created_at != b->created_at)
        return a->created_at < b->created_at ? -1 : 1;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static int authors_flush(struct store *st, char *err, size_t errlen)
{
    struct pending_author *p = st->pending_authors;
    size_t n = st->npending_authors;

    if (n == 0)
        return 0;
    st->npending_authors = 0;
    qsort(p, n, sizeof *p, pending_author_cmp);
    for (size_t i = 0; i < n;) {
        int k = n - i < FLUSH_ROWS ? (int)(n - i) : FLUSH_ROWS;
        sqlite3_stmt *s =
            rows_stmt(st, st->author_stmts,
                      "INSERT OR IGNORE INTO events_by_author (author, kind, created_at, seq)", 4,
                      k, err, errlen);
        if (s == NULL)
            return -1;
        for (int j = 0; j < k; j++, i++) {
            sqlite3_bind_int64(s, 4 * j + 1, p[i].author);
            sqlite3_bind_int64(s, 4 * j + 2, p[i].kind);
            sqlite3_bind_int64(s, 4 * j + 3, (sqlite3_int64)p[i].created_at);
            sqlite3_bind_int64(s, 4 * j + 4, p[i].seq);
        }
        if (stmt_run(st, s, err, errlen, "insert author entries") < 0)
            return -1;
    }
    return 0;
}

/*
 * Writes the queued author and tag entries. They are written in key order
 * (tags many per statement) instead of with each event: pubkeys and e and p
 * values are random, and interleaved with the event rows every entry was a
 * cold descent of its b-tree; sorted, consecutive entries land on the pages
 * the last one brought into the CPU's caches. Runs before anything that
 * deletes entries (event_row_delete) and before the batch commits, so no
 * reader, not even the batch itself, ever sees a stored event without them.
 */
static int tags_flush(struct store *st, char *err, size_t errlen)
{
    struct pending_tag *p = st->pending;
    size_t n = st->npending;
    struct tag_order *buf, *order;
    int rc = SQLITE_OK;

    if (authors_flush(st, err, errlen) < 0)
        return -1;
    if (n == 0)
        return 0;
    st->npending = 0;
    /*
     * By the first bytes of (name, value) only, which orders random values
     * completely and keeps equal ones (a shared hashtag) in queue order, that
     * is by seq; values that share those bytes but differ stay in queue order
     * too, which costs locality, never correctness.
     */
    buf = xreallocarray(NULL, n, 2 * sizeof *buf);
    for (size_t i = 0; i < n; i++)
        buf[i] = (struct tag_order){.key = p[i].key, .at = i};
    order = tag_order_sort(buf, buf + n, n);
    for (size_t i = 0; i < n && rc == SQLITE_OK;) {
        int k = n - i < FLUSH_ROWS ? (int)(n - i) : FLUSH_ROWS;
        sqlite3_stmt *s = rows_stmt(
            st, st->tag_stmts, "INSERT OR IGNORE INTO tags (name, value, seq)", 3, k, err, errlen);
        if (s == NULL) {
            rc = SQLITE_ERROR;
            break;
        }
        for (int j = 0; j < k && rc == SQLITE_OK; j++, i++) {
            const struct pending_tag *t = &p[order[i].at];
            rc = sqlite3_bind_text(s, 3 * j + 1, &t->name, 1, SQLITE_STATIC);
            if (rc == SQLITE_OK && t->is_blob)
                rc = sqlite3_bind_blob(s, 3 * j + 2, t->raw, 32, SQLITE_STATIC);
            else if (rc == SQLITE_OK)
                rc = sqlite3_bind_text64(s, 3 * j + 2, t->text, t->len, SQLITE_STATIC, SQLITE_UTF8);
            if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(s, 3 * j + 3, t->seq);
        }
        if (rc != SQLITE_OK) {
            db_err(st, err, errlen, "bind tag");
            sqlite3_clear_bindings(s);
        } else if (stmt_run(st, s, err, errlen, "insert tags") < 0) {
            rc = SQLITE_ERROR;
        }
    }
    free(buf);
    return rc == SQLITE_OK ? 0 : -1;
}

/*
 * Deletes the event stored as seq with its tag entries. tags has no seq
 * index (migration 3), so they are found from the stored JSON: deletions
 * (replaced versions, NIP-09) are rare next to inserts, and an index on seq
 * would cost every insert a b-tree entry per tag. A JSON that does not
 * parse, which only a database written by something else could hold, falls
 * back to a scan of every tag.
 */
static int event_row_delete(struct store *st, sqlite3_int64 seq, char *err, size_t errlen)
{
    sqlite3_stmt *s;
    struct event *ev = NULL;
    char perr[EVENT_ERRLEN];
    int rc;

    if (tags_flush(st, err, errlen) < 0)
        return -1;
    if ((s = stmt_get(st, ST_JSON_BY_SEQ, err, errlen)) == NULL)
        return -1;
    sqlite3_bind_int64(s, 1, seq);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW && sqlite3_column_type(s, 0) == SQLITE_TEXT)
        ev = event_parse((const char *)sqlite3_column_text(s, 0),
                         (size_t)sqlite3_column_bytes(s, 0), perr, sizeof perr);
    sqlite3_reset(s);
    if (rc == SQLITE_DONE)
        return 0;
    if (rc != SQLITE_ROW)
        return db_err(st, err, errlen, "read event to delete");

    rc = 0;
    if (ev == NULL) {
        if ((s = stmt_get(st, ST_DELETE_TAGS_SCAN, err, errlen)) == NULL)
            return -1;
        sqlite3_bind_int64(s, 1, seq);
        rc = stmt_run(st, s, err, errlen, "delete tags");
    }
    for (size_t i = 0; ev != NULL && i < ev->ntags && rc == 0; i++) {
        const struct event_tag *t = &ev->tags[i];
        if (!is_tag_letter(t))
            continue;
        if ((s = stmt_get(st, ST_DELETE_TAG, err, errlen)) == NULL) {
            rc = -1;
            break;
        }
        sqlite3_bind_text(s, 1, t->fields[0], 1, SQLITE_STATIC);
        if (filter_sql_bind_tag_value(s, 2, t->fields[1], t->lens[1]) < 0) {
            rc = db_err(st, err, errlen, "bind tag");
            break;
        }
        sqlite3_bind_int64(s, 3, seq);
        rc = stmt_run(st, s, err, errlen, "delete tag");
    }
    event_free(ev);
    if (rc < 0)
        return -1;
    if ((s = stmt_get(st, ST_DELETE_AUTHOR, err, errlen)) == NULL)
        return -1;
    sqlite3_bind_int64(s, 1, seq);
    if (stmt_run(st, s, err, errlen, "delete author entry") < 0)
        return -1;
    if ((s = stmt_get(st, ST_DELETE_SEQ, err, errlen)) == NULL)
        return -1;
    sqlite3_bind_int64(s, 1, seq);
    return stmt_run(st, s, err, errlen, "delete event");
}

/* Records (created_at, id) as a deleted version at a; keeps the best one. */
static int head_put(struct store *st, const struct address *a, uint64_t created_at,
                    const uint8_t *id, char *err, size_t errlen)
{
    sqlite3_stmt *s = stmt_get(st, ST_HEAD_PUT, err, errlen);

    if (s == NULL)
        return -1;
    sqlite3_bind_blob(s, 1, a->pubkey, 32, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, a->kind);
    sqlite3_bind_text(s, 3, a->has_d ? a->d : "", (int)(a->has_d ? a->dlen : 0), SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, (sqlite3_int64)created_at);
    sqlite3_bind_blob(s, 5, id, 32, SQLITE_STATIC);
    return stmt_run(st, s, err, errlen, "record address head");
}

/*
 * Is ev beaten by a stored version at its address or by a deleted one we
 * remember? 1 yes, 0 no, -1 error.
 */
static int address_beaten(struct store *st, const struct event *ev, const struct address *a,
                          char *err, size_t errlen)
{
    sqlite3_stmt *s;
    int rc, beaten = 0;

    if ((s = stmt_get(st, ST_ADDR_ROWS, err, errlen)) == NULL)
        return -1;
    bind_address(s, a);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        uint64_t c = (uint64_t)sqlite3_column_int64(s, 1);
        const uint8_t *id = sqlite3_column_blob(s, 2);
        if (!version_beats(ev->created_at, ev->id, c, id))
            beaten = 1;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return db_err(st, err, errlen, "look up address");
    if (beaten)
        return 1;

    if ((s = stmt_get(st, ST_HEAD_GET, err, errlen)) == NULL)
        return -1;
    sqlite3_bind_blob(s, 1, a->pubkey, 32, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, a->kind);
    sqlite3_bind_text(s, 3, a->has_d ? a->d : "", (int)(a->has_d ? a->dlen : 0), SQLITE_STATIC);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        uint64_t c = (uint64_t)sqlite3_column_int64(s, 0);
        const uint8_t *id = sqlite3_column_blob(s, 1);
        if (!version_beats(ev->created_at, ev->id, c, id))
            beaten = 1;
        rc = SQLITE_DONE;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return db_err(st, err, errlen, "look up address head");
    return beaten;
}

/*
 * Deletes the stored versions at a (those with created_at <= until when
 * has_until), remembering the best of them in address_heads when
 * mark_head is set. Returns the number removed, or -1.
 */
static int address_remove(struct store *st, const struct address *a, int has_until, uint64_t until,
                          int mark_head, char *err, size_t errlen)
{
    sqlite3_stmt *s;
    sqlite3_int64 seqs[8];
    uint64_t best_c = 0;
    uint8_t best_id[32];
    int n = 0, have_best = 0, rc = SQLITE_DONE;

    /*
     * Normally there is at most one row per address; loop in case a database
     * written by something else holds more.
     */
    for (;;) {
        int got = 0;
        s = stmt_get(st, has_until ? ST_ADDR_ROWS_UNTIL : ST_ADDR_ROWS, err, errlen);
        if (s == NULL)
            return -1;
        bind_address(s, a);
        if (has_until)
            sqlite3_bind_int64(s, 4, (sqlite3_int64)until);
        while (got < 8 && (rc = sqlite3_step(s)) == SQLITE_ROW) {
            uint64_t c = (uint64_t)sqlite3_column_int64(s, 1);
            const uint8_t *id = sqlite3_column_blob(s, 2);
            seqs[got++] = sqlite3_column_int64(s, 0);
            if (!have_best || version_beats(c, id, best_c, best_id)) {
                best_c = c;
                memcpy(best_id, id, 32);
                have_best = 1;
            }
        }
        if (got < 8 && rc != SQLITE_DONE) {
            sqlite3_reset(s);
            return db_err(st, err, errlen, "look up address");
        }
        sqlite3_reset(s);
        if (got == 0)
            break;
        for (int i = 0; i < got; i++) {
            if (event_row_delete(st, seqs[i], err, errlen) < 0)
                return -1;
            n++;
        }
    }
    if (mark_head && have_best && head_put(st, a, best_c, best_id, err, errlen) < 0)
        return -1;
    return n;
}

/* 1 if a stored deletion covers ev, 0 if not, -1 on error. */
static int tombstone_covers(struct store *st, const struct event *ev, const struct address *a,
                            struct buf *scratch, char *err, size_t errlen)
{
    sqlite3_stmt *s;
    int rc;

    if ((s = stmt_get(st, ST_TOMB_BY_ID, err, errlen)) == NULL)
        return -1;
    sqlite3_bind_blob(s, 1, ev->id, 32, SQLITE_STATIC);
    sqlite3_bind_blob(s, 2, ev->pubkey, 32, SQLITE_STATIC);
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc == SQLITE_ROW)
        return 1;
    if (rc != SQLITE_DONE)
        return db_err(st, err, errlen, "look up deletions");
    if (a == NULL)
        return 0;

    address_format(a, scratch);
    if ((s = stmt_get(st, ST_TOMB_BY_ADDR, err, errlen)) == NULL)
        return -1;
    sqlite3_bind_text(s, 1, (const char *)scratch->data, (int)scratch->len, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)ev->created_at);
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc == SQLITE_ROW)
        return 1;
    if (rc != SQLITE_DONE)
        return db_err(st, err, errlen, "look up deletions");
    return 0;
}

/*
 * Inserts the row and queues its tag and author index entries; *seq gets
 * the new rowid.
 * 0, 1 if an event with this id is stored already (nothing done), or -1.
 */
static int event_row_insert(struct store *st, const struct event *ev, const struct address *a,
                            sqlite3_int64 *seq, char *err, size_t errlen)
{
    sqlite3_stmt *s;
    size_t jlen;
    char *json;
    int rc;

    if ((s = stmt_get(st, ST_INSERT_EVENT, err, errlen)) == NULL)
        return -1;
    json = event_to_json(ev, &jlen);
    if (json == NULL) {
        set_error(err, errlen, "cannot serialize event");
        return -1;
    }
    sqlite3_bind_blob(s, 1, ev->id, 32, SQLITE_STATIC);
    sqlite3_bind_blob(s, 2, ev->pubkey, 32, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)ev->created_at);
    sqlite3_bind_int64(s, 4, ev->kind);
    if (a != NULL)
        sqlite3_bind_text(s, 5, a->has_d ? a->d : "", (int)(a->has_d ? a->dlen : 0), SQLITE_STATIC);
    else
        sqlite3_bind_null(s, 5);
    sqlite3_bind_text64(s, 6, json, jlen, free, SQLITE_UTF8);
    rc = stmt_run(st, s, err, errlen, "insert event");
    if (rc < 0)
        return -1;
    if (sqlite3_changes(st->db) == 0)
        return 1;
    *seq = sqlite3_last_insert_rowid(st->db);
    tags_queue(st, ev, *seq);
    return author_queue(st, ev, *seq, err, errlen);
}

static int tomb_insert(struct store *st, sqlite3_int64 seq, const struct event *del,
                       const uint8_t *target_id, const struct buf *target_addr, char *err,
                       size_t errlen)
{
    sqlite3_stmt *s = stmt_get(st, ST_INSERT_TOMB, err, errlen);

    if (s == NULL)
        return -1;
    st->no_tombstones = 0;
    sqlite3_bind_int64(s, 1, seq);
    sqlite3_bind_blob(s, 2, del->pubkey, 32, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)del->created_at);
    if (target_id != NULL)
        sqlite3_bind_blob(s, 4, target_id, 32, SQLITE_STATIC);
    else
        sqlite3_bind_text(s, 5, (const char *)target_addr->data, (int)target_addr->len,
                          SQLITE_STATIC);
    return stmt_run(st, s, err, errlen, "record deletion");
}

/* The deletion's `e` target: remove it if it is stored, is the deleter's, and is not a deletion. */
static int delete_by_id(struct store *st, const struct event *del, const uint8_t target[32],
                        char *err, size_t errlen)
{
    sqlite3_stmt *s = stmt_get(st, ST_EVENT_BY_ID, err, errlen);
    struct address a;
    sqlite3_int64 seq = 0;
    uint64_t created_at = 0;
    char dbuf[1] = "";
    char *dcopy = NULL;
    int rc, doomed = 0;

    if (s == NULL)
        return -1;
    sqlite3_bind_blob(s, 1, target, 32, SQLITE_STATIC);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        const void *pk = sqlite3_column_blob(s, 1);
        uint32_t kind = (uint32_t)sqlite3_column_int64(s, 2);
        if (pk != NULL && sqlite3_column_bytes(s, 1) == 32 && memcmp(pk, del->pubkey, 32) == 0 &&
            kind != KIND_DELETION) {
            doomed = 1;
            seq = sqlite3_column_int64(s, 0);
            created_at = (uint64_t)sqlite3_column_int64(s, 4);
            memcpy(a.pubkey, del->pubkey, 32);
            a.kind = kind;
            a.has_d = event_kind_is_addressable(kind);
            a.d = dbuf;
            a.dlen = 0;
            if (a.has_d && sqlite3_column_type(s, 3) != SQLITE_NULL) {
                int n = sqlite3_column_bytes(s, 3);
                dcopy = xmalloc((size_t)n + 1);
                memcpy(dcopy, sqlite3_column_text(s, 3), (size_t)n + 1);
                a.d = dcopy;
                a.dlen = (size_t)n;
            }
        }
        rc = SQLITE_DONE;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return db_err(st, err, errlen, "look up deleted event");
    if (!doomed)
        return 0;

    rc = 0;
    if (kind_is_addressed(a.kind))
        rc = head_put(st, &a, created_at, target, err, errlen);
    if (rc == 0)
        rc = event_row_delete(st, seq, err, errlen);
    free(dcopy);
    return rc;
}

/*
 * Parses an `a` tag value "kind:pubkeyhex:d". Only addresses of replaceable
 * or addressable kinds mean anything; returns 0 and fills a, or -1.
 */
static int address_parse(const char *v, size_t len, struct address *a)
{
    const char *end = v + len, *p = v, *c1, *c2;
    unsigned long kind = 0;

    c1 = memchr(p, ':', len);
    if (c1 == NULL || c1 == p || c1 - p > 5)
        return -1;
    for (; p < c1; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        kind = kind * 10 + (unsigned long)(*p - '0');
    }
    if (kind > 65535 || !kind_is_addressed((uint32_t)kind))
        return -1;
    c2 = memchr(c1 + 1, ':', (size_t)(end - c1 - 1));
    if (c2 == NULL || hex_decode(c1 + 1, (size_t)(c2 - c1 - 1), a->pubkey, 32, 0) < 0)
        return -1;
    a->kind = (uint32_t)kind;
    a->has_d = event_kind_is_addressable(a->kind);
    a->d = c2 + 1;
    a->dlen = (size_t)(end - c2 - 1);
    return 0;
}

/* A deletion was just stored as seq: tombstones for its targets, and the targets go. */
static int deletion_apply(struct store *st, const struct event *del, sqlite3_int64 seq,
                          struct buf *scratch, char *err, size_t errlen)
{
    for (size_t i = 0; i < del->ntags; i++) {
        const struct event_tag *t = &del->tags[i];
        if (t->nfields < 2 || t->lens[0] != 1)
            continue;
        if (t->fields[0][0] == 'e') {
            uint8_t target[32];
            if (hex_decode(t->fields[1], t->lens[1], target, 32, 0) < 0)
                continue;
            if (tomb_insert(st, seq, del, target, NULL, err, errlen) < 0 ||
                delete_by_id(st, del, target, err, errlen) < 0)
                return -1;
        } else if (t->fields[0][0] == 'a') {
            struct address a;
            if (address_parse(t->fields[1], t->lens[1], &a) < 0 ||
                memcmp(a.pubkey, del->pubkey, 32) != 0)
                continue;
            address_format(&a, scratch);
            if (tomb_insert(st, seq, del, NULL, scratch, err, errlen) < 0 ||
                address_remove(st, &a, 1, del->created_at, 1, err, errlen) < 0)
                return -1;
        }
    }
    return 0;
}

static int insert_one(struct store *st, const struct event *ev, struct store_result *res,
                      struct buf *scratch, char *err, size_t errlen)
{
    struct address addr, *a = NULL;
    sqlite3_int64 seq;
    int deleted = 0, removed = 0, rc;

    res->reason = NULL;
    if (event_kind_is_ephemeral(ev->kind)) {
        res->outcome = STORE_REJECTED;
        res->reason = "ephemeral";
        return 0;
    }
    /*
     * Most events have no address, and for them the insert itself finds a
     * duplicate (ON CONFLICT): one index probe instead of two. A stored
     * event is never covered by a tombstone (storing the deletion removed
     * it), so checking tombstones first gives the same outcomes. An
     * addressed event must know it is new before it removes older versions.
     */
    if (kind_is_addressed(ev->kind)) {
        if ((rc = store_has_id(st, ev->id, err, errlen)) < 0)
            return -1;
        if (rc == 1) {
            res->outcome = STORE_DUPLICATE;
            return 0;
        }
        event_address(ev, &addr);
        a = &addr;
    }
    if (ev->kind != KIND_DELETION && !st->no_tombstones &&
        (deleted = tombstone_covers(st, ev, a, scratch, err, errlen)) < 0)
        return -1;

    if (a != NULL) {
        if ((rc = address_beaten(st, ev, a, err, errlen)) < 0)
            return -1;
        if (rc == 1) {
            res->outcome = STORE_REJECTED;
            res->reason = "replaced by newer version";
            return 0;
        }
        /* ev is the best version ever seen here: older ones go even if ev itself is deleted. */
        if ((removed = address_remove(st, a, 0, 0, 0, err, errlen)) < 0)
            return -1;
        if (deleted) {
            if (head_put(st, a, ev->created_at, ev->id, err, errlen) < 0)
                return -1;
        }
    }
    if (deleted) {
        res->outcome = STORE_DELETED;
        res->reason = "deleted by a stored kind-5 event";
        return 0;
    }
    if ((rc = event_row_insert(st, ev, a, &seq, err, errlen)) < 0)
        return -1;
    if (rc == 1) {
        res->outcome = STORE_DUPLICATE;
        return 0;
    }
    res->outcome = removed > 0 ? STORE_REPLACED : STORE_INSERTED;
    if (ev->kind == KIND_DELETION && deletion_apply(st, ev, seq, scratch, err, errlen) < 0)
        return -1;
    return 0;
}

int store_insert_batch(struct store *st, struct event *const *evs, size_t n,
                       struct store_result *results, char *err, size_t errlen)
{
    struct buf scratch = {0};
    sqlite3_stmt *s;
    int rc;

    if (n == 0)
        return 0;
    if (n >= STORE_BULK_BATCH && !st->bulk_cache) {
        if (exec_sql(st, "PRAGMA cache_size = -" STORE_BULK_CACHE_KB, err, errlen, "configure") < 0)
            return -1;
        st->bulk_cache = 1;
    }
    if ((s = stmt_get(st, ST_BEGIN, err, errlen)) == NULL ||
        stmt_run(st, s, err, errlen, "begin") < 0)
        return -1;
    if ((s = stmt_get(st, ST_ANY_TOMB, err, errlen)) == NULL)
        goto fail;
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        db_err(st, err, errlen, "look up deletions");
        goto fail;
    }
    st->no_tombstones = rc == SQLITE_DONE;
    for (size_t i = 0; i < n; i++) {
        if (insert_one(st, evs[i], &results[i], &scratch, err, errlen) < 0)
            goto fail;
    }
    if (tags_flush(st, err, errlen) < 0)
        goto fail;
    buf_free(&scratch);
    st->no_tombstones = 0;
    if ((s = stmt_get(st, ST_COMMIT, err, errlen)) == NULL ||
        stmt_run(st, s, err, errlen, "commit") < 0)
        goto fail_nobuf;
    return 0;
fail:
    buf_free(&scratch);
    st->no_tombstones = 0;
    st->npending = 0;
    st->npending_authors = 0;
fail_nobuf:
    author_cache_clear(st);
    /* Plain exec: the ROLLBACK must run even if preparing it is what failed. */
    sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

/* ---- queries ---- */

enum query_shape {
    Q_JSON, /* the event bodies, in an order */
    Q_COUNT,
    Q_IDS,    /* (created_at, id), ascending */
    Q_NEWEST, /* max(created_at) */
    Q_SIZES,  /* (created_at, id, json), unordered, for the JSON sizes */
};

/* SQLite's default maximum parameter number, which filter_sql_where keeps to as well. */
#define QUERY_MAX_PARAMS 32766

/*
 * With `authors`, queries start from the authors' numbers and their
 * entries in events_by_author (migration 4), exactly one per event:
 * filter_sql_where's e.pubkey condition alone has no index to use, and given
 * the choice SQLite would rather scan events_kind. CROSS JOIN fixes that
 * order. The condition repeats the
 * filter's authors and kinds as parameters numbered from *next, which it
 * advances. Returns the number of the first, or 0 if the query does not
 * take this path (no authors, or no room for the parameters: slower, same
 * result).
 */
static int query_author_clause(const struct filter *f, struct buf *b, int *next)
{
    int first = *next;
    char num[16];

    if (f == NULL || f->nauthors == 0 ||
        f->nauthors + f->nkinds + 1 > (size_t)(QUERY_MAX_PARAMS - first + 1))
        return 0;
    buf_append(b, " AND u.pubkey IN (", 18);
    for (size_t i = 0; i < f->nauthors + f->nkinds; i++) {
        if (i == f->nauthors)
            buf_append(b, ") AND a.kind IN (", 17);
        else if (i > 0)
            buf_push(b, ',');
        snprintf(num, sizeof num, "?%d", (*next)++);
        buf_append(b, num, strlen(num));
    }
    buf_push(b, ')');
    return first;
}

/*
 * Builds the SQL for a query over f; *author_param gets the number of the
 * first parameter of query_author_clause (0 if none), *limit_param that of
 * the one for LIMIT. Caller frees.
 */
static char *query_sql(const struct filter *f, enum query_shape shape, enum store_order order,
                       int *author_param, int *limit_param, char *err, size_t errlen)
{
    struct buf b = {0}, by_author = {0};
    char *where = NULL;
    int next = 1, use_limit = shape == Q_JSON && f != NULL && f->has_limit;
    /* The limit picks the newest, as for a REQ; then deliver them oldest first. */
    int nested = use_limit && order != STORE_NEWEST_FIRST;
    static const char *const select_list[] = {
        [Q_JSON] = "SELECT e.json",
        [Q_COUNT] = "SELECT count(*)",
        [Q_IDS] = "SELECT e.created_at, e.id",
        [Q_NEWEST] = "SELECT max(e.created_at)",
        [Q_SIZES] = "SELECT e.created_at, e.id, e.json",
    };
    const char *from;
    char tail[64];

    if (f != NULL) {
        if (filter_sql_where(f, &where, &next) < 0) {
            set_error(err, errlen, "filter cannot be expressed in SQL");
            free(where);
            return NULL;
        }
    }
    if (where == NULL || where[0] == '\0') {
        free(where);
        where = xstrdup("1");
    }
    *author_param = query_author_clause(f, &by_author, &next);
    *limit_param = next;
    from = *author_param > 0 ? "authors u CROSS JOIN events_by_author a ON a.author = u.author "
                               "CROSS JOIN events e ON e.seq = a.seq"
                             : "events e";

#define APPEND(s) buf_append(&b, (s), strlen(s))
    APPEND(nested ? "SELECT json FROM (SELECT e.json, e.created_at, e.id" : select_list[shape]);
    APPEND(" FROM ");
    APPEND(from);
    APPEND(" WHERE (");
    APPEND(where);
    buf_append(&b, by_author.data, by_author.len);
    APPEND(")");
    if (shape == Q_IDS || (shape == Q_JSON && order != STORE_NEWEST_FIRST && !use_limit)) {
        APPEND(" ORDER BY e.created_at, e.id");
    } else if (shape == Q_JSON) {
        APPEND(" ORDER BY e.created_at DESC, e.id");
        if (use_limit) {
            snprintf(tail, sizeof tail, " LIMIT ?%d", next);
            APPEND(tail);
        }
        if (nested)
            APPEND(") ORDER BY created_at, id");
    }
#undef APPEND
    buf_push(&b, '\0');
    buf_free(&by_author);
    free(where);
    return (char *)b.data;
}

static sqlite3_stmt *query_prepare(struct store *st, const struct filter *f, enum query_shape shape,
                                   enum store_order order, char *err, size_t errlen)
{
    sqlite3_stmt *s = NULL;
    int author_param, limit_param;
    char *sql = query_sql(f, shape, order, &author_param, &limit_param, err, errlen);

    if (sql == NULL)
        return NULL;
    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK) {
        db_err(st, err, errlen, "prepare query");
        free(sql);
        return NULL;
    }
    free(sql);
    if (f != NULL && filter_sql_bind(f, s, 1) < 0) {
        set_error(err, errlen, "cannot bind filter parameters");
        sqlite3_finalize(s);
        return NULL;
    }
    for (size_t i = 0; author_param > 0 && i < f->nauthors + f->nkinds; i++) {
        int p = author_param + (int)i;
        int rc = i < f->nauthors ? sqlite3_bind_blob(s, p, f->authors[i], 32, SQLITE_STATIC)
                                 : sqlite3_bind_int64(s, p, f->kinds[i - f->nauthors]);
        if (rc != SQLITE_OK) {
            set_error(err, errlen, "cannot bind filter parameters");
            sqlite3_finalize(s);
            return NULL;
        }
    }
    if (shape == Q_JSON && f != NULL && f->has_limit) {
        uint64_t lim = f->limit > INT64_MAX ? INT64_MAX : f->limit;
        sqlite3_bind_int64(s, limit_param, (sqlite3_int64)lim);
    }
    return s;
}

int store_query(struct store *st, const struct filter *f, enum store_order order, store_json_cb cb,
                void *ctx, char *err, size_t errlen)
{
    sqlite3_stmt *s = query_prepare(st, f, Q_JSON, order, err, errlen);
    int rc, stopped = 0;

    if (s == NULL)
        return -1;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *json = (const char *)sqlite3_column_text(s, 0);
        size_t len = (size_t)sqlite3_column_bytes(s, 0);
        if (cb(ctx, json != NULL ? json : "", len) != 0) {
            stopped = 1;
            break;
        }
    }
    if (!stopped && rc != SQLITE_DONE) {
        db_err(st, err, errlen, "query");
        sqlite3_finalize(s);
        return -1;
    }
    sqlite3_finalize(s);
    return stopped;
}

/* The one value a Q_COUNT or Q_NEWEST query gives; -1 for SQL NULL. */
static int query_scalar(struct store *st, const struct filter *f, enum query_shape shape,
                        const char *what, int64_t *out, char *err, size_t errlen)
{
    sqlite3_stmt *s = query_prepare(st, f, shape, STORE_OLDEST_FIRST, err, errlen);
    int rc;

    if (s == NULL)
        return -1;
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_type(s, 0) == SQLITE_NULL ? -1 : sqlite3_column_int64(s, 0);
    else
        db_err(st, err, errlen, what);
    sqlite3_finalize(s);
    return rc == SQLITE_ROW ? 0 : -1;
}

int store_count(struct store *st, const struct filter *f, uint64_t *count, char *err, size_t errlen)
{
    int64_t n;

    if (query_scalar(st, f, Q_COUNT, "count", &n, err, errlen) < 0)
        return -1;
    *count = (uint64_t)n;
    return 0;
}

int store_newest(struct store *st, const struct filter *f, int64_t *created_at, char *err,
                 size_t errlen)
{
    return query_scalar(st, f, Q_NEWEST, "newest", created_at, err, errlen);
}

/*
 * The rows of a Q_IDS or Q_SIZES query, (created_at, id[, json]): each id
 * checked, then handed to idcb, or with the JSON's length to sizecb.
 */
static int list_rows(struct store *st, const struct filter *f, enum query_shape shape,
                     store_id_cb idcb, store_size_cb sizecb, void *ctx, const char *what, char *err,
                     size_t errlen)
{
    sqlite3_stmt *s = query_prepare(st, f, shape, STORE_OLDEST_FIRST, err, errlen);
    int rc, stopped = 0;

    if (s == NULL)
        return -1;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const uint8_t *id = sqlite3_column_blob(s, 1);
        if (id == NULL || sqlite3_column_bytes(s, 1) != 32) {
            set_error(err, errlen, "%s: corrupt event id in the database", st->path);
            sqlite3_finalize(s);
            return -1;
        }
        /* A size is the bytes of the UTF-8 text as stored: no copy of the text is made. */
        if (shape == Q_SIZES ? sizecb(ctx, id, (size_t)sqlite3_column_bytes(s, 2))
                             : idcb(ctx, (uint64_t)sqlite3_column_int64(s, 0), id)) {
            stopped = 1;
            break;
        }
    }
    if (!stopped && rc != SQLITE_DONE) {
        db_err(st, err, errlen, what);
        sqlite3_finalize(s);
        return -1;
    }
    sqlite3_finalize(s);
    return stopped;
}

int store_list_ids(struct store *st, const struct filter *f, store_id_cb cb, void *ctx, char *err,
                   size_t errlen)
{
    return list_rows(st, f, Q_IDS, cb, NULL, ctx, "list ids", err, errlen);
}

int store_list_sizes(struct store *st, const struct filter *f, store_size_cb cb, void *ctx,
                     char *err, size_t errlen)
{
    return list_rows(st, f, Q_SIZES, NULL, cb, ctx, "list sizes", err, errlen);
}

int store_query_plan(struct store *st, enum store_plan which, const struct filter *f, char *out,
                     size_t outlen, char *err, size_t errlen)
{
    static const struct {
        enum query_shape shape;
        enum store_order order;
    } map[] = {
        [STORE_PLAN_LIST_IDS] = {Q_IDS, STORE_OLDEST_FIRST},
        [STORE_PLAN_QUERY_NEWEST] = {Q_JSON, STORE_NEWEST_FIRST},
        [STORE_PLAN_QUERY_OLDEST] = {Q_JSON, STORE_OLDEST_FIRST},
        [STORE_PLAN_COUNT] = {Q_COUNT, STORE_OLDEST_FIRST},
    };
    struct buf b = {0};
    sqlite3_stmt *s = NULL;
    int author_param, limit_param, rc;
    char *sql;

    if ((unsigned)which > STORE_PLAN_ADDRESS) {
        set_error(err, errlen, "no such query plan: %d", (int)which);
        return -1;
    }
    if (which == STORE_PLAN_ADDRESS)
        sql = xstrdup(stmt_sql[ST_ADDR_ROWS]);
    else
        sql = query_sql(f, map[which].shape, map[which].order, &author_param, &limit_param, err,
                        errlen);
    if (sql == NULL)
        return -1;
    buf_append(&b, "EXPLAIN QUERY PLAN ", strlen("EXPLAIN QUERY PLAN "));
    buf_append(&b, sql, strlen(sql) + 1);
    free(sql);
    rc = sqlite3_prepare_v2(st->db, (const char *)b.data, -1, &s, NULL);
    buf_free(&b);
    if (rc != SQLITE_OK)
        return db_err(st, err, errlen, "explain");
    if (outlen > 0)
        out[0] = '\0';
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *detail = (const char *)sqlite3_column_text(s, 3);
        size_t used = strlen(out);
        if (detail != NULL && used + 1 < outlen)
            snprintf(out + used, outlen - used, "%s%s", used > 0 ? "\n" : "", detail);
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE)
        return db_err(st, err, errlen, "explain");
    return 0;
}

int store_has_id(struct store *st, const uint8_t id[32], char *err, size_t errlen)
{
    sqlite3_stmt *s = stmt_get(st, ST_HAS_ID, err, errlen);
    int rc;

    if (s == NULL)
        return -1;
    sqlite3_bind_blob(s, 1, id, 32, SQLITE_STATIC);
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc == SQLITE_ROW)
        return 1;
    if (rc == SQLITE_DONE)
        return 0;
    return db_err(st, err, errlen, "look up id");
}

/*
 * Looks up the stored JSON of the event with this id and hands it to take
 * (text, its length, ctx) while the row is current: 1 if take returned 1, 0
 * if no such event is stored or take returned 0, -1 with a reason.
 */
static int with_json(struct store *st, const uint8_t id[32],
                     int (*take)(void *ctx, const char *text, size_t n), void *ctx,
                     const char *what, char *err, size_t errlen)
{
    sqlite3_stmt *s = stmt_get(st, ST_GET_JSON, err, errlen);
    int rc, taken = 0;

    if (s == NULL)
        return -1;
    sqlite3_bind_blob(s, 1, id, 32, SQLITE_STATIC);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        const char *text = (const char *)sqlite3_column_text(s, 0);
        taken = take(ctx, text != NULL ? text : "", (size_t)sqlite3_column_bytes(s, 0));
    }
    sqlite3_reset(s);
    if (rc == SQLITE_ROW)
        return taken;
    if (rc == SQLITE_DONE)
        return 0;
    return db_err(st, err, errlen, what);
}

struct json_copy {
    char *json;
    size_t len;
};

static int take_copy(void *ctx, const char *text, size_t n)
{
    struct json_copy *c = ctx;

    c->json = xmalloc(n + 1);
    memcpy(c->json, text, n);
    c->json[n] = '\0';
    c->len = n;
    return 1;
}

int store_get_json(struct store *st, const uint8_t id[32], char **json, size_t *len, char *err,
                   size_t errlen)
{
    struct json_copy c = {0};
    int rc = with_json(st, id, take_copy, &c, "get event", err, errlen);

    if (rc == 1) {
        *json = c.json;
        if (len != NULL)
            *len = c.len;
    }
    return rc;
}

/* event_to_json ends every event with its signature: ...,"sig":"<128 hex>"} */
static int take_sig(void *ctx, const char *text, size_t n)
{
    static const char key[] = ",\"sig\":\"";
    const size_t klen = sizeof key - 1, tail = klen + 128 + 2;

    return n >= tail && memcmp(text + n - tail, key, klen) == 0 &&
           memcmp(text + n - 2, "\"}", 2) == 0 &&
           hex_decode(text + n - tail + klen, 128, ctx, 64, 1) == 0;
}

int store_get_sig(struct store *st, const uint8_t id[32], uint8_t sig[64], char *err, size_t errlen)
{
    return with_json(st, id, take_sig, sig, "get signature", err, errlen);
}

/*
 * One consistency check of store_check: sql names the seq of an event it
 * finds wrong, or no row. 0, or -1 with what (and that seq) in err.
 */
static int check_seq(struct store *st, const char *sql, const char *what, const char *problem,
                     char *err, size_t errlen)
{
    sqlite3_stmt *s;
    int rc;

    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK)
        return db_err(st, err, errlen, what);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        set_error(err, errlen, "%s: %s: %s (seq %lld)", st->path, what, problem,
                  (long long)sqlite3_column_int64(s, 0));
    else if (rc != SQLITE_DONE)
        db_err(st, err, errlen, what);
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? 0 : -1;
}

int store_check(struct store *st, char *err, size_t errlen)
{
    sqlite3_stmt *s;
    int rc, bad = 0;

    if (sqlite3_prepare_v2(st->db, "PRAGMA integrity_check", -1, &s, NULL) != SQLITE_OK)
        return db_err(st, err, errlen, "integrity check");
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *line = (const char *)sqlite3_column_text(s, 0);
        if (line != NULL && strcmp(line, "ok") != 0 && !bad) {
            set_error(err, errlen, "%s: integrity check: %s", st->path, line);
            bad = 1;
        }
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE)
        return db_err(st, err, errlen, "integrity check");
    if (bad)
        return -1;

    if (sqlite3_prepare_v2(st->db, "PRAGMA foreign_key_check", -1, &s, NULL) != SQLITE_OK)
        return db_err(st, err, errlen, "foreign key check");
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        set_error(err, errlen, "%s: foreign key check: dangling row in %s", st->path,
                  (const char *)sqlite3_column_text(s, 0));
        bad = 1;
    } else if (rc != SQLITE_DONE) {
        db_err(st, err, errlen, "foreign key check");
        bad = 1;
    }
    sqlite3_finalize(s);
    if (bad)
        return -1;

    /* tags has no foreign key (migration 3): the same check by hand. */
    if (check_seq(st,
                  "SELECT t.seq FROM tags t WHERE NOT EXISTS "
                  "(SELECT 1 FROM events e WHERE e.seq = t.seq) LIMIT 1",
                  "tag check", "tags of a missing event", err, errlen) < 0)
        return -1;

    /* events_by_author (migration 4): exactly one entry per event, with its key. */
    return check_seq(st,
                     "SELECT e.seq FROM events e WHERE NOT EXISTS (SELECT 1 FROM "
                     "events_by_author a JOIN authors u ON u.author = a.author "
                     "WHERE u.pubkey = e.pubkey AND a.kind = e.kind "
                     "AND a.created_at = e.created_at AND a.seq = e.seq) "
                     "UNION ALL SELECT a.seq FROM events_by_author a WHERE NOT EXISTS "
                     "(SELECT 1 FROM events e JOIN authors u ON u.pubkey = e.pubkey "
                     "WHERE e.seq = a.seq AND u.author = a.author "
                     "AND e.kind = a.kind AND e.created_at = a.created_at) LIMIT 1",
                     "author check", "events_by_author disagrees with the event", err, errlen);
}

/* ---- the tables the sync engine and caps keep: readers (negsync status) ---------- */

/*
 * sync.c and caps.c still write these tables through connections of their
 * own; the readers below are what `negsync status` needs, one statement per
 * call (a status report runs each a handful of times).
 */

static char *column_dup(sqlite3_stmt *s, int col)
{
    const unsigned char *t = sqlite3_column_text(s, col);
    return t != NULL ? xstrdup((const char *)t) : NULL;
}

static void column_copy(sqlite3_stmt *s, int col, char *out, size_t outlen)
{
    const unsigned char *t = sqlite3_column_text(s, col);
    snprintf(out, outlen, "%s", t != NULL ? (const char *)t : "");
}

static uint64_t column_u64(sqlite3_stmt *s, int col)
{
    int64_t v = sqlite3_column_int64(s, col);
    return v > 0 ? (uint64_t)v : 0;
}

/*
 * Prepares sql and binds the text parameters (NULL for none). NULL with a
 * reason in err.
 */
static sqlite3_stmt *prepare_text(struct store *st, const char *sql, const char *what,
                                  const char *p1, const char *p2, char *err, size_t errlen)
{
    sqlite3_stmt *s = NULL;

    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK) {
        db_err(st, err, errlen, what);
        return NULL;
    }
    if (p1 != NULL)
        sqlite3_bind_text(s, 1, p1, -1, SQLITE_STATIC);
    if (p2 != NULL)
        sqlite3_bind_text(s, 2, p2, -1, SQLITE_STATIC);
    return s;
}

/* Steps a one-row query: 1 row, 0 none, -1 (finalized) with a reason in err. */
static int step_one(struct store *st, sqlite3_stmt *s, const char *what, char *err, size_t errlen)
{
    int rc = sqlite3_step(s);

    if (rc == SQLITE_ROW)
        return 1;
    if (rc == SQLITE_DONE)
        return 0;
    db_err(st, err, errlen, what);
    sqlite3_finalize(s);
    return -1;
}

sqlite3 *store_connection(struct store *st)
{
    return st->db;
}

void store_caps_clear(struct store_caps *c)
{
    free(c->reason);
    free(c->nip11_software);
    free(c->nip11_version);
    free(c->nip11_supported_nips);
    free(c->nip11_raw);
    memset(c, 0, sizeof *c);
}

int store_caps_get(struct store *st, const char *relay, struct store_caps *out, char *err,
                   size_t errlen)
{
    sqlite3_stmt *s = prepare_text(st,
                                   "SELECT supported, reason, checked_at, latency_ms,"
                                   " nip11_software, nip11_version, nip11_supported_nips,"
                                   " nip11_raw FROM relay_caps WHERE relay = ?1",
                                   "capability cache", relay, NULL, err, errlen);
    int rc;

    memset(out, 0, sizeof *out);
    if (s == NULL || (rc = step_one(st, s, "capability cache", err, errlen)) < 0)
        return -1;
    if (rc == 1) {
        out->supported = sqlite3_column_int(s, 0) != 0;
        out->reason = column_dup(s, 1);
        out->checked_at = sqlite3_column_int64(s, 2);
        out->latency_ms =
            sqlite3_column_type(s, 3) == SQLITE_NULL ? -1 : sqlite3_column_int64(s, 3);
        out->nip11_software = column_dup(s, 4);
        out->nip11_version = column_dup(s, 5);
        out->nip11_supported_nips = column_dup(s, 6);
        out->nip11_raw = column_dup(s, 7);
    }
    sqlite3_finalize(s);
    return rc;
}

int store_setting_negentropy(struct store *st, const char *relay, char value[8], char *err,
                             size_t errlen)
{
    sqlite3_stmt *s = prepare_text(st, "SELECT negentropy FROM relay_settings WHERE relay = ?1",
                                   "relay settings", relay, NULL, err, errlen);
    int rc;

    value[0] = '\0';
    if (s == NULL || (rc = step_one(st, s, "relay settings", err, errlen)) < 0)
        return -1;
    if (rc == 1) {
        const char *v = (const char *)sqlite3_column_text(s, 0);
        /* The schema allows auto, on and off; auto is "follow the configuration". */
        if (v != NULL && (strcmp(v, "on") == 0 || strcmp(v, "off") == 0))
            snprintf(value, 8, "%s", v);
        else
            rc = 0;
    }
    sqlite3_finalize(s);
    return rc;
}

int store_cursor_row(struct store *st, const char *relay, const char *filter_name, int64_t *cursor,
                     char **filter_json, char *err, size_t errlen)
{
    sqlite3_stmt *s = prepare_text(st,
                                   "SELECT cursor, filter_json FROM req_cursors"
                                   " WHERE relay = ?1 AND filter_name = ?2",
                                   "cursor", relay, filter_name, err, errlen);
    int rc;

    *cursor = 0;
    if (filter_json != NULL)
        *filter_json = NULL;
    if (s == NULL || (rc = step_one(st, s, "cursor", err, errlen)) < 0)
        return -1;
    if (rc == 1) {
        *cursor = sqlite3_column_int64(s, 0);
        if (filter_json != NULL)
            *filter_json = column_dup(s, 1);
    }
    sqlite3_finalize(s);
    return rc;
}

int store_run_last(struct store *st, const char *relay, const char *filter, struct store_run *out,
                   char *err, size_t errlen)
{
    sqlite3_stmt *s = prepare_text(
        st,
        "SELECT run, mode, result, started, duration_ms, rounds, bytes_sent, bytes_received,"
        " wire_sent, wire_received, est_req_bytes, have, need, fetched, stored, duplicates,"
        " invalid, uploaded_ok, uploaded_rejected, fallback_reason, error FROM sync_runs"
        " WHERE relay = ?1 AND filter = ?2 ORDER BY run DESC LIMIT 1",
        "sync runs", relay, filter, err, errlen);
    int rc, c = 0;

    memset(out, 0, sizeof *out);
    if (s == NULL || (rc = step_one(st, s, "sync runs", err, errlen)) < 0)
        return -1;
    if (rc == 1) {
        out->run = sqlite3_column_int64(s, c++);
        column_copy(s, c++, out->mode, sizeof out->mode);
        column_copy(s, c++, out->result, sizeof out->result);
        out->started = sqlite3_column_int64(s, c++);
        out->duration_ms = sqlite3_column_int64(s, c++);
        out->rounds = column_u64(s, c++);
        out->bytes_sent = column_u64(s, c++);
        out->bytes_received = column_u64(s, c++);
        out->wire_sent = column_u64(s, c++);
        out->wire_received = column_u64(s, c++);
        out->est_req_bytes = column_u64(s, c++);
        out->have = column_u64(s, c++);
        out->need = column_u64(s, c++);
        out->fetched = column_u64(s, c++);
        out->stored = column_u64(s, c++);
        out->duplicates = column_u64(s, c++);
        out->invalid = column_u64(s, c++);
        out->uploaded_ok = column_u64(s, c++);
        out->uploaded_rejected = column_u64(s, c++);
        column_copy(s, c++, out->fallback_reason, sizeof out->fallback_reason);
        column_copy(s, c++, out->error, sizeof out->error);
    }
    sqlite3_finalize(s);
    return rc;
}

int store_run_totals(struct store *st, const char *relay, struct store_run_totals *out, char *err,
                     size_t errlen)
{
    /* ?1 NULL: every relay. The sums are of non-negative columns; total() never overflows. */
    sqlite3_stmt *s = prepare_text(
        st,
        "SELECT count(*), total(result = 'ok'), total(bytes_sent), total(bytes_received),"
        " total(wire_sent), total(wire_received), total(fetched), total(stored),"
        " total(est_req_bytes > 0), total(est_req_bytes),"
        " total(CASE WHEN est_req_bytes > 0 THEN bytes_sent + bytes_received ELSE 0 END),"
        " ifnull(min(started), 0), ifnull(max(started), 0)"
        " FROM sync_runs WHERE ?1 IS NULL OR relay = ?1",
        "sync run totals", relay, NULL, err, errlen);
    int rc, c = 0;

    memset(out, 0, sizeof *out);
    if (s == NULL || (rc = step_one(st, s, "sync run totals", err, errlen)) < 0)
        return -1;
    if (rc == 1) {
        uint64_t *const fields[] = {
            &out->runs,          &out->runs_ok,       &out->bytes_sent,     &out->bytes_received,
            &out->wire_sent,     &out->wire_received, &out->fetched,        &out->stored,
            &out->compared_runs, &out->est_req_bytes, &out->compared_bytes,
        };
        for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++, c++) {
            double v = sqlite3_column_double(s, c);
            *fields[i] = v > 0 ? (uint64_t)v : 0;
        }
        out->first_started = sqlite3_column_int64(s, c++);
        out->last_started = sqlite3_column_int64(s, c++);
    }
    sqlite3_finalize(s);
    return 0;
}

int store_size(struct store *st, uint64_t *bytes, char *err, size_t errlen)
{
    int pages, page_size;

    if (pragma_int(st, "PRAGMA page_count", &pages, err, errlen) < 0 ||
        pragma_int(st, "PRAGMA page_size", &page_size, err, errlen) < 0)
        return -1;
    *bytes = (uint64_t)(pages > 0 ? pages : 0) * (uint64_t)(page_size > 0 ? page_size : 0);
    return 0;
}
