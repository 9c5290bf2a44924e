#!/bin/sh
# negsync status: after one `sync --once` against a relay with NIP-77 (A), one
# that refuses NEG-OPEN with a NOTICE (B), one that never answers it (D) and
# a dead port (C), the report, from the database alone with every relay
# gone, shows each relay's verdict, reason, NIP-11 software, how long the
# cache holds it (caps.c's rule: recheck_days, an hour for silence), the
# mode and counts of each filter's last run, the cursor, a saved override,
# and totals that add up; the table and the JSON agree. A relay never synced
# is "unknown"; a missing database is a clear error and is not created.
. "${top_srcdir:-.}/tests/sync-lib.sh"

"$GEN" -n 200 -k 4 -s 3000 -S 7 -K 1,0 >"$WORK/relay.jsonl" || fail "gen-events"

start_relay --events "$WORK/relay.jsonl"
A=$RELAY_URL
A_PID=$RELAY_PID
start_relay --events "$WORK/relay.jsonl" --no-nip77=notice
B=$RELAY_URL
B_PID=$RELAY_PID
start_relay --events "$WORK/relay.jsonl" --no-nip77=silent
D=$RELAY_URL
D_PID=$RELAY_PID
start_relay
C=$RELAY_URL
stop_relay || fail "relay C did not stop"

sync_config "$WORK/sync.ini" recheck_days=2
{
    printf '[relay %s]\n[relay %s]\n[relay %s]\n[relay %s]\n' "$A" "$B" "$C" "$D"
    printf '[filter notes]\nkinds = 1\n[filter meta]\nkinds = 0\n'
} >>"$WORK/sync.ini"
DB="$WORK/s.db"
"$NEGSYNC" -c "$WORK/sync.ini" -d "$DB" sync --once --json >"$WORK/sync.json" 2>"$WORK/sync.err"
expect_eq "sync exit (C is down)" "$?" 1
expect_eq "A notes: mode" "$(jstr "$(jline "$WORK/sync.json" "$A" notes)" mode)" negentropy
expect_eq "B notes: mode" "$(jstr "$(jline "$WORK/sync.json" "$B" notes)" mode)" req

# Kind 0 is replaceable: the database keeps the newest per key.
nall=$("$NEGSYNC" -d "$DB" export | wc -l)
[ "$nall" -gt 50 ] || fail "only $nall events stored"

# Nothing to connect to from here on: status needs no network.
stop_relay "$A_PID" && stop_relay "$B_PID" && stop_relay "$D_PID" || fail "relays did not stop"

# The status config adds a relay never synced (E) and a disabled one (F).
E=ws://127.0.0.1:1/e
F=ws://127.0.0.1:1/f
cp "$WORK/sync.ini" "$WORK/status.ini"
printf '[relay %s]\n[relay %s]\nenabled = false\n' "$E" "$F" >>"$WORK/status.ini"
status() {
    "$NEGSYNC" -c "$WORK/status.ini" -d "$DB" status "$@" >"$WORK/out" 2>"$WORK/err"
    rc=$?
}

# ---- the table ----------------------------------------------------------------------
status
expect_eq "table: exit" "$rc" 0
[ -s "$WORK/err" ] && fail "table: stderr: $(cat "$WORK/err")"
# block URL: the lines of that relay's block (its URL line up to the blank line).
block() {
    awk -v u="$1" '$1 == u { on = 1 } on && $0 == "" { exit } on' "$WORK/out"
}
# row URL FILTER HEADER: the cell under HEADER in that filter's row (columns are
# padded to the widest cell, so a cell starts where its header does).
row() {
    block "$1" | awk -v f="$2" -v h="$3" '
        /^  FILTER / { hdr = $0; next }
        hdr != "" && $1 == f {
            s = index(hdr, h)
            rest = substr(hdr, s + length(h))
            n = match(rest, /[^ ]/) ? length(h) + RSTART - 1 : 1000
            v = substr($0, s, n)
            sub(/ +$/, "", v)
            print v
            exit
        }'
}
has() {
    block "$1" | grep -qF -- "$2" || fail "table, $1: no '$2' in:
$(block "$1")"
}
grep -q "^database .* · $nall events · " "$WORK/out" || fail "table: no event count $nall: $(head -n 2 "$WORK/out")"
grep -q "^all runs .* 8 runs (6 ok)" "$WORK/out" || fail "table: wrong run count: $(sed -n 2p "$WORK/out")"

has "$A" "capability  supported: NEG-MSG · negsync-testrelay 1.0 · checked "
has "$A" "cached for 1d more"
has "$A" "negentropy  auto (config)"
expect_eq "table A notes: mode" "$(row "$A" notes MODE)" negentropy
expect_eq "table A notes: result" "$(row "$A" notes RESULT)" ok

has "$B" 'capability  unsupported: the relay answered NEG-OPEN with NOTICE "ERROR: bad msg: negentropy disabled"'
has "$B" 'fallback: no NIP-77: the relay answered NEG-OPEN with NOTICE'
expect_eq "table B notes: mode" "$(row "$B" notes MODE)" req
expect_eq "table B notes: saved" "$(row "$B" notes SAVED)" 0%
# A REQ run leaves a cursor: a date.
row "$B" notes CURSOR | grep -q '^20[0-9][0-9]-' || fail "table B: no cursor: $(block "$B")"

has "$C" "capability  unreachable: cannot connect to 127.0.0.1 port ${C##*:}"
has "$C" "nothing cached"
has "$C" "error: "

# Silence is cached for an hour, not recheck_days.
has "$D" 'capability  unsupported: no reply to NEG-OPEN within 3 s'
block "$D" | grep -Eq "cached for (1h|59m) more" || fail "table D: lifetime: $(block "$D")"

has "$E" "capability  unknown · never checked"
expect_eq "table E notes" "$(row "$E" notes MODE)" -
has "$E" "never run"
has "$F" "$F (disabled)"

# ---- the JSON -------------------------------------------------------------------
status --json
expect_eq "json: exit" "$rc" 0
expect_eq "json: one line" "$(wc -l <"$WORK/out")" 1
# jcheck: each stdin line is "LABEL<tab>EXPR<tab>WANT"; EXPR is evaluated over the
# document d (r(URL) a relay, f(URL, NAME) a filter's last run, sum(KEY) of the
# relays' totals) and must print as WANT. One node process for all of them.
jcheck() {
    command -v node >/dev/null || { echo "skipped JSON checks: node is not installed"; return; }
    node -e '
        const fs = require("fs");
        const d = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
        const r = (u) => d.relays.find((x) => x.url === u);
        const f = (u, n) => r(u).filters.find((x) => x.name === n).last_run;
        const sum = (k) => d.relays.reduce((a, x) => a + x.totals[k], 0);
        let bad = 0;
        for (const line of fs.readFileSync(0, "utf8").split("\n")) {
            if (line === "") continue;
            const [label, expr, want] = line.split("\t");
            let got;
            try { got = String(eval(expr)); } catch (e) { got = "throws " + e.message; }
            if (got !== want) { console.error(`${label}: ${expr}: got ${got}, want ${want}`); bad = 1; }
        }
        process.exit(bad);' "$WORK/out" || fail "JSON checks failed"
}
T=$(printf '\t')
a_notes=$(jline "$WORK/sync.json" "$A" notes)
b_notes=$(jline "$WORK/sync.json" "$B" notes)
jcheck <<EOF
events${T}d.database.events${T}$nall
relays${T}d.relays.length${T}6
A verdict${T}r('$A').capability.verdict${T}supported
A source${T}r('$A').capability.source${T}cache
A software${T}r('$A').capability.software${T}negsync-testrelay
A lifetime${T}r('$A').capability.cached_until - r('$A').capability.checked_at${T}$((2 * 86400))
A fresh${T}r('$A').capability.fresh${T}true
A mode${T}r('$A').negentropy.mode${T}neg+fallback
A notes mode${T}f('$A','notes').mode${T}negentropy
A notes fallback${T}f('$A','notes').fallback_reason${T}null
A notes fetched${T}f('$A','notes').fetched${T}$(jnum "$a_notes" fetched)
A notes est${T}f('$A','notes').est_req_bytes${T}$(jnum "$a_notes" est_req_bytes)
A notes rounds${T}f('$A','notes').rounds > 0${T}true
B verdict${T}r('$B').capability.verdict${T}unsupported
B notes mode${T}f('$B','notes').mode${T}req
B notes fallback${T}f('$B','notes').fallback_reason.startsWith('no NIP-77: the relay answered NEG-OPEN with NOTICE')${T}true
B notes fetched${T}f('$B','notes').fetched${T}$(jnum "$b_notes" fetched)
B notes cursor${T}r('$B').filters[0].cursor > 0${T}true
B REQ saves nothing${T}r('$B').totals.saved_bytes${T}0
C verdict${T}r('$C').capability.verdict${T}unreachable
C reachable${T}r('$C').reachable${T}false
C notes result${T}f('$C','notes').result${T}error
D silence lifetime${T}r('$D').capability.cached_until - r('$D').capability.checked_at${T}3600
E verdict${T}r('$E').capability.verdict${T}unknown
E no run${T}f('$E','notes')${T}null
F enabled${T}r('$F').enabled${T}false
stored${T}d.totals.stored${T}$nall
runs${T}d.totals.runs${T}8
sums${T}sum('bytes_received') === d.totals.bytes_received${T}true
saved${T}sum('saved_bytes') === d.totals.saved_bytes && sum('est_req_bytes') === d.totals.est_req_bytes${T}true
EOF

# ---- a saved override ----------------------------------------------------------------
sqlite3 "$DB" "INSERT INTO relay_settings (relay, negentropy) VALUES ('$A', 'off'), ('$B', 'auto')" ||
    fail "sqlite3"
status
has "$A" "negentropy  off (saved override; config: auto) · use_negentropy = true · jobs: req-only"
has "$B" "negentropy  auto (config)"
status --json
jcheck <<EOF
A override${T}r('$A').negentropy.override${T}off
A override mode${T}r('$A').negentropy.mode${T}req-only
B auto is no override${T}r('$B').negentropy.override${T}null
EOF

# ---- a relay's text cannot drive the terminal ------------------------------------------
sqlite3 "$DB" "UPDATE sync_runs SET error = 'gone' || char(27) || '[2J' || char(13) WHERE relay = '$C'" ||
    fail "sqlite3"
status
has "$C" "error: gone [2J "
grep -q "$(printf '\033')" "$WORK/out" && fail "table: an escape character reached the terminal"

# ---- no database ------------------------------------------------------------------------
"$NEGSYNC" -c "$WORK/status.ini" -d "$WORK/missing.db" status >"$WORK/out" 2>"$WORK/err"
expect_eq "missing: exit" "$?" 1
grep -q "missing.db: No such file or directory" "$WORK/err" || fail "missing: $(cat "$WORK/err")"
[ -s "$WORK/out" ] && fail "missing: stdout: $(cat "$WORK/out")"
[ -e "$WORK/missing.db" ] && fail "missing: the database was created"
"$NEGSYNC" -c "$WORK/status.ini" -d "$DB" status extra >/dev/null 2>&1
expect_eq "usage: exit" "$?" 2

echo "ok: status shows verdicts, modes, counts, cache lifetimes and overrides from the database alone"
