/*
 * cfg-keys: what each key of [storage], [sync], [relay URL] and
 * [filter NAME] means: its value checked and stored in the config, or a
 * message saying what is wrong with it; and, once the whole file is read,
 * each relay's NIP-42 auth setting and secret key (cfg_resolve_auth). The
 * reader that hands out the keys is cfg-parse.c.
 */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "cfg.h"
#include "cfg-int.h"
#include "filter.h"
#include "keys.h"
#include "util.h"

/*
 * The physical line holding byte off of the pending value. A list's items
 * are looked up in order, so *seg (start at 0) only moves forward and a
 * list of n items over n lines costs O(n), not O(n^2).
 */
int cfg_value_line(const struct cfg_parse *ps, size_t off, size_t *seg)
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
void cfg_flush_key(struct cfg_parse *ps)
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

/*
 * Each relay's effective auth and key file, and the keys of the relays that
 * may authenticate, each file read once. Only those are read: a key no
 * relay may use stays on disk.
 */
void cfg_resolve_auth(struct cfg_parse *ps)
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
