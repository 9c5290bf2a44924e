#!/bin/sh
# store-import.sh — `negsync import` and `negsync export` as a user runs them:
# exact counts for a file of real events with good, bad, duplicate, truncated
# and blank lines; the same in --json; replaceable, ephemeral and deletion
# outcomes; stdin; a 200 KB line; export -> import round trips; usage errors
# and exit codes; progress on a terminal only; the XDG default database path;
# a failed import leaves no new, empty database behind.
. "${top_srcdir:-.}/tests/lib.sh"

negsync="$top_builddir/src/negsync"
helper="$top_builddir/tests/store-helper"
real="$testdata/real-events-nostream-seeds.jsonl"
[ -x "$negsync" ] || fail "no $negsync: run make first"
[ -x "$helper" ] || fail "no $helper: run make check"
[ -r "$real" ] || fail "no test data at $real (tests/data is part of the project)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/store-import.XXXXXX") || fail "mktemp"
trap 'rm -rf "$tmp"' EXIT INT TERM

# expect_eq WHAT GOT WANT
expect_eq() {
    [ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"
}

nreal=$(wc -l <"$real" | tr -d ' ')
expect_eq "real events in the test data" "$nreal" 463

# --- a file with everything that goes wrong in practice --------------------
# Line numbers matter: the summary reports rejected lines by number.
line3=$(sed -n 3p "$real")
line4=$(sed -n 4p "$real")
line5=$(sed -n 5p "$real")
in="$tmp/in.jsonl"
{
    echo ''                                   # 1 blank
    cat "$real"                               # 2..464
    sed -n 1,3p "$real"                       # 465..467 duplicates
    echo '   '                                # 468 blank (spaces)
    echo 'not json at all'                    # 469
    echo '{}'                                 # 470 missing fields
    # 471 bad signature: flip the last hex digit of sig
    printf '%s\n' "$line3" |
        sed 's/\("sig":"[0-9a-f]\{127\}\)0"/\11"/; t; s/\("sig":"[0-9a-f]\{127\}\)[1-9a-f]"/\10"/'
    # 472 id mismatch: content changed
    printf '%s\n' "$line4" | sed 's/"content":"/"content":"tampered /'
    printf '%s\n' "$line5" | cut -c1-150      # 473 truncated in the middle
    echo ''                                   # 474 blank
    printf '%s' "$line5" | cut -c1-300 | tr -d '\n'   # 475 truncated, no final newline
} >"$in"

out=$("$negsync" -d "$tmp/a.db" import "$in") || fail "import exited $?"
first=$(printf '%s\n' "$out" | sed -n 1p)
expect_eq "summary" "$first" "inserted 463, duplicates 3, replaced 0, deleted 0, rejected 6"
lines=$(printf '%s\n' "$out" | sed -n 's/^  line \([0-9]*\): .*/\1/p' | tr '\n' ' ')
expect_eq "rejected line numbers" "$lines" "469 470 471 472 473 475 "
printf '%s\n' "$out" | grep -q '^  line 471: bad signature$' || fail "no bad-signature reason: $out"
printf '%s\n' "$out" | grep -q '^  line 472: id mismatch$' || fail "no id-mismatch reason: $out"
expect_eq "stored" "$("$helper" count "$tmp/a.db")" 463

# Again, as JSON: everything is now a duplicate.
out=$("$negsync" -d "$tmp/a.db" import --json "$in") || fail "import --json exited $?"
case "$out" in
'{"inserted":0,"duplicates":466,"replaced":0,"deleted":0,"rejected":6,"errors":[{"line":469,"reason":'*)
    ;;
*) fail "import --json: $out" ;;
esac
n=$(printf '%s\n' "$out" | grep -o '"line":[0-9]*' | tr '\n' ' ')
expect_eq "--json error lines" "$n" '"line":469 "line":470 "line":471 "line":472 "line":473 "line":475 '

# --- relay semantics through the command ------------------------------------
"$helper" mixed >"$tmp/mixed.jsonl" || fail "store-helper mixed"
out=$("$negsync" -d "$tmp/m.db" import "$tmp/mixed.jsonl") || fail "import mixed exited $?"
expect_eq "mixed summary" "$(printf '%s\n' "$out" | sed -n 1p)" \
    "inserted 5, duplicates 0, replaced 2, deleted 2, rejected 2"
printf '%s\n' "$out" | grep -q '^  line 3: replaced by newer version$' || fail "line 3: $out"
printf '%s\n' "$out" | grep -q '^  line 4: ephemeral$' || fail "line 4: $out"
expect_eq "mixed stored" "$("$helper" count "$tmp/m.db")" 4
out=$("$negsync" -d "$tmp/m.db" import "$tmp/mixed.jsonl") || fail "re-import mixed exited $?"
expect_eq "mixed again" "$(printf '%s\n' "$out" | sed -n 1p)" \
    "inserted 0, duplicates 4, replaced 0, deleted 3, rejected 4"

# --- more than 10 rejected lines: the first 10 and a count ------------------
i=0
while [ $i -lt 12 ]; do echo "garbage $i"; i=$((i + 1)); done >"$tmp/garbage.jsonl"
out=$("$negsync" -d "$tmp/a.db" import "$tmp/garbage.jsonl") || fail "garbage import exited $?"
expect_eq "garbage listed" "$(printf '%s\n' "$out" | grep -c '^  line ')" 10
printf '%s\n' "$out" | grep -q '^  \.\.\. and 2 more rejected lines$' || fail "no remainder: $out"

# --- stdin and a very long line ---------------------------------------------
"$helper" big 200000 >"$tmp/big.jsonl" || fail "store-helper big"
out=$(cat "$tmp/big.jsonl" "$real" | "$negsync" -d "$tmp/s.db" import -) || fail "stdin import"
expect_eq "stdin summary" "$(printf '%s\n' "$out" | sed -n 1p)" \
    "inserted 464, duplicates 0, replaced 0, deleted 0, rejected 0"

# --- export -> import round trip ----------------------------------------------
"$negsync" -d "$tmp/s.db" export >"$tmp/export1.jsonl" || fail "export exited $?"
expect_eq "exported lines" "$(wc -l <"$tmp/export1.jsonl" | tr -d ' ')" 464
out=$("$negsync" -d "$tmp/r.db" import "$tmp/export1.jsonl") || fail "re-import exited $?"
expect_eq "round trip summary" "$(printf '%s\n' "$out" | sed -n 1p)" \
    "inserted 464, duplicates 0, replaced 0, deleted 0, rejected 0"
"$helper" ids "$tmp/s.db" >"$tmp/ids1" && "$helper" ids "$tmp/r.db" >"$tmp/ids2" ||
    fail "store-helper ids"
cmp -s "$tmp/ids1" "$tmp/ids2" || fail "round trip changed the id set"
"$negsync" -d "$tmp/r.db" export >"$tmp/export2.jsonl" || fail "second export exited $?"
cmp -s "$tmp/export1.jsonl" "$tmp/export2.jsonl" || fail "export -> import -> export differs"
# Ascending by created_at.
sed 's/.*"created_at":\([0-9]*\).*/\1/' "$tmp/export1.jsonl" >"$tmp/times"
sort -n -c "$tmp/times" 2>/dev/null || fail "export is not ascending by created_at"

# A filter.
n=$("$negsync" -d "$tmp/s.db" export --filter '{"kinds":[0]}' | wc -l | tr -d ' ')
expect_eq "export kinds 0" "$n" 284
n=$("$negsync" -d "$tmp/s.db" export --filter '{"kinds":[1],"limit":5}' | wc -l | tr -d ' ')
expect_eq "export limit 5" "$n" 5

# --- progress: on a terminal for a large input, never otherwise ------------
"$helper" gen 12000 >"$tmp/prog.jsonl" || fail "store-helper gen"
"$negsync" -d "$tmp/p1.db" import "$tmp/prog.jsonl" >"$tmp/prog.out" 2>"$tmp/prog.err" ||
    fail "import of 12000 exited $?"
expect_eq "summary of 12000" "$(cat "$tmp/prog.out")" \
    "inserted 12000, duplicates 0, replaced 0, deleted 0, rejected 0"
[ ! -s "$tmp/prog.err" ] || fail "progress or noise on a stderr that is not a terminal: $(cat "$tmp/prog.err")"
if command -v script >/dev/null 2>&1; then
    # script(1) gives the import a terminal; progress shows from line 10 000 on.
    script -qec "'$negsync' -d '$tmp/p2.db' import '$tmp/prog.jsonl'" "$tmp/typescript" \
        </dev/null >/dev/null 2>&1 || fail "import under script(1) exited $?"
    tr '\r' '\n' <"$tmp/typescript" >"$tmp/tty.out"
    grep -q '^negsync: import: [0-9]* lines ([0-9]*%), [0-9]* lines/s' "$tmp/tty.out" ||
        fail "no progress on a terminal: $(cat "$tmp/tty.out")"
    grep -q 'inserted 12000, duplicates 0, replaced 0, deleted 0, rejected 0' "$tmp/tty.out" ||
        fail "no summary on a terminal: $(cat "$tmp/tty.out")"
    # The progress line is erased before the summary.
    grep -q "$(printf '\033')\\[K" "$tmp/typescript" || fail "progress line not cleared"
else
    echo "store-import: no script(1), progress on a terminal not checked"
fi

# --- usage and errors ---------------------------------------------------------
status() { "$@" >/dev/null 2>&1; echo $?; }
expect_eq "import without a file" "$(status "$negsync" -d "$tmp/a.db" import)" 2
expect_eq "import with two files" "$(status "$negsync" -d "$tmp/a.db" import "$in" "$in")" 2
expect_eq "import --bogus" "$(status "$negsync" -d "$tmp/a.db" import --bogus "$in")" 2
expect_eq "import of a missing file" "$(status "$negsync" -d "$tmp/a.db" import "$tmp/nope")" 1
expect_eq "export with a bad filter" "$(status "$negsync" -d "$tmp/a.db" export --filter '{bad')" 2
expect_eq "export with an operand" "$(status "$negsync" -d "$tmp/a.db" export extra)" 2
expect_eq "database in a missing directory" \
    "$(status "$negsync" -d "$tmp/no/such/dir.db" import "$real")" 1
err=$("$negsync" -d "$tmp/a.db" export --filter '{"kinds":"x"}' 2>&1 >/dev/null)
case "$err" in *filter*) ;; *) fail "bad filter message: $err" ;; esac

# --- a failed import leaves no empty database behind -------------------------
# A directory is refused before any database is made.
mkdir "$tmp/indir"
err=$("$negsync" -d "$tmp/dir.db" import "$tmp/indir" 2>&1 >/dev/null)
expect_eq "import of a directory: exit" "$?" 1
expect_eq "import of a directory: message" "$err" "negsync: $tmp/indir: Is a directory"
[ ! -e "$tmp/dir.db" ] || fail "import of a directory left $(ls "$tmp"/dir.db*)"
# Stopped before its first batch: the database it created goes again, one that
# was there stays. stdin is a FIFO held open, so the import waits on it.
mkfifo "$tmp/fifo" || fail "mkfifo"
for db in new.db a.db; do
    before=$("$helper" count "$tmp/a.db")
    "$negsync" -d "$tmp/$db" import - <"$tmp/fifo" >"$tmp/stop.out" 2>"$tmp/stop.err" &
    pid=$!
    exec 3>"$tmp/fifo"
    i=0
    while [ ! -e "$tmp/$db-wal" ] && [ $i -lt 200 ]; do
        sleep 0.05
        i=$((i + 1))
    done
    [ -e "$tmp/$db-wal" ] || fail "import into $db never opened the database"
    kill -TERM "$pid"
    wait "$pid"
    rc=$?
    exec 3>&-
    expect_eq "import into $db stopped: exit" "$rc" 1
    if [ "$db" = new.db ]; then
        [ ! -e "$tmp/new.db" ] || fail "stopped import left $(ls "$tmp"/new.db*)"
        grep -qxF "negsync: nothing imported; removed the new database $tmp/new.db" \
            "$tmp/stop.err" || fail "stopped import: $(cat "$tmp/stop.err")"
    else
        expect_eq "stopped import into an existing database" \
            "$("$helper" count "$tmp/a.db")" "$before"
    fi
done

# --- the default database path ----------------------------------------------
out=$(XDG_DATA_HOME="$tmp/xdg" "$negsync" import "$tmp/big.jsonl") || fail "XDG import"
[ -f "$tmp/xdg/negsync/negsync.db" ] || fail "no database under \$XDG_DATA_HOME"
out=$(env -u XDG_DATA_HOME HOME="$tmp/home" "$negsync" import "$tmp/big.jsonl") ||
    fail "HOME import"
[ -f "$tmp/home/.local/share/negsync/negsync.db" ] || fail "no database under ~/.local/share"
expect_eq "default db export" \
    "$(env -u XDG_DATA_HOME HOME="$tmp/home" "$negsync" export | wc -l | tr -d ' ')" 1

# --- the database the configuration names ------------------------------------
mkdir -p "$tmp/cfg"
printf '[storage]\npath = events.db\n' >"$tmp/cfg/negsync.ini"
"$negsync" -c "$tmp/cfg/negsync.ini" import "$tmp/big.jsonl" >/dev/null || fail "import with -c"
[ -f "$tmp/cfg/events.db" ] || fail "import ignored [storage] path (relative to the config file)"
expect_eq "export from the configured database" \
    "$("$negsync" -c "$tmp/cfg/negsync.ini" export | wc -l | tr -d ' ')" 1
printf '[storage]\nbogus = 1\n' >"$tmp/cfg/bad.ini"
expect_eq "import with a bad config" \
    "$(status "$negsync" -c "$tmp/cfg/bad.ini" import "$tmp/big.jsonl")" 2
expect_eq "export with a bad config" "$(status "$negsync" -c "$tmp/cfg/bad.ini" export)" 2

echo "store-import: ok"
