#!/bin/sh
# Help: ? and F1 open an overlay that lists every key; Esc closes it; Esc on
# the main screen does not quit.
. "${top_srcdir:-.}/tests/sync-lib.sh"
. "$top_srcdir/tests/tui-lib.sh"

start_relay
sync_config "$WORK/t.ini"
printf '[relay ws://127.0.0.1:%s]\n[filter notes]\nkinds = 1\n' "$RELAY_PORT" >>"$WORK/t.ini"

help_lists_every_key() {
    tui_wait "$1: the help" "┌─ keys ─"
    for k in '↑↓ k j +select' 'PgUp PgDn +a page' 'g G Home End +first or last' \
        'Enter +detail' 'n +negentropy auto → off → on' 'p +re-probe' 's +sync the selected' \
        'S +sync every' 'l +the log' '\? F1 +this help' 'Esc +close an overlay' \
        'Ctrl-L +repaint' 'q Ctrl-C +quit'; do
        grep -Eq "│ $k" "$TUI_SCREEN" || fail "$1: the help does not list '$k'"
    done
}

tui_start 100 30 "-c '$WORK/t.ini' -d '$WORK/t.db'"
tui_wait "the main screen" "^ ↑↓/jk select  Enter detail"
tui_keys '?'
help_lists_every_key "?"
tui_keys Escape
tui_gone "Esc closes the help" "┌─ keys ─"
tui_keys Escape
tui_keys Escape
tui_keys F1
help_lists_every_key "F1 (and Esc on the main screen did not quit)"
tui_keys '?'
tui_gone "? closes the help" "┌─ keys ─"
tui_dead && fail "negsync exited"
tui_keys q
tui_wait_exit 10
expect_eq "exit" "$TUI_STATUS" 0
echo "ok: ? and F1 list every key, Esc closes, Esc does not quit"
