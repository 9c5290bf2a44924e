#!/bin/sh
# Soak: many negentropy syncs of 20 000 events (90 % already local) through
# each permessage-deflate server of tests/relay-deflate.sh. Against a stock
# strfry (sliding window) the old libwebsockets client aborted with "double
# free or corruption" in 1 of 3 such runs, and now and then grew to 20 GB.
# Every run here must end ok with the 2 000 missing events, within a deadline
# and a memory ceiling; under --enable-sanitizers any bad free or overflow
# fails the run. NEGSYNC_SOAK_RUNS sets the runs per server (default 5; the
# issue's campaign was 50).
. "${top_srcdir:-.}/tests/sync-lib.sh"
. "$top_srcdir/tests/bounded-lib.sh"

RUNS=${NEGSYNC_SOAK_RUNS:-5}
# The relays verify 20 000 events before they listen: slow under the sanitizers.
RELAY_START_TIMEOUT=${RELAY_START_TIMEOUT:-180}
MAX_MB=${NEGSYNC_TEST_MAX_RSS_MB:-600}

"$GEN" -n 20000 -k 50 -s 200000 -S 51 -R >"$WORK/relay.jsonl" || fail "gen-events"
awk 'NR % 10 != 0' "$WORK/relay.jsonl" >"$WORK/local.jsonl"
"$NEGSYNC" -d "$WORK/base.db" import "$WORK/local.jsonl" >/dev/null || fail "import"


soak() {
    name=$1
    sync_config "$WORK/c.ini"
    printf '[relay %s]\n[filter notes]\nkinds = 1\n' "$URL" >>"$WORK/c.ini"
    peak=0
    i=1
    while [ $i -le "$RUNS" ]; do
        rm -f "$WORK/db" "$WORK/db-wal" "$WORK/db-shm"
        cp "$WORK/base.db" "$WORK/db"
        run_bounded 120 "$MAX_MB" "$NEGSYNC" -c "$WORK/c.ini" -d "$WORK/db" sync --once --json \
            >"$WORK/run.json" 2>"$WORK/run.err" || fail "$name run $i: $BOUNDED_WHY"
        [ "$BOUNDED_RC" = 0 ] ||
            fail "$name run $i: exit $BOUNDED_RC: $(cat "$WORK/run.json"; tail -n 20 "$WORK/run.err")"
        l=$(jline "$WORK/run.json" "$URL")
        expect_eq "$name run $i: mode" "$(jstr "$l" mode)" negentropy
        expect_eq "$name run $i: stored" "$(jnum "$l" stored)" 2000
        [ "$BOUNDED_PEAK_MB" -gt "$peak" ] && peak=$BOUNDED_PEAK_MB
        i=$((i + 1))
    done
    echo "$name: $RUNS runs ok, last: payload $(jnum "$l" bytes_received) bytes received," \
        "wire $(jnum "$l" wire_received); peak $peak MB"
}

for_each_deflate_server "$WORK/relay.jsonl" soak
echo "ok: soak through every deflate server"
