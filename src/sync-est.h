/*
 * sync-est: what a classic REQ from the cursor would have cost a job
 * (struct sync_run's est_req_bytes), the figure its "saved %" compares with.
 * The arithmetic only: the engine collects the inputs (sync-neg.c sums the
 * local events' sizes, sync-run.c the rest). Pure (tests/test-sync-window.c).
 */
#ifndef NEGSYNC_SYNC_EST_H
#define NEGSYNC_SYNC_EST_H

#include <stddef.h>
#include <stdint.h>

#include "sync.h"

/* ["EVENT","<subid>",<event>]: what a REQ gets for an event of json_len bytes. */
uint64_t est_event_bytes(uint64_t json_len, size_t subid_len);

struct est_req {
    int ok;              /* the job succeeded; a failed one has nothing to compare with */
    enum sync_mode mode; /* the mode that ended the job */
    uint64_t moved;      /* REQ: the payload bytes it sent and received, which are the cost */
    /* negentropy: */
    uint64_t common;   /* est_event_bytes of the windows' local events from the cursor on */
    uint64_t have;     /* the same for those of them the relay lacks */
    uint64_t fetched;  /* the EVENT messages of the events fetched */
    size_t filter_len; /* the filter's JSON */
    size_t subid_len;  /* our subscription ids' */
};

/*
 * 0 for a failed job; for REQ, what it moved; for negentropy, the events
 * both sides hold (common - have) and those fetched, one REQ
 * (["REQ","<subid>",<filter>]) and its EOSE (["EOSE","<subid>"]).
 */
uint64_t est_req_bytes(const struct est_req *in);

#endif
