//! End to end: the failure guard in front of the stand-in Nextcloud, with
//! the real binary: wrong passwords retried, guessing, client addresses.

mod common;

use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(10);

fn line(x: &mut Xcauth, text: &str) -> String {
    x.send(format!("{text}\n").as_bytes());
    x.read_line(T).trim_end().to_owned()
}

#[test]
fn a_phone_retrying_an_old_password_costs_nextcloud_one_request() {
    let nc = StandIn::start();
    let mut x = Xcauth::start("generic", &nc.url, &[]);
    for _ in 0..20 {
        assert_eq!(line(&mut x, "auth:alice:example.org:old-password"), "0");
    }
    assert_eq!(nc.requests(), 1, "one request per negative-ttl");
    // The right password is asked about and works.
    assert_eq!(line(&mut x, "auth:alice:example.org:alice-pw"), "1");
    assert_eq!(nc.requests(), 2);
    x.finish();
    let logs = x.logs();
    assert!(logs.contains("not asked again"), "{logs}");
    assert!(!logs.contains("old-password"));
}

#[test]
fn guessing_is_refused_unasked_and_logged_once_for_fail2ban() {
    let nc = StandIn::start();
    let mut x = Xcauth::start(
        "generic",
        &nc.url,
        &["--guard-jid-failures", "3", "--cache-storage", "memory"],
    );
    // The owner logs in once: the cache knows the password.
    assert_eq!(line(&mut x, "auth:bob:example.org:bob-pw"), "1");
    for i in 0..3 {
        assert_eq!(line(&mut x, &format!("auth:bob:example.org:guess{i}")), "0");
    }
    let asked = nc.requests();
    for i in 3..10 {
        assert_eq!(line(&mut x, &format!("auth:bob:example.org:guess{i}")), "0");
    }
    assert_eq!(nc.requests(), asked, "no guess reaches Nextcloud");
    // The owner's cached password still works: guessing cannot lock them out.
    let answer = poll(T, || {
        (line(&mut x, "auth:bob:example.org:bob-pw") == "1").then_some(())
    });
    assert!(answer.is_some());
    x.finish();
    // xcauth.log only (warnings are in xcauth.err too); repeats are debug.
    let logs = std::fs::read_to_string(x.log_dir.path().join("xcauth.log")).expect("log");
    let refusals: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("WARN guard: refused"))
        .collect();
    assert_eq!(refusals.len(), 1, "once per window: {logs}");
    assert!(
        refusals[0].contains("guard: refused address unknown for bob@example.org:"),
        "{logs}"
    );
}

#[test]
fn saslauthd_client_addresses_are_limited_unless_allowlisted() {
    let nc = StandIn::start();
    let mut x = Xcauth::start(
        "saslauthd",
        &nc.url,
        &[
            "--saslauthd-fields",
            "5",
            "--guard-address-failures",
            "3",
            "--guard-allowlist",
            "127.0.0.1",
        ],
    );
    let mut ask = |user: &str, pw: &str, addr: &str| {
        x.send(&sasl_request(&[
            user.as_bytes(),
            pw.as_bytes(),
            b"smtp",
            b"example.org",
            addr.as_bytes(),
        ]));
        sasl_answer(&mut x)
    };
    for u in ["u1", "u2", "u3"] {
        assert!(ask(u, "x", "192.0.2.9;4711").starts_with("NO"));
        assert!(ask(u, "x", "127.0.0.1;4711").starts_with("NO"));
    }
    let asked = nc.requests();
    // The address is closed, even for a right password...
    assert!(ask("alice", "alice-pw", "192.0.2.9;4712").starts_with("NO"));
    assert_eq!(nc.requests(), asked);
    // ...but not the allowlisted one, nor another address.
    assert_eq!(ask("alice", "alice-pw", "127.0.0.1;4713"), "OK success");
    assert_eq!(ask("alice", "alice-pw", "198.51.100.1;1"), "OK success");
    x.finish();
    assert!(
        x.logs()
            .contains("guard: refused address 192.0.2.9 for alice@example.org"),
        "{}",
        x.logs()
    );
}

#[test]
fn zero_switches_the_guard_off() {
    let nc = StandIn::start();
    let mut x = Xcauth::start(
        "generic",
        &nc.url,
        &["--negative-ttl", "0", "--guard-jid-failures", "0"],
    );
    for _ in 0..12 {
        assert_eq!(line(&mut x, "auth:alice:example.org:same-wrong"), "0");
    }
    x.finish();
    assert_eq!(nc.requests(), 12);
}
