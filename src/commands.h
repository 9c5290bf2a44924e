/*
 * commands: what main.c dispatches to. Each command takes the global options
 * and its own argv (argv[0] is the command name) and returns the process
 * exit code: 0 ok, 1 I/O, database or sync error, 2 usage or config error.
 */
#ifndef NEGSYNC_COMMANDS_H
#define NEGSYNC_COMMANDS_H

#define EXIT_USAGE 2

struct globals {
    const char *config_path; /* -c */
    const char *db_path;     /* -d */
    int verbose;             /* -v: +1, -q: -1 */
};

struct store;
struct config;

/*
 * Loads -c FILE (or the XDG default). On errors prints each as file:line:
 * message, then "negsync: N errors in the configuration" followed by
 * consequence (e.g. "; nothing synced", or ""), and returns NULL.
 */
struct config *cmd_load_config(const struct globals *g, const char *consequence);

/*
 * Opens the database every command uses: -d FILE, else the configuration's
 * [storage] path, else the XDG default (creating its directory). Prints the
 * reason and returns NULL on failure, with *exit_code 2 for a bad
 * configuration and 1 otherwise; 0 on success.
 */
struct store *cmd_open_store(const struct globals *g, int *exit_code);

/* cmd-io.c */
int cmd_import(struct globals *g, int argc, char **argv);
int cmd_export(struct globals *g, int argc, char **argv);

/* cmd-config.c */
int cmd_check_config(struct globals *g, int argc, char **argv);

/* cmd-sync.c */
int cmd_sync(struct globals *g, int argc, char **argv);

/* cmd-tui.c */
int cmd_tui(struct globals *g, int argc, char **argv);

/* cmd-probe.c */
int cmd_probe(struct globals *g, int argc, char **argv);

/* cmd-status.c */
int cmd_status(struct globals *g, int argc, char **argv);

#endif
