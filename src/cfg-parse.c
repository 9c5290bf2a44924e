/*
 * cfg-parse: reading a configuration file. inih splits lines into section,
 * key and value; this file feeds it, opens and closes sections, keeps the
 * errors by line, and loads a file (config_parse_file, config_load). What
 * each key means is cfg-keys.c.
 *
 * inih (r55 as Debian builds it) has limits that matter for this file, and
 * the reader below works around each one:
 *
 * - The handler gets no line number (INI_HANDLER_LINENO is 0 in the shared
 *   library, and turning it on in our code would break the ABI), so our own
 *   reader feeds inih one physical line at a time and counts them.
 * - Section names are cut at 49 bytes, too short for many relay URLs, so
 *   the reader reads section headers itself and the handler ignores inih's
 *   copy.
 * - Lines are cut at 200 bytes, which is three pubkeys. Debian's build
 *   exports runtime knobs that lift this; upstream's does not, so they are
 *   weak references, and a line still too long is reported, not split.
 * - A line inih cannot parse (no '=') is reported through its return value,
 *   and only the first; the reader notices every such line itself.
 * - '#' starts a comment, but "#e = ..." is a tag condition in a filter, so
 *   the reader hides such a '#' from inih and the handler puts it back.
 *
 * A key's value may continue on indented lines (inih's multiline mode); for
 * lists this is how a long list is written, for anything else it is an
 * error. Keys are therefore processed when the next key or section starts,
 * not when inih first reports them.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <ini.h>
#include <jansson.h>

#include "cfg.h"
#include "cfg-int.h"
#include "util.h"

#ifndef NEGSYNC_DOCDIR
#define NEGSYNC_DOCDIR "/usr/local/share/doc/negsync"
#endif

/* Longest line accepted when inih lets us lift its own limit. */
#define CFG_MAX_LINE (1024 * 1024)

extern bool ini_use_stack;
extern bool ini_allow_realloc;
extern int ini_max_line;
#pragma weak ini_use_stack
#pragma weak ini_allow_realloc
#pragma weak ini_max_line

void cfg_error(struct cfg_parse *ps, int line, const char *fmt, ...)
{
    va_list ap;

    /* A file of garbage has an error on every line: keep memory bounded. */
    if (ps->nerrors >= CFG_KEEP_ERRORS) {
        ps->ndropped++;
        return;
    }
    ps->errors = xreallocarray(ps->errors, ps->nerrors + 1, sizeof *ps->errors);
    va_start(ap, fmt);
    ps->errors[ps->nerrors].msg = cfg_vformat(fmt, ap);
    va_end(ap);
    ps->errors[ps->nerrors++].line = line;
}

/* The pending value continues from here on the current physical line. */
static void cfg_add_segment(struct cfg_parse *ps)
{
    if (ps->nsegs == ps->segcap) {
        ps->segcap = ps->segcap ? ps->segcap * 2 : 16;
        ps->psegs = xreallocarray(ps->psegs, ps->segcap, sizeof *ps->psegs);
    }
    ps->psegs[ps->nsegs++] = (struct cfg_segment){.off = ps->pval.len, .line = ps->lineno};
}

/*
 * "name =" or "#x =" at the start of s (also with inih's hidden '#'): a key,
 * where a list item cannot be one. ':' is not checked, URLs have one.
 */
static int cfg_looks_like_key(const char *s)
{
    const char *p = s;

    if (*p == '#' || *p == '\x01') {
        p++;
        if (!isalpha((unsigned char)*p))
            return 0;
        p++;
    } else {
        if (!isalpha((unsigned char)*p) && *p != '_')
            return 0;
        while (isalnum((unsigned char)*p) || *p == '_')
            p++;
    }
    while (*p == ' ' || *p == '\t')
        p++;
    return *p == '=' || (p > s && (s[0] == '#' || s[0] == '\x01') && *p == ':');
}

static int cfg_is_list_key(enum cfg_section sec, const char *key)
{
    return sec == CFG_SEC_FILTER && (strcmp(key, "kinds") == 0 || strcmp(key, "authors") == 0 ||
                                     strcmp(key, "ids") == 0 || key[0] == '#');
}

/* Ends the current section: a filter section becomes a config_filter. */
static void cfg_close_section(struct cfg_parse *ps)
{
    cfg_flush_key(ps);
    for (size_t i = 0; i < ps->nseen; i++)
        free(ps->seen[i].key);
    free(ps->seen);
    ps->seen = NULL;
    ps->nseen = 0;

    if (ps->sec == CFG_SEC_FILTER) {
        struct config *cfg = ps->cfg;
        struct config_filter *cf = &cfg->filters[cfg->nfilters - 1];
        char err[FILTER_ERRLEN];
        json_t *js = json_object_get(ps->fobj, "since"), *ju = json_object_get(ps->fobj, "until");

        cf->filter = filter_from_json(ps->fobj, err, sizeof err);
        cf->since_age = ps->since_age;
        cf->until_age = ps->until_age;
        if (cf->filter == NULL) {
            /* Each key passed alone; only a combination could fail here. */
            cfg_error(ps, ps->sec_line, "%s", err);
            cf->filter = filter_new();
        } else if (js != NULL && ju != NULL && json_integer_value(js) > json_integer_value(ju)) {
            cfg_error(ps, ps->since_line > ps->until_line ? ps->since_line : ps->until_line,
                      "since (%lld) is after until (%lld); the filter never matches",
                      (long long)json_integer_value(js), (long long)json_integer_value(ju));
        }
    }
    json_decref(ps->fobj);
    ps->fobj = NULL;
    free(ps->sec_title);
    ps->sec_title = NULL;
    ps->sec = CFG_SEC_NONE;
}

static int cfg_filter_name_ok(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > 64)
        return 0;
    for (; *s != '\0'; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-' && *s != '.')
            return 0;
    return 1;
}

/* Opens the section named by the text between '[' and ']'. */
static void cfg_open_section(struct cfg_parse *ps, char *title)
{
    struct config *cfg = ps->cfg;
    char *arg, *end, err[CONFIG_ERRLEN], q[64];
    int line = ps->lineno;

    cfg_close_section(ps);
    ps->sec = CFG_SEC_BAD;
    ps->sec_line = line;

    while (isspace((unsigned char)*title))
        title++;
    end = title + strlen(title);
    while (end > title && isspace((unsigned char)end[-1]))
        *--end = '\0';
    arg = title + strcspn(title, " \t");
    if (*arg != '\0') {
        *arg++ = '\0';
        while (isspace((unsigned char)*arg))
            arg++;
    }
    ps->sec_title = *arg != '\0' ? cfg_format("%s %s", title, arg) : xstrdup(title);

    if (strcmp(title, "storage") == 0 || strcmp(title, "sync") == 0) {
        int *first = title[1] == 't' ? &ps->storage_line : &ps->sync_line;
        if (*arg != '\0')
            cfg_error(ps, line, "[%s] takes no name", title);
        else if (*first != 0)
            cfg_error(ps, line, "duplicate section [%s] (first at line %d)", title, *first);
        else {
            *first = line;
            ps->sec = title[1] == 't' ? CFG_SEC_STORAGE : CFG_SEC_SYNC;
        }
    } else if (strcmp(title, "relay") == 0) {
        char *url;
        const struct config_relay *dup;

        if (*arg == '\0') {
            cfg_error(ps, line, "[relay] needs a URL: [relay wss://relay.example.com]");
            return;
        }
        if ((url = config_url_normalize(arg, err, sizeof err)) == NULL) {
            cfg_error(ps, line, "%s", err);
            return;
        }
        if ((dup = config_find_relay(cfg, url)) != NULL) {
            cfg_error(ps, line, "duplicate relay %s (first at line %d)", url, dup->line);
            free(url);
            return;
        }
        cfg->relays = xreallocarray(cfg->relays, cfg->nrelays + 1, sizeof *cfg->relays);
        cfg->relays[cfg->nrelays++] = (struct config_relay){
            .url = url,
            .line = line,
            .negentropy = CONFIG_NEGENTROPY_AUTO,
            .tls_verify = 1,
            .compression = 1,
            .enabled = 1,
        };
        ps->sec = CFG_SEC_RELAY;
    } else if (strcmp(title, "filter") == 0) {
        const struct config_filter *dup;

        if (*arg == '\0') {
            cfg_error(ps, line, "[filter] needs a name: [filter notes]");
            return;
        }
        if (!cfg_filter_name_ok(arg)) {
            cfg_quote(arg, q, sizeof q);
            cfg_error(ps, line, "filter name '%s': use up to 64 letters, digits, '_', '-' and '.'",
                      q);
            return;
        }
        if ((dup = config_find_filter(cfg, arg)) != NULL) {
            cfg_error(ps, line, "duplicate filter '%s' (first at line %d)", arg, dup->line);
            return;
        }
        cfg->filters = xreallocarray(cfg->filters, cfg->nfilters + 1, sizeof *cfg->filters);
        cfg->filters[cfg->nfilters++] = (struct config_filter){
            .name = xstrdup(arg),
            .line = line,
            .since_age = -1,
            .until_age = -1,
        };
        ps->fobj = json_object();
        ps->since_line = ps->until_line = 0;
        ps->since_age = ps->until_age = -1;
        ps->sec = CFG_SEC_FILTER;
    } else {
        cfg_quote(ps->sec_title, q, sizeof q);
        cfg_error(ps, line,
                  "unknown section [%s]; expected [storage], [sync], [relay URL] or "
                  "[filter NAME]",
                  q);
    }
}

/* Only blanks or a comment from s to the end of the line. */
static int cfg_rest_is_blank(const char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    return *s == '\0' || *s == ';' || *s == '#';
}

/*
 * A section header. inih ends it at the first ']', but an IPv6 relay URL
 * ("[relay wss://[::1]:7777]") has one inside, so the header ends at the
 * first ']' followed by nothing but blanks or a comment; an inline comment
 * (';' after whitespace) before any such ']' leaves it unclosed. inih's own
 * idea of the section name is never used (see cfg_handler), and unlike inih
 * we refuse text after the ']' other than a comment.
 */
static int cfg_read_section(struct cfg_parse *ps, char *start)
{
    char *p = start + 1, *first = NULL;
    int was_space = 0;

    while (*p != '\0' && !(was_space && *p == ';')) {
        if (*p == ']') {
            if (first == NULL)
                first = p;
            if (cfg_rest_is_blank(p + 1))
                break;
        }
        was_space = isspace((unsigned char)*p);
        p++;
    }
    if (*p != ']' && first == NULL) {
        cfg_error(ps, ps->lineno, "section header without a closing ']'");
        cfg_close_section(ps);
        ps->sec = CFG_SEC_BAD;
        return -1;
    }
    if (*p != ']') {
        cfg_error(ps, ps->lineno, "unexpected text after ']'");
        cfg_close_section(ps);
        ps->sec = CFG_SEC_BAD;
        return 0;
    }
    char *title = xmalloc((size_t)(p - start));
    memcpy(title, start + 1, (size_t)(p - start - 1));
    title[p - start - 1] = '\0';
    cfg_open_section(ps, title);
    free(title);
    return 0;
}

/* Called before each new physical line and at the end: was the last one understood? */
static void cfg_finish_line(struct cfg_parse *ps)
{
    if (ps->kind == CFG_RAW_KEY && !ps->handled)
        cfg_error(ps, ps->lineno, "expected 'key = value'");
    ps->kind = CFG_RAW_BLANK;
}

/* Reads the next physical line and works out what inih will make of it. */
static int cfg_next_line(struct cfg_parse *ps)
{
    size_t n;
    const char *nl;
    char *start, *end;

    cfg_finish_line(ps);
    if (ps->datapos >= ps->datalen)
        return -1;
    nl = memchr(ps->data + ps->datapos, '\n', ps->datalen - ps->datapos);
    n = nl != NULL ? (size_t)(nl - ps->data) + 1 - ps->datapos : ps->datalen - ps->datapos;
    if (n + 1 > ps->rawcap) {
        ps->rawcap = n + 1 > 2 * ps->rawcap ? n + 1 : 2 * ps->rawcap;
        ps->raw = xrealloc(ps->raw, ps->rawcap);
    }
    memcpy(ps->raw, ps->data + ps->datapos, n);
    ps->raw[n] = '\0';
    ps->datapos += n;
    ps->lineno++;
    ps->rawlen = n;
    ps->rawpos = 0;
    ps->handled = 0;
    ps->is_tag = 0;
    ps->kind = CFG_RAW_BLANK;

    end = ps->raw + n;
    while (end > ps->raw && (end[-1] == '\n' || end[-1] == '\r'))
        end--;
    /* cfg_read_file refused any NUL byte. */
    if ((size_t)(end - ps->raw) + 3 > ps->max_line) {
        cfg_error(ps, ps->lineno,
                  "line too long (more than %zu bytes); continue long lists on indented lines",
                  ps->max_line - 3);
        if (ps->raw[strspn(ps->raw, " \t")] == '[') {
            cfg_close_section(ps);
            ps->sec = CFG_SEC_BAD;
        }
        /* inih gets a blank line; what indented lines follow belong to nothing. */
        strcpy(ps->raw, "\n");
        ps->rawlen = 1;
        ps->skip_cont = 1;
        return 0;
    }

    start = ps->raw;
    if (ps->lineno == 1 && n >= 3 && memcmp(start, "\xEF\xBB\xBF", 3) == 0)
        start += 3;
    while (start < end && isspace((unsigned char)*start))
        start++;
    int indented = start > ps->raw;

    if (start == end || *start == ';') {
        ps->kind = CFG_RAW_BLANK;
    } else if (*start == '#') {
        /* "#e = ..." in a filter is a tag condition; any other '#' line a comment. */
        if (ps->sec == CFG_SEC_FILTER && cfg_looks_like_key(start)) {
            *start = '\x01';
            ps->is_tag = 1;
            ps->kind = indented && ps->prev_key ? CFG_RAW_CONT : CFG_RAW_KEY;
        }
    } else if (indented && ps->prev_key) {
        ps->kind = CFG_RAW_CONT;
    } else if (*start == '[') {
        char *header = xmalloc((size_t)(end - start) + 1);

        memcpy(header, start, (size_t)(end - start));
        header[end - start] = '\0';
        ps->kind = CFG_RAW_SECTION;
        /* inih clears its prev_name only for a header it accepts. */
        if (cfg_read_section(ps, header) == 0)
            ps->prev_key = 0;
        free(header);
    } else {
        ps->kind = CFG_RAW_KEY;
    }
    if (ps->kind == CFG_RAW_KEY || ps->kind == CFG_RAW_SECTION)
        ps->skip_cont = 0;
    return 0;
}

/* inih's fgets: hands out the current physical line, in pieces if asked. */
static char *cfg_reader(char *str, int num, void *stream)
{
    struct cfg_parse *ps = stream;
    size_t n;

    if (num < 2)
        return NULL;
    if (ps->rawpos >= ps->rawlen && cfg_next_line(ps) < 0)
        return NULL;
    n = ps->rawlen - ps->rawpos;
    if (n > (size_t)num - 1)
        n = (size_t)num - 1;
    memcpy(str, ps->raw + ps->rawpos, n);
    str[n] = '\0';
    ps->rawpos += n;
    return str;
}

static int cfg_handler(void *user, const char *section, const char *name, const char *value)
{
    struct cfg_parse *ps = user;

    (void)section; /* cut at 49 bytes by inih: cfg_read_section keeps our own */
    ps->handled = 1;
    if (ps->kind == CFG_RAW_CONT) {
        if (ps->skip_cont || ps->pkey == NULL || ps->pbad)
            return 1;
        /*
         * inih (like Python's configparser) reads any indented line after a
         * key as more of its value, so an indented key is silently swallowed
         * unless we say so here.
         */
        if (!cfg_is_list_key(ps->sec, ps->pkey) || cfg_looks_like_key(value)) {
            cfg_error(ps, ps->lineno,
                      "indented line continues '%s' from line %d; only the lists kinds, "
                      "authors, ids and #x may go on over indented lines (remove the "
                      "indentation)",
                      ps->pkey, ps->pline);
            ps->pbad = 1;
            return 1;
        }
        if (ps->pval.len > 0 && ps->pval.data[ps->pval.len - 1] != ',' && value[0] != ',')
            buf_push(&ps->pval, ',');
        cfg_add_segment(ps);
        buf_append(&ps->pval, value, strlen(value));
        return 1;
    }
    cfg_flush_key(ps);
    ps->prev_key = name[0] != '\0';
    if (ps->sec == CFG_SEC_BAD)
        return 1;
    if (name[0] == '\0') {
        cfg_error(ps, ps->lineno, "expected 'key = value', found no key before '='");
        return 1;
    }
    if (ps->sec == CFG_SEC_NONE) {
        cfg_error(ps, ps->lineno,
                  "'%s' is outside any section; put it under [storage], [sync], "
                  "[relay URL] or [filter NAME]",
                  name);
        return 1;
    }
    ps->pkey = ps->is_tag && name[0] == '\x01' ? cfg_format("#%s", name + 1) : xstrdup(name);
    ps->pline = ps->lineno;
    ps->pbad = 0;
    ps->pval.len = 0;
    ps->nsegs = 0;
    cfg_add_segment(ps);
    buf_append(&ps->pval, value, strlen(value));
    return 1;
}

static int cfg_error_cmp(const void *a, const void *b)
{
    const struct cfg_error *x = a, *y = b;

    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    /* Same line: keep the order they were found in (msg pointers tell nothing). */
    return 0;
}

/* Parses a file read by cfg_read_file; see config_parse_file. */
static int cfg_parse_data(struct config *cfg, const char *path, const char *data, size_t len,
                          int64_t now, struct config_errors *errs)
{
    struct cfg_parse ps = {
        .cfg = cfg,
        .file = path,
        .now = now,
        .data = data,
        .datalen = len,
        .kind = CFG_RAW_BLANK,
        .since_age = -1,
        .until_age = -1,
    };
    bool old_stack = false, old_realloc = false;
    int old_max = 0, rc;
    int knobs = &ini_use_stack != NULL && &ini_allow_realloc != NULL && &ini_max_line != NULL;

    if (knobs) {
        old_stack = ini_use_stack;
        old_realloc = ini_allow_realloc;
        old_max = ini_max_line;
        ini_use_stack = false;
        ini_allow_realloc = true;
        ini_max_line = CFG_MAX_LINE;
        ps.max_line = CFG_MAX_LINE;
    } else {
        ps.max_line = INI_MAX_LINE;
    }
    rc = ini_parse_stream(cfg_reader, &ps, cfg_handler, &ps);
    if (knobs) {
        ini_use_stack = old_stack;
        ini_allow_realloc = old_realloc;
        ini_max_line = old_max;
    }
    cfg_finish_line(&ps);
    cfg_close_section(&ps);
    if (rc == -2)
        cfg_error(&ps, 0, "out of memory");
    else if (rc > 0) {
        /* Our reader should have seen every line inih refused; in case it did not: */
        size_t i;
        for (i = 0; i < ps.nerrors; i++)
            if (ps.errors[i].line == rc)
                break;
        if (i == ps.nerrors)
            cfg_error(&ps, rc, "syntax error");
    }

    /* A relay without its own direction follows [sync], wherever that was. */
    for (size_t i = 0; i < cfg->nrelays; i++)
        if (!cfg->relays[i].direction_set)
            cfg->relays[i].direction = cfg->sync.direction;
    cfg_resolve_auth(&ps);
    free(cfg->path);
    cfg->path = xstrdup(path);

    /* Keys are checked when they end, so messages come out of order: sort by line. */
    for (size_t i = 1; i < ps.nerrors; i++) {
        struct cfg_error e = ps.errors[i];
        size_t j = i;
        while (j > 0 && cfg_error_cmp(&ps.errors[j - 1], &e) > 0) {
            ps.errors[j] = ps.errors[j - 1];
            j--;
        }
        ps.errors[j] = e;
    }
    for (size_t i = 0; i < ps.nerrors; i++) {
        if (i >= CONFIG_MAX_ERRORS)
            errs->more++;
        else if (ps.errors[i].line > 0)
            config_errors_add(errs,
                              cfg_format("%s:%d: %s", path, ps.errors[i].line, ps.errors[i].msg));
        else
            config_errors_add(errs, cfg_format("%s: %s", path, ps.errors[i].msg));
        free(ps.errors[i].msg);
    }
    errs->more += ps.ndropped;
    free(ps.errors);
    free(ps.raw);
    free(ps.pkey);
    buf_free(&ps.pval);
    free(ps.psegs);
    return ps.nerrors > 0 ? -1 : 0;
}

static int cfg_is_dev_null(const struct stat *st)
{
    struct stat null;

    return stat("/dev/null", &null) == 0 && S_ISCHR(null.st_mode) && null.st_rdev == st->st_rdev;
}

/*
 * Reads the whole file into *data (caller frees; NUL-terminated, *len
 * bytes), so that what the parser sees is bounded whatever path it is given:
 * a regular file (not /dev/urandom, /dev/zero or a FIFO, which may never
 * end; /dev/null reads as an empty file) of at most CONFIG_MAX_SIZE bytes
 * with no NUL byte (a binary file would give a message per line). Returns 0;
 * -1 with errno set when the file cannot be opened, so that config_load can
 * tell a missing default file from other failures; or -2 with the reason
 * added to errs.
 */
static int cfg_read_file(const char *path, char **data, size_t *len, struct config_errors *errs)
{
    struct stat st;
    char *buf;
    size_t n = 0, cap;
    const char *nul;
    int fd;

    /* O_NONBLOCK: opening a FIFO must not wait for a writer. */
    if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)) < 0)
        return -1;
    if (fstat(fd, &st) < 0) {
        config_errors_add(errs, cfg_format("%s: cannot open: %s", path, strerror(errno)));
        close(fd);
        return -2;
    }
    if (S_ISDIR(st.st_mode)) {
        config_errors_add(errs, cfg_format("%s: cannot open: %s", path, strerror(EISDIR)));
        close(fd);
        return -2;
    }
    if (S_ISCHR(st.st_mode) && cfg_is_dev_null(&st)) {
        /* "-c /dev/null": the usual way to say "no configuration". */
        close(fd);
        *data = xstrdup("");
        *len = 0;
        return 0;
    }
    if (!S_ISREG(st.st_mode)) {
        config_errors_add(errs, cfg_format("%s: not a regular file (a device, FIFO or socket "
                                           "cannot be a configuration)",
                                           path));
        close(fd);
        return -2;
    }
    if (st.st_size > CONFIG_MAX_SIZE)
        goto too_large;
    /* One byte more than allowed: a file that grows after fstat is still caught. */
    cap = (size_t)st.st_size + 1;
    buf = xmalloc(cap + 1);
    for (;;) {
        ssize_t r;

        if (n == cap) {
            if (cap > CONFIG_MAX_SIZE) {
                free(buf);
                goto too_large;
            }
            cap = 2 * cap > (size_t)CONFIG_MAX_SIZE + 1 ? (size_t)CONFIG_MAX_SIZE + 1 : 2 * cap;
            buf = xrealloc(buf, cap + 1);
        }
        r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            config_errors_add(errs, cfg_format("%s: read error: %s", path, strerror(errno)));
            free(buf);
            close(fd);
            return -2;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    if ((nul = memchr(buf, '\0', n)) != NULL) {
        int line = 1;

        for (const char *p = buf; p < nul; p++)
            line += *p == '\n';
        config_errors_add(errs, cfg_format("%s:%d: NUL byte in line; a configuration is a text "
                                           "file",
                                           path, line));
        free(buf);
        return -2;
    }
    *data = buf;
    *len = n;
    return 0;
too_large:
    close(fd);
    config_errors_add(errs, cfg_format("%s: larger than %d MiB", path, CONFIG_MAX_SIZE >> 20));
    return -2;
}

int config_parse_file(struct config *cfg, const char *path, int64_t now, struct config_errors *errs)
{
    char *data;
    size_t len;
    int rc = cfg_read_file(path, &data, &len, errs);

    if (rc == -1)
        config_errors_add(errs, cfg_format("%s: cannot open: %s", path, strerror(errno)));
    if (rc < 0)
        return -1;
    rc = cfg_parse_data(cfg, path, data, len, now, errs);
    free(data);
    return rc;
}

struct config *config_load(const char *path, int64_t now, struct config_errors *errs)
{
    struct config *cfg = config_new();
    char *def, *data;
    size_t len;
    int rc;

    if (path != NULL) {
        rc = config_parse_file(cfg, path, now, errs);
    } else if ((def = config_default_path()) == NULL) {
        cfg->notice = xstrdup("no config: neither $XDG_CONFIG_HOME nor $HOME is set; "
                              "running with defaults (use -c FILE)");
        rc = 0;
    } else if ((rc = cfg_read_file(def, &data, &len, errs)) < 0) {
        if (rc == -1 && errno == ENOENT) {
            const char *slash = strrchr(def, '/');
            cfg->notice = cfg_format("no config at %s, starting with an empty one (no relays, "
                                     "no filters). To create it from the example: "
                                     "mkdir -p %.*s && cp %s/negsync.ini %s",
                                     def, (int)(slash - def), def, NEGSYNC_DOCDIR, def);
            rc = 0;
        } else if (rc == -1) {
            config_errors_add(errs, cfg_format("%s: cannot open: %s", def, strerror(errno)));
        }
        free(def);
    } else {
        rc = cfg_parse_data(cfg, def, data, len, now, errs);
        free(data);
        free(def);
    }
    if (rc < 0) {
        config_free(cfg);
        return NULL;
    }
    return cfg;
}
