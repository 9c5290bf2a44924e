/*
 * cmd-io: `negsync import` and `negsync export`, JSON lines of events in the
 * format `strfry export` and `nak` use (one compact event object per line).
 *
 * Import trusts nothing: every line is parsed and verified (id and
 * signature) before it reaches the store, a bad line is counted and reported
 * by number but never stops the import, and events go in batches of
 * IMPORT_BATCH per transaction, so an interrupted import (Ctrl-C, kill -9,
 * power cut) leaves every committed batch in place and nothing half-written.
 * Ctrl-C is polite: the batch read so far is committed, the summary printed,
 * and the exit code is 1 (the file was not imported to the end). Export
 * writes stored events oldest first, which is also the order that makes a
 * re-import cheapest.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cfg.h"
#include "commands.h"
#include "event.h"
#include "filter.h"
#include "store.h"
#include "util.h"

/*
 * Events per transaction. Each batch rewrites a page of every random-keyed
 * index (id, author, e/p tag values) per event it touches, so larger batches
 * are much cheaper per event: at 200 000 events the store's share is about
 * 16 us per event in batches of 5 000 and 12 in batches of 20 000
 * (bench/ingest-bench -b). A crash loses at most the batch in progress,
 * which a re-import adds again; IMPORT_BATCH_BYTES bounds the memory.
 */
#define IMPORT_BATCH 20000
/* A batch of huge events is also cut at this many bytes of input, to bound memory. */
#define IMPORT_BATCH_BYTES (16u << 20)
/* Rejected lines listed by number in the summary. */
#define IMPORT_MAX_ERRORS 10
/*
 * Progress appears only when stderr is a terminal, and only for a large
 * input: from line PROGRESS_MIN_LINES on or once the import has run
 * PROGRESS_AFTER_S, whichever comes first; then every PROGRESS_EVERY_S.
 */
#define PROGRESS_MIN_LINES 10000
#define PROGRESS_AFTER_S   1.0
#define PROGRESS_EVERY_S   0.5

static volatile sig_atomic_t import_interrupted;

static void import_on_signal(int sig)
{
    (void)sig;
    import_interrupted = 1;
}

struct import_error {
    uint64_t line;
    char reason[EVENT_ERRLEN + 32];
};

struct import_state {
    struct store *st;
    struct event_keycache *keys;
    uint64_t inserted, duplicates, replaced, deleted, rejected;
    struct import_error errors[IMPORT_MAX_ERRORS];
    size_t nerrors;
    /* The batch being read: events with their line numbers. */
    struct event *batch[IMPORT_BATCH];
    uint64_t batch_lines[IMPORT_BATCH];
    struct store_result results[IMPORT_BATCH];
    size_t nbatch, batch_bytes;
    int committed; /* a batch was stored */
};

struct config *cmd_load_config(const struct globals *g, const char *consequence)
{
    struct config_errors errs = {0};
    struct config *cfg = config_load(g->config_path, (int64_t)time(NULL), &errs);

    if (cfg == NULL) {
        size_t total = errs.n + errs.more;

        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s\n", errs.msgs[i]);
        if (errs.more > 0)
            fprintf(stderr, "negsync: ... and %zu more error%s\n", errs.more,
                    errs.more == 1 ? "" : "s");
        fprintf(stderr, "negsync: %zu error%s in the configuration%s\n", total,
                total == 1 ? "" : "s", consequence);
        config_errors_free(&errs);
    }
    return cfg;
}

/*
 * The database path: -d FILE, else the configuration's [storage] path, else
 * the XDG default, whose directory is created when create_dir is set.
 * Caller frees; NULL with the reason printed and *exit_code set.
 */
static char *cmd_store_path(const struct globals *g, int create_dir, int *exit_code)
{
    char err[STORE_ERRLEN];
    struct config *cfg;
    char *path;

    *exit_code = 1;
    if (g->db_path != NULL)
        return xstrdup(g->db_path);
    /* The database is where the configuration says ([storage] path). */
    if ((cfg = cmd_load_config(g, "")) == NULL) {
        *exit_code = EXIT_USAGE;
        return NULL;
    }
    if (cfg->storage_path == NULL && create_dir)
        path = store_default_path(err, sizeof err);
    else
        path = config_db_path(cfg, NULL, err, sizeof err);
    config_free(cfg);
    if (path == NULL)
        fprintf(stderr, "negsync: %s\n", err);
    return path;
}

struct store *cmd_open_store(const struct globals *g, int *exit_code)
{
    char err[STORE_ERRLEN];
    char *path = cmd_store_path(g, 1, exit_code);
    struct store *st;

    if (path == NULL)
        return NULL;
    st = store_open(path, err, sizeof err);
    if (st == NULL)
        fprintf(stderr, "negsync: %s\n", err);
    else
        *exit_code = 0;
    free(path);
    return st;
}

/*
 * The same database for a command that only reads it: opened read-only, so
 * that it works where the database cannot be written (a read-only
 * directory, a backup), and never created when it does not exist.
 */
static struct store *cmd_open_store_readonly(const struct globals *g, int *exit_code)
{
    char err[STORE_ERRLEN];
    char *path = cmd_store_path(g, 0, exit_code);
    struct store *st;

    if (path == NULL)
        return NULL;
    st = store_open_readonly(path, err, sizeof err);
    if (st == NULL)
        fprintf(stderr, "negsync: %s\n", err);
    else
        *exit_code = 0;
    free(path);
    return st;
}

static double now_seconds(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void import_reject(struct import_state *is, uint64_t line, const char *reason)
{
    is->rejected++;
    if (is->nerrors < IMPORT_MAX_ERRORS) {
        struct import_error *e = &is->errors[is->nerrors++];
        e->line = line;
        snprintf(e->reason, sizeof e->reason, "%s", reason);
    }
}

/* Stores the pending batch. 0, or -1 with the reason printed. */
static int import_flush(struct import_state *is)
{
    char err[STORE_ERRLEN];
    int rc;

    if (is->nbatch == 0)
        return 0;
    rc = store_insert_batch(is->st, is->batch, is->nbatch, is->results, err, sizeof err);
    if (rc < 0) {
        fprintf(stderr, "negsync: import: %s (events from line %llu on were not stored)\n", err,
                (unsigned long long)is->batch_lines[0]);
    } else {
        is->committed = 1;
        for (size_t i = 0; i < is->nbatch; i++) {
            const struct store_result *r = &is->results[i];
            switch (r->outcome) {
            case STORE_INSERTED: is->inserted++; break;
            case STORE_DUPLICATE: is->duplicates++; break;
            case STORE_REPLACED: is->replaced++; break;
            case STORE_DELETED: is->deleted++; break;
            case STORE_REJECTED:
                import_reject(is, is->batch_lines[i], r->reason != NULL ? r->reason : "rejected");
                break;
            }
        }
    }
    for (size_t i = 0; i < is->nbatch; i++)
        event_free(is->batch[i]);
    is->nbatch = 0;
    is->batch_bytes = 0;
    return rc;
}

static int line_is_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return 0;
    }
    return 1;
}

static void import_print_summary(const struct import_state *is, int as_json)
{
    if (as_json) {
        json_t *errors = json_array();
        json_t *o;
        char *text;

        for (size_t i = 0; i < is->nerrors; i++) {
            json_array_append_new(errors,
                                  json_pack("{s:I, s:s}", "line", (json_int_t)is->errors[i].line,
                                            "reason", is->errors[i].reason));
        }
        o = json_pack("{s:I, s:I, s:I, s:I, s:I, s:o}", "inserted", (json_int_t)is->inserted,
                      "duplicates", (json_int_t)is->duplicates, "replaced",
                      (json_int_t)is->replaced, "deleted", (json_int_t)is->deleted, "rejected",
                      (json_int_t)is->rejected, "errors", errors);
        text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
        puts(text);
        free(text);
        json_decref(o);
        return;
    }
    printf("inserted %llu, duplicates %llu, replaced %llu, deleted %llu, rejected %llu\n",
           (unsigned long long)is->inserted, (unsigned long long)is->duplicates,
           (unsigned long long)is->replaced, (unsigned long long)is->deleted,
           (unsigned long long)is->rejected);
    for (size_t i = 0; i < is->nerrors; i++)
        printf("  line %llu: %s\n", (unsigned long long)is->errors[i].line, is->errors[i].reason);
    if (is->rejected > is->nerrors)
        printf("  ... and %llu more rejected lines\n",
               (unsigned long long)(is->rejected - is->nerrors));
}

/*
 * "negsync: import: 120000 lines (35%), 9800 lines/s" on one line of stderr,
 * rewritten in place. The percentage only when the input is a regular file.
 */
static void import_progress(FILE *in, off_t size, uint64_t lineno, double elapsed)
{
    off_t pos = size > 0 ? ftello(in) : -1;

    fprintf(stderr, "\rnegsync: import: %llu lines", (unsigned long long)lineno);
    if (pos >= 0 && size > 0)
        fprintf(stderr, " (%d%%)", (int)(pos * 100 / size));
    fprintf(stderr, ", %.0f lines/s\033[K", elapsed > 0 ? (double)lineno / elapsed : 0.0);
    fflush(stderr);
}

/*
 * An import that failed before storing anything into a database it created
 * (interrupted, a read error, a store error) removes it, so that a mistake
 * leaves no empty database behind. Only if it still holds no event: another
 * process may have opened the new file meanwhile. Closes st.
 */
static void import_discard_db(struct store *st, const char *path)
{
    char err[STORE_ERRLEN];
    uint64_t n = 1;
    size_t len = strlen(path);
    char *side = xmalloc(len + 5);

    if (store_count(st, NULL, &n, err, sizeof err) < 0)
        n = 1;
    store_close(st);
    if (n == 0 && unlink(path) == 0) {
        /* A clean close removed these already; a failed one may not have. */
        snprintf(side, len + 5, "%s-wal", path);
        unlink(side);
        snprintf(side, len + 5, "%s-shm", path);
        unlink(side);
        fprintf(stderr, "negsync: nothing imported; removed the new database %s\n", path);
    }
    free(side);
}

static void import_usage(FILE *f)
{
    fputs("usage: negsync import [--json] FILE|-\n", f);
}

int cmd_import(struct globals *g, int argc, char **argv)
{
    static const struct option opts[] = {
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct import_state *is;
    struct sigaction sa, old_int, old_term;
    const char *path;
    char *db_path, serr[STORE_ERRLEN];
    FILE *in;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    uint64_t lineno = 0;
    double started, last_progress;
    int as_json = 0, c, rc = 0, progress = 0, read_errno = 0, db_created;
    int tty = isatty(STDERR_FILENO);
    off_t size = 0;
    struct stat sb;

    optind = 0; /* GNU: reinitialize; main stopped at the command name */
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'j': as_json = 1; break;
        case 'h': import_usage(stdout); return 0;
        default: import_usage(stderr); return EXIT_USAGE;
        }
    }
    if (argc - optind != 1) {
        import_usage(stderr);
        return EXIT_USAGE;
    }
    path = argv[optind];
    if (strcmp(path, "-") == 0) {
        in = stdin;
        path = "(stdin)";
    } else if ((in = fopen(path, "r")) == NULL) {
        fprintf(stderr, "negsync: %s: %s\n", path, strerror(errno));
        return 1;
    }

    /* fopen takes a directory; reading it fails. Say so before a database is made. */
    if (fstat(fileno(in), &sb) < 0)
        sb.st_mode = 0;
    if (S_ISDIR(sb.st_mode)) {
        fprintf(stderr, "negsync: %s: %s\n", path, strerror(EISDIR));
        if (in != stdin)
            fclose(in);
        return 1;
    }
    if (S_ISREG(sb.st_mode))
        size = sb.st_size;

    if ((db_path = cmd_store_path(g, 1, &rc)) == NULL) {
        if (in != stdin)
            fclose(in);
        return rc;
    }
    rc = 0;
    db_created = access(db_path, F_OK) < 0 && errno == ENOENT;

    /*
     * No SA_RESTART: a Ctrl-C must also get us out of a getline blocked on a
     * pipe. Set before the database is opened, so that a signal never finds
     * a new database created and the import not yet able to remove it.
     */
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = import_on_signal;
    sigemptyset(&sa.sa_mask);
    import_interrupted = 0;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    /* Started in the background (or under nohup) with SIGINT ignored: keep it so. */
    if (old_int.sa_handler == SIG_IGN)
        sigaction(SIGINT, &old_int, NULL);

    is = xcalloc(1, sizeof *is);
    if ((is->st = store_open(db_path, serr, sizeof serr)) == NULL) {
        fprintf(stderr, "negsync: %s\n", serr);
        /* SQLite may have made the file before failing: an empty one holds nothing. */
        if (db_created && stat(db_path, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size == 0)
            unlink(db_path);
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
        if (in != stdin)
            fclose(in);
        free(db_path);
        free(is);
        return 1;
    }

    is->keys = event_keycache_new();
    started = last_progress = now_seconds();
    while (!import_interrupted) {
        char err[EVENT_ERRLEN];
        struct event *ev;
        size_t len;

        errno = 0;
        if ((n = getline(&line, &cap, in)) < 0) {
            if (ferror(in) && errno != EINTR)
                read_errno = errno ? errno : EIO;
            break;
        }
        lineno++;
        len = (size_t)n;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        if (line_is_blank(line, len))
            continue;
        if ((ev = event_parse(line, len, err, sizeof err)) == NULL) {
            import_reject(is, lineno, err);
            continue;
        }
        if (event_verify_cached(ev, is->keys, err, sizeof err) < 0) {
            import_reject(is, lineno, err);
            event_free(ev);
            continue;
        }
        is->batch[is->nbatch] = ev;
        is->batch_lines[is->nbatch] = lineno;
        is->nbatch++;
        is->batch_bytes += len;
        if ((is->nbatch == IMPORT_BATCH || is->batch_bytes >= IMPORT_BATCH_BYTES) &&
            import_flush(is) < 0) {
            rc = 1;
            break;
        }
        if (tty && (lineno & 255) == 0) {
            double t = now_seconds();
            int due = progress ? t - last_progress >= PROGRESS_EVERY_S
                               : lineno >= PROGRESS_MIN_LINES || t - started >= PROGRESS_AFTER_S;
            if (due) {
                import_progress(in, size, lineno, t - started);
                last_progress = t;
                progress = 1;
            }
        }
    }
    if (rc == 0 && import_flush(is) < 0)
        rc = 1;
    /* Whatever was read is stored: Ctrl-C from here on just kills us, as usual. */
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (progress)
        fputs("\r\033[K", stderr);

    import_print_summary(is, as_json);
    if (read_errno != 0) {
        fprintf(stderr, "negsync: %s: read error after line %llu: %s\n", path,
                (unsigned long long)lineno, strerror(read_errno));
        rc = 1;
    } else if (import_interrupted && rc == 0) {
        /* Not "ok": the file was not imported to the end (exit codes: 0, 1, 2). */
        fprintf(stderr,
                "negsync: import interrupted after line %llu; everything up to it is "
                "stored\n",
                (unsigned long long)lineno);
        rc = 1;
    }
    if (fflush(stdout) != 0 && rc == 0)
        rc = 1;

    for (size_t i = 0; i < is->nbatch; i++)
        event_free(is->batch[i]);
    if (rc != 0 && db_created && !is->committed)
        import_discard_db(is->st, db_path);
    else
        store_close(is->st);
    free(db_path);
    event_keycache_free(is->keys);
    free(is);
    free(line);
    if (in != stdin)
        fclose(in);
    return rc;
}

static int export_line(void *ctx, const char *json, size_t len)
{
    FILE *out = ctx;

    if (fwrite(json, 1, len, out) != len || putc('\n', out) == EOF)
        return 1;
    return 0;
}

static void export_usage(FILE *f)
{
    fputs("usage: negsync export [--filter JSON]\n", f);
}

int cmd_export(struct globals *g, int argc, char **argv)
{
    static const struct option opts[] = {
        {"filter", required_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    char err[STORE_ERRLEN];
    struct filter *f = NULL;
    struct store *st;
    int c, rc;

    optind = 0;
    while ((c = getopt_long(argc, argv, "f:h", opts, NULL)) != -1) {
        switch (c) {
        case 'f':
            filter_free(f);
            if ((f = filter_parse(optarg, err, sizeof err)) == NULL) {
                fprintf(stderr, "negsync: export: --filter: %s\n", err);
                return EXIT_USAGE;
            }
            break;
        case 'h':
            export_usage(stdout);
            filter_free(f);
            return 0;
        default:
            export_usage(stderr);
            filter_free(f);
            return EXIT_USAGE;
        }
    }
    if (optind != argc) {
        export_usage(stderr);
        filter_free(f);
        return EXIT_USAGE;
    }
    if ((st = cmd_open_store_readonly(g, &rc)) == NULL) {
        filter_free(f);
        return rc;
    }
    rc = store_query(st, f, STORE_OLDEST_FIRST, export_line, stdout, err, sizeof err);
    if (rc < 0) {
        fprintf(stderr, "negsync: export: %s\n", err);
        rc = 1;
    } else if (rc == 1 || fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "negsync: export: write error: %s\n", strerror(errno));
        rc = 1;
    }
    store_close(st);
    filter_free(f);
    return rc;
}
