//! End to end: the real `xcauth` binary serving sockets (SPEC §3) — its own
//! `--listen` sockets, a socket inherited on standard input (inetd "nowait"
//! and "wait"), systemd socket activation — against the stand-in Nextcloud
//! on loopback, with concurrency, limits, timeouts and signals.

mod common;

use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;

const T: Duration = Duration::from_secs(10);

/// [`Served::start_listening`], waiting for every `--listen` socket.
fn start_listening(url: &str, args: &[String]) -> (Served, Vec<String>) {
    let count = args.iter().filter(|a| *a == "--listen").count();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Served::start_listening(url, &args, count)
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|a| a.to_string()).collect()
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("socket exists")
        .permissions()
        .mode()
        & 0o777
}

fn sasl_alice(password: &str) -> Vec<u8> {
    sasl_request(&[b"alice", password.as_bytes(), b"imap", b"example.org"])
}

fn token_for(user: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let expiry = u32::try_from(now + 3600).expect("expiry fits in 32 bits");
    xcauth::token::make(SECRET.as_bytes(), user, "example.org", expiry)
}

/// Checks one connection of each protocol answers like that protocol.
fn check_ejabberd(c: &mut Conn) {
    c.send(&ejabberd_frame("auth:alice:example.org:alice-pw"));
    assert_eq!(c.read_n(4), YES);
    c.send(&ejabberd_frame("auth:alice:example.org:wrong"));
    assert_eq!(c.read_n(4), NO);
}

fn check_generic(c: &mut Conn) {
    c.send(b"auth:alice:example.org:alice-pw\nisuser:nobody:example.org\n");
    assert_eq!(c.line(), "1\n");
    assert_eq!(c.line(), "0\n");
}

fn check_postfix(c: &mut Conn) {
    c.send(b"get alice@example.org\n");
    assert!(c.line().starts_with("200 "));
    c.send(b"get nobody@example.org\n");
    assert!(c.line().starts_with("500 "));
}

fn check_saslauthd(c: &mut Conn) {
    c.send(&sasl_alice("alice-pw"));
    assert_eq!(c.sasl(), "OK success");
    c.send(&sasl_alice("wrong"));
    assert!(c.sasl().starts_with("NO"));
}

// --- own listeners ------------------------------------------------------------

#[test]
fn own_listeners_of_three_protocols_in_one_process() {
    let nc = StandIn::start();
    let dir = tempfile::tempdir().expect("dir");
    let mux = dir.path().join("mux");
    let sasl = format!("saslauthd=unix:{}", mux.display());
    let (mut x, at) = start_listening(
        &nc.url,
        &args(&[
            "--listen",
            "ejabberd=127.0.0.1:0",
            "--listen",
            "postfix=127.0.0.1:0",
            "--listen",
            &sasl,
        ]),
    );
    assert_eq!(mode_of(&mux), 0o660, "Unix sockets are 0660 by default");
    check_ejabberd(&mut Conn::tcp(&at[0]));
    check_postfix(&mut Conn::tcp(&at[1]));
    check_saslauthd(&mut Conn::unix(&mux));
    // All three at once on open connections.
    let mut e = Conn::tcp(&at[0]);
    let mut p = Conn::tcp(&at[1]);
    let mut s = Conn::unix(&mux);
    e.send(&ejabberd_frame("isuser:bob:example.org"));
    p.send(b"get bob@example.org\n");
    s.send(&sasl_request(&[
        b"bob@example.org",
        b"bob-pw",
        b"smtp",
        b"",
    ]));
    assert_eq!(s.sasl(), "OK success");
    assert!(p.line().starts_with("200 "));
    assert_eq!(e.read_n(4), YES);
    x.signal("TERM");
    assert!(x.wait_exit(T).expect("exits after SIGTERM").success());
}

#[test]
fn unix_socket_mode_owner_and_group_are_honoured() {
    let nc = StandIn::start();
    let dir = tempfile::tempdir().expect("dir");
    let mux = dir.path().join("mux");
    // As root, hand the socket to nobody:nogroup; otherwise to ourselves.
    let me = std::fs::metadata(dir.path()).expect("dir meta");
    let (uid, gid) = if me.uid() == 0 {
        (65534, 65534)
    } else {
        (me.uid(), me.gid())
    };
    let (_x, _) = start_listening(
        &nc.url,
        &args(&[
            "--listen",
            &format!("generic=unix:{}", mux.display()),
            "--socket-mode",
            "0600",
            "--socket-owner",
            &uid.to_string(),
            "--socket-group",
            &gid.to_string(),
        ]),
    );
    let meta = std::fs::metadata(&mux).expect("socket");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!((meta.uid(), meta.gid()), (uid, gid));
    check_generic(&mut Conn::unix(&mux));
}

#[test]
fn a_stale_socket_file_is_replaced_and_a_busy_port_is_an_error() {
    let nc = StandIn::start();
    let dir = tempfile::tempdir().expect("dir");
    let mux = dir.path().join("mux");
    drop(UnixListener::bind(&mux).expect("stale socket"));
    let (_x, _) = start_listening(
        &nc.url,
        &args(&["--listen", &format!("saslauthd=unix:{}", mux.display())]),
    );
    check_saslauthd(&mut Conn::unix(&mux));

    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let at = taken.local_addr().expect("addr").to_string();
    let log_dir = tempfile::tempdir().expect("log dir");
    let out = Served::command(&nc.url, log_dir.path())
        .args(["--listen", &format!("generic={at}")])
        .stdin(Stdio::null())
        .output()
        .expect("run xcauth");
    assert_eq!(
        out.status.code(),
        Some(2),
        "a port in use is a start-up error"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains(&at));
}

// --- inherited sockets (inetd) ------------------------------------------------

/// Runs xcauth with `stdin` (and stdout: inetd gives the connection on
/// both) as its standard streams.
fn spawn_on_stdin(url: &str, proto: &str, stdin: OwnedFd, stdout: Option<OwnedFd>) -> Served {
    let log_dir = tempfile::tempdir().expect("log dir");
    let mut cmd = Served::command(url, log_dir.path());
    cmd.args(["-t", proto])
        .stdin(Stdio::from(stdin))
        .stdout(stdout.map_or_else(Stdio::null, Stdio::from))
        .stderr(Stdio::null());
    Served::spawn(cmd, log_dir)
}

#[test]
fn inetd_nowait_connected_unix_socket_on_stdin() {
    let nc = StandIn::start();
    let (ours, theirs) = UnixStream::pair().expect("socketpair");
    let out = theirs.try_clone().expect("clone");
    let mut x = spawn_on_stdin(&nc.url, "saslauthd", theirs.into(), Some(out.into()));
    let mut c = Conn::from_unix(ours);
    check_saslauthd(&mut c);
    c.shutdown_write();
    assert!(c.closed_by_peer(), "xcauth closes after end of input");
    let status = x.wait_exit(T).expect("exits after the peer closed");
    assert!(status.success(), "{status:?}");
    assert!(x.logs().contains("inherited connection"), "{}", x.logs());
}

#[test]
fn inetd_nowait_connected_tcp_socket_on_stdin() {
    let nc = StandIn::start();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (server_side, _) = listener.accept().expect("accept");
    drop(listener);
    let out = server_side.try_clone().expect("clone");
    let mut x = spawn_on_stdin(&nc.url, "ejabberd", server_side.into(), Some(out.into()));
    let mut c = Conn::from_tcp(client);
    check_ejabberd(&mut c);
    // ejabberd's length-0 frame ends the stream as well as end of input.
    c.send(&[0, 0]);
    assert!(c.closed_by_peer());
    let status = x.wait_exit(T).expect("exits after the peer closed");
    assert!(status.success(), "{status:?}");
}

#[test]
fn inetd_wait_listening_tcp_socket_on_stdin() {
    let nc = StandIn::start();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let at = listener.local_addr().expect("addr").to_string();
    let mut x = spawn_on_stdin(&nc.url, "generic", listener.into(), None);
    // Several clients, all connected before any is answered.
    let mut clients: Vec<Conn> = (0..5).map(|_| Conn::tcp(&at)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        let pw = if i % 2 == 0 { "alice-pw" } else { "wrong" };
        c.send(format!("auth:alice:example.org:{pw}\n").as_bytes());
    }
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(c.line(), if i % 2 == 0 { "1\n" } else { "0\n" });
    }
    drop(clients);
    check_generic(&mut Conn::tcp(&at));
    assert!(x.exited().is_none(), "keeps accepting after clients leave");
    x.signal("TERM");
    assert!(x.wait_exit(T).expect("exits on SIGTERM").success());
}

#[test]
fn inetd_wait_listening_unix_socket_on_stdin() {
    let nc = StandIn::start();
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("s");
    let listener = UnixListener::bind(&path).expect("bind");
    let mut x = spawn_on_stdin(&nc.url, "postfix", listener.into(), None);
    let mut a = Conn::unix(&path);
    let mut b = Conn::unix(&path);
    check_postfix(&mut b);
    check_postfix(&mut a);
    x.signal("TERM");
    assert!(x.wait_exit(T).expect("exits on SIGTERM").success());
}

#[test]
fn stdin_that_is_not_a_socket_is_the_stdio_helper() {
    let nc = StandIn::start();
    // /dev/null: end of input at once, a clean exit, nothing written.
    let log_dir = tempfile::tempdir().expect("log dir");
    let out = Served::command(&nc.url, log_dir.path())
        .args(["-t", "generic"])
        .stdin(Stdio::null())
        .output()
        .expect("run xcauth");
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.is_empty());

    // A regular file of requests.
    let dir = tempfile::tempdir().expect("dir");
    let requests = dir.path().join("requests");
    std::fs::write(
        &requests,
        "auth:alice:example.org:alice-pw\nauth:alice:example.org:no\n",
    )
    .expect("write requests");
    let out = Served::command(&nc.url, log_dir.path())
        .args(["-t", "generic"])
        .stdin(File::open(&requests).expect("open"))
        .output()
        .expect("run xcauth");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"1\n0\n");

    // A pipe.
    let mut x = Xcauth::start("ejabberd", &nc.url, &[]);
    x.send(&ejabberd_frame("auth:alice:example.org:alice-pw"));
    assert_eq!(x.read_exact(4, T), YES);
    let (rest, ok) = x.finish();
    assert!(rest.is_empty() && ok);
    let logs = std::fs::read_to_string(log_dir.path().join("xcauth.log")).unwrap_or_default()
        + &std::fs::read_to_string(log_dir.path().join("xcauth.err")).unwrap_or_default()
        + &x.logs();
    assert!(!logs.contains("non-socket"), "{logs}");
    assert!(logs.contains("on standard input"), "{logs}");
}

// --- systemd socket activation --------------------------------------------------

#[test]
fn systemd_descriptor_names_select_protocols() {
    let nc = StandIn::start();
    let dir = tempfile::tempdir().expect("dir");
    let ej = TcpListener::bind("127.0.0.1:0").expect("bind");
    let pf = TcpListener::bind("[::1]:0")
        .or_else(|_| TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let mux = dir.path().join("mux");
    let sa = UnixListener::bind(&mux).expect("bind");
    let (ej_at, pf_at) = (
        ej.local_addr().expect("addr").to_string(),
        pf.local_addr().expect("addr").to_string(),
    );
    // -t generic only for descriptors without a known name: none here.
    let mut x = Served::activate(
        &nc.url,
        vec![ej.into(), pf.into(), sa.into()],
        "ejabberd:postfix:saslauthd",
        &["-t", "generic"],
    );
    check_ejabberd(&mut Conn::tcp(&ej_at));
    check_postfix(&mut Conn::tcp(&pf_at));
    check_saslauthd(&mut Conn::unix(&mux));
    assert!(x.log_has("systemd socket saslauthd"), "{}", x.logs());
    x.signal("TERM");
    assert!(x.wait_exit(T).expect("exits on SIGTERM").success());
}

#[test]
fn systemd_descriptor_without_a_known_name_speaks_type() {
    let nc = StandIn::start();
    let a = TcpListener::bind("127.0.0.1:0").expect("bind");
    let b = TcpListener::bind("127.0.0.1:0").expect("bind");
    let (a_at, b_at) = (
        a.local_addr().expect("addr").to_string(),
        b.local_addr().expect("addr").to_string(),
    );
    // The original's xcauth.socket was named "deprecated"; the second
    // descriptor has no name at all.
    let _x = Served::activate(
        &nc.url,
        vec![a.into(), b.into()],
        "deprecated",
        &["-t", "prosody"],
    );
    check_generic(&mut Conn::tcp(&a_at));
    check_generic(&mut Conn::tcp(&b_at));
}

/// Runs `xcauth -t generic` on a pipe with a listening socket on descriptor
/// 3 and `vars` set, the way a stray or foreign systemd environment looks,
/// and checks that it answers one login on standard input and ends with its
/// input. An xcauth that took descriptor 3 for its own would serve that
/// socket and never end.
fn assert_serves_stdin_beside_a_foreign_socket(url: &str, vars: &[(&str, &str)]) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let log_dir = tempfile::tempdir().expect("log dir");
    let base = Served::command(url, log_dir.path());
    // The shell moves its standard error (the listener) to descriptor 3.
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(r#"exec 3>&2 2>/dev/null; exec "$0" "$@""#)
        .arg(base.get_program())
        .args(base.get_args())
        .args(["-t", "generic"])
        .env("XCAUTH_SECRET", SECRET)
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_FDNAMES")
        .envs(vars.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(OwnedFd::from(listener)));
    let mut child = Guard(cmd.spawn().expect("start xcauth"));
    {
        use std::io::Write;
        let mut stdin = child.0.stdin.take().expect("stdin");
        stdin
            .write_all(b"auth:alice:example.org:alice-pw\n")
            .expect("write");
    }
    let status = poll(T, || child.0.try_wait().ok().flatten())
        .expect("xcauth ends at the end of its input, leaving descriptor 3 alone");
    let mut out = Vec::new();
    let mut stdout = child.0.stdout.take().expect("stdout");
    std::io::Read::read_to_end(&mut stdout, &mut out).expect("read answers");
    assert_eq!(out, b"1\n", "answer on standard output with {vars:?}");
    assert!(status.success(), "{status:?} with {vars:?}");
}

#[test]
fn stray_listen_fds_without_listen_pid_are_ignored() {
    // As inherited from a socket-activated parent: sd_listen_fds(3) ignores
    // LISTEN_FDS unless LISTEN_PID names this process.
    let nc = StandIn::start();
    assert_serves_stdin_beside_a_foreign_socket(&nc.url, &[("LISTEN_FDS", "1")]);
    let empty_pid = [
        ("LISTEN_PID", ""),
        ("LISTEN_FDS", "1"),
        ("LISTEN_FDNAMES", "generic"),
    ];
    assert_serves_stdin_beside_a_foreign_socket(&nc.url, &empty_pid);
}

#[test]
fn systemd_variables_for_another_process_are_ignored() {
    // LISTEN_PID names another process: descriptor 3 is not ours, and
    // standard input (a pipe) is served instead.
    let nc = StandIn::start();
    let other_pid = [
        ("LISTEN_PID", "1"),
        ("LISTEN_FDS", "1"),
        ("LISTEN_FDNAMES", "ejabberd"),
    ];
    assert_serves_stdin_beside_a_foreign_socket(&nc.url, &other_pid);
}

#[test]
fn systemd_variables_for_this_process_are_honoured() {
    // The same descriptor with LISTEN_PID set to xcauth's own process id
    // (the shell execs xcauth, which keeps its $$): xcauth listens on it.
    let nc = StandIn::start();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let at = listener.local_addr().expect("addr").to_string();
    let mut x = Served::activate(
        &nc.url,
        vec![listener.into()],
        "generic",
        &["-t", "ejabberd"],
    );
    check_generic(&mut Conn::tcp(&at));
    assert!(x.log_has("systemd socket generic"), "{}", x.logs());
    x.signal("TERM");
    assert!(x.wait_exit(T).expect("exits on SIGTERM").success());
}

#[test]
fn systemd_socket_activate_tool() {
    let Some(tool) = which("systemd-socket-activate") else {
        eprintln!("SKIP: systemd-socket-activate not installed (Debian package systemd)");
        return;
    };
    // Unix sockets in a fresh folder: the tool binds them, nobody else can
    // take them meanwhile. (The tool would bind a TCP port 0 as well, but
    // not tell which port it got.)
    let nc = StandIn::start();
    let dir = tempfile::tempdir().expect("dir");
    let (ej, pf, mux) = (
        dir.path().join("ej"),
        dir.path().join("pf"),
        dir.path().join("mux"),
    );
    let log_dir = tempfile::tempdir().expect("log dir");
    let tool_err = log_dir.path().join("socket-activate.err");
    let base = Served::command(&nc.url, log_dir.path());
    let mut cmd = Command::new(&tool);
    cmd.arg("-l")
        .arg(&ej)
        .arg("-l")
        .arg(&pf)
        .arg("-l")
        .arg(&mux)
        .args(["--fdname=ejabberd:postfix", "--fdname=saslauthd"])
        .args(["-E", "XCAUTH_SECRET", "--"])
        .arg(base.get_program())
        .args(base.get_args())
        .env("XCAUTH_SECRET", SECRET)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&tool_err).expect("stderr file"));
    let mut x = Served::spawn(cmd, log_dir);
    // The tool binds every socket and says so on standard error, then
    // execs xcauth at the first connection.
    let ready = poll(T, || {
        let said = std::fs::read_to_string(&tool_err).unwrap_or_default();
        if said.matches("Listening on").count() == 3 {
            Some(true)
        } else {
            x.exited().map(|_| false)
        }
    });
    assert_eq!(
        ready,
        Some(true),
        "systemd-socket-activate did not listen: {}",
        std::fs::read_to_string(&tool_err).unwrap_or_default()
    );
    check_ejabberd(&mut Conn::unix(&ej));
    check_postfix(&mut Conn::unix(&pf));
    check_saslauthd(&mut Conn::unix(&mux));
    x.signal("TERM");
    let status = x.wait_exit(T).expect("exits on SIGTERM");
    assert!(status.success(), "{status:?}\n{}", x.logs());
}

/// The program `name` on `PATH`, if any.
fn which(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

// --- concurrency, limits, timeouts ------------------------------------------------

/// xcauth serving `generic` on a loopback TCP socket this test bound (on
/// port 0) and passed as a systemd socket.
fn listen_generic(url: &str, extra: &[&str]) -> (Served, String) {
    Served::activate_generic(url, extra)
}

#[test]
fn pipelined_requests_are_worked_on_together_and_answered_in_order() {
    let nc = StandIn::start_with(&["--latency-ms", "400"]);
    let (_x, at) = listen_generic(&nc.url, &[]);
    let mut c = Conn::tcp(&at);
    let mut batch = String::new();
    let mut expected = String::new();
    for i in 0..8 {
        let (pw, answer) = if i % 3 == 0 {
            ("alice-pw", "1\n")
        } else {
            ("nope", "0\n")
        };
        batch.push_str(&format!("auth:alice:example.org:{pw}\n"));
        expected.push_str(answer);
    }
    let started = Instant::now();
    c.send(batch.as_bytes());
    let mut got = String::new();
    for _ in 0..8 {
        got.push_str(&c.line());
    }
    assert_eq!(got, expected, "answers in request order");
    // One after the other would take 8 × 400 ms.
    assert!(
        started.elapsed() < Duration::from_millis(2400),
        "pipelined requests were not worked on concurrently: {:?}",
        started.elapsed()
    );
}

#[test]
fn a_slow_back_end_answer_does_not_delay_another_connection() {
    let nc = StandIn::start_with(&["--latency-ms", "3000"]);
    let (_x, at) = listen_generic(&nc.url, &[]);
    let mut slow = Conn::tcp(&at);
    let mut fast = Conn::tcp(&at);
    slow.send(b"auth:alice:example.org:alice-pw\n");
    // The slow request has reached the back end.
    assert!(poll(T, || (nc.requests() >= 1).then_some(())).is_some());
    let token = token_for("bob");
    fast.send(format!("auth:bob:example.org:{token}\n").as_bytes());
    assert_eq!(fast.line(), "1\n", "token login answered");
    assert!(
        !slow.answers_within(Duration::from_millis(1)),
        "the token login was answered before the slow one"
    );
    assert_eq!(slow.line(), "1\n");
}

#[test]
fn connection_limit_queues_extra_clients() {
    let nc = StandIn::start();
    let (_x, at) = listen_generic(&nc.url, &["--max-connections", "2"]);
    let mut one = Conn::tcp(&at);
    let mut two = Conn::tcp(&at);
    check_generic(&mut one);
    check_generic(&mut two);
    let mut three = Conn::tcp(&at);
    three.send(b"isuser:bob:example.org\n");
    assert!(
        !three.answers_within(Duration::from_millis(500)),
        "a third client is not served while two are connected"
    );
    drop(one);
    assert_eq!(three.line(), "1\n", "served once a slot is free");
    check_generic(&mut two);
}

#[test]
fn idle_connections_are_closed_busy_ones_stay() {
    let nc = StandIn::start_with(&["--latency-ms", "2500"]);
    let (_x, at) = listen_generic(&nc.url, &["--idle-timeout", "1"]);
    let mut idle = Conn::tcp(&at);
    let mut busy = Conn::tcp(&at);
    busy.send(b"auth:alice:example.org:alice-pw\n");
    let started = Instant::now();
    assert!(idle.closed_by_peer(), "idle connection closed");
    assert!(started.elapsed() < Duration::from_millis(2500));
    assert_eq!(busy.line(), "1\n", "busy connection answered");
    // Idle time counts from the answer, not from the request: the next
    // request on the same connection is served.
    busy.send(b"isuser:bob:example.org\n");
    assert_eq!(busy.line(), "1\n");
}

#[test]
fn garbage_on_one_connection_does_not_affect_another() {
    let nc = StandIn::start();
    let g = TcpListener::bind("127.0.0.1:0").expect("bind");
    let s = TcpListener::bind("127.0.0.1:0").expect("bind");
    let (gen, sasl) = (
        g.local_addr().expect("addr").to_string(),
        s.local_addr().expect("addr").to_string(),
    );
    let _x = Served::activate(&nc.url, vec![g.into(), s.into()], "generic:saslauthd", &[]);
    let mut good = Conn::tcp(&gen);
    let mut junk = Conn::tcp(&gen);
    // 1 MB without a line end, then binary noise and a line end.
    let noise: Vec<u8> = (0..1_000_000u64)
        .map(|i| match (i * 7919 % 251) as u8 {
            b'\n' => b'x',
            byte => byte,
        })
        .collect();
    junk.send(&noise);
    check_generic(&mut good);
    junk.send(b"\n");
    assert_eq!(junk.line(), "0\n", "the over-long line is refused");
    check_generic(&mut junk);
    // saslauthd: a field over 256 bytes is refused; the connection and
    // the others go on.
    let mut big = Conn::tcp(&sasl);
    let long = vec![b'a'; 4000];
    big.send(&sasl_request(&[&long, b"pw", b"imap", b"example.org"]));
    assert!(big.sasl().starts_with("NO"));
    check_saslauthd(&mut Conn::tcp(&sasl));
    check_generic(&mut good);
}

// --- lifecycle ----------------------------------------------------------------

#[test]
fn sigterm_finishes_requests_in_flight_and_refuses_new_connections() {
    let nc = StandIn::start_with(&["--latency-ms", "1500"]);
    let (mut x, at) = listen_generic(&nc.url, &[]);
    let mut c = Conn::tcp(&at);
    c.send(b"auth:alice:example.org:alice-pw\n");
    assert!(poll(T, || (nc.requests() >= 1).then_some(())).is_some());
    x.signal("TERM");
    // New connections are refused while the old request is still going.
    let refused = poll(T, || TcpStream::connect(&at).is_err().then_some(()));
    assert!(refused.is_some(), "still accepting after SIGTERM");
    assert!(x.exited().is_none(), "waits for the request in flight");
    assert_eq!(c.line(), "1\n", "the answer still arrives");
    let status = x.wait_exit(T).expect("exits after the last answer");
    assert!(status.success(), "{status:?}");
    assert!(x.logs().contains("stopping"), "{}", x.logs());
}

#[test]
fn sigterm_gives_up_on_requests_after_the_shutdown_timeout() {
    let nc = StandIn::start_with(&["--latency-ms", "8000"]);
    let (mut x, at) = listen_generic(&nc.url, &["--shutdown-timeout", "1"]);
    let mut c = Conn::tcp(&at);
    c.send(b"auth:alice:example.org:alice-pw\n");
    assert!(poll(T, || (nc.requests() >= 1).then_some(())).is_some());
    let started = Instant::now();
    x.signal("TERM");
    let status = x.wait_exit(T).expect("exits after the shutdown timeout");
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(c.closed_by_peer(), "no answer, the connection is closed");
}

#[test]
fn sighup_reopens_the_log_and_keeps_serving() {
    let nc = StandIn::start();
    let (x, at) = listen_generic(&nc.url, &[]);
    let mut c = Conn::tcp(&at);
    check_generic(&mut c);
    let log = x.log_dir.path().join("xcauth.log");
    std::fs::rename(&log, x.log_dir.path().join("xcauth.log.1")).expect("rotate");
    x.signal("HUP");
    check_generic(&mut c);
    check_generic(&mut Conn::tcp(&at));
    let reopened = poll(T, || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|text| text.contains("SIGHUP"))
    });
    assert!(reopened.is_some(), "a new xcauth.log after SIGHUP");
}

#[test]
fn unix_socket_peer_is_logged_with_uid_and_pid() {
    let nc = StandIn::start();
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("s");
    let (x, _) = start_listening(
        &nc.url,
        &args(&["--listen", &format!("generic=unix:{}", path.display())]),
    );
    check_generic(&mut Conn::unix(&path));
    let uid = std::fs::metadata(dir.path()).expect("meta").uid();
    let want = format!("uid {uid} pid {}", std::process::id());
    assert!(x.log_has(&want), "no {want:?} in\n{}", x.logs());
}

#[test]
fn systemd_connected_descriptor_is_refused() {
    // A unit with Accept=yes passes a connection, not a listener.
    let nc = StandIn::start();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let _client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (server_side, _) = listener.accept().expect("accept");
    let mut x = Served::activate(&nc.url, vec![server_side.into()], "ejabberd", &[]);
    let status = x.wait_exit(T).expect("gives up at start");
    assert_eq!(status.code(), Some(2), "{}", x.logs());
    assert!(x.logs().contains("Accept=no"), "{}", x.logs());
}
