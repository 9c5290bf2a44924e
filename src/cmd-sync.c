/*
 * cmd-sync: `negsync sync [--once] [--dry-run [--ids]] [--relay URL]...
 * [--filter NAME]... [--json]`, the headless face of the sync engine for
 * cron, systemd and scripts.
 *
 * One line per finished job on stdout (or one JSON object with --json), the
 * engine's "[SYNC] ..." decisions on stderr, and with --once a summary table
 * per relay at the end. When stderr is a terminal, a progress line there
 * (relay, filter, phase, round, events fetched / known missing), redrawn in
 * place and cleared before anything else is printed. Exit 0 when every job ended ok, 1 when some relay
 * failed, 2 for a usage or configuration error. SIGINT/SIGTERM stop the
 * engine (jobs store what they received and advance no cursor past it) and
 * exit 0. Signals are taken by a thread of their own with sigwait, so the
 * workers never see them.
 *
 * --dry-run runs every job once and changes nothing (sync.h, opts.dry_run):
 * each line and JSON object says what the job would fetch and upload, and
 * --ids lists those ids. It reads an existing database and never creates one
 * (nor its directory).
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "cfg.h"
#include "commands.h"
#include "store.h"
#include "summary.h"
#include "sync.h"
#include "util.h"

struct sync_cmd {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int json, quiet;
    int ids;            /* --ids: print a dry run's ids after each line */
    int progress;       /* stderr is a terminal: draw progress */
    int progress_shown; /* a progress line is on the screen */
    int interrupted;
    unsigned jobs, failed;
    struct summary sum; /* per relay, for the --once table */
    struct sync_engine *engine;
    const struct config *cfg;
};

/* " (TLS unverified)" for a relay the configuration marks tls_verify = false. */
static const char *tls_mark(const struct sync_cmd *sc, const char *url)
{
    if (sc->cfg == NULL)
        return "";
    for (size_t i = 0; i < sc->cfg->nrelays; i++)
        if (!sc->cfg->relays[i].tls_verify && strcmp(sc->cfg->relays[i].url, url) == 0)
            return " (TLS unverified)";
    return "";
}

static void sync_usage(FILE *f)
{
    fputs("usage: negsync sync [--once] [--dry-run [--ids]] [--relay URL]... [--filter NAME]..."
          " [--json]\n",
          f);
}

/* Erases the progress line, if one is showing; called with sc->mu held. */
static void progress_clear(struct sync_cmd *sc)
{
    if (!sc->progress_shown)
        return;
    fputs("\r\033[K", stderr);
    fflush(stderr);
    sc->progress_shown = 0;
}

static void on_progress(void *arg, const struct sync_progress *p)
{
    struct sync_cmd *sc = arg;
    struct winsize ws;
    char line[600];
    size_t width = 80;

    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 1)
        width = ws.ws_col;
    if (width > sizeof line)
        width = sizeof line;
    /* One column short of the width, so the cursor never wraps to a new line. */
    sync_progress_format(p, line, width);
    pthread_mutex_lock(&sc->mu);
    if (p->done) {
        progress_clear(sc);
    } else {
        fprintf(stderr, "\r\033[K%s", line);
        fflush(stderr);
        sc->progress_shown = 1;
    }
    pthread_mutex_unlock(&sc->mu);
}

static void on_log(void *arg, const char *line)
{
    struct sync_cmd *sc = arg;

    if (sc->quiet)
        return;
    pthread_mutex_lock(&sc->mu);
    progress_clear(sc);
    fprintf(stderr, "%s\n", line);
    pthread_mutex_unlock(&sc->mu);
}

/* A dry run's line, and with --ids its ids, one a line ("  fetch <hex>", "  upload <hex>"). */
static void print_dry(const struct sync_cmd *sc, const struct sync_run *r)
{
    char up[32], down[32], hex[65];

    summary_fmt_bytes(r->bytes_sent, up, sizeof up);
    summary_fmt_bytes(r->bytes_received, down, sizeof down);
    printf("%s%s %s: %s, %llu round%s, sent %s, received %s, would fetch %llu, would upload %llu,"
           " %.1f s (dry run)%s%s\n",
           r->relay, tls_mark(sc, r->relay), r->filter, sync_mode_name(r->mode),
           (unsigned long long)r->rounds, r->rounds == 1 ? "" : "s", up, down,
           (unsigned long long)r->would_fetch, (unsigned long long)r->would_upload,
           (double)r->duration_ms / 1000.0,
           r->error[0] == '\0' ? ""
           : r->ok             ? "; "
                               : "; error: ",
           r->error);
    for (uint64_t i = 0; r->fetch_ids != NULL && i < r->would_fetch; i++) {
        hex_encode(r->fetch_ids[i], 32, hex);
        printf("  fetch %s\n", hex);
    }
    for (uint64_t i = 0; r->upload_ids != NULL && i < r->would_upload; i++) {
        hex_encode(r->upload_ids[i], 32, hex);
        printf("  upload %s\n", hex);
    }
}

static void on_run(void *arg, const struct sync_run *r)
{
    struct sync_cmd *sc = arg;
    int interrupted;

    pthread_mutex_lock(&sc->mu);
    progress_clear(sc);
    interrupted = sc->interrupted && !r->ok;
    sc->jobs++;
    if (!r->ok && !interrupted)
        sc->failed++;
    if (sc->json) {
        char *s = sync_run_to_json(r);
        if (s != NULL)
            printf("%s\n", s);
        free(s);
    } else if (r->dry_run) {
        print_dry(sc, r);
    } else {
        char up[32], down[32], saved[16];
        summary_fmt_bytes(r->bytes_sent, up, sizeof up);
        summary_fmt_bytes(r->bytes_received, down, sizeof down);
        if (r->ok) {
            char split[96] = "";
            if (r->splits > 0 && r->neg_cap > 0)
                snprintf(split, sizeof split,
                         ", %llu window split%s (negentropy set capped at %lld)",
                         (unsigned long long)r->splits, r->splits == 1 ? "" : "s",
                         (long long)r->neg_cap);
            else if (r->splits > 0)
                snprintf(split, sizeof split, ", %llu window split%s (blocked)",
                         (unsigned long long)r->splits, r->splits == 1 ? "" : "s");
            summary_fmt_saved(r->est_req_bytes, r->bytes_sent + r->bytes_received, saved,
                              sizeof saved);
            printf("%s%s %s: %s, %llu round%s, sent %s, received %s, saved %s, fetched %llu,"
                   " stored %llu, invalid %llu%s, %.1f s%s%s\n",
                   r->relay, tls_mark(sc, r->relay), r->filter, sync_mode_name(r->mode),
                   (unsigned long long)r->rounds, r->rounds == 1 ? "" : "s", up, down, saved,
                   (unsigned long long)r->fetched, (unsigned long long)r->stored,
                   (unsigned long long)r->invalid, split, (double)r->duration_ms / 1000.0,
                   r->error[0] != '\0' ? "; " : "", r->error);
        } else {
            printf("%s%s %s: %s, error: %s\n", r->relay, tls_mark(sc, r->relay), r->filter,
                   sync_mode_name(r->mode), r->error);
        }
    }
    fflush(stdout);
    summary_add(&sc->sum, r);
    pthread_mutex_unlock(&sc->mu);
}

static void print_summary(const struct sync_cmd *sc, int dry)
{
    printf("\n");
    if (dry)
        printf("Dry run: nothing was stored, uploaded or recorded.\n");
    summary_print(&sc->sum, stdout);
}

struct sig_thread {
    sigset_t set;
    struct sync_cmd *sc;
};

/* Waits for SIGINT/SIGTERM (stop the engine) or SIGUSR2 (our own "quit"). */
static void *sig_main(void *arg)
{
    struct sig_thread *st = arg;
    int sig;

    for (;;) {
        if (sigwait(&st->set, &sig) != 0)
            continue;
        if (sig == SIGUSR2)
            return NULL;
        pthread_mutex_lock(&st->sc->mu);
        st->sc->interrupted = 1;
        pthread_cond_broadcast(&st->sc->cv);
        pthread_mutex_unlock(&st->sc->mu);
        sync_engine_stop(st->sc->engine);
    }
}

int cmd_sync(struct globals *g, int argc, char **argv)
{
    static const struct option opts[] = {
        {"once", no_argument, NULL, 'o'},         {"relay", required_argument, NULL, 'r'},
        {"filter", required_argument, NULL, 'f'}, {"json", no_argument, NULL, 'j'},
        {"dry-run", no_argument, NULL, 'n'},      {"ids", no_argument, NULL, 'i'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    const char **relays = NULL, **filters = NULL;
    size_t nrelays = 0, nfilters = 0;
    int once = 0, dry = 0, c, rc = 0;
    struct config *cfg = NULL;
    char *db = NULL, err[CONFIG_ERRLEN];
    struct sync_engine_opts eo = {0};
    const char *hold;
    struct sync_cmd sc = {0};
    struct sig_thread sth;
    sigset_t old;
    pthread_t sig_thr;

    optind = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'o': once = 1; break;
        case 'j': sc.json = 1; break;
        case 'n': dry = 1; break;
        case 'i': sc.ids = 1; break;
        case 'r':
            relays = xreallocarray(relays, nrelays + 1, sizeof *relays);
            relays[nrelays++] = optarg;
            break;
        case 'f':
            filters = xreallocarray(filters, nfilters + 1, sizeof *filters);
            filters[nfilters++] = optarg;
            break;
        case 'h':
            sync_usage(stdout);
            free(relays);
            free(filters);
            return 0;
        default:
            sync_usage(stderr);
            free(relays);
            free(filters);
            return EXIT_USAGE;
        }
    }
    if (optind != argc || (sc.ids && !dry)) {
        if (optind == argc)
            fprintf(stderr, "negsync: --ids lists what a dry run would fetch and upload: it"
                            " needs --dry-run\n");
        sync_usage(stderr);
        free(relays);
        free(filters);
        return EXIT_USAGE;
    }
    if (dry)
        once = 1; /* every job once, then the report */

    if ((cfg = cmd_load_config(g, "; nothing synced")) == NULL) {
        rc = EXIT_USAGE;
        goto out;
    }
    if (cfg->notice != NULL)
        fprintf(stderr, "negsync: %s\n", cfg->notice);
    for (size_t i = 0; i < cfg->nrelays; i++)
        if (cfg->relays[i].enabled && !cfg->relays[i].tls_verify)
            fprintf(stderr,
                    "negsync: warning: %s: TLS certificates are not verified "
                    "(tls_verify = false)\n",
                    cfg->relays[i].url);
    if (g->db_path == NULL && cfg->storage_path == NULL && !dry)
        db = store_default_path(err, sizeof err); /* creates the directory */
    else
        db = config_db_path(cfg, g->db_path, err, sizeof err);
    if (db == NULL) {
        fprintf(stderr, "negsync: %s\n", err);
        rc = EXIT_USAGE;
        goto out;
    }
    if (dry && access(db, F_OK) < 0) {
        fprintf(stderr,
                "negsync: no dry run: %s: %s (it compares with the database; negsync"
                " sync creates it)\n",
                db, strerror(errno));
        rc = 1;
        goto out;
    }
    if (dry && g->verbose >= 0)
        fprintf(stderr, "negsync: dry run: nothing will be stored, uploaded or recorded\n");

    pthread_mutex_init(&sc.mu, NULL);
    pthread_cond_init(&sc.cv, NULL);
    sc.quiet = g->verbose < 0;
    sc.cfg = cfg;
    sc.progress = !sc.quiet && isatty(STDERR_FILENO);
    eo.cfg = cfg;
    eo.db_path = db;
    eo.relays = relays;
    eo.nrelays = nrelays;
    eo.filters = filters;
    eo.nfilters = nfilters;
    eo.continuous = !once;
    eo.dry_run = dry;
    eo.dry_run_ids = sc.ids;
    eo.on_run = on_run;
    eo.log = on_log;
    eo.on_progress = sc.progress ? on_progress : NULL;
    /* The test knob (tests/sync-tail.sh): the program reads it, not the library. */
    if ((hold = getenv("NEGSYNC_WRITER_HOLD_MS")) != NULL)
        eo.writer_hold_ms = strtol(hold, NULL, 10);
    eo.arg = &sc;
    eo.verbose = g->verbose;
    if ((sc.engine = sync_engine_new(&eo, err, sizeof err)) == NULL) {
        fprintf(stderr, "negsync: %s\n", err);
        rc = EXIT_USAGE;
        goto out_sync;
    }

    /* Every thread from here on inherits the mask: only sig_main takes signals. */
    sigemptyset(&sth.set);
    sigaddset(&sth.set, SIGINT);
    sigaddset(&sth.set, SIGTERM);
    sigaddset(&sth.set, SIGUSR2);
    sth.sc = &sc;
    pthread_sigmask(SIG_BLOCK, &sth.set, &old);
    if (pthread_create(&sig_thr, NULL, sig_main, &sth) != 0) {
        fprintf(stderr, "negsync: cannot start the signal thread\n");
        rc = 1;
        goto out_mask;
    }
    if (sync_engine_start(sc.engine, err, sizeof err) < 0) {
        fprintf(stderr, "negsync: %s\n", err);
        rc = 1;
    } else {
        sync_engine_sync_all(sc.engine);
        if (once) {
            sync_engine_wait_idle(sc.engine, -1);
        } else {
            pthread_mutex_lock(&sc.mu);
            while (!sc.interrupted)
                pthread_cond_wait(&sc.cv, &sc.mu);
            pthread_mutex_unlock(&sc.mu);
        }
    }
    /* Joins the workers: each ends its job and closes its connection. */
    sync_engine_free(sc.engine);
    sc.engine = NULL;
    pthread_kill(sig_thr, SIGUSR2);
    pthread_join(sig_thr, NULL);
    if (rc == 0) {
        if (once && !sc.json)
            print_summary(&sc, dry);
        if (sc.interrupted)
            rc = 0;
        else
            rc = sc.failed > 0 ? 1 : 0;
    }
out_mask:
    sync_engine_free(sc.engine);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
out_sync:
    pthread_mutex_destroy(&sc.mu);
    pthread_cond_destroy(&sc.cv);
    summary_free(&sc.sum);
out:
    free(db);
    config_free(cfg);
    free(relays);
    free(filters);
    if (fflush(stdout) != 0 && rc == 0)
        rc = 1;
    return rc;
}
