//! End to end: tenants stay apart. A domain with its own row (`xcauth
//! domain add example.org --url A`) is served by A whatever spelling a
//! request uses (`EXAMPLE.ORG`, `Example.org`, `example.org.`), and a
//! spelling that is not a host name (`example.org` + U+200B) is refused
//! without asking anybody; the global back end B, which also knows the
//! users, never hears of example.org. The real binary, a real SQLite file
//! and two stand-ins, over every protocol that names a domain and the
//! one-shot `-I`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;

const T: Duration = Duration::from_secs(10);
const ZWSP: &str = "\u{200B}";

/// Stand-in A (the row's back end), stand-in B (the global url) and a
/// database whose only row sends example.org to A.
struct Tenants {
    a: StandIn,
    b: StandIn,
    _dir: tempfile::TempDir,
    db: PathBuf,
}

impl Tenants {
    fn new() -> Tenants {
        let a = StandIn::start();
        let b = StandIn::start();
        let dir = tempfile::tempdir().expect("dir");
        let db = dir.path().join("xcauth.sqlite3");
        let out = admin(
            &db,
            &["domain", "add", "example.org", "--url", &a.url],
            SECRET,
        );
        assert!(out.status.success(), "domain add: {out:?}");
        Tenants {
            a,
            b,
            _dir: dir,
            db,
        }
    }

    /// `xcauth -t PROTO` with B as the global url and the database; no
    /// cache, so every answer comes from a back end.
    fn start(&self, proto: &str) -> Xcauth {
        let db = self.db.to_string_lossy().into_owned();
        Xcauth::start(
            proto,
            &self.b.url,
            &["--db", &db, "--cache-storage", "none"],
        )
    }

    /// Requests each stand-in has had so far: (A, B).
    fn counts(&self) -> (u64, u64) {
        (self.a.requests(), self.b.requests())
    }

    /// Sends one request with `ask`, checks the answer with `answered`,
    /// and checks who was asked: A once for a valid spelling, nobody for an
    /// invalid one, B never.
    fn check(&self, what: &str, valid: bool, ask: impl FnOnce() -> bool) {
        let (a, b) = self.counts();
        assert_eq!(ask(), valid, "{what}: answer");
        let (a2, b2) = self.counts();
        assert_eq!(b2, b, "{what}: the global back end was asked");
        let expected = if valid { a + 1 } else { a };
        assert_eq!(a2, expected, "{what}: requests to the domain's back end");
        if valid {
            let last: Value =
                serde_json::from_str(&http(&self.a.addr, "GET", "/_standin/stats", ""))
                    .expect("stats");
            assert_eq!(last["last"]["domain"], "example.org", "{what}");
        }
    }
}

/// Runs `xcauth --db DB ARGS` with `stdin` on standard input.
fn admin(db: &Path, args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write as _;
    let mut child = Command::new(xcauth_bin())
        .arg("--db")
        .arg(db)
        .args(args)
        .args(["--secret-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("xcauth domain");
    let mut input = child.stdin.take().expect("stdin");
    writeln!(input, "{stdin}").expect("secret");
    drop(input);
    child.wait_with_output().expect("wait")
}

/// Spellings of example.org: (domain, valid).
fn variants() -> Vec<(String, bool)> {
    vec![
        ("example.org".into(), true),
        ("EXAMPLE.ORG".into(), true),
        ("Example.org".into(), true),
        ("example.org.".into(), true),
        (format!("example.org{ZWSP}"), false),
        (format!("exam{ZWSP}ple.org"), false),
        ("example.org\u{202E}".into(), false),
        ("example.org\u{AD}".into(), false),
        ("example.org..".into(), false),
    ]
}

/// The log says what was refused, escaped, and never the password or
/// the invisible character itself.
fn assert_refusals_logged(x: &Xcauth) {
    let logs = x.logs();
    assert!(
        logs.contains(r#"refused request: invalid domain "example.org\u{200b}""#),
        "{logs}"
    );
    assert!(!logs.contains(ZWSP) && !logs.contains('\u{202E}'), "{logs}");
    assert!(!logs.contains("alice-pw"), "{logs}");
}

#[test]
fn generic_auth_and_isuser_use_the_row_for_every_spelling() {
    let t = Tenants::new();
    let mut x = t.start("generic");
    let mut line = |text: String| {
        x.send(format!("{text}\n").as_bytes());
        x.read_line(T).trim_end().to_owned()
    };
    for (domain, valid) in variants() {
        let auth = format!("auth:alice:{domain}:alice-pw");
        t.check(&auth, valid, || line(auth.clone()) == "1");
        let isuser = format!("isuser:alice:{domain}");
        t.check(&isuser, valid, || line(isuser.clone()) == "1");
    }
    let (_, ok) = x.finish();
    assert!(ok);
    assert_refusals_logged(&x);
}

#[test]
fn ejabberd_auth_and_isuser_use_the_row_for_every_spelling() {
    let t = Tenants::new();
    let mut x = t.start("ejabberd");
    for (domain, valid) in variants() {
        for request in [
            format!("auth:alice:{domain}:alice-pw"),
            format!("isuser:alice:{domain}"),
        ] {
            t.check(&request, valid, || {
                x.send(&ejabberd_frame(&request));
                x.read_exact(4, T) == YES
            });
        }
    }
    x.finish();
    assert_refusals_logged(&x);
}

/// saslauthd: the domain from the login when the realm is empty, else the
/// realm.
#[test]
fn saslauthd_logins_with_and_without_realm_use_the_row() {
    let t = Tenants::new();
    let mut x = t.start("saslauthd");
    for (domain, valid) in variants() {
        let login = format!("alice@{domain}");
        for (user, realm) in [(login.as_str(), ""), ("alice", domain.as_str())] {
            let what = format!("saslauthd {user:?} realm {realm:?}");
            t.check(&what, valid, || {
                x.send(&sasl_request(&[
                    user.as_bytes(),
                    b"alice-pw",
                    b"imap",
                    realm.as_bytes(),
                ]));
                sasl_answer(&mut x) == "OK success"
            });
        }
    }
    x.finish();
    assert_refusals_logged(&x);
}

/// Postfix mailbox lookups: `200` from A for a valid spelling, `500` and
/// nobody asked for an invalid one.
#[test]
fn postfix_lookups_use_the_row_for_every_spelling() {
    let t = Tenants::new();
    let mut x = t.start("postfix");
    for (domain, valid) in variants() {
        let what = format!("get alice@{domain}");
        t.check(&what, valid, || {
            x.send(format!("{what}\n").as_bytes());
            let answer = x.read_line(T);
            assert!(valid || answer.starts_with("500 "), "{what}: {answer}");
            answer.starts_with("200 ")
        });
    }
    x.finish();
    assert_refusals_logged(&x);
}

/// The one-shot query `-I` goes through the same canonical form (its log
/// goes to standard error).
#[test]
fn one_shot_isuser_uses_the_row() {
    let t = Tenants::new();
    let mut logs = String::new();
    for (domain, valid) in variants() {
        t.check(&format!("-I alice {domain}"), valid, || {
            let out = Command::new(xcauth_bin())
                .args(["-I", "alice", &domain, "--url", &t.b.url, "--db"])
                .arg(&t.db)
                .args(["--cache-storage", "none", "-d"])
                .env("XCAUTH_SECRET", SECRET)
                .stdin(Stdio::null())
                .output()
                .expect("xcauth -I");
            logs.push_str(&String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).trim() == "True"
        });
    }
    assert!(
        logs.contains(r#"refused request: invalid domain "example.org\u{200b}""#),
        "{logs}"
    );
    assert!(!logs.contains(ZWSP), "{logs}");
}

/// A row written by hand (or by the original) as `Example.org` serves
/// example.org too.
#[test]
fn a_row_stored_in_another_case_serves_the_domain() {
    let t = Tenants::new();
    let conn = rusqlite::Connection::open(&t.db).expect("db");
    let changed = conn
        .execute(
            "UPDATE domains SET xmppdomain = 'Example.org', authdomain = '' \
             WHERE xmppdomain = 'example.org'",
            [],
        )
        .expect("update");
    assert_eq!(changed, 1);
    drop(conn);
    let mut x = t.start("generic");
    let ask = |x: &mut Xcauth, domain: &str| {
        let auth = format!("auth:alice:{domain}:alice-pw");
        let (_, b) = t.counts();
        x.send(format!("{auth}\n").as_bytes());
        assert_eq!(x.read_line(T).trim_end(), "1", "{auth}");
        assert_eq!(t.counts().1, b, "{auth}: the global back end was asked");
    };
    ask(&mut x, "example.org");
    ask(&mut x, "EXAMPLE.ORG");

    // A second row for the same domain, stored canonically, pointing to
    // B: the service uses one of them (the canonical one: so now B
    // answers) and warns once, however often it re-reads the table.
    let conn = rusqlite::Connection::open(&t.db).expect("db");
    conn.execute(
        "INSERT INTO domains (xmppdomain, authsecret, authurl, authdomain) \
         VALUES ('example.org', ?1, ?2, '')",
        [SECRET, t.b.url.as_str()],
    )
    .expect("insert");
    drop(conn);
    for round in 1..=2 {
        let hup = Command::new("kill")
            .args(["-HUP", &x.child.0.id().to_string()])
            .status()
            .expect("kill -HUP");
        assert!(hup.success());
        // The signal is handled asynchronously: wait until xcauth says it
        // was, so the next request surely re-reads the rows.
        let seen = poll(T, || {
            let logs = std::fs::read_to_string(x.log_dir.path().join("xcauth.log")).ok()?;
            (logs.matches("SIGHUP: log files re-opened").count() >= round).then_some(())
        });
        assert!(seen.is_some(), "SIGHUP {round} handled");
        let b = t.b.requests();
        x.send(b"auth:alice:Example.ORG:alice-pw\n");
        assert_eq!(x.read_line(T).trim_end(), "1");
        assert_eq!(t.b.requests(), b + 1, "the canonical row is used");
    }
    x.finish();
    // xcauth.log (xcauth.err holds the warnings again).
    let logs = std::fs::read_to_string(x.log_dir.path().join("xcauth.log")).expect("log");
    let warning = r#"domain rows "Example.org" and "example.org" are all the domain example.org; "example.org" is used"#;
    assert_eq!(logs.matches(warning).count(), 1, "{logs}");
}
