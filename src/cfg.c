/*
 * cfg: the configuration file. inih splits lines into section, key and
 * value; everything else — which sections and keys exist, what values mean,
 * defaults, and an error for anything negsync would otherwise have to guess
 * about — is in src/cfg*.c:
 *
 * - cfg.c (this file): the config object and its defaults, the lookups and
 *   names callers use, the default paths, the message helpers, and the value
 *   parsers (booleans, numbers, durations, times, relay URLs);
 * - cfg-keys.c: what each key of each section means, and the NIP-42 auth
 *   settings resolved per relay;
 * - cfg-parse.c: reading a file: the reader that feeds inih, sections,
 *   errors by line, config_parse_file and config_load.
 *
 * The header is cfg.h, not config.h: every source file includes autoconf's
 * "config.h", and a src/config.h would shadow it for everything in src/.
 */
#include "config.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cfg.h"
#include "cfg-int.h"
#include "keys.h"
#include "relay.h"
#include "util.h"

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

void config_errors_add(struct config_errors *errs, char *msg)
{
    errs->msgs = xreallocarray(errs->msgs, errs->n + 1, sizeof *errs->msgs);
    errs->msgs[errs->n++] = msg;
}

char *cfg_vformat(const char *fmt, va_list ap)
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

char *cfg_format(const char *fmt, ...)
{
    va_list ap;
    char *s;

    va_start(ap, fmt);
    s = cfg_vformat(fmt, ap);
    va_end(ap);
    return s;
}

/* A value fit to quote in a message: printable ASCII, cut at 60 bytes. */
void cfg_quote(const char *s, char *out, size_t outlen)
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
int cfg_utf8_valid(const char *s)
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

int cfg_parse_bool(const char *s, int *out)
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
int cfg_parse_u64(const char *s, uint64_t *out)
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
int cfg_parse_duration(const char *s, uint64_t *out)
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
