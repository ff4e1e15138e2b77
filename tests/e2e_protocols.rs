//! End to end: the real `xcauth` binary on standard input/output against
//! the stand-in Nextcloud over loopback HTTP, one test per protocol.

mod common;

use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(10);

#[test]
fn generic_protocol_answers_line_by_line() {
    let nc = StandIn::start();
    let mut x = Xcauth::start("generic", &nc.url, &[]);
    x.send(b"auth:alice:example.org:alice-pw\n");
    assert_eq!(x.read_line(T), "1\n");
    x.send(b"auth:alice:example.org:wrong\n");
    assert_eq!(x.read_line(T), "0\n");
    // The password runs to the end of the line and may contain ':'.
    x.send(b"auth:colette:example.org:pa:ss:w0rd\r\n");
    assert_eq!(x.read_line(T), "1\n");
    x.send(b"isuser:bob:example.org\nisuser:nobody:example.org\n");
    assert_eq!(x.read_line(T), "1\n");
    assert_eq!(x.read_line(T), "0\n");
    for refused in [
        "setpass:alice:example.org:new",
        "tryregister:eve:example.org:pw",
        "removeuser:alice:example.org",
        "certauth:alice:example.org",
        "whatever",
        "auth:alice",
    ] {
        x.send(format!("{refused}\n").as_bytes());
        assert_eq!(x.read_line(T), "0\n", "{refused}");
    }
    // Non-UTF-8 and over-long lines are refused; the stream goes on.
    x.send(b"auth:alice:example.org:\xff\xfe\n");
    assert_eq!(x.read_line(T), "0\n");
    let long = format!("auth:alice:example.org:{}\n", "x".repeat(100_000));
    x.send(long.as_bytes());
    assert_eq!(x.read_line(T), "0\n");
    x.send(b"roster:alice:example.org\n");
    let roster: serde_json::Value =
        serde_json::from_str(x.read_line(T).trim_end()).expect("roster JSON on one line");
    assert_eq!(roster["bob"]["name"], "Bob Builder");
    x.send(b"auth:alice:example.org:alice-pw\nquit\nauth:alice:example.org:alice-pw\n");
    assert_eq!(x.read_line(T), "1\n");
    let (rest, ok) = x.finish();
    assert!(rest.is_empty(), "nothing answered after quit");
    assert!(ok);
}

#[test]
fn ejabberd_protocol_frames() {
    let nc = StandIn::start();
    let mut x = Xcauth::start("ejabberd", &nc.url, &[]);
    x.send(&ejabberd_frame("auth:alice:example.org:alice-pw"));
    assert_eq!(x.read_exact(4, T), YES);
    x.send(&ejabberd_frame("auth:alice:example.org:nope"));
    assert_eq!(x.read_exact(4, T), NO);
    x.send(&ejabberd_frame("isuser:bob:example.org"));
    assert_eq!(x.read_exact(4, T), YES);
    for refused in [
        "setpass:alice:example.org:x",
        "tryregister:a:example.org:x",
        "removeuser:alice:example.org",
        "removeuser3:alice:example.org:alice-pw",
        "certauth:alice:example.org",
        "roster:alice:example.org",
    ] {
        x.send(&ejabberd_frame(refused));
        assert_eq!(x.read_exact(4, T), NO, "{refused}");
    }
    // Pipelined: three frames in one write, answered in order.
    let mut batch = ejabberd_frame("auth:alice:example.org:nope");
    batch.extend(ejabberd_frame("auth:colette:example.org:pa:ss:w0rd"));
    batch.extend(ejabberd_frame("isuser:nobody:example.org"));
    x.send(&batch);
    assert_eq!(x.read_exact(12, T), [NO, YES, NO].concat());
    // Length 0 ends the stream even if more follows.
    let mut end = vec![0, 0];
    end.extend(ejabberd_frame("auth:alice:example.org:alice-pw"));
    x.send(&end);
    let (rest, ok) = x.finish();
    assert!(rest.is_empty());
    assert!(ok);
}

#[test]
fn ejabberd_eof_inside_a_frame_ends_quietly() {
    let nc = StandIn::start();
    let mut x = Xcauth::start("ejabberd", &nc.url, &[]);
    x.send(&[0, 40, b'a', b'u']);
    let (rest, ok) = x.finish();
    assert!(rest.is_empty());
    assert!(ok);
}

#[test]
fn saslauthd_protocol_four_and_five_fields() {
    let nc = StandIn::start();
    let mut x = Xcauth::start("saslauthd", &nc.url, &[]);
    x.send(&sasl_request(&[
        b"alice",
        b"alice-pw",
        b"imap",
        b"example.org",
    ]));
    assert_eq!(sasl_answer(&mut x), "OK success");
    x.send(&sasl_request(&[b"alice", b"bad", b"imap", b"example.org"]));
    assert_eq!(sasl_answer(&mut x), "NO xcauth authentication failure");
    // Newer Cyrus: a fifth field with the client address.
    x.send(&sasl_request(&[
        b"alice",
        b"alice-pw",
        b"smtp",
        b"example.org",
        b"192.0.2.1;1234",
    ]));
    assert_eq!(sasl_answer(&mut x), "OK success");
    // Login as user@domain with an empty realm.
    x.send(&sasl_request(&[
        b"bob@example.org",
        b"bob-pw",
        b"smtp",
        b"",
    ]));
    assert_eq!(sasl_answer(&mut x), "OK success");
    // Empty password, empty login, over-long field: NO without asking.
    let before = nc.requests();
    x.send(&sasl_request(&[b"alice", b"", b"imap", b"example.org"]));
    assert_eq!(sasl_answer(&mut x), "NO xcauth authentication failure");
    x.send(&sasl_request(&[b"", b"pw", b"imap", b"example.org"]));
    assert_eq!(sasl_answer(&mut x), "NO xcauth authentication failure");
    let long = vec![b'a'; 300];
    x.send(&sasl_request(&[b"alice", &long, b"imap", b"example.org"]));
    assert_eq!(sasl_answer(&mut x), "NO xcauth authentication failure");
    assert_eq!(
        nc.requests(),
        before,
        "refused requests never reach the back end"
    );
    let (_, ok) = x.finish();
    assert!(ok);
    // The SERVICE field is logged (at debug level), the password never.
    let logs = x.logs();
    assert!(
        logs.contains(r#"alice@example.org for service "imap""#),
        "{logs}"
    );
    assert!(
        logs.contains(r#"bob@example.org for service "smtp""#),
        "{logs}"
    );
    assert!(!logs.contains("alice-pw"));
}

#[test]
fn postfix_protocol_lookups() {
    let nc = StandIn::start();
    let mut x = Xcauth::start("postfix", &nc.url, &["--recipient-delimiter", "+"]);
    x.send(b"get alice@example.org\n");
    assert!(x.read_line(T).starts_with("200 "));
    x.send(b"get nobody@example.org\n");
    assert!(x.read_line(T).starts_with("500 "));
    // %XX-encoded key, either hex case; an address extension is stripped.
    x.send(
        b"get alice%40example.org\nget alice%2bnews@example.org\nget alice%2Bnews@example.org\n",
    );
    for _ in 0..3 {
        assert!(x.read_line(T).starts_with("200 "));
    }
    x.send(b"get not-an-address\nput a b\n");
    assert!(x.read_line(T).starts_with("500 "));
    assert!(x.read_line(T).starts_with("500 "));
    // Back end down: temporary failure, never "not found".
    nc.fault("http500");
    x.send(b"get alice@example.org\n");
    assert!(x.read_line(T).starts_with("400 "));
    nc.fault("none");
    x.send(b"get alice@example.org\nquit\n");
    assert!(x.read_line(T).starts_with("200 "));
    let (rest, ok) = x.finish();
    assert!(rest.is_empty());
    assert!(ok);
}

#[test]
fn international_address_is_decoded() {
    let nc = StandIn::start();
    let mut x = Xcauth::start("postfix", &nc.url, &[]);
    // Postfix sends non-ASCII bytes %XX-encoded; the original refused them.
    x.send(b"get zo%C3%AB@example.org\n");
    let line = x.read_line(T);
    assert!(line.starts_with("200 "), "{line}");
    x.send(b"get zo%c3%abx@example.org\n");
    let line = x.read_line(T);
    assert!(line.starts_with("500 "), "{line}");
}

#[test]
fn dovecot_protocol_three_answers() {
    let nc = StandIn::start();
    let mut x = Xcauth::start("dovecot", &nc.url, &["--cache-storage", "memory"]);
    x.send(b"auth\talice\texample.org\talice-pw\timap\t192.0.2.7\n");
    assert_eq!(x.read_line(T), "OK\n");
    x.send(b"auth\talice\texample.org\twrong\tpop3\t\n");
    assert_eq!(x.read_line(T), "NO\n");
    // Escaped: the password is "pa:ss:w0rd" for colette; a TAB or line
    // break inside a password arrives whole and is simply wrong here.
    x.send(b"auth\tcolette\texample.org\tpa:ss:w0rd\tsmtp\t\n");
    assert_eq!(x.read_line(T), "OK\n");
    x.send(b"auth\talice\texample.org\talice-pw\\n\\t\timap\t\n");
    assert_eq!(x.read_line(T), "NO\n");
    x.send(b"isuser\tbob\texample.org\nisuser\tnobody\texample.org\n");
    assert_eq!(x.read_line(T), "OK\n");
    assert_eq!(x.read_line(T), "NO\n");
    // Refused, and the stream goes on: bad escapes, a client that is not
    // an address, roster (not carried), an over-long line.
    for refused in [
        &b"auth\talice\texample.org\talice-pw\\x\timap\t\n"[..],
        b"auth\talice\texample.org\talice-pw\timap\tlocalhost\n",
        b"roster\talice\texample.org\n",
        b"auth:alice:example.org:alice-pw\n",
    ] {
        x.send(refused);
        assert_eq!(x.read_line(T), "NO\n", "{refused:?}");
    }
    let long = format!(
        "auth\talice\texample.org\t{}\timap\t\n",
        "x".repeat(100_000)
    );
    x.send(long.as_bytes());
    assert_eq!(x.read_line(T), "NO\n");
    // Nextcloud down: a cached login still works, anyone else is a
    // temporary failure, and so is the existence of a user the cache does
    // not know; one it knows exists.
    nc.fault("http500");
    x.send(b"auth\talice\texample.org\talice-pw\timap\t\n");
    assert_eq!(x.read_line(T), "OK\n");
    x.send(b"auth\tbob\texample.org\tbob-pw\timap\t\n");
    assert_eq!(x.read_line(T), "TEMPFAIL\n");
    x.send(b"isuser\tnobody\texample.org\nisuser\talice\texample.org\n");
    assert_eq!(x.read_line(T), "TEMPFAIL\n");
    assert_eq!(x.read_line(T), "OK\n");
    nc.fault("none");
    x.send(b"quit\nauth\talice\texample.org\talice-pw\timap\t\n");
    let (rest, ok) = x.finish();
    assert!(rest.is_empty(), "nothing answered after quit");
    assert!(ok);
    let logs = x.logs();
    assert!(!logs.contains("alice-pw"), "{logs}");
    assert!(logs.contains(r#"for service "imap""#), "{logs}");
}
