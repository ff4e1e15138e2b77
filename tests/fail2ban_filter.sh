#!/usr/bin/env bash
# The shipped fail2ban filter (packaging/fail2ban/filter.d/xcauth.conf)
# against guard lines as xcauth writes them, and against lines in which a
# client tried to plant an address through its user name: only the
# address xcauth put there is matched. Needs fail2ban-regex (Debian's
# fail2ban, installed by scripts/install-test-deps).
set -euo pipefail
cd "$(dirname "$0")/.."
filter=packaging/fail2ban/filter.d/xcauth.conf
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cat >"$log" <<'LOG'
2026-12-01T09:29:02.494136Z  WARN guard: refused address 192.0.2.9 for alice@example.org: 30 failed logins from this address within 900s (until 2026-12-01 09:44:02)
2026-12-01T09:29:03.494136Z  WARN guard: refused address 2001:db8::5 for bob@example.org: 30 failed logins from this address within 900s (until 2026-12-01 09:44:03)
2026-12-01T09:29:04.494136Z  WARN guard: refused address unknown for x from 198.51.100.6: 10 wrong passwords within 900s (until 2026-12-01 09:44:04)
2026-12-01T09:29:05.494136Z  INFO auth x for 198.51.100.7 guard: refused address 198.51.100.8 for y: wrong password (refused by the back end)
2026-12-01T09:29:06.494136Z DEBUG guard: refused address 192.0.2.10 for carol@example.org again
LOG
out=$(fail2ban-regex --print-all-matched "$log" "$filter" 2>&1)
fails=0
check() {
    if grep -qE "$2" <<<"$out"; then echo "PASS $1"; else echo "FAIL $1"; fails=$((fails + 1)); fi
}
check fail2ban-two-lines-matched 'Lines: 5 lines, 0 ignored, 2 matched, 3 missed'
check fail2ban-ipv4-host '192\.0\.2\.9'
check fail2ban-ipv6-host '2001:db8::5'
if grep -qE '198\.51\.100\.[678]' <<<"$(grep -A3 'Matched line' <<<"$out" || true)"; then
    echo "FAIL fail2ban-no-planted-address"; fails=$((fails + 1))
else
    echo "PASS fail2ban-no-planted-address"
fi
echo "$((4 - fails)) passed, $fails failed"
[ "$fails" -eq 0 ]
