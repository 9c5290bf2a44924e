/*
 * tui-render: renders a fixed model (three relays, two filters, a log) with
 * the TUI's pure formatting (src/tui-draw.c) at a given size and view, and
 * prints the frame as text: no terminal, no clock. tests/tui-golden.sh
 * compares the output with the files in tests/tui-golden/.
 *
 *   tui-render W H [main|detail|log|help|running|auth|auth-detail] [ascii]
 *
 * auth: A's dms ended for want of NIP-42 AUTH (auth = never), B's for an
 * AUTH the relay refused; auth-detail is that model's detail overlay.
 *
 * A last line "cursor ROW tick MS" records where the hidden cursor sits and
 * when the frame would change by itself.
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tui.h"
#include "util.h"

#define NOW_UNIX 1760000000
#define NOW_MS   5000000

static void fill_run(struct stats_run *r, int neg, int ok, int64_t ago, uint64_t sent,
                     uint64_t recv, uint64_t est, uint64_t fetched, uint64_t rounds)
{
    memset(r, 0, sizeof *r);
    r->valid = 1;
    r->mode_neg = neg;
    r->ok = ok;
    r->ended = NOW_UNIX - ago;
    r->duration_ms = 1400;
    r->rounds = rounds;
    r->bytes_sent = sent;
    r->bytes_received = recv;
    r->wire_sent = sent;
    r->wire_received = recv;
    r->est_req_bytes = est;
    r->have = 12;
    r->need = fetched;
    r->fetched = fetched;
    r->stored = fetched;
}

static void relay_init(struct stats_relay *r, const char *url)
{
    memset(r, 0, sizeof *r);
    snprintf(r->url, sizeof r->url, "%s", url);
    r->enabled = 1;
    r->next_run_ms = -1;
    r->nfilters = 2;
    r->filters = xcalloc(2, sizeof *r->filters);
    snprintf(r->filters[0].name, sizeof r->filters[0].name, "notes");
    snprintf(r->filters[1].name, sizeof r->filters[1].name, "dms");
}

int main(int argc, char **argv)
{
    struct stats_relay relays[3];
    struct stats_snapshot s = {0};
    struct tui_relay_extra extra[3];
    struct tui_view v = {0};
    struct tui_log log;
    struct tui_screen scr;
    int w, h, running = 0, auth = 0;
    int64_t tick;
    char *row;

    if (argc < 3) {
        fprintf(stderr,
                "usage: tui-render W H [main|detail|log|help|running|auth|auth-detail] [ascii]\n");
        return 2;
    }
    w = atoi(argv[1]);
    h = atoi(argv[2]);
    v.overlay = TUI_OVERLAY_NONE;
    if (argc > 3) {
        if (strcmp(argv[3], "detail") == 0)
            v.overlay = TUI_OVERLAY_DETAIL;
        else if (strcmp(argv[3], "log") == 0)
            v.overlay = TUI_OVERLAY_LOG;
        else if (strcmp(argv[3], "help") == 0)
            v.overlay = TUI_OVERLAY_HELP;
        else if (strcmp(argv[3], "running") == 0)
            running = 1;
        else if (strcmp(argv[3], "auth") == 0)
            auth = 1;
        else if (strcmp(argv[3], "auth-detail") == 0)
            auth = 1, v.overlay = TUI_OVERLAY_DETAIL;
    }
    v.ascii = argc > 4 && strcmp(argv[4], "ascii") == 0;

    /* A: NIP-77, synced by negentropy 3 minutes ago; while "running", mid-fetch. */
    relay_init(&relays[0], "wss://relay.damus.io");
    relays[0].cap = STATS_CAP_SUPPORTED;
    relays[0].cap_source = STATS_CAP_FROM_CACHE;
    relays[0].cap_checked_at = NOW_UNIX - 3 * 86400 - 500;
    snprintf(relays[0].software, sizeof relays[0].software, "strfry");
    snprintf(relays[0].version, sizeof relays[0].version, "1.0.4");
    relays[0].max_message_length = 131072;
    relays[0].max_limit = 500;
    fill_run(&relays[0].filters[0].last, 1, 1, 190, 48000, 1200000, 4100000, 2210, 14);
    fill_run(&relays[0].filters[1].last, 1, 1, 185, 3100, 88000, 412000, 31, 2);
    relays[0].next_run_ms = NOW_MS + 252000;
    if (running) {
        relays[0].phase = STATS_PHASE_FETCHING;
        relays[0].phase_since_ms = NOW_MS - 4200;
        snprintf(relays[0].filter, sizeof relays[0].filter, "notes");
        relays[0].round = 14;
        relays[0].have = 12;
        relays[0].need = 2210;
        relays[0].fetched = 1520;
        relays[0].total = 2210;
        relays[0].bytes_sent = 48000;
        relays[0].bytes_received = 1200000;
        relays[0].est_req_bytes = 4100000;
        relays[0].next_run_ms = -1;
    }

    /* B: no NIP-77 (a NOTICE), a saved "off" override, synced by REQ. */
    relay_init(&relays[1], "ws://nos.lol");
    relays[1].cap = STATS_CAP_UNSUPPORTED;
    relays[1].cap_source = STATS_CAP_FROM_PROBE;
    relays[1].cap_checked_at = NOW_UNIX - 86400 - 7;
    snprintf(relays[1].cap_reason, sizeof relays[1].cap_reason,
             "NOTICE \"ERROR: bad msg: negentropy disabled\"\x1b[31m");
    relays[1].neg_setting = STATS_NEG_AUTO;
    fill_run(&relays[1].filters[0].last, 0, 1, 600, 400, 220000, 220400, 412, 3);
    snprintf(relays[1].filters[0].last.fallback_reason,
             sizeof relays[1].filters[0].last.fallback_reason,
             "NOTICE \"ERROR: bad msg: negentropy disabled\"");
    relays[1].next_run_ms = NOW_MS + 95000;

    /* C: unreachable, backing off; TLS not verified. */
    relay_init(&relays[2], "wss://relay.example.com");
    relays[2].cap = STATS_CAP_UNREACHABLE;
    relays[2].cap_source = STATS_CAP_FROM_PROBE;
    relays[2].cap_checked_at = NOW_UNIX - 30;
    snprintf(relays[2].cap_reason, sizeof relays[2].cap_reason, "connection refused");
    relays[2].neg_setting = STATS_NEG_OFF;
    relays[2].neg_source = STATS_NEG_FROM_OVERRIDE;
    relays[2].phase = STATS_PHASE_BACKOFF;
    relays[2].next_run_ms = NOW_MS + 8000;
    relays[2].failures = 2;
    relays[2].filters[0].last.valid = 1;
    relays[2].filters[0].last.ended = NOW_UNIX - 30;
    snprintf(relays[2].filters[0].last.error, sizeof relays[2].filters[0].last.error,
             "cannot connect: Connection refused");

    if (auth) {
        /* A: NIP-77, but its DMs only for a client that signs in; auth = never. */
        struct stats_run *r = &relays[0].filters[1].last;
        relays[0].cap_source = STATS_CAP_FROM_SESSION;
        relays[0].cap_checked_at = NOW_UNIX - 185;
        relays[0].auth_challenge = 1;
        snprintf(relays[0].cap_reason, sizeof relays[0].cap_reason,
                 "NIP-77 supported; needs AUTH for filter dms");
        fill_run(r, 1, 0, 185, 0, 0, 0, 0, 0);
        r->auth = STATS_AUTH_NEEDED;
        snprintf(r->error, sizeof r->error, "%s",
                 "auth-required: the relay answered NEG-OPEN with NEG-ERR \"auth-required: DMs are "
                 "for their owner\" (set auth = on-request and secret_key_file for this relay to "
                 "authenticate)");
        /* B: it refused the AUTH itself. */
        r = &relays[1].filters[1].last;
        fill_run(r, 0, 0, 590, 0, 0, 0, 0, 0);
        r->auth = STATS_AUTH_FAILED;
        snprintf(r->error, sizeof r->error, "%s",
                 "AUTH refused: the relay answered AUTH as npub10elfcs4fr0l0r8af98jlmgdh9c8tcxjvz9q"
                 "kw038js35mp4dma8qzvjptg with OK false \"restricted: not a member\"");
    }

    s.relays = relays;
    s.nrelays = 3;
    s.events_stored = 41233;
    s.workers_busy = running ? 1 : 0;
    s.workers_total = 4;
    s.now_ms = NOW_MS;

    memset(extra, 0, sizeof extra);
    extra[2].tls_unverified = 1;
    uint8_t hist[] = {71, 75, 78, 80, 255, 72, 71};
    memcpy(extra[0].hist, hist, sizeof hist);
    extra[0].nhist = sizeof hist;

    tui_log_init(&log, TUI_LOG_MAX);
    tui_log_add(&log, "12:04:28",
                "[SYNC] Using negentropy for wss://relay.damus.io (filter notes)");
    tui_log_add(&log, "12:04:29",
                "[SYNC] Using REQ for ws://nos.lol (filter notes): NOTICE \"ERROR: bad msg: "
                "negentropy disabled\"");
    tui_log_add(&log, "12:04:30", "[SYNC] wss://relay.example.com: error: cannot connect\x07");

    v.db_name = "negsync.db";
    v.use_negentropy = 1;
    v.continuous = 1;
    v.selected = 0;
    v.runs = 5;
    v.stored = 2653;
    v.extra = extra;
    v.log = &log;
    v.now_ms = NOW_MS;
    v.now_unix = NOW_UNIX;

    tui_screen_init(&scr, w, h);
    tui_render(&v, &s, &scr, &tick);
    row = xmalloc((size_t)w * 4 + 1);
    for (int y = 0; y < scr.h; y++) {
        tui_screen_row_text(&scr, y, row, (size_t)w * 4 + 1);
        printf("%s\n", row);
    }
    printf("cursor %d tick %" PRId64 "\n", scr.cursor_row, tick);
    free(row);
    tui_screen_free(&scr);
    tui_log_free(&log);
    for (int i = 0; i < 3; i++)
        free(relays[i].filters);
    return 0;
}
