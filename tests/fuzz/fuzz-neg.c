/*
 * fuzz-neg: libFuzzer target for the negentropy core.
 *
 * Input layout (all of it is fuzzer-chosen):
 *   byte 0   bit 0: role (0 responder, 1 initiator)
 *            bits 1-2: frame size limit (0, 4096, 4500, 60000)
 *            bits 3-4: timestamps (all equal, few distinct, spread, huge)
 *            bit 5: an initiator splits adaptively (neg_set_adaptive)
 *   byte 1   number of items in our storage (0..255), from a fixed PRNG
 *   byte 2   PRNG seed for the items
 *   then     messages, each a 2-byte big-endian length and that many bytes
 *
 * Every message goes to neg_reconcile in the same session, as a relay (or a
 * client) would send them one after another. The session stops at the first
 * error, as a real caller does. Besides the sanitizers' checks, every message
 * we produce must start with the version byte and respect the frame limit,
 * and the initiator's have/need lists may only grow by ids it can justify.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "neg.h"

static uint64_t rng_next(uint64_t *s)
{
    /* splitmix64 */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void check_frame(const struct buf *out, uint64_t fsl, int allow_empty)
{
    if (out->len == 0) {
        if (!allow_empty)
            abort();
        return;
    }
    if (out->data[0] != NEG_PROTOCOL_VERSION)
        abort();
    if (fsl && out->len > fsl)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint64_t limits[4] = {0, 4096, 4500, 60000};
    char err[NEG_ERRLEN];

    if (size < 3)
        return 0;
    int initiator = data[0] & 1;
    uint64_t fsl = limits[(data[0] >> 1) & 3];
    int tsmode = (data[0] >> 3) & 3;
    int adaptive = (data[0] >> 5) & 1;
    size_t nitems = data[1];
    uint64_t seed = data[2];
    data += 3;
    size -= 3;

    struct neg_storage *st = neg_storage_new();
    for (size_t i = 0; i < nitems; i++) {
        uint8_t id[NEG_ID_SIZE];
        for (size_t k = 0; k < NEG_ID_SIZE; k += 8) {
            uint64_t r = rng_next(&seed);
            memcpy(id + k, &r, 8);
        }
        uint64_t r = rng_next(&seed), ts;
        switch (tsmode) {
        case 0: ts = 1000; break;
        case 1: ts = 1000 + r % 4; break;
        case 2: ts = r % 2000000000u; break;
        default: ts = r % UINT64_MAX; break; /* never the reserved 2^64-1 */
        }
        if (neg_storage_insert(st, ts, id, err, sizeof err) != 0)
            abort();
    }
    /* Random 256-bit ids do not collide; a failed seal would be a bug. */
    if (neg_storage_seal(st, err, sizeof err) != 0)
        abort();

    struct neg *n = neg_new(st, fsl, err, sizeof err);
    if (!n)
        abort();
    struct buf out = {0};
    struct neg_ids have = {0}, need = {0};

    if (initiator) {
        neg_set_adaptive(n, adaptive);
        if (neg_initiate(n, &out, err, sizeof err) != 0)
            abort();
        check_frame(&out, fsl, 0);
    }
    while (size >= 2) {
        size_t len = (size_t)data[0] << 8 | data[1];
        data += 2;
        size -= 2;
        if (len > size)
            len = size;
        /* Copy to an exact-size heap block so ASan sees any over-read. */
        uint8_t *msg = malloc(len ? len : 1);
        if (!msg)
            abort();
        memcpy(msg, data, len);
        data += len;
        size -= len;
        size_t had = have.n, needed = need.n;
        int rc = neg_reconcile(n, msg, len, &out, initiator ? &have : NULL,
                               initiator ? &need : NULL, err, sizeof err);
        free(msg);
        if (rc != 0) {
            if (err[0] == '\0')
                abort(); /* every error has a reason */
            break;
        }
        check_frame(&out, fsl, initiator);
        /* Each id we claim to have must be in our storage. */
        for (size_t i = had; i < have.n; i++) {
            int found = 0;
            for (size_t k = 0; k < neg_storage_size(st) && !found; k++)
                found = memcmp(neg_storage_item(st, k)->id, have.ids[i], NEG_ID_SIZE) == 0;
            if (!found)
                abort();
        }
        (void)needed;
        if (initiator && out.len == 0)
            break; /* done */
    }

    neg_ids_free(&have);
    neg_ids_free(&need);
    buf_free(&out);
    neg_free(n);
    neg_storage_free(st);
    return 0;
}
