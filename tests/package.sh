#!/usr/bin/env bash
# Builds the Debian package and checks what it holds: the binary runs, the
# units, the Prosody module, the wrappers and the sample configuration are
# where the documentation says.
set -euo pipefail
cd "$(dirname "$0")/.."
pass=0 fail=0
check() { if "${@:2}"; then echo "PASS $1"; pass=$((pass + 1)); else echo "FAIL $1"; fail=$((fail + 1)); fi; }
deb=$(scripts/build-deb)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
dpkg-deb -x "$deb" "$dir"
check package-binary-runs sh -c "'$dir/usr/sbin/xcauth' --version | grep -q xcauth"
for f in lib/systemd/system/xcauth.service lib/systemd/system/xcprosody.socket \
    lib/systemd/system/xcsaslauth.socket usr/lib/xcauth/prosody/mod_auth_xcauth.lua \
    usr/sbin/xcdeluser usr/sbin/xcejabberdctl etc/xcauth.conf etc/logrotate.d/xcauth \
    etc/fail2ban/filter.d/xcauth.conf etc/fail2ban/jail.d/xcauth.conf; do
    check "package-has-$(basename "$f")" test -e "$dir/$f"
done
dpkg-deb -c "$deb" >"$dir/listing"
check package-conf-not-world-readable grep -q '^-rw------- .* ./etc/xcauth.conf$' "$dir/listing"
check package-service-execstart sh -c "grep -q '^ExecStart=/usr/sbin/xcauth' '$dir/lib/systemd/system/xcauth.service'"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
