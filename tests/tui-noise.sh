#!/bin/sh
# Noise: relays that greet with a NOTICE, spoil replies (--garbage) and serve
# forged events (--bad-events) for 10 s: on every poll of the screen the
# header is the first line and the key bar the last, nothing else is drawn
# over them; the errors land in the log pane, and nothing negsync writes to
# stderr reaches the screen.
. "${top_srcdir:-.}/tests/sync-lib.sh"
. "$top_srcdir/tests/tui-lib.sh"

"$GEN" -n 2000 -k 5 -s 3000 -S 37 >"$WORK/relay.jsonl" || fail "gen-events"
start_relay --events "$WORK/relay.jsonl" --welcome-notice "hello from a noisy relay"
P1=$RELAY_PORT
start_relay --events "$WORK/relay.jsonl" --garbage 0.3 --seed 5
P2=$RELAY_PORT
start_relay --events "$WORK/relay.jsonl" --no-nip77=notice --bad-events 0.2
P3=$RELAY_PORT
sync_config "$WORK/t.ini" interval=2
printf '[relay ws://127.0.0.1:%s]\n[relay ws://127.0.0.1:%s]\n[relay ws://127.0.0.1:%s]\n[filter notes]\nkinds = 1\n' \
    "$P1" "$P2" "$P3" >>"$WORK/t.ini"

# -v: the engine's chatter too, and all of it must stay in the log pane.
tui_start 100 30 "-v -c '$WORK/t.ini' -d '$WORK/t.db'"
tui_wait "started" "^ negsync · t\.db · 3 relays"
end=$(($(date +%s) + 10))
polls=0
while [ "$(date +%s)" -lt "$end" ]; do
    tui_capture
    polls=$((polls + 1))
    head -n 1 "$TUI_SCREEN" | grep -q '^ negsync · t\.db · 3 relays · 1 filter · ' ||
        fail "poll $polls: the header is not intact: $(head -n 1 "$TUI_SCREEN")"
    tail -n 1 "$TUI_SCREEN" | grep -q '^ ↑↓/jk select  Enter detail  n neg auto/off/on  p re-probe  s/S sync  l log  ? help  q quit$' ||
        fail "poll $polls: the key bar is not intact: $(tail -n 1 "$TUI_SCREEN")"
    sed -n 2p "$TUI_SCREEN" | grep -q '^  RELAY ' || fail "poll $polls: the column titles are gone"
    [ "$(wc -l <"$TUI_SCREEN")" -eq 30 ] || fail "poll $polls: not 30 lines"
    tui_dead && fail "negsync exited"
    sleep 0.2
done
tui_keys l
tui_wait "errors in the log" "(error|invalid|bad|garbage|refus|NOTICE)"
tui_keys q
tui_wait_exit 10
expect_eq "exit" "$TUI_STATUS" 0
echo "ok: $polls polls over 10 s of noise, header and key bar intact; errors in the log pane"
