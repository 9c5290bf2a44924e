/*
 * tui-draw: the TUI's pure formatting. A frame is a function of the stats
 * snapshot, the log, the UI's state and two clocks (struct tui_view); it is
 * written into a grid of cells, one character each, with an attribute class
 * the terminal side maps to colors. No curses here and no clock reads, so
 * tests render fixed models at fixed sizes and compare them with golden
 * files (tests/tui-golden/).
 *
 * Every string that comes from outside (relay URLs, a relay's refusal text,
 * NIP-11 software names, log lines) is cut down to printable ASCII before it
 * is drawn: a relay must not be able to move the cursor or change colors,
 * and every character then takes exactly one column. Our own glyphs (rules,
 * arrows, the sparkline) are UTF-8 unless the view asks for ASCII.
 *
 * The detail of one relay (its labelled lines) is in tui-detail.c; what the
 * two share is in tui-int.h.
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tui-int.h"
#include "tui.h"
#include "util.h"

/* ---- the grid ---------------------------------------------------------------- */

void tui_screen_init(struct tui_screen *scr, int w, int h)
{
    scr->w = w > 0 ? w : 1;
    scr->h = h > 0 ? h : 1;
    scr->cells = xcalloc((size_t)scr->w * (size_t)scr->h, sizeof *scr->cells);
    scr->cursor_row = 0;
}

void tui_screen_free(struct tui_screen *scr)
{
    free(scr->cells);
    scr->cells = NULL;
}

void tui_screen_row_text(const struct tui_screen *scr, int y, char *out, size_t outlen)
{
    size_t n = 0, keep = 0;

    if (outlen == 0)
        return;
    for (int x = 0; x < scr->w; x++) {
        const struct tui_cell *c = &scr->cells[(size_t)y * (size_t)scr->w + (size_t)x];
        if (n + c->n + 1 > outlen)
            break;
        memcpy(out + n, c->s, c->n);
        n += c->n;
        if (!(c->n == 1 && c->s[0] == ' '))
            keep = n;
    }
    out[keep] = '\0';
}

static void screen_clear(struct tui_screen *scr)
{
    for (size_t i = 0; i < (size_t)scr->w * (size_t)scr->h; i++) {
        scr->cells[i].s[0] = ' ';
        scr->cells[i].n = 1;
        scr->cells[i].attr = TUI_A_NORMAL;
    }
}

/* Bytes of the UTF-8 character starting at s (1 for a stray byte). */
static size_t utf8_len(const char *s)
{
    unsigned char c = (unsigned char)s[0];
    size_t n = c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;

    for (size_t i = 1; i < n; i++)
        if (((unsigned char)s[i] & 0xc0) != 0x80)
            return 1;
    return n;
}

/* Columns (characters) of a string of our own glyphs and clean text. */
static int text_cols(const char *s)
{
    int n = 0;

    while (*s != '\0') {
        s += utf8_len(s);
        n++;
    }
    return n;
}

/* Writes s at (y, x), stopping before column maxx; returns the column after it. */
int tui_put(struct tui_screen *scr, int y, int x, int maxx, uint8_t attr, const char *s)
{
    if (y < 0 || y >= scr->h)
        return x;
    if (maxx > scr->w)
        maxx = scr->w;
    while (*s != '\0' && x < maxx) {
        size_t n = utf8_len(s);
        if (x >= 0) {
            struct tui_cell *c = &scr->cells[(size_t)y * (size_t)scr->w + (size_t)x];
            memcpy(c->s, s, n);
            c->n = (uint8_t)n;
            c->attr = attr;
        }
        s += n;
        x++;
    }
    return x;
}

static void set_attr(struct tui_screen *scr, int y, int x0, int x1, uint8_t attr)
{
    for (int x = x0; x < x1 && x < scr->w; x++)
        scr->cells[(size_t)y * (size_t)scr->w + (size_t)x].attr = attr;
}

/* Printable ASCII only: controls and anything non-ASCII become one '?' (tabs a space). */
void tui_clean(const char *in, char *out, size_t outlen)
{
    size_t n = 0;

    if (outlen == 0)
        return;
    while (*in != '\0' && n + 1 < outlen) {
        unsigned char c = (unsigned char)*in;
        if (c >= 0x20 && c < 0x7f) {
            out[n++] = (char)c;
            in++;
        } else if (c == '\t' || c == '\n' || c == '\r') {
            out[n++] = ' ';
            in++;
        } else {
            out[n++] = '?';
            in += c >= 0x80 ? utf8_len(in) : 1;
        }
    }
    out[n] = '\0';
}

/* ---- glyphs and numbers ----------------------------------------------------- */

static const struct tui_glyphs utf8_glyphs = {
    "\u2500",
    " \u00b7 ",
    "\u2192",
    "\u2192",
    "\u2191\u2193",
    "\u2026",
    "\u2014",
    "\u250c",
    "\u2510",
    "\u2514",
    "\u2518",
    "\u2502",
    {"\u2581", "\u2582", "\u2583", "\u2584", "\u2585", "\u2586", "\u2587", "\u2588"},
};
static const struct tui_glyphs ascii_glyphs = {
    "-",
    " | ",
    "->",
    ">",
    "Up/Dn",
    "~",
    "-",
    "+",
    "+",
    "+",
    "+",
    "|",
    {".", ":", "-", "=", "+", "*", "#", "@"},
};

void tui_fmt_bytes(uint64_t n, char *out, size_t len)
{
    if (n < 1000)
        snprintf(out, len, "%" PRIu64 "B", n);
    else if (n < 10 * 1000)
        snprintf(out, len, "%.1fkB", (double)n / 1e3);
    else if (n < 1000 * 1000)
        snprintf(out, len, "%.0fkB", (double)n / 1e3);
    else if (n < 10 * 1000 * 1000)
        snprintf(out, len, "%.1fMB", (double)n / 1e6);
    else if (n < 1000ULL * 1000 * 1000)
        snprintf(out, len, "%.0fMB", (double)n / 1e6);
    else
        snprintf(out, len, "%.1fGB", (double)n / 1e9);
}

/* Saved % of est by using used bytes; -1000 when there is nothing to compare. */
int tui_saved_pct(uint64_t est, uint64_t used)
{
    if (est == 0)
        return -1000;
    return (int)(((double)est - (double)used) * 100.0 / (double)est + (est >= used ? 0.5 : -0.5));
}

void tui_fmt_pct(int pct, char *out, size_t len)
{
    if (pct == -1000)
        snprintf(out, len, "-");
    else
        snprintf(out, len, "%d%%", pct);
}

void tui_tick_in(struct tui_ctx *c, int64_t ms)
{
    if (ms < 1)
        ms = 1;
    if (c->tick < 0 || ms < c->tick)
        c->tick = ms;
}

/*
 * An age in whole minutes, hours or days ("0m", "5m", "3h", "2d"): ages
 * tick once a minute at most, so an idle screen stays still.
 */
static void fmt_age(struct tui_ctx *c, int64_t since_unix, char *out, size_t len)
{
    int64_t a = c->v->now_unix - since_unix, unit;

    if (a < 0)
        a = 0;
    if (a < 3600) {
        snprintf(out, len, "%" PRId64 "m", a / 60);
        unit = 60;
    } else if (a < 86400) {
        snprintf(out, len, "%" PRId64 "h", a / 3600);
        unit = 3600;
    } else {
        snprintf(out, len, "%" PRId64 "d", a / 86400);
        unit = 86400;
    }
    tui_tick_in(c, (unit - a % unit) * 1000);
}

/* "just now" or "5m ago". */
void tui_fmt_ago(struct tui_ctx *c, int64_t since_unix, char *out, size_t len)
{
    char a[24];

    if (c->v->now_unix - since_unix < 60) {
        tui_tick_in(c, (60 - (c->v->now_unix - since_unix)) * 1000);
        snprintf(out, len, "just now");
        return;
    }
    fmt_age(c, since_unix, a, sizeof a);
    snprintf(out, len, "%s ago", a);
}

/* A countdown to a monotonic time: "4m" above a minute (rounded up), else "12s". */
void tui_fmt_countdown(struct tui_ctx *c, int64_t at_ms, char *out, size_t len)
{
    int64_t r = at_ms - c->v->now_ms;

    if (r <= 0) {
        snprintf(out, len, "now");
    } else if (r > 60000) {
        int64_t m = (r + 59999) / 60000;
        snprintf(out, len, "%" PRId64 "m", m);
        tui_tick_in(c, r - (m - 1) * 60000);
    } else {
        int64_t sec = (r + 999) / 1000;
        snprintf(out, len, "%" PRId64 "s", sec);
        tui_tick_in(c, r - (sec - 1) * 1000);
    }
}

/* ---- per relay facts ---------------------------------------------------------- */

int tui_relay_running(const struct stats_relay *r)
{
    return r->phase != STATS_PHASE_IDLE;
}

/* Would a job on r try negentropy (its setting, or the config's switch for auto)? */
static int relay_neg_allowed(const struct tui_ctx *c, const struct stats_relay *r)
{
    return r->neg_setting == STATS_NEG_ON ||
           (r->neg_setting == STATS_NEG_AUTO && c->v->use_negentropy);
}

/* The most recently ended run of r, or NULL. */
static const struct stats_run *relay_last(const struct stats_relay *r)
{
    const struct stats_run *best = NULL;

    for (size_t f = 0; f < r->nfilters; f++) {
        const struct stats_run *run = &r->filters[f].last;
        if (run->valid && (best == NULL || run->ended >= best->ended))
            best = run;
    }
    return best;
}

/* Sums of the filters' last runs; of the errors, those for want of NIP-42 AUTH. */
struct run_sum {
    int n, errors, auth_needed, auth_failed;
    uint64_t rounds, sent, recv, est, fetched, stored;
};

static void relay_sum(const struct stats_relay *r, struct run_sum *sum)
{
    memset(sum, 0, sizeof *sum);
    for (size_t f = 0; f < r->nfilters; f++) {
        const struct stats_run *run = &r->filters[f].last;
        if (!run->valid)
            continue;
        sum->n++;
        if (!run->ok) {
            sum->errors++;
            sum->auth_needed += run->auth == STATS_AUTH_NEEDED;
            sum->auth_failed += run->auth == STATS_AUTH_FAILED;
            continue;
        }
        sum->rounds += run->rounds;
        sum->sent += run->bytes_sent;
        sum->recv += run->bytes_received;
        sum->est += run->est_req_bytes;
        sum->fetched += run->fetched;
        sum->stored += run->stored;
    }
}

/*
 * "NEG", "REQ" or "NEG→REQ" (it tried, or knew the relay lacks NIP-77, and
 * fell back). A finished run says why it used REQ: a reason that is the
 * configuration's is plain REQ. For the running job, whether the setting
 * lets it try negentropy decides.
 */
static const char *mode_text(const struct tui_ctx *c, const struct stats_relay *r, int mode_neg,
                             const struct stats_run *run, char *buf, size_t len, uint8_t *attr)
{
    int fell_back;

    if (mode_neg) {
        *attr = TUI_A_GOOD;
        return "NEG";
    }
    *attr = TUI_A_WARN;
    if (run != NULL)
        fell_back = run->fallback_reason[0] != '\0' &&
                    strncmp(run->fallback_reason, "negentropy = ", 13) != 0 &&
                    strncmp(run->fallback_reason, "use_negentropy", 14) != 0;
    else
        fell_back = relay_neg_allowed(c, r);
    if (!fell_back)
        return "REQ";
    snprintf(buf, len, "NEG%sREQ", c->g->mode_arrow);
    return buf;
}

const char *tui_cap_source_name(enum stats_cap_source s)
{
    switch (s) {
    case STATS_CAP_FROM_PROBE: return "probe";
    case STATS_CAP_FROM_CACHE: return "cache";
    case STATS_CAP_FROM_SESSION: return "during a sync";
    case STATS_CAP_FROM_NONE: break;
    }
    return "";
}

const char *tui_neg_name(enum stats_neg_setting s)
{
    return s == STATS_NEG_ON ? "on" : s == STATS_NEG_OFF ? "off" : "auto";
}

/* ---- layout ------------------------------------------------------------------- */

/* Which columns the relay list has at width w, and how wide each is. */
struct cols {
    int url, nip, mode, neg, phase, rnd, fetched, sent, recv, saved; /* 0: dropped */
};

static void cols_for(int w, struct cols *k)
{
    k->nip = 10;
    k->mode = 7;
    k->neg = 5;
    k->phase = 13;
    k->rnd = 3;
    k->fetched = 11;
    k->sent = 6;
    k->recv = 6;
    k->saved = 5;
    if (w < 96)
        k->sent = k->recv = 0; /* 80×24 keeps saved, drops the bytes */
    if (w < 72) {
        k->rnd = k->fetched = 0;
        k->phase = 11;
    }
    /* The marker column, then each column with one space before it. */
    k->url = w - 2;
    const int *p = &k->nip;
    for (int i = 0; i < 9; i++)
        if (p[i] > 0)
            k->url -= p[i] + 1;
    if (k->url < 8)
        k->url = 8;
}

struct layout {
    int list_y, list_n;     /* relay rows */
    int detail_y, detail_n; /* rule + lines; 0: none */
    int log_y, log_n;       /* rule + lines; 0: none */
};

static int detail_wanted(const struct stats_snapshot *s, const struct tui_view *v)
{
    size_t nf = s->nrelays > 0 ? s->relays[0].nfilters : 0;
    int hist = v->extra != NULL && s->nrelays > 0 && v->selected < s->nrelays &&
               v->extra[v->selected].nhist > 0;

    return 3 + (int)nf + hist;
}

static void layout_for(const struct tui_view *v, const struct stats_snapshot *s, int h,
                       struct layout *L)
{
    int avail = h - 3; /* header, titles, key bar */
    int nrel = (int)s->nrelays;
    int want_list = nrel < 1 ? 1 : nrel;

    memset(L, 0, sizeof *L);
    L->detail_n = detail_wanted(s, v);
    if (L->detail_n > avail / 3 + 1)
        L->detail_n = avail / 3 + 1;
    if (L->detail_n < 3)
        L->detail_n = 0;
    L->log_n = avail >= 20 ? avail / 4 : avail >= 12 ? 3 : 2;
    L->list_n = avail - L->detail_n - L->log_n;
    if (L->list_n > want_list) { /* room to spare goes to the log */
        L->log_n += L->list_n - want_list;
        L->list_n = want_list;
    }
    while (L->list_n < 3 && L->list_n < want_list && L->log_n > 2) {
        L->log_n--;
        L->list_n++;
    }
    while (L->list_n < 3 && L->list_n < want_list && L->detail_n > 3) {
        L->detail_n--;
        L->list_n++;
    }
    L->list_y = 2;
    L->detail_y = L->list_y + L->list_n;
    L->log_y = L->detail_y + L->detail_n;
}

int tui_list_rows(const struct tui_view *v, const struct stats_snapshot *s, int w, int h)
{
    struct layout L;

    if (w < TUI_MIN_W || h < TUI_MIN_H)
        return 1;
    layout_for(v, s, h, &L);
    return L.list_n;
}

/* ---- the pieces of a frame ---------------------------------------------------- */

static void draw_header(struct tui_ctx *c)
{
    const struct stats_snapshot *s = c->s;
    /* The header's parts, most important first; those that do not fit are left out. */
    enum { P_NAME, P_WORKERS, P_NEXT, P_SAVED, P_RELAYS, P_STORED, P_FILTERS, P_DB, NP };
    char part[NP][96], b[24], t[24], line[1024];
    int keep[NP], w = c->scr->w - 1, used_cols;
    uint64_t est = 0, used = 0;
    size_t nf = s->nrelays > 0 ? s->relays[0].nfilters : 0, n = 0;
    int64_t next = -1;

    for (size_t i = 0; i < s->nrelays; i++) {
        struct run_sum sum;
        relay_sum(&s->relays[i], &sum);
        est += sum.est;
        used += sum.sent + sum.recv;
        if (s->relays[i].next_run_ms >= 0 && !tui_relay_running(&s->relays[i]) &&
            (next < 0 || s->relays[i].next_run_ms < next))
            next = s->relays[i].next_run_ms;
    }
    memset(part, 0, sizeof part);
    snprintf(part[P_NAME], sizeof part[0], "negsync");
    snprintf(part[P_WORKERS], sizeof part[0], "workers %u/%u", s->workers_busy, s->workers_total);
    if (c->v->continuous && next >= 0) {
        tui_fmt_countdown(c, next, t, sizeof t);
        snprintf(part[P_NEXT], sizeof part[0], "next %s", t);
    }
    if (est > 0) {
        tui_fmt_bytes(est > used ? est - used : 0, b, sizeof b);
        tui_fmt_pct(tui_saved_pct(est, used), t, sizeof t);
        snprintf(part[P_SAVED], sizeof part[0], "saved %s (%s)", t, b);
    }
    snprintf(part[P_RELAYS], sizeof part[0], "%zu relay%s", s->nrelays, s->nrelays == 1 ? "" : "s");
    /*
     * What the database holds, once the engine has counted it; until then
     * (and in a model without it) what this session stored.
     */
    if (s->events_stored > 0)
        snprintf(part[P_STORED], sizeof part[0], "%" PRIu64 " events", s->events_stored);
    else
        snprintf(part[P_STORED], sizeof part[0], "%" PRIu64 " stored", c->v->stored);
    snprintf(part[P_FILTERS], sizeof part[0], "%zu filter%s", nf, nf == 1 ? "" : "s");
    if (c->v->db_name != NULL)
        tui_clean(c->v->db_name, part[P_DB], sizeof part[0]);

    used_cols = 0;
    for (int i = 0; i < NP; i++) {
        int cols = text_cols(part[i]) + (i > 0 ? text_cols(c->g->dot) : 1);
        keep[i] = part[i][0] != '\0' && used_cols + cols <= w;
        if (keep[i])
            used_cols += cols;
    }
    /* In reading order: name, db, relays, filters, stored, saved, workers, next. */
    static const int order[NP] = {P_NAME,   P_DB,    P_RELAYS,  P_FILTERS,
                                  P_STORED, P_SAVED, P_WORKERS, P_NEXT};
    line[0] = ' ';
    line[1] = '\0';
    for (int i = 0; i < NP; i++) {
        if (!keep[order[i]])
            continue;
        if (n++ > 0)
            strncat(line, c->g->dot, sizeof line - strlen(line) - 1);
        strncat(line, part[order[i]], sizeof line - strlen(line) - 1);
    }
    set_attr(c->scr, 0, 0, c->scr->w, TUI_A_HEADER);
    tui_put(c->scr, 0, 0, c->scr->w, TUI_A_HEADER, line);
}

/* Writes s into a column of width w at x (cut with an ellipsis), left or right aligned. */
static void put_col(struct tui_ctx *c, int y, int x, int w, uint8_t attr, const char *s, int right)
{
    int n = text_cols(s);

    if (w <= 0)
        return;
    if (n > w) {
        char buf[1024];
        int cols = 0;
        size_t i = 0;
        while (s[i] != '\0' && cols < w - 1 && i + 8 < sizeof buf) {
            i += utf8_len(s + i);
            cols++;
        }
        memcpy(buf, s, i);
        snprintf(buf + i, sizeof buf - i, "%s", c->g->ell);
        tui_put(c->scr, y, x, x + w, attr, buf);
        return;
    }
    tui_put(c->scr, y, right ? x + w - n : x, x + w, attr, s);
}

static void draw_titles(struct tui_ctx *c, const struct cols *k)
{
    int y = 1, x = 2;

    set_attr(c->scr, y, 0, c->scr->w, TUI_A_TITLE);
#define TITLE(w, name, right)                                                                      \
    do {                                                                                           \
        if ((w) > 0) {                                                                             \
            put_col(c, y, x, (w), TUI_A_TITLE, (name), (right));                                   \
            x += (w) + 1;                                                                          \
        }                                                                                          \
    } while (0)
    TITLE(k->url, "RELAY", 0);
    TITLE(k->nip, "NIP-77", 0);
    TITLE(k->mode, "MODE", 0);
    TITLE(k->neg, "NEG", 0);
    TITLE(k->phase, "PHASE", 0);
    TITLE(k->rnd, "RND", 1);
    TITLE(k->fetched, "FETCHED", 1);
    TITLE(k->sent, "SENT", 1);
    TITLE(k->recv, "RECV", 1);
    TITLE(k->saved, "SAVED", 1);
#undef TITLE
}

/* A relay URL for a column: without "wss://" (the usual case), and without ws:// if cut. */
static void url_text(const struct tui_ctx *c, size_t i, int width, char *out, size_t len)
{
    const struct stats_relay *r = &c->s->relays[i];
    char u[STATS_URL_MAX];
    const char *p = u;
    int tls = c->v->extra != NULL && c->v->extra[i].tls_unverified;

    tui_clean(r->url, u, sizeof u);
    if (strncmp(u, "wss://", 6) == 0)
        p = u + 6;
    else if (strncmp(u, "ws://", 5) == 0 && (int)strlen(u) + tls > width)
        p = u + 5;
    snprintf(out, len, "%s%s", tls ? "!" : "", p);
}

static void draw_row(struct tui_ctx *c, const struct cols *k, int y, size_t i)
{
    const struct stats_relay *r = &c->s->relays[i];
    const struct stats_run *last = relay_last(r);
    struct run_sum sum;
    int sel = i == c->v->selected;
    uint8_t a, mark = sel ? TUI_A_SEL : 0;
    char buf[STATS_URL_MAX + 8], t[64], m[32];
    const char *txt;
    int x = 2;
    int running = tui_relay_running(r);
    uint64_t rounds, sent, recv, est;

    relay_sum(r, &sum);
    if (sel) {
        set_attr(c->scr, y, 0, c->scr->w, TUI_A_NORMAL | TUI_A_SEL);
        tui_put(c->scr, y, 0, 1, TUI_A_NORMAL | TUI_A_SEL, ">");
        c->scr->cursor_row = y;
    }

    url_text(c, i, k->url, buf, sizeof buf);
    put_col(c, y, x, k->url, (r->enabled ? TUI_A_NORMAL : TUI_A_DIM) | mark, buf, 0);
    x += k->url + 1;

    /* NIP-77: the verdict and its age. */
    a = TUI_A_DIM;
    switch (r->cap) {
    case STATS_CAP_SUPPORTED: a = TUI_A_GOOD, txt = "yes"; break;
    case STATS_CAP_UNSUPPORTED: a = TUI_A_WARN, txt = "no"; break;
    case STATS_CAP_UNREACHABLE: a = TUI_A_BAD, txt = "unreach"; break;
    default: txt = "?"; break;
    }
    if (r->phase == STATS_PHASE_PROBING) {
        a = TUI_A_DIM;
        snprintf(buf, sizeof buf, "probing");
    } else if (r->cap != STATS_CAP_UNKNOWN && r->cap_checked_at > 0) {
        fmt_age(c, r->cap_checked_at, t, sizeof t);
        snprintf(buf, sizeof buf, "%s %s", txt, t);
    } else {
        snprintf(buf, sizeof buf, "%s", txt);
    }
    put_col(c, y, x, k->nip, a | mark, buf, 0);
    x += k->nip + 1;

    /* MODE: the running job's, else the last run's. */
    txt = "-";
    a = TUI_A_DIM;
    if (running && (r->phase == STATS_PHASE_RECONCILING || r->phase == STATS_PHASE_FETCHING ||
                    r->phase == STATS_PHASE_UPLOADING))
        txt = mode_text(c, r, 1, NULL, m, sizeof m, &a);
    else if (running && r->phase == STATS_PHASE_REQ)
        txt = mode_text(c, r, 0, NULL, m, sizeof m, &a);
    else if (last != NULL && last->ok)
        txt = mode_text(c, r, last->mode_neg, last, m, sizeof m, &a);
    put_col(c, y, x, k->mode, a | mark, txt, 0);
    x += k->mode + 1;

    /* NEG: the setting, '*' when it is a saved override. */
    snprintf(buf, sizeof buf, "%s%s", tui_neg_name(r->neg_setting),
             r->neg_source == STATS_NEG_FROM_OVERRIDE ? "*" : "");
    put_col(c, y, x, k->neg,
            (r->neg_source == STATS_NEG_FROM_OVERRIDE ? TUI_A_WARN : TUI_A_NORMAL) | mark, buf, 0);
    x += k->neg + 1;

    /* PHASE. */
    a = TUI_A_NORMAL;
    switch (r->phase) {
    case STATS_PHASE_QUEUED: a = TUI_A_DIM, snprintf(buf, sizeof buf, "queued"); break;
    case STATS_PHASE_CONNECTING: snprintf(buf, sizeof buf, "connecting"); break;
    case STATS_PHASE_PROBING: snprintf(buf, sizeof buf, "probing"); break;
    case STATS_PHASE_RECONCILING: snprintf(buf, sizeof buf, "reconcile %" PRIu64, r->round); break;
    case STATS_PHASE_FETCHING:
        if (r->total > 0)
            snprintf(buf, sizeof buf, "fetching %d%%",
                     (int)(r->fetched >= r->total ? 100 : r->fetched * 100 / r->total));
        else
            snprintf(buf, sizeof buf, "fetching");
        break;
    case STATS_PHASE_UPLOADING: snprintf(buf, sizeof buf, "uploading"); break;
    case STATS_PHASE_REQ: snprintf(buf, sizeof buf, "REQ page %" PRIu64, r->round); break;
    case STATS_PHASE_BACKOFF:
        a = TUI_A_BAD;
        tui_fmt_countdown(c, r->next_run_ms, t, sizeof t);
        snprintf(buf, sizeof buf, "backoff %s", t);
        break;
    case STATS_PHASE_IDLE:
        if (!r->enabled) {
            a = TUI_A_DIM, snprintf(buf, sizeof buf, "disabled");
        } else if (last == NULL) {
            a = TUI_A_DIM, snprintf(buf, sizeof buf, "idle");
        } else if (sum.errors > 0 && sum.errors == sum.auth_needed + sum.auth_failed) {
            /* Every failure wanted AUTH: a setting to change (or a key), not a broken relay. */
            a = sum.auth_needed > 0 ? TUI_A_WARN : TUI_A_BAD;
            txt = sum.auth_needed > 0 ? "needs AUTH" : "AUTH failed";
            fmt_age(c, last->ended, t, sizeof t);
            snprintf(buf, sizeof buf, "%s %s", txt, t);
            if (text_cols(buf) > k->phase)
                snprintf(buf, sizeof buf, "%s", txt);
        } else {
            fmt_age(c, last->ended, t, sizeof t);
            a = sum.errors > 0 ? TUI_A_BAD : TUI_A_GOOD;
            snprintf(buf, sizeof buf, "%s %s", sum.errors > 0 ? "error" : "ok", t);
        }
        break;
    }
    put_col(c, y, x, k->phase, a | mark, buf, 0);
    x += k->phase + 1;

    /* Numbers: the running job's live counters, else the sums of the last runs. */
    if (running && r->phase != STATS_PHASE_QUEUED && r->phase != STATS_PHASE_BACKOFF) {
        rounds = r->round;
        sent = r->bytes_sent;
        recv = r->bytes_received;
        est = r->est_req_bytes;
        if (r->total > 0)
            snprintf(t, sizeof t, "%" PRIu64 "/%" PRIu64, r->fetched, r->total);
        else
            snprintf(t, sizeof t, "%" PRIu64, r->fetched);
    } else if (sum.n > sum.errors) {
        rounds = sum.rounds;
        sent = sum.sent;
        recv = sum.recv;
        est = sum.est;
        snprintf(t, sizeof t, "%" PRIu64, sum.fetched);
    } else {
        if (k->rnd > 0) {
            put_col(c, y, x, k->rnd, TUI_A_DIM | mark, "-", 1);
            x += k->rnd + 1;
        }
        if (k->fetched > 0) {
            put_col(c, y, x, k->fetched, TUI_A_DIM | mark, "-", 1);
            x += k->fetched + 1;
        }
        if (k->sent > 0) {
            put_col(c, y, x, k->sent, TUI_A_DIM | mark, "-", 1);
            x += k->sent + 1;
            put_col(c, y, x, k->recv, TUI_A_DIM | mark, "-", 1);
            x += k->recv + 1;
        }
        put_col(c, y, x, k->saved, TUI_A_DIM | mark, "-", 1);
        return;
    }
    if (k->rnd > 0) {
        snprintf(buf, sizeof buf, "%" PRIu64, rounds);
        put_col(c, y, x, k->rnd, TUI_A_NORMAL | mark, buf, 1);
        x += k->rnd + 1;
    }
    if (k->fetched > 0) {
        put_col(c, y, x, k->fetched, TUI_A_NORMAL | mark, t, 1);
        x += k->fetched + 1;
    }
    if (k->sent > 0) {
        tui_fmt_bytes(sent, buf, sizeof buf);
        put_col(c, y, x, k->sent, TUI_A_NORMAL | mark, buf, 1);
        x += k->sent + 1;
        tui_fmt_bytes(recv, buf, sizeof buf);
        put_col(c, y, x, k->recv, TUI_A_NORMAL | mark, buf, 1);
        x += k->recv + 1;
    }
    tui_fmt_pct(tui_saved_pct(est, sent + recv), buf, sizeof buf);
    put_col(c, y, x, k->saved, (est > 0 ? TUI_A_GOOD : TUI_A_DIM) | mark, buf, 1);
}

/* A rule across the screen with a title: "─ title ─────". */
static void draw_rule(struct tui_ctx *c, int y, const char *title)
{
    int x = 0;

    set_attr(c->scr, y, 0, c->scr->w, TUI_A_TITLE);
    x = tui_put(c->scr, y, x, c->scr->w, TUI_A_TITLE, c->g->rule);
    x = tui_put(c->scr, y, x, c->scr->w, TUI_A_TITLE, " ");
    x = tui_put(c->scr, y, x, c->scr->w - 2, TUI_A_TITLE, title);
    x = tui_put(c->scr, y, x, c->scr->w, TUI_A_TITLE, " ");
    while (x < c->scr->w)
        x = tui_put(c->scr, y, x, c->scr->w, TUI_A_TITLE, c->g->rule);
}

static uint8_t log_attr(const char *text)
{
    if (strstr(text, "error") != NULL || strstr(text, "ERROR") != NULL ||
        strstr(text, "failed") != NULL)
        return TUI_A_BAD;
    if (strstr(text, "Using REQ") != NULL || strstr(text, "warning") != NULL)
        return TUI_A_WARN;
    if (strstr(text, "Using negentropy") != NULL)
        return TUI_A_GOOD;
    return TUI_A_NORMAL;
}

/* The n log lines ending scroll lines above the newest, at rows y.. */
static void draw_log_lines(struct tui_ctx *c, int y, int n, size_t scroll)
{
    const struct tui_log *log = c->v->log;
    size_t total = log != NULL ? log->n : 0, end, first;

    if (scroll > total)
        scroll = total;
    end = total - scroll;
    first = end > (size_t)n ? end - (size_t)n : 0;
    for (size_t i = first; i < end; i++, y++) {
        const struct tui_log_line *l = tui_log_at(log, i);
        int x = tui_put(c->scr, y, 1, c->scr->w, TUI_A_DIM, l->ts);
        tui_put(c->scr, y, x + 1, c->scr->w, log_attr(l->text), l->text);
    }
}

static void draw_keybar(struct tui_ctx *c, const char *const *variants, size_t nvariants)
{
    int y = c->scr->h - 1;
    size_t i;

    /* The longest variant that fits. */
    for (i = 0; i + 1 < nvariants; i++)
        if (text_cols(variants[i]) + 1 <= c->scr->w)
            break;
    set_attr(c->scr, y, 0, c->scr->w, TUI_A_KEY);
    tui_put(c->scr, y, 1, c->scr->w, TUI_A_KEY, variants[i]);
}

static void draw_main_keybar(struct tui_ctx *c)
{
    char full[160];
    const char *v[3];

    snprintf(full, sizeof full,
             "%s/jk select  Enter detail  n neg auto/off/on  p re-probe  s/S sync  l log  "
             "? help  q quit",
             c->g->updown);
    v[0] = full;
    v[1] = "jk select  Enter detail  n neg  p probe  s/S sync  l log  ? help  q quit";
    v[2] = "jk Enter  n neg  p probe  s/S sync  l log  ? help  q quit";
    draw_keybar(c, v, 3);
}

static void draw_main(struct tui_ctx *c)
{
    struct layout L;
    struct cols k;
    size_t top = c->v->top;

    cols_for(c->scr->w, &k);
    layout_for(c->v, c->s, c->scr->h, &L);
    draw_titles(c, &k);
    c->scr->cursor_row = L.list_y;
    if (c->s->nrelays == 0)
        tui_put(c->scr, L.list_y, 2, c->scr->w, TUI_A_DIM,
                "no relays: add [relay URL] sections to the configuration, or use --relay URL");
    if (top >= c->s->nrelays)
        top = 0;
    for (int r = 0; r < L.list_n && top + (size_t)r < c->s->nrelays; r++)
        draw_row(c, &k, L.list_y + r, top + (size_t)r);

    if (L.detail_n > 0 && c->v->selected < c->s->nrelays) {
        struct tui_dlines d = {0};
        char u[STATS_URL_MAX];
        tui_clean(c->s->relays[c->v->selected].url, u, sizeof u);
        draw_rule(c, L.detail_y, u);
        tui_detail_lines(c, c->v->selected, 0, &d);
        for (int i = 0; i < L.detail_n - 1 && (size_t)i < d.n; i++)
            tui_draw_dline(c, L.detail_y + 1 + i, &d.l[i]);
        free(d.l);
    }
    if (L.log_n > 0) {
        draw_rule(c, L.log_y, "log");
        draw_log_lines(c, L.log_y + 1, L.log_n - 1, 0);
    }
    draw_main_keybar(c);
}

static void draw_detail_overlay(struct tui_ctx *c)
{
    static const char *const keys[] = {"Esc/Enter close  jk other relay  n p s  q quit",
                                       "Esc close  q quit"};
    struct tui_dlines d = {0};
    const struct stats_relay *r;
    char u[STATS_URL_MAX + 64];

    if (c->v->selected >= c->s->nrelays) {
        draw_keybar(c, keys, 2);
        return;
    }
    r = &c->s->relays[c->v->selected];
    tui_clean(r->url, u, sizeof u);
    draw_rule(c, 1, u);
    tui_detail_lines(c, c->v->selected, 1, &d);
    tui_draw_dlines_wrapped(c, 2, c->scr->h - 3, 0, &d);
    free(d.l);
    c->scr->cursor_row = 1;
    draw_keybar(c, keys, 2);
}

static void draw_log_overlay(struct tui_ctx *c)
{
    static const char *const keys[] = {
        "Esc/l close  jk/PgUp/PgDn scroll  g/G oldest/newest  q quit", "Esc close  q quit"};
    char t[96];
    size_t total = c->v->log != NULL ? c->v->log->n : 0;
    size_t scroll = c->v->log_scroll > total ? total : c->v->log_scroll;

    if (scroll > 0)
        snprintf(t, sizeof t, "log, %zu line%s, %zu newer below", total, total == 1 ? "" : "s",
                 scroll);
    else
        snprintf(t, sizeof t, "log, %zu line%s", total, total == 1 ? "" : "s");
    draw_rule(c, 1, t);
    draw_log_lines(c, 2, c->scr->h - 3, scroll);
    c->scr->cursor_row = c->scr->h - 2;
    draw_keybar(c, keys, 2);
}

static void draw_help(struct tui_ctx *c)
{
    char ud[32], arrow[8];
    const char *g_arrow = c->g->arrow;
    struct {
        const char *keys, *what;
    } rows[] = {
        {ud, "select a relay"},
        {"PgUp PgDn", "a page up or down"},
        {"g G Home End", "first or last relay"},
        {"Enter", "detail of the selected relay"},
        {"n", arrow},
        {"p", "re-probe the relay now, ignoring the cache"},
        {"s", "sync the selected relay now"},
        {"S", "sync every relay now"},
        {"l", "the log (scroll with jk, PgUp, PgDn)"},
        {"? F1", "this help"},
        {"Esc", "close an overlay (never quits)"},
        {"Ctrl-L", "repaint the screen"},
        {"q Ctrl-C", "quit: jobs keep what they received"},
    };
    char nline[96];
    int nrows = (int)(sizeof rows / sizeof rows[0]);
    int bw = 60, bh = nrows + 4, x0, y0;

    snprintf(ud, sizeof ud, "%s k j", c->g->updown);
    snprintf(nline, sizeof nline, "negentropy auto %s off %s on, saved", g_arrow, g_arrow);
    snprintf(arrow, sizeof arrow, "%s", "");
    rows[4].what = nline;
    if (bw > c->scr->w - 2)
        bw = c->scr->w - 2;
    if (bh > c->scr->h - 2)
        bh = c->scr->h - 2;
    x0 = (c->scr->w - bw) / 2;
    y0 = (c->scr->h - 1 - bh) / 2;
    if (y0 < 1)
        y0 = 1;
    for (int y = y0; y < y0 + bh; y++) {
        set_attr(c->scr, y, x0, x0 + bw, TUI_A_NORMAL);
        for (int x = x0; x < x0 + bw; x++)
            tui_put(c->scr, y, x, x + 1, TUI_A_NORMAL, " ");
        tui_put(c->scr, y, x0, x0 + 1, TUI_A_TITLE, c->g->box_v);
        tui_put(c->scr, y, x0 + bw - 1, x0 + bw, TUI_A_TITLE, c->g->box_v);
    }
    for (int x = x0 + 1; x < x0 + bw - 1; x++) {
        tui_put(c->scr, y0, x, x + 1, TUI_A_TITLE, c->g->rule);
        tui_put(c->scr, y0 + bh - 1, x, x + 1, TUI_A_TITLE, c->g->rule);
    }
    tui_put(c->scr, y0, x0, x0 + 1, TUI_A_TITLE, c->g->box_tl);
    tui_put(c->scr, y0, x0 + bw - 1, x0 + bw, TUI_A_TITLE, c->g->box_tr);
    tui_put(c->scr, y0 + bh - 1, x0, x0 + 1, TUI_A_TITLE, c->g->box_bl);
    tui_put(c->scr, y0 + bh - 1, x0 + bw - 1, x0 + bw, TUI_A_TITLE, c->g->box_br);
    tui_put(c->scr, y0, x0 + 2, x0 + bw - 2, TUI_A_TITLE, " keys ");
    for (int i = 0; i < nrows && 1 + i < bh - 2; i++) {
        tui_put(c->scr, y0 + 1 + i, x0 + 2, x0 + 16, TUI_A_GOOD, rows[i].keys);
        tui_put(c->scr, y0 + 1 + i, x0 + 16, x0 + bw - 1, TUI_A_NORMAL, rows[i].what);
    }
    if (nrows + 2 < bh)
        tui_put(c->scr, y0 + bh - 2, x0 + 2, x0 + bw - 1, TUI_A_DIM, "Esc or ? closes this help");
    c->scr->cursor_row = y0;
}

static void draw_small(struct tui_ctx *c)
{
    char msg[128];
    int n, y = c->scr->h / 2;

    snprintf(msg, sizeof msg, "terminal %dx%d too small, need %dx%d %s q quits", c->scr->w,
             c->scr->h, TUI_MIN_W, TUI_MIN_H, c->g->dash);
    n = text_cols(msg);
    tui_put(c->scr, y, n < c->scr->w ? (c->scr->w - n) / 2 : 0, c->scr->w, TUI_A_BAD, msg);
    c->scr->cursor_row = y;
}

void tui_render(const struct tui_view *v, const struct stats_snapshot *s, struct tui_screen *scr,
                int64_t *next_tick_ms)
{
    struct tui_ctx c = {v, s, scr, v->ascii ? &ascii_glyphs : &utf8_glyphs, -1};

    screen_clear(scr);
    scr->cursor_row = 0;
    if (scr->w < TUI_MIN_W || scr->h < TUI_MIN_H) {
        draw_small(&c);
    } else {
        draw_header(&c);
        switch (v->overlay) {
        case TUI_OVERLAY_DETAIL: draw_detail_overlay(&c); break;
        case TUI_OVERLAY_LOG: draw_log_overlay(&c); break;
        case TUI_OVERLAY_HELP:
            draw_main(&c);
            draw_help(&c);
            break;
        case TUI_OVERLAY_NONE: draw_main(&c); break;
        }
    }
    if (next_tick_ms != NULL)
        *next_tick_ms = c.tick;
}

/* ---- the log ring --------------------------------------------------------------- */

void tui_log_init(struct tui_log *log, size_t cap)
{
    log->cap = cap > 0 ? cap : 1;
    log->lines = xcalloc(log->cap, sizeof *log->lines);
    log->start = log->n = 0;
}

void tui_log_free(struct tui_log *log)
{
    free(log->lines);
    log->lines = NULL;
    log->n = log->cap = log->start = 0;
}

void tui_log_add(struct tui_log *log, const char *ts, const char *text)
{
    struct tui_log_line *l;

    if (log->n < log->cap) {
        l = &log->lines[(log->start + log->n) % log->cap];
        log->n++;
    } else {
        l = &log->lines[log->start];
        log->start = (log->start + 1) % log->cap;
    }
    tui_clean(ts, l->ts, sizeof l->ts);
    tui_clean(text, l->text, sizeof l->text);
}

const struct tui_log_line *tui_log_at(const struct tui_log *log, size_t i)
{
    return &log->lines[(log->start + i) % log->cap];
}
