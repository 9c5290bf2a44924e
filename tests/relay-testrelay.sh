#!/bin/sh
# relay-testrelay.sh — the relay module against the local test relay
# (tests/negsync-testrelay), driven through `test-relay MODE URL`:
# TLS with a self-signed certificate, garbage replies, a message over the
# cap, a relay that stops reading, a relay that dies and comes back, NIP-11
# variants, and payload counters checked against the relay's own count.
. "${top_srcdir:-.}/tests/lib.sh"
. "$top_srcdir/tests/relay-lib.sh"

CLIENT="$top_builddir/tests/test-relay"
[ -x "$CLIENT" ] || fail "no $CLIENT: run make check"
command -v openssl >/dev/null || skip "openssl (the command) is not installed"

work=$(mktemp -d "${TMPDIR:-/tmp}/relay-testrelay.XXXXXX") || fail mktemp
trap 'relay_cleanup; rm -rf "$work"' EXIT
out="$work/out"

# has PATTERN: the last client output contains the fixed string.
has() { grep -qF -- "$1" "$out" || fail "expected '$1' in:
$(cat "$out")"; }
hasnt() { ! grep -qF -- "$1" "$out" || fail "did not expect '$1' in:
$(cat "$out")"; }
# field NAME LINE-PREFIX: the value of NAME=... on the line starting with the prefix.
field() { sed -n "s/^$2 .*$1=\\([0-9]*\\).*/\\1/p" "$out"; }
# stat EXPR: a number from the relay's stats file.
stat() { sed -n "s/^ *\"$1\": \\([0-9]*\\).*/\\1/p" "$RELAY_STATS" | tail -n 1; }

echo "# TLS: refused by default with a certificate error, accepted with tls_verify = false"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
    -days 2 -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null ||
    fail "openssl could not make a certificate"
start_relay --tls "$work/cert.pem" "$work/key.pem"
"$CLIENT" exchange "$RELAY_URL" 1 >"$out" 2>&1 || fail "exchange: $(cat "$out")"
has "nip11 error=tls-cert: TLS certificate verification failed"
has "connect tls-cert: TLS certificate verification failed"
"$CLIENT" exchange "$RELAY_URL" --no-verify 1 >"$out" 2>&1 || fail "exchange: $(cat "$out")"
has "nip11 present=1 lists77=1"
has "connect ok"
has "eose 1"
stop_relay || fail "relay exit status"

echo "# garbage replies are skipped and logged; the connection survives"
start_relay --garbage 0.5 --seed 3
"$CLIENT" exchange "$RELAY_URL" 40 >"$out" 2>&1 || fail "exchange: $(cat "$out")"
has "connect ok"
has "log skipped message (invalid JSON"
has "connected 1"
eose=$(sed -n 's/^eose //p' "$out")
[ "$eose" -gt 5 ] && [ "$eose" -lt 40 ] || fail "garbage 0.5 and $eose of 40 EOSE came through"
stop_relay || fail "relay exit status"

echo "# a message over the cap closes the connection with a clear error; under it, exact size"
start_relay --big-notice 20000
"$CLIENT" exchange "$RELAY_URL" --max 16384 1 >"$out" 2>&1 || fail "exchange: $(cat "$out")"
has "recv too-big: message larger than 16384 bytes"
has "connected 0"
"$CLIENT" exchange "$RELAY_URL" 1 >"$out" 2>&1 || fail "exchange: $(cat "$out")"
has "notice bytes=20000"
has "eose 1"
stop_relay || fail "relay exit status"

echo "# a relay that stops reading: the send times out and the connection is dropped"
start_relay --stall-after 1
"$CLIENT" stall "$RELAY_URL" >"$out" 2>&1 || fail "stall: $(cat "$out")"
has "send timeout"
stop_relay || fail "relay exit status"

echo "# payload counters equal the relay's own count; wire counters see compression"
for deflate in "" --deflate; do
    start_relay $deflate
    "$CLIENT" exchange "$RELAY_URL" 25 >"$out" 2>&1 || fail "exchange: $(cat "$out")"
    has "eose 25"
    stop_relay || fail "relay exit status"
    sp=$(field sent_payload counters)
    rp=$(field recv_payload counters)
    sw=$(field sent_wire counters)
    rw=$(field recv_wire counters)
    [ "$sp" = "$(stat rx_bytes)" ] || fail "sent_payload $sp, relay read $(stat rx_bytes)"
    [ "$rp" = "$(stat tx_bytes)" ] || fail "recv_payload $rp, relay wrote $(stat tx_bytes)"
    [ "$(field sent_msgs counters)" = 25 ] || fail "sent_msgs"
    [ "$(field recv_msgs counters)" = 25 ] || fail "recv_msgs"
    echo "  ${deflate:-plain}: payload $sp/$rp, wire $sw/$rw"
    if [ -n "$deflate" ]; then
        # The same messages cost fewer bytes on the wire once compressed.
        [ "$sw" -lt $((plain_sw / 3)) ] ||
            fail "deflate: wire $sw/$rw, plain $plain_sw/$plain_rw"
    else
        [ "$sw" -gt "$sp" ] && [ "$rw" -gt "$rp" ] || fail "plain: wire $sw/$rw below payload $sp/$rp"
        plain_sw=$sw plain_rw=$rw
    fi
done

echo "# NIP-11 absent, invalid, wrongly typed, 5 MiB: no NIP-11, and the connection still works"
for mode in absent invalid wrongtypes huge; do
    start_relay --nip11=$mode
    "$CLIENT" exchange "$RELAY_URL" 1 >"$out" 2>&1 || fail "exchange: $(cat "$out")"
    has "nip11 present=0"
    has "eose 1"
    stop_relay || fail "relay exit status"
done

echo "# the relay dies and comes back on the same port: reconnect with backoff"
start_relay
port=$RELAY_PORT
"$CLIENT" reconnect "$RELAY_URL" >"$out" 2>&1 &
client=$!
deadline=$(($(date +%s) + 20))
until grep -q '^connected' "$out"; do
    [ "$(date +%s)" -lt "$deadline" ] || { kill "$client"; fail "client did not connect"; }
    sleep 0.02
done
relay_kill
until grep -q '^lost' "$out"; do
    [ "$(date +%s)" -lt "$deadline" ] || { kill "$client"; fail "client did not notice"; }
    sleep 0.02
done
start_relay --port "$port"
wait "$client" || fail "reconnect: $(cat "$out")"
has "lost closed"
has "reconnect ok"
has "after reconnect: EOSE"
echo "ok"
