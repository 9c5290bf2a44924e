/*
 * verifier: see verifier.h.
 *
 * One mutex guards the queue and every task's state; a task is QUEUED (on
 * the list), RUNNING (a thread took it) or DONE. Finishing a QUEUED task
 * takes it off the list and runs it on the caller's thread; finishing a
 * RUNNING one waits for the pool's "done" signal.
 */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"
#include "verifier.h"

enum vstate { V_QUEUED, V_RUNNING, V_DONE };

struct vtask {
    json_t *obj;
    enum vstate state;
    struct vtask *prev, *next; /* the queue, while QUEUED */
    struct event *ev;          /* DONE: the result, or NULL and err */
    char err[EVENT_ERRLEN];
};

struct vpool {
    pthread_mutex_t mu;
    pthread_cond_t work_cv, done_cv;
    struct vtask *head, *tail;
    int stopping;
    unsigned nthreads;
    pthread_t *threads;
};

/* Parses and verifies; the result goes into the task. */
static void run_task(struct vtask *t, struct event_keycache *kc)
{
    t->ev = event_from_json_verified(t->obj, kc, t->err, sizeof t->err);
}

static void unlink_task(struct vpool *p, struct vtask *t)
{
    if (t->prev != NULL)
        t->prev->next = t->next;
    else
        p->head = t->next;
    if (t->next != NULL)
        t->next->prev = t->prev;
    else
        p->tail = t->prev;
    t->prev = t->next = NULL;
}

static void *vpool_main(void *arg)
{
    struct vpool *p = arg;
    struct event_keycache *kc = event_keycache_new();

    thread_name("negsync-verify");
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (p->head == NULL && !p->stopping)
            pthread_cond_wait(&p->work_cv, &p->mu);
        if (p->head == NULL)
            break;
        struct vtask *t = p->head;
        unlink_task(p, t);
        t->state = V_RUNNING;
        pthread_mutex_unlock(&p->mu);
        run_task(t, kc);
        pthread_mutex_lock(&p->mu);
        t->state = V_DONE;
        pthread_cond_broadcast(&p->done_cv);
    }
    pthread_mutex_unlock(&p->mu);
    event_keycache_free(kc);
    return NULL;
}

struct vpool *vpool_new(unsigned nthreads)
{
    struct vpool *p = xcalloc(1, sizeof *p);

    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work_cv, NULL);
    pthread_cond_init(&p->done_cv, NULL);
    p->threads = xcalloc(nthreads ? nthreads : 1, sizeof *p->threads);
    for (unsigned i = 0; i < nthreads; i++) {
        if (pthread_create(&p->threads[i], NULL, vpool_main, p) != 0)
            break;
        p->nthreads++;
    }
    if (p->nthreads < nthreads) {
        vpool_free(p);
        return NULL;
    }
    return p;
}

void vpool_free(struct vpool *p)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->mu);
    p->stopping = 1;
    pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->mu);
    for (unsigned i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    free(p->threads);
    pthread_cond_destroy(&p->done_cv);
    pthread_cond_destroy(&p->work_cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

struct vtask *vpool_submit(struct vpool *p, json_t *obj)
{
    struct vtask *t = xcalloc(1, sizeof *t);

    t->obj = json_incref(obj);
    t->state = V_QUEUED;
    pthread_mutex_lock(&p->mu);
    t->prev = p->tail;
    if (p->tail != NULL)
        p->tail->next = t;
    else
        p->head = t;
    p->tail = t;
    if (p->nthreads > 0)
        pthread_cond_signal(&p->work_cv);
    pthread_mutex_unlock(&p->mu);
    return t;
}

struct event *vtask_finish(struct vpool *p, struct vtask *t, struct event_keycache *kc, char *err,
                           size_t errlen)
{
    struct event *ev;

    pthread_mutex_lock(&p->mu);
    if (t->state == V_QUEUED) {
        unlink_task(p, t);
        t->state = V_RUNNING;
        pthread_mutex_unlock(&p->mu);
        run_task(t, kc);
    } else {
        while (t->state != V_DONE)
            pthread_cond_wait(&p->done_cv, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
    ev = t->ev;
    if (ev == NULL && err != NULL && errlen > 0)
        snprintf(err, errlen, "%s", t->err);
    json_decref(t->obj);
    free(t);
    return ev;
}
