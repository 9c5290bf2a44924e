#!/bin/sh
# testrelay-auth.sh — the test relay's NIP-42 mode, checked from the outside
# with nostr-tools (tests/js/testrelay-auth.mjs): --auth 4,1059 with one
# allowed pubkey refuses DMs with AUTH + auth-required: until the owner
# authenticates, refuses bad AUTH events (challenge, relay, kind, date,
# signature), answers a stranger restricted:, and counts all of it in its
# --stats-file.
. "${top_srcdir:-.}/tests/lib.sh"
. "$top_srcdir/tests/relay-lib.sh"
need_node

node_ws=
node -e 'process.exit(typeof WebSocket === "function" ? 0 : 1)' 2>/dev/null ||
    node_ws=--experimental-websocket
node $node_ws -e 'process.exit(typeof WebSocket === "function" ? 0 : 1)' 2>/dev/null ||
    skip "this node has no WebSocket client"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/testrelay-auth.XXXXXX") || fail "mktemp"
trap 'relay_cleanup; rm -rf "$tmp"' EXIT
js="$top_srcdir/tests/js/testrelay-auth.mjs"

node "$js" gen "$tmp" || fail "nostr-tools could not make the events"
owner=$(sed 's/.*"ownerPub":"\([0-9a-f]*\)".*/\1/' "$tmp/keys.json")
[ ${#owner} = 64 ] || fail "no owner pubkey in keys.json"

start_relay --auth 4,1059 --auth-pubkey "$owner" --events "$tmp/events.jsonl"
node $node_ws "$js" run "$RELAY_URL" "$tmp" || fail "the relay's NIP-42 mode is wrong"
stop_relay || fail "the relay did not stop cleanly"

# Seven AUTH events over two connections: five bad ones and the owner's on
# the first (auth-required: for two REQs, two NEG-OPENs and an EVENT), the
# stranger's on the second (restricted: for a REQ and a NEG-OPEN).
auth=$(tr -d ' \n' <"$RELAY_STATS" | sed 's/.*"total":{//' | grep -o '"auth":{[^}]*}')
[ "$auth" = '"auth":{"ok":2,"failed":5,"auth_required":5,"restricted":2}' ] ||
    fail "stats: $auth"
rx_auth=$(tr -d ' \n' <"$RELAY_STATS" | sed 's/.*"total":{//' | grep -o '"rx":{[^}]*}' | grep -o '"AUTH":[0-9]*')
[ "$rx_auth" = '"AUTH":7' ] || fail "stats: AUTH messages received: $rx_auth"
echo "PASS: the test relay's --auth mode"
