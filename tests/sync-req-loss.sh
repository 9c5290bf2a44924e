#!/bin/sh
# REQ paging against relays that send less than they hold (no NIP-77, 500
# events per REQ, 3000 events over 3000 seconds):
#  - a relay that never serves one event it holds (--req-hide: deleted,
#    hidden) leaves a page one short: paging goes on until a page comes back
#    empty, and one run stores all the others;
#  - a relay that garbles replies (--garbage: some are lost) or forges copies
#    (--bad-events): a run stores what it could take, and the cursor stays
#    below what it could not, so later runs ask again and the local set
#    converges on the relay's;
#  - a relay that stops reading mid-paging fails the job after neg_timeout.
. "${top_srcdir:-.}/tests/sync-lib.sh"

"$GEN" -n 3000 -k 5 -t 1700000000 -s 3000 -S 31 >"$WORK/ev.jsonl" || fail "gen-events"
ids_of_file "$WORK/ev.jsonl" >"$WORK/want"

# run_sync NAME: one `sync --once --json` into NAME.db; the exit status is in $rc.
run_sync() {
    rc=0
    "$NEGSYNC" -c "$WORK/$1.ini" -d "$WORK/$1.db" sync --once --json >"$WORK/$1.json" \
        2>"$WORK/$1.err" || rc=$?
    l=$(jline "$WORK/$1.json" "$RELAY_URL")
}

# 1. One hidden event among the newest 500.
start_relay --events "$WORK/ev.jsonl" --no-nip77=notice --req-hide 10
sync_config "$WORK/hide.ini"
printf '[relay %s]\n[filter all]\nkinds = 1\n' "$RELAY_URL" >>"$WORK/hide.ini"
run_sync hide
[ "$rc" -eq 0 ] || fail "hidden: sync failed: $(cat "$WORK/hide.json" "$WORK/hide.err")"
expect_eq "hidden: result" "$(jstr "$l" result)" ok
expect_eq "hidden: stored" "$(jnum "$l" stored)" 2999
expect_eq "hidden: local set" "$(ids_of_db "$WORK/hide.db" | wc -l)" 2999
stop_relay

# converge NAME MAX: runs until the local set is the relay's, at most MAX
# times; $runs is how many it took, $first_stored what the first one stored.
converge() {
    runs=0
    first_stored=
    while [ "$runs" -lt "$2" ]; do
        runs=$((runs + 1))
        run_sync "$1"
        [ -n "$first_stored" ] || first_stored=$(jnum "$l" stored)
        ids_of_db "$WORK/$1.db" >"$WORK/got"
        cmp -s "$WORK/want" "$WORK/got" && return 0
    done
    fail "$1: $(wc -l <"$WORK/got") of 3000 stored after $runs runs; last: $l $(cat "$WORK/$1.err")"
}

# 2. Garbled replies, a twentieth of them (a third of those lost outright).
start_relay --events "$WORK/ev.jsonl" --no-nip77=notice --garbage 0.05 --seed 5
sync_config "$WORK/garbage.ini"
printf '[relay %s]\n[filter all]\nkinds = 1\n' "$RELAY_URL" >>"$WORK/garbage.ini"
converge garbage 6
[ "$first_stored" -ge 2500 ] || fail "garbage: the first run stored only $first_stored of 3000"
echo "garbage: converged in $runs runs, the first stored $first_stored"
stop_relay

# 3. Forged copies: a fiftieth of the events served have a bad id or signature.
start_relay --events "$WORK/ev.jsonl" --no-nip77=notice --bad-events 0.02 --seed 7
sync_config "$WORK/forged.ini"
printf '[relay %s]\n[filter all]\nkinds = 1\n' "$RELAY_URL" >>"$WORK/forged.ini"
converge forged 6
[ "$first_stored" -ge 2800 ] || fail "forged: the first run stored only $first_stored of 3000"
[ "$runs" -ge 2 ] || fail "forged: no forged copy in the first run (seed)"
echo "forged: converged in $runs runs, the first stored $first_stored"
stop_relay
# 4. A relay that stops reading mid-paging and keeps the connection open: the
# page it never answers ends the job after neg_timeout (3 s), with an error.
start_relay --events "$WORK/ev.jsonl" --no-nip77=notice --stall-after 3
sync_config "$WORK/stall.ini"
printf '[relay %s]\n[filter all]\nkinds = 1\n' "$RELAY_URL" >>"$WORK/stall.ini"
rc=0
timeout 60 "$NEGSYNC" -c "$WORK/stall.ini" -d "$WORK/stall.db" sync --once --json \
    >"$WORK/stall.json" 2>"$WORK/stall.err" || rc=$?
l=$(jline "$WORK/stall.json" "$RELAY_URL")
expect_eq "stall: exit status" "$rc" 1
expect_eq "stall: result" "$(jstr "$l" result)" error
case $(jstr "$l" error) in
*"no reply within 3 s"*) ;;
*) fail "stall: error: $l" ;;
esac
stop_relay

echo "ok: short REQ pages and lost or forged events cost no event for good"
