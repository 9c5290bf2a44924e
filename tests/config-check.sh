#!/bin/sh
# config-check.sh — `negsync check-config` as a user runs it: the bundled
# example validates; a file with every key prints them back; a bad file gives
# one `file:line: message` per problem on stderr, nothing on stdout, exit 2;
# no default file means an empty config and a hint how to create one; -c
# wins over $XDG_CONFIG_HOME; a missing -c file is an error; global options
# after the command name; devices, binary, huge and non-UTF-8 files.
. "${top_srcdir:-.}/tests/lib.sh"

negsync="$top_builddir/src/negsync"
[ -x "$negsync" ] || fail "no $negsync: run make first"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/config-check.XXXXXX") || fail "mktemp"
trap 'rm -rf "$tmp"' EXIT INT TERM

# Keep the user's own config and data out of it.
HOME="$tmp/home"
XDG_CONFIG_HOME="$tmp/xdg"
unset XDG_DATA_HOME
export HOME XDG_CONFIG_HOME
mkdir -p "$HOME" "$XDG_CONFIG_HOME"

# run ARGS...: sets $rc, $out, $err
run() {
    "$negsync" "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    out=$(cat "$tmp/out")
    err=$(cat "$tmp/err")
}
expect_rc() {
    [ "$rc" = "$1" ] || fail "$2: exit $rc, want $1; stderr: $err"
}
expect_eq() {
    [ "$2" = "$3" ] || fail "$1: got
$2
want
$3"
}
expect_line() {
    printf '%s\n' "$2" | grep -qxF -- "$3" || fail "$1: no line '$3' in:
$2"
}

# --- the example installed with negsync ------------------------------------
run -c "$top_srcdir/data/negsync.ini" check-config
expect_rc 0 "data/negsync.ini"
expect_eq "data/negsync.ini: stderr" "$err" ""
expect_line "data/negsync.ini" "$out" \
    "; $top_srcdir/data/negsync.ini is valid. Effective configuration, defaults included:"
expect_line "data/negsync.ini" "$out" "[relay wss://relay.damus.io]"
expect_line "data/negsync.ini" "$out" "negentropy = auto    ; NEG, falling back to REQ"
expect_line "data/negsync.ini" "$out" "path = $HOME/.local/share/negsync/negsync.db"
# The filters a person starts from: their own notes, a hashtag, their
# follows' notes over the last 30 days.
expect_line "data/negsync.ini" "$out" "[filter mine]"
expect_line "data/negsync.ini" "$out" "[filter tag-nostr]"
expect_line "data/negsync.ini" "$out" "[filter follows]"
expect_line "data/negsync.ini" "$out" "; since = 30d: moves with the clock, shown for now"
# Every commented-out example (the other public relays, more filters) is
# valid too once its ; is removed, all of them at once.
sed -E 's/^;(\[(relay|filter) |[a-z_#][a-z_]* *=)/\1/' "$top_srcdir/data/negsync.ini" \
    >"$tmp/example-all.ini"
run -c "$tmp/example-all.ini" check-config
expect_rc 0 "data/negsync.ini with every example uncommented"
n=$(printf '%s\n' "$out" | grep -c '^\[relay ')
[ "$n" -ge 5 ] || fail "data/negsync.ini uncommented: $n relays, want at least 5"
n=$(printf '%s\n' "$out" | grep -c '^\[filter ')
[ "$n" -ge 5 ] || fail "data/negsync.ini uncommented: $n filters, want at least 5"

# --- every key, printed back as it will be used -----------------------------
cat >"$tmp/good.ini" <<EOF
[storage]
path = ~/archive/n.db

[sync]
workers = 8
use_negentropy = true
negentropy_fallback = false   ; strict
direction = both
interval = 10m
recheck_days = 1
neg_timeout = 20
probe_timeout = 3
frame_size_limit = 0
negentropy_split = adaptive
fetch_batch = 200
fetch_in_flight = 2
max_sync_events = 500000

[relay WSS://Relay.One.Example:443/]
negentropy = off
direction = down
tls_verify = no
compression = off
enabled = false

[relay ws://127.0.0.1:7777]
negentropy = on

[relay wss://[::1]:7778/]

[filter mine]
kinds = 1, 6,
    7
authors = 0000000000000000000000000000000000000000000000000000000000000001
#t = nostr
since = 2025-01-01
until = 1767225600
limit = 100
EOF
run -c "$tmp/good.ini" check-config
expect_rc 0 "good.ini"
expect_eq "good.ini: stderr" "$err" ""
expect_eq "good.ini: output" "$out" "; $tmp/good.ini is valid. Effective configuration, defaults included:

[storage]
path = $HOME/archive/n.db

[sync]
workers = 8
use_negentropy = true
negentropy_fallback = false
direction = both
interval = 600
recheck_days = 1
neg_timeout = 20
probe_timeout = 3
frame_size_limit = 0
negentropy_split = adaptive
fetch_batch = 200
fetch_in_flight = 2
max_sync_events = 500000
max_message_size = 16777216
auth = never

[relay wss://relay.one.example]
negentropy = off    ; REQ only
direction = down
tls_verify = false
compression = false
enabled = false
auth = never    ; from [sync]: AUTH challenges are not answered

[relay ws://127.0.0.1:7777]
negentropy = on    ; NEG only; no NIP-77 is an error
direction = both    ; from [sync]
tls_verify = true
compression = true
enabled = true
auth = never    ; from [sync]: AUTH challenges are not answered

[relay wss://[::1]:7778]
negentropy = auto    ; NEG only; no NIP-77 is an error
direction = both    ; from [sync]
tls_verify = true
compression = true
enabled = true
auth = never    ; from [sync]: AUTH challenges are not answered

[filter mine]
json = {\"authors\":[\"0000000000000000000000000000000000000000000000000000000000000001\"],\"kinds\":[1,6,7],\"#t\":[\"nostr\"],\"since\":1735689600,\"until\":1767225600,\"limit\":100}"

# -d overrides [storage] path, and says so.
run -c "$tmp/good.ini" -d "$tmp/other.db" check-config
expect_rc 0 "-d"
expect_line "-d" "$out" "path = $tmp/other.db    ; from -d"

# A relative age is shown as it resolves now, and marked as moving.
printf '[filter recent]\nsince = 30d\n' >"$tmp/recent.ini"
run -c "$tmp/recent.ini" check-config
expect_rc 0 "recent.ini"
expect_line "recent.ini" "$out" "; since = 30d: moves with the clock, shown for now"
printf '%s\n' "$out" | grep -q '^json = {"since":[0-9]*}$' || fail "recent.ini: $out"

# The printed config is not a config: its json key is refused, not ignored.
run -c "$tmp/good.ini" check-config
printf '%s\n' "$out" >"$tmp/printed.ini"
run -c "$tmp/printed.ini" check-config
expect_rc 2 "printed.ini"
expect_line "printed.ini" "$err" \
    "$tmp/printed.ini:48: unknown key 'json' in [filter mine]; allowed: kinds, authors, ids, #x (one letter), since, until, limit"

# --- a bad file: every problem, with its line, and nothing else -------------
cat >"$tmp/bad.ini" <<'EOF'
[sync]
workers = 0
use_negentropy = maybe
frame_size_limit = 100
bogus = 1

[relay wss://relay.example.com]
negentropy = sometimes
[relay WSS://Relay.Example.com:443/]
[relay https://relay.example.com]

[filter f]
kinds = 1,
    x
authors = abc
since = 2025-01-01
until = 2024-01-01
[filter g]
kinds =
[weird]
EOF
run -c "$tmp/bad.ini" check-config
expect_rc 2 "bad.ini"
expect_eq "bad.ini: stdout" "$out" ""
expect_eq "bad.ini: stderr" "$err" "$tmp/bad.ini:2: workers: expected an integer 1..256, got '0'
$tmp/bad.ini:3: use_negentropy: expected true or false (or yes/no, on/off, 1/0), got 'maybe'
$tmp/bad.ini:4: frame_size_limit: expected 0 (no limit) or 4096..1073741824 bytes, got '100'
$tmp/bad.ini:5: unknown key 'bogus' in [sync]; allowed: workers, use_negentropy, negentropy_fallback, direction, interval, recheck_days, neg_timeout, probe_timeout, frame_size_limit, negentropy_split, fetch_batch, fetch_in_flight, max_sync_events, max_message_size, auth, secret_key_file
$tmp/bad.ini:8: negentropy: expected auto, on or off, got 'sometimes'
$tmp/bad.ini:9: duplicate relay wss://relay.example.com (first at line 7)
$tmp/bad.ini:10: relay URL 'https://relay.example.com' must start with ws:// or wss:// (relays are websockets)
$tmp/bad.ini:14: kinds[1]: not an integer 0..65535
$tmp/bad.ini:15: authors[0]: not 64 lowercase hex chars (full pubkeys only, no prefixes)
$tmp/bad.ini:17: since (1735689600) is after until (1704067200); the filter never matches
$tmp/bad.ini:19: kinds: an empty list never matches
$tmp/bad.ini:20: unknown section [weird]; expected [storage], [sync], [relay URL] or [filter NAME]
negsync: 12 errors in the configuration"

# One error: singular.
printf '[sync]\nworkers = 4\nworkers = 5\n' >"$tmp/dup.ini"
run -c "$tmp/dup.ini" check-config
expect_rc 2 "dup.ini"
expect_eq "dup.ini" "$err" "$tmp/dup.ini:3: duplicate key 'workers' in [sync] (first set at line 2)
negsync: 1 error in the configuration"

# --- where the file comes from ----------------------------------------------
# No default file: runs with an empty config and says how to create one.
run check-config
expect_rc 0 "no config"
def="$XDG_CONFIG_HOME/negsync/negsync.ini"
case "$err" in
"negsync: no config at $def, starting with an empty one (no relays, no filters). To create it from the example: mkdir -p $XDG_CONFIG_HOME/negsync && cp "*"/negsync.ini $def") ;;
*) fail "no config: stderr: $err" ;;
esac
expect_line "no config" "$out" "; no configuration file. Effective configuration (all defaults):"
expect_line "no config" "$out" "; no relays: add [relay wss://...] sections to sync"
expect_line "no config" "$out" "path = $HOME/.local/share/negsync/negsync.db    ; default"

# Without $XDG_CONFIG_HOME the default is under ~/.config.
(
    unset XDG_CONFIG_HOME
    run check-config
    expect_rc 0 "no XDG_CONFIG_HOME"
    case "$err" in
    "negsync: no config at $HOME/.config/negsync/negsync.ini,"*) ;;
    *) fail "no XDG_CONFIG_HOME: $err" ;;
    esac
) || exit 1

# The default file once it exists; a bad one is refused like any other.
mkdir -p "$XDG_CONFIG_HOME/negsync"
printf '[sync]\nworkers = 3\n' >"$def"
run check-config
expect_rc 0 "default file"
expect_eq "default file: stderr" "$err" ""
expect_line "default file" "$out" "workers = 3"
printf '[sync]\nworkers = 3\nwrokers = 4\n' >"$def"
run check-config
expect_rc 2 "bad default file"
expect_line "bad default file" "$err" \
    "$def:3: unknown key 'wrokers' in [sync]; allowed: workers, use_negentropy, negentropy_fallback, direction, interval, recheck_days, neg_timeout, probe_timeout, frame_size_limit, negentropy_split, fetch_batch, fetch_in_flight, max_sync_events, max_message_size, auth, secret_key_file"

# -c FILE wins over the default (which is bad right now).
run -c "$tmp/recent.ini" check-config
expect_rc 0 "-c over default"
run --config "$tmp/recent.ini" check-config
expect_rc 0 "--config over default"

# A missing -c file is an error, not an empty config.
run -c "$tmp/missing.ini" check-config
expect_rc 2 "-c missing"
expect_eq "-c missing: stdout" "$out" ""
expect_eq "-c missing" "$err" "$tmp/missing.ini: cannot open: No such file or directory
negsync: 1 error in the configuration"
run -c "$tmp" check-config
expect_rc 2 "-c directory"
expect_line "-c directory" "$err" "$tmp: cannot open: Is a directory"

# --- global options after the command name -----------------------------------
# "negsync check-config -c FILE" means "negsync -c FILE check-config".
run check-config -c "$tmp/good.ini"
expect_rc 0 "check-config -c FILE"
expect_line "check-config -c FILE" "$out" "; $tmp/good.ini is valid. Effective configuration, defaults included:"
run check-config --config="$tmp/good.ini" -v -q --db "$tmp/after.db"
expect_rc 0 "check-config --config=FILE --db FILE"
expect_line "check-config --db FILE" "$out" "path = $tmp/after.db    ; from -d"
run -c "$tmp/bad.ini" check-config -c "$tmp/good.ini"
expect_rc 0 "the later -c wins"
run check-config -c
expect_rc 2 "check-config -c without a value"
expect_line "check-config -c without a value" "$err" "negsync: option '-c' needs a value"
# Another command: export takes -d after its name too, and the value of its
# own --filter is never taken for a global option.
"$negsync" -d "$tmp/exp.db" import /dev/null >/dev/null || fail "import /dev/null"
run export --filter '{"kinds":[1]}' -q -d "$tmp/exp.db"
expect_rc 0 "export --filter JSON -q"
run export -d "$tmp/exp.db" --filter -d
expect_rc 2 "export --filter -d"
expect_line "export --filter -d" "$err" \
    "negsync: export: --filter: invalid JSON: '[' or '{' expected near '-' (column 1)"

# --- what is not a config ---------------------------------------------------
# Devices and FIFOs are refused at once: /dev/urandom used to be read forever
# (timeout(1), where there is one, turns such a hang into a failure).
bounded=
command -v timeout >/dev/null 2>&1 && bounded="timeout 60"
for dev in /dev/urandom /dev/zero; do
    $bounded "$negsync" -c "$dev" check-config >"$tmp/out" 2>"$tmp/err"
    rc=$?
    err=$(cat "$tmp/err")
    [ "$rc" != 124 ] || fail "-c $dev: still reading after 60 s"
    expect_rc 2 "-c $dev"
    expect_eq "-c $dev" "$err" "$dev: not a regular file (a device, FIFO or socket cannot be a configuration)
negsync: 1 error in the configuration"
done
if mkfifo "$tmp/fifo.ini" 2>/dev/null; then
    $bounded "$negsync" -c "$tmp/fifo.ini" check-config >"$tmp/out" 2>"$tmp/err"
    rc=$?
    err=$(cat "$tmp/err")
    [ "$rc" != 124 ] || fail "-c FIFO: still waiting after 60 s"
    expect_rc 2 "-c FIFO"
    expect_line "-c FIFO" "$err" \
        "$tmp/fifo.ini: not a regular file (a device, FIFO or socket cannot be a configuration)"
fi
run -c /dev/null check-config
expect_rc 0 "-c /dev/null"
# A binary file: one message, not one per line.
head -c 65536 /dev/urandom >"$tmp/random.ini"
printf '\0' >>"$tmp/random.ini"
run -c "$tmp/random.ini" check-config
expect_rc 2 "random bytes"
case "$err" in
"$tmp/random.ini:"*": NUL byte in line; a configuration is a text file
negsync: 1 error in the configuration") ;;
*) fail "random bytes: $err" ;;
esac
# More than 4 MiB.
awk 'BEGIN { for (i = 0; i < 70000; i++) printf "; %060d\n", i }' >"$tmp/huge.ini"
run -c "$tmp/huge.ini" check-config
expect_rc 2 "huge file"
expect_eq "huge file" "$err" "$tmp/huge.ini: larger than 4 MiB
negsync: 1 error in the configuration"
# Thousands of errors: the first 20, then how many more.
awk 'BEGIN { for (i = 0; i < 3000; i++) print "not a key" }' >"$tmp/garbage.ini"
run -c "$tmp/garbage.ini" check-config
expect_rc 2 "garbage"
expect_eq "garbage: lines" "$(printf '%s\n' "$err" | wc -l | tr -d ' ')" 22
expect_line "garbage" "$err" "$tmp/garbage.ini:20: expected 'key = value'"
expect_line "garbage" "$err" "negsync: ... and 2980 more errors"
expect_line "garbage" "$err" "negsync: 3000 errors in the configuration"
# A list item that is not UTF-8 is an error, not silently dropped.
printf '[filter f]\n#t = caf\351, nostr\n' >"$tmp/latin1.ini"
run -c "$tmp/latin1.ini" check-config
expect_rc 2 "latin-1 item"
expect_eq "latin-1 item" "$err" "$tmp/latin1.ini:2: #t[0]: not valid UTF-8
negsync: 1 error in the configuration"
# A long list on indented lines is accepted (it took seconds per 100 000 items).
awk 'BEGIN { print "[filter many]"; print "#t = t0,"; for (i = 1; i < 160000; i++) printf "  t%d,\n", i }' \
    >"$tmp/many.ini"
run -c "$tmp/many.ini" check-config
expect_rc 0 "160 000 list items"
printf '%s\n' "$out" | grep -q '^json = {"#t":\["t0","t1",.*,"t159999"\]}$' ||
    fail "160 000 list items: $(printf '%s\n' "$out" | tail -c 300)"

# Usage.
run -c "$tmp/recent.ini" check-config extra
expect_rc 2 "extra argument"
expect_eq "extra argument" "$err" "usage: negsync [-c FILE] [-d FILE] check-config"
run check-config --help
expect_rc 0 "--help"

echo "config-check: ok"
