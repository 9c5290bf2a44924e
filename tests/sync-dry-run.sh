#!/bin/sh
# `negsync sync --dry-run` answers "how far behind am I on each relay"
# without changing anything. The local database holds 300 events both sides
# have and 300 of its own; relay A (NIP-77, direction both) and relay B
# (REQ only, direction down; the cache says it speaks NIP-77, it refuses
# NEG-OPEN now) hold the 300 common ones, 300 the database lacks and 60
# newer than every local event (the tail). Then:
#
#   (a) the database file is byte-identical after the dry run (cmp, and its
#       .dump), and no -wal or -shm file is left: no event, cursor, run
#       record or capability verdict was written;
#   (b) would_fetch is what a real `sync --once` from the same database then
#       fetches and stores, for A (by negentropy, tail included) and for B
#       (by REQ after the refusal);
#   (c) --ids lists exactly the missing ids, and A's upload ids exactly the
#       local-only ones (computed with sqlite3 and the relays' event files);
#   (d) would_upload (direction both) is the local-only count, and a real
#       run then uploads that many;
#   (e) neither relay received an EVENT during the dry run;
#   (f) --ids without --dry-run, --dry-run on a command without it, and a
#       dry run without a database are refused with a clear error, creating
#       nothing.
. "${top_srcdir:-.}/tests/sync-lib.sh"

command -v sqlite3 >/dev/null || fail "sqlite3 (the command) is needed: apt-get install sqlite3"

"$GEN" -n 900 -k 5 -s 9000 -S 61 >"$WORK/all.jsonl" || fail "gen-events"
"$GEN" -n 60 -k 5 -t 1700100000 -s 600 -S 62 >"$WORK/new.jsonl" || fail "gen-events (new)"
awk 'NR % 3 == 0' "$WORK/all.jsonl" >"$WORK/both.jsonl"
awk 'NR % 3 == 1' "$WORK/all.jsonl" >"$WORK/local-only.jsonl"
awk 'NR % 3 == 2' "$WORK/all.jsonl" >"$WORK/relay-only.jsonl"
cat "$WORK/both.jsonl" "$WORK/relay-only.jsonl" "$WORK/new.jsonl" >"$WORK/relay.jsonl"

DB="$WORK/local.db"
"$NEGSYNC" -d "$DB" import "$WORK/both.jsonl" >/dev/null || fail "import both"
"$NEGSYNC" -d "$DB" import "$WORK/local-only.jsonl" >/dev/null || fail "import local-only"

# The missing ids and the local-only ones, from the files and the database itself.
ids_of_file "$WORK/relay.jsonl" >"$WORK/relay.ids"
sqlite3 "$DB" "SELECT lower(hex(id)) FROM events" | sort >"$WORK/local.ids"
[ "$(wc -l <"$WORK/local.ids")" -eq 600 ] || fail "sqlite3 lists $(wc -l <"$WORK/local.ids") ids"
comm -23 "$WORK/relay.ids" "$WORK/local.ids" >"$WORK/missing.ids"
comm -13 "$WORK/relay.ids" "$WORK/local.ids" >"$WORK/local-only.ids"
expect_eq "missing ids" "$(wc -l <"$WORK/missing.ids")" 360
expect_eq "local-only ids" "$(wc -l <"$WORK/local-only.ids")" 300

# jids LINE KEY: the ids of a --json line's array KEY, sorted, one a line.
jids() {
    printf '%s\n' "$1" | sed -n "s/.*\"$2\":\[\([^]]*\)\].*/\1/p" | tr ',' '\n' | tr -d '"' |
        sed '/^$/d' | sort
}

# rx_events PID STATS: the EVENT messages that relay received (its stats, now) in $rx.
rx_events() {
    relay_stats_snapshot "$1" "$2"
    _rx=$(tr -d ' \n' <"$2" | sed 's/.*"total":{//' | grep -o '"rx":{[^}]*}')
    [ -n "$_rx" ] || fail "no relay stats: $(cat "$2")"
    rx=$(printf '%s\n' "$_rx" | sed -n 's/.*"EVENT":\([0-9]*\).*/\1/p')
}

# Relay B speaks NIP-77 when the database's capability cache learns of it...
start_relay --events "$WORK/relay.jsonl"
B_PORT=$RELAY_PORT
B=$RELAY_URL
sync_config "$WORK/b.ini"
printf '[relay %s]\n[filter notes]\nkinds = 1\n' "$B" >>"$WORK/b.ini"
"$NEGSYNC" -c "$WORK/b.ini" -d "$DB" probe >"$WORK/probe.out" 2>&1 ||
    fail "probe: $(cat "$WORK/probe.out")"
stop_relay || fail "relay B did not stop cleanly"
[ "$(sqlite3 "$DB" "SELECT supported FROM relay_caps")" = 1 ] ||
    fail "the cache does not say B speaks NIP-77: $(sqlite3 "$DB" "SELECT * FROM relay_caps")"
# ... and refuses NEG-OPEN since.
start_relay --port "$B_PORT" --events "$WORK/relay.jsonl" --no-nip77=notice
B_PID=$RELAY_PID
B_STATS=$RELAY_STATS
start_relay --db "$WORK/relay-a.db" --events "$WORK/relay.jsonl"
A=$RELAY_URL
A_PID=$RELAY_PID
A_STATS=$RELAY_STATS

sync_config "$WORK/sync.ini" direction=both fetch_batch=50
printf '[relay %s]\n[relay %s]\ndirection = down\n[filter notes]\nkinds = 1\n' "$A" "$B" \
    >>"$WORK/sync.ini"

# (a) The dry run changes nothing.
[ ! -e "$DB-wal" ] && [ ! -e "$DB-shm" ] || fail "a -wal or -shm file before the dry run"
cp "$DB" "$WORK/before.db"
sqlite3 "$DB" .dump >"$WORK/before.dump" || fail "sqlite3 .dump"
timeout 60 "$NEGSYNC" -c "$WORK/sync.ini" -d "$DB" sync --dry-run --json --ids \
    >"$WORK/dry.json" 2>"$WORK/dry.err"
rc=$?
[ $rc -ne 124 ] || fail "the dry run did not finish within 60 s"
expect_eq "dry run exit ($(cat "$WORK/dry.err"))" $rc 0
cmp -s "$DB" "$WORK/before.db" || fail "the dry run changed the database file"
sqlite3 "$DB" .dump >"$WORK/after.dump" || fail "sqlite3 .dump"
cmp -s "$WORK/before.dump" "$WORK/after.dump" ||
    fail "the dry run changed the database: $(diff "$WORK/before.dump" "$WORK/after.dump" | head)"
[ ! -e "$DB-wal" ] && [ ! -e "$DB-shm" ] || fail "the dry run left a -wal or -shm file"
# The file is opened read only, so a write would fail rather than land: none was tried.
! grep -q "cannot" "$WORK/dry.err" || fail "the dry run tried to write: $(cat "$WORK/dry.err")"

la=$(jline "$WORK/dry.json" "$A")
lb=$(jline "$WORK/dry.json" "$B")
[ -n "$la" ] && [ -n "$lb" ] || fail "no JSON line per relay: $(cat "$WORK/dry.json" "$WORK/dry.err")"
for v in "A:$la" "B:$lb"; do
    case ${v#?:} in
    *'"dry_run":true'*) ;;
    *) fail "${v%%:*}: no dry_run in $v" ;;
    esac
    expect_eq "${v%%:*} result" "$(jstr "${v#?:}" result)" ok
    expect_eq "${v%%:*} stored" "$(jnum "${v#?:}" stored)" 0
    expect_eq "${v%%:*} uploaded" "$(jnum "${v#?:}" uploaded)" 0
done
expect_eq "A mode" "$(jstr "$la" mode)" negentropy
expect_eq "B mode" "$(jstr "$lb" mode)" req
case $lb in
*'"fallback_reason":"no NIP-77: '*'negentropy disabled'*) ;;
*) fail "B: the refusal is not the fallback reason: $lb" ;;
esac
# Negentropy named the missing events, tail included; nothing was downloaded.
expect_eq "A would_fetch" "$(jnum "$la" would_fetch)" 360
expect_eq "A need" "$(jnum "$la" need)" 360
expect_eq "A fetched" "$(jnum "$la" fetched)" 0
expect_eq "A would_upload" "$(jnum "$la" would_upload)" 300
expect_eq "B would_fetch" "$(jnum "$lb" would_fetch)" 360
expect_eq "B would_upload" "$(jnum "$lb" would_upload)" 0

# (c) The ids.
jids "$la" fetch_ids >"$WORK/a-fetch.ids"
jids "$lb" fetch_ids >"$WORK/b-fetch.ids"
jids "$la" upload_ids >"$WORK/a-upload.ids"
cmp -s "$WORK/a-fetch.ids" "$WORK/missing.ids" || fail "A's fetch_ids are not the missing ids"
cmp -s "$WORK/b-fetch.ids" "$WORK/missing.ids" || fail "B's fetch_ids are not the missing ids"
cmp -s "$WORK/a-upload.ids" "$WORK/local-only.ids" ||
    fail "A's upload_ids are not the local-only ids"
case $lb in
*'"upload_ids":[]'*) ;;
*) fail "B (direction down): upload_ids not empty: $lb" ;;
esac

# (e) Neither relay was sent an event; A's database is as it was.
rx_events "$A_PID" "$A_STATS"
expect_eq "A: EVENTs received" "$rx" ""
rx_events "$B_PID" "$B_STATS"
expect_eq "B: EVENTs received" "$rx" ""
ids_of_db "$WORK/relay-a.db" >"$WORK/relay-a.ids"
cmp -s "$WORK/relay-a.ids" "$WORK/relay.ids" || fail "relay A's set changed in the dry run"

# The human form: a line per job, the ids under it, the dry run's table.
"$NEGSYNC" -c "$WORK/sync.ini" -d "$DB" sync --dry-run --ids --relay "$A" >"$WORK/dry.txt" \
    2>"$WORK/dry-txt.err" || fail "dry run (text): $(cat "$WORK/dry.txt" "$WORK/dry-txt.err")"
grep -q "^$A notes: negentropy, .*would fetch 360, would upload 300, .*(dry run)" "$WORK/dry.txt" ||
    fail "no dry run line: $(cat "$WORK/dry.txt")"
sed -n 's/^  fetch //p' "$WORK/dry.txt" | sort | cmp -s - "$WORK/missing.ids" ||
    fail "the text form's fetch ids are not the missing ids"
expect_eq "upload lines" "$(grep -c '^  upload [0-9a-f]\{64\}$' "$WORK/dry.txt")" 300
grep -q "WOULD FETCH" "$WORK/dry.txt" || fail "no dry run table: $(cat "$WORK/dry.txt")"
grep -q "dry run: nothing will be stored" "$WORK/dry-txt.err" ||
    fail "stderr does not say it is a dry run: $(cat "$WORK/dry-txt.err")"
cmp -s "$DB" "$WORK/before.db" || fail "the second dry run changed the database file"

# (b), (d) A real run from the same database fetches and stores what the dry run said.
for r in A B; do
    cp "$WORK/before.db" "$WORK/real-$r.db" || fail "cp"
    eval url=\$$r
    eval dl=\$l$(echo $r | tr AB ab)
    timeout 60 "$NEGSYNC" -c "$WORK/sync.ini" -d "$WORK/real-$r.db" sync --once --json \
        --relay "$url" >"$WORK/real-$r.json" 2>"$WORK/real-$r.err"
    rc=$?
    [ $rc -ne 124 ] || fail "$r: the real run did not finish within 60 s"
    l=$(jline "$WORK/real-$r.json" "$url")
    expect_eq "$r real exit ($l $(cat "$WORK/real-$r.err"))" $rc 0
    case $l in
    *dry_run*) fail "$r: a real run says dry_run: $l" ;;
    esac
    # REQ's fetched counts every valid event a page brought, stored or not.
    [ $r = B ] || expect_eq "$r real fetched" "$(jnum "$l" fetched)" "$(jnum "$dl" would_fetch)"
    expect_eq "$r real stored" "$(jnum "$l" stored)" "$(jnum "$dl" would_fetch)"
    expect_eq "$r real uploaded" "$(jnum "$l" uploaded)" "$(jnum "$dl" would_upload)"
done

# The real run's uploads are what the relay's stats count (so the zero above means none).
rx_events "$A_PID" "$A_STATS"
expect_eq "A: EVENTs received from the real run" "$rx" 300

# (f) Bad combinations, and no database: a clear error, nothing created.
"$NEGSYNC" -c "$WORK/sync.ini" -d "$DB" sync --ids >"$WORK/f.out" 2>"$WORK/f.err"
expect_eq "--ids alone: exit" $? 2
grep -q -- "--ids .*needs --dry-run" "$WORK/f.err" || fail "--ids alone: $(cat "$WORK/f.err")"
for cmd in probe status export tui; do
    "$NEGSYNC" -c "$WORK/sync.ini" -d "$DB" $cmd --dry-run >"$WORK/f.out" 2>"$WORK/f.err"
    expect_eq "$cmd --dry-run: exit" $? 2
    grep -q -- "dry-run" "$WORK/f.err" || fail "$cmd --dry-run: $(cat "$WORK/f.err")"
done
"$NEGSYNC" -c "$WORK/sync.ini" -d "$WORK/nodir/none.db" sync --dry-run >"$WORK/f.out" \
    2>"$WORK/f.err"
expect_eq "no database: exit" $? 1
grep -q "no dry run: .*none.db" "$WORK/f.err" || fail "no database: $(cat "$WORK/f.err")"
[ ! -e "$WORK/nodir" ] || fail "the dry run created the database's directory"
cmp -s "$DB" "$WORK/before.db" || fail "a refused command changed the database file"
exit 0
