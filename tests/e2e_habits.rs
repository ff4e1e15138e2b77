//! End to end, the real binary: the administrator's habits (global options
//! before a subcommand, `help`, `-A USER DOMAIN -`), logging to systemd's
//! journal, SIGHUP re-reading the domain rows, and the knobs that were
//! constants (`ejabberdctl-timeout`, `backend-concurrency`).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::*;

const T: Duration = Duration::from_secs(10);

/// A command for the real binary with no `XCAUTH_*` settings from the
/// test's environment and an empty config file.
fn xcauth(dir: &Path) -> Command {
    let conf = dir.join("empty.conf");
    if !conf.exists() {
        std::fs::write(&conf, "").expect("conf");
    }
    let mut cmd = Command::new(xcauth_bin());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("XCAUTH_") || key == "JOURNAL_STREAM" {
            cmd.env_remove(key);
        }
    }
    cmd.env("XCAUTH_CONFIG_FILE", &conf);
    cmd
}

/// Runs `cmd` with `input` on standard input.
fn run(mut cmd: Command, input: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run xcauth");
    let mut stdin = child.stdin.take().expect("stdin");
    // A child that exits early closes the pipe; that is its answer.
    let _ = stdin.write_all(input);
    drop(stdin);
    child.wait_with_output().expect("wait")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ----- the command line -----------------------------------------------------

#[test]
fn subcommands_follow_global_options_and_the_old_spellings_still_work() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("xcauth.sqlite3");
    let db = db.to_str().expect("path");
    let conf = dir.path().join("server.conf");
    std::fs::write(&conf, format!("db={db}\n")).expect("conf");
    let conf = conf.to_str().expect("path");

    let mut add = xcauth(dir.path());
    add.args(["-c", conf, "-d", "domain", "add", "example.org"])
        .args([
            "--url",
            "https://cloud.example.org",
            "--backend",
            "nextcloud",
        ]);
    let out = run(add, b"");
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    let listed = |args: &[&str]| {
        let mut cmd = xcauth(dir.path());
        cmd.args(args);
        let out = run(cmd, b"");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
        text(&out.stdout)
    };
    let list = listed(&["--db", db, "-d", "domain", "list"]);
    assert!(list.contains("https://cloud.example.org"), "{list}");
    assert_eq!(listed(&["domain", "list", "--db", db]), list);
    assert_eq!(listed(&["-c", conf, "domain", "list"]), list);
    assert_eq!(listed(&["domain", "list", "-c", conf]), list);
    assert_eq!(
        listed(&["--cache-storage", "db", "--db", db, "domain", "list"]),
        list
    );

    // The wrappers of the original's tools, with options after the name.
    let wrapper = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/xcrefreshroster");
    let mut cmd = Command::new("sh");
    cmd.arg(&wrapper).args(["--db", db]);
    let path = format!(
        "{}:{}",
        xcauth_bin().parent().expect("bin dir").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    cmd.env("PATH", path).env_remove("XCAUTH_DB");
    let out = run(cmd, b"");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        text(&out.stdout).contains("cleared 0 roster hashes"),
        "{out:?}"
    );

    // A one-shot query and a command at once: usage error, nothing done.
    let mut cmd = xcauth(dir.path());
    cmd.args([
        "--db",
        db,
        "-I",
        "a",
        "example.org",
        "domain",
        "remove",
        "example.org",
    ]);
    let out = run(cmd, b"");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(text(&out.stderr).contains("cannot be combined"), "{out:?}");
    assert!(listed(&["--db", db, "domain", "list"]).contains("example.org"));
}

#[test]
fn help_and_dash_dash_help_list_the_commands_and_the_options() {
    let dir = tempfile::tempdir().expect("dir");
    let help = |args: &[&str]| {
        let mut cmd = xcauth(dir.path());
        cmd.args(args);
        let out = run(cmd, b"");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
        text(&out.stdout)
    };
    let text = help(&["help"]);
    assert_eq!(help(&["--help"]), text);
    for word in [
        "  domain ",
        "  user ",
        "  group ",
        "  host ",
        "  roster ",
        "  cache ",
        "  guard ",
        "--auth-test",
        "--type",
        "--ejabberdctl-timeout",
        "--backend-concurrency",
        "--log-files-under-journal",
    ] {
        assert!(text.contains(word), "{word:?} missing from help:\n{text}");
    }
    let domain = help(&["help", "domain"]);
    assert!(domain.contains("Usage: xcauth domain"), "{domain}");
    assert!(domain.contains("remove"), "{domain}");
    let add = help(&["help", "domain", "add"]);
    assert!(add.contains("--api-password-file"), "{add}");
    assert_eq!(help(&["domain", "add", "--help"]), add);
}

// ----- -A USER DOMAIN - ----------------------------------------------------

#[test]
fn auth_test_reads_the_password_from_standard_input() {
    let nc = StandIn::start();
    let dir = tempfile::tempdir().expect("dir");
    let auth = |input: &[u8]| {
        let mut cmd = xcauth(dir.path());
        cmd.args(["--url", &nc.url, "-A", "alice", "example.org", "-"])
            .env("XCAUTH_SECRET", SECRET);
        let out = run(cmd, input);
        (text(&out.stdout), text(&out.stderr), out.status.code())
    };
    assert_eq!(auth(b"alice-pw\n").0, "True\n");
    assert_eq!(auth(b"alice-pw\r\n").0, "True\n");
    assert_eq!(auth(b"alice-pw").0, "True\n", "no line end at the end");
    assert_eq!(auth(b"alice-pw\nsecond line\n").0, "True\n", "one line");
    let (out, err, code) = auth(b"wrong\n");
    assert_eq!((out.as_str(), code), ("False\n", Some(1)));
    assert!(
        !err.contains("wrong\n") && !err.contains("alice-pw"),
        "{err}"
    );
    // No input, an over-long line, broken UTF-8: usage errors, no query.
    let asked = nc.requests();
    for bad in [
        b"".to_vec(),
        vec![b'x'; xcauth::run::MAX_PASSWORD_LINE + 1],
        b"\xffalice-pw\n".to_vec(),
    ] {
        let (out, err, code) = auth(&bad);
        assert_eq!((out.as_str(), code), ("", Some(2)), "{err}");
        assert!(err.contains("standard input"), "{err}");
    }
    assert_eq!(nc.requests(), asked, "nothing was asked");
}

// ----- the journal ---------------------------------------------------------

/// Runs a generic service over standard input (one isuser request), with
/// standard error in a file and `JOURNAL_STREAM` set by `journal` from
/// that file's device and inode; returns standard error and the log files.
fn served_with_journal(
    nc: &StandIn,
    journal: impl Fn(u64, u64) -> String,
    extra: &[&str],
) -> (String, String, bool) {
    let dir = tempfile::tempdir().expect("dir");
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).expect("log dir");
    let err_path = dir.path().join("stderr");
    let err_file = std::fs::File::create(&err_path).expect("stderr file");
    let meta = err_file.metadata().expect("stat");
    let mut cmd = xcauth(dir.path());
    // --secret on the command line: a warning at start.
    cmd.args(["-t", "generic", "--url", &nc.url, "-s", SECRET])
        .arg("-l")
        .arg(&logs)
        .args(extra)
        .env("JOURNAL_STREAM", journal(meta.dev(), meta.ino()))
        .stderr(Stdio::from(err_file));
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"isuser:alice:example.org\n")
        .expect("write");
    let mut answer = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut answer)
        .expect("read");
    assert_eq!(answer, "1\n");
    assert!(child.wait().expect("wait").success());
    let stderr = std::fs::read_to_string(&err_path).expect("stderr");
    let files = logs.join("xcauth.log").exists() || logs.join("xcauth.err").exists();
    (stderr, logs_in(&logs), files)
}

#[test]
fn under_the_journal_lines_carry_priorities_and_no_files_are_written() {
    let nc = StandIn::start();
    let (stderr, _, files) = served_with_journal(&nc, |dev, ino| format!("{dev}:{ino}"), &[]);
    assert!(!files, "no log files under the journal");
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("<4>the secret given with --secret")),
        "{stderr}"
    );
    assert!(
        stderr.lines().any(|l| l.starts_with("<6>xcauth ")),
        "{stderr}"
    );
    for line in stderr.lines() {
        let prefixed = ["<3>", "<4>", "<6>", "<7>"]
            .iter()
            .any(|p| line.starts_with(p));
        assert!(prefixed, "unprefixed line {line:?}");
        // No timestamp of our own: the journal adds it.
        assert!(!line[3..].starts_with("20"), "timestamp in {line:?}");
    }
    // -d: debug lines as <7>.
    let (stderr, _, _) = served_with_journal(&nc, |dev, ino| format!("{dev}:{ino}"), &["-d"]);
    assert!(stderr.lines().any(|l| l.starts_with("<7>")), "{stderr}");

    // Asked for: the files as well.
    let (stderr, logs, files) = served_with_journal(
        &nc,
        |dev, ino| format!("{dev}:{ino}"),
        &["--log-files-under-journal"],
    );
    assert!(files, "log files when asked");
    assert!(
        logs.contains("WARN") && logs.contains("the secret given"),
        "{logs}"
    );
    assert!(stderr.contains("<4>the secret given"), "{stderr}");
}

#[test]
fn a_journal_stream_that_is_not_standard_error_changes_nothing() {
    let nc = StandIn::start();
    for journal in [
        Box::new(|dev: u64, ino: u64| format!("{dev}:{}", ino + 1))
            as Box<dyn Fn(u64, u64) -> String>,
        Box::new(|_, _| "garbage".to_owned()),
    ] {
        let (stderr, logs, files) = served_with_journal(&nc, journal, &[]);
        assert!(files, "log files as without systemd");
        assert!(
            logs.contains("WARN") && logs.contains("the secret given"),
            "{logs}"
        );
        assert!(
            !stderr.contains("<4>") && !stderr.contains("<6>"),
            "{stderr}"
        );
    }
}

// ----- SIGHUP and the domain rows ------------------------------------------

#[test]
fn sighup_rereads_the_domain_rows_at_once() {
    let first = StandIn::start();
    let second = StandIn::start();
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("xcauth.sqlite3");
    let db = db.to_str().expect("path").to_owned();
    let admin = |args: &[&str], input: &[u8]| {
        let mut cmd = xcauth(dir.path());
        cmd.args(["--db", &db]).args(args);
        let out = run(cmd, input);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
    };
    admin(
        &[
            "domain",
            "add",
            "example.org",
            "--url",
            &first.url,
            "--secret-stdin",
        ],
        SECRET.as_bytes(),
    );
    let mut x = Xcauth::start(
        "generic",
        &first.url,
        &["--db", &db, "--cache-storage", "none"],
    );
    let isuser = |x: &mut Xcauth| {
        x.send(b"isuser:alice:example.org\n");
        assert_eq!(x.read_line(T), "1\n");
    };
    let asked = |nc: &StandIn| nc.requests();
    let loaded = Instant::now();
    isuser(&mut x);
    assert_eq!((asked(&first), asked(&second)), (1, 0));

    admin(
        &["domain", "change", "example.org", "--url", &second.url],
        b"",
    );
    isuser(&mut x);
    // Without SIGHUP the rows read at the first request are kept for up
    // to RELOAD_AFTER (5 s).
    if loaded.elapsed() < xcauth::domains::RELOAD_AFTER {
        assert_eq!((asked(&first), asked(&second)), (2, 0), "rows kept");
    }

    let before = asked(&first);
    Command::new("kill")
        .args(["-HUP", &x.child.0.id().to_string()])
        .status()
        .expect("kill");
    poll(T, || {
        x.logs()
            .contains("SIGHUP: log files re-opened")
            .then_some(())
    })
    .expect("SIGHUP handled");
    let hup = Instant::now();
    isuser(&mut x);
    assert_eq!(asked(&second), 1, "the new URL right after SIGHUP");
    assert_eq!(asked(&first), before);
    assert!(hup.elapsed() < xcauth::domains::RELOAD_AFTER);
    let (_, ok) = x.finish();
    assert!(ok);
}

// ----- ejabberdctl-timeout -------------------------------------------------

/// An ejabberdctl stand-in that answers after `seconds`.
fn slow_ctl(dir: &Path, seconds: u32) -> PathBuf {
    let path = dir.join(format!("ejabberdctl-{seconds}s"));
    std::fs::write(&path, format!("#!/bin/sh\nexec sleep {seconds}\n")).expect("script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

#[test]
fn ejabberdctl_timeout_kills_a_hanging_ejabberdctl() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("xcauth.sqlite3");
    let db = db.to_str().expect("path").to_owned();
    // A database with one group, so `group delete` has something to do.
    let mut cmd = xcauth(dir.path());
    cmd.args([
        "--db",
        &db,
        "domain",
        "add",
        "example.org",
        "--url",
        "https://c.example",
    ]);
    cmd.args(["--backend", "nextcloud"]);
    assert_eq!(run(cmd, b"").status.code(), Some(0));
    let store = xcauth::store::Store::open(Path::new(&db)).expect("store");
    store
        .set_roster_group("staff@example.org", &["alice@example.org".to_owned()])
        .expect("group");
    drop(store);
    let delete = |ctl: &Path, extra: &[&str]| {
        let mut cmd = xcauth(dir.path());
        cmd.args(["--db", &db])
            .arg("--ejabberdctl")
            .arg(ctl)
            .args(extra)
            .args(["group", "delete", "staff@example.org"]);
        let started = Instant::now();
        let out = run(cmd, b"");
        (out, started.elapsed())
    };
    // Hangs for 20 s; killed after 1 s.
    let (out, took) = delete(&slow_ctl(dir.path(), 20), &["--ejabberdctl-timeout", "1"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(text(&out.stderr).contains("no answer within 1s"), "{out:?}");
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(15),
        "{took:?}"
    );
}

#[test]
fn the_default_ejabberdctl_timeout_waits_longer_than_a_second() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("xcauth.sqlite3");
    let db = db.to_str().expect("path").to_owned();
    let mut cmd = xcauth(dir.path());
    cmd.args([
        "--db",
        &db,
        "domain",
        "add",
        "example.org",
        "--url",
        "https://c.example",
    ]);
    cmd.args(["--backend", "nextcloud"]);
    assert_eq!(run(cmd, b"").status.code(), Some(0));
    let store = xcauth::store::Store::open(Path::new(&db)).expect("store");
    store
        .set_roster_group("staff@example.org", &["alice@example.org".to_owned()])
        .expect("group");
    drop(store);
    let mut cmd = xcauth(dir.path());
    cmd.args(["--db", &db])
        .arg("--ejabberdctl")
        .arg(slow_ctl(dir.path(), 2))
        .args(["group", "delete", "staff@example.org"]);
    let out = run(cmd, b"");
    assert_eq!(
        out.status.code(),
        Some(0),
        "a 2 s ejabberdctl is fine: {out:?}"
    );
}

/// The server's roster sync (here through `-R`) runs ejabberdctl with the
/// same limit: a `set_vcard` that hangs is killed after 1 s, the other
/// calls go on.
#[test]
fn ejabberdctl_timeout_applies_to_the_roster_sync() {
    let nc = StandIn::start();
    let dir = tempfile::tempdir().expect("dir");
    let ctl = dir.path().join("ejabberdctl");
    std::fs::write(
        &ctl,
        "#!/bin/sh\ncase \"$1 $2\" in \"set_vcard alice\") exec sleep 20;; esac\nexit 0\n",
    )
    .expect("script");
    std::fs::set_permissions(&ctl, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut cmd = xcauth(dir.path());
    cmd.args(["--url", &nc.url, "--db"])
        .arg(dir.path().join("xcauth.sqlite3"))
        .arg("--ejabberdctl")
        .arg(&ctl)
        .args(["--ejabberdctl-timeout", "1", "-R", "alice", "example.org"])
        .env("XCAUTH_SECRET", SECRET);
    let started = Instant::now();
    let out = run(cmd, b"");
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let err = text(&out.stderr);
    assert!(
        err.contains(r#"["set_vcard", "alice", "example.org", "FN", "Alice Liddell"] failed: no answer within 1s; killed"#),
        "{err}"
    );
    assert!(
        err.contains(r#"ejabberdctl ["srg_create""#),
        "the sync went on: {err}"
    );
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(15),
        "{took:?}"
    );
}

// ----- backend-concurrency -------------------------------------------------

/// A loopback JSXC API that counts requests in flight: each request is held
/// until `target` are in flight at once (then all are answered) or for at
/// most `hold`, then answered "is a user". One request per connection.
struct Counting {
    url: String,
    state: Arc<(Mutex<(usize, usize)>, Condvar)>,
}

impl Counting {
    fn start(target: usize, hold: Duration) -> Counting {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!(
            "http://{}/index.php/apps/ojsxc/ajax/externalApi.php",
            listener.local_addr().expect("addr")
        );
        let state = Arc::new((Mutex::new((0usize, 0usize)), Condvar::new()));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let state = Arc::clone(&shared);
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                    let mut length = 0usize;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let lower = line.to_ascii_lowercase();
                        if let Some(v) = lower.strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut body = vec![0; length];
                    let _ = reader.read_exact(&mut body);
                    let (lock, wake) = &*state;
                    let mut counts = lock.lock().expect("lock");
                    counts.0 += 1;
                    counts.1 = counts.1.max(counts.0);
                    wake.notify_all();
                    let until = Instant::now() + hold;
                    while counts.0 < target && counts.1 < target {
                        let left = until.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            break;
                        }
                        counts = wake.wait_timeout(counts, left).expect("wait").0;
                    }
                    counts.0 -= 1;
                    drop(counts);
                    let reply = r#"{"result":"success","data":{"isUser":true}}"#;
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                        reply.len()
                    );
                });
            }
        });
        Counting { url, state }
    }

    /// The most requests that were in flight at once.
    fn most_at_once(&self) -> usize {
        self.state.0.lock().expect("lock").1
    }
}

/// Sends `n` isuser requests for distinct users at once and waits for all
/// answers; returns the most requests in flight at the back end.
fn concurrent_isusers(n: usize, extra: &[&str]) -> usize {
    // Held at most 300 ms: four requests one at a time stay well within
    // the 2 s request timeout of Xcauth::start.
    let api = Counting::start(3, Duration::from_millis(300));
    let mut args = vec!["--cache-storage", "none"];
    args.extend_from_slice(extra);
    let mut x = Xcauth::start("generic", &api.url, &args);
    let requests: String = (0..n)
        .map(|i| format!("isuser:user{i}:example.org\n"))
        .collect();
    x.send(requests.as_bytes());
    for _ in 0..n {
        assert_eq!(x.read_line(Duration::from_secs(20)), "1\n");
    }
    let (_, ok) = x.finish();
    assert!(ok);
    api.most_at_once()
}

#[test]
fn backend_concurrency_limits_requests_in_flight() {
    assert_eq!(concurrent_isusers(4, &["--backend-concurrency", "2"]), 2);
    assert_eq!(concurrent_isusers(4, &["--backend-concurrency", "1"]), 1);
    // The default lets at least three through at once.
    assert!(concurrent_isusers(4, &[]) >= 3);
}
