# Dovecot checks for tests/peers/run (sourced, not run): a private Dovecot
# (this release's packages: 2.3 on Debian 12, 2.4 on Debian 13) with
# xcauth's Lua passdb and userdb (dovecot/xcauth.lua) asks xcauth on a Unix
# socket, which asks a stand-in Nextcloud of its own (so its faults and
# latency touch no other check). Real clients: doveadm auth test, doveadm
# user, IMAP LOGIN and AUTHENTICATE PLAIN, POP3, LMTP (tests/peers/
# mail-client), and Postfix smtpd with Dovecot SASL. Once per back-end kind:
# dovecot-* checks with the JSXC app (example.org), nextcloud-dovecot-* with
# stock Nextcloud (nc.example.org).
#
# Uses from run: WORK, HERE, REPO, XCAUTH, STANDIN, SECRET_FILE, CACHE_ARGS,
# backend_args, serve_xcauth_kind and lib.sh.
# shellcheck shell=bash

# A mail client somewhere else, guessing passwords (sent as IMAP ID
# x-originating-ip). The other clients are on loopback, which xcauth's
# guard-allowlist exempts here, so the suite's own wrong passwords do not
# close it.
DV_GUESSER_IP=192.0.2.66
# Wrong passwords from DV_GUESSER_IP before xcauth's guard refuses it.
DV_GUARD_FAILURES=3

# dovecot_major_minor: "2.3" or "2.4".
dovecot_major_minor() {
    dovecot --version 2>/dev/null | sed -n 's/^\([0-9]*\.[0-9]*\).*/\1/p'
}

# dovecot_conf DIR SOCKET IMAP POP3 LMTP: writes DIR/dovecot.conf and
# DIR/xcauth-auth.lua for this release's Dovecot, asking xcauth at SOCKET.
dovecot_conf() {
    local dir=$1 socket=$2 imap=$3 pop3=$4 lmtp=$5 version
    version=$(dovecot_major_minor)
    local home="$dir/mail"
    if [ "$version" = 2.3 ]; then
        # 2.3 passes no settings to a Lua script: a global set before it.
        cat >"$dir/xcauth-auth.lua" <<EOF
xcauth_settings = { socket = "$socket", timeout = 20 }
dofile("$REPO/dovecot/xcauth.lua")
EOF
        cat >"$dir/dovecot.conf" <<EOF
protocols = imap pop3 lmtp
listen = 127.0.0.1
base_dir = $dir/run
state_dir = $dir/state
log_path = $dir/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_verbose = yes
auth_failure_delay = 0
login_trusted_networks = 127.0.0.0/8
default_login_user = dovenull
default_internal_user = dovecot
mail_location = maildir:~/Maildir
passdb {
  driver = lua
  args = file=$dir/xcauth-auth.lua blocking=yes
  override_fields = userdb_uid=nobody userdb_gid=nogroup userdb_home=$home/%d/%n
}
userdb {
  driver = prefetch
}
userdb {
  driver = lua
  args = file=$dir/xcauth-auth.lua blocking=yes
  default_fields = uid=nobody gid=nogroup home=$home/%d/%n
}
EOF
    else
        cat >"$dir/dovecot.conf" <<EOF
dovecot_config_version = 2.4.0
dovecot_storage_version = 2.4.0
protocols = imap pop3 lmtp
listen = 127.0.0.1
base_dir = $dir/run
state_dir = $dir/state
log_path = $dir/dovecot.log
ssl = no
auth_allow_cleartext = yes
auth_mechanisms = plain login
auth_verbose = yes
auth_failure_delay = 0
auth_internal_failure_delay = 0
# Dovecot's auth cache on: xcauth's passdb gives it no key (logins are
# never answered from it), the userdb is cached.
auth_cache_size = 1M
login_trusted_networks = 127.0.0.0/8
default_login_user = dovenull
default_internal_user = dovecot
mail_driver = maildir
mail_path = ~/Maildir
passdb lua {
  lua_file = $REPO/dovecot/xcauth.lua
  lua_settings {
    socket = $socket
  }
  fields {
    userdb_uid = nobody
    userdb_gid = nogroup
    userdb_home = $home/%{user | domain}/%{user | username}
  }
}
userdb prefetch {
}
userdb lua {
  lua_file = $REPO/dovecot/xcauth.lua
  lua_settings {
    socket = $socket
  }
  fields {
    uid = nobody
    gid = nogroup
    home = $home/%{user | domain}/%{user | username}
  }
}
EOF
    fi
    # Dovecot's own penalty for failed logins (up to 15 s per client
    # address) would slow every later check: all clients here are loopback.
    cat >>"$dir/dovecot.conf" <<EOF
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
service imap-login {
  inet_listener imap {
    port = $imap
  }
  inet_listener imaps {
    port = 0
  }
}
service pop3-login {
  inet_listener pop3 {
    port = $pop3
  }
  inet_listener pop3s {
    port = 0
  }
}
service lmtp {
  inet_listener lmtp {
    port = $lmtp
  }
  unix_listener lmtp {
    mode = 0600
  }
}
service auth {
  unix_listener auth-client {
    mode = 0600
  }
  unix_listener auth-postfix {
    mode = 0600
    user = postfix
  }
}
EOF
}

# dv_expect NAME WANT GOT [DETAIL]: pass when GOT is WANT.
dv_expect() {
    if [ "$3" = "$2" ]; then
        pass "$1"
    else
        fail "$1" "expected $2, got '$3'${4:+ ($4)}"
    fi
}

# dv_doveadm_auth NAME WANT USER PASSWORD [RIP]: doveadm auth test; WANT is
# ok, no or tempfail.
dv_doveadm_auth() {
    local name=$1 want=$2 user=$3 password=$4 rip=${5:-127.0.0.1} out got
    out=$(timeout 40 doveadm -c "$DV_CONF" auth test -x service=imap -x "rip=$rip" "$user" "$password" 2>&1)
    case $out in
    *"auth succeeded"*) got=ok ;;
    *temp_fail*) got=tempfail ;;
    *"auth failed"*) got=no ;;
    *) got="other: $(head -c 200 <<<"$out")" ;;
    esac
    dv_expect "$name" "$want" "$got"
}

# dv_auth_answers DOMAIN: Dovecot's auth process is up and answers a user
# lookup (found or not).
dv_auth_answers() {
    timeout 10 doveadm -c "$DV_CONF" user "nobody@$1" >/dev/null 2>&1
    case $? in 0 | 67) return 0 ;; *) return 1 ;; esac
}

# dv_doveadm_user NAME WANT USER: doveadm user; WANT is ok, no or tempfail.
dv_doveadm_user() {
    local name=$1 want=$2 user=$3 out rc got
    out=$(timeout 40 doveadm -c "$DV_CONF" user "$user" 2>&1)
    rc=$?
    case $rc:$out in
    0:*"home"*) got=ok ;;
    *"doesn't exist"*) got=no ;;
    *"lookup failed"*) got=tempfail ;;
    *) got="other: rc $rc $(head -c 200 <<<"$out")" ;;
    esac
    dv_expect "$name" "$want" "$got"
}

# Attempts for mail-client are collected with dv_attempt (and dv_then
# between ones that must run one after another), then dv_run runs them all
# and checks each outcome against its expectation; outcomes and times stay
# in DV_GOT[NAME] and DV_MS[NAME].
declare -A DV_WANT=() DV_GOT=() DV_MS=()
DV_NAMES=()

# dv_attempt NAME KIND USER PASSWORD WANT [RIP]
dv_attempt() {
    DV_WANT[$1]=$5
    DV_NAMES+=("$1")
    printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "${6:-}" >>"$WORK/mail-attempts"
}

# dv_then: the attempts after this one start when those before have ended.
dv_then() {
    echo >>"$WORK/mail-attempts"
}

dv_run() {
    local name got ms
    timeout 180 /usr/bin/python3 "$HERE/mail-client" --imap "$DV_IMAP" --pop3 "$DV_POP3" \
        --lmtp "$DV_LMTP" --smtp "${DV_SMTP:-0}" <"$WORK/mail-attempts" >"$WORK/mail-client.out" 2>>"$WORK/mail-client.err"
    rm -f "$WORK/mail-attempts"
    while IFS=$'\t' read -r name got ms; do
        DV_GOT[$name]=$got
        DV_MS[$name]=$ms
    done <"$WORK/mail-client.out"
    for name in "${DV_NAMES[@]}"; do
        dv_expect "$name" "${DV_WANT[$name]}" "${DV_GOT[$name]:-no outcome}"
    done
    DV_NAMES=()
    DV_WANT=()
}

# standin_control PATH BODY: POST to the Dovecot checks' stand-in.
standin_control() {
    /usr/bin/python3 -c 'import sys, urllib.request
urllib.request.urlopen(urllib.request.Request(sys.argv[1], data=sys.argv[2].encode(), method="POST"), timeout=10).read()' \
        "$DV_STANDIN_BASE$1" "$2"
}

# dovecot_kind KIND DOMAIN PREFIX USER PASSWORD OTHER: every check with one
# back-end kind; USER logs in first (and so is cached by xcauth); OTHER is
# another existing user.
dovecot_kind() {
    local kind=$1 domain=$2 p=$3 user=$4 password=$5 other=$6
    local dir=$WORK/dovecot-$kind sock xcname=dv-$kind-xcauth dvname=dovecot-$kind
    mkdir -p "$dir/run" "$dir/state" "$dir/mail"
    chmod 755 "$dir"
    chown nobody:nogroup "$dir/mail"
    sock=$dir/xcauth.sock
    DV_IMAP=$(free_port)
    DV_POP3=$(free_port)
    DV_LMTP=$(free_port)
    DV_CONF=$dir/dovecot.conf
    dovecot_conf "$dir" "$sock" "$DV_IMAP" "$DV_POP3" "$DV_LMTP"
    # Dovecot's auth processes (user dovecot) read the script.
    chmod 644 "$dir"/*.lua 2>/dev/null

    # xcauth on a socket only Dovecot's auth processes reach, where the
    # client addresses Dovecot passes are believed (trusted-socket).
    serve_xcauth_kind "$kind" "$xcname" dovecot "$sock" --socket-group dovecot --socket-mode 0660 \
        --trusted-socket "unix:$sock" --guard-address-failures "$DV_GUARD_FAILURES" --guard-allowlist 127.0.0.0/8 \
        "${CACHE_ARGS[@]}"
    if ! wait_until 20 "xcauth's dovecot socket ($kind)" unix_open "$sock"; then
        fail "${p}dovecot-xcauth-socket" "$(tail -c 300 "$WORK/$xcname.err")"
        return
    fi
    local perms
    perms=$(stat -c '%a %U:%G' "$sock")
    if [ "${XCAUTH_PEERS_LISTEN:-own}" != own ]; then
        skip "${p}dovecot-xcauth-socket-dovecot-only" "the socket is systemd-socket-activate's"
    elif [ "$perms" = "660 root:dovecot" ]; then
        pass "${p}dovecot-xcauth-socket-dovecot-only"
    else
        fail "${p}dovecot-xcauth-socket-dovecot-only" "xcauth's socket is $perms"
    fi
    # The run's umask (077) would keep Dovecot's own processes out of what
    # its master creates.
    start_bg "$dvname" sh -c 'umask 022; exec dovecot -F -c "$1"' sh "$DV_CONF"
    if ! wait_until 30 "Dovecot ($kind)" tcp_open "$DV_LMTP" ||
        ! wait_until 20 "Dovecot's auth process" dv_auth_answers "$domain"; then
        fail "${p}dovecot-start" "$(tail -c 300 "$WORK/$dvname.err") $(tail -n 3 "$dir/dovecot.log" 2>/dev/null)"
        stop_bg "$xcname"
        return
    fi

    dv_doveadm_auth "${p}dovecot-doveadm-auth-right-password" ok "$user@$domain" "$password"
    dv_doveadm_auth "${p}dovecot-doveadm-auth-wrong-password" no "$user@$domain" wrong-pw
    dv_doveadm_auth "${p}dovecot-doveadm-auth-unknown-user" no "nobody@$domain" "$password"
    dv_doveadm_user "${p}dovecot-doveadm-user-existing" ok "$user@$domain"
    dv_doveadm_user "${p}dovecot-doveadm-user-missing" no "nobody@$domain"

    dv_attempt "${p}dovecot-imap-login-right-password" imap-login "$user@$domain" "$password" ok
        dv_attempt "${p}dovecot-imap-login-wrong-password" imap-login "$user@$domain" wrong-pw no
        dv_attempt "${p}dovecot-imap-login-unknown-user" imap-login "nobody@$domain" "$password" no
        dv_attempt "${p}dovecot-imap-plain-right-password" imap-plain "$user@$domain" "$password" ok
        dv_attempt "${p}dovecot-imap-plain-wrong-password" imap-plain "$user@$domain" wrong-pw2 no
        dv_attempt "${p}dovecot-pop3-right-password" pop3 "$user@$domain" "$password" ok
        dv_attempt "${p}dovecot-pop3-wrong-password" pop3 "$user@$domain" wrong-pw3 no
        dv_attempt "${p}dovecot-lmtp-existing-user" lmtp "$user@$domain" "" ok
        dv_attempt "${p}dovecot-lmtp-missing-user" lmtp "nobody@$domain" "" no
        if [ "$kind" = nextcloud ]; then
            dv_attempt "${p}dovecot-2fa-main-password-refused" imap-login "tess@$domain" tess-main-pw no
            dv_attempt "${p}dovecot-disabled-user-refused" imap-login "dina@$domain" dina-pw no
            dv_attempt "${p}dovecot-lmtp-disabled-user" lmtp "dina@$domain" "" no
        fi
    dv_run
    if [ "$kind" = nextcloud ]; then
        dv_doveadm_user "${p}dovecot-doveadm-user-disabled" no "dina@$domain"
        dovecot_app_passwords "$p" "$domain"
    fi
    dovecot_guard "$p" "$domain" "$xcname"
    dovecot_postfix_checks "$p" "$domain" "$user" "$password" "$dir"
    dovecot_slow_backend "$p" "$domain" "$user" "$password"
    dovecot_outage "$p" "$domain" "$user" "$password" "$xcname" "$other"
    dovecot_secrets_not_logged "$p" "$dir" "$xcname" "$password" wrong-pw tess-main-pw \
        tess-phone-app tess-laptop-app
    stop_bg "$dvname"
    stop_bg "$xcname"
}

# A second-factor user's two app passwords in turn (phone, laptop, phone
# after a wrong password, laptop by POP3): Dovecot's cache (on with 2.4)
# must not pin one of them.
dovecot_app_passwords() {
    local p=$1 domain=$2 i=0 step
    local -a steps=(
        "imap-login tess-phone-app ok"
        "imap-login tess-laptop-app ok"
        "imap-login tess-wrong-app no"
        "imap-plain tess-phone-app ok"
        "pop3 tess-laptop-app ok"
        "imap-login tess-phone-app ok"
    )
    for step in "${steps[@]}"; do
        i=$((i + 1))
        # shellcheck disable=SC2086 # kind, password, outcome
        set -- $step
        dv_attempt "${p}dovecot-app-passwords-in-turn-$i-$3" "$1" "tess@$domain" "$2" "$3"
        dv_then
    done
    dv_run
}

# The client's address reaches xcauth's guard: a guesser's address is
# refused after DV_GUARD_FAILURES wrong passwords, in the line that the
# fail2ban filter matches.
dovecot_guard() {
    local p=$1 domain=$2 xcname=$3 i log filter matched
    for i in $(seq $((DV_GUARD_FAILURES + 2))); do
        dv_attempt "${p}dovecot-guess-$i" imap-login "guesser@$domain" "guess-$i" no "$DV_GUESSER_IP"
        dv_then
    done
    dv_run
    log=$WORK/log/$xcname/xcauth.log
    filter=$REPO/packaging/fail2ban/filter.d/xcauth.conf
    if wait_until 10 "the guard's line" file_has "WARN guard: refused address $DV_GUESSER_IP for guesser@$domain" "$log"; then
        if command -v fail2ban-regex >/dev/null; then
            matched=$(fail2ban-regex --print-all-matched "$log" "$filter" 2>&1)
            if grep -q "refused address $DV_GUESSER_IP for" <<<"$matched"; then
                pass "${p}dovecot-guard-fail2ban-line"
            else
                fail "${p}dovecot-guard-fail2ban-line" "fail2ban-regex found no $DV_GUESSER_IP in $log"
            fi
        else
            pass "${p}dovecot-guard-fail2ban-line"
        fi
    else
        fail "${p}dovecot-guard-fail2ban-line" "no guard line for $DV_GUESSER_IP: $(grep -c guard "$log" 2>/dev/null) guard lines"
    fi
}

# A slow Nextcloud (2 s a question): a login that must ask it (a password
# not seen before) takes that long; a cached login at the same time does
# not wait for it.
dovecot_slow_backend() {
    local p=$1 domain=$2 user=$3 password=$4
    standin_control /_standin/latency 2000
    dv_attempt "${p}dovecot-slow-backend-uncached-login" imap-login "nobody@$domain" slow-pw no
    dv_attempt "${p}dovecot-slow-backend-cached-login" imap-login "$user@$domain" "$password" ok
    dv_run
    standin_control /_standin/latency 0
    local slow=${DV_MS[${p}dovecot-slow-backend-uncached-login]:-0}
    local fast=${DV_MS[${p}dovecot-slow-backend-cached-login]:-99999}
    if [ "$slow" -ge 2000 ] && [ "$fast" -lt 1000 ]; then
        pass "${p}dovecot-slow-backend-other-login-does-not-wait"
    else
        fail "${p}dovecot-slow-backend-other-login-does-not-wait" "uncached ${slow} ms, cached ${fast} ms"
    fi
}

# Nextcloud down (the stand-in closes every connection), then xcauth down.
# OTHER is a user nobody has delivered to yet.
dovecot_outage() {
    local p=$1 domain=$2 user=$3 password=$4 xcname=$5 other=$6
    standin_control /_standin/fault close
    if [ ${#CACHE_ARGS[@]} -gt 0 ]; then
        dv_attempt "${p}dovecot-outage-cached-login" imap-login "$user@$domain" "$password" ok
            # Another password than the cached one may be a new one: xcauth
        # cannot know, so this is temporary too.
        dv_attempt "${p}dovecot-outage-other-password-temporary" imap-login "$user@$domain" other-outage-pw \
            tempfail
            dv_attempt "${p}dovecot-outage-uncached-imap-unavailable" imap-login "nobody@$domain" some-pw tempfail
            dv_attempt "${p}dovecot-outage-uncached-pop3-temporary" pop3 "nobody@$domain" some-pw tempfail
            dv_attempt "${p}dovecot-outage-lmtp-known-user-delivered" lmtp "$user@$domain" "" ok
        # Users Dovecot has not looked up before: with its auth cache on
        # (2.4 here), earlier answers would come from there.
        dv_attempt "${p}dovecot-outage-lmtp-unknown-deferred" lmtp "nobody-else@$domain" "" tempfail
        dv_run
        dv_doveadm_user "${p}dovecot-outage-doveadm-user-temporary" tempfail "nobody-at-all@$domain"
    else
        skip "${p}dovecot-outage" "xcauth does not take --cache-storage memory"
    fi
    standin_control /_standin/fault none
    stop_bg "$xcname"
    dv_attempt "${p}dovecot-xcauth-down-imap-unavailable" imap-login "$user@$domain" "$password" tempfail
    dv_attempt "${p}dovecot-xcauth-down-lmtp-deferred" lmtp "$other@$domain" "" tempfail
    dv_run
    dv_doveadm_auth "${p}dovecot-xcauth-down-doveadm-temporary" tempfail "$user@$domain" "$password"
}

# No password in Dovecot's log or xcauth's.
dovecot_secrets_not_logged() {
    local p=$1 dir=$2 xcname=$3 secret found=()
    shift 3
    for secret in "$@"; do
        if grep -rqF -- "$secret" "$dir/dovecot.log" "$WORK/log/$xcname" "$WORK/$xcname.out" "$WORK/$xcname.err" \
            2>/dev/null; then
            found+=("$secret")
        fi
    done
    if [ ${#found[@]} -eq 0 ]; then
        pass "${p}dovecot-passwords-not-logged"
    else
        fail "${p}dovecot-passwords-not-logged" "${#found[@]} of the passwords appear in the logs"
    fi
}

# dovecot_checks: the whole Dovecot part, both back-end kinds.
dovecot_checks() {
    local missing=() tool
    for tool in dovecot doveadm; do
        command -v "$tool" >/dev/null || missing+=("$tool")
    done
    [ -e /usr/lib/dovecot/modules/auth/libauthdb_lua.so ] || missing+=(dovecot-auth-lua)
    if [ ${#missing[@]} -gt 0 ]; then
        fail "dovecot-tools" "missing ${missing[*]}; install the packages in tests/peers/packages"
        return
    fi
    echo "== $PEERS_LABEL: Dovecot $(dovecot --version 2>/dev/null)"
    # Dovecot's unprivileged processes (mail as nobody) pass through WORK.
    chmod 711 "$WORK"
    start_bg dv-standin "$STANDIN" --users "$HERE/users.txt" --secret-file "$SECRET_FILE" \
        --listen 127.0.0.1:0 --bruteforce-allowlist 127.0.0.0/8
    if ! wait_until 30 "the Dovecot checks' stand-in" file_has '^listening on http' "$WORK/dv-standin.out"; then
        fail "dovecot-standin-start" "$(head -c 300 "$WORK/dv-standin.err")"
        return
    fi
    local dv_url
    dv_url=$(sed -n '1s/^listening on //p' "$WORK/dv-standin.out")
    DV_STANDIN_BASE=${dv_url%%/index.php/*}
    # The back-end options of run's backend_args, pointed at this stand-in.
    URL=$dv_url NC_URL=$DV_STANDIN_BASE XCAUTH_DB=$WORK/dv-jsxc.sqlite3 \
        dovecot_kind jsxc example.org "" alice alice-pw bob
    URL=$dv_url NC_URL=$DV_STANDIN_BASE NC_DB=$WORK/dv-nc.sqlite3 \
        dovecot_kind nextcloud nc.example.org nextcloud- nina nina-pw tess
    stop_bg dv-standin
}

# dovecot_postfix_checks PREFIX DOMAIN USER PASSWORD DOVECOT_DIR: a private
# Postfix (its own config, queue and data directories, master in the
# foreground) whose smtpd on a loopback port offers SMTP AUTH through
# Dovecot SASL (Dovecot's auth-postfix socket).
dovecot_postfix_checks() {
    local p=$1 domain=$2 user=$3 password=$4 dvdir=$5
    local pf=$dvdir/postfix name=dv-postfix-${p:-jsxc}
    if ! command -v postfix >/dev/null; then
        skip "${p}dovecot-postfix" "no postfix"
        return
    fi
    mkdir -m 755 -p "$pf/queue" "$pf/data"
    chmod 755 "$pf"
    chown postfix "$pf/data"
    DV_SMTP=$(free_port)
    cat >"$pf/main.cf" <<EOF2
compatibility_level = 3.6
queue_directory = $pf/queue
data_directory = $pf/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mx.$domain
mydestination =
smtpd_sasl_type = dovecot
smtpd_sasl_path = $dvdir/run/auth-postfix
smtpd_sasl_auth_enable = yes
smtpd_relay_restrictions = permit_sasl_authenticated, reject
maillog_file_prefixes = $pf
maillog_file = $pf/postfix.log
EOF2
    cat >"$pf/master.cf" <<EOF2
127.0.0.1:$DV_SMTP inet n - n - - smtpd
postlog unix-dgram n - n - 1 postlogd
anvil unix - - n - 1 anvil
proxymap unix - - n - - proxymap
rewrite unix - - n - - trivial-rewrite
EOF2
    start_bg "$name" sh -c 'umask 022; exec postfix -c "$1" start-fg' sh "$pf"
    if ! wait_until 30 "Postfix smtpd" tcp_open "$DV_SMTP"; then
        fail "${p}dovecot-postfix-start" "$(tail -c 300 "$WORK/$name.err") $(tail -n 3 "$pf/postfix.log" 2>/dev/null)"
        return
    fi
    dv_attempt "${p}dovecot-postfix-smtp-auth-right-password" smtp "$user@$domain" "$password" ok
    dv_attempt "${p}dovecot-postfix-smtp-auth-wrong-password" smtp "$user@$domain" wrong-smtp-pw no
    dv_attempt "${p}dovecot-postfix-smtp-auth-unknown-user" smtp "nobody@$domain" "$password" no
    if [ "${p}" = nextcloud- ]; then
        dv_attempt "${p}dovecot-postfix-smtp-auth-2fa-main-password-refused" smtp "tess@$domain" tess-main-pw no
        dv_attempt "${p}dovecot-postfix-smtp-auth-app-password" smtp "tess@$domain" tess-laptop-app ok
        dv_attempt "${p}dovecot-postfix-smtp-auth-disabled-user" smtp "dina@$domain" dina-pw no
    fi
    dv_run
    # Nextcloud down, no cache entry: Dovecot says "temporary failure", but
    # Postfix's Dovecot SASL client turns every FAIL into 535 (it says 454
    # only when it loses Dovecot's socket); recorded here so that a change
    # shows.
    standin_control /_standin/fault close
    dv_attempt "${p}dovecot-postfix-smtp-auth-outage-uncached-535" smtp "nobody@$domain" outage-pw no
    dv_run
    standin_control /_standin/fault none
    postfix -c "$pf" stop >/dev/null 2>&1
    if ! wait_until 20 "Postfix to stop" not_running "$name"; then
        stop_bg "$name"
    fi
    unset "PID_OF[$name]"
}
