#!/bin/sh
# testrelay-interop.sh — tests/negsync-testrelay checked from the outside.
#
# One relay per scenario of tests/js/testrelay-interop.mjs, each with the flags
# that scenario is about, all preloaded with the same random signed events
# (tests/testrelay/tr-helper gen); the node script then drives them over
# websockets with nostr-tools: its Negentropy initiator against the relay's
# responder on random sets, REQ answers against filter_match, every fault
# mode, NIP-11, TLS, byte counts. Then the command line: clean shutdown on
# SIGTERM and SIGINT, --db across restarts, refused options and event files.
# TESTRELAY_SEED reproduces a run (the script prints it).
. "${top_srcdir:-.}/tests/lib.sh"
. "$top_srcdir/tests/relay-lib.sh"
need_node

helper="$top_builddir/tests/testrelay/tr-helper"
[ -x "$helper" ] || fail "no $helper: run make check"

# node 20 has a WebSocket client only behind a flag; node 22 has it by default.
node_ws=
node -e 'process.exit(typeof WebSocket === "function" ? 0 : 1)' 2>/dev/null ||
    node_ws=--experimental-websocket
node $node_ws -e 'process.exit(typeof WebSocket === "function" ? 0 : 1)' 2>/dev/null ||
    skip "this node has no WebSocket client"

: "${TESTRELAY_SEED:=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}"
export TESTRELAY_SEED
echo "TESTRELAY_SEED=$TESTRELAY_SEED"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/testrelay-interop.XXXXXX") || fail "mktemp"
trap 'relay_cleanup; rm -rf "$tmp"' EXIT

"$helper" gen 2000 "$TESTRELAY_SEED" 8 >"$tmp/events.jsonl" || fail "tr-helper gen"
"$helper" gen 25000 "$((TESTRELAY_SEED + 1))" 1 >"$tmp/big.jsonl" || fail "tr-helper gen"
TESTRELAY_BIG="$tmp/big.jsonl"
export TESTRELAY_BIG
printf '{"name": "from a file", "supported_nips": "77"}\n' >"$tmp/nip11.json"
relay_make_cert "$tmp"

set --
# relay NAME ARGS...: starts a relay preloaded with the events for scenario NAME.
relay() {
    _name=$1
    shift
    start_relay --events "$tmp/events.jsonl" "$@"
    relays="$relays $_name=$RELAY_URL"
    _var=$(echo "$_name" | tr - _)
    eval "RELAY_STATS_$_var=\$RELAY_STATS RELAY_PID_$_var=\$RELAY_PID"
    export "RELAY_STATS_$_var" "RELAY_PID_$_var"
}
relays=
relay neg
relay max-sync --max-sync-events 50
relay nip01 --req-limit 100
relay nip11 --nip11-nips 1,11,77,42 --software test-software --version 9.9.9
relay nip11-absent --nip11=absent
relay nip11-invalid --nip11=invalid
relay nip11-wrongtypes --nip11=wrongtypes
relay nip11-huge --nip11=huge
relay nip11-file --nip11-file "$tmp/nip11.json"
relay no77-notice --no-nip77=notice
relay no77-notice-text --no-nip77=notice --notice-text 'failed to parse envelope: unknown envelope label'
relay no77-unknown --no-nip77=unknown
relay no77-neg-err --no-nip77=neg-err
relay no77-closed --no-nip77=closed
relay no77-silent --no-nip77=silent
relay no77-disconnect --no-nip77=disconnect
relay welcome --welcome-notice 'Welcome! Be nice.'
relay neg-err-after --neg-err-after 1
relay drop-after --drop-after 3
relay delay --delay-ms 1500
relay garbage --garbage 1
relay bad-events --bad-events 1
relay deflate --deflate
relay usr1
relay big-notice --big-notice 1000000
relay stall --stall-after 1
stall_stats=$RELAY_STATS
relay tls --tls "$RELAY_CERT" "$RELAY_KEY"
start_relay --events "$TESTRELAY_BIG"
relays="$relays neg-big=$RELAY_URL"

# shellcheck disable=SC2086 # one NAME=URL argument per relay
node $node_ws "$top_srcdir/tests/js/testrelay-interop.mjs" "$helper" "$tmp/events.jsonl" $relays ||
    fail "testrelay-interop.mjs (TESTRELAY_SEED=$TESTRELAY_SEED)"

# Every relay stops cleanly on SIGTERM, with exit status 0.
for pid in $_relay_pids; do
    stop_relay "$pid" || fail "relay $pid exited $? on SIGTERM"
done

# --stall-after 1 read one message of the stalled connection, and the whole
# of the other one.
node -e '
const doc = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
const got = doc.connections.map((c) => c.rx_msgs).sort().join();
if (got !== "1,1") { console.error("messages read per connection: " + got); process.exit(1); }
' "$stall_stats" || fail "--stall-after 1 read more than one message"

# relay-lib's relay_stats_snapshot: a snapshot with nobody connected.
start_relay
relay_stats_snapshot
grep -q '"connections": \[\]' "$RELAY_STATS" || fail "snapshot: $(cat "$RELAY_STATS")"
stop_relay || fail "stop after a snapshot"

# SIGINT too.
start_relay
kill -INT "$RELAY_PID"
_relay_wait_exit "$RELAY_PID" 20 || fail "the relay ignored SIGINT"
wait "$RELAY_PID" || fail "the relay exited $? on SIGINT"
_relay_forget "$RELAY_PID"

# --db FILE: events outlive the relay, which comes back on the same port.
start_relay --db "$tmp/relay.db"
port=$RELAY_PORT
node $node_ws "$top_srcdir/tests/js/testrelay-interop.mjs" "$helper" "$tmp/events.jsonl" \
    "db-put=$RELAY_URL" >/dev/null || fail "db-put"
stop_relay || fail "stop with --db"
start_relay --db "$tmp/relay.db" --port "$port"
[ "$RELAY_PORT" = "$port" ] || fail "restarted on port $RELAY_PORT, not $port"
node $node_ws "$top_srcdir/tests/js/testrelay-interop.mjs" "$helper" "$tmp/events.jsonl" \
    "db-get=$RELAY_URL" >/dev/null || fail "db-get"
stop_relay || fail "stop with --db"

# Refusals: a usage error is exit 2, a bad event file names the line.
"$RELAY_BIN" --no-such-flag >/dev/null 2>&1
[ $? -eq 2 ] || fail "an unknown flag is not exit 2"
"$RELAY_BIN" --no-nip77=sometimes >/dev/null 2>&1
[ $? -eq 2 ] || fail "an unknown --no-nip77 mode is not exit 2"
"$RELAY_BIN" --garbage 1.5 >/dev/null 2>&1
[ $? -eq 2 ] || fail "--garbage 1.5 is not exit 2"
{ head -n 3 "$tmp/events.jsonl"; echo '{"id":"nope"}'; } >"$tmp/bad.jsonl"
"$RELAY_BIN" --port 0 --events "$tmp/bad.jsonl" >"$tmp/bad.out" 2>&1 &&
    fail "a bad --events file was accepted"
grep -q "bad.jsonl:4: " "$tmp/bad.out" || fail "no file:line for a bad event: $(cat "$tmp/bad.out")"

echo "testrelay-interop: ok"
