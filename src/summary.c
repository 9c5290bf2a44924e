/*
 * summary: the per-relay table of finished runs; see summary.h.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "summary.h"
#include "util.h"

void summary_fmt_bytes(uint64_t n, char *out, size_t outlen)
{
    if (n < 1000)
        snprintf(out, outlen, "%llu B", (unsigned long long)n);
    else if (n < 1000 * 1000)
        snprintf(out, outlen, "%.1f kB", (double)n / 1e3);
    else if (n < 1000ULL * 1000 * 1000)
        snprintf(out, outlen, "%.1f MB", (double)n / 1e6);
    else
        snprintf(out, outlen, "%.2f GB", (double)n / 1e9);
}

void summary_fmt_saved(uint64_t est, uint64_t used, char *out, size_t outlen)
{
    if (est == 0)
        snprintf(out, outlen, "-");
    else
        snprintf(out, outlen, "%.0f%%", ((double)est - (double)used) * 100.0 / (double)est);
}

void summary_add(struct summary *s, const struct sync_run *r)
{
    struct summary_row *row = NULL;

    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->rows[i].relay, r->relay) == 0)
            row = &s->rows[i];
    if (row == NULL) {
        s->rows = xreallocarray(s->rows, s->n + 1, sizeof *s->rows);
        row = &s->rows[s->n++];
        memset(row, 0, sizeof *row);
        snprintf(row->relay, sizeof row->relay, "%s", r->relay);
    }
    if (r->mode == SYNC_MODE_NEG)
        row->neg_jobs++;
    else
        row->req_jobs++;
    if (!r->ok)
        row->failed++;
    row->rounds += r->rounds;
    row->sent += r->bytes_sent;
    row->recv += r->bytes_received;
    row->est += r->est_req_bytes;
    row->fetched += r->fetched;
    row->stored += r->stored;
    row->invalid += r->invalid;
    row->ms += r->duration_ms;
    row->dry |= r->dry_run;
    row->would_fetch += r->would_fetch;
    row->would_upload += r->would_upload;
}

/* A dry run's table: what each relay would bring and take. */
static void summary_print_dry(const struct summary *s, FILE *f)
{
    fprintf(f, "%-40s %-10s %6s %10s %10s %11s %12s %7s %s\n", "RELAY", "MODE", "ROUNDS", "SENT",
            "RECEIVED", "WOULD FETCH", "WOULD UPLOAD", "TIME", "RESULT");
    for (size_t i = 0; i < s->n; i++) {
        const struct summary_row *w = &s->rows[i];
        char up[32], down[32], t[32];
        const char *mode = w->neg_jobs > 0 && w->req_jobs > 0 ? "mixed"
                           : w->neg_jobs > 0                  ? "negentropy"
                                                              : "req";
        summary_fmt_bytes(w->sent, up, sizeof up);
        summary_fmt_bytes(w->recv, down, sizeof down);
        snprintf(t, sizeof t, "%.1f s", (double)w->ms / 1000.0);
        fprintf(f, "%-40s %-10s %6llu %10s %10s %11llu %12llu %7s %s\n", w->relay, mode,
                (unsigned long long)w->rounds, up, down, (unsigned long long)w->would_fetch,
                (unsigned long long)w->would_upload, t, w->failed > 0 ? "error" : "ok");
    }
    fflush(f);
}

void summary_print(const struct summary *s, FILE *f)
{
    for (size_t i = 0; i < s->n; i++) {
        if (s->rows[i].dry) {
            summary_print_dry(s, f);
            return;
        }
    }
    fprintf(f, "%-40s %-10s %6s %10s %10s %6s %8s %8s %7s %7s %s\n", "RELAY", "MODE", "ROUNDS",
            "SENT", "RECEIVED", "SAVED", "FETCHED", "STORED", "INVALID", "TIME", "RESULT");
    for (size_t i = 0; i < s->n; i++) {
        const struct summary_row *w = &s->rows[i];
        char up[32], down[32], saved[16], t[32];
        const char *mode = w->neg_jobs > 0 && w->req_jobs > 0 ? "mixed"
                           : w->neg_jobs > 0                  ? "negentropy"
                                                              : "req";
        summary_fmt_bytes(w->sent, up, sizeof up);
        summary_fmt_bytes(w->recv, down, sizeof down);
        summary_fmt_saved(w->est, w->sent + w->recv, saved, sizeof saved);
        snprintf(t, sizeof t, "%.1f s", (double)w->ms / 1000.0);
        fprintf(f, "%-40s %-10s %6llu %10s %10s %6s %8llu %8llu %7llu %7s %s\n", w->relay, mode,
                (unsigned long long)w->rounds, up, down, saved, (unsigned long long)w->fetched,
                (unsigned long long)w->stored, (unsigned long long)w->invalid, t,
                w->failed > 0 ? "error" : "ok");
    }
    fflush(f);
}

int summary_failed(const struct summary *s)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->rows[i].failed > 0)
            return 1;
    return 0;
}

void summary_free(struct summary *s)
{
    free(s->rows);
    s->rows = NULL;
    s->n = 0;
}
