/*
 * sync-dry: what a dry run (opts.dry_run) counts instead of doing. The jobs
 * run as usual, against a database opened with store_open_unchanged, and
 * hand here, at three seams, what they would otherwise act on: an id
 * negentropy found missing (fetch_queue), a verified event a REQ page
 * brought (job_queue_event), an id the relay lacks (upload_pump). Each is
 * counted once per job, and listed with opts.dry_run_ids; nothing is
 * fetched, queued for the store or sent. dry_finish hands the figures to the
 * job's run.
 *
 * In negentropy mode the need ids are the answer: exactly what a real run
 * would ask the relay for by id, known at no extra cost. Downloading them to
 * count only the valid ones would spend what the dry run is meant to spare;
 * a real run may store a few fewer (a forged event, an older version of a
 * replaceable one, one a stored deletion covers). REQ has no such list, so
 * a dry run in REQ mode downloads its pages as a real run would and counts
 * the events that verify, match and are not stored.
 *
 * Nothing reaches the store writer, so no cursor moves (a cursor only moves
 * to what was stored), no claim is taken and no listing goes stale: each
 * relay's figures are what that relay alone would bring to the database as
 * it is.
 */

#include "config.h"

#include "sync-int.h"

static void dry_note(struct job *j, struct idq *q, uint64_t *count, const uint8_t id[32])
{
    (*count)++;
    if (j->e->o.dry_run_ids)
        idq_push(q, id);
}

void dry_note_fetch(struct job *j, const uint8_t id[32])
{
    dry_note(j, &j->dry_fetch, &j->run->would_fetch, id);
}

void dry_note_upload(struct job *j, const uint8_t id[32])
{
    dry_note(j, &j->dry_up, &j->run->would_upload, id);
}

int dry_take_event(struct job *j, struct event *ev)
{
    char err[STORE_ERRLEN];
    int has = store_has_id(j->st, ev->id, err, sizeof err);

    if (has < 0) {
        set_error(j->fatal, sizeof j->fatal, "store: %s", err);
        event_free(ev);
        return -1;
    }
    /* j->queued: a page asks for its oldest second again, and a fallback follows negentropy. */
    if (has == 1 || !idset_put(&j->queued, ev->id))
        j->run->duplicates++;
    else
        dry_note_fetch(j, ev->id);
    event_free(ev);
    return 0;
}

/* The ids of q as an array the caller frees (never NULL); q is left empty. */
static uint8_t (*dry_ids(struct idq *q))[32]
{
    size_t n = idq_len(q);
    uint8_t(*v)[32] = xreallocarray(NULL, n > 0 ? n : 1, 32);

    if (n > 0)
        memcpy(v, q->ids + q->head, n * 32);
    idq_free(q);
    return v;
}

void dry_finish(struct job *j)
{
    struct sync_run *run = j->run;

    run->dry_run = 1;
    /* A REQ would also carry the missing events, whose sizes a dry run does not learn. */
    run->est_req_bytes = 0;
    if (j->e->o.dry_run_ids) {
        run->fetch_ids = dry_ids(&j->dry_fetch);
        run->upload_ids = dry_ids(&j->dry_up);
    }
    idq_free(&j->dry_fetch);
    idq_free(&j->dry_up);
}
