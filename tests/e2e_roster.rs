//! End to end: the shared roster sync driven by the real binary, with a
//! recording stand-in for ejabberdctl.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn fake_ctl() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake-ejabberdctl")
}

fn calls(log: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON argv line"))
        .collect()
}

fn run_xcauth(nc: &StandIn, dir: &Path, args: &[&str], stdin: &[u8]) -> String {
    let log = dir.join("ctl.log");
    let mut child = Command::new(xcauth_bin())
        .args(["--url", &nc.url, "--ejabberdctl"])
        .arg(fake_ctl())
        .arg("--db")
        .arg(dir.join("state.sqlite3"))
        .arg("--log")
        .arg(dir)
        // The reply's hash is stored only once the sync is complete, so the
        // process must not stop it half-way on a busy machine.
        .args(["--shutdown-timeout", "60"])
        .args(args)
        .env("XCAUTH_SECRET", SECRET)
        .env("FAKE_EJABBERDCTL_LOG", &log)
        // srg_create fails, as on ejabberd 24.12, for an id nodeprep changes.
        .env("FAKE_EJABBERDCTL_STRICT", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start xcauth");
    {
        use std::io::Write;
        let mut input = child.stdin.take().expect("stdin");
        input.write_all(stdin).expect("write");
    }
    let out = child.wait_with_output().expect("wait");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn roster_test_runs_the_sync_to_completion() {
    let nc = StandIn::start();
    let dir = tempfile::tempdir().expect("dir");
    let out = run_xcauth(&nc, dir.path(), &["-R", "alice", "example.org"], b"");
    let roster: serde_json::Value = serde_json::from_str(out.trim()).expect("roster JSON");
    assert_eq!(roster["alice"]["name"], "Alice Liddell");
    let calls = calls(&dir.path().join("ctl.log"));
    let has = |argv: &[&str]| calls.iter().any(|c| c == argv);
    assert!(
        has(&[
            "srg_create",
            "staff",
            "example.org",
            "staff",
            "staff",
            "staff"
        ]),
        "{calls:?}"
    );
    assert!(
        has(&["srg_user_add", "bob", "example.org", "staff", "example.org"]),
        "{calls:?}"
    );
    assert!(
        has(&["set_vcard", "alice", "example.org", "FN", "Alice Liddell"]),
        "{calls:?}"
    );
    // Non-ASCII names arrive as one argument each, untouched.
    assert!(
        has(&[
            "set_vcard",
            "zoe",
            "example.org",
            "FN",
            "Zoë Ångström-Łukasiewicz"
        ]),
        "{calls:?}"
    );

    // zoe's group "Ops & Co." gets a nodeprep-stable id and keeps its name
    // as its label (the fake's srg_create refuses an id nodeprep changes).
    let out = run_xcauth(&nc, dir.path(), &["-R", "zoe", "example.org"], b"");
    let roster: serde_json::Value = serde_json::from_str(out.trim()).expect("roster JSON");
    assert_eq!(roster["zoe"]["groups"][1], "Ops & Co.", "{roster}");
    let calls = self::calls(&dir.path().join("ctl.log"));
    let has = |argv: &[&str]| calls.iter().any(|c| c == argv);
    let ops = "ops_co-2e674c4fe232b0a7";
    assert!(
        has(&[
            "srg_create",
            ops,
            "example.org",
            "Ops & Co.",
            "Ops & Co.",
            ops
        ]),
        "{calls:?}"
    );
    assert!(
        has(&["srg_user_add", "zoe", "example.org", ops, "example.org"]),
        "{calls:?}"
    );
    assert!(
        !calls
            .iter()
            .any(|c| c[0] == "srg_create" && c[1] == "Ops & Co."),
        "{calls:?}"
    );
}

#[test]
fn login_syncs_once_and_an_unchanged_roster_costs_no_calls() {
    let nc = StandIn::start();
    let dir = tempfile::tempdir().expect("dir");
    let log = dir.path().join("ctl.log");
    let out = run_xcauth(
        &nc,
        dir.path(),
        &["-t", "generic"],
        b"auth:alice:example.org:alice-pw\n",
    );
    assert_eq!(out, "1\n");
    let first = calls(&log);
    assert!(first.iter().any(|c| c[0] == "srg_user_add"), "{first:?}");
    // Same roster again: the stored hash matches, no ejabberdctl call.
    let out = run_xcauth(
        &nc,
        dir.path(),
        &["-t", "generic"],
        b"auth:alice:example.org:alice-pw\n",
    );
    assert_eq!(out, "1\n");
    assert_eq!(calls(&log).len(), first.len(), "no new calls");
}

#[test]
fn failing_ejabberdctl_never_fails_a_login() {
    let nc = StandIn::start();
    let dir = tempfile::tempdir().expect("dir");
    let mut child = Command::new(xcauth_bin())
        .args([
            "--url",
            &nc.url,
            "-t",
            "ejabberd",
            "--ejabberdctl",
            "/nonexistent/ejabberdctl",
        ])
        .arg("--db")
        .arg(dir.path().join("state.sqlite3"))
        .arg("--log")
        .arg(dir.path())
        .env("XCAUTH_SECRET", SECRET)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start");
    {
        use std::io::Write;
        let mut input = child.stdin.take().expect("stdin");
        input
            .write_all(&ejabberd_frame("auth:alice:example.org:alice-pw"))
            .expect("write");
    }
    let t0 = std::time::Instant::now();
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.stdout, YES);
    assert!(t0.elapsed() < Duration::from_secs(10));
}

#[test]
fn hanging_ejabberdctl_delays_a_login_by_about_a_second_at_most() {
    let nc = StandIn::start();
    let dir = tempfile::tempdir().expect("dir");
    let mut child = Command::new(xcauth_bin())
        .args(["--url", &nc.url, "-t", "generic", "--ejabberdctl"])
        .arg(fake_ctl())
        .arg("--db")
        .arg(dir.path().join("state.sqlite3"))
        .arg("--log")
        .arg(dir.path())
        .args(["--shutdown-timeout", "1"])
        .env("XCAUTH_SECRET", SECRET)
        .env("FAKE_EJABBERDCTL_LOG", dir.path().join("ctl.log"))
        .env("FAKE_EJABBERDCTL_HANG", "set_vcard,srg_create")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start");
    let mut input = child.stdin.take().expect("stdin");
    let mut output = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let _guard = Guard(child);
    use std::io::{BufRead, Write};
    let t0 = std::time::Instant::now();
    input
        .write_all(b"auth:alice:example.org:alice-pw\n")
        .expect("write");
    let mut line = String::new();
    output.read_line(&mut line).expect("answer");
    assert_eq!(line, "1\n");
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "login answered after {took:?}"
    );
}

#[test]
fn a_login_first_removes_the_groups_of_the_old_scheme() {
    let nc = StandIn::start();
    let dir = tempfile::tempdir().expect("dir");
    let log = dir.path().join("ctl.log");
    {
        // What an older xcauth left: the clean name was the group id.
        let store = xcauth::store::Store::open(&dir.path().join("state.sqlite3")).expect("db");
        store
            .set_roster_group("Ops & Co.@example.org", &["zoe@example.org".to_owned()])
            .expect("group");
        store
            .set_roster_group("staff@example.org", &["alice@example.org".to_owned()])
            .expect("group");
    }
    let out = run_xcauth(
        &nc,
        dir.path(),
        &["-t", "generic"],
        b"auth:zoe:example.org:zoe-pw\n",
    );
    assert_eq!(out, "1\n");
    let calls = calls(&log);
    assert_eq!(
        calls.first().map(Vec::as_slice),
        Some(
            &[
                "srg_delete".to_owned(),
                "Ops & Co.".into(),
                "example.org".into()
            ][..]
        ),
        "{calls:?}"
    );
    assert_eq!(calls.iter().filter(|c| c[0] == "srg_delete").count(), 1);
    let store = xcauth::store::Store::open(&dir.path().join("state.sqlite3")).expect("db");
    let names = store.roster_group_names().expect("names");
    assert!(
        !names.iter().any(|n| n.starts_with("Ops & Co.")),
        "{names:?}"
    );
    assert!(
        names.contains(&"ops_co-2e674c4fe232b0a7@example.org".to_owned()),
        "{names:?}"
    );
}
