/*
 * sync-auth: NIP-42 for a sync job. A relay may send ["AUTH", challenge] at
 * any time (on connect, as n0str does, or right before it refuses
 * something, as strfry does); job_recv hands each one to job_auth_note,
 * which keeps the latest of the connection. When a NEG-OPEN, a REQ (a page
 * or an id fetch) or an EVENT is refused with "auth-required:",
 * job_auth_required decides what happens: with auth = on-request and a key
 * it signs a kind 22242 event for the relay's URL and that challenge, sends
 * ["AUTH", event] and waits for its OK, and the caller sends the refused
 * message again, once; otherwise the job ends with the relay's reason and
 * what would let it through. "restricted:" (authenticated, but not allowed)
 * ends the job too.
 *
 * At most one AUTH per connection: what came of it is kept with the
 * connection (struct sync_auth, tied to relay_connection_id), so a second
 * auth-required on it, or one after the relay refused our AUTH, ends the job
 * instead of signing again. Failures for want of AUTH are not the relay
 * refusing NIP-77 (nothing falls back to REQ or goes into the capability
 * cache) and not refusals that back off: the next try is at the next
 * interval (job_run, JOB_AUTH).
 */

#include "config.h"

#include "keys.h"
#include "sync-int.h"

int auth_prefix(const char *text)
{
    if (text == NULL)
        return 0;
    if (strncmp(text, "auth-required:", 14) == 0)
        return AUTH_REQUIRED;
    if (strncmp(text, "restricted:", 11) == 0)
        return AUTH_RESTRICTED;
    return 0;
}

/* The relay's NIP-42 state as of its current connection: a new one starts from nothing. */
static struct sync_auth *auth_state(struct job *j)
{
    struct sync_auth *a = &j->rel->auth;
    uint64_t conn = relay_connection_id(j->r);

    if (a->conn != conn) {
        memset(a, 0, sizeof *a);
        a->conn = conn;
    }
    return a;
}

void job_auth_note(struct job *j, const struct relay_msg *m)
{
    struct sync_auth *a = auth_state(j);
    size_t len = m->text != NULL ? strlen(m->text) : 0;

    /* The latest challenge is the one that counts (NIP-42); one too long to sign is none. */
    a->too_long = len > KEYS_MAX_CHALLENGE;
    a->has_challenge = !a->too_long;
    if (a->has_challenge) {
        memcpy(a->challenge, m->text != NULL ? m->text : "", len);
        a->challenge[len] = '\0';
    }
}

/* Ends the job for want of AUTH (JOB_AUTH), AUTH having failed: -1. */
static int job_auth_fail(struct job *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int job_auth_fail(struct job *j, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(j->fatal, sizeof j->fatal, fmt, ap);
    va_end(ap);
    j->auth_end = SYNC_AUTH_END_FAILED;
    return -1;
}

/* 'the relay answered REQ with CLOSED "auth-required: ..."', its text through caps_quote. */
static void auth_answer(char *out, size_t outlen, const char *what, const struct relay_msg *m)
{
    char q[CAPS_QUOTE_MAX + 8];

    caps_quote(q, sizeof q, m->text);
    snprintf(out, outlen, "the relay answered %s with %s %s", what,
             m->type == RELAY_MSG_NEG_ERR  ? "NEG-ERR"
             : m->type == RELAY_MSG_CLOSED ? "CLOSED"
                                           : "OK false",
             q);
}

/* ["AUTH", <kind 22242 event>] for the connection's challenge; NULL with a reason. */
static char *auth_message(struct job *j, const struct sync_auth *a, char idhex[65], char *err,
                          size_t errlen)
{
    struct event *ev;
    struct buf b = {0};
    char *json;
    size_t len;

    ev = keys_sign_auth(j->rel->cr.key, j->rel->url, a->challenge, strlen(a->challenge),
                        (uint64_t)time(NULL), err, errlen);
    if (ev == NULL)
        return NULL;
    hex_encode(ev->id, 32, idhex);
    json = event_to_json(ev, &len);
    event_free(ev);
    buf_append(&b, "[\"AUTH\",", 8);
    buf_append(&b, json, len);
    buf_append(&b, "]", 2); /* and the NUL */
    free(json);
    return (char *)b.data;
}

/*
 * The exchange itself: a challenge (waiting for one if the relay sent none
 * yet), ["AUTH", event], its OK, each within neg_timeout. What else arrives
 * meanwhile goes where it would have gone (job_route); job_recv neither
 * fetches nor uploads until it is over, and job_route puts back what asks
 * for AUTH meanwhile. 0 once the relay said OK true.
 */
static int job_auth(struct job *j, const char *answer)
{
    struct sync_auth *a = auth_state(j);
    char npub[KEYS_NPUB_SIZE], idhex[65] = "", err[SYNC_ERRLEN] = "";
    int64_t deadline = net_now_ms() + j->timeout_ms;
    int secs = (int)(j->timeout_ms / 1000), rc = 0, sent = 0;

    keys_npub(keys_pubkey(j->rel->cr.key), npub);
    j->authing = 1;
    for (;;) {
        struct relay_msg *m = NULL;

        if (!sent && a->too_long) {
            rc = job_auth_fail(j,
                               "auth-required: %s; its AUTH challenge is over %d bytes: not signed",
                               answer, KEYS_MAX_CHALLENGE);
            break;
        }
        if (!sent && a->has_challenge) {
            char *msg = auth_message(j, a, idhex, err, sizeof err);
            if (msg == NULL) {
                rc = job_auth_fail(j, "auth-required: %s; cannot answer AUTH: %s", answer, err);
                break;
            }
            rc = caps_guard_send(&j->guard, j->r, msg, strlen(msg), err, sizeof err);
            free(msg);
            if (rc < 0) {
                if (rc == RELAY_ERR_INTERRUPTED)
                    j->interrupted = 1;
                else
                    job_auth_fail(j, "sending AUTH: %s", err);
                rc = -1;
                break;
            }
            sent = 1;
            deadline = net_now_ms() + j->timeout_ms;
        }
        j->idle_deadline = deadline;
        if ((rc = job_recv(j, 0, &m, err, sizeof err)) < 0) {
            if (j->interrupted) {
                rc = -1;
                break;
            }
            if (rc == RELAY_ERR_TIMEOUT && !sent)
                job_auth_fail(j, "auth-required: %s, and sent no AUTH challenge within %d s",
                              answer, secs);
            else if (rc == RELAY_ERR_TIMEOUT)
                job_auth_fail(j, "AUTH as %s: no OK from the relay within %d s", npub, secs);
            else
                job_auth_fail(j, "AUTH as %s: %s", npub, err);
            rc = -1;
            break;
        }
        if (sent && m->type == RELAY_MSG_OK && strcmp(m->ok_id, idhex) == 0) {
            if (m->ok_accepted) {
                a->state = SYNC_AUTH_OK;
                engine_log(j->e, "[SYNC] %s: authenticated as %s (NIP-42)", j->rel->url, npub);
            } else {
                char q[CAPS_QUOTE_MAX + 8];
                caps_quote(q, sizeof q, m->text);
                a->state = SYNC_AUTH_REFUSED;
                snprintf(a->refused, sizeof a->refused,
                         "AUTH refused: the relay answered AUTH as %s with OK false %s", npub, q);
                job_auth_fail(j, "%s", a->refused);
            }
            relay_msg_free(m);
            rc = a->state == SYNC_AUTH_OK ? 0 : -1;
            break;
        }
        rc = m->type == RELAY_MSG_AUTH ? 0 : job_route(j, m);
        relay_msg_free(m);
        if (rc < 0)
            break; /* j->fatal: the store failed */
    }
    j->authing = 0;
    j->idle_deadline = net_now_ms() + j->timeout_ms;
    return rc;
}

int job_auth_required(struct job *j, const char *what, const struct relay_msg *m)
{
    const struct sync_relay *rel = j->rel;
    struct sync_auth *a = auth_state(j);
    char answer[SYNC_ERRLEN], npub[KEYS_NPUB_SIZE] = "";

    auth_answer(answer, sizeof answer, what, m);
    if (rel->cr.key != NULL)
        keys_npub(keys_pubkey(rel->cr.key), npub);
    if (auth_prefix(m->text) == AUTH_RESTRICTED) {
        if (a->state == SYNC_AUTH_OK)
            return job_auth_fail(j, "restricted: %s (authenticated as %s)", answer, npub);
        return job_auth_fail(j, "restricted: %s", answer);
    }
    if (rel->cr.auth != CONFIG_AUTH_ON_REQUEST || rel->cr.key == NULL) {
        job_auth_fail(j,
                      "auth-required: %s (set auth = on-request and secret_key_file for"
                      " this relay to authenticate)",
                      answer);
        j->auth_end = SYNC_AUTH_END_NEEDED;
        return -1;
    }
    if (a->state == SYNC_AUTH_OK)
        return job_auth_fail(j, "auth-required after AUTH as %s: %s", npub, answer);
    if (a->state == SYNC_AUTH_REFUSED)
        return job_auth_fail(j, "%s", a->refused);
    return job_auth(j, answer);
}

void job_auth_report(struct job *j)
{
    struct sync_engine *e = j->e;
    size_t i = rel_index(e, j->rel);

    engine_log(e, "[SYNC] %s (filter %s): %s", j->rel->url, j->cf->name, j->fatal);
    if (j->auth_on_neg) {
        /*
         * The relay speaks NIP-77, only not to us for this filter: the
         * verdict says so, keeping what the probe learnt of the relay.
         */
        struct stats_snapshot snap;
        char why[SYNC_ERRLEN];

        stats_snapshot(e->stats, &snap);
        snprintf(why, sizeof why, "NIP-77 supported; needs AUTH for filter %s", j->cf->name);
        if (i < snap.nrelays) {
            const struct stats_relay *sr = &snap.relays[i];
            stats_set_cap(e->stats, i, STATS_CAP_SUPPORTED, STATS_CAP_FROM_SESSION, why,
                          (int64_t)time(NULL), sr->software, sr->version, sr->auth_challenge);
        }
        stats_snapshot_free(&snap);
    }
}
