#!/bin/sh
# Uploads are honest. A job asked to upload (direction up or both) that cannot
# find out what the relay lacks (no NIP-77, or negentropy failing mid-way so
# the job falls back to REQ) ends with result "error" saying so (exit 1),
# after whatever it could download. Refused uploads are listed with their
# reasons in the JSON (the first few) and in the log without -v.
. "${top_srcdir:-.}/tests/sync-lib.sh"

# The relay holds 3000 events; the local side half of them and 200 of its own.
"$GEN" -n 3000 -k 20 -t 1700000000 -s 20000 -S 51 >"$WORK/relay.jsonl" || fail "gen-events"
"$GEN" -n 200 -k 3 -t 1700000000 -s 20000 -S 52 >"$WORK/local.jsonl" || fail "gen-events"
awk 'NR % 2 == 0' "$WORK/relay.jsonl" >>"$WORK/local.jsonl"

# run NAME DIRECTION RELAY-ARGS...: a fresh local db with local.jsonl, one
# `sync --once --json` against a new relay holding relay.jsonl (more [sync]
# keys in $EXTRA); $rc, $l.
run() {
    _n=$1
    _d=$2
    shift 2
    "$NEGSYNC" -d "$WORK/$_n.db" import "$WORK/local.jsonl" >/dev/null || fail "import"
    start_relay --events "$WORK/relay.jsonl" "$@"
    sync_config "$WORK/$_n.ini" "direction=$_d" $EXTRA
    printf '[relay %s]\n[filter all]\nkinds = 1\n' "$RELAY_URL" >>"$WORK/$_n.ini"
    rc=0
    "$NEGSYNC" -c "$WORK/$_n.ini" -d "$WORK/$_n.db" sync --once --json >"$WORK/$_n.json" \
        2>"$WORK/$_n.err" || rc=$?
    l=$(jline "$WORK/$_n.json" "$RELAY_URL")
    stop_relay
}

# expect_not_uploaded NAME: the job failed for want of a way to tell what to upload.
expect_not_uploaded() {
    expect_eq "$1: exit status" "$rc" 1
    expect_eq "$1: result" "$(jstr "$l" result)" error
    expect_eq "$1: mode" "$(jstr "$l" mode)" req
    expect_eq "$1: uploaded" "$(jnum "$l" uploaded)" 0
    case $(jstr "$l" error) in
    "not uploaded: direction "*" needs negentropy"*) ;;
    *) fail "$1: error does not say the upload was not done: $l" ;;
    esac
    grep -q "not uploaded: direction" "$WORK/$1.err" || fail "$1: not in the log: $(cat "$WORK/$1.err")"
}

run up-req up --no-nip77=notice
expect_not_uploaded up-req
expect_eq "up-req: fetched" "$(jnum "$l" fetched)" 0

run both-req both --no-nip77=notice
expect_not_uploaded both-req
expect_eq "both-req: stored" "$(jnum "$l" stored)" 1500

# Small frames: the session takes several rounds, and the relay ends it after one.
EXTRA=frame_size_limit=4096 run up-negfail up --neg-err-after 1
expect_not_uploaded up-negfail
case $(jstr "$l" fallback_reason) in
"negentropy failed"*) ;;
*) fail "up-negfail: fallback_reason: $l" ;;
esac

# Refused uploads: the relay holds deletions (kind 5) of 30 of our events.
"$GEN" -n 900 -k 6 -s 9000 -S 41 -D 30 >"$WORK/d.jsonl" || fail "gen-events"
grep '"kind":5,' "$WORK/d.jsonl" >"$WORK/deletions.jsonl"
grep -v '"kind":5,' "$WORK/d.jsonl" >"$WORK/notes.jsonl"
"$NEGSYNC" -d "$WORK/ref.db" import "$WORK/notes.jsonl" >/dev/null || fail "import"
start_relay --events "$WORK/deletions.jsonl"
sync_config "$WORK/ref.ini" direction=up
printf '[relay %s]\n[filter all]\nkinds = 1\n' "$RELAY_URL" >>"$WORK/ref.ini"
"$NEGSYNC" -c "$WORK/ref.ini" -d "$WORK/ref.db" sync --once --json >"$WORK/ref.json" \
    2>"$WORK/ref.err" || fail "refused: sync failed: $(cat "$WORK/ref.json" "$WORK/ref.err")"
l=$(jline "$WORK/ref.json" "$RELAY_URL")
stop_relay
expect_eq "refused: result" "$(jstr "$l" result)" ok
expect_eq "refused: upload_rejected" "$(jnum "$l" upload_rejected)" 30
n=$(printf '%s\n' "$l" | grep -o '{"id":"[0-9a-f]\{64\}","reason":"blocked: [^"]*"}' | wc -l)
expect_eq "refused: upload_errors listed" "$n" 5
expect_eq "refused: rejections in the log" \
    "$(grep -c '^\[SYNC\] .*: upload of [0-9a-f]\{64\} rejected: blocked: ' "$WORK/ref.err")" 5
echo "ok: uploads that cannot be done fail the job; refused ones say why"
