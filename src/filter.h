/*
 * filter: NIP-01 filters. Parse (strict), match an event, translate to SQL
 * with bound parameters, and serialize back to compact JSON for REQ and
 * NEG-OPEN.
 *
 * Empty lists: NIP-01 says lists have "one or more values" and that a value
 * must match, so an empty list ("kinds":[]) can never be satisfied; negsync
 * accepts it and it matches nothing (in filter_match and in SQL alike), and
 * it survives a round trip through filter_to_json.
 */
#ifndef NEGSYNC_FILTER_H
#define NEGSYNC_FILTER_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <sqlite3.h>

#include "event.h"

#define FILTER_ERRLEN 160

struct filter_tag {
    char name;      /* the single letter after '#' (a-z, A-Z) */
    size_t nvalues; /* 0: an explicitly empty list, matches nothing */
    char **values;  /* UTF-8, no NUL bytes inside */
};

/*
 * A list condition (ids, authors, kinds) is in force when its count is
 * non-zero or its has_ flag is set; has_ with a zero count is an empty list,
 * which matches nothing. The parser sets has_ for every list it saw. Each
 * entry in tags is in force. since/until/limit parse as 0..INT64_MAX; larger
 * values set by hand still work (since above INT64_MAX matches nothing).
 */
struct filter {
    size_t nids;
    uint8_t (*ids)[32];
    size_t nauthors;
    uint8_t (*authors)[32];
    size_t nkinds;
    uint32_t *kinds;
    size_t ntags;
    struct filter_tag *tags;
    int has_ids, has_authors, has_kinds;
    int has_since, has_until, has_limit;
    uint64_t since, until, limit;
};

/*
 * Parses a filter object; NULL with a reason in err ("kinds[2]: not an integer
 * 0..65535", "search: not supported", "unknown key: foo"). ids, authors, #e and
 * #p take full 64-char lowercase hex only (no prefixes). Caller frees with
 * filter_free.
 */
struct filter *filter_from_json(const json_t *obj, char *err, size_t errlen);
/* Same, from NUL-terminated JSON text; duplicate keys are refused. */
struct filter *filter_parse(const char *text, char *err, size_t errlen);
struct filter *filter_new(void); /* empty: matches everything */
struct filter *filter_dup(const struct filter *f);
void filter_free(struct filter *f);

/*
 * 1 if ev matches every condition of f (limit is ignored), else 0. A tag
 * condition #x is met by a tag whose name is exactly "x" and whose second
 * field is one of the values.
 */
int filter_match(const struct filter *f, const struct event *ev);

/*
 * Compact JSON object, keys in the order ids, authors, kinds, #tags, since,
 * until, limit; always an object ({} for the empty filter). Caller frees
 * (json_decref / free).
 */
json_t *filter_to_json(const struct filter *f);
char *filter_to_string(const struct filter *f);

/*
 * SQL translation. filter_sql_where appends to *sql (a malloc'd string the
 * caller owns; it may start NULL) a parenthesized boolean expression over the
 * events table alias "e" with ?NNN placeholders numbered from *next_param
 * (advanced past the last one used), and filter_sql_bind binds the same values
 * from first_param (the *next_param passed before). The empty filter yields
 * "1". The expression uses e.id, e.pubkey (32-byte blobs), e.kind,
 * e.created_at, e.seq and, for tag conditions, a subquery over tags t (t.seq,
 * t.name, t.value); limit is not included (the caller orders and limits). Both return
 * 0, or -1: filter_sql_where when the filter needs more parameters than
 * SQLite's default limit (32766), filter_sql_bind when a bind fails.
 */
int filter_sql_where(const struct filter *f, char **sql, int *next_param);
int filter_sql_bind(const struct filter *f, sqlite3_stmt *stmt, int first_param);

/*
 * Binds a tag value (len bytes) in the form the store's tags table keeps it:
 * exactly 64 lowercase hex chars (the event ids and pubkeys of e and p tags,
 * and any other value that looks like one) as the 32 raw bytes, everything
 * else as text. A blob never equals a text, so the mapping is exact, and it
 * halves the largest index of the store. The store's inserts and
 * filter_sql_bind both go through here so they can never disagree. 0, or -1
 * if the bind fails.
 */
int filter_sql_bind_tag_value(sqlite3_stmt *stmt, int param, const char *value, size_t len);
/* The test behind it: 1 with the 32 bytes in raw if value is kept as a blob, else 0. */
int filter_tag_value_blob(const char *value, size_t len, uint8_t raw[32]);

#endif
