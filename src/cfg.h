/*
 * config: the INI file (parsed with inih) turned into a struct config, with
 * defaults for everything and validation strict enough that a file which
 * loads is one negsync can act on. Errors are collected, not just the first:
 * each is "file:line: message" (or "file: message" when no line applies), and
 * the caller prints them (the first CONFIG_MAX_ERRORS, and how many more) and
 * exits 2 before anything is synced.
 *
 * The format is described in DESIGN.md, man/negsync.1 (CONFIGURATION) and
 * data/negsync.ini, which shows every key with its default.
 */
#ifndef NEGSYNC_CFG_H
#define NEGSYNC_CFG_H

#include <stddef.h>
#include <stdint.h>

#include "filter.h"

#define CONFIG_ERRLEN 512
/* A larger file is refused: a config is a few kilobytes, a list of 60 000 pubkeys 4 MiB. */
#define CONFIG_MAX_SIZE (4 << 20)
/* Messages listed from one file; the rest are counted in config_errors.more. */
#define CONFIG_MAX_ERRORS 20

enum config_direction {
    CONFIG_DIRECTION_DOWN, /* fetch from the relay */
    CONFIG_DIRECTION_UP,   /* send local events the relay lacks */
    CONFIG_DIRECTION_BOTH,
};

/* A relay's "negentropy" key. */
enum config_negentropy {
    CONFIG_NEGENTROPY_AUTO, /* follow [sync] use_negentropy */
    CONFIG_NEGENTROPY_ON,   /* try NIP-77 even when use_negentropy = false */
    CONFIG_NEGENTROPY_OFF,  /* never NIP-77 on this relay */
};

/*
 * What a sync job does about NIP-77 on one relay; see config_relay_neg_mode.
 */
enum config_neg_mode {
    CONFIG_NEG_MODE_REQ_ONLY,     /* REQ from a cursor, never NEG-OPEN */
    CONFIG_NEG_MODE_NEG_FALLBACK, /* NEG where the relay has it, else REQ */
    CONFIG_NEG_MODE_NEG_STRICT,   /* NEG or nothing: no NIP-77 is an error */
};

/* NIP-42: whether negsync answers a relay's AUTH challenge. */
enum config_auth {
    CONFIG_AUTH_NEVER,      /* nothing is ever signed for the relay (the default) */
    CONFIG_AUTH_ON_REQUEST, /* sign the challenge with secret_key_file's key when asked */
};

struct keys_secret;

/*
 * The [sync] keys. config_new fills in the defaults (cfg.c holds them, the
 * only copy) and the parser keeps every value in its range: readers use the
 * fields as they are, with no fallback of their own.
 */
struct config_sync {
    unsigned workers;        /* relays synced at once, 1..256 */
    int use_negentropy;      /* bool */
    int negentropy_fallback; /* bool */
    enum config_direction direction;
    unsigned interval;         /* seconds between rounds */
    unsigned recheck_days;     /* capability cache lifetime; 0 = always probe */
    unsigned neg_timeout;      /* seconds */
    unsigned probe_timeout;    /* seconds */
    uint64_t frame_size_limit; /* 0 (none) or >= 4096, as neg_new takes it */
    int neg_adaptive;          /* negentropy_split = adaptive (neg_set_adaptive) */
    unsigned fetch_batch;      /* ids per REQ when fetching what NEG found */
    unsigned fetch_in_flight;  /* such REQs outstanding at once */
    uint64_t max_sync_events;  /* larger sets are split by time window */
    uint64_t max_message_size; /* the longest message read from a relay, inflated */
    /* NIP-42 defaults for relays that do not set their own. */
    enum config_auth auth;
    char *secret_key_file; /* expanded path, or NULL */
    int secret_key_line;
};

struct config_relay {
    char *url; /* normalized (config_url_normalize) */
    int line;  /* of its [relay URL] header */
    enum config_negentropy negentropy;
    enum config_direction direction; /* effective: its own or [sync]'s */
    int direction_set;               /* 1 if the section set direction */
    int tls_verify;                  /* bool, default 1 */
    int compression;                 /* bool (permessage-deflate), default 1 */
    int enabled;                     /* bool, default 1 */
    /* NIP-42, effective: the relay's own auth / secret_key_file, else [sync]'s. */
    enum config_auth auth;
    int auth_set;
    char *secret_key_file; /* expanded path, or NULL */
    int secret_key_line;   /* where the effective secret_key_file was set */
    /*
     * The key to answer AUTH with: set exactly when auth is on-request,
     * loaded (keys_load_file) when the config was; owned by config.keys.
     */
    const struct keys_secret *key;
};

struct config_filter {
    char *name;
    int line;              /* of its [filter NAME] header */
    struct filter *filter; /* resolved against the "now" of loading */
    /*
     * A relative since/until ("30d") is kept as an age in seconds so that a
     * long-running sync can re-resolve it each round (config_filter_at);
     * -1 when the bound is absent or absolute.
     */
    int64_t since_age, until_age;
};

struct config {
    char *path;         /* the file read; NULL when none was */
    char *storage_path; /* [storage] path, expanded; NULL if unset */
    struct config_sync sync;
    struct config_relay *relays;
    size_t nrelays;
    struct config_filter *filters;
    size_t nfilters;
    /* The secret keys relays with auth = on-request use, each file read once; config_free wipes them. */
    struct keys_secret **keys;
    size_t nkeys;
    /*
     * Set when the default file does not exist: what to tell the user (on
     * stderr) about creating one. The config is then empty but valid.
     */
    char *notice;
};

/* The messages from one load, in file order. */
struct config_errors {
    size_t n;
    char **msgs; /* "file:line: message", at most CONFIG_MAX_ERRORS of one file */
    size_t more; /* further errors found but not listed */
};

void config_errors_free(struct config_errors *errs);

/* A config with every default and no relays or filters. Free with config_free. */
struct config *config_new(void);
void config_free(struct config *cfg);

/*
 * Loads the configuration the command line asks for. path is -c FILE, or
 * NULL for the default (config_default_path); now is "now" for relative
 * times (pass time(NULL); tests inject their own). A missing -c file is an
 * error; a missing default file gives an empty config with cfg->notice set.
 * A file that is not a regular file (/dev/null reads as empty), is larger
 * than CONFIG_MAX_SIZE or holds a NUL byte is refused with one message,
 * before any of it is parsed. Returns NULL when errs holds at least one
 * message.
 */
struct config *config_load(const char *path, int64_t now, struct config_errors *errs);

/*
 * Parses one file into cfg (normally fresh from config_new), appending
 * every problem to errs. Returns 0, or -1 when it added any error.
 */
int config_parse_file(struct config *cfg, const char *path, int64_t now,
                      struct config_errors *errs);

/*
 * $XDG_CONFIG_HOME/negsync/negsync.ini, or ~/.config/negsync/negsync.ini
 * (a relative $XDG_CONFIG_HOME is ignored, as the XDG spec says). Caller
 * frees; NULL when neither variable is usable.
 */
char *config_default_path(void);

/*
 * The database to open: cli_override (-d FILE), else [storage] path, else
 * $XDG_DATA_HOME/negsync/negsync.db (or ~/.local/share/negsync/negsync.db).
 * cfg may be NULL. Creates no directory. Caller frees; NULL with a reason in
 * err when no path can be made.
 */
char *config_db_path(const struct config *cfg, const char *cli_override, char *err, size_t errlen);

/*
 * Whether a job on relay r uses negentropy, and whether it may fall back:
 *
 *   relay negentropy   [sync] use_negentropy   negentropy_fallback   mode
 *   auto               true                    true                  NEG_FALLBACK
 *   auto               true                    false                 NEG_STRICT
 *   auto               false                   (ignored)             REQ_ONLY
 *   on                 (ignored)               true                  NEG_FALLBACK
 *   on                 (ignored)               false                 NEG_STRICT
 *   off                (ignored)               (ignored)             REQ_ONLY
 *
 * "on" overrides only use_negentropy: it lets one relay use NIP-77 while the
 * rest use REQ, and fallback stays the global policy. In NEG_STRICT a relay
 * without NIP-77 is reported as an error and not synced.
 */
enum config_neg_mode config_relay_neg_mode(const struct config *cfg, const struct config_relay *r);

/*
 * cf's filter with relative since/until recomputed against now. Caller
 * frees with filter_free.
 */
struct filter *config_filter_at(const struct config_filter *cf, int64_t now);

/* Lookups by normalized URL / by name; NULL when absent. */
const struct config_relay *config_find_relay(const struct config *cfg, const char *url);
const struct config_filter *config_find_filter(const struct config *cfg, const char *name);

/*
 * Normalizes a relay URL: ws:// or wss:// with a host; scheme and host
 * lowercased, the default port (80, 443) and a trailing slash dropped; the
 * path and query are kept as written. Returns a string the caller frees, or
 * NULL with the reason in err.
 */
char *config_url_normalize(const char *url, char *err, size_t errlen);

/*
 * Parses a since/until value: a unix time, YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ
 * (UTC) or an age "N" + s|m|h|d|w before now. On success returns 0, sets
 * *out and *age (the age in seconds, or -1 for an absolute time). Returns -1
 * with a reason in err.
 */
int config_parse_time(const char *s, int64_t now, int64_t *out, int64_t *age, char *err,
                      size_t errlen);

const char *config_direction_name(enum config_direction d);
const char *config_negentropy_name(enum config_negentropy n);
const char *config_neg_mode_name(enum config_neg_mode m);
const char *config_auth_name(enum config_auth a); /* "never", "on-request" */

#endif
