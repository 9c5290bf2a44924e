/*
 * cfg-int: what the parts of the configuration code share (the parse state
 * and the helpers one part calls in another). Private to src/cfg*.c.
 */
#ifndef NEGSYNC_CFG_INT_H
#define NEGSYNC_CFG_INT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "cfg.h"
#include "util.h"

/*
 * Messages kept from one file, to sort by line; config_load reports the
 * first CONFIG_MAX_ERRORS of them and counts the rest.
 */
#define CFG_KEEP_ERRORS 1000

enum cfg_section {
    CFG_SEC_NONE, /* before the first header */
    CFG_SEC_STORAGE,
    CFG_SEC_SYNC,
    CFG_SEC_RELAY,
    CFG_SEC_FILTER,
    CFG_SEC_BAD, /* a header already reported; its keys are skipped */
};

/* How inih will treat the physical line the reader just handed it. */
enum cfg_raw {
    CFG_RAW_BLANK, /* blank or comment */
    CFG_RAW_SECTION,
    CFG_RAW_KEY,  /* should be "key = value"; a handler call is due */
    CFG_RAW_CONT, /* indented: continues the previous key's value */
};

struct cfg_error {
    int line;
    char *msg;
};

struct cfg_seen {
    char *key;
    int line;
};

struct cfg_segment {
    size_t off; /* in the pending value */
    int line;
};

struct cfg_parse {
    struct config *cfg;
    const char *file;
    int64_t now;
    /* The whole file (cfg_read_file) and how far the reader is in it. */
    const char *data;
    size_t datalen, datapos;
    /* The first CFG_KEEP_ERRORS messages; ndropped counts the rest. */
    struct cfg_error *errors;
    size_t nerrors, ndropped;

    /* The reader: the current physical line and how much inih has of it. */
    char *raw;
    size_t rawcap, rawlen, rawpos;
    int lineno;
    size_t max_line;
    enum cfg_raw kind;
    int handled;   /* inih called the handler for this line */
    int prev_key;  /* mirrors inih's prev_name: indented lines continue it */
    int skip_cont; /* the key line before was dropped: ignore its continuations */
    int is_tag;    /* a "#x = ..." line whose '#' inih was not shown */

    /* The section being read. */
    enum cfg_section sec;
    int sec_line;
    char *sec_title; /* "sync", "relay wss://...", for messages */
    struct cfg_seen *seen;
    size_t nseen;
    int storage_line, sync_line;

    /* The filter section being read, as the JSON object filter_from_json takes. */
    json_t *fobj;
    int since_line, until_line;
    int64_t since_age, until_age;

    /* The key whose value may still continue on indented lines. */
    char *pkey;
    struct buf pval;
    int pline;
    /* Where each physical line's part of pval starts, for per-item lines. */
    struct cfg_segment *psegs;
    size_t nsegs, segcap;
    int pbad; /* already reported: skip it */
};

/* cfg.c: messages and values */
void config_errors_add(struct config_errors *errs, char *msg);
char *cfg_vformat(const char *fmt, va_list ap);
char *cfg_format(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void cfg_quote(const char *s, char *out, size_t outlen);
int cfg_utf8_valid(const char *s);
int cfg_parse_bool(const char *s, int *out);
int cfg_parse_u64(const char *s, uint64_t *out);
int cfg_parse_duration(const char *s, uint64_t *out);

/* cfg-parse.c: the reader */
void cfg_error(struct cfg_parse *ps, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* cfg-keys.c: what the keys mean */
int cfg_value_line(const struct cfg_parse *ps, size_t off, size_t *seg);
void cfg_flush_key(struct cfg_parse *ps);
void cfg_resolve_auth(struct cfg_parse *ps);

#endif
