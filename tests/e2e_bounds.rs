//! End to end: the real `xcauth` binary holds its bounds against
//! misbehaving clients and refuses unsafe socket places: per-connection
//! byte budget, write timeout, requests served per socket, Unix socket
//! directories.

mod common;

use std::os::unix::fs::PermissionsExt;
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
