//! End to end: every back-end fault of the stand-in Nextcloud gives the
//! failure answer (never a success), within the timeout, with a log line
//! that names the cause.

mod common;

use std::time::{Duration, Instant};

use common::*;

const T: Duration = Duration::from_secs(10);

#[test]
fn every_fault_is_a_failure_with_a_hint() {
    let nc = StandIn::start();
    let cases = [
        ("http500", "HTTP 500"),
        ("http404", "wrong API URL"),
        ("close", "connection"),
        ("nonjson", "malformed"),
        ("badshape", "malformed"),
        ("redirect", "redirect"),
        ("wrongsig", "signature mismatch"),
        ("hang", "timeout"),
    ];
    for (mode, hint) in cases {
        nc.fault(mode);
        let mut x = Xcauth::start("ejabberd", &nc.url, &[]);
        let t0 = Instant::now();
        x.send(&ejabberd_frame("auth:alice:example.org:alice-pw"));
        let answer = x.read_exact(4, T);
        let took = t0.elapsed();
        assert_eq!(answer, NO, "{mode} must not be a success");
        assert!(
            took < Duration::from_secs(5),
            "{mode} answered after {took:?}"
        );
        let (_, ok) = x.finish();
        assert!(ok);
        let logs = x.logs();
        assert!(
            logs.to_lowercase().contains(&hint.to_lowercase()),
            "{mode}: log should mention {hint:?}:\n{logs}"
        );
    }
    nc.fault("none");
    let mut x = Xcauth::start("ejabberd", &nc.url, &[]);
    x.send(&ejabberd_frame("auth:alice:example.org:alice-pw"));
    assert_eq!(
        x.read_exact(4, T),
        YES,
        "after the faults the same request succeeds"
    );
    x.finish();
}

#[test]
fn refused_connection_is_named() {
    // A port nobody listens on, held so for the whole test.
    let port = RefusingPort::new();
    let mut x = Xcauth::start("generic", &port.url(), &[]);
    x.send(b"auth:alice:example.org:alice-pw\n");
    assert_eq!(x.read_line(T), "0\n");
    x.finish();
    let logs = x.logs();
    assert!(logs.contains("connection refused"), "{logs}");
}

#[test]
fn slow_back_end_on_one_request_does_not_reorder_answers() {
    let nc = StandIn::start_with(&["--latency-ms", "300"]);
    let mut x = Xcauth::start("generic", &nc.url, &[]);
    // A token needs no back end and is ready at once, but must wait for the
    // earlier back-end answer to keep the order.
    let token = xcauth::token::make(
        SECRET.as_bytes(),
        "alice",
        "example.org",
        (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs()
            + 600) as u32,
    );
    x.send(format!("auth:alice:example.org:wrong\nauth:alice:example.org:{token}\n").as_bytes());
    assert_eq!(x.read_line(T), "0\n");
    assert_eq!(x.read_line(T), "1\n");
    x.finish();
}
