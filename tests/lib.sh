# tests/lib.sh — sourced by the shell tests. Paths, skips and failures.
: "${top_srcdir:=$(cd "$(dirname "$0")/.." && pwd)}"
: "${top_builddir:=$top_srcdir}"
# Real events and other files the tests read: part of the project (tests/data/README.md).
testdata="$top_srcdir/tests/data"
NODE_MODULES="${NEGSYNC_NODE_MODULES:-$top_srcdir/tests/js/node_modules}"

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }

# Node and the npm peers, or a skip that says what is missing.
need_node() {
    command -v node >/dev/null || skip "node is not installed (scripts/check installs it)"
    [ -n "$NODE_MODULES" ] && [ -d "$NODE_MODULES" ] ||
        fail "no npm test peers in '$NODE_MODULES': run scripts/check (npm install in tests/js)"
    export NODE_PATH="$NODE_MODULES"
}
