/*
 * cmd-config: `negsync check-config`. Loads the configuration exactly as
 * every other command does and either prints each problem (exit 2) or the
 * effective configuration, defaults included, in the file's own INI shape so
 * it can be compared with what was meant (exit 0). Filters are shown as the
 * JSON that goes to relays, as `json = ...`, a key the parser refuses: a
 * printed config pasted back must not silently turn into "match everything".
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cfg.h"
#include "commands.h"
#include "filter.h"
#include "keys.h"
#include "util.h"

static const char *cmd_config_bool(int b)
{
    return b ? "true" : "false";
}

static const char *cmd_config_mode_text(enum config_neg_mode m)
{
    switch (m) {
    case CONFIG_NEG_MODE_REQ_ONLY: return "REQ only";
    case CONFIG_NEG_MODE_NEG_FALLBACK: return "NEG, falling back to REQ";
    case CONFIG_NEG_MODE_NEG_STRICT: return "NEG only; no NIP-77 is an error";
    }
    return "?";
}

/* "30d"-style text for an age in seconds, in the largest unit that divides it. */
static void cmd_config_age(int64_t age, char *out, size_t outlen)
{
    static const struct {
        int64_t secs;
        char unit;
    } units[] = {{7 * 86400, 'w'}, {86400, 'd'}, {3600, 'h'}, {60, 'm'}, {1, 's'}};

    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (age % units[i].secs == 0) {
            snprintf(out, outlen, "%lld%c", (long long)(age / units[i].secs), units[i].unit);
            return;
        }
    }
    snprintf(out, outlen, "%llds", (long long)age);
}

/*
 * A relay's NIP-42 setting: whether it may authenticate and as whom. The
 * pubkey (npub and hex) is all that is shown of a key.
 */
static void cmd_config_print_auth(FILE *f, const struct config_relay *r)
{
    char npub[KEYS_NPUB_SIZE], hex[65];

    if (r->auth != CONFIG_AUTH_ON_REQUEST || r->key == NULL) {
        fprintf(f, "auth = never%s\n",
                r->auth_set ? "    ; AUTH challenges are not answered"
                            : "    ; from [sync]: AUTH challenges are not answered");
        return;
    }
    keys_npub(keys_pubkey(r->key), npub);
    hex_encode(keys_pubkey(r->key), 32, hex);
    fprintf(f, "auth = on-request%s\n", r->auth_set ? "" : "    ; from [sync]");
    fprintf(f, "secret_key_file = %s\n", r->secret_key_file);
    fprintf(f, "; authenticates, when the relay asks, as %s\n;   (hex %s)\n", npub, hex);
}

static void cmd_config_print(FILE *f, const struct config *cfg, const char *db_path,
                             const char *db_from)
{
    const struct config_sync *s = &cfg->sync;

    if (cfg->path != NULL)
        fprintf(f, "; %s is valid. Effective configuration, defaults included:\n", cfg->path);
    else
        fprintf(f, "; no configuration file. Effective configuration (all defaults):\n");

    fprintf(f, "\n[storage]\n");
    fprintf(f, "path = %s%s%s\n", db_path, db_from != NULL ? "    ; " : "",
            db_from != NULL ? db_from : "");

    fprintf(f, "\n[sync]\n");
    fprintf(f, "workers = %u\n", s->workers);
    fprintf(f, "use_negentropy = %s\n", cmd_config_bool(s->use_negentropy));
    fprintf(f, "negentropy_fallback = %s\n", cmd_config_bool(s->negentropy_fallback));
    fprintf(f, "direction = %s\n", config_direction_name(s->direction));
    fprintf(f, "interval = %u\n", s->interval);
    fprintf(f, "recheck_days = %u\n", s->recheck_days);
    fprintf(f, "neg_timeout = %u\n", s->neg_timeout);
    fprintf(f, "probe_timeout = %u\n", s->probe_timeout);
    fprintf(f, "frame_size_limit = %llu\n", (unsigned long long)s->frame_size_limit);
    fprintf(f, "negentropy_split = %s\n", s->neg_adaptive ? "adaptive" : "reference");
    fprintf(f, "fetch_batch = %u\n", s->fetch_batch);
    fprintf(f, "fetch_in_flight = %u\n", s->fetch_in_flight);
    fprintf(f, "max_sync_events = %llu\n", (unsigned long long)s->max_sync_events);
    fprintf(f, "max_message_size = %llu\n", (unsigned long long)s->max_message_size);
    fprintf(f, "auth = %s\n", config_auth_name(s->auth));
    if (s->secret_key_file != NULL)
        fprintf(f, "secret_key_file = %s\n", s->secret_key_file);

    for (size_t i = 0; i < cfg->nrelays; i++) {
        const struct config_relay *r = &cfg->relays[i];
        fprintf(f, "\n[relay %s]\n", r->url);
        fprintf(f, "negentropy = %s    ; %s\n", config_negentropy_name(r->negentropy),
                cmd_config_mode_text(config_relay_neg_mode(cfg, r)));
        fprintf(f, "direction = %s%s\n", config_direction_name(r->direction),
                r->direction_set ? "" : "    ; from [sync]");
        fprintf(f, "tls_verify = %s\n", cmd_config_bool(r->tls_verify));
        fprintf(f, "compression = %s\n", cmd_config_bool(r->compression));
        fprintf(f, "enabled = %s\n", cmd_config_bool(r->enabled));
        cmd_config_print_auth(f, r);
    }

    for (size_t i = 0; i < cfg->nfilters; i++) {
        const struct config_filter *cf = &cfg->filters[i];
        char *json = filter_to_string(cf->filter);
        char age[32];

        fprintf(f, "\n[filter %s]\n", cf->name);
        if (cf->since_age >= 0) {
            cmd_config_age(cf->since_age, age, sizeof age);
            fprintf(f, "; since = %s: moves with the clock, shown for now\n", age);
        }
        if (cf->until_age >= 0) {
            cmd_config_age(cf->until_age, age, sizeof age);
            fprintf(f, "; until = %s: moves with the clock, shown for now\n", age);
        }
        fprintf(f, "json = %s\n", json);
        free(json);
    }
    if (cfg->nrelays == 0)
        fprintf(f, "\n; no relays: add [relay wss://...] sections to sync\n");
    if (cfg->nfilters == 0)
        fprintf(f, "; no filters: add [filter NAME] sections to say what to sync\n");
}

int cmd_check_config(struct globals *g, int argc, char **argv)
{
    struct config *cfg;
    char err[CONFIG_ERRLEN];
    char *db;
    const char *db_from = NULL;

    if (argc > 1) {
        if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
            puts("usage: negsync [-c FILE] [-d FILE] check-config\n"
                 "Validate the configuration and print its effective values.");
            return 0;
        }
        fputs("usage: negsync [-c FILE] [-d FILE] check-config\n", stderr);
        return EXIT_USAGE;
    }
    if ((cfg = cmd_load_config(g, "")) == NULL)
        return EXIT_USAGE;
    if (cfg->notice != NULL)
        fprintf(stderr, "negsync: %s\n", cfg->notice);

    if (g->db_path != NULL)
        db_from = "from -d";
    else if (cfg->storage_path == NULL)
        db_from = "default";
    db = config_db_path(cfg, g->db_path, err, sizeof err);
    if (db == NULL) {
        fprintf(stderr, "negsync: %s\n", err);
        config_free(cfg);
        return EXIT_USAGE;
    }
    cmd_config_print(stdout, cfg, db, db_from);
    free(db);
    config_free(cfg);
    if (fflush(stdout) != 0) {
        perror("negsync: stdout");
        return 1;
    }
    return 0;
}
