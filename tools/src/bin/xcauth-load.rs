//! End-to-end load tool: drives the real `xcauth` binary and reports requests per second, latency percentiles, start-up time and memory.
//!
//! What it measures (see BENCHMARKS.md for the commands and results):
//! - over standard input/output, like ejabberd and Prosody run the helper:
//!   `--style pipelined` (a writer thread sends everything while the reader
//!   collects answers: throughput), `--style pingpong` (one request, wait
//!   for its answer, next: latency) and `--style startup` (process start to
//!   first answer);
//! - over sockets (`--connect ADDR` or `--spawn-listen`): N connections, each
//!   ping-pong in its own thread like Prosody's module, giving logins/s and
//!   latency; `--idle N` opens N idle connections and reports xcauth's RSS.
//!
//! Absolute numbers on a small, shared machine mean little, so the tool
//! measures its own same-run baselines: `--baseline` runs the identical
//! measurement against a trivial responder (this program with the hidden
//! `--echo PROTO`: blocking reads, success for every request), and for the
//! back-end kinds against the stand-in Nextcloud directly (signed HTTP
//! requests with a keep-alive client; with `--backend nextcloud` the OCS
//! GET with Basic auth that xcauth makes). Baseline and xcauth alternate in
//! `--rounds` blocks, so drift of the machine hits both alike.
//! `--style counted` reads the stand-in's request counters around each
//! request: Nextcloud requests by the answer and in total.
//!
//! `--standin PATH` starts the stand-in Nextcloud (`xcauth-standin`) itself,
//! with `--users` and the `--secret`, and stops it at the end.
//!
//! `--style storm` is the login storm after a restart: `--storm-users`
//! distinct users (2 000 by default), each with a fresh entry in the db
//! cache at bcrypt cost 12 (one hash shared by all, so seeding is quick; the
//! memo is per user, so it is cold for every one of them), log in at once,
//! each on its own connection, to a freshly started xcauth. With
//! `--storm-backend up` the stand-in answers; with `down` it is stopped
//! before xcauth starts (connections refused). Reported: the time until
//! every login is answered, each login's wait, xcauth's peak RSS and the
//! back-end requests.
#![forbid(unsafe_code)]

use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, ValueEnum};
use xcauth::backend::jsxc::{encode_body, sign, Operation as Query, SIGNATURE_HEADER};
use xcauth::secret::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Proto {
    Ejabberd,
    Generic,
    Saslauthd,
    Postfix,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Style {
    /// Send everything, collect answers concurrently (throughput).
    Pipelined,
    /// One request, wait for its answer, next (latency).
    Pingpong,
    /// Start the process, send one request, time the first answer; repeated.
    Startup,
    /// One request at a time, reading the stand-in's request count before
    /// it, right after its answer and once no request came for a quiet
    /// period: Nextcloud requests per request on the answer path and in
    /// total (background work such as roster sync included; needs
    /// --standin).
    Counted,
    /// The login storm after a restart (see --storm-users; needs --standin).
    Storm,
}

/// Whether the back end answers during `--style storm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StormBackend {
    /// The stand-in answers.
    Up,
    /// The stand-in is stopped before xcauth starts: connections refused.
    Down,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Kind {
    /// JSXC time-limited tokens (checked locally).
    Token,
    /// Passwords the back end must check (needs --url or --standin).
    Password,
    /// `isuser` queries (needs --url or --standin; the only kind for postfix).
    Isuser,
    /// Repeated logins of one user served from the db cache at bcrypt cost
    /// 12 (needs --standin; xcauth gets --cache-storage db on a new file).
    Cached,
}

/// Which API of the (stand-in) Nextcloud xcauth asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Api {
    /// The JSXC app's external API (signed form POSTs).
    Jsxc,
    /// Stock Nextcloud's OCS APIs (Basic auth; the API account for isuser
    /// and rosters).
    Nextcloud,
}

/// Where xcauth keeps the cache for `--kind cached`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CacheWhere {
    Db,
    Memory,
}

/// The name clap shows for a value (`ejabberd`, `pingpong`, …).
fn name<T: ValueEnum>(value: T) -> String {
    value
        .to_possible_value()
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default()
}

/// Load generator and benchmark driver for xcauth.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The xcauth binary to start.
    #[arg(long, default_value = "target/release/xcauth")]
    xcauth: PathBuf,
    /// Protocol to speak.
    #[arg(long, value_enum, default_value = "ejabberd")]
    protocol: Proto,
    /// Sending style on standard input (ignored for socket modes).
    #[arg(long, value_enum, default_value = "pipelined")]
    style: Style,
    /// What to ask.
    #[arg(long, value_enum, default_value = "token")]
    kind: Kind,
    /// Number of requests (or starts, for `startup`), per measured process;
    /// in socket mode the total over all connections.
    #[arg(long, default_value_t = 100_000)]
    requests: usize,
    /// Round trips before measuring (ping-pong; per connection in socket
    /// mode the warm-up is 3).
    #[arg(long, default_value_t = 100)]
    warmup: usize,
    /// Also measure the same-run baselines: the trivial echo responder, and
    /// for back-end kinds the stand-in Nextcloud asked directly.
    #[arg(long)]
    baseline: bool,
    /// With --baseline: how many alternating blocks the requests are split
    /// into (baseline, xcauth, baseline, xcauth, …).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// API secret (tokens are made with it; passed to xcauth and the
    /// stand-in by file).
    #[arg(long, default_value = "load-secret")]
    secret: String,
    /// Which back-end kind xcauth is started with (`--backend`); with
    /// nextcloud, --url is the Nextcloud base URL and the direct baseline
    /// asks the OCS API as xcauth does.
    #[arg(long, value_enum, default_value = "jsxc")]
    backend: Api,
    /// nextcloud: the API account handed to xcauth (its password by file).
    #[arg(long, default_value = "xcauth-api")]
    api_user: String,
    /// nextcloud: the API account's (app) password.
    #[arg(long, default_value = "xcauth-api-app")]
    api_password: String,
    /// API URL of a (stand-in) Nextcloud, for the back-end kinds (the base
    /// URL with --backend nextcloud).
    #[arg(long, default_value = "http://127.0.0.1:9/unused")]
    url: String,
    /// Start this stand-in Nextcloud (target/release/xcauth-standin) and use
    /// its URL instead of --url.
    #[arg(long, value_name = "PATH")]
    standin: Option<PathBuf>,
    /// User table for the stand-in.
    #[arg(long, value_name = "FILE", default_value = "testdata/users.txt")]
    users: PathBuf,
    /// Latency of the started stand-in before each answer, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    standin_latency_ms: u64,
    /// User for the password, isuser and cached kinds.
    #[arg(long, default_value = "alice")]
    user: String,
    /// Password for the password and cached kinds.
    #[arg(long, default_value = "alice-pw")]
    password: String,
    /// Domain of every request.
    #[arg(long, default_value = "example.org")]
    domain: String,
    /// Log directory handed to xcauth (a temporary one by default).
    #[arg(long)]
    log_dir: Option<PathBuf>,
    /// Socket mode: connect to a running xcauth at `host:port` or
    /// `unix:PATH`.
    #[arg(long, value_name = "ADDR")]
    connect: Option<String>,
    /// Socket mode: start xcauth with `--listen PROTO=127.0.0.1:PORT` on a
    /// free port and connect to it.
    #[arg(long, conflicts_with = "connect")]
    spawn_listen: bool,
    /// Socket mode: concurrent connections, each ping-pong in its own thread.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Socket mode: run for this many seconds instead of --requests.
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Socket mode: open this many connections, one request on each, leave
    /// them idle and report xcauth's RSS before and after.
    #[arg(long, value_name = "N")]
    idle: Option<usize>,
    /// Process id of the xcauth behind --connect, for the RSS of --idle.
    #[arg(long)]
    pid: Option<u32>,
    /// Cached kind: where xcauth keeps the cache (`db` on a new file, or
    /// `memory`); bcrypt cost 12 either way.
    #[arg(long, value_enum, default_value = "db")]
    cache_storage: CacheWhere,
    /// Cached kind: how many in-process bcrypt cost-12 checks to time for
    /// the comparison line.
    #[arg(long, default_value_t = 5)]
    bcrypt_samples: usize,
    /// Run xcauth, the echo responder and the stand-in on these CPUs
    /// (`taskset -c LIST`). With this tool itself pinned elsewhere (e.g.
    /// `taskset -c 0 xcauth-load --child-cpus 1`) every round trip crosses
    /// CPUs, which makes the wake-up cost the same for each run instead of
    /// depending on where the scheduler happens to place the processes.
    #[arg(long, value_name = "LIST")]
    child_cpus: Option<String>,
    /// Storm: how many distinct users log in at once.
    #[arg(long, default_value_t = 2000)]
    storm_users: usize,
    /// Start xcauth with its database file already there (empty), as on
    /// an installed system: the failure guard then counts every login in
    /// it, shared with other processes, and not only in memory.
    #[arg(long)]
    with_db_file: bool,
    /// Storm: whether the stand-in answers (`up`) or is stopped (`down`).
    #[arg(long, value_enum, default_value = "up")]
    storm_backend: StormBackend,
    /// Hidden: act as the trivial responder for PROTO on stdin/stdout.
    #[arg(long, value_enum, hide = true, value_name = "PROTO")]
    echo: Option<Proto>,
    /// Extra arguments for xcauth.
    #[arg(last = true)]
    extra: Vec<String>,
}

impl Args {
    fn label(&self) -> String {
        match self.kind {
            Kind::Cached => format!(
                "{} cached({})",
                name(self.protocol),
                name(self.cache_storage)
            ),
            kind => format!("{} {}", name(self.protocol), name(kind)),
        }
    }

    fn asks_backend(&self) -> bool {
        self.kind != Kind::Token
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(proto) = args.echo {
        return echo(proto);
    }
    if args.style == Style::Storm {
        return run_storm(&args);
    }
    if args.kind == Kind::Cached && args.standin.is_none() {
        bail!("--kind cached needs --standin PATH (the tool checks that no login reaches the back end)");
    }
    let standin = match &args.standin {
        Some(path) => Some(Standin::start(&args, path, &args.users)?),
        None => None,
    };
    let url = standin
        .as_ref()
        .map(|s| match args.backend {
            Api::Jsxc => s.api_url.clone(),
            Api::Nextcloud => s.base.clone(),
        })
        .unwrap_or_else(|| args.url.clone());
    let expiry = u32::try_from(now_unix() + 3600).unwrap_or(u32::MAX);
    let requests: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..args.requests.clamp(1, 10_000))
            .map(|i| request(&args, i, expiry))
            .collect(),
    );
    let ctx = Ctx {
        args: &args,
        url,
        requests,
        standin: standin.as_ref(),
    };
    let socket_mode = args.connect.is_some() || args.spawn_listen;
    let result = if args.idle.is_some() {
        run_idle(&ctx)
    } else if socket_mode {
        run_sockets(&ctx)
    } else {
        match args.style {
            Style::Pipelined => run_pipelined(&ctx),
            Style::Pingpong => run_pingpong(&ctx),
            Style::Startup => run_startup(&ctx),
            Style::Counted => run_counted(&ctx),
            Style::Storm => unreachable!("handled before"),
        }
    };
    if let Some(standin) = standin {
        standin.stop();
    }
    result
}

/// What every measurement needs.
struct Ctx<'a> {
    args: &'a Args,
    /// The URL xcauth (and the direct baseline) use: the JSXC API URL, or
    /// the Nextcloud base URL.
    url: String,
    /// Wire bytes of the requests, used round-robin.
    requests: Arc<Vec<Vec<u8>>>,
    standin: Option<&'a Standin>,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------
// Requests and answers on the wire
// ---------------------------------------------------------------------------

/// Length-prefixed field, as ejabberd and saslauthd clients write it.
fn push_field(out: &mut Vec<u8>, field: &[u8]) {
    let len = u16::try_from(field.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&field[..usize::from(len)]);
}

/// The wire bytes of request number `i`.
fn request(args: &Args, i: usize, expiry: u32) -> Vec<u8> {
    let (user, password) = match args.kind {
        Kind::Token => {
            let user = format!("user{}", i % 1000);
            let token = xcauth::token::make(args.secret.as_bytes(), &user, &args.domain, expiry);
            (user, token)
        }
        Kind::Password | Kind::Isuser | Kind::Cached => (args.user.clone(), args.password.clone()),
    };
    let text = match args.kind {
        Kind::Isuser => format!("isuser:{user}:{}", args.domain),
        _ => format!("auth:{user}:{}:{password}", args.domain),
    };
    match args.protocol {
        Proto::Ejabberd => {
            let mut out = Vec::new();
            push_field(&mut out, text.as_bytes());
            out
        }
        Proto::Generic => format!("{text}\n").into_bytes(),
        Proto::Saslauthd => {
            let mut out = Vec::new();
            for field in [
                user.as_str(),
                password.as_str(),
                "imap",
                args.domain.as_str(),
            ] {
                push_field(&mut out, field.as_bytes());
            }
            out
        }
        Proto::Postfix => format!("get {user}@{}\n", args.domain).into_bytes(),
    }
}

/// Reads one answer; true when it says success.
fn answer(proto: Proto, out: &mut impl BufRead) -> Result<bool> {
    match proto {
        Proto::Ejabberd => {
            let mut buf = [0u8; 4];
            out.read_exact(&mut buf).context("reading an answer")?;
            Ok(buf == [0, 2, 0, 1])
        }
        Proto::Saslauthd => {
            let mut len = [0u8; 2];
            out.read_exact(&mut len).context("reading an answer")?;
            let mut text = vec![0u8; usize::from(u16::from_be_bytes(len))];
            out.read_exact(&mut text).context("reading an answer")?;
            Ok(text.starts_with(b"OK"))
        }
        Proto::Generic | Proto::Postfix => {
            let mut line = Vec::new();
            if out.read_until(b'\n', &mut line)? == 0 {
                bail!("the peer closed its output");
            }
            Ok(line == b"1\n" || line.starts_with(b"200 "))
        }
    }
}

/// The trivial responder: blocking reads on stdin, the success answer of
/// `proto` (the same bytes xcauth sends) for every complete request, exit
/// at end of input. Answers are flushed when no further input is buffered,
/// so pipelined requests get batched answers like xcauth's.
fn echo(proto: Proto) -> Result<()> {
    let mut input = BufReader::with_capacity(64 * 1024, io::stdin().lock());
    let mut output = BufWriter::with_capacity(64 * 1024, io::stdout().lock());
    let success: &[u8] = match proto {
        Proto::Ejabberd => &[0, 2, 0, 1],
        Proto::Generic => b"1\n",
        Proto::Saslauthd => b"\x00\x0aOK success",
        Proto::Postfix => b"200 OK\n",
    };
    let mut scratch = Vec::with_capacity(1024);
    loop {
        let complete = match proto {
            Proto::Ejabberd => read_field(&mut input, &mut scratch)? && !scratch.is_empty(),
            Proto::Saslauthd => {
                let mut all = true;
                for _ in 0..4 {
                    all = all && read_field(&mut input, &mut scratch)?;
                }
                all
            }
            Proto::Generic | Proto::Postfix => {
                scratch.clear();
                input.read_until(b'\n', &mut scratch)? > 0 && scratch.ends_with(b"\n")
            }
        };
        if !complete {
            output.flush()?;
            return Ok(());
        }
        output.write_all(success)?;
        if input.buffer().is_empty() {
            output.flush()?;
        }
    }
}

/// Reads one length-prefixed field into `buf`; false at end of input.
fn read_field(input: &mut impl Read, buf: &mut Vec<u8>) -> Result<bool> {
    let mut len = [0u8; 2];
    match input.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
        Err(e) => return Err(e.into()),
    }
    buf.resize(usize::from(u16::from_be_bytes(len)), 0);
    match input.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e.into()),
    }
}

// ---------------------------------------------------------------------------
// Processes: xcauth, the echo responder, the stand-in
// ---------------------------------------------------------------------------

/// A command for `program`, run by `taskset -c LIST` when --child-cpus is
/// given (taskset execs it, so the process id is the program's).
fn child_command(args: &Args, program: &Path) -> Command {
    match &args.child_cpus {
        Some(cpus) => {
            let mut cmd = Command::new("taskset");
            cmd.arg("-c").arg(cpus).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

/// The xcauth command line shared by every mode: protocol, back end, secret
/// by file, logs, and an empty config file and absent database so nothing
/// of the machine's own set-up (/etc/xcauth.conf, /var/lib/xcauth) leaks in.
fn xcauth_command(ctx: &Ctx, dir: &Path) -> Result<Command> {
    let args = ctx.args;
    let secret_file = dir.join("secret");
    std::fs::write(&secret_file, &args.secret)?;
    let config_file = dir.join("xcauth.conf");
    std::fs::write(&config_file, "")?;
    let log_dir = args.log_dir.clone().unwrap_or_else(|| dir.to_owned());
    let mut cmd = child_command(args, &args.xcauth);
    cmd.arg("-c")
        .arg(&config_file)
        .arg("-t")
        .arg(name(args.protocol))
        .arg("--url")
        .arg(&ctx.url)
        .arg("--secret-file")
        .arg(&secret_file)
        .arg("--log")
        .arg(&log_dir)
        .arg("--db")
        .arg(dir.join("xcauth.sqlite3"));
    if args.with_db_file {
        std::fs::File::create(dir.join("xcauth.sqlite3"))?;
    }
    if args.backend == Api::Nextcloud {
        let api_password_file = dir.join("api-password");
        std::fs::write(&api_password_file, &args.api_password)?;
        cmd.args(["--backend", "nextcloud", "--api-user"])
            .arg(&args.api_user)
            .arg("--api-password-file")
            .arg(&api_password_file);
    }
    if args.kind == Kind::Cached {
        cmd.arg("--cache-storage")
            .arg(name(args.cache_storage))
            .args(["--cache-bcrypt-rounds", "12"]);
    }
    cmd.args(&args.extra);
    Ok(cmd)
}

/// A process answering on its stdin/stdout: xcauth or the echo responder.
struct Piped {
    label: String,
    proto: Proto,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    requests: Arc<Vec<Vec<u8>>>,
    dir: tempfile::TempDir,
}

impl Piped {
    fn spawn(label: &str, mut cmd: Command, ctx: &Ctx, dir: tempfile::TempDir) -> Result<Piped> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {label} ({:?})", cmd.get_program()))?;
        let stdin = child.stdin.take().context("no stdin")?;
        let stdout = BufReader::with_capacity(64 * 1024, child.stdout.take().context("no stdout")?);
        Ok(Piped {
            label: label.to_owned(),
            proto: ctx.args.protocol,
            child,
            stdin: Some(stdin),
            stdout,
            requests: Arc::clone(&ctx.requests),
            dir,
        })
    }

    fn xcauth(ctx: &Ctx) -> Result<Piped> {
        let dir = tempfile::tempdir()?;
        let cmd = xcauth_command(ctx, dir.path())?;
        Piped::spawn("xcauth", cmd, ctx, dir)
    }

    /// This program as the trivial responder (`--echo PROTO`).
    fn echo_command(ctx: &Ctx) -> Result<Command> {
        let exe = std::env::current_exe().context("finding this program for --echo")?;
        let mut cmd = child_command(ctx.args, &exe);
        cmd.arg("--echo").arg(name(ctx.args.protocol));
        Ok(cmd)
    }

    fn echo(ctx: &Ctx) -> Result<Piped> {
        Piped::spawn("echo", Piped::echo_command(ctx)?, ctx, tempfile::tempdir()?)
    }

    fn send(&mut self, bytes: &[u8]) -> Result<()> {
        let stdin = self.stdin.as_mut().context("stdin already closed")?;
        stdin.write_all(bytes)?;
        stdin.flush()?;
        Ok(())
    }

    /// Closes stdin, waits for the exit; returns the peak RSS in KiB.
    fn finish(mut self) -> Result<Option<u64>> {
        let rss = proc_status_kib(self.child.id(), "VmHWM:");
        drop(self.stdin.take());
        let status = self.child.wait()?;
        if !status.success() {
            bail!("{} exited with {status}", self.label);
        }
        Ok(rss)
    }
}

/// One measured round trip at a time, whatever is on the other side.
trait RoundTrip {
    fn label(&self) -> &str;
    /// Request number `i`; true when the answer is a success.
    fn round_trip(&mut self, i: usize) -> Result<bool>;
}

impl RoundTrip for Piped {
    fn label(&self) -> &str {
        &self.label
    }

    fn round_trip(&mut self, i: usize) -> Result<bool> {
        let requests = Arc::clone(&self.requests);
        self.send(&requests[i % requests.len()])?;
        answer(self.proto, &mut self.stdout)
    }
}

/// Asks `kill` to send SIGTERM (a graceful stop), waits up to 10 s, then
/// kills outright.
fn terminate(child: &mut Child) -> Result<ExitStatus> {
    let asked = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if asked {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        eprintln!(
            "warning: process {} ignored SIGTERM; killing it",
            child.id()
        );
    }
    child.kill()?;
    Ok(child.wait()?)
}

/// The stand-in Nextcloud, started for this run.
struct Standin {
    child: std::cell::RefCell<Child>,
    /// The external API URL it printed.
    api_url: String,
    /// `http://ADDR` for the control endpoints.
    base: String,
    _stdout: BufReader<ChildStdout>,
    _dir: tempfile::TempDir,
}

impl Standin {
    fn start(args: &Args, path: &Path, users: &Path) -> Result<Standin> {
        let dir = tempfile::tempdir()?;
        let secret_file = dir.path().join("secret");
        std::fs::write(&secret_file, &args.secret)?;
        let mut child = child_command(args, path)
            .arg("--users")
            .arg(users)
            .arg("--secret-file")
            .arg(&secret_file)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--latency-ms")
            .arg(args.standin_latency_ms.to_string())
            // Nextcloud's brute-force throttle would slow down the runs
            // with wrong passwords; xcauth's address is allowlisted, as
            // docs/nextcloud.md recommends.
            .args(["--bruteforce-allowlist", "127.0.0.0/8"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting the stand-in {}", path.display()))?;
        let mut stdout = BufReader::new(child.stdout.take().context("no stdout")?);
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let Some(api_url) = line.trim_end().strip_prefix("listening on ") else {
            let _ = child.kill();
            bail!("the stand-in did not say where it listens (got {line:?})");
        };
        let parsed = url::Url::parse(api_url).context("the stand-in's URL")?;
        let base = parsed.origin().ascii_serialization();
        Ok(Standin {
            child: std::cell::RefCell::new(child),
            api_url: api_url.to_owned(),
            base,
            _stdout: stdout,
            _dir: dir,
        })
    }

    /// The stand-in's counters (`GET /_standin/stats`).
    fn stats(&self, http: &Http) -> Result<serde_json::Value> {
        let text = http.get_text(&format!("{}/_standin/stats", self.base))?;
        Ok(serde_json::from_str(&text)?)
    }

    /// Requests the stand-in has received on its APIs (JSXC and OCS) so far.
    fn requests(&self, http: &Http) -> Result<u64> {
        let stats = self.stats(http)?;
        stats["nextcloud_requests"]
            .as_u64()
            .ok_or_else(|| anyhow!("stand-in stats without a request count: {stats}"))
    }

    fn stop(self) {
        if let Err(e) = terminate(&mut self.child.borrow_mut()) {
            eprintln!("warning: stopping the stand-in: {e}");
        }
    }
}

/// A stand-in left running by an error is killed.
impl Drop for Standin {
    fn drop(&mut self) {
        let child = self.child.get_mut();
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A keep-alive HTTP client on a single-threaded runtime, for the direct
/// baseline and the stand-in's control endpoints.
struct Http {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
}

impl Http {
    fn new() -> Result<Http> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        // Like xcauth's client: no redirects, the same user agent.
        let client = reqwest::Client::builder()
            .user_agent(xcauth::backend::USER_AGENT)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Http { runtime, client })
    }

    fn get_text(&self, url: &str) -> Result<String> {
        self.runtime.block_on(async {
            let response = self.client.get(url).send().await?;
            Ok(response.text().await?)
        })
    }
}

/// One API request, as xcauth sends it for this run's back end and kind:
/// a signed JSXC form POST, or an OCS GET with Basic auth.
#[derive(Clone)]
struct ApiCall {
    url: String,
    api: Api,
    api_user: String,
    api_password: String,
    kind: Kind,
    user: String,
    domain: String,
    password: String,
    secret: String,
}

impl ApiCall {
    fn new(ctx: &Ctx) -> ApiCall {
        let args = ctx.args;
        ApiCall {
            url: ctx.url.clone(),
            api: args.backend,
            api_user: args.api_user.clone(),
            api_password: args.api_password.clone(),
            kind: args.kind,
            user: args.user.clone(),
            domain: args.domain.clone(),
            password: args.password.clone(),
            secret: args.secret.clone(),
        }
    }

    /// Sends it with `client`; true for a success answer.
    async fn send(&self, client: &reqwest::Client) -> Result<bool> {
        match self.api {
            Api::Jsxc => self.send_jsxc(client).await,
            Api::Nextcloud => self.send_ocs(client).await,
        }
    }

    /// The OCS request of `backend::nextcloud`: the password check as the
    /// user, existence with the API account; the status decides.
    async fn send_ocs(&self, client: &reqwest::Client) -> Result<bool> {
        use xcauth::backend::nextcloud::segment;
        let base = self.url.trim_end_matches('/');
        let (url, login, password) = match self.kind {
            Kind::Isuser => (
                format!(
                    "{base}/ocs/v2.php/cloud/users/{}?format=json",
                    segment(&self.user)
                ),
                &self.api_user,
                &self.api_password,
            ),
            _ => (
                format!("{base}/ocs/v2.php/cloud/user?format=json"),
                &self.user,
                &self.password,
            ),
        };
        let response = client
            .get(url)
            .basic_auth(login, Some(password))
            .header("OCS-APIRequest", "true")
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await?;
        let status = response.status();
        response.bytes().await?;
        Ok(status == reqwest::StatusCode::OK)
    }

    async fn send_jsxc(&self, client: &reqwest::Client) -> Result<bool> {
        // Encoded and signed per request, as xcauth does.
        let query = match self.kind {
            Kind::Isuser => Query::IsUser,
            _ => Query::Auth(Secret::new(self.password.clone())),
        };
        let body = encode_body(&query, &self.user, &self.domain);
        let signature = sign(body.as_bytes(), self.secret.as_bytes());
        let response = client
            .post(self.url.as_str())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await?;
        let status = response.status();
        let reply = response.bytes().await?;
        let success: &[u8] = br#"{"result":"success""#;
        Ok(status == reqwest::StatusCode::OK && reply.starts_with(success))
    }
}

/// The stand-in asked directly, one request at a time.
struct Direct {
    http: Http,
    call: ApiCall,
}

impl RoundTrip for Direct {
    fn label(&self) -> &str {
        "stand-in direct"
    }

    fn round_trip(&mut self, _i: usize) -> Result<bool> {
        self.http
            .runtime
            .block_on(self.call.send(&self.http.client))
    }
}

fn proc_status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

// ---------------------------------------------------------------------------
// Statistics
// ---------------------------------------------------------------------------

/// Latency percentiles of one series.
struct Summary {
    n: usize,
    min: Duration,
    p50: Duration,
    p90: Duration,
    p99: Duration,
    max: Duration,
}

impl Summary {
    fn of(mut lat: Vec<Duration>) -> Summary {
        lat.sort_unstable();
        let at = |p: f64| -> Duration {
            if lat.is_empty() {
                return Duration::ZERO;
            }
            let idx = ((lat.len() - 1) as f64 * p).round() as usize;
            lat[idx.min(lat.len() - 1)]
        };
        Summary {
            n: lat.len(),
            min: at(0.0),
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            max: at(1.0),
        }
    }

    fn print(&self, label: &str) {
        println!(
            "{label}: n={} min={:.1}us p50={:.1}us p90={:.1}us p99={:.1}us max={:.1}us",
            self.n,
            us(self.min),
            us(self.p50),
            us(self.p90),
            us(self.p99),
            us(self.max),
        );
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// `A p50 - B p50 = D us (ratio R)`.
fn print_difference(what: &str, a: (&str, Duration), b: (&str, Duration)) {
    let ratio = if b.1.is_zero() {
        f64::NAN
    } else {
        a.1.as_secs_f64() / b.1.as_secs_f64()
    };
    println!(
        "{what}: {} p50 {:.1}us - {} p50 {:.1}us = {:+.1}us (ratio {ratio:.2})",
        a.0,
        us(a.1),
        b.0,
        us(b.1),
        us(a.1) - us(b.1),
    );
}

fn warn_failures(label: &str, failed: usize) {
    if failed > 0 {
        eprintln!("warning: {label}: {failed} requests got a failure answer");
    }
}

// ---------------------------------------------------------------------------
// Standard input/output modes
// ---------------------------------------------------------------------------

/// Sends `n` requests from a writer thread while this thread reads the
/// answers; returns the elapsed time and the number of successes.
fn pipelined_round(target: &mut Piped, n: usize) -> Result<(Duration, usize)> {
    let mut stdin = target.stdin.take().context("stdin already closed")?;
    let batch = Arc::clone(&target.requests);
    let t0 = Instant::now();
    let writer = std::thread::spawn(move || -> io::Result<ChildStdin> {
        let mut buf = Vec::with_capacity(64 * 1024);
        for i in 0..n {
            buf.extend_from_slice(&batch[i % batch.len()]);
            if buf.len() >= 32 * 1024 {
                stdin.write_all(&buf)?;
                buf.clear();
            }
        }
        stdin.write_all(&buf)?;
        stdin.flush()?;
        Ok(stdin)
    });
    let mut ok = 0usize;
    for _ in 0..n {
        if answer(target.proto, &mut target.stdout)? {
            ok += 1;
        }
    }
    let elapsed = t0.elapsed();
    target.stdin = Some(
        writer
            .join()
            .map_err(|_| anyhow!("writer thread panicked"))??,
    );
    Ok((elapsed, ok))
}

fn run_pipelined(ctx: &Ctx) -> Result<()> {
    let args = ctx.args;
    let mut targets = Vec::new();
    if args.baseline {
        targets.push(Piped::echo(ctx)?);
    }
    targets.push(Piped::xcauth(ctx)?);
    // Warm up: one round trip each, so start-up is not measured.
    for t in &mut targets {
        t.round_trip(0)?;
    }
    let rounds = if args.baseline { args.rounds.max(1) } else { 1 };
    let mut totals = vec![(Duration::ZERO, 0usize, 0usize); targets.len()];
    for round in 0..rounds {
        let size = round_size(args.requests, rounds, round);
        for (t, total) in targets.iter_mut().zip(&mut totals) {
            let (elapsed, ok) = pipelined_round(t, size)?;
            total.0 += elapsed;
            total.1 += size;
            total.2 += ok;
        }
    }
    let mut rates = Vec::new();
    for (t, (elapsed, n, ok)) in targets.iter().zip(&totals) {
        let rate = *n as f64 / elapsed.as_secs_f64();
        println!(
            "{} pipelined {}: {n} requests in {:.3}s = {rate:.0} requests/s ({ok} successes)",
            args.label(),
            t.label,
            elapsed.as_secs_f64(),
        );
        warn_failures(&t.label, n - ok);
        rates.push(rate);
    }
    if let [echo, xcauth] = rates[..] {
        println!(
            "{} pipelined: xcauth/echo throughput ratio {:.2}",
            args.label(),
            xcauth / echo
        );
    }
    finish_all(targets)
}

/// Ends every process; prints xcauth's peak RSS.
fn finish_all(targets: Vec<Piped>) -> Result<()> {
    for t in targets {
        let label = t.label.clone();
        let rss = t.finish()?;
        if label == "xcauth" {
            if let Some(kib) = rss {
                println!("xcauth peak RSS: {:.1} MiB", mib(kib));
            }
        }
    }
    Ok(())
}

/// Requests in block `round` of `rounds` when `n` are split as evenly as
/// possible.
fn round_size(n: usize, rounds: usize, round: usize) -> usize {
    n / rounds + usize::from(round < n % rounds)
}

/// Warm-up, then `n` timed round trips per subject, in `rounds` blocks
/// alternating between the subjects. Returns (latencies, failures) per
/// subject.
fn pingpong(
    subjects: &mut [&mut dyn RoundTrip],
    n: usize,
    warmup: usize,
    rounds: usize,
) -> Result<Vec<(Vec<Duration>, usize)>> {
    for s in subjects.iter_mut() {
        for i in 0..warmup {
            s.round_trip(i)?;
        }
    }
    let mut out: Vec<(Vec<Duration>, usize)> = subjects
        .iter()
        .map(|_| (Vec::with_capacity(n), 0))
        .collect();
    let mut first = warmup;
    for round in 0..rounds {
        let size = round_size(n, rounds, round);
        for (s, (lat, failed)) in subjects.iter_mut().zip(&mut out) {
            for i in first..first + size {
                let t = Instant::now();
                let ok = s.round_trip(i)?;
                lat.push(t.elapsed());
                if !ok {
                    *failed += 1;
                }
            }
        }
        first += size;
    }
    Ok(out)
}

/// Cached kind: one login through the back end seeds the entry; then
/// waits until xcauth has stored it. For the db cache that is seen in the
/// file; the memory cache is probed with a login every 100 ms until one
/// does not reach the back end (each premature probe starts another
/// cost-12 hash, so probing faster would only pile them up).
fn seed_cache(ctx: &Ctx, xcauth: &mut Piped, http: &Http) -> Result<()> {
    if !xcauth.round_trip(0)? {
        bail!("the seeding login was refused; is the user in the stand-in's table?");
    }
    let standin = ctx.standin.context("--kind cached needs --standin")?;
    let db = xcauth.dir.path().join("xcauth.sqlite3");
    let jid = format!("{}@{}", ctx.args.user, ctx.args.domain);
    let t0 = Instant::now();
    loop {
        let stored = match ctx.args.cache_storage {
            CacheWhere::Db => {
                rusqlite::Connection::open_with_flags(
                    &db,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
                )
                .and_then(|c| {
                    c.query_row(
                        "SELECT count(*) FROM authcache WHERE jid = ?1",
                        [&jid],
                        |row| row.get::<_, i64>(0),
                    )
                })
                .unwrap_or(0)
                    > 0
            }
            CacheWhere::Memory => {
                std::thread::sleep(Duration::from_millis(100));
                let before = standin.requests(http)?;
                let ok = xcauth.round_trip(0)?;
                ok && standin.requests(http)? == before
            }
        };
        if stored {
            println!(
                "cache seeded: {jid} stored ({} cache, bcrypt cost 12) within {:.0} ms of the first login",
                name(ctx.args.cache_storage),
                t0.elapsed().as_secs_f64() * 1e3
            );
            return Ok(());
        }
        if t0.elapsed() > Duration::from_secs(60) {
            bail!("xcauth did not store the cache entry within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Times `samples` in-process bcrypt cost-12 checks; returns their p50.
fn bcrypt_verify_p50(password: &str, samples: usize) -> Result<Duration> {
    let hash = bcrypt::hash(password, 12)?;
    let mut lat = Vec::new();
    for _ in 0..samples.max(1) {
        let t = Instant::now();
        let ok = bcrypt::verify(password, &hash)?;
        lat.push(t.elapsed());
        if !ok {
            bail!("bcrypt did not verify its own hash");
        }
    }
    let summary = Summary::of(lat);
    println!(
        "bcrypt cost-12 verify in-process: n={} min={:.1}ms p50={:.1}ms max={:.1}ms",
        summary.n,
        summary.min.as_secs_f64() * 1e3,
        summary.p50.as_secs_f64() * 1e3,
        summary.max.as_secs_f64() * 1e3,
    );
    Ok(summary.p50)
}

fn run_pingpong(ctx: &Ctx) -> Result<()> {
    let args = ctx.args;
    let http = Http::new()?;
    let mut xcauth = Piped::xcauth(ctx)?;
    if args.kind == Kind::Cached {
        seed_cache(ctx, &mut xcauth, &http)?;
    }
    let mut echo = if args.baseline {
        Some(Piped::echo(ctx)?)
    } else {
        None
    };
    let mut direct = if args.baseline && args.asks_backend() && args.kind != Kind::Cached {
        Some(Direct {
            http: Http::new()?,
            call: ApiCall::new(ctx),
        })
    } else {
        None
    };
    let backend_before = match ctx.standin {
        Some(s) => Some(s.requests(&http)?),
        None => None,
    };

    let mut subjects: Vec<&mut dyn RoundTrip> = Vec::new();
    if let Some(e) = echo.as_mut() {
        subjects.push(e);
    }
    if let Some(d) = direct.as_mut() {
        subjects.push(d);
    }
    subjects.push(&mut xcauth);
    let labels: Vec<String> = subjects.iter().map(|s| s.label().to_owned()).collect();
    let rounds = if args.baseline { args.rounds.max(1) } else { 1 };
    let results = pingpong(&mut subjects, args.requests, args.warmup, rounds)?;
    drop(subjects);

    let mut p50 = Vec::new();
    for (label, (lat, failed)) in labels.iter().zip(results) {
        let summary = Summary::of(lat);
        summary.print(&format!("{} ping-pong {label}", args.label()));
        warn_failures(label, failed);
        p50.push((label.as_str(), summary.p50));
    }
    let find = |l: &str| p50.iter().find(|(label, _)| *label == l).copied();
    if let Some(x) = find("xcauth") {
        if let Some(e) = find("echo") {
            print_difference("added by xcauth over the pipe round trip", x, e);
        }
        if let Some(d) = find("stand-in direct") {
            print_difference("back-end overhead of xcauth (target <= 200us)", x, d);
        }
    }
    if let (Some(standin), Some(before)) = (ctx.standin, backend_before) {
        let after = standin.requests(&http)?;
        println!(
            "back-end requests during the measurement (xcauth and direct): {}",
            after - before
        );
    }
    if args.kind == Kind::Cached {
        let bcrypt = bcrypt_verify_p50(&args.password, args.bcrypt_samples)?;
        if let Some((_, hit)) = find("xcauth") {
            println!(
                "cache hit p50 {:.1}us vs one bcrypt cost-12 verify {:.1}ms: {:.0}x faster",
                us(hit),
                bcrypt.as_secs_f64() * 1e3,
                bcrypt.as_secs_f64() / hit.as_secs_f64()
            );
        }
    }
    let mut targets = Vec::new();
    targets.extend(echo);
    targets.push(xcauth);
    finish_all(targets)
}

/// Process start to first answer, `--requests` times; with --baseline the
/// echo responder is started alternately, giving the floor of spawning a
/// process and one pipe round trip.
fn run_startup(ctx: &Ctx) -> Result<()> {
    let args = ctx.args;
    let mut xcauth = Vec::with_capacity(args.requests);
    let mut echo = Vec::with_capacity(args.requests);
    let mut peak = 0;
    for _ in 0..args.requests {
        if args.baseline {
            let cmd = Piped::echo_command(ctx)?;
            let t = Instant::now();
            let mut target = Piped::spawn("echo", cmd, ctx, tempfile::tempdir()?)?;
            target.round_trip(0)?;
            echo.push(t.elapsed());
            target.finish()?;
        }
        // The temporary files are written before the clock starts.
        let dir = tempfile::tempdir()?;
        let cmd = xcauth_command(ctx, dir.path())?;
        let t = Instant::now();
        let mut target = Piped::spawn("xcauth", cmd, ctx, dir)?;
        target.round_trip(0)?;
        xcauth.push(t.elapsed());
        peak = peak.max(target.finish()?.unwrap_or(0));
    }
    let label = format!("{} start to first answer", args.label());
    let x = Summary::of(xcauth);
    if args.baseline {
        let e = Summary::of(echo);
        e.print(&format!("{label} echo"));
        x.print(&format!("{label} xcauth"));
        print_difference(
            "start-up added by xcauth",
            ("xcauth", x.p50),
            ("echo", e.p50),
        );
    } else {
        x.print(&format!("{label} xcauth"));
    }
    println!(
        "xcauth peak RSS (largest of the starts): {:.1} MiB",
        mib(peak)
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Socket modes
// ---------------------------------------------------------------------------

/// A TCP or Unix stream.
enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn connect(addr: &str) -> io::Result<Stream> {
        match addr.strip_prefix("unix:") {
            Some(path) => UnixStream::connect(path).map(Stream::Unix),
            None => {
                let tcp = TcpStream::connect(addr)?;
                tcp.set_nodelay(true)?;
                Ok(Stream::Tcp(tcp))
            }
        }
    }

    fn try_clone(&self) -> io::Result<Stream> {
        match self {
            Stream::Tcp(s) => s.try_clone().map(Stream::Tcp),
            Stream::Unix(s) => s.try_clone().map(Stream::Unix),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Unix(s) => s.flush(),
        }
    }
}

/// One client connection doing ping-pong.
struct Conn {
    proto: Proto,
    reader: BufReader<Stream>,
    writer: Stream,
}

impl Conn {
    fn open(addr: &str, proto: Proto) -> Result<Conn> {
        let stream = Stream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
        Ok(Conn {
            proto,
            writer: stream.try_clone()?,
            reader: BufReader::new(stream),
        })
    }

    fn round_trip(&mut self, request: &[u8]) -> Result<bool> {
        self.writer.write_all(request)?;
        answer(self.proto, &mut self.reader)
    }
}

/// xcauth started with its own listener on a free loopback port.
struct Listening {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Listening {
    fn spawn(ctx: &Ctx) -> Result<Listening> {
        Listening::spawn_in(ctx, tempfile::tempdir()?, &[])
    }

    /// xcauth in `dir` (its database is `dir/xcauth.sqlite3`), with
    /// `extra` arguments.
    fn spawn_in(ctx: &Ctx, dir: tempfile::TempDir, extra: &[&str]) -> Result<Listening> {
        // Ask the kernel for a free port, then hand it to xcauth.
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr = format!("127.0.0.1:{port}");
        let mut cmd = xcauth_command(ctx, dir.path())?;
        let child = cmd
            .args(extra)
            .arg("--listen")
            .arg(format!("{}={addr}", name(ctx.args.protocol)))
            .args(["--shutdown-timeout", "2s"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", ctx.args.xcauth.display()))?;
        let mut listening = Listening {
            child,
            addr,
            _dir: dir,
        };
        // A tool, not a test: poll until the port answers.
        let t0 = Instant::now();
        while TcpStream::connect(&listening.addr).is_err() {
            if let Some(status) = listening.child.try_wait()? {
                bail!("xcauth exited before listening: {status}");
            }
            if t0.elapsed() > Duration::from_secs(10) {
                bail!("xcauth did not listen on {} within 10 s", listening.addr);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(listening)
    }

    fn stop(mut self) -> Result<()> {
        let status = terminate(&mut self.child)?;
        if !status.success() {
            bail!("xcauth exited with {status}");
        }
        Ok(())
    }
}

/// An xcauth left running by an error is killed.
impl Drop for Listening {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the socket modes connect, and the xcauth they started, if any.
fn socket_target(ctx: &Ctx) -> Result<(String, Option<Listening>)> {
    match &ctx.args.connect {
        Some(addr) => Ok((addr.clone(), None)),
        None => {
            let listening = Listening::spawn(ctx)?;
            Ok((listening.addr.clone(), Some(listening)))
        }
    }
}

/// Result of one concurrent run.
struct LoadResult {
    elapsed: Duration,
    tally: Tally,
}

/// When the workers of a concurrent run stop: once `duration` is over, or
/// (without a duration) once `total` requests were handed out among them.
struct Budget {
    deadline: Option<Instant>,
    tickets: Arc<AtomicUsize>,
    total: usize,
}

impl Budget {
    /// A budget whose duration, if any, starts now; `tickets` is shared by
    /// every worker of the run.
    fn start(duration: Option<Duration>, tickets: &Arc<AtomicUsize>, total: usize) -> Budget {
        Budget {
            deadline: duration.map(|d| Instant::now() + d),
            tickets: Arc::clone(tickets),
            total,
        }
    }

    /// Whether the worker sends one more request.
    fn take(&self) -> bool {
        match self.deadline {
            Some(d) => Instant::now() < d,
            None => self.tickets.fetch_add(1, Ordering::Relaxed) < self.total,
        }
    }
}

/// Latencies and failed logins of one worker, or of a whole run.
#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    failed: usize,
}

impl Tally {
    /// One request that started at `started` and succeeded or not.
    fn record(&mut self, started: Instant, ok: bool) {
        self.latencies.push(started.elapsed());
        if !ok {
            self.failed += 1;
        }
    }

    fn add(&mut self, other: Tally) {
        self.latencies.extend(other.latencies);
        self.failed += other.failed;
    }
}

/// Connections ping-pong until `duration` is over or `total` requests are
/// done; each connection first makes 3 warm-up round trips.
fn socket_load(ctx: &Ctx, addr: &str, duration: Option<Duration>) -> Result<LoadResult> {
    let args = ctx.args;
    let n = args.connections.max(1);
    // Connect everything first, so a refused connection fails the run
    // before any thread waits on the barrier.
    let conns = (0..n)
        .map(|_| Conn::open(addr, args.protocol))
        .collect::<Result<Vec<_>>>()?;
    let barrier = Arc::new(Barrier::new(n + 1));
    let tickets = Arc::new(AtomicUsize::new(0));
    let total = args.requests;
    let mut threads = Vec::new();
    for (c, mut conn) in conns.into_iter().enumerate() {
        let (barrier, tickets, requests) = (
            Arc::clone(&barrier),
            Arc::clone(&tickets),
            Arc::clone(&ctx.requests),
        );
        threads.push(std::thread::spawn(move || -> Result<Tally> {
            let warm: Result<()> = (0..3).try_for_each(|w| {
                conn.round_trip(&requests[(c + w) % requests.len()])
                    .map(drop)
            });
            barrier.wait();
            warm?;
            let budget = Budget::start(duration, &tickets, total);
            let mut tally = Tally::default();
            let mut i = c;
            while budget.take() {
                let t = Instant::now();
                let ok = conn.round_trip(&requests[i % requests.len()])?;
                tally.record(t, ok);
                i += n;
            }
            Ok(tally)
        }));
    }
    barrier.wait();
    let t0 = Instant::now();
    let mut tally = Tally::default();
    let mut errors = Vec::new();
    for t in threads {
        match t.join() {
            Ok(Ok(one)) => tally.add(one),
            Ok(Err(e)) => errors.push(e),
            Err(_) => errors.push(anyhow!("a connection thread panicked")),
        }
    }
    let elapsed = t0.elapsed();
    if let Some(e) = errors.into_iter().next() {
        return Err(e);
    }
    Ok(LoadResult { elapsed, tally })
}

/// Same-run baseline for socket mode: the stand-in asked directly by as
/// many concurrent clients (tasks sharing one keep-alive pool).
fn direct_load(ctx: &Ctx, duration: Option<Duration>) -> Result<LoadResult> {
    let args = ctx.args;
    let http = Http::new()?;
    let n = args.connections.max(1);
    let call = ApiCall::new(ctx);
    let tickets = Arc::new(AtomicUsize::new(0));
    let total = args.requests;
    let client = http.client.clone();
    let (elapsed, tally) = http.runtime.block_on(async move {
        // Warm the pool: three requests per client, concurrently.
        let mut warm = tokio::task::JoinSet::new();
        for _ in 0..n {
            let (client, call) = (client.clone(), call.clone());
            warm.spawn(async move {
                for _ in 0..3 {
                    call.send(&client).await?;
                }
                Ok::<_, anyhow::Error>(())
            });
        }
        while let Some(joined) = warm.join_next().await {
            joined.map_err(|e| anyhow!("client task failed: {e}"))??;
        }
        let t0 = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..n {
            let (client, call) = (client.clone(), call.clone());
            let budget = Budget::start(duration, &tickets, total);
            set.spawn(async move {
                let mut tally = Tally::default();
                while budget.take() {
                    let t = Instant::now();
                    let ok = call.send(&client).await?;
                    tally.record(t, ok);
                }
                Ok::<_, anyhow::Error>(tally)
            });
        }
        let mut tally = Tally::default();
        while let Some(joined) = set.join_next().await {
            tally.add(joined.map_err(|e| anyhow!("client task failed: {e}"))??);
        }
        Ok::<_, anyhow::Error>((t0.elapsed(), tally))
    })?;
    Ok(LoadResult { elapsed, tally })
}

fn print_load(label: &str, result: LoadResult) -> f64 {
    let n = result.tally.latencies.len();
    let rate = n as f64 / result.elapsed.as_secs_f64();
    println!(
        "{label}: {n} logins in {:.3}s = {rate:.0} logins/s",
        result.elapsed.as_secs_f64()
    );
    warn_failures(label, result.tally.failed);
    Summary::of(result.tally.latencies).print(&format!("{label} latency"));
    rate
}

fn run_sockets(ctx: &Ctx) -> Result<()> {
    let args = ctx.args;
    let duration = args.duration.map(Duration::from_secs_f64);
    let (addr, listening) = socket_target(ctx)?;
    let conns = args.connections.max(1);
    let label = format!("{} {conns} connections", args.label());
    let direct = if args.baseline && args.asks_backend() && args.kind != Kind::Cached {
        Some(print_load(
            &format!("{label} stand-in direct"),
            direct_load(ctx, duration)?,
        ))
    } else {
        None
    };
    let rate = print_load(
        &format!("{label} xcauth"),
        socket_load(ctx, &addr, duration)?,
    );
    if let Some(direct) = direct {
        println!(
            "{label}: xcauth/direct throughput ratio {:.2}",
            rate / direct
        );
    }
    if args.standin.is_some() && args.standin_latency_ms > 0 && args.asks_backend() {
        let bound = conns as f64 * 1000.0 / args.standin_latency_ms as f64;
        println!(
            "{label}: bound connections/latency = {bound:.0} logins/s; xcauth reached {:.0}%",
            100.0 * rate / bound
        );
    }
    if let Some(listening) = listening {
        if let Some(kib) = proc_status_kib(listening.child.id(), "VmHWM:") {
            println!("xcauth peak RSS: {:.1} MiB", mib(kib));
        }
        listening.stop()?;
    }
    Ok(())
}

fn run_idle(ctx: &Ctx) -> Result<()> {
    let args = ctx.args;
    let n = args.idle.unwrap_or(0);
    if args.connect.is_none() && !args.spawn_listen {
        bail!("--idle needs --spawn-listen, or --connect ADDR with --pid PID");
    }
    let (addr, listening) = socket_target(ctx)?;
    let pid = match (&listening, args.pid) {
        (Some(l), _) => l.child.id(),
        (None, Some(pid)) => pid,
        (None, None) => bail!("--idle with --connect needs --pid of that xcauth for its RSS"),
    };
    let rss = || proc_status_kib(pid, "VmRSS:").context("cannot read the RSS of xcauth");
    let before = rss()?;
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        // One request on each, so xcauth has accepted it and set up its
        // per-connection state before RSS is read.
        let mut conn = Conn::open(&addr, args.protocol)?;
        if !conn.round_trip(&ctx.requests[i % ctx.requests.len()])? {
            bail!("the request on idle connection {i} failed");
        }
        conns.push(conn);
    }
    let after = rss()?;
    println!(
        "{} idle connections: xcauth RSS {:.1} MiB before, {:.1} MiB with them open (+{:.1} KiB per connection)",
        n,
        mib(before),
        mib(after),
        (after.saturating_sub(before)) as f64 / n.max(1) as f64
    );
    drop(conns);
    if let Some(listening) = listening {
        listening.stop()?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Nextcloud requests per request
// ---------------------------------------------------------------------------

/// Every request the stand-in counted, by API endpoint (OCS) or operation
/// (JSXC).
fn requests_by_endpoint(stats: &serde_json::Value) -> std::collections::BTreeMap<String, u64> {
    let ocs = stats["ocs"]["by_endpoint"]
        .as_object()
        .into_iter()
        .flatten();
    let jsxc = stats["by_operation"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(op, n)| (format!("jsxc {op}"), n));
    ocs.map(|(k, n)| (k.clone(), n))
        .chain(jsxc)
        .map(|(k, n)| (k, n.as_u64().unwrap_or(0)))
        .collect()
}

fn total_requests(stats: &serde_json::Value) -> u64 {
    stats["nextcloud_requests"].as_u64().unwrap_or(0)
}

/// Reads the stand-in's stats until no request arrived for `quiet`.
fn settled_stats(standin: &Standin, http: &Http, quiet: Duration) -> Result<serde_json::Value> {
    let mut stats = standin.stats(http)?;
    loop {
        std::thread::sleep(quiet);
        let again = standin.stats(http)?;
        if total_requests(&again) == total_requests(&stats) {
            return Ok(again);
        }
        stats = again;
    }
}

/// Nextcloud requests of one request: counted by the time its answer was
/// read, and in total once background work settled.
#[derive(Default, Clone, Copy)]
struct Cost {
    by_answer: u64,
    total: u64,
}

fn print_costs(label: &str, costs: &[Cost]) {
    if costs.is_empty() {
        return;
    }
    let mean = |f: fn(&Cost) -> u64| costs.iter().map(f).sum::<u64>() as f64 / costs.len() as f64;
    let max = |f: fn(&Cost) -> u64| costs.iter().map(f).max().unwrap_or(0);
    println!(
        "{label}: n={} Nextcloud requests by the answer mean {:.2} max {}; in total mean {:.2} max {}",
        costs.len(),
        mean(|c| c.by_answer),
        max(|c| c.by_answer),
        mean(|c| c.total),
        max(|c| c.total),
    );
}

/// `--style counted`: one request at a time; before it, right after its
/// answer and once the stand-in got no request for a quiet period (3×
/// its latency + 100 ms) the tool reads the stand-in's counters. A request
/// counted "by the answer" arrived before the answer was read: the
/// answer's own requests, and any background request that raced it.
fn run_counted(ctx: &Ctx) -> Result<()> {
    let args = ctx.args;
    let standin = ctx
        .standin
        .context("--style counted needs --standin PATH")?;
    let http = Http::new()?;
    let mut xcauth = Piped::xcauth(ctx)?;
    if args.kind == Kind::Cached {
        seed_cache(ctx, &mut xcauth, &http)?;
    }
    let quiet = Duration::from_millis(100 + 3 * args.standin_latency_ms);
    let mut before = settled_stats(standin, &http, quiet)?;
    let mut costs = Vec::with_capacity(args.requests);
    let mut latencies = Vec::with_capacity(args.requests);
    let mut failed = 0;
    let mut endpoints: std::collections::BTreeMap<String, Cost> = Default::default();
    for i in 0..args.requests {
        let t = Instant::now();
        let ok = xcauth.round_trip(i)?;
        latencies.push(t.elapsed());
        failed += usize::from(!ok);
        let at_answer = standin.stats(&http)?;
        let settled = settled_stats(standin, &http, quiet)?;
        costs.push(Cost {
            by_answer: total_requests(&at_answer) - total_requests(&before),
            total: total_requests(&settled) - total_requests(&before),
        });
        let old = requests_by_endpoint(&before);
        let count = |now: &serde_json::Value, key: &str| {
            requests_by_endpoint(now).get(key).copied().unwrap_or(0)
                - old.get(key).copied().unwrap_or(0)
        };
        for key in requests_by_endpoint(&settled).keys() {
            let cost = endpoints.entry(key.clone()).or_default();
            cost.by_answer += count(&at_answer, key);
            cost.total += count(&settled, key);
        }
        before = settled;
    }
    let label = format!("{} counted", args.label());
    warn_failures(&label, failed);
    let latency = Summary::of(latencies);
    latency.print(&format!("{label} latency"));
    if args.standin_latency_ms > 0 {
        println!(
            "{label}: answer p50 = {:.2} x the stand-in's latency of {} ms",
            latency.p50.as_secs_f64() * 1e3 / args.standin_latency_ms as f64,
            args.standin_latency_ms
        );
    }
    print_costs(&format!("{label} first"), &costs[..costs.len().min(1)]);
    print_costs(
        &format!("{label} the others"),
        costs.get(1..).unwrap_or(&[]),
    );
    for (endpoint, cost) in endpoints.iter().filter(|(_, c)| c.total > 0) {
        println!(
            "{label}   {endpoint}: {} by the answers, {} in total",
            cost.by_answer, cost.total
        );
    }
    finish_all(vec![xcauth])
}

// ---------------------------------------------------------------------------
// The login storm after a restart
// ---------------------------------------------------------------------------

/// The password of every storm user.
const STORM_PASSWORD: &str = "storm-pw";

/// How long one storm login may take before the run counts it as lost.
const STORM_ANSWER_WITHIN: Duration = Duration::from_secs(1800);

fn storm_user(i: usize) -> String {
    format!("storm{i:05}")
}

/// One storm login: its wait (send to answer), when it was answered, and
/// whether it succeeded.
struct StormLogin {
    wait: Duration,
    answered: Instant,
    ok: bool,
}

fn run_storm(args: &Args) -> Result<()> {
    if args.protocol != Proto::Generic {
        bail!("--style storm speaks the generic protocol (--protocol generic)");
    }
    let path = args
        .standin
        .as_ref()
        .context("--style storm needs --standin PATH")?;
    let n = args.storm_users.max(1);
    let tables = tempfile::tempdir()?;
    let users = tables.path().join("users.txt");
    let table: String = (0..n)
        .map(|i| format!("{}\t{STORM_PASSWORD}\n", storm_user(i)))
        .collect();
    std::fs::write(&users, table)?;
    let standin = Standin::start(args, path, &users)?;
    let url = match args.backend {
        Api::Jsxc => standin.api_url.clone(),
        Api::Nextcloud => standin.base.clone(),
    };
    let http = Http::new()?;
    let standin = match args.storm_backend {
        StormBackend::Up => Some(standin),
        StormBackend::Down => {
            // Its port stays closed: every request is refused.
            standin.stop();
            None
        }
    };

    // The db cache of a server that ran before: every user verified just
    // now, at cost 12, one hash for all.
    let dir = tempfile::tempdir()?;
    let t0 = Instant::now();
    let hash = bcrypt::hash(STORM_PASSWORD, 12)?;
    {
        let store = xcauth::store::Store::open(&dir.path().join("xcauth.sqlite3"))?;
        let now = i64::try_from(now_unix()).unwrap_or(i64::MAX);
        for i in 0..n {
            let jid = format!("{}@{}", storm_user(i), args.domain);
            store.credential_store(&jid, &hash, None, now, xcauth::cache::MAX_CREDENTIALS)?;
        }
    }
    println!(
        "storm: {n} users cached (db, bcrypt cost 12, one shared hash) in {:.1} s; back end {}",
        t0.elapsed().as_secs_f64(),
        name(args.storm_backend)
    );

    let ctx = Ctx {
        args,
        url,
        requests: Arc::new(Vec::new()),
        standin: standin.as_ref(),
    };
    let log_dir = args
        .log_dir
        .clone()
        .unwrap_or_else(|| dir.path().to_owned());
    // Every user on a connection of its own, all served at once.
    let connections = (n + 16).to_string();
    let listening = Listening::spawn_in(
        &ctx,
        dir,
        &[
            "--cache-storage",
            "db",
            "--cache-bcrypt-rounds",
            "12",
            "--max-connections",
            &connections,
        ],
    )?;
    let before = match &standin {
        Some(s) => s.requests(&http)?,
        None => 0,
    };

    // Every connection first, then every login at once.
    let mut streams = Vec::with_capacity(n);
    for _ in 0..n {
        let stream = TcpStream::connect(&listening.addr).context("connecting to xcauth")?;
        stream.set_read_timeout(Some(STORM_ANSWER_WITHIN))?;
        stream.set_nodelay(true)?;
        streams.push(stream);
    }
    let barrier = Arc::new(Barrier::new(n + 1));
    let mut threads = Vec::with_capacity(n);
    for (i, mut stream) in streams.into_iter().enumerate() {
        let barrier = Arc::clone(&barrier);
        let request = format!("auth:{}:{}:{STORM_PASSWORD}\n", storm_user(i), args.domain);
        let thread = std::thread::Builder::new().stack_size(64 * 1024).spawn(
            move || -> Result<StormLogin> {
                let mut reader = BufReader::new(stream.try_clone()?);
                barrier.wait();
                let sent = Instant::now();
                stream.write_all(request.as_bytes())?;
                let ok = answer(Proto::Generic, &mut reader)?;
                let answered = Instant::now();
                Ok(StormLogin {
                    wait: answered - sent,
                    answered,
                    ok,
                })
            },
        )?;
        threads.push(thread);
    }
    barrier.wait();
    let start = Instant::now();
    let mut logins = Vec::with_capacity(n);
    let mut lost = 0;
    for thread in threads {
        match thread.join() {
            Ok(Ok(login)) => logins.push(login),
            Ok(Err(e)) => {
                lost += 1;
                if lost == 1 {
                    eprintln!("storm: a login got no answer: {e:#}");
                }
            }
            Err(_) => lost += 1,
        }
    }
    let all_answered = logins
        .iter()
        .map(|l| l.answered.saturating_duration_since(start))
        .max()
        .unwrap_or_default();
    let backend = match &standin {
        Some(s) => Some(s.requests(&http)? - before),
        None => None,
    };
    let rss = proc_status_kib(listening.child.id(), "VmHWM:");
    let ok = logins.iter().filter(|l| l.ok).count();
    let within_1s = logins
        .iter()
        .filter(|l| l.wait <= Duration::from_secs(1))
        .count();
    let waits = Summary::of(logins.iter().map(|l| l.wait).collect());
    // Logins that asked the back end during the outage and were then
    // served from the cache say so in the log.
    let log = std::fs::read_to_string(log_dir.join("xcauth.log")).unwrap_or_default();
    let fell_back = log
        .lines()
        .filter(|l| l.contains("accepted from cache"))
        .count();
    listening.stop()?;
    if let Some(s) = standin {
        s.stop();
    }

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "storm ({} back end): {n} logins, {ok} accepted, {} refused, {lost} unanswered",
        name(args.storm_backend),
        logins.len() - ok
    );
    println!(
        "  every login answered after {:.2} s; worst single wait {:.0} ms; p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms; {within_1s} answered within 1 s",
        all_answered.as_secs_f64(),
        ms(waits.max),
        ms(waits.p50),
        ms(waits.p90),
        ms(waits.p99),
    );
    match backend {
        Some(requests) => println!("  back-end requests: {requests}"),
        None => println!(
            "  back-end requests: refused (stand-in stopped); {fell_back} logins tried it, then the cache answered"
        ),
    }
    if let Some(kib) = rss {
        println!("  xcauth peak RSS: {:.1} MiB", mib(kib));
    }
    if lost > 0 || ok < n {
        bail!("{} of {n} storm logins were not accepted", n - ok);
    }
    Ok(())
}
