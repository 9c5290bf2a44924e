#!/bin/sh
# Every combination of use_negentropy x negentropy_fallback x the relays'
# negentropy = auto|on|off, end to end, against two relays at once: one with
# NIP-77, one that answers NEG-OPEN with a NOTICE. Each relay must end in the
# mode and outcome the combination means:
#
#   REQ only (use_negentropy = false and not "on", or "off")  -> req, ok
#   negentropy, relay has NIP-77                               -> negentropy, ok
#   negentropy, no NIP-77, fallback = true                     -> req, ok
#   negentropy, no NIP-77, fallback = false (strict)           -> error, nothing stored
#
# Then a fault in the middle of a multi-round session, for each way a relay
# can break one (no reply, a hang-up, garbage): the job finishes (by a retry
# or by REQ) or fails cleanly, and stores only authentic events.
. "${top_srcdir:-.}/tests/sync-lib.sh"

"$GEN" -n 400 -k 5 -s 4000 -S 81 >"$WORK/a.jsonl" || fail "gen-events"
"$GEN" -n 300 -k 5 -s 4000 -S 82 >"$WORK/b.jsonl" || fail "gen-events"
awk 'NR % 2 == 0' "$WORK/a.jsonl" >"$WORK/a-half.jsonl"
ids_of_file "$WORK/a.jsonl" >"$WORK/want-a"
{ ids_of_file "$WORK/a.jsonl"; ids_of_file "$WORK/b.jsonl"; } | sort >"$WORK/want-ab"

start_relay --events "$WORK/a.jsonl"
nip77=$RELAY_URL
start_relay --events "$WORK/b.jsonl" --no-nip77=notice
plain=$RELAY_URL

# expect URL HAS-NIP77 USE FALLBACK OVERRIDE: checks the relay's line in $WORK/$n.json.
expect() {
    _l=$(jline "$WORK/$n.json" "$1")
    case $5 in
    on) _use=1 ;;
    off) _use=0 ;;
    *) _use=$3 ;;
    esac
    if [ "$_use" = 0 ]; then
        _mode=req _res=ok
    elif [ "$2" = 1 ]; then
        _mode=negentropy _res=ok
    elif [ "$4" = 1 ]; then
        _mode=req _res=ok
    else
        _mode=req _res=error
    fi
    expect_eq "$n $1 result" "$(jstr "$_l" result)" "$_res"
    [ "$_res" = error ] && return 1
    expect_eq "$n $1 mode" "$(jstr "$_l" mode)" "$_mode"
    return 0
}

for use in 1 0; do
    for fb in 1 0; do
        for ov in auto on off; do
            n="use$use-fb$fb-$ov"
            rm -f "$WORK/$n.db"*
            "$NEGSYNC" -q -d "$WORK/$n.db" import "$WORK/a-half.jsonl" >/dev/null || fail "import"
            sync_config "$WORK/$n.ini" "use_negentropy=$([ $use = 1 ] && echo true || echo false)" \
                "negentropy_fallback=$([ $fb = 1 ] && echo true || echo false)" workers=2
            printf '[relay %s]\nnegentropy = %s\n[relay %s]\nnegentropy = %s\n[filter notes]\nkinds = 1\n' \
                "$nip77" "$ov" "$plain" "$ov" >>"$WORK/$n.ini"
            "$NEGSYNC" -c "$WORK/$n.ini" -d "$WORK/$n.db" sync --once --json >"$WORK/$n.json" \
                2>"$WORK/$n.err"
            rc=$?
            expect "$nip77" 1 "$use" "$fb" "$ov" || fail "$n: the NIP-77 relay failed"
            if expect "$plain" 0 "$use" "$fb" "$ov"; then
                expect_eq "$n exit" "$rc" 0
                ids_of_db "$WORK/$n.db" | cmp -s - "$WORK/want-ab" || fail "$n: not everything synced"
            else
                expect_eq "$n exit" "$rc" 1
                ids_of_db "$WORK/$n.db" | cmp -s - "$WORK/want-a" ||
                    fail "$n: events from the strict relay's failure, or missing ones"
            fi
        done
    done
done
relay_cleanup

# --- faults mid-session (4096-byte frames: many rounds) -----------------------
"$GEN" -n 2000 -k 8 -s 40000 -S 83 >"$WORK/m.jsonl" || fail "gen-events"
awk 'NR % 2 == 0' "$WORK/m.jsonl" >"$WORK/m-half.jsonl"
ids_of_file "$WORK/m.jsonl" >"$WORK/want-m"
for fault in "--neg-err-after 2" "--neg-close-after 2" "--drop-after 5" "--stall-after 3" \
    "--garbage 0.2"; do
    n=$(echo "$fault" | tr -d ' -.')
    rm -f "$WORK/$n.db"*
    "$NEGSYNC" -q -d "$WORK/$n.db" import "$WORK/m-half.jsonl" >/dev/null || fail "import"
    # shellcheck disable=SC2086
    start_relay --events "$WORK/m.jsonl" $fault
    sync_config "$WORK/$n.ini" frame_size_limit=4096 fetch_batch=100
    printf '[relay %s]\n[filter notes]\nkinds = 1\n' "$RELAY_URL" >>"$WORK/$n.ini"
    "$NEGSYNC" -c "$WORK/$n.ini" -d "$WORK/$n.db" sync --once --json >"$WORK/$n.json" \
        2>"$WORK/$n.err"
    rc=$?
    l=$(jline "$WORK/$n.json" "$RELAY_URL")
    ids_of_db "$WORK/$n.db" >"$WORK/$n.got"
    [ -z "$(comm -13 "$WORK/want-m" "$WORK/$n.got")" ] || fail "$fault: stored foreign events"
    case $fault in
    --drop*)
        # Every connection is dropped after 5 messages, the REQ's too: retried
        # once, then done or a clean error.
        grep -q "retrying once" "$WORK/$n.err" || fail "$fault: no retry: $(cat "$WORK/$n.err")"
        case "$rc $(jstr "$l" result)" in
        "0 ok" | "1 error") ;;
        *) fail "$fault: exit $rc, line: $l $(cat "$WORK/$n.err")" ;;
        esac
        ;;
    --stall* | --garbage*)
        # A relay that stops reading, or spoils replies: done or a clean error.
        case "$rc $(jstr "$l" result)" in
        "0 ok" | "1 error") ;;
        *) fail "$fault: exit $rc, line: $l $(cat "$WORK/$n.err")" ;;
        esac
        ;;
    *)
        expect_eq "$fault: exit" "$rc" 0
        expect_eq "$fault: result" "$(jstr "$l" result)" ok
        grep -q "retrying once" "$WORK/$n.err" || fail "$fault: no retry: $(cat "$WORK/$n.err")"
        cmp -s "$WORK/want-m" "$WORK/$n.got" || fail "$fault: not everything synced"
        ;;
    esac
    stop_relay || fail "$fault: relay did not stop cleanly"
done
echo "sync-modes: 12 configurations x 2 relays as configured; mid-session faults handled"
