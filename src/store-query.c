/*
 * store-query: reading events out of the store: the SQL a filter becomes
 * (filter_sql_where plus the authors path), queries, counts, id and size
 * listings, the plans `negsync` tests check, single events by id and the
 * consistency check (store_check).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "event.h"
#include "filter.h"
#include "store-int.h"
#include "store.h"
#include "util.h"

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
        store_db_err(st, err, errlen, "prepare query");
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
        store_db_err(st, err, errlen, "query");
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
        store_db_err(st, err, errlen, what);
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
        store_db_err(st, err, errlen, what);
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
        sql = xstrdup(store_stmt_sql[ST_ADDR_ROWS]);
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
        return store_db_err(st, err, errlen, "explain");
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
        return store_db_err(st, err, errlen, "explain");
    return 0;
}

int store_has_id(struct store *st, const uint8_t id[32], char *err, size_t errlen)
{
    sqlite3_stmt *s = store_stmt_get(st, ST_HAS_ID, err, errlen);
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
    return store_db_err(st, err, errlen, "look up id");
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
    sqlite3_stmt *s = store_stmt_get(st, ST_GET_JSON, err, errlen);
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
    return store_db_err(st, err, errlen, what);
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
        return store_db_err(st, err, errlen, what);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        set_error(err, errlen, "%s: %s: %s (seq %lld)", st->path, what, problem,
                  (long long)sqlite3_column_int64(s, 0));
    else if (rc != SQLITE_DONE)
        store_db_err(st, err, errlen, what);
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? 0 : -1;
}

int store_check(struct store *st, char *err, size_t errlen)
{
    sqlite3_stmt *s;
    int rc, bad = 0;

    if (sqlite3_prepare_v2(st->db, "PRAGMA integrity_check", -1, &s, NULL) != SQLITE_OK)
        return store_db_err(st, err, errlen, "integrity check");
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *line = (const char *)sqlite3_column_text(s, 0);
        if (line != NULL && strcmp(line, "ok") != 0 && !bad) {
            set_error(err, errlen, "%s: integrity check: %s", st->path, line);
            bad = 1;
        }
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE)
        return store_db_err(st, err, errlen, "integrity check");
    if (bad)
        return -1;

    if (sqlite3_prepare_v2(st->db, "PRAGMA foreign_key_check", -1, &s, NULL) != SQLITE_OK)
        return store_db_err(st, err, errlen, "foreign key check");
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        set_error(err, errlen, "%s: foreign key check: dangling row in %s", st->path,
                  (const char *)sqlite3_column_text(s, 0));
        bad = 1;
    } else if (rc != SQLITE_DONE) {
        store_db_err(st, err, errlen, "foreign key check");
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
