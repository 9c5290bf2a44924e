/*
 * test-config: the configuration file, as a user writes it.
 *
 *   - defaults for every key, with no file and with an empty one;
 *   - every key of [storage], [sync], [relay URL] and [filter NAME] set to
 *     something else and read back;
 *   - since/until as unix time, ISO date and relative age against an
 *     injected "now", and re-resolved later (config_filter_at);
 *   - relay URL normalization and duplicate relays;
 *   - the negentropy mode decision for every combination of the switches;
 *   - every error, with its exact line and message, and several in one file;
 *   - where the file comes from: -c, $XDG_CONFIG_HOME, $HOME, a missing
 *     default (empty config and a hint) and a missing -c file (an error);
 *   - what is not a config: devices, FIFOs, huge or binary files, text
 *     that is not UTF-8, and a file with thousands of errors.
 *
 * Configs are written to files in a private temporary directory, so the
 * messages' "file:" prefix is known and the rest is compared exactly.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cfg.h"
#include "filter.h"
#include "relay.h"
#include "testutil.h"
#include "util.h"

/* 2025-06-15T12:00:00Z: every relative time below is measured from here. */
#define NOW INT64_C(1749988800)

#define HEX0 "0000000000000000000000000000000000000000000000000000000000000000"
#define HEX1 "0000000000000000000000000000000000000000000000000000000000000001"
#define HEXA "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define HEXB "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

static char tmpdir[256];

static char *tmp_path(const char *name)
{
    size_t n = strlen(tmpdir) + strlen(name) + 2;
    char *p = xmalloc(n);

    snprintf(p, n, "%s/%s", tmpdir, name);
    return p;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0) {
        perror(path);
        exit(99);
    }
}

/* Parses text as the file "t.ini"; returns the config (NULL on errors). */
static struct config *load_text(const char *text, struct config_errors *errs)
{
    char *path = tmp_path("t.ini");
    struct config *cfg;

    write_file(path, text);
    cfg = config_load(path, NOW, errs);
    free(path);
    return cfg;
}

/* A config that must load without a single message. */
static struct config *load_ok(const char *text, int line)
{
    struct config_errors errs = {0};
    struct config *cfg = load_text(text, &errs);

    CHECK_MSG(cfg != NULL && errs.n == 0, "test-config.c:%d: %zu errors, first: %s", line, errs.n,
              errs.n > 0 ? errs.msgs[0] : "(none)");
    config_errors_free(&errs);
    if (cfg == NULL)
        cfg = config_new();
    return cfg;
}
#define LOAD_OK(text) load_ok(text, __LINE__)

/*
 * The messages from loading text, without the "<tmpdir>/t.ini:" prefix
 * (checked here), joined by '\n'. Caller frees.
 */
static char *load_errors(const char *text, int line)
{
    struct config_errors errs = {0};
    struct config *cfg = load_text(text, &errs);
    char *prefix = tmp_path("t.ini:");
    struct buf b = {0};

    CHECK_MSG(cfg == NULL, "test-config.c:%d: a bad config loaded", line);
    config_free(cfg);
    for (size_t i = 0; i < errs.n; i++) {
        const char *m = errs.msgs[i];
        CHECK_MSG(strncmp(m, prefix, strlen(prefix)) == 0, "test-config.c:%d: '%s'", line, m);
        if (strncmp(m, prefix, strlen(prefix)) == 0)
            m += strlen(prefix);
        if (i > 0)
            buf_push(&b, '\n');
        buf_append(&b, m, strlen(m));
    }
    buf_push(&b, '\0');
    config_errors_free(&errs);
    free(prefix);
    return (char *)b.data;
}

/* text must fail with exactly want ("LINE: message", several joined by '\n'). */
static void expect_errors(const char *text, const char *want, int line)
{
    char *got = load_errors(text, line);

    CHECK_MSG(strcmp(got, want) == 0, "test-config.c:%d:\n  got:  %s\n  want: %s", line, got, want);
    free(got);
}
#define EXPECT_ERR(text, want) expect_errors(text, want, __LINE__)

/* The filter named name as JSON; caller frees. */
static char *filter_json(const struct config *cfg, const char *name)
{
    const struct config_filter *cf = config_find_filter(cfg, name);

    if (cf == NULL || cf->filter == NULL)
        return xstrdup("(none)");
    return filter_to_string(cf->filter);
}

static void check_json(const struct config *cfg, const char *name, const char *want, int line)
{
    char *got = filter_json(cfg, name);

    CHECK_MSG(strcmp(got, want) == 0, "test-config.c:%d: filter %s: got %s, want %s", line, name,
              got, want);
    free(got);
}
#define CHECK_JSON(cfg, name, want) check_json(cfg, name, want, __LINE__)

/* Puts back an environment variable saved with xstrdup (or NULL), and frees it. */
static void restore_env(const char *name, char *saved)
{
    if (saved != NULL)
        setenv(name, saved, 1);
    else
        unsetenv(name);
    free(saved);
}

/* ------------------------------------------------------------------ tests */

static void check_defaults(const struct config *cfg)
{
    const struct config_sync *s = &cfg->sync;

    CHECK(s->workers == 4);
    CHECK(s->use_negentropy == 1);
    CHECK(s->negentropy_fallback == 1);
    CHECK(s->direction == CONFIG_DIRECTION_DOWN);
    CHECK(s->interval == 300);
    CHECK(s->recheck_days == 7);
    CHECK(s->neg_timeout == 10);
    CHECK(s->probe_timeout == 5);
    CHECK(s->frame_size_limit == 60000);
    CHECK(s->neg_adaptive == 0); /* messages byte-identical to the reference's (DESIGN.md) */
    CHECK(s->fetch_batch == 500);
    CHECK(s->fetch_in_flight == 4);
    CHECK(s->max_sync_events == 1000000);
    CHECK(cfg->storage_path == NULL);
    CHECK(cfg->nrelays == 0);
    CHECK(cfg->nfilters == 0);
}

static void test_defaults(void)
{
    struct config *cfg = config_new();

    check_defaults(cfg);
    CHECK(cfg->path == NULL);
    CHECK(cfg->notice == NULL);
    config_free(cfg);

    /* An empty file, and one of comments and blank lines only. */
    cfg = LOAD_OK("");
    check_defaults(cfg);
    CHECK(cfg->notice == NULL);
    CHECK(cfg->path != NULL && strstr(cfg->path, "/t.ini") != NULL);
    config_free(cfg);
    cfg = LOAD_OK("; nothing\n\n# still nothing\n   \n[sync]\n[storage]\n");
    check_defaults(cfg);
    config_free(cfg);

    /* A relay and a filter with nothing set. */
    cfg = LOAD_OK("[relay wss://r.example]\n[filter all]\n");
    CHECK(cfg->nrelays == 1 && cfg->nfilters == 1);
    const struct config_relay *r = &cfg->relays[0];
    CHECK(strcmp(r->url, "wss://r.example") == 0);
    CHECK(r->line == 1);
    CHECK(r->negentropy == CONFIG_NEGENTROPY_AUTO);
    CHECK(r->direction == CONFIG_DIRECTION_DOWN && !r->direction_set);
    CHECK(r->tls_verify == 1 && r->compression == 1 && r->enabled == 1);
    CHECK(config_relay_neg_mode(cfg, r) == CONFIG_NEG_MODE_NEG_FALLBACK);
    CHECK(strcmp(cfg->filters[0].name, "all") == 0 && cfg->filters[0].line == 2);
    CHECK(cfg->filters[0].since_age == -1 && cfg->filters[0].until_age == -1);
    CHECK_JSON(cfg, "all", "{}");
    config_free(cfg);
}

static void test_every_key(void)
{
    struct config *cfg = LOAD_OK("[storage]\n"
                                 "path = /var/lib/negsync/x.db\n"
                                 "[sync]\n"
                                 "workers = 16\n"
                                 "use_negentropy = false\n"
                                 "negentropy_fallback = no\n"
                                 "direction = both\n"
                                 "interval = 1h\n"
                                 "recheck_days = 0\n"
                                 "neg_timeout = 2m\n"
                                 "probe_timeout = 30\n"
                                 "frame_size_limit = 0\n"
                                 "negentropy_split = adaptive\n"
                                 "fetch_batch = 100\n"
                                 "fetch_in_flight = 8\n"
                                 "max_sync_events = 250000\n"
                                 "[relay wss://one.example]\n"
                                 "negentropy = on\n"
                                 "direction = up\n"
                                 "tls_verify = false\n"
                                 "compression = off\n"
                                 "enabled = 0\n"
                                 "[relay wss://two.example]\n"
                                 "negentropy = off\n"
                                 "[relay wss://three.example]\n"
                                 "negentropy = auto\n"
                                 "direction = down\n");
    const struct config_sync *s = &cfg->sync;

    CHECK(cfg->storage_path != NULL && strcmp(cfg->storage_path, "/var/lib/negsync/x.db") == 0);
    CHECK(s->workers == 16);
    CHECK(s->use_negentropy == 0);
    CHECK(s->negentropy_fallback == 0);
    CHECK(s->direction == CONFIG_DIRECTION_BOTH);
    CHECK(s->interval == 3600);
    CHECK(s->recheck_days == 0);
    CHECK(s->neg_timeout == 120);
    CHECK(s->probe_timeout == 30);
    CHECK(s->frame_size_limit == 0);
    CHECK(s->neg_adaptive == 1);
    CHECK(s->fetch_batch == 100);
    CHECK(s->fetch_in_flight == 8);
    CHECK(s->max_sync_events == 250000);

    CHECK(cfg->nrelays == 3);
    const struct config_relay *r = config_find_relay(cfg, "wss://one.example");
    CHECK(r != NULL && r->line == 17);
    if (r != NULL) {
        CHECK(r->negentropy == CONFIG_NEGENTROPY_ON);
        CHECK(r->direction == CONFIG_DIRECTION_UP && r->direction_set);
        CHECK(r->tls_verify == 0 && r->compression == 0 && r->enabled == 0);
    }
    r = config_find_relay(cfg, "wss://two.example");
    CHECK(r != NULL && r->negentropy == CONFIG_NEGENTROPY_OFF);
    /* No direction of its own: [sync]'s. */
    CHECK(r != NULL && r->direction == CONFIG_DIRECTION_BOTH && !r->direction_set);
    r = config_find_relay(cfg, "wss://three.example");
    CHECK(r != NULL && r->negentropy == CONFIG_NEGENTROPY_AUTO);
    CHECK(r != NULL && r->direction == CONFIG_DIRECTION_DOWN && r->direction_set);
    CHECK(config_find_relay(cfg, "wss://four.example") == NULL);
    config_free(cfg);

    /* A relay follows [sync] direction even when [sync] comes after it. */
    cfg = LOAD_OK("[relay wss://r.example]\n[sync]\ndirection = up\n");
    CHECK(cfg->relays[0].direction == CONFIG_DIRECTION_UP && !cfg->relays[0].direction_set);
    config_free(cfg);

    /* Every spelling of a boolean. */
    static const char *const yes[] = {"true", "yes", "on", "1", "TRUE", "Yes"};
    static const char *const no[] = {"false", "no", "off", "0", "False", "NO"};
    for (size_t i = 0; i < 6; i++) {
        char text[128];
        snprintf(text, sizeof text, "[sync]\nuse_negentropy = %s\nnegentropy_fallback = %s\n",
                 yes[i], no[i]);
        cfg = LOAD_OK(text);
        CHECK_MSG(cfg->sync.use_negentropy == 1 && cfg->sync.negentropy_fallback == 0, "%s/%s",
                  yes[i], no[i]);
        config_free(cfg);
    }

    /* Bounds that are allowed, and durations in every unit. */
    cfg = LOAD_OK("[sync]\nworkers = 256\nframe_size_limit = 4096\ninterval = 30d\n"
                  "neg_timeout = 3600s\nprobe_timeout = 1\nfetch_batch = 1\n"
                  "fetch_in_flight = 64\nmax_sync_events = 1\nrecheck_days = 3650\n");
    CHECK(cfg->sync.workers == 256);
    CHECK(cfg->sync.frame_size_limit == 4096);
    CHECK(cfg->sync.interval == 30 * 86400);
    CHECK(cfg->sync.neg_timeout == 3600);
    CHECK(cfg->sync.probe_timeout == 1);
    CHECK(cfg->sync.fetch_batch == 1 && cfg->sync.fetch_in_flight == 64);
    CHECK(cfg->sync.max_sync_events == 1 && cfg->sync.recheck_days == 3650);
    config_free(cfg);
    cfg = LOAD_OK("[sync]\ninterval = 2w\nneg_timeout = 1h\nprobe_timeout = 90s\n");
    CHECK(cfg->sync.interval == 14 * 86400);
    CHECK(cfg->sync.neg_timeout == 3600 && cfg->sync.probe_timeout == 90);
    config_free(cfg);

    /* Inline comments, spaces around '=', ':' as inih also allows, CRLF, a BOM. */
    cfg = LOAD_OK("\xEF\xBB\xBF[sync]   ; the sync section\r\n"
                  "  workers=2 ; two\r\n"
                  "fetch_batch   :   50\r\n");
    CHECK(cfg->sync.workers == 2 && cfg->sync.fetch_batch == 50);
    config_free(cfg);
}

static void test_storage_path(void)
{
    char *old_home = getenv("HOME") ? xstrdup(getenv("HOME")) : NULL;
    char want[512];
    struct config *cfg;

    setenv("HOME", "/home/alice", 1);
    cfg = LOAD_OK("[storage]\npath = ~/sync/n.db\n");
    CHECK(cfg->storage_path != NULL && strcmp(cfg->storage_path, "/home/alice/sync/n.db") == 0);
    config_free(cfg);

    /* Relative to the directory of the file that says it. */
    cfg = LOAD_OK("[storage]\npath = data/n.db\n");
    snprintf(want, sizeof want, "%s/data/n.db", tmpdir);
    CHECK_MSG(cfg->storage_path != NULL && strcmp(cfg->storage_path, want) == 0, "%s",
              cfg->storage_path ? cfg->storage_path : "(null)");
    config_free(cfg);

    restore_env("HOME", old_home);
}

static void test_filters(void)
{
    struct config *cfg = LOAD_OK("[filter notes]\n"
                                 "kinds = 1, 6,7\n"
                                 "authors = " HEXA "," HEXB "\n"
                                 "since = 2025-01-01\n"
                                 "until = 1750000000\n"
                                 "limit = 500\n"
                                 "[filter tagged]\n"
                                 "#e = " HEX0 "\n"
                                 "#t = nostr, Bitcoin\n"
                                 "#P = anything\n"
                                 "ids = " HEX1 "\n"
                                 "since = 30d\n"
                                 "until = 1h\n"
                                 "[filter long]\n"
                                 "kinds = 0,\n"
                                 "   3,\n"
                                 "   10002,\n"
                                 "authors =\n"
                                 "    " HEXA ",\n"
                                 "    " HEXB "\n"
                                 "# a comment between keys\n"
                                 "; and another\n"
                                 "[filter old-style.names_ok]\n"
                                 "since = 2024-02-29T23:59:59Z\n");

    CHECK(cfg->nfilters == 4);
    CHECK_JSON(cfg, "notes",
               "{\"authors\":[\"" HEXA "\",\"" HEXB "\"],\"kinds\":[1,6,7],"
               "\"since\":1735689600,\"until\":1750000000,\"limit\":500}");
    char want[512];
    snprintf(want, sizeof want,
             "{\"ids\":[\"" HEX1 "\"],\"#e\":[\"" HEX0 "\"],\"#t\":[\"nostr\",\"Bitcoin\"],"
             "\"#P\":[\"anything\"],\"since\":%lld,\"until\":%lld}",
             (long long)(NOW - 30 * 86400), (long long)(NOW - 3600));
    CHECK_JSON(cfg, "tagged", want);
    CHECK_JSON(cfg, "long", "{\"authors\":[\"" HEXA "\",\"" HEXB "\"],\"kinds\":[0,3,10002]}");
    CHECK_JSON(cfg, "old-style.names_ok", "{\"since\":1709251199}");
    CHECK(config_find_filter(cfg, "nope") == NULL);

    /* Relative bounds move with the clock; absolute ones do not. */
    const struct config_filter *cf = config_find_filter(cfg, "tagged");
    CHECK(cf != NULL && cf->since_age == 30 * 86400 && cf->until_age == 3600);
    if (cf != NULL) {
        struct filter *f = config_filter_at(cf, NOW + 86400);
        CHECK(f->since == (uint64_t)(NOW + 86400 - 30 * 86400));
        CHECK(f->until == (uint64_t)(NOW + 86400 - 3600));
        CHECK(f->nids == 1 && f->ntags == 3);
        filter_free(f);
    }
    cf = config_find_filter(cfg, "notes");
    CHECK(cf != NULL && cf->since_age == -1 && cf->until_age == -1);
    if (cf != NULL) {
        struct filter *f = config_filter_at(cf, NOW + 86400);
        CHECK(f->since == 1735689600 && f->until == 1750000000 && f->limit == 500);
        filter_free(f);
    }
    config_free(cfg);

    /*
     * In a filter, '#' + one letter + '=' is a tag condition; any other line
     * starting with '#' is a comment, so commenting out a key still works.
     */
    cfg = LOAD_OK("[filter c]\n#limit = 5\n#ab = x\n#1 = x\n# kinds = 1\n#t = x\n#T: y\n");
    CHECK_JSON(cfg, "c", "{\"#t\":[\"x\"],\"#T\":[\"y\"]}");
    config_free(cfg);
    /* Outside a filter a '#' line is always a comment. */
    cfg = LOAD_OK("[sync]\n#e = x\n#workers = 99\n");
    CHECK(cfg->sync.workers == 4);
    config_free(cfg);

    /* since == until is one second, which can match. A trailing comma is fine. */
    cfg = LOAD_OK("[filter s]\nsince = 100\nuntil = 100\nkinds = 1,\n");
    CHECK_JSON(cfg, "s", "{\"kinds\":[1],\"since\":100,\"until\":100}");
    config_free(cfg);

    /* A line longer than inih's default 200 bytes: five pubkeys on one line. */
    cfg = LOAD_OK("[filter wide]\nauthors = " HEXA "," HEXB "," HEX0 "," HEX1 "," HEXA "\n");
    const struct config_filter *w = config_find_filter(cfg, "wide");
    CHECK(w != NULL && w->filter->nauthors == 5);
    config_free(cfg);
}

static void check_time(const char *s, int64_t want, int64_t want_age, int line)
{
    char err[CONFIG_ERRLEN] = "";
    int64_t t = -2, age = -2;
    int rc = config_parse_time(s, NOW, &t, &age, err, sizeof err);

    CHECK_MSG(rc == 0 && t == want && age == want_age,
              "test-config.c:%d: '%s': rc %d, %lld (age %lld), want %lld (age %lld) %s", line, s,
              rc, (long long)t, (long long)age, (long long)want, (long long)want_age, err);
}

static void check_bad_time(const char *s, const char *want, int line)
{
    char err[CONFIG_ERRLEN] = "";
    int64_t t, age;
    int rc = config_parse_time(s, NOW, &t, &age, err, sizeof err);

    CHECK_MSG(rc == -1 && strcmp(err, want) == 0, "test-config.c:%d: '%s': rc %d, '%s'", line, s,
              rc, err);
}

static void test_times(void)
{
    static const char bad_fmt[] =
        "expected a unix time, YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ (UTC) or an age like 30d (s, "
        "m, h, d, w), got '%s'";
    char want[256];

    check_time("0", 0, -1, __LINE__);
    check_time("1700000000", 1700000000, -1, __LINE__);
    check_time("1970-01-01", 0, -1, __LINE__);
    check_time("2025-01-01", 1735689600, -1, __LINE__);
    check_time("2025-06-15T12:00:00Z", NOW, -1, __LINE__);
    check_time("2000-02-29", 951782400, -1, __LINE__);
    check_time("2024-12-31T23:59:59Z", 1735689599, -1, __LINE__);
    check_time("2100-03-01", 4107542400, -1, __LINE__);
    check_time("45s", NOW - 45, 45, __LINE__);
    check_time("10m", NOW - 600, 600, __LINE__);
    check_time("6h", NOW - 6 * 3600, 6 * 3600, __LINE__);
    check_time("30d", NOW - 30 * 86400, 30 * 86400, __LINE__);
    check_time("2w", NOW - 14 * 86400, 14 * 86400, __LINE__);
    check_time("0d", NOW, 0, __LINE__);

    static const char *const bad[] = {
        "",
        "-1",
        "1.5",
        "30x",
        "1y",
        "d",
        "30 d",
        " 30d",
        "2025-1-01",
        "2025-02-29",
        "1900-02-29",
        "2023-04-31",
        "2025-13-01",
        "2025-00-10",
        "1969-12-31",
        "2025-01-01T00:00:00",
        "2025-01-01 00:00:00Z",
        "2025-01-01T24:00:00Z",
        "2025-01-01T23:60:00Z",
        "2025-01-01t00:00:00z",
        "99999999999999999999",
        "yesterday",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(want, sizeof want, bad_fmt, bad[i]);
        check_bad_time(bad[i], want, __LINE__);
    }
    /* An age bigger than now reaches before the epoch. */
    check_bad_time("20255d", "'20255d' reaches back before 1970", __LINE__);
    check_bad_time("2894w", "'2894w' reaches back before 1970", __LINE__);
    check_time("20254d", NOW - INT64_C(20254) * 86400, INT64_C(20254) * 86400, __LINE__);
    check_time("2893w", NOW - INT64_C(2893) * 7 * 86400, INT64_C(2893) * 7 * 86400, __LINE__);
}

static void check_url(const char *in, const char *want, int line)
{
    char err[CONFIG_ERRLEN] = "";
    char *got = config_url_normalize(in, err, sizeof err);

    CHECK_MSG(got != NULL && strcmp(got, want) == 0, "test-config.c:%d: '%s' -> '%s' (%s)", line,
              in, got ? got : "(null)", err);
    free(got);
}

static void check_bad_url(const char *in, const char *want, int line)
{
    char err[CONFIG_ERRLEN] = "";
    char *got = config_url_normalize(in, err, sizeof err);

    CHECK_MSG(got == NULL && strcmp(err, want) == 0, "test-config.c:%d: '%s' -> '%s', err '%s'",
              line, in, got ? got : "(null)", err);
    free(got);
}

static void test_urls(void)
{
    check_url("wss://relay.example.com", "wss://relay.example.com", __LINE__);
    check_url("wss://relay.example.com/", "wss://relay.example.com", __LINE__);
    check_url("wss://relay.example.com//", "wss://relay.example.com", __LINE__);
    check_url("WSS://Relay.Example.COM", "wss://relay.example.com", __LINE__);
    check_url("wss://relay.example.com:443", "wss://relay.example.com", __LINE__);
    check_url("wss://relay.example.com:0443/", "wss://relay.example.com", __LINE__);
    check_url("ws://relay.example.com:80/", "ws://relay.example.com", __LINE__);
    check_url("ws://relay.example.com:443", "ws://relay.example.com:443", __LINE__);
    check_url("wss://relay.example.com:80", "wss://relay.example.com:80", __LINE__);
    check_url("ws://127.0.0.1:7777", "ws://127.0.0.1:7777", __LINE__);
    check_url("wss://Host.example/Nostr/", "wss://host.example/Nostr", __LINE__);
    check_url("wss://host.example/a/b", "wss://host.example/a/b", __LINE__);
    check_url("wss://host.example/?Key=V", "wss://host.example?Key=V", __LINE__);
    check_url("wss://host.example?Key=V/", "wss://host.example?Key=V/", __LINE__);
    check_url("wss://host.example/p/?k=v", "wss://host.example/p?k=v", __LINE__);
    check_url("ws://[::1]:7777/", "ws://[::1]:7777", __LINE__);
    check_url("wss://[2001:DB8::1]:443", "wss://[2001:db8::1]", __LINE__);
    check_url("ws://my_host-1.local", "ws://my_host-1.local", __LINE__);
    check_url("wss://h.example/x/?a=1", "wss://h.example/x?a=1", __LINE__);

    /*
     * The config's form is the key the capability cache and the database use
     * (relay_url_normalize): one form, whoever writes the URL down.
     */
    static const char *const keyform[] = {
        "wss://h.example/x/?a=1", "wss://h.example?a=1",     "wss://h.example/?a=1",
        "WSS://H.example:443/",   "ws://h.example:80/x//",   "ws://[::1]:7777/?q",
        "wss://h.example/x?a=1/", "wss://h.example:0443/p/", "ws://127.0.0.1:7000/x/?a=1&b=2",
    };
    for (size_t i = 0; i < sizeof keyform / sizeof keyform[0]; i++) {
        char e1[CONFIG_ERRLEN] = "", e2[RELAY_ERRLEN] = "";
        char *c = config_url_normalize(keyform[i], e1, sizeof e1);
        char *r = relay_url_normalize(keyform[i], e2, sizeof e2);
        CHECK_MSG(c != NULL && r != NULL && strcmp(c, r) == 0, "'%s': config '%s', relay '%s'",
                  keyform[i], c ? c : e1, r ? r : e2);
        free(c);
        free(r);
    }

    check_bad_url("https://relay.example.com",
                  "relay URL 'https://relay.example.com' must start with ws:// or wss:// "
                  "(relays are websockets)",
                  __LINE__);
    check_bad_url("relay.example.com",
                  "relay URL 'relay.example.com' must start with ws:// or wss://", __LINE__);
    check_bad_url("wss://", "relay URL 'wss://' has no host", __LINE__);
    check_bad_url("wss:///path", "relay URL 'wss:///path' has no host", __LINE__);
    check_bad_url("wss://a b", "relay URL 'wss://a b' contains a space or control character",
                  __LINE__);
    check_bad_url("wss://a\tb", "relay URL 'wss://a?b' contains a space or control character",
                  __LINE__);
    check_bad_url("wss://h#x", "relay URL 'wss://h#x' has a #fragment", __LINE__);
    check_bad_url("wss://u:p@h", "relay URL 'wss://u:p@h': user@ in the URL is not supported",
                  __LINE__);
    check_bad_url("wss://h:0", "relay URL 'wss://h:0': port must be 1..65535", __LINE__);
    check_bad_url("wss://h:65536", "relay URL 'wss://h:65536': port must be 1..65535", __LINE__);
    check_bad_url("wss://h:x", "relay URL 'wss://h:x': port must be 1..65535", __LINE__);
    check_bad_url("wss://h:", "relay URL 'wss://h:': bad port", __LINE__);
    check_bad_url("wss://h:123456789", "relay URL 'wss://h:123456789': bad port", __LINE__);
    check_bad_url("wss://h!x", "relay URL 'wss://h!x': bad character in host", __LINE__);
    check_bad_url("wss://[::1", "relay URL 'wss://[::1': bad IPv6 address", __LINE__);
    check_bad_url("wss://[]", "relay URL 'wss://[]': bad IPv6 address", __LINE__);
    check_bad_url("wss://[::g]", "relay URL 'wss://[::g]': bad IPv6 address", __LINE__);

    /* Spelled differently, the same relay: a duplicate, reported with both lines. */
    static const char *const same[] = {
        "wss://relay.example.com/",
        "WSS://RELAY.example.com",
        "wss://relay.example.com:443",
        "wss://Relay.Example.Com:443/",
    };
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
        char text[256];
        snprintf(text, sizeof text, "[relay wss://relay.example.com]\n\n[relay %s]\n", same[i]);
        EXPECT_ERR(text, "3: duplicate relay wss://relay.example.com (first at line 1)");
    }
    /* Not the same relay: another port, scheme or path. */
    struct config *cfg = LOAD_OK("[relay wss://relay.example.com]\n"
                                 "[relay ws://relay.example.com]\n"
                                 "[relay wss://relay.example.com:444]\n"
                                 "[relay wss://relay.example.com/nostr]\n"
                                 "[relay ws://[::1]:7777]\n");
    CHECK(cfg->nrelays == 5);
    CHECK(config_find_relay(cfg, "ws://[::1]:7777") != NULL);
    CHECK(config_find_relay(cfg, "wss://relay.example.com/nostr") != NULL);
    config_free(cfg);
}

/*
 * Every combination of [sync] use_negentropy, negentropy_fallback and a
 * relay's negentropy key, loaded from a file like a user writes it.
 */
static void test_neg_mode(void)
{
    static const struct {
        const char *relay;
        int use, fallback;
        enum config_neg_mode want;
    } table[] = {
        {"auto", 1, 1, CONFIG_NEG_MODE_NEG_FALLBACK}, {"auto", 1, 0, CONFIG_NEG_MODE_NEG_STRICT},
        {"auto", 0, 1, CONFIG_NEG_MODE_REQ_ONLY},     {"auto", 0, 0, CONFIG_NEG_MODE_REQ_ONLY},
        {"on", 1, 1, CONFIG_NEG_MODE_NEG_FALLBACK},   {"on", 1, 0, CONFIG_NEG_MODE_NEG_STRICT},
        {"on", 0, 1, CONFIG_NEG_MODE_NEG_FALLBACK},   {"on", 0, 0, CONFIG_NEG_MODE_NEG_STRICT},
        {"off", 1, 1, CONFIG_NEG_MODE_REQ_ONLY},      {"off", 1, 0, CONFIG_NEG_MODE_REQ_ONLY},
        {"off", 0, 1, CONFIG_NEG_MODE_REQ_ONLY},      {"off", 0, 0, CONFIG_NEG_MODE_REQ_ONLY},
        {NULL, 1, 1, CONFIG_NEG_MODE_NEG_FALLBACK}, /* key left out: auto */
        {NULL, 1, 0, CONFIG_NEG_MODE_NEG_STRICT},     {NULL, 0, 1, CONFIG_NEG_MODE_REQ_ONLY},
        {NULL, 0, 0, CONFIG_NEG_MODE_REQ_ONLY},
    };

    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        char text[256];
        snprintf(text, sizeof text,
                 "[sync]\nuse_negentropy = %s\nnegentropy_fallback = %s\n"
                 "[relay wss://r.example]\n%s%s\n",
                 table[i].use ? "true" : "false", table[i].fallback ? "true" : "false",
                 table[i].relay ? "negentropy = " : "", table[i].relay ? table[i].relay : "");
        struct config *cfg = LOAD_OK(text);
        enum config_neg_mode got = config_relay_neg_mode(cfg, &cfg->relays[0]);
        CHECK_MSG(got == table[i].want, "relay %s, use %d, fallback %d: %s, want %s",
                  table[i].relay ? table[i].relay : "(unset)", table[i].use, table[i].fallback,
                  config_neg_mode_name(got), config_neg_mode_name(table[i].want));
        /* A relay not in the file (sync --relay URL) follows [sync]. */
        if (table[i].relay == NULL)
            CHECK(config_relay_neg_mode(cfg, NULL) == table[i].want);
        config_free(cfg);
    }
    /* Defaults: try NIP-77, fall back to REQ. */
    struct config *cfg = config_new();
    CHECK(config_relay_neg_mode(cfg, NULL) == CONFIG_NEG_MODE_NEG_FALLBACK);
    config_free(cfg);

    CHECK(strcmp(config_neg_mode_name(CONFIG_NEG_MODE_REQ_ONLY), "req-only") == 0);
    CHECK(strcmp(config_neg_mode_name(CONFIG_NEG_MODE_NEG_FALLBACK), "neg+fallback") == 0);
    CHECK(strcmp(config_neg_mode_name(CONFIG_NEG_MODE_NEG_STRICT), "neg-strict") == 0);
    CHECK(strcmp(config_negentropy_name(CONFIG_NEGENTROPY_AUTO), "auto") == 0);
    CHECK(strcmp(config_negentropy_name(CONFIG_NEGENTROPY_ON), "on") == 0);
    CHECK(strcmp(config_negentropy_name(CONFIG_NEGENTROPY_OFF), "off") == 0);
    CHECK(strcmp(config_direction_name(CONFIG_DIRECTION_DOWN), "down") == 0);
    CHECK(strcmp(config_direction_name(CONFIG_DIRECTION_UP), "up") == 0);
    CHECK(strcmp(config_direction_name(CONFIG_DIRECTION_BOTH), "both") == 0);
}

static void test_errors(void)
{
    /* Sections. */
    EXPECT_ERR("[sink]\nx = 1\n",
               "1: unknown section [sink]; expected [storage], [sync], [relay URL] or "
               "[filter NAME]");
    EXPECT_ERR("workers = 4\n",
               "1: 'workers' is outside any section; put it under [storage], [sync], "
               "[relay URL] or [filter NAME]");
    EXPECT_ERR("[sync\n", "1: section header without a closing ']'");
    EXPECT_ERR("[sync] workers = 4\n", "1: unexpected text after ']'");
    EXPECT_ERR("[sync x]\n", "1: [sync] takes no name");
    EXPECT_ERR("[storage x]\n", "1: [storage] takes no name");
    EXPECT_ERR("[sync]\n[sync]\n", "2: duplicate section [sync] (first at line 1)");
    EXPECT_ERR("[storage]\n\n[storage]\n", "3: duplicate section [storage] (first at line 1)");
    EXPECT_ERR("[relay]\n", "1: [relay] needs a URL: [relay wss://relay.example.com]");
    EXPECT_ERR("[filter]\n", "1: [filter] needs a name: [filter notes]");
    EXPECT_ERR("[filter a b]\n",
               "1: filter name 'a b': use up to 64 letters, digits, '_', '-' and '.'");
    EXPECT_ERR("[filter a/b]\n",
               "1: filter name 'a/b': use up to 64 letters, digits, '_', '-' and '.'");
    EXPECT_ERR("[filter a]\n[filter a]\n", "2: duplicate filter 'a' (first at line 1)");
    EXPECT_ERR("[relay https://r.example]\nnegentropy = on\n",
               "1: relay URL 'https://r.example' must start with ws:// or wss:// (relays are "
               "websockets)");

    /* Lines. */
    EXPECT_ERR("[sync]\nworkers\n", "2: expected 'key = value'");
    EXPECT_ERR("[sync]\n= 4\n", "2: expected 'key = value', found no key before '='");
    EXPECT_ERR("[sync]\nworkers = 4\nworkers = 5\n",
               "3: duplicate key 'workers' in [sync] (first set at line 2)");
    EXPECT_ERR("[sync]\nworkers = 4\n  interval = 60\n",
               "3: indented line continues 'workers' from line 2; only the lists kinds, "
               "authors, ids and #x may go on over indented lines (remove the indentation)");
    EXPECT_ERR("[filter f]\nkinds = 1\n  limit = 5\n",
               "3: indented line continues 'kinds' from line 2; only the lists kinds, "
               "authors, ids and #x may go on over indented lines (remove the indentation)");
    {
        /* A NUL byte cannot go through a C string: written by hand. */
        static const char nul[] = "[sync]\nworkers = 4\0\nfetch_batch = 2\n";
        char *path = tmp_path("t.ini");
        FILE *f = fopen(path, "w");
        struct config_errors errs = {0};
        struct config *cfg;

        CHECK(f != NULL && fwrite(nul, 1, sizeof nul - 1, f) == sizeof nul - 1);
        if (f != NULL)
            fclose(f);
        cfg = config_load(path, NOW, &errs);
        CHECK(cfg == NULL && errs.n == 1 && strstr(errs.msgs[0], ":2: NUL byte in line"));
        config_free(cfg);
        config_errors_free(&errs);
        free(path);
    }

    /* [storage] */
    EXPECT_ERR("[storage]\ndb = x\n", "2: unknown key 'db' in [storage]; allowed: path");
    EXPECT_ERR("[storage]\npath =\n", "2: path: empty; leave it out for the default");
    EXPECT_ERR("[storage]\npath = ~bob/x.db\n",
               "2: path: only a leading ~/ is expanded, not ~user");

    /* [sync]: every key's bad values. */
    EXPECT_ERR("[sync]\nworker = 4\n",
               "2: unknown key 'worker' in [sync]; allowed: workers, use_negentropy, "
               "negentropy_fallback, direction, interval, recheck_days, neg_timeout, "
               "probe_timeout, frame_size_limit, negentropy_split, fetch_batch, fetch_in_flight, "
               "max_sync_events, max_message_size, auth, secret_key_file");
    EXPECT_ERR("[sync]\nworkers = 0\n", "2: workers: expected an integer 1..256, got '0'");
    EXPECT_ERR("[sync]\nnegentropy_split = fast\n",
               "2: negentropy_split: expected reference or adaptive, got 'fast'");
    EXPECT_ERR("[sync]\nnegentropy_split =\n",
               "2: negentropy_split: expected reference or adaptive, got ''");
    EXPECT_ERR("[sync]\nworkers = 257\n", "2: workers: expected an integer 1..256, got '257'");
    EXPECT_ERR("[sync]\nworkers = -1\n", "2: workers: expected an integer 1..256, got '-1'");
    EXPECT_ERR("[sync]\nworkers = four\n", "2: workers: expected an integer 1..256, got 'four'");
    EXPECT_ERR("[sync]\nworkers =\n", "2: workers: expected an integer 1..256, got ''");
    EXPECT_ERR("[sync]\nuse_negentropy = maybe\n",
               "2: use_negentropy: expected true or false (or yes/no, on/off, 1/0), got 'maybe'");
    EXPECT_ERR("[sync]\nnegentropy_fallback = 2\n",
               "2: negentropy_fallback: expected true or false (or yes/no, on/off, 1/0), got "
               "'2'");
    EXPECT_ERR("[sync]\ndirection = sideways\n",
               "2: direction: expected down, up or both, got 'sideways'");
    EXPECT_ERR("[sync]\ninterval = 0\n",
               "2: interval: expected seconds 1..2592000 (a number, or with s, m, h, d or w), "
               "got '0'");
    EXPECT_ERR("[sync]\ninterval = 31d\n",
               "2: interval: expected seconds 1..2592000 (a number, or with s, m, h, d or w), "
               "got '31d'");
    EXPECT_ERR("[sync]\ninterval = 5 min\n",
               "2: interval: expected seconds 1..2592000 (a number, or with s, m, h, d or w), "
               "got '5 min'");
    EXPECT_ERR("[sync]\nrecheck_days = 3651\n",
               "2: recheck_days: expected an integer 0..3650, got '3651'");
    EXPECT_ERR("[sync]\nneg_timeout = 0\n",
               "2: neg_timeout: expected seconds 1..3600 (a number, or with s, m, h, d or w), "
               "got '0'");
    EXPECT_ERR("[sync]\nprobe_timeout = 2h\n",
               "2: probe_timeout: expected seconds 1..3600 (a number, or with s, m, h, d or w), "
               "got '2h'");
    EXPECT_ERR("[sync]\nframe_size_limit = 4095\n",
               "2: frame_size_limit: expected 0 (no limit) or 4096..1073741824 bytes, got "
               "'4095'");
    EXPECT_ERR("[sync]\nframe_size_limit = 1\n",
               "2: frame_size_limit: expected 0 (no limit) or 4096..1073741824 bytes, got '1'");
    EXPECT_ERR("[sync]\nfetch_batch = 0\n",
               "2: fetch_batch: expected an integer 1..100000, got '0'");
    EXPECT_ERR("[sync]\nfetch_in_flight = 65\n",
               "2: fetch_in_flight: expected an integer 1..64, got '65'");
    EXPECT_ERR("[sync]\nmax_sync_events = 0\n",
               "2: max_sync_events: expected an integer 1..9223372036854775807, got '0'");

    /* [relay URL] */
    EXPECT_ERR("[relay wss://r.example]\nnegentropy = yes\n",
               "2: negentropy: expected auto, on or off, got 'yes'");
    EXPECT_ERR("[relay wss://r.example]\ndirection = down-ish\n",
               "2: direction: expected down, up or both, got 'down-ish'");
    EXPECT_ERR("[relay wss://r.example]\ntls_verify = sometimes\n",
               "2: tls_verify: expected true or false (or yes/no, on/off, 1/0), got "
               "'sometimes'");
    EXPECT_ERR("[relay wss://r.example]\ncompression = gzip\n",
               "2: compression: expected true or false (or yes/no, on/off, 1/0), got 'gzip'");
    EXPECT_ERR("[relay wss://r.example]\nenabled = nope\n",
               "2: enabled: expected true or false (or yes/no, on/off, 1/0), got 'nope'");
    EXPECT_ERR("[relay wss://r.example]\nworkers = 2\n",
               "2: unknown key 'workers' in [relay wss://r.example]; allowed: negentropy, "
               "direction, tls_verify, compression, enabled, auth, secret_key_file");

    /* [filter NAME]: bad values, bad hex, filters that can never match. */
    EXPECT_ERR("[filter f]\nkind = 1\n",
               "2: unknown key 'kind' in [filter f]; allowed: kinds, authors, ids, #x (one "
               "letter), since, until, limit");
    EXPECT_ERR("[filter f]\nkinds = 1,x\n", "2: kinds[1]: not an integer 0..65535");
    EXPECT_ERR("[filter f]\nkinds = 65536\n", "2: kinds[0]: not an integer 0..65535");
    EXPECT_ERR("[filter f]\nkinds = 1,,2\n", "2: kinds[1]: empty item in the list");
    EXPECT_ERR("[filter f]\nkinds = ,1\n", "2: kinds[0]: empty item in the list");
    EXPECT_ERR("[filter f]\nkinds =\n", "2: kinds: an empty list never matches");
    EXPECT_ERR("[filter f]\nauthors = ,\n", "2: authors[0]: empty item in the list");
    EXPECT_ERR("[filter f]\nids =\n", "2: ids: an empty list never matches");
    EXPECT_ERR("[filter f]\nauthors = abcd\n",
               "2: authors[0]: not 64 lowercase hex chars (full pubkeys only, no prefixes)");
    EXPECT_ERR("[filter f]\nauthors = " HEXA
               ",AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
               "AAAAAAAAAAA\n",
               "2: authors[1]: not 64 lowercase hex chars (full pubkeys only, no prefixes)");
    EXPECT_ERR("[filter f]\nids = " HEXA "0\n",
               "2: ids[0]: not 64 lowercase hex chars (full event ids only, no prefixes)");
    EXPECT_ERR("[filter f]\n#p = xyz\n", "2: #p[0]: not 64 lowercase hex chars");
    EXPECT_ERR("[filter f]\n#e =\n", "2: #e: an empty list never matches");
    EXPECT_ERR("[filter f]\nsince = soon\n",
               "2: since: expected a unix time, YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ (UTC) or an "
               "age like 30d (s, m, h, d, w), got 'soon'");
    EXPECT_ERR("[filter f]\nuntil = 2025-02-30\n",
               "2: until: expected a unix time, YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ (UTC) or an "
               "age like 30d (s, m, h, d, w), got '2025-02-30'");
    EXPECT_ERR("[filter f]\nsince = 100000d\n", "2: since: '100000d' reaches back before 1970");
    EXPECT_ERR("[filter f]\nsince = 2025-01-01\nuntil = 2024-01-01\n",
               "3: since (1735689600) is after until (1704067200); the filter never matches");
    EXPECT_ERR("[filter f]\nuntil = 2024-01-01\nkinds = 1\nsince = 2025-01-01\n",
               "4: since (1735689600) is after until (1704067200); the filter never matches");
    /* Relative bounds the wrong way round: "since a day ago until a week ago". */
    char msg[256];
    snprintf(msg, sizeof msg, "3: since (%lld) is after until (%lld); the filter never matches",
             (long long)(NOW - 86400), (long long)(NOW - 7 * 86400));
    EXPECT_ERR("[filter f]\nsince = 1d\nuntil = 1w\n", msg);
    EXPECT_ERR("[filter f]\nlimit = 0\n",
               "2: limit = 0 never matches; leave limit out for no limit");
    EXPECT_ERR("[filter f]\nlimit = -5\n", "2: limit: expected a positive integer, got '-5'");
    EXPECT_ERR("[filter f]\nlimit = 9223372036854775808\n",
               "2: limit: expected a positive integer, got '9223372036854775808'");
    EXPECT_ERR("[filter f]\nkinds = 1\nkinds = 2\n",
               "3: duplicate key 'kinds' in [filter f] (first set at line 2)");

    /* A list continued over lines: each error on the line its item is on. */
    EXPECT_ERR("[filter f]\n"
               "kinds = 1,\n"
               "   2,\n"
               "   x\n"
               "authors = " HEXA ",\n"
               "   " HEXB "\n"
               "   , abc\n"
               "#t = a,\n"
               "   ,b\n",
               "4: kinds[2]: not an integer 0..65535\n"
               "7: authors[2]: not 64 lowercase hex chars (full pubkeys only, no prefixes)\n"
               "9: #t[1]: empty item in the list");

    /* Many problems at once: all of them, in line order. */
    EXPECT_ERR("[sync]\n"
               "workers = 0\n"
               "use_negentropy = maybe\n"
               "[relay wss://a.example]\n"
               "negentropy = sometimes\n"
               "[relay wss://A.example:443/]\n"
               "[filter f]\n"
               "kinds =\n"
               "[nope]\n"
               "[filter g]\n"
               "since = 2\n"
               "until = 1\n",
               "2: workers: expected an integer 1..256, got '0'\n"
               "3: use_negentropy: expected true or false (or yes/no, on/off, 1/0), got "
               "'maybe'\n"
               "5: negentropy: expected auto, on or off, got 'sometimes'\n"
               "6: duplicate relay wss://a.example (first at line 4)\n"
               "8: kinds: an empty list never matches\n"
               "9: unknown section [nope]; expected [storage], [sync], [relay URL] or "
               "[filter NAME]\n"
               "12: since (2) is after until (1); the filter never matches");

    /* Keys under a refused section are not reported again. */
    EXPECT_ERR("[relay ftp://x]\nnegentropy = on\nbogus = 1\n[sync]\nworkers = 2\n",
               "1: relay URL 'ftp://x' must start with ws:// or wss://");

    /* Long values are cut in messages. */
    EXPECT_ERR("[sync]\ndirection = "
               "downdowndowndowndowndowndowndowndowndowndowndowndowndowndowndowndown\n",
               "2: direction: expected down, up or both, got "
               "'downdowndowndowndowndowndowndowndowndowndowndowndowndowndown...'");
}

/* -c FILE, the XDG default, and what happens when files are missing. */
static void test_sources(void)
{
    struct config_errors errs = {0};
    struct config *cfg;
    char *xdg = tmp_path("xdg"), *home = tmp_path("home"), *p, *want;
    char *old_xdg = getenv("XDG_CONFIG_HOME") ? xstrdup(getenv("XDG_CONFIG_HOME")) : NULL;
    char *old_home = getenv("HOME") ? xstrdup(getenv("HOME")) : NULL;
    char *old_data = getenv("XDG_DATA_HOME") ? xstrdup(getenv("XDG_DATA_HOME")) : NULL;
    char err[CONFIG_ERRLEN];

    mkdir(xdg, 0700);
    mkdir(home, 0700);
    setenv("XDG_CONFIG_HOME", xdg, 1);
    setenv("HOME", home, 1);

    /* Default path: $XDG_CONFIG_HOME, else ~/.config; a relative one is ignored. */
    p = config_default_path();
    want = tmp_path("xdg/negsync/negsync.ini");
    CHECK(p != NULL && strcmp(p, want) == 0);
    free(p);
    free(want);
    setenv("XDG_CONFIG_HOME", "relative/dir", 1);
    p = config_default_path();
    want = tmp_path("home/.config/negsync/negsync.ini");
    CHECK(p != NULL && strcmp(p, want) == 0);
    free(p);
    free(want);
    unsetenv("XDG_CONFIG_HOME");
    p = config_default_path();
    want = tmp_path("home/.config/negsync/negsync.ini");
    CHECK(p != NULL && strcmp(p, want) == 0);
    free(p);
    free(want);
    unsetenv("HOME");
    CHECK(config_default_path() == NULL);
    cfg = config_load(NULL, NOW, &errs);
    CHECK(cfg != NULL && errs.n == 0 && cfg->notice != NULL && cfg->nrelays == 0);
    CHECK(cfg != NULL && cfg->notice != NULL && strstr(cfg->notice, "use -c FILE") != NULL);
    config_free(cfg);
    setenv("HOME", home, 1);
    setenv("XDG_CONFIG_HOME", xdg, 1);

    /* No default file: an empty config, and a notice saying how to make one. */
    cfg = config_load(NULL, NOW, &errs);
    CHECK(cfg != NULL && errs.n == 0);
    if (cfg != NULL) {
        check_defaults(cfg);
        CHECK(cfg->path == NULL);
        want = tmp_path("xdg/negsync/negsync.ini");
        CHECK_MSG(cfg->notice != NULL && strstr(cfg->notice, want) != NULL &&
                      strstr(cfg->notice, "mkdir -p ") != NULL &&
                      strstr(cfg->notice, "/negsync.ini") != NULL,
                  "notice: %s", cfg->notice ? cfg->notice : "(null)");
        free(want);
    }
    config_free(cfg);

    /* The default file, once it exists, is read; errors name it. */
    p = tmp_path("xdg/negsync");
    mkdir(p, 0700);
    free(p);
    p = tmp_path("xdg/negsync/negsync.ini");
    write_file(p, "[sync]\nworkers = 3\n");
    cfg = config_load(NULL, NOW, &errs);
    CHECK(cfg != NULL && errs.n == 0 && cfg->notice == NULL);
    CHECK(cfg != NULL && cfg->sync.workers == 3 && cfg->path && strcmp(cfg->path, p) == 0);
    config_free(cfg);
    write_file(p, "[sync]\nworkers = 300\n");
    cfg = config_load(NULL, NOW, &errs);
    CHECK(cfg == NULL && errs.n == 1);
    if (errs.n == 1) {
        want = xmalloc(strlen(p) + 64);
        sprintf(want, "%s:2: workers: expected an integer 1..256, got '300'", p);
        CHECK_MSG(strcmp(errs.msgs[0], want) == 0, "%s", errs.msgs[0]);
        free(want);
    }
    config_errors_free(&errs);

    /* -c FILE wins over the default. */
    char *other = tmp_path("other.ini");
    write_file(other, "[sync]\nworkers = 9\n");
    cfg = config_load(other, NOW, &errs);
    CHECK(cfg != NULL && cfg->sync.workers == 9 && strcmp(cfg->path, other) == 0);
    config_free(cfg);
    free(other);
    free(p);

    /* A missing -c file, or a directory, is an error: no silent defaults. */
    p = tmp_path("missing.ini");
    cfg = config_load(p, NOW, &errs);
    CHECK(cfg == NULL && errs.n == 1);
    if (errs.n == 1) {
        want = xmalloc(strlen(p) + 64);
        sprintf(want, "%s: cannot open: No such file or directory", p);
        CHECK_MSG(strcmp(errs.msgs[0], want) == 0, "%s", errs.msgs[0]);
        free(want);
    }
    config_errors_free(&errs);
    free(p);
    cfg = config_load(tmpdir, NOW, &errs);
    CHECK(cfg == NULL && errs.n == 1 && strstr(errs.msgs[0], ": cannot open: Is a directory"));
    config_errors_free(&errs);

    /* The database: -d, else [storage] path, else $XDG_DATA_HOME, else ~/.local/share. */
    cfg = config_new();
    p = config_db_path(cfg, "/x/cli.db", err, sizeof err);
    CHECK(p != NULL && strcmp(p, "/x/cli.db") == 0);
    free(p);
    cfg->storage_path = xstrdup("/x/storage.db");
    p = config_db_path(cfg, NULL, err, sizeof err);
    CHECK(p != NULL && strcmp(p, "/x/storage.db") == 0);
    free(p);
    p = config_db_path(cfg, "/x/cli.db", err, sizeof err);
    CHECK(p != NULL && strcmp(p, "/x/cli.db") == 0);
    free(p);
    setenv("XDG_DATA_HOME", "/x/data", 1);
    p = config_db_path(NULL, NULL, err, sizeof err);
    CHECK(p != NULL && strcmp(p, "/x/data/negsync/negsync.db") == 0);
    free(p);
    unsetenv("XDG_DATA_HOME");
    p = config_db_path(NULL, NULL, err, sizeof err);
    want = tmp_path("home/.local/share/negsync/negsync.db");
    CHECK(p != NULL && strcmp(p, want) == 0);
    free(p);
    free(want);
    unsetenv("HOME");
    p = config_db_path(NULL, NULL, err, sizeof err);
    CHECK(p == NULL && strcmp(err, "neither $XDG_DATA_HOME nor $HOME is set; use -d FILE") == 0);
    config_free(cfg);

    restore_env("XDG_CONFIG_HOME", old_xdg);
    restore_env("HOME", old_home);
    restore_env("XDG_DATA_HOME", old_data);
    free(xdg);
    free(home);
}

/* Loads path (not t.ini), expecting exactly one message: want, after "path". */
static void expect_file_error(const char *path, const char *want, int line)
{
    struct config_errors errs = {0};
    struct config *cfg = config_load(path, NOW, &errs);
    size_t plen = strlen(path);

    CHECK_MSG(cfg == NULL && errs.n == 1 && errs.more == 0 &&
                  strncmp(errs.msgs[0], path, plen) == 0 && strcmp(errs.msgs[0] + plen, want) == 0,
              "test-config.c:%d: %s: %zu (+%zu) errors, first: %s; want %s", line, path, errs.n,
              errs.more, errs.n ? errs.msgs[0] : "(none)", want);
    config_errors_free(&errs);
    config_free(cfg);
}
#define EXPECT_FILE_ERR(path, want) expect_file_error(path, want, __LINE__)

/*
 * Input that is not a config at all, or not text: refused with one clear
 * message, promptly, and never half-read into something that "loads".
 */
static void test_bad_input(void)
{
    struct config_errors errs = {0};
    struct config *cfg;
    struct buf b = {0};
    char *path, *text;

    /* A list item that is not UTF-8 is an error naming the key, never dropped. */
    EXPECT_ERR("[filter f]\n#t = caf\xe9, nostr\n", "2: #t[0]: not valid UTF-8");
    EXPECT_ERR("[filter f]\n#t = a,\n  b,\n  \xff\xfe\n", "4: #t[2]: not valid UTF-8");
    EXPECT_ERR("[filter f]\nauthors = " HEX0 ", \xc3\x28\n", "2: authors[1]: not valid UTF-8");
    EXPECT_ERR("[filter f]\nids = \xc0\xaf\n", "2: ids[0]: not valid UTF-8");       /* overlong */
    EXPECT_ERR("[filter f]\n#e = \xed\xa0\x80\n", "2: #e[0]: not valid UTF-8");     /* surrogate */
    EXPECT_ERR("[filter f]\n#t = \xf4\x90\x80\x80\n", "2: #t[0]: not valid UTF-8"); /* > U+10FFFF */
    cfg = LOAD_OK("[filter f]\n#t = caf\xc3\xa9, \xf0\x9f\x90\xa7, nostr\n");
    CHECK_JSON(cfg, "f", "{\"#t\":[\"caf\xc3\xa9\",\"\xf0\x9f\x90\xa7\",\"nostr\"]}");
    config_free(cfg);
    /* A relay URL goes into JSON and the database as text too. */
    EXPECT_ERR("[relay wss://relay.example.com/caf\xe9]\n",
               "1: relay URL 'wss://relay.example.com/caf?' is not valid UTF-8");

    /* Not regular files: refused at once instead of read forever. */
    EXPECT_FILE_ERR("/dev/zero",
                    ": not a regular file (a device, FIFO or socket cannot be a configuration)");
    EXPECT_FILE_ERR("/dev/urandom",
                    ": not a regular file (a device, FIFO or socket cannot be a configuration)");
    path = tmp_path("fifo.ini");
    if (mkfifo(path, 0600) == 0) /* no writer: opening it must not wait for one */
        EXPECT_FILE_ERR(
            path, ": not a regular file (a device, FIFO or socket cannot be a configuration)");
    else
        printf("test-config: no FIFO (%s), not checked\n", path);
    free(path);
    /* ... but -c /dev/null is the usual "no configuration". */
    cfg = config_load("/dev/null", NOW, &errs);
    CHECK(cfg != NULL && errs.n == 0 && cfg->nrelays == 0 && cfg->nfilters == 0);
    config_free(cfg);
    config_errors_free(&errs);

    /* Too large: one message, whatever it contains. */
    while (b.len <= CONFIG_MAX_SIZE)
        buf_append(&b, "; a comment line that is sixty-four bytes long with its newline\n", 64);
    buf_push(&b, '\0');
    path = tmp_path("huge.ini");
    write_file(path, (const char *)b.data);
    EXPECT_FILE_ERR(path, ": larger than 4 MiB");
    free(path);
    buf_free(&b);

    /* A binary file: one message at its first NUL, not one per line. */
    {
        static const char bin[] = "[sync]\nworkers = 4\n\x7f"
                                  "ELF\0\0\0\n\xff\n\xfe\x01\n\0\n[x\n=\n";
        FILE *f;

        path = tmp_path("bin.ini");
        f = fopen(path, "w");
        CHECK(f != NULL && fwrite(bin, 1, sizeof bin - 1, f) == sizeof bin - 1);
        if (f != NULL)
            fclose(f);
        EXPECT_FILE_ERR(path, ":3: NUL byte in line; a configuration is a text file");
        free(path);
    }

    /* Garbage text: the first CONFIG_MAX_ERRORS messages, and how many more. */
    for (int i = 0; i < 5000; i++)
        buf_append(&b, "no equals sign here\n", 20);
    buf_push(&b, '\0');
    cfg = load_text((const char *)b.data, &errs);
    CHECK(cfg == NULL && errs.n == CONFIG_MAX_ERRORS && errs.more == 5000 - CONFIG_MAX_ERRORS);
    CHECK(errs.n > 0 && strstr(errs.msgs[0], "t.ini:1: expected 'key = value'") != NULL);
    CHECK(errs.n == CONFIG_MAX_ERRORS &&
          strstr(errs.msgs[CONFIG_MAX_ERRORS - 1], "t.ini:20: expected 'key = value'") != NULL);
    config_free(cfg);
    config_errors_free(&errs);
    CHECK(errs.n == 0 && errs.more == 0);
    buf_free(&b);

    /*
     * A long list over many lines: accepted (each item's line used to be
     * found by a scan of every line before it, minutes for this one), and an
     * error in its last item still names the right line.
     */
    buf_append(&b, "[filter big]\n#t = t0,\n", 22);
    for (int i = 1; i < 160000; i++) {
        char item[32];
        int n = snprintf(item, sizeof item, "  t%d,\n", i);
        buf_append(&b, item, (size_t)n);
    }
    buf_push(&b, '\0');
    cfg = LOAD_OK((const char *)b.data);
    {
        const struct config_filter *cf = config_find_filter(cfg, "big");
        CHECK(cf != NULL && cf->filter != NULL && cf->filter->ntags == 1 &&
              cf->filter->tags[0].nvalues == 160000);
    }
    config_free(cfg);
    b.len--; /* the '\0' */
    buf_append(&b, "  caf\xe9\n", 8);
    buf_push(&b, '\0');
    text = load_errors((const char *)b.data, __LINE__);
    CHECK_MSG(strcmp(text, "160002: #t[160000]: not valid UTF-8") == 0, "got %s", text);
    free(text);
    buf_free(&b);
}

/* The example shipped with negsync loads, and says what DESIGN.md says. */
static void test_example(void)
{
    const char *srcdir = getenv("top_srcdir");
    char path[1024];
    struct config_errors errs = {0};
    struct config *cfg;

    snprintf(path, sizeof path, "%s/data/negsync.ini", srcdir ? srcdir : ".");
    cfg = config_load(path, NOW, &errs);
    CHECK_MSG(cfg != NULL && errs.n == 0, "%s: %s", path, errs.n ? errs.msgs[0] : "not loaded");
    if (cfg != NULL) {
        CHECK(cfg->nrelays >= 1 && cfg->nfilters >= 1);
        CHECK(cfg->sync.use_negentropy && cfg->sync.negentropy_fallback);
    }
    config_errors_free(&errs);
    config_free(cfg);
}

static void rm_tree(const char *dir)
{
    char cmd[600];

    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
}

int main(void)
{
    const char *t = getenv("TMPDIR");

    snprintf(tmpdir, sizeof tmpdir, "%s/test-config.XXXXXX", t && t[0] ? t : "/tmp");
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 99;
    }
    test_defaults();
    test_every_key();
    test_storage_path();
    test_filters();
    test_times();
    test_urls();
    test_neg_mode();
    test_errors();
    test_sources();
    test_bad_input();
    test_example();
    rm_tree(tmpdir);
    return test_summary("test-config");
}
