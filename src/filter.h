/*
 * filter: NIP-01 filters. Parse (strict), match an event, translate to SQL
 * with bound parameters, and serialize back to compact JSON for REQ and
 * NEG-OPEN.
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
    char name;          /* the single letter after '#' */
    size_t nvalues;
    char **values;
};

struct filter {
    size_t nids;
    uint8_t (*ids)[32];
    size_t nauthors;
    uint8_t (*authors)[32];
    size_t nkinds;
    uint32_t *kinds;
    size_t ntags;
    struct filter_tag *tags;
    int has_since, has_until, has_limit;
    uint64_t since, until, limit;
};

/* Parses a filter object; NULL with a reason in err. Caller frees with filter_free. */
struct filter *filter_from_json(const json_t *obj, char *err, size_t errlen);
struct filter *filter_parse(const char *text, char *err, size_t errlen);
struct filter *filter_new(void);            /* empty: matches everything */
struct filter *filter_dup(const struct filter *f);
void filter_free(struct filter *f);

/* 1 if ev matches every condition of f (limit is ignored), else 0. */
int filter_match(const struct filter *f, const struct event *ev);

/* Compact JSON object; caller frees (json_decref / free). */
json_t *filter_to_json(const struct filter *f);
char *filter_to_string(const struct filter *f);

/*
 * SQL translation. filter_sql_where appends to *sql (a malloc'd string the
 * caller owns; it may start NULL) a boolean expression over the events table
 * alias "e" with ?NNN placeholders numbered from *next_param, and
 * filter_sql_bind binds the same values in the same order. The store owns the
 * table names; see store.c for the schema the expression refers to.
 */
int filter_sql_where(const struct filter *f, char **sql, int *next_param);
int filter_sql_bind(const struct filter *f, sqlite3_stmt *stmt, int first_param);

#endif
