//! End-to-end load tool: starts the real `xcauth` binary, streams requests
//! into it over standard input in one protocol, and reports requests per
//! second, latency percentiles, start-up time and peak memory.
//!
//! Two ways of sending, like the servers that call xcauth:
//! - `pipelined`: a writer thread sends every request while a reader thread
//!   collects answers (throughput);
//! - `pingpong`: one request, wait for its answer, next (what ejabberd and
//!   Prosody do per helper; latency).

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Proto {
    Ejabberd,
    Generic,
    Saslauthd,
    Postfix,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Style {
    Pipelined,
    Pingpong,
    /// Start the process, send one request, time the first answer; repeated.
    Startup,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Kind {
    /// JSXC time-limited tokens (checked locally).
    Token,
    /// Passwords the back end must check (needs --url).
    Password,
    /// `isuser` queries (needs --url; the only kind for postfix).
    Isuser,
}

/// Load generator for xcauth over standard input/output.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The xcauth binary to start.
    #[arg(long, default_value = "target/release/xcauth")]
    xcauth: PathBuf,
    /// Protocol to speak.
    #[arg(long, value_enum, default_value = "ejabberd")]
    protocol: Proto,
    /// Sending style.
    #[arg(long, value_enum, default_value = "pipelined")]
    style: Style,
    /// What to ask.
    #[arg(long, value_enum, default_value = "token")]
    kind: Kind,
    /// Number of requests (or starts, for `startup`).
    #[arg(long, default_value_t = 100_000)]
    requests: usize,
    /// API secret (tokens are made with it; passed to xcauth by file).
    #[arg(long, default_value = "load-secret")]
    secret: String,
    /// API URL of a (stand-in) Nextcloud, for password and isuser kinds.
    #[arg(long, default_value = "http://127.0.0.1:9/unused")]
    url: String,
    /// User and password for the password kind.
    #[arg(long, default_value = "alice")]
    user: String,
    /// Password for the password kind.
    #[arg(long, default_value = "alice-pw")]
    password: String,
    /// Domain of every request.
    #[arg(long, default_value = "example.org")]
    domain: String,
    /// Log directory handed to xcauth (a temporary one by default).
    #[arg(long)]
    log_dir: Option<PathBuf>,
    /// Extra arguments for xcauth.
    #[arg(last = true)]
    extra: Vec<String>,
}

struct Target {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    _dir: tempfile::TempDir,
}

fn start(args: &Args) -> Result<Target> {
    let dir = tempfile::tempdir()?;
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, &args.secret)?;
    let log_dir = args
        .log_dir
        .clone()
        .unwrap_or_else(|| dir.path().to_owned());
    let proto = match args.protocol {
        Proto::Ejabberd => "ejabberd",
        Proto::Generic => "generic",
        Proto::Saslauthd => "saslauthd",
        Proto::Postfix => "postfix",
    };
    let mut child = Command::new(&args.xcauth)
        .arg("-t")
        .arg(proto)
        .arg("--url")
        .arg(&args.url)
        .arg("--secret-file")
        .arg(&secret_file)
        .arg("--log")
        .arg(&log_dir)
        .args(&args.extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", args.xcauth.display()))?;
    let stdin = child.stdin.take().context("no stdin")?;
    let stdout = BufReader::with_capacity(64 * 1024, child.stdout.take().context("no stdout")?);
    Ok(Target {
        child,
        stdin,
        stdout,
        _dir: dir,
    })
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The wire bytes of request number `i`.
fn request(args: &Args, i: usize, expiry: u32) -> Vec<u8> {
    let (user, password) = match args.kind {
        Kind::Token => {
            let user = format!("user{}", i % 1000);
            let token = xcauth::token::make(args.secret.as_bytes(), &user, &args.domain, expiry);
            (user, token)
        }
        Kind::Password | Kind::Isuser => (args.user.clone(), args.password.clone()),
    };
    let text = match args.kind {
        Kind::Isuser => format!("isuser:{user}:{}", args.domain),
        _ => format!("auth:{user}:{}:{password}", args.domain),
    };
    match args.protocol {
        Proto::Ejabberd => {
            let mut out = (text.len() as u16).to_be_bytes().to_vec();
            out.extend_from_slice(text.as_bytes());
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
                out.extend_from_slice(&(field.len() as u16).to_be_bytes());
                out.extend_from_slice(field.as_bytes());
            }
            out
        }
        Proto::Postfix => format!("get {user}@{}\n", args.domain).into_bytes(),
    }
}

/// Reads one answer; true when it says success.
fn answer(proto: Proto, out: &mut BufReader<ChildStdout>) -> Result<bool> {
    match proto {
        Proto::Ejabberd => {
            let mut buf = [0u8; 4];
            out.read_exact(&mut buf)?;
            Ok(buf == [0, 2, 0, 1])
        }
        Proto::Saslauthd => {
            let mut len = [0u8; 2];
            out.read_exact(&mut len)?;
            let mut text = vec![0u8; u16::from_be_bytes(len) as usize];
            out.read_exact(&mut text)?;
            Ok(text.starts_with(b"OK"))
        }
        Proto::Generic | Proto::Postfix => {
            let mut line = String::new();
            if out.read_line(&mut line)? == 0 {
                bail!("xcauth closed its output");
            }
            Ok(line == "1\n" || line.starts_with("200 "))
        }
    }
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn report_latencies(label: &str, mut lat: Vec<Duration>) {
    lat.sort();
    println!(
        "{label}: n={} p50={:.1}us p90={:.1}us p99={:.1}us max={:.1}us",
        lat.len(),
        percentile(&lat, 0.5).as_secs_f64() * 1e6,
        percentile(&lat, 0.9).as_secs_f64() * 1e6,
        percentile(&lat, 0.99).as_secs_f64() * 1e6,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e6,
    );
}

fn finish(mut target: Target) -> Result<()> {
    let pid = target.child.id();
    let rss = peak_rss_kib(pid);
    drop(target.stdin);
    let status = target.child.wait()?;
    if let Some(kib) = rss {
        println!("peak RSS: {:.1} MiB", kib as f64 / 1024.0);
    }
    if !status.success() {
        bail!("xcauth exited with {status}");
    }
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let expiry = u32::try_from(now_unix() + 3600).unwrap_or(u32::MAX);
    let requests: Vec<Vec<u8>> = (0..args.requests.min(10_000))
        .map(|i| request(&args, i, expiry))
        .collect();
    let n = args.requests;
    match args.style {
        Style::Pipelined => {
            let mut target = start(&args)?;
            // Warm up: one round trip so start-up is not measured.
            target.stdin.write_all(&requests[0])?;
            target.stdin.flush()?;
            answer(args.protocol, &mut target.stdout)?;
            let mut stdin = target.stdin;
            let batch = requests.clone();
            let t0 = Instant::now();
            let writer = std::thread::spawn(move || -> std::io::Result<ChildStdin> {
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
                if answer(args.protocol, &mut target.stdout)? {
                    ok += 1;
                }
            }
            let elapsed = t0.elapsed();
            target.stdin = writer
                .join()
                .map_err(|_| anyhow::anyhow!("writer thread panicked"))??;
            println!(
                "{:?} {:?} pipelined: {n} requests in {:.3}s = {:.0} requests/s ({ok} successes)",
                args.protocol,
                args.kind,
                elapsed.as_secs_f64(),
                n as f64 / elapsed.as_secs_f64()
            );
            if ok != n {
                eprintln!("warning: {} requests failed", n - ok);
            }
            finish(target)
        }
        Style::Pingpong => {
            let mut target = start(&args)?;
            let mut lat = Vec::with_capacity(n);
            let mut ok = 0usize;
            for i in 0..n + 100 {
                let t = Instant::now();
                target.stdin.write_all(&requests[i % requests.len()])?;
                target.stdin.flush()?;
                if answer(args.protocol, &mut target.stdout)? {
                    ok += 1;
                }
                // The first 100 round trips warm up caches and connections.
                if i >= 100 {
                    lat.push(t.elapsed());
                }
            }
            report_latencies(
                &format!("{:?} {:?} ping-pong", args.protocol, args.kind),
                lat,
            );
            if ok != n + 100 {
                eprintln!("warning: {} requests failed", n + 100 - ok);
            }
            finish(target)
        }
        Style::Startup => {
            let mut lat = Vec::with_capacity(n);
            for _ in 0..n {
                let t = Instant::now();
                let mut target = start(&args)?;
                target.stdin.write_all(&requests[0])?;
                target.stdin.flush()?;
                answer(args.protocol, &mut target.stdout)?;
                lat.push(t.elapsed());
                finish(target)?;
            }
            report_latencies("start to first answer", lat);
            Ok(())
        }
    }
}
