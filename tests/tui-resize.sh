#!/bin/sh
# Resizing: 100×30 → 80×24 (sent/received dropped, saved kept) → 50×10 ("too
# small", and keys still work there: l opens the log unseen) → 100×30 (the
# log overlay shows, Esc closes it), the program alive throughout; at 50×10
# again, q quits with status 0.
. "${top_srcdir:-.}/tests/sync-lib.sh"
. "$top_srcdir/tests/tui-lib.sh"

"$GEN" -n 200 -k 5 -s 3000 -S 23 >"$WORK/relay.jsonl" || fail "gen-events"
start_relay --events "$WORK/relay.jsonl"
RA="ws://127\.0\.0\.1:$RELAY_PORT"
sync_config "$WORK/t.ini"
printf '[relay ws://127.0.0.1:%s]\n[filter notes]\nkinds = 1\n' "$RELAY_PORT" >>"$WORK/t.ini"

resize() {
    tmx resize-window -t tui -x "$1" -y "$2" || fail "tmux resize-window $1 $2"
}

tui_start 100 30 "-c '$WORK/t.ini' -d '$WORK/t.db'"
tui_wait "100x30" "^  RELAY +NIP-77 +MODE +NEG +PHASE +RND +FETCHED +SENT +RECV SAVED$"
tui_wait "synced" "^> $RA +yes 0m +NEG +auto +ok 0m "

resize 80 24
tui_wait "80x24 drops sent and received" "^  RELAY +NIP-77 +MODE +NEG +PHASE +RND +FETCHED SAVED$"
tui_wait "80x24 key bar" "^ jk select  Enter detail  n neg  p probe  s/S sync  l log  \? help  q quit$"
[ "$(wc -L <"$TUI_SCREEN")" -le 80 ] || fail "80x24: a line is wider than 80"

resize 50 10
tui_wait "too small" "terminal 50x10 too small, need 60x12 . q quits"
tui_keys l

resize 100 30
tui_wait "back to 100x30, with the log opened while small" "^─ log, [0-9]+ lines? ─"
tui_keys Escape
tui_wait "the list again" "^  RELAY +NIP-77 +MODE +NEG +PHASE +RND +FETCHED +SENT +RECV SAVED$"
tui_wait "the key bar" "^ ↑↓/jk select  Enter detail"

resize 50 10
tui_wait "too small again" "terminal 50x10 too small"
tui_keys q
tui_wait_exit 10
expect_eq "exit" "$TUI_STATUS" 0
echo "ok: 100x30, 80x24, 50x10 (too small, keys work), 100x30; q quits"
