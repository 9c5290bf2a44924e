#!/bin/sh
# probe-cache.sh — the capability cache as `negsync probe` users meet it: a
# fresh answer is reused; --force checks again; a relay whose NIP-11 version
# changes (an upgrade, restarted on the same port) is checked again; an
# answer older than recheck_days is checked again (aged in the database with
# sqlite3; test-caps does the same with an injected clock), and silence (no
# reply to NEG-OPEN) older than an hour; a relay that is down is
# "unreachable", exit 1, and never replaces the cached answer; with no URL
# every relay of the configuration is probed, in parallel, in config order.
. "${top_srcdir:-.}/tests/lib.sh"
. "$top_srcdir/tests/relay-lib.sh"

negsync="$top_builddir/src/negsync"
field="$top_builddir/tests/test-caps"
[ -x "$negsync" ] || fail "no $negsync: run make first"
[ -x "$field" ] || fail "no $field: run make check"
command -v timeout >/dev/null || skip "no timeout(1)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/probe-cache.XXXXXX") || fail "mktemp"
trap 'relay_cleanup; rm -rf "$tmp"' EXIT INT TERM
db="$tmp/negsync.db"
printf '[sync]\nprobe_timeout = 2\n' >"$tmp/c.ini"

expect_eq() {
    [ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"
}

# probe ARGS...: JSON lines in $out, exit status in $rc, under a deadline.
probe() {
    timeout 60 "$negsync" -c "${CFG:-$tmp/c.ini}" -d "$db" probe --json "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    [ $rc -ne 124 ] || fail "probe $* did not finish within 60 s"
    out=$(cat "$tmp/out")
}

get() {
    printf '%s\n' "$out" | "$field" json-field "$1" || fail "no $1 in: $out"
}

# --- fresh answers are reused -------------------------------------------------
start_relay --version 1.0
url=$RELAY_URL
port=$RELAY_PORT
probe "$url"
expect_eq "first: check" "$(get check)" new
expect_eq "first: cached" "$(get cached)" false
expect_eq "first: class" "$(get negentropy)" supported
first=$(get checked_at)
latency=$(get latency_ms)

# The same relay written differently is the same cache entry.
probe "WS://127.0.0.1:$port/"
expect_eq "second: url" "$(get url)" "$url"
expect_eq "second: cached" "$(get cached)" true
expect_eq "second: check" "$(get check)" cache
expect_eq "second: checked_at" "$(get checked_at)" "$first"
expect_eq "second: latency is the cached one" "$(get latency_ms)" "$latency"
expect_eq "second: class" "$(get negentropy)" supported

timeout 60 "$negsync" -c "$tmp/c.ini" -d "$db" probe "$url" >"$tmp/table" || fail "table probe"
grep -q "supported  *[0-9][0-9]* ms  *cache, [0-9][0-9]*s old  *NEG-MSG\$" "$tmp/table" ||
    fail "table does not say cached: $(cat "$tmp/table")"

# --- --force checks again --------------------------------------------------------
probe --force "$url"
expect_eq "force: cached" "$(get cached)" false
expect_eq "force: check" "$(get check)" forced
[ "$(get checked_at)" -ge "$first" ] || fail "force: checked_at went back"

# --- the relay upgrades: new version, and now it refuses NIP-77 ---------------
stop_relay
start_relay --port "$port" --version 2.0 --no-nip77=notice
probe "$url"
expect_eq "upgrade: check" "$(get check)" nip11-changed
expect_eq "upgrade: class" "$(get negentropy)" unsupported
expect_eq "upgrade: reason" "$(get reason)" \
    'the relay answered NEG-OPEN with NOTICE "ERROR: bad msg: negentropy disabled"'
case $(get nip11) in
*'"version":"2.0"'*) ;;
*) fail "upgrade: nip11 $(get nip11)" ;;
esac
probe "$url"
expect_eq "after upgrade: cached" "$(get cached)" true
expect_eq "after upgrade: class" "$(get negentropy)" unsupported

# --- expired -------------------------------------------------------------------------
if command -v sqlite3 >/dev/null; then
    sqlite3 "$db" "UPDATE relay_caps SET checked_at = checked_at - 8 * 86400" ||
        fail "sqlite3 update"
    probe "$url"
    expect_eq "8 days old: check" "$(get check)" expired
    expect_eq "8 days old: cached" "$(get cached)" false
    sqlite3 "$db" "UPDATE relay_caps SET checked_at = checked_at - 6 * 86400" ||
        fail "sqlite3 update"
    probe "$url"
    expect_eq "6 days old: check" "$(get check)" cache
else
    echo "probe-cache: no sqlite3, expiry left to test-caps"
fi
# recheck_days = 0: never reused.
printf '[sync]\nprobe_timeout = 2\nrecheck_days = 0\n' >"$tmp/always.ini"
CFG="$tmp/always.ini" probe "$url"
expect_eq "recheck_days 0: check" "$(get check)" expired
stop_relay

# --- down: unreachable, and the cached answer survives ------------------------------
# Fresh cache and nobody to ask about NIP-11: the cached answer stands.
probe "$url"
expect_eq "down, fresh: cached" "$(get cached)" true
expect_eq "down, fresh: class" "$(get negentropy)" unsupported
expect_eq "down, fresh: exit" "$rc" 0
probe --force "$url"
expect_eq "down, forced: class" "$(get negentropy)" unreachable
expect_eq "down, forced: cached" "$(get cached)" false
expect_eq "down, forced: exit" "$rc" 1
probe "$url"
expect_eq "down, after: still the cached answer" "$(get negentropy)" unsupported
expect_eq "down, after: cached" "$(get cached)" true
# Never seen and down: nothing is cached, so the next probe is new again.
start_relay
never=$RELAY_URL
stop_relay
probe "$never"
expect_eq "never seen: class" "$(get negentropy)" unreachable
probe "$never"
expect_eq "never seen, again: check" "$(get check)" new
expect_eq "never seen, again: class" "$(get negentropy)" unreachable
if command -v sqlite3 >/dev/null; then
    expect_eq "never seen: rows" "$(sqlite3 "$db" "SELECT count(*) FROM relay_caps WHERE relay = '$never'")" 0
fi

# --- no URL: every relay in the configuration, in parallel, in config order -----------
start_relay --no-nip77=silent
silent1=$RELAY_URL
start_relay --no-nip77=silent
silent2=$RELAY_URL
start_relay --no-nip77=silent
silent3=$RELAY_URL
start_relay --welcome-notice hello
good=$RELAY_URL
{
    printf '[sync]\nprobe_timeout = 1\n'
    for u in "$silent1" "$good" "$silent2" "$never" "$silent3"; do
        printf '\n[relay %s]\n' "$u"
    done
    printf 'tls_verify = false\n'
} >"$tmp/relays.ini"
t0=$(date +%s)
CFG="$tmp/relays.ini" probe --force
t1=$(date +%s)
expect_eq "config: exit (one unreachable)" "$rc" 1
expect_eq "config: urls in order" "$(get url | tr '\n' ' ')" \
    "$silent1 $good $silent2 $never $silent3 "
expect_eq "config: classes" "$(get negentropy | tr '\n' ' ')" \
    "unsupported supported unsupported unreachable unsupported "
expect_eq "config: reasons" "$(get reason | sed 's/^cannot connect.*/refused/' | tr '\n' '|')" \
    "$(printf '%s|' "no reply to NEG-OPEN within 1 s" NEG-MSG "no reply to NEG-OPEN within 1 s" \
        refused "no reply to NEG-OPEN within 1 s")"
expect_eq "config: tls_verify" "$(get tls_verify | tr '\n' ' ')" "true true true true false "
# A figure, not an assertion: three 1 s timeouts in parallel take about 1 s, not 3.
echo "probe-cache: 5 relays (3 silent, 1 s timeout) probed in about $((t1 - t0)) s"
CFG="$tmp/relays.ini" timeout 60 "$negsync" -c "$tmp/relays.ini" -d "$db" probe >"$tmp/table" 2>&1
grep -q "^$silent3 (TLS unverified) " "$tmp/table" || fail "tls_verify=false not shown: $(cat "$tmp/table")"

# --- silence is no verdict for recheck_days --------------------------------------------
# A relay that never answered NEG-OPEN (nothing at all, on two connections) is
# cached as unsupported for an hour, then asked again; one that refused in
# words keeps its answer for recheck_days.
if command -v sqlite3 >/dev/null; then
    start_relay --no-nip77=notice
    refuser=$RELAY_URL
    printf '[sync]\nprobe_timeout = 1\n\n[relay %s]\n\n[relay %s]\n' "$silent1" "$refuser" \
        >"$tmp/age.ini"
    CFG="$tmp/age.ini" probe --force
    expect_eq "aged: classes" "$(get negentropy | tr '\n' ' ')" "unsupported unsupported "
    sqlite3 "$db" "UPDATE relay_caps SET checked_at = checked_at - 3500" || fail "sqlite3 update"
    CFG="$tmp/age.ini" probe
    expect_eq "silence 58 min old: check" "$(get check | tr '\n' ' ')" "cache cache "
    sqlite3 "$db" "UPDATE relay_caps SET checked_at = checked_at - 100" || fail "sqlite3 update"
    CFG="$tmp/age.ini" probe
    expect_eq "silence an hour old: check" "$(get check | tr '\n' ' ')" "expired cache "
    expect_eq "silence an hour old: asked again" "$(get cached | tr '\n' ' ')" "false true "
    stop_relay
fi

echo "probe-cache: ok"
