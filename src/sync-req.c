/*
 * sync-req: REQ mode. Pages newest-first from the (relay, filter) cursor
 * with `until`, re-asking the boundary second so nothing on it is skipped;
 * a crowded second is split by authors or kinds; the cursor moves after
 * the last EOSE, and only to what was stored.
 */

#include "config.h"

#include "sync-int.h"

/* ---- REQ -------------------------------------------------------------------- */

/*
 * A second with more events than the relay returns per REQ: ask again for
 * just that second with half the authors (or kinds) each time.
 */
static int req_split_second(struct job *j, const struct filter *base, uint64_t sec, int depth,
                            struct req_state *rs, char *err, size_t errlen)
{
    struct filter *a, *b;
    int rc;

    if (depth >= SYNC_REQ_SPLIT_DEPTH || (base->nauthors < 2 && base->nkinds < 2)) {
        if (rs->incomplete_at < 0 || (int64_t)sec < rs->incomplete_at)
            rs->incomplete_at = (int64_t)sec;
        engine_log(j->e,
                   "[SYNC] %s (filter %s): more events at created_at %llu than the"
                   " relay returns per REQ; some may be missing",
                   j->rel->url, j->cf->name, (unsigned long long)sec);
        return 0;
    }
    a = filter_dup(base);
    b = filter_dup(base);
    if (base->nauthors >= 2) {
        size_t h = base->nauthors / 2;
        a->nauthors = h;
        memmove(b->authors, b->authors + h, (base->nauthors - h) * 32);
        b->nauthors = base->nauthors - h;
    } else {
        size_t h = base->nkinds / 2;
        a->nkinds = h;
        memmove(b->kinds, b->kinds + h, (base->nkinds - h) * sizeof *b->kinds);
        b->nkinds = base->nkinds - h;
    }
    rc = req_window(j, a, sec, 1, sec, depth + 1, rs, err, errlen);
    if (rc == 0)
        rc = req_window(j, b, sec, 1, sec, depth + 1, rs, err, errlen);
    filter_free(a);
    filter_free(b);
    return rc;
}

static void req_lost_at(struct req_state *rs, uint64_t t)
{
    if (rs->lost_at < 0 || (int64_t)t < rs->lost_at)
        rs->lost_at = (int64_t)t;
}

/*
 * The ids a page received on its oldest second, which the next page asks
 * for again (its until is that second, inclusive): taken once, not twice.
 */
struct req_edge {
    struct idset prev, next;
    uint64_t prev_at, next_at;
    int has_prev, has_next;
};

/* After a page: what it saw on its oldest second is what the next one skips. */
static void req_edge_turn(struct req_edge *e)
{
    idset_clear(&e->prev);
    e->prev = e->next;
    e->prev_at = e->next_at;
    e->has_prev = e->has_next;
    memset(&e->next, 0, sizeof e->next);
    e->has_next = 0;
}

/*
 * Whether an event of a page (created_at t, id) is one the page before
 * already received; notes it for the next page if it is on the oldest
 * second so far.
 */
static int req_edge_seen(struct req_edge *e, int64_t t, const json_t *obj)
{
    const json_t *idj = json_object_get(obj, "id");
    uint8_t id[32];

    if (t < 0 || !json_is_string(idj) || json_string_length(idj) != 64 ||
        hex_decode(json_string_value(idj), 64, id, sizeof id, 1) < 0)
        return 0;
    if (!e->has_next || (uint64_t)t < e->next_at) {
        idset_clear(&e->next);
        e->next_at = (uint64_t)t;
        e->has_next = 1;
    }
    if ((uint64_t)t == e->next_at)
        idset_add(&e->next, id);
    return e->has_prev && (uint64_t)t == e->prev_at && idset_has(&e->prev, id);
}

/*
 * One page: REQ, EVENTs, EOSE. Fills *n, *oldest, *newest and *unread
 * (messages relay_recv skipped meanwhile, when rs->count_unreadable);
 * events it could not take hold the cursor (rs->lost_at).
 */
static int req_page(struct job *j, const struct filter *pf, struct req_state *rs,
                    struct req_edge *edge, uint64_t *n, uint64_t *oldest, uint64_t *newest,
                    uint64_t *unread, char *err, size_t errlen)
{
    char subid[32];
    int64_t skew0 = rs->count_unreadable ? job_recv_skew(j) : 0;
    int rc;

    *n = 0;
    *oldest = UINT64_MAX;
    *newest = 0;
    *unread = 0;
    job_subid(j, "req", subid, sizeof subid);
    if (job_send_json(j, json_pack("[ss o]", "REQ", subid, filter_to_json(pf)), err, errlen) < 0)
        return -1;
    j->idle_deadline = net_now_ms() + j->timeout_ms;
    for (;;) {
        struct relay_msg *m;
        int64_t at;

        if ((rc = job_recv(j, 1, &m, err, errlen)) < 0)
            return -1;
        if (m->subid == NULL || strcmp(m->subid, subid) != 0) {
            rc = job_route(j, m);
            relay_msg_free(m);
            if (rc < 0) {
                set_error(err, errlen, "%s", j->fatal);
                return -1;
            }
            continue;
        }
        switch (m->type) {
        case RELAY_MSG_EVENT: {
            int64_t t = -1;
            /* Count what the relay sent, valid or not: it is what fills its cap. */
            (*n)++;
            if (json_is_object(m->event)) {
                json_t *ca = json_object_get(m->event, "created_at");
                if (json_is_integer(ca) && json_integer_value(ca) >= 0) {
                    t = (int64_t)json_integer_value(ca);
                    if ((uint64_t)t < *oldest)
                        *oldest = (uint64_t)t;
                    if ((uint64_t)t > *newest)
                        *newest = (uint64_t)t;
                }
            }
            if (req_edge_seen(edge, t, m->event)) {
                relay_msg_free(m); /* asked for again on purpose: the page's top second */
                break;
            }
            rc = job_take_event(j, m->event, pf, NULL, &at);
            if (rc == 1 && j->take_forged) {
                /* A forged or broken copy: the real event may be there all the same. */
                rs->bad++;
                if (t >= 0)
                    req_lost_at(rs, (uint64_t)t);
                else
                    (*unread)++;
            }
            if (rc == 0 && at >= 0 && j->in_tail) {
                /* The tail of a negentropy job: these are fetched events. */
                const char *hex = json_string_value(json_object_get(m->event, "id"));
                uint8_t id[32];
                j->fetched_bytes += m->raw_len;
                if (at > j->max_fetched_at)
                    j->max_fetched_at = at;
                if (hex != NULL && hex_decode(hex, strlen(hex), id, 32, 1) == 0 &&
                    idset_put(&j->need, id))
                    j->run->need++;
            }
            relay_msg_free(m);
            if (rc < 0) {
                set_error(err, errlen, "%s", j->fatal);
                return -1;
            }
            break;
        }
        case RELAY_MSG_EOSE:
            relay_msg_free(m);
            /* Everything before the EOSE is in: what grew the skew was never readable. */
            if (rs->count_unreadable) {
                int64_t skew = job_recv_skew(j);
                if (skew > skew0)
                    *unread += (uint64_t)(skew - skew0);
            }
            job_close_sub(j, subid);
            j->run->rounds++;
            return 0;
        case RELAY_MSG_CLOSED:
            if (auth_prefix(m->text) != 0) {
                /* NIP-42: AUTH, then the same REQ once more; or the job ends. */
                rc = job_auth_required(j, "REQ", m);
                relay_msg_free(m);
                if (rc < 0) {
                    set_error(err, errlen, "%s", j->interrupted ? "interrupted" : j->fatal);
                    return -1;
                }
                if (job_send_json(j, json_pack("[ss o]", "REQ", subid, filter_to_json(pf)), err,
                                  errlen) < 0)
                    return -1;
                j->idle_deadline = net_now_ms() + j->timeout_ms;
                break;
            }
            /* rate-limited:, error: ... */
            set_error(err, errlen, "relay closed the subscription: %s",
                      m->text != NULL ? m->text : "");
            if (j->closed[0] == '\0')
                set_error(j->closed, sizeof j->closed, "%s", m->text != NULL ? m->text : "");
            relay_msg_free(m);
            return -1;
        default: relay_msg_free(m); break;
        }
    }
}

/*
 * Everything in [since, until] for base, newest first, page by page, until a
 * page comes back empty. A short page proves nothing: relays leave out
 * events they hold but will not serve (deleted, hidden, expired) or could
 * not send, so each next page ends at the oldest second of the one before,
 * inclusive, so events sharing that second are not skipped; a page made of
 * one second alone moves below it. A page is "full" when it holds
 * page_limit events (messages it lost included), or, when the relay did not
 * announce its cap (NIP-11 max_limit), as many as the largest page seen so
 * far: a full page of one second is split (req_split_second). A page that
 * lost a message holds the cursor at its oldest second (what it lost below
 * that, the next page asks for again).
 */
int req_window(struct job *j, const struct filter *base, uint64_t since, int has_until,
               uint64_t until, int depth, struct req_state *rs, char *err, size_t errlen)
{
    uint64_t cap = rs->cap_known ? rs->page_limit : 0;
    int rc = 0, empty_retries = 0;
    struct req_edge edge = {0};

    for (;;) {
        struct filter *pf;
        uint64_t n, oldest, newest, unread;
        int full, more;

        if (engine_stopping(j->e)) {
            j->interrupted = 1;
            rc = -1;
            break;
        }
        if (j->slice != NULL &&
            !share_tail_bounds(&j->e->share, j->slice, &since, has_until, until))
            break;
        pf = filter_dup(base);
        pf->has_since = since > 0 || base->has_since;
        pf->since = since;
        pf->has_until = has_until;
        pf->until = until;
        pf->has_limit = 1;
        pf->limit = rs->page_limit;
        rc = req_page(j, pf, rs, &edge, &n, &oldest, &newest, &unread, err, errlen);
        filter_free(pf);
        if (rc < 0)
            break;
        req_edge_turn(&edge);
        rs->unreadable += unread;
        if (n + unread > cap)
            cap = n + unread;
        full = n + unread >= cap && oldest != UINT64_MAX;
        more = n > 0 && oldest != UINT64_MAX && oldest >= since;
        if (unread > 0 && more) {
            req_lost_at(rs, oldest);
        } else if (unread > 0) {
            /* An empty page that lost something: ask once more, then hold the cursor. */
            if (empty_retries++ < 2)
                continue;
            req_lost_at(rs, since);
        }
        if (j->slice != NULL)
            share_tail_page(&j->e->share, j->slice, n, oldest, newest, more);
        if (!more)
            break;
        if (oldest == newest) {
            /*
             * The whole page is one second: nothing newer is left above it
             * (the relay sends newest first), and a full one is split.
             */
            if (full && (rc = req_split_second(j, base, oldest, depth, rs, err, errlen)) < 0)
                break;
            if (oldest == 0 || oldest <= since)
                break;
            has_until = 1;
            until = oldest - 1;
            continue;
        }
        has_until = 1;
        until = oldest;
    }
    idset_clear(&edge.prev);
    idset_clear(&edge.next);
    return rc < 0 ? -1 : 0;
}

enum job_outcome req_job(struct job *j, char *reason, size_t rlen)
{
    struct req_state rs = {.incomplete_at = -1, .lost_at = -1, .count_unreadable = 1};
    uint64_t since = j->f->has_since ? j->f->since : 0;
    int64_t newc;
    char err[SYNC_ERRLEN];

    rs.page_limit = job_page_limit(j, &rs.cap_known);
    if (!j->down)
        return JOB_OK; /* nothing to fetch; the upload it was asked for fails (job_run) */
    if (job_connect(j, reason, rlen) < 0)
        return j->interrupted ? JOB_FATAL : JOB_FAILED;
    if ((uint64_t)j->cursor > since)
        since = (uint64_t)j->cursor;
    j->max_stored_at = -1;
    j->phase = SYNC_PHASE_REQ;
    if (req_window(j, j->f, since, j->f->has_until, j->f->until, 0, &rs, reason, rlen) < 0) {
        job_flush(j);
        return j->interrupted || j->fatal[0] != '\0' ? JOB_FATAL : JOB_FAILED;
    }
    if (job_flush(j) < 0)
        return JOB_FATAL;
    /*
     * Only to what is stored, never past a second we could not list, nor
     * past an event we could not take or a page that lost a message.
     */
    newc = j->max_stored_at;
    if (rs.incomplete_at >= 0 && newc > rs.incomplete_at)
        newc = rs.incomplete_at;
    if (rs.lost_at >= 0 && newc > rs.lost_at)
        newc = rs.lost_at;
    if (newc > j->cursor) {
        if (store_cursor_set(j->st, j->rel->url, j->cf->name, j->fkey, newc, err, sizeof err) < 0) {
            set_error(j->fatal, sizeof j->fatal, "%s", err);
            return JOB_FATAL;
        }
    }
    if (rs.incomplete_at >= 0)
        set_error(reason, rlen,
                  "incomplete: more events at created_at %lld than the relay"
                  " returns per REQ",
                  (long long)rs.incomplete_at);
    else if (rs.lost_at >= 0)
        set_error(reason, rlen,
                  "%llu bad event%s, %llu unreadable message%s; the cursor stays at or"
                  " below %lld, so they are asked for again",
                  (unsigned long long)rs.bad, rs.bad == 1 ? "" : "s",
                  (unsigned long long)rs.unreadable, rs.unreadable == 1 ? "" : "s",
                  (long long)rs.lost_at);
    if (rs.lost_at >= 0)
        engine_log(j->e, "[SYNC] %s (filter %s): %s", j->rel->url, j->cf->name,
                   rs.incomplete_at >= 0 ? "some events could not be taken; the cursor stays"
                                           " below them"
                                         : reason);
    return JOB_OK;
}
