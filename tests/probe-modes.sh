#!/bin/sh
# probe-modes.sh — `negsync probe` against the test relay playing every kind
# of relay out there: one that speaks NIP-77, one that speaks it without
# listing it, ones that list 77 and then refuse it in each way (NOTICE in each
# real-world wording, NEG-ERR, CLOSED, a dropped connection, silence), a
# harmless welcome notice, slow replies, and broken NIP-11 documents. Each
# probe runs under a deadline (timeout(1)); the assertions are on the class
# and reason a user sees, and on the decision coming before probe_timeout
# whenever the relay did answer.
. "${top_srcdir:-.}/tests/lib.sh"
. "$top_srcdir/tests/relay-lib.sh"

negsync="$top_builddir/src/negsync"
field="$top_builddir/tests/test-caps"
[ -x "$negsync" ] || fail "no $negsync: run make first"
[ -x "$field" ] || fail "no $field: run make check"
command -v timeout >/dev/null || skip "no timeout(1)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/probe-modes.XXXXXX") || fail "mktemp"
trap 'relay_cleanup; rm -rf "$tmp"' EXIT INT TERM

# probe_timeout 2 s for relays that answer; 1 s where silence is the point.
printf '[sync]\nprobe_timeout = 2\n' >"$tmp/answer.ini"
printf '[sync]\nprobe_timeout = 1\n' >"$tmp/silent.ini"

nprobe=0

expect_eq() {
    [ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"
}

# probe CONFIG ARGS...: one JSON line per relay in $out, exit status in $rc.
# Every probe uses a fresh database unless DB is set.
probe() {
    _cfg=$1
    shift
    nprobe=$((nprobe + 1))
    _db=${DB:-$tmp/fresh$nprobe.db}
    timeout 30 "$negsync" -c "$_cfg" -d "$_db" probe --json "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    [ $rc -ne 124 ] || fail "probe $* did not finish within 30 s"
    out=$(cat "$tmp/out")
}

get() {
    printf '%s\n' "$out" | "$field" json-field "$1" || fail "no $1 in: $out"
}

# expect_probe WHAT CLASS REASON: the last probe's single result.
expect_probe() {
    [ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ] || fail "$1: want one line, got: $out"
    expect_eq "$1: class" "$(get negentropy)" "$2"
    expect_eq "$1: reason" "$(get reason)" "$3"
}

# The decision was the relay's answer, well before the deadline.
expect_answered_in_time() {
    _lat=$(get latency_ms)
    [ "$_lat" != null ] && [ "$_lat" -lt 2000 ] || fail "$1: latency $_lat, not an answer"
}

# --- a relay that speaks NIP-77 ------------------------------------------
start_relay --software strfry-like --version 1.2.3
probe "$tmp/answer.ini" "$RELAY_URL"
expect_eq "supported: exit" "$rc" 0
expect_probe "supported" supported NEG-MSG
expect_answered_in_time "supported"
expect_eq "supported: url" "$(get url)" "$RELAY_URL"
expect_eq "supported: nip11" "$(get nip11)" \
    '{"software":"strfry-like","version":"1.2.3","supported_nips":[1,11,77]}'
expect_eq "supported: cached" "$(get cached)" false
checked=$(get checked_at)
now=$(date +%s)
[ "$checked" -ge $((now - 60)) ] && [ "$checked" -le $((now + 1)) ] ||
    fail "checked_at $checked is not now ($now)"

# The table a user reads: software and version, 77 listed, result, reason.
timeout 30 "$negsync" -c "$tmp/answer.ini" -d "$tmp/table.db" probe "$RELAY_URL" >"$tmp/table" ||
    fail "table probe failed"
head -n 1 "$tmp/table" | grep -q '^URL  *NIP-11  *77  *RESULT  *LATENCY  *SOURCE  *REASON$' ||
    fail "table header: $(head -n 1 "$tmp/table")"
grep -q "^$RELAY_URL  *strfry-like 1.2.3  *yes  *supported  *[0-9][0-9]* ms  *probe (new)  *NEG-MSG\$" \
    "$tmp/table" || fail "table row: $(cat "$tmp/table")"
stop_relay

# --- speaks it without listing it: the handshake decides ------------------
start_relay --nip11-nips 1,11
probe "$tmp/answer.ini" "$RELAY_URL"
expect_probe "unlisted" supported NEG-MSG
expect_eq "unlisted: nips" "$(get nip11 | sed 's/.*"supported_nips"://')" '[1,11]}'
stop_relay

# --- lists 77, then refuses it, each in its own way ------------------------
for mode in 'notice|the relay answered NEG-OPEN with NOTICE "ERROR: bad msg: negentropy disabled"' \
    'unknown|the relay answered NEG-OPEN with NOTICE "ERROR: bad msg: unknown cmd"' \
    'neg-err|the relay answered NEG-OPEN with NEG-ERR "blocked: Negentropy sync is disabled"' \
    'closed|the relay answered NEG-OPEN with CLOSED "error: NEG not supported"' \
    "disconnect|the relay closed the connection on NEG-OPEN*"; do
    m=${mode%%|*}
    reason=${mode#*|}
    start_relay --no-nip77="$m"
    probe "$tmp/answer.ini" "$RELAY_URL"
    expect_eq "$m: exit" "$rc" 0
    case $reason in
    *'*') # the connection's own words follow, in parentheses
        expect_probe "lists 77, --no-nip77=$m" unsupported "$(get reason)"
        case $(get reason) in
        "${reason%\*}" | "${reason%\*} ("*")") ;;
        *) fail "$m: reason '$(get reason)', want '$reason'" ;;
        esac
        ;;
    *) expect_probe "lists 77, --no-nip77=$m" unsupported "$reason" ;;
    esac
    expect_answered_in_time "--no-nip77=$m"
    case $(get nip11) in
    *'"supported_nips":[1,11,77]'*) ;;
    *) fail "$m: NIP-11 should still list 77: $(get nip11)" ;;
    esac
    stop_relay
done

# Lists 77 and never answers: no reply, at the deadline and not before (the
# NEG-OPEN went twice, on two connections, within that one budget).
start_relay --no-nip77=silent
probe "$tmp/silent.ini" "$RELAY_URL"
expect_eq "silent: exit" "$rc" 0
expect_probe "lists 77, silent" unsupported "no reply to NEG-OPEN within 1 s"
lat=$(get latency_ms)
[ "$lat" -ge 1000 ] || fail "silent: gave up after $lat ms, before probe_timeout"
[ "$lat" -lt 2000 ] || fail "silent: took $lat ms, past probe_timeout"
expect_eq "silent: first message lost" "$(get first_message_lost)" true
stop_relay

# --- every real-world refusal wording, played by --notice-text ------------
for text in "ERROR: bad msg: negentropy disabled" \
    "ERROR: bad msg: unknown cmd" \
    "failed to parse envelope: unknown envelope label" \
    "could not parse command" \
    "Command unrecognized" \
    'invalid: "value" does not match any of the allowed types'; do
    start_relay --no-nip77=notice --notice-text "$text"
    probe "$tmp/answer.ini" "$RELAY_URL"
    expect_probe "notice '$text'" unsupported "the relay answered NEG-OPEN with NOTICE \"$text\""
    expect_answered_in_time "notice '$text'"
    stop_relay
done
# chorus refuses with NEG-ERR "blocked:" on a query that matches nothing.
start_relay --no-nip77=neg-err --notice-text "blocked: Negentropy sync is disabled"
probe "$tmp/answer.ini" "$RELAY_URL"
expect_probe "chorus NEG-ERR" unsupported \
    'the relay answered NEG-OPEN with NEG-ERR "blocked: Negentropy sync is disabled"'
stop_relay
# A long refusal is cut at a word, with an ellipsis.
start_relay --no-nip77=notice --notice-text "ERROR: bad msg: this relay does not speak \
negentropy, NIP-77 or any other set reconciliation protocol, and it never will, so please \
stop asking"
probe "$tmp/answer.ini" "$RELAY_URL"
expect_probe "long NOTICE" unsupported "the relay answered NEG-OPEN with NOTICE \"ERROR: bad \
msg: this relay does not speak negentropy, NIP-77 or any other set reconciliation protocol, \
and it never…\""
stop_relay

# --- a welcome notice is not a refusal --------------------------------------
welcome="Welcome to the test relay! Be nice, and have fun."
start_relay --welcome-notice "$welcome"
probe "$tmp/answer.ini" "$RELAY_URL"
expect_probe "welcome, then NEG-MSG" supported NEG-MSG
stop_relay
start_relay --welcome-notice "$welcome" --no-nip77=silent
probe "$tmp/silent.ini" "$RELAY_URL"
expect_probe "welcome, then silence" unsupported "no reply to NEG-OPEN within 1 s"
# It said something: its NEG-OPEN was not lost, and not sent again.
expect_eq "welcome, then silence: lost" "$(get first_message_lost)" false
stop_relay
start_relay --welcome-notice "$welcome" --no-nip77=notice --notice-text "Command unrecognized"
probe "$tmp/answer.ini" "$RELAY_URL"
expect_probe "welcome, then a refusal" unsupported \
    'the relay answered NEG-OPEN with NOTICE "Command unrecognized"'
stop_relay

# --- slow but in time, and too slow ---------------------------------------
start_relay --delay-ms 300
probe "$tmp/answer.ini" "$RELAY_URL"
expect_probe "300 ms late" supported NEG-MSG
[ "$(get latency_ms)" -ge 300 ] || fail "delay 300: latency $(get latency_ms)"
stop_relay
start_relay --delay-ms 3000
probe "$tmp/silent.ini" "$RELAY_URL"
expect_probe "3 s late, 1 s timeout" unsupported "no reply to NEG-OPEN within 1 s"
stop_relay

# --- broken NIP-11: "no NIP-11", and the handshake still decides ------------
for variant in absent invalid wrongtypes huge; do
    start_relay --nip11="$variant"
    probe "$tmp/answer.ini" "$RELAY_URL"
    expect_probe "NIP-11 $variant" supported NEG-MSG
    expect_eq "NIP-11 $variant: nip11" "$(get nip11)" null
    [ "$(get nip11_error)" != null ] || fail "NIP-11 $variant: no nip11_error"
    stop_relay
    start_relay --nip11="$variant" --no-nip77=unknown
    probe "$tmp/answer.ini" "$RELAY_URL"
    expect_probe "NIP-11 $variant, no NIP-77" unsupported \
        'the relay answered NEG-OPEN with NOTICE "ERROR: bad msg: unknown cmd"'
    expect_eq "NIP-11 $variant, no NIP-77: nip11" "$(get nip11)" null
    stop_relay
done

# --- nothing listening: unreachable, exit 1 ---------------------------------
start_relay
dead=$RELAY_URL
stop_relay
probe "$tmp/answer.ini" "$dead"
expect_eq "unreachable: exit" "$rc" 1
expect_eq "unreachable: class" "$(get negentropy)" unreachable
expect_eq "unreachable: latency" "$(get latency_ms)" null

# --- wss with a self-signed certificate ----------------------------------------
# Refused by default with an error that names the certificate (unreachable:
# nothing about NIP-77 was learned); accepted when the relay's section says
# tls_verify = false, which the table shows.
if command -v openssl >/dev/null &&
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tmp/key.pem" -out "$tmp/cert.pem" \
        -days 2 -subj /CN=127.0.0.1 >/dev/null 2>&1; then
    start_relay --tls "$tmp/cert.pem" "$tmp/key.pem"
    probe "$tmp/answer.ini" "$RELAY_URL"
    expect_eq "self-signed: exit" "$rc" 1
    expect_eq "self-signed: class" "$(get negentropy)" unreachable
    case $(get reason) in
    *certificate*) ;;
    *) fail "self-signed: reason does not name the certificate: $(get reason)" ;;
    esac
    printf '[sync]\nprobe_timeout = 2\n\n[relay %s]\ntls_verify = false\n' "$RELAY_URL" \
        >"$tmp/insecure.ini"
    probe "$tmp/insecure.ini" "$RELAY_URL"
    expect_probe "self-signed, tls_verify = false" supported NEG-MSG
    expect_eq "self-signed, tls_verify = false: flag" "$(get tls_verify)" false
    timeout 30 "$negsync" -c "$tmp/insecure.ini" -d "$tmp/tls.db" probe >"$tmp/table" ||
        fail "tls table probe failed"
    grep -q "^$RELAY_URL (TLS unverified)  .*supported" "$tmp/table" ||
        fail "tls_verify = false not shown: $(cat "$tmp/table")"
    stop_relay
else
    echo "probe-modes: no openssl to make a certificate; wss not tested here"
fi

# --- usage --------------------------------------------------------------------
probe "$tmp/answer.ini" "http://127.0.0.1:1"
expect_eq "http URL: exit" "$rc" 2
grep -q "http://127.0.0.1:1" "$tmp/err" || fail "http URL: no message: $(cat "$tmp/err")"
probe "$tmp/answer.ini"
expect_eq "no relays: exit" "$rc" 2
grep -q "no relays to probe" "$tmp/err" || fail "no relays: $(cat "$tmp/err")"
timeout 30 "$negsync" -c "$tmp/answer.ini" -d "$tmp/u.db" probe --bogus >/dev/null 2>&1
expect_eq "unknown option: exit" "$?" 2

echo "probe-modes: ok"
