/*
 * tui-detail: the detail of one relay, as labelled lines (the TUI's detail
 * pane and its full-screen overlay): its NIP-77 support, NIP-11 facts,
 * settings, the run in progress and the last runs, then the drawing of those
 * lines at the screen's width. Pure formatting like tui-draw.c, whose grid
 * and number helpers it uses through tui-int.h; every outside string goes
 * through tui_clean() before it is drawn.
 */
#include "config.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tui-int.h"
#include "tui.h"
#include "util.h"

static struct tui_dline *dl_add(struct tui_dlines *d, const char *label, uint8_t attr)
{
    struct tui_dline *l;

    if (d->n == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 16;
        d->l = xreallocarray(d->l, d->cap, sizeof *d->l);
    }
    l = &d->l[d->n++];
    tui_clean(label, l->label, sizeof l->label);
    l->text[0] = '\0';
    l->attr = attr;
    return l;
}

static void dl_printf(struct tui_dline *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void dl_printf(struct tui_dline *l, const char *fmt, ...)
{
    size_t n = strlen(l->text);
    va_list ap;

    if (n + 1 >= sizeof l->text)
        return;
    va_start(ap, fmt);
    vsnprintf(l->text + n, sizeof l->text - n, fmt, ap);
    va_end(ap);
}

/* [#####.....] of width w for done/total. */
static void progress_bar(uint64_t done, uint64_t total, int w, char *out, size_t len)
{
    int fill = total > 0 ? (int)((done >= total ? total : done) * (uint64_t)w / total) : 0;
    size_t n = 0;

    if (len < (size_t)w + 3)
        return;
    out[n++] = '[';
    for (int i = 0; i < w; i++)
        out[n++] = i < fill ? '#' : '.';
    out[n++] = ']';
    out[n] = '\0';
}

void tui_detail_lines(struct tui_ctx *c, size_t i, int full, struct tui_dlines *d)
{
    const struct stats_relay *r = &c->s->relays[i];
    const char *dot = c->g->dot;
    char t[64], a[64], b[64], reason[STATS_REASON_MAX];
    struct tui_dline *l;

    /* Capability, its age and source, the relay's own reason, its software. */
    tui_clean(r->cap_reason, reason, sizeof reason);
    switch (r->cap) {
    case STATS_CAP_SUPPORTED:
        l = dl_add(d, "capability", TUI_A_GOOD);
        dl_printf(l, "supported");
        break;
    case STATS_CAP_UNSUPPORTED:
        l = dl_add(d, "capability", TUI_A_WARN);
        dl_printf(l, "unsupported");
        break;
    case STATS_CAP_UNREACHABLE:
        l = dl_add(d, "capability", TUI_A_BAD);
        dl_printf(l, "unreachable");
        break;
    default:
        l = dl_add(d, "capability", TUI_A_DIM);
        dl_printf(l, "not checked yet");
        break;
    }
    if (r->phase == STATS_PHASE_PROBING)
        dl_printf(l, ", probing now");
    if (r->cap != STATS_CAP_UNKNOWN && r->cap_checked_at > 0) {
        tui_fmt_ago(c, r->cap_checked_at, t, sizeof t);
        dl_printf(l, ", checked %s (%s)", t, tui_cap_source_name(r->cap_source));
    }
    if (reason[0] != '\0')
        dl_printf(l, ": %s", reason);
    if (r->software[0] != '\0') {
        tui_clean(r->software, a, sizeof a);
        tui_clean(r->version, b, sizeof b);
        dl_printf(l, "%s%s%s%s", dot, a, b[0] ? " " : "", b);
    }
    if (r->auth_challenge)
        dl_printf(l, "%sasks for AUTH", dot);
    /* The NIP-11 limits negsync sizes its messages and fetches by. */
    if (r->max_message_length > 0) {
        tui_fmt_bytes((uint64_t)r->max_message_length, a, sizeof a);
        dl_printf(l, "%smax message %s", dot, a);
    }
    if (r->max_limit > 0)
        dl_printf(l, "%smax_limit %" PRId64, dot, r->max_limit);
    if (c->v->extra != NULL && c->v->extra[i].tls_unverified)
        dl_printf(l, "%sTLS not verified", dot);

    /* The setting and where it comes from. */
    l = dl_add(d, "negentropy",
               r->neg_source == STATS_NEG_FROM_OVERRIDE ? TUI_A_WARN : TUI_A_NORMAL);
    if (r->neg_source == STATS_NEG_FROM_OVERRIDE)
        dl_printf(l, "%s (saved override)", tui_neg_name(r->neg_setting));
    else if (r->neg_setting == STATS_NEG_AUTO)
        dl_printf(l, "auto (config: use_negentropy = %s)", c->v->use_negentropy ? "true" : "false");
    else
        dl_printf(l, "%s (config: negentropy = %s)", tui_neg_name(r->neg_setting),
                  tui_neg_name(r->neg_setting));
    dl_printf(l, "%sn cycles auto/off/on, saved in the database", dot);

    /* Per filter: the running job, or the last run. */
    for (size_t f = 0; f < r->nfilters; f++) {
        const struct stats_filter *sf = &r->filters[f];
        const struct stats_run *run = &sf->last;

        if (tui_relay_running(r) && strcmp(r->filter, sf->name) == 0) {
            int64_t el = c->v->now_ms - r->phase_since_ms;
            l = dl_add(d, sf->name, TUI_A_NORMAL);
            switch (r->phase) {
            case STATS_PHASE_RECONCILING:
            case STATS_PHASE_FETCHING:
            case STATS_PHASE_UPLOADING:
                dl_printf(l, "NEG %s round %" PRIu64 "%shave %" PRIu64 "%sneed %" PRIu64,
                          stats_phase_name(r->phase), r->round, dot, r->have, dot, r->need);
                break;
            case STATS_PHASE_REQ: dl_printf(l, "REQ page %" PRIu64, r->round); break;
            case STATS_PHASE_BACKOFF:
                tui_fmt_countdown(c, r->next_run_ms, t, sizeof t);
                dl_printf(l, "backoff, %u failure%s, again in %s", r->failures,
                          r->failures == 1 ? "" : "s", t);
                break;
            default: dl_printf(l, "%s", stats_phase_name(r->phase)); break;
            }
            if (r->total > 0) {
                progress_bar(r->fetched, r->total, full ? 20 : 10, a, sizeof a);
                dl_printf(l, "%sfetched %" PRIu64 "/%" PRIu64 " %s %d%%", dot, r->fetched, r->total,
                          a, (int)(r->fetched >= r->total ? 100 : r->fetched * 100 / r->total));
            } else if (r->fetched > 0) {
                dl_printf(l, "%sfetched %" PRIu64, dot, r->fetched);
            }
            if (r->phase != STATS_PHASE_BACKOFF && r->phase != STATS_PHASE_QUEUED && el >= 0) {
                /* The stall timer: time since the phase or progress last moved. */
                dl_printf(l, "%s%" PRId64 "s", dot, el / 1000);
                tui_tick_in(c, 1000 - el % 1000);
            }
            if (full) {
                tui_fmt_bytes(r->bytes_sent, a, sizeof a);
                tui_fmt_bytes(r->bytes_received, b, sizeof b);
                l = dl_add(d, "", TUI_A_NORMAL);
                dl_printf(l, "sent %s recv %s", a, b);
                if (r->est_req_bytes > 0) {
                    tui_fmt_bytes(r->est_req_bytes, a, sizeof a);
                    tui_fmt_pct(tui_saved_pct(r->est_req_bytes, r->bytes_sent + r->bytes_received),
                                b, sizeof b);
                    dl_printf(l, "%sa REQ would be %s%ssaved %s", dot, a, dot, b);
                }
            }
            continue;
        }
        if (!run->valid) {
            l = dl_add(d, sf->name, TUI_A_DIM);
            dl_printf(l, "not synced yet");
            continue;
        }
        tui_fmt_ago(c, run->ended, t, sizeof t);
        if (!run->ok) {
            tui_clean(run->error, reason, sizeof reason);
            if (run->auth == STATS_AUTH_NEEDED) {
                /* What to do first: cut at the screen's edge, the error ends with it. */
                l = dl_add(d, sf->name, TUI_A_WARN);
                dl_printf(l, "needs AUTH %s: ", t);
                if (!full)
                    dl_printf(l, "set auth = on-request and secret_key_file%s", dot);
                dl_printf(l, "%s", reason);
            } else {
                l = dl_add(d, sf->name, TUI_A_BAD);
                dl_printf(l, "%s %s: %s", run->auth == STATS_AUTH_FAILED ? "AUTH failed" : "error",
                          t, reason);
            }
            continue;
        }
        l = dl_add(d, sf->name, TUI_A_NORMAL);
        tui_fmt_bytes(run->bytes_sent, a, sizeof a);
        tui_fmt_bytes(run->bytes_received, b, sizeof b);
        dl_printf(l, "ok %s%s%s %" PRIu64 " round%s", t, dot, run->mode_neg ? "NEG" : "REQ",
                  run->rounds, run->rounds == 1 ? "" : "s");
        if (run->est_req_bytes > 0) {
            tui_fmt_pct(tui_saved_pct(run->est_req_bytes, run->bytes_sent + run->bytes_received), b,
                        sizeof b);
            dl_printf(l, "%ssaved %s", dot, b);
        }
        tui_fmt_bytes(run->bytes_sent, a, sizeof a);
        tui_fmt_bytes(run->bytes_received, b, sizeof b);
        dl_printf(l, "%ssent %s recv %s", dot, a, b);
        if (run->est_req_bytes > 0) {
            tui_fmt_bytes(run->est_req_bytes, a, sizeof a);
            dl_printf(l, "%sa REQ would be %s", dot, a);
        }
        dl_printf(l, "%sstored %" PRIu64, dot, run->stored);
        if (run->invalid > 0)
            dl_printf(l, "%sinvalid %" PRIu64, dot, run->invalid);
        if (full) {
            l = dl_add(d, "", TUI_A_DIM);
            dl_printf(l,
                      "have %" PRIu64 "%sneed %" PRIu64 "%sfetched %" PRIu64 "%suploaded %" PRIu64
                      "%s%.1f s",
                      run->have, dot, run->need, dot, run->fetched, dot, run->uploaded, dot,
                      (double)run->duration_ms / 1000.0);
        }
        if (!run->mode_neg && run->fallback_reason[0] != '\0') {
            tui_clean(run->fallback_reason, reason, sizeof reason);
            if (full) {
                l = dl_add(d, "", TUI_A_WARN);
                dl_printf(l, "REQ because: %s", reason);
            } else {
                dl_printf(l, "%sREQ: %s", dot, reason);
            }
        }
    }

    /* The last runs' saved %, oldest first. */
    if (c->v->extra != NULL && c->v->extra[i].nhist > 0) {
        const struct tui_relay_extra *e = &c->v->extra[i];
        l = dl_add(d, "history", TUI_A_NORMAL);
        for (size_t h = 0; h < e->nhist; h++) {
            if (e->hist[h] > 100)
                dl_printf(l, "?");
            else
                dl_printf(l, "%s", c->g->spark[e->hist[h] * 7 / 100]);
        }
        dl_printf(l, "  saved %% of the last %zu run%s, newest right", e->nhist,
                  e->nhist == 1 ? "" : "s");
        if (e->hist[e->nhist - 1] <= 100)
            dl_printf(l, ": %u%%", e->hist[e->nhist - 1]);
    }
}

#define LABEL_W 12

/* One labelled line at row y, cut at the screen's edge. */
void tui_draw_dline(struct tui_ctx *c, int y, const struct tui_dline *l)
{
    int x = tui_put(c->scr, y, 1, 1 + LABEL_W, TUI_A_TITLE, l->label);

    (void)x;
    tui_put(c->scr, y, 1 + LABEL_W, c->scr->w, l->attr, l->text);
}

/*
 * Labelled lines from row y to y+n-1, wrapped at the screen's edge, the first
 * skip rows scrolled away. Returns the rows the whole text needs.
 */
int tui_draw_dlines_wrapped(struct tui_ctx *c, int y, int n, size_t skip,
                            const struct tui_dlines *d)
{
    int width = c->scr->w - 1 - LABEL_W, row = 0;

    if (width < 10)
        width = 10;
    for (size_t i = 0; i < d->n; i++) {
        const char *p = d->l[i].text;
        int first = 1;
        do {
            int len = (int)strlen(p), cut = len;
            char part[1024];
            if (len > width) {
                cut = width;
                for (int k = width; k > width / 2; k--)
                    if (p[k] == ' ') {
                        cut = k;
                        break;
                    }
            }
            memcpy(part, p, (size_t)cut);
            part[cut] = '\0';
            if (row >= (int)skip && row - (int)skip < n) {
                int yy = y + row - (int)skip;
                if (first)
                    tui_put(c->scr, yy, 1, 1 + LABEL_W, TUI_A_TITLE, d->l[i].label);
                tui_put(c->scr, yy, 1 + LABEL_W, c->scr->w, d->l[i].attr, part);
            }
            row++;
            first = 0;
            p += cut;
            while (*p == ' ')
                p++;
        } while (*p != '\0');
    }
    return row;
}
