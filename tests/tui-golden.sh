#!/bin/sh
# Golden layouts: the TUI's pure formatting (src/tui-draw.c) renders a fixed
# model — a NIP-77 relay, one without (its NOTICE as the reason, a control
# character in it), one unreachable and backing off with TLS unverified, two
# filters, a log — at 100×30, 80×24 and 60×12, with the detail, log and help
# overlays, mid-sync, in ASCII and below the minimum size, and with filters
# that ended for want of NIP-42 AUTH (needs AUTH, AUTH failed), without a
# terminal; each frame must equal its file in tests/tui-golden/.
# TUI_GOLDEN_UPDATE=1 rewrites the files (review the diff before committing).
. "${top_srcdir:-.}/tests/lib.sh"

GOLDEN="$top_builddir/tests/tui-render"
[ -x "$GOLDEN" ] || fail "build first (no $GOLDEN)"
dir="$top_srcdir/tests/tui-golden"
out=$(mktemp "${TMPDIR:-/tmp}/tui-golden.XXXXXX") || fail "mktemp"
trap 'rm -f "$out"' EXIT

bad=0
while read -r w h view ascii; do
    name="${w}x${h}-$view${ascii:+-$ascii}.txt"
    "$GOLDEN" "$w" "$h" "$view" $ascii >"$out" || fail "tui-render $w $h $view $ascii exited $?"
    if [ -n "${TUI_GOLDEN_UPDATE:-}" ]; then
        cp "$out" "$dir/$name"
        continue
    fi
    if ! cmp -s "$out" "$dir/$name"; then
        echo "FAIL: $name differs:" >&2
        diff -u "$dir/$name" "$out" >&2
        bad=1
    fi
    # Every frame is exactly its size, and the key bar (or the size note) is there.
    [ "$(($(wc -l <"$out") - 1))" -eq "$h" ] || { echo "FAIL: $name: not $h rows" >&2; bad=1; }
    if [ -n "$ascii" ] && LC_ALL=C grep -q '[^ -~]' "$out"; then
        echo "FAIL: $name: a character outside printable ASCII" >&2
        bad=1
    fi
done <<LIST
100 30 main
80 24 main
60 12 main
100 30 running
80 24 running
100 30 detail
100 30 log
80 24 help
100 30 main ascii
80 24 help ascii
50 10 main
100 30 auth
80 24 auth
60 12 auth
80 24 auth-detail
LIST
[ "$bad" -eq 0 ] || exit 1
echo "ok: golden layouts"
