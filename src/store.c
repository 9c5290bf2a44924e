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

/*
 * Page cache per connection, in KiB (a maximum, filled on demand); WAL pages
 * between automatic checkpoints; and the size the WAL file is cut back to
 * after one, in bytes.
 */
#define STORE_CACHE_KB         "32768"
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

const char *const store_stmt_sql[ST_COUNT] = {
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

int store_db_err(struct store *st, char *err, size_t errlen, const char *what)
{
    set_error(err, errlen, "%s: %s: %s", st->path, what, sqlite3_errmsg(st->db));
    return -1;
}

sqlite3_stmt *store_stmt_get(struct store *st, enum stmt_id which, char *err, size_t errlen)
{
    sqlite3_stmt *s = st->stmts[which];

    if (s != NULL) {
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
        return s;
    }
    if (sqlite3_prepare_v3(st->db, store_stmt_sql[which], -1, SQLITE_PREPARE_PERSISTENT, &s,
                           NULL) != SQLITE_OK) {
        store_db_err(st, err, errlen, "prepare");
        return NULL;
    }
    st->stmts[which] = s;
    return s;
}

/* Runs a statement that returns no rows (or whose rows we ignore). */
int store_stmt_run(struct store *st, sqlite3_stmt *s, char *err, size_t errlen, const char *what)
{
    int rc;

    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        ;
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_db_err(st, err, errlen, what);
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

int store_exec_sql(struct store *st, const char *sql, char *err, size_t errlen, const char *what)
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

int store_pragma_int(struct store *st, const char *sql, int *out, char *err, size_t errlen)
{
    sqlite3_stmt *s;
    int rc;

    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK)
        return store_db_err(st, err, errlen, sql);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    if (rc != SQLITE_ROW)
        return store_db_err(st, err, errlen, sql);
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
    if (store_pragma_int(st, "PRAGMA user_version", &version, err, errlen) < 0)
        return -1;
    if (version == NMIGRATIONS)
        return 0;
    if (store_exec_sql(st, "BEGIN IMMEDIATE", err, errlen, "begin migration") < 0)
        return -1;
    if (store_pragma_int(st, "PRAGMA user_version", &version, err, errlen) < 0)
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
        if (store_exec_sql(st, migrations[version], err, errlen, what) < 0)
            goto fail;
    }
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", NMIGRATIONS);
    if (store_exec_sql(st, sql, err, errlen, "set schema version") < 0)
        goto fail;
    if (store_exec_sql(st, "COMMIT", err, errlen, "commit migration") < 0)
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
    if (store_exec_sql(st,
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
        return store_db_err(st, err, errlen, "register functions");
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
            store_db_err(st, err, errlen, "open");
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
            store_db_err(st, err, errlen, "enable WAL");
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
            return store_db_err(st, err, errlen, "open");
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
    rc = store_pragma_int(st, "PRAGMA user_version", &version, err, errlen);
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
            rc = store_pragma_int(st, "PRAGMA user_version", &version, err, errlen);
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
            store_pragma_int(st, "PRAGMA user_version", &version, err, errlen) < 0)
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
    if (store_exec_sql(st, "PRAGMA query_only = ON", err, errlen, "configure") < 0)
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
