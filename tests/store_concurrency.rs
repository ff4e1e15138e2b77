//! Eight connections (standing in for ejabberd's pool of helper processes) create and write one new file at once.
//!
//! Each thread opens its own `Store` (its own SQLite connection, so SQLite's
//! file locks are what keeps them apart, as between processes). A barrier
//! releases them together, so the table creation itself is contended, which
//! is where the original crashed with "table authcache already exists".

use std::path::Path;
use std::sync::{Arc, Barrier};
use std::thread;

use xcauth::store::Store;

const THREADS: usize = 8;
const ROUNDS: i64 = 40;

fn open(path: &Path) -> Store {
    match Store::open(path) {
        Ok(s) => s,
        Err(e) => panic!("open {}: {e}", path.display()),
    }
}

#[test]
fn eight_connections_write_one_new_file_without_errors_or_lost_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = Arc::new(dir.path().join("shared.sqlite3"));
    let barrier = Arc::new(Barrier::new(THREADS));

    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let path = Arc::clone(&path);
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                let store = open(&path);
                // Everybody also races on one shared row: the first insert
                // must not collide with the others' (no "UNIQUE constraint
                // failed", no lost row).
                store
                    .cache_store("shared@example.org", &format!("hash-{t}"), 1)
                    .unwrap();
                for round in 0..ROUNDS {
                    let now = 1_000 + round;
                    let jid = format!("user{t}-{}@example.org", round % 5);
                    store
                        .cache_store(&jid, &format!("hash-{t}-{round}"), now)
                        .unwrap();
                    assert!(store.cache_touch(&jid, now + 1).unwrap());
                    let members: Vec<String> =
                        (0..=round).map(|m| format!("m{m}@example.org")).collect();
                    store
                        .set_roster_group(&format!("group{t}@example.org"), &members)
                        .unwrap();
                    store
                        .set_roster_hash(&jid, &format!("roster-{round}"), now)
                        .unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        if let Err(panic) = w.join() {
            std::panic::resume_unwind(panic);
        }
    }

    let store = open(&path);
    assert_eq!(store.integrity_check().unwrap(), "ok");
    assert_eq!(store.cache_count().unwrap(), THREADS * 5 + 1);
    let shared = store.cache_get("shared@example.org").unwrap().unwrap();
    assert!(shared.pwhash.starts_with("hash-"));
    for t in 0..THREADS {
        for slot in 0..5 {
            let jid = format!("user{t}-{slot}@example.org");
            // The last round that wrote this slot.
            let round = (0..ROUNDS).filter(|r| r % 5 == slot).max().unwrap();
            let entry = store.cache_get(&jid).unwrap().unwrap();
            assert_eq!(entry.pwhash, format!("hash-{t}-{round}"), "{jid}");
            assert_eq!(entry.firstauth, 1_000 + slot, "{jid}");
            assert_eq!(entry.remoteauth, 1_000 + round, "{jid}");
            assert_eq!(entry.anyauth, 1_000 + round + 1, "{jid}");
            let info = store.roster_info(&jid).unwrap().unwrap();
            assert_eq!(info.responsehash, Some(format!("roster-{round}")), "{jid}");
        }
        let members = store
            .roster_group(&format!("group{t}@example.org"))
            .unwrap()
            .unwrap();
        assert_eq!(members.len(), ROUNDS as usize, "group{t}");
    }
}

/// Eight connections add credentials to one JID at once (eight devices
/// logging in through eight helpers): the bound holds, `authcache` keeps
/// one of the newest, and every kept credential counts.
#[test]
fn eight_connections_add_credentials_to_one_jid_within_the_bound() {
    const KEEP: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let path = Arc::new(dir.path().join("devices.sqlite3"));
    drop(open(&path));
    let barrier = Arc::new(Barrier::new(THREADS));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let path = Arc::clone(&path);
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                let store = open(&path);
                barrier.wait();
                for round in 0..ROUNDS {
                    let now = 1_000 + round;
                    let hash = format!("hash-{t}-{round}");
                    store
                        .credential_store("tom@example.org", &hash, None, now, KEEP)
                        .unwrap();
                    // Touching may find it already evicted by the others.
                    store
                        .credential_touch("tom@example.org", &hash, now)
                        .unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        if let Err(panic) = w.join() {
            std::panic::resume_unwind(panic);
        }
    }
    let store = open(&path);
    assert_eq!(store.integrity_check().unwrap(), "ok");
    let creds = store.credentials("tom@example.org").unwrap();
    assert_eq!(creds.len(), KEEP);
    let primary = store.cache_get("tom@example.org").unwrap().unwrap();
    assert_eq!(primary.remoteauth, 1_000 + ROUNDS - 1, "one of the last");
    assert_eq!(creds[0].pwhash, primary.pwhash);
    assert!(creds.iter().all(|e| e.firstauth == 1_000));
    let mut hashes: Vec<&str> = creds.iter().map(|e| e.pwhash.as_str()).collect();
    hashes.sort_unstable();
    hashes.dedup();
    assert_eq!(hashes.len(), KEEP, "no duplicates");
}

/// Eight connections record failures of one JID and one address at once
/// (a guesser spread over ejabberd's pool of helpers): every failure is
/// kept and counted, and each window's refusal is marked for exactly one
/// of them.
#[test]
fn eight_connections_record_guard_failures_of_one_key_without_loss() {
    use xcauth::guard::{Failure, Scope};
    const PER_THREAD: i64 = 25;
    const WINDOWS: i64 = 10;
    let dir = tempfile::tempdir().unwrap();
    let path = Arc::new(dir.path().join("guard.sqlite3"));
    drop(open(&path));
    let barrier = Arc::new(Barrier::new(THREADS));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let path = Arc::clone(&path);
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                let store = open(&path);
                barrier.wait();
                for round in 0..PER_THREAD {
                    let failure = Failure {
                        digest: format!("digest-{t}-{round}"),
                        at: 1_000 + round,
                    };
                    store
                        .guard_record(Scope::Jid, "tom@example.org", &failure)
                        .unwrap();
                    store
                        .guard_record(Scope::Address, "2001:db8::7", &failure)
                        .unwrap();
                }
                // Then all of them refuse in the same windows at once:
                // which one logs each?
                (0..WINDOWS)
                    .map(|w| {
                        barrier.wait();
                        store
                            .guard_notice(Scope::Jid, "tom@example.org", 5_000 + w)
                            .unwrap()
                    })
                    .collect::<Vec<bool>>()
            })
        })
        .collect();
    let mut logged = vec![0; WINDOWS as usize];
    for w in workers {
        match w.join() {
            Ok(marks) => {
                for (count, mark) in logged.iter_mut().zip(marks) {
                    *count += usize::from(mark);
                }
            }
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
    assert_eq!(logged, vec![1; WINDOWS as usize], "one log line per window");
    let store = open(&path);
    assert_eq!(store.integrity_check().unwrap(), "ok");
    let total = THREADS * PER_THREAD as usize;
    for (scope, key) in [
        (Scope::Jid, "tom@example.org"),
        (Scope::Address, "2001:db8::7"),
    ] {
        let failures = store.guard_failures(scope, key, 0).unwrap();
        assert_eq!(failures.len(), total, "{key}");
        let mut digests: Vec<&str> = failures.iter().map(|f| f.digest.as_str()).collect();
        digests.sort_unstable();
        digests.dedup();
        assert_eq!(digests.len(), total, "{key}: every failure distinct");
        // The window after the first round of each thread.
        let later = store.guard_failures(scope, key, 1_000 + 20).unwrap();
        assert_eq!(later.len(), THREADS * 5, "{key}");
    }
    assert!(!store
        .guard_notice(Scope::Jid, "tom@example.org", 5_000 + WINDOWS - 1)
        .unwrap());
}
