/*
 * summary: the per-relay table that ends a headless `sync --once` and a TUI
 * session: the runs of each relay added up (mode, rounds, bytes, what was
 * saved against REQ, events, time, result; or, for a dry run, what would be
 * fetched and uploaded). Not thread-safe: the caller
 * holds its own lock around summary_add and summary_print.
 */
#ifndef NEGSYNC_SUMMARY_H
#define NEGSYNC_SUMMARY_H

#include <stdint.h>
#include <stdio.h>

#include "sync.h"

struct summary_row {
    char relay[512];
    unsigned neg_jobs, req_jobs, failed;
    uint64_t rounds, sent, recv, est, fetched, stored, invalid;
    int64_t ms;
    int dry;                            /* a dry run's runs (sync --dry-run) */
    uint64_t would_fetch, would_upload; /* theirs */
};

struct summary {
    struct summary_row *rows; /* in the order relays first finished a run */
    size_t n;
};

/* Adds one finished run to its relay's row. */
void summary_add(struct summary *s, const struct sync_run *r);
/*
 * The table, a header line and one line per relay; for a dry run's runs
 * the events each relay would fetch and upload instead of what was saved,
 * fetched and stored.
 */
void summary_print(const struct summary *s, FILE *f);
/* 1 if some run failed. */
int summary_failed(const struct summary *s);
void summary_free(struct summary *s);

/* "812 B", "12.3 kB", "4.5 MB", "1.23 GB". */
void summary_fmt_bytes(uint64_t n, char *out, size_t outlen);
/* "83%" of est saved when used bytes were spent, or "-" with nothing to compare. */
void summary_fmt_saved(uint64_t est, uint64_t used, char *out, size_t outlen);

#endif
