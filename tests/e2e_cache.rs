//! End to end: the cache and the domain table on the original's SQLite
//! file, several processes on one file, and bcrypt never stalling others.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(20);

fn fixture_copy(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/python-2.0.4.sqlite3");
    let dst = dir.join("xcauth.sqlite3");
    std::fs::copy(src, &dst).expect("copy fixture");
    dst
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

#[test]
fn original_database_logs_users_in_during_an_outage() {
    let dir = tempfile::tempdir().expect("dir");
    let db = fixture_copy(dir.path());
    let db_arg = db.to_str().expect("path");
    let dead = RefusingPort::new();
    let mut x = Xcauth::start(
        "generic",
        &dead.url(),
        &[
            "--db",
            db_arg,
            "--cache-storage",
            "db",
            "--cache-unreachable-ttl",
            "1000w",
        ],
    );
    for (line, want) in [
        ("auth:alice:example.org:pw-alice", "1\n"),
        ("auth:bob:example.org:pw-bob", "1\n"),
        ("auth:zoë:example.org:pw-zoë", "1\n"),
        ("auth:colon:example.org:pw-colon:a:b", "1\n"),
        ("auth:alice:example.org:pw-bob", "0\n"),
        ("auth:nobody:example.org:pw-alice", "0\n"),
        // isuser during the outage: known users yes, others no.
        ("isuser:alice:example.org", "1\n"),
        ("isuser:nobody:example.org", "0\n"),
    ] {
        x.send(format!("{line}\n").as_bytes());
        assert_eq!(x.read_line(T), want, "{line}");
    }
    x.finish();
    // What we wrote (anyauth) is still the original's text format.
    let conn = rusqlite::Connection::open(&db).expect("open");
    let any: String = conn
        .query_row(
            "SELECT anyauth FROM authcache WHERE jid = 'alice@example.org'",
            [],
            |r| r.get(0),
        )
        .expect("row");
    assert_eq!(any.len(), "2026-11-28 12:00:00".len(), "{any}");
    assert_eq!(&any[4..5], "-");
    assert_eq!(&any[10..11], " ");
}

#[test]
fn domain_rows_choose_secret_and_back_end() {
    let nc = StandIn::start();
    let dir = tempfile::tempdir().expect("dir");
    let db = fixture_copy(dir.path());
    // A row of ours pointing at the stand-in, with its own auth domain.
    let conn = rusqlite::Connection::open(&db).expect("open");
    conn.execute(
        "INSERT INTO domains (xmppdomain, authsecret, authurl, authdomain) VALUES ('xmpp.example.org', ?1, ?2, 'example.org')",
        [SECRET, nc.url.as_str()],
    )
    .expect("insert");
    drop(conn);
    let db_arg = db.to_str().expect("path");
    // The global URL is dead: only the row can make this succeed.
    let dead = RefusingPort::new();
    let mut x = Xcauth::start("generic", &dead.url(), &["--db", db_arg]);
    x.send(b"auth:alice:xmpp.example.org:alice-pw\n");
    assert_eq!(x.read_line(T), "1\n");
    let stats: serde_json::Value =
        serde_json::from_str(&http(&nc.addr, "GET", "/_standin/stats", "")).expect("stats");
    assert_eq!(stats["last"]["domain"], "example.org", "auth domain sent");
    // chat.example.net has its own secret: tokens signed with it are valid
    // there, tokens signed with the global secret are not.
    let expiry = (now() + 600) as u32;
    let net = xcauth::token::make(b"net-secret", "carl", "chat.example.net", expiry);
    let global = xcauth::token::make(SECRET.as_bytes(), "carl", "chat.example.net", expiry);
    x.send(
        format!("auth:carl:chat.example.net:{net}\nauth:carl:chat.example.net:{global}\n")
            .as_bytes(),
    );
    assert_eq!(x.read_line(T), "1\n");
    assert_eq!(x.read_line(T), "0\n");
    x.finish();
}

/// ejabberd starts a pool of helpers at once on the same file.
#[test]
fn eight_processes_share_one_new_database() {
    let nc = StandIn::start();
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("new.sqlite3");
    let db_arg = db.to_str().expect("path").to_owned();
    let users = [
        ("alice", "alice-pw"),
        ("bob", "bob-pw"),
        ("colette", "pa:ss:w0rd"),
        ("dave", "dave-pw"),
    ];
    let mut procs: Vec<Xcauth> = (0..8)
        .map(|_| {
            Xcauth::start(
                "ejabberd",
                &nc.url,
                &[
                    "--db",
                    &db_arg,
                    "--cache-storage",
                    "db",
                    "--cache-bcrypt-rounds",
                    "4",
                    // Every login asks the back end and rewrites its entry.
                    "--cache-query-ttl",
                    "0",
                ],
            )
        })
        .collect();
    for round in 0..25 {
        for (i, x) in procs.iter_mut().enumerate() {
            let (user, pw) = users[(i + round) % users.len()];
            x.send(&ejabberd_frame(&format!("auth:{user}:example.org:{pw}")));
        }
        for x in procs.iter_mut() {
            assert_eq!(x.read_exact(4, T), YES);
        }
    }
    let mut logs = String::new();
    for x in procs.iter_mut() {
        let (_, ok) = x.finish();
        assert!(ok);
        logs.push_str(&x.logs());
    }
    assert!(!logs.contains("locked"), "{logs}");
    assert!(!logs.contains("already exists"), "{logs}");
    assert!(!logs.contains("cannot cache"), "{logs}");
    let conn = rusqlite::Connection::open(&db).expect("open");
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("check");
    assert_eq!(check, "ok");
    let jids: Vec<String> = conn
        .prepare("SELECT jid FROM authcache ORDER BY jid")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .expect("rows");
    assert_eq!(
        jids,
        [
            "alice@example.org",
            "bob@example.org",
            "colette@example.org",
            "dave@example.org"
        ]
    );
}

#[test]
fn sigkill_during_writes_leaves_a_sound_database() {
    let nc = StandIn::start();
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("killed.sqlite3");
    let db_arg = db.to_str().expect("path").to_owned();
    let mut x = Xcauth::start(
        "ejabberd",
        &nc.url,
        &[
            "--db",
            &db_arg,
            "--cache-storage",
            "db",
            "--cache-bcrypt-rounds",
            "4",
            "--cache-query-ttl",
            "0",
        ],
    );
    let mut batch = Vec::new();
    for _ in 0..200 {
        batch.extend(ejabberd_frame("auth:alice:example.org:alice-pw"));
    }
    x.send(&batch);
    // Some answers are back and the first cache write has landed, so
    // writes are under way; then kill -9.
    x.read_exact(4 * 20, T);
    let deadline = std::time::Instant::now() + T;
    loop {
        let rows: i64 = rusqlite::Connection::open(&db)
            .and_then(|c| c.query_row("SELECT count(*) FROM authcache", [], |r| r.get(0)))
            .unwrap_or(0);
        if rows > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no cache write within {T:?}"
        );
        std::thread::yield_now();
    }
    x.child.0.kill().expect("SIGKILL");
    x.child.0.wait().expect("reaped");
    let conn = rusqlite::Connection::open(&db).expect("open after kill");
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("check");
    assert_eq!(check, "ok");
    // And xcauth opens it again and serves from it.
    let dead = RefusingPort::new();
    let mut again = Xcauth::start(
        "generic",
        &dead.url(),
        &["--db", &db_arg, "--cache-storage", "db"],
    );
    again.send(b"auth:alice:example.org:alice-pw\n");
    assert_eq!(again.read_line(T), "1\n");
    again.finish();
}

/// A cost-12 bcrypt check for one user must not hold up another user's
/// token login on another connection.
#[test]
fn bcrypt_check_does_not_stall_other_logins() {
    let nc = StandIn::start();
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("slow.sqlite3");
    let db_arg = db.to_str().expect("path").to_owned();
    // Seed a cost-12 entry for alice (one back-end login, then exit).
    let mut seed = Xcauth::start(
        "generic",
        &nc.url,
        &[
            "--db",
            &db_arg,
            "--cache-storage",
            "db",
            "--cache-bcrypt-rounds",
            "12",
        ],
    );
    seed.send(b"auth:alice:example.org:alice-pw\n");
    assert_eq!(seed.read_line(T), "1\n");
    seed.finish();
    // The listening socket is bound here and passed as a systemd socket,
    // so it accepts before xcauth even runs.
    let (_served, at) =
        Served::activate_generic(&nc.url, &["--db", &db_arg, "--cache-storage", "db"]);
    let connect = || std::net::TcpStream::connect(&at).expect("connect");
    let mut slow = connect();
    let mut fast = connect();
    // Nextcloud is now down, so alice's password goes to the cost-12 check.
    nc.fault("http500");
    slow.write_all(b"auth:alice:example.org:alice-pw\n")
        .expect("write");
    let token = xcauth::token::make(
        SECRET.as_bytes(),
        "bob",
        "example.org",
        (now() + 600) as u32,
    );
    fast.write_all(format!("auth:bob:example.org:{token}\n").as_bytes())
        .expect("write");
    let mut answer = [0u8; 2];
    fast.read_exact(&mut answer).expect("fast answer");
    assert_eq!(&answer, b"1\n");
    // The token answer came while the bcrypt check is still running.
    slow.set_nonblocking(true).expect("nonblocking");
    let mut probe = [0u8; 2];
    assert!(
        matches!(slow.read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the cost-12 check should still be running"
    );
    slow.set_nonblocking(false).expect("blocking");
    slow.set_read_timeout(Some(T)).expect("timeout");
    slow.read_exact(&mut answer).expect("slow answer");
    assert_eq!(
        &answer, b"1\n",
        "cached password accepted during the outage"
    );
}

fn standin_requests(addr: &str) -> u64 {
    let stats: serde_json::Value =
        serde_json::from_str(&http(addr, "GET", "/_standin/stats", "")).expect("stats");
    stats["requests"].as_u64().expect("requests count")
}

/// The credentials of `jid` the database holds: (authcache hash, our rows).
fn stored_credentials(db: &Path, jid: &str) -> (Option<String>, Vec<String>) {
    let conn = rusqlite::Connection::open(db).expect("open");
    let primary = conn
        .query_row("SELECT pwhash FROM authcache WHERE jid = ?1", [jid], |r| {
            r.get(0)
        })
        .ok();
    let mut stmt = conn
        .prepare("SELECT pwhash FROM authcredential WHERE jid = ?1")
        .expect("prepare");
    let ours = stmt
        .query_map([jid], |r| r.get(0))
        .expect("query")
        .collect::<Result<Vec<String>, _>>()
        .expect("rows");
    (primary, ours)
}

/// Two devices of one user, each with its own app password: once both are
/// cached, they alternate without a single request to Nextcloud.
#[test]
fn two_devices_alternate_without_asking_nextcloud() {
    let dir = tempfile::tempdir().expect("dir");
    // tom has an app password per device; the JSXC API accepts them.
    let nc = StandIn::start();
    let (url, addr) = (nc.url.clone(), nc.addr.clone());
    let db = dir.path().join("devices.sqlite3");
    let db_arg = db.to_str().expect("path");
    let mut x = Xcauth::start(
        "generic",
        &url,
        &[
            "--db",
            db_arg,
            "--cache-storage",
            "db",
            "--cache-bcrypt-rounds",
            "4",
        ],
    );
    let jid = "tom@example.org";
    let mut login = |pw: &str| {
        x.send(format!("auth:tom:example.org:{pw}\n").as_bytes());
        x.read_line(T)
    };
    // Device A, then device B: each asks Nextcloud once; wait until each
    // credential is stored (the cache write follows the answer).
    assert_eq!(login("tom-phone-app"), "1\n");
    assert_eq!(standin_requests(&addr), 1);
    poll(T, || stored_credentials(&db, jid).0).expect("A stored");
    assert_eq!(login("tom-laptop-app"), "1\n");
    assert_eq!(standin_requests(&addr), 2);
    let (primary, ours) = poll(T, || {
        Some(stored_credentials(&db, jid)).filter(|(_, ours)| ours.len() == 1)
    })
    .expect("B stored beside A");
    // authcache holds the most recently verified one, as the original
    // would have written it; A moved to our table.
    let primary = primary.expect("authcache row");
    assert!(bcrypt::verify("tom-laptop-app", &primary).expect("hash"));
    assert!(bcrypt::verify("tom-phone-app", &ours[0]).expect("hash"));

    // Device A again, then B, then A: no request to Nextcloud.
    for pw in ["tom-phone-app", "tom-laptop-app", "tom-phone-app"] {
        assert_eq!(login(pw), "1\n", "{pw}");
    }
    assert_eq!(standin_requests(&addr), 2, "cached logins cost no request");
    // A wrong password still asks (and fails).
    assert_eq!(login("guess"), "0\n");
    assert_eq!(standin_requests(&addr), 3);
    x.finish();
    let (primary, ours) = stored_credentials(&db, jid);
    assert!(primary.is_some() && ours.len() == 1, "both kept");
}

/// The same with stock Nextcloud (`backend=nextcloud`): tom has a second
/// factor, so each device logs in with its own app password.
#[test]
fn two_app_passwords_alternate_without_asking_stock_nextcloud() {
    let nc = StandIn::start_with(&["--throttle-scale", "0.001"]);
    let dir = tempfile::tempdir().expect("dir");
    let api_password = dir.path().join("api-password");
    std::fs::write(&api_password, "xcauth-api-app\n").expect("write");
    let db = dir.path().join("nextcloud.sqlite3");
    let mut x = Xcauth::start(
        "generic",
        &format!("http://{}", nc.addr),
        &[
            "--backend",
            "nextcloud",
            "--api-user",
            "xcauth-api",
            "--api-password-file",
            api_password.to_str().expect("path"),
            "--db",
            db.to_str().expect("path"),
            "--cache-storage",
            "db",
            "--cache-bcrypt-rounds",
            "4",
        ],
    );
    let stats = |nc: &StandIn| -> serde_json::Value {
        serde_json::from_str(&http(&nc.addr, "GET", "/_standin/stats", "")).expect("stats")
    };
    // Password checks (`GET /ocs/v2.php/cloud/user`), and every request.
    let logins = |nc: &StandIn| {
        stats(nc)["ocs"]["by_endpoint"]["cloud/user"]
            .as_u64()
            .unwrap_or(0)
    };
    let all = |nc: &StandIn| stats(nc)["nextcloud_requests"].as_u64().expect("total");
    let jid = "tom@example.org";
    let mut login = |pw: &str| {
        x.send(format!("auth:tom:example.org:{pw}\n").as_bytes());
        x.read_line(T)
    };
    assert_eq!(login("tom-phone-app"), "1\n");
    poll(T, || stored_credentials(&db, jid).0).expect("phone stored");
    assert_eq!(login("tom-laptop-app"), "1\n");
    poll(T, || {
        Some(()).filter(|_| stored_credentials(&db, jid).1.len() == 1)
    })
    .expect("laptop stored beside the phone");
    assert_eq!(logins(&nc), 2);
    let before = all(&nc);
    for pw in ["tom-phone-app", "tom-laptop-app", "tom-phone-app"] {
        assert_eq!(login(pw), "1\n", "{pw}");
    }
    assert_eq!(
        logins(&nc),
        2,
        "cached app passwords cost no password check"
    );
    assert_eq!(all(&nc), before, "and no request at all");
    // The main password is refused (second factor), and never cached.
    assert_eq!(login("tom-main-pw"), "0\n");
    assert_eq!(logins(&nc), 3);
    x.finish();
}
