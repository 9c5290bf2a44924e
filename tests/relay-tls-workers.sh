#!/bin/sh
# relay-tls-workers.sh — wss:// relays synced by several workers at once.
#
# lws 4.1 re-acquires its OpenSSL ex_data indexes whenever a context does the
# global TLS init; with a context per relay on several threads, one thread's
# new context broke another's live handshake ("TLS failed") and leaked its
# client SSL_CTX at teardown (LeakSanitizer, in the sanitizer build CI runs).
# relay.c now does that init once. Two self-signed wss relays (tls_verify =
# false), two workers, a few times over: every job must succeed by
# negentropy, and negsync must exit 0 (under ASan, leaks make it fail). The
# unverified TLS is shown on every job line and warned about.
. "${top_srcdir:-.}/tests/lib.sh"
. "$top_srcdir/tests/relay-lib.sh"

negsync="$top_builddir/src/negsync"
gen="$top_builddir/tests/gen-events"
[ -x "$negsync" ] && [ -x "$gen" ] || fail "run make first"
command -v openssl >/dev/null || skip "no openssl command"
work=$(mktemp -d "${TMPDIR:-/tmp}/relay-tls-workers.XXXXXX") || fail "mktemp"
trap 'relay_cleanup; rm -rf "$work"' EXIT

"$gen" -n 1500 -k 10 -s 5000 -S 5 >"$work/events.jsonl" || fail "gen-events"
relay_make_cert "$work"
start_relay --tls "$RELAY_CERT" "$RELAY_KEY" --events "$work/events.jsonl"
r1=$RELAY_URL
start_relay --tls "$RELAY_CERT" "$RELAY_KEY" --events "$work/events.jsonl"
r2=$RELAY_URL
case "$r1$r2" in wss://*wss://*) ;; *) fail "relays are not wss: $r1 $r2" ;; esac

cat >"$work/c.ini" <<INI
[sync]
workers = 2
neg_timeout = 5
probe_timeout = 5
[relay $r1]
tls_verify = false
[relay $r2]
tls_verify = false
[filter notes]
kinds = 1
INI

for round in 1 2 3; do
    rm -f "$work/db" "$work/db-wal" "$work/db-shm"
    "$negsync" -c "$work/c.ini" -d "$work/db" sync --once --json >"$work/run.json" 2>"$work/run.err" ||
        fail "round $round: sync failed: $(cat "$work/run.json" "$work/run.err")"
    for r in "$r1" "$r2"; do
        grep -q "\"relay\":\"$r\",\"filter\":\"notes\",\"mode\":\"negentropy\"" "$work/run.json" ||
            fail "round $round: $r not synced by negentropy: $(cat "$work/run.json" "$work/run.err")"
    done
    n=$(grep -c '"result":"ok"' "$work/run.json")
    [ "$n" = 2 ] || fail "round $round: $n of 2 jobs ok: $(cat "$work/run.json")"
    "$negsync" -c "$work/c.ini" -d "$work/db" probe --force >"$work/probe.out" 2>&1 ||
        fail "round $round: probe failed: $(cat "$work/probe.out")"
done
# tls_verify = false is shown wherever the relay is: the job lines and a warning.
"$negsync" -c "$work/c.ini" -d "$work/db" sync --once >"$work/human.out" 2>"$work/human.err" ||
    fail "human-readable sync failed: $(cat "$work/human.out" "$work/human.err")"
grep -q "^$r1 (TLS unverified) notes: negentropy" "$work/human.out" ||
    fail "job line does not say TLS is unverified: $(cat "$work/human.out")"
grep -q "warning: $r2: TLS certificates are not verified" "$work/human.err" ||
    fail "no tls_verify warning: $(cat "$work/human.err")"
echo "relay-tls-workers: 2 wss relays x 2 workers, 3 rounds, all by negentropy"
