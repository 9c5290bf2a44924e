#!/bin/sh
# fuzz-corpus.sh — replays tests/fuzz/corpus through the fuzz target's checks
# (frames start with 0x61 and respect the limit, errors carry a reason, have
# ids exist, and under --enable-sanitizers no memory error).
. "${top_srcdir:-.}/tests/lib.sh"
replay="$top_builddir/tests/fuzz-replay"
[ -x "$replay" ] || fail "no $replay: run make check"
set -- "$top_srcdir"/tests/fuzz/corpus/*
[ -e "$1" ] || fail "empty corpus in $top_srcdir/tests/fuzz/corpus"
exec "$replay" "$@"
