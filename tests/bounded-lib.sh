# tests/bounded-lib.sh — run a command under a deadline and a memory ceiling,
# for tests of what a misbehaving relay must not be able to do to negsync,
# and the permessage-deflate servers those tests meet. Sourced after
# tests/relay-lib.sh (and tests/lib.sh, for NODE_MODULES).

# run_bounded SECONDS MAX_RSS_MB CMD...: runs CMD (redirect the call as you
# would CMD's) and watches its resident memory every 50 ms. Returns CMD's
# exit status in BOUNDED_RC and its largest sampled RSS in BOUNDED_PEAK_MB;
# if it runs past SECONDS or above MAX_RSS_MB it is killed, BOUNDED_WHY says
# which, and run_bounded returns 1.
run_bounded() {
    _b_secs=$1 _b_max=$2
    shift 2
    "$@" &
    _b_pid=$!
    _b_deadline=$(($(date +%s) + _b_secs))
    BOUNDED_PEAK_MB=0 BOUNDED_WHY= BOUNDED_RC=
    while _relay_running "$_b_pid"; do
        _b_rss=$(awk '/^VmRSS:/ { print int($2 / 1024) }' "/proc/$_b_pid/status" 2>/dev/null)
        if [ -n "$_b_rss" ] && [ "$_b_rss" -gt "$BOUNDED_PEAK_MB" ]; then
            BOUNDED_PEAK_MB=$_b_rss
        fi
        if [ "${_b_rss:-0}" -gt "$_b_max" ]; then
            BOUNDED_WHY="$1 grew to $_b_rss MB resident (limit $_b_max MB)"
        elif [ "$(date +%s)" -ge "$_b_deadline" ]; then
            BOUNDED_WHY="$1 still running after $_b_secs s"
        fi
        if [ -n "$BOUNDED_WHY" ]; then
            kill -KILL "$_b_pid" 2>/dev/null
            wait "$_b_pid" 2>/dev/null
            return 1
        fi
        sleep 0.05
    done
    wait "$_b_pid"
    BOUNDED_RC=$?
    return 0
}

# for_each_deflate_server EVENTS.jsonl FN: runs FN NAME with $URL set to each
# permessage-deflate server holding EVENTS, in turn:
#   lws-sliding    the test relay --deflate (a window kept across messages,
#                  as strfry's uWebSockets does)
#   lws-nostream   the test relay --deflate-no-context-takeover
#   ws-nostream    the npm ws server with nostream's settings, proxying to
#                  the test relay (tests/js/ws-deflate-proxy.mjs)
#   ws-sliding-window  the same server keeping its window
# The ws ones need node and the npm ws package: skipped with a line
# without them, a failure under CI (scripts/check installs them).
for_each_deflate_server() {
    _d_events=$1 _d_fn=$2
    start_relay --events "$_d_events" --deflate
    URL=$RELAY_URL
    "$_d_fn" lws-sliding
    relay_cleanup
    start_relay --events "$_d_events" --deflate-no-context-takeover
    URL=$RELAY_URL
    "$_d_fn" lws-nostream
    relay_cleanup
    if ! command -v node >/dev/null || [ ! -d "$NODE_MODULES/ws" ]; then
        [ -z "$CI" ] || fail "node and the npm ws package are needed (scripts/check installs them)"
        echo "skipped the ws servers: no node or no npm ws package"
        return 0
    fi
    export NODE_PATH="$NODE_MODULES"
    printf '#!/bin/sh\nexec node "%s" "$@"\n' "$top_srcdir/tests/js/ws-deflate-proxy.mjs" \
        >"$WORK/ws-proxy"
    chmod +x "$WORK/ws-proxy"
    for _d_mode in nostream sliding-window; do
        start_relay --events "$_d_events"
        RELAY_BIN="$WORK/ws-proxy" start_relay --upstream "$RELAY_URL" --"$_d_mode"
        URL=$RELAY_URL
        "$_d_fn" "ws-$_d_mode"
        relay_cleanup
    done
}
