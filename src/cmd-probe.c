/*
 * cmd-probe: `negsync probe [URL...] [--force] [--json]`, capability
 * detection from the command line. Every relay named (or, with none named,
 * every relay in the configuration) goes through caps_probe: the cache when
 * it may be reused, else NIP-11 and a NEG-OPEN handshake. The relays are
 * probed in parallel, one thread per relay up to PROBE_MAX_THREADS, each with
 * its own connection (the relay module's one-context-per-thread rule); the
 * results are printed in the order the relays were given, as a table or as
 * one JSON object per line.
 *
 * Exit status: 0 when every relay gave an answer (supported or not), 1 when
 * one was unreachable or its probe failed, 2 for usage and configuration
 * errors.
 */
#include "config.h"

#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "caps.h"
#include "cfg.h"
#include "commands.h"
#include "relay.h"
#include "store.h"
#include "util.h"

#define PROBE_MAX_THREADS 16

static const char probe_usage[] =
    "usage: negsync [-c FILE] [-d FILE] probe [--force] [--json] [URL...]\n";

struct probe_target {
    char *url; /* normalized */
    int tls_verify, compression;
    struct caps_result result;
    int failed; /* caps_probe returned -1 */
    char err[CAPS_ERRLEN];
};

struct probe_run {
    struct probe_target *targets;
    size_t n, next;
    pthread_mutex_t lock;
    char *db_path; /* the cache's database; each worker has its own connection */
    struct caps_opts opts;
    int verbose;
};

static void probe_log(void *arg, const char *url, const char *line)
{
    const struct probe_run *run = arg;

    if (run->verbose > 0)
        fprintf(stderr, "negsync: %s: %s\n", url, line);
}

static void *probe_worker(void *arg)
{
    struct probe_run *run = arg;
    char err[STORE_ERRLEN];
    struct store *st = store_open(run->db_path, err, sizeof err);

    for (;;) {
        struct probe_target *t;
        struct caps_opts o;

        pthread_mutex_lock(&run->lock);
        t = run->next < run->n ? &run->targets[run->next++] : NULL;
        pthread_mutex_unlock(&run->lock);
        if (t == NULL)
            break;
        if (st == NULL) {
            snprintf(t->err, sizeof t->err, "%s", err);
            t->failed = 1;
            continue;
        }
        o = run->opts;
        o.relay.tls_verify = t->tls_verify;
        o.relay.compression = t->compression;
        o.relay.trace = run->verbose > 0 ? run->verbose : 0;
        if (caps_probe(st, t->url, &o, &t->result, t->err, sizeof t->err) < 0)
            t->failed = 1;
    }
    store_close(st);
    return NULL;
}

/* "45s", "12m", "3h", "2d": an age at a glance. */
static void format_age(int64_t secs, char *out, size_t outlen)
{
    if (secs < 0)
        snprintf(out, outlen, "in the future");
    else if (secs < 60)
        snprintf(out, outlen, "%" PRId64 "s", secs);
    else if (secs < 3600)
        snprintf(out, outlen, "%" PRId64 "m", secs / 60);
    else if (secs < 86400)
        snprintf(out, outlen, "%" PRId64 "h", secs / 3600);
    else
        snprintf(out, outlen, "%" PRId64 "d", secs / 86400);
}

static void print_json(const struct probe_target *t, int64_t now)
{
    const struct caps_result *r = &t->result;
    json_t *o = json_object(), *nip11 = json_null();
    char *line;

    json_object_set_new(o, "url", json_string(t->url));
    if (t->failed) {
        json_object_set_new(o, "negentropy", json_string("unreachable"));
        json_object_set_new(o, "reason", json_string(t->err));
        json_object_set_new(o, "nip11", json_null());
        json_object_set_new(o, "checked_at", json_integer(now));
        json_object_set_new(o, "cached", json_false());
        json_object_set_new(o, "latency_ms", json_null());
        json_object_set_new(o, "auth_challenge", json_null());
        json_object_set_new(o, "first_message_lost", json_null());
        json_object_set_new(o, "error", json_true());
    } else {
        if (r->nip11.present) {
            json_t *nips = json_null();
            if (r->nip11.has_supported_nips) {
                nips = json_array();
                for (size_t i = 0; i < r->nip11.n_supported_nips; i++)
                    json_array_append_new(nips, json_integer(r->nip11.supported_nips[i]));
            }
            nip11 =
                json_pack("{s:o, s:o, s:o}", "software",
                          r->nip11.software ? json_string(r->nip11.software) : json_null(),
                          "version", r->nip11.version ? json_string(r->nip11.version) : json_null(),
                          "supported_nips", nips);
        }
        json_object_set_new(o, "negentropy", json_string(caps_verdict_name(r->verdict)));
        json_object_set_new(o, "reason", json_string(r->reason));
        json_object_set_new(o, "nip11", nip11);
        json_object_set_new(o, "nip11_error",
                            r->nip11.present ? json_null() : json_string(r->nip11.reason));
        json_object_set_new(o, "checked_at", json_integer(r->checked_at));
        json_object_set_new(o, "cached", json_boolean(r->cached));
        json_object_set_new(o, "age_s",
                            r->cached ? json_integer(now - r->checked_at) : json_integer(0));
        json_object_set_new(o, "check", json_string(caps_source_name(r->source)));
        json_object_set_new(o, "latency_ms",
                            r->latency_ms >= 0 ? json_integer(r->latency_ms) : json_null());
        /* Seen on this connection; the cache does not keep it. */
        json_object_set_new(o, "auth_challenge",
                            r->cached ? json_null() : json_boolean(r->auth_challenge));
        json_object_set_new(o, "first_message_lost",
                            r->cached ? json_null() : json_boolean(r->first_message_lost));
    }
    json_object_set_new(o, "tls_verify", json_boolean(t->tls_verify));
    line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    puts(line);
    free(line);
    json_decref(o);
}

enum { COL_URL, COL_NIP11, COL_77, COL_RESULT, COL_LATENCY, COL_SOURCE, COL_REASON, NCOLS };

static void table_row(const struct probe_target *t, int64_t now,
                      char cells[NCOLS][CAPS_REASONLEN + 64])
{
    const struct caps_result *r = &t->result;
    char age[32];

    snprintf(cells[COL_URL], sizeof cells[0], "%s%s", t->url,
             t->tls_verify ? "" : " (TLS unverified)");
    if (t->failed) {
        snprintf(cells[COL_NIP11], sizeof cells[0], "-");
        snprintf(cells[COL_77], sizeof cells[0], "-");
        snprintf(cells[COL_RESULT], sizeof cells[0], "error");
        snprintf(cells[COL_LATENCY], sizeof cells[0], "-");
        snprintf(cells[COL_SOURCE], sizeof cells[0], "-");
        snprintf(cells[COL_REASON], sizeof cells[0], "%s", t->err);
        return;
    }
    if (r->nip11.present)
        snprintf(cells[COL_NIP11], sizeof cells[0], "%s %s",
                 r->nip11.software ? r->nip11.software : "?",
                 r->nip11.version ? r->nip11.version : "?");
    else
        snprintf(cells[COL_NIP11], sizeof cells[0], "no NIP-11");
    snprintf(cells[COL_77], sizeof cells[0], "%s",
             !r->nip11.present                 ? "-"
             : caps_nip11_lists(&r->nip11, 77) ? "yes"
                                               : "no");
    snprintf(cells[COL_RESULT], sizeof cells[0], "%s", caps_verdict_name(r->verdict));
    if (r->latency_ms >= 0)
        snprintf(cells[COL_LATENCY], sizeof cells[0], "%" PRId64 " ms", r->latency_ms);
    else
        snprintf(cells[COL_LATENCY], sizeof cells[0], "-");
    if (r->cached) {
        format_age(now - r->checked_at, age, sizeof age);
        snprintf(cells[COL_SOURCE], sizeof cells[0], "cache, %s old", age);
    } else {
        snprintf(cells[COL_SOURCE], sizeof cells[0], "probe (%s)", caps_source_name(r->source));
    }
    snprintf(cells[COL_REASON], sizeof cells[0], "%s%s%s", r->reason,
             r->first_message_lost ? "; the first NEG-OPEN was lost, sent again" : "",
             r->auth_challenge ? "; the relay sent an AUTH challenge (not answered)" : "");
}

static void print_table(const struct probe_target *targets, size_t n, int64_t now)
{
    static const char *const heads[NCOLS] = {"URL",     "NIP-11", "77",    "RESULT",
                                             "LATENCY", "SOURCE", "REASON"};
    char(*cells)[NCOLS][CAPS_REASONLEN + 64] = xcalloc(n, sizeof *cells);
    int width[NCOLS];

    for (int c = 0; c < NCOLS; c++)
        width[c] = (int)strlen(heads[c]);
    for (size_t i = 0; i < n; i++) {
        table_row(&targets[i], now, cells[i]);
        for (int c = 0; c < NCOLS; c++) {
            int w = (int)strlen(cells[i][c]);
            width[c] = w > width[c] ? w : width[c];
        }
    }
    for (int c = 0; c < NCOLS - 1; c++)
        printf("%-*s  ", width[c], heads[c]);
    printf("%s\n", heads[NCOLS - 1]);
    for (size_t i = 0; i < n; i++) {
        for (int c = 0; c < NCOLS - 1; c++)
            printf("%-*s  ", width[c], cells[i][c]);
        printf("%s\n", cells[i][NCOLS - 1]);
    }
    free(cells);
}

/* Adds url (normalized) unless it is already there. */
static void add_target(struct probe_target **targets, size_t *n, const char *url, int tls_verify,
                       int compression)
{
    for (size_t i = 0; i < *n; i++) {
        if (strcmp((*targets)[i].url, url) == 0)
            return;
    }
    *targets = xreallocarray(*targets, *n + 1, sizeof **targets);
    memset(&(*targets)[*n], 0, sizeof **targets);
    (*targets)[*n].url = xstrdup(url);
    (*targets)[*n].tls_verify = tls_verify;
    (*targets)[*n].compression = compression;
    (*n)++;
}

/*
 * The cache's database: the one the other commands use (-d, [storage] path,
 * or the XDG default, whose directory is created), created and migrated here
 * once so the workers' connections find it ready. Its path, or NULL.
 */
static char *open_cache(const struct globals *g, const struct config *cfg)
{
    char err[STORE_ERRLEN];
    struct store *st;
    char *path;

    if (g->db_path == NULL && cfg->storage_path == NULL)
        path = store_default_path(err, sizeof err);
    else
        path = config_db_path(cfg, g->db_path, err, sizeof err);
    if (path == NULL) {
        fprintf(stderr, "negsync: %s\n", err);
        return NULL;
    }
    st = store_open(path, err, sizeof err);
    if (st == NULL) {
        fprintf(stderr, "negsync: %s\n", err);
        free(path);
        return NULL;
    }
    store_close(st);
    return path;
}

int cmd_probe(struct globals *g, int argc, char **argv)
{
    static const struct option opts[] = {
        {"force", no_argument, NULL, 'f'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct probe_target *targets = NULL;
    struct probe_run run;
    pthread_t threads[PROBE_MAX_THREADS];
    size_t n = 0, nthreads;
    int force = 0, json = 0, c, status = 0;
    struct config *cfg;
    int64_t now;

    optind = 0;
    while ((c = getopt_long(argc, argv, "fjh", opts, NULL)) != -1) {
        switch (c) {
        case 'f': force = 1; break;
        case 'j': json = 1; break;
        case 'h':
            fputs(probe_usage, stdout);
            puts("Check whether relays speak NIP-77: NIP-11, then a NEG-OPEN handshake.\n"
                 "With no URL, every relay in the configuration. Results are cached in the\n"
                 "database for recheck_days; --force checks again, --json prints one object\n"
                 "per line.");
            return 0;
        default: fputs(probe_usage, stderr); return EXIT_USAGE;
        }
    }

    if ((cfg = cmd_load_config(g, "")) == NULL)
        return EXIT_USAGE;
    for (int i = optind; i < argc; i++) {
        char err[RELAY_ERRLEN];
        char *url = relay_url_normalize(argv[i], err, sizeof err);
        const struct config_relay *cr;

        if (url == NULL) {
            fprintf(stderr, "negsync: %s: %s\n", argv[i], err);
            status = EXIT_USAGE;
            continue;
        }
        cr = config_find_relay(cfg, url);
        add_target(&targets, &n, url, cr != NULL ? cr->tls_verify : 1,
                   cr != NULL ? cr->compression : 1);
        free(url);
    }
    if (optind == argc) {
        for (size_t i = 0; i < cfg->nrelays; i++)
            add_target(&targets, &n, cfg->relays[i].url, cfg->relays[i].tls_verify,
                       cfg->relays[i].compression);
        if (n == 0) {
            fprintf(stderr, "negsync: no relays to probe: name them (negsync probe wss://...) or "
                            "add [relay URL] sections to the configuration\n");
            status = EXIT_USAGE;
        }
    }
    if (status != 0)
        goto done;

    memset(&run, 0, sizeof run);
    run.targets = targets;
    run.n = n;
    run.verbose = g->verbose;
    pthread_mutex_init(&run.lock, NULL);
    run.opts = caps_opts_default();
    run.opts.timeout_ms = (int)cfg->sync.probe_timeout * 1000;
    run.opts.recheck_days = cfg->sync.recheck_days;
    run.opts.force = force;
    run.opts.relay.log = probe_log;
    run.opts.relay.log_arg = &run;
    run.opts.relay.max_message = (size_t)cfg->sync.max_message_size;
    if ((run.db_path = open_cache(g, cfg)) == NULL) {
        pthread_mutex_destroy(&run.lock);
        status = 1;
        goto done;
    }

    nthreads = n < PROBE_MAX_THREADS ? n : PROBE_MAX_THREADS;
    for (size_t i = 0; i < nthreads; i++) {
        if (pthread_create(&threads[i], NULL, probe_worker, &run) != 0) {
            /* Fewer threads is slower, not wrong: the ones running take all the work. */
            nthreads = i;
            break;
        }
    }
    if (nthreads == 0)
        probe_worker(&run);
    for (size_t i = 0; i < nthreads; i++)
        pthread_join(threads[i], NULL);
    pthread_mutex_destroy(&run.lock);
    free(run.db_path);

    now = (int64_t)time(NULL);
    for (size_t i = 0; i < n; i++) {
        if (targets[i].failed || targets[i].result.verdict == CAPS_UNREACHABLE)
            status = 1;
        if (json)
            print_json(&targets[i], now);
    }
    if (!json)
        print_table(targets, n, now);
    if (fflush(stdout) != 0) {
        perror("negsync: stdout");
        status = 1;
    }

done:
    for (size_t i = 0; i < n; i++) {
        free(targets[i].url);
        caps_result_clear(&targets[i].result);
    }
    free(targets);
    if (cfg->notice != NULL && status == EXIT_USAGE)
        fprintf(stderr, "negsync: %s\n", cfg->notice);
    config_free(cfg);
    return status;
}
