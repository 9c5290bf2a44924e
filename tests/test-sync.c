/*
 * test-sync: the parts of the sync engine that need no relay: the progress
 * line and the --json record of a run.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "sync.h"
#include "testutil.h"

static void test_progress_format(void)
{
    struct sync_progress p = {
        .relay = "wss://relay.example.com",
        .filter = "notes",
        .phase = "fetching",
        .rounds = 3,
        .fetched = 1200,
        .total = 4000,
    };
    char buf[256];
    size_t n;

    n = sync_progress_format(&p, buf, sizeof buf);
    CHECK(strcmp(buf, "wss://relay.example.com notes: fetching, round 3, fetched 1200/4000") == 0);
    CHECK(n == strlen(buf));

    /* REQ: the total is not known. */
    p.phase = "REQ";
    p.total = 0;
    sync_progress_format(&p, buf, sizeof buf);
    CHECK(strcmp(buf, "wss://relay.example.com notes: REQ, round 3, fetched 1200") == 0);

    /* Cut to the terminal's width, NUL-terminated. */
    n = sync_progress_format(&p, buf, 11);
    CHECK(n == 10 && strcmp(buf, "wss://rela") == 0);
    n = sync_progress_format(&p, buf, 1);
    CHECK(n == 0 && buf[0] == '\0');
    CHECK(sync_progress_format(&p, buf, 0) == 0);
}

static void test_run_json(void)
{
    struct sync_run r;
    char *s;

    memset(&r, 0, sizeof r);
    strcpy(r.relay, "ws://127.0.0.1:7777");
    strcpy(r.filter, "notes");
    r.mode = SYNC_MODE_REQ;
    strcpy(r.fallback_reason, "use_negentropy = false");
    strcpy(r.error, "relay closed the subscription: rate-limited: slow down; backoff 1.0 s");
    r.bytes_sent = 48;
    s = sync_run_to_json(&r);
    CHECK(s != NULL);
    if (s != NULL) {
        CHECK(strstr(s, "\"mode\":\"req\"") != NULL);
        CHECK(strstr(s, "\"result\":\"error\"") != NULL);
        CHECK(strstr(s, "\"est_req_bytes\":0") != NULL);
        CHECK(strstr(s, "\"bytes_sent\":48") != NULL);
        CHECK(strstr(s, "backoff 1.0 s") != NULL);
    }
    free(s);
}

int main(void)
{
    test_progress_format();
    test_run_json();
    return test_summary("test-sync");
}
