#!/bin/sh
# The p key: relay B has no NIP-77 and its verdict comes from the capability
# cache (a `negsync probe` before the TUI starts). p shows "probing", then a
# fresh verdict from a probe of its own ("checked just now (probe)"), and the
# relay counts exactly one more NEG-OPEN.
. "${top_srcdir:-.}/tests/sync-lib.sh"
. "$top_srcdir/tests/tui-lib.sh"

# NEG-OPENs the relay has received so far.
neg_opens() {
    relay_stats_snapshot
    sed -n '/"total"/,$p' "$RELAY_STATS" | sed -n '/"rx": {/,/}/p' |
        sed -n 's/.*"NEG-OPEN": *\([0-9]*\).*/\1/p'
}

"$GEN" -n 200 -k 5 -s 3000 -S 19 >"$WORK/relay.jsonl" || fail "gen-events"
# Every reply held 500 ms, so that the probe is seen running.
start_relay --events "$WORK/relay.jsonl" --no-nip77=notice --delay-ms 500
B=ws://127.0.0.1:$RELAY_PORT
RB="ws://127\.0\.0\.1:$RELAY_PORT"
sync_config "$WORK/t.ini"
printf '[relay %s]\n[filter notes]\nkinds = 1\n' "$B" >>"$WORK/t.ini"
"$NEGSYNC" -c "$WORK/t.ini" -d "$WORK/t.db" probe "$B" >"$WORK/probe.out" 2>&1 ||
    fail "probe: $(cat "$WORK/probe.out")"

tui_start 100 30 "-c '$WORK/t.ini' -d '$WORK/t.db'"
tui_wait "B synced by REQ" "^> $RB +no [0-9]+m +NEG(→|>)REQ +auto +ok 0m "
tui_wait "the verdict came from the cache" "^ capability  unsupported, checked .* \(cache\)"
before=$(neg_opens)
[ -n "$before" ] || fail "no NEG-OPEN count in $(cat "$RELAY_STATS")"

tui_keys p
tui_wait "probing" "^> $RB +probing "
tui_wait "a fresh verdict, age 0" "^ capability  unsupported, checked just now \(probe\)"
tui_wait "the row again" "^> $RB +no 0m +NEG(→|>)REQ +auto +ok 0m "
after=$(neg_opens)
expect_eq "NEG-OPENs the probe sent" "$((after - before))" 1

tui_keys q
tui_wait_exit 10
expect_eq "exit" "$TUI_STATUS" 0
echo "ok: p re-probes past the cache: probing, then a fresh verdict, one NEG-OPEN"
