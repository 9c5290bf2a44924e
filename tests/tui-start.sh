#!/bin/sh
# The TUI's first screen: against relay A (NIP-77), B (answers NEG-OPEN with a
# NOTICE) and C (nothing listens), in a 100×30 window, the rows read
# A supported and synced by negentropy, B unsupported and synced by REQ after
# trying (NEG→REQ) with the relay's NOTICE as the reason, C unreachable; the
# key bar is on the last line and the hidden cursor sits on the selected row.
# `negsync` with no command opens it on a terminal; elsewhere it exits 2.
. "${top_srcdir:-.}/tests/sync-lib.sh"
. "$top_srcdir/tests/tui-lib.sh"

"$GEN" -n 400 -k 5 -s 3000 -S 13 >"$WORK/relay.jsonl" || fail "gen-events"
awk 'NR % 10 != 0' "$WORK/relay.jsonl" >"$WORK/local.jsonl"
"$NEGSYNC" -d "$WORK/t.db" import "$WORK/local.jsonl" >/dev/null 2>&1 || fail "import"

dead_port
start_relay --events "$WORK/relay.jsonl"
A=$RELAY_PORT
start_relay --events "$WORK/relay.jsonl" --no-nip77=notice
B=$RELAY_PORT
sync_config "$WORK/t.ini"
printf '[relay ws://127.0.0.1:%s]\n[relay ws://127.0.0.1:%s]\n[relay ws://127.0.0.1:%s]\n[filter notes]\nkinds = 1\n' \
    "$A" "$B" "$DEAD_PORT" >>"$WORK/t.ini"

tui_start 100 30 "-c '$WORK/t.ini' -d '$WORK/t.db'"
tui_wait "A: supported, negentropy" "^> ws://127\.0\.0\.1:$A +yes 0m +NEG +auto +ok 0m "
tui_wait "B: unsupported, REQ after trying" "^  ws://127\.0\.0\.1:$B +no 0m +NEG(→|>)REQ +auto +ok 0m "
tui_wait "C: unreachable" "^  ws://127\.0\.0\.1:$DEAD_PORT +unreach 0m +- +auto +(error|backoff)"
tui_wait "the header" "^ negsync · t\.db · 3 relays · 1 filter · "
tail -n 1 "$TUI_SCREEN" | grep -q '^ ↑↓/jk select  Enter detail  n neg auto/off/on  p re-probe  s/S sync  l log  ? help  q quit$' ||
    fail "the key bar is not on the last line: $(tail -n 1 "$TUI_SCREEN")"
expect_eq "cursor on the selected row" "$(tmx display -p -t tui '#{cursor_y}')" 2

# B's detail gives the relay's own refusal (whole in the Enter view), the log the decision.
tui_keys j
tui_wait "B's reason" "^ capability  unsupported, checked just now \(probe\): the relay answered NEG-OPEN"
tui_wait "the REQ decision in the log" "\[SYNC\] Using REQ for ws://127\.0\.0\.1:$B \(filter notes\)"
expect_eq "cursor follows the selection" "$(tmx display -p -t tui '#{cursor_y}')" 3
tui_keys Enter
tui_wait "B's whole reason" "(NOTICE \"ERROR: bad msg: negentropy|^ +bad msg: negentropy|^ +negentropy) disabled\"( ·|$)"
tui_wait "REQ because" "^ +REQ because: "
tui_keys Escape
tui_wait "back on the list" "^> ws://127\.0\.0\.1:$B "
tui_keys j
tui_wait "C's reason" "^ capability  unreachable, checked "

tui_keys q
tui_wait_exit 10
expect_eq "exit status" "$TUI_STATUS" 0
# Not on a terminal: no TUI, the usage and a pointer to `negsync sync`, exit 2.
"$NEGSYNC" -c "$WORK/t.ini" -d "$WORK/t.db" </dev/null >"$WORK/noterm.out" 2>"$WORK/noterm.err"
expect_eq "no command, no terminal: exit" "$?" 2
grep -q 'negsync sync' "$WORK/noterm.err" || fail "no pointer to negsync sync: $(cat "$WORK/noterm.err")"
"$NEGSYNC" -c "$WORK/t.ini" -d "$WORK/t.db" tui </dev/null >"$WORK/noterm.out" 2>"$WORK/noterm.err"
expect_eq "tui, no terminal: exit" "$?" 2
grep -q 'negsync sync' "$WORK/noterm.err" || fail "tui: no pointer to negsync sync: $(cat "$WORK/noterm.err")"

echo "ok: A supported/NEG, B unsupported/REQ with its NOTICE, C unreachable; key bar last"
