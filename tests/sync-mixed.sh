#!/bin/sh
# One `sync --once` over four relays (three hold the same events): two with NIP-77
# (one of them splits a set it calls too big, the other breaks every session
# after one round), two without (a NOTICE, silence). Each ends with the mode
# and outcome it should, in one pass of a pool of two workers, and the local
# set is complete.
. "${top_srcdir:-.}/tests/sync-lib.sh"

"$GEN" -n 1500 -k 9 -s 100000 -S 21 >"$WORK/relay.jsonl" || fail "gen-events"
# The flaky relay holds events of its own, so its sessions need several
# rounds whatever the other relays' jobs stored first.
"$GEN" -n 1500 -k 9 -s 100000 -S 22 >"$WORK/flaky.jsonl" || fail "gen-events"
{ ids_of_file "$WORK/relay.jsonl"; ids_of_file "$WORK/flaky.jsonl"; } | sort >"$WORK/want"
# Half of them locally, so that 4096-byte frames take several rounds.
awk 'NR % 2 == 0' "$WORK/relay.jsonl" "$WORK/flaky.jsonl" >"$WORK/half.jsonl"
"$NEGSYNC" -d "$WORK/db" import "$WORK/half.jsonl" >/dev/null || fail "import"
cp "$WORK/db" "$WORK/db2"

start_relay --events "$WORK/relay.jsonl" --max-sync-events 400
split=$RELAY_URL
start_relay --events "$WORK/flaky.jsonl" --neg-err-after 1
flaky=$RELAY_URL
start_relay --events "$WORK/relay.jsonl" --no-nip77=notice
notice=$RELAY_URL
start_relay --events "$WORK/relay.jsonl" --no-nip77=silent
silent=$RELAY_URL

sync_config "$WORK/c.ini" workers=2 frame_size_limit=4096
for u in "$split" "$flaky" "$notice" "$silent"; do
    printf '[relay %s]\n' "$u" >>"$WORK/c.ini"
done
printf '[filter notes]\nkinds = 1\n' >>"$WORK/c.ini"

"$NEGSYNC" -c "$WORK/c.ini" -d "$WORK/db" sync --once --json >"$WORK/run.json" \
    2>"$WORK/run.err" || fail "mixed sync failed: $(cat "$WORK/run.json" "$WORK/run.err")"
expect_eq jobs "$(wc -l <"$WORK/run.json")" 4

l=$(jline "$WORK/run.json" "$split")
expect_eq "split: mode" "$(jstr "$l" mode)" negentropy
expect_eq "split: result" "$(jstr "$l" result)" ok
grep -q "too many results for the relay, splitting" "$WORK/run.err" ||
    fail "split: no window split logged: $(cat "$WORK/run.err")"

l=$(jline "$WORK/run.json" "$flaky")
expect_eq "flaky: mode" "$(jstr "$l" mode)" req
expect_eq "flaky: result" "$(jstr "$l" result)" ok
case $(jstr "$l" fallback_reason) in
"negentropy failed: NEG-ERR: closed:"*) ;;
*) fail "flaky: fallback reason: $l" ;;
esac
grep -q "^\[SYNC\] $flaky (filter notes): NEG-ERR: closed: .*; retrying once$" "$WORK/run.err" ||
    fail "flaky: no retry logged: $(cat "$WORK/run.err")"

for u in "$notice" "$silent"; do
    l=$(jline "$WORK/run.json" "$u")
    expect_eq "$u: mode" "$(jstr "$l" mode)" req
    expect_eq "$u: result" "$(jstr "$l" result)" ok
done

ids_of_db "$WORK/db" | cmp -s - "$WORK/want" || fail "local set is not the relays' union"

# Strict mode in the same setting: the two relays without NIP-77 and the
# flaky one are errors (exit 1), the splitting one is fine.
sed -i 's/^\[sync\]$/[sync]\nnegentropy_fallback = false/' "$WORK/c.ini"
"$NEGSYNC" -c "$WORK/c.ini" -d "$WORK/db2" sync --once --json >"$WORK/strict.json" \
    2>"$WORK/strict.err"
expect_eq "strict: exit" "$?" 1
expect_eq "strict: split" "$(jstr "$(jline "$WORK/strict.json" "$split")" result)" ok
for u in "$flaky" "$notice" "$silent"; do
    expect_eq "strict: $u" "$(jstr "$(jline "$WORK/strict.json" "$u")" result)" error
done
echo "ok: four relays, four right modes and outcomes in one pass"
