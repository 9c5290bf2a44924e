#!/bin/sh
# event-vectors.sh — negsync and nostr-tools agree on events, both ways:
# negsync computes the ids of, accepts the signatures of, and re-serializes
# byte for byte the events nostr-tools signs (hard content included);
# nostr-tools accepts the events negsync signs; and both sides see lone
# surrogates, which JavaScript can produce and negsync refuses, the same way
# in every run.
. "${top_srcdir:-.}/tests/lib.sh"
need_node

bin="$top_builddir/tests/test-event"
js="$top_srcdir/tests/js/event-vectors.mjs"
[ -x "$bin" ] || fail "$bin is not built (make check builds it)"

tmp=$(mktemp -d) || fail "mktemp"
trap 'rm -rf "$tmp"' EXIT

node "$js" gen "$tmp/js-ok.jsonl" "$tmp/js-reject.jsonl" || fail "nostr-tools could not generate vectors"
"$bin" --vectors "$tmp/js-ok.jsonl" || fail "negsync disagrees with nostr-tools on its events"
"$bin" --reject "$tmp/js-reject.jsonl" || fail "negsync accepted an event with a lone surrogate"
"$bin" --sign-vectors >"$tmp/c.jsonl" || fail "negsync could not sign vectors"
node "$js" verify "$tmp/c.jsonl" || fail "nostr-tools refuses events negsync signed"
echo "PASS: event vectors agree both ways"
