#!/bin/sh
# Faults from the relay side:
#  - forged events (wrong id or signature) served by REQ, in REQ mode and in
#    the ids fetches of negentropy mode: counted as invalid, never stored;
#    also when we hold the event they copy;
#  - the connection dropped mid-session: the session is retried once on a new
#    connection, then REQ takes over; the job ends ok either way;
#  - garbage frames: the job finishes or fails cleanly (exit 0 or 1, a
#    result line), and whatever was stored is authentic.
. "${top_srcdir:-.}/tests/sync-lib.sh"

"$GEN" -n 1000 -k 6 -s 50000 -S 31 >"$WORK/relay.jsonl" || fail "gen-events"
ids_of_file "$WORK/relay.jsonl" >"$WORK/want"

# all_authentic DB: every stored event is one of the relay's real ones.
all_authentic() {
    ids_of_db "$1" >"$WORK/got"
    [ -z "$(comm -13 "$WORK/want" "$WORK/got")" ] || fail "$1: stored events the relay never had"
    "$NEGSYNC" -d "$1" export >"$WORK/export.jsonl"
    "$NEGSYNC" -d "$WORK/verify.db" import "$WORK/export.jsonl" >"$WORK/verify.out" ||
        fail "$1: stored events do not verify: $(cat "$WORK/verify.out")"
    rm -f "$WORK/verify.db"*
}

# run NAME RELAY-ARGS...: a fresh database synced once; $l the --json line.
run() {
    _n=$1
    shift
    start_relay --events "$WORK/relay.jsonl" "$@"
    sync_config "$WORK/$_n.ini"
    printf '[relay %s]\n[filter notes]\nkinds = 1\n' "$RELAY_URL" >>"$WORK/$_n.ini"
    "$NEGSYNC" -c "$WORK/$_n.ini" -d "$WORK/$_n.db" sync --once --json >"$WORK/$_n.json" \
        2>"$WORK/$_n.err"
    rc=$?
    l=$(jline "$WORK/$_n.json" "$RELAY_URL")
    stop_relay || fail "$_n: relay did not stop cleanly"
}

run bad-req --no-nip77=notice --bad-events 0.2
expect_eq "bad-req: exit" "$rc" 0
[ "$(jnum "$l" invalid)" -gt 0 ] || fail "bad-req: no invalid events counted: $l"
all_authentic "$WORK/bad-req.db"
expect_eq "bad-req: stored" "$(jnum "$l" stored)" "$(wc -l <"$WORK/got")"

run bad-neg --bad-events 0.2
expect_eq "bad-neg: exit" "$rc" 0
expect_eq "bad-neg: mode" "$(jstr "$l" mode)" negentropy
[ "$(jnum "$l" invalid)" -gt 0 ] || fail "bad-neg: no invalid events counted: $l"
all_authentic "$WORK/bad-neg.db"
expect_eq "bad-neg: stored" "$(jnum "$l" stored)" "$(wc -l <"$WORK/got")"

# Copies of events we hold: their Schnorr check is skipped only when their
# signature bytes are those of the copy we verified. With every event stored
# already, the relay (same seed, so the same pages and the same forgeries)
# must get exactly as many invalid as with an empty database, and the rest
# are duplicates.
run fresh-forged --no-nip77=notice --bad-events 0.3 --seed 5
forged=$(jnum "$l" invalid)
[ "$forged" -gt 0 ] || fail "fresh-forged: no invalid events counted: $l"
"$NEGSYNC" -d "$WORK/copies.db" import "$WORK/relay.jsonl" >/dev/null || fail "import"
run copies --no-nip77=notice --bad-events 0.3 --seed 5
expect_eq "copies: exit" "$rc" 0
expect_eq "copies: invalid" "$(jnum "$l" invalid)" "$forged"
expect_eq "copies: stored" "$(jnum "$l" stored)" 0
expect_eq "copies: duplicates" "$(jnum "$l" duplicates)" "$(jnum "$l" fetched)"
all_authentic "$WORK/copies.db"

# The relay hangs up after 3 messages on every connection.
awk 'NR % 2 == 0' "$WORK/relay.jsonl" >"$WORK/half.jsonl"
"$NEGSYNC" -d "$WORK/drop.db" import "$WORK/half.jsonl" >/dev/null || fail "import"
run drop --drop-after 3
case $(jstr "$l" result) in
ok) ;;
error) [ "$rc" = 1 ] || fail "drop: error but exit $rc" ;;
*) fail "drop: no result line: $(cat "$WORK/drop.json" "$WORK/drop.err")" ;;
esac
grep -q "retrying once" "$WORK/drop.err" || fail "drop: no retry: $(cat "$WORK/drop.err")"
all_authentic "$WORK/drop.db"

for p in 0.05 0.3; do
    run "garbage-$p" --garbage $p --seed 7
    case $rc in
    0 | 1) ;;
    *) fail "garbage $p: exit $rc: $(cat "$WORK/garbage-$p.err")" ;;
    esac
    [ -n "$(jstr "$l" result)" ] || fail "garbage $p: no result line"
    all_authentic "$WORK/garbage-$p.db"
done
echo "ok: forged events dropped and counted, drops retried, garbage survived"
