#!/bin/sh
# Quitting while a slow job runs (the relay holds every reply 1.5 s): q,
# SIGINT and SIGTERM each end negsync within 5 s with status 0, the terminal
# back from the alternate screen and the session's summary printed; killing
# the tmux session (the terminal hangs up) ends it within 5 s too. Nothing
# is left running.
. "${top_srcdir:-.}/tests/sync-lib.sh"
. "$top_srcdir/tests/tui-lib.sh"

"$GEN" -n 300 -k 5 -s 3000 -S 29 >"$WORK/relay.jsonl" || fail "gen-events"
start_relay --events "$WORK/relay.jsonl" --delay-ms 1500
RA="ws://127\.0\.0\.1:$RELAY_PORT"
sync_config "$WORK/t.ini"
printf '[relay ws://127.0.0.1:%s]\n[filter notes]\nkinds = 1\n' "$RELAY_PORT" >>"$WORK/t.ini"

start_slow() {
    tui_start 100 30 "-c '$WORK/t.ini' -d '$WORK/t.db'"
    tui_wait "$1: a job running" "^> $RA +[^ ]+( [0-9]+m)? +[^ ]+ +auto +(connecting|probing|reconcile|fetching|REQ page)"
    expect_eq "$1: alternate screen on" "$(tmx display -p -t tui '#{alternate_on}')" 1
    pid=$(tui_pid)
    [ -n "$pid" ] || fail "$1: no negsync process"
}

ended() {
    t0=$(date +%s)
    tui_wait_exit 5
    expect_eq "$1: exit" "$TUI_STATUS" 0
    expect_eq "$1: alternate screen off" "$(tmx display -p -t tui '#{alternate_on}')" 0
    tui_capture "-S -200" # the summary may have scrolled
    grep -Eq "^RELAY +MODE +ROUNDS|^negsync: no sync finished while the TUI ran" "$TUI_SCREEN" ||
        fail "$1: no summary"
    kill -0 "$pid" 2>/dev/null && fail "$1: negsync $pid still there"
    return 0
}

start_slow q
tui_keys q
ended q

start_slow SIGINT
kill -INT "$pid"
ended SIGINT

start_slow SIGTERM
kill -TERM "$pid"
ended SIGTERM

start_slow SIGHUP
tmx kill-session -t tui
deadline=$(($(date +%s) + 5))
while kill -0 "$pid" 2>/dev/null; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "SIGHUP: negsync $pid still running 5 s after its terminal went away"
    sleep 0.05
done
echo "ok: q, SIGINT, SIGTERM and a hang-up end negsync within 5 s, terminal restored"
