#!/bin/sh
# REQ paging: a relay without NIP-77 that returns at most 100 events per REQ.
#  - 5000 events spread over 5 seconds (about 1000 on each second) by 40
#    authors, synced with a filter naming the authors: every page after the
#    first ends at the oldest second seen (inclusive), and a second that
#    alone fills the cap is asked again per half of the authors, so nothing
#    is skipped and nothing loops;
#  - 5000 events over 100 seconds with no author list: ~50 on each second,
#    pages straddle seconds;
# then the cursor: a second run asks only from the newest stored second on.
. "${top_srcdir:-.}/tests/sync-lib.sh"

"$GEN" -n 5000 -k 40 -t 1700000000 -s 5 -S 11 >"$WORK/crowded.jsonl" || fail "gen-events"
authors=$("$GEN" -p -k 40 -S 11 | paste -sd, -)

start_relay --events "$WORK/crowded.jsonl" --no-nip77=unknown --req-limit 100
sync_config "$WORK/a.ini"
printf '[relay %s]\n[filter follows]\nkinds = 1\nauthors = %s\n' "$RELAY_URL" "$authors" \
    >>"$WORK/a.ini"
"$NEGSYNC" -c "$WORK/a.ini" -d "$WORK/a.db" sync --once --json >"$WORK/a.json" \
    2>"$WORK/a.err" || fail "crowded sync failed: $(cat "$WORK/a.json" "$WORK/a.err")"
l=$(jline "$WORK/a.json" "$RELAY_URL")
expect_eq "crowded: mode" "$(jstr "$l" mode)" req
ids_of_file "$WORK/crowded.jsonl" >"$WORK/want"
ids_of_db "$WORK/a.db" >"$WORK/got"
expect_eq "crowded: stored" "$(wc -l <"$WORK/got")" 5000
cmp -s "$WORK/want" "$WORK/got" || fail "crowded: local set differs"
stop_relay

"$GEN" -n 5000 -k 7 -t 1700000000 -s 100 -S 12 >"$WORK/spread.jsonl" || fail "gen-events"
start_relay --events "$WORK/spread.jsonl" --no-nip77=notice --req-limit 100
sync_config "$WORK/b.ini"
printf '[relay %s]\n[filter all]\nkinds = 1\n' "$RELAY_URL" >>"$WORK/b.ini"
"$NEGSYNC" -c "$WORK/b.ini" -d "$WORK/b.db" sync --once --json >"$WORK/b.json" \
    2>"$WORK/b.err" || fail "spread sync failed: $(cat "$WORK/b.json" "$WORK/b.err")"
l=$(jline "$WORK/b.json" "$RELAY_URL")
ids_of_file "$WORK/spread.jsonl" >"$WORK/want"
ids_of_db "$WORK/b.db" >"$WORK/got"
cmp -s "$WORK/want" "$WORK/got" || fail "spread: local set differs ($(wc -l <"$WORK/got") stored)"
[ "$(jnum "$l" rounds)" -ge 50 ] || fail "spread: 5000 events at 100 a page in $(jnum "$l" rounds) pages"

# The cursor: the next run starts at the newest stored second, so it sees
# only the events on that second again (duplicates), nothing older.
"$NEGSYNC" -c "$WORK/b.ini" -d "$WORK/b.db" sync --once --json >"$WORK/b2.json" \
    2>"$WORK/b2.err" || fail "second spread sync failed: $(cat "$WORK/b2.json" "$WORK/b2.err")"
l=$(jline "$WORK/b2.json" "$RELAY_URL")
newest=$(grep -c '"created_at":1700000099,' "$WORK/spread.jsonl")
expect_eq "cursor: fetched again" "$(jnum "$l" fetched)" "$newest"
expect_eq "cursor: stored again" "$(jnum "$l" stored)" 0
echo "ok: REQ paging under a 100-event cap lost nothing; the cursor holds"
