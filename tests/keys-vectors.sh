#!/bin/sh
# keys-vectors.sh — negsync's keys against nostr-tools: a key nostr-tools
# makes, stored as an nsec (nostr-tools' NIP-19 encoder) and as hex, loads in
# negsync to the same pubkey and npub nostr-tools derives; the AUTH event
# negsync signs with it is one nostr-tools verifies and would have built
# (makeAuthEvent); nothing negsync prints holds the secret; and the same file
# with mode 0644 is refused with the chmod that fixes it.
. "${top_srcdir:-.}/tests/lib.sh"
need_node

bin="$top_builddir/tests/test-keys"
js="$top_srcdir/tests/js/keys-vectors.mjs"
[ -x "$bin" ] || fail "$bin is not built (make check builds it)"

tmp=$(mktemp -d) || fail "mktemp"
trap 'rm -rf "$tmp"' EXIT

node "$js" gen "$tmp" || fail "nostr-tools could not make a key"
url="wss://relay.example.com/"
challenge="negsync-$$-challenge"
nsec=$(cat "$tmp/key.nsec")
skhex=$(cat "$tmp/key.hex")

for f in key.nsec key.hex; do
    "$bin" --sign-auth "$tmp/$f" "$url" "$challenge" >"$tmp/out.$f" 2>"$tmp/err.$f" ||
        fail "$f: test-keys refused it: $(cat "$tmp/err.$f")"
    node "$js" verify "$tmp/out.$f" "$tmp" "$url" "$challenge" ||
        fail "$f: nostr-tools disagrees with negsync"
    for secret in "$nsec" "$skhex"; do
        if grep -qiF -- "$secret" "$tmp/out.$f" "$tmp/err.$f"; then
            fail "$f: the secret key appears in test-keys' output"
        fi
    done
done

chmod 644 "$tmp/key.nsec"
if "$bin" --sign-auth "$tmp/key.nsec" "$url" "$challenge" >"$tmp/out.644" 2>"$tmp/err.644"; then
    fail "a key file with mode 0644 was used"
fi
grep -qF "run: chmod 600 $tmp/key.nsec" "$tmp/err.644" ||
    fail "mode 0644: the message does not say how to fix it: $(cat "$tmp/err.644")"
if grep -qiF -e "$nsec" -e "$skhex" "$tmp/out.644" "$tmp/err.644"; then
    fail "mode 0644: the secret key appears in the message"
fi
echo "PASS: nostr-tools and negsync agree on keys and AUTH events"
