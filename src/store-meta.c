/*
 * store-meta: the writers of the tables the sync engine and the capability
 * cache keep beside the events (req_cursors, sync_runs, relay_settings,
 * relay_caps), and the checkpoint the engine runs beside its workers; then
 * their readers, which negsync status uses. store.c creates and migrates
 * every table; the store's files hold the only SQL text of the program, so
 * sync and caps contain none.
 *
 * Each call runs on the connection of the struct store it is given, the
 * caller's: nothing here opens a connection.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "store-int.h"
#include "store.h"
#include "util.h"

/* Prepares sql on st's connection: NULL with a reason in err. */
static sqlite3_stmt *meta_prepare(struct store *st, const char *sql, const char *what, char *err,
                                  size_t errlen)
{
    sqlite3_stmt *s = NULL;

    if (sqlite3_prepare_v2(store_connection(st), sql, -1, &s, NULL) != SQLITE_OK) {
        set_error(err, errlen, "%s: %s", what, sqlite3_errmsg(store_connection(st)));
        sqlite3_finalize(s);
        return NULL;
    }
    return s;
}

/* Steps a statement that returns no row, then finalizes it: 0, or -1 with a reason. */
static int meta_run(struct store *st, sqlite3_stmt *s, const char *what, char *err, size_t errlen)
{
    int rc = sqlite3_step(s);

    if (rc != SQLITE_DONE)
        set_error(err, errlen, "%s: %s", what, sqlite3_errmsg(store_connection(st)));
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? 0 : -1;
}

static void bind_text_or_null(sqlite3_stmt *s, int i, const char *t)
{
    if (t != NULL && t[0] != '\0')
        sqlite3_bind_text(s, i, t, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, i);
}

int store_cursor_set(struct store *st, const char *relay, const char *filter_name,
                     const char *filter_json, int64_t cursor, char *err, size_t errlen)
{
    sqlite3_stmt *s =
        meta_prepare(st,
                     "INSERT INTO req_cursors (relay, filter_name, filter_json, cursor)"
                     " VALUES (?1, ?2, ?3, ?4) ON CONFLICT (relay, filter_name) DO"
                     " UPDATE SET filter_json = excluded.filter_json,"
                     " cursor = excluded.cursor",
                     "cursor", err, errlen);

    if (s == NULL)
        return -1;
    sqlite3_bind_text(s, 1, relay, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, filter_name, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, filter_json, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, cursor);
    return meta_run(st, s, "cursor", err, errlen);
}

int store_run_insert(struct store *st, const char *relay, const char *filter,
                     const struct store_run *r, char *err, size_t errlen)
{
    sqlite3_stmt *s = meta_prepare(
        st,
        "INSERT INTO sync_runs (relay, filter, mode, fallback_reason, started, duration_ms,"
        " rounds, bytes_sent, bytes_received, wire_sent, wire_received, est_req_bytes, have,"
        " need, fetched, stored, duplicates, invalid, uploaded_ok, uploaded_rejected, result,"
        " error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,"
        " ?16, ?17, ?18, ?19, ?20, ?21, ?22)",
        "sync_runs", err, errlen);
    int i = 1;

    if (s == NULL)
        return -1;
    sqlite3_bind_text(s, i++, relay, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, i++, filter, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, i++, r->mode, -1, SQLITE_STATIC);
    bind_text_or_null(s, i++, r->fallback_reason);
    sqlite3_bind_int64(s, i++, r->started);
    sqlite3_bind_int64(s, i++, r->duration_ms);
    sqlite3_bind_int64(s, i++, (int64_t)r->rounds);
    sqlite3_bind_int64(s, i++, (int64_t)r->bytes_sent);
    sqlite3_bind_int64(s, i++, (int64_t)r->bytes_received);
    sqlite3_bind_int64(s, i++, (int64_t)r->wire_sent);
    sqlite3_bind_int64(s, i++, (int64_t)r->wire_received);
    sqlite3_bind_int64(s, i++, (int64_t)r->est_req_bytes);
    sqlite3_bind_int64(s, i++, (int64_t)r->have);
    sqlite3_bind_int64(s, i++, (int64_t)r->need);
    sqlite3_bind_int64(s, i++, (int64_t)r->fetched);
    sqlite3_bind_int64(s, i++, (int64_t)r->stored);
    sqlite3_bind_int64(s, i++, (int64_t)r->duplicates);
    sqlite3_bind_int64(s, i++, (int64_t)r->invalid);
    sqlite3_bind_int64(s, i++, (int64_t)r->uploaded_ok);
    sqlite3_bind_int64(s, i++, (int64_t)r->uploaded_rejected);
    sqlite3_bind_text(s, i++, r->result, -1, SQLITE_STATIC);
    bind_text_or_null(s, i++, r->error);
    return meta_run(st, s, "sync_runs", err, errlen);
}

int store_setting_negentropy_set(struct store *st, const char *relay, const char *value, char *err,
                                 size_t errlen)
{
    sqlite3_stmt *s = meta_prepare(st,
                                   "INSERT INTO relay_settings (relay, negentropy) VALUES (?1, ?2)"
                                   " ON CONFLICT (relay) DO UPDATE SET"
                                   " negentropy = excluded.negentropy",
                                   "relay_settings", err, errlen);

    if (s == NULL)
        return -1;
    sqlite3_bind_text(s, 1, relay, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, value, -1, SQLITE_STATIC);
    return meta_run(st, s, "relay_settings", err, errlen);
}

int store_caps_put(struct store *st, const char *relay, const struct store_caps *c, char *err,
                   size_t errlen)
{
    sqlite3_stmt *s = meta_prepare(
        st,
        "INSERT OR REPLACE INTO relay_caps (relay, supported, reason, checked_at, latency_ms,"
        " nip11_software, nip11_version, nip11_supported_nips, nip11_raw)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        "capability cache", err, errlen);

    if (s == NULL)
        return -1;
    sqlite3_bind_text(s, 1, relay, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 2, c->supported != 0);
    sqlite3_bind_text(s, 3, c->reason != NULL ? c->reason : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, c->checked_at);
    if (c->latency_ms >= 0)
        sqlite3_bind_int64(s, 5, c->latency_ms);
    else
        sqlite3_bind_null(s, 5);
    if (c->nip11_raw != NULL) {
        sqlite3_bind_text(s, 6, c->nip11_software, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 7, c->nip11_version, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 8, c->nip11_supported_nips, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 9, c->nip11_raw, -1, SQLITE_STATIC);
    }
    return meta_run(st, s, "capability cache", err, errlen);
}

void store_checkpoint(struct store *st)
{
    sqlite3_wal_checkpoint_v2(store_connection(st), NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
}

/* ---- the tables the sync engine and caps keep: readers (negsync status) ---------- */

/*
 * What `negsync status` reads of the tables written above, one statement per
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
        store_db_err(st, err, errlen, what);
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
    store_db_err(st, err, errlen, what);
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

    if (store_pragma_int(st, "PRAGMA page_count", &pages, err, errlen) < 0 ||
        store_pragma_int(st, "PRAGMA page_size", &page_size, err, errlen) < 0)
        return -1;
    *bytes = (uint64_t)(pages > 0 ? pages : 0) * (uint64_t)(page_size > 0 ? page_size : 0);
    return 0;
}
