//! End to end: a client that lies about its address. Prosody's
//! `authclient:ADDRESS:…` and saslauthd's CLIENT_ADDR field name the
//! address the guard counts failures for, and a refused address is what
//! fail2ban bans. The real binary, against the stand-in Nextcloud on
//! loopback: such an address is believed only on standard input and on
//! sockets listed in `trusted-socket`; anywhere else a local user sending
//! 31 failures "from" 203.0.113.9 must not get that address refused.

mod common;

use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(10);

/// The address a lying client names.
const VICTIM: &str = "203.0.113.9";

/// More failures than the guard's default per-address limit (30).
const FAILURES: usize = 31;

/// What fail2ban's filter bans on.
const REFUSED: &str = "guard: refused address 203.0.113.9";

/// The debug line of the right login that ends each scenario: once it is
/// in the log, every line before it is too.
const ALICE_IN: &str = "auth alice@example.org: accepted by back end";

fn start(url: &str, args: &[&str], count: usize) -> (Served, Vec<String>) {
    Served::start_listening(url, args, count)
}

/// Sends `FAILURES` wrong logins of distinct unknown users (so no per-JID
/// limit applies) said to come from [`VICTIM`], each answered "0". Each
/// `round` uses new names: a login refused before is answered from the
/// negative cache, and does not count again.
fn generic_failures(c: &mut Conn, round: &str) {
    for i in 0..FAILURES {
        c.send(format!("authclient:{VICTIM}:{round}{i}:example.org:wrong{i}\n").as_bytes());
        assert_eq!(c.line(), "0\n", "failure {i}");
    }
}

/// `user`'s right password (the stand-in's `USER-pw`), said to come from
/// [`VICTIM`]: the answer line. A user whose login succeeded is let in
/// from then on (the back end verified the password moments ago), so each
/// step of a scenario that expects a refusal logs in someone new.
fn generic_login(c: &mut Conn, user: &str) -> String {
    c.send(format!("authclient:{VICTIM}:{user}:example.org:{user}-pw\n").as_bytes());
    c.line()
}

fn sasl_failures(c: &mut Conn, round: &str) {
    let addr = format!("{VICTIM};4711");
    for i in 0..FAILURES {
        let (user, pw) = (format!("{round}{i}"), format!("wrong{i}"));
        c.send(&sasl_request(&[
            user.as_bytes(),
            pw.as_bytes(),
            b"smtp",
            b"example.org",
            addr.as_bytes(),
        ]));
        assert!(c.sasl().starts_with("NO"), "failure {i}");
    }
}

fn sasl_login(c: &mut Conn, user: &str) -> String {
    let addr = format!("{VICTIM};4712");
    let pw = format!("{user}-pw");
    c.send(&sasl_request(&[
        user.as_bytes(),
        pw.as_bytes(),
        b"smtp",
        b"example.org",
        addr.as_bytes(),
    ]));
    c.sasl()
}

fn unix_arg(path: &Path) -> String {
    format!("unix:{}", path.display())
}

/// (a) A loopback TCP socket not marked trusted: the spoofed address is
/// ignored (a loopback peer counts as no address), the victim still logs
/// in, and nothing for fail2ban appears.
#[test]
fn a_spoofed_address_on_an_untrusted_tcp_socket_is_never_refused() {
    let nc = StandIn::start();
    let (served, tcp) = start(&nc.url, &["--listen", "generic=127.0.0.1:0"], 1);
    let mut c = Conn::tcp(&tcp[0]);
    generic_failures(&mut c, "ghost");
    assert_eq!(
        generic_login(&mut c, "alice"),
        "1\n",
        "{VICTIM} is not refused"
    );
    let logs = served.logs_with(ALICE_IN);
    assert!(logs.contains(ALICE_IN), "{logs}");
    assert!(!logs.contains(REFUSED), "{logs}");
    // Said at debug level, quoted.
    assert!(
        logs.contains(&format!(
            "client address \"{VICTIM}\" ignored: not a trusted socket (counted: none)"
        )),
        "{logs}"
    );
}

/// (b) The same on a Unix socket listed in `trusted-socket`: the address
/// is believed, refused after the limit, and logged for fail2ban. A
/// `trusted-socket` entry that matches no socket is a warning naming it.
#[test]
fn a_client_address_on_a_trusted_socket_is_counted_and_refused() {
    let nc = StandIn::start();
    let dir = tempfile::tempdir().expect("dir");
    let sock = dir.path().join("prosody.sock");
    let typo = dir.path().join("prosody.sok");
    let (served, _) = start(
        &nc.url,
        &[
            "--listen",
            &format!("generic={}", unix_arg(&sock)),
            "--trusted-socket",
            &unix_arg(&sock),
            "--trusted-socket",
            &unix_arg(&typo),
        ],
        1,
    );
    let logs = served.logs();
    let (_, rest) = &listening(&logs)[0];
    assert!(rest.contains("client addresses believed"), "{logs}");
    assert!(
        logs.contains(&format!(
            "trusted-socket {} matches no socket",
            unix_arg(&typo)
        )),
        "{logs}"
    );
    let mut c = Conn::unix(&sock);
    generic_failures(&mut c, "ghost");
    let asked = nc.requests();
    assert_eq!(generic_login(&mut c, "alice"), "0\n", "{VICTIM} is refused");
    assert_eq!(nc.requests(), asked, "without asking Nextcloud");
    assert!(served.log_has(REFUSED), "{}", served.logs());
}

/// (c) saslauthd's fifth field on a Unix socket not marked trusted is
/// ignored (a Unix peer counts as no address); on a trusted one, in the
/// same process, it counts.
#[test]
fn saslauthd_client_addresses_count_only_on_a_trusted_socket() {
    let nc = StandIn::start();
    let dir = tempfile::tempdir().expect("dir");
    let open = dir.path().join("mux");
    let trusted = dir.path().join("mux-trusted");
    let (served, _) = start(
        &nc.url,
        &[
            "--saslauthd-fields",
            "5",
            "--listen",
            &format!("saslauthd={}", unix_arg(&open)),
            "--listen",
            &format!("saslauthd={}", unix_arg(&trusted)),
            "--trusted-socket",
            &unix_arg(&trusted),
        ],
        2,
    );
    let mut c = Conn::unix(&open);
    sasl_failures(&mut c, "ghost");
    assert_eq!(
        sasl_login(&mut c, "alice"),
        "OK success",
        "{VICTIM} is not refused"
    );
    let logs = served.logs_with(ALICE_IN);
    assert!(!logs.contains(REFUSED), "{logs}");
    // The untrusted socket's failures did not count for the address: the
    // trusted socket believes it, and it is still open there.
    let mut t = Conn::unix(&trusted);
    assert_eq!(sasl_login(&mut t, "bob"), "OK success");
    sasl_failures(&mut t, "spirit");
    assert!(sasl_login(&mut t, "zoe").starts_with("NO"), "refused now");
    assert!(served.log_has(REFUSED), "{}", served.logs());
    // Still ignored on the untrusted socket.
    assert_eq!(sasl_login(&mut c, "zoe"), "OK success");
}

/// (d) Standard input is the server that spawned xcauth: always believed.
#[test]
fn standard_input_is_trusted() {
    let nc = StandIn::start();
    let mut x = Xcauth::start("generic", &nc.url, &[]);
    for i in 0..FAILURES {
        x.send(format!("authclient:{VICTIM}:ghost{i}:example.org:wrong{i}\n").as_bytes());
        assert_eq!(x.read_line(T), "0\n", "failure {i}");
    }
    x.send(format!("authclient:{VICTIM}:alice:example.org:alice-pw\n").as_bytes());
    assert_eq!(x.read_line(T), "0\n", "{VICTIM} is refused");
    x.finish();
    assert!(x.logs().contains(REFUSED), "{}", x.logs());
}

/// (e) Sockets systemd passes are matched by their bound address: of two
/// loopback TCP sockets, the one listed in `trusted-socket` believes the
/// client, the other does not.
#[test]
fn systemd_sockets_are_trusted_by_their_address() {
    let nc = StandIn::start();
    let bind = || std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let (open, trusted) = (bind(), bind());
    let open_addr = open.local_addr().expect("addr").to_string();
    let trusted_addr = trusted.local_addr().expect("addr").to_string();
    let fds: Vec<OwnedFd> = vec![open.into(), trusted.into()];
    let served = Served::activate(
        &nc.url,
        fds,
        "generic:generic",
        &["--trusted-socket", &trusted_addr],
    );
    let mut c = Conn::tcp(&open_addr);
    generic_failures(&mut c, "ghost");
    let mut t = Conn::tcp(&trusted_addr);
    assert_eq!(
        generic_login(&mut t, "bob"),
        "1\n",
        "the untrusted failures did not count"
    );
    generic_failures(&mut t, "spirit");
    assert_eq!(generic_login(&mut t, "zoe"), "0\n", "{VICTIM} is refused");
    assert!(served.log_has(REFUSED), "{}", served.logs());
    assert_eq!(
        generic_login(&mut c, "zoe"),
        "1\n",
        "still ignored on the other socket"
    );
    let logs = served.logs();
    let marks: Vec<bool> = listening(&logs)
        .iter()
        .map(|(_, rest)| rest.contains("client addresses believed"))
        .collect();
    assert_eq!(marks, [false, true], "{logs}");
    assert!(!logs.contains("matches no socket"), "{logs}");
}

/// An inetd "nowait" connection on standard input is matched by its local
/// address (that of the socket it was accepted on): untrusted unless that
/// address is listed.
#[test]
fn an_inherited_connection_is_trusted_by_its_local_address() {
    let nc = StandIn::start();
    for trust in [false, true] {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let at = listener.local_addr().expect("addr").to_string();
        let client = std::net::TcpStream::connect(&at).expect("connect");
        let (server_side, _) = listener.accept().expect("accept");
        drop(listener);
        let out = server_side.try_clone().expect("clone");
        let log_dir = tempfile::tempdir().expect("log dir");
        let mut cmd = Served::command(&nc.url, log_dir.path());
        cmd.args(["-t", "generic"]);
        if trust {
            cmd.args(["--trusted-socket", &at]);
        }
        cmd.stdin(Stdio::from(OwnedFd::from(server_side)))
            .stdout(Stdio::from(OwnedFd::from(out)))
            .stderr(Stdio::null());
        let mut served = Served::spawn(cmd, log_dir);
        let mut c = Conn::from_tcp(client);
        generic_failures(&mut c, "ghost");
        let want = if trust { "0\n" } else { "1\n" };
        assert_eq!(generic_login(&mut c, "alice"), want, "trusted: {trust}");
        c.shutdown_write();
        assert!(served.wait_exit(T).is_some(), "exits after the peer closed");
        let logs = served.logs();
        assert_eq!(logs.contains(REFUSED), trust, "{logs}");
        assert!(!logs.contains("matches no socket"), "{logs}");
    }
}
