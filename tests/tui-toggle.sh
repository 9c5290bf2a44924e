#!/bin/sh
# The n key: on relay A (NIP-77), n turns negentropy off at once (NEG shows
# "off*", a saved override), s syncs it by REQ and the log says why; the
# setting survives a restart of the TUI and applies to headless
# `negsync sync --once` too; n twice more (on, then auto) and s bring
# negentropy back.
. "${top_srcdir:-.}/tests/sync-lib.sh"
. "$top_srcdir/tests/tui-lib.sh"

"$GEN" -n 300 -k 5 -s 3000 -S 17 >"$WORK/relay.jsonl" || fail "gen-events"
start_relay --events "$WORK/relay.jsonl"
A=ws://127.0.0.1:$RELAY_PORT
RA="ws://127\.0\.0\.1:$RELAY_PORT"
sync_config "$WORK/t.ini"
printf '[relay %s]\n[filter notes]\nkinds = 1\n' "$A" >>"$WORK/t.ini"
args="-c '$WORK/t.ini' -d '$WORK/t.db'"

tui_start 100 30 "$args"
tui_wait "A synced by negentropy" "^> $RA +yes 0m +NEG +auto +ok 0m "
tui_keys n
tui_wait "n: off, marked saved" "^> $RA +yes 0m +NEG +off\* "
tui_wait "n is logged" "\[TUI\] negentropy = off for $RA"
tui_keys s
tui_wait "s: the next run is REQ, and the log says why" \
    "\[SYNC\] Using REQ for $RA \(filter notes\): .*off"
tui_wait "the row reads REQ" "^> $RA +yes 0m +REQ +off\* +ok 0m "
tui_keys q
tui_wait_exit 10
expect_eq "first run: exit" "$TUI_STATUS" 0

# A restart keeps it.
tui_start 100 30 "$args"
tui_wait "still off after a restart" "^> $RA +yes [0-9]+m +(REQ|-) +off\* "
tui_wait "and synced by REQ" "\[SYNC\] Using REQ for $RA \(filter notes\)"
tui_keys q
tui_wait_exit 10
expect_eq "second run: exit" "$TUI_STATUS" 0

# So does the headless sync.
"$NEGSYNC" -c "$WORK/t.ini" -d "$WORK/t.db" sync --once --json --relay "$A" \
    >"$WORK/sync.json" 2>"$WORK/sync.err" || fail "sync --once: $(cat "$WORK/sync.err")"
expect_eq "headless mode" "$(jstr "$(jline "$WORK/sync.json" "$A")" mode)" req

# Back to auto: off -> on -> auto, and negentropy again.
tui_start 100 30 "$args"
tui_wait "off once more" "^> $RA +yes [0-9]+m +[^ ]+ +off\* "
tui_keys n
tui_wait "n: on" "^> $RA +yes [0-9]+m +[^ ]+ +on\* "
tui_keys n
tui_wait "n: auto, no longer an override" "^> $RA +yes [0-9]+m +[^ ]+ +auto  "
tui_keys s
tui_wait "negentropy again" "\[SYNC\] Using negentropy for $RA \(filter notes\)"
tui_wait "the row reads NEG" "^> $RA +yes [0-9]+m +NEG +auto +ok 0m "
tui_keys q
tui_wait_exit 10
expect_eq "third run: exit" "$TUI_STATUS" 0
echo "ok: n turns negentropy off (saved, REQ, survives restarts and applies headless) and back"
