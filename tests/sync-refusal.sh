#!/bin/sh
# A relay probed and cached as supporting NIP-77 later turns it off (strfry
# with negentropy.enabled = false answers NEG-OPEN with
# ["NOTICE","ERROR: bad msg: negentropy disabled"]): the next sync falls back
# to REQ with the relay's own reason, and the capability cache says
# "unsupported" from then on, so `negsync probe` (and the next sync) agree
# without a retry. Checked for a plain URL and for one written in the config
# with a path and a query (the cache key is the one URL form). A failure
# after the relay answered NEG-MSG (NEG-ERR "closed: ...") stays a session
# failure: the cache still says "supported".
. "${top_srcdir:-.}/tests/sync-lib.sh"

CAPS="$top_builddir/tests/test-caps"
[ -x "$CAPS" ] || fail "no $CAPS: run make check"

"$GEN" -n 200 -k 3 -s 3000 -S 7 >"$WORK/relay.jsonl" || fail "gen-events"

# field KEY: KEY of the JSON line in $WORK/out.
field() {
    "$CAPS" json-field "$1" <"$WORK/out" || fail "no $1 in: $(cat "$WORK/out")"
}

# sync_once NAME URL: sync $WORK/$NAME.db from URL (as written in the config);
# the --json line in $l.
sync_once() {
    sync_config "$WORK/$1.ini"
    printf '[relay %s]\n[filter all]\nkinds = 1\n' "$2" >>"$WORK/$1.ini"
    timeout 60 "$NEGSYNC" -c "$WORK/$1.ini" -d "$WORK/$1.db" sync --once --json \
        >"$WORK/$1.json" 2>"$WORK/$1.err"
    rc=$?
    [ $rc -ne 124 ] || fail "$1: sync did not finish within 60 s"
    l=$(tail -n 1 "$WORK/$1.json")
}

# probe_cached NAME URL: what the cache of $WORK/$NAME.db says of URL (no check).
probe_cached() {
    timeout 60 "$NEGSYNC" -c "$WORK/$1.ini" -d "$WORK/$1.db" probe --json "$2" \
        >"$WORK/out" 2>"$WORK/$1.probe.err" || fail "$1: probe $2 failed: $(cat "$WORK/out")"
}

for tail in "" "/x/?a=1"; do
    name=plain
    [ -z "$tail" ] || name=path
    start_relay --events "$WORK/relay.jsonl"
    port=$RELAY_PORT
    url="$RELAY_URL$tail"

    sync_once "$name" "$url"
    expect_eq "$name: first sync mode" "$(jstr "$l" mode)" negentropy
    probe_cached "$name" "$url"
    expect_eq "$name: cached after the first sync" "$(field negentropy)" supported
    expect_eq "$name: from the cache" "$(field cached)" true
    stop_relay || fail "$name: relay did not stop cleanly"

    # The same relay, NIP-77 now off.
    start_relay --port "$port" --events "$WORK/relay.jsonl" --no-nip77=notice
    sync_once "$name" "$url"
    expect_eq "$name: exit" "$rc" 0
    expect_eq "$name: mode" "$(jstr "$l" mode)" req
    case $l in
    *"negentropy failed"*) fail "$name: the refusal was taken for a failure: $l" ;;
    *"negentropy disabled"*) ;;
    *) fail "$name: fallback reason does not quote the relay: $l" ;;
    esac
    grep -q "retrying once" "$WORK/$name.err" && fail "$name: a refusal was retried"
    probe_cached "$name" "$url"
    expect_eq "$name: cache after the refusal" "$(field negentropy)" unsupported
    expect_eq "$name: cached" "$(field cached)" true
    case $(field reason) in
    *"negentropy disabled"*) ;;
    *) fail "$name: cached reason is not the relay's: $(cat "$WORK/out")" ;;
    esac
    stop_relay || fail "$name: relay did not stop cleanly"
done

# A session failure after the relay answered (the connection drops under the
# fetches of what its first NEG-MSG named): not a verdict on NIP-77.
start_relay --events "$WORK/relay.jsonl" --drop-after 1
sync_once late2 "$RELAY_URL"
grep -q "retrying once" "$WORK/late2.err" || fail "late: no session failure: $(cat "$WORK/late2.err")"
probe_cached late2 "$RELAY_URL"
expect_eq "late: cache after a failure mid-session" "$(field negentropy)" supported
stop_relay
exit 0
