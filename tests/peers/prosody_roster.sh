# Shared rosters in Prosody (prosody/mod_roster_xcauth.lua), for
# tests/peers/run, which sources this file after its own Prosody checks:
# a Prosody of its own, a stand-in Nextcloud of its own (its users change
# during the checks) and xcauth of both back-end kinds in front of it.
# Sourced, not run; uses run's helpers and settings (WORK, HERE, XCAUTH,
# STANDIN, SECRET_FILE, SILENT_PORT, GARBAGE_PORT, serve_xcauth_kind, ...).
# shellcheck shell=bash

RS=$WORK/roster
RS_USERS=$RS/users.txt
mkdir -p "$RS/prosody/data" "$RS/prosody/certs"

# The members of the big group: "big" and this many more.
RS_CROWD=499
# How long the module and xcauth (nextcloud kind) keep a roster here, in
# seconds: the changes below show after this.
RS_TTL=2

# rs_users CHANGED: the stand-in's users; CHANGED=1 after Nextcloud changed:
# bob left alice's groups, dora got another display name, the group "crew"
# another label.
rs_users() {
    local crew="Roster Crew" dora="Dora Roster" bob_groups="crew,second" i
    if [ "$1" = 1 ]; then
        crew="Crew Renamed" dora="Dora Renamed" bob_groups="elsewhere"
    fi
    printf 'group:\tcrew\t%s\n' "$crew"
    printf 'group:\tcrowd\tBig Crowd\n'
    printf 'alice\talice-pw\tAlice Roster\tcrew,second\n'
    printf 'bob\tbob-pw\tBob Roster\t%s\n' "$bob_groups"
    printf 'dora\tdora-pw\t%s\tcrew\n' "$dora"
    printf 'carla\tcarla-pw\tCarla Alone\tlonely\n'
    printf 'big\tbig-pw\tBig Boss\tcrowd\n'
    for ((i = 1; i <= RS_CROWD; i++)); do
        printf 'm%03d\tm-pw\tMember %03d\tcrowd\n' "$i" "$i"
    done
    printf 'xcauth-api\txcauth-api-main-pw\txcauth API account\t\tadmin\tapp-password=xcauth-api-app\n'
}

RS_PORT=$(free_port)
declare -A RS_PUSH_PID=() RS_BOB_PID=()
# rs_standin: starts the stand-in on its port with the users of $RS_USERS
# (which POST /_standin/users/reload reads again).
rs_standin() {
    start_bg roster-standin "$STANDIN" --users "$RS_USERS" --secret-file "$SECRET_FILE" \
        --listen "127.0.0.1:$RS_PORT" --bruteforce-allowlist 127.0.0.0/8
    wait_until 30 "the roster stand-in" file_has '^listening on http' "$WORK/roster-standin.out"
}

# rs_control PATH BODY: POST to the stand-in's /_standin/PATH; false unless
# it answers 200.
rs_control() {
    /usr/bin/python3 -c 'import sys, urllib.request
urllib.request.urlopen(urllib.request.Request(sys.argv[1], data=sys.argv[2].encode()), timeout=5).read()' \
        "http://127.0.0.1:$RS_PORT/_standin/$1" "$2"
}

# rs_latency MS: the stand-in answers every API request after MS ms.
rs_latency() {
    rs_control latency "$1"
}

# rs_login NAME USER@HOST PASSWORD [xmpp-roster OPTIONS...]: one session of
# the roster client; its JSON report in $RS/NAME.json.
rs_login() {
    local name=$1 jid=$2 password=$3
    shift 3
    XMPP_PASSWORD=$password timeout 60 "$HERE/xmpp-roster" --port "$RS_PR_PORT" --timeout 40 "$@" \
        "$jid" >"$RS/$name.json" 2>>"$RS/xmpp-roster.err"
}

# report_ok NAME EXPR: does the report of NAME satisfy the Python expression
# EXPR? In it, r is the report, R its roster ({} if none), and A, B, C, D
# the JIDs of alice, bob, carla and dora on the host $h.
report_ok() {
    /usr/bin/python3 -c 'import json, sys
try:
    r = json.load(open(sys.argv[1]))
except ValueError:
    sys.exit(1)
R = r.get("roster") or {}
A, B, C, D = (u + "@" + sys.argv[3] for u in ("alice", "bob", "carla", "dora"))
sys.exit(0 if eval(sys.argv[2]) else 1)' "$RS/$1.json" "$2" "${h:-}" 2>/dev/null
}

# rs_check CHECK NAME EXPR: pass CHECK if the report of NAME satisfies EXPR.
rs_check() {
    if report_ok "$2" "$3"; then
        pass "$1"
    else
        fail "$1" "$(head -c 400 "$RS/$2.json" 2>/dev/null)"
    fi
}

rs_users 0 >"$RS_USERS"
if ! rs_standin; then
    fail "prosody-roster-standin-start" "$(head -c 300 "$WORK/roster-standin.err")"
    return 0
fi
RS_URL=$(sed -n '1s/^listening on //p' "$WORK/roster-standin.out")

# Per kind: one xcauth for logins and rosters, one for the "down" host's
# rosters (stopped during the checks). The kind's options come from run's
# backend_args, pointed at this stand-in and databases of their own.
declare -A RS_XC_PORT=() RS_DOWN_PORT=()
for kind in jsxc nextcloud; do
    RS_XC_PORT[$kind]=$(free_port)
    RS_DOWN_PORT[$kind]=$(free_port)
    for role in main down; do
        port=${RS_XC_PORT[$kind]}
        [ "$role" = down ] && port=${RS_DOWN_PORT[$kind]}
        URL=$RS_URL NC_URL=${RS_URL%%/index.php/*} XCAUTH_DB=$RS/xcauth-$kind-$role.sqlite3 \
            NC_DB=$RS/xcauth-$kind-$role.sqlite3 \
            serve_xcauth_kind "$kind" "roster-xcauth-$kind-$role" generic "127.0.0.1:$port" \
            --roster-ttl "${RS_TTL}s"
    done
done

# Misbehaving roster sockets: one that answers with an endless line (over
# the module's MAX_ANSWER, 8 MiB), one with a roster of 20 001 members (over
# its MAX_MEMBERS, 20 000).
RS_FLOOD_PORT=$(free_port)
start_bg roster-flood systemd-socket-activate --accept --inetd -l "127.0.0.1:$RS_FLOOD_PORT" \
    sh -c 'read -r _; exec tr "\0" x </dev/zero'
RS_HUGE_PORT=$(free_port)
start_bg roster-huge systemd-socket-activate --accept --inetd -l "127.0.0.1:$RS_HUGE_PORT" \
    /usr/bin/python3 -c 'import json, sys
for _ in sys.stdin:
    print(json.dumps({"u%05d" % i: {"name": "U", "groups": ["G"]} for i in range(20001)}), flush=True)'

RS_PR=$RS/prosody
RS_PR_PORT=$(free_port)
{
    cat <<EOF
run_as_root = true
daemonize = false
pidfile = "$RS_PR/prosody.pid"
data_path = "$RS_PR/data"
certificates = "$RS_PR/certs"
plugin_paths = { "$REPO/prosody" }
log = { { levels = { min = "debug" }, to = "file", filename = "$RS_PR/prosody.log" } }
interfaces = { "127.0.0.1" }
c2s_ports = { $RS_PR_PORT }
modules_enabled = { "saslauth", "roster", "presence", "roster_xcauth" }
modules_disabled = { "s2s", "offline" }
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "xcauth"
xcauth_roster_ttl = $RS_TTL
xcauth_roster_refresh = $RS_TTL
xcauth_roster_timeout = 20
EOF
    for kind in jsxc nextcloud; do
        cat <<EOF

VirtualHost "$kind.roster.example.org"
    xcauth_socket = "127.0.0.1:${RS_XC_PORT[$kind]}"

VirtualHost "$kind.auth.example.org"
    xcauth_socket = "127.0.0.1:${RS_XC_PORT[$kind]}"
    modules_disabled = { "s2s", "offline", "roster_xcauth" }

VirtualHost "$kind.down.example.org"
    xcauth_socket = "127.0.0.1:${RS_XC_PORT[$kind]}"
    xcauth_roster_socket = "127.0.0.1:${RS_DOWN_PORT[$kind]}"
    xcauth_roster_ttl = 600
EOF
    done
    cat <<EOF

VirtualHost "slow.roster.example.org"
    xcauth_socket = "127.0.0.1:${RS_XC_PORT[jsxc]}"
    xcauth_roster_socket = "127.0.0.1:$SILENT_PORT"
    xcauth_roster_timeout = 2

VirtualHost "garbage.roster.example.org"
    xcauth_socket = "127.0.0.1:${RS_XC_PORT[jsxc]}"
    xcauth_roster_socket = "127.0.0.1:$GARBAGE_PORT"

VirtualHost "flood.roster.example.org"
    xcauth_socket = "127.0.0.1:${RS_XC_PORT[jsxc]}"
    xcauth_roster_socket = "127.0.0.1:$RS_FLOOD_PORT"

VirtualHost "huge.roster.example.org"
    xcauth_socket = "127.0.0.1:${RS_XC_PORT[jsxc]}"
    xcauth_roster_socket = "127.0.0.1:$RS_HUGE_PORT"
EOF
} >"$RS_PR/prosody.cfg.lua"
start_bg roster-prosody prosody -F --config "$RS_PR/prosody.cfg.lua"

rs_ready() {
    tcp_open "$RS_PR_PORT" &&
        [ "$(grep -c "now set to use user provider 'xcauth'" "$RS_PR/prosody.log" 2>/dev/null)" -ge 10 ] &&
        tcp_open "${RS_XC_PORT[jsxc]}" && tcp_open "${RS_XC_PORT[nextcloud]}"
}
if ! wait_until 60 "the roster checks' Prosody" rs_ready; then
    fail "prosody-roster-start" "$(tail -c 400 "$WORK/roster-prosody.err") $(grep -E 'error' "$RS_PR/prosody.log" 2>/dev/null | tail -n 3)"
    return 0
fi
pass "prosody-roster-start"

# What alice must see of bob and dora, before and after the change.
RS_BOB_BEFORE='R.get(B, {}).get("name") == "Bob Roster" and R[B]["groups"] == ["Roster Crew", "second"] and R[B]["subscription"] == "both"'
RS_DORA_AFTER='R.get(D, {}).get("name") == "Dora Renamed" and R[D]["groups"] == ["Crew Renamed"] and B not in R'

for kind in jsxc nextcloud; do
    h=$kind.roster.example.org
    pre="prosody-roster-$kind"
    [ "$kind" = nextcloud ] && pre="nextcloud-prosody-roster"
    rs_login "$kind-alice" "alice@$h" alice-pw
    # alice's roster: bob and dora with their display names, subscribed both
    # ways, in the groups' labels; not alice herself, not carla.
    rs_check "$pre-members" "$kind-alice" "r['login'] == 'success' and $RS_BOB_BEFORE and A not in R and C not in R and R.get(D, {}).get('name') == 'Dora Roster'"

    # A roster set makes Prosody store alice's roster: her own contact is in
    # the file, the group members are not.
    rs_login "$kind-alice-add" "alice@$h" alice-pw --add-contact "zed@$h"
    stored=$RS_PR/data/${h//./%2e}/roster/alice.dat
    if report_ok "$kind-alice-add" "'zed@$h' in R and B in R" && grep -q "zed@$h" "$stored" 2>/dev/null &&
        ! grep -q "bob@$h\|dora@$h" "$stored"; then
        pass "$pre-items-not-stored"
    else
        fail "$pre-items-not-stored" "$(head -c 300 "$RS/$kind-alice-add.json") / stored: $(head -c 300 "$stored" 2>/dev/null)"
    fi

    # dora renames bob ("Added", no group): from then on he is her own
    # contact (Prosody stores him, with the subscription he had), and her
    # item wins over the shared one at her next login.
    rs_login "$kind-dora-add" "dora@$h" dora-pw --add-contact "bob@$h"
    rs_login "$kind-dora" "dora@$h" dora-pw
    rs_check "$pre-own-contact-kept" "$kind-dora" "R.get(B, {}).get('name') == 'Added' and R[B]['groups'] == [] and R.get(A, {}).get('subscription') == 'both'"

    # Presence both ways: alice stays until bob's presence came and went,
    # bob until alice's came.
    XMPP_PASSWORD=alice-pw timeout 60 "$HERE/xmpp-roster" --port "$RS_PR_PORT" --timeout 40 \
        --until-available "bob@$h" --until-unavailable "bob@$h" --ready-file "$RS/$kind-alice-ready" "alice@$h" \
        >"$RS/$kind-alice-presence.json" 2>>"$RS/xmpp-roster.err" &
    alice_pid=$!
    wait_until 30 "alice online" test -e "$RS/$kind-alice-ready" || true
    rs_login "$kind-bob-presence" "bob@$h" bob-pw --until-available "alice@$h"
    wait "$alice_pid"
    if report_ok "$kind-bob-presence" "'alice@$h' in r['available']" &&
        report_ok "$kind-alice-presence" "'bob@$h' in r['available']"; then
        pass "$pre-presence-both-ways"
    else
        fail "$pre-presence-both-ways" "bob: $(head -c 200 "$RS/$kind-bob-presence.json") alice: $(head -c 200 "$RS/$kind-alice-presence.json")"
    fi
done

# --- Nextcloud changes: bob leaves alice's groups, dora and "crew" are renamed

# alice and bob stay online: the module's refresh (every $RS_TTL s) pushes
# bob's removal to alice, and each loses the other's presence.
for kind in jsxc nextcloud; do
    h=$kind.roster.example.org
    XMPP_PASSWORD=alice-pw timeout 60 "$HERE/xmpp-roster" --port "$RS_PR_PORT" --timeout 40 \
        --presence --until-removed "bob@$h" --until-unavailable "bob@$h" --ready-file "$RS/$kind-alice-push-ready" \
        "alice@$h" >"$RS/$kind-alice-push.json" 2>>"$RS/xmpp-roster.err" &
    RS_PUSH_PID[$kind]=$!
    wait_until 30 "alice online" test -e "$RS/$kind-alice-push-ready" || true
    XMPP_PASSWORD=bob-pw timeout 60 "$HERE/xmpp-roster" --port "$RS_PR_PORT" --timeout 40 \
        --until-available "alice@$h" --until-unavailable "alice@$h" --ready-file "$RS/$kind-bob-push-ready" \
        "bob@$h" >"$RS/$kind-bob-push.json" 2>>"$RS/xmpp-roster.err" &
    RS_BOB_PID[$kind]=$!
    wait_until 30 "bob online" test -e "$RS/$kind-bob-push-ready" || true
done
rs_users 1 >"$RS_USERS"
rs_control users/reload "" >/dev/null || fail "prosody-roster-standin-reload" "the stand-in did not take the new users"
for kind in jsxc nextcloud; do
    h=$kind.roster.example.org
    pre="prosody-roster-$kind"
    [ "$kind" = nextcloud ] && pre="nextcloud-prosody-roster"
    wait "${RS_PUSH_PID[$kind]}"
    wait "${RS_BOB_PID[$kind]}"
    rs_check "$pre-push-removes-member" "$kind-alice-push" "[B, 'remove'] in r['pushes'] and not r['missed']"
    # bob saw alice come and then go although she stayed online.
    rs_check "$pre-removed-member-loses-presence" "$kind-bob-push" "A in r['available'] and A in r['unavailable'] and not r['missed']"
    # A new login after the TTL: bob gone, dora and the group renamed.
    deadline=$(($(now_ms) + (RS_TTL * 3 + 10) * 1000))
    until rs_login "$kind-alice-after" "alice@$h" alice-pw && report_ok "$kind-alice-after" "$RS_DORA_AFTER"; do
        [ "$(now_ms)" -gt "$deadline" ] && break
        sleep 0.5
    done
    rs_check "$pre-change-after-ttl" "$kind-alice-after" "$RS_DORA_AFTER"
done

# --- 500 members ----------------------------------------------------------------

# big's group has 500 members. With the stand-in slowed down, the roster
# load takes seconds; meanwhile carla logs in (a
# token: no Nextcloud request) on a host of the same Prosody and xcauth, and
# must not wait for it.
for kind in jsxc nextcloud; do
    h=$kind.roster.example.org
    pre="prosody-roster-$kind"
    [ "$kind" = nextcloud ] && pre="nextcloud-prosody-roster"
    # One API request for the jsxc kind's roster, a few for the nextcloud
    # kind's: either way a window of several seconds.
    if [ "$kind" = jsxc ]; then rs_latency 4000; else rs_latency 2000; fi
    big_token=$(token big "$h" +3600)
    asked=$(grep -c "Asking xcauth for the shared roster of big@$h" "$RS_PR/prosody.log")
    XMPP_PASSWORD=$big_token timeout 60 "$HERE/xmpp-roster" --port "$RS_PR_PORT" --timeout 40 "big@$h" \
        >"$RS/$kind-big.json" 2>>"$RS/xmpp-roster.err" &
    big_pid=$!
    big_asked() { [ "$(grep -c "Asking xcauth for the shared roster of big@$h" "$RS_PR/prosody.log")" -gt "$asked" ]; }
    wait_until 20 "big's roster fetch" big_asked || true
    t0=$(now_ms)
    XMPP_PASSWORD=$(token carla "$kind.auth.example.org" +3600) timeout 45 "$HERE/xmpp-login" --port "$RS_PR_PORT" \
        --timeout 30 "carla@$kind.auth.example.org" >"$RS/$kind-carla-during.out" 2>>"$RS/xmpp-roster.err"
    took=$(($(now_ms) - t0))
    if [ "$(cat "$RS/$kind-carla-during.out")" = success ] && alive "$big_pid"; then
        pass "$pre-login-during-big-load"
    else
        fail "$pre-login-during-big-load" "carla: '$(cat "$RS/$kind-carla-during.out")' after $took ms; big's load $(alive "$big_pid" && echo 'still running' || echo 'already over')"
    fi
    wait "$big_pid"
    rs_latency 0
    rs_check "$pre-500-members" "$kind-big" "r['login'] == 'success' and len(R) == $RS_CROWD and R.get('m123@$h', {}).get('name') == 'Member 123' and R['m123@$h']['groups'] == ['Big Crowd'] and all(i['subscription'] == 'both' for i in R.values())"
done

# --- xcauth stopped, slow, answering garbage ----------------------------------

# The down host's rosters come from an xcauth that goes away; logins go on
# through the other one. alice's roster, fetched before (and younger than
# xcauth_roster_ttl there), stands in; dora's was never fetched: empty.
for kind in jsxc nextcloud; do
    h=$kind.down.example.org
    pre="prosody-roster-$kind"
    [ "$kind" = nextcloud ] && pre="nextcloud-prosody-roster"
    rs_login "$kind-down-before" "alice@$h" alice-pw
    stop_bg "roster-xcauth-$kind-down"
    rs_login "$kind-down-alice" "alice@$h" alice-pw
    rs_login "$kind-down-dora" "dora@$h" dora-pw
    warnings=$(grep -c "$h:roster_xcauth.*warn.*unavailable" "$RS_PR/prosody.log")
    if report_ok "$kind-down-before" "R.get(D, {}).get('subscription') == 'both'" &&
        report_ok "$kind-down-alice" "r['login'] == 'success' and R.get(D, {}).get('subscription') == 'both'" &&
        report_ok "$kind-down-dora" "r['login'] == 'success' and r['roster'] == {}" && [ "$warnings" = 1 ]; then
        pass "$pre-xcauth-stopped-login-and-roster"
    else
        fail "$pre-xcauth-stopped-login-and-roster" "warnings: $warnings; $(head -c 300 "$RS/$kind-down-dora.json")"
    fi
done

# Silent (the roster waits xcauth_roster_timeout, 2 s) and garbage: the
# login works, the roster loads without members.
h=slow.roster.example.org
rs_login slow "alice@$h" alice-pw
rs_check prosody-roster-slow-xcauth-times-out slow "r['login'] == 'success' and r['roster'] == {} and 1500 < r['login_ms'] < 10000"
h=garbage.roster.example.org
rs_login garbage "alice@$h" alice-pw
rs_check prosody-roster-garbage-answer-ignored garbage "r['login'] == 'success' and r['roster'] == {}"
# An endless answer: the connection is dropped at the bound, long before
# the timeout (20 s here), and the roster loads without members.
h=flood.roster.example.org
rs_login flood "alice@$h" alice-pw
if report_ok flood "r['login'] == 'success' and r['roster'] == {} and r['login_ms'] < 15000" &&
    file_has "$h:roster_xcauth.*over-long answer" "$RS_PR/prosody.log"; then
    pass prosody-roster-over-long-answer-dropped
else
    fail prosody-roster-over-long-answer-dropped "$(head -c 300 "$RS/flood.json")"
fi
# 20 001 members: 20 000 are added, the rest left out with a warning. (The
# plain login client: the server's count is in its log.)
h=huge.roster.example.org
got=$(XMPP_PASSWORD=alice-pw timeout 60 "$HERE/xmpp-login" --port "$RS_PR_PORT" --timeout 40 "alice@$h" \
    2>>"$RS/xmpp-roster.err")
if [ "$got" = success ] && file_has "$h:roster_xcauth.*over 20000 members" "$RS_PR/prosody.log" &&
    file_has "$h:roster_xcauth.*Added 20000 shared members to the roster of alice@$h" "$RS_PR/prosody.log"; then
    pass prosody-roster-member-bound
else
    fail prosody-roster-member-bound "login: '$got'; $(grep "$h:roster_xcauth" "$RS_PR/prosody.log" | tail -n 2)"
fi

# --- benchmark (XCAUTH_PEERS_ROSTER_BENCH=ROUNDS) ---------------------------------

# Times from the client's report, in ms from connecting: login_ms, the
# session bound (Prosody binds it once the roster is loaded, so this holds
# the server's roster load), and roster_ms, the roster answer parsed by the
# client. Token logins, so that only the roster asks Nextcloud. Prints
# "bench ..." lines; BENCHMARKS.md has them.
rs_bench() {
    local rounds=$1 kind h i n
    # rs_ms NAME JID TOKEN-DOMAIN: one token login; prints LOGIN_MS/ROSTER_MS.
    rs_ms() {
        XMPP_PASSWORD=$(token "${2%@*}" "$3" +3600) timeout 60 "$HERE/xmpp-roster" --port "$RS_PR_PORT" \
            --timeout 40 "$2" >"$RS/$1.json" 2>>"$RS/xmpp-roster.err"
        if ! report_ok "$1" "r['login'] == 'success' and r['roster_ms']"; then
            # Kept for a look; counted as failed.
            cp "$RS/$1.json" "$RS/$1-failed-$(now_ms).json" 2>/dev/null
            echo failed
            return
        fi
        /usr/bin/python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); print("%d/%d" % (r["login_ms"], r["roster_ms"]))' "$RS/$1.json"
    }
    # stats LABEL VALUES...: medians and ranges of both times.
    stats() {
        local label=$1
        shift
        /usr/bin/python3 -c 'import statistics, sys
v = [tuple(map(int, x.split("/"))) for x in sys.argv[2:] if x != "failed"]
def m(i):
    w = [p[i] for p in v]
    return "median %d ms (%d..%d)" % (statistics.median(w), min(w), max(w))
print("bench %s: session bound %s, roster in the client %s; n=%d, failed %d" % (sys.argv[1], m(0), m(1), len(v), len(sys.argv) - 2 - len(v)) if v else "bench %s: no data" % sys.argv[1])' "$label" "$@"
    }
    for kind in jsxc nextcloud; do
        h=$kind.roster.example.org
        local base=() cold=() warm=() idle=() busy=()
        for ((i = 1; i <= rounds; i++)); do
            base+=("$(rs_ms bench "carla@$kind.auth.example.org" "$kind.auth.example.org")")
            n=$(printf 'm%03d' "$((i + 100))")
            # A member not asked for before: xcauth builds the roster.
            cold+=("$(rs_ms bench "$n@$h" "$h")")
            # The same again within roster-ttl: the nextcloud kind's cache.
            warm+=("$(rs_ms bench "$n@$h" "$h")")
        done
        stats "$kind login, no roster module" "${base[@]}"
        stats "$kind login with 499 shared members, first load" "${cold[@]}"
        stats "$kind login with 499 shared members, again at once" "${warm[@]}"
        # Other users' logins, idle and while 500-member rosters load back
        # to back (a loop of first loads, members not asked for before).
        for ((i = 1; i <= rounds; i++)); do
            idle+=("$(rs_ms bench "carla@$kind.auth.example.org" "$kind.auth.example.org")")
        done
        (
            for ((i = 200; i < 200 + 10 * rounds; i++)); do
                rs_ms bench-load "$(printf 'm%03d' "$i")@$h" "$h" >/dev/null
            done
        ) &
        local loader=$!
        for ((i = 1; i <= rounds; i++)); do
            busy+=("$(rs_ms bench "carla@$kind.auth.example.org" "$kind.auth.example.org")")
        done
        kill "$loader" 2>/dev/null
        wait "$loader" 2>/dev/null
        stats "$kind other login, idle" "${idle[@]}"
        stats "$kind other login, during 500-member roster loads" "${busy[@]}"
    done
}
if [ -n "${XCAUTH_PEERS_ROSTER_BENCH:-}" ]; then
    rs_bench "$XCAUTH_PEERS_ROSTER_BENCH"
fi

stop_bg roster-prosody
