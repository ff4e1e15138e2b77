# Helpers for tests/peers/run: results, background processes stopped by
# PID, bounded polling. Sourced, not run.
# shellcheck shell=bash

PASSED=0
FAILED=0
SKIPPED=0
XFAILED=0

# The release the checks run against ("debian13"): named on every result
# line. Empty for lines that belong to no release.
PEERS_LABEL=${PEERS_LABEL:-}

# Checks known to fail, per release: XFAIL[RELEASE:NAME]=reason. Such a
# check that fails prints XFAIL and is not counted as failed; one that passes
# prints XPASS and counts as failed, so that the list stays true.
declare -A XFAIL=()

# The reason NAME is on the XFAIL list of this release, or nothing.
xfail_reason() {
    [ -n "$PEERS_LABEL" ] && printf '%s' "${XFAIL[$PEERS_LABEL:$1]:-}"
}

# label NAME: NAME after the release, as the result lines spell it.
label() {
    echo "${PEERS_LABEL:+$PEERS_LABEL }$1"
}

pass() {
    local reason
    reason=$(xfail_reason "$1")
    if [ -n "$reason" ]; then
        FAILED=$((FAILED + 1))
        echo "XPASS $(label "$1"): passes, but is listed as failing ($reason); take it off XFAIL"
    else
        PASSED=$((PASSED + 1))
        echo "PASS $(label "$1")"
    fi
}

# fail NAME [WHY]
fail() {
    local reason
    reason=$(xfail_reason "$1")
    if [ -n "$reason" ]; then
        XFAILED=$((XFAILED + 1))
        echo "XFAIL $(label "$1"): $reason${2:+ [$2]}"
    else
        FAILED=$((FAILED + 1))
        echo "FAIL $(label "$1")${2:+: $2}"
    fi
}

# skip NAME WHY
skip() {
    SKIPPED=$((SKIPPED + 1))
    echo "SKIP $(label "$1"): $2"
}

# Prints the summary (after the release, if any); returns non-zero when
# anything failed. The last line is "N passed, N failed".
summary() {
    [ "$SKIPPED" -gt 0 ] && echo "${PEERS_LABEL:+$PEERS_LABEL }skipped: $SKIPPED"
    [ "$XFAILED" -gt 0 ] && echo "${PEERS_LABEL:+$PEERS_LABEL }known to fail (XFAIL): $XFAILED"
    echo "${PEERS_LABEL:+$PEERS_LABEL: }$PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ]
}

# Milliseconds since the epoch, for deadlines and durations.
now_ms() {
    date +%s%3N
}

# wait_until SECONDS WHAT COMMAND...: polls COMMAND every 0.1 s until it
# succeeds; false (with a note on stderr) when the deadline passes first.
wait_until() {
    local limit=$1 what=$2
    shift 2
    local deadline=$(($(now_ms) + limit * 1000))
    until "$@"; do
        if [ "$(now_ms)" -gt "$deadline" ]; then
            echo "peers: gave up after ${limit}s waiting for $what" >&2
            return 1
        fi
        sleep 0.1
    done
}

# Background processes by name: PID_OF[name]=pid, in start order.
declare -A PID_OF=()
STARTED=()

# start_bg NAME COMMAND...: runs COMMAND in the background with its output
# in $WORK/NAME.out and $WORK/NAME.err.
start_bg() {
    local name=$1
    shift
    "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
    PID_OF[$name]=$!
    STARTED+=("$name")
}

# running NAME: is that background process still alive?
running() {
    local pid=${PID_OF[$1]:-}
    [ -n "$pid" ] && alive "$pid"
}

not_running() {
    ! running "$1"
}

# alive PID: a process that has not exited (zombies count as gone: the
# children of a stopped parent may wait for a reaper that never comes).
alive() {
    local state
    state=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $state != Z* ]]
}

# all_gone PID...: none of them alive.
all_gone() {
    local pid
    for pid in "$@"; do
        ! alive "$pid" || return 1
    done
}

# stop_bg NAME: SIGTERM, up to 15 s to exit, then SIGKILL. Children that
# outlive it (socket activation starts one xcauth per connection) are
# stopped the same way afterwards, each by its own PID.
stop_bg() {
    local name=$1 pid=${PID_OF[$1]:-} children
    [ -n "$pid" ] || return 0
    children=$(pgrep -P "$pid" 2>/dev/null | tr '\n' ' ')
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_until 15 "$name (pid $pid) to stop" not_running "$name" 2>/dev/null; then
        echo "peers: $name (pid $pid) ignored SIGTERM; killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    unset "PID_OF[$name]"
    if [ -n "$children" ]; then
        # shellcheck disable=SC2086 # a list of PIDs
        kill -TERM $children 2>/dev/null || true
        # shellcheck disable=SC2086
        if ! wait_until 10 "the children of $name to stop" all_gone $children 2>/dev/null; then
            # shellcheck disable=SC2086
            kill -KILL $children 2>/dev/null || true
        fi
    fi
}

# Stops everything still running, newest first.
stop_all() {
    local i
    for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do
        if [ -n "${PID_OF[${STARTED[$i]}]:-}" ]; then
            stop_bg "${STARTED[$i]}"
        fi
    done
}

# A free TCP port on 127.0.0.1 (the kernel's pick; free when asked).
free_port() {
    /usr/bin/python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# tcp_open PORT: does 127.0.0.1:PORT accept connections?
tcp_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# unix_open PATH: does the Unix socket at PATH accept connections?
unix_open() {
    [ -S "$1" ] && /usr/bin/python3 -c 'import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(2)
s.connect(sys.argv[1])' "$1" 2>/dev/null
}

# file_has PATTERN FILE: does FILE have a line matching the extended regex?
file_has() {
    grep -qE -- "$1" "$2" 2>/dev/null
}
