#!/bin/sh
# sync-auth.sh — NIP-42 AUTH in `negsync sync`, against the test relay's
# --auth mode (DMs, kind 4, and gift wraps, kind 1059, for their owner only;
# AUTH on connect, then "auth-required:" for a NEG-OPEN or REQ naming them
# until the owner authenticates, "restricted:" for anyone else):
#
#   neg       the owner's key and auth = on-request: one AUTH per connection,
#             the NEG-OPEN that got auth-required: goes again, every event of
#             both filters is stored, the DMs by negentropy
#   req       the same with a relay without NIP-77: the REQ page goes again
#   fetch     a relay that refuses an ids fetch until AUTH (--auth-strict):
#             the notes' NEG-OPEN needs none, the fetch of what it found goes
#             again after AUTH
#   never     auth = never (the default): nothing is signed (the relay counts
#             no AUTH), the job fails with the relay's auth-required: and the
#             setting that would help; the relay is not cached as lacking
#             NIP-77 (probe still says supported), no backoff; exit 1
#   wrong     a valid key the relay does not allow: one AUTH, then the
#             relay's restricted: in the error, and the job ends
#   refused   the relay answers our AUTH with OK false "restricted: not a
#             member" (by negentropy and by REQ): one AUTH, the job ends
#             with the relay's words, no backoff, no fallback to REQ, the
#             cache unchanged; run continuously, one AUTH per try and the
#             next try at the next interval
#   unheeded  the relay answers AUTH with OK true and the NEG-OPEN sent again
#             with auth-required: once more: the job ends with its words, no
#             second AUTH
#   upload    direction = both: a DM only the local side holds is uploaded
#             after AUTH; with --auth-writes-only (reads open, an EVENT of a
#             DM kind gets OK false "auth-required:") the EVENT goes again
#             after AUTH
#   secret    the secret key (hex, nsec, or a piece of either) is in no
#             output (-v and -vv included) and not in `sqlite3 DB .dump`
#
# A key file other users may read is refused at config time:
# tests/config-auth.sh checks that.
. "${top_srcdir:-.}/tests/sync-lib.sh"

command -v sqlite3 >/dev/null || skip "no sqlite3 command line tool"

# NIP-19's example key pair: the owner. A valid key the relay does not allow.
nsec=nsec1vl029mgpspedva04g90vltkh6fvh240zqtv9k0t9af8935ke9laqsnlfe5
skhex=67dea2ed018072d675f5415ecfaed7d2597555e202d85b3d65ea4e58d2d92ffa
pkhex=7e7e9c42a91bfef19fa929e5fda1b72e0ebc1a4c1141673e2794234d86addf4e
sk2=0000000000000000000000000000000000000000000000000000000000000003

mkdir -p "$WORK/keys"
printf '%s\n' "$nsec" >"$WORK/keys/owner.key"
printf '%s\n' "$sk2" >"$WORK/keys/stranger.key"
chmod 600 "$WORK/keys/owner.key" "$WORK/keys/stranger.key"

# The relay: 40 DMs and gift wraps, 30 notes. The local side: two thirds of
# each filter's events, the newest among them, so what it lacks is found by
# negentropy rather than fetched as the tail.
"$GEN" -n 40 -K 4,1059 -s 5000 -S 61 >"$WORK/dms.jsonl" || fail "gen-events"
"$GEN" -n 30 -K 1 -s 5000 -S 62 >"$WORK/notes.jsonl" || fail "gen-events"
cat "$WORK/dms.jsonl" "$WORK/notes.jsonl" >"$WORK/relay.jsonl"
for f in dms notes; do
    sed 's/.*"created_at":\([0-9]*\).*/\1 &/' "$WORK/$f.jsonl" | sort -n | cut -d' ' -f2- |
        awk '{ l[NR] = $0 } END { for (i = 1; i <= NR; i++) if (i % 3 != 0 || i == NR) print l[i] }' \
            >"$WORK/$f.local.jsonl"
done
cat "$WORK/dms.local.jsonl" "$WORK/notes.local.jsonl" >"$WORK/local.jsonl"
# The DMs filter ends at its newest event, which the local side holds: no
# tail to fetch by REQ first, so its first message is a NEG-OPEN.
dms_until=$(tail -n 1 "$WORK/dms.local.jsonl" | sed 's/.*"created_at":\([0-9]*\).*/\1/')
[ "$(wc -l <"$WORK/local.jsonl")" -lt 70 ] || fail "the local set is not a subset"

# setup NAME: a fresh local database with the local set.
setup() {
    rm -f "$WORK/$1".db*
    "$NEGSYNC" -q -d "$WORK/$1.db" import "$WORK/local.jsonl" >/dev/null || fail "$1: import"
}

# config NAME AUTH-LINES...: relay $RELAY_URL with those lines, filters dms and notes.
config() {
    _n=$1
    shift
    sync_config "$WORK/$_n.ini"
    {
        printf '[relay %s]\n' "$RELAY_URL"
        for _l in "$@"; do
            printf '%s\n' "$_l"
        done
        printf '[filter dms]\nkinds = 4, 1059\nuntil = %s\n' "$dms_until"
        printf '[filter notes]\nkinds = 1\n'
    } >>"$WORK/$_n.ini"
}

# sync NAME [ARGS...]: negsync sync --once --json ARGS on NAME's config and
# database, within 60 s; rc, and the --json lines of each filter in $dms, $notes.
sync() {
    _n=$1
    shift
    timeout 60 "$NEGSYNC" "$@" -c "$WORK/$_n.ini" -d "$WORK/$_n.db" sync --once --json \
        >"$WORK/$_n.out" 2>"$WORK/$_n.err"
    rc=$?
    [ $rc -ne 124 ] || fail "$_n: sync did not end within 60 s"
    dms=$(jline "$WORK/$_n.out" "$RELAY_URL" dms)
    notes=$(jline "$WORK/$_n.out" "$RELAY_URL" notes)
    [ -n "$dms" ] && [ -n "$notes" ] || fail "$_n: no --json line per filter: $(cat "$WORK/$_n.out")"
}

# auth_counts: after stop_relay, "TOTAL MAX" of the AUTH messages the relay
# received (over all connections, and on the busiest one).
auth_counts() {
    tr -d ' \n' <"$RELAY_STATS" | sed 's/"total":{.*//' | grep -o '"rx":{[^}]*}' |
        sed -n 's/.*"AUTH":\([0-9]*\).*/\1/p' |
        awk '{ t += $1; if ($1 > m) m = $1 } END { print t + 0, m + 0 }'
}
# relay_auth: the relay's "auth" totals ({"ok":..,"failed":..,...}), or "".
relay_auth() {
    tr -d ' \n' <"$RELAY_STATS" | sed 's/.*"total":{//' | grep -o '"auth":{[^}]*}'
}

# stored_all NAME [FILE]: the database holds every event of the relay (and of FILE).
stored_all() {
    cat "$WORK/relay.jsonl" ${2:+"$2"} | ids_of_file /dev/stdin >"$WORK/want.ids"
    ids_of_db "$WORK/$1.db" >"$WORK/$1.ids"
    cmp -s "$WORK/want.ids" "$WORK/$1.ids" ||
        fail "$1: the database holds $(wc -l <"$WORK/$1.ids") events, the relay $(wc -l <"$WORK/want.ids")"
}

# --- neg: the owner's key; the DMs by negentropy after one AUTH ---------------
start_relay --auth 4,1059 --auth-pubkey "$pkhex" --events "$WORK/relay.jsonl"
setup neg
config neg "auth = on-request" "secret_key_file = $WORK/keys/owner.key"
sync neg
expect_eq "neg: exit" "$rc" 0
expect_eq "neg: dms result" "$(jstr "$dms" result)" ok
expect_eq "neg: dms mode" "$(jstr "$dms" mode)" negentropy
expect_eq "neg: notes mode" "$(jstr "$notes" mode)" negentropy
[ "$(jnum "$dms" need)" -gt 0 ] || fail "neg: negentropy found no DMs to fetch: $dms"
grep -q "authenticated as npub1" "$WORK/neg.err" || fail "neg: no log line of the AUTH: $(cat "$WORK/neg.err")"
stored_all neg
stop_relay || fail "neg: the relay did not stop cleanly"
expect_eq "neg: AUTH messages (total, most on one connection)" "$(auth_counts)" "1 1"
expect_eq "neg: the relay's auth counts" "$(relay_auth)" \
    '"auth":{"ok":1,"failed":0,"auth_required":1,"restricted":0}'

# --- req: a relay without NIP-77; the REQ page goes again after AUTH ----------
start_relay --auth 4,1059 --auth-pubkey "$pkhex" --events "$WORK/relay.jsonl" --no-nip77=notice
rm -f "$WORK"/req.db*
config req "auth = on-request" "secret_key_file = $WORK/keys/owner.key"
sync req
expect_eq "req: exit" "$rc" 0
expect_eq "req: dms result" "$(jstr "$dms" result)" ok
expect_eq "req: dms mode" "$(jstr "$dms" mode)" req
stored_all req
stop_relay || fail "req: the relay did not stop cleanly"
expect_eq "req: AUTH messages (total, most on one connection)" "$(auth_counts)" "1 1"
expect_eq "req: the relay's auth counts" "$(relay_auth)" \
    '"auth":{"ok":1,"failed":0,"auth_required":1,"restricted":0}'

# --- fetch: the notes reconcile without AUTH, their fetch by id needs it ------
start_relay --auth 4,1059 --auth-pubkey "$pkhex" --auth-strict --events "$WORK/relay.jsonl"
setup fetch
config fetch "auth = on-request" "secret_key_file = $WORK/keys/owner.key"
timeout 60 "$NEGSYNC" -c "$WORK/fetch.ini" -d "$WORK/fetch.db" sync --once --json --filter notes \
    >"$WORK/fetch.out" 2>"$WORK/fetch.err"
rc=$?
notes=$(jline "$WORK/fetch.out" "$RELAY_URL" notes)
expect_eq "fetch: exit" "$rc" 0
expect_eq "fetch: notes result" "$(jstr "$notes" result)" ok
expect_eq "fetch: notes mode" "$(jstr "$notes" mode)" negentropy
[ "$(jnum "$notes" need)" -gt 0 ] || fail "fetch: negentropy found nothing to fetch: $notes"
expect_eq "fetch: stored" "$(jnum "$notes" stored)" "$(jnum "$notes" need)"
ids_of_file "$WORK/notes.jsonl" >"$WORK/fetch.want"
"$NEGSYNC" -d "$WORK/fetch.db" export --filter '{"kinds":[1]}' |
    sed -n 's/^{"id":"\([0-9a-f]\{64\}\)".*/\1/p' | sort >"$WORK/fetch.ids"
cmp -s "$WORK/fetch.want" "$WORK/fetch.ids" || fail "fetch: the notes are not all stored"
stop_relay || fail "fetch: the relay did not stop cleanly"
expect_eq "fetch: AUTH messages" "$(auth_counts)" "1 1"
expect_eq "fetch: the relay's auth counts" "$(relay_auth)" \
    '"auth":{"ok":1,"failed":0,"auth_required":1,"restricted":0}'

# --- never: nothing signed, auth-required: said, NIP-77 still supported ---------
start_relay --auth 4,1059 --auth-pubkey "$pkhex" --events "$WORK/relay.jsonl"
setup never
config never "secret_key_file = $WORK/keys/owner.key"
sync never
expect_eq "never: exit" "$rc" 1
expect_eq "never: notes result" "$(jstr "$notes" result)" ok
expect_eq "never: dms result" "$(jstr "$dms" result)" error
case $dms in
*'"error":"auth-required: the relay answered NEG-OPEN with NEG-ERR \"auth-required: '*'set auth = on-request and secret_key_file'*) ;;
*) fail "never: the error does not say auth-required and what to set: $dms" ;;
esac
case $dms in
*backoff*) fail "never: auth-required counted as a refusal (backoff): $dms" ;;
esac
grep -q "auth-required" "$WORK/never.err" || fail "never: no log line: $(cat "$WORK/never.err")"
grep -q "Using REQ" "$WORK/never.err" && fail "never: fell back to REQ: $(cat "$WORK/never.err")"
timeout 30 "$NEGSYNC" -c "$WORK/never.ini" -d "$WORK/never.db" probe --json "$RELAY_URL" \
    >"$WORK/never.probe" 2>&1 || fail "never: probe failed: $(cat "$WORK/never.probe")"
case $(cat "$WORK/never.probe") in
*'"negentropy":"supported"'*'"cached":true'* | *'"cached":true'*'"negentropy":"supported"'*) ;;
*) fail "never: the cache no longer says supported: $(cat "$WORK/never.probe")" ;;
esac
"$NEGSYNC" -c "$WORK/never.ini" -d "$WORK/never.db" status >"$WORK/never.status" 2>&1 ||
    fail "never: status failed: $(cat "$WORK/never.status")"
grep -q "needs AUTH for dms" "$WORK/never.status" ||
    fail "never: status does not say the relay needs AUTH: $(cat "$WORK/never.status")"
stop_relay || fail "never: the relay did not stop cleanly"
expect_eq "never: AUTH messages" "$(auth_counts)" "0 0"

# --- wrong: a key the relay does not allow: restricted:, one AUTH, the end ----
start_relay --auth 4,1059 --auth-pubkey "$pkhex" --events "$WORK/relay.jsonl"
setup wrong
config wrong "auth = on-request" "secret_key_file = $WORK/keys/stranger.key"
t0=$(date +%s)
sync wrong
t1=$(date +%s)
expect_eq "wrong: exit" "$rc" 1
expect_eq "wrong: dms result" "$(jstr "$dms" result)" error
case $dms in
*'"error":"restricted: the relay answered NEG-OPEN with NEG-ERR \"restricted: '*'authenticated as npub1'*) ;;
*) fail "wrong: the error is not the relay's restricted: $dms" ;;
esac
[ $((t1 - t0)) -lt 20 ] || fail "wrong: the sync took $((t1 - t0)) s"
stop_relay || fail "wrong: the relay did not stop cleanly"
expect_eq "wrong: AUTH messages" "$(auth_counts)" "1 1"
expect_eq "wrong: the relay's auth counts" "$(relay_auth)" \
    '"auth":{"ok":1,"failed":0,"auth_required":1,"restricted":1}'

# --- refused: the relay answers our AUTH with OK false (a member list) ----------
# By negentropy and by REQ (a relay without NIP-77): the job ends at once
# with the relay's words, after one AUTH, no fallback to REQ, no backoff, and
# the relay stays cached as it was.
for mode in neg req; do
    if [ $mode = neg ]; then
        start_relay --auth 4,1059 --auth-pubkey "$pkhex" --events "$WORK/relay.jsonl" \
            --auth-refuse "restricted: not a member"
    else
        start_relay --auth 4,1059 --auth-pubkey "$pkhex" --events "$WORK/relay.jsonl" \
            --auth-refuse "restricted: not a member" --no-nip77=notice
    fi
    n=refused-$mode
    setup $n
    config $n "auth = on-request" "secret_key_file = $WORK/keys/owner.key"
    t0=$(date +%s)
    sync $n
    t1=$(date +%s)
    expect_eq "$n: exit" "$rc" 1
    expect_eq "$n: notes result" "$(jstr "$notes" result)" ok
    expect_eq "$n: dms result" "$(jstr "$dms" result)" error
    case $dms in
    *'"error":"AUTH refused: the relay answered AUTH as npub1'*' with OK false \"restricted: not a member\""'*) ;;
    *) fail "$n: the error is not the relay's refusal of our AUTH: $dms" ;;
    esac
    case $dms in
    *backoff*) fail "$n: a refused AUTH counted as a refusal (backoff): $dms" ;;
    esac
    grep -q "AUTH refused" "$WORK/$n.err" || fail "$n: no log line: $(cat "$WORK/$n.err")"
    if [ $mode = neg ]; then
        expect_eq "$n: dms mode" "$(jstr "$dms" mode)" negentropy
        grep -q "Using REQ" "$WORK/$n.err" && fail "$n: fell back to REQ: $(cat "$WORK/$n.err")"
        timeout 30 "$NEGSYNC" -c "$WORK/$n.ini" -d "$WORK/$n.db" probe --json "$RELAY_URL" \
            >"$WORK/$n.probe" 2>&1 || fail "$n: probe failed: $(cat "$WORK/$n.probe")"
        case $(cat "$WORK/$n.probe") in
        *'"negentropy":"supported"'*'"cached":true'* | *'"cached":true'*'"negentropy":"supported"'*) ;;
        *) fail "$n: the cache no longer says supported: $(cat "$WORK/$n.probe")" ;;
        esac
    else
        expect_eq "$n: dms mode" "$(jstr "$dms" mode)" req
    fi
    [ $((t1 - t0)) -lt 20 ] || fail "$n: the sync took $((t1 - t0)) s"
    stop_relay || fail "$n: the relay did not stop cleanly"
    expect_eq "$n: AUTH messages (total, most on one connection)" "$(auth_counts)" "1 1"
    expect_eq "$n: the relay's auth counts" "$(relay_auth)" \
        '"auth":{"ok":0,"failed":1,"auth_required":1,"restricted":0}'
done

# --- refused, running continuously every 2 s: one try per interval ------------
# No storm: each try signs once, on its own connection, and the next comes at
# the next interval. The result lines with the time each arrived (ms).
start_relay --auth 4,1059 --auth-pubkey "$pkhex" --events "$WORK/relay.jsonl" \
    --auth-refuse "restricted: not a member"
setup cont
config cont "auth = on-request" "secret_key_file = $WORK/keys/owner.key"
sed -i 's/^\[sync\]$/[sync]\ninterval = 2/' "$WORK/cont.ini"
{
    "$NEGSYNC" -c "$WORK/cont.ini" -d "$WORK/cont.db" sync --json 2>"$WORK/cont.err" &
    echo $! >"$WORK/cont.pid"
    wait
} | while IFS= read -r line; do
    echo "$(($(date +%s%N) / 1000000)) $line"
done >"$WORK/cont.out" &
cont=$!
deadline=$(($(date +%s) + 40))
while [ "$(grep -c '"filter":"dms"' "$WORK/cont.out")" -lt 3 ]; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "cont: fewer than 3 tries of dms in 40 s"
    sleep 0.1 2>/dev/null || sleep 1
done
kill -TERM "$(cat "$WORK/cont.pid")" || fail "cont: negsync is gone"
wait "$cont"
grep '"filter":"dms"' "$WORK/cont.out" >"$WORK/cont.dms"
tries=$(grep -c . "$WORK/cont.dms")
grep -v '"error":"AUTH refused: .*restricted: not a member' "$WORK/cont.dms" &&
    fail "cont: a try did not end with the relay's refusal"
grep -q backoff "$WORK/cont.dms" && fail "cont: a refused AUTH backed off"
# A relay's run is due an interval after its last one ended: 2 s or more
# between tries (1.5 s allows for the clock reads of this shell).
for i in 2 3; do
    gap=$(($(sed -n "${i}p" "$WORK/cont.dms" | cut -d' ' -f1) -
        $(sed -n "$((i - 1))p" "$WORK/cont.dms" | cut -d' ' -f1)))
    [ "$gap" -ge 1500 ] || fail "cont: try $i came $gap ms after the one before (interval 2 s)"
done
stop_relay || fail "cont: the relay did not stop cleanly"
# One AUTH per try, each on its own connection (a try cut short by the
# SIGTERM may have sent one more).
set -- $(auth_counts)
[ "$2" = 1 ] || fail "cont: $2 AUTH messages on one connection"
[ "$1" -ge "$tries" ] && [ "$1" -le $((tries + 1)) ] ||
    fail "cont: $1 AUTH messages for $tries tries"

# --- unheeded: the relay says OK to our AUTH, then auth-required: again --------
# The retried NEG-OPEN is refused as the first was: the job ends with the
# relay's words and signs nothing more.
start_relay --auth 4,1059 --auth-pubkey "$pkhex" --events "$WORK/relay.jsonl" --auth-unheeded
setup unheeded
config unheeded "auth = on-request" "secret_key_file = $WORK/keys/owner.key"
t0=$(date +%s)
sync unheeded
t1=$(date +%s)
expect_eq "unheeded: exit" "$rc" 1
expect_eq "unheeded: dms result" "$(jstr "$dms" result)" error
case $dms in
*'"error":"auth-required after AUTH as npub1'*': the relay answered NEG-OPEN with NEG-ERR \"auth-required: '*) ;;
*) fail "unheeded: the error is not the relay's second auth-required: $dms" ;;
esac
case $dms in
*backoff*) fail "unheeded: counted as a refusal (backoff): $dms" ;;
esac
grep -q "Using REQ" "$WORK/unheeded.err" && fail "unheeded: fell back to REQ: $(cat "$WORK/unheeded.err")"
[ $((t1 - t0)) -lt 20 ] || fail "unheeded: the sync took $((t1 - t0)) s"
stop_relay || fail "unheeded: the relay did not stop cleanly"
expect_eq "unheeded: AUTH messages" "$(auth_counts)" "1 1"
expect_eq "unheeded: the relay's auth counts" "$(relay_auth)" \
    '"auth":{"ok":1,"failed":0,"auth_required":2,"restricted":0}'

# --- upload: a DM only the local side has goes up after AUTH ---------------------
"$GEN" -n 1 -K 4 -t 1700000100 -s 1 -S 63 >"$WORK/mine.jsonl" || fail "gen-events"
mine=$(ids_of_file "$WORK/mine.jsonl")
for mode in neg writes; do
    rm -f "$WORK/up-$mode".*db*
    "$NEGSYNC" -q -d "$WORK/up-$mode.relay.db" import "$WORK/relay.jsonl" >/dev/null ||
        fail "up-$mode: relay import"
    setup "up-$mode"
    "$NEGSYNC" -q -d "$WORK/up-$mode.db" import "$WORK/mine.jsonl" >/dev/null ||
        fail "up-$mode: import"
    if [ $mode = writes ]; then
        start_relay --auth 4,1059 --auth-pubkey "$pkhex" --auth-writes-only \
            --db "$WORK/up-$mode.relay.db"
    else
        start_relay --auth 4,1059 --auth-pubkey "$pkhex" --db "$WORK/up-$mode.relay.db"
    fi
    config "up-$mode" "auth = on-request" "secret_key_file = $WORK/keys/owner.key" \
        "direction = both"
    sync "up-$mode"
    expect_eq "up-$mode: exit" "$rc" 0
    expect_eq "up-$mode: dms mode" "$(jstr "$dms" mode)" negentropy
    expect_eq "up-$mode: uploaded" "$(jnum "$dms" uploaded)" 1
    expect_eq "up-$mode: upload rejected" "$(jnum "$dms" upload_rejected)" 0
    stored_all "up-$mode" "$WORK/mine.jsonl"
    stop_relay || fail "up-$mode: the relay did not stop cleanly"
    expect_eq "up-$mode: AUTH messages" "$(auth_counts)" "1 1"
    # neg: the NEG-OPEN asked for AUTH; writes: the EVENT did.
    expect_eq "up-$mode: the relay's auth counts" "$(relay_auth)" \
        '"auth":{"ok":1,"failed":0,"auth_required":1,"restricted":0}'
    "$NEGSYNC" -d "$WORK/up-$mode.relay.db" export --filter '{"kinds":[4]}' |
        grep -q "\"id\":\"$mine\"" || fail "up-$mode: the relay does not hold the uploaded DM"
done

# --- secret: -v and -vv runs too, then every output and database ---------------
start_relay --auth 4,1059 --auth-pubkey "$pkhex" --events "$WORK/relay.jsonl"
for v in v vv; do
    setup "verbose-$v"
    config "verbose-$v" "auth = on-request" "secret_key_file = $WORK/keys/owner.key"
    sync "verbose-$v" -$v
    expect_eq "-$v: exit" "$rc" 0
    if [ $v = vv ]; then
        grep -q '"AUTH"' "$WORK/verbose-$v.err" || fail "-vv: the AUTH message is not traced"
    fi
done
stop_relay || fail "secret: the relay did not stop cleanly"
for db in "$WORK"/*.db; do
    sqlite3 "$db" .dump >"$db.dump" || fail "sqlite3 $db .dump"
done
set -- "$WORK"/*.out "$WORK"/*.err "$WORK"/*.dump "$WORK"/*.probe "$WORK"/*.status
for s in "$skhex" "$nsec" "$sk2"; do
    if grep -liF -- "$s" "$@"; then
        fail "a secret key appears in the files above"
    fi
done
for i in 0 16 32 48; do
    piece=$(printf '%s' "$skhex" | cut -c$((i + 1))-$((i + 16)))
    npiece=$(printf '%s' "$nsec" | cut -c$((i + 6))-$((i + 21)))
    if grep -liF -e "$piece" -e "$npiece" "$@"; then
        fail "part of the secret key appears in the files above"
    fi
done
exit 0
