/*
 * negsync-testrelay — a small but real Nostr relay for negsync's tests,
 * benchmarks and demo: NIP-01 (EVENT, REQ, CLOSE), NIP-11 over HTTP and a
 * NIP-77 negentropy responder, on a libwebsockets server bound to 127.0.0.1.
 * Events live in the project's own store (in memory unless --db is given), so
 * the relay's semantics are negsync's. Fault flags make it play the many
 * relays out there: no NIP-77 in its various wordings, NEG-ERR mid-session,
 * dropped connections, delays, garbage and forged events.
 *
 * The first line on stdout is "listening on 127.0.0.1:PORT" (flushed), so a
 * test can start it with --port 0 and read the port. SIGTERM or SIGINT stop
 * it cleanly (exit 0); SIGUSR1 rewrites --stats-file. Layout: see
 * testrelay/testrelay.h.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libwebsockets.h>

#include "event.h"
#include "store.h"
#include "testrelay/testrelay.h"
#include "util.h"

static const char usage_text[] =
    "usage: negsync-testrelay [options]\n"
    "\n"
    "A local Nostr relay (NIP-01, NIP-11, NIP-77 responder) for negsync's tests.\n"
    "Prints \"listening on 127.0.0.1:PORT\" as its first line; SIGTERM/SIGINT stop it.\n"
    "\n"
    "  --port N              port on 127.0.0.1 (default 0: the kernel picks one)\n"
    "  --db FILE             SQLite store (default: in memory)\n"
    "  --events FILE.jsonl   preload events, one JSON object a line (each is verified)\n"
    "  --req-limit N         at most N events per REQ, newest first (default 500)\n"
    "  --max-sync-events N   NEG-OPEN over more matches gets\n"
    "                        [\"NEG-ERR\",id,\"blocked: too many query results\",N]\n"
    "                        (default 1000000)\n"
    "  --max-message N       refuse (NOTICE) messages longer than N bytes, and say so\n"
    "                        in NIP-11 max_message_length (default 16 MiB)\n"
    "  --tls CERT KEY        serve wss:// and https:// with this certificate and key\n"
    "  --deflate             offer permessage-deflate (stats count uncompressed bytes),\n"
    "                        with a sliding window kept across messages, as strfry's\n"
    "                        uWebSockets does by default\n"
    "  --deflate-no-context-takeover\n"
    "                        --deflate as nostream's ws server does it: answer with\n"
    "                        server_no_context_takeover, compress each message on its\n"
    "                        own, and send messages under --deflate-threshold bytes\n"
    "                        (default here 1024, ws's threshold) uncompressed\n"
    "  --deflate-threshold N send messages shorter than N bytes uncompressed (RSV1\n"
    "                        clear) on a deflate connection, as ws and uWebSockets do\n"
    "  --stats-file FILE     after each connection, on SIGUSR1 and at exit, write JSON\n"
    "                        with the payload bytes and messages by type, in and out,\n"
    "                        per connection (open ones marked \"open\":true) and in total\n"
    "  -v, --verbose         log connections and messages to stderr\n"
    "  -h, --help            this text\n"
    "\n"
    "NIP-11 (HTTP GET with Accept: application/nostr+json; without it, a text page):\n"
    "  --nip11-nips LIST     supported_nips, comma separated (default 1,11,77)\n"
    "  --software TEXT       software field (default negsync-testrelay)\n"
    "  --version TEXT        version field (default 1.0)\n"
    "  --nip11=MODE          absent (404), invalid (not JSON), wrongtypes (fields of the\n"
    "                        wrong types), huge (a valid 5 MiB document)\n"
    "  --nip11-file FILE     serve the bytes of FILE as the document, verbatim\n"
    "\n"
    "Fault modes:\n"
    "  --no-nip77=MODE       answer NEG-OPEN/NEG-MSG/NEG-CLOSE like a relay without NIP-77:\n"
    "                          notice      [\"NOTICE\",\"ERROR: bad msg: negentropy disabled\"]\n"
    "                          unknown     [\"NOTICE\",\"ERROR: bad msg: unknown cmd\"]\n"
    "                          neg-err     [\"NEG-ERR\",id,\"blocked: Negentropy sync is disabled\"]\n"
    "                          closed      [\"CLOSED\",id,\"error: NEG not supported\"]\n"
    "                          silent      no answer\n"
    "                          disconnect  drop the connection\n"
    "                        (neg-err and closed do not answer NEG-CLOSE)\n"
    "  --notice-text TEXT    the text (reason) --no-nip77 answers with instead\n"
    "  --welcome-notice TEXT send [\"NOTICE\",TEXT] right after the connection opens\n"
    "  --ignore-first-message[=MS]\n"
    "                        drop without a word whatever a client sends in the first MS\n"
    "                        ms of its connection (default 250), as nostream does with\n"
    "                        its default rate limiter: it attaches its message handler\n"
    "                        only after an async Redis check, so a fast client (loopback,\n"
    "                        LAN) loses its first message. Each drop is logged to stderr\n"
    "  --auth-challenge      send [\"AUTH\",<challenge>] (NIP-42) as soon as a connection\n"
    "                        opens, as n0str does on every connection\n"
    "  --auth KINDS          NIP-42: events of these kinds (comma separated, e.g. 4,1059)\n"
    "                        only for an authenticated pubkey, as strfry keeps DMs: sends\n"
    "                        AUTH on connect; a REQ or NEG-OPEN naming such a kind (a\n"
    "                        NEG-OPEN also: naming no kinds) gets [\"AUTH\",challenge] and\n"
    "                        CLOSED / NEG-ERR \"auth-required: ...\" until then, and\n"
    "                        \"restricted: ...\" after AUTH by a pubkey not allowed; an\n"
    "                        EVENT of such a kind the same in its OK; a REQ naming no kinds\n"
    "                        is served without them. AUTH events are checked: kind 22242,\n"
    "                        the challenge, a relay tag naming ws://127.0.0.1:PORT (or\n"
    "                        localhost, [::1]), created_at within 10 minutes, signature\n"
    "  --auth-pubkey HEX     a pubkey --auth allows (repeatable; none: any pubkey)\n"
    "  --auth-writes-only    with --auth: only an EVENT of those kinds needs AUTH (OK false\n"
    "                        \"auth-required: ...\" before it); REQ and NEG-OPEN serve them\n"
    "                        to anyone, as a relay that lets only its members write\n"
    "  --auth-strict         with --auth: a REQ naming no kinds (an ids fetch) is refused\n"
    "                        like one naming those kinds, not served without them\n"
    "  --auth-refuse REASON  with --auth: answer every AUTH with [\"OK\",id,false,REASON]\n"
    "                        (e.g. \"restricted: not a member\"), as a relay that keeps a\n"
    "                        member list refuses the AUTH itself of anyone not on it\n"
    "  --auth-unheeded       with --auth: answer every AUTH with OK true but go on as\n"
    "                        if none came (auth-required: again): an OK that means nothing\n"
    "  --neg-err-after K     answer the (K+1)-th message of each NEG session with\n"
    "                        [\"NEG-ERR\",id,\"closed: ...\"] (after K rounds)\n"
    "  --neg-close-after K   the same with [\"NEG-CLOSE\",id], as khatru ends sessions\n"
    "  --req-closed TEXT     answer every REQ with [\"CLOSED\",sub,TEXT] (e.g.\n"
    "                        \"auth-required: ...\", \"rate-limited: ...\")\n"
    "  --drop-after K        close the connection once it has sent K messages\n"
    "  --stall-after K       stop reading from a connection once K messages came in\n"
    "                        (replies already due are still sent): a peer that stops\n"
    "                        reading, so the client's send buffer fills\n"
    "  --neg-refuse-limit0   answer a NEG-OPEN whose filter has \"limit\":0 with\n"
    "                        [\"NEG-ERR\",id,\"invalid limit 0\"], as khatru (and the relays\n"
    "                        built on it) do\n"
    "  --flood               once a connection opens, send NOTICEs without end, as fast\n"
    "                        as it reads them: a broken or hostile relay\n"
    "  --big-notice BYTES    send a NOTICE of exactly BYTES bytes right after connecting\n"
    "                        (e.g. over a client's message size cap)\n"
    "  --delay-ms N          hold every reply N ms (timers; the relay never sleeps)\n"
    "  --garbage P           spoil a fraction P of replies, each in one of three ways:\n"
    "                        preceded by a frame of invalid JSON (the reply follows),\n"
    "                        replaced by its own first half (the reply is lost), or, for\n"
    "                        NEG-MSG, its hex payload made to start with \"zz\"\n"
    "  --bad-events P        a fraction P of the events REQ serves get a wrong id or a\n"
    "                        wrong signature (the stored events are untouched)\n"
    "  --req-hide K          REQ never serves the K-th newest event the relay holds at\n"
    "                        its first REQ (NEG still lists it): a deleted or hidden\n"
    "                        event, which leaves a page one short\n"
    "  --neg-cap N           answer NEG-OPEN over only the first N matching events,\n"
    "                        oldest first, as n0str does (instead of \"blocked:\")\n"
    "  --seed S              seed for --garbage and --bad-events (default 1)\n";

static volatile sig_atomic_t interrupted, stats_wanted;
static struct lws_context *signal_context;

/* lws_cancel_service only writes to the service loop's event pipe: signal-safe. */
static void on_signal(int sig)
{
    if (sig == SIGUSR1)
        stats_wanted = 1;
    else
        interrupted = 1;
    if (signal_context != NULL)
        lws_cancel_service(signal_context);
}

static void usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "negsync-testrelay: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(see negsync-testrelay --help)\n");
    exit(2);
}

static uint64_t parse_u64(const char *opt, const char *s, uint64_t max)
{
    char *end;
    unsigned long long v;

    errno = 0;
    if (*s == '-' || *s == '\0')
        usage_error("%s: not a non-negative integer", opt);
    v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > max)
        usage_error("%s: not a non-negative integer in range", opt);
    return v;
}

static double parse_fraction(const char *opt, const char *s)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(v >= 0 && v <= 1))
        usage_error("%s: not a fraction between 0 and 1", opt);
    return v;
}

enum {
    OPT_PORT = 256,
    OPT_DB,
    OPT_EVENTS,
    OPT_REQ_LIMIT,
    OPT_MAX_SYNC,
    OPT_TLS,
    OPT_DEFLATE,
    OPT_DEFLATE_NCT,
    OPT_DEFLATE_THRESHOLD,
    OPT_FLOOD,
    OPT_NEG_REFUSE_LIMIT0,
    OPT_STATS,
    OPT_NIPS,
    OPT_SOFTWARE,
    OPT_VERSION,
    OPT_NIP11,
    OPT_NIP11_FILE,
    OPT_NO_NIP77,
    OPT_NOTICE_TEXT,
    OPT_WELCOME,
    OPT_IGNORE_FIRST,
    OPT_AUTH_CHALLENGE,
    OPT_AUTH,
    OPT_AUTH_PUBKEY,
    OPT_AUTH_WRITES_ONLY,
    OPT_AUTH_STRICT,
    OPT_AUTH_REFUSE,
    OPT_AUTH_UNHEEDED,
    OPT_NEG_ERR_AFTER,
    OPT_NEG_CLOSE_AFTER,
    OPT_REQ_CLOSED,
    OPT_DROP_AFTER,
    OPT_STALL_AFTER,
    OPT_BIG_NOTICE,
    OPT_DELAY,
    OPT_GARBAGE,
    OPT_BAD_EVENTS,
    OPT_SEED,
    OPT_MAX_MESSAGE,
    OPT_REQ_HIDE,
    OPT_NEG_CAP,
};

static const struct option long_options[] = {
    {"port", required_argument, NULL, OPT_PORT},
    {"db", required_argument, NULL, OPT_DB},
    {"events", required_argument, NULL, OPT_EVENTS},
    {"req-limit", required_argument, NULL, OPT_REQ_LIMIT},
    {"max-sync-events", required_argument, NULL, OPT_MAX_SYNC},
    {"tls", required_argument, NULL, OPT_TLS},
    {"deflate", no_argument, NULL, OPT_DEFLATE},
    {"deflate-no-context-takeover", no_argument, NULL, OPT_DEFLATE_NCT},
    {"deflate-threshold", required_argument, NULL, OPT_DEFLATE_THRESHOLD},
    {"flood", no_argument, NULL, OPT_FLOOD},
    {"neg-refuse-limit0", no_argument, NULL, OPT_NEG_REFUSE_LIMIT0},
    {"stats-file", required_argument, NULL, OPT_STATS},
    {"nip11-nips", required_argument, NULL, OPT_NIPS},
    {"software", required_argument, NULL, OPT_SOFTWARE},
    {"version", required_argument, NULL, OPT_VERSION},
    {"nip11", required_argument, NULL, OPT_NIP11},
    {"nip11-file", required_argument, NULL, OPT_NIP11_FILE},
    {"no-nip77", optional_argument, NULL, OPT_NO_NIP77},
    {"notice-text", required_argument, NULL, OPT_NOTICE_TEXT},
    {"welcome-notice", required_argument, NULL, OPT_WELCOME},
    {"ignore-first-message", optional_argument, NULL, OPT_IGNORE_FIRST},
    {"auth-challenge", no_argument, NULL, OPT_AUTH_CHALLENGE},
    {"auth", required_argument, NULL, OPT_AUTH},
    {"auth-pubkey", required_argument, NULL, OPT_AUTH_PUBKEY},
    {"auth-writes-only", no_argument, NULL, OPT_AUTH_WRITES_ONLY},
    {"auth-strict", no_argument, NULL, OPT_AUTH_STRICT},
    {"auth-refuse", required_argument, NULL, OPT_AUTH_REFUSE},
    {"auth-unheeded", no_argument, NULL, OPT_AUTH_UNHEEDED},
    {"neg-err-after", required_argument, NULL, OPT_NEG_ERR_AFTER},
    {"neg-close-after", required_argument, NULL, OPT_NEG_CLOSE_AFTER},
    {"req-closed", required_argument, NULL, OPT_REQ_CLOSED},
    {"drop-after", required_argument, NULL, OPT_DROP_AFTER},
    {"stall-after", required_argument, NULL, OPT_STALL_AFTER},
    {"big-notice", required_argument, NULL, OPT_BIG_NOTICE},
    {"delay-ms", required_argument, NULL, OPT_DELAY},
    {"garbage", required_argument, NULL, OPT_GARBAGE},
    {"bad-events", required_argument, NULL, OPT_BAD_EVENTS},
    {"seed", required_argument, NULL, OPT_SEED},
    {"max-message", required_argument, NULL, OPT_MAX_MESSAGE},
    {"req-hide", required_argument, NULL, OPT_REQ_HIDE},
    {"neg-cap", required_argument, NULL, OPT_NEG_CAP},
    {"verbose", no_argument, NULL, 'v'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* --auth KINDS: a comma list of kinds 0..65535; it also turns AUTH on connect on. */
static void parse_auth_kinds(const char *list, struct tr_config *cfg)
{
    const char *p = list;
    char num[16];

    for (;;) {
        size_t n = strcspn(p, ",");
        if (n == 0 || n >= sizeof num)
            usage_error("--auth: '%s' is not a comma list of kinds", list);
        memcpy(num, p, n);
        num[n] = '\0';
        cfg->auth_kinds =
            xreallocarray(cfg->auth_kinds, cfg->nauth_kinds + 1, sizeof *cfg->auth_kinds);
        cfg->auth_kinds[cfg->nauth_kinds++] = (uint32_t)parse_u64("--auth", num, 65535);
        if (p[n] == '\0')
            break;
        p += n + 1;
    }
    cfg->auth_challenge = 1;
}

static void parse_args(int argc, char **argv, struct tr_config *cfg)
{
    int opt, threshold_given = 0;

    memset(cfg, 0, sizeof *cfg);
    cfg->req_limit = 500;
    cfg->max_sync_events = 1000000;
    cfg->nip11_nips = "1,11,77";
    cfg->software = "negsync-testrelay";
    cfg->version = "1.0";
    cfg->neg_err_after = -1;
    cfg->neg_close_after = -1;
    cfg->ignore_first_ms = -1;
    cfg->drop_after = -1;
    cfg->stall_after = -1;
    cfg->seed = 1;
    cfg->max_message = TR_MAX_MESSAGE;

    while ((opt = getopt_long(argc, argv, "vh", long_options, NULL)) != -1) {
        switch (opt) {
        case OPT_PORT: cfg->port = (int)parse_u64("--port", optarg, 65535); break;
        case OPT_DB: cfg->db_path = optarg; break;
        case OPT_EVENTS: cfg->events_path = optarg; break;
        case OPT_REQ_LIMIT: cfg->req_limit = parse_u64("--req-limit", optarg, INT64_MAX); break;
        case OPT_MAX_SYNC:
            cfg->max_sync_events = parse_u64("--max-sync-events", optarg, INT64_MAX);
            break;
        case OPT_TLS:
            /* Two arguments: getopt has the first, the key is the next word. */
            if (optind >= argc || argv[optind][0] == '-')
                usage_error("%s: needs a certificate and a key", "--tls");
            cfg->tls_cert = optarg;
            cfg->tls_key = argv[optind++];
            break;
        case OPT_DEFLATE: cfg->deflate = 1; break;
        case OPT_DEFLATE_NCT:
            cfg->deflate = cfg->deflate_no_context_takeover = 1;
            if (!threshold_given)
                cfg->deflate_threshold = 1024;
            break;
        case OPT_DEFLATE_THRESHOLD:
            cfg->deflate_threshold = (size_t)parse_u64("--deflate-threshold", optarg, 1u << 30);
            threshold_given = 1;
            break;
        case OPT_FLOOD: cfg->flood = 1; break;
        case OPT_NEG_REFUSE_LIMIT0: cfg->neg_refuse_limit0 = 1; break;
        case OPT_STATS: cfg->stats_file = optarg; break;
        case OPT_NIPS: cfg->nip11_nips = optarg; break;
        case OPT_SOFTWARE: cfg->software = optarg; break;
        case OPT_VERSION: cfg->version = optarg; break;
        case OPT_NIP11:
            if (strcmp(optarg, "absent") == 0)
                cfg->nip11 = TR_NIP11_ABSENT;
            else if (strcmp(optarg, "invalid") == 0)
                cfg->nip11 = TR_NIP11_INVALID;
            else if (strcmp(optarg, "wrongtypes") == 0)
                cfg->nip11 = TR_NIP11_WRONGTYPES;
            else if (strcmp(optarg, "huge") == 0)
                cfg->nip11 = TR_NIP11_HUGE;
            else if (strcmp(optarg, "ok") == 0)
                cfg->nip11 = TR_NIP11_OK;
            else
                usage_error("--nip11: unknown mode '%s'", optarg);
            break;
        case OPT_NIP11_FILE: cfg->nip11_file = optarg; break;
        case OPT_NO_NIP77:
            if (optarg == NULL || strcmp(optarg, "notice") == 0)
                cfg->nonip77 = TR_NIP77_NOTICE;
            else if (strcmp(optarg, "unknown") == 0)
                cfg->nonip77 = TR_NIP77_UNKNOWN;
            else if (strcmp(optarg, "neg-err") == 0)
                cfg->nonip77 = TR_NIP77_NEG_ERR;
            else if (strcmp(optarg, "closed") == 0)
                cfg->nonip77 = TR_NIP77_CLOSED;
            else if (strcmp(optarg, "silent") == 0)
                cfg->nonip77 = TR_NIP77_SILENT;
            else if (strcmp(optarg, "disconnect") == 0)
                cfg->nonip77 = TR_NIP77_DISCONNECT;
            else
                usage_error("--no-nip77: unknown mode '%s'", optarg);
            break;
        case OPT_NOTICE_TEXT: cfg->notice_text = optarg; break;
        case OPT_WELCOME: cfg->welcome_notice = optarg; break;
        case OPT_IGNORE_FIRST:
            cfg->ignore_first_ms =
                optarg != NULL ? (int64_t)parse_u64("--ignore-first-message", optarg, 600000) : 250;
            break;
        case OPT_AUTH_CHALLENGE: cfg->auth_challenge = 1; break;
        case OPT_AUTH: parse_auth_kinds(optarg, cfg); break;
        case OPT_AUTH_PUBKEY:
            cfg->auth_pubkeys =
                xreallocarray(cfg->auth_pubkeys, cfg->nauth_pubkeys + 1, sizeof *cfg->auth_pubkeys);
            if (hex_decode(optarg, strlen(optarg), cfg->auth_pubkeys[cfg->nauth_pubkeys], 32, 1) <
                0)
                usage_error("--auth-pubkey: '%s' is not 64 lowercase hex digits", optarg);
            cfg->nauth_pubkeys++;
            break;
        case OPT_AUTH_WRITES_ONLY: cfg->auth_writes_only = 1; break;
        case OPT_AUTH_STRICT: cfg->auth_strict = 1; break;
        case OPT_AUTH_REFUSE: cfg->auth_refuse = optarg; break;
        case OPT_AUTH_UNHEEDED: cfg->auth_unheeded = 1; break;
        case OPT_NEG_ERR_AFTER:
            cfg->neg_err_after = (int64_t)parse_u64("--neg-err-after", optarg, INT64_MAX);
            break;
        case OPT_NEG_CLOSE_AFTER:
            cfg->neg_close_after = (int64_t)parse_u64("--neg-close-after", optarg, INT64_MAX);
            break;
        case OPT_REQ_CLOSED: cfg->req_closed = optarg; break;
        case OPT_DROP_AFTER:
            cfg->drop_after = (int64_t)parse_u64("--drop-after", optarg, INT64_MAX);
            break;
        case OPT_STALL_AFTER:
            cfg->stall_after = (int64_t)parse_u64("--stall-after", optarg, INT64_MAX);
            break;
        case OPT_BIG_NOTICE:
            /* At least ["NOTICE",""]; at most 1 GiB. */
            cfg->big_notice = (size_t)parse_u64("--big-notice", optarg, 1u << 30);
            if (cfg->big_notice < 13)
                usage_error("%s: at least 13 bytes", "--big-notice");
            break;
        case OPT_DELAY:
            cfg->delay_ms = (unsigned)parse_u64("--delay-ms", optarg, 3600 * 1000);
            break;
        case OPT_GARBAGE: cfg->garbage = parse_fraction("--garbage", optarg); break;
        case OPT_BAD_EVENTS: cfg->bad_events = parse_fraction("--bad-events", optarg); break;
        case OPT_SEED: cfg->seed = parse_u64("--seed", optarg, UINT64_MAX); break;
        case OPT_REQ_HIDE: cfg->req_hide = parse_u64("--req-hide", optarg, INT64_MAX); break;
        case OPT_NEG_CAP: cfg->neg_cap = parse_u64("--neg-cap", optarg, INT64_MAX); break;
        case OPT_MAX_MESSAGE:
            cfg->max_message = (size_t)parse_u64("--max-message", optarg, TR_MAX_MESSAGE);
            if (cfg->max_message < 64)
                usage_error("%s: at least 64 bytes", "--max-message");
            break;
        case 'v': cfg->verbose = 1; break;
        case 'h': fputs(usage_text, stdout); exit(0);
        default: fprintf(stderr, "(see negsync-testrelay --help)\n"); exit(2);
        }
    }
    if (optind < argc)
        usage_error("unexpected argument '%s'", argv[optind]);
    if ((cfg->auth_refuse != NULL || cfg->auth_unheeded) && cfg->nauth_kinds == 0)
        usage_error("%s needs --auth KINDS",
                    cfg->auth_refuse != NULL ? "--auth-refuse" : "--auth-unheeded");
    if (cfg->auth_refuse != NULL && cfg->auth_unheeded)
        usage_error("%s", "--auth-refuse and --auth-unheeded exclude each other");
}

/* Stores a batch of verified events; -1 with a reason. */
static int preload_flush(struct store *st, struct event **evs, size_t *n, char *err, size_t errlen)
{
    struct store_result *res;
    int rc;

    if (*n == 0)
        return 0;
    res = xcalloc(*n, sizeof *res);
    rc = store_insert_batch(st, evs, *n, res, err, errlen);
    for (size_t i = 0; i < *n; i++)
        event_free(evs[i]);
    free(res);
    *n = 0;
    return rc;
}

/* Loads FILE.jsonl; every event must parse and verify. -1 with "file:line: why". */
static int preload_events(struct store *st, const char *path, char *err, size_t errlen)
{
    enum { BATCH = 1000 };
    struct event *evs[BATCH];
    size_t nev = 0, cap = 0, lineno = 0;
    char *line = NULL, why[EVENT_ERRLEN + STORE_ERRLEN];
    ssize_t len;
    FILE *fp = fopen(path, "r");
    int rc = 0;

    if (fp == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    while ((len = getline(&line, &cap, fp)) >= 0) {
        struct event *ev;

        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        if (len == 0)
            continue;
        ev = event_parse(line, (size_t)len, why, sizeof why);
        if (ev == NULL || event_verify(ev, why, sizeof why) < 0) {
            snprintf(err, errlen, "%s:%zu: %s", path, lineno, why);
            event_free(ev);
            rc = -1;
            break;
        }
        evs[nev++] = ev;
        if (nev == BATCH && preload_flush(st, evs, &nev, why, sizeof why) < 0) {
            snprintf(err, errlen, "%s:%zu: %s", path, lineno, why);
            rc = -1;
            break;
        }
    }
    if (rc == 0 && ferror(fp)) {
        snprintf(err, errlen, "%s: read error", path);
        rc = -1;
    }
    if (preload_flush(st, evs, &nev, why, sizeof why) < 0 && rc == 0) {
        snprintf(err, errlen, "%s: %s", path, why);
        rc = -1;
    }
    free(line);
    fclose(fp);
    return rc;
}

/*
 * The parameters a libwebsockets server accepts when a client asks for
 * them. (Its compressor obeys client_no_context_takeover, not
 * server_no_context_takeover: conn.c sets that itself for
 * --deflate-no-context-takeover.)
 */
static const struct lws_extension deflate_extensions[] = {
    {"permessage-deflate", lws_extension_callback_pm_deflate,
     "permessage-deflate; client_no_context_takeover; client_max_window_bits"},
    {NULL, NULL, NULL},
};

int main(int argc, char **argv)
{
    struct tr_config cfg;
    struct tr_server srv;
    struct lws_context_creation_info info;
    struct lws_vhost *vh;
    struct sigaction sa;
    char err[512];
    int port, rc = 0;

    parse_args(argc, argv, &cfg);
    memset(&srv, 0, sizeof srv);
    srv.cfg = &cfg;
    srv.rng = cfg.seed;

    srv.store = store_open(cfg.db_path != NULL ? cfg.db_path : ":memory:", err, sizeof err);
    if (srv.store == NULL) {
        fprintf(stderr, "negsync-testrelay: %s\n", err);
        return 1;
    }
    if (cfg.events_path != NULL &&
        preload_events(srv.store, cfg.events_path, err, sizeof err) < 0) {
        fprintf(stderr, "negsync-testrelay: %s\n", err);
        store_close(srv.store);
        return 1;
    }
    if (tr_nip11_build(&srv, err, sizeof err) < 0) {
        fprintf(stderr, "negsync-testrelay: %s\n", err);
        store_close(srv.store);
        return 2;
    }

    lws_set_log_level(cfg.verbose ? LLL_ERR | LLL_WARN | LLL_NOTICE : LLL_ERR, NULL);
    memset(&info, 0, sizeof info);
    info.port = cfg.port;
    info.iface = "127.0.0.1";
    info.protocols = tr_protocols;
    info.user = &srv;
    info.vhost_name = "default";
    /* HTTP/1.1 only: websockets over h2 are not what relays and their clients speak. */
    info.alpn = "http/1.1";
    info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
    if (cfg.deflate)
        info.extensions = deflate_extensions;
    if (cfg.tls_cert != NULL) {
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.ssl_cert_filepath = cfg.tls_cert;
        info.ssl_private_key_filepath = cfg.tls_key;
    }
    srv.ctx = lws_create_context(&info);
    if (srv.ctx == NULL) {
        fprintf(stderr, "negsync-testrelay: cannot start the server on 127.0.0.1:%d\n", cfg.port);
        rc = 1;
        goto out;
    }
    vh = lws_get_vhost_by_name(srv.ctx, "default");
    port = vh != NULL ? lws_get_vhost_listen_port(vh) : -1;
    if (port <= 0) {
        fprintf(stderr, "negsync-testrelay: the server is not listening\n");
        rc = 1;
        goto out;
    }
    srv.port = port;
    /* Before the port is announced: a test may send SIGTERM as soon as it reads it. */
    signal_context = srv.ctx;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    printf("listening on 127.0.0.1:%d\n", port);
    fflush(stdout);

    while (!interrupted) {
        if (lws_service(srv.ctx, 0) < 0) {
            fprintf(stderr, "negsync-testrelay: service loop failed\n");
            rc = 1;
            break;
        }
        if (stats_wanted) {
            stats_wanted = 0;
            if (cfg.stats_file != NULL && tr_stats_write(&srv, err, sizeof err) < 0)
                fprintf(stderr, "negsync-testrelay: %s\n", err);
        }
    }

out:
    signal_context = NULL;
    /* Closes every connection, which records their counters for the stats. */
    if (srv.ctx != NULL)
        lws_context_destroy(srv.ctx);
    if (cfg.stats_file != NULL && tr_stats_write(&srv, err, sizeof err) < 0) {
        fprintf(stderr, "negsync-testrelay: %s\n", err);
        rc = 1;
    }
    if (cfg.verbose)
        fprintf(stderr, "negsync-testrelay: stopped\n");
    store_close(srv.store);
    free(srv.records);
    free(srv.nip11_doc);
    free(cfg.auth_kinds);
    free(cfg.auth_pubkeys);
    return rc;
}
