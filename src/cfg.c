/*
 * cfg: the configuration file. inih splits lines into section, key and
 * value; everything else — which sections and keys exist, what values mean,
 * defaults, and an error for anything negsync would otherwise have to guess
 * about — is here.
 *
 * The header is cfg.h, not config.h: every source file includes autoconf's
 * "config.h", and a src/config.h would shadow it for everything in src/.
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
#include <strings.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <ini.h>
#include <jansson.h>

#include "cfg.h"
#include "keys.h"
#include "relay.h"
#include "util.h"

#ifndef NEGSYNC_DOCDIR
#define NEGSYNC_DOCDIR "/usr/local/share/doc/negsync"
#endif

/* Longest line accepted when inih lets us lift its own limit. */
#define CFG_MAX_LINE (1024 * 1024)
/*
 * Messages kept from one file, to sort by line; config_load reports the
 * first CONFIG_MAX_ERRORS of them and counts the rest.
 */
#define CFG_KEEP_ERRORS 1000

extern bool ini_use_stack;
extern bool ini_allow_realloc;
extern int ini_max_line;
#pragma weak ini_use_stack
#pragma weak ini_allow_realloc
#pragma weak ini_max_line

/* ------------------------------------------------------------------ errors */

void config_errors_free(struct config_errors *errs)
{
    for (size_t i = 0; i < errs->n; i++)
        free(errs->msgs[i]);
    free(errs->msgs);
    errs->msgs = NULL;
    errs->n = 0;
    errs->more = 0;
}

static void config_errors_add(struct config_errors *errs, char *msg)
{
    errs->msgs = xreallocarray(errs->msgs, errs->n + 1, sizeof *errs->msgs);
    errs->msgs[errs->n++] = msg;
}

static char *cfg_vformat(const char *fmt, va_list ap)
{
    va_list ap2;
    int n;
    char *s;

    va_copy(ap2, ap);
    n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        n = 0;
    s = xmalloc((size_t)n + 1);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    return s;
}

static char *cfg_format(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *cfg_format(const char *fmt, ...)
{
    va_list ap;
    char *s;

    va_start(ap, fmt);
    s = cfg_vformat(fmt, ap);
    va_end(ap);
    return s;
}

/* A value fit to quote in a message: printable ASCII, cut at 60 bytes. */
static void cfg_quote(const char *s, char *out, size_t outlen)
{
    size_t i, max = outlen - 4;

    if (max > 60)
        max = 60;
    for (i = 0; s[i] != '\0' && i < max; i++)
        out[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    if (s[i] != '\0') {
        memcpy(out + i, "...", 3);
        i += 3;
    }
    out[i] = '\0';
}

/*
 * Whether s is valid UTF-8 (no overlong forms, surrogates or code points
 * above U+10FFFF): what jansson takes as a JSON string, and what a relay
 * URL must be before it goes on the wire or into the database.
 */
static int cfg_utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;

    while (*p != '\0') {
        unsigned c = *p, n, min, cp;

        if (c < 0x80) {
            p++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
            min = 0x80;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            min = 0x800;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            min = 0x10000;
            cp = c & 0x07;
        } else {
            return 0;
        }
        for (unsigned i = 1; i <= n; i++) {
            if ((p[i] & 0xc0) != 0x80) /* also stops at the terminating NUL */
                return 0;
            cp = (cp << 6) | (p[i] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        p += n + 1;
    }
    return 1;
}

/* ----------------------------------------------------------- config object */

static const struct config_sync cfg_sync_defaults = {
    .workers = 4,
    .use_negentropy = 1,
    .negentropy_fallback = 1,
    .direction = CONFIG_DIRECTION_DOWN,
    .interval = 300,
    .recheck_days = 7,
    .neg_timeout = 10,
    .probe_timeout = 5,
    .frame_size_limit = 60000,
    .fetch_batch = 500,
    .fetch_in_flight = 4,
    .max_sync_events = 1000000,
    .max_message_size = 16 * 1024 * 1024,
};

struct config *config_new(void)
{
    struct config *cfg = xcalloc(1, sizeof *cfg);

    cfg->sync = cfg_sync_defaults;
    return cfg;
}

void config_free(struct config *cfg)
{
    if (cfg == NULL)
        return;
    for (size_t i = 0; i < cfg->nrelays; i++) {
        free(cfg->relays[i].url);
        free(cfg->relays[i].secret_key_file);
    }
    free(cfg->relays);
    free(cfg->sync.secret_key_file);
    for (size_t i = 0; i < cfg->nkeys; i++)
        keys_free(cfg->keys[i]);
    free(cfg->keys);
    for (size_t i = 0; i < cfg->nfilters; i++) {
        free(cfg->filters[i].name);
        filter_free(cfg->filters[i].filter);
    }
    free(cfg->filters);
    free(cfg->path);
    free(cfg->storage_path);
    free(cfg->notice);
    free(cfg);
}

const struct config_relay *config_find_relay(const struct config *cfg, const char *url)
{
    for (size_t i = 0; i < cfg->nrelays; i++)
        if (strcmp(cfg->relays[i].url, url) == 0)
            return &cfg->relays[i];
    return NULL;
}

const struct config_filter *config_find_filter(const struct config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->nfilters; i++)
        if (strcmp(cfg->filters[i].name, name) == 0)
            return &cfg->filters[i];
    return NULL;
}

enum config_neg_mode config_relay_neg_mode(const struct config *cfg, const struct config_relay *r)
{
    int use = cfg->sync.use_negentropy;

    if (r != NULL && r->negentropy == CONFIG_NEGENTROPY_ON)
        use = 1;
    else if (r != NULL && r->negentropy == CONFIG_NEGENTROPY_OFF)
        use = 0;
    if (!use)
        return CONFIG_NEG_MODE_REQ_ONLY;
    return cfg->sync.negentropy_fallback ? CONFIG_NEG_MODE_NEG_FALLBACK
                                         : CONFIG_NEG_MODE_NEG_STRICT;
}

const char *config_direction_name(enum config_direction d)
{
    switch (d) {
    case CONFIG_DIRECTION_DOWN: return "down";
    case CONFIG_DIRECTION_UP: return "up";
    case CONFIG_DIRECTION_BOTH: return "both";
    }
    return "?";
}

const char *config_negentropy_name(enum config_negentropy n)
{
    switch (n) {
    case CONFIG_NEGENTROPY_AUTO: return "auto";
    case CONFIG_NEGENTROPY_ON: return "on";
    case CONFIG_NEGENTROPY_OFF: return "off";
    }
    return "?";
}

const char *config_neg_mode_name(enum config_neg_mode m)
{
    switch (m) {
    case CONFIG_NEG_MODE_REQ_ONLY: return "req-only";
    case CONFIG_NEG_MODE_NEG_FALLBACK: return "neg+fallback";
    case CONFIG_NEG_MODE_NEG_STRICT: return "neg-strict";
    }
    return "?";
}

const char *config_auth_name(enum config_auth a)
{
    switch (a) {
    case CONFIG_AUTH_NEVER: return "never";
    case CONFIG_AUTH_ON_REQUEST: return "on-request";
    }
    return "?";
}

struct filter *config_filter_at(const struct config_filter *cf, int64_t now)
{
    struct filter *f = filter_dup(cf->filter);

    if (cf->since_age >= 0)
        f->since = now > cf->since_age ? (uint64_t)(now - cf->since_age) : 0;
    if (cf->until_age >= 0)
        f->until = now > cf->until_age ? (uint64_t)(now - cf->until_age) : 0;
    return f;
}

/* ------------------------------------------------------------------- paths */

/* $VAR/rest when VAR is an absolute path, else $HOME/home_rest; NULL if neither. */
static char *cfg_xdg_path(const char *var, const char *home_rest, const char *rest)
{
    const char *xdg = getenv(var);
    const char *home = getenv("HOME");

    /* The XDG spec: a relative path in these variables is invalid, ignore it. */
    if (xdg != NULL && xdg[0] == '/')
        return cfg_format("%s/%s", xdg, rest);
    if (home != NULL && home[0] != '\0')
        return cfg_format("%s/%s/%s", home, home_rest, rest);
    return NULL;
}

char *config_default_path(void)
{
    return cfg_xdg_path("XDG_CONFIG_HOME", ".config", "negsync/negsync.ini");
}

char *config_db_path(const struct config *cfg, const char *cli_override, char *err, size_t errlen)
{
    char *path;

    if (cli_override != NULL)
        return xstrdup(cli_override);
    if (cfg != NULL && cfg->storage_path != NULL)
        return xstrdup(cfg->storage_path);
    path = cfg_xdg_path("XDG_DATA_HOME", ".local/share", "negsync/negsync.db");
    if (path == NULL)
        set_error(err, errlen, "neither $XDG_DATA_HOME nor $HOME is set; use -d FILE");
    return path;
}

/* ----------------------------------------------------------- value parsers */

static int cfg_parse_bool(const char *s, int *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};

    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

/* Decimal digits only (no sign, no spaces), no overflow. */
static int cfg_parse_u64(const char *s, uint64_t *out)
{
    uint64_t x = 0;

    if (*s == '\0')
        return -1;
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        if (x > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
            return -1;
        x = x * 10 + (uint64_t)(*s - '0');
    }
    *out = x;
    return 0;
}

/* Seconds for one unit letter of a duration or age; 0 if not a unit. */
static uint64_t cfg_unit_seconds(char c)
{
    switch (c) {
    case 's': return 1;
    case 'm': return 60;
    case 'h': return 3600;
    case 'd': return 86400;
    case 'w': return 7 * 86400;
    }
    return 0;
}

/* "N" or "N" + s|m|h|d|w, as seconds. */
static int cfg_parse_duration(const char *s, uint64_t *out)
{
    size_t len = strlen(s);
    uint64_t mult = 1, n;
    char digits[32];

    if (len == 0 || len >= sizeof digits)
        return -1;
    if (cfg_unit_seconds(s[len - 1]) != 0) {
        mult = cfg_unit_seconds(s[len - 1]);
        len--;
    }
    memcpy(digits, s, len);
    digits[len] = '\0';
    if (cfg_parse_u64(digits, &n) < 0 || n > UINT64_MAX / mult)
        return -1;
    *out = n * mult;
    return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm). */
static int64_t cfg_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

/* n digits at s as a number, or -1. */
static int cfg_digits(const char *s, int n)
{
    int x = 0;

    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        x = x * 10 + (s[i] - '0');
    }
    return x;
}

static int cfg_parse_iso(const char *s, int64_t *out)
{
    static const unsigned mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    size_t len = strlen(s);
    int y, mo, d, h = 0, mi = 0, sec = 0;

    if (len != 10 && len != 20)
        return -1;
    if (s[4] != '-' || s[7] != '-')
        return -1;
    y = cfg_digits(s, 4);
    mo = cfg_digits(s + 5, 2);
    d = cfg_digits(s + 8, 2);
    if (len == 20) {
        if (s[10] != 'T' || s[13] != ':' || s[16] != ':' || s[19] != 'Z')
            return -1;
        h = cfg_digits(s + 11, 2);
        mi = cfg_digits(s + 14, 2);
        sec = cfg_digits(s + 17, 2);
    }
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || h < 0 || h > 23 || mi < 0 || mi > 59 || sec < 0 ||
        sec > 59)
        return -1;
    unsigned dim = mdays[mo - 1];
    if (mo == 2 && (y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)))
        dim = 29;
    if ((unsigned)d > dim)
        return -1;
    *out = cfg_days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + sec;
    return 0;
}

int config_parse_time(const char *s, int64_t now, int64_t *out, int64_t *age, char *err,
                      size_t errlen)
{
    uint64_t n;
    char q[64];

    if (cfg_parse_u64(s, &n) == 0) {
        if (n > INT64_MAX)
            goto bad;
        *out = (int64_t)n;
        *age = -1;
        return 0;
    }
    if (cfg_parse_iso(s, out) == 0) {
        *age = -1;
        return 0;
    }
    if (s[0] >= '0' && s[0] <= '9' && cfg_parse_duration(s, &n) == 0) {
        if (n > INT64_MAX || (int64_t)n > now) {
            cfg_quote(s, q, sizeof q);
            set_error(err, errlen, "'%s' reaches back before 1970", q);
            return -1;
        }
        *age = (int64_t)n;
        *out = now - (int64_t)n;
        return 0;
    }
bad:
    cfg_quote(s, q, sizeof q);
    set_error(err, errlen,
              "expected a unix time, YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ (UTC) or an age like "
              "30d (s, m, h, d, w), got '%s'",
              q);
    return -1;
}

static int cfg_host_char(char c)
{
    return isalnum((unsigned char)c) || c == '-' || c == '.' || c == '_';
}

char *config_url_normalize(const char *url, char *err, size_t errlen)
{
    const char *p, *auth, *auth_end, *host_end;
    char q[64];

    cfg_quote(url, q, sizeof q);
    for (p = url; *p != '\0'; p++) {
        if ((unsigned char)*p <= 0x20 || *p == 0x7f) {
            set_error(err, errlen, "relay URL '%s' contains a space or control character", q);
            return NULL;
        }
    }
    /* It goes into JSON (--json, NIP-11 cache) and the database as text. */
    if (!cfg_utf8_valid(url)) {
        set_error(err, errlen, "relay URL '%s' is not valid UTF-8", q);
        return NULL;
    }
    if (strncasecmp(url, "wss://", 6) == 0) {
        auth = url + 6;
    } else if (strncasecmp(url, "ws://", 5) == 0) {
        auth = url + 5;
    } else {
        set_error(err, errlen, "relay URL '%s' must start with ws:// or wss://%s", q,
                  strncasecmp(url, "http", 4) == 0 ? " (relays are websockets)" : "");
        return NULL;
    }
    if (strchr(auth, '#') != NULL) {
        set_error(err, errlen, "relay URL '%s' has a #fragment", q);
        return NULL;
    }
    auth_end = auth + strcspn(auth, "/?");
    if (memchr(auth, '@', (size_t)(auth_end - auth)) != NULL) {
        set_error(err, errlen, "relay URL '%s': user@ in the URL is not supported", q);
        return NULL;
    }
    if (*auth == '[') {
        /* An IPv6 literal: hex digits, ':' and '.' (for a mapped IPv4 tail). */
        host_end = auth + 1;
        while (host_end < auth_end &&
               (isxdigit((unsigned char)*host_end) || *host_end == ':' || *host_end == '.'))
            host_end++;
        if (host_end >= auth_end || *host_end != ']' || host_end == auth + 1) {
            set_error(err, errlen, "relay URL '%s': bad IPv6 address", q);
            return NULL;
        }
        host_end++;
    } else {
        host_end = auth;
        while (host_end < auth_end && cfg_host_char(*host_end))
            host_end++;
        if (host_end == auth) {
            set_error(err, errlen, "relay URL '%s' has no host", q);
            return NULL;
        }
    }
    if (host_end < auth_end) {
        char digits[8];
        size_t n = (size_t)(auth_end - host_end - 1);
        uint64_t x;

        if (*host_end != ':') {
            set_error(err, errlen, "relay URL '%s': bad character in host", q);
            return NULL;
        }
        if (n == 0 || n >= sizeof digits) {
            set_error(err, errlen, "relay URL '%s': bad port", q);
            return NULL;
        }
        memcpy(digits, host_end + 1, n);
        digits[n] = '\0';
        if (cfg_parse_u64(digits, &x) < 0 || x == 0 || x > 65535) {
            set_error(err, errlen, "relay URL '%s': port must be 1..65535", q);
            return NULL;
        }
    }

    /* Checked with the messages a config writer needs; the form is the one key form. */
    char rerr[RELAY_ERRLEN];
    char *key = relay_url_normalize(url, rerr, sizeof rerr);
    if (key == NULL)
        set_error(err, errlen, "relay URL '%s': %s", q, rerr);
    return key;
}

/* -------------------------------------------------------------- the parser */

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

static void cfg_error(struct cfg_parse *ps, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void cfg_error(struct cfg_parse *ps, int line, const char *fmt, ...)
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
 * The physical line holding byte off of the pending value. A list's items
 * are looked up in order, so *seg (start at 0) only moves forward and a
 * list of n items over n lines costs O(n), not O(n^2).
 */
static int cfg_value_line(const struct cfg_parse *ps, size_t off, size_t *seg)
{
    if (ps->nsegs == 0)
        return ps->pline;
    while (*seg + 1 < ps->nsegs && ps->psegs[*seg + 1].off <= off)
        (*seg)++;
    return ps->psegs[*seg].line;
}

static const char *const cfg_sync_keys =
    "workers, use_negentropy, negentropy_fallback, direction, interval, recheck_days, "
    "neg_timeout, probe_timeout, frame_size_limit, negentropy_split, fetch_batch, "
    "fetch_in_flight, max_sync_events, max_message_size, auth, secret_key_file";

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

/* An unsigned key in [lo, hi]; 0 on success. */
static int cfg_value_uint(struct cfg_parse *ps, const char *key, const char *v, uint64_t lo,
                          uint64_t hi, uint64_t *out)
{
    char q[64];

    if (cfg_parse_u64(v, out) == 0 && *out >= lo && *out <= hi)
        return 0;
    cfg_quote(v, q, sizeof q);
    cfg_error(ps, ps->pline, "%s: expected an integer %llu..%llu, got '%s'", key,
              (unsigned long long)lo, (unsigned long long)hi, q);
    return -1;
}

/* A duration in [lo, hi] seconds; 0 on success. */
static int cfg_value_duration(struct cfg_parse *ps, const char *key, const char *v, uint64_t lo,
                              uint64_t hi, unsigned *out)
{
    uint64_t x;
    char q[64];

    if (cfg_parse_duration(v, &x) == 0 && x >= lo && x <= hi) {
        *out = (unsigned)x;
        return 0;
    }
    cfg_quote(v, q, sizeof q);
    cfg_error(ps, ps->pline,
              "%s: expected seconds %llu..%llu (a number, or with s, m, h, d or w), got '%s'", key,
              (unsigned long long)lo, (unsigned long long)hi, q);
    return -1;
}

static int cfg_value_bool(struct cfg_parse *ps, const char *key, const char *v, int *out)
{
    char q[64];

    if (cfg_parse_bool(v, out) == 0)
        return 0;
    cfg_quote(v, q, sizeof q);
    cfg_error(ps, ps->pline, "%s: expected true or false (or yes/no, on/off, 1/0), got '%s'", key,
              q);
    return -1;
}

static int cfg_value_direction(struct cfg_parse *ps, const char *v, enum config_direction *out)
{
    char q[64];

    if (strcmp(v, "down") == 0)
        *out = CONFIG_DIRECTION_DOWN;
    else if (strcmp(v, "up") == 0)
        *out = CONFIG_DIRECTION_UP;
    else if (strcmp(v, "both") == 0)
        *out = CONFIG_DIRECTION_BOTH;
    else {
        cfg_quote(v, q, sizeof q);
        cfg_error(ps, ps->pline, "direction: expected down, up or both, got '%s'", q);
        return -1;
    }
    return 0;
}

/*
 * A file name: a leading ~/ is $HOME, a relative name is relative to the
 * config file. Returns it (caller frees), or NULL after reporting why not.
 */
static char *cfg_value_path(struct cfg_parse *ps, const char *key, const char *v)
{
    const char *home = getenv("HOME");
    char *path;

    if (v[0] == '\0') {
        cfg_error(ps, ps->pline, "%s: empty; leave it out for the default", key);
        return NULL;
    }
    if (v[0] == '~' && v[1] != '/' && v[1] != '\0') {
        cfg_error(ps, ps->pline, "%s: only a leading ~/ is expanded, not ~user", key);
        return NULL;
    }
    if (v[0] == '~') {
        if (home == NULL || home[0] == '\0') {
            cfg_error(ps, ps->pline, "%s: ~ used but $HOME is not set", key);
            return NULL;
        }
        path = cfg_format("%s%s", home, v + 1);
    } else if (v[0] != '/') {
        /*
         * Relative to the file that says it, not to wherever cron or systemd
         * happens to start us.
         */
        const char *slash = strrchr(ps->file, '/');
        if (slash == NULL)
            path = xstrdup(v);
        else
            path = cfg_format("%.*s/%s", (int)(slash - ps->file), ps->file, v);
    } else {
        path = xstrdup(v);
    }
    return path;
}

static void cfg_key_storage(struct cfg_parse *ps, const char *key, const char *v)
{
    char *path;

    if (strcmp(key, "path") != 0) {
        cfg_error(ps, ps->pline, "unknown key '%s' in [storage]; allowed: path", key);
        return;
    }
    if ((path = cfg_value_path(ps, key, v)) == NULL)
        return;
    free(ps->cfg->storage_path);
    ps->cfg->storage_path = path;
}

/* ---- NIP-42: auth and secret_key_file, in [sync] and [relay] ---- */

static int cfg_value_auth(struct cfg_parse *ps, const char *v, enum config_auth *out)
{
    char q[64];

    if (strcmp(v, "never") == 0) {
        *out = CONFIG_AUTH_NEVER;
    } else if (strcmp(v, "on-request") == 0) {
        *out = CONFIG_AUTH_ON_REQUEST;
    } else {
        cfg_quote(v, q, sizeof q);
        cfg_error(ps, ps->pline, "auth: expected never or on-request, got '%s'", q);
        return -1;
    }
    return 0;
}

/*
 * secret_key_file names a file; the key itself never belongs in the INI
 * file. A value that is a key is refused without being quoted, and before
 * anything tries to open it (a "cannot open" would print it).
 */
static void cfg_value_key_file(struct cfg_parse *ps, const char *key, const char *v, char **path,
                               int *line)
{
    uint8_t sk[32];
    size_t n = strlen(v);
    int is_key = keys_parse_secret(v, n, sk, NULL, 0) == 0 || strncasecmp(v, "nsec1", 5) == 0;

    explicit_bzero(sk, sizeof sk);
    if (is_key) {
        cfg_error(ps, ps->pline,
                  "%s: this is a secret key, not a file name; never put the key in the config: "
                  "store it in a file only you can read (chmod 600 FILE) and name that file",
                  key);
        return;
    }
    free(*path);
    if ((*path = cfg_value_path(ps, key, v)) != NULL)
        *line = ps->pline;
}

static void cfg_key_sync(struct cfg_parse *ps, const char *key, const char *v)
{
    struct config_sync *s = &ps->cfg->sync;
    uint64_t x;
    char q[64];

    if (strcmp(key, "workers") == 0) {
        if (cfg_value_uint(ps, key, v, 1, 256, &x) == 0)
            s->workers = (unsigned)x;
    } else if (strcmp(key, "use_negentropy") == 0) {
        cfg_value_bool(ps, key, v, &s->use_negentropy);
    } else if (strcmp(key, "negentropy_fallback") == 0) {
        cfg_value_bool(ps, key, v, &s->negentropy_fallback);
    } else if (strcmp(key, "direction") == 0) {
        cfg_value_direction(ps, v, &s->direction);
    } else if (strcmp(key, "interval") == 0) {
        cfg_value_duration(ps, key, v, 1, 30 * 86400, &s->interval);
    } else if (strcmp(key, "recheck_days") == 0) {
        if (cfg_value_uint(ps, key, v, 0, 3650, &x) == 0)
            s->recheck_days = (unsigned)x;
    } else if (strcmp(key, "neg_timeout") == 0) {
        cfg_value_duration(ps, key, v, 1, 3600, &s->neg_timeout);
    } else if (strcmp(key, "probe_timeout") == 0) {
        cfg_value_duration(ps, key, v, 1, 3600, &s->probe_timeout);
    } else if (strcmp(key, "frame_size_limit") == 0) {
        /* neg refuses limits under 4096: no useful message fits in less. */
        if (cfg_parse_u64(v, &x) == 0 && (x == 0 || (x >= 4096 && x <= (1u << 30)))) {
            s->frame_size_limit = x;
        } else {
            cfg_quote(v, q, sizeof q);
            cfg_error(ps, ps->pline,
                      "frame_size_limit: expected 0 (no limit) or 4096..1073741824 bytes, "
                      "got '%s'",
                      q);
        }
    } else if (strcmp(key, "negentropy_split") == 0) {
        if (strcmp(v, "reference") == 0) {
            s->neg_adaptive = 0;
        } else if (strcmp(v, "adaptive") == 0) {
            s->neg_adaptive = 1;
        } else {
            cfg_quote(v, q, sizeof q);
            cfg_error(ps, ps->pline, "negentropy_split: expected reference or adaptive, got '%s'",
                      q);
        }
    } else if (strcmp(key, "fetch_batch") == 0) {
        if (cfg_value_uint(ps, key, v, 1, 100000, &x) == 0)
            s->fetch_batch = (unsigned)x;
    } else if (strcmp(key, "fetch_in_flight") == 0) {
        if (cfg_value_uint(ps, key, v, 1, 64, &x) == 0)
            s->fetch_in_flight = (unsigned)x;
    } else if (strcmp(key, "max_sync_events") == 0) {
        if (cfg_value_uint(ps, key, v, 1, INT64_MAX, &x) == 0)
            s->max_sync_events = x;
    } else if (strcmp(key, "max_message_size") == 0) {
        /* Under 64 KiB a page of events or a NEG-MSG would not fit. */
        if (cfg_value_uint(ps, key, v, 65536, 1u << 30, &x) == 0)
            s->max_message_size = x;
    } else if (strcmp(key, "auth") == 0) {
        cfg_value_auth(ps, v, &s->auth);
    } else if (strcmp(key, "secret_key_file") == 0) {
        cfg_value_key_file(ps, key, v, &s->secret_key_file, &s->secret_key_line);
    } else {
        cfg_error(ps, ps->pline, "unknown key '%s' in [sync]; allowed: %s", key, cfg_sync_keys);
    }
}

static void cfg_key_relay(struct cfg_parse *ps, const char *key, const char *v)
{
    struct config_relay *r = &ps->cfg->relays[ps->cfg->nrelays - 1];
    char q[64];

    if (strcmp(key, "negentropy") == 0) {
        if (strcmp(v, "auto") == 0)
            r->negentropy = CONFIG_NEGENTROPY_AUTO;
        else if (strcmp(v, "on") == 0)
            r->negentropy = CONFIG_NEGENTROPY_ON;
        else if (strcmp(v, "off") == 0)
            r->negentropy = CONFIG_NEGENTROPY_OFF;
        else {
            cfg_quote(v, q, sizeof q);
            cfg_error(ps, ps->pline, "negentropy: expected auto, on or off, got '%s'", q);
        }
    } else if (strcmp(key, "direction") == 0) {
        if (cfg_value_direction(ps, v, &r->direction) == 0)
            r->direction_set = 1;
    } else if (strcmp(key, "tls_verify") == 0) {
        cfg_value_bool(ps, key, v, &r->tls_verify);
    } else if (strcmp(key, "compression") == 0) {
        cfg_value_bool(ps, key, v, &r->compression);
    } else if (strcmp(key, "enabled") == 0) {
        cfg_value_bool(ps, key, v, &r->enabled);
    } else if (strcmp(key, "auth") == 0) {
        if (cfg_value_auth(ps, v, &r->auth) == 0)
            r->auth_set = 1;
    } else if (strcmp(key, "secret_key_file") == 0) {
        cfg_value_key_file(ps, key, v, &r->secret_key_file, &r->secret_key_line);
    } else {
        cfg_error(ps, ps->pline,
                  "unknown key '%s' in [%s]; allowed: negentropy, direction, tls_verify, "
                  "compression, enabled, auth, secret_key_file",
                  key, ps->sec_title);
    }
}

/*
 * Splits a comma list into a JSON array (integers for kinds, strings
 * otherwise). A single trailing comma is allowed, since a list continued on
 * indented lines tends to end with one; any other empty item is an error.
 * *lines gets the physical line of each item (caller frees), so that an
 * error in a list continued over many lines names the line it is on.
 */
static json_t *cfg_list_to_json(struct cfg_parse *ps, const char *key, const char *v, int **lines)
{
    json_t *a = json_array();
    const char *p = v;
    size_t i = 0, cap = 0, seg = 0;
    int kinds = strcmp(key, "kinds") == 0;

    *lines = NULL;

    while (*p != '\0') {
        const char *comma = strchr(p, ',');
        const char *end = comma != NULL ? comma : p + strlen(p);
        const char *s = p, *e = end;
        json_t *jitem;
        char *item;
        int line;

        while (s < e && isspace((unsigned char)*s))
            s++;
        while (e > s && isspace((unsigned char)e[-1]))
            e--;
        if (s == e) {
            if (comma == NULL)
                break;
            /* "a,,b" or ",a": a hole, not a trailing comma. */
            cfg_error(ps, cfg_value_line(ps, (size_t)(p - v), &seg),
                      "%s[%zu]: empty item in the list", key, i);
            goto fail;
        }
        line = cfg_value_line(ps, (size_t)(s - v), &seg);
        item = xmalloc((size_t)(e - s) + 1);
        memcpy(item, s, (size_t)(e - s));
        item[e - s] = '\0';
        if (kinds) {
            uint64_t k;
            /* Same words as filter_from_json uses for an out-of-range kind. */
            if (cfg_parse_u64(item, &k) < 0 || k > 65535) {
                cfg_error(ps, line, "kinds[%zu]: not an integer 0..65535", i);
                free(item);
                goto fail;
            }
            jitem = json_integer((json_int_t)k);
        } else {
            /* jansson refuses a string that is not UTF-8: never drop it quietly. */
            jitem = cfg_utf8_valid(item) ? json_string(item) : NULL;
            if (jitem == NULL) {
                cfg_error(ps, line, "%s[%zu]: not valid UTF-8", key, i);
                free(item);
                goto fail;
            }
        }
        free(item);
        if (json_array_append_new(a, jitem) < 0) {
            cfg_error(ps, line, "%s[%zu]: out of memory", key, i);
            goto fail;
        }
        if (i == cap) {
            cap = cap ? cap * 2 : 16;
            *lines = xreallocarray(*lines, cap, sizeof **lines);
        }
        (*lines)[i++] = line;
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    if (json_array_size(a) == 0) {
        cfg_error(ps, ps->pline, "%s: an empty list never matches", key);
        goto fail;
    }
    return a;
fail:
    json_decref(a);
    free(*lines);
    *lines = NULL;
    return NULL;
}

static void cfg_key_filter(struct cfg_parse *ps, const char *key, const char *v)
{
    char err[FILTER_ERRLEN], q[64];
    json_t *jv = NULL, *one;
    struct filter *f;
    int *lines = NULL, line = ps->pline;

    if (strcmp(key, "kinds") == 0 || strcmp(key, "authors") == 0 || strcmp(key, "ids") == 0 ||
        key[0] == '#') {
        if (key[0] == '#' && !(isalpha((unsigned char)key[1]) && key[2] == '\0')) {
            cfg_quote(key, q, sizeof q);
            cfg_error(ps, ps->pline, "%s: tag filters take a single letter a-z or A-Z", q);
            return;
        }
        jv = cfg_list_to_json(ps, key, v, &lines);
    } else if (strcmp(key, "since") == 0 || strcmp(key, "until") == 0) {
        int64_t t, age;
        if (config_parse_time(v, ps->now, &t, &age, err, sizeof err) < 0) {
            cfg_error(ps, ps->pline, "%s: %s", key, err);
            return;
        }
        jv = json_integer(t);
        if (key[0] == 's') {
            ps->since_line = ps->pline;
            ps->since_age = age;
        } else {
            ps->until_line = ps->pline;
            ps->until_age = age;
        }
    } else if (strcmp(key, "limit") == 0) {
        uint64_t x;
        if (cfg_parse_u64(v, &x) < 0 || x > INT64_MAX) {
            cfg_quote(v, q, sizeof q);
            cfg_error(ps, ps->pline, "limit: expected a positive integer, got '%s'", q);
            return;
        }
        /* REQ with limit 0 asks for no stored events: nothing would ever sync. */
        if (x == 0) {
            cfg_error(ps, ps->pline, "limit = 0 never matches; leave limit out for no limit");
            return;
        }
        jv = json_integer((json_int_t)x);
    } else {
        cfg_quote(key, q, sizeof q);
        cfg_error(ps, ps->pline,
                  "unknown key '%s' in [%s]; allowed: kinds, authors, ids, #x (one letter), "
                  "since, until, limit",
                  q, ps->sec_title);
        return;
    }
    if (jv == NULL)
        return;
    /*
     * The filter module has the last word on what a valid filter is (hex,
     * ranges): check this key alone now, so its message gets this line.
     */
    one = json_object();
    json_object_set(one, key, jv);
    f = filter_from_json(one, err, sizeof err);
    json_decref(one);
    if (f == NULL) {
        /* "authors[3]: ...": put it on the line item 3 is on. */
        const char *br = strchr(err, '[');
        size_t idx;
        if (lines != NULL && br != NULL && sscanf(br, "[%zu]", &idx) == 1 &&
            idx < json_array_size(jv))
            line = lines[idx];
        cfg_error(ps, line, "%s", err);
        json_decref(jv);
        free(lines);
        return;
    }
    filter_free(f);
    free(lines);
    json_object_set_new(ps->fobj, key, jv);
}

/* Handles the pending key now that its value is complete. */
static void cfg_flush_key(struct cfg_parse *ps)
{
    char *key = ps->pkey;
    const char *v;

    if (key == NULL)
        return;
    buf_push(&ps->pval, '\0');
    v = (const char *)ps->pval.data;
    ps->pkey = NULL;

    /* A duplicate is worth saying even when its value was already refused. */
    for (size_t i = 0; i < ps->nseen; i++) {
        if (strcmp(ps->seen[i].key, key) == 0) {
            cfg_error(ps, ps->pline, "duplicate key '%s' in [%s] (first set at line %d)", key,
                      ps->sec_title, ps->seen[i].line);
            goto out;
        }
    }
    if (ps->pbad)
        goto out;
    ps->seen = xreallocarray(ps->seen, ps->nseen + 1, sizeof *ps->seen);
    ps->seen[ps->nseen].key = xstrdup(key);
    ps->seen[ps->nseen++].line = ps->pline;

    switch (ps->sec) {
    case CFG_SEC_STORAGE: cfg_key_storage(ps, key, v); break;
    case CFG_SEC_SYNC: cfg_key_sync(ps, key, v); break;
    case CFG_SEC_RELAY: cfg_key_relay(ps, key, v); break;
    case CFG_SEC_FILTER: cfg_key_filter(ps, key, v); break;
    case CFG_SEC_NONE:
    case CFG_SEC_BAD: break;
    }
out:
    free(key);
    ps->pval.len = 0;
    ps->pbad = 0;
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

/*
 * Each relay's effective auth and key file, and the keys of the relays that
 * may authenticate, each file read once. Only those are read: a key no
 * relay may use stays on disk.
 */
static void cfg_resolve_auth(struct cfg_parse *ps)
{
    struct config *cfg = ps->cfg;
    char err[KEYS_ERRLEN];

    for (size_t i = 0; i < cfg->nrelays; i++) {
        struct config_relay *r = &cfg->relays[i];
        struct keys_secret *k = NULL;

        if (!r->auth_set)
            r->auth = cfg->sync.auth;
        if (r->secret_key_file == NULL && cfg->sync.secret_key_file != NULL) {
            r->secret_key_file = xstrdup(cfg->sync.secret_key_file);
            r->secret_key_line = cfg->sync.secret_key_line;
        }
        if (r->auth != CONFIG_AUTH_ON_REQUEST)
            continue;
        if (r->secret_key_file == NULL) {
            cfg_error(ps, r->line,
                      "[relay %s]: auth = on-request needs a key: set secret_key_file = FILE "
                      "here or in [sync]",
                      r->url);
            continue;
        }
        for (size_t j = 0; j < i && r->key == NULL; j++)
            if (cfg->relays[j].key != NULL &&
                strcmp(cfg->relays[j].secret_key_file, r->secret_key_file) == 0)
                r->key = cfg->relays[j].key;
        if (r->key != NULL)
            continue;
        /* A file refused for one relay is refused once, not again for each relay using it. */
        for (size_t j = 0; j < i; j++)
            if (cfg->relays[j].auth == CONFIG_AUTH_ON_REQUEST &&
                cfg->relays[j].secret_key_file != NULL && cfg->relays[j].key == NULL &&
                strcmp(cfg->relays[j].secret_key_file, r->secret_key_file) == 0)
                goto next;
        if ((k = keys_load_file(r->secret_key_file, err, sizeof err)) == NULL) {
            cfg_error(ps, r->secret_key_line, "%s", err);
            continue;
        }
        cfg->keys = xreallocarray(cfg->keys, cfg->nkeys + 1, sizeof *cfg->keys);
        cfg->keys[cfg->nkeys++] = k;
        r->key = k;
    next:;
    }
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
