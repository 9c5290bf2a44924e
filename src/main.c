/*
 * main: the command line. Global options, then a command; each command is a
 * function below that returns the process exit code (0 ok, 1 sync, I/O or
 * database error, 2 usage or config error). Global options may also follow
 * the command name ("negsync check-config -c FILE"): they are taken out of
 * the command's arguments before it sees them.
 */
#include "config.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"

static const char usage_line[] = "usage: negsync [-c FILE] [-d FILE] [-v|-q] [COMMAND [ARGS...]]\n";

static void print_help(FILE *f)
{
    fputs(usage_line, f);
    fputs(
        "\n"
        "Keep a local SQLite copy of Nostr events in sync with many relays,\n"
        "by NIP-77 negentropy where a relay speaks it and REQ where it does not.\n"
        "\n"
        "Commands:\n"
        "  import [--json] FILE|-   import JSON-lines events (verified)\n"
        "  export [--filter JSON]   write stored events as JSON lines\n"
        "  check-config             validate the configuration, print effective values\n"
        "  sync [--once] [--relay URL]... [--filter NAME]... [--json]\n"
        "                           sync with the relays (NIP-77 or REQ)\n"
        "  probe [--force] [--json] [URL...]\n"
        "                           check which relays speak NIP-77 (cached)\n"
        "  tui [--relay URL]... [--filter NAME]... [--no-color] [--ascii]\n"
        "                           live per-relay view while syncing (the default on a\n"
        "                           terminal)\n"
        "  status [--json]          what the database knows of each relay (no network)\n"
        "\n"
        "Global options (before or after the command):\n"
        "  -c, --config FILE   configuration file (default $XDG_CONFIG_HOME/negsync/negsync.ini)\n"
        "  -d, --db FILE       database (default $XDG_DATA_HOME/negsync/negsync.db)\n"
        "  -v, --verbose       more log output\n"
        "  -q, --quiet         less log output\n"
        "  -h, --help          this help\n"
        "  -V, --version       print the version\n"
        "\n"
        "Exit codes: 0 ok, 1 sync or I/O errors, 2 usage or configuration error.\n",
        f);
}

struct command {
    const char *name;
    int (*run)(struct globals *g, int argc, char **argv);
};

static const struct command commands[] = {
    /* [commands] */
    {"import", cmd_import}, {"export", cmd_export}, {"check-config", cmd_check_config},
    {"sync", cmd_sync},     {"probe", cmd_probe},   {"status", cmd_status},
    {"tui", cmd_tui},       {NULL, NULL},
};

/*
 * A command's own options that take a value in the next argument, so that a
 * value such as "--filter -q" is never read as a global option.
 */
static const char *const *main_value_opts(const char *command)
{
    static const char *const export_opts[] = {"-f", "--filter", NULL};
    static const char *const sync_opts[] = {"--relay", "--filter", NULL};

    if (strcmp(command, "export") == 0)
        return export_opts;
    if (strcmp(command, "sync") == 0 || strcmp(command, "tui") == 0)
        return sync_opts;
    return NULL;
}

/*
 * If argv[*i] is a global option (-c, -d, -v, -q, their long forms exactly,
 * "--config=FILE", "-cFILE" or a cluster like "-vv"), applies it to g and
 * moves *i past it and its value: 1. 0 if it is not one; -1 (message
 * printed) when its value is missing.
 */
static int main_global_opt(struct globals *g, int argc, char **argv, int *i)
{
    const char *a = argv[*i];
    const char **dest = NULL;
    const char *value = NULL;

    if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0)
        dest = &g->config_path;
    else if (strcmp(a, "-d") == 0 || strcmp(a, "--db") == 0)
        dest = &g->db_path;
    else if (strncmp(a, "--config=", 9) == 0)
        dest = &g->config_path, value = a + 9;
    else if (strncmp(a, "--db=", 5) == 0)
        dest = &g->db_path, value = a + 5;
    else if ((a[1] == 'c' || a[1] == 'd') && a[0] == '-' && a[2] != '\0')
        dest = a[1] == 'c' ? &g->config_path : &g->db_path, value = a + 2;
    else if (strcmp(a, "--verbose") == 0)
        g->verbose++;
    else if (strcmp(a, "--quiet") == 0)
        g->verbose--;
    else if (a[0] == '-' && a[1] != '\0' && a[1 + strspn(a + 1, "vq")] == '\0')
        for (const char *p = a + 1; *p != '\0'; p++)
            g->verbose += *p == 'v' ? 1 : -1;
    else
        return 0;
    if (dest != NULL && value == NULL) {
        if (*i + 1 >= argc) {
            fprintf(stderr, "negsync: option '%s' needs a value\n", a);
            return -1;
        }
        value = argv[++*i];
    }
    if (dest != NULL)
        *dest = value;
    ++*i;
    return 1;
}

/*
 * Takes the global options out of a command's argv (argv[0] is its name),
 * up to a "--", compacting argv in place. The new argc, or -1 on a usage
 * error (printed).
 */
static int main_command_globals(struct globals *g, int argc, char **argv)
{
    const char *const *value_opts = main_value_opts(argv[0]);
    int i = 1, n = 1;

    while (i < argc) {
        int rc;

        if (strcmp(argv[i], "--") == 0) {
            while (i < argc)
                argv[n++] = argv[i++];
            break;
        }
        if ((rc = main_global_opt(g, argc, argv, &i)) < 0)
            return -1;
        if (rc > 0)
            continue;
        for (const char *const *v = value_opts; v != NULL && *v != NULL; v++) {
            if (strcmp(argv[i], *v) == 0 && i + 1 < argc) {
                argv[n++] = argv[i++];
                break;
            }
        }
        argv[n++] = argv[i++];
    }
    argv[n] = NULL;
    return n;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"db", required_argument, NULL, 'd'},
        {"verbose", no_argument, NULL, 'v'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    struct globals g = {0};
    int c;

    /*
     * A relay that drops the connection while we write must give an error,
     * not kill the process: TLS writes go through write(2), and a broken
     * socket raises SIGPIPE there.
     */
    signal(SIGPIPE, SIG_IGN);

    /* "+": stop at the command name; its own options are its business. */
    while ((c = getopt_long(argc, argv, "+c:d:vqhV", opts, NULL)) != -1) {
        switch (c) {
        case 'c': g.config_path = optarg; break;
        case 'd': g.db_path = optarg; break;
        case 'v': g.verbose++; break;
        case 'q': g.verbose--; break;
        case 'h': print_help(stdout); return 0;
        case 'V': printf("negsync %s\n", PACKAGE_VERSION); return 0;
        default: fputs(usage_line, stderr); return EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        /* No command: the TUI on a terminal; elsewhere a script wants `negsync sync`. */
        if (isatty(STDIN_FILENO) && isatty(STDOUT_FILENO)) {
            char *tui_argv[] = {"tui", NULL};
            return cmd_tui(&g, 1, tui_argv);
        }
        print_help(stderr);
        fputs("negsync: no command (not on a terminal, so no TUI); to sync from a script use "
              "`negsync sync`\n",
              stderr);
        return EXIT_USAGE;
    }
    for (const struct command *cmd = commands; cmd->name != NULL; cmd++) {
        if (strcmp(cmd->name, argv[optind]) == 0) {
            int cmd_argc = main_command_globals(&g, argc - optind, argv + optind);

            if (cmd_argc < 0) {
                fputs(usage_line, stderr);
                return EXIT_USAGE;
            }
            return cmd->run(&g, cmd_argc, argv + optind);
        }
    }
    fprintf(stderr, "negsync: unknown command '%s'\n", argv[optind]);
    fputs(usage_line, stderr);
    return EXIT_USAGE;
}
