#!/bin/sh
# Negentropy convergence: a relay holding 3000 events, a local database with
# a scattered half of them plus 200 of its own. One `sync --once` by NIP-77
# must leave every relay event stored locally (and nothing else new), with
# the fetch running in batches while small frames force many rounds; a second
# session right after needs nothing. The byte counters must equal what the
# relay counted on its side.
. "${top_srcdir:-.}/tests/sync-lib.sh"

"$GEN" -n 3000 -k 20 -s 20000 -S 1 >"$WORK/relay.jsonl" || fail "gen-events"
"$GEN" -n 200 -k 3 -s 20000 -S 2 >"$WORK/local-only.jsonl" || fail "gen-events"
awk 'NR % 2 == 0' "$WORK/relay.jsonl" >"$WORK/local.jsonl"
"$NEGSYNC" -d "$WORK/db" import "$WORK/local.jsonl" >/dev/null || fail "import"
"$NEGSYNC" -d "$WORK/db" import "$WORK/local-only.jsonl" >/dev/null || fail "import"

start_relay --events "$WORK/relay.jsonl"
sync_config "$WORK/c.ini" frame_size_limit=4096 fetch_batch=100 fetch_in_flight=3
cat >>"$WORK/c.ini" <<INI
[relay $RELAY_URL]
[filter notes]
kinds = 1
INI

"$NEGSYNC" -c "$WORK/c.ini" -d "$WORK/db" sync --once --json >"$WORK/run1.json" \
    2>"$WORK/run1.err" || fail "first sync failed: $(cat "$WORK/run1.json" "$WORK/run1.err")"
grep -q "^\[SYNC\] Using negentropy for $RELAY_URL (filter notes)$" "$WORK/run1.err" ||
    fail "no negentropy decision logged: $(cat "$WORK/run1.err")"
l=$(jline "$WORK/run1.json" "$RELAY_URL")
expect_eq mode "$(jstr "$l" mode)" negentropy
expect_eq result "$(jstr "$l" result)" ok
expect_eq need "$(jnum "$l" need)" 1500
expect_eq have "$(jnum "$l" have)" 200
expect_eq fetched "$(jnum "$l" fetched)" 1500
expect_eq stored "$(jnum "$l" stored)" 1500
expect_eq invalid "$(jnum "$l" invalid)" 0
[ "$(jnum "$l" rounds)" -gt 2 ] || fail "a 4096-byte frame limit should take several rounds: $l"

# Every relay event is stored; nothing but the relay's and our own.
ids_of_file "$WORK/relay.jsonl" >"$WORK/want"
ids_of_file "$WORK/local-only.jsonl" >>"$WORK/want"
sort -o "$WORK/want" "$WORK/want"
ids_of_db "$WORK/db" >"$WORK/got"
cmp -s "$WORK/want" "$WORK/got" || fail "local set differs from relay + local-only"

# Exact payload counters: the relay counted the same bytes on the sync's
# connection, the last of the connections (the capability probe came first)
# and the last entry before the totals.
stop_relay || fail "relay did not stop cleanly"
rx=$(grep '"rx_bytes"' "$RELAY_STATS" | tail -n 2 | head -n 1 | tr -dc 0-9)
tx=$(grep '"tx_bytes"' "$RELAY_STATS" | tail -n 2 | head -n 1 | tr -dc 0-9)
expect_eq "bytes_sent vs relay rx" "$(jnum "$l" bytes_sent)" "$rx"
expect_eq "bytes_received vs relay tx" "$(jnum "$l" bytes_received)" "$tx"

# A second session right after needs nothing.
start_relay --events "$WORK/relay.jsonl"
sed -i "s|^\[relay .*|[relay $RELAY_URL]|" "$WORK/c.ini"
"$NEGSYNC" -c "$WORK/c.ini" -d "$WORK/db" sync --once --json >"$WORK/run2.json" \
    2>"$WORK/run2.err" || fail "second sync failed: $(cat "$WORK/run2.json" "$WORK/run2.err")"
l=$(jline "$WORK/run2.json" "$RELAY_URL")
expect_eq "second need" "$(jnum "$l" need)" 0
expect_eq "second fetched" "$(jnum "$l" fetched)" 0
expect_eq "second have" "$(jnum "$l" have)" 200
echo "ok: converged by negentropy; second session needs 0"
