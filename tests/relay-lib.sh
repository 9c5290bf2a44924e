# tests/relay-lib.sh — start and stop tests/negsync-testrelay from a shell test.
# Source it after tests/lib.sh:
#
#   . "${top_srcdir:-.}/tests/lib.sh"
#   . "$top_srcdir/tests/relay-lib.sh"
#   start_relay --no-nip77=notice --welcome-notice hello
#   ... use $RELAY_URL (ws:// or wss://), $RELAY_HTTP_URL, $RELAY_PORT ...
#   stop_relay                  # the last one started; or stop_relay PID
#
# start_relay ARGS... runs the relay with --port 0 (unless ARGS has a --port)
# and waits, with a deadline (RELAY_START_TIMEOUT seconds, default 20), for
# its "listening on 127.0.0.1:PORT" line, failing at once if it exits first.
# It sets RELAY_PID, RELAY_PORT, RELAY_URL, RELAY_HTTP_URL, RELAY_LOG (its
# stderr) and RELAY_STATS (a --stats-file path it is given unless ARGS has
# one). Every relay started is stopped when the test exits, whatever the
# reason: sourcing this file sets an EXIT trap that calls relay_cleanup. A
# test that wants its own EXIT trap sets it after sourcing this file and calls
# relay_cleanup first thing in it (so that it sees the exit status, and shows
# the relays' stderr when the test fails). A test must not `exec` while relays
# run: the trap would be lost with the shell.
#
# relay_stats_snapshot [PID [FILE]] has a relay write its byte counts now
# (SIGUSR1), and relay_make_cert DIR makes a certificate for --tls; see below.
#
# stop_relay [PID] sends SIGTERM and waits for the exit (RELAY_STOP_TIMEOUT
# seconds, default 20, then SIGKILL and a failure); it returns the relay's exit
# status, which is 0 for a clean shutdown. relay_kill [PID] is SIGKILL, for
# tests that want a relay to vanish. Waits poll a condition with a deadline;
# nothing sleeps and hopes.

: "${RELAY_BIN:=$top_builddir/tests/negsync-testrelay}"
_relay_pids=
_relay_dir=
_relay_n=0
trap relay_cleanup EXIT

# 0 while PID runs; a zombie (exited, not yet waited for) counts as gone.
_relay_running() {
    [ -r "/proc/$1/stat" ] || { kill -0 "$1" 2>/dev/null; return; }
    case $(sed 's/^.*) \(.\).*/\1/' "/proc/$1/stat" 2>/dev/null) in
    Z | X | '') return 1 ;;
    *) return 0 ;;
    esac
}

_relay_forget() {
    _relay_left=
    for _p in $_relay_pids; do
        [ "$_p" = "$1" ] || _relay_left="$_relay_left $_p"
    done
    _relay_pids=$_relay_left
}

# Kills and reaps every relay still running, and removes their files. When
# the test is failing (called from the EXIT trap with a non-zero status), the
# end of every relay's stderr is shown first.
relay_cleanup() {
    _st=$?
    if [ "$_st" -ne 0 ] && [ -n "$_relay_dir" ]; then
        for _log in "$_relay_dir"/*.log; do
            [ -s "$_log" ] || continue
            echo "--- ${_log##*/} (last 20 lines)" >&2
            tail -n 20 "$_log" >&2
        done
    fi
    for _p in $_relay_pids; do
        kill -TERM "$_p" 2>/dev/null
    done
    for _p in $_relay_pids; do
        _relay_wait_exit "$_p" "${RELAY_STOP_TIMEOUT:-20}" || kill -KILL "$_p" 2>/dev/null
        wait "$_p" 2>/dev/null
    done
    _relay_pids=
    [ -n "$_relay_dir" ] && rm -rf "$_relay_dir"
    _relay_dir=
}

# _relay_wait_exit PID SECONDS: 0 once PID has exited, 1 at the deadline.
_relay_wait_exit() {
    _deadline=$(($(date +%s) + $2))
    while _relay_running "$1"; do
        [ "$(date +%s)" -lt "$_deadline" ] || return 1
        sleep 0.02 2>/dev/null || sleep 1
    done
    return 0
}

start_relay() {
    [ -x "$RELAY_BIN" ] || fail "no $RELAY_BIN: run make first"
    if [ -z "$_relay_dir" ]; then
        _relay_dir=$(mktemp -d "${TMPDIR:-/tmp}/testrelay.XXXXXX") || fail "mktemp"
    fi
    _relay_n=$((_relay_n + 1))
    _out="$_relay_dir/relay$_relay_n.out"
    RELAY_LOG="$_relay_dir/relay$_relay_n.log"
    RELAY_STATS="$_relay_dir/relay$_relay_n.stats.json"
    _want_port=1
    _want_stats=1
    _scheme=ws
    for _a in "$@"; do
        case $_a in
        --port | --port=*) _want_port= ;;
        --stats-file | --stats-file=*) _want_stats= RELAY_STATS= ;;
        --tls) _scheme=wss ;;
        esac
    done
    [ -n "$_want_stats" ] && set -- --stats-file "$RELAY_STATS" "$@"
    [ -n "$_want_port" ] && set -- --port 0 "$@"
    : >"$_out"
    "$RELAY_BIN" "$@" >"$_out" 2>"$RELAY_LOG" &
    RELAY_PID=$!
    _relay_pids="$_relay_pids $RELAY_PID"
    _deadline=$(($(date +%s) + ${RELAY_START_TIMEOUT:-20}))
    while :; do
        _line=$(head -n 1 "$_out")
        case $_line in
        "listening on 127.0.0.1:"[0-9]*)
            # The line is complete once its newline is there: the port is whole.
            [ "$(wc -l <"$_out")" -ge 1 ] && break
            ;;
        esac
        if ! _relay_running "$RELAY_PID"; then
            wait "$RELAY_PID"
            _rc=$?
            _relay_forget "$RELAY_PID"
            fail "negsync-testrelay $* exited ($_rc) before listening: $(cat "$RELAY_LOG")"
        fi
        if [ "$(date +%s)" -ge "$_deadline" ]; then
            fail "negsync-testrelay $* did not start within ${RELAY_START_TIMEOUT:-20} s"
        fi
        sleep 0.02 2>/dev/null || sleep 1
    done
    RELAY_PORT=${_line#listening on 127.0.0.1:}
    RELAY_URL="$_scheme://127.0.0.1:$RELAY_PORT"
    if [ "$_scheme" = wss ]; then
        RELAY_HTTP_URL="https://127.0.0.1:$RELAY_PORT"
    else
        RELAY_HTTP_URL="http://127.0.0.1:$RELAY_PORT"
    fi
    export RELAY_PID RELAY_PORT RELAY_URL RELAY_HTTP_URL RELAY_LOG RELAY_STATS
}

# stop_relay [PID]: SIGTERM, wait, return the exit status (0 = clean).
stop_relay() {
    _pid=${1:-$RELAY_PID}
    [ -n "$_pid" ] || fail "stop_relay: no relay"
    kill -TERM "$_pid" 2>/dev/null
    if ! _relay_wait_exit "$_pid" "${RELAY_STOP_TIMEOUT:-20}"; then
        kill -KILL "$_pid" 2>/dev/null
        wait "$_pid" 2>/dev/null
        _relay_forget "$_pid"
        fail "negsync-testrelay (pid $_pid) ignored SIGTERM for ${RELAY_STOP_TIMEOUT:-20} s"
    fi
    wait "$_pid"
    _rc=$?
    _relay_forget "$_pid"
    return $_rc
}

# relay_stats_snapshot [PID [FILE]]: has the relay (default: the last one
# started) rewrite its --stats-file (default: $RELAY_STATS) now, open
# connections included ("open": true), and waits until it is there. The file
# is JSON: {"connections":[{"id","rx_bytes","tx_bytes","rx_msgs","tx_msgs",
# "rx":{TYPE:N},"tx":{TYPE:N}[,"open":true]}...],"total":{...},"http_requests":N};
# bytes are websocket payload bytes (before any compression).
relay_stats_snapshot() {
    _pid=${1:-$RELAY_PID}
    _file=${2:-$RELAY_STATS}
    [ -n "$_file" ] || fail "relay_stats_snapshot: the relay has no --stats-file"
    rm -f "$_file"
    kill -USR1 "$_pid" || fail "relay_stats_snapshot: no relay $_pid"
    _deadline=$(($(date +%s) + ${RELAY_STOP_TIMEOUT:-20}))
    until [ -f "$_file" ]; do
        _relay_running "$_pid" || fail "relay_stats_snapshot: relay $_pid is gone"
        [ "$(date +%s)" -lt "$_deadline" ] || fail "relay_stats_snapshot: no $_file"
        sleep 0.02 2>/dev/null || sleep 1
    done
}

# relay_make_cert DIR: a self-signed certificate for 127.0.0.1 (CN and
# subjectAltName) in DIR/cert.pem and DIR/key.pem, for start_relay --tls
# "$RELAY_CERT" "$RELAY_KEY". Skips the test when there is no openssl command.
relay_make_cert() {
    command -v openssl >/dev/null || skip "no openssl command to make a test certificate"
    RELAY_CERT="$1/cert.pem"
    RELAY_KEY="$1/key.pem"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
        -keyout "$RELAY_KEY" -out "$RELAY_CERT" 2>"$1/openssl.log" ||
        fail "openssl: $(cat "$1/openssl.log")"
}

# relay_kill [PID]: SIGKILL and reap, for a relay that must vanish mid-session.
relay_kill() {
    _pid=${1:-$RELAY_PID}
    kill -KILL "$_pid" 2>/dev/null
    wait "$_pid" 2>/dev/null
    _relay_forget "$_pid"
    return 0
}
