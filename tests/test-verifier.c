/*
 * test-verifier: the verifier pool gives, for every event, exactly what
 * event_from_json + event_verify give on the caller's thread — the same
 * event or the same reason — whatever the number of threads and whichever
 * order the tasks are finished in.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "event.h"
#include "testutil.h"
#include "util.h"
#include "verifier.h"

#define NEVENTS 600

/* Event i: valid, or broken in one of several ways (the reasons differ). */
static json_t *make_event(uint64_t *rng, size_t i)
{
    uint8_t sk[32];
    char content[64];

    memset(sk, 0, sizeof sk);
    sk[31] = (uint8_t)(1 + i % 7); /* a few authors: the key caches get hits */
    snprintf(content, sizeof content, "note %zu %llu", i, (unsigned long long)test_rand(rng));
    struct event *ev = event_sign(sk, 1700000000 + i, 1, NULL, NULL, 0, content);
    if (ev == NULL)
        return NULL;
    char *text = event_to_json(ev, NULL);
    event_free(ev);
    json_t *obj = json_loads(text, 0, NULL);
    free(text);
    switch (i % 6) {
    case 1: /* tampered content: id mismatch */
        json_object_set_new(obj, "content", json_string("changed"));
        break;
    case 2: { /* a flipped signature bit */
        char sig[129];
        snprintf(sig, sizeof sig, "%s", json_string_value(json_object_get(obj, "sig")));
        sig[10] = sig[10] == '0' ? '1' : '0';
        json_object_set_new(obj, "sig", json_string(sig));
        break;
    }
    case 3: /* the wrong shape */ json_object_del(obj, "kind"); break;
    default: break;
    }
    return obj;
}

static void check_pool(unsigned nthreads, int reverse)
{
    uint64_t rng = 7;
    json_t *objs[NEVENTS];
    struct vtask *tasks[NEVENTS];
    struct vpool *p = vpool_new(nthreads);
    struct event_keycache *kc = event_keycache_new();

    CHECK(p != NULL);
    if (p == NULL)
        return;
    for (size_t i = 0; i < NEVENTS; i++) {
        objs[i] = make_event(&rng, i);
        CHECK(objs[i] != NULL);
        tasks[i] = vpool_submit(p, objs[i]);
    }
    for (size_t k = 0; k < NEVENTS; k++) {
        size_t i = reverse ? NEVENTS - 1 - k : k;
        char err[EVENT_ERRLEN] = "", want_err[EVENT_ERRLEN] = "";
        struct event *got = vtask_finish(p, tasks[i], kc, err, sizeof err);
        struct event *want = event_from_json(objs[i], want_err, sizeof want_err);
        if (want != NULL && event_verify(want, want_err, sizeof want_err) < 0) {
            event_free(want);
            want = NULL;
        }
        CHECK_MSG((got == NULL) == (want == NULL), "event %zu (%u threads): pool %s, inline %s", i,
                  nthreads, got ? "ok" : err, want ? "ok" : want_err);
        if (got != NULL && want != NULL)
            CHECK(memcmp(got->id, want->id, 32) == 0);
        if (got == NULL && want == NULL)
            CHECK_MSG(strcmp(err, want_err) == 0, "event %zu: \"%s\" vs \"%s\"", i, err, want_err);
        /* i % 6 of 0, 4 and 5 are valid; 1-3 broken as make_event says. */
        CHECK((got != NULL) == (i % 6 == 0 || i % 6 >= 4));
        event_free(got);
        event_free(want);
        /* The task held its own reference: the object is still ours to drop. */
        json_decref(objs[i]);
    }
    event_keycache_free(kc);
    vpool_free(p);
}

int main(void)
{
    check_pool(0, 0); /* no threads: every task runs in vtask_finish */
    check_pool(1, 0);
    check_pool(3, 0);
    check_pool(3, 1); /* finished newest first: waits on running tasks, steals queued ones */
    /* A pool with nothing submitted stops cleanly. */
    vpool_free(vpool_new(2));
    return test_summary("test-verifier");
}
