#!/bin/sh
# store-kill.sh — an import killed half-way leaves a sound database.
#
# 60 000 signed events are imported (20 000 per transaction); once the
# database shows committed rows the import is killed with SIGKILL. The
# database must then pass integrity and foreign-key checks and hold exactly
# the first K events of the file, K a multiple of the batch size; importing
# the file again completes it. Then the same with SIGTERM, which negsync
# handles: it commits what it has read, prints the summary and exits 1 (not
# imported to the end; 0 if it finished first), and the summary must match
# the database. Every wait polls for a condition
# with a deadline; nothing depends on timing except how much gets imported.
. "${top_srcdir:-.}/tests/lib.sh"

negsync="$top_builddir/src/negsync"
helper="$top_builddir/tests/store-helper"
[ -x "$negsync" ] || fail "no $negsync: run make first"
[ -x "$helper" ] || fail "no $helper: run make check"

N=60000
BATCH=20000
tmp=$(mktemp -d "${TMPDIR:-/tmp}/store-kill.XXXXXX") || fail "mktemp"
pid=
trap '[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT INT TERM

"$helper" gen $N >"$tmp/events.jsonl" || fail "store-helper gen"
sed 's/^{"id":"\([0-9a-f]\{64\}\)".*/\1/' "$tmp/events.jsonl" >"$tmp/all-ids"
[ "$(grep -c '^[0-9a-f]\{64\}$' "$tmp/all-ids")" = $N ] || fail "cannot read ids from the file"

stored() { "$helper" count "$1" 2>/dev/null || echo 0; }

# wait_rows DB PID: until DB has committed rows, PID has exited, or 120 s pass.
wait_rows() {
    deadline=$(($(date +%s) + 120))
    while :; do
        [ -f "$1" ] && [ "$(stored "$1")" -gt 0 ] && return 0
        kill -0 "$2" 2>/dev/null || return 0
        [ "$(date +%s)" -lt "$deadline" ] || fail "no rows in $1 after 120 s"
        sleep 0.05 2>/dev/null || sleep 1
    done
}

# check_prefix DB: sound, and holding exactly the first K events, K % BATCH == 0.
check_prefix() {
    [ "$("$helper" check "$1")" = ok ] || fail "$1 is damaged: $("$helper" check "$1" 2>&1)"
    k=$(stored "$1")
    [ $((k % BATCH)) -eq 0 ] || fail "$k events stored, not a whole number of batches"
    "$helper" ids "$1" | sort >"$tmp/got"
    head -n "$k" "$tmp/all-ids" | sort >"$tmp/want"
    cmp -s "$tmp/got" "$tmp/want" || fail "the $k stored events are not the first $k of the file"
}

# --- SIGKILL ---------------------------------------------------------------
"$negsync" -d "$tmp/kill.db" import "$tmp/events.jsonl" >"$tmp/out" 2>&1 &
pid=$!
wait_rows "$tmp/kill.db" "$pid"
kill -9 "$pid" 2>/dev/null
wait "$pid"
pid=
check_prefix "$tmp/kill.db"
echo "killed with $k of $N events stored"

out=$("$negsync" -d "$tmp/kill.db" import "$tmp/events.jsonl") || fail "resumed import exited $?"
[ "$out" = "inserted $((N - k)), duplicates $k, replaced 0, deleted 0, rejected 0" ] ||
    fail "resumed import: $out"
[ "$(stored "$tmp/kill.db")" = $N ] || fail "resumed import did not complete"

# --- SIGTERM: commits what it read, reports it, exits 1 ---------------------
"$negsync" -d "$tmp/term.db" import "$tmp/events.jsonl" >"$tmp/out" 2>"$tmp/err" &
pid=$!
wait_rows "$tmp/term.db" "$pid"
kill -TERM "$pid" 2>/dev/null
wait "$pid"
rc=$?
pid=
k=$(stored "$tmp/term.db")
if [ $rc -eq 1 ]; then
    grep -q 'interrupted' "$tmp/err" || fail "no interruption message: $(cat "$tmp/err")"
elif [ $rc -eq 0 ]; then
    [ "$(stored "$tmp/term.db")" = $N ] || fail "exit 0 after SIGTERM but the import is not complete"
else
    fail "import after SIGTERM exited $rc: $(cat "$tmp/err")"
fi
[ "$("$helper" check "$tmp/term.db")" = ok ] || fail "term.db is damaged"
[ "$(cat "$tmp/out")" = "inserted $k, duplicates 0, replaced 0, deleted 0, rejected 0" ] ||
    fail "summary after SIGTERM does not match the $k stored events: $(cat "$tmp/out")"
"$helper" ids "$tmp/term.db" | sort >"$tmp/got"
head -n "$k" "$tmp/all-ids" | sort >"$tmp/want"
cmp -s "$tmp/got" "$tmp/want" || fail "after SIGTERM the stored events are not a prefix"
echo "SIGTERM: exit $rc with $k of $N events stored"
echo "store-kill: ok"
