#!/bin/sh
# man-lint.sh — the manual pages are lint clean and say what the code does:
# groff prints no warning for either page, rendered at 78 columns as man(1) shows them; both name the version
# configure.ac has; negsync.ini(5) has an entry for every key src/cfg-keys.c
# accepts, and data/negsync.ini mentions each; negsync(1) points to
# negsync.ini(5).
. "${top_srcdir:-.}/tests/lib.sh"

pages="$top_srcdir/man/negsync.1 $top_srcdir/man/negsync.ini.5"
ini5="$top_srcdir/man/negsync.ini.5"
cfg_c="$top_srcdir/src/cfg-keys.c"
example="$top_srcdir/data/negsync.ini"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/man-lint.XXXXXX") || fail "mktemp"
trap 'rm -rf "$tmp"' EXIT INT TERM

command -v groff >/dev/null 2>&1 ||
    fail "groff is not installed (apt-get install groff-base; scripts/deps does)"
for p in $pages; do
    # -t: tables; -ww: every warning; at 78 columns a table or a word too
    # wide for a terminal is a warning too. groff exits 0 on warnings, so
    # any output is a failure.
    for dev in "-Tutf8 -rLL=78n" ""; do
        groff -t -man $dev -ww -z "$p" >"$tmp/out" 2>&1 ||
            fail "groff $dev failed on $p: $(cat "$tmp/out")"
        [ ! -s "$tmp/out" ] || fail "groff $dev warns on $p:
$(cat "$tmp/out")"
    done
done

# --- the version configure.ac says ------------------------------------------
version=$(sed -n 's/^AC_INIT(\[negsync\], *\[\([^]]*\)\].*/\1/p' "$top_srcdir/configure.ac")
[ -n "$version" ] || fail "no version in AC_INIT of configure.ac"
for p in $pages; do
    th=$(grep '^\.TH ' "$p")
    case "$th" in
    *"\"negsync $version\""*) ;;
    *) fail "$p: .TH says '$th', configure.ac says version $version" ;;
    esac
done

# --- every key the parser accepts is documented -----------------------------
# The [sync] keys are the list cfg_sync_keys gives in its error message; the
# [relay] and [filter] keys are the "allowed:" lists of theirs.
sync_keys=$(sed -n '/cfg_sync_keys =/,/;$/p' "$cfg_c" | grep -o '"[^"]*"' | tr -d '"' |
    tr ',' '\n' | tr -d ' ' | grep .)
relay_keys=$(grep -A2 "in \[%s\]; allowed: negentropy" "$cfg_c" | grep -o '"[^"]*"' | tr -d '"' |
    sed 's/.*allowed://' | tr ',' '\n' | tr -d ' ' | grep -v '^$')
filter_keys="kinds authors ids since until limit"
grep -q '"unknown key .%s. in \[storage\]; allowed: path"' "$cfg_c" ||
    fail "src/cfg-keys.c: [storage] takes more than path now: document it in man/negsync.ini.5"
n=0
for k in path $sync_keys $relay_keys $filter_keys; do
    n=$((n + 1))
    grep -q "^\.BI $k \" = \"" "$ini5" || fail "man/negsync.ini.5 has no entry '.BI $k \" = \" ...'"
    grep -q "^;*$k *=" "$example" || fail "data/negsync.ini does not show the key $k"
done
[ "$n" -ge 20 ] || fail "found only $n keys in src/cfg-keys.c: the extraction broke"
grep -q '^\.BI # x " = "' "$ini5" || fail "man/negsync.ini.5 does not document #x tag filters"
for sec in '\[storage\]' '\[sync\]' '\[relay URL\]' '\[filter NAME\]'; do
    grep -q "^\.SH $sec" "$ini5" || fail "man/negsync.ini.5 has no section $sec"
done

# --- negsync(1) refers to it --------------------------------------------------
grep -q '^\.BR negsync\.ini (5)' "$top_srcdir/man/negsync.1" ||
    fail "man/negsync.1 does not refer to negsync.ini(5)"

echo "man-lint: ok ($n keys documented, version $version)"
