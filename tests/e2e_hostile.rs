//! End to end: the real `xcauth` binary against hostile surroundings: a
//! back end that answers every request with a huge body, directories on
//! the way to a Unix socket that another user controls, and log files that
//! others could read.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// A back end that answers every request with `200 OK` and a body of
/// `bytes` bytes of JSON-looking junk, written as fast as it is taken.
struct HugeReplies {
    addr: String,
}

impl HugeReplies {
    fn start(bytes: usize) -> HugeReplies {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                std::thread::spawn(move || {
                    // The request head (and a small body) in one read is
                    // enough: the answer does not depend on it.
                    let mut request = [0u8; 64 * 1024];
                    let _ = stream.read(&mut request);
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                         Content-Length: {bytes}\r\nConnection: close\r\n\r\n"
                    );
                    if stream.write_all(head.as_bytes()).is_err() {
                        return;
                    }
                    let chunk = vec![b' '; 64 * 1024];
                    let mut left = bytes;
                    while left > 0 {
                        let n = left.min(chunk.len());
                        if stream.write_all(&chunk[..n]).is_err() {
                            return;
                        }
                        left -= n;
                    }
                });
            }
        });
        HugeReplies { addr }
    }

    /// The JSXC API URL on this server.
    fn url(&self) -> String {
        format!("http://{}/apps/ojsxc/ajax/externalApi.php", self.addr)
    }
}

/// A `/proc/PID/status` field in kB.
fn status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in {status}"))
}

/// Starts xcauth on one generic Unix socket in a fresh directory.
fn serve_generic(url: &str, extra: &[&str]) -> (Served, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("s");
    let log_dir = tempfile::tempdir().expect("log dir");
    let mut cmd = Served::command(url, log_dir.path());
    cmd.arg("--listen")
        .arg(format!("generic=unix:{}", path.display()))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let served = Served::spawn(cmd, log_dir);
    assert!(served.log_has("listening on "), "{}", served.logs());
    (served, dir)
}

/// 64 logins at once, each answered by the back end with a 16 MiB body
/// (the most one reply may have): the bodies held at once stay within the
/// process-wide cap, so the process stays far below the gigabyte that 64
/// whole bodies take; every login gets the failure answer.
#[test]
fn huge_replies_from_a_hostile_back_end_stay_within_the_body_cap() {
    let hostile = HugeReplies::start(16 * 1024 * 1024 - 1024);
    let (served, dir) = serve_generic(&hostile.url(), &[]);
    let before = status_kb(served.pid(), "VmHWM");
    let mut conn = Conn::unix(&dir.path().join("s"));
    conn.set_timeout(Some(Duration::from_secs(60)));
    let requests: String = (0..64)
        .map(|i| format!("auth:user{i}:example.org:pw{i}\n"))
        .collect();
    conn.send(requests.as_bytes());
    for i in 0..64 {
        assert_eq!(conn.line(), "0\n", "login {i}");
    }
    let peak = status_kb(served.pid(), "VmHWM");
    eprintln!("hostile back end: VmHWM {before} kB before, {peak} kB after 64 huge replies");
    assert!(
        peak < before + 160 * 1024,
        "peak RSS {peak} kB (from {before} kB)"
    );
    assert!(served
        .logs_with("replies being read hold over")
        .contains("replies being read hold over 32 MiB"));
}

/// Runs `xcauth --listen generic=unix:PATH` and returns its exit status
/// and standard error, for socket paths that must be refused.
/// (A path it accepts is served: then the status is `None` after 10 s.)
fn refused(path: &std::path::Path) -> (Option<i32>, String) {
    let log_dir = tempfile::tempdir().expect("log dir");
    let child = Served::command("http://127.0.0.1:9/", log_dir.path())
        .arg("--listen")
        .arg(format!("generic=unix:{}", path.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run xcauth");
    let mut guard = Guard(child);
    let status = poll(Duration::from_secs(10), || {
        guard.0.try_wait().ok().flatten()
    });
    if status.is_none() {
        let _ = guard.0.kill();
    }
    let mut stderr = String::new();
    if let Some(mut err) = guard.0.stderr.take() {
        let _ = err.read_to_string(&mut stderr);
    }
    (status.and_then(|s| s.code()), stderr)
}

/// A socket whose parent is private but whose grandparent any user may
/// write (without the sticky bit) is refused: another user could rename
/// the parent away and put their own socket in its place. So is one below
/// a directory that belongs to another user.
#[test]
fn a_socket_below_a_directory_others_control_is_refused() {
    let top = tempfile::tempdir().expect("dir");
    std::fs::set_permissions(top.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let parent = top.path().join("run");
    std::fs::create_dir(&parent).expect("mkdir");
    std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let path = parent.join("xcauth.sock");
    let (code, stderr) = refused(&path);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("the directory {} ", top.path().display()))
            && stderr.contains("without the sticky bit"),
        "{stderr}"
    );
    assert!(!path.exists());

    if nix::unistd::geteuid().is_root() {
        // Owned by nobody (65534): not root, not us.
        let foreign = tempfile::tempdir().expect("dir");
        let parent = foreign.path().join("run");
        std::fs::create_dir(&parent).expect("mkdir");
        let status = Command::new("chown")
            .arg("65534")
            .arg(foreign.path())
            .status()
            .expect("chown");
        assert!(status.success());
        let (code, stderr) = refused(&parent.join("xcauth.sock"));
        assert_eq!(code, Some(2), "{stderr}");
        assert!(stderr.contains("belongs to uid 65534"), "{stderr}");
    }
}

/// Log files are created readable by their owner and group only (0640),
/// whatever the umask, and an existing world-readable one is narrowed.
#[test]
fn log_files_are_not_readable_by_others() {
    let nc = StandIn::start();
    let log_dir = tempfile::tempdir().expect("log dir");
    let existing = log_dir.path().join("xcauth.err");
    std::fs::write(&existing, b"").expect("old log");
    std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let base = Served::command(&nc.url, log_dir.path());
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "umask 000 && exec \"$0\" \"$@\""])
        .arg(base.get_program())
        .args(base.get_args())
        .args(["-t", "generic"])
        .env("XCAUTH_SECRET", SECRET)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("run xcauth");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(b"isuser:alice:example.org\n")
        .expect("request");
    drop(stdin);
    assert!(child.wait().expect("xcauth ends").success());
    for name in ["xcauth.log", "xcauth.err"] {
        let mode = std::fs::metadata(log_dir.path().join(name))
            .expect("log file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o640, "{name}: {:o}", mode & 0o777);
    }
}
