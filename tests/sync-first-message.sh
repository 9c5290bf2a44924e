#!/bin/sh
# sync-first-message.sh — `negsync sync --once` against a relay that loses
# the first message of every new connection, as nostream does with its
# default rate limiter (its message handler is attached only after an async
# Redis check, so on loopback the first message is dropped without a word):
# the test relay's --ignore-first-message. The probe's NEG-OPEN and the job's
# own first message (the tail REQ, a NEG-OPEN, or the first REQ of a REQ
# job) each go again on a fresh connection after a pause, and the job
# completes with every event: by negentropy where the relay speaks it, by REQ
# where it answers NEG-OPEN with a NOTICE, and by REQ with use_negentropy =
# false. The fallback reason says what the relay answered NEG-OPEN with.
# Every assertion also checks that the relay did drop a message, so the
# retry was really needed.
. "${top_srcdir:-.}/tests/sync-lib.sh"

field="$top_builddir/tests/test-caps"
[ -x "$field" ] || fail "no $field: run make check"

"$GEN" -n 200 -k 4 -s 3000 -S 11 >"$WORK/relay.jsonl" || fail "gen-events"
ids_of_file "$WORK/relay.jsonl" >"$WORK/want"

# jfield LINE KEY: a field of a --json line, JSON escapes undone.
jfield() {
    printf '%s\n' "$1" | "$field" json-field "$2" || fail "no $2 in: $1"
}

# run_sync NAME DB [SYNC-KEY=VALUE...]: syncs DB once from $RELAY_URL, under
# a deadline; the --json line in $l, the exit code in $rc.
run_sync() {
    _name=$1
    _db=$2
    shift 2
    sync_config "$WORK/$_name.ini" "$@"
    printf '[relay %s]\n[filter all]\nkinds = 1\n' "$RELAY_URL" >>"$WORK/$_name.ini"
    timeout 120 "$NEGSYNC" -c "$WORK/$_name.ini" -d "$_db" sync --once --json \
        >"$WORK/$_name.json" 2>"$WORK/$_name.err"
    rc=$?
    [ $rc -ne 124 ] || fail "$_name: sync did not finish within 120 s"
    l=$(jline "$WORK/$_name.json" "$RELAY_URL")
    [ -n "$l" ] || fail "$_name: no result line: $(cat "$WORK/$_name.json" "$WORK/$_name.err")"
}

# dropped: how many messages the relay dropped so far.
dropped() {
    grep -c "ignored a message" "$RELAY_LOG"
}

expect_all_synced() {
    expect_eq "$1: exit" "$rc" 0
    expect_eq "$1: result" "$(jfield "$l" result)" ok
    ids_of_db "$2" | cmp -s - "$WORK/want" || fail "$1: not every event was synced"
}

# --- negentropy: the relay speaks NIP-77 -------------------------------------
start_relay --events "$WORK/relay.jsonl" --ignore-first-message
run_sync neg "$WORK/neg.db"
expect_all_synced "negentropy" "$WORK/neg.db"
expect_eq "negentropy: mode" "$(jfield "$l" mode)" negentropy
# The probe's NEG-OPEN and the job's first message, each on its own connection.
[ "$(dropped)" -ge 2 ] || fail "negentropy: the relay dropped $(dropped) messages, want 2"
# Cached as supported, not as "no NIP-77 (timeout)".
timeout 60 "$NEGSYNC" -c "$WORK/neg.ini" -d "$WORK/neg.db" probe --json "$RELAY_URL" \
    >"$WORK/neg.probe" || fail "negentropy: probe failed"
p=$(cat "$WORK/neg.probe")
expect_eq "negentropy: cached verdict" "$(jfield "$p" negentropy)" supported
expect_eq "negentropy: from the cache" "$(jfield "$p" cached)" true

# Again, with events held: the relay is asked again (its first message lost
# again), reconciles, and there is nothing new.
before=$(dropped)
run_sync neg2 "$WORK/neg.db"
expect_all_synced "negentropy, second run" "$WORK/neg.db"
expect_eq "negentropy, second run: mode" "$(jfield "$l" mode)" negentropy
expect_eq "negentropy, second run: fetched" "$(jfield "$l" fetched)" 0
[ "$(dropped)" -gt "$before" ] || fail "negentropy, second run: nothing was dropped"
stop_relay || fail "relay did not stop cleanly"

# --- REQ: the relay refuses NEG-OPEN with a NOTICE -----------------------------
start_relay --events "$WORK/relay.jsonl" --ignore-first-message --no-nip77=notice
run_sync notice "$WORK/notice.db"
expect_all_synced "NOTICE refusal" "$WORK/notice.db"
expect_eq "NOTICE refusal: mode" "$(jfield "$l" mode)" req
expect_eq "NOTICE refusal: fallback reason" "$(jfield "$l" fallback_reason)" \
    'no NIP-77: the relay answered NEG-OPEN with NOTICE "ERROR: bad msg: negentropy disabled"'
[ "$(dropped)" -ge 2 ] || fail "NOTICE refusal: the relay dropped $(dropped) messages, want 2"
grep -q "^\[SYNC\] Using REQ for $RELAY_URL (filter all): no NIP-77: the relay answered NEG-OPEN with NOTICE" \
    "$WORK/notice.err" || fail "NOTICE refusal: no REQ decision logged: $(cat "$WORK/notice.err")"

# The next run takes the verdict from the cache, and says so.
run_sync notice2 "$WORK/notice.db"
expect_all_synced "NOTICE refusal, cached" "$WORK/notice.db"
expect_eq "NOTICE refusal, cached: fallback reason" "$(jfield "$l" fallback_reason)" \
    'no NIP-77: the relay answered NEG-OPEN with NOTICE "ERROR: bad msg: negentropy disabled" (cached)'
stop_relay || fail "relay did not stop cleanly"

# --- REQ only: use_negentropy = false, the first REQ is the lost message -------
start_relay --events "$WORK/relay.jsonl" --ignore-first-message
run_sync reqonly "$WORK/reqonly.db" use_negentropy=false
expect_all_synced "REQ only" "$WORK/reqonly.db"
expect_eq "REQ only: mode" "$(jfield "$l" mode)" req
[ "$(dropped)" -ge 1 ] || fail "REQ only: nothing was dropped"
stop_relay || fail "relay did not stop cleanly"

# --- a relay that answers nothing at all to NEG-OPEN: still REQ, and the
# silence is not a verdict kept for recheck_days ---------------------------------
start_relay --events "$WORK/relay.jsonl" --no-nip77=silent
run_sync silent "$WORK/silent.db"
expect_all_synced "silent" "$WORK/silent.db"
expect_eq "silent: mode" "$(jfield "$l" mode)" req
expect_eq "silent: fallback reason" "$(jfield "$l" fallback_reason)" \
    "no NIP-77: no reply to NEG-OPEN within 3 s"
stop_relay || fail "relay did not stop cleanly"

echo "sync-first-message: ok"
