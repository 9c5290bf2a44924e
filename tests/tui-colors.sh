#!/bin/sh
# Colors and characters: by default the screen has color (capture-pane -e
# shows color SGR codes); with NO_COLOR=1, --no-color or TERM=vt100 there is
# none, and the screen still reads (the selected row is reverse video); with
# LANG=C (or --ascii) nothing outside printable ASCII is drawn.
. "${top_srcdir:-.}/tests/sync-lib.sh"
. "$top_srcdir/tests/tui-lib.sh"

"$GEN" -n 100 -k 5 -s 3000 -S 31 >"$WORK/relay.jsonl" || fail "gen-events"
start_relay --events "$WORK/relay.jsonl"
PA=$RELAY_PORT
RA="ws://127\.0\.0\.1:$PA"
start_relay --events "$WORK/relay.jsonl" --no-nip77=notice
sync_config "$WORK/t.ini"
printf '[relay ws://127.0.0.1:%s]\n[relay %s]\n[filter notes]\nkinds = 1\n' "$PA" "$RELAY_URL" \
    >>"$WORK/t.ini"
args="-c '$WORK/t.ini' -d '$WORK/t.db'"
esc=$(printf '\033')
# An SGR with a foreground or background color (not 39/49, the defaults).
color_re="$esc\[([0-9]*;)*(3[0-8]|4[0-8]|9[0-7]|10[0-7])(;[0-9]+)*m"

# run NAME ARGS: the TUI until A has synced, its screen with escapes in $WORK/NAME.e.
run() {
    tui_start 100 30 "$2"
    tui_wait "$1: A synced" "^> $RA +yes 0m +NEG"
    tui_capture -e
    cp "$TUI_SCREEN" "$WORK/$1.e"
    tui_capture
    cp "$TUI_SCREEN" "$WORK/$1.txt"
    tui_keys q
    tui_wait_exit 10
    expect_eq "$1: exit" "$TUI_STATUS" 0
}

run default "$args"
grep -Eq "$color_re" "$WORK/default.e" || fail "default: no color codes on the screen"

for case in no_color no_color_flag vt100; do
    extra=
    case $case in
    no_color) TUI_ENV="NO_COLOR=1" ;;
    no_color_flag) extra=" tui --no-color" ;;
    vt100) TUI_ENV="TERM=vt100" ;;
    esac
    run "$case" "$args$extra"
    TUI_ENV=
    ! grep -Eq "$color_re" "$WORK/$case.e" || fail "$case: color codes on the screen"
    grep -q "${esc}\[[0-9;]*7m" "$WORK/$case.e" ||
        grep -q "${esc}\[[0-9;]*7;" "$WORK/$case.e" || fail "$case: no reverse video for the selection"
done

utf8=$TUI_LANG
TUI_LANG=C
run lang_c "$args"
TUI_LANG=$utf8
! LC_ALL=C grep -q '[^ -~]' "$WORK/lang_c.txt" || fail "LANG=C: characters outside printable ASCII"
grep -q '^- log -' "$WORK/lang_c.txt" || fail "LANG=C: no ASCII rule"
run ascii "$args tui --ascii"
! LC_ALL=C grep -q '[^ -~]' "$WORK/ascii.txt" || fail "--ascii: characters outside printable ASCII"
echo "ok: colors by default; none with NO_COLOR, --no-color, TERM=vt100; ASCII with LANG=C, --ascii"
