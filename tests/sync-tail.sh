#!/bin/sh
# The tail across relays: events newer than every local one, which three
# NIP-77 relays hold. The job that claims the tail fetches it by REQ, newest
# first; the other jobs, once their own windows are reconciled, take the
# older half of what is left of it instead of waiting, each from its own
# relay; then every job reconciles the tail with its relay, since parts of it
# came from other relays. Checked:
#   same tails      every new event stored once, fetched about once overall,
#                   by more than one job (the tail was shared), all jobs by
#                   negentropy;
#   slow writer     the same with the store writer held back (the test hook
#                   NEGSYNC_WRITER_HOLD_MS), so that jobs reconcile the tail
#                   while its events wait for the store: nothing fetched twice,
#                   est_req_bytes as without it;
#   late jobs       two relays answer late (--delay-ms), so their jobs plan
#                   their windows while the first job's slice is part fetched:
#                   the part fetched so far is no window of theirs;
#   differing tails one relay lacks some new events, two hold new events the
#                   others lack: the local set ends as the union all the same;
# and in these four, a second sync right after needs nothing from any relay;
#   both ways       the differing tails with direction = both and the slow
#                   writer: each job uploads every event its relay lacks,
#                   though most still wait for the store when it finds them,
#                   and after a second sync every relay holds the union;
#   dropped slice   a relay drops every connection partway: the other jobs still
#                   end with every new event;
#   direction up    the relay's newer events are not downloaded: with nothing
#                   local there, there is nothing to upload either.
. "${top_srcdir:-.}/tests/sync-lib.sh"

base=1700000000
"$GEN" -n 2000 -k 20 -t $base -s 20000 -S 31 >"$WORK/old.jsonl" || fail "gen-events"
"$GEN" -n 6000 -k 20 -t $((base + 30000)) -s 60000 -S 32 >"$WORK/new.jsonl" || fail "gen-events"
"$GEN" -n 400 -k 5 -t $((base + 30000)) -s 60000 -S 33 >"$WORK/extra-b.jsonl" || fail "gen-events"
"$GEN" -n 400 -k 5 -t $((base + 30000)) -s 60000 -S 34 >"$WORK/extra-c.jsonl" || fail "gen-events"

# fresh_db: $WORK/db holding the old events only.
fresh_db() {
    rm -f "$WORK/db" "$WORK/db-wal" "$WORK/db-shm"
    "$NEGSYNC" -d "$WORK/db" import "$WORK/old.jsonl" >/dev/null || fail "import"
}

# tail_config [SYNC-KEY=VALUE...]: $WORK/c.ini with those [sync] keys, the
# relays in $urls and a filter for kind-1 notes.
tail_config() {
    sync_config "$WORK/c.ini" "$@"
    for u in $urls; do
        printf '[relay %s]\n' "$u" >>"$WORK/c.ini"
    done
    printf '[filter notes]\nkinds = 1\n' >>"$WORK/c.ini"
}

# run N: syncs the relays in $urls into a fresh copy of the old events;
# checks the mode and result of every job, that the local set is
# $WORK/want, that N events were stored in all, and that a second sync
# needs nothing.
run() {
    fresh_db
    tail_config workers=3 fetch_batch=100
    "$NEGSYNC" -c "$WORK/c.ini" -d "$WORK/db" sync --once --json >"$WORK/run.json" \
        2>"$WORK/run.err" || fail "$CASE: sync failed: $(cat "$WORK/run.json" "$WORK/run.err")"
    stored=0 fetched=0 need=0 fetchers=0 est=0
    for u in $urls; do
        l=$(jline "$WORK/run.json" "$u")
        est=$((est + $(jnum "$l" est_req_bytes)))
        expect_eq "$CASE: $u mode" "$(jstr "$l" mode)" negentropy
        expect_eq "$CASE: $u result" "$(jstr "$l" result)" ok
        stored=$((stored + $(jnum "$l" stored)))
        fetched=$((fetched + $(jnum "$l" fetched)))
        need=$((need + $(jnum "$l" need)))
        [ "$(jnum "$l" fetched)" -gt 0 ] && fetchers=$((fetchers + 1))
    done
    expect_eq "$CASE: events stored by all jobs" "$stored" "$1"
    [ "$need" -ge "$1" ] || fail "$CASE: $need events needed in all, fewer than the $1 stored"
    ids_of_db "$WORK/db" >"$WORK/got"
    cmp -s "$WORK/want" "$WORK/got" ||
        fail "$CASE: local set differs from the union of the relays' ($(wc -l <"$WORK/got") events, want $(wc -l <"$WORK/want"))"

    "$NEGSYNC" -c "$WORK/c.ini" -d "$WORK/db" sync --once --json >"$WORK/again.json" \
        2>"$WORK/again.err" || fail "$CASE: second sync failed: $(cat "$WORK/again.json" "$WORK/again.err")"
    for u in $urls; do
        l=$(jline "$WORK/again.json" "$u")
        expect_eq "$CASE: second sync, $u result" "$(jstr "$l" result)" ok
        expect_eq "$CASE: second sync, $u need" "$(jnum "$l" need)" 0
        expect_eq "$CASE: second sync, $u fetched" "$(jnum "$l" fetched)" 0
    done
}

# ---- the same tail on every relay --------------------------------------------
CASE="same tails"
cat "$WORK/old.jsonl" "$WORK/new.jsonl" >"$WORK/all.jsonl"
ids_of_file "$WORK/all.jsonl" >"$WORK/want"
urls=
for k in 1 2 3; do
    start_relay --events "$WORK/all.jsonl"
    urls="$urls $RELAY_URL"
done
run 6000
# Fetched once, but for the pages' overlaps: a page ends at its oldest second,
# inclusive, and a page already asked for when another job took the older
# part of its slice may reach into that part.
[ "$fetched" -lt 6600 ] || fail "$CASE: $fetched events fetched for 6000 new ones"
# The tail is 60 pages of 100 and the other jobs' windows are 2000 events: they
# are done long before it, and must have taken part of it.
[ "$fetchers" -ge 2 ] || fail "$CASE: only $fetchers job(s) fetched the tail"
same_fetched=$fetched same_fetchers=$fetchers same_est=$est

# ---- the same, with a slow store writer ----------------------------------------
# Each transaction is held 400 ms (half before, half after it commits), so
# every job reconciles the tail while most of it waits for the store: the
# local view must hold those events (else they come back as needed and are
# fetched again) and their sizes (else est_req_bytes falls short).
CASE="slow writer"
NEGSYNC_WRITER_HOLD_MS=400
export NEGSYNC_WRITER_HOLD_MS
run 6000
unset NEGSYNC_WRITER_HOLD_MS
[ "$fetched" -lt 6600 ] || fail "$CASE: $fetched events fetched for 6000 new ones"
slow_fetched=$fetched
# Estimates differ only by the events that pages' overlaps brought twice.
diff=$((est > same_est ? est - same_est : same_est - est))
[ $((diff * 100)) -lt "$same_est" ] ||
    fail "$CASE: est_req_bytes $est in all, $same_est without the hold"
relay_cleanup

# ---- late jobs -----------------------------------------------------------------
# The prompt relay's job claims the tail and queues its first pages before
# the others have looked at their local events: had they planned windows
# over those, they would have found the rest of the tail missing there and
# fetched it again by id.
CASE="late jobs"
start_relay --events "$WORK/all.jsonl" --delay-ms 20
urls=$RELAY_URL
for k in 2 3; do
    start_relay --events "$WORK/all.jsonl" --delay-ms 300
    urls="$urls $RELAY_URL"
done
run 6000
[ "$fetched" -lt 6600 ] || fail "$CASE: $fetched events fetched for 6000 new ones"
late_fetched=$fetched
relay_cleanup

# ---- differing tails ---------------------------------------------------------
CASE="differing tails"
awk 'NR % 10 != 0' "$WORK/new.jsonl" >"$WORK/new-most.jsonl" # 600 fewer
cat "$WORK/old.jsonl" "$WORK/new.jsonl" "$WORK/extra-b.jsonl" "$WORK/extra-c.jsonl" \
    >"$WORK/union.jsonl"
ids_of_file "$WORK/union.jsonl" >"$WORK/want"
cat "$WORK/old.jsonl" "$WORK/new.jsonl" >"$WORK/relay-a.jsonl"
cat "$WORK/old.jsonl" "$WORK/new-most.jsonl" "$WORK/extra-b.jsonl" >"$WORK/relay-b.jsonl"
cat "$WORK/old.jsonl" "$WORK/new.jsonl" "$WORK/extra-c.jsonl" >"$WORK/relay-c.jsonl"
urls=
for k in a b c; do
    start_relay --events "$WORK/relay-$k.jsonl"
    urls="$urls $RELAY_URL"
done
run 6800

# ---- differing tails, both ways, slow writer -----------------------------------
# Each job uploads what its relay lacks of the local events at the time of its
# session, most of which still wait for the store writer then; what other
# relays' jobs find later reaches it on the next run.
CASE="both ways"
fresh_db
tail_config workers=3 fetch_batch=100 direction=both
for pass in 1 2; do
    NEGSYNC_WRITER_HOLD_MS=400 "$NEGSYNC" -c "$WORK/c.ini" -d "$WORK/db" sync --once --json \
        >"$WORK/run.json" 2>"$WORK/run.err" ||
        fail "$CASE: sync $pass failed: $(cat "$WORK/run.json" "$WORK/run.err")"
    for u in $urls; do
        l=$(jline "$WORK/run.json" "$u")
        expect_eq "$CASE: sync $pass, $u result" "$(jstr "$l" result)" ok
        expect_eq "$CASE: sync $pass, $u: every event it lacked, uploaded" \
            "$(($(jnum "$l" uploaded) + $(jnum "$l" upload_rejected)))" "$(jnum "$l" have)"
    done
done
ids_of_db "$WORK/db" >"$WORK/got"
cmp -s "$WORK/want" "$WORK/got" || fail "$CASE: local set differs from the union"
# What each relay holds now, read back into an empty database.
for u in $urls; do
    rm -f "$WORK/back" "$WORK/back-wal" "$WORK/back-shm"
    sync_config "$WORK/b.ini"
    printf '[relay %s]\n[filter notes]\nkinds = 1\n' "$u" >>"$WORK/b.ini"
    "$NEGSYNC" -c "$WORK/b.ini" -d "$WORK/back" sync --once --json >"$WORK/back.json" \
        2>"$WORK/back.err" || fail "$CASE: reading $u back failed: $(cat "$WORK/back.err")"
    ids_of_db "$WORK/back" >"$WORK/got"
    cmp -s "$WORK/want" "$WORK/got" ||
        fail "$CASE: $u holds $(wc -l <"$WORK/got") events after two syncs, not the union's $(wc -l <"$WORK/want")"
done
relay_cleanup

# ---- a relay that drops the connection during its part ----------------------
# Its job loses the slice it took (and a retry loses it again: the relay
# drops every connection after 450 messages); the other two jobs must still
# end with every new event, by reconciling the tail with their relays.
CASE="dropped slice"
ids_of_file "$WORK/all.jsonl" >"$WORK/want"
start_relay --events "$WORK/all.jsonl"
good1=$RELAY_URL
start_relay --events "$WORK/all.jsonl"
good2=$RELAY_URL
start_relay --events "$WORK/all.jsonl" --drop-after 450
bad=$RELAY_URL
urls="$bad $good1 $good2"
fresh_db
tail_config workers=3 fetch_batch=100
rc=0
"$NEGSYNC" -c "$WORK/c.ini" -d "$WORK/db" sync --once --json >"$WORK/run.json" 2>"$WORK/run.err" ||
    rc=$?
[ "$rc" -le 1 ] || fail "$CASE: exit status $rc: $(cat "$WORK/run.err")"
for u in "$good1" "$good2"; do
    l=$(jline "$WORK/run.json" "$u")
    expect_eq "$CASE: $u mode" "$(jstr "$l" mode)" negentropy
    expect_eq "$CASE: $u result" "$(jstr "$l" result)" ok
done
[ -n "$(jline "$WORK/run.json" "$bad")" ] || fail "$CASE: no run line for the dropping relay"
ids_of_db "$WORK/db" >"$WORK/got"
cmp -s "$WORK/want" "$WORK/got" ||
    fail "$CASE: local set differs ($(wc -l <"$WORK/got") events, want $(wc -l <"$WORK/want"))"
relay_cleanup

# ---- direction up --------------------------------------------------------------
CASE="direction up"
start_relay --events "$WORK/all.jsonl"
urls=$RELAY_URL
fresh_db
tail_config direction=up
"$NEGSYNC" -c "$WORK/c.ini" -d "$WORK/db" sync --once --json >"$WORK/run.json" \
    2>"$WORK/run.err" || fail "$CASE: sync failed: $(cat "$WORK/run.json" "$WORK/run.err")"
l=$(jline "$WORK/run.json" "$RELAY_URL")
expect_eq "$CASE: result" "$(jstr "$l" result)" ok
expect_eq "$CASE: fetched" "$(jnum "$l" fetched)" 0
expect_eq "$CASE: stored" "$(jnum "$l" stored)" 0
expect_eq "$CASE: uploaded" "$(jnum "$l" uploaded)" 0
expect_eq "$CASE: local events" "$(ids_of_db "$WORK/db" | wc -l | tr -d ' ')" 2000
relay_cleanup

echo "sync-tail: same tails: 6000 new events stored once, $same_fetched fetched by" \
    "$same_fetchers jobs (with a slow store writer: $slow_fetched; with late jobs: $late_fetched);" \
    "differing tails: the union" \
    "of 6800 stored, and with direction = both every relay gets it; second syncs need nothing;" \
    "a dropped slice is made up for; direction up downloads nothing"
