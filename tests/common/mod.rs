//! Shared test support: start the stand-in Nextcloud and the real xcauth
//! binary as child processes on loopback, talk to them, and clean up even
//! when a test fails.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The API secret every test uses unless it says otherwise.
pub const SECRET: &str = "test-secret-Zq9";

/// A child process killed when dropped.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The stand-in Nextcloud, running.
pub struct StandIn {
    pub url: String,
    pub addr: String,
    _child: Guard,
}

impl StandIn {
    /// Starts the stand-in with the repository's test users.
    pub fn start() -> StandIn {
        Self::start_with(&[])
    }

    /// Starts the stand-in with extra arguments.
    pub fn start_with(extra: &[&str]) -> StandIn {
        let users = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/users.txt");
        let mut child = Command::new(env!("CARGO_BIN_EXE_xcauth-standin"))
            .arg("--users")
            .arg(&users)
            .arg("--secret")
            .arg(SECRET)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start xcauth-standin");
        let stdout = child.stdout.take().expect("stand-in stdout");
        let guard = Guard(child);
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("stand-in prints its address");
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .expect("listening line")
            .to_owned();
        let addr = url
            .trim_start_matches("http://")
            .split('/')
            .next()
            .expect("host:port")
            .to_owned();
        StandIn {
            url,
            addr,
            _child: guard,
        }
    }

    /// POSTs `body` to a control path and returns the response body.
    pub fn control(&self, path: &str, body: &str) -> String {
        http(&self.addr, "POST", path, body)
    }

    /// Switches the stand-in's fault mode (`none`, `http500`, `hang`, ...).
    pub fn fault(&self, mode: &str) {
        self.control("/_standin/fault", mode);
    }

    /// Number of API requests received so far.
    pub fn requests(&self) -> u64 {
        let stats = http(&self.addr, "GET", "/_standin/stats", "");
        let v: serde_json::Value = serde_json::from_str(&stats).expect("stats JSON");
        v["requests"].as_u64().expect("requests count")
    }
}

/// A minimal HTTP/1.1 exchange over loopback; returns the body.
pub fn http(addr: &str, method: &str, path: &str, body: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect stand-in");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write request");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read response");
    resp.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

/// A running `xcauth -t PROTO` with pipes to talk to it.
pub struct Xcauth {
    pub stdin: Option<ChildStdin>,
    pub stdout: BufReader<ChildStdout>,
    pub child: Guard,
    pub log_dir: tempfile::TempDir,
}

/// Path of the xcauth binary under test.
pub fn xcauth_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_xcauth"))
}

impl Xcauth {
    /// Starts xcauth in `proto` mode against `url` with [`SECRET`], logging
    /// at debug level into a fresh directory.
    pub fn start(proto: &str, url: &str, extra: &[&str]) -> Xcauth {
        let log_dir = tempfile::tempdir().expect("log dir");
        let mut child = Command::new(xcauth_bin())
            .args(["-t", proto, "-d", "--url", url, "--timeout", "1,2"])
            .arg("--log")
            .arg(log_dir.path())
            .args(extra)
            .env("XCAUTH_SECRET", SECRET)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start xcauth");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Xcauth {
            stdin,
            stdout,
            child: Guard(child),
            log_dir,
        }
    }

    /// Writes raw bytes to xcauth's standard input.
    pub fn send(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).expect("write to xcauth");
        stdin.flush().expect("flush");
    }

    /// Reads exactly `n` bytes of answer, failing after `timeout`.
    pub fn read_exact(&mut self, n: usize, timeout: Duration) -> Vec<u8> {
        let mut buf = vec![0u8; n];
        with_timeout(timeout, || self.stdout.read_exact(&mut buf).map(|_| ()))
            .expect("answer from xcauth");
        buf
    }

    /// Reads one answer line (with its newline).
    pub fn read_line(&mut self, timeout: Duration) -> String {
        let mut line = String::new();
        with_timeout(timeout, || self.stdout.read_line(&mut line).map(|_| ()))
            .expect("answer line from xcauth");
        line
    }

    /// Closes standard input and waits for the process; returns everything
    /// else it wrote to standard output and its exit success.
    pub fn finish(&mut self) -> (Vec<u8>, bool) {
        drop(self.stdin.take());
        let mut rest = Vec::new();
        with_timeout(Duration::from_secs(10), || {
            self.stdout.read_to_end(&mut rest).map(|_| ())
        })
        .expect("xcauth ends after end of input");
        let status = self.child.0.wait().expect("wait xcauth");
        (rest, status.success())
    }

    /// Contents of xcauth.log and xcauth.err so far.
    pub fn logs(&self) -> String {
        let mut all = String::new();
        for name in ["xcauth.log", "xcauth.err"] {
            all.push_str(
                &std::fs::read_to_string(self.log_dir.path().join(name)).unwrap_or_default(),
            );
        }
        all
    }
}

/// Runs a blocking read on this thread but gives up (panics) after
/// `timeout`: a watchdog thread kills nothing, it only reports.
pub fn with_timeout<F>(timeout: Duration, f: F) -> std::io::Result<()>
where
    F: FnOnce() -> std::io::Result<()>,
{
    let (tx, rx) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if rx.recv_timeout(timeout).is_err() {
            eprintln!("watchdog: no answer within {timeout:?}");
            std::process::abort();
        }
    });
    let result = f();
    let _ = tx.send(());
    let _ = watchdog.join();
    result
}

/// One ejabberd frame.
pub fn ejabberd_frame(text: &str) -> Vec<u8> {
    let mut out = (text.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out
}

/// One saslauthd request of the given fields.
pub fn sasl_request(fields: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in fields {
        out.extend_from_slice(&(f.len() as u16).to_be_bytes());
        out.extend_from_slice(f);
    }
    out
}

/// Reads one saslauthd answer from `x`.
pub fn sasl_answer(x: &mut Xcauth) -> String {
    let len = x.read_exact(2, Duration::from_secs(10));
    let n = u16::from_be_bytes([len[0], len[1]]) as usize;
    String::from_utf8(x.read_exact(n, Duration::from_secs(10))).expect("utf-8 answer")
}

pub const YES: [u8; 4] = [0, 2, 0, 1];
pub const NO: [u8; 4] = [0, 2, 0, 0];
