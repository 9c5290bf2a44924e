# tests/sync-lib.sh — sourced by the tests/sync-*.sh end-to-end tests: test
# relays (tests/relay-lib.sh), generated events (tests/gen-events), a config
# per test and a few readers for negsync's output and database.
. "${top_srcdir:-.}/tests/lib.sh"
. "$top_srcdir/tests/relay-lib.sh"

NEGSYNC="$top_builddir/src/negsync"
GEN="$top_builddir/tests/gen-events"
[ -x "$NEGSYNC" ] && [ -x "$GEN" ] || fail "build first (no $NEGSYNC or $GEN)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/negsync-sync.XXXXXX") || fail "mktemp"
sync_cleanup() {
    relay_cleanup
    [ -n "$KEEP" ] || rm -rf "$WORK"
}
trap sync_cleanup EXIT

# sync_config FILE [SYNC-KEY=VALUE...]: a config with the [sync] keys given
# (neg_timeout and probe_timeout are 3 s so silent relays fail fast); relay and filter
# sections are appended by the test.
sync_config() {
    _f=$1
    shift
    {
        echo "[sync]"
        echo "neg_timeout = 3"
        echo "probe_timeout = 3"
        for _kv in "$@"; do
            echo "${_kv%%=*} = ${_kv#*=}"
        done
    } >"$_f"
}

# ids_of_file FILE.jsonl / ids_of_db DB: sorted event ids.
ids_of_file() {
    sed -n 's/^{"id":"\([0-9a-f]\{64\}\)".*/\1/p' "$1" | sort
}
ids_of_db() {
    "$NEGSYNC" -d "$1" export | sed -n 's/^{"id":"\([0-9a-f]\{64\}\)".*/\1/p' | sort
}

# jnum LINE KEY: a number field of a --json line; jstr LINE KEY: a string field.
jnum() {
    printf '%s\n' "$1" | sed -n "s/.*\"$2\":\([0-9]*\).*/\1/p"
}
jstr() {
    printf '%s\n' "$1" | sed -n "s/.*\"$2\":\"\([^\"]*\)\".*/\1/p"
}

# jline FILE RELAY-URL [FILTER]: the --json line of that relay (and filter).
jline() {
    grep -F "\"relay\":\"$2\"" "$1" | grep -F "\"filter\":\"${3:-}" | tail -n 1
}

# expect_eq WHAT GOT WANT
expect_eq() {
    [ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"
}
