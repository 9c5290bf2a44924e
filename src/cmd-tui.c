/*
 * cmd-tui: `negsync tui [--relay URL]... [--filter NAME]... [--no-color]
 * [--ascii]`, and `negsync` with no command on a terminal. It runs the same
 * engine as `negsync sync` (continuous, every interval), under the same
 * configuration and database, with the TUI (tui.c) as its face. On the way
 * out — q, Ctrl-C, SIGTERM, SIGHUP, the terminal gone — the engine is
 * stopped (jobs keep what they received, no cursor moves past it), the
 * terminal restored, and the summary of this session's runs printed as
 * `sync --once` prints it. Exit 0.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cfg.h"
#include "commands.h"
#include "store.h"
#include "sync.h"
#include "tui.h"
#include "util.h"

static void tui_usage(FILE *f)
{
    fputs("usage: negsync tui [--relay URL]... [--filter NAME]... [--no-color] [--ascii]\n", f);
}

/* The engine is made before the UI (the UI reads the engine's model): its callbacks go here. */
struct tui_cmd {
    struct tui *tui;
};

static void fwd_log(void *arg, const char *line)
{
    struct tui_cmd *tc = arg;

    if (tc->tui != NULL)
        tui_engine_log(tc->tui, line);
}

static void fwd_run(void *arg, const struct sync_run *run)
{
    struct tui_cmd *tc = arg;

    if (tc->tui != NULL)
        tui_engine_run(tc->tui, run);
}

/* mkdir -p for the directories of path (not the last component). */
static void mkdirs_for(char *path)
{
    for (char *p = path + 1; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0700) < 0 && errno != EEXIST) {
            *p = '/';
            return;
        }
        *p = '/';
    }
}

/* $XDG_STATE_HOME/negsync/tui.log or ~/.local/state/negsync/tui.log; caller frees; may be NULL. */
static char *tui_log_path(void)
{
    const char *xdg = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
    char buf[4096];

    if (xdg != NULL && xdg[0] == '/')
        snprintf(buf, sizeof buf, "%s/negsync/tui.log", xdg);
    else if (home != NULL && home[0] != '\0')
        snprintf(buf, sizeof buf, "%s/.local/state/negsync/tui.log", home);
    else
        return NULL;
    mkdirs_for(buf);
    return xstrdup(buf);
}

int cmd_tui(struct globals *g, int argc, char **argv)
{
    static const struct option opts[] = {
        {"relay", required_argument, NULL, 'r'}, {"filter", required_argument, NULL, 'f'},
        {"no-color", no_argument, NULL, 'C'},    {"ascii", no_argument, NULL, 'a'},
        {"help", no_argument, NULL, 'h'},        {NULL, 0, NULL, 0},
    };
    const char **relays = NULL, **filters = NULL;
    size_t nrelays = 0, nfilters = 0;
    int c, rc = 0, no_color = 0, ascii = 0;
    struct config *cfg = NULL;
    char *db = NULL, *logpath = NULL, err[CONFIG_ERRLEN];
    const char *dbname;
    struct sync_engine_opts eo = {0};
    struct sync_engine *engine = NULL;
    struct tui_cmd tc = {0};
    struct tui_opts to = {0};
    sigset_t old;

    optind = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'r':
            relays = xreallocarray(relays, nrelays + 1, sizeof *relays);
            relays[nrelays++] = optarg;
            break;
        case 'f':
            filters = xreallocarray(filters, nfilters + 1, sizeof *filters);
            filters[nfilters++] = optarg;
            break;
        case 'C': no_color = 1; break;
        case 'a': ascii = 1; break;
        case 'h': tui_usage(stdout); goto out;
        default:
            tui_usage(stderr);
            rc = EXIT_USAGE;
            goto out;
        }
    }
    if (optind != argc) {
        tui_usage(stderr);
        rc = EXIT_USAGE;
        goto out;
    }
    if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
        fprintf(stderr, "negsync: the TUI needs a terminal; for scripts use `negsync sync`\n");
        rc = EXIT_USAGE;
        goto out;
    }
    if ((cfg = cmd_load_config(g, "; nothing synced")) == NULL) {
        rc = EXIT_USAGE;
        goto out;
    }
    if (g->db_path == NULL && cfg->storage_path == NULL)
        db = store_default_path(err, sizeof err);
    else
        db = config_db_path(cfg, g->db_path, err, sizeof err);
    if (db == NULL) {
        fprintf(stderr, "negsync: %s\n", err);
        rc = EXIT_USAGE;
        goto out;
    }
    dbname = strrchr(db, '/') != NULL ? strrchr(db, '/') + 1 : db;

    eo.cfg = cfg;
    eo.db_path = db;
    eo.relays = relays;
    eo.nrelays = nrelays;
    eo.filters = filters;
    eo.nfilters = nfilters;
    eo.continuous = 1;
    eo.on_run = fwd_run;
    eo.log = fwd_log;
    eo.arg = &tc;
    eo.verbose = g->verbose;
    if ((engine = sync_engine_new(&eo, err, sizeof err)) == NULL) {
        fprintf(stderr, "negsync: %s\n", err);
        rc = EXIT_USAGE;
        goto out;
    }
    to.engine = engine;
    to.stats = sync_engine_stats(engine);
    to.db_name = dbname;
    to.use_negentropy = cfg->sync.use_negentropy;
    to.continuous = 1;
    to.no_color = no_color;
    to.ascii = ascii;
    to.cfg = cfg;
    if ((tc.tui = tui_new(&to, err, sizeof err)) == NULL) {
        fprintf(stderr, "negsync: %s\n", err);
        rc = 1;
        goto out;
    }
    logpath = tui_log_path();

    /* Every thread from here on inherits the mask: only the UI's signal thread takes them. */
    tui_signals_block(&old);
    if (sync_engine_start(engine, err, sizeof err) < 0) {
        fprintf(stderr, "negsync: %s\n", err);
        rc = 1;
    } else {
        sync_engine_sync_all(engine);
        if (tui_run(tc.tui, logpath, err, sizeof err) < 0) {
            fprintf(stderr, "negsync: %s\n", err);
            rc = 1;
        }
    }
    /* Joins the workers: each ends its job, keeps what it received, closes its connection. */
    sync_engine_free(engine);
    engine = NULL;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc == 0)
        tui_print_summary(tc.tui, stdout);

out:
    sync_engine_free(engine);
    tui_free(tc.tui);
    free(logpath);
    free(db);
    config_free(cfg);
    free(relays);
    free(filters);
    return rc;
}
