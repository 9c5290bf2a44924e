#!/bin/sh
# install.sh — `make install` and `make uninstall` as a packager runs them,
# into a scratch DESTDIR: exactly the program, both manual pages, the README
# and the example configuration are installed; the installed negsync says
# the version configure.ac has, validates the installed example and, with no
# configuration, points to where that example was installed; uninstall
# leaves no file behind.
. "${top_srcdir:-.}/tests/lib.sh"

make=${MAKE:-make}
mk="$top_builddir/Makefile"
[ -r "$mk" ] || fail "no $mk: run configure first"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/install.XXXXXX") || fail "mktemp"
trap 'rm -rf "$tmp"' EXIT INT TERM
dest="$tmp/dest"

expect_eq() {
    [ "$2" = "$3" ] || fail "$1: got
$2
want
$3"
}

# The directories configure chose, as make install uses them.
mkvar() { sed -n "s|^$1 = ||p" "$mk" | head -n1; }
prefix=$(mkvar prefix)
[ -n "$prefix" ] || fail "no prefix in $mk"
# The Makefile's values are in terms of ${prefix} and ${datarootdir}.
expand() {
    printf '%s\n' "$1" | sed -e "s|\${datarootdir}|$(mkvar datarootdir)|" \
        -e "s|\${exec_prefix}|$(mkvar exec_prefix)|" -e "s|\${PACKAGE_TARNAME}|negsync|" |
        sed -e "s|\${prefix}|$prefix|g"
}
bindir=$(expand "$(mkvar bindir)")
mandir=$(expand "$(mkvar mandir)")
docdir=$(expand "$(mkvar docdir)")

version=$(sed -n 's/^AC_INIT(\[negsync\], *\[\([^]]*\)\].*/\1/p' "$top_srcdir/configure.ac")
[ -n "$version" ] || fail "no version in AC_INIT of configure.ac"
expect_eq "negsync --version in the build tree" "$("$top_builddir/src/negsync" --version)" \
    "negsync $version"

# A make of its own: not the jobserver, targets or variables of the make
# running this test.
submake() {
    env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u MAKEOVERRIDES \
        "$make" -C "$top_builddir" "$@" DESTDIR="$dest" >"$tmp/make.out" 2>&1
}

# --- install --------------------------------------------------------------
submake install || fail "make install exited $?: $(tail -n 20 "$tmp/make.out")"
(cd "$dest" && find . -type f -o -type l) | sed 's|^\.||' | sort >"$tmp/installed"
printf '%s\n' "$bindir/negsync" "$mandir/man1/negsync.1" "$mandir/man5/negsync.ini.5" \
    "$docdir/README.md" "$docdir/negsync.ini" | sort >"$tmp/want"
cmp -s "$tmp/installed" "$tmp/want" || fail "make install installed
$(cat "$tmp/installed")
want
$(cat "$tmp/want")"

inst="$dest$bindir/negsync"
[ -x "$inst" ] || fail "$inst is not executable"
for f in man/negsync.1 man/negsync.ini.5; do
    cmp -s "$top_srcdir/$f" "$dest$mandir/man${f##*.}/${f#man/}" || fail "installed $f differs"
done
cmp -s "$top_srcdir/data/negsync.ini" "$dest$docdir/negsync.ini" || fail "installed example differs"

# The installed program: its version, the installed example, and the hint
# for a user without a configuration (which must name the installed path,
# without DESTDIR: that is where the package puts it).
expect_eq "installed negsync --version" "$("$inst" --version)" "negsync $version"
HOME="$tmp/home"
XDG_CONFIG_HOME="$tmp/home/.config"
XDG_DATA_HOME="$tmp/home/.local/share"
export HOME XDG_CONFIG_HOME XDG_DATA_HOME
mkdir -p "$HOME"
"$inst" -c "$dest$docdir/negsync.ini" check-config >"$tmp/out" 2>"$tmp/err" ||
    fail "check-config of the installed example exited $?: $(cat "$tmp/err")"
[ ! -s "$tmp/err" ] || fail "check-config of the installed example said: $(cat "$tmp/err")"
"$inst" check-config >/dev/null 2>"$tmp/err" || fail "check-config without a config exited $?"
grep -qF "cp $docdir/negsync.ini $XDG_CONFIG_HOME/negsync/negsync.ini" "$tmp/err" ||
    fail "the no-config hint does not name the installed example $docdir/negsync.ini: $(cat "$tmp/err")"

# --- uninstall ------------------------------------------------------------
submake uninstall || fail "make uninstall exited $?: $(tail -n 20 "$tmp/make.out")"
left=$(cd "$dest" && find . -type f -o -type l)
[ -z "$left" ] || fail "make uninstall left files behind: $left"

echo "install: ok (negsync $version, $(wc -l <"$tmp/want" | tr -d ' ') files, prefix $prefix)"
