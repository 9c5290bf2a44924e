/*
 * sync-est: see sync-est.h.
 */
#include "config.h"

#include "sync-est.h"

uint64_t est_event_bytes(uint64_t json_len, size_t subid_len)
{
    return json_len + 13 + subid_len; /* ["EVENT","", and ] */
}

uint64_t est_req_bytes(const struct est_req *in)
{
    uint64_t est;

    if (!in->ok)
        return 0;
    if (in->mode == SYNC_MODE_REQ)
        return in->moved;
    est = in->common > in->have ? in->common - in->have : 0;
    est += in->fetched;
    est += 11 + in->subid_len + in->filter_len; /* ["REQ","", and ] */
    est += 11 + in->subid_len;                  /* ["EOSE",""] */
    return est;
}
