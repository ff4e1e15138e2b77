//! End to end: the real `xcauth` binary holds its bounds against
//! misbehaving clients and refuses unsafe socket places: per-connection
//! byte budget, write timeout, requests served per socket, Unix socket
//! directories.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(10);

/// A `--listen` Unix socket in a directory anyone may write without the
/// sticky bit stops start-up with exit 2 and an error naming the path; in
/// a sticky directory (like /tmp) it is served.
#[test]
fn unix_socket_in_an_unsafe_directory_is_refused_at_start_up() {
    let open = tempfile::tempdir().expect("dir");
    std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let path = open.path().join("xcauth.sock");
    let log_dir = tempfile::tempdir().expect("log dir");
    let out = Served::command("http://127.0.0.1:9/", log_dir.path())
        .arg("--listen")
        .arg(format!("generic=unix:{}", path.display()))
        .stdin(Stdio::null())
        .output()
        .expect("run xcauth");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
    assert!(stderr.contains("sticky"), "{stderr}");
    assert!(!path.exists());

    let sticky = tempfile::tempdir().expect("dir");
    std::fs::set_permissions(sticky.path(), std::fs::Permissions::from_mode(0o1777))
        .expect("chmod");
    let path = sticky.path().join("xcauth.sock");
    let nc = StandIn::start();
    let log_dir = tempfile::tempdir().expect("log dir");
    let mut cmd = Served::command(&nc.url, log_dir.path());
    cmd.arg("--listen")
        .arg(format!("generic=unix:{}", path.display()))
        .args(["--socket-mode", "0600"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _served = Served::spawn(cmd, log_dir);
    let mut conn = Conn::unix(&path);
    let mode = std::fs::symlink_metadata(&path)
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o600);
    conn.send(b"isuser:alice:example.org\n");
    assert_eq!(conn.line(), "1\n");
    let _ = T;
}

/// A stand-in Nextcloud whose users all share one group with long display
/// names, so that one `roster` answer is about `members` × 150 bytes.
struct BigRoster {
    _child: Guard,
    url: String,
    _users: tempfile::NamedTempFile,
}

impl BigRoster {
    fn start(members: usize) -> BigRoster {
        use std::io::{BufRead, BufReader, Write};
        let mut users = tempfile::NamedTempFile::new().expect("users file");
        writeln!(users, "alice\talice-pw\tAlice Liddell\tbig").expect("write");
        writeln!(
            users,
            "xcauth-api\tapi-main-pw\tAPI account\t\tadmin\tapp-password=api-app-pw"
        )
        .expect("write");
        for i in 0..members {
            let name = format!("Member {i} {}", "x".repeat(100));
            writeln!(users, "member{i}\tpw{i}\t{name}\tbig").expect("write");
        }
        users.flush().expect("flush");
        let mut child = std::process::Command::new(tool_bin("xcauth-standin"))
            .arg("--users")
            .arg(users.path())
            .args(["--secret", SECRET, "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start xcauth-standin");
        let stdout = child.stdout.take().expect("stdout");
        let guard = Guard(child);
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("address");
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .expect("listening line")
            .to_owned();
        BigRoster {
            _child: guard,
            url,
            _users: users,
        }
    }

    /// The stand-in's root, for `backend=nextcloud`.
    fn root(&self) -> String {
        let host = self.url.trim_start_matches("http://");
        format!("http://{}", host.split('/').next().expect("host"))
    }
}

/// Options for the stock-Nextcloud back end with the API account of
/// [`BigRoster`], whose password is written into `dir`. Its rosters are
/// reused for `roster-ttl`, so a repeated roster request is answered at
/// once: the case where answers pile up fastest.
fn nextcloud_args(dir: &Path) -> Vec<String> {
    let file = dir.join("api-password");
    std::fs::write(&file, "api-app-pw\n").expect("api password");
    vec![
        "--backend".into(),
        "nextcloud".into(),
        "--api-user".into(),
        "xcauth-api".into(),
        "--api-password-file".into(),
        file.display().to_string(),
    ]
}

/// Starts xcauth on the Unix socket `path` (`generic` unless `spec` says
/// otherwise) with `extra` options; returns once it listens.
fn serve_unix(url: &str, specs: &[String], extra: &[&str]) -> Served {
    let log_dir = tempfile::tempdir().expect("log dir");
    let mut cmd = Served::command(url, log_dir.path());
    for spec in specs {
        cmd.arg("--listen").arg(spec);
    }
    cmd.args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let served = Served::spawn(cmd, log_dir);
    assert!(
        poll(T, || (served.logs().matches("listening on ").count()
            >= specs.len())
        .then_some(()))
        .is_some(),
        "xcauth did not start:\n{}",
        served.logs()
    );
    served
}

/// A `/proc/PID/status` field in kB (`VmRSS`, `VmHWM`).
fn status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in {status}"))
}

/// A client pipelines many `roster` requests (answers of about 300 kB
/// each) and reads nothing: xcauth stops at its byte budget instead of
/// making hundreds of answers (the in-flight limit alone would allow 256,
/// over 100 MB), and once the client reads, every request is answered.
/// Measured as the peak RSS (VmHWM) of the real process.
#[test]
fn pipelined_rosters_stay_within_the_byte_budget() {
    let nc = BigRoster::start(2000);
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("s");
    let mut extra = nextcloud_args(dir.path());
    extra.extend(["--write-timeout".into(), "10m".into()]);
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let served = serve_unix(
        &nc.root(),
        &[format!("generic=unix:{}", path.display())],
        &extra,
    );
    let mut conn = Conn::unix(&path);
    conn.set_timeout(Some(Duration::from_secs(60)));
    // Warm up: the first answer, and the memory one answer costs.
    conn.send(b"roster:alice:example.org\n");
    let one = conn.line().len();
    assert!(one > 250_000, "a large roster answer ({one} bytes)");
    let before = status_kb(served.pid(), "VmHWM");

    let n = 300;
    conn.send("roster:alice:example.org\n".repeat(n).as_bytes());
    assert!(
        served.log_has("the peer is not taking answers"),
        "xcauth waits for the peer:\n{}",
        served.logs()
    );
    let stalled = status_kb(served.pid(), "VmHWM");
    let mut answers = std::io::BufReader::with_capacity(1 << 20, conn);
    for i in 0..n {
        let mut line = Vec::new();
        std::io::BufRead::read_until(&mut answers, b'\n', &mut line).expect("answer");
        assert_eq!(line.len(), one, "answer {i}");
    }
    let after = status_kb(served.pid(), "VmHWM");
    eprintln!(
        "VmHWM kB: {before} after one answer, {stalled} while stalled, {after} after {n} answers; \
         one answer {one} bytes"
    );
    // The budget (1 MiB) and an answer that crosses it, plus four rosters
    // in the making and allocator slack; without the budget, the 256
    // answers the in-flight limit allows are over 75 MB.
    let grown = after.saturating_sub(before);
    assert!(grown < 24 * 1024, "peak RSS grew by {grown} kB");
}

/// A client on a socket that never reads its answers is closed after
/// `write-timeout`; xcauth goes on serving others.
#[test]
fn a_socket_client_that_never_reads_is_closed_after_the_write_timeout() {
    let nc = BigRoster::start(3000);
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("s");
    let served = serve_unix(
        &nc.url,
        &[format!("generic=unix:{}", path.display())],
        &["--write-timeout", "1s"],
    );
    let mut idle = Conn::unix(&path);
    idle.send("roster:alice:example.org\n".repeat(20).as_bytes());
    assert!(
        served.log_has("has read no answer for 1s (write-timeout)"),
        "{}",
        served.logs()
    );
    // What was sent before the close can still be read, then end of file:
    // far less than the 20 answers asked for.
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut idle, &mut got).expect("read to the end");
    assert!(
        got.len() < 20 * 400_000,
        "closed early ({} bytes)",
        got.len()
    );
    let mut other = Conn::unix(&path);
    other.send(b"isuser:alice:example.org\n");
    assert_eq!(other.line(), "1\n");
}

/// Standard output that nobody reads (a full pipe) ends the process after
/// `write-timeout`, instead of holding it for ever.
#[test]
fn a_full_standard_output_ends_the_process_after_the_write_timeout() {
    let nc = BigRoster::start(3000);
    let log_dir = tempfile::tempdir().expect("log dir");
    let mut child = Served::command(&nc.url, log_dir.path())
        .args(["-t", "generic", "--write-timeout", "1s"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start xcauth");
    let mut stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    std::io::Write::write_all(
        &mut stdin,
        "roster:alice:example.org\n".repeat(5).as_bytes(),
    )
    .expect("requests");
    let mut guard = Guard(child);
    let status = poll(Duration::from_secs(30), || {
        guard.0.try_wait().ok().flatten()
    })
    .expect("xcauth exits while its standard output is full");
    assert!(!status.success(), "{status:?}");
    let logs = logs_in(log_dir.path());
    assert!(logs.contains("(write-timeout)"), "{logs}");
    drop((stdin, stdout));
}

/// `--listen PROTO:REQUESTS=ADDR` answers only those requests there; the
/// others get the failure answer and a log line. The same server's other
/// socket answers everything.
#[test]
fn a_socket_answers_only_the_requests_it_is_given() {
    let nc = StandIn::start();
    let dir = tempfile::tempdir().expect("dir");
    let public = dir.path().join("public.sock");
    let full = dir.path().join("full.sock");
    let mail = dir.path().join("postfix.sock");
    let served = serve_unix(
        &nc.url,
        &[
            format!("generic:auth=unix:{}", public.display()),
            format!("generic=unix:{}", full.display()),
            format!("postfix:isuser=unix:{}", mail.display()),
        ],
        &[],
    );
    assert!(served.logs().contains("(generic; serving auth only)"));
    let mut conn = Conn::unix(&public);
    conn.send(b"auth:alice:example.org:alice-pw\n");
    assert_eq!(conn.line(), "1\n");
    let before = nc.requests();
    conn.send(b"isuser:alice:example.org\nroster:alice:example.org\nauth:alice:example.org:x\n");
    assert_eq!(conn.line(), "0\n", "isuser refused");
    assert_eq!(conn.line(), "0\n", "roster refused");
    assert_eq!(conn.line(), "0\n", "a wrong password is still wrong");
    assert_eq!(
        nc.requests(),
        before + 1,
        "refused requests never reach the back end"
    );
    served.logs_with("refused request: isuser: not served on this socket");
    let logs = served.logs_with("refused request: roster: not served on this socket");
    assert!(
        logs.contains("refused request: isuser: not served on this socket"),
        "{logs}"
    );
    assert!(
        logs.contains("refused request: roster: not served on this socket"),
        "{logs}"
    );

    let mut conn = Conn::unix(&full);
    conn.send(b"isuser:alice:example.org\nroster:alice:example.org\n");
    assert_eq!(conn.line(), "1\n");
    assert!(conn.line().contains("Bob Builder"));

    let mut conn = Conn::unix(&mail);
    conn.send(b"get alice@example.org\n");
    assert!(conn.line().starts_with("200 "));

    // A set the protocol cannot carry is a usage error.
    let log_dir = tempfile::tempdir().expect("log dir");
    let out = Served::command(&nc.url, log_dir.path())
        .arg("--listen")
        .arg(format!(
            "postfix:auth=unix:{}",
            dir.path().join("x").display()
        ))
        .stdin(Stdio::null())
        .output()
        .expect("run xcauth");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("postfix carries only isuser"));
}
