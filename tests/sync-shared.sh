#!/bin/sh
# Two NIP-77 relays with the same events, synced at once by two workers: the
# ids both sessions need are fetched by whichever claims them first, and the
# other session waits for those claims instead of sitting on a silent
# connection. Both jobs must end by negentropy (no fallback, no timeout), and
# every missing event must be stored exactly once. Repeated a few times, since
# which worker claims what depends on timing.
. "${top_srcdir:-.}/tests/sync-lib.sh"

"$GEN" -n 4000 -k 20 -s 20000 -S 11 >"$WORK/relay.jsonl" || fail "gen-events"
awk 'NR % 5 != 0' "$WORK/relay.jsonl" >"$WORK/local.jsonl"   # 800 missing
ids_of_file "$WORK/relay.jsonl" | sort >"$WORK/want"

start_relay --events "$WORK/relay.jsonl"
r1=$RELAY_URL
start_relay --events "$WORK/relay.jsonl"
r2=$RELAY_URL

for round in 1 2 3; do
    rm -f "$WORK/db" "$WORK/db-wal" "$WORK/db-shm"
    "$NEGSYNC" -d "$WORK/db" import "$WORK/local.jsonl" >/dev/null || fail "import"
    # A session stuck on claims times out (neg_timeout, 3 s here) and falls
    # back to REQ: that is what this test catches.
    sync_config "$WORK/c.ini" workers=2 fetch_batch=100
    printf '[relay %s]\n[relay %s]\n[filter notes]\nkinds = 1\n' "$r1" "$r2" >>"$WORK/c.ini"
    "$NEGSYNC" -c "$WORK/c.ini" -d "$WORK/db" sync --once --json >"$WORK/run.json" \
        2>"$WORK/run.err" || fail "round $round: sync failed: $(cat "$WORK/run.json" "$WORK/run.err")"
    stored=0
    for r in "$r1" "$r2"; do
        l=$(jline "$WORK/run.json" "$r")
        expect_eq "round $round $r mode" "$(jstr "$l" mode)" negentropy
        expect_eq "round $round $r result" "$(jstr "$l" result)" ok
        expect_eq "round $round $r need" "$(jnum "$l" need)" 800
        stored=$((stored + $(jnum "$l" stored)))
    done
    expect_eq "round $round stored by both jobs" "$stored" 800
    ids_of_db "$WORK/db" >"$WORK/got"
    cmp -s "$WORK/want" "$WORK/got" || fail "round $round: local set differs from the relays'"
done
echo "sync-shared: both relays by negentropy, 800 missing events stored once, 3 rounds"
