# tests/tui-lib.sh — drive the TUI through tmux, for the tests/tui-*.sh tests.
# Sourced after tests/sync-lib.sh (relays, $WORK, $NEGSYNC).
#
# The TUI runs in a tmux server of the test's own (-S, a socket in $WORK),
# configured with -f: escape-time 0 (an Esc is an Esc at once), remain-on-exit
# (the exit status stays readable), no status line (the pane is the whole
# window). Every wait polls `tmux capture-pane` with a deadline; nothing
# sleeps and hopes. The server is killed when the test exits.
#
#   tui_start W H 'ARGS...'   negsync ARGS in a W×H window (env: LANG, TERM as set below)
#   tui_wait DESC REGEX [S]   until a line of the screen matches (grep -E), else fail
#   tui_gone DESC REGEX [S]   until no line matches
#   tui_keys KEY...           tmux send-keys
#   tui_wait_exit [S]         until the program has exited; sets TUI_STATUS
#   tui_pid                   the program's pid
command -v tmux >/dev/null || skip "tmux is not installed (scripts/deps installs it)"

TUI_SOCK="$WORK/tmux.sock"
TUI_CONF="$WORK/tmux.conf"
TUI_SCREEN="$WORK/screen.txt"
: "${TUI_TIMEOUT:=20}"
# A UTF-8 locale when there is one (box drawing); tmux's own terminal type.
TUI_LANG=C.UTF-8
locale -a 2>/dev/null | grep -qi '^c\.utf-\?8$' || TUI_LANG=
TUI_TERM=tmux-256color
infocmp "$TUI_TERM" >/dev/null 2>&1 || TUI_TERM=screen-256color
cat >"$TUI_CONF" <<CONF
set -g escape-time 0
set -g remain-on-exit on
set -g status off
set -g default-terminal $TUI_TERM
set -g history-limit 2000
CONF

tmx() {
    tmux -S "$TUI_SOCK" -f "$TUI_CONF" "$@"
}

tui_cleanup() {
    _st=$?
    if [ "$_st" -ne 0 ] && [ -s "$TUI_SCREEN" ]; then
        echo "--- the last screen" >&2
        cat "$TUI_SCREEN" >&2
    fi
    tmx kill-server >/dev/null 2>&1
    (exit "$_st")
    sync_cleanup
}
trap tui_cleanup EXIT

# negsync runs under a small shell that writes its exit status to a file:
# tmux (3.3) does not always reap a pane's process at once, so
# #{pane_dead_status} cannot be relied on.
cat >"$WORK/run.sh" <<'RUN'
"$@"
echo "$?" >"$TUI_STATUS_FILE.tmp" && mv "$TUI_STATUS_FILE.tmp" "$TUI_STATUS_FILE"
RUN
TUI_STATUS_FILE="$WORK/status"

# tui_start W H ARGS: ARGS is one string, put after "negsync" in a shell command.
tui_start() {
    tmx kill-server >/dev/null 2>&1
    rm -f "$TUI_STATUS_FILE"
    tmx new-session -d -s tui -x "$1" -y "$2" \
        "TUI_STATUS_FILE='$TUI_STATUS_FILE' sh '$WORK/run.sh' env ${TUI_LANG:+LANG=$TUI_LANG LC_ALL=$TUI_LANG} XDG_STATE_HOME='$WORK/state' ${TUI_ENV:-} '$NEGSYNC' $3" ||
        fail "tmux new-session"
}

tui_capture() {
    tmx capture-pane -p -t tui ${1:-} >"$TUI_SCREEN" 2>/dev/null
}

tui_dead() {
    [ -f "$TUI_STATUS_FILE" ]
}

tui_wait() {
    _deadline=$(($(date +%s) + ${3:-$TUI_TIMEOUT}))
    while :; do
        tui_capture
        grep -Eq -- "$2" "$TUI_SCREEN" && return 0
        tui_dead && fail "$1: negsync exited ($(cat "$TUI_STATUS_FILE"))"
        [ "$(date +%s)" -lt "$_deadline" ] || fail "$1: no line matching '$2' within ${3:-$TUI_TIMEOUT} s"
        sleep 0.05
    done
}

tui_gone() {
    _deadline=$(($(date +%s) + ${3:-$TUI_TIMEOUT}))
    while :; do
        tui_capture
        grep -Eq -- "$2" "$TUI_SCREEN" || return 0
        [ "$(date +%s)" -lt "$_deadline" ] || fail "$1: '$2' still on screen after ${3:-$TUI_TIMEOUT} s"
        sleep 0.05
    done
}

tui_keys() {
    tmx send-keys -t tui "$@"
}

# negsync's pid: the pane's process or a descendant (the shells above it may or may not exec).
tui_pid() {
    _p=$(tmx display -p -t tui '#{pane_pid}')
    for _i in 1 2 3 4 5; do
        [ -n "$_p" ] || return 1
        [ "$(ps -o comm= -p "$_p")" = negsync ] && { echo "$_p"; return 0; }
        _p=$(ps -o pid= --ppid "$_p" | head -n 1 | tr -d ' ')
    done
    return 1
}

tui_wait_exit() {
    _deadline=$(($(date +%s) + ${1:-$TUI_TIMEOUT}))
    until tui_dead; do
        [ "$(date +%s)" -lt "$_deadline" ] || { tui_capture; fail "negsync still running after ${1:-$TUI_TIMEOUT} s"; }
        sleep 0.05
    done
    TUI_STATUS=$(cat "$TUI_STATUS_FILE")
    tui_capture
}

# A port nothing listens on: one a relay had, once it is stopped.
dead_port() {
    start_relay
    DEAD_PORT=$RELAY_PORT
    stop_relay || fail "the relay for a dead port did not stop"
}
