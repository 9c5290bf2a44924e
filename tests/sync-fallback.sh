#!/bin/sh
# REQ fallback: relays that answer NEG-OPEN the ways relays without NIP-77 do
# (a NOTICE in two wordings, NEG-ERR "blocked:", CLOSED, silence, a dropped
# connection) are classified and synced by REQ in the same run, within
# neg_timeout; the config switches and per-relay overrides pick the mode; in
# strict mode (negentropy_fallback = false) such a relay is an error, exit 1,
# and nothing is synced from it.
. "${top_srcdir:-.}/tests/sync-lib.sh"

"$GEN" -n 300 -k 5 -s 3000 -S 3 >"$WORK/relay.jsonl" || fail "gen-events"
ids_of_file "$WORK/relay.jsonl" >"$WORK/want"

# run_sync NAME [SYNC-KEY=VALUE...]: a fresh database synced once from
# $RELAY_URL; the --json line in $l, the exit code in $rc.
run_sync() {
    _name=$1
    shift
    sync_config "$WORK/$_name.ini" "$@"
    printf '[relay %s]\n%s[filter all]\nkinds = 1\n' "$RELAY_URL" "${RELAY_KEYS:-}" \
        >>"$WORK/$_name.ini"
    rm -f "$WORK/$_name.db"
    "$NEGSYNC" -c "$WORK/$_name.ini" -d "$WORK/$_name.db" sync --once --json \
        >"$WORK/$_name.json" 2>"$WORK/$_name.err"
    rc=$?
    l=$(jline "$WORK/$_name.json" "$RELAY_URL")
}

for mode in notice unknown neg-err closed silent disconnect; do
    start_relay --events "$WORK/relay.jsonl" --no-nip77=$mode
    run_sync "$mode"
    expect_eq "$mode: exit" "$rc" 0
    expect_eq "$mode: mode" "$(jstr "$l" mode)" req
    expect_eq "$mode: result" "$(jstr "$l" result)" ok
    [ -n "$(jstr "$l" fallback_reason)" ] || fail "$mode: no fallback reason: $l"
    grep -q "^\[SYNC\] Using REQ for $RELAY_URL (filter all): " "$WORK/$mode.err" ||
        fail "$mode: no REQ decision logged: $(cat "$WORK/$mode.err")"
    ids_of_db "$WORK/$mode.db" | cmp -s - "$WORK/want" || fail "$mode: not everything synced"
    expect_eq "$mode: stored" "$(jnum "$l" stored)" 300
    stop_relay || fail "$mode: relay did not stop cleanly"
done

# Strict: the relay without NIP-77 is an error and nothing is synced.
start_relay --events "$WORK/relay.jsonl" --no-nip77=notice
run_sync strict negentropy_fallback=false
expect_eq "strict: exit" "$rc" 1
expect_eq "strict: result" "$(jstr "$l" result)" error
case $(jstr "$l" error) in
*NIP-77*) ;;
*) fail "strict: error does not say NIP-77: $l" ;;
esac
[ -z "$(ids_of_db "$WORK/strict.db")" ] || fail "strict: events were stored"
stop_relay


# use_negentropy = false: REQ without trying (the relay never sees NEG-OPEN).
start_relay --events "$WORK/relay.jsonl"
run_sync reqonly use_negentropy=false
expect_eq "reqonly: mode" "$(jstr "$l" mode)" req
expect_eq "reqonly: reason" "$(jstr "$l" fallback_reason)" "use_negentropy = false"
stop_relay
grep -q '"NEG-OPEN"' "$RELAY_STATS" && fail "reqonly: NEG-OPEN was sent"

# A relay with NIP-77: negentropy = off for it means REQ; on overrides
# use_negentropy = false.
start_relay --events "$WORK/relay.jsonl"
RELAY_KEYS="negentropy = off
" run_sync off
expect_eq "off: mode" "$(jstr "$l" mode)" req
expect_eq "off: reason" "$(jstr "$l" fallback_reason)" "negentropy = off for this relay"
RELAY_KEYS="negentropy = on
" run_sync on use_negentropy=false
expect_eq "on: mode" "$(jstr "$l" mode)" negentropy
ids_of_db "$WORK/on.db" | cmp -s - "$WORK/want" || fail "on: not everything synced"
echo "ok: every no-NIP-77 answer falls back to REQ; strict is an error; overrides hold"
