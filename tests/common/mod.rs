//! Shared test support: start the stand-in Nextcloud and the real xcauth
//! binary as child processes on loopback, talk to them, and clean up even
//! when a test fails.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{mpsc, OnceLock};
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
        let mut child = Command::new(tool_bin("xcauth-standin"))
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

/// Path of a binary of the `xcauth-tools` package (`xcauth-standin`,
/// `xcauth-load`) in the target directory this test runs from.
///
/// They are not targets of this package, so cargo builds them for this
/// package's tests only under `cargo test --workspace`. When one is missing
/// or older than a source it is built from, `cargo build -p xcauth-tools`
/// runs, once per test process. The layout is cargo's usual
/// `TARGET/PROFILE/deps/TEST`; a build for another `--target` triple is not
/// looked for.
pub fn tool_bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let dir = profile_dir();
    let bin = dir.join(name);
    if is_stale(&bin) {
        if let Err(e) = BUILT.get_or_init(|| build_tools(&dir)) {
            panic!("{e}");
        }
    }
    bin
}

/// `TARGET/PROFILE`: the test executable sits in its `deps` folder.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test executable");
    exe.parent()
        .and_then(Path::parent)
        .expect("the test executable is in TARGET/PROFILE/deps")
        .to_path_buf()
}

/// Whether `bin` is missing or older than a manifest or Rust source of the
/// tools or of the xcauth library they use.
fn is_stale(bin: &Path) -> bool {
    let Ok(built) = std::fs::metadata(bin).and_then(|m| m.modified()) else {
        return true;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut newest = std::time::SystemTime::UNIX_EPOCH;
    for file in ["Cargo.toml", "Cargo.lock", "tools/Cargo.toml"] {
        newest_in(&root.join(file), &mut newest);
    }
    newest_in(&root.join("src"), &mut newest);
    newest_in(&root.join("tools/src"), &mut newest);
    newest > built
}

/// Raises `newest` to the modification time of `path`, or of the newest
/// `.rs` file below it when it is a folder.
fn newest_in(path: &Path, newest: &mut std::time::SystemTime) {
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
            let child = entry.path();
            if child.is_dir() || child.extension().is_some_and(|e| e == "rs") {
                newest_in(&child, newest);
            }
        }
    } else if let Ok(modified) = meta.modified() {
        *newest = (*newest).max(modified);
    }
}

/// Builds the tools' binaries into `dir` (`TARGET/PROFILE`) with the
/// profile of the running tests.
fn build_tools(dir: &Path) -> Result<(), String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-p", "xcauth-tools", "--bins", "--manifest-path"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"));
    if let Some(target) = dir.parent() {
        cmd.arg("--target-dir").arg(target);
    }
    match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(profile) => {
            cmd.args(["--profile", profile]);
        }
    }
    match cmd.status() {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(format!("cargo build -p xcauth-tools failed: {status}")),
        Err(e) => Err(format!("cannot run cargo to build xcauth-tools: {e}")),
    }
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
        logs_in(self.log_dir.path())
    }
}

/// Contents of `xcauth.log` and `xcauth.err` in the log folder `dir` so
/// far; a file not written yet counts as empty.
pub fn logs_in(dir: &Path) -> String {
    ["xcauth.log", "xcauth.err"]
        .iter()
        .map(|name| std::fs::read_to_string(dir.join(name)).unwrap_or_default())
        .collect()
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

// --- socket service (tests/e2e_sockets.rs) --------------------------------

/// A loopback TCP port that refuses connections for as long as this value
/// lives: a socket is bound to it but never listens. Unlike a port picked
/// and freed again, no other process can start listening there meanwhile.
pub struct RefusingPort {
    pub port: u16,
    _socket: std::os::fd::OwnedFd,
}

impl RefusingPort {
    pub fn new() -> RefusingPort {
        use nix::sys::socket::{bind, getsockname, socket, AddressFamily, SockFlag, SockType};
        use nix::sys::socket::{SockaddrIn, SockaddrLike};
        use std::os::fd::AsRawFd;
        let socket = socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .expect("TCP socket");
        bind(socket.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, 0)).expect("bind 127.0.0.1:0");
        let bound: SockaddrIn = getsockname(socket.as_raw_fd()).expect("bound address");
        assert_eq!(bound.family(), Some(AddressFamily::Inet));
        RefusingPort {
            port: bound.port(),
            _socket: socket,
        }
    }

    /// The JSXC API URL on this port.
    pub fn url(&self) -> String {
        format!(
            "http://127.0.0.1:{}/index.php/apps/ojsxc/ajax/externalApi.php",
            self.port
        )
    }
}

/// Polls `check` every 20 ms until it returns `Some`, or `None` once
/// `timeout` has passed.
pub fn poll<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A client connection to a socket xcauth serves, TCP or Unix. Reads give
/// up after 10 s (an error, so a test fails instead of hanging).
pub enum Conn {
    Tcp(TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl Conn {
    /// Connects to `addr`, retrying until it accepts or 10 s have passed.
    pub fn tcp(addr: &str) -> Conn {
        let stream = poll(Duration::from_secs(10), || TcpStream::connect(addr).ok())
            .unwrap_or_else(|| panic!("{addr} never accepted a connection"));
        Self::from_tcp(stream)
    }

    /// Wraps a connected TCP stream.
    pub fn from_tcp(stream: TcpStream) -> Conn {
        let conn = Conn::Tcp(stream);
        conn.set_timeout(Some(Duration::from_secs(10)));
        conn
    }

    /// Connects to the Unix socket at `path`, retrying until it accepts or
    /// 10 s have passed.
    pub fn unix(path: &Path) -> Conn {
        let stream = poll(Duration::from_secs(10), || {
            std::os::unix::net::UnixStream::connect(path).ok()
        })
        .unwrap_or_else(|| panic!("{} never accepted a connection", path.display()));
        Self::from_unix(stream)
    }

    /// Wraps a connected Unix stream.
    pub fn from_unix(stream: std::os::unix::net::UnixStream) -> Conn {
        let conn = Conn::Unix(stream);
        conn.set_timeout(Some(Duration::from_secs(10)));
        conn
    }

    /// Sets the read timeout.
    pub fn set_timeout(&self, timeout: Option<Duration>) {
        match self {
            Conn::Tcp(s) => s.set_read_timeout(timeout),
            Conn::Unix(s) => s.set_read_timeout(timeout),
        }
        .expect("set read timeout");
    }

    /// Writes all of `bytes`.
    pub fn send(&mut self, bytes: &[u8]) {
        self.write_all(bytes).expect("write to xcauth");
    }

    /// Reads exactly `n` bytes.
    pub fn read_n(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0u8; n];
        self.read_exact(&mut buf).expect("answer from xcauth");
        buf
    }

    /// Reads one line, newline included.
    pub fn line(&mut self) -> String {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while line.last() != Some(&b'\n') {
            self.read_exact(&mut byte).expect("answer line from xcauth");
            line.push(byte[0]);
        }
        String::from_utf8(line).expect("utf-8 answer line")
    }

    /// Reads one saslauthd answer (`OK success`, `NO ...`).
    pub fn sasl(&mut self) -> String {
        let len = self.read_n(2);
        let n = u16::from_be_bytes([len[0], len[1]]) as usize;
        String::from_utf8(self.read_n(n)).expect("utf-8 answer")
    }

    /// Does the peer close the stream (read returns end of file) within
    /// the read timeout, with no bytes before it?
    pub fn closed_by_peer(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(self.read(&mut byte), Ok(0))
    }

    /// Whether an answer byte arrives within `wait` (it is consumed).
    pub fn answers_within(&mut self, wait: Duration) -> bool {
        self.set_timeout(Some(wait));
        let mut byte = [0u8; 1];
        let got = matches!(self.read(&mut byte), Ok(1));
        self.set_timeout(Some(Duration::from_secs(10)));
        got
    }

    /// Closes the writing half: the server sees end of input.
    pub fn shutdown_write(&self) {
        let _ = match self {
            Conn::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
            Conn::Unix(s) => s.shutdown(std::net::Shutdown::Write),
        };
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.read(buf),
            Conn::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.write(buf),
            Conn::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Tcp(s) => s.flush(),
            Conn::Unix(s) => s.flush(),
        }
    }
}

/// Moves standard input, output and error to descriptors 3, 4, 5 and execs
/// the program with the systemd variables for them; the standard streams
/// become /dev/null.
const ACTIVATE: &str = r#"exec 3<&0 4>&1 5>&2 0</dev/null 1>/dev/null 2>/dev/null
export LISTEN_PID=$$ LISTEN_FDS=$XC_FDS
exec "$0" "$@""#;

/// A running xcauth serving sockets, logging at debug level into its own
/// directory; killed when dropped.
pub struct Served {
    pub child: Guard,
    pub log_dir: tempfile::TempDir,
}

impl Served {
    /// The base command: `xcauth -d --url URL -l LOGDIR` with [`SECRET`] in
    /// the environment and generous back-end timeouts. Standard streams are
    /// the caller's to set.
    pub fn command(url: &str, log_dir: &Path) -> Command {
        let mut cmd = Command::new(xcauth_bin());
        cmd.args(["-d", "--url", url, "--timeout", "5,10"])
            .arg("--log")
            .arg(log_dir)
            .env("XCAUTH_SECRET", SECRET);
        cmd
    }

    /// Spawns `cmd` (made by [`Served::command`] with `log_dir`).
    pub fn spawn(mut cmd: Command, log_dir: tempfile::TempDir) -> Served {
        let child = cmd.spawn().expect("start xcauth");
        Served {
            child: Guard(child),
            log_dir,
        }
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// Sends a signal (`TERM`, `HUP`, ...) by process id.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {}", self.pid());
    }

    /// Waits for the process to end, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        poll(timeout, || self.child.0.try_wait().ok().flatten())
    }

    /// Has the process ended already?
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.0.try_wait().ok().flatten()
    }

    /// Contents of xcauth.log and xcauth.err so far.
    pub fn logs(&self) -> String {
        logs_in(self.log_dir.path())
    }

    /// The logs once they contain `needle` (log lines are written by a
    /// background thread, so an answer may arrive before its line); after
    /// 10 s, whatever is there.
    pub fn logs_with(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let logs = self.logs();
            if logs.contains(needle) || std::time::Instant::now() > deadline {
                return logs;
            }
            std::thread::yield_now();
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Runs xcauth (made by [`Served::command`] for `url`, plus `extra`)
    /// socket-activated the way systemd does it: `fds` (one to three
    /// listening sockets the caller has bound) become descriptors 3.. named
    /// `names` (`LISTEN_FDNAMES`), with `LISTEN_PID` set to xcauth's own
    /// process id; its standard streams are /dev/null. A shell moves the
    /// descriptors into place and then execs xcauth, which keeps the
    /// shell's process id (`$$`).
    pub fn activate(
        url: &str,
        fds: Vec<std::os::fd::OwnedFd>,
        names: &str,
        extra: &[&str],
    ) -> Served {
        assert!(!fds.is_empty() && fds.len() <= 3);
        let count = fds.len();
        let log_dir = tempfile::tempdir().expect("log dir");
        let base = Served::command(url, log_dir.path());
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(ACTIVATE)
            .arg(base.get_program())
            .args(base.get_args())
            .args(extra)
            .env("XCAUTH_SECRET", SECRET)
            .env("XC_FDS", count.to_string())
            .env("LISTEN_FDNAMES", names);
        let mut fds = fds.into_iter();
        let mut next = || fds.next().map_or_else(Stdio::null, Stdio::from);
        cmd.stdin(next()).stdout(next()).stderr(next());
        Served::spawn(cmd, log_dir)
    }

    /// Like [`Served::activate`] (with `-t generic`) on one loopback TCP
    /// listener bound here on port 0; returns its address too.
    pub fn activate_generic(url: &str, extra: &[&str]) -> (Served, String) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("bound address").to_string();
        let args = [&["-t", "generic"], extra].concat();
        let served = Served::activate(url, vec![listener.into()], "generic", &args);
        (served, addr)
    }

    /// Runs xcauth (made by [`Served::command`] for `url`, plus `args`)
    /// with /dev/null as its standard streams, and waits until it logs
    /// `count` listening sockets; returns it with the TCP labels it logged
    /// (`127.0.0.1:PORT`), in the order of the options.
    pub fn start_listening(url: &str, args: &[&str], count: usize) -> (Served, Vec<String>) {
        let log_dir = tempfile::tempdir().expect("log dir");
        let mut cmd = Served::command(url, log_dir.path());
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut served = Served::spawn(cmd, log_dir);
        let labels = poll(Duration::from_secs(10), || {
            let labels = listening(&served.logs());
            if labels.len() >= count {
                Some(Some(labels))
            } else {
                served.exited().map(|_| None)
            }
        });
        let Some(Some(labels)) = labels else {
            panic!("xcauth did not start:\n{}", served.logs());
        };
        let tcp = labels
            .into_iter()
            .map(|(label, _)| label)
            .filter(|label| !label.starts_with("unix:"))
            .collect();
        (served, tcp)
    }

    /// Waits until the logs contain `text`, up to 10 s.
    pub fn log_has(&self, text: &str) -> bool {
        poll(Duration::from_secs(10), || {
            self.logs().contains(text).then_some(())
        })
        .is_some()
    }
}

/// LABEL and the rest of every "listening on LABEL (…)" line of `logs`.
pub fn listening(logs: &str) -> Vec<(String, String)> {
    logs.lines()
        .filter_map(|line| line.split_once("listening on "))
        .filter_map(|(_, rest)| rest.rsplit_once(" ("))
        .map(|(label, rest)| (label.to_owned(), rest.to_owned()))
        .collect()
}
