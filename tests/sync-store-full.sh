#!/bin/sh
# A store that cannot write (a full disk; here a trigger that makes every
# insert past the first 600 events fail with SQLite's "database or disk is
# full") ends the job with result error and the store's message, instead of
# downloading everything it can no longer store. The relay (no NIP-77) holds
# 10 000 events; the first transaction of queued events (2 048) fails long
# before the job has paged through them all.
. "${top_srcdir:-.}/tests/sync-lib.sh"
command -v sqlite3 >/dev/null || fail "sqlite3 (the command) is needed: apt-get install sqlite3"

"$GEN" -n 10000 -k 5 -t 1700000000 -s 10000 -S 61 >"$WORK/ev.jsonl" || fail "gen-events"
head -n 1 "$WORK/ev.jsonl" >"$WORK/one.jsonl"
"$NEGSYNC" -q -d "$WORK/a.db" import "$WORK/one.jsonl" >/dev/null || fail "import"
sqlite3 "$WORK/a.db" "CREATE TRIGGER disk_full BEFORE INSERT ON events
    WHEN (SELECT count(*) FROM events) >= 600
    BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END;" || fail "sqlite3 trigger"

start_relay --events "$WORK/ev.jsonl" --no-nip77=notice
sync_config "$WORK/a.ini"
printf '[relay %s]\n[filter all]\nkinds = 1\n' "$RELAY_URL" >>"$WORK/a.ini"
rc=0
timeout 120 "$NEGSYNC" -c "$WORK/a.ini" -d "$WORK/a.db" sync --once --json >"$WORK/a.json" \
    2>"$WORK/a.err" || rc=$?
l=$(jline "$WORK/a.json" "$RELAY_URL")
expect_eq "exit status" "$rc" 1
expect_eq "result" "$(jstr "$l" result)" error
case $(jstr "$l" error) in
"store: "*"disk is full"*) ;;
*) fail "the error is not the store's: $l" ;;
esac
fetched=$(jnum "$l" fetched)
[ "$fetched" -lt 10000 ] || fail "downloaded all $fetched events it could not store: $l"
n=$(ids_of_db "$WORK/a.db" | wc -l)
[ "$n" -lt 600 ] || fail "$n events stored past the full disk"
stop_relay
echo "ok: a store write failure ended the job after $fetched of 10000 events"
