//! End to end: client-chosen text never splits or forges a line in the
//! real binary's log file, whatever protocol it came in on.

mod common;

use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(10);

/// Every line of `logs` is one event: it starts with the timestamp the
/// logger writes (`2026-12-01T11:14:27...`), so no client text began it.
fn assert_one_event_per_line(logs: &str) {
    assert!(!logs.is_empty());
    for line in logs.lines() {
        let b = line.as_bytes();
        let stamped = b.len() > 20
            && b[..4].iter().all(u8::is_ascii_digit)
            && b[4] == b'-'
            && b[7] == b'-'
            && b[10] == b'T';
        assert!(
            stamped,
            "a line not written by the logger: {line:?}\n{logs}"
        );
        assert!(!line.contains('\r') && !line.contains('\u{1b}'), "{line:?}");
    }
}

#[test]
fn control_characters_in_ejabberd_frames_stay_escaped() {
    let nc = StandIn::start();
    let mut x = Xcauth::start("ejabberd", &nc.url, &[]);
    for frame in [
        "auth:bob\nFORGED WARN x:example.org:pw",
        "auth:bob:example.org\r\nFORGED:pw",
        "isuser:al\u{1b}[2Kice:example.org",
        "roster:alice\nFORGED:example.org",
        "nosuch\nFORGED:example.org",
        "\nFORGED",
    ] {
        x.send(&ejabberd_frame(frame));
        assert_eq!(x.read_exact(4, T), NO, "{frame:?}");
    }
    // A Unicode line separator is refused like a control character, and
    // its log line does not split either.
    x.send(&ejabberd_frame("isuser:alice:example.org\u{2028}FORGED"));
    assert_eq!(x.read_exact(4, T), NO);
    x.send(&ejabberd_frame("auth:alice:example.org:alice-pw"));
    assert_eq!(x.read_exact(4, T), YES);
    let (_, ok) = x.finish();
    assert!(ok);
    let logs = x.logs();
    assert_one_event_per_line(&logs);
    assert!(
        logs.contains("refused request: auth: control characters"),
        "{logs}"
    );
}

#[test]
fn control_characters_in_saslauthd_fields_stay_escaped() {
    let nc = StandIn::start();
    let mut x = Xcauth::start("saslauthd", &nc.url, &[]);
    let no = "NO xcauth authentication failure";
    for fields in [
        [&b"alice\nFORGED"[..], b"alice-pw", b"imap", b"example.org"],
        [b"alice", b"alice-pw", b"imap", b"example.org\nFORGED"],
        [b"alice@example.org\nFORGED", b"alice-pw", b"smtp", b""],
        [b"alice\xff\n", b"alice-pw", b"smtp", b"example.org"],
    ] {
        x.send(&sasl_request(&fields));
        assert_eq!(sasl_answer(&mut x), no, "{fields:?}");
    }
    // SERVICE is only logged, so a login with a forged one still succeeds
    // and the service is logged escaped.
    x.send(&sasl_request(&[
        b"alice",
        b"alice-pw",
        b"imap\nFORGED WARN guard: refused address 10.9.9.9",
        b"example.org",
    ]));
    assert_eq!(sasl_answer(&mut x), "OK success");
    x.send(&sasl_request(&[
        b"alice",
        b"alice-pw",
        b"smtp",
        b"example.org",
        b"192.0.2.1\nFORGED",
    ]));
    sasl_answer(&mut x);
    let (_, ok) = x.finish();
    assert!(ok);
    let logs = x.logs();
    assert_one_event_per_line(&logs);
    assert!(
        logs.contains(r#"for service "imap\nFORGED WARN guard: refused address 10.9.9.9""#),
        "{logs}"
    );
}

#[test]
fn control_characters_in_postfix_lookups_stay_escaped() {
    let nc = StandIn::start();
    let mut x = Xcauth::start("postfix", &nc.url, &[]);
    for line in [
        &b"get alice%0AFORGED@example.org\n"[..],
        b"get alice@example.org%0D%0AFORGED\n",
        b"get al\x1bice@example.org\n",
        b"get alice@exa\rmple.org\n",
        b"FORGED\x07 alice@example.org\n",
        b"get alice%E2%80%A8FORGED@example.org\n",
    ] {
        x.send(line);
        assert!(x.read_line(T).starts_with("500 "), "{line:?}");
    }
    let (_, ok) = x.finish();
    assert!(ok);
    let logs = x.logs();
    assert_one_event_per_line(&logs);
}
