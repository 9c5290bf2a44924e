#!/bin/sh
# Convergence in all three directions. From one generated set: events both
# sides hold, events only the local database holds, events only the relay
# holds. After one `sync --once` by negentropy the relay's set and the local
# set for the filter are equal, and a second session finds nothing to do:
#
#   down: the local side had a part of the relay's set; it fetches the rest
#   up:   the relay had a part of the local set; EVENT uploads the rest, with
#         more events than the uploads in flight, each counted by its OK
#   both: each side had events of its own; both end with the union
#
# And an upload the relay refuses (it holds a NIP-09 deletion of the event)
# is counted as rejected, the others as uploaded; nothing is fetched by up.
. "${top_srcdir:-.}/tests/sync-lib.sh"

"$GEN" -n 900 -k 6 -s 9000 -S 41 >"$WORK/all.jsonl" || fail "gen-events"
awk 'NR % 3 == 0' "$WORK/all.jsonl" >"$WORK/both.jsonl"      # 300 on both sides
awk 'NR % 3 == 1' "$WORK/all.jsonl" >"$WORK/local-only.jsonl" # 300
awk 'NR % 3 == 2' "$WORK/all.jsonl" >"$WORK/relay-only.jsonl" # 300

# ids_kind1 DB: the filter's view of a database (kind 1 only; deletions are kind 5).
ids_kind1() {
    "$NEGSYNC" -d "$1" export --filter '{"kinds":[1]}' |
        sed -n 's/^{"id":"\([0-9a-f]\{64\}\)".*/\1/p' | sort
}

# setup NAME LOCAL-FILES -- RELAY-FILES: fresh local and relay databases.
setup() {
    _n=$1
    shift
    rm -f "$WORK/$_n".*db*
    while [ "$1" != "--" ]; do
        "$NEGSYNC" -d "$WORK/$_n.local.db" import "$1" >/dev/null || fail "import $1"
        shift
    done
    shift
    for _f in "$@"; do
        "$NEGSYNC" -d "$WORK/$_n.relay.db" import "$_f" >/dev/null || fail "import $_f"
    done
}

# run NAME DIRECTION: one sync of NAME's databases through a relay on them;
# the --json line in $l.
run() {
    start_relay --db "$WORK/$1.relay.db"
    sync_config "$WORK/$1.ini" "direction=$2" fetch_batch=50
    printf '[relay %s]\n[filter notes]\nkinds = 1\n' "$RELAY_URL" >>"$WORK/$1.ini"
    "$NEGSYNC" -c "$WORK/$1.ini" -d "$WORK/$1.local.db" sync --once --json >"$WORK/$1.json" \
        2>"$WORK/$1.err" || fail "$1: sync failed: $(cat "$WORK/$1.json" "$WORK/$1.err")"
    l=$(jline "$WORK/$1.json" "$RELAY_URL")
    stop_relay || fail "$1: relay did not stop cleanly"
    expect_eq "$1 mode" "$(jstr "$l" mode)" negentropy
    expect_eq "$1 result" "$(jstr "$l" result)" ok
}

# converged NAME: the relay's set equals the local set, and a second session
# (same direction) has nothing to fetch or upload.
converged() {
    ids_kind1 "$WORK/$1.local.db" >"$WORK/$1.local.ids"
    ids_kind1 "$WORK/$1.relay.db" >"$WORK/$1.relay.ids"
    cmp -s "$WORK/$1.local.ids" "$WORK/$1.relay.ids" ||
        fail "$1: relay and local sets differ ($(wc -l <"$WORK/$1.local.ids") local," \
            "$(wc -l <"$WORK/$1.relay.ids") relay)"
    _dir=$(sed -n 's/^direction = //p' "$WORK/$1.ini")
    run "$1" "$_dir"
    expect_eq "$1 second need" "$(jnum "$l" need)" 0
    expect_eq "$1 second have" "$(jnum "$l" have)" 0
    expect_eq "$1 second fetched" "$(jnum "$l" fetched)" 0
    expect_eq "$1 second uploaded" "$(jnum "$l" uploaded)" 0
}

# down: local 300 of the relay's 600.
setup down "$WORK/both.jsonl" -- "$WORK/both.jsonl" "$WORK/relay-only.jsonl"
run down down
expect_eq "down need" "$(jnum "$l" need)" 300
expect_eq "down stored" "$(jnum "$l" stored)" 300
expect_eq "down uploaded" "$(jnum "$l" uploaded)" 0
converged down

# up: the relay 300 of the local 600; 300 uploads, 64 at most in flight.
setup up "$WORK/both.jsonl" "$WORK/local-only.jsonl" -- "$WORK/both.jsonl"
run up up
expect_eq "up have" "$(jnum "$l" have)" 300
expect_eq "up uploaded" "$(jnum "$l" uploaded)" 300
expect_eq "up upload_rejected" "$(jnum "$l" upload_rejected)" 0
expect_eq "up fetched" "$(jnum "$l" fetched)" 0
converged up

# both: 300 each side lacks.
setup both "$WORK/both.jsonl" "$WORK/local-only.jsonl" -- "$WORK/both.jsonl" \
    "$WORK/relay-only.jsonl"
run both both
expect_eq "both have" "$(jnum "$l" have)" 300
expect_eq "both need" "$(jnum "$l" need)" 300
expect_eq "both uploaded" "$(jnum "$l" uploaded)" 300
expect_eq "both stored" "$(jnum "$l" stored)" 300
ids_kind1 "$WORK/both.local.db" | cmp -s - "$(ids_of_file "$WORK/all.jsonl" >"$WORK/all.ids";
    echo "$WORK/all.ids")" || fail "both: the local set is not the union"
converged both

# Refused uploads: the relay holds deletions (kind 5, outside the filter) of
# 30 events; it answers their uploads with OK false. The relay-only events
# are not fetched by direction up.
"$GEN" -n 900 -k 6 -s 9000 -S 41 -D 30 | grep '"kind":5,' >"$WORK/deletions.jsonl"
expect_eq "deletions generated" "$(wc -l <"$WORK/deletions.jsonl" | tr -d ' ')" 30
setup refused "$WORK/both.jsonl" "$WORK/local-only.jsonl" -- "$WORK/both.jsonl" \
    "$WORK/relay-only.jsonl" "$WORK/deletions.jsonl"
run refused up
# The deletions name every 30th event (lines 30, 60, ... of all.jsonl, all in
# both.jsonl): the relay's import removed them, so the local side offers them
# along with its own 300, and the relay refuses those 30.
expect_eq "refused have" "$(jnum "$l" have)" 330
expect_eq "refused uploaded" "$(jnum "$l" uploaded)" 300
expect_eq "refused upload_rejected" "$(jnum "$l" upload_rejected)" 30
expect_eq "refused fetched" "$(jnum "$l" fetched)" 0
expect_eq "refused local unchanged" "$(ids_kind1 "$WORK/refused.local.db" | wc -l | tr -d ' ')" 600
echo "sync-directions: down, up and both converge; refused uploads counted"
