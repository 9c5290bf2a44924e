#!/bin/sh
# The relay ends things itself:
#  - NEG-CLOSE in the middle of a session (khatru drops sessions so): a
#    failure, noticed at once (not after neg_timeout), retried once, then REQ;
#  - CLOSED on every REQ ("rate-limited: ..."): with --once the job is an
#    error that names the relay's reason and the backoff, exit 1; running
#    continuously, each next run of that relay waits a growing backoff
#    (more than the 1 s interval), and the backoff is reported each time.
. "${top_srcdir:-.}/tests/sync-lib.sh"

"$GEN" -n 1500 -k 6 -s 30000 -S 71 >"$WORK/relay.jsonl" || fail "gen-events"
awk 'NR % 2 == 0' "$WORK/relay.jsonl" >"$WORK/half.jsonl"

# --- NEG-CLOSE after the first round of every session ------------------------
"$NEGSYNC" -q -d "$WORK/nc.db" import "$WORK/half.jsonl" >/dev/null || fail "import"
start_relay --events "$WORK/relay.jsonl" --neg-close-after 1
# neg_timeout 30: a NEG-CLOSE noticed only by the timeout would take a minute.
sync_config "$WORK/nc.ini" frame_size_limit=4096
sed -i 's/^neg_timeout = .*/neg_timeout = 30/' "$WORK/nc.ini"
printf '[relay %s]\n[filter notes]\nkinds = 1\n' "$RELAY_URL" >>"$WORK/nc.ini"
t0=$(date +%s)
"$NEGSYNC" -c "$WORK/nc.ini" -d "$WORK/nc.db" sync --once --json >"$WORK/nc.json" \
    2>"$WORK/nc.err" || fail "neg-close: sync failed: $(cat "$WORK/nc.json" "$WORK/nc.err")"
[ $(($(date +%s) - t0)) -lt 25 ] || fail "neg-close: noticed only by the timeout"
l=$(jline "$WORK/nc.json" "$RELAY_URL")
grep -q "relay closed the session (NEG-CLOSE) after 1 round; retrying once" "$WORK/nc.err" ||
    fail "neg-close: no retry: $(cat "$WORK/nc.err")"
expect_eq "neg-close: mode" "$(jstr "$l" mode)" req
expect_eq "neg-close: result" "$(jstr "$l" result)" ok
case $(jstr "$l" fallback_reason) in
"negentropy failed: relay closed the session (NEG-CLOSE)"*) ;;
*) fail "neg-close: fallback reason: $l" ;;
esac
ids_of_file "$WORK/relay.jsonl" >"$WORK/want"
ids_of_db "$WORK/nc.db" | cmp -s - "$WORK/want" || fail "neg-close: not everything synced"
stop_relay || fail "relay did not stop cleanly"

# --- CLOSED "rate-limited:" on every REQ, --once -----------------------------
start_relay --events "$WORK/relay.jsonl" --no-nip77=notice --req-closed "rate-limited: slow down"
sync_config "$WORK/rl.ini" interval=1
printf '[relay %s]\n[filter notes]\nkinds = 1\n' "$RELAY_URL" >>"$WORK/rl.ini"
"$NEGSYNC" -c "$WORK/rl.ini" -d "$WORK/rl.db" sync --once --json >"$WORK/once.json" \
    2>"$WORK/once.err"
expect_eq "rate-limited --once: exit" "$?" 1
l=$(jline "$WORK/once.json" "$RELAY_URL")
expect_eq "rate-limited --once: result" "$(jstr "$l" result)" error
expect_eq "rate-limited --once: est_req_bytes of a failed job" "$(jnum "$l" est_req_bytes)" 0
case $(jstr "$l" error) in
*"relay closed the subscription: rate-limited: slow down; backoff "*" s") ;;
*) fail "rate-limited --once: error: $l" ;;
esac

# --- the same, running continuously every second ------------------------------
# Each result line with the time it arrived (ms).
{
    "$NEGSYNC" -c "$WORK/rl.ini" -d "$WORK/rl.db" sync --json 2>"$WORK/cont.err" &
    echo $! >"$WORK/cont.pid"
    wait
} | while IFS= read -r line; do
    echo "$(($(date +%s%N) / 1000000)) $line"
done >"$WORK/cont.out" &
cont=$!
deadline=$(($(date +%s) + 40))
while [ "$(grep -c '"result"' "$WORK/cont.out")" -lt 3 ]; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "continuous: fewer than 3 runs in 40 s"
    sleep 0.1 2>/dev/null || sleep 1
done
kill -TERM "$(cat "$WORK/cont.pid")" || fail "continuous: negsync is gone"
wait "$cont"
backoff() {
    sed -n "${1}p" "$WORK/cont.out" | sed -n 's/.*; backoff \([0-9.]*\) s".*/\1/p'
}
at() {
    sed -n "${1}p" "$WORK/cont.out" | cut -d' ' -f1
}
b1=$(backoff 1) b2=$(backoff 2)
[ -n "$b1" ] && [ -n "$b2" ] || fail "continuous: no backoff reported: $(cat "$WORK/cont.out")"
# 1 s then 2 s, each times a jitter in [0.8, 1.2]: the second is always longer.
awk -v a="$b1" -v b="$b2" 'BEGIN { exit !(a >= 0.7 && b > a && b >= 1.5) }' ||
    fail "continuous: backoffs $b1 s, $b2 s do not grow"
# The third run waited at least the second backoff (which exceeds the interval).
gap=$(($(at 3) - $(at 2)))
awk -v g="$gap" -v b="$b2" 'BEGIN { exit !(g >= b * 1000 - 100) }' ||
    fail "continuous: the third run came $gap ms after the second, backoff $b2 s"
echo "sync-closed: NEG-CLOSE mid-session retried then REQ; CLOSED reported with a growing backoff"
