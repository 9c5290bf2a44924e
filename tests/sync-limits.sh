#!/bin/sh
# A relay's NIP-11 max_message_length bounds every message we send it; the
# test relay refuses longer ones with a NOTICE (strfry drops the connection):
#  - negentropy frames go out in hex, twice their size: a session whose split
#    would make a 120 kB NEG-MSG under the default frame_size_limit makes
#    smaller ones and still completes by negentropy;
#  - a fetch REQ carries only the ids that fit;
#  - an event too long to upload is counted as rejected, not sent.
# Both with the NIP-11 document the sync's own probe reads, and with the one
# the capability cache kept from an earlier `negsync probe`.
. "${top_srcdir:-.}/tests/sync-lib.sh"
HELPER="$top_builddir/tests/store-helper"
[ -x "$HELPER" ] || fail "build first (no $HELPER)"

# 20 000 events, 90 % of them local: the third message of a 12 000-event
# window holds 4 096 fingerprints.
"$GEN" -n 20000 -k 20 -s 400000 -S 43 >"$WORK/relay.jsonl" || fail "gen-events"
awk 'NR % 10 != 0' "$WORK/relay.jsonl" >"$WORK/local.jsonl"
"$HELPER" big 30000 >"$WORK/big.jsonl" || fail "store-helper big"
ids_of_file "$WORK/relay.jsonl" >"$WORK/want"
ids_of_file "$WORK/big.jsonl" >"$WORK/big.id"
"$NEGSYNC" -q -d "$WORK/base.db" import "$WORK/local.jsonl" >/dev/null || fail "import"
"$NEGSYNC" -q -d "$WORK/base.db" import "$WORK/big.jsonl" >/dev/null || fail "import big"

start_relay --events "$WORK/relay.jsonl" --max-message 20000
sync_config "$WORK/l.ini" direction=both
printf '[relay %s]\n[filter notes]\nkinds = 1\n' "$RELAY_URL" >>"$WORK/l.ini"

# limited NAME: sync $WORK/NAME.db once and check the outcome and the relay's counts.
limited() {
    "$NEGSYNC" -c "$WORK/l.ini" -d "$WORK/$1.db" sync --once --json >"$WORK/$1.json" \
        2>"$WORK/$1.err" || fail "$1: sync failed: $(cat "$WORK/$1.json" "$WORK/$1.err")"
    l=$(jline "$WORK/$1.json" "$RELAY_URL")
    expect_eq "$1: mode" "$(jstr "$l" mode)" negentropy
    expect_eq "$1: result" "$(jstr "$l" result)" ok
    expect_eq "$1: need" "$(jnum "$l" need)" 2000
    expect_eq "$1: stored" "$(jnum "$l" stored)" 2000
    expect_eq "$1: have" "$(jnum "$l" have)" 1
    expect_eq "$1: uploaded" "$(jnum "$l" uploaded)" 0
    expect_eq "$1: upload_rejected" "$(jnum "$l" upload_rejected)" 1
    relay_stats_snapshot
    stats=$(tr -d ' \n' <"$RELAY_STATS")
    case $stats in
    *'"invalid":'[1-9]*) fail "$1: the relay refused messages: $stats" ;;
    esac
    case $stats in
    *'"total":'*'"rx":{'*'"NEG-MSG":'[1-9]*) ;;
    *) fail "$1: no NEG-MSG reached the relay: $stats" ;;
    esac
    ids_of_db "$WORK/$1.db" | grep -v -x -F -f "$WORK/big.id" | cmp -s - "$WORK/want" ||
        fail "$1: the local set is not the relay's"
}

cp "$WORK/base.db" "$WORK/fresh.db"
limited fresh

cp "$WORK/base.db" "$WORK/cached.db"
"$NEGSYNC" -c "$WORK/l.ini" -d "$WORK/cached.db" probe >"$WORK/probe.out" 2>&1 ||
    fail "probe failed: $(cat "$WORK/probe.out")"
limited cached

# Nothing is missing now: a second session finds nothing to fetch.
"$NEGSYNC" -c "$WORK/l.ini" -d "$WORK/cached.db" sync --once --json >"$WORK/again.json" \
    2>"$WORK/again.err" || fail "again: sync failed: $(cat "$WORK/again.json" "$WORK/again.err")"
expect_eq "again: need" "$(jnum "$(jline "$WORK/again.json" "$RELAY_URL")" need)" 0
stop_relay || fail "relay did not stop cleanly"
echo "ok: frames, fetches and uploads kept within the relay's max_message_length"
