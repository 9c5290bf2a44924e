#!/bin/sh
# A relay that caps its negentropy set without a word (--neg-cap, as n0str
# does: NEG-OPEN is answered over its first max_limit matches, oldest first,
# instead of "blocked:"). The relay holds 2500 events, the local side 2250 of
# them; the relay's NIP-11 max_limit is 1000. One `sync --once` with
# direction = both must notice that the relay's side came out at exactly its
# max_limit, split the window until each is below it, store all 2500, upload
# nothing (the relay has everything we have), and say that it split.
. "${top_srcdir:-.}/tests/sync-lib.sh"

"$GEN" -n 2500 -k 5 -t 1700000000 -s 25000 -S 41 >"$WORK/relay.jsonl" || fail "gen-events"
awk 'NR % 10 != 0' "$WORK/relay.jsonl" >"$WORK/local.jsonl"
"$NEGSYNC" -d "$WORK/a.db" import "$WORK/local.jsonl" >/dev/null || fail "import"
expect_eq "local before" "$(ids_of_db "$WORK/a.db" | wc -l)" 2250

start_relay --events "$WORK/relay.jsonl" --req-limit 1000 --neg-cap 1000
sync_config "$WORK/a.ini" direction=both
printf '[relay %s]\n[filter all]\nkinds = 1\n' "$RELAY_URL" >>"$WORK/a.ini"
"$NEGSYNC" -c "$WORK/a.ini" -d "$WORK/a.db" sync --once --json >"$WORK/a.json" 2>"$WORK/a.err" ||
    fail "sync failed: $(cat "$WORK/a.json" "$WORK/a.err")"
l=$(jline "$WORK/a.json" "$RELAY_URL")
expect_eq "mode" "$(jstr "$l" mode)" negentropy
expect_eq "result" "$(jstr "$l" result)" ok
ids_of_file "$WORK/relay.jsonl" >"$WORK/want"
ids_of_db "$WORK/a.db" >"$WORK/got"
cmp -s "$WORK/want" "$WORK/got" || fail "local set differs: $(wc -l <"$WORK/got") of 2500; $l"
expect_eq "stored" "$(jnum "$l" stored)" 250
expect_eq "uploaded" "$(jnum "$l" uploaded)" 0
expect_eq "upload_rejected" "$(jnum "$l" upload_rejected)" 0
expect_eq "have" "$(jnum "$l" have)" 0
expect_eq "neg_cap" "$(jnum "$l" neg_cap)" 1000
[ "$(jnum "$l" splits)" -ge 1 ] || fail "no split reported: $l"
grep -q "negentropy set looks capped" "$WORK/a.err" || fail "the log does not say it split"
# The relay was sent no EVENT.
relay_stats_snapshot
sed -n '/"total"/,$p' "$RELAY_STATS" | sed -n '/"rx": {/,/}/p' >"$WORK/rx"
grep -q '"NEG-OPEN"' "$WORK/rx" || fail "no relay stats: $(cat "$RELAY_STATS")"
! grep -q '"EVENT"' "$WORK/rx" || fail "the relay was sent events: $(cat "$WORK/rx")"
stop_relay
echo "ok: a capped negentropy set was split; 2500 of 2500 in one run, nothing uploaded"
