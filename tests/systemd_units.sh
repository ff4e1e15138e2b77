#!/usr/bin/env bash
# Checks the shipped systemd units (systemd/*.socket, systemd/xcauth.service)
# against the real xcauth, without systemd as PID 1:
#   - each socket unit is well formed: Service=xcauth.service, Accept=no, a
#     FileDescriptorName that is a protocol, the port SPEC §3 gives that
#     protocol, loopback addresses only; a Unix socket is 0660 for the group
#     of its server (the mux socket: sasl; Prosody's: prosody; Dovecot's: dovecot);
#   - the service's trusted sockets (Environment=XCAUTH_TRUSTED_SOCKET) are
#     exactly the Unix sockets of the units: each is served and trusted
#     there, no TCP socket is;
#   - the service is Type=notify, hardened, and takes the secret from the
#     credential xcauth-secret; `systemd-analyze verify` accepts the units;
#   - one xcauth under systemd-socket-activate gets every ListenStream= of
#     every socket unit (on free loopback ports and a Unix path under a
#     temporary directory instead of the fixed ones) with the units'
#     FileDescriptorName= values, the ExecStart= arguments, the secret as a
#     credential and a NOTIFY_SOCKET; each socket must answer in the
#     protocol its name says; READY=1, then STOPPING=1 and exit 0 on
#     SIGTERM.
# One PASS/FAIL/SKIP line per check, then "N passed, N failed"; exit 1 when
# anything failed. XCAUTH_UNITS_KEEP=1 keeps the temporary directory;
# XCAUTH_UNITS_DIR=DIR checks other units, XCAUTH_UNITS_XCAUTH=PATH another
# binary (negative controls).
# Needs systemd-socket-activate and systemd-analyze (Debian package
# systemd) and /usr/bin/python3; helpers from tests/peers/lib.sh.
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
UNITS=${XCAUTH_UNITS_DIR:-$REPO/systemd}
# shellcheck source=tests/peers/lib.sh
. "$REPO/tests/peers/lib.sh"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/xcauth-units.XXXXXX")
chmod 700 "$WORK"
cleanup() {
    stop_all
    if [ -n "${XCAUTH_UNITS_KEEP:-}" ]; then
        echo "units: kept $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# unit_values FILE KEY: every value of KEY= in FILE, one a line (comments
# and blank lines skipped; an empty value resets the list, as in systemd).
unit_values() {
    awk -v key="$2" '
        /^[ \t]*[#;]/ { next }
        {
            line = $0
            sub(/^[ \t]+/, "", line)
            if (index(line, key "=") != 1) next
            value = substr(line, length(key) + 2)
            if (value == "") { n = 0; next }
            values[n++] = value
        }
        END { for (i = 0; i < n; i++) print values[i] }
    ' "$1"
}

unit_value() {
    unit_values "$1" "$2" | tail -n 1
}

# The port SPEC §3 gives each protocol name.
declare -A SPEC_PORT=([ejabberd]=23662 [prosody]=23663 [generic]=23663 [postfix]=23665 [saslauthd]=23666)
# The group of the server that alone may reach a Unix socket of that name.
declare -A SOCKET_GROUP=([prosody]=prosody [generic]=prosody [saslauthd]=sasl [dovecot]=dovecot)

# --- the units, read -------------------------------------------------------

SERVICE=$UNITS/xcauth.service
shopt -s nullglob
SOCKETS=("$UNITS"/*.socket)
shopt -u nullglob
if [ ! -f "$SERVICE" ] || [ ${#SOCKETS[@]} -eq 0 ]; then
    fail "units-present" "no $SERVICE or no socket units in $UNITS"
    summary
    exit 1
fi
pass "units-present"

# One entry per ListenStream=: unit file name, descriptor name, address.
LISTEN_UNIT=()
LISTEN_NAME=()
LISTEN_ADDR=()
for unit in "${SOCKETS[@]}"; do
    base=$(basename "$unit")
    name=$(unit_value "$unit" FileDescriptorName)
    problems=()
    [ "$(unit_value "$unit" Service)" = xcauth.service ] || problems+=("Service= is not xcauth.service")
    case "$(unit_value "$unit" Accept)" in
    "" | no | false | 0) ;;
    *) problems+=("Accept= must be no: xcauth accepts on the listening socket itself") ;;
    esac
    case "$name" in
    ejabberd | prosody | generic | postfix | saslauthd | dovecot) ;;
    *) problems+=("FileDescriptorName=$name is not a protocol") ;;
    esac
    mapfile -t streams < <(unit_values "$unit" ListenStream)
    [ ${#streams[@]} -gt 0 ] || problems+=("no ListenStream=")
    for addr in "${streams[@]}"; do
        case "$addr" in
        /*)
            [ "$(unit_value "$unit" SocketMode)" = 0660 ] || problems+=("$addr: SocketMode= is not 0660")
            group=${SOCKET_GROUP[$name]:-?}
            [ "$(unit_value "$unit" SocketGroup)" = "$group" ] || problems+=("$addr: SocketGroup= is not $group")
            ;;
        127.0.0.1:* | "[::1]:"*)
            port=${addr##*:}
            [ "$port" = "${SPEC_PORT[$name]:-}" ] || problems+=("$addr: $name belongs on port ${SPEC_PORT[$name]:-?}")
            ;;
        *) problems+=("$addr is not a loopback address or a path") ;;
        esac
        LISTEN_UNIT+=("$base")
        LISTEN_NAME+=("$name")
        LISTEN_ADDR+=("$addr")
    done
    if [ ${#problems[@]} -eq 0 ]; then
        pass "unit-$base"
    else
        fail "unit-$base" "$(IFS=';'; echo "${problems[*]}")"
    fi
done

# Every protocol of SPEC §3 has a socket, and the mux path is the usual one.
for proto in ejabberd prosody postfix saslauthd dovecot; do
    if printf '%s\n' "${LISTEN_NAME[@]}" | grep -qx "$proto"; then
        pass "units-have-$proto"
    else
        fail "units-have-$proto" "no socket unit named $proto"
    fi
done
if printf '%s\n' "${LISTEN_ADDR[@]}" | grep -qx /run/saslauthd/mux; then
    pass "units-have-saslauthd-mux"
else
    fail "units-have-saslauthd-mux" "no ListenStream=/run/saslauthd/mux"
fi

problems=()
[ "$(unit_value "$SERVICE" Type)" = notify ] || problems+=("Type= is not notify")
credential=$(unit_value "$SERVICE" LoadCredential)
[ "${credential%%:*}" = xcauth-secret ] || problems+=("no LoadCredential=xcauth-secret:...")
for key in ProtectSystem=strict NoNewPrivileges=yes PrivateTmp=yes ProtectHome=yes \
    StateDirectory=xcauth LogsDirectory=xcauth "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6" \
    SystemCallFilter=@system-service CapabilityBoundingSet=; do
    k=${key%%=*}
    unit_values "$SERVICE" "$k" | grep -qxF -- "${key#*=}" || {
        # CapabilityBoundingSet= (empty) resets; look for the bare line.
        [ -z "${key#*=}" ] && grep -qx "$k=" "$SERVICE"
    } || problems+=("no $key")
done
# Every socket's max-connections (1024 by default) must fit: xcauth refuses
# to start otherwise, and may not raise the limit under @resources.
nofile=$(unit_value "$SERVICE" LimitNOFILE)
if [ -z "$nofile" ] || [ "${nofile%%:*}" -lt $(( ${#LISTEN_NAME[@]} * 1024 + 256 )) ]; then
    problems+=("LimitNOFILE=${nofile:-unset} below ${#LISTEN_NAME[@]} sockets x 1024 + 256")
fi
if [ "$(unit_value "$SERVICE" DynamicUser)" != yes ] && [ -z "$(unit_value "$SERVICE" User)" ]; then
    problems+=("neither DynamicUser=yes nor User=")
fi
if [ ${#problems[@]} -eq 0 ]; then
    pass "unit-xcauth.service"
else
    fail "unit-xcauth.service" "$(IFS=';'; echo "${problems[*]}")"
fi

# The sockets the service trusts: Environment=XCAUTH_TRUSTED_SOCKET=LIST.
TRUSTED=$(unit_values "$SERVICE" Environment | sed -n 's/^XCAUTH_TRUSTED_SOCKET=//p' | tail -n 1)
read -r -a TRUSTED_LIST <<<"${TRUSTED//,/ }"
UNIX_ADDRS=$(printf '%s\n' "${LISTEN_ADDR[@]}" | grep '^/' | sed 's/^/unix:/' | sort)
if [ "$(printf '%s\n' "${TRUSTED_LIST[@]}" | sort)" = "$UNIX_ADDRS" ]; then
    pass "service-trusts-the-unix-sockets"
else
    fail "service-trusts-the-unix-sockets" "XCAUTH_TRUSTED_SOCKET=$TRUSTED, Unix sockets: $(echo $UNIX_ADDRS)"
fi

# ExecStart=: the program, then the arguments the test passes on.
read -r -a EXEC <<<"$(unit_value "$SERVICE" ExecStart)"
EXEC_ARGS=("${EXEC[@]:1}")

# --- tools and binaries ----------------------------------------------------------

TARGET=${CARGO_TARGET_DIR:-$REPO/target}
if ! (cd "$REPO" && cargo build --quiet -p xcauth --bin xcauth -p xcauth-tools --bin xcauth-standin); then
    fail "units-build" "cargo build failed"
    summary
    exit 1
fi
XCAUTH=${XCAUTH_UNITS_XCAUTH:-$TARGET/debug/xcauth}
STANDIN=$TARGET/debug/xcauth-standin

if command -v systemd-analyze >/dev/null; then
    # A copy whose ExecStart= names the binary just built: verify checks
    # that the program exists.
    mkdir -p "$WORK/units"
    cp "$UNITS"/*.service "$UNITS"/*.socket "$WORK/units/"
    sed -i "s#^ExecStart=${EXEC[0]}#ExecStart=$XCAUTH#" "$WORK/units/xcauth.service"
    if systemd-analyze verify "$WORK"/units/* >"$WORK/verify.out" 2>&1; then
        pass "systemd-analyze-verify"
    else
        fail "systemd-analyze-verify" "$(head -c 600 "$WORK/verify.out")"
    fi
else
    skip "systemd-analyze-verify" "systemd-analyze not installed (Debian package systemd)"
fi

if ! command -v systemd-socket-activate >/dev/null || [ ! -x /usr/bin/python3 ]; then
    skip "units-served" "needs systemd-socket-activate (package systemd) and /usr/bin/python3"
    summary
    exit $?
fi

# --- helpers in Python: a protocol client and a notify socket --------------------------

cat >"$WORK/client.py" <<'PY'
"""client.py PROTOCOL ADDRESS: one good and one bad request of PROTOCOL to
ADDRESS (HOST:PORT, [V6]:PORT or a Unix path); exit 0 when both answers are
right, else print what came back."""
import socket
import struct
import sys

proto, addr = sys.argv[1], sys.argv[2]
if addr.startswith("/"):
    s = socket.socket(socket.AF_UNIX)
    target = addr
elif addr.startswith("["):
    host, port = addr[1:].split("]:")
    s = socket.socket(socket.AF_INET6)
    target = (host, int(port))
else:
    host, port = addr.rsplit(":", 1)
    s = socket.socket(socket.AF_INET)
    target = (host, int(port))
s.settimeout(10)
s.connect(target)


def read(n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise EOFError("closed after %r" % data)
        data += chunk
    return data


def line():
    data = b""
    while not data.endswith(b"\n"):
        data += read(1)
    return data


def field(b):
    return struct.pack(">H", len(b)) + b


def frame(text):
    return struct.pack(">H", len(text)) + text.encode()


if proto == "ejabberd":
    checks = [(frame("auth:alice:example.org:alice-pw"), lambda: read(4), b"\0\2\0\1"),
              (frame("auth:alice:example.org:wrong"), lambda: read(4), b"\0\2\0\0")]
elif proto in ("prosody", "generic"):
    checks = [(b"auth:alice:example.org:alice-pw\n", line, b"1\n"),
              (b"isuser:nobody:example.org\n", line, b"0\n")]
elif proto == "postfix":
    checks = [(b"get alice@example.org\n", lambda: line()[:4], b"200 "),
              (b"get nobody@example.org\n", lambda: line()[:4], b"500 ")]
elif proto == "saslauthd":
    def answer():
        (n,) = struct.unpack(">H", read(2))
        return read(n)[:2]
    checks = [(field(b"alice") + field(b"alice-pw") + field(b"imap") + field(b"example.org"), answer, b"OK"),
              (field(b"alice") + field(b"wrong") + field(b"imap") + field(b"example.org"), answer, b"NO")]
elif proto == "dovecot":
    checks = [(b"auth\talice\texample.org\talice-pw\timap\t192.0.2.7\n", line, b"OK\n"),
              (b"isuser\tnobody\texample.org\n", line, b"NO\n")]
else:
    sys.exit("unknown protocol " + proto)
for request, get, want in checks:
    s.sendall(request)
    got = get()
    if got != want:
        sys.exit("%s: sent %r, got %r, want %r" % (proto, request[:40], got, want))
PY

cat >"$WORK/notify.py" <<'PY'
"""notify.py PATH: a NOTIFY_SOCKET at PATH; prints each message, one line
each, until STOPPING=1 or 60 s pass."""
import socket
import sys

s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(60)
while True:
    try:
        message = s.recv(4096).decode(errors="replace")
    except socket.timeout:
        break
    print(message.replace("\n", " ").strip(), flush=True)
    if "STOPPING=1" in message:
        break
PY

# --- xcauth under systemd-socket-activate, as the units describe ------------------

umask 077
printf 'units-secret-%s-%s' "$RANDOM" "$RANDOM" >"$WORK/secret"
start_bg standin "$STANDIN" --users "$REPO/testdata/users.txt" --secret-file "$WORK/secret" --listen 127.0.0.1:0
if ! wait_until 30 "the stand-in Nextcloud" file_has '^listening on http' "$WORK/standin.out"; then
    fail "standin-start" "$(head -c 300 "$WORK/standin.err")"
    summary
    exit 1
fi
URL=$(sed -n '1s/^listening on //p' "$WORK/standin.out")

# What /etc/xcauth.conf and LoadCredential= would give it.
mkdir -p "$WORK/credentials" "$WORK/log" "$WORK/run"
cp "$WORK/secret" "$WORK/credentials/${credential%%:*}"
cat >"$WORK/xcauth.conf" <<EOF
url=$URL
log=$WORK/log
debug
timeout=5,10
EOF

ipv6_loopback() {
    /usr/bin/python3 -c 'import socket
s = socket.socket(socket.AF_INET6)
s.bind(("::1", 0))' 2>/dev/null
}
HAVE_IPV6=yes
ipv6_loopback || HAVE_IPV6=

# One free port per unit port; addresses of one unit share it, as in the
# units. Unix paths move under $WORK/run.
declare -A PORT_MAP=()
map_address() {
    local addr=$1 port
    case "$addr" in
    /*) echo "$WORK/run${addr//\//_}" ;;
    *)
        port=${addr##*:}
        echo "${addr%:*}:${PORT_MAP[$port]}"
        ;;
    esac
}

SERVED_ADDR=()
activated=
for _ in 1 2 3 4 5; do
    PORT_MAP=()
    for addr in "${LISTEN_ADDR[@]}"; do
        case "$addr" in
        /*) ;;
        *) [ -n "${PORT_MAP[${addr##*:}]:-}" ] || PORT_MAP[${addr##*:}]=$(free_port) ;;
        esac
    done
    args=()
    names=()
    SERVED_ADDR=()
    for i in "${!LISTEN_ADDR[@]}"; do
        addr=${LISTEN_ADDR[$i]}
        if [[ $addr == "[::1]:"* ]] && [ -z "$HAVE_IPV6" ]; then
            SERVED_ADDR+=("")
            continue
        fi
        mapped=$(map_address "$addr")
        SERVED_ADDR+=("$mapped")
        args+=(-l "$mapped")
        names+=("${LISTEN_NAME[$i]}")
    done
    mapped_trusted=()
    for entry in "${TRUSTED_LIST[@]}"; do
        case "$entry" in
        unix:*) mapped_trusted+=("unix:$(map_address "${entry#unix:}")") ;;
        *) mapped_trusted+=("$entry") ;;
        esac
    done
    rm -f "$WORK"/run/* "$WORK/notify"
    start_bg notify /usr/bin/python3 "$WORK/notify.py" "$WORK/notify"
    wait_until 10 "the notify socket" test -S "$WORK/notify" || true
    start_bg xcauth env XCAUTH_CONFIG_FILE="$WORK/xcauth.conf" CREDENTIALS_DIRECTORY="$WORK/credentials" \
        NOTIFY_SOCKET="$WORK/notify" XCAUTH_TRUSTED_SOCKET="$(IFS=,; echo "${mapped_trusted[*]}")" \
        systemd-socket-activate "${args[@]}" "--fdname=$(IFS=:; echo "${names[*]}")" \
        -E XCAUTH_CONFIG_FILE -E CREDENTIALS_DIRECTORY -E NOTIFY_SOCKET -E XCAUTH_TRUSTED_SOCKET \
        -- "$XCAUTH" "${EXEC_ARGS[@]}"
    all_listening() {
        [ "$(grep -c '^Listening on' "$WORK/xcauth.err")" -eq "${#names[@]}" ]
    }
    if wait_until 10 "systemd-socket-activate to listen" all_listening; then
        activated=yes
        break
    fi
    # A port taken meanwhile: the tool gave up; try new ports.
    stop_bg xcauth
    stop_bg notify
done
if [ -z "$activated" ]; then
    fail "units-served" "systemd-socket-activate never listened: $(head -c 400 "$WORK/xcauth.err")"
    summary
    exit 1
fi

for i in "${!LISTEN_ADDR[@]}"; do
    check="served-${LISTEN_UNIT[$i]}-${LISTEN_ADDR[$i]}"
    if [ -z "${SERVED_ADDR[$i]}" ]; then
        skip "$check" "no IPv6 loopback on this machine"
        continue
    fi
    if out=$(/usr/bin/python3 "$WORK/client.py" "${LISTEN_NAME[$i]}" "${SERVED_ADDR[$i]}" 2>&1); then
        pass "$check"
    else
        fail "$check" "$(tail -n 1 <<<"$out" | head -c 300)"
    fi
done

if wait_until 10 "READY=1" file_has 'READY=1' "$WORK/notify.out"; then
    pass "service-notify-ready"
else
    fail "service-notify-ready" "no READY=1 on NOTIFY_SOCKET"
fi

pid=${PID_OF[xcauth]}
kill -TERM "$pid" 2>/dev/null
if wait_until 15 "xcauth to stop" not_running xcauth; then
    wait "$pid"
    rc=$?
    unset "PID_OF[xcauth]"
    if [ "$rc" -eq 0 ]; then
        pass "service-sigterm-exit-0"
    else
        fail "service-sigterm-exit-0" "exit status $rc"
    fi
else
    fail "service-sigterm-exit-0" "still running 15 s after SIGTERM"
fi
if wait_until 10 "STOPPING=1" file_has 'STOPPING=1' "$WORK/notify.out"; then
    pass "service-notify-stopping"
else
    fail "service-notify-stopping" "no STOPPING=1 on NOTIFY_SOCKET"
fi
# Trusted: the Unix sockets, by their address, and nothing else.
believed=$(grep -c 'listening on .*client addresses believed' "$WORK/log/xcauth.log")
unix_count=$(printf '%s\n' "${LISTEN_ADDR[@]}" | grep -c '^/')
if [ "$believed" -eq "$unix_count" ] && [ "${#TRUSTED_LIST[@]}" -gt 0 ] &&
    ! file_has 'matches no socket' "$WORK/log/xcauth.log"; then
    pass "service-trusted-sockets-matched"
else
    fail "service-trusted-sockets-matched" "$believed of $unix_count Unix sockets trusted; $(grep -m1 'matches no socket' "$WORK/log/xcauth.log")"
fi
if file_has 'systemd socket saslauthd' "$WORK/log/xcauth.log"; then
    pass "service-log-names-sockets"
else
    fail "service-log-names-sockets" "xcauth.log does not list the systemd sockets by name"
fi

summary
