//! A small login storm through the real binary: distinct users whose
//! logins are in the db cache at bcrypt cost 12 log in at once right after
//! a start (memo cold). With the stand-in answering, the saturated bcrypt
//! pool is bypassed for some of them; with the back end refusing
//! connections, every login waits for the cache and is accepted.

mod common;

use std::time::Duration;

use common::{RefusingPort, StandIn, Xcauth};

/// Distinct JIDs (`alice@dN`; the stand-in's `alice` answers for every
/// domain). With two cores and a cost-12 check over 90 ms, more than a
/// second of checks is queued well before the last of them arrives.
const USERS: usize = 24;

/// All answers of the storm arrive within this (a check of cost 12 takes
/// well under a second even on a busy machine; the worst case queues all).
const ANSWERED_WITHIN: Duration = Duration::from_secs(180);

/// A database whose cache holds a fresh entry for every storm user: one
/// cost-12 hash of `alice-pw`, shared (the memo is per user, so sharing
/// does not warm it).
fn seeded_db(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("xcauth.sqlite3");
    let store = xcauth::store::Store::open(&path).expect("open the database");
    let hash = bcrypt::hash("alice-pw", 12).expect("bcrypt");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    for i in 0..USERS {
        store
            .credential_store(&format!("alice@d{i}"), &hash, None, now, 8)
            .expect("store a credential");
    }
    path
}

/// Sends every login at once on standard input (xcauth works on many
/// requests of one stream concurrently) and reads every answer.
fn storm(url: &str) -> (Vec<String>, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = seeded_db(dir.path());
    let db = db.to_str().expect("UTF-8 path");
    let mut x = Xcauth::start(
        "generic",
        url,
        &[
            "--db",
            db,
            "--cache-storage",
            "db",
            "--cache-bcrypt-rounds",
            "12",
        ],
    );
    let requests: String = (0..USERS)
        .map(|i| format!("auth:alice:d{i}:alice-pw\n"))
        .collect();
    x.send(requests.as_bytes());
    let answers = (0..USERS).map(|_| x.read_line(ANSWERED_WITHIN)).collect();
    let (_, ok) = x.finish();
    assert!(ok, "xcauth exits cleanly");
    // xcauth.log has every line once (xcauth.err repeats the warnings).
    let log = std::fs::read_to_string(x.log_dir.path().join("xcauth.log")).expect("xcauth.log");
    (answers, log)
}

#[test]
fn a_saturated_pool_is_bypassed_while_the_back_end_answers() {
    let standin = StandIn::start();
    let (answers, logs) = storm(&standin.url);
    assert!(answers.iter().all(|a| a == "1\n"), "{answers:?}\n{logs}");
    let bypassed = logs.matches("bcrypt pool saturated").count() as u64;
    let asked = standin.requests();
    assert!(bypassed >= 1, "some logins asked the back end\n{logs}");
    assert!(
        (bypassed as usize) < USERS,
        "the first logins are answered by the cache\n{logs}"
    );
    // Each bypassed login made one request; none other did (no roster
    // sync without ejabberdctl, and cache hits never ask).
    assert_eq!(asked, bypassed, "{logs}");
}

#[test]
fn a_saturated_pool_is_waited_for_when_the_back_end_is_down() {
    let dead = RefusingPort::new();
    let (answers, logs) = storm(&dead.url());
    // The cache is the only source: every login waits for its check and
    // is accepted, also those that tried the back end before it was known
    // to be down.
    assert!(answers.iter().all(|a| a == "1\n"), "{answers:?}\n{logs}");
    let tried = logs.matches("bcrypt pool saturated").count();
    let fell_back = logs.matches("accepted from cache").count();
    assert_eq!(tried, fell_back, "{logs}");
    assert!(tried < USERS, "{logs}");
}

/// A Nextcloud that takes half a second per password check (a real one
/// hashes with argon2id): the storm must not land on it as a crowd.
#[test]
fn a_slow_back_end_gets_a_few_bypasses_at_once_not_the_storm() {
    let standin = StandIn::start_with(&["--latency-ms", "500"]);
    let (answers, logs) = storm(&standin.url);
    assert!(answers.iter().all(|a| a == "1\n"), "{answers:?}\n{logs}");
    let bypassed = logs.matches("bcrypt pool saturated").count();
    assert_eq!(standin.requests(), bypassed as u64, "{logs}");
    let stats = common::http(&standin.addr, "GET", "/_standin/stats", "");
    let stats: serde_json::Value = serde_json::from_str(&stats).expect("stats");
    let at_once = stats["max_in_flight"].as_u64().expect("max_in_flight");
    assert!(
        at_once <= xcauth::verify::MAX_BYPASSES as u64,
        "{at_once} logins of {USERS} asked a slow back end at once\n{logs}"
    );
}
