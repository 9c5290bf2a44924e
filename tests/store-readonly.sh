#!/bin/sh
# store-readonly.sh — a command that only reads the database (export) works
# on one it cannot write: in a read-only directory, where SQLite cannot
# create the -shm file a WAL database is read through, and with the file
# itself read-only; it writes nothing there and never creates a database.
#
# Root ignores file permissions, so as root the reads run as uid 65534
# (nobody) through setpriv(1); the test skips, saying so, where that is not
# possible or that user can still write the directory.
. "${top_srcdir:-.}/tests/lib.sh"

negsync="$top_builddir/src/negsync"
real="$testdata/real-events-nostream-seeds.jsonl"
[ -x "$negsync" ] || fail "no $negsync: run make first"
[ -r "$real" ] || fail "no test data at $real (tests/data is part of the project)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/store-readonly.XXXXXX") || fail "mktemp"
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT INT TERM

expect_eq() {
    [ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"
}

if [ "$(id -u)" = 0 ]; then
    command -v setpriv >/dev/null 2>&1 ||
        skip "running as root without setpriv(1): no user here is kept from writing a file"
    as_reader() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
else
    as_reader() { "$@"; }
fi
# That user must reach the binary and the files: copies in a world-readable place.
chmod 755 "$tmp"
mkdir "$tmp/bin" "$tmp/ro"
cp "$negsync" "$tmp/bin/negsync" && chmod 755 "$tmp/bin/negsync" || fail "copy negsync"
reader_negsync="$tmp/bin/negsync"

# A database closed cleanly: no -wal or -shm file next to it.
"$negsync" -d "$tmp/ro/s.db" import "$real" >/dev/null || fail "import exited $?"
"$negsync" -d "$tmp/ro/s.db" export >"$tmp/want.jsonl" || fail "export by its owner exited $?"
expect_eq "events exported by the owner" "$(wc -l <"$tmp/want.jsonl" | tr -d ' ')" 463
expect_eq "files next to the database" "$(ls "$tmp/ro" | tr '\n' ' ')" "s.db "
"$negsync" -d "$tmp/ro/s.db" export --filter '{"kinds":[0]}' >"$tmp/want0.jsonl" ||
    fail "export --filter by its owner exited $?"

chmod 0444 "$tmp/ro/s.db"
chmod 0555 "$tmp/ro"
as_reader cat "$tmp/ro/s.db" >/dev/null 2>&1 || skip "uid $(id -u) cannot read $tmp/ro/s.db"
if as_reader touch "$tmp/ro/probe" 2>/dev/null; then
    skip "the reading user can still write a 0555 directory (CAP_DAC_OVERRIDE?)"
fi

# --- read-only directory and file: the export is complete ------------------
as_reader "$reader_negsync" -d "$tmp/ro/s.db" export >"$tmp/got.jsonl" 2>"$tmp/err"
rc=$?
[ "$rc" = 0 ] || fail "export of a read-only database exited $rc: $(cat "$tmp/err")"
[ ! -s "$tmp/err" ] || fail "export of a read-only database said: $(cat "$tmp/err")"
cmp -s "$tmp/want.jsonl" "$tmp/got.jsonl" || fail "read-only export differs from the owner's"
# A filter goes through the same SQL (and its tag function) as for the owner.
as_reader "$reader_negsync" -d "$tmp/ro/s.db" export --filter '{"kinds":[0]}' \
    >"$tmp/got0.jsonl" || fail "read-only export --filter exited $?"
cmp -s "$tmp/want0.jsonl" "$tmp/got0.jsonl" || fail "read-only export --filter differs"
expect_eq "files next to the database after export" "$(ls "$tmp/ro" | tr '\n' ' ')" "s.db "

# --- a writable directory, read-only file ----------------------------------
chmod 0755 "$tmp/ro"
mkdir "$tmp/rw" && cp "$tmp/ro/s.db" "$tmp/rw/s.db" && chmod 0444 "$tmp/rw/s.db" &&
    chmod 0777 "$tmp/rw" || fail "copy the database"
as_reader "$reader_negsync" -d "$tmp/rw/s.db" export >"$tmp/got.jsonl" ||
    fail "export of a read-only file exited $?"
cmp -s "$tmp/want.jsonl" "$tmp/got.jsonl" || fail "export of a read-only file differs"

# --- export never creates a database -----------------------------------------
"$negsync" -d "$tmp/none.db" export >/dev/null 2>"$tmp/err"
expect_eq "export of a missing database" "$?" 1
expect_eq "export of a missing database: message" "$(cat "$tmp/err")" \
    "negsync: $tmp/none.db: No such file or directory"
[ ! -e "$tmp/none.db" ] || fail "export created $tmp/none.db"
env -u XDG_DATA_HOME HOME="$tmp/home" "$negsync" export >/dev/null 2>&1
expect_eq "export of a missing default database" "$?" 1
[ ! -e "$tmp/home/.local/share/negsync" ] || fail "export created the default database directory"

echo "store-readonly: ok"
