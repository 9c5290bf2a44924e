#!/bin/sh
# probe-quirks.sh — `negsync probe` against relays with quirks a user meets
# on their own machine or network:
#   - a relay that loses the first message of every new connection
#     (nostream with its default rate limiter attaches its message handler
#     only after an async Redis check; the test relay's
#     --ignore-first-message): the NEG-OPEN goes again on a fresh
#     connection, the relay is "supported", and that is what is cached;
#   - the same relay, silent to NEG-OPEN besides: classified within
#     probe_timeout, the retry included, and cached as unsupported for an
#     hour only, not for recheck_days;
#   - a relay that sends ["AUTH", challenge] on every connection (n0str; the
#     test relay's --auth-challenge): "auth_challenge": true in the JSON, the
#     challenge noted and not answered;
#   - a khatru-based relay, which refuses a NEG-OPEN whose filter has
#     "limit":0 with NEG-ERR "invalid limit 0" (the test relay's
#     --neg-refuse-limit0): the probe must not send one, or every khatru
#     relay with NIP-77 on would be cached as refusing it.
. "${top_srcdir:-.}/tests/lib.sh"
. "$top_srcdir/tests/relay-lib.sh"

negsync="$top_builddir/src/negsync"
field="$top_builddir/tests/test-caps"
[ -x "$negsync" ] || fail "no $negsync: run make first"
[ -x "$field" ] || fail "no $field: run make check"
command -v timeout >/dev/null || skip "no timeout(1)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/probe-quirks.XXXXXX") || fail "mktemp"
trap 'relay_cleanup; rm -rf "$tmp"' EXIT INT TERM
printf '[sync]\nprobe_timeout = 3\n' >"$tmp/c.ini"
printf '[sync]\nprobe_timeout = 2\n' >"$tmp/short.ini"

expect_eq() {
    [ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"
}

# probe DB CONFIG ARGS...: one JSON line in $out, exit status in $rc.
probe() {
    _db=$1
    _cfg=$2
    shift 2
    timeout 60 "$negsync" -c "$_cfg" -d "$_db" probe --json "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    [ $rc -ne 124 ] || fail "probe $* did not finish within 60 s"
    out=$(cat "$tmp/out")
}

get() {
    printf '%s\n' "$out" | "$field" json-field "$1" || fail "no $1 in: $out"
}

dropped() {
    grep -c "ignored a message" "$RELAY_LOG"
}

# --- loses the first message of a connection ------------------------------------
start_relay --ignore-first-message
probe "$tmp/lossy.db" "$tmp/c.ini" --force "$RELAY_URL"
expect_eq "lossy: exit" "$rc" 0
expect_eq "lossy: class" "$(get negentropy)" supported
expect_eq "lossy: reason" "$(get reason)" NEG-MSG
expect_eq "lossy: first message lost" "$(get first_message_lost)" true
expect_eq "lossy: the relay dropped" "$(dropped)" 1
# The latency is the answer's to the NEG-OPEN sent again (loopback: quick),
# not the wait for the one that was lost (a second at least).
[ "$(get latency_ms)" -lt 1000 ] || fail "lossy: latency $(get latency_ms) ms"
# And that is what the cache keeps.
probe "$tmp/lossy.db" "$tmp/c.ini" "$RELAY_URL"
expect_eq "lossy, again: cached" "$(get cached)" true
expect_eq "lossy, again: class" "$(get negentropy)" supported
expect_eq "lossy, again: lost (not cached)" "$(get first_message_lost)" null
# The table says what happened.
timeout 60 "$negsync" -c "$tmp/c.ini" -d "$tmp/lossy-table.db" probe "$RELAY_URL" \
    >"$tmp/table" || fail "lossy: table probe failed"
grep -q "supported .*NEG-MSG; the first NEG-OPEN was lost, sent again\$" "$tmp/table" ||
    fail "lossy: table: $(cat "$tmp/table")"
stop_relay

# --- loses the first message, and silent to NEG-OPEN besides -----------------------
start_relay --ignore-first-message --no-nip77=silent
t0=$(date +%s)
probe "$tmp/silent.db" "$tmp/short.ini" --force "$RELAY_URL"
t1=$(date +%s)
expect_eq "silent: exit" "$rc" 0
expect_eq "silent: class" "$(get negentropy)" unsupported
expect_eq "silent: reason" "$(get reason)" "no reply to NEG-OPEN within 2 s"
expect_eq "silent: first message lost" "$(get first_message_lost)" true
lat=$(get latency_ms)
# Within probe_timeout (2 s), the retry included; NIP-11 and connecting come on top.
[ "$lat" -ge 2000 ] && [ "$lat" -lt 3000 ] || fail "silent: decided after $lat ms"
[ $((t1 - t0)) -le 5 ] || fail "silent: the probe took $((t1 - t0)) s"
if command -v sqlite3 >/dev/null; then
    # Silence is kept an hour, not recheck_days (7).
    sqlite3 "$tmp/silent.db" "UPDATE relay_caps SET checked_at = checked_at - 7200" ||
        fail "sqlite3 update"
    probe "$tmp/silent.db" "$tmp/short.ini" "$RELAY_URL"
    expect_eq "silent, 2 h old: check" "$(get check)" expired
    expect_eq "silent, 2 h old: cached" "$(get cached)" false
else
    echo "probe-quirks: no sqlite3, the silence lifetime is left to test-caps"
fi
stop_relay

# --- AUTH on connect ----------------------------------------------------------------
start_relay --auth-challenge
probe "$tmp/auth.db" "$tmp/c.ini" "$RELAY_URL"
expect_eq "auth: class" "$(get negentropy)" supported
expect_eq "auth: challenge" "$(get auth_challenge)" true
expect_eq "auth: first message lost" "$(get first_message_lost)" false
# Noted, not answered: the relay got no AUTH from us.
relay_stats_snapshot
tr -d '\n' <"$RELAY_STATS" | "$field" json-field total >"$tmp/total" || fail "auth: stats"
expect_eq "auth: challenges sent" "$("$field" json-field tx <"$tmp/total" |
    "$field" json-field AUTH)" 1
case $("$field" json-field rx <"$tmp/total") in
*AUTH*) fail "auth: negsync answered the challenge: $(cat "$tmp/total")" ;;
esac
timeout 60 "$negsync" -c "$tmp/c.ini" -d "$tmp/auth-table.db" probe "$RELAY_URL" \
    >"$tmp/table" || fail "auth: table probe failed"
grep -q "NEG-MSG; the relay sent an AUTH challenge (not answered)\$" "$tmp/table" ||
    fail "auth: table: $(cat "$tmp/table")"
stop_relay
start_relay
probe "$tmp/plain.db" "$tmp/c.ini" "$RELAY_URL"
expect_eq "no auth: challenge" "$(get auth_challenge)" false
stop_relay

# A relay that sends AUTH on connect and loses the first message: the
# challenge is no reply, so the NEG-OPEN still goes again.
start_relay --auth-challenge --ignore-first-message
probe "$tmp/both.db" "$tmp/c.ini" "$RELAY_URL"
expect_eq "auth, lossy: class" "$(get negentropy)" supported
expect_eq "auth, lossy: challenge" "$(get auth_challenge)" true
expect_eq "auth, lossy: first message lost" "$(get first_message_lost)" true
stop_relay

start_relay --neg-refuse-limit0
probe "$tmp/khatru.db" "$tmp/c.ini" "$RELAY_URL"
expect_eq "khatru: class" "$(get negentropy)" supported
stop_relay

echo "probe-quirks: ok"
