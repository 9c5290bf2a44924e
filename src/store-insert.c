/*
 * store-insert: writing events into the store (store_insert_batch) with the
 * relay semantics of NIP-01 and NIP-09 that the top of store.c describes:
 * replaceable and addressable versions, deletions and their tombstones,
 * address_heads, and the tag and author index entries each batch writes at
 * its end (tags_flush).
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

#define KIND_DELETION 5

/*
 * The page cache of a connection once it writes a batch of at least
 * STORE_BULK_BATCH events (an import, a benchmark; sync writes a few hundred
 * at a time). A bulk batch touches a page of every random-keyed index (id,
 * author, e/p tag values) per event; once those indexes outgrow the cache,
 * each batch reads them back from the OS: at 200 000 events (about 30 MB of
 * such indexes) 128 MB instead of 32 MB saves about 1.2 us of the writer's
 * 13 us per event.
 */
#define STORE_BULK_CACHE_KB "131072"
#define STORE_BULK_BATCH    1000

/* The address of a replaceable or addressable event. */
struct address {
    uint8_t pubkey[32];
    uint32_t kind;
    int has_d; /* addressable: d below is the dtag column; replaceable: dtag '' */
    const char *d;
    size_t dlen;
};

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
        store_db_err(st, err, errlen, "prepare");
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

    if ((s = store_stmt_get(st, ST_AUTHOR_GET, err, errlen)) == NULL)
        return -1;
    sqlite3_bind_blob(s, 1, pubkey, 32, SQLITE_STATIC);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        author = sqlite3_column_int64(s, 0);
        rc = SQLITE_DONE;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_db_err(st, err, errlen, "look up author");
    if (author == 0) {
        if ((s = store_stmt_get(st, ST_AUTHOR_NEW, err, errlen)) == NULL)
            return -1;
        sqlite3_bind_blob(s, 1, pubkey, 32, SQLITE_STATIC);
        if (store_stmt_run(st, s, err, errlen, "add author") < 0)
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
        if (store_stmt_run(st, s, err, errlen, "insert author entries") < 0)
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
            store_db_err(st, err, errlen, "bind tag");
            sqlite3_clear_bindings(s);
        } else if (store_stmt_run(st, s, err, errlen, "insert tags") < 0) {
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
    if ((s = store_stmt_get(st, ST_JSON_BY_SEQ, err, errlen)) == NULL)
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
        return store_db_err(st, err, errlen, "read event to delete");

    rc = 0;
    if (ev == NULL) {
        if ((s = store_stmt_get(st, ST_DELETE_TAGS_SCAN, err, errlen)) == NULL)
            return -1;
        sqlite3_bind_int64(s, 1, seq);
        rc = store_stmt_run(st, s, err, errlen, "delete tags");
    }
    for (size_t i = 0; ev != NULL && i < ev->ntags && rc == 0; i++) {
        const struct event_tag *t = &ev->tags[i];
        if (!is_tag_letter(t))
            continue;
        if ((s = store_stmt_get(st, ST_DELETE_TAG, err, errlen)) == NULL) {
            rc = -1;
            break;
        }
        sqlite3_bind_text(s, 1, t->fields[0], 1, SQLITE_STATIC);
        if (filter_sql_bind_tag_value(s, 2, t->fields[1], t->lens[1]) < 0) {
            rc = store_db_err(st, err, errlen, "bind tag");
            break;
        }
        sqlite3_bind_int64(s, 3, seq);
        rc = store_stmt_run(st, s, err, errlen, "delete tag");
    }
    event_free(ev);
    if (rc < 0)
        return -1;
    if ((s = store_stmt_get(st, ST_DELETE_AUTHOR, err, errlen)) == NULL)
        return -1;
    sqlite3_bind_int64(s, 1, seq);
    if (store_stmt_run(st, s, err, errlen, "delete author entry") < 0)
        return -1;
    if ((s = store_stmt_get(st, ST_DELETE_SEQ, err, errlen)) == NULL)
        return -1;
    sqlite3_bind_int64(s, 1, seq);
    return store_stmt_run(st, s, err, errlen, "delete event");
}

/* Records (created_at, id) as a deleted version at a; keeps the best one. */
static int head_put(struct store *st, const struct address *a, uint64_t created_at,
                    const uint8_t *id, char *err, size_t errlen)
{
    sqlite3_stmt *s = store_stmt_get(st, ST_HEAD_PUT, err, errlen);

    if (s == NULL)
        return -1;
    sqlite3_bind_blob(s, 1, a->pubkey, 32, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, a->kind);
    sqlite3_bind_text(s, 3, a->has_d ? a->d : "", (int)(a->has_d ? a->dlen : 0), SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, (sqlite3_int64)created_at);
    sqlite3_bind_blob(s, 5, id, 32, SQLITE_STATIC);
    return store_stmt_run(st, s, err, errlen, "record address head");
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

    if ((s = store_stmt_get(st, ST_ADDR_ROWS, err, errlen)) == NULL)
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
        return store_db_err(st, err, errlen, "look up address");
    if (beaten)
        return 1;

    if ((s = store_stmt_get(st, ST_HEAD_GET, err, errlen)) == NULL)
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
        return store_db_err(st, err, errlen, "look up address head");
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
        s = store_stmt_get(st, has_until ? ST_ADDR_ROWS_UNTIL : ST_ADDR_ROWS, err, errlen);
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
            return store_db_err(st, err, errlen, "look up address");
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

    if ((s = store_stmt_get(st, ST_TOMB_BY_ID, err, errlen)) == NULL)
        return -1;
    sqlite3_bind_blob(s, 1, ev->id, 32, SQLITE_STATIC);
    sqlite3_bind_blob(s, 2, ev->pubkey, 32, SQLITE_STATIC);
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc == SQLITE_ROW)
        return 1;
    if (rc != SQLITE_DONE)
        return store_db_err(st, err, errlen, "look up deletions");
    if (a == NULL)
        return 0;

    address_format(a, scratch);
    if ((s = store_stmt_get(st, ST_TOMB_BY_ADDR, err, errlen)) == NULL)
        return -1;
    sqlite3_bind_text(s, 1, (const char *)scratch->data, (int)scratch->len, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)ev->created_at);
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc == SQLITE_ROW)
        return 1;
    if (rc != SQLITE_DONE)
        return store_db_err(st, err, errlen, "look up deletions");
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

    if ((s = store_stmt_get(st, ST_INSERT_EVENT, err, errlen)) == NULL)
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
    rc = store_stmt_run(st, s, err, errlen, "insert event");
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
    sqlite3_stmt *s = store_stmt_get(st, ST_INSERT_TOMB, err, errlen);

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
    return store_stmt_run(st, s, err, errlen, "record deletion");
}

/* The deletion's `e` target: remove it if it is stored, is the deleter's, and is not a deletion. */
static int delete_by_id(struct store *st, const struct event *del, const uint8_t target[32],
                        char *err, size_t errlen)
{
    sqlite3_stmt *s = store_stmt_get(st, ST_EVENT_BY_ID, err, errlen);
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
        return store_db_err(st, err, errlen, "look up deleted event");
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
        if (store_exec_sql(st, "PRAGMA cache_size = -" STORE_BULK_CACHE_KB, err, errlen,
                           "configure") < 0)
            return -1;
        st->bulk_cache = 1;
    }
    if ((s = store_stmt_get(st, ST_BEGIN, err, errlen)) == NULL ||
        store_stmt_run(st, s, err, errlen, "begin") < 0)
        return -1;
    if ((s = store_stmt_get(st, ST_ANY_TOMB, err, errlen)) == NULL)
        goto fail;
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        store_db_err(st, err, errlen, "look up deletions");
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
    if ((s = store_stmt_get(st, ST_COMMIT, err, errlen)) == NULL ||
        store_stmt_run(st, s, err, errlen, "commit") < 0)
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
