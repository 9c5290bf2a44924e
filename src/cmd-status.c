/*
 * cmd-status: `negsync status [--json]`, what the database knows about every
 * configured relay, without a single network connection: the capability
 * verdict the cache holds (its reason, NIP-11 software and version, when it
 * was checked and until when it is reused), the negentropy setting (the
 * configuration's value and a saved override), per filter the last run
 * (sync_runs) and the REQ cursor, and the payload bytes moved and saved over
 * every recorded run, per relay and overall. A table for people, one JSON
 * document with --json.
 *
 * The report is gathered into struct status_relay first and then printed
 * either way, so the table and the JSON never disagree. All SQL is the store's;
 * the cache's lifetime rule is caps.c's (caps_recheck_reason).
 *
 * A relay the cache does not know (caps never caches "unreachable") is
 * reported unreachable when its newest run failed without a byte from it,
 * else unknown.
 */
#include "config.h"

#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "caps.h"
#include "cfg.h"
#include "commands.h"
#include "relay.h"
#include "store.h"
#include "summary.h"
#include "sync.h"
#include "util.h"

static const char status_usage[] = "usage: negsync [-c FILE] [-d FILE] status [--json]\n";

enum status_verdict {
    VERDICT_UNKNOWN,
    VERDICT_SUPPORTED,
    VERDICT_UNSUPPORTED,
    VERDICT_UNREACHABLE
};

static const char *verdict_name(enum status_verdict v)
{
    switch (v) {
    case VERDICT_UNKNOWN: return "unknown";
    case VERDICT_SUPPORTED: return "supported";
    case VERDICT_UNSUPPORTED: return "unsupported";
    case VERDICT_UNREACHABLE: return "unreachable";
    }
    return "?";
}

struct status_filter {
    const struct config_filter *cf;
    int has_run;
    struct store_run run;
    int has_cursor;
    int64_t cursor;
    char *cursor_filter; /* the filter the cursor was recorded for */
};

struct status_relay {
    const struct config_relay *cr;
    /* The capability. */
    enum status_verdict verdict;
    int cached; /* from the cache (else from the newest run, or nothing) */
    struct store_caps caps;
    char reason[STORE_ERRLEN];
    int64_t checked_at;   /* 0: never */
    int64_t cached_until; /* cached only: when the cache stops answering */
    int reachable;        /* the newest run: 1 reached the relay, 0 did not, -1 no runs */
    /* The negentropy setting. */
    int has_override;
    char override[8];
    enum config_neg_mode mode; /* what a job does, the override applied */
    struct status_filter *filters;
    struct store_run_totals totals;
};

struct status_report {
    const struct config *cfg;
    char *db_path;
    uint64_t events, db_bytes;
    int64_t now;
    struct status_relay *relays;
    size_t nrelays;
    struct store_run_totals totals;
};

/*
 * The first second at which the cache no longer answers for r: found with
 * caps_recheck_reason itself (a bisection over "now"; reuse is fresh from
 * checked_at until some second, then expired for good), so this report
 * follows caps.c's rule, silence verdicts and all, instead of restating it.
 */
static int64_t cache_expiry(const struct caps_result *r, unsigned recheck_days)
{
    int64_t lo = r->checked_at, hi = r->checked_at + (int64_t)recheck_days * 86400;

    if (caps_recheck_reason(r, NULL, lo, recheck_days, 0) != CAPS_FROM_CACHE)
        return lo;
    /* lo is fresh; hi is expired (no lifetime is longer than recheck_days). */
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        if (caps_recheck_reason(r, NULL, mid, recheck_days, 0) == CAPS_FROM_CACHE)
            lo = mid;
        else
            hi = mid;
    }
    return hi;
}

/* The key caps files a relay under (relay.c's normalization), else the config's. */
static char *caps_key(const char *url)
{
    char err[RELAY_ERRLEN];
    char *k = relay_url_normalize(url, err, sizeof err);
    return k != NULL ? k : xstrdup(url);
}

static int gather_caps(struct store *st, const struct config *cfg, struct status_relay *r,
                       const struct store_run *newest, char *err, size_t errlen)
{
    char *key = caps_key(r->cr->url);
    int rc = store_caps_get(st, key, &r->caps, err, errlen);

    if (rc == 0 && strcmp(key, r->cr->url) != 0)
        rc = store_caps_get(st, r->cr->url, &r->caps, err, errlen);
    free(key);
    if (rc < 0)
        return -1;
    r->reachable =
        newest == NULL ? -1 : !(strcmp(newest->result, "ok") != 0 && newest->wire_received == 0);
    if (rc == 1) {
        struct caps_result cr = {0};

        r->cached = 1;
        r->verdict = r->caps.supported ? VERDICT_SUPPORTED : VERDICT_UNSUPPORTED;
        snprintf(r->reason, sizeof r->reason, "%s", r->caps.reason ? r->caps.reason : "");
        r->checked_at = r->caps.checked_at;
        cr.verdict = r->caps.supported ? CAPS_SUPPORTED : CAPS_UNSUPPORTED;
        snprintf(cr.reason, sizeof cr.reason, "%s", r->reason);
        cr.checked_at = r->caps.checked_at;
        r->cached_until = cache_expiry(&cr, cfg->sync.recheck_days);
    } else if (r->reachable == 0) {
        r->verdict = VERDICT_UNREACHABLE;
        snprintf(r->reason, sizeof r->reason, "%s", newest->error);
        r->checked_at = newest->started;
    }
    return 0;
}

/*
 * Whether the newest run of sf failed by negentropy for want of NIP-42 AUTH
 * (sync-auth.c's "auth-required: ..." and "restricted: ..."): the relay
 * speaks NIP-77, only not to us for that filter.
 */
static int filter_needs_auth(const struct status_filter *sf)
{
    return sf->has_run && strcmp(sf->run.result, "ok") != 0 && strcmp(sf->run.mode, "neg") == 0 &&
           (strncmp(sf->run.error, "auth-required", 13) == 0 ||
            strncmp(sf->run.error, "restricted:", 11) == 0);
}

static int gather_relay(struct store *st, const struct config *cfg, struct status_relay *r,
                        char *err, size_t errlen)
{
    struct config_relay eff = *r->cr;
    const struct store_run *newest = NULL;
    int rc;

    if ((rc = store_setting_negentropy(st, r->cr->url, r->override, err, errlen)) < 0)
        return -1;
    r->has_override = rc == 1;
    if (r->has_override)
        eff.negentropy =
            strcmp(r->override, "on") == 0 ? CONFIG_NEGENTROPY_ON : CONFIG_NEGENTROPY_OFF;
    r->mode = config_relay_neg_mode(cfg, &eff);

    r->filters = xcalloc(cfg->nfilters ? cfg->nfilters : 1, sizeof *r->filters);
    for (size_t f = 0; f < cfg->nfilters; f++) {
        struct status_filter *sf = &r->filters[f];

        sf->cf = &cfg->filters[f];
        if ((rc = store_run_last(st, r->cr->url, sf->cf->name, &sf->run, err, errlen)) < 0)
            return -1;
        sf->has_run = rc;
        if (sf->has_run && (newest == NULL || sf->run.run > newest->run))
            newest = &sf->run;
        if ((rc = store_cursor_row(st, r->cr->url, sf->cf->name, &sf->cursor, &sf->cursor_filter,
                                   err, errlen)) < 0)
            return -1;
        sf->has_cursor = rc;
    }
    if (store_run_totals(st, r->cr->url, &r->totals, err, errlen) < 0)
        return -1;
    return gather_caps(st, cfg, r, newest, err, errlen);
}

static int gather(struct store *st, struct status_report *rep, char *err, size_t errlen)
{
    const struct config *cfg = rep->cfg;

    if (store_count(st, NULL, &rep->events, err, errlen) < 0 ||
        store_size(st, &rep->db_bytes, err, errlen) < 0 ||
        store_run_totals(st, NULL, &rep->totals, err, errlen) < 0)
        return -1;
    rep->relays = xcalloc(cfg->nrelays ? cfg->nrelays : 1, sizeof *rep->relays);
    rep->nrelays = cfg->nrelays;
    for (size_t i = 0; i < cfg->nrelays; i++) {
        rep->relays[i].cr = &cfg->relays[i];
        if (gather_relay(st, cfg, &rep->relays[i], err, errlen) < 0)
            return -1;
    }
    return 0;
}

static void report_free(struct status_report *rep)
{
    for (size_t i = 0; i < rep->nrelays; i++) {
        struct status_relay *r = &rep->relays[i];
        if (r->filters != NULL)
            for (size_t f = 0; f < rep->cfg->nfilters; f++)
                free(r->filters[f].cursor_filter);
        free(r->filters);
        store_caps_clear(&r->caps);
    }
    free(rep->relays);
    free(rep->db_path);
}

/* The percent of the estimate saved (negative: it cost more); the caller checks est > 0. */
static double saved_percent(uint64_t est, uint64_t used)
{
    return ((double)est - (double)used) * 100.0 / (double)est;
}

/* The same to one decimal, for --json. */
static json_t *json_saved(uint64_t est, uint64_t used)
{
    if (est == 0)
        return json_null();
    return json_real(round(saved_percent(est, used) * 10.0) / 10.0);
}

static const char *mode_word(const char *db_mode)
{
    return sync_mode_name(strcmp(db_mode, "neg") == 0 ? SYNC_MODE_NEG : SYNC_MODE_REQ);
}

/* ---- JSON -------------------------------------------------------------------------- */

static json_t *json_str_or_null(const char *s)
{
    return s != NULL && s[0] != '\0' ? json_string(s) : json_null();
}

static json_t *json_u64(uint64_t v)
{
    return json_integer(v > (uint64_t)INT64_MAX ? INT64_MAX : (json_int_t)v);
}

static json_t *totals_json(const struct store_run_totals *t)
{
    json_t *o = json_object();

    json_object_set_new(o, "runs", json_u64(t->runs));
    json_object_set_new(o, "runs_ok", json_u64(t->runs_ok));
    json_object_set_new(o, "bytes_sent", json_u64(t->bytes_sent));
    json_object_set_new(o, "bytes_received", json_u64(t->bytes_received));
    json_object_set_new(o, "wire_sent", json_u64(t->wire_sent));
    json_object_set_new(o, "wire_received", json_u64(t->wire_received));
    json_object_set_new(o, "fetched", json_u64(t->fetched));
    json_object_set_new(o, "stored", json_u64(t->stored));
    json_object_set_new(o, "est_req_bytes", json_u64(t->est_req_bytes));
    json_object_set_new(o, "saved_bytes",
                        json_integer((json_int_t)t->est_req_bytes - (json_int_t)t->compared_bytes));
    json_object_set_new(o, "saved_percent", json_saved(t->est_req_bytes, t->compared_bytes));
    json_object_set_new(o, "first_run", t->runs ? json_integer(t->first_started) : json_null());
    json_object_set_new(o, "last_run", t->runs ? json_integer(t->last_started) : json_null());
    return o;
}

static json_t *run_json(const struct store_run *r)
{
    json_t *o = json_object();

    json_object_set_new(o, "mode", json_string(mode_word(r->mode)));
    json_object_set_new(o, "fallback_reason", json_str_or_null(r->fallback_reason));
    json_object_set_new(o, "started", json_integer(r->started));
    json_object_set_new(o, "duration_ms", json_integer(r->duration_ms));
    json_object_set_new(o, "rounds", json_u64(r->rounds));
    json_object_set_new(o, "bytes_sent", json_u64(r->bytes_sent));
    json_object_set_new(o, "bytes_received", json_u64(r->bytes_received));
    json_object_set_new(o, "wire_sent", json_u64(r->wire_sent));
    json_object_set_new(o, "wire_received", json_u64(r->wire_received));
    json_object_set_new(o, "est_req_bytes", json_u64(r->est_req_bytes));
    json_object_set_new(o, "saved_percent",
                        json_saved(r->est_req_bytes, r->bytes_sent + r->bytes_received));
    json_object_set_new(o, "have", json_u64(r->have));
    json_object_set_new(o, "need", json_u64(r->need));
    json_object_set_new(o, "fetched", json_u64(r->fetched));
    json_object_set_new(o, "stored", json_u64(r->stored));
    json_object_set_new(o, "duplicates", json_u64(r->duplicates));
    json_object_set_new(o, "invalid", json_u64(r->invalid));
    json_object_set_new(o, "uploaded", json_u64(r->uploaded_ok));
    json_object_set_new(o, "upload_rejected", json_u64(r->uploaded_rejected));
    json_object_set_new(o, "result", json_string(r->result));
    json_object_set_new(o, "error", json_str_or_null(r->error));
    return o;
}

static json_t *relay_json(const struct status_report *rep, const struct status_relay *r)
{
    json_t *o = json_object(), *cap = json_object(), *neg = json_object(), *fs = json_array();
    json_t *nips = NULL;

    json_object_set_new(o, "url", json_string(r->cr->url));
    json_object_set_new(o, "enabled", json_boolean(r->cr->enabled));
    json_object_set_new(o, "tls_verify", json_boolean(r->cr->tls_verify));

    json_object_set_new(cap, "verdict", json_string(verdict_name(r->verdict)));
    json_object_set_new(cap, "reason", json_str_or_null(r->reason));
    json_object_set_new(cap, "source",
                        r->cached                           ? json_string("cache")
                        : r->verdict == VERDICT_UNREACHABLE ? json_string("last run")
                                                            : json_null());
    json_object_set_new(cap, "checked_at",
                        r->checked_at ? json_integer(r->checked_at) : json_null());
    json_object_set_new(cap, "cached_until",
                        r->cached ? json_integer(r->cached_until) : json_null());
    json_object_set_new(cap, "fresh",
                        r->cached ? json_boolean(rep->now < r->cached_until) : json_false());
    json_object_set_new(cap, "latency_ms",
                        r->cached && r->caps.latency_ms >= 0 ? json_integer(r->caps.latency_ms)
                                                             : json_null());
    json_object_set_new(cap, "software", json_str_or_null(r->caps.nip11_software));
    json_object_set_new(cap, "version", json_str_or_null(r->caps.nip11_version));
    if (r->caps.nip11_supported_nips != NULL)
        nips = json_loads(r->caps.nip11_supported_nips, 0, NULL);
    json_object_set_new(cap, "supported_nips", json_is_array(nips) ? nips : json_null());
    if (nips != NULL && !json_is_array(nips))
        json_decref(nips);
    {
        json_t *na = json_array();
        for (size_t f = 0; r->verdict == VERDICT_SUPPORTED && f < rep->cfg->nfilters; f++)
            if (filter_needs_auth(&r->filters[f]))
                json_array_append_new(na, json_string(r->filters[f].cf->name));
        json_object_set_new(cap, "needs_auth", na);
    }
    json_object_set_new(o, "capability", cap);
    json_object_set_new(o, "reachable",
                        r->reachable < 0 ? json_null() : json_boolean(r->reachable));

    json_object_set_new(neg, "config", json_string(config_negentropy_name(r->cr->negentropy)));
    json_object_set_new(neg, "override", r->has_override ? json_string(r->override) : json_null());
    json_object_set_new(neg, "use_negentropy", json_boolean(rep->cfg->sync.use_negentropy));
    json_object_set_new(neg, "negentropy_fallback",
                        json_boolean(rep->cfg->sync.negentropy_fallback));
    json_object_set_new(neg, "mode", json_string(config_neg_mode_name(r->mode)));
    json_object_set_new(o, "negentropy", neg);

    for (size_t f = 0; f < rep->cfg->nfilters; f++) {
        const struct status_filter *sf = &r->filters[f];
        json_t *fo = json_object();

        json_object_set_new(fo, "name", json_string(sf->cf->name));
        json_object_set_new(fo, "last_run", sf->has_run ? run_json(&sf->run) : json_null());
        json_object_set_new(fo, "cursor", sf->has_cursor ? json_integer(sf->cursor) : json_null());
        json_object_set_new(fo, "cursor_filter", json_str_or_null(sf->cursor_filter));
        json_array_append_new(fs, fo);
    }
    json_object_set_new(o, "filters", fs);
    json_object_set_new(o, "totals", totals_json(&r->totals));
    return o;
}

static int print_json(const struct status_report *rep)
{
    json_t *doc = json_object(), *db = json_object(), *relays = json_array();
    char *text;
    int rc;

    json_object_set_new(doc, "now", json_integer(rep->now));
    json_object_set_new(db, "path", json_string(rep->db_path));
    json_object_set_new(db, "size_bytes", json_u64(rep->db_bytes));
    json_object_set_new(db, "events", json_u64(rep->events));
    json_object_set_new(doc, "database", db);
    json_object_set_new(doc, "config", json_str_or_null(rep->cfg->path));
    json_object_set_new(doc, "recheck_days", json_integer(rep->cfg->sync.recheck_days));
    for (size_t i = 0; i < rep->nrelays; i++)
        json_array_append_new(relays, relay_json(rep, &rep->relays[i]));
    json_object_set_new(doc, "relays", relays);
    json_object_set_new(doc, "totals", totals_json(&rep->totals));
    text = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(doc);
    rc = text != NULL && puts(text) >= 0 ? 0 : -1;
    free(text);
    return rc;
}

/* ---- the table ------------------------------------------------------------------------ */

/* "45s", "12m", "3h", "2d". */
static void fmt_span(int64_t secs, char *out, size_t outlen)
{
    if (secs < 60)
        snprintf(out, outlen, "%" PRId64 "s", secs);
    else if (secs < 3600)
        snprintf(out, outlen, "%" PRId64 "m", secs / 60);
    else if (secs < 86400)
        snprintf(out, outlen, "%" PRId64 "h", secs / 3600);
    else
        snprintf(out, outlen, "%" PRId64 "d", secs / 86400);
}

/* "3m ago", "in 6d", "now". */
static void fmt_when(int64_t t, int64_t now, char *out, size_t outlen)
{
    char span[32];

    if (t == now) {
        snprintf(out, outlen, "now");
    } else if (t < now) {
        fmt_span(now - t, span, sizeof span);
        snprintf(out, outlen, "%s ago", span);
    } else {
        fmt_span(t - now, span, sizeof span);
        snprintf(out, outlen, "in %s", span);
    }
}

static void fmt_utc(int64_t t, char *out, size_t outlen)
{
    time_t tt = (time_t)t;
    struct tm tm;

    if (gmtime_r(&tt, &tm) == NULL || strftime(out, outlen, "%Y-%m-%d %H:%M", &tm) == 0)
        snprintf(out, outlen, "%" PRId64, t);
}

static void print_totals_line(const char *label, const struct store_run_totals *t)
{
    char up[32], down[32], est[32], saved[32];

    if (t->runs == 0) {
        printf("%s no runs recorded\n", label);
        return;
    }
    summary_fmt_bytes(t->bytes_sent, up, sizeof up);
    summary_fmt_bytes(t->bytes_received, down, sizeof down);
    summary_fmt_bytes(t->est_req_bytes, est, sizeof est);
    summary_fmt_saved(t->est_req_bytes, t->compared_bytes, saved, sizeof saved);
    printf("%s %" PRIu64 " run%s (%" PRIu64 " ok), sent %s, received %s, fetched %" PRIu64
           ", stored %" PRIu64,
           label, t->runs, t->runs == 1 ? "" : "s", t->runs_ok, up, down, t->fetched, t->stored);
    if (t->est_req_bytes > 0) {
        char diff[32];
        int64_t d = (int64_t)t->est_req_bytes - (int64_t)t->compared_bytes;
        summary_fmt_bytes(d >= 0 ? (uint64_t)d : (uint64_t)-d, diff, sizeof diff);
        printf(", a REQ would have moved %s: saved %s%s (%s)", est, d >= 0 ? "" : "-", diff, saved);
    }
    putchar('\n');
}

enum {
    COL_FILTER,
    COL_MODE,
    COL_ROUNDS,
    COL_SENT,
    COL_RECV,
    COL_EST,
    COL_SAVED,
    COL_FETCHED,
    COL_STORED,
    COL_WHEN,
    COL_RESULT,
    COL_CURSOR,
    NCOLS
};

#define CELL 48

static const char *const heads[NCOLS] = {"FILTER",   "MODE",    "ROUNDS", "SENT",
                                         "RECEIVED", "REQ EST", "SAVED",  "FETCHED",
                                         "STORED",   "WHEN",    "RESULT", "CURSOR (UTC)"};

static void filter_cells(const struct status_filter *sf, int64_t now, char cells[NCOLS][CELL])
{
    const struct store_run *r = &sf->run;

    snprintf(cells[COL_FILTER], CELL, "%s", sf->cf->name);
    if (sf->has_cursor && sf->cursor > 0)
        fmt_utc(sf->cursor, cells[COL_CURSOR], CELL);
    else
        snprintf(cells[COL_CURSOR], CELL, "-");
    if (!sf->has_run) {
        for (int c = COL_MODE; c < NCOLS; c++)
            if (c != COL_CURSOR)
                snprintf(cells[c], CELL, "-");
        snprintf(cells[COL_RESULT], CELL, "never run");
        return;
    }
    snprintf(cells[COL_MODE], CELL, "%s", mode_word(r->mode));
    snprintf(cells[COL_ROUNDS], CELL, "%" PRIu64, r->rounds);
    summary_fmt_bytes(r->bytes_sent, cells[COL_SENT], CELL);
    summary_fmt_bytes(r->bytes_received, cells[COL_RECV], CELL);
    if (r->est_req_bytes > 0)
        summary_fmt_bytes(r->est_req_bytes, cells[COL_EST], CELL);
    else
        snprintf(cells[COL_EST], CELL, "-");
    summary_fmt_saved(r->est_req_bytes, r->bytes_sent + r->bytes_received, cells[COL_SAVED], CELL);
    snprintf(cells[COL_FETCHED], CELL, "%" PRIu64, r->fetched);
    snprintf(cells[COL_STORED], CELL, "%" PRIu64, r->stored);
    fmt_when(r->started, now, cells[COL_WHEN], CELL);
    snprintf(cells[COL_RESULT], CELL, "%s", r->result);
}

/*
 * Text that came from a relay (reasons, errors, NIP-11 fields), with control
 * characters as spaces: what a relay said must not drive the terminal.
 */
static void put_text(const char *s)
{
    for (; s != NULL && *s != '\0'; s++)
        putchar((unsigned char)*s < 0x20 || *s == 0x7f ? ' ' : *s);
}

static void print_relay(const struct status_report *rep, const struct status_relay *r,
                        const int width[NCOLS], char (*cells)[NCOLS][CELL])
{
    char when[32], until[32];

    printf("\n%s%s%s\n", r->cr->url, r->cr->enabled ? "" : " (disabled)",
           r->cr->tls_verify ? "" : " (TLS unverified)");

    printf("  capability  %s", verdict_name(r->verdict));
    if (r->reason[0] != '\0') {
        fputs(": ", stdout);
        put_text(r->reason);
    }
    for (size_t f = 0, n = 0; r->verdict == VERDICT_SUPPORTED && f < rep->cfg->nfilters; f++)
        if (filter_needs_auth(&r->filters[f]))
            printf("%s%s", n++ == 0 ? "; needs AUTH for " : ", ", r->filters[f].cf->name);
    if (r->caps.nip11_software != NULL || r->caps.nip11_version != NULL) {
        fputs(" · ", stdout);
        put_text(r->caps.nip11_software ? r->caps.nip11_software : "?");
        putchar(' ');
        put_text(r->caps.nip11_version ? r->caps.nip11_version : "?");
    }
    if (r->cached) {
        fmt_when(r->checked_at, rep->now, when, sizeof when);
        if (rep->now < r->cached_until) {
            fmt_span(r->cached_until - rep->now, until, sizeof until);
            printf(" · checked %s, cached for %s more", when, until);
        } else {
            fmt_when(r->cached_until, rep->now, until, sizeof until);
            printf(" · checked %s, cache expired %s", when, until);
        }
    } else if (r->verdict == VERDICT_UNREACHABLE) {
        fmt_when(r->checked_at, rep->now, when, sizeof when);
        printf(" · last run %s, nothing cached", when);
    } else {
        printf(" · never checked");
    }
    if (r->cached && r->reachable == 0)
        printf(" · the last run could not reach it");
    putchar('\n');

    printf("  negentropy  %s",
           r->has_override ? r->override : config_negentropy_name(r->cr->negentropy));
    if (r->has_override)
        printf(" (saved override; config: %s)", config_negentropy_name(r->cr->negentropy));
    else
        printf(" (config)");
    printf(" · use_negentropy = %s · jobs: %s\n", rep->cfg->sync.use_negentropy ? "true" : "false",
           config_neg_mode_name(r->mode));
    print_totals_line("  totals     ", &r->totals);

    if (rep->cfg->nfilters == 0)
        return;
    printf("  ");
    for (int c = 0; c < NCOLS - 1; c++)
        printf("%-*s  ", width[c], heads[c]);
    printf("%s\n", heads[NCOLS - 1]);
    for (size_t f = 0; f < rep->cfg->nfilters; f++) {
        const struct status_filter *sf = &r->filters[f];

        printf("  ");
        for (int c = 0; c < NCOLS - 1; c++)
            printf("%-*s  ", width[c], cells[f][c]);
        printf("%s\n", cells[f][NCOLS - 1]);
        if (sf->has_run && sf->run.fallback_reason[0] != '\0') {
            fputs("    fallback: ", stdout);
            put_text(sf->run.fallback_reason);
            putchar('\n');
        }
        if (sf->has_run && sf->run.error[0] != '\0') {
            printf("    %s: ", strcmp(sf->run.result, "ok") == 0 ? "warning" : "error");
            put_text(sf->run.error);
            putchar('\n');
        }
    }
}

static int print_table(const struct status_report *rep)
{
    size_t nf = rep->cfg->nfilters;
    char(*cells)[NCOLS][CELL] = xcalloc(rep->nrelays * nf + 1, sizeof *cells);
    int width[NCOLS];
    char size[32];

    /* One set of column widths for every relay, so the blocks line up. */
    for (int c = 0; c < NCOLS; c++)
        width[c] = (int)strlen(heads[c]);
    for (size_t i = 0; i < rep->nrelays; i++) {
        for (size_t f = 0; f < nf; f++) {
            char(*row)[CELL] = cells[i * nf + f];
            filter_cells(&rep->relays[i].filters[f], rep->now, row);
            for (int c = 0; c < NCOLS; c++) {
                int w = (int)strlen(row[c]);
                width[c] = w > width[c] ? w : width[c];
            }
        }
    }

    summary_fmt_bytes(rep->db_bytes, size, sizeof size);
    printf("database    %s · %" PRIu64 " event%s · %s\n", rep->db_path, rep->events,
           rep->events == 1 ? "" : "s", size);
    print_totals_line("all runs   ", &rep->totals);
    if (rep->nrelays == 0) {
        printf("no relays in the configuration%s%s\n", rep->cfg->path ? " " : "",
               rep->cfg->path ? rep->cfg->path : "");
        if (rep->cfg->notice != NULL)
            fprintf(stderr, "negsync: %s\n", rep->cfg->notice);
    }
    for (size_t i = 0; i < rep->nrelays; i++)
        print_relay(rep, &rep->relays[i], width, &cells[i * nf]);
    free(cells);
    return fflush(stdout) == 0 ? 0 : -1;
}

int cmd_status(struct globals *g, int argc, char **argv)
{
    static const struct option opts[] = {
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct status_report rep = {0};
    char err[STORE_ERRLEN];
    struct config *cfg;
    struct store *st;
    int json = 0, c, status = 0;

    optind = 0;
    while ((c = getopt_long(argc, argv, "jh", opts, NULL)) != -1) {
        switch (c) {
        case 'j': json = 1; break;
        case 'h':
            fputs(status_usage, stdout);
            puts("What the database knows of every configured relay, without connecting:\n"
                 "the NIP-77 verdict and how long it is cached, the negentropy setting,\n"
                 "each filter's last run and cursor, and the bytes saved against REQ.\n"
                 "--json prints one JSON document.");
            return 0;
        default: fputs(status_usage, stderr); return EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "negsync: status takes no arguments ('%s')\n", argv[optind]);
        fputs(status_usage, stderr);
        return EXIT_USAGE;
    }
    if ((cfg = cmd_load_config(g, "")) == NULL)
        return EXIT_USAGE;
    rep.cfg = cfg;
    rep.now = (int64_t)time(NULL);
    if ((rep.db_path = config_db_path(cfg, g->db_path, err, sizeof err)) == NULL) {
        fprintf(stderr, "negsync: %s\n", err);
        config_free(cfg);
        return 1;
    }
    /* Read-only: status never creates a database, and works on one it cannot write. */
    if ((st = store_open_readonly(rep.db_path, err, sizeof err)) == NULL) {
        fprintf(stderr, "negsync: no status: %s%s\n", err,
                access(rep.db_path, F_OK) == 0 ? "" : " (negsync sync creates it)");
        report_free(&rep);
        config_free(cfg);
        return 1;
    }
    if (gather(st, &rep, err, sizeof err) < 0) {
        fprintf(stderr, "negsync: %s\n", err);
        status = 1;
    } else if ((json ? print_json(&rep) : print_table(&rep)) < 0) {
        perror("negsync: stdout");
        status = 1;
    }
    store_close(st);
    report_free(&rep);
    config_free(cfg);
    return status;
}
