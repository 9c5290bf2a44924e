#!/bin/sh
# kill -9 in the middle of a 50 000-event sync, in each mode: by negentropy
# (the local side holds a scattered fifth, the rest is fetched by id) and by
# REQ (an empty database, paged from cursor 0). Once the database shows a few
# thousand new events the sync is killed; the database must pass integrity
# checks, and a second run must complete the set: exactly the relay's events,
# each once, and a third session with nothing left to fetch. Waits poll the
# database with a deadline.
. "${top_srcdir:-.}/tests/sync-lib.sh"

HELPER="$top_builddir/tests/store-helper"
[ -x "$HELPER" ] || fail "no $HELPER: run make check"
N=50000

"$GEN" -n $N -k 50 -s 500000 -S 61 >"$WORK/relay.jsonl" || fail "gen-events"
ids_of_file "$WORK/relay.jsonl" >"$WORK/want"
"$NEGSYNC" -q -d "$WORK/relay.db" import "$WORK/relay.jsonl" >/dev/null || fail "import"
awk 'NR % 5 == 0' "$WORK/relay.jsonl" >"$WORK/fifth.jsonl"
start_relay --db "$WORK/relay.db"

stored() { "$HELPER" count "$1" 2>/dev/null || echo 0; }

pid=
trap '[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; sync_cleanup' EXIT

# kill_mid NAME USE-NEGENTROPY: sync NAME.db, kill -9 once 3000 more events are stored.
kill_mid() {
    sync_config "$WORK/$1.ini" "use_negentropy=$2" fetch_batch=250
    printf '[relay %s]\n[filter notes]\nkinds = 1\n' "$RELAY_URL" >>"$WORK/$1.ini"
    _base=$(stored "$WORK/$1.db")
    "$NEGSYNC" -c "$WORK/$1.ini" -d "$WORK/$1.db" sync --once --json >"$WORK/$1.1.json" \
        2>"$WORK/$1.1.err" &
    pid=$!
    _deadline=$(($(date +%s) + 90))
    while [ "$(stored "$WORK/$1.db")" -lt $((_base + 3000)) ]; do
        kill -0 "$pid" 2>/dev/null || fail "$1: sync ended before the kill: $(cat "$WORK/$1.1.err")"
        [ "$(date +%s)" -lt "$_deadline" ] || fail "$1: fewer than 3000 new events after 90 s"
        sleep 0.05 2>/dev/null || sleep 1
    done
    kill -9 "$pid" || fail "$1: nothing to kill"
    wait "$pid"
    pid=
    _k=$(stored "$WORK/$1.db")
    [ "$_k" -lt $N ] || fail "$1: the sync had finished when it was killed"
    expect_eq "$1: integrity after kill -9" "$("$HELPER" check "$WORK/$1.db")" ok
    echo "$1: killed with $_k of $N events stored"
}

# complete NAME MODE: the rerun finishes the set; a third session has nothing to fetch.
complete() {
    "$NEGSYNC" -c "$WORK/$1.ini" -d "$WORK/$1.db" sync --once --json >"$WORK/$1.2.json" \
        2>"$WORK/$1.2.err" || fail "$1: rerun failed: $(cat "$WORK/$1.2.json" "$WORK/$1.2.err")"
    l=$(jline "$WORK/$1.2.json" "$RELAY_URL")
    expect_eq "$1: rerun mode" "$(jstr "$l" mode)" "$2"
    expect_eq "$1: integrity after rerun" "$("$HELPER" check "$WORK/$1.db")" ok
    expect_eq "$1: events stored" "$(stored "$WORK/$1.db")" $N
    "$HELPER" ids "$WORK/$1.db" | sort >"$WORK/$1.got"
    cmp -s "$WORK/want" "$WORK/$1.got" || fail "$1: the stored set is not the relay's"
    "$NEGSYNC" -c "$WORK/$1.ini" -d "$WORK/$1.db" sync --once --json >"$WORK/$1.3.json" \
        2>"$WORK/$1.3.err" || fail "$1: third run failed: $(cat "$WORK/$1.3.json")"
    l=$(jline "$WORK/$1.3.json" "$RELAY_URL")
    expect_eq "$1: third run stored" "$(jnum "$l" stored)" 0
}

"$NEGSYNC" -q -d "$WORK/neg.db" import "$WORK/fifth.jsonl" >/dev/null || fail "import"
kill_mid neg true
complete neg negentropy
expect_eq "neg: third run need" "$(jnum "$l" need)" 0

kill_mid req false
complete req req
echo "sync-kill: killed mid-sync in both modes; reruns complete, sound, no duplicates"
