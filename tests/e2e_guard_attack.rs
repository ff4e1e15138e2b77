//! End to end: the failure guard attacked the way an attacker would, with
//! the real binary, real SQLite files and the stand-in Nextcloud: a hundred
//! guesses at once (pipelined, on many connections, from several
//! processes on one database), variants of one name, a database in
//! trouble, and guesses at a cached account that would buy bcrypt time.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(30);
/// `guard-jid-failures`' default: at most this many guesses may reach
/// Nextcloud (the limit, plus one for a race the issue allows).
const LIMIT: u64 = 10;

/// `n` distinct wrong passwords for `user`, as generic request lines.
fn guesses(user: &str, tag: &str, n: usize) -> String {
    (0..n)
        .map(|i| format!("auth:{user}:example.org:guess-{tag}-{i}\n"))
        .collect()
}

/// Sends `lines` in one write and reads one answer per line.
fn pipelined(x: &mut Xcauth, lines: &str) -> Vec<String> {
    x.send(lines.as_bytes());
    (0..lines.lines().count())
        .map(|_| x.read_line(T).trim_end().to_owned())
        .collect()
}

/// `--db PATH` for a database file that exists (as on an installed
/// system: xcauth shares its guard state through a file that is there).
fn db_args(db: &Path) -> Vec<String> {
    rusqlite::Connection::open(db)
        .and_then(|c| c.execute_batch("PRAGMA user_version = 0"))
        .expect("create the database file");
    vec!["--db".into(), db.display().to_string()]
}

/// A stand-in slow enough that guesses overlap in flight.
fn slow_standin() -> StandIn {
    StandIn::start_with(&["--latency-ms", "100"])
}

#[test]
fn a_hundred_guesses_pipelined_on_one_stream() {
    let nc = slow_standin();
    let mut x = Xcauth::start("generic", &nc.url, &[]);
    let answers = pipelined(&mut x, &guesses("alice", "p", 100));
    assert!(answers.iter().all(|a| a == "0"), "{answers:?}");
    let asked = nc.requests();
    assert!(asked <= LIMIT + 1, "{asked} guesses reached Nextcloud");
    x.finish();
}

#[test]
fn a_hundred_guesses_on_a_hundred_connections() {
    let nc = slow_standin();
    let (served, addr) = Served::activate_generic(&nc.url, &[]);
    let answers: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..100)
            .map(|i| {
                let addr = addr.clone();
                scope.spawn(move || {
                    let mut c = Conn::tcp(&addr);
                    c.set_timeout(Some(T));
                    c.send(format!("auth:alice:example.org:guess-c-{i}\n").as_bytes());
                    c.line()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client"))
            .collect()
    });
    assert!(answers.iter().all(|a| a.trim_end() == "0"), "{answers:?}");
    let asked = nc.requests();
    assert!(asked <= LIMIT + 1, "{asked} guesses reached Nextcloud");
    drop(served);
}

#[test]
fn a_hundred_guesses_from_four_processes_on_one_database() {
    let nc = slow_standin();
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("xcauth.sqlite3");
    let args = db_args(&db);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // The pool of helpers ejabberd would start.
    let mut pool: Vec<Xcauth> = (0..4)
        .map(|_| Xcauth::start("generic", &nc.url, &args))
        .collect();
    for (i, x) in pool.iter_mut().enumerate() {
        x.send(guesses("alice", &format!("proc{i}"), 25).as_bytes());
    }
    for x in &mut pool {
        for _ in 0..25 {
            assert_eq!(x.read_line(T).trim_end(), "0");
        }
    }
    let asked = nc.requests();
    let logs: String = pool.iter().map(|x| x.logs()).collect();
    let troubles: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("cannot be used"))
        .collect();
    assert!(
        asked <= LIMIT + 1,
        "{asked} guesses reached Nextcloud; {troubles:?}"
    );
    for x in &mut pool {
        x.finish();
    }
}

#[test]
fn variants_of_one_name_share_one_count() {
    let nc = StandIn::start();
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("xcauth.sqlite3");
    let args = db_args(&db);
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut xmpp = Xcauth::start("generic", &nc.url, &args);
    for (i, user) in ["erin", "Erin", "ERIN", "erin@example.org"]
        .iter()
        .enumerate()
    {
        let answers = pipelined(&mut xmpp, &guesses(user, &format!("v{i}"), 10));
        assert!(answers.iter().all(|a| a == "0"), "{answers:?}");
    }
    args.extend(["--saslauthd-fields", "4"]);
    let mut mail = Xcauth::start("saslauthd", &nc.url, &args);
    let forms: [(&str, &str); 3] = [
        ("erin", "example.org"),
        ("erin@example.org", ""),
        ("Erin@example.org", "example.org"),
    ];
    for (i, (login, realm)) in forms.iter().enumerate() {
        for n in 0..10 {
            let password = format!("guess-s{i}-{n}");
            mail.send(&sasl_request(&[
                login.as_bytes(),
                password.as_bytes(),
                b"smtp",
                realm.as_bytes(),
            ]));
            assert!(sasl_answer(&mut mail).starts_with("NO"));
        }
    }
    let asked = nc.requests();
    assert!(
        asked <= LIMIT + 1,
        "{asked} guesses at one account reached Nextcloud"
    );
    xmpp.finish();
    mail.finish();
}

#[test]
fn a_locked_database_neither_opens_the_gate_nor_stalls_logins() {
    let nc = slow_standin();
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("xcauth.sqlite3");
    let args = db_args(&db);
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.extend(["--cache-storage", "db"]);
    let mut x = Xcauth::start("generic", &nc.url, &args);
    // The database exists (xcauth made it); another process locks it.
    assert_eq!(
        pipelined(&mut x, "auth:alice:example.org:alice-pw\n"),
        vec!["1"]
    );
    let locker = rusqlite::Connection::open(&db).expect("open");
    locker
        .execute_batch("BEGIN EXCLUSIVE")
        .expect("exclusive lock");
    let started = std::time::Instant::now();
    let answers = pipelined(&mut x, &guesses("bob", "lock", 50));
    assert!(answers.iter().all(|a| a == "0"), "{answers:?}");
    let stalled = started.elapsed();
    // Every answer came within the guard's and the cache's wait for the
    // database (2 s each), not one busy timeout (10 s) after another.
    assert!(stalled < Duration::from_secs(10), "stalled {stalled:?}");
    // The lock ends: the guesses waiting for it do not all go through.
    locker.execute_batch("ROLLBACK").expect("unlock");
    let answers = pipelined(&mut x, &guesses("bob", "after", 20));
    assert!(answers.iter().all(|a| a == "0"));
    let asked = nc.requests() - 1;
    assert!(asked <= LIMIT + 1, "{asked} guesses reached Nextcloud");
    x.finish();
    assert!(x.logs().contains("guard: the database cannot be used"));
}

/// Waits until the cache write after `jid`'s login has landed in `db`.
fn wait_cached(db: &Path, jid: &str) {
    let found = poll(T, || {
        let c = rusqlite::Connection::open(db).ok()?;
        c.query_row("SELECT 1 FROM authcache WHERE jid = ?1", [jid], |_| Ok(()))
            .ok()
    });
    assert!(found.is_some(), "{jid} never reached the cache");
}

/// The bcrypt checks begun at login priority, from the metrics listener.
fn bcrypt_checks(x: &Xcauth) -> u64 {
    let addr = poll(T, || {
        x.logs()
            .lines()
            .filter_map(|l| l.split_once("metrics at http://"))
            .filter_map(|(_, rest)| rest.split_once("/metrics"))
            .map(|(addr, _)| addr.to_owned())
            .next()
    })
    .expect("metrics address logged");
    let body = http(&addr, "GET", "/metrics", "");
    assert!(
        body.contains("# TYPE xcauth_bcrypt_wait_seconds histogram"),
        "no bcrypt wait histogram in the metrics:\n{body}"
    );
    // A series appears with its first observation: absent means none yet.
    body.lines()
        .find(|l| l.starts_with("xcauth_bcrypt_wait_seconds_count{priority=\"login\"}"))
        .map_or(0, |l| {
            l.split_whitespace()
                .last()
                .and_then(|n| n.parse::<f64>().ok())
                .expect("a count") as u64
        })
}

/// The stand-in and an xcauth with a db cache (cost 10) and metrics, after
/// bob's login has reached the cache.
fn bob_cached() -> (StandIn, Xcauth, tempfile::TempDir) {
    let nc = StandIn::start();
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("xcauth.sqlite3");
    let args = db_args(&db);
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.extend(["--cache-storage", "db", "--cache-bcrypt-rounds", "10"]);
    args.extend(["--metrics", "127.0.0.1:0"]);
    let mut x = Xcauth::start("generic", &nc.url, &args);
    let answer = pipelined(&mut x, "auth:bob:example.org:bob-pw\n");
    assert_eq!(answer, vec!["1"]);
    wait_cached(&db, "bob@example.org");
    (nc, x, dir)
}

#[test]
fn guesses_at_a_cached_account_buy_no_bcrypt_and_never_lock_out_its_owner() {
    let (_nc, mut x, _dir) = bob_cached();
    let before = bcrypt_checks(&x);
    // One guess after the other, as a patient attacker sends them (a
    // crowd at once would find the pool saturated and skip it).
    for line in guesses("bob", "cpu", 40).lines() {
        assert_eq!(pipelined(&mut x, &format!("{line}\n")), vec!["0"]);
    }
    let spent = bcrypt_checks(&x) - before;
    // At most the guesses the guard let through, plus one blocked check.
    assert!(spent <= LIMIT + 2, "{spent} bcrypt checks for 40 guesses");
    // The owner is not locked out.
    assert_eq!(
        pipelined(&mut x, "auth:bob:example.org:bob-pw\n"),
        vec!["1"]
    );
    x.finish();
}

#[test]
fn guesses_during_an_outage_count_and_cost_the_owner_no_wait() {
    let (nc, mut x, _dir) = bob_cached();
    // Nextcloud goes away: connections are refused.
    drop(nc);
    let before = bcrypt_checks(&x);
    for line in guesses("bob", "down", 40).lines() {
        assert_eq!(pipelined(&mut x, &format!("{line}\n")), vec!["0"]);
    }
    let spent = bcrypt_checks(&x) - before;
    assert!(spent <= LIMIT + 2, "{spent} bcrypt checks for 40 guesses");
    // The owner's cached login still works in the outage.
    assert_eq!(
        pipelined(&mut x, "auth:bob:example.org:bob-pw\n"),
        vec!["1"]
    );
    x.finish();
}

#[test]
fn guard_clear_lifts_a_block_on_the_running_server() {
    let nc = StandIn::start();
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("xcauth.sqlite3");
    let args = db_args(&db);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut x = Xcauth::start("generic", &nc.url, &args);
    let answers = pipelined(&mut x, &guesses("Alice", "clear", 12));
    assert!(answers.iter().all(|a| a == "0"));
    let asked = nc.requests();
    assert_eq!(
        pipelined(&mut x, "auth:alice:example.org:alice-pw\n"),
        vec!["0"]
    );
    assert_eq!(nc.requests(), asked, "blocked: not asked");
    let out = std::process::Command::new(xcauth_bin())
        .args([
            "--db",
            db.to_str().expect("path"),
            "guard",
            "clear",
            "ALICE@Example.org",
        ])
        .output()
        .expect("xcauth guard clear");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        pipelined(&mut x, "auth:alice:example.org:alice-pw\n"),
        vec!["1"]
    );
    x.finish();
}

/// A small tmpfs, unmounted when dropped.
struct Tmpfs(tempfile::TempDir);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0.path())
            .status();
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// A 512k tmpfs, or `None` (with a note) when not root.
fn tmpfs(test: &str) -> Option<Tmpfs> {
    if !is_root() {
        eprintln!("{test} needs root to mount a tmpfs; scripts/test-all runs it as root");
        return None;
    }
    let dir = tempfile::tempdir().expect("dir");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=512k", "tmpfs"])
        .arg(dir.path())
        .status()
        .expect("mount");
    assert!(mounted.success(), "mount a tmpfs");
    Some(Tmpfs(dir))
}

/// Guesses at alice after `trouble` was done to the database of a running
/// xcauth: at most the limit reach Nextcloud, and, when `noticed`, the
/// memory took over.
fn guesses_survive(db: &Path, noticed: bool, trouble: impl FnOnce()) {
    let nc = StandIn::start();
    let args = db_args(db);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut x = Xcauth::start("generic", &nc.url, &args);
    assert_eq!(
        pipelined(&mut x, "auth:alice:example.org:alice-pw\n"),
        vec!["1"]
    );
    trouble();
    let answers = pipelined(&mut x, &guesses("alice", "trouble", 60));
    assert!(answers.iter().all(|a| a == "0"));
    let asked = nc.requests() - 1;
    assert!(asked <= LIMIT + 1, "{asked} guesses reached Nextcloud");
    x.finish();
    if noticed {
        let logs = x.logs();
        assert!(
            logs.contains("guard: the database cannot be used"),
            "{logs}"
        );
    }
}

#[test]
fn a_read_only_database_leaves_the_memory_counting() {
    let Some(fs) = tmpfs("a_read_only_database_leaves_the_memory_counting") else {
        return;
    };
    let path = fs.0.path().to_owned();
    guesses_survive(&path.join("xcauth.sqlite3"), true, || {
        // The path turns read-only under the running process: a read-only
        // bind mount over the tmpfs (new files, such as SQLite's journal,
        // cannot be made there any more).
        for args in [&["--bind"][..], &["-o", "remount,bind,ro"][..]] {
            let done = std::process::Command::new("mount")
                .args(args)
                .arg(&path)
                .arg(&path)
                .status()
                .expect("mount");
            assert!(done.success(), "mount {args:?}");
        }
    });
    let _ = std::process::Command::new("umount").arg(&path).status();
}

#[test]
fn a_database_garbled_while_running_leaves_the_memory_counting() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("xcauth.sqlite3");
    // SQLite may notice the garbage and fail (the memory takes over), or
    // write its cached first page back over it at the next commit and go
    // on: the limit must hold either way.
    guesses_survive(&db.clone(), false, move || {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .open(&db)
            .expect("open the database file");
        std::io::Write::write_all(&mut file, &[0xa5; 8192]).expect("garble it");
    });
}

#[test]
fn a_full_disk_leaves_the_memory_counting() {
    let Some(fs) = tmpfs("a_full_disk_leaves_the_memory_counting") else {
        return;
    };
    let db = fs.0.path().join("xcauth.sqlite3");
    let nc = StandIn::start();
    let args = db_args(&db);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut x = Xcauth::start("generic", &nc.url, &args);
    assert_eq!(
        pipelined(&mut x, "auth:alice:example.org:alice-pw\n"),
        vec!["1"]
    );
    // Fill the file system to the last byte.
    let mut filler = std::fs::File::create(fs.0.path().join("filler")).expect("filler");
    let block = vec![0u8; 4096];
    while std::io::Write::write_all(&mut filler, &block).is_ok() {}
    let _ = std::io::Write::write_all(&mut filler, &[0]);
    let answers = pipelined(&mut x, &guesses("alice", "full", 60));
    assert!(answers.iter().all(|a| a == "0"));
    let asked = nc.requests() - 1;
    assert!(asked <= LIMIT + 1, "{asked} guesses reached Nextcloud");
    x.finish();
    assert!(
        x.logs().contains("guard: the database cannot be used"),
        "{}",
        x.logs()
    );
}
