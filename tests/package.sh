#!/usr/bin/env bash
# The Debian package: builds it (scripts/build-deb), checks what it holds
# and runs lintian on it, then installs it on a clean Debian 12 (a minbase
# chroot made with debootstrap and cached), runs it there, removes and
# purges it, and checks that nothing is left behind.
#
# The chroot: XCAUTH_PACKAGE_CHROOTS (default /var/cache/xcauth-package)/
# bookworm, rebuilt when its stamp (mirror, package list, recipe) changes or
# with XCAUTH_PACKAGE_CHROOT_REBUILD=1. Mirror: XCAUTH_PACKAGE_MIRROR, else
# the Debian archive of the host's apt sources. Each run installs into an
# overlay of the cached chroot, so the cache stays clean. The chroot part
# needs root and debootstrap, and is skipped without root
# (XCAUTH_SKIP_PACKAGE_CHROOT=1 skips it too). `tests/package.sh chroot`
# only builds the chroot and prints its path. Tools: scripts/install-test-deps.
set -euo pipefail
self=$(readlink -f "$0")
cd "$(dirname "$self")/.."

SUITE=bookworm
CACHE=${XCAUTH_PACKAGE_CHROOTS:-/var/cache/xcauth-package}
# What the clean system holds besides minbase: the package's Depends that
# minbase lacks (the install is offline; a missing one fails it).
CHROOT_PACKAGES=(adduser)
# Bounds: building the chroot (cold: about two minutes), and everything
# done inside it (cached: seconds).
CHROOT_BUILD_TIMEOUT=900
CHROOT_RUN_TIMEOUT=180

# The Debian archive the host's apt uses (deb822 or one-line sources).
host_mirror() {
    local uri
    uri=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
        sed -n 's/^URIs:[[:space:]]*//p' | tr ' ' '\n' | grep -E '/debian/?$' | head -n 1) || true
    if [ -z "$uri" ]; then
        uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
            awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; break } }' |
            grep -E '/debian/?$' | head -n 1) || true
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}

# The recipe of the cached chroot; its text is part of the stamp.
make_root() { # DIR MIRROR
    local dir=$1 mirror=$2
    debootstrap --variant=minbase --include="$(
        IFS=,
        echo "${CHROOT_PACKAGES[*]}"
    )" "$SUITE" "$dir" "$mirror"
    chroot "$dir" apt-get clean
    rm -rf "$dir/var/lib/apt/lists/"* "$dir/tmp/"*
}

stamp() { # MIRROR
    {
        echo "$SUITE $1 ${CHROOT_PACKAGES[*]}"
        declare -f make_root
    } | sha256sum | cut -d ' ' -f 1
}

# Prints the cached chroot's path, building it first if needed.
build_root() {
    local mirror dir want t0
    mirror=${XCAUTH_PACKAGE_MIRROR:-$(host_mirror)}
    mirror=${mirror%/}
    dir=$CACHE/$SUITE
    want=$(stamp "$mirror")
    mkdir -p "$CACHE"
    exec 8>"$CACHE/$SUITE.lock"
    flock 8
    if [ -z "${XCAUTH_PACKAGE_CHROOT_REBUILD:-}" ] && [ -f "$dir/.xcauth-package-stamp" ] &&
        [ "$(cat "$dir/.xcauth-package-stamp")" = "$want" ]; then
        echo "$dir"
        return
    fi
    echo "package chroot: building Debian 12 ($SUITE) in $dir from $mirror" >&2
    t0=$(date +%s)
    rm -rf --one-file-system "$dir.new"
    mkdir -p "$dir.new"
    if ! timeout "$CHROOT_BUILD_TIMEOUT" "$self" _make "$dir.new" "$mirror" >"$CACHE/$SUITE.build.log" 2>&1; then
        tail -n 20 "$CACHE/$SUITE.build.log" >&2
        echo "package chroot: building it failed (log: $CACHE/$SUITE.build.log)" >&2
        return 1
    fi
    echo "$want" >"$dir.new/.xcauth-package-stamp"
    rm -rf --one-file-system "$dir"
    mv "$dir.new" "$dir"
    echo "package chroot: built in $(($(date +%s) - t0)) s" >&2
    echo "$dir"
}

# In a private mount namespace: the cached chroot as the lower layer of an
# overlay in WORK, /proc and /dev inside, then the checks below as root of
# that system. The mounts vanish with the namespace.
inside() { # ROOT WORK DEB
    local root=$1 work=$2 deb=$3 merged=$2/merged
    mkdir -p "$work/upper" "$work/work" "$merged"
    mount -t overlay overlay -o "lowerdir=$root,upperdir=$work/upper,workdir=$work/work" "$merged"
    mount -t proc proc "$merged/proc"
    mount --rbind /dev "$merged/dev"
    mount --make-rslave "$merged/dev"
    install -m 0644 "$deb" "$merged/tmp/xcauth.deb"
    install -m 0755 "$self" "$merged/tmp/package.sh"
    printf 'demo-secret' >"$merged/tmp/secret"
    printf 'xcauth-api-app' >"$merged/tmp/api-password"
    chmod 0644 "$merged/tmp/secret" "$merged/tmp/api-password"
    chroot "$merged" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
        "STANDIN_URL=$STANDIN_URL" /bin/bash /tmp/package.sh _checks
}

# Everything on the system that a package could leave behind: each path
# with its type, mode and owner; not /tmp (this test's files) nor /run
# (emptied at boot; adduser leaves its lock there), nor what apt, dpkg and
# debconf keep about their own runs.
snapshot() {
    find / -xdev \( -path /tmp -o -path /run -o -path /var/lib/apt/extended_states -o -path /var/cache/apt -o -path /var/log/apt \
        -o -path /var/lib/apt/lists -o -path /var/log/dpkg.log \
        -o -path /var/cache/debconf -o -path /var/log/alternatives.log \
        -o -path /etc/passwd- -o -path /etc/group- -o -path /etc/shadow- \
        -o -path /etc/gshadow- -o -path /etc/subuid- -o -path /etc/subgid- \) -prune \
        -o -printf '%p %y %m %u %g\n' | LC_ALL=C sort
    # The user databases by content (their backup files are excluded above).
    cat /etc/passwd /etc/group /etc/shadow /etc/gshadow
}

# Inside the clean system, as root: prints PASS/FAIL lines.
checks() {
    local t=/tmp
    say() { if "${@:2}"; then echo "PASS $1"; else echo "FAIL $1"; fi; }
    # quiet COMMAND...: its output only if it fails.
    quiet() { "$@" >"$t/out" 2>&1 || { sed 's/^/  /' "$t/out"; return 1; }; }
    snapshot >"$t/before"
    export DEBIAN_FRONTEND=noninteractive
    say chroot-install quiet apt-get install -y -qq --no-install-recommends "$t/xcauth.deb"
    say chroot-version sh -c '/usr/sbin/xcauth --version | grep -q "^xcauth [0-9]"'
    # shellcheck disable=SC2016
    say chroot-system-user sh -c 'getent passwd xcauth |
        awk -F: '\''$3 < 1000 && $6 == "/var/lib/xcauth" && $7 == "/usr/sbin/nologin" { ok = 1 } END { exit !ok }'\'''
    say chroot-system-group quiet getent group xcauth
    say chroot-state-dir test "$(stat -c '%U:%G %a' /var/lib/xcauth)" = "xcauth:xcauth 700"
    say chroot-log-dir test "$(stat -c '%U:%G %a' /var/log/xcauth)" = "xcauth:xcauth 750"
    say chroot-conf-mode test "$(stat -c '%U:%G %a' /etc/xcauth.conf)" = "root:xcauth 640"
    say chroot-conffile sh -c "dpkg-query -W -f='\${Conffiles}\n' xcauth | grep -q '^ /etc/xcauth.conf '"
    say chroot-man-page sh -c 'zcat /usr/share/man/man8/xcauth.8.gz | grep -q "^\.TH xcauth 8 "'
    say chroot-man-subcommand sh -c 'zcat /usr/share/man/man8/xcauth-domain-add.8.gz | grep -q "^\.TH xcauth-domain-add 8 "'
    say chroot-man-wrapper-alias test -f "$(readlink -f /usr/share/man/man8/xcdeluser.8.gz)"
    say chroot-units-installed test -f /lib/systemd/system/xcauth.service -a -f /lib/systemd/system/xcprosody.socket
    say chroot-units-not-enabled sh -c '! find /etc/systemd -lname "*xc*" | grep -q .'
    # A real round as the system user, against the stand-in Nextcloud on
    # the host's loopback; the password cache goes to the database in
    # /var/lib/xcauth (the default --db).
    local answers
    answers=$(printf 'auth:alice:example.org:alice-pw\nauth:alice:example.org:wrong\nisuser:bob:example.org\nisuser:nobody:example.org\n' |
        setpriv --reuid xcauth --regid xcauth --init-groups -- /usr/sbin/xcauth -t generic \
            --cache-storage db --backend nextcloud --url "$STANDIN_URL" --api-user xcauth-api \
            --api-password-file "$t/api-password" --secret-file "$t/secret" 2>"$t/round.err" | tr '\n' ' ') || true
    say chroot-round test "$answers" = "1 0 1 0 "
    [ "$answers" = "1 0 1 0 " ] || sed 's/^/  /' "$t/round.err"
    # Owned by the user, not world-readable (it holds domain secrets).
    say chroot-round-db-owned test "$(stat -c %U /var/lib/xcauth/xcauth.sqlite3)" = xcauth
    say chroot-round-db-not-world-readable test "$(stat -c %A /var/lib/xcauth/xcauth.sqlite3 | cut -c 8-10)" = ---

    say chroot-remove quiet apt-get remove -y -qq xcauth
    say chroot-remove-binary-gone test ! -e /usr/sbin/xcauth
    say chroot-remove-keeps-conffile test -f /etc/xcauth.conf
    say chroot-remove-keeps-data test -f /var/lib/xcauth/xcauth.sqlite3
    say chroot-remove-keeps-user quiet getent passwd xcauth
    say chroot-purge quiet apt-get purge -y -qq xcauth
    say chroot-purge-not-known sh -c '! dpkg-query -W xcauth 2>/dev/null'
    snapshot >"$t/after"
    if cmp -s "$t/before" "$t/after"; then
        echo "PASS chroot-purge-leaves-nothing"
    else
        echo "FAIL chroot-purge-leaves-nothing"
        diff "$t/before" "$t/after" | sed 's/^/  /' | head -n 40 || true
    fi
    return 0
}

case "${1:-}" in
chroot) # tests/package.sh chroot: build (or find) the cached chroot, print its path
    build_root
    exit
    ;;
_make)
    make_root "$2" "$3"
    exit
    ;;
_inside)
    inside "$2" "$3" "$4"
    exit
    ;;
_checks)
    checks
    exit
    ;;
esac

pass=0 fail=0 skipped=0
check() { if "${@:2}"; then echo "PASS $1"; pass=$((pass + 1)); else echo "FAIL $1"; fail=$((fail + 1)); fi; }
tally() { # reads PASS/FAIL lines
    local line
    while IFS= read -r line; do
        echo "$line"
        case $line in
        PASS\ *) pass=$((pass + 1)) ;;
        FAIL\ *) fail=$((fail + 1)) ;;
        esac
    done
}

deb=$(scripts/build-deb)
dir=$(mktemp -d)
standin_pid=
cleanup() {
    [ -n "$standin_pid" ] && kill "$standin_pid" 2>/dev/null
    rm -rf --one-file-system "$dir"
}
trap cleanup EXIT
dpkg-deb -x "$deb" "$dir/x"
dpkg-deb -I "$deb" control >"$dir/control"
dpkg-deb -c "$deb" >"$dir/listing"
check package-binary-runs sh -c "'$dir/x/usr/sbin/xcauth' --version | grep -q xcauth"
for f in lib/systemd/system/xcauth.service lib/systemd/system/xcprosody.socket \
    lib/systemd/system/xcprosody-unix.socket \
    lib/systemd/system/xcsaslauth.socket usr/lib/xcauth/prosody/mod_auth_xcauth.lua \
    lib/systemd/system/xcdovecot.socket usr/lib/xcauth/dovecot/xcauth.lua \
    usr/share/doc/xcauth/examples/dovecot/auth-xcauth-2.3.conf.ext \
    usr/share/doc/xcauth/examples/dovecot/auth-xcauth-2.4.conf.ext \
    usr/lib/xcauth/prosody/mod_roster_xcauth.lua usr/lib/xcauth/prosody/xcauth_connection.lib.lua \
    usr/sbin/xcdeluser usr/sbin/xcejabberdctl etc/xcauth.conf etc/logrotate.d/xcauth \
    etc/fail2ban/filter.d/xcauth.conf etc/fail2ban/jail.d/xcauth.conf \
    usr/share/man/man8/xcauth.8.gz usr/share/doc/xcauth/copyright \
    usr/share/doc/xcauth/examples/sudoers.d-xcauth; do
    check "package-has-$(basename "$f")" test -e "$dir/x/$f"
done
check package-conf-not-world-readable grep -q '^-rw-r----- .* ./etc/xcauth.conf$' "$dir/listing"
check package-ships-no-state-dirs sh -c "! grep -E ' ./var/(lib|log)/xcauth/?$' '$dir/listing'"
check package-service-static-user grep -qx 'DynamicUser=no' "$dir/x/lib/systemd/system/xcauth.service.d/xcauth-package.conf"
check package-service-execstart grep -q '^ExecStart=/usr/sbin/xcauth' "$dir/x/lib/systemd/system/xcauth.service"
check package-service-trusts-prosody-socket grep -q '^Environment=XCAUTH_TRUSTED_SOCKET=.*unix:/run/xcauth/prosody.sock' \
    "$dir/x/lib/systemd/system/xcauth.service"
check package-depends-adduser grep -q '^Depends:.*adduser' "$dir/control"
if command -v lintian >/dev/null; then
    # Errors and warnings fail; overrides (debian/xcauth.lintian-overrides)
    # explain each tag that stays.
    if lintian --fail-on error,warning --suppress-tags-from-file /dev/null "$deb" >"$dir/lintian" 2>&1; then
        echo "PASS package-lintian"
        pass=$((pass + 1))
    else
        echo "FAIL package-lintian"
        sed 's/^/  /' "$dir/lintian"
        fail=$((fail + 1))
    fi
else
    echo "SKIP package-lintian (lintian missing: scripts/install-test-deps)"
    skipped=$((skipped + 1))
fi

if [ -n "${XCAUTH_SKIP_PACKAGE_CHROOT:-}" ]; then
    echo "SKIP package-chroot (XCAUTH_SKIP_PACKAGE_CHROOT)"
    skipped=$((skipped + 1))
elif [ "$(id -u)" -ne 0 ] || ! command -v debootstrap >/dev/null; then
    echo "SKIP package-chroot (needs root and debootstrap: scripts/install-test-deps)"
    skipped=$((skipped + 1))
else
    t0=$(date +%s)
    if root=$(build_root); then
        # As scripts/try builds it (the same packages, so the same features):
        # no rebuild after it.
        cargo build --release --quiet -p xcauth --bin xcauth -p xcauth-tools --bin xcauth-standin
        printf demo-secret >"$dir/secret"
        coproc STANDIN { exec target/release/xcauth-standin --users testdata/users.txt \
            --secret-file "$dir/secret" --listen 127.0.0.1:0 2>/dev/null; }
        standin_pid=$STANDIN_PID
        read -r -t 10 line <&"${STANDIN[0]}"
        line=${line#listening on }
        export STANDIN_URL=${line%%/index.php/*}
        tally < <(timeout "$CHROOT_RUN_TIMEOUT" unshare --mount --propagation private \
            "$self" _inside "$root" "$dir" "$PWD/$deb" || echo "FAIL chroot-run (exit $?)")
        echo "package chroot: $(($(date +%s) - t0)) s"
    else
        echo "FAIL package-chroot-build"
        fail=$((fail + 1))
    fi
fi
echo "$pass passed, $fail failed, $skipped skipped"
[ "$fail" -eq 0 ]
