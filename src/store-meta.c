/*
 * store-meta: the writers of the tables the sync engine and the capability
 * cache keep beside the events (req_cursors, sync_runs, relay_settings,
 * relay_caps), and the checkpoint the engine runs beside its workers. Their
 * readers are in store.c, next to negsync status's. store.c creates and
 * migrates every table; this file holds the only other SQL text of the
 * program, so sync and caps contain none.
 *
 * Each call runs on the connection of the struct store it is given, the
 * caller's: nothing here opens a connection.
 */
#include "config.h"

#include <stdio.h>
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
