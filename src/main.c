/*
 * main: the command line. Global options, then a command; each command is a
 * function below that returns the process exit code (0 ok, 1 sync, I/O or
 * database error, 2 usage or config error).
 */
#include "config.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
        "\n"
        "Global options:\n"
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
    {"sync", cmd_sync},     {"probe", cmd_probe},   {NULL, NULL},
};

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
        print_help(stderr);
        return EXIT_USAGE;
    }
    for (const struct command *cmd = commands; cmd->name != NULL; cmd++) {
        if (strcmp(cmd->name, argv[optind]) == 0) {
            optind++;
            return cmd->run(&g, argc - optind + 1, argv + optind - 1);
        }
    }
    fprintf(stderr, "negsync: unknown command '%s'\n", argv[optind]);
    fputs(usage_line, stderr);
    return EXIT_USAGE;
}
