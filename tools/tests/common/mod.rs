//! Starting the stand-in for its own tests.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

/// The repository's test users.
pub const USERS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/users.txt");

/// Starts the stand-in with the test users, `secret` and `extra`, and reads
/// its start-up line: the child, its address and the API path it named.
/// The caller owns the child (and kills it when done).
pub fn spawn_standin(secret: &str, extra: &[&str]) -> (Child, SocketAddr, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_xcauth-standin"))
        .args(["--users", USERS, "--secret", secret])
        .args(extra)
        .env_remove("XCAUTH_STANDIN_SECRET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start xcauth-standin");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    let read = BufReader::new(stdout).read_line(&mut line);
    let parsed = read.ok().and_then(|_| {
        let rest = line.trim_end().strip_prefix("listening on http://")?;
        let (addr, path) = rest.split_once('/')?;
        Some((addr.parse().ok()?, format!("/{path}")))
    });
    match parsed {
        Some((addr, path)) => (child, addr, path),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("unexpected start-up line {line:?}");
        }
    }
}
