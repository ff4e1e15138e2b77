//! End to end: the real binary's `--metrics` listener (scraped after
//! logins against the stand-in Nextcloud, health, misbehaving clients) and
//! `xcauth stats` summing processes that share one database.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const T: Duration = Duration::from_secs(10);

/// The address of "metrics at http://ADDR/metrics" in the logs.
fn metrics_addr(x: &Xcauth) -> String {
    poll(T, || {
        x.logs()
            .lines()
            .filter_map(|l| l.split_once("metrics at http://"))
            .filter_map(|(_, rest)| rest.split_once("/metrics"))
            .map(|(addr, _)| addr.to_owned())
            .next()
    })
    .unwrap_or_else(|| panic!("no metrics address logged:\n{}", x.logs()))
}

/// GET `path`: (status code, body).
fn get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect metrics");
    s.set_read_timeout(Some(T)).ok();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").expect("write");
    let mut response = String::new();
    s.read_to_string(&mut response).expect("read");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Samples of a scrape: `name{labels}` → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter_map(|(k, v)| v.parse().ok().map(|v| (k.to_owned(), v)))
        .collect()
}

fn requests(proto: &str, request: &str, result: &str) -> String {
    format!(
        "xcauth_requests_total{{protocol=\"{proto}\",request=\"{request}\",result=\"{result}\"}}"
    )
}

fn line(x: &mut Xcauth, text: &str) -> String {
    x.send(format!("{text}\n").as_bytes());
    x.read_line(T).trim_end().to_owned()
}

#[test]
fn a_scrape_counts_the_logins_and_health_follows_the_back_end() {
    let nc = StandIn::start();
    let mut x = Xcauth::start("generic", &nc.url, &["--metrics", "127.0.0.1:0"]);
    let addr = metrics_addr(&x);
    assert_eq!(get(&addr, "/health"), (200, "ok\n".into()));

    assert_eq!(line(&mut x, "auth:alice:example.org:alice-pw"), "1");
    assert_eq!(line(&mut x, "auth:alice:example.org:wrong"), "0");
    // The same wrong password again: the guard answers, Nextcloud is not
    // asked.
    assert_eq!(line(&mut x, "auth:alice:example.org:wrong"), "0");
    assert_eq!(line(&mut x, "setpass:alice:example.org:x"), "0");
    assert_eq!(line(&mut x, "isuser:bob:example.org"), "1");
    nc.fault("http500");
    assert_eq!(line(&mut x, "auth:bob:example.org:bob-pw"), "0");
    let (status, body) = get(&addr, "/health");
    assert_eq!((status, body.as_str()), (503, "back end unreachable\n"));
    nc.fault("none");
    assert_eq!(line(&mut x, "auth:bob:example.org:bob-pw"), "1");
    assert_eq!(get(&addr, "/health").0, 200);

    let (status, text) = get(&addr, "/metrics");
    assert_eq!(status, 200);
    assert!(text.ends_with("# EOF\n"), "{text}");
    let s = samples(&text);
    let at = |k: &str| s.get(k).copied().unwrap_or(0.0);
    assert_eq!(at(&requests("generic", "auth", "success")), 2.0, "{text}");
    assert_eq!(at(&requests("generic", "auth", "rejected")), 2.0);
    assert_eq!(
        at("xcauth_guard_refusals_total{reason=\"known_wrong\"}"),
        1.0
    );
    assert_eq!(at(&requests("generic", "auth", "unavailable")), 1.0);
    assert_eq!(at(&requests("generic", "invalid", "invalid")), 1.0);
    assert_eq!(at(&requests("generic", "isuser", "success")), 1.0);
    let auth_errors: f64 = s
        .iter()
        .filter(|(k, _)| k.starts_with("xcauth_backend_errors_total{operation=\"auth\""))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(auth_errors, 1.0, "{text}");
    assert_eq!(
        at("xcauth_backend_request_duration_seconds_count{operation=\"auth\"}"),
        4.0
    );
    assert_eq!(
        at("xcauth_backend_request_duration_seconds_count{operation=\"isuser\"}"),
        1.0
    );
    x.finish();
}

#[test]
fn misbehaving_metrics_clients_are_bounded() {
    let nc = StandIn::start();
    let mut x = Xcauth::start("generic", &nc.url, &["--metrics", "127.0.0.1:0"]);
    let addr = metrics_addr(&x);
    // Ok: the server closed the connection (within the read timeout).
    let read_all = |s: &mut TcpStream| {
        let mut out = Vec::new();
        s.read_to_end(&mut out)
            .map(|_| String::from_utf8_lossy(&out).into_owned())
    };

    // Slowloris: half a request head, then silence; and more of them than
    // the connection limit. Each is closed within the header timeout.
    let started = Instant::now();
    let mut slow: Vec<TcpStream> = (0..10)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).expect("connect");
            s.set_read_timeout(Some(T)).ok();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                .expect("write");
            s
        })
        .collect();
    // A well-behaved scrape behind them is answered once slots free up.
    assert_eq!(get(&addr, "/health").0, 200);
    for s in &mut slow {
        let answer = read_all(s).expect("a slow client is disconnected");
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
            "{answer}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "slow clients held for {:?}",
        started.elapsed()
    );

    // A request head far over the limit is refused, not buffered.
    let mut huge = TcpStream::connect(&addr).expect("connect");
    huge.set_read_timeout(Some(T)).ok();
    let _ = huge.write_all(b"GET /metrics HTTP/1.1\r\nX-Pad: ");
    let _ = huge.write_all(&vec![b'a'; 1 << 20]);
    // 431, or a reset: the server stopped reading with data unread.
    match read_all(&mut huge) {
        Ok(answer) => assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
            "{answer}"
        ),
        Err(e) => assert_ne!(e.kind(), std::io::ErrorKind::WouldBlock, "not closed: {e}"),
    }

    // Still serving, and so is the protocol.
    assert_eq!(get(&addr, "/metrics").0, 200);
    assert_eq!(get(&addr, "/nothing-here").0, 404);
    assert_eq!(line(&mut x, "auth:alice:example.org:alice-pw"), "1");
    x.finish();
}

#[test]
fn a_non_loopback_metrics_address_is_refused_with_the_reason() {
    let out = Command::new(xcauth_bin())
        .args(["-t", "generic", "-u", "http://127.0.0.1:9/x", "-s", "x"])
        .args(["--metrics", "0.0.0.0:9155", "-l", "/nonexistent"])
        .output()
        .expect("run xcauth");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a loopback address"), "{err}");
    assert!(err.contains("metrics-allow-remote"), "{err}");
}

#[test]
fn open_connections_over_a_unix_socket_metrics_listener() {
    let nc = StandIn::start();
    let log_dir = tempfile::tempdir().expect("log dir");
    let sock_dir = tempfile::tempdir().expect("socket dir");
    let metrics = sock_dir.path().join("metrics");
    let mut cmd = Served::command(&nc.url, log_dir.path());
    cmd.args(["--listen", "generic=127.0.0.1:0", "--metrics"])
        .arg(format!("unix:{}", metrics.display()))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let served = Served::spawn(cmd, log_dir);
    let (listen, logs) = poll(T, || {
        let logs = served.logs();
        let addr = logs
            .lines()
            .filter_map(|l| l.split_once("listening on "))
            .filter_map(|(_, rest)| rest.split_once(" ("))
            .map(|(addr, _)| addr.to_owned())
            .next()?;
        logs.contains("metrics at unix:").then_some((addr, logs))
    })
    .unwrap_or_else(|| panic!("not started:\n{}", served.logs()));
    assert!(logs.contains(&metrics.display().to_string()), "{logs}");
    let scrape = || {
        let mut s = std::os::unix::net::UnixStream::connect(&metrics).expect("connect");
        s.set_read_timeout(Some(T)).ok();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("write");
        let mut response = String::new();
        s.read_to_string(&mut response).expect("read");
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        samples(&response)
    };
    let open = "xcauth_open_connections{protocol=\"generic\"}";
    let accepted = "xcauth_connections_total{protocol=\"generic\"}";
    let mut client = Conn::tcp(&listen);
    client.send(b"isuser:alice:example.org\n");
    assert_eq!(client.line(), "1\n");
    let during = scrape();
    assert_eq!(during.get(open), Some(&1.0));
    assert_eq!(during.get(accepted), Some(&1.0));
    assert_eq!(
        during.get(&requests("generic", "isuser", "success")),
        Some(&1.0)
    );
    drop(client);
    // The server notices the close on its next read: poll.
    let closed = poll(T, || (scrape().get(open) == Some(&0.0)).then_some(()));
    assert!(
        closed.is_some(),
        "the connection stayed open in the metrics"
    );
}

/// `xcauth stats --db DB [extra]`: its standard output.
fn stats(db: &Path, extra: &[&str]) -> String {
    let out = Command::new(xcauth_bin())
        .arg("stats")
        .arg("--db")
        .arg(db)
        .args(extra)
        .env("XCAUTH_CONFIG_FILE", "/dev/null")
        .output()
        .expect("run xcauth stats");
    assert!(out.status.success(), "{:?}", out);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The LIVE and ALL columns of `series` in the table, if listed.
fn row(table: &str, series: &str) -> Option<(f64, f64)> {
    table.lines().find_map(|l| {
        let mut fields = l.split_whitespace();
        (fields.next()? == series).then(|| {
            let live = fields.next()?.parse().ok()?;
            let all = fields.next()?.parse().ok()?;
            Some((live, all))
        })?
    })
}

#[test]
fn stats_sums_two_stdin_processes_sharing_one_database() {
    let nc = StandIn::start();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("xcauth.sqlite3");
    let db_arg = db.to_string_lossy().into_owned();
    let common = [
        "--cache-storage",
        "db",
        "--cache-bcrypt-rounds",
        "4",
        "--db",
        db_arg.as_str(),
        "--stats-interval",
        "1s",
    ];
    let mut generic = Xcauth::start("generic", &nc.url, &common);
    assert_eq!(line(&mut generic, "auth:alice:example.org:alice-pw"), "1");
    assert_eq!(line(&mut generic, "auth:alice:example.org:wrong"), "0");

    // The second helper: every cache entry is stale at once, so during the
    // outage alice gets in from the first helper's cache entry.
    let mut args = common.to_vec();
    args.extend(["--cache-query-ttl", "0"]);
    let mut ejabberd = Xcauth::start("ejabberd", &nc.url, &args);
    // The first helper's cache write follows its answer: wait until it is
    // in the file (the cache listing shows it).
    let cached = poll(T, || {
        let out = Command::new(xcauth_bin())
            .args(["cache", "list", "--db"])
            .arg(&db)
            .env("XCAUTH_CONFIG_FILE", "/dev/null")
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .contains("alice@example.org")
            .then_some(())
    });
    assert!(cached.is_some(), "alice's login was not cached");
    nc.fault("http500");
    ejabberd.send(&ejabberd_frame("auth:alice:example.org:alice-pw"));
    assert_eq!(ejabberd.read_exact(4, T), YES);
    nc.fault("none");
    ejabberd.send(&ejabberd_frame("isuser:bob:example.org"));
    assert_eq!(ejabberd.read_exact(4, T), YES);

    let success = "xcauth_requests_total{protocol=\"generic\",request=\"auth\",result=\"success\"}";
    let ejabberd_success =
        "xcauth_requests_total{protocol=\"ejabberd\",request=\"auth\",result=\"success\"}";
    let stale = "xcauth_cache_lookups_total{result=\"stale\"}";
    // Both helpers write every second: poll until both rows show.
    let table = poll(T, || {
        let table = stats(&db, &[]);
        (table.starts_with("2 live processes")
            && row(&table, ejabberd_success) == Some((1.0, 1.0))
            && row(&table, success) == Some((1.0, 1.0)))
        .then_some(table)
    })
    .unwrap_or_else(|| {
        panic!(
            "the live sums never showed both helpers:\n{}",
            stats(&db, &[])
        )
    });
    assert_eq!(row(&table, stale), Some((1.0, 1.0)), "{table}");

    // The first helper exits: its totals stay in "all", not in "live".
    let (_, ok) = generic.finish();
    assert!(ok);
    let table = stats(&db, &[]);
    assert!(table.starts_with("1 live process;"), "{table}");
    assert_eq!(row(&table, success), Some((0.0, 1.0)), "{table}");
    assert_eq!(row(&table, ejabberd_success), Some((1.0, 1.0)), "{table}");
    let rejected =
        "xcauth_requests_total{protocol=\"generic\",request=\"auth\",result=\"rejected\"}";
    assert_eq!(row(&table, rejected), Some((0.0, 1.0)), "{table}");

    let prom = stats(&db, &["--format", "prometheus"]);
    assert!(
        prom.contains("# TYPE xcauth_requests_total counter\n"),
        "{prom}"
    );
    assert!(prom.contains(&format!("{success} 1\n")), "{prom}");
    assert!(prom.contains(&format!("{ejabberd_success} 1\n")), "{prom}");
    // The bcrypt pool's numbers: the first helper hashed alice's password
    // for the cache (a write), the second checked it during the outage (a
    // login check); neither dropped a write.
    for priority in ["write", "login"] {
        let count = format!("xcauth_bcrypt_wait_seconds_count{{priority=\"{priority}\"}} ");
        let seen = prom
            .lines()
            .find_map(|l| l.strip_prefix(count.as_str()))
            .and_then(|v| v.parse::<f64>().ok());
        assert!(seen.is_some_and(|n| n >= 1.0), "{priority}: {prom}");
    }
    assert!(
        prom.contains("xcauth_bcrypt_dropped_writes_total 0\n"),
        "{prom}"
    );

    ejabberd.finish();
    // Two gone, none live; one folded row holds them.
    let table = stats(&db, &[]);
    assert!(table.starts_with("0 live processes"), "{table}");
    assert_eq!(row(&table, ejabberd_success), Some((0.0, 1.0)), "{table}");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let rows: i64 = conn
        .query_row("SELECT COUNT(*) FROM processtotals", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 1);
}
