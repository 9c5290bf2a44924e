/*
 * stats: the live per-relay model (see stats.h). One mutex guards the
 * whole model; it is held for the length of a field update or a copy and
 * nothing else (no allocation, no logging), so the engine's setters and a
 * front end's snapshots never wait on each other for long.
 *
 * The wake-up: a non-blocking pipe. The first change after an ack writes
 * one byte (under the mutex, so "a byte is in the pipe" and `notified`
 * never disagree); later changes only move the generation. stats_notify_ack
 * drains the pipe and clears the flag, so the next change writes again.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "stats.h"
#include "util.h"

struct stats {
    pthread_mutex_t mu;
    uint64_t generation;
    int notified; /* a byte waits in the pipe since the last ack */
    int pipe[2];  /* [0] the front end polls, [1] the setters write */
    struct stats_relay *relays;
    size_t nrelays, nfilters;
    unsigned workers_busy, workers_total;
    uint64_t events_stored;
};

const char *stats_phase_name(enum stats_phase p)
{
    switch (p) {
    case STATS_PHASE_IDLE: return "idle";
    case STATS_PHASE_QUEUED: return "queued";
    case STATS_PHASE_CONNECTING: return "connecting";
    case STATS_PHASE_PROBING: return "probing";
    case STATS_PHASE_RECONCILING: return "reconciling";
    case STATS_PHASE_FETCHING: return "fetching";
    case STATS_PHASE_UPLOADING: return "uploading";
    case STATS_PHASE_REQ: return "REQ";
    case STATS_PHASE_BACKOFF: return "backoff";
    }
    return "?";
}

int64_t stats_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Copies src into dst[size]: cut at a UTF-8 character boundary, ASCII
 * controls as spaces. NULL copies as "". Returns whether dst changed.
 */
static int copy_text(char *dst, size_t size, const char *src)
{
    char tmp[STATS_REASON_MAX > STATS_URL_MAX ? STATS_REASON_MAX : STATS_URL_MAX];
    size_t n = 0;

    if (size > sizeof tmp)
        size = sizeof tmp;
    if (src != NULL) {
        while (src[n] != '\0' && n + 1 < size)
            n++;
        /* A cut inside a multi-byte character drops its leading bytes. */
        if (src[n] != '\0') {
            size_t k = n;
            while (k > 0 && ((unsigned char)src[k] & 0xc0) == 0x80)
                k--;
            if (((unsigned char)src[k] & 0xc0) == 0x80)
                k = n; /* no lead byte at all: not UTF-8, keep the bytes */
            n = k;
        }
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)src[i];
            tmp[i] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
        }
    }
    tmp[n] = '\0';
    if (memcmp(dst, tmp, n + 1) == 0)
        return 0;
    memcpy(dst, tmp, n + 1);
    return 1;
}

/*
 * Called with the mutex held, after a change: moves the generation and,
 * the first time since the last ack, makes the descriptor readable.
 */
static void changed(struct stats *st)
{
    st->generation++;
    if (!st->notified) {
        ssize_t w;
        do
            w = write(st->pipe[1], "", 1);
        while (w < 0 && errno == EINTR);
        /* EAGAIN: the pipe is full, so it is readable anyway. */
        st->notified = 1;
    }
}

/* The relay at index i, with the mutex taken; NULL (and no lock) when out of range. */
static struct stats_relay *relay_lock(struct stats *st, size_t i)
{
    if (st == NULL || i >= st->nrelays)
        return NULL;
    pthread_mutex_lock(&st->mu);
    return &st->relays[i];
}

static void unlock(struct stats *st, int dirty)
{
    if (dirty)
        changed(st);
    pthread_mutex_unlock(&st->mu);
}

struct stats *stats_new(const char *const *urls, size_t nrelays, const char *const *filters,
                        size_t nfilters, unsigned workers, char *err, size_t errlen)
{
    struct stats *st = xcalloc(1, sizeof *st);

    if (pipe2(st->pipe, O_NONBLOCK | O_CLOEXEC) < 0) {
        set_error(err, errlen, "cannot make the status pipe: %s", strerror(errno));
        free(st);
        return NULL;
    }
    pthread_mutex_init(&st->mu, NULL);
    st->nrelays = nrelays;
    st->nfilters = nfilters;
    st->workers_total = workers;
    st->relays = xcalloc(nrelays ? nrelays : 1, sizeof *st->relays);
    for (size_t i = 0; i < nrelays; i++) {
        struct stats_relay *r = &st->relays[i];
        copy_text(r->url, sizeof r->url, urls[i]);
        r->enabled = 1;
        r->phase = STATS_PHASE_IDLE;
        r->next_run_ms = -1;
        r->filters = xcalloc(nfilters ? nfilters : 1, sizeof *r->filters);
        r->nfilters = nfilters;
        for (size_t f = 0; f < nfilters; f++)
            copy_text(r->filters[f].name, sizeof r->filters[f].name, filters[f]);
    }
    return st;
}

void stats_free(struct stats *st)
{
    if (st == NULL)
        return;
    for (size_t i = 0; i < st->nrelays; i++)
        free(st->relays[i].filters);
    free(st->relays);
    close(st->pipe[0]);
    close(st->pipe[1]);
    pthread_mutex_destroy(&st->mu);
    free(st);
}

/* URLs and filter names never change after stats_new: no lock needed to read them. */
int stats_relay_index(const struct stats *st, const char *url)
{
    char key[STATS_URL_MAX] = "";

    if (st == NULL || url == NULL)
        return -1;
    copy_text(key, sizeof key, url);
    for (size_t i = 0; i < st->nrelays; i++)
        if (strcmp(st->relays[i].url, key) == 0)
            return (int)i;
    return -1;
}

static struct stats_filter *filter_find(struct stats_relay *r, const char *name)
{
    char key[STATS_NAME_MAX] = "";

    if (name == NULL)
        return NULL;
    copy_text(key, sizeof key, name);
    for (size_t f = 0; f < r->nfilters; f++)
        if (strcmp(r->filters[f].name, key) == 0)
            return &r->filters[f];
    return NULL;
}

/* Assigns b to a, noting in *dirty whether it changed. */
#define SET(a, b, dirty)                                                                           \
    do {                                                                                           \
        if ((a) != (b)) {                                                                          \
            (a) = (b);                                                                             \
            *(dirty) = 1;                                                                          \
        }                                                                                          \
    } while (0)

void stats_set_enabled(struct stats *st, size_t relay, int enabled)
{
    struct stats_relay *r = relay_lock(st, relay);
    int dirty = 0;

    if (r == NULL)
        return;
    SET(r->enabled, enabled != 0, &dirty);
    unlock(st, dirty);
}

void stats_set_negentropy(struct stats *st, size_t relay, enum stats_neg_setting s,
                          enum stats_neg_source src)
{
    struct stats_relay *r = relay_lock(st, relay);
    int dirty = 0;

    if (r == NULL)
        return;
    SET(r->neg_setting, s, &dirty);
    SET(r->neg_source, src, &dirty);
    unlock(st, dirty);
}

void stats_set_cap(struct stats *st, size_t relay, enum stats_cap cap, enum stats_cap_source src,
                   const char *reason, int64_t checked_at, const char *software,
                   const char *version, int auth_challenge)
{
    struct stats_relay *r = relay_lock(st, relay);
    int dirty = 0;

    if (r == NULL)
        return;
    SET(r->cap, cap, &dirty);
    SET(r->cap_source, src, &dirty);
    SET(r->cap_checked_at, checked_at, &dirty);
    SET(r->auth_challenge, auth_challenge != 0, &dirty);
    dirty |= copy_text(r->cap_reason, sizeof r->cap_reason, reason);
    dirty |= copy_text(r->software, sizeof r->software, software);
    dirty |= copy_text(r->version, sizeof r->version, version);
    unlock(st, dirty);
}

void stats_set_limits(struct stats *st, size_t relay, int64_t max_message_length, int64_t max_limit)
{
    struct stats_relay *r = relay_lock(st, relay);
    int dirty = 0;

    if (r == NULL)
        return;
    SET(r->max_message_length, max_message_length, &dirty);
    SET(r->max_limit, max_limit, &dirty);
    unlock(st, dirty);
}

void stats_job_start(struct stats *st, size_t relay, const char *filter)
{
    struct stats_relay *r = relay_lock(st, relay);

    if (r == NULL)
        return;
    copy_text(r->filter, sizeof r->filter, filter);
    r->phase = STATS_PHASE_CONNECTING;
    r->phase_since_ms = stats_mono_ms();
    r->round = r->have = r->need = r->fetched = r->total = 0;
    r->bytes_sent = r->bytes_received = r->wire_sent = r->wire_received = 0;
    r->est_req_bytes = 0;
    unlock(st, 1);
}

void stats_job_phase(struct stats *st, size_t relay, enum stats_phase phase)
{
    struct stats_relay *r = relay_lock(st, relay);
    int dirty = 0;

    if (r == NULL)
        return;
    SET(r->phase, phase, &dirty);
    if (dirty)
        r->phase_since_ms = stats_mono_ms();
    unlock(st, dirty);
}

void stats_job_progress(struct stats *st, size_t relay, uint64_t round, uint64_t have,
                        uint64_t need, uint64_t fetched, uint64_t total, uint64_t bytes_sent,
                        uint64_t bytes_received, uint64_t wire_sent, uint64_t wire_received,
                        uint64_t est_req_bytes)
{
    struct stats_relay *r = relay_lock(st, relay);
    int dirty = 0;

    if (r == NULL)
        return;
    SET(r->round, round, &dirty);
    SET(r->have, have, &dirty);
    SET(r->need, need, &dirty);
    SET(r->fetched, fetched, &dirty);
    SET(r->total, total, &dirty);
    SET(r->bytes_sent, bytes_sent, &dirty);
    SET(r->bytes_received, bytes_received, &dirty);
    SET(r->wire_sent, wire_sent, &dirty);
    SET(r->wire_received, wire_received, &dirty);
    SET(r->est_req_bytes, est_req_bytes, &dirty);
    if (dirty)
        r->phase_since_ms = stats_mono_ms();
    unlock(st, dirty);
}

void stats_job_end(struct stats *st, size_t relay, const char *filter, const struct stats_run *run)
{
    struct stats_relay *r = relay_lock(st, relay);
    struct stats_filter *f;

    if (r == NULL)
        return;
    if (run != NULL && (f = filter_find(r, filter)) != NULL) {
        struct stats_history h = {
            .mode_neg = run->mode_neg != 0,
            .ok = run->ok != 0,
            .bytes = run->bytes_sent + run->bytes_received,
            .est_req_bytes = run->est_req_bytes,
        };
        f->last = *run;
        f->last.valid = 1;
        /* The copy's strings obey the same rules as every other string. */
        copy_text(f->last.fallback_reason, sizeof f->last.fallback_reason, run->fallback_reason);
        copy_text(f->last.error, sizeof f->last.error, run->error);
        if (f->nhistory == STATS_HISTORY) {
            memmove(&f->history[0], &f->history[1], (STATS_HISTORY - 1) * sizeof f->history[0]);
            f->nhistory--;
        }
        f->history[f->nhistory++] = h;
        r->runs++;
        r->runs_bytes += h.bytes;
        if (h.est_req_bytes > 0) {
            r->runs_est_req_bytes += h.est_req_bytes;
            r->runs_est_bytes += h.bytes;
        }
    }
    r->phase = STATS_PHASE_IDLE;
    r->phase_since_ms = stats_mono_ms();
    unlock(st, 1);
}

void stats_set_schedule(struct stats *st, size_t relay, int64_t next_run_ms, unsigned failures)
{
    struct stats_relay *r = relay_lock(st, relay);
    int dirty = 0;

    if (r == NULL)
        return;
    SET(r->next_run_ms, next_run_ms, &dirty);
    SET(r->failures, failures, &dirty);
    unlock(st, dirty);
}

void stats_set_workers_busy(struct stats *st, unsigned busy)
{
    int dirty = 0;

    if (st == NULL)
        return;
    pthread_mutex_lock(&st->mu);
    SET(st->workers_busy, busy, &dirty);
    unlock(st, dirty);
}

void stats_set_events_stored(struct stats *st, uint64_t n)
{
    int dirty = 0;

    if (st == NULL)
        return;
    pthread_mutex_lock(&st->mu);
    SET(st->events_stored, n, &dirty);
    unlock(st, dirty);
}

/*
 * One allocation holds the relays and, after them, every relay's filters:
 * it is made before the lock is taken (the sizes never change), so the lock
 * covers only the memcpy's, and stats_snapshot_free is one free.
 */
void stats_snapshot(struct stats *st, struct stats_snapshot *out)
{
    size_t nr = st->nrelays, nf = st->nfilters;
    size_t rbytes = nr * sizeof(struct stats_relay);
    char *block = xmalloc(rbytes + nr * nf * sizeof(struct stats_filter));
    struct stats_relay *relays = (struct stats_relay *)block;
    struct stats_filter *filters = (struct stats_filter *)(block + rbytes);

    pthread_mutex_lock(&st->mu);
    memcpy(relays, st->relays, rbytes);
    for (size_t i = 0; i < nr; i++)
        memcpy(&filters[i * nf], st->relays[i].filters, nf * sizeof *filters);
    out->generation = st->generation;
    out->workers_busy = st->workers_busy;
    out->workers_total = st->workers_total;
    out->events_stored = st->events_stored;
    pthread_mutex_unlock(&st->mu);

    for (size_t i = 0; i < nr; i++)
        relays[i].filters = nf ? &filters[i * nf] : NULL;
    out->relays = relays;
    out->nrelays = nr;
    out->now_ms = stats_mono_ms();
}

void stats_snapshot_free(struct stats_snapshot *s)
{
    if (s == NULL)
        return;
    free(s->relays);
    s->relays = NULL;
    s->nrelays = 0;
}

uint64_t stats_generation(struct stats *st)
{
    uint64_t g;

    pthread_mutex_lock(&st->mu);
    g = st->generation;
    pthread_mutex_unlock(&st->mu);
    return g;
}

int stats_notify_fd(const struct stats *st)
{
    return st->pipe[0];
}

void stats_notify_ack(struct stats *st)
{
    char b[64];

    pthread_mutex_lock(&st->mu);
    while (read(st->pipe[0], b, sizeof b) > 0)
        ;
    st->notified = 0;
    pthread_mutex_unlock(&st->mu);
}
