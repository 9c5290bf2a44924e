/*
 * filter: NIP-01 filters.
 *
 * Filters come from the user (config, `export --filter`) and go to relays in
 * REQ and NEG-OPEN, so the parser is strict and its messages name the key
 * and index at fault. Keys other than the NIP-01 ones are refused rather than
 * ignored: a filter a relay interprets differently from us would make the
 * local set and the relay's set disagree forever, and negentropy would keep
 * "finding" the difference. "search" (NIP-50) gets its own message because it
 * is the one users are likely to try.
 *
 * filter_match and the SQL from filter_sql_where must select exactly the same
 * events; tests/test-filter.c checks that on a random corpus. SQL text never
 * contains a value, only ?NNN placeholders that filter_sql_bind fills in the
 * same order.
 */
#include "config.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filter.h"
#include "util.h"

/* SQLITE_MAX_VARIABLE_NUMBER's default since SQLite 3.32. */
#define FILTER_MAX_PARAMS 32766

struct filter *filter_new(void)
{
    return xcalloc(1, sizeof(struct filter));
}

static void filter_tag_clear(struct filter_tag *t)
{
    for (size_t i = 0; i < t->nvalues; i++)
        free(t->values[i]);
    free(t->values);
}

void filter_free(struct filter *f)
{
    if (f == NULL)
        return;
    free(f->ids);
    free(f->authors);
    free(f->kinds);
    for (size_t i = 0; i < f->ntags; i++)
        filter_tag_clear(&f->tags[i]);
    free(f->tags);
    free(f);
}

/* A copy of n items (p may be NULL when n is 0). */
static void *filter_dup_array(const void *p, size_t n, size_t size)
{
    void *q = xreallocarray(NULL, n, size);

    if (n > 0)
        memcpy(q, p, n * size);
    return q;
}

struct filter *filter_dup(const struct filter *f)
{
    struct filter *d = filter_new();

    *d = *f;
    d->ids = filter_dup_array(f->ids, f->nids, sizeof *f->ids);
    d->authors = filter_dup_array(f->authors, f->nauthors, sizeof *f->authors);
    d->kinds = filter_dup_array(f->kinds, f->nkinds, sizeof *f->kinds);
    d->tags = xcalloc(f->ntags, sizeof *d->tags);
    for (size_t i = 0; i < f->ntags; i++) {
        const struct filter_tag *s = &f->tags[i];
        struct filter_tag *t = &d->tags[i];
        t->name = s->name;
        t->nvalues = s->nvalues;
        t->values = xcalloc(s->nvalues, sizeof *t->values);
        for (size_t j = 0; j < s->nvalues; j++)
            t->values[j] = xstrdup(s->values[j]);
    }
    return d;
}

/* ------------------------------------------------------------------ parsing */

/* A key fit to quote in an error: printable ASCII, cut short. */
static void filter_quote_key(const char *key, char *out, size_t outlen)
{
    size_t i, max = outlen - 4;

    for (i = 0; key[i] != '\0' && i < max; i++)
        out[i] = (key[i] >= 0x20 && key[i] < 0x7f) ? key[i] : '?';
    if (key[i] != '\0') {
        memcpy(out + i, "...", 3);
        i += 3;
    }
    out[i] = '\0';
}

static int filter_parse_hex_list(const json_t *v, const char *key, const char *what,
                                 uint8_t (**out)[32], size_t *n, char *err, size_t errlen)
{
    if (!json_is_array(v)) {
        set_error(err, errlen, "%s: not an array", key);
        return -1;
    }
    size_t m = json_array_size(v);
    uint8_t(*arr)[32] = xreallocarray(NULL, m, sizeof *arr);
    for (size_t i = 0; i < m; i++) {
        const json_t *s = json_array_get(v, i);
        if (!json_is_string(s) ||
            hex_decode(json_string_value(s), json_string_length(s), arr[i], 32, 1) != 0) {
            set_error(err, errlen,
                      "%s[%zu]: not 64 lowercase hex chars (full %s only, no prefixes)", key, i,
                      what);
            free(arr);
            return -1;
        }
    }
    *out = arr;
    *n = m;
    return 0;
}

static int filter_parse_kinds(struct filter *f, const json_t *v, char *err, size_t errlen)
{
    if (!json_is_array(v)) {
        set_error(err, errlen, "kinds: not an array");
        return -1;
    }
    size_t m = json_array_size(v);
    f->kinds = xreallocarray(NULL, m, sizeof *f->kinds);
    for (size_t i = 0; i < m; i++) {
        const json_t *k = json_array_get(v, i);
        if (!json_is_integer(k) || json_integer_value(k) < 0 || json_integer_value(k) > 65535) {
            set_error(err, errlen, "kinds[%zu]: not an integer 0..65535", i);
            return -1;
        }
        f->kinds[i] = (uint32_t)json_integer_value(k);
        f->nkinds = i + 1;
    }
    return 0;
}

static int filter_parse_tag(struct filter *f, char name, const json_t *v, char *err, size_t errlen)
{
    /*
     * NIP-01: #e and #p lists MUST hold 64-char lowercase hex. Relays such as
     * strfry store those values in binary and refuse anything else, so a
     * filter we accept must not be one they refuse.
     */
    int hex = (name == 'e' || name == 'p');

    if (!json_is_array(v)) {
        set_error(err, errlen, "#%c: not an array", name);
        return -1;
    }
    size_t m = json_array_size(v);
    f->tags = xreallocarray(f->tags, f->ntags + 1, sizeof *f->tags);
    struct filter_tag *t = &f->tags[f->ntags++];
    t->name = name;
    t->nvalues = 0;
    t->values = xcalloc(m, sizeof *t->values);
    for (size_t i = 0; i < m; i++) {
        const json_t *s = json_array_get(v, i);
        uint8_t scratch[32];
        if (!json_is_string(s)) {
            set_error(err, errlen, "#%c[%zu]: not a string", name, i);
            return -1;
        }
        size_t len = json_string_length(s);
        if (strlen(json_string_value(s)) != len) {
            set_error(err, errlen, "#%c[%zu]: contains U+0000", name, i);
            return -1;
        }
        if (hex && hex_decode(json_string_value(s), len, scratch, 32, 1) != 0) {
            set_error(err, errlen, "#%c[%zu]: not 64 lowercase hex chars", name, i);
            return -1;
        }
        t->values[i] = xstrdup(json_string_value(s));
        t->nvalues = i + 1;
    }
    return 0;
}

static int filter_parse_uint(const json_t *v, const char *key, uint64_t *out, int *has, char *err,
                             size_t errlen)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        set_error(err, errlen, "%s: not a non-negative integer", key);
        return -1;
    }
    *out = (uint64_t)json_integer_value(v);
    *has = 1;
    return 0;
}

static int filter_is_letter(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

struct filter *filter_from_json(const json_t *obj, char *err, size_t errlen)
{
    const char *key;
    json_t *v;
    struct filter *f;
    int rc = 0;

    if (!json_is_object(obj)) {
        set_error(err, errlen, "filter: not a JSON object");
        return NULL;
    }
    f = filter_new();
    /* jansson's iteration API is not const-qualified; nothing here modifies obj. */
    json_object_foreach((json_t *)obj, key, v)
    {
        char q[48];

        if (json_object_iter_key_len(json_object_key_to_iter(key)) != strlen(key)) {
            set_error(err, errlen, "filter: a key contains U+0000");
            rc = -1;
        } else if (strcmp(key, "ids") == 0) {
            f->has_ids = 1;
            rc = filter_parse_hex_list(v, key, "event ids", &f->ids, &f->nids, err, errlen);
        } else if (strcmp(key, "authors") == 0) {
            f->has_authors = 1;
            rc = filter_parse_hex_list(v, key, "pubkeys", &f->authors, &f->nauthors, err, errlen);
        } else if (strcmp(key, "kinds") == 0) {
            f->has_kinds = 1;
            rc = filter_parse_kinds(f, v, err, errlen);
        } else if (key[0] == '#' && filter_is_letter(key[1]) && key[2] == '\0') {
            rc = filter_parse_tag(f, key[1], v, err, errlen);
        } else if (strcmp(key, "since") == 0) {
            rc = filter_parse_uint(v, key, &f->since, &f->has_since, err, errlen);
        } else if (strcmp(key, "until") == 0) {
            rc = filter_parse_uint(v, key, &f->until, &f->has_until, err, errlen);
        } else if (strcmp(key, "limit") == 0) {
            rc = filter_parse_uint(v, key, &f->limit, &f->has_limit, err, errlen);
        } else if (strcmp(key, "search") == 0) {
            set_error(err, errlen, "search: not supported");
            rc = -1;
        } else if (key[0] == '#') {
            filter_quote_key(key, q, sizeof q);
            set_error(err, errlen, "%s: tag filters take a single letter a-z or A-Z", q);
            rc = -1;
        } else {
            filter_quote_key(key, q, sizeof q);
            set_error(err, errlen, "unknown key: %s", q);
            rc = -1;
        }
        if (rc != 0) {
            filter_free(f);
            return NULL;
        }
    }
    return f;
}

struct filter *filter_parse(const char *text, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *obj;
    struct filter *f;

    obj = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    if (obj == NULL) {
        set_error(err, errlen, "invalid JSON: %s (column %d)", jerr.text, jerr.column);
        return NULL;
    }
    f = filter_from_json(obj, err, errlen);
    json_decref(obj);
    return f;
}

/* ----------------------------------------------------------------- matching */

static int filter_match_tag(const struct filter_tag *ft, const struct event *ev)
{
    for (size_t i = 0; i < ev->ntags; i++) {
        const struct event_tag *t = &ev->tags[i];
        if (t->nfields < 2 || t->lens[0] != 1 || t->fields[0][0] != ft->name)
            continue;
        for (size_t j = 0; j < ft->nvalues; j++) {
            if (strlen(ft->values[j]) == t->lens[1] &&
                memcmp(ft->values[j], t->fields[1], t->lens[1]) == 0)
                return 1;
        }
    }
    return 0;
}

static int filter_match_hex(const uint8_t (*list)[32], size_t n, const uint8_t x[32])
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(list[i], x, 32) == 0)
            return 1;
    return 0;
}

int filter_match(const struct filter *f, const struct event *ev)
{
    if ((f->has_ids || f->nids) && !filter_match_hex((const uint8_t(*)[32])f->ids, f->nids, ev->id))
        return 0;
    if ((f->has_authors || f->nauthors) &&
        !filter_match_hex((const uint8_t(*)[32])f->authors, f->nauthors, ev->pubkey))
        return 0;
    if (f->has_kinds || f->nkinds) {
        size_t i;
        for (i = 0; i < f->nkinds; i++)
            if (f->kinds[i] == ev->kind)
                break;
        if (i == f->nkinds)
            return 0;
    }
    for (size_t i = 0; i < f->ntags; i++)
        if (!filter_match_tag(&f->tags[i], ev))
            return 0;
    if (f->has_since && ev->created_at < f->since)
        return 0;
    if (f->has_until && ev->created_at > f->until)
        return 0;
    return 1;
}

/* -------------------------------------------------------------- JSON output */

static json_t *filter_hex_array(const uint8_t (*list)[32], size_t n)
{
    json_t *a = json_array();
    char hex[65];

    for (size_t i = 0; i < n; i++) {
        hex_encode(list[i], 32, hex);
        json_array_append_new(a, json_string(hex));
    }
    return a;
}

/* JSON integers are signed 64-bit here; a hand-set value above that is clamped. */
static json_t *filter_json_uint(uint64_t x)
{
    return json_integer(x > INT64_MAX ? INT64_MAX : (json_int_t)x);
}

json_t *filter_to_json(const struct filter *f)
{
    json_t *o = json_object();

    if (f->has_ids || f->nids)
        json_object_set_new(o, "ids", filter_hex_array((const uint8_t(*)[32])f->ids, f->nids));
    if (f->has_authors || f->nauthors)
        json_object_set_new(o, "authors",
                            filter_hex_array((const uint8_t(*)[32])f->authors, f->nauthors));
    if (f->has_kinds || f->nkinds) {
        json_t *a = json_array();
        for (size_t i = 0; i < f->nkinds; i++)
            json_array_append_new(a, json_integer(f->kinds[i]));
        json_object_set_new(o, "kinds", a);
    }
    for (size_t i = 0; i < f->ntags; i++) {
        char key[3] = {'#', f->tags[i].name, '\0'};
        json_t *a = json_object_get(o, key);
        /* Two entries for one letter (built by hand) cannot both be keys; merge. */
        if (a == NULL) {
            a = json_array();
            json_object_set_new(o, key, a);
        }
        for (size_t j = 0; j < f->tags[i].nvalues; j++)
            json_array_append_new(a, json_string(f->tags[i].values[j]));
    }
    if (f->has_since)
        json_object_set_new(o, "since", filter_json_uint(f->since));
    if (f->has_until)
        json_object_set_new(o, "until", filter_json_uint(f->until));
    if (f->has_limit)
        json_object_set_new(o, "limit", filter_json_uint(f->limit));
    return o;
}

char *filter_to_string(const struct filter *f)
{
    json_t *o = filter_to_json(f);
    char *s = json_dumps(o, JSON_COMPACT);

    json_decref(o);
    if (s == NULL)
        abort(); /* only fails when out of memory */
    return s;
}

/* --------------------------------------------------------------------- SQL */

static void filter_sql_append(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void filter_sql_append(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    char tmp[128];
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp)
        abort(); /* all our fragments are short */
    buf_append(b, tmp, (size_t)n);
}

/* "?N,?N+1,..." for n placeholders. */
static void filter_sql_params(struct buf *b, int *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        filter_sql_append(b, i ? ",?%d" : "?%d", (*p)++);
}

/* Starts the next condition: "(" before the first, " AND " before the others. */
static void filter_sql_and(struct buf *b, int *nconds)
{
    buf_append(b, *nconds ? " AND " : "(", *nconds ? 5 : 1);
    (*nconds)++;
}

static size_t filter_sql_count_params(const struct filter *f)
{
    size_t n = f->nids + f->nauthors + f->nkinds;

    for (size_t i = 0; i < f->ntags; i++)
        if (f->tags[i].nvalues > 0)
            n += 1 + f->tags[i].nvalues;
    return n + (f->has_since != 0) + (f->has_until != 0);
}

int filter_sql_where(const struct filter *f, char **sql, int *next_param)
{
    struct buf b = {0};
    int p = *next_param;
    int nconds = 0;

    if (p < 1 || filter_sql_count_params(f) > (size_t)(FILTER_MAX_PARAMS - p + 1))
        return -1;

    if (*sql != NULL)
        buf_append(&b, *sql, strlen(*sql));

    /* An empty list can never match: a constant false with no parameters. */
    if (f->has_ids || f->nids) {
        filter_sql_and(&b, &nconds);
        if (f->nids == 0) {
            buf_push(&b, '0');
        } else {
            buf_append(&b, "e.id IN (", 9);
            filter_sql_params(&b, &p, f->nids);
            buf_push(&b, ')');
        }
    }
    if (f->has_authors || f->nauthors) {
        filter_sql_and(&b, &nconds);
        if (f->nauthors == 0) {
            buf_push(&b, '0');
        } else {
            buf_append(&b, "e.pubkey IN (", 13);
            filter_sql_params(&b, &p, f->nauthors);
            buf_push(&b, ')');
        }
    }
    if (f->has_kinds || f->nkinds) {
        filter_sql_and(&b, &nconds);
        if (f->nkinds == 0) {
            buf_push(&b, '0');
        } else {
            buf_append(&b, "e.kind IN (", 11);
            filter_sql_params(&b, &p, f->nkinds);
            buf_push(&b, ')');
        }
    }
    for (size_t i = 0; i < f->ntags; i++) {
        const struct filter_tag *t = &f->tags[i];
        filter_sql_and(&b, &nconds);
        if (t->nvalues == 0) {
            buf_push(&b, '0');
            continue;
        }
        /*
         * "e.seq IN (...)", not a correlated EXISTS: SQLite then drives the
         * query from the tags_name_value index (an #e or #p filter names a
         * handful of events out of millions) instead of scanning every
         * event and probing tags for each.
         */
        filter_sql_append(&b, "e.seq IN (SELECT t.seq FROM tags t WHERE t.name = ?%d", p++);
        buf_append(&b, " AND t.value IN (", 17);
        filter_sql_params(&b, &p, t->nvalues);
        buf_append(&b, "))", 2);
    }
    /*
     * SQLite integers are signed 64-bit and stored created_at never exceeds
     * INT64_MAX. A since above that matches nothing: "> INT64_MAX". An until
     * above that matches everything: "<= INT64_MAX". Same parameter count
     * either way, so filter_sql_bind stays in step.
     */
    if (f->has_since) {
        filter_sql_and(&b, &nconds);
        filter_sql_append(&b, f->since > INT64_MAX ? "e.created_at > ?%d" : "e.created_at >= ?%d",
                          p++);
    }
    if (f->has_until) {
        filter_sql_and(&b, &nconds);
        filter_sql_append(&b, "e.created_at <= ?%d", p++);
    }
    if (nconds == 0)
        buf_push(&b, '1');
    else
        buf_push(&b, ')');
    buf_push(&b, '\0');

    free(*sql);
    *sql = (char *)b.data;
    *next_param = p;
    return 0;
}

static sqlite3_int64 filter_sql_clamp(uint64_t x)
{
    return x > INT64_MAX ? INT64_MAX : (sqlite3_int64)x;
}

int filter_sql_bind(const struct filter *f, sqlite3_stmt *stmt, int first_param)
{
    int p = first_param;
    int rc = SQLITE_OK;

    for (size_t i = 0; i < f->nids && rc == SQLITE_OK; i++)
        rc = sqlite3_bind_blob(stmt, p++, f->ids[i], 32, SQLITE_TRANSIENT);
    for (size_t i = 0; i < f->nauthors && rc == SQLITE_OK; i++)
        rc = sqlite3_bind_blob(stmt, p++, f->authors[i], 32, SQLITE_TRANSIENT);
    for (size_t i = 0; i < f->nkinds && rc == SQLITE_OK; i++)
        rc = sqlite3_bind_int64(stmt, p++, f->kinds[i]);
    for (size_t i = 0; i < f->ntags && rc == SQLITE_OK; i++) {
        const struct filter_tag *t = &f->tags[i];
        if (t->nvalues == 0)
            continue;
        rc = sqlite3_bind_text(stmt, p++, &t->name, 1, SQLITE_TRANSIENT);
        for (size_t j = 0; j < t->nvalues && rc == SQLITE_OK; j++) {
            const char *v = t->values[j];
            if (filter_sql_bind_tag_value(stmt, p++, v, strlen(v)) < 0)
                rc = SQLITE_ERROR;
        }
    }
    if (f->has_since && rc == SQLITE_OK)
        rc = sqlite3_bind_int64(stmt, p++, filter_sql_clamp(f->since));
    if (f->has_until && rc == SQLITE_OK)
        rc = sqlite3_bind_int64(stmt, p++, filter_sql_clamp(f->until));
    return rc == SQLITE_OK ? 0 : -1;
}

/*
 * 1 + the value of each lowercase hex digit; 0 for everything else. Every
 * tag value of every stored event goes through filter_tag_value_blob, and on
 * random digits the branches of a plain decoder mispredict half the time.
 */
static const uint8_t filter_hex_digit[256] = {
    ['0'] = 1, ['1'] = 2,  ['2'] = 3,  ['3'] = 4,  ['4'] = 5,  ['5'] = 6,  ['6'] = 7,  ['7'] = 8,
    ['8'] = 9, ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16,
};

int filter_tag_value_blob(const char *value, size_t len, uint8_t raw[32])
{
    const unsigned char *v = (const unsigned char *)value;
    unsigned bad = 0;

    if (len != 64)
        return 0;
    for (size_t i = 0; i < 32; i++) {
        unsigned hi = filter_hex_digit[v[2 * i]], lo = filter_hex_digit[v[2 * i + 1]];
        bad |= (hi == 0) | (lo == 0);
        raw[i] = (uint8_t)((hi - 1) << 4 | ((lo - 1) & 15));
    }
    return !bad;
}

int filter_sql_bind_tag_value(sqlite3_stmt *stmt, int param, const char *value, size_t len)
{
    uint8_t raw[32];
    int rc;

    if (filter_tag_value_blob(value, len, raw))
        rc = sqlite3_bind_blob(stmt, param, raw, sizeof raw, SQLITE_TRANSIENT);
    else if (len <= INT_MAX)
        rc = sqlite3_bind_text(stmt, param, value, (int)len, SQLITE_TRANSIENT);
    else
        rc = SQLITE_TOOBIG;
    return rc == SQLITE_OK ? 0 : -1;
}
