//! End to end: the real `xcauth` binary under floods, with the
//! misbehaving clients of an attack on loopback: idle clients on one
//! socket, a descriptor limit too low for `max-connections`, a thousand
//! clients that pipeline without reading, slow clients on the metrics
//! listener, and a back end that answers huge bodies.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Starts xcauth (made by [`Served::command`] for `url`) on the `--listen`
/// specs with `extra` options, the whole command run through `wrap` (e.g.
/// `prlimit ... --`); returns once every socket listens.
fn serve_wrapped(url: &str, specs: &[String], extra: &[&str], wrap: &[&str]) -> Served {
    let log_dir = tempfile::tempdir().expect("log dir");
    let base = Served::command(url, log_dir.path());
    let mut cmd = match wrap.split_first() {
        Some((program, args)) => {
            let mut cmd = Command::new(program);
            cmd.args(args).arg(base.get_program()).args(base.get_args());
            cmd
        }
        None => Command::new(base.get_program()),
    };
    if wrap.is_empty() {
        cmd.args(base.get_args());
    }
    cmd.env("XCAUTH_SECRET", SECRET);
    for spec in specs {
        cmd.arg("--listen").arg(spec);
    }
    cmd.args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let served = Served::spawn(cmd, log_dir);
    assert!(
        poll(Duration::from_secs(10), || (served
            .logs()
            .matches("listening on ")
            .count()
            >= specs.len())
        .then_some(()))
        .is_some(),
        "xcauth did not start:\n{}",
        served.logs()
    );
    served
}

fn serve(url: &str, specs: &[String], extra: &[&str]) -> Served {
    serve_wrapped(url, specs, extra, &[])
}

/// A `/proc/PID/status` field in kB (`VmRSS`, `VmHWM`).
fn status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in {status}"))
}

/// Lets this test process open `n` descriptors (its clients).
fn allow_descriptors(n: u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if soft < n {
        setrlimit(Resource::RLIMIT_NOFILE, n.min(hard), hard).expect("setrlimit");
    }
}

/// A valid JSXC token for alice: answered without the back end.
fn alice_token() -> String {
    let expiry = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 3600) as u32;
    xcauth::token::make(SECRET.as_bytes(), "alice", "example.org", expiry)
}

/// With `--max-connections 50`, 60 idle clients on the Postfix socket take
/// that socket's 50 slots only: the generic and saslauthd sockets still
/// serve every login, and the Postfix socket's 51st client is served once
/// an idle one leaves.
#[test]
fn idle_clients_on_one_socket_do_not_starve_the_others() {
    let nc = StandIn::start();
    let dir = tempfile::tempdir().expect("dir");
    let (postfix, generic, sasl) = (
        dir.path().join("postfix"),
        dir.path().join("generic"),
        dir.path().join("sasl"),
    );
    let served = serve(
        &nc.url,
        &[
            format!("postfix=unix:{}", postfix.display()),
            format!("generic=unix:{}", generic.display()),
            format!("saslauthd=unix:{}", sasl.display()),
        ],
        &["--max-connections", "50"],
    );
    let mut idle: Vec<Conn> = (0..60).map(|_| Conn::unix(&postfix)).collect();
    let accepted = format!("connection on unix:{} from", postfix.display());
    assert!(
        poll(Duration::from_secs(10), || (served
            .logs()
            .matches(&accepted)
            .count()
            >= 50)
            .then_some(()))
        .is_some(),
        "50 Postfix clients accepted:\n{}",
        served.logs()
    );
    for i in 0..5 {
        let mut conn = Conn::unix(&generic);
        conn.set_timeout(Some(Duration::from_secs(5)));
        conn.send(b"auth:alice:example.org:alice-pw\n");
        assert_eq!(conn.line(), "1\n", "generic login {i}");
    }
    for i in 0..3 {
        let mut conn = Conn::unix(&sasl);
        conn.set_timeout(Some(Duration::from_secs(5)));
        conn.send(&sasl_request(&[
            b"alice",
            b"alice-pw",
            b"imap",
            b"example.org",
        ]));
        assert!(conn.sasl().starts_with("OK"), "saslauthd login {i}");
    }
    // The Postfix socket itself is at its limit: its last client waits in
    // the backlog until a slot is free.
    let mut last = idle.pop().expect("a client");
    last.send(b"get alice@example.org\n");
    drop(idle.drain(..10));
    assert!(last.line().starts_with("200 "));
}

/// Started with a soft descriptor limit of 64 (and a hard one of 4096),
/// xcauth raises the soft limit for its connections: 150 clients at once
/// are all served. With a hard limit too low for `max-connections`, it
/// refuses to start and says what to change.
#[test]
fn the_descriptor_limit_is_raised_or_start_up_refused() {
    allow_descriptors(1024);
    let nc = StandIn::start();
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("s");
    let served = serve_wrapped(
        &nc.url,
        &[format!("generic=unix:{}", path.display())],
        &[],
        &["prlimit", "--nofile=64:4096", "--"],
    );
    let mut clients: Vec<Conn> = (0..150).map(|_| Conn::unix(&path)).collect();
    let token = alice_token();
    for (i, conn) in clients.iter_mut().enumerate() {
        conn.set_timeout(Some(Duration::from_secs(5)));
        conn.send(format!("auth:alice:example.org:{token}\n").as_bytes());
        assert_eq!(conn.line(), "1\n", "client {i}");
    }
    assert!(!served.logs().contains("Too many open files"));

    let log_dir = tempfile::tempdir().expect("log dir");
    let base = Served::command(&nc.url, log_dir.path());
    let out = Command::new("prlimit")
        .args(["--nofile=64:512", "--"])
        .arg(base.get_program())
        .args(base.get_args())
        .arg("--listen")
        .arg(format!("generic=unix:{}", dir.path().join("t").display()))
        .env("XCAUTH_SECRET", SECRET)
        .stdin(Stdio::null())
        .output()
        .expect("run xcauth");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("needs 1280 file descriptors") && stderr.contains("LimitNOFILE"),
        "{stderr}"
    );
}

/// Writes `chunk` to every client that takes it, without ever reading;
/// returns the bytes written in this round.
fn pipeline_round(clients: &mut [UnixStream], chunk: &[u8]) -> usize {
    let mut written = 0;
    for client in clients.iter_mut() {
        match client.write(chunk) {
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("flood client: {e}"),
        }
    }
    written
}

/// One token login on `path`, answered within 10 s.
fn token_login(path: &Path, token: &str) -> Duration {
    let started = Instant::now();
    let mut conn = Conn::unix(path);
    conn.send(format!("auth:alice:example.org:{token}\n").as_bytes());
    assert_eq!(conn.line(), "1\n");
    started.elapsed()
}

/// 1 000 clients pipeline requests and never read an answer (the back end
/// is down, so every answer is made at once). The process stays within its
/// byte budget: peak RSS bounded, a client on another socket served during
/// the flood, and memory given back once the flood ends.
#[test]
fn a_thousand_clients_that_never_read_stay_within_the_process_budget() {
    allow_descriptors(2048);
    let down = RefusingPort::new();
    let dir = tempfile::tempdir().expect("dir");
    let (flood, quiet) = (dir.path().join("flood"), dir.path().join("quiet"));
    let served = serve(
        &down.url(),
        &[
            format!("generic=unix:{}", flood.display()),
            format!("generic=unix:{}", quiet.display()),
        ],
        &["--write-timeout", "10m"],
    );
    let token = alice_token();
    token_login(&quiet, &token);
    let before = status_kb(served.pid(), "VmRSS");
    let mut clients: Vec<UnixStream> = (0..1000)
        .map(|_| {
            let client = UnixStream::connect(&flood).expect("connect");
            client.set_nonblocking(true).expect("non-blocking");
            client
        })
        .collect();
    let chunk = "isuser:alice:example.org\n".repeat(2000).into_bytes();
    let started = Instant::now();
    let mut total = 0;
    let mut still = 0;
    let mut waits = Vec::new();
    // Until xcauth has stopped taking requests from every client.
    while still < 20 && started.elapsed() < Duration::from_secs(120) {
        let written = pipeline_round(&mut clients, &chunk);
        total += written;
        still = if written == 0 { still + 1 } else { 0 };
        if waits.len() < 3 && total > waits.len() * 200 * 1024 * 1024 {
            waits.push(token_login(&quiet, &token));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    waits.push(token_login(&quiet, &token));
    let peak = status_kb(served.pid(), "VmHWM");
    drop(clients);
    let closed = Instant::now();
    let after = poll(Duration::from_secs(60), || {
        let rss = status_kb(served.pid(), "VmRSS");
        (rss < before + 48 * 1024).then_some(rss)
    });
    let rss = status_kb(served.pid(), "VmRSS");
    let fds = std::fs::read_dir(format!("/proc/{}/fd", served.pid())).map_or(0, |d| d.count());
    eprintln!("descriptors open after the flood: {fds}");
    if std::env::var_os("XC_SMAPS").is_some() {
        let smaps = std::fs::read_to_string(format!("/proc/{}/smaps", served.pid())).unwrap();
        let mut head = String::new();
        for line in smaps.lines() {
            if line.contains('-') && !line.starts_with(|c: char| c.is_ascii_uppercase()) {
                head = line.to_owned();
            } else if let Some(v) = line.strip_prefix("Rss:") {
                let kb: u64 = v.trim().trim_end_matches("kB").trim().parse().unwrap();
                if kb > 2048 {
                    eprintln!("{kb} kB {head}");
                }
            }
        }
    }
    eprintln!(
        "flood: {} MiB written in {:?}; RSS {before} kB before, peak {peak} kB, \
         {rss} kB {:?} after the clients closed; logins during the flood took {waits:?}",
        total >> 20,
        started.elapsed(),
        closed.elapsed()
    );
    assert!(
        peak < before + 140 * 1024,
        "peak RSS {peak} kB (from {before} kB)"
    );
    assert!(
        waits.iter().all(|w| *w < Duration::from_secs(5)),
        "{waits:?}"
    );
    assert!(after.is_some(), "RSS still {rss} kB after the flood");
}

/// 32 slow clients hold connections to the metrics listener by sending
/// half a request head and reconnecting whenever they are closed:
/// `/health` still answers at once.
#[test]
fn slow_metrics_clients_do_not_keep_health_out() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let nc = StandIn::start();
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("s");
    let served = serve(
        &nc.url,
        &[format!("generic=unix:{}", path.display())],
        &["--metrics", "127.0.0.1:0"],
    );
    let logs = served.logs_with("metrics at http://");
    let addr = logs
        .split("metrics at http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("metrics address")
        .to_owned();
    let stop = Arc::new(AtomicBool::new(false));
    let connected = Arc::new(AtomicUsize::new(0));
    let slow: Vec<_> = (0..32)
        .map(|_| {
            let (stop, connected, addr) = (Arc::clone(&stop), Arc::clone(&connected), addr.clone());
            std::thread::spawn(move || {
                let mut first = true;
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut s) = std::net::TcpStream::connect(&addr) else {
                        continue;
                    };
                    let _ = s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n");
                    if std::mem::take(&mut first) {
                        connected.fetch_add(1, Ordering::Relaxed);
                    }
                    s.set_read_timeout(Some(Duration::from_millis(100))).ok();
                    let mut buf = [0u8; 256];
                    // Hold the connection until xcauth closes it.
                    while !stop.load(Ordering::Relaxed) {
                        match s.read(&mut buf) {
                            Ok(0) => break,
                            Ok(_) => {}
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                            Err(_) => break,
                        }
                    }
                }
            })
        })
        .collect();
    assert!(poll(Duration::from_secs(10), || (connected
        .load(Ordering::Relaxed)
        == 32)
        .then_some(()))
    .is_some());
    let mut waits = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let body = http(&addr, "GET", "/health", "");
        waits.push(started.elapsed());
        assert_eq!(body, "ok\n");
    }
    stop.store(true, Ordering::Relaxed);
    for t in slow {
        t.join().expect("slow client");
    }
    eprintln!("/health under 32 slow clients took {waits:?}");
    assert!(
        waits.iter().all(|w| *w < Duration::from_millis(1500)),
        "{waits:?}"
    );
}
