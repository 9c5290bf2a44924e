/*
 * handle.c — what one client message means to the test relay.
 *
 * NIP-01: EVENT is parsed, verified and stored with the project's store, so
 * replaceable, addressable, ephemeral kinds and deletions behave exactly as
 * negsync's own database does; REQ answers from the store, newest first, at
 * most --req-limit events per REQ (over all its filters; one of them may be
 * held back, --req-hide), then EOSE; there are no live subscriptions, so
 * CLOSE has nothing to close.
 *
 * NIP-77: the relay is the responder. NEG-OPEN builds a sealed neg storage from
 * the (created_at, id) of the matching events (only the oldest --neg-cap of
 * them, as n0str does) and answers with NEG-MSG; replies are capped at
 * strfry's 500 000-byte frame. The wording of errors follows
 * strfry: a NEG-OPEN whose filter is not an object gets
 * ["NOTICE","ERROR: bad msg: negentropy query must be an object"], since
 * without a valid query there is no session to attach a NEG-ERR to.
 *
 * NIP-42 (--auth KINDS): those kinds are for an authenticated pubkey only,
 * as strfry and inbox relays keep DMs and gift wraps. A REQ or NEG-OPEN
 * whose filter names one of the kinds (a NEG-OPEN: or names no kinds, as
 * its set cannot leave them out) gets, before AUTH, ["AUTH",challenge]
 * again and then CLOSED / NEG-ERR "auth-required: ..."; after an AUTH by a
 * pubkey --auth-pubkey does not allow, "restricted: ...". A REQ filter
 * naming no kinds (an ids fetch) is served without those kinds. An EVENT of such a kind gets OK false with
 * the same prefixes (with --auth-writes-only only the EVENT: reads are
 * open; with --auth-strict a REQ naming no kinds is refused too). The AUTH event is checked as NIP-42 says: kind 22242,
 * the challenge of this connection, a relay tag naming this relay (ws://,
 * host 127.0.0.1, localhost or [::1], this port), created_at within 10
 * minutes, and the signature. A valid one is then refused all the same
 * with --auth-refuse's reason, or answered OK true and ignored with
 * --auth-unheeded (the connection stays unauthenticated).
 *
 * Every field of every message is type-checked; bad input gets a NOTICE,
 * CLOSED, OK false or NEG-ERR, never a crash.
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "event.h"
#include "filter.h"
#include "neg.h"
#include "store.h"
#include "testrelay.h"
#include "util.h"

/* A subscription id as NIP-01 has it: a non-empty string of at most 64 chars, no NUL. */
static const char *msg_subid(json_t *msg, size_t i)
{
    json_t *v = json_array_get(msg, i);
    size_t n;

    if (!json_is_string(v))
        return NULL;
    n = json_string_length(v);
    if (n == 0 || n > TR_MAX_SUBID || strlen(json_string_value(v)) != n)
        return NULL;
    return json_string_value(v);
}

static void send_notice_fmt(struct tr_conn *c, const char *fmt, const char *arg)
{
    char text[512];

    snprintf(text, sizeof text, fmt, arg);
    tr_conn_send_notice(c, text);
}

static void send_ok(struct tr_conn *c, const char *id, int ok, const char *reason)
{
    tr_conn_send_json(c, json_pack("[s s b s]", "OK", id, ok, reason));
}

static void send_closed(struct tr_conn *c, const char *sub, const char *reason)
{
    tr_conn_send_json(c, json_pack("[s s s]", "CLOSED", sub, reason));
}

static void send_neg_err(struct tr_conn *c, const char *sub, const char *reason)
{
    tr_conn_send_json(c, json_pack("[s s s]", "NEG-ERR", sub, reason));
}

/* ---- NIP-42 ---- */

#define AUTH_MAX_AGE 600 /* seconds either side of now an AUTH event may be dated */

static int auth_kind(const struct tr_config *cfg, json_int_t kind)
{
    for (size_t i = 0; i < cfg->nauth_kinds; i++)
        if ((json_int_t)cfg->auth_kinds[i] == kind)
            return 1;
    return 0;
}

/*
 * Whether filter fj could match events of an --auth kind: AUTH_NAMES when
 * it names one, AUTH_ANY_KIND when it names no kinds at all, else 0.
 */
enum { AUTH_NAMES = 1, AUTH_ANY_KIND = 2 };

static int auth_filter_touches(const struct tr_config *cfg, json_t *fj)
{
    json_t *kinds = json_object_get(fj, "kinds"), *k;
    size_t i;

    if (cfg->nauth_kinds == 0 || cfg->auth_writes_only || !json_is_object(fj))
        return 0;
    if (!json_is_array(kinds))
        return AUTH_ANY_KIND;
    json_array_foreach(kinds, i, k)
    {
        if (json_is_integer(k) && auth_kind(cfg, json_integer_value(k)))
            return AUTH_NAMES;
    }
    return 0;
}

/*
 * The reason to refuse what touches --auth kinds on this connection, or NULL
 * when it may go ahead. Before any AUTH the challenge goes again first, as
 * strfry sends it right before its NEG-ERR.
 */
static const char *auth_refusal(struct tr_conn *c)
{
    if (c->auth_allowed)
        return NULL;
    if (c->authed) {
        c->counts.restricted++;
        return "restricted: this pubkey may not read or write these kinds";
    }
    c->counts.auth_required++;
    if (c->challenge[0] != '\0')
        tr_conn_send_json(c, json_pack("[ss]", "AUTH", c->challenge));
    return "auth-required: these kinds are only for their owner; authenticate first";
}

/* "ws://127.0.0.1:PORT" (also localhost and [::1]), an optional path: this relay. */
static int auth_relay_is_us(const struct tr_server *srv, const char *url)
{
    static const char *const hosts[] = {"127.0.0.1", "localhost", "[::1]"};
    const char *scheme = srv->cfg->tls_cert != NULL ? "wss://" : "ws://";
    char port[16];
    size_t n;

    if (strncmp(url, scheme, strlen(scheme)) != 0)
        return 0;
    url += strlen(scheme);
    snprintf(port, sizeof port, ":%d", srv->port);
    for (size_t i = 0; i < sizeof hosts / sizeof hosts[0]; i++) {
        n = strlen(hosts[i]);
        if (strncmp(url, hosts[i], n) == 0 && strncmp(url + n, port, strlen(port)) == 0) {
            url += n + strlen(port);
            return *url == '\0' || *url == '/' || *url == '?';
        }
    }
    return 0;
}

static void handle_auth(struct tr_conn *c, json_t *msg)
{
    const struct tr_config *cfg = c->srv->cfg;
    json_t *obj = json_array_get(msg, 1);
    char err[EVENT_ERRLEN], reason[EVENT_ERRLEN + 64], idhex[65];
    const char *tag;
    struct event *ev;
    int64_t now = (int64_t)time(NULL), age;

    if (json_array_size(msg) != 2 || !json_is_object(obj)) {
        tr_conn_send_notice(c, "ERROR: bad msg: AUTH takes one event object");
        return;
    }
    ev = event_from_json(obj, err, sizeof err);
    if (ev == NULL) {
        tr_conn_send_notice(c, "ERROR: bad msg: AUTH: invalid event");
        c->counts.auth_failed++;
        return;
    }
    hex_encode(ev->id, 32, idhex);
    age = now - (int64_t)ev->created_at;
    reason[0] = '\0';
    if (event_verify(ev, err, sizeof err) < 0)
        snprintf(reason, sizeof reason, "invalid: %s", err);
    else if (ev->kind != 22242)
        snprintf(reason, sizeof reason, "invalid: AUTH needs a kind 22242 event, not %u",
                 (unsigned)ev->kind);
    else if (c->challenge[0] == '\0')
        snprintf(reason, sizeof reason, "invalid: no challenge was sent");
    else if ((tag = event_tag_value(ev, "challenge")) == NULL || strcmp(tag, c->challenge) != 0)
        snprintf(reason, sizeof reason, "invalid: the challenge tag is not this connection's");
    else if ((tag = event_tag_value(ev, "relay")) == NULL || !auth_relay_is_us(c->srv, tag))
        snprintf(reason, sizeof reason, "invalid: the relay tag does not name this relay");
    else if (age > AUTH_MAX_AGE || age < -AUTH_MAX_AGE)
        snprintf(reason, sizeof reason, "invalid: created_at is %lld s from now", (long long)age);
    else if (cfg->auth_refuse != NULL)
        snprintf(reason, sizeof reason, "%s", cfg->auth_refuse);
    if (reason[0] != '\0') {
        c->counts.auth_failed++;
        send_ok(c, idhex, 0, reason);
        event_free(ev);
        return;
    }
    if (cfg->auth_unheeded) {
        c->counts.auth_ok++;
        send_ok(c, idhex, 1, "");
        event_free(ev);
        return;
    }
    c->authed = 1;
    if (cfg->nauth_pubkeys == 0)
        c->auth_allowed = 1;
    for (size_t i = 0; i < cfg->nauth_pubkeys; i++)
        if (memcmp(cfg->auth_pubkeys[i], ev->pubkey, 32) == 0)
            c->auth_allowed = 1;
    c->counts.auth_ok++;
    if (cfg->verbose)
        fprintf(stderr, "testrelay: conn %llu authenticated%s\n", (unsigned long long)c->id,
                c->auth_allowed ? "" : " (a pubkey not allowed)");
    send_ok(c, idhex, 1, "");
    event_free(ev);
}

/* ---- EVENT ---- */

static void handle_event(struct tr_conn *c, json_t *msg)
{
    json_t *obj = json_array_get(msg, 1), *idv;
    const char *id = NULL;
    char err[EVENT_ERRLEN + STORE_ERRLEN], reason[sizeof err + 32], idhex[65];
    struct event *ev;
    struct store_result res;

    if (json_array_size(msg) != 2 || !json_is_object(obj)) {
        tr_conn_send_notice(c, "ERROR: bad msg: EVENT takes one event object");
        return;
    }
    /* OK must name the event; without a usable id, all we can say is a NOTICE. */
    idv = json_object_get(obj, "id");
    if (json_is_string(idv) && json_string_length(idv) <= 64 &&
        strlen(json_string_value(idv)) == json_string_length(idv))
        id = json_string_value(idv);

    ev = event_from_json(obj, err, sizeof err);
    if (ev == NULL) {
        if (id == NULL) {
            send_notice_fmt(c, "ERROR: bad msg: invalid event: %s", err);
        } else {
            snprintf(reason, sizeof reason, "invalid: %s", err);
            send_ok(c, id, 0, reason);
        }
        return;
    }
    hex_encode(ev->id, 32, idhex);
    if (event_verify(ev, err, sizeof err) < 0) {
        snprintf(reason, sizeof reason, "invalid: %s", err);
        send_ok(c, idhex, 0, reason);
        event_free(ev);
        return;
    }
    if (auth_kind(c->srv->cfg, ev->kind)) {
        const char *why = auth_refusal(c);
        if (why != NULL) {
            send_ok(c, idhex, 0, why);
            event_free(ev);
            return;
        }
    }
    if (store_insert_batch(c->srv->store, &ev, 1, &res, err, sizeof err) < 0) {
        snprintf(reason, sizeof reason, "error: %s", err);
        send_ok(c, idhex, 0, reason);
        event_free(ev);
        return;
    }
    switch (res.outcome) {
    case STORE_INSERTED:
    case STORE_REPLACED: send_ok(c, idhex, 1, ""); break;
    case STORE_DUPLICATE: send_ok(c, idhex, 1, "duplicate: already have this event"); break;
    case STORE_REJECTED:
        if (event_kind_is_ephemeral(ev->kind)) {
            /* Accepted and (had there been live subscriptions) passed on, never stored. */
            send_ok(c, idhex, 1, "");
        } else {
            /* An older version of a replaceable event: the relay's state already
             * supersedes it, which for the sender is as good as a duplicate. */
            snprintf(reason, sizeof reason, "duplicate: %s",
                     res.reason != NULL ? res.reason : "not stored");
            send_ok(c, idhex, 1, reason);
        }
        break;
    case STORE_DELETED:
        snprintf(reason, sizeof reason, "blocked: %s", res.reason != NULL ? res.reason : "deleted");
        send_ok(c, idhex, 0, reason);
        break;
    }
    event_free(ev);
}

/* ---- REQ ---- */

struct req_hit {
    struct event *ev;
    char *json;
    size_t len;
};

struct req_hits {
    struct req_hit *v;
    size_t n, cap;
    int failed;
};

static int req_collect(void *ctx, const char *json, size_t len)
{
    struct req_hits *h = ctx;
    char err[EVENT_ERRLEN];
    struct event *ev = event_parse(json, len, err, sizeof err);

    if (ev == NULL) {
        /* The store only holds events event_parse accepted; this is a broken invariant. */
        fprintf(stderr, "testrelay: stored event does not parse: %s\n", err);
        h->failed = 1;
        return 1;
    }
    if (h->n == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 64;
        h->v = xreallocarray(h->v, h->cap, sizeof *h->v);
    }
    h->v[h->n].ev = ev;
    h->v[h->n].json = xmalloc(len + 1);
    memcpy(h->v[h->n].json, json, len + 1);
    h->v[h->n].len = len;
    h->n++;
    return 0;
}

/* NIP-01 order: newest first; ties by id, so every REQ of the same set agrees. */
static int req_hit_cmp(const void *a, const void *b)
{
    const struct event *x = ((const struct req_hit *)a)->ev;
    const struct event *y = ((const struct req_hit *)b)->ev;

    if (x->created_at != y->created_at)
        return x->created_at > y->created_at ? -1 : 1;
    return memcmp(x->id, y->id, 32);
}

/* Sends one event, spoiling its id or its signature for --bad-events. */
static void req_send_event(struct tr_conn *c, const char *subjson, struct req_hit *hit)
{
    struct tr_server *srv = c->srv;
    struct buf out = {0};
    char *spoilt = NULL;
    const char *json = hit->json;
    size_t len = hit->len;

    if (tr_rng_chance(srv, srv->cfg->bad_events)) {
        if (tr_rng_next(srv) & 1)
            hit->ev->id[31] ^= 0x01; /* still 64 lowercase hex chars, now the wrong id */
        else
            hit->ev->sig[63] ^= 0x01; /* a signature that does not verify */
        spoilt = event_to_json(hit->ev, &len);
        json = spoilt;
    }
    buf_append(&out, "[\"EVENT\",", 9);
    buf_append(&out, subjson, strlen(subjson));
    buf_push(&out, ',');
    buf_append(&out, json, len);
    buf_push(&out, ']');
    tr_conn_send_text(c, TR_T_EVENT, (const char *)out.data, out.len);
    buf_free(&out);
    free(spoilt);
}

/*
 * --req-hide K: the K-th newest event the relay holds at its first REQ
 * (newest first, ties by id) is never served by REQ, as relays leave out
 * events they hold but will not serve (deleted, expired, from a blocked
 * author) after their query's LIMIT: the page that held it comes out one
 * short.
 */
static void req_hide_init(struct tr_server *srv)
{
    struct req_hits hits = {0};
    struct filter *f;
    char err[FILTER_ERRLEN + STORE_ERRLEN];
    json_t *fj;

    if (srv->hidden_known || srv->cfg->req_hide == 0)
        return;
    srv->hidden_known = 1;
    fj = json_pack("{s:I}", "limit", (json_int_t)srv->cfg->req_hide);
    f = filter_from_json(fj, err, sizeof err);
    json_decref(fj);
    if (f != NULL &&
        store_query(srv->store, f, STORE_NEWEST_FIRST, req_collect, &hits, err, sizeof err) == 0 &&
        !hits.failed && hits.n == srv->cfg->req_hide) {
        if (hits.n > 1)
            qsort(hits.v, hits.n, sizeof *hits.v, req_hit_cmp);
        memcpy(srv->hidden_id, hits.v[hits.n - 1].ev->id, 32);
        srv->hidden_set = 1;
    }
    for (size_t i = 0; i < hits.n; i++) {
        event_free(hits.v[i].ev);
        free(hits.v[i].json);
    }
    free(hits.v);
    filter_free(f);
}

static void handle_req(struct tr_conn *c, json_t *msg)
{
    struct tr_server *srv = c->srv;
    const char *sub = msg_subid(msg, 1);
    size_t nfilters = json_array_size(msg) >= 2 ? json_array_size(msg) - 2 : 0;
    struct filter **filters;
    struct req_hits hits = {0};
    char err[FILTER_ERRLEN + STORE_ERRLEN], reason[sizeof err + 32];
    char *subjson;
    size_t i, n, sent;
    int hide_auth = 0;

    if (sub == NULL) {
        tr_conn_send_notice(c, "ERROR: bad msg: REQ: subscription id must be a string of "
                               "1 to 64 characters");
        return;
    }
    if (nfilters == 0) {
        send_closed(c, sub, "error: REQ needs at least one filter");
        return;
    }
    if (srv->cfg->req_closed != NULL) {
        send_closed(c, sub, srv->cfg->req_closed);
        return;
    }
    /*
     * A filter naming a kind for the owner only is refused until AUTH; one
     * naming no kinds (ids, authors) is served without those kinds, or with
     * --auth-strict refused as well.
     */
    for (i = 0; i < nfilters; i++) {
        const char *why;
        int t = auth_filter_touches(srv->cfg, json_array_get(msg, i + 2));
        if ((t == AUTH_NAMES || (t == AUTH_ANY_KIND && srv->cfg->auth_strict)) &&
            (why = auth_refusal(c)) != NULL) {
            send_closed(c, sub, why);
            return;
        }
        if (t == AUTH_ANY_KIND && !c->auth_allowed)
            hide_auth = 1;
    }
    req_hide_init(srv);
    filters = xcalloc(nfilters, sizeof *filters);
    for (i = 0; i < nfilters; i++) {
        json_t *fj = json_array_get(msg, i + 2);

        if (!json_is_object(fj)) {
            snprintf(reason, sizeof reason, "error: filter %zu is not an object", i + 1);
            send_closed(c, sub, reason);
            goto out;
        }
        filters[i] = filter_from_json(fj, err, sizeof err);
        if (filters[i] == NULL) {
            snprintf(reason, sizeof reason, "error: bad filter: %s", err);
            send_closed(c, sub, reason);
            goto out;
        }
        /* Per filter, the newest min(limit, --req-limit) are all that can make the cut. */
        if (!filters[i]->has_limit || filters[i]->limit > srv->cfg->req_limit) {
            filters[i]->has_limit = 1;
            filters[i]->limit = srv->cfg->req_limit;
        }
        if (store_query(srv->store, filters[i], STORE_NEWEST_FIRST, req_collect, &hits, err,
                        sizeof err) < 0 ||
            hits.failed) {
            snprintf(reason, sizeof reason, "error: query failed: %s",
                     hits.failed ? "stored event does not parse" : err);
            send_closed(c, sub, reason);
            goto out;
        }
    }

    if (hits.n > 1)
        qsort(hits.v, hits.n, sizeof *hits.v, req_hit_cmp);
    subjson = json_dumps(json_array_get(msg, 1), JSON_ENCODE_ANY | JSON_COMPACT);
    for (i = 0, sent = 0; i < hits.n && sent < srv->cfg->req_limit; i++) {
        /* Filters may overlap; equal events sort next to each other. */
        if (i > 0 && memcmp(hits.v[i].ev->id, hits.v[i - 1].ev->id, 32) == 0)
            continue;
        if (hide_auth && auth_kind(srv->cfg, hits.v[i].ev->kind))
            continue;
        /* --req-hide: within the limit, but not sent. */
        if (!srv->hidden_set || memcmp(hits.v[i].ev->id, srv->hidden_id, 32) != 0)
            req_send_event(c, subjson, &hits.v[i]);
        sent++;
    }
    free(subjson);
    tr_conn_send_json(c, json_pack("[s s]", "EOSE", sub));
out:
    for (n = 0; n < hits.n; n++) {
        event_free(hits.v[n].ev);
        free(hits.v[n].json);
    }
    free(hits.v);
    for (i = 0; i < nfilters; i++)
        filter_free(filters[i]);
    free(filters);
}

/* ---- NIP-77 ---- */

static struct tr_neg_session **neg_find(struct tr_conn *c, const char *id)
{
    struct tr_neg_session **pp;

    for (pp = &c->negs; *pp != NULL; pp = &(*pp)->next) {
        if (strcmp((*pp)->id, id) == 0)
            return pp;
    }
    return NULL;
}

static void neg_session_free(struct tr_neg_session *s)
{
    neg_free(s->neg);
    neg_storage_free(s->storage);
    free(s->id);
    free(s);
}

static void neg_drop(struct tr_conn *c, const char *id)
{
    struct tr_neg_session **pp = neg_find(c, id), *s;

    if (pp == NULL)
        return;
    s = *pp;
    *pp = s->next;
    neg_session_free(s);
}

void tr_neg_sessions_free(struct tr_conn *c)
{
    struct tr_neg_session *s, *next;

    for (s = c->negs; s != NULL; s = next) {
        next = s->next;
        neg_session_free(s);
    }
    c->negs = NULL;
}

struct neg_fill {
    struct neg_storage *st;
    uint64_t left; /* items still taken (--neg-cap); UINT64_MAX: all */
    char err[NEG_ERRLEN];
    int failed;
};

static int neg_fill_item(void *ctx, uint64_t created_at, const uint8_t id[32])
{
    struct neg_fill *f = ctx;

    if (f->left == 0)
        return 1; /* --neg-cap: the oldest N only */
    f->left--;
    if (neg_storage_insert(f->st, created_at, id, f->err, sizeof f->err) < 0) {
        f->failed = 1;
        return 1;
    }
    return 0;
}

/*
 * Answers one negentropy message of session s (hex, len chars). On any error
 * the session ends with NEG-ERR, as NIP-77 says.
 */
static void neg_reply(struct tr_conn *c, struct tr_neg_session *s, const char *hex, size_t len)
{
    const struct tr_config *cfg = c->srv->cfg;
    char err[NEG_ERRLEN], reason[NEG_ERRLEN + 32];
    uint8_t *bin;
    struct buf out = {0};
    char *outhex;
    char *sub = xstrdup(s->id);

    if (cfg->neg_err_after >= 0 && s->replies >= (uint64_t)cfg->neg_err_after) {
        snprintf(reason, sizeof reason, "closed: the relay ends sessions after %" PRId64 " rounds",
                 cfg->neg_err_after);
        send_neg_err(c, sub, reason);
        neg_drop(c, sub);
        free(sub);
        return;
    }
    if (cfg->neg_close_after >= 0 && s->replies >= (uint64_t)cfg->neg_close_after) {
        tr_conn_send_json(c, json_pack("[s s]", "NEG-CLOSE", sub));
        neg_drop(c, sub);
        free(sub);
        return;
    }
    bin = xmalloc(len / 2 + 1);
    if (len == 0 || hex_decode(hex, len, bin, len / 2, 1) < 0) {
        send_neg_err(c, sub, "error: message is not lowercase hex");
        neg_drop(c, sub);
        goto done;
    }
    if (neg_reconcile(s->neg, bin, len / 2, &out, NULL, NULL, err, sizeof err) < 0) {
        snprintf(reason, sizeof reason, "error: %s", err);
        send_neg_err(c, sub, reason);
        neg_drop(c, sub);
        goto done;
    }
    outhex = xmalloc(out.len * 2 + 1);
    hex_encode(out.data, out.len, outhex);
    tr_conn_send_json(c, json_pack("[s s s]", "NEG-MSG", sub, outhex));
    free(outhex);
    s->replies++;
done:
    buf_free(&out);
    free(bin);
    free(sub);
}

static void handle_neg_open(struct tr_conn *c, json_t *msg)
{
    struct tr_server *srv = c->srv;
    const char *sub = msg_subid(msg, 1);
    json_t *fj = json_array_get(msg, 2), *hexj = json_array_get(msg, 3);
    char err[FILTER_ERRLEN + STORE_ERRLEN], reason[sizeof err + 32];
    struct filter *f;
    uint64_t count;
    struct neg_fill fill = {0};
    struct tr_neg_session *s;

    if (json_array_size(msg) < 4) {
        tr_conn_send_notice(c, "ERROR: bad msg: negentropy query missing elements");
        return;
    }
    if (sub == NULL) {
        tr_conn_send_notice(c, "ERROR: bad msg: NEG-OPEN: subscription id must be a string of "
                               "1 to 64 characters");
        return;
    }
    if (!json_is_object(fj)) {
        tr_conn_send_notice(c, "ERROR: bad msg: negentropy query must be an object");
        return;
    }
    /* NIP-77: a NEG-OPEN for an open id first closes the old session. */
    neg_drop(c, sub);
    /* --neg-refuse-limit0: khatru's startNegentropySession refuses a filter with "limit":0. */
    if (srv->cfg->neg_refuse_limit0 && json_is_integer(json_object_get(fj, "limit")) &&
        json_integer_value(json_object_get(fj, "limit")) == 0) {
        send_neg_err(c, sub, "invalid limit 0");
        return;
    }
    if (auth_filter_touches(srv->cfg, fj)) {
        const char *why = auth_refusal(c);
        if (why != NULL) {
            send_neg_err(c, sub, why);
            return;
        }
    }
    if (!json_is_string(hexj)) {
        send_neg_err(c, sub, "error: initial message is not a string");
        return;
    }
    f = filter_from_json(fj, err, sizeof err);
    if (f == NULL) {
        snprintf(reason, sizeof reason, "error: bad filter: %s", err);
        send_neg_err(c, sub, reason);
        return;
    }
    if (store_count(srv->store, f, &count, err, sizeof err) < 0) {
        snprintf(reason, sizeof reason, "error: %s", err);
        send_neg_err(c, sub, reason);
        filter_free(f);
        return;
    }
    if (count > srv->cfg->max_sync_events) {
        tr_conn_send_json(c,
                          json_pack("[s s s I]", "NEG-ERR", sub, "blocked: too many query results",
                                    (json_int_t)srv->cfg->max_sync_events));
        filter_free(f);
        return;
    }
    /* --neg-cap: n0str answers over its first max_limit matches, oldest first, and says nothing. */
    fill.left = UINT64_MAX;
    if (srv->cfg->neg_cap > 0 && count > srv->cfg->neg_cap)
        count = fill.left = srv->cfg->neg_cap;
    fill.st = neg_storage_new();
    neg_storage_reserve(fill.st, (size_t)count);
    if (store_list_ids(srv->store, f, neg_fill_item, &fill, err, sizeof err) < 0 || fill.failed ||
        neg_storage_seal(fill.st, fill.err, sizeof fill.err) < 0) {
        snprintf(reason, sizeof reason, "error: %s", fill.failed || fill.err[0] ? fill.err : err);
        send_neg_err(c, sub, reason);
        neg_storage_free(fill.st);
        filter_free(f);
        return;
    }
    filter_free(f);

    s = xcalloc(1, sizeof *s);
    s->id = xstrdup(sub);
    s->storage = fill.st;
    s->neg = neg_new(s->storage, TR_NEG_FRAME_LIMIT, err, sizeof err);
    if (s->neg == NULL) {
        snprintf(reason, sizeof reason, "error: %s", err);
        send_neg_err(c, sub, reason);
        neg_session_free(s);
        return;
    }
    s->next = c->negs;
    c->negs = s;
    neg_reply(c, s, json_string_value(hexj), json_string_length(hexj));
}

static void handle_neg_msg(struct tr_conn *c, json_t *msg)
{
    const char *sub = msg_subid(msg, 1);
    json_t *hexj = json_array_get(msg, 2);
    struct tr_neg_session **pp;

    if (sub == NULL || json_array_size(msg) < 3) {
        tr_conn_send_notice(c, "ERROR: bad msg: NEG-MSG needs a subscription id and a message");
        return;
    }
    pp = neg_find(c, sub);
    if (pp == NULL) {
        send_neg_err(c, sub, "closed: unknown subscription handle");
        return;
    }
    if (!json_is_string(hexj)) {
        send_neg_err(c, sub, "error: message is not a string");
        neg_drop(c, sub);
        return;
    }
    neg_reply(c, *pp, json_string_value(hexj), json_string_length(hexj));
}

static void handle_neg_close(struct tr_conn *c, json_t *msg)
{
    const char *sub = msg_subid(msg, 1);

    if (sub == NULL) {
        tr_conn_send_notice(c, "ERROR: bad msg: NEG-CLOSE needs a subscription id");
        return;
    }
    neg_drop(c, sub);
}

/* --no-nip77: how relays without NIP-77 answer. -1 drops the connection. */
static int handle_neg_disabled(struct tr_conn *c, enum tr_type type, json_t *msg)
{
    const struct tr_config *cfg = c->srv->cfg;
    json_t *subj = json_array_get(msg, 1);
    const char *sub = json_is_string(subj) ? json_string_value(subj) : "";

    switch (cfg->nonip77) {
    case TR_NIP77_ON: break;
    case TR_NIP77_NOTICE:
        tr_conn_send_notice(c, cfg->notice_text ? cfg->notice_text
                                                : "ERROR: bad msg: negentropy disabled");
        break;
    case TR_NIP77_UNKNOWN:
        tr_conn_send_notice(c, cfg->notice_text ? cfg->notice_text : "ERROR: bad msg: unknown cmd");
        break;
    case TR_NIP77_NEG_ERR:
        if (type != TR_T_NEG_CLOSE)
            send_neg_err(c, sub,
                         cfg->notice_text ? cfg->notice_text
                                          : "blocked: Negentropy sync is disabled");
        break;
    case TR_NIP77_CLOSED:
        if (type != TR_T_NEG_CLOSE)
            send_closed(c, sub, cfg->notice_text ? cfg->notice_text : "error: NEG not supported");
        break;
    case TR_NIP77_SILENT: break;
    case TR_NIP77_DISCONNECT: return -1;
    }
    return 0;
}

int tr_handle_message(struct tr_conn *c, const char *text, size_t len)
{
    json_error_t jerr;
    json_t *msg, *cmd;
    enum tr_type type;
    int rc = 0;

    msg = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (msg == NULL) {
        c->counts.rx[TR_T_INVALID]++;
        send_notice_fmt(c, "ERROR: bad msg: invalid JSON: %s", jerr.text);
        return 0;
    }
    cmd = json_array_get(msg, 0);
    if (!json_is_array(msg) || !json_is_string(cmd)) {
        c->counts.rx[TR_T_INVALID]++;
        tr_conn_send_notice(c, "ERROR: bad msg: not a JSON array starting with a command");
        json_decref(msg);
        return 0;
    }
    type = TR_T_OTHER;
    if (strlen(json_string_value(cmd)) == json_string_length(cmd))
        type = tr_type_from_name(json_string_value(cmd));
    c->counts.rx[type]++;

    switch (type) {
    case TR_T_EVENT: handle_event(c, msg); break;
    case TR_T_REQ: handle_req(c, msg); break;
    case TR_T_CLOSE:
        /* No live subscriptions: a REQ is over at EOSE, so there is nothing to close. */
        if (msg_subid(msg, 1) == NULL)
            tr_conn_send_notice(c, "ERROR: bad msg: CLOSE needs a subscription id");
        break;
    case TR_T_NEG_OPEN:
    case TR_T_NEG_MSG:
    case TR_T_NEG_CLOSE:
        if (c->srv->cfg->nonip77 != TR_NIP77_ON)
            rc = handle_neg_disabled(c, type, msg);
        else if (type == TR_T_NEG_OPEN)
            handle_neg_open(c, msg);
        else if (type == TR_T_NEG_MSG)
            handle_neg_msg(c, msg);
        else
            handle_neg_close(c, msg);
        break;
    case TR_T_AUTH: handle_auth(c, msg); break;
    default: tr_conn_send_notice(c, "ERROR: bad msg: unknown cmd"); break;
    }
    json_decref(msg);
    return rc;
}
