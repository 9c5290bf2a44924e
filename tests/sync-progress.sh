#!/bin/sh
# Progress on a terminal: run through script(1), stderr is a pty, and the
# sync draws "<relay> <filter>: <phase>, round R, fetched F/T" in place
# (carriage return, erase line), with the number of missing events known so
# far, and clears it before the job's result line.
# Not on a terminal (every other test), stderr has no progress at all.
. "${top_srcdir:-.}/tests/sync-lib.sh"

command -v script >/dev/null || skip "no script(1) to give the sync a terminal"

"$GEN" -n 3000 -k 10 -s 30000 -S 91 >"$WORK/relay.jsonl" || fail "gen-events"
awk 'NR % 2 == 0' "$WORK/relay.jsonl" >"$WORK/half.jsonl"
"$NEGSYNC" -q -d "$WORK/db" import "$WORK/half.jsonl" >/dev/null || fail "import"
start_relay --events "$WORK/relay.jsonl" --delay-ms 150
sync_config "$WORK/c.ini" frame_size_limit=4096 fetch_batch=100
printf '[relay %s]\n[filter notes]\nkinds = 1\n' "$RELAY_URL" >>"$WORK/c.ini"
cp "$WORK/db" "$WORK/db2"

script -q -e -c "'$NEGSYNC' -c '$WORK/c.ini' -d '$WORK/db' sync --once" "$WORK/tty.out" \
    >/dev/null 2>&1 </dev/null || fail "sync on a terminal failed: $(cat "$WORK/tty.out")"
esc=$(printf '\033')
grep -q "$esc\[K$RELAY_URL notes: reconciling, round [0-9]*, fetched [0-9]*" "$WORK/tty.out" ||
    fail "no progress line while reconciling: $(tr '\r\033' '|#' <"$WORK/tty.out")"
grep -q "$esc\[K$RELAY_URL notes: [a-z ]*, round [0-9]*, fetched [0-9]*/[1-9][0-9]*" "$WORK/tty.out" ||
    fail "no progress with the known total: $(tr '\r\033' '|#' <"$WORK/tty.out")"
# The result line starts on a clean line: the progress was erased first.
grep -q "$esc\[K$RELAY_URL notes: negentropy, " "$WORK/tty.out" ||
    fail "the result line does not follow an erased progress line"

# Without a terminal: no progress.
"$NEGSYNC" -c "$WORK/c.ini" -d "$WORK/db2" sync --once >"$WORK/out" 2>"$WORK/err" ||
    fail "sync failed"
grep -q "$esc" "$WORK/err" "$WORK/out" && fail "progress drawn without a terminal"
echo "sync-progress: drawn on a terminal, absent otherwise"
