/*
 * tui-int: what the parts of the TUI's pure formatting share (tui-draw.c and
 * tui-detail.c): the glyph set, the frame being drawn (struct tui_ctx), the
 * grid and number helpers and the labelled lines of a relay's detail.
 * Private to src/tui-draw.c and src/tui-detail.c.
 */
#ifndef NEGSYNC_TUI_INT_H
#define NEGSYNC_TUI_INT_H

#include <stddef.h>
#include <stdint.h>

#include "stats.h"
#include "tui.h"

struct tui_glyphs {
    const char *rule, *dot, *arrow, *mode_arrow, *updown, *ell, *dash;
    const char *box_tl, *box_tr, *box_bl, *box_br, *box_v;
    const char *spark[8];
};

struct tui_ctx {
    const struct tui_view *v;
    const struct stats_snapshot *s;
    struct tui_screen *scr;
    const struct tui_glyphs *g;
    int64_t tick; /* ms until the frame changes by itself; -1 never */
};

struct tui_dline {
    char label[STATS_NAME_MAX];
    char text[1024];
    uint8_t attr;
};

struct tui_dlines {
    struct tui_dline *l;
    size_t n, cap;
};

/* tui-draw.c: the grid, numbers and per relay facts. */
int tui_put(struct tui_screen *scr, int y, int x, int maxx, uint8_t attr, const char *s);
void tui_clean(const char *in, char *out, size_t outlen);
void tui_fmt_bytes(uint64_t n, char *out, size_t len);
int tui_saved_pct(uint64_t est, uint64_t used);
void tui_fmt_pct(int pct, char *out, size_t len);
void tui_tick_in(struct tui_ctx *c, int64_t ms);
void tui_fmt_ago(struct tui_ctx *c, int64_t since_unix, char *out, size_t len);
void tui_fmt_countdown(struct tui_ctx *c, int64_t at_ms, char *out, size_t len);
int tui_relay_running(const struct stats_relay *r);
const char *tui_cap_source_name(enum stats_cap_source s);
const char *tui_neg_name(enum stats_neg_setting s);

/* tui-detail.c: the detail of one relay, as labelled lines. */
void tui_detail_lines(struct tui_ctx *c, size_t i, int full, struct tui_dlines *d);
void tui_draw_dline(struct tui_ctx *c, int y, const struct tui_dline *l);
int tui_draw_dlines_wrapped(struct tui_ctx *c, int y, int n, size_t skip,
                            const struct tui_dlines *d);

#endif
