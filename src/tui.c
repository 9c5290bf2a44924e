/*
 * tui: the terminal side of the TUI (see tui.h). Only the thread that calls
 * tui_run touches curses. It sleeps in poll() on four descriptors:
 *
 *   stdin          keys; POLLHUP/POLLERR means the terminal went away
 *   notify fd      the stats model changed (one wake-up per burst)
 *   wake pipe      the engine logged a line or finished a run (any thread)
 *   signal pipe    SIGWINCH/SIGINT/SIGTERM/SIGHUP, taken by a thread of
 *                  their own with sigwait and written here as one byte each
 *
 * Keys redraw at once; engine changes at most every TUI_REDRAW_MS; with
 * nothing that ticks on screen (tui_render says when the frame would change
 * by itself) poll sleeps without a timeout, so an idle TUI neither wakes nor
 * writes. Frames are drawn with erase + wnoutrefresh/doupdate, so curses
 * sends only what changed; clear() only on Ctrl-L.
 *
 * While curses owns the terminal, stderr goes to a log file; a crash
 * (SIGSEGV, SIGABRT...) puts the terminal back before the process dies.
 *
 * NEGSYNC_TUI_TRACE=FILE (for bench/tui-bench) appends a line per wake-up
 * and per frame: "wake MS", "frame MS CAUSE US BYTES" (monotonic ms, why it
 * was drawn, microseconds from the wake-up to doupdate's end, bytes sent to
 * the terminal), and at the end "cpu US WALL_MS" (the UI thread's CPU time).
 */
#include "config.h"

#include <curses.h>
#include <stdarg.h>
#include <errno.h>
#include <fcntl.h>
#include <langinfo.h>
#include <locale.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "cfg.h"
#include "summary.h"
#include "sync.h"
#include "tui.h"
#include "util.h"

struct tui {
    struct tui_opts o;

    /* Shared with the engine's threads, under mu. */
    pthread_mutex_t mu;
    struct tui_log pending; /* lines not yet taken by the UI */
    struct tui_relay_extra *extra;
    size_t nextra;
    uint64_t runs, stored, failed;
    struct summary sum; /* per relay, printed after the terminal is restored */
    int quitting;       /* runs that fail from now on were interrupted */
    int wake[2];        /* self-pipe: something above changed */

    /* The UI thread's. */
    int sigp[2];
    struct tui_log log;
    struct tui_view v;
    struct tui_relay_extra *vextra; /* the copy the frame is drawn from */
    struct stats_snapshot snap;
    int have_snap;
    struct tui_screen scr;
    int colors;
    FILE *trace; /* NEGSYNC_TUI_TRACE, or NULL */
    FILE *out;   /* what curses writes to: stdout, or a counting wrapper */
};

static int64_t mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*
 * Bytes this thread has written so far (/proc/thread-self/io), for the
 * trace: around a frame, that is what went to the terminal. 0 where unknown.
 */
static uint64_t thread_wchar(void)
{
    FILE *f = fopen("/proc/thread-self/io", "r");
    char line[128];
    unsigned long long n = 0;

    if (f == NULL)
        return 0;
    while (fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "wchar: %llu", &n) == 1)
            break;
    fclose(f);
    return n;
}

static int64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void now_ts(char out[9])
{
    time_t now = time(NULL);
    struct tm tm;

    localtime_r(&now, &tm);
    strftime(out, 9, "%H:%M:%S", &tm);
}

static void wake_ui(struct tui *t)
{
    char c = 1;

    /* The pipe is non-blocking: a full pipe already means "wake up". */
    if (write(t->wake[1], &c, 1) < 0 && errno != EAGAIN)
        return;
}

static int pipe_nb(int p[2])
{
    if (pipe(p) < 0)
        return -1;
    for (int i = 0; i < 2; i++) {
        fcntl(p[i], F_SETFL, fcntl(p[i], F_GETFL) | O_NONBLOCK);
        fcntl(p[i], F_SETFD, FD_CLOEXEC);
    }
    return 0;
}

struct tui *tui_new(const struct tui_opts *o, char *err, size_t errlen)
{
    struct tui *t = xcalloc(1, sizeof *t);
    struct stats_snapshot s;

    t->o = *o;
    pthread_mutex_init(&t->mu, NULL);
    t->wake[0] = t->wake[1] = t->sigp[0] = t->sigp[1] = -1;
    if (pipe_nb(t->wake) < 0 || pipe_nb(t->sigp) < 0) {
        set_error(err, errlen, "cannot make a pipe: %s", strerror(errno));
        tui_free(t);
        return NULL;
    }
    tui_log_init(&t->pending, TUI_LOG_MAX);
    tui_log_init(&t->log, TUI_LOG_MAX);
    stats_snapshot(o->stats, &s);
    t->nextra = s.nrelays;
    t->extra = xcalloc(s.nrelays + 1, sizeof *t->extra);
    t->vextra = xcalloc(s.nrelays + 1, sizeof *t->vextra);
    for (size_t i = 0; i < s.nrelays && o->cfg != NULL; i++) {
        const struct config_relay *r = config_find_relay(o->cfg, s.relays[i].url);
        t->extra[i].tls_unverified = r != NULL && !r->tls_verify;
    }
    stats_snapshot_free(&s);
    return t;
}

void tui_free(struct tui *t)
{
    if (t == NULL)
        return;
    for (int i = 0; i < 2; i++) {
        if (t->wake[i] >= 0)
            close(t->wake[i]);
        if (t->sigp[i] >= 0)
            close(t->sigp[i]);
    }
    if (t->have_snap)
        stats_snapshot_free(&t->snap);
    tui_log_free(&t->pending);
    tui_log_free(&t->log);
    tui_screen_free(&t->scr);
    free(t->extra);
    free(t->vextra);
    summary_free(&t->sum);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

void tui_engine_log(void *arg, const char *line)
{
    struct tui *t = arg;
    char ts[9];

    now_ts(ts);
    pthread_mutex_lock(&t->mu);
    tui_log_add(&t->pending, ts, line);
    pthread_mutex_unlock(&t->mu);
    wake_ui(t);
}

void tui_engine_run(void *arg, const struct sync_run *r)
{
    struct tui *t = arg;
    int idx = stats_relay_index(t->o.stats, r->relay);

    pthread_mutex_lock(&t->mu);
    t->runs++;
    t->stored += r->stored;
    if (!r->ok && !t->quitting)
        t->failed++;
    if (idx >= 0 && (size_t)idx < t->nextra && r->ok) {
        struct tui_relay_extra *e = &t->extra[idx];
        uint64_t used = r->bytes_sent + r->bytes_received;
        uint8_t pct = 255;
        if (r->est_req_bytes > 0)
            pct = used >= r->est_req_bytes
                      ? 0
                      : (uint8_t)((r->est_req_bytes - used) * 100 / r->est_req_bytes);
        if (e->nhist == TUI_HISTORY) {
            memmove(e->hist, e->hist + 1, TUI_HISTORY - 1);
            e->nhist--;
        }
        e->hist[e->nhist++] = pct;
    }
    summary_add(&t->sum, r);
    pthread_mutex_unlock(&t->mu);
    wake_ui(t);
}

void tui_print_summary(struct tui *t, FILE *f)
{
    pthread_mutex_lock(&t->mu);
    if (t->sum.n == 0)
        fprintf(f, "negsync: no sync finished while the TUI ran\n");
    else
        summary_print(&t->sum, f);
    pthread_mutex_unlock(&t->mu);
}

int tui_failed(struct tui *t)
{
    int failed;

    pthread_mutex_lock(&t->mu);
    failed = t->failed > 0;
    pthread_mutex_unlock(&t->mu);
    return failed;
}

/* ---- signals ------------------------------------------------------------------- */

static void tui_sigset(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGHUP);
    sigaddset(set, SIGWINCH);
    sigaddset(set, SIGUSR2); /* ours: the signal thread's "stop" */
}

void tui_signals_block(sigset_t *old)
{
    sigset_t set;

    tui_sigset(&set);
    pthread_sigmask(SIG_BLOCK, &set, old);
}

static void *sig_main(void *arg)
{
    struct tui *t = arg;
    sigset_t set;
    int sig;

    thread_name("negsync-sig");
    tui_sigset(&set);
    for (;;) {
        unsigned char c;
        if (sigwait(&set, &sig) != 0)
            continue;
        if (sig == SIGUSR2)
            return NULL;
        c = (unsigned char)sig;
        if (write(t->sigp[1], &c, 1) < 0 && errno != EAGAIN)
            continue;
    }
}

/* The terminal as it was, for the crash handler (which may use no curses). */
static struct termios crash_termios;
static int crash_have_termios;

static void crash_handler(int sig)
{
    static const char restore[] = "\033[0m\033[?25h\033[?1049l\r\n";

    if (crash_have_termios)
        tcsetattr(STDIN_FILENO, TCSANOW, &crash_termios);
    if (write(STDOUT_FILENO, restore, sizeof restore - 1) < 0) {
        /* nothing more to do */
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static void crash_handlers(int on)
{
    static const int sigs[] = {SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL};
    struct sigaction sa;

    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on ? crash_handler : SIG_DFL;
    sa.sa_flags = on ? (int)SA_RESETHAND : 0;
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        sigaction(sigs[i], &sa, NULL);
}

/* ---- drawing -------------------------------------------------------------------- */

enum { PAIR_HEADER = 1, PAIR_TITLE, PAIR_GOOD, PAIR_BAD, PAIR_WARN, PAIR_DIM, PAIR_KEY };

static void colors_init(struct tui *t)
{
    const char *nc = getenv("NO_COLOR");

    t->colors = 0;
    if (t->o.no_color || (nc != NULL && nc[0] != '\0') || !has_colors())
        return;
    if (start_color() == ERR)
        return;
    use_default_colors();
    init_pair(PAIR_HEADER, COLOR_BLACK, COLOR_CYAN);
    init_pair(PAIR_TITLE, COLOR_CYAN, -1);
    init_pair(PAIR_GOOD, COLOR_GREEN, -1);
    init_pair(PAIR_BAD, COLOR_RED, -1);
    init_pair(PAIR_WARN, COLOR_YELLOW, -1);
    init_pair(PAIR_DIM, COLOR_BLUE, -1);
    init_pair(PAIR_KEY, COLOR_BLACK, COLOR_CYAN);
    t->colors = 1;
}

/* Colors, or attributes that read in monochrome. */
static attr_t attr_of(const struct tui *t, uint8_t a)
{
    attr_t sel = (a & TUI_A_SEL) ? A_REVERSE : 0;

    a &= (uint8_t)~TUI_A_SEL;
    if (t->colors) {
        switch (a) {
        case TUI_A_HEADER: return COLOR_PAIR(PAIR_HEADER) | A_BOLD;
        case TUI_A_TITLE: return COLOR_PAIR(PAIR_TITLE) | A_BOLD | sel;
        case TUI_A_GOOD: return COLOR_PAIR(PAIR_GOOD) | sel;
        case TUI_A_BAD: return COLOR_PAIR(PAIR_BAD) | A_BOLD | sel;
        case TUI_A_WARN: return COLOR_PAIR(PAIR_WARN) | sel;
        case TUI_A_DIM: return COLOR_PAIR(PAIR_DIM) | sel;
        case TUI_A_KEY: return COLOR_PAIR(PAIR_KEY);
        default: return sel;
        }
    }
    switch (a) {
    case TUI_A_HEADER: return A_REVERSE | A_BOLD;
    case TUI_A_TITLE: return A_BOLD | sel;
    case TUI_A_BAD: return A_BOLD | sel;
    case TUI_A_DIM: return A_DIM | sel;
    case TUI_A_KEY: return A_REVERSE;
    default: return sel;
    }
}

/* Moves what the engine's threads left for the UI into the UI's copies. */
static void take_shared(struct tui *t)
{
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; i < t->pending.n; i++) {
        const struct tui_log_line *l = tui_log_at(&t->pending, i);
        tui_log_add(&t->log, l->ts, l->text);
    }
    t->pending.n = t->pending.start = 0;
    memcpy(t->vextra, t->extra, t->nextra * sizeof *t->extra);
    t->v.runs = t->runs;
    t->v.stored = t->stored;
    pthread_mutex_unlock(&t->mu);
}

/* Keeps the selection within the relays and on screen. */
static void fix_selection(struct tui *t, int w, int h)
{
    size_t n = t->snap.nrelays;
    int rows = tui_list_rows(&t->v, &t->snap, w, h);

    if (n == 0) {
        t->v.selected = t->v.top = 0;
        return;
    }
    if (t->v.selected >= n)
        t->v.selected = n - 1;
    if (rows < 1)
        rows = 1;
    if (t->v.selected < t->v.top)
        t->v.top = t->v.selected;
    if (t->v.selected >= t->v.top + (size_t)rows)
        t->v.top = t->v.selected - (size_t)rows + 1;
    if (t->v.top + (size_t)rows > n)
        t->v.top = n > (size_t)rows ? n - (size_t)rows : 0;
}

/* Draws a frame; returns the delay until it would change by itself (-1: never). */
static int64_t draw(struct tui *t)
{
    int h, w;
    int64_t tick;
    char run[1024];

    getmaxyx(stdscr, h, w);
    if (t->scr.cells == NULL || t->scr.w != w || t->scr.h != h) {
        tui_screen_free(&t->scr);
        tui_screen_init(&t->scr, w, h);
    }
    if (t->have_snap)
        stats_snapshot_free(&t->snap);
    stats_snapshot(t->o.stats, &t->snap);
    t->have_snap = 1;
    take_shared(t);
    t->v.now_ms = mono_ms();
    t->v.now_unix = time(NULL);
    fix_selection(t, w, h);
    tui_render(&t->v, &t->snap, &t->scr, &tick);

    erase();
    for (int y = 0; y < t->scr.h; y++) {
        int x = 0;
        while (x < t->scr.w) {
            uint8_t a = t->scr.cells[(size_t)y * (size_t)t->scr.w + (size_t)x].attr;
            int x0 = x;
            size_t n = 0;
            /* The bottom-right cell is left alone: writing it would scroll some terminals. */
            int end = y == t->scr.h - 1 ? t->scr.w - 1 : t->scr.w;
            while (x < end) {
                const struct tui_cell *c = &t->scr.cells[(size_t)y * (size_t)t->scr.w + (size_t)x];
                if (c->attr != a || n + c->n + 1 > sizeof run)
                    break;
                memcpy(run + n, c->s, c->n);
                n += c->n;
                x++;
            }
            if (x == x0) {
                x++;
                continue;
            }
            run[n] = '\0';
            attrset(attr_of(t, a));
            mvaddstr(y, x0, run);
        }
    }
    attrset(A_NORMAL);
    move(t->scr.cursor_row, 0);
    wnoutrefresh(stdscr);
    doupdate();
    return tick;
}

/* ---- keys ------------------------------------------------------------------------ */

static const char *sel_url(const struct tui *t)
{
    if (!t->have_snap || t->v.selected >= t->snap.nrelays)
        return NULL;
    return t->snap.relays[t->v.selected].url;
}

static void ui_log(struct tui *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void ui_log(struct tui *t, const char *fmt, ...)
{
    char line[TUI_LOG_LEN], ts[9];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    now_ts(ts);
    tui_log_add(&t->log, ts, line);
}

static void key_neg(struct tui *t)
{
    const char *url = sel_url(t);
    const struct stats_relay *r;
    enum config_negentropy next;
    char err[SYNC_ERRLEN];

    if (url == NULL)
        return;
    r = &t->snap.relays[t->v.selected];
    /* auto → off → on → auto */
    switch (r->neg_setting) {
    case STATS_NEG_AUTO: next = CONFIG_NEGENTROPY_OFF; break;
    case STATS_NEG_OFF: next = CONFIG_NEGENTROPY_ON; break;
    default: next = CONFIG_NEGENTROPY_AUTO; break;
    }
    if (sync_engine_set_negentropy(t->o.engine, url, next, err, sizeof err) < 0)
        ui_log(t, "[TUI] negentropy for %s not changed: %s", url, err);
    else
        ui_log(t, "[TUI] negentropy = %s for %s (saved; from its next sync)",
               config_negentropy_name(next), url);
}

/* What the loop should do after a key. */
enum key_result { KEY_NONE, KEY_DRAW, KEY_QUIT, KEY_REPAINT };

static enum key_result key(struct tui *t, int ch)
{
    int h, w, page;
    const char *url = sel_url(t);
    size_t n = t->have_snap ? t->snap.nrelays : 0;
    int in_log = t->v.overlay == TUI_OVERLAY_LOG;

    getmaxyx(stdscr, h, w);
    page = in_log ? h - 3 : tui_list_rows(&t->v, &t->snap, w, h);
    if (page < 1)
        page = 1;
    switch (ch) {
    case 'q':
    case 3: /* Ctrl-C when it arrives as a key */ return KEY_QUIT;
    case 27: /* Esc closes an overlay, never quits */
        t->v.overlay = TUI_OVERLAY_NONE;
        t->v.log_scroll = 0;
        return KEY_DRAW;
    case 12: return KEY_REPAINT; /* Ctrl-L */
    case KEY_RESIZE: return KEY_DRAW;
    case '?':
    case KEY_F(1):
        t->v.overlay = t->v.overlay == TUI_OVERLAY_HELP ? TUI_OVERLAY_NONE : TUI_OVERLAY_HELP;
        return KEY_DRAW;
    case 'l':
        t->v.overlay = in_log ? TUI_OVERLAY_NONE : TUI_OVERLAY_LOG;
        t->v.log_scroll = 0;
        return KEY_DRAW;
    case '\n':
    case '\r':
    case KEY_ENTER:
        t->v.overlay = t->v.overlay == TUI_OVERLAY_DETAIL ? TUI_OVERLAY_NONE : TUI_OVERLAY_DETAIL;
        return KEY_DRAW;
    case KEY_UP:
    case 'k':
        if (in_log)
            t->v.log_scroll++;
        else if (t->v.selected > 0)
            t->v.selected--;
        break;
    case KEY_DOWN:
    case 'j':
        if (in_log)
            t->v.log_scroll = t->v.log_scroll > 0 ? t->v.log_scroll - 1 : 0;
        else if (t->v.selected + 1 < n)
            t->v.selected++;
        break;
    case KEY_PPAGE:
        if (in_log)
            t->v.log_scroll += (size_t)page;
        else
            t->v.selected = t->v.selected > (size_t)page ? t->v.selected - (size_t)page : 0;
        break;
    case KEY_NPAGE:
        if (in_log)
            t->v.log_scroll = t->v.log_scroll > (size_t)page ? t->v.log_scroll - (size_t)page : 0;
        else
            t->v.selected = t->v.selected + (size_t)page < n ? t->v.selected + (size_t)page
                            : n > 0                          ? n - 1
                                                             : 0;
        break;
    case 'g':
    case KEY_HOME:
        if (in_log)
            t->v.log_scroll = t->log.n;
        else
            t->v.selected = 0;
        break;
    case 'G':
    case KEY_END:
        if (in_log)
            t->v.log_scroll = 0;
        else
            t->v.selected = n > 0 ? n - 1 : 0;
        break;
    case 'n': key_neg(t); break;
    case 'p':
        if (url != NULL) {
            if (sync_engine_reprobe(t->o.engine, url) < 0)
                ui_log(t, "[TUI] cannot re-probe %s", url);
            else
                ui_log(t, "[TUI] re-probing %s (ignoring the cache)", url);
        }
        break;
    case 's':
        if (url != NULL) {
            if (sync_engine_sync_relay(t->o.engine, url) < 0)
                ui_log(t, "[TUI] cannot sync %s", url);
            else
                ui_log(t, "[TUI] sync %s now", url);
        }
        break;
    case 'S':
        sync_engine_sync_all(t->o.engine);
        ui_log(t, "[TUI] sync every relay now");
        break;
    default: return KEY_NONE;
    }
    if (in_log && t->v.log_scroll > t->log.n)
        t->v.log_scroll = t->log.n;
    return KEY_DRAW;
}

static void trace_close(struct tui *t)
{
    if (t->trace != NULL)
        fclose(t->trace);
    t->trace = NULL;
}

/* ---- the loop ----------------------------------------------------------------------- */

static void resize_from_tty(void)
{
    struct winsize ws;

    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 && ws.ws_col > 0)
        resizeterm(ws.ws_row, ws.ws_col);
}

/* Points stderr at path (appending); returns the old stderr and the file's size, or -1. */
static int stderr_to(const char *path, off_t *start)
{
    int fd, saved;
    struct stat st;

    if (path == NULL)
        return -1;
    fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    *start = fstat(fd, &st) == 0 ? st.st_size : 0;
    fflush(stderr);
    saved = dup(STDERR_FILENO);
    if (saved < 0 || dup2(fd, STDERR_FILENO) < 0) {
        if (saved >= 0)
            close(saved);
        close(fd);
        return -1;
    }
    close(fd);
    return saved;
}

/* Puts stderr back and prints what was written to path since start (its last 20 lines). */
static void stderr_back(int saved, const char *path, off_t start)
{
    FILE *f;
    char *lines[20] = {0};
    char buf[1024];
    size_t n = 0;

    if (saved < 0)
        return;
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    if ((f = fopen(path, "r")) == NULL)
        return;
    if (fseeko(f, start, SEEK_SET) == 0) {
        while (fgets(buf, sizeof buf, f) != NULL) {
            free(lines[n % 20]);
            lines[n % 20] = xstrdup(buf);
            n++;
        }
    }
    fclose(f);
    if (n > 0)
        fprintf(stderr, "negsync: from %s:\n", path);
    for (size_t i = n > 20 ? n - 20 : 0; i < n; i++)
        fputs(lines[i % 20], stderr);
    for (size_t i = 0; i < 20; i++)
        free(lines[i]);
}

int tui_run(struct tui *t, const char *stderr_path, char *err, size_t errlen)
{
    SCREEN *scr;
    pthread_t sig_thr;
    int saved_err;
    off_t err_start = 0;
    int64_t last_draw = 0, tick_at = -1, now;
    int engine_dirty = 0, quit = 0, empty_reads = 0;
    const char *cs;

    if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
        set_error(err, errlen, "the TUI needs a terminal on stdin and stdout");
        return -1;
    }
    setlocale(LC_CTYPE, ""); /* only the character set: numbers stay C for JSON and SQL */
    cs = nl_langinfo(CODESET);
    t->v.ascii = t->o.ascii || cs == NULL || strcmp(cs, "UTF-8") != 0;
    t->v.db_name = t->o.db_name;
    t->v.use_negentropy = t->o.use_negentropy;
    t->v.continuous = t->o.continuous;
    t->v.extra = t->vextra;
    t->v.log = &t->log;

    crash_have_termios = tcgetattr(STDIN_FILENO, &crash_termios) == 0;
    if (getenv("NEGSYNC_TUI_TRACE") != NULL && getenv("NEGSYNC_TUI_TRACE")[0] != '\0') {
        t->trace = fopen(getenv("NEGSYNC_TUI_TRACE"), "a");
        if (t->trace != NULL)
            setvbuf(t->trace, NULL, _IOLBF, 0);
    }
    saved_err = stderr_to(stderr_path, &err_start);
    if ((scr = newterm(NULL, stdout, stdin)) == NULL) {
        stderr_back(saved_err, stderr_path, err_start);
        trace_close(t);
        set_error(err, errlen, "cannot use the terminal (TERM=%s)",
                  getenv("TERM") ? getenv("TERM") : "");
        return -1;
    }
    crash_handlers(1);
    if (getenv("ESCDELAY") == NULL)
        set_escdelay(25);
    cbreak();
    noecho();
    nonl();
    keypad(stdscr, TRUE);
    nodelay(stdscr, TRUE);
    leaveok(stdscr, FALSE);
    curs_set(0);
    colors_init(t);
    if (pthread_create(&sig_thr, NULL, sig_main, t) != 0) {
        endwin();
        delscreen(scr);
        crash_handlers(0);
        stderr_back(saved_err, stderr_path, err_start);
        trace_close(t);
        set_error(err, errlen, "cannot start the signal thread");
        return -1;
    }

    int64_t t_start = mono_us(), wake_us;
    int64_t tick = draw(t);
    last_draw = mono_ms();
    tick_at = tick >= 0 ? last_draw + tick : -1;
    while (!quit) {
        struct pollfd pf[4] = {
            {STDIN_FILENO, POLLIN, 0},
            {stats_notify_fd(t->o.stats), POLLIN, 0},
            {t->wake[0], POLLIN, 0},
            {t->sigp[0], POLLIN, 0},
        };
        int timeout = -1, redraw = 0, repaint = 0;

        now = mono_ms();
        if (engine_dirty) {
            int64_t d = last_draw + TUI_REDRAW_MS - now;
            timeout = d > 0 ? (int)d : 0;
        }
        if (tick_at >= 0) {
            int64_t d = tick_at - now;
            if (d < 0)
                d = 0;
            if (timeout < 0 || d < timeout)
                timeout = (int)d;
        }
        if (poll(pf, 4, timeout) < 0 && errno != EINTR)
            break;
        now = mono_ms();
        wake_us = mono_us();
        if (t->trace != NULL)
            fprintf(t->trace, "wake %lld\n", (long long)now);

        if (pf[3].revents & POLLIN) {
            unsigned char sigs[16];
            ssize_t k = read(t->sigp[0], sigs, sizeof sigs);
            for (ssize_t i = 0; i < k; i++) {
                if (sigs[i] == SIGWINCH) {
                    resize_from_tty();
                    redraw = 1;
                } else {
                    quit = 1;
                }
            }
        }
        if (pf[0].revents & (POLLHUP | POLLERR | POLLNVAL)) {
            quit = 1; /* the terminal went away */
        } else if (pf[0].revents & POLLIN) {
            int ch, got = 0;
            while (!quit && (ch = getch()) != ERR) {
                enum key_result r = key(t, ch);
                got = 1;
                if (r == KEY_QUIT)
                    quit = 1;
                else if (r == KEY_REPAINT)
                    repaint = 1;
                else if (r == KEY_DRAW)
                    redraw = 1;
            }
            /* Readable but nothing to read, again and again: the terminal is gone. */
            empty_reads = got ? 0 : empty_reads + 1;
            if (empty_reads > 50)
                quit = 1;
        }
        if (pf[1].revents & POLLIN) {
            stats_notify_ack(t->o.stats);
            engine_dirty = 1;
        }
        if (pf[2].revents & POLLIN) {
            char drain[256];
            while (read(t->wake[0], drain, sizeof drain) > 0)
                ;
            engine_dirty = 1;
        }
        if (quit)
            break;
        if (engine_dirty && now - last_draw >= TUI_REDRAW_MS)
            redraw = 1;
        if (tick_at >= 0 && now >= tick_at)
            redraw = 1;
        if (repaint)
            clearok(curscr, TRUE);
        if (redraw || repaint) {
            const char *cause = repaint                    ? "repaint"
                                : (pf[0].revents & POLLIN) ? "key"
                                : (pf[3].revents & POLLIN) ? "signal"
                                : engine_dirty             ? "engine"
                                                           : "tick";
            uint64_t bytes0 = t->trace != NULL ? thread_wchar() : 0;
            tick = draw(t);
            if (t->trace != NULL)
                fprintf(t->trace, "frame %lld %s %lld %llu\n", (long long)now, cause,
                        (long long)(mono_us() - wake_us),
                        (unsigned long long)(thread_wchar() - bytes0));
            last_draw = mono_ms();
            tick_at = tick >= 0 ? last_draw + tick : -1;
            engine_dirty = 0;
        }
    }

    if (t->trace != NULL) {
        struct rusage ru;
        if (getrusage(RUSAGE_THREAD, &ru) == 0)
            fprintf(t->trace, "cpu %lld %lld\n",
                    (long long)ru.ru_utime.tv_sec * 1000000 + ru.ru_utime.tv_usec +
                        (long long)ru.ru_stime.tv_sec * 1000000 + ru.ru_stime.tv_usec,
                    (long long)((mono_us() - t_start) / 1000));
    }
    pthread_mutex_lock(&t->mu);
    t->quitting = 1;
    pthread_mutex_unlock(&t->mu);
    /* Jobs store what they received and end; sync_engine_free (the caller's) joins. */
    sync_engine_stop(t->o.engine);
    endwin();
    delscreen(scr);
    crash_handlers(0);
    pthread_kill(sig_thr, SIGUSR2);
    pthread_join(sig_thr, NULL);
    stderr_back(saved_err, stderr_path, err_start);
    trace_close(t);
    return 0;
}
