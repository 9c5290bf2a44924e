#!/bin/sh
# neg-interop.sh — negsync's Negentropy against independent implementations
# from npm (nostr-tools, @nostr-dev-kit/sync), driven by tests/js/neg-interop.mjs
# through tests/neg-harness. NEG_INTEROP_SEED / NEG_INTEROP_CASE reproduce a
# failure; the script prints both.
. "${top_srcdir:-.}/tests/lib.sh"
need_node
harness="$top_builddir/tests/neg-harness"
[ -x "$harness" ] || fail "no $harness: run make first"
exec node "$top_srcdir/tests/js/neg-interop.mjs" "$harness"
