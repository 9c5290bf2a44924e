/*
 * tui: the terminal front end (`negsync` on a terminal, `negsync tui`).
 *
 * Two halves. tui-draw.c is pure formatting: from a stats snapshot, the
 * log and the UI's own state (struct tui_view) it renders a grid of cells
 * (struct tui_screen), with no terminal and no clock of its own, so that
 * layouts can be compared against golden files. tui.c owns the terminal:
 * one thread (the caller's) runs curses, waits in poll() on stdin, the stats
 * model's notify descriptor and a self-pipe fed by the log callback and the
 * signal thread, turns keys into engine commands and blits the grid. Workers
 * never touch curses; the UI never opens a socket or a database statement.
 */
#ifndef NEGSYNC_TUI_H
#define NEGSYNC_TUI_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "stats.h"

#define TUI_LOG_MAX   1000 /* log lines kept */
#define TUI_LOG_LEN   512  /* longest log line kept, bytes */
#define TUI_HISTORY   16   /* saved % of the last runs, per relay */
#define TUI_MIN_W     60
#define TUI_MIN_H     12
#define TUI_REDRAW_MS 100 /* engine changes redraw at most 10 times a second */

/* What a cell looks like; tui.c maps these to colors or monochrome attributes. */
enum tui_attr {
    TUI_A_NORMAL,
    TUI_A_HEADER, /* the top line */
    TUI_A_TITLE,  /* column titles, pane rules */
    TUI_A_GOOD,   /* supported, NEG, ok */
    TUI_A_BAD,    /* errors, unreachable */
    TUI_A_WARN,   /* REQ, fallbacks, overrides */
    TUI_A_DIM,    /* idle, unknown, secondary */
    TUI_A_KEY,    /* the key bar */
};
#define TUI_A_SEL 0x80 /* or'ed in: the selected row */

struct tui_cell {
    char s[4]; /* one UTF-8 character */
    uint8_t n; /* its bytes */
    uint8_t attr;
};

struct tui_screen {
    int w, h;
    struct tui_cell *cells; /* w*h, row-major */
    int cursor_row;         /* where the (hidden) cursor sits: the selected row */
};

void tui_screen_init(struct tui_screen *scr, int w, int h);
void tui_screen_free(struct tui_screen *scr);
/* Row y as UTF-8 text without trailing spaces, into out (caller's, w*4+1 bytes). */
void tui_screen_row_text(const struct tui_screen *scr, int y, char *out, size_t outlen);

enum tui_overlay { TUI_OVERLAY_NONE, TUI_OVERLAY_DETAIL, TUI_OVERLAY_LOG, TUI_OVERLAY_HELP };

struct tui_log_line {
    char ts[9]; /* "HH:MM:SS", local time of arrival */
    char text[TUI_LOG_LEN];
};

/* A ring of the last TUI_LOG_MAX lines; lines[(start + i) % cap] is the i-th oldest. */
struct tui_log {
    struct tui_log_line *lines;
    size_t cap, start, n;
};

void tui_log_init(struct tui_log *log, size_t cap);
void tui_log_free(struct tui_log *log);
/* Appends a line (cut, control characters replaced), dropping the oldest when full. */
void tui_log_add(struct tui_log *log, const char *ts, const char *text);
const struct tui_log_line *tui_log_at(const struct tui_log *log, size_t i);

/* What the UI keeps per relay beside the snapshot (same index). */
struct tui_relay_extra {
    int tls_unverified;        /* tls_verify = false in the config */
    uint8_t hist[TUI_HISTORY]; /* saved % of its last runs, oldest first; 255: no estimate */
    size_t nhist;
};

/* Everything a frame is drawn from besides the snapshot. */
struct tui_view {
    /* Settings. */
    int ascii;           /* nothing outside printable ASCII */
    const char *db_name; /* shown in the header */
    int use_negentropy;  /* [sync] use_negentropy: "auto" means NIP-77 is tried */
    int continuous;      /* rounds every interval */
    /* State. */
    size_t selected, top; /* selected relay; first relay row shown */
    enum tui_overlay overlay;
    size_t log_scroll; /* log overlay: lines up from the newest */
    /* This session's finished runs, from the engine's on_run. */
    uint64_t runs, stored, used_bytes, est_bytes;
    struct tui_relay_extra *extra; /* one per snapshot relay, or NULL */
    const struct tui_log *log;
    /* Clocks: monotonic ms (as stats uses) and unix seconds. */
    int64_t now_ms, now_unix;
};

/*
 * Renders a frame of v and s into scr (already sized). Sets *next_tick_ms
 * to the delay after which the frame would read differently with no change
 * to its inputs (a countdown, an age, a stall timer), or -1 when nothing on
 * it depends on the clock.
 */
void tui_render(const struct tui_view *v, const struct stats_snapshot *s, struct tui_screen *scr,
                int64_t *next_tick_ms);

/* The rows the relay list shows on a screen of height h (to page and scroll). */
int tui_list_rows(const struct tui_view *v, const struct stats_snapshot *s, int w, int h);

/* ---- tui.c: the terminal ----------------------------------------------------- */

struct config;
struct sync_engine;
struct sync_run;
struct tui;

struct tui_opts {
    struct sync_engine *engine; /* started or not; commands go to it */
    struct stats *stats;        /* the engine's live model */
    const char *db_name;
    int use_negentropy, continuous;
    int no_color, ascii;
    const struct config *cfg; /* tls_verify per relay; may be NULL */
};

/*
 * A UI not yet on the terminal; its log and run callbacks may be handed to
 * the engine before tui_run. NULL with a reason in err.
 */
struct tui *tui_new(const struct tui_opts *o, char *err, size_t errlen);
void tui_free(struct tui *t);
/* For sync_engine_opts.log / on_run: any thread, never blocks on the UI. */
void tui_engine_log(void *tui, const char *line);
void tui_engine_run(void *tui, const struct sync_run *run);

/*
 * Blocks, in the calling thread and every thread it starts afterwards (call
 * it before the engine starts its workers), the signals the UI takes through
 * its signal thread: SIGINT, SIGTERM, SIGHUP, SIGWINCH. The old mask in old.
 */
void tui_signals_block(sigset_t *old);

/*
 * Takes the terminal (stdin/stdout), runs until q, Ctrl-C, SIGTERM, SIGHUP or
 * the terminal going away, asks the engine to stop, restores the terminal.
 * stderr goes to stderr_path meanwhile (NULL: left alone); its new lines are
 * printed after the terminal is restored. 0, or -1 with a reason in err when
 * the terminal could not be taken.
 */
int tui_run(struct tui *t, const char *stderr_path, char *err, size_t errlen);

/*
 * The summary of the runs that ended while the UI ran, one row per relay, as
 * `negsync sync --once` prints it. Call after the engine is freed.
 */
void tui_print_summary(struct tui *t, FILE *f);
/* 1 when some run of this session failed (not counting interrupted ones). */
int tui_failed(struct tui *t);

#endif
