/*
 * verifier: a pool of threads that parse and verify incoming events while
 * the thread that received them goes on reading the socket and storing.
 *
 * Verifying a signature is most of the CPU a sync spends per event, and a
 * job runs on one thread: one relay delivering a burst (the newest events,
 * a big fetch) would keep one core busy and the others idle. A job submits
 * each EVENT as it arrives and collects the result, in arrival order, when
 * it gets to that message; whatever the pool has not started by then the
 * job runs itself, so a pool never makes a job wait for work it could do.
 *
 * The pool is shared by all jobs of an engine; each thread keeps its own
 * key cache. Tasks hold a reference on their JSON object; the submitter must
 * not change the object until the task is finished.
 */
#ifndef NEGSYNC_VERIFIER_H
#define NEGSYNC_VERIFIER_H

#include <stddef.h>

#include <jansson.h>

#include "event.h"

struct vpool;
struct vtask;

/* A pool of nthreads threads (0: none; tasks then run in vtask_finish). NULL on failure. */
struct vpool *vpool_new(unsigned nthreads);
/* Stops the threads; every task must have been finished first. */
void vpool_free(struct vpool *p);

/* Queues obj (an EVENT's object, not yet checked) for event_from_json + event_verify. */
struct vtask *vpool_submit(struct vpool *p, json_t *obj);

/*
 * Waits for the task (or runs it here if no thread has taken it yet, with kc
 * as the key cache, which may be NULL) and frees it. Returns the parsed,
 * authentic event (caller frees), or NULL with the reason in err.
 */
struct event *vtask_finish(struct vpool *p, struct vtask *t, struct event_keycache *kc, char *err,
                           size_t errlen);

#endif
