#!/bin/sh
# The TUI and NIP-42 AUTH, against the test relay's --auth mode (DMs, kinds 4
# and 1059, for their owner only; notes, kind 1, for anyone), a first sync
# into an empty database:
#
#   never     auth = never (the default), at 100x30 and at 80x24: the row
#             says "needs AUTH" (no backoff), the detail the verdict "NIP-77
#             supported; needs AUTH for filter dms" (cut at the screen's
#             edge) and the dms filter's error after the setting that would
#             let it through (whole in the Enter view); nothing is signed
#             (the relay counts no AUTH)
#   refused   the owner's key, but the relay refuses the AUTH itself (OK
#             false): "AUTH failed", the relay's words in the detail
#   key       auth = on-request and the owner's key: one AUTH, the relay
#             synced (every event fetched), no AUTH error anywhere
. "${top_srcdir:-.}/tests/sync-lib.sh"
. "$top_srcdir/tests/tui-lib.sh"

# NIP-19's example key pair: the owner of the DMs.
nsec=nsec1vl029mgpspedva04g90vltkh6fvh240zqtv9k0t9af8935ke9laqsnlfe5
pkhex=7e7e9c42a91bfef19fa929e5fda1b72e0ebc1a4c1141673e2794234d86addf4e
printf '%s\n' "$nsec" >"$WORK/owner.key"
chmod 600 "$WORK/owner.key"

"$GEN" -n 40 -K 4,1059 -s 5000 -S 61 >"$WORK/dms.jsonl" || fail "gen-events"
"$GEN" -n 30 -K 1 -s 5000 -S 62 >"$WORK/notes.jsonl" || fail "gen-events"
cat "$WORK/dms.jsonl" "$WORK/notes.jsonl" >"$WORK/relay.jsonl"

# config NAME RELAY-LINES...: $RELAY_URL with those lines, filters dms and notes.
config() {
    _n=$1
    shift
    sync_config "$WORK/$_n.ini"
    {
        printf '[relay %s]\n' "$RELAY_URL"
        for _l in "$@"; do
            printf '%s\n' "$_l"
        done
        printf '[filter dms]\nkinds = 4, 1059\n[filter notes]\nkinds = 1\n'
    } >>"$WORK/$_n.ini"
}

# auth_rx: the AUTH messages the relay has received, over all connections.
auth_rx() {
    relay_stats_snapshot
    tr -d ' \n' <"$RELAY_STATS" | sed 's/.*"total":{//' | grep -o '"rx":{[^}]*}' |
        sed -n 's/.*"AUTH":\([0-9]*\).*/\1/p' | awk '{ t += $1 } END { print t + 0 }'
}

# no_line DESC REGEX: no line of the last capture matches.
no_line() {
    if grep -Eq -- "$2" "$TUI_SCREEN"; then
        fail "$1: $(grep -E -- "$2" "$TUI_SCREEN")"
    fi
}

# --- never: the row, the verdict and the error say what is wanted ------------
start_relay --auth 4,1059 --auth-pubkey "$pkhex" --events "$WORK/relay.jsonl"
R="ws://127\.0\.0\.1:$RELAY_PORT"
for size in "100 30" "80 24"; do
    n=never-${size% *}
    config "$n" "secret_key_file = $WORK/owner.key"
    tui_start $size "-c '$WORK/$n.ini' -d '$WORK/$n.db'"
    case $size in
    100*)
        tui_wait "$n: the row" "^> $R +yes 0m +[^ ]+ +auto +needs AUTH 0m +[0-9]+ +30 "
        tui_wait "$n: the verdict" \
            "^ capability  supported, checked just now \(during a sync\): NIP-77 supported; needs AUTH for filter"
        ;;
    *)
        tui_wait "$n: the row" "^> 127\.0\.0\.1:$RELAY_PORT +yes 0m +[^ ]+ +auto +needs AUTH 0m +[0-9]+ +30 "
        tui_wait "$n: the verdict" \
            "^ capability  supported, checked just now \(during a sync\): NIP-77 supported; ne"
        ;;
    esac
    tui_wait "$n: the error and the setting" \
        "^ dms +needs AUTH just now: set auth = on-request and secret_key_file (·|-) au"
    tui_wait "$n: the notes" "^ notes +ok just now "
    tui_wait "$n: the log" "\[SYNC\] $R \(filter dms\): auth-required: "
    no_line "$n: backoff" "backoff"
    tui_keys Enter
    tui_wait "$n: the relay's words" "needs AUTH just now: auth-required: the relay answered "
    tui_wait "$n: what to set" "(\(set auth = on-request|^ +on-request and secret_key_file|^ +secret_key_file for this relay to)"
    tui_keys q
    tui_wait_exit 10
    expect_eq "$n: exit" "$TUI_STATUS" 0
done
expect_eq "never: AUTH messages the relay received" "$(auth_rx)" 0
stop_relay || fail "never: the relay did not stop cleanly"

# --- refused: the relay answers our AUTH with OK false --------------------------
start_relay --auth 4,1059 --auth-pubkey "$pkhex" --events "$WORK/relay.jsonl" \
    --auth-refuse "restricted: not a member"
config refused "auth = on-request" "secret_key_file = $WORK/owner.key"
tui_start 100 30 "-c '$WORK/refused.ini' -d '$WORK/refused.db'"
tui_wait "refused: the row" "^> ws://127\.0\.0\.1:$RELAY_PORT +yes 0m +[^ ]+ +auto +AUTH failed +[0-9]+ +30 "
tui_wait "refused: the relay's words" \
    "^ dms +AUTH failed just now: AUTH refused: the relay answered AUTH as npub1"
no_line "refused: backoff" "backoff"
expect_eq "refused: AUTH messages the relay received" "$(auth_rx)" 1
tui_keys q
tui_wait_exit 10
expect_eq "refused: exit" "$TUI_STATUS" 0
stop_relay || fail "refused: the relay did not stop cleanly"

# --- key: the owner's key, auth = on-request: synced ------------------------------
start_relay --auth 4,1059 --auth-pubkey "$pkhex" --events "$WORK/relay.jsonl"
R="ws://127\.0\.0\.1:$RELAY_PORT"
config key "auth = on-request" "secret_key_file = $WORK/owner.key"
tui_start 100 30 "-c '$WORK/key.ini' -d '$WORK/key.db'"
tui_wait "key: synced, every event" "^> $R +yes 0m +NEG +auto +ok 0m +[0-9]+ +70 "
tui_wait "key: the DMs" "^ dms +ok just now · NEG "
tui_wait "key: the log" "\[SYNC\] $R: authenticated as npub1"
no_line "key: an AUTH error" "needs AUTH|AUTH failed|auth-required|restricted:|error"
expect_eq "key: AUTH messages the relay received" "$(auth_rx)" 1
tui_keys q
tui_wait_exit 10
expect_eq "key: exit" "$TUI_STATUS" 0
ids_of_file "$WORK/relay.jsonl" >"$WORK/want.ids"
ids_of_db "$WORK/key.db" >"$WORK/key.ids"
cmp -s "$WORK/want.ids" "$WORK/key.ids" ||
    fail "key: the database holds $(wc -l <"$WORK/key.ids") events, the relay $(wc -l <"$WORK/want.ids")"
stop_relay || fail "key: the relay did not stop cleanly"

echo "ok: needs AUTH (row, verdict, error and setting), AUTH failed, synced with the key"
