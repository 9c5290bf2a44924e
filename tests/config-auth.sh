#!/bin/sh
# config-auth.sh — NIP-42 settings as `negsync check-config` sees them: the
# relays that may authenticate show the pubkey they authenticate as (npub and
# hex), the others say they never do; the secret itself appears nowhere in
# what negsync prints; a key file other users could read (0644, 0640, 0604)
# is refused at config time with the chmod that fixes it, by check-config and
# by sync alike; auth = on-request without a key, a key written into the INI
# file, and a bad auth value are refused; a file shared by relays is read
# once and refused once; a key file no relay may use is not read.
. "${top_srcdir:-.}/tests/lib.sh"

negsync="$top_builddir/src/negsync"
[ -x "$negsync" ] || fail "no $negsync: run make first"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/config-auth.XXXXXX") || fail "mktemp"
trap 'rm -rf "$tmp"' EXIT INT TERM
HOME="$tmp/home"
XDG_CONFIG_HOME="$tmp/xdg"
unset XDG_DATA_HOME
export HOME XDG_CONFIG_HOME
mkdir -p "$HOME/.config/negsync" "$XDG_CONFIG_HOME"

# NIP-19's example key pair, and a second key (hex) for a relay of its own.
nsec=nsec1vl029mgpspedva04g90vltkh6fvh240zqtv9k0t9af8935ke9laqsnlfe5
skhex=67dea2ed018072d675f5415ecfaed7d2597555e202d85b3d65ea4e58d2d92ffa
npub=npub10elfcs4fr0l0r8af98jlmgdh9c8tcxjvz9qkw038js35mp4dma8qzvjptg
pkhex=7e7e9c42a91bfef19fa929e5fda1b72e0ebc1a4c1141673e2794234d86addf4e
sk2=0000000000000000000000000000000000000000000000000000000000000003
# The x coordinate of 3G, sk2's pubkey.
pk2=f9308a019258c31049344f85f89d5229b531c845836f99b08601f113bce036f9

run() {
    "$negsync" "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    out=$(cat "$tmp/out")
    err=$(cat "$tmp/err")
}
expect_rc() {
    [ "$rc" = "$1" ] || fail "$2: exit $rc, want $1; stderr: $err"
}
expect_line() {
    printf '%s\n' "$2" | grep -qxF -- "$3" || fail "$1: no line '$3' in:
$2"
}
# No spelling of the secret keys, nor a 16-character piece of the first, in stdout or stderr.
expect_no_secret() {
    for s in "$nsec" "$skhex" "$sk2"; do
        if grep -qiF -- "$s" "$tmp/out" "$tmp/err"; then
            fail "$1: a secret key appears in what negsync printed"
        fi
    done
    for i in 0 16 32 48; do
        piece=$(printf '%s' "$skhex" | cut -c$((i + 1))-$((i + 16)))
        npiece=$(printf '%s' "$nsec" | cut -c$((i + 6))-$((i + 21)))
        if grep -qiF -e "$piece" -e "$npiece" "$tmp/out" "$tmp/err"; then
            fail "$1: part of the secret key appears in what negsync printed"
        fi
    done
}
# The lines of one [relay URL] section of check-config's output.
section() {
    printf '%s\n' "$out" | awk -v h="[relay $1]" '$0 == h { on = 1; next } /^\[/ { on = 0 } on'
}

key="$HOME/.config/negsync/nostr.key"
printf '%s\n' "$nsec" >"$key"
chmod 600 "$key"
printf '  %s\n\n' "$sk2" >"$tmp/other.key"
chmod 400 "$tmp/other.key"

cat >"$tmp/c.ini" <<EOF
[sync]
secret_key_file = ~/.config/negsync/nostr.key

[relay wss://inbox.example]
auth = on-request

[relay wss://public.example]

[relay wss://other.example]
auth = on-request
secret_key_file = other.key
EOF
run -c "$tmp/c.ini" -d "$tmp/x.db" check-config
expect_rc 0 "keys"
expect_no_secret "check-config"
inbox=$(section wss://inbox.example)
expect_line "inbox" "$inbox" "auth = on-request"
expect_line "inbox" "$inbox" "secret_key_file = $key"
expect_line "inbox" "$inbox" "; authenticates, when the relay asks, as $npub"
expect_line "inbox" "$inbox" ";   (hex $pkhex)"
public=$(section wss://public.example)
expect_line "public" "$public" "auth = never    ; from [sync]: AUTH challenges are not answered"
if printf '%s\n' "$public" | grep -q 'npub\|authenticates\|secret_key_file'; then
    fail "public: shows a key: $public"
fi
other=$(section wss://other.example)
expect_line "other" "$other" "secret_key_file = $tmp/other.key"
expect_line "other" "$other" ";   (hex $pk2)"
if printf '%s\n' "$other" | grep -q "$npub"; then
    fail "other: shows the [sync] key: $other"
fi

# A key file no relay may use is not read (nor needed).
cat >"$tmp/never.ini" <<EOF
[sync]
secret_key_file = $tmp/missing.key
[relay wss://public.example]
EOF
run -c "$tmp/never.ini" -d "$tmp/x.db" check-config
expect_rc 0 "an unused key file"

# Group or world permissions: refused at config time, with the fix; one
# message for the one file two relays use.
for mode in 644 640 604; do
    chmod "$mode" "$key"
    case $mode in 640) who="your group" ;; *) who="every user" ;; esac
    run -c "$tmp/c.ini" -d "$tmp/x.db" check-config
    expect_rc 2 "mode $mode"
    expect_no_secret "mode $mode"
    [ -z "$out" ] || fail "mode $mode: printed a configuration: $out"
    expect_line "mode $mode" "$err" \
        "$tmp/c.ini:2: secret_key_file $key: mode 0$mode lets $who read or change it; run: chmod 600 $key"
    n=$(printf '%s\n' "$err" | grep -c 'nostr.key')
    [ "$n" = 1 ] || fail "mode $mode: $n messages for one file: $err"
done
# ... and sync refuses to start the same way, before it makes a database.
chmod 644 "$key"
run -c "$tmp/c.ini" -d "$tmp/x.db" sync --once
expect_rc 2 "sync with a 0644 key"
printf '%s\n' "$err" | grep -qF "run: chmod 600 $key" || fail "sync with a 0644 key: $err"
expect_no_secret "sync with a 0644 key"
[ -e "$tmp/x.db" ] && fail "sync with a 0644 key made a database"
chmod 600 "$key"

# Other mistakes: a bad value, on-request without a key, the key itself in
# the INI file (as an nsec, as hex, under a made-up name).
cat >"$tmp/bad.ini" <<EOF
[sync]
auth = sometimes
[relay wss://a.example]
auth = on-request
[relay wss://b.example]
secret_key_file = $nsec
[relay wss://c.example]
secret_key_file = $skhex
[relay wss://d.example]
secret_key = $tmp/other.key
EOF
run -c "$tmp/bad.ini" -d "$tmp/x.db" check-config
expect_rc 2 "bad.ini"
expect_no_secret "bad.ini"
expect_line "bad.ini" "$err" "$tmp/bad.ini:2: auth: expected never or on-request, got 'sometimes'"
expect_line "bad.ini" "$err" \
    "$tmp/bad.ini:3: [relay wss://a.example]: auth = on-request needs a key: set secret_key_file = FILE here or in [sync]"
for l in 6 8; do
    expect_line "bad.ini" "$err" \
        "$tmp/bad.ini:$l: secret_key_file: this is a secret key, not a file name; never put the key in the config: store it in a file only you can read (chmod 600 FILE) and name that file"
done
printf '%s\n' "$err" | grep -q "^$tmp/bad.ini:10: unknown key 'secret_key' in \[relay wss://d.example\]" ||
    fail "bad.ini: secret_key: $err"

# A key file holding a public key, or an nsec with a typo: said so, not quoted.
printf '%s\n' "$npub" >"$tmp/npub.key"
printf '%sq\n' "${nsec%?}" >"$tmp/typo.key"
chmod 600 "$tmp/npub.key" "$tmp/typo.key"
cat >"$tmp/content.ini" <<EOF
[relay wss://a.example]
auth = on-request
secret_key_file = $tmp/npub.key
[relay wss://b.example]
auth = on-request
secret_key_file = $tmp/typo.key
EOF
run -c "$tmp/content.ini" -d "$tmp/x.db" check-config
expect_rc 2 "content.ini"
expect_no_secret "content.ini"
expect_line "npub" "$err" \
    "$tmp/content.ini:3: secret_key_file $tmp/npub.key: holds an npub, a public key; the file needs the secret key (nsec or 64 hex digits)"
expect_line "typo" "$err" \
    "$tmp/content.ini:6: secret_key_file $tmp/typo.key: not a valid nsec: bad checksum (a character is wrong or missing)"
echo "PASS: check-config shows who authenticates as whom, and never the key"
