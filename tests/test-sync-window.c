/*
 * test-sync-window: the engine's pure arithmetic, without a relay or a
 * database: where a negentropy job cuts its local events into windows and
 * halves a window the relay finds too big, the timestamp lists it cuts, the
 * merge of the events waiting for the store writer into a stored listing,
 * and est_req_bytes, the REQ cost a run's "saved %" compares with.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sync-est.h"
#include "sync-share.h"
#include "sync-window.h"
#include "testutil.h"

static uint64_t split(uint64_t lo, uint64_t hi, const uint64_t *t, size_t n)
{
    struct window w = {lo, hi, 0, 0};
    return window_split_point(&w, t, n);
}

static void test_split_point(void)
{
    const uint64_t two[] = {120, 180};
    const uint64_t four[] = {110, 120, 130, 140};
    const uint64_t five[] = {101, 102, 103, 104, 105};
    const uint64_t same[] = {100, 100, 100, 100};
    const uint64_t at_hi[] = {101, 101, 101};
    const uint64_t below[] = {50, 60, 70};

    /* No events, or one: the middle of the span. */
    CHECK(split(100, 200, NULL, 0) == 150);
    CHECK(split(100, 200, two, 1) == 150);
    CHECK(split(100, 101, NULL, 0) == 100);
    /* Two or more: the lower median (the (n/2)th), so each half keeps some. */
    CHECK(split(100, 200, two, 2) == 120);
    CHECK(split(100, 200, four, 4) == 120);
    CHECK(split(100, 200, five, 5) == 102);
    /* All in one second, at lo: [lo, lo] and [lo + 1, hi]. */
    CHECK(split(100, 200, same, 4) == 100);
    /* The median at hi would leave the upper half empty: the middle instead. */
    CHECK(split(100, 101, at_hi, 3) == 100);
    /* Outside the window (cannot happen from a listing of it): the middle. */
    CHECK(split(100, 200, below, 3) == 150);
    /* No overflow at the top of the range. */
    CHECK(split(UINT64_MAX - 10, UINT64_MAX, NULL, 0) == UINT64_MAX - 5);
    /* An open window splits over the span it was given. */
    {
        struct window w = {0, 1000, 1, 3};
        CHECK(window_split_point(&w, NULL, 0) == 500);
    }
}

/* The windows wstack_push_times pushes for times[n], oldest first. */
static size_t cut(uint64_t lo, const uint64_t *times, size_t n, int64_t cursor, size_t per,
                  struct window *out, size_t max)
{
    struct ts_list l = {0};
    struct wstack st = {0};
    size_t k;

    for (size_t i = 0; i < n; i++)
        ts_list_push(&l, times[i]);
    wstack_push_times(&st, lo, &l, cursor, per);
    k = st.n < max ? st.n : max;
    if (k > 0)
        memcpy(out, st.v, k * sizeof *out);
    for (size_t i = 0; i < st.n; i++)
        CHECK(st.v[i].depth == 0 && !st.v[i].hi_open && st.v[i].lo <= st.v[i].hi);
    /* Adjacent, in order, each starting a second after the last one ended. */
    for (size_t i = 1; i < st.n; i++)
        CHECK(st.v[i].lo == st.v[i - 1].hi + 1);
    free(l.v);
    free(st.v);
    return k;
}

#define WIN(w, a, b) ((w).lo == (a) && (w).hi == (b))

static void test_push_times(void)
{
    struct window w[16];
    uint64_t t[16];
    size_t n;

    /* Nothing to cut. */
    CHECK(cut(0, NULL, 0, 0, 4, w, 16) == 0);
    CHECK(cut(0, NULL, 0, 50, 4, w, 16) == 0);

    /* One event: one window from lo to it. */
    t[0] = 500;
    n = cut(0, t, 1, 0, 12000, w, 16);
    CHECK(n == 1 && WIN(w[0], 0, 500));
    n = cut(500, t, 1, 0, 1, w, 16);
    CHECK(n == 1 && WIN(w[0], 500, 500));

    /* 12 events, 4 a window: three windows, ending at the 4th, 8th and 12th. */
    for (int i = 0; i < 12; i++)
        t[i] = (uint64_t)(i + 1) * 10; /* 10, 20, ..., 120 */
    n = cut(0, t, 12, 0, 4, w, 16);
    CHECK(n == 3 && WIN(w[0], 0, 40) && WIN(w[1], 41, 80) && WIN(w[2], 81, 120));
    /* 10 events, 4 a window: (10 + 2) / 4 = 3 windows, cut after the 3rd and 6th. */
    n = cut(5, t, 10, 0, 4, w, 16);
    CHECK(n == 3 && WIN(w[0], 5, 30) && WIN(w[1], 31, 60) && WIN(w[2], 61, 100));
    /* Fewer than half a window: one. */
    n = cut(0, t, 5, 0, 12, w, 16);
    CHECK(n == 1 && WIN(w[0], 0, 50));

    /* All in one second: one window, whatever the size; a window never splits a second. */
    for (int i = 0; i < 10; i++)
        t[i] = 700;
    n = cut(0, t, 10, 0, 3, w, 16);
    CHECK(n == 1 && WIN(w[0], 0, 700));
    /* A crowded second in the middle takes the cuts that fall into it. */
    {
        const uint64_t c[] = {1, 2, 5, 5, 5, 5, 5, 5, 8, 9};
        n = cut(0, c, 10, 0, 2, w, 16);
        CHECK(n == 3 && WIN(w[0], 0, 2) && WIN(w[1], 3, 5) && WIN(w[2], 6, 9));
    }

    /* Up to the cursor one window, then windows of per each. */
    {
        const uint64_t c[] = {10, 20, 30, 40, 50};
        n = cut(0, c, 5, 30, 100, w, 16);
        CHECK(n == 2 && WIN(w[0], 0, 30) && WIN(w[1], 31, 50));
        n = cut(0, c, 5, 30, 1, w, 16);
        CHECK(n == 3 && WIN(w[0], 0, 30) && WIN(w[1], 31, 40) && WIN(w[2], 41, 50));
        /* The cursor past every event: one window up to the newest. */
        n = cut(0, c, 5, 60, 1, w, 16);
        CHECK(n == 1 && WIN(w[0], 0, 50));
        /* The cursor exactly at the newest. */
        n = cut(0, c, 5, 50, 1, w, 16);
        CHECK(n == 1 && WIN(w[0], 0, 50));
        /* The cursor below lo, or 0 (none): ignored. */
        n = cut(35, c + 3, 2, 30, 1, w, 16);
        CHECK(n == 2 && WIN(w[0], 35, 40) && WIN(w[1], 41, 50));
        n = cut(0, c, 5, 0, 100, w, 16);
        CHECK(n == 1 && WIN(w[0], 0, 50));
        /* No event up to the cursor: no window for it. */
        n = cut(0, c + 3, 2, 30, 100, w, 16);
        CHECK(n == 1 && WIN(w[0], 0, 50));
    }
}

static void test_ts_list(void)
{
    struct ts_list l = {0};
    struct pend_item p[4];

    /* Grows past its first allocation and keeps the order. */
    for (uint64_t i = 0; i < 3000; i++)
        ts_list_push(&l, i);
    CHECK(l.n == 3000 && l.v[0] == 0 && l.v[1024] == 1024 && l.v[2999] == 2999);

    /* Dropping from the end: nothing, some (a run of equal ones too), everything. */
    l.n = 0;
    ts_list_push(&l, 1);
    ts_list_push(&l, 2);
    ts_list_push(&l, 3);
    ts_list_push(&l, 5);
    ts_list_push(&l, 5);
    ts_list_drop_from(&l, 10);
    CHECK(l.n == 5);
    ts_list_drop_from(&l, 5);
    CHECK(l.n == 3 && l.v[2] == 3);
    ts_list_drop_from(&l, 4);
    CHECK(l.n == 3);
    ts_list_drop_from(&l, 0);
    CHECK(l.n == 0);
    ts_list_drop_from(&l, 0);
    CHECK(l.n == 0);

    /* Pending events from lo on join, in order; older ones do not. */
    memset(p, 0, sizeof p);
    p[0].created_at = 5;
    p[1].created_at = 20;
    p[2].created_at = 30;
    p[3].created_at = 40;
    ts_list_push(&l, 10);
    ts_list_push(&l, 30);
    ts_list_add_pending(&l, p, 4, 10);
    CHECK(l.n == 5);
    CHECK(l.n == 5 && l.v[0] == 10 && l.v[1] == 20 && l.v[2] == 30 && l.v[3] == 30 && l.v[4] == 40);
    ts_list_add_pending(&l, p, 1, 10);
    CHECK(l.n == 5);
    ts_list_add_pending(&l, NULL, 0, 0);
    CHECK(l.n == 5);
    free(l.v);
}

/* What listing_merge hands on, in order. */
struct sink {
    uint64_t at[32];
    uint8_t id0[32]; /* each id's first byte */
    size_t n;
    size_t stop_after; /* 0: never */
};

static int sink_add(void *arg, uint64_t created_at, const uint8_t id[32])
{
    struct sink *k = arg;

    if (k->stop_after > 0 && k->n == k->stop_after)
        return 1;
    k->at[k->n] = created_at;
    k->id0[k->n] = id[0];
    k->n++;
    return 0;
}

static void pend_set(struct pend_item *p, uint64_t at, uint8_t id0)
{
    memset(p, 0, sizeof *p);
    p->created_at = at;
    p->id[0] = id0;
}

/* Stored items (at[i], id0[i]) through the merge, then its end; the first nonzero return. */
static int merge(struct listing_merge *m, const uint64_t *at, const uint8_t *id0, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t id[32] = {0};
        int rc;
        id[0] = id0[i];
        if ((rc = listing_merge_stored(m, at[i], id)) != 0)
            return rc;
    }
    return listing_merge_end(m);
}

#define ITEM(k, i, a, b) ((k).at[i] == (a) && (k).id0[i] == (b))

static void test_merge(void)
{
    struct pend_item p[8];
    struct sink k;
    struct listing_merge m;
    const uint64_t s_at[] = {10, 20, 20, 30};
    const uint8_t s_id[] = {0xa0, 0x20, 0x40, 0x10};

    /* Both empty. */
    memset(&k, 0, sizeof k);
    m = (struct listing_merge){NULL, 0, 0, sink_add, &k};
    CHECK(merge(&m, NULL, NULL, 0) == 0 && k.n == 0);

    /* Only stored: as listed. */
    memset(&k, 0, sizeof k);
    m = (struct listing_merge){NULL, 0, 0, sink_add, &k};
    CHECK(merge(&m, s_at, s_id, 4) == 0 && k.n == 4);
    CHECK(ITEM(k, 0, 10, 0xa0) && ITEM(k, 1, 20, 0x20) && ITEM(k, 2, 20, 0x40) &&
          ITEM(k, 3, 30, 0x10));

    /* Only pending: all of them at the end. */
    pend_set(&p[0], 5, 0x01);
    pend_set(&p[1], 7, 0x02);
    memset(&k, 0, sizeof k);
    m = (struct listing_merge){p, 2, 0, sink_add, &k};
    CHECK(merge(&m, NULL, NULL, 0) == 0 && k.n == 2);
    CHECK(ITEM(k, 0, 5, 0x01) && ITEM(k, 1, 7, 0x02));

    /*
     * Interleaved, by (created_at, id): older and newer than every stored
     * one, in the same second before and after a stored id and between two,
     * and one stored since the pending list was taken (20, 0x40): once.
     */
    pend_set(&p[0], 5, 0xff);
    pend_set(&p[1], 20, 0x10);
    pend_set(&p[2], 20, 0x30);
    pend_set(&p[3], 20, 0x40);
    pend_set(&p[4], 20, 0x50);
    pend_set(&p[5], 31, 0x00);
    memset(&k, 0, sizeof k);
    m = (struct listing_merge){p, 6, 0, sink_add, &k};
    CHECK(merge(&m, s_at, s_id, 4) == 0);
    CHECK_MSG(k.n == 9, "%zu items", k.n);
    CHECK(ITEM(k, 0, 5, 0xff) && ITEM(k, 1, 10, 0xa0) && ITEM(k, 2, 20, 0x10) &&
          ITEM(k, 3, 20, 0x20) && ITEM(k, 4, 20, 0x30) && ITEM(k, 5, 20, 0x40) &&
          ITEM(k, 6, 20, 0x50) && ITEM(k, 7, 30, 0x10) && ITEM(k, 8, 31, 0x00));

    /* Every pending one stored meanwhile: the listing alone. */
    pend_set(&p[0], 10, 0xa0);
    pend_set(&p[1], 30, 0x10);
    memset(&k, 0, sizeof k);
    m = (struct listing_merge){p, 2, 0, sink_add, &k};
    CHECK(merge(&m, s_at, s_id, 4) == 0 && k.n == 4);

    /* add says stop (the storage refused an item): the merge stops there and says so. */
    pend_set(&p[0], 5, 0x01);
    memset(&k, 0, sizeof k);
    k.stop_after = 2;
    m = (struct listing_merge){p, 1, 0, sink_add, &k};
    CHECK(merge(&m, s_at, s_id, 4) == 1 && k.n == 2);
    memset(&k, 0, sizeof k);
    k.stop_after = 1;
    m = (struct listing_merge){p, 1, 0, sink_add, &k};
    CHECK(listing_merge_end(&m) == 0 && k.n == 1);
    pend_set(&p[1], 6, 0x02);
    memset(&k, 0, sizeof k);
    k.stop_after = 1;
    m = (struct listing_merge){p, 2, 0, sink_add, &k};
    CHECK(listing_merge_end(&m) == 1 && k.n == 1);
}

static void test_est(void)
{
    struct est_req in;

    /* ["EVENT","abcdefghijkl",<100 bytes>] */
    CHECK(est_event_bytes(100, 12) == strlen("[\"EVENT\",\"abcdefghijkl\",") + 100 + 1);
    CHECK(est_event_bytes(100, 12) == 125);
    CHECK(est_event_bytes(0, 0) == 13);

    /* A failed job: nothing to compare with, whatever it moved. */
    memset(&in, 0, sizeof in);
    in.ok = 0;
    in.mode = SYNC_MODE_REQ;
    in.moved = 5000;
    CHECK(est_req_bytes(&in) == 0);
    in.mode = SYNC_MODE_NEG;
    in.common = 10000;
    CHECK(est_req_bytes(&in) == 0);

    /* REQ: what it moved, nothing else. */
    memset(&in, 0, sizeof in);
    in.ok = 1;
    in.mode = SYNC_MODE_REQ;
    in.moved = 5000;
    in.common = 1;
    in.fetched = 7;
    in.filter_len = 30;
    in.subid_len = 12;
    CHECK(est_req_bytes(&in) == 5000);

    /*
     * Negentropy: (10000 - 2000) common, 3000 fetched, ["REQ","<12>",<20>]
     * = 8 + 12 + 2 + 20 + 1 = 43, ["EOSE","<12>"] = 9 + 12 + 2 = 23.
     */
    memset(&in, 0, sizeof in);
    in.ok = 1;
    in.mode = SYNC_MODE_NEG;
    in.moved = 999999; /* not what negentropy is compared with */
    in.common = 10000;
    in.have = 2000;
    in.fetched = 3000;
    in.filter_len = 20;
    in.subid_len = 12;
    CHECK(est_req_bytes(&in) == 8000 + 3000 + 43 + 23);
    CHECK(43 == strlen("[\"REQ\",\"abcdefghijkl\",") + 20 + 1);
    CHECK(23 == strlen("[\"EOSE\",\"abcdefghijkl\"]"));
    /* Have ids beyond the common sum (sized from another listing): none common, not negative. */
    in.common = 100;
    in.have = 500;
    in.fetched = 0;
    in.filter_len = 2; /* {} */
    CHECK(est_req_bytes(&in) == 0 + 0 + 25 + 23);
    /* Nothing local and nothing fetched: the REQ and its EOSE alone. */
    in.common = in.have = 0;
    CHECK(est_req_bytes(&in) == 48);
}

int main(void)
{
    test_split_point();
    test_push_times();
    test_ts_list();
    test_merge();
    test_est();
    return test_summary("test-sync-window");
}
