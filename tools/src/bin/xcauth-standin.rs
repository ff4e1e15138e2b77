//! xcauth-standin: a loopback-only fake of Nextcloud (JSXC external API and stock OCS APIs), for tests and first tries.
//!
//! It answers `POST …/externalApi.php` (any path ending so) the way the
//! Nextcloud JSXC app does: the `X-JSXC-SIGNATURE: ALGO=HEX` header is
//! checked like the app's middleware (HMAC of the raw body with the shared
//! secret; sha1, sha256, sha384, sha512), then `auth`, `isuser` and
//! `sharedroster` are answered from a user table (format in
//! [`users`]), with the app's JSON spelled byte for byte as PHP writes it.
//! Beside it, Nextcloud's stock OCS APIs under `/ocs/v1.php/` and
//! `/ocs/v2.php/` (the password check `cloud/user` and the provisioning
//! API; Basic auth, cookies, brute-force throttling: see [`ocs`] and
//! [`throttle`]). Every other path gets Nextcloud's "Page not found" page.
//!
//! For tests it injects faults (`--fault`, `--latency-ms`, or at run time
//! through the unsigned control endpoints below) and counts requests:
//!
//! ```text
//! POST /_standin/fault    body: none|http500|http404|hang|close|nonjson|redirect|badshape|wrongsig
//! POST /_standin/latency  body: milliseconds before each API answer
//! GET  /_standin/stats    {"requests":N,"max_in_flight":N,"by_operation":{"auth":n,…},"last":{…},
//!                          "ocs":{…},"nextcloud_requests":N}
//! POST /_standin/reset    zero the counters
//! POST /_standin/users/reload  read the --users file again (400: kept the old users)
//! GET  /_standin/bruteforce            {"scale":…,"allowlist":[…],"buckets":{ip: n}}
//! POST /_standin/bruteforce/reset      body: IP (empty: every bucket)
//! POST /_standin/bruteforce/allowlist  body: CIDR subnets (empty: none)
//! POST /_standin/throttle-scale        body: factor for the throttle delays
//! POST /_standin/clock                 body: seconds to move the throttle's clock forward
//! POST /_standin/token-auth-enforced   body: true|false
//! ```
//!
//! On start it prints exactly one line to stdout,
//! `listening on http://ADDR/index.php/apps/ojsxc/ajax/externalApi.php`,
//! so a test learns the port; logs go to stderr (`RUST_LOG` filters them).
#![forbid(unsafe_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE, LOCATION};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use xcauth::secret::Secret;

// The crate root's own folder is src/bin/, hence the explicit paths.
#[path = "xcauth-standin/accounts.rs"]
mod accounts;
#[path = "xcauth-standin/api.rs"]
mod api;
#[path = "xcauth-standin/ocs.rs"]
mod ocs;
#[path = "xcauth-standin/ocs_control.rs"]
mod ocs_control;
#[path = "xcauth-standin/state.rs"]
mod state;
#[path = "xcauth-standin/throttle.rs"]
mod throttle;
#[path = "xcauth-standin/users.rs"]
mod users;

use api::{Fields, Reply};
use state::{Fault, Outcome, State};
use users::UserTable;

/// Where Nextcloud serves the API; printed in the start-up line.
const API_PATH: &str = "/index.php/apps/ojsxc/ajax/externalApi.php";
/// Largest API request body read (a real one is well under 1 KiB).
const MAX_BODY: usize = 64 * 1024;
/// Largest control request body read.
const MAX_CONTROL_BODY: usize = 1024;

const USERS_FORMAT: &str = "\
USERS FILE (--users): one user a line, fields separated by a TAB character:

    uid<TAB>password[<TAB>display name[<TAB>group1,group2]]

TAB is the separator so that passwords may contain ':' (and names ':' or ','); \
a password is taken byte for byte up to the next TAB. Lines starting with '#' \
and blank lines are ignored. An empty display name shows the uid. A uid \
'name@domain' is found only for requests with that domain; a request for \
USER at DOMAIN looks for 'USER@DOMAIN' first, then 'USER' (like the JSXC app).

For Nextcloud's stock APIs (/ocs/v1.php, /ocs/v2.php) the groups column lists \
group ids, and more columns may follow the fourth (leave name or groups empty \
if need be), one option each, in any order:

    email=ADDRESS        e-mail address (the login may be the address of exactly one account)
    disabled             disabled account (401 on OCS; the JSXC API ignores it)
    2fa                  second factor set up: the main password gets 401, app passwords 200
    app-password=SECRET  an app password; repeat the column for several
    admin                member of group 'admin' (a Nextcloud admin: provisioning API)
    subadmin=GID,GID     group admin of these groups (provisioning API for their members)

A line 'group:<TAB>gid<TAB>display name' gives a group a display name other than \
its gid; the JSXC roster shows display names. App passwords also work on the JSXC API.

OCS: Basic auth; 412 without 'OCS-APIRequest: true'; 401 with Nextcloud's XML body. \
Every answer sets Nextcloud's cookies; a request sending any of them back gets 400 \
(counted as cookies_returned): a real Nextcloud would skip Basic auth for it. \
Failed logins are throttled per client address like Nextcloud (0.2 s doubling to \
25 s, times --throttle-scale; 429 after more than 10 failures in 30 minutes). \
As in Nextcloud, a main password refused by policy (2fa, --token-auth-enforced) is \
refused before it is checked and is no brute-force failure, and uids match without \
regard to case. Faults and latency apply to /ocs/ too (wrongsig there means none).

FAULTS (--fault, or at run time: POST /_standin/fault with the mode as body):
none, http500, http404, hang, close, nonjson, redirect, badshape, wrongsig. \
POST /_standin/latency (milliseconds), GET /_standin/stats, POST /_standin/reset, \
GET /_standin/bruteforce, POST /_standin/bruteforce/reset (IP or empty), \
POST /_standin/bruteforce/allowlist (CIDRs), POST /_standin/throttle-scale (factor), \
POST /_standin/clock (seconds forward), POST /_standin/token-auth-enforced (true|false), \
POST /_standin/users/reload (reads the --users file again).";

/// A stand-in for Nextcloud (JSXC external API and stock OCS APIs), on loopback only.
#[derive(Parser)]
#[command(name = "xcauth-standin", version, after_long_help = USERS_FORMAT)]
struct Cli {
    /// User table, TAB-separated (see --help); without it, no user exists.
    #[arg(long, value_name = "FILE")]
    users: Option<PathBuf>,

    /// Shared API secret. Visible in the process list: prefer
    /// --secret-file or the environment.
    #[arg(long, env = "XCAUTH_STANDIN_SECRET", hide_env_values = true)]
    secret: Option<Secret>,

    /// Read the shared API secret from this file (one trailing newline is
    /// dropped); takes precedence over --secret.
    #[arg(long, value_name = "FILE")]
    secret_file: Option<PathBuf>,

    /// Address to listen on; must be a loopback address. Port 0 picks a
    /// free port (printed on stdout).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    listen: SocketAddr,

    /// Fault to inject from the start.
    #[arg(long, value_enum, value_name = "MODE", default_value_t = Fault::None)]
    fault: Fault,

    /// Delay before each API answer, in milliseconds.
    #[arg(long, value_name = "N", default_value_t = 0)]
    latency_ms: u64,

    /// Factor for the brute-force delays of the OCS APIs (1.0: Nextcloud's
    /// 0.2 s to 25 s; e.g. 0.001 for tests).
    #[arg(long, value_name = "FACTOR", default_value_t = 1.0, value_parser = ocs_control::parse_scale)]
    throttle_scale: f64,

    /// Client subnets never throttled (Nextcloud's brute-force allowlist),
    /// e.g. 127.0.0.1/32; repeat or separate by commas.
    #[arg(long, value_name = "CIDR", value_delimiter = ',', value_parser = throttle::Subnet::parse)]
    bruteforce_allowlist: Vec<throttle::Subnet>,

    /// Accept only app passwords on the OCS APIs (Nextcloud's
    /// `token_auth_enforced`).
    #[arg(long)]
    token_auth_enforced: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xcauth-standin: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let secret = load_secret(cli.secret_file.as_deref(), cli.secret)?;
    let users = match &cli.users {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            UserTable::parse(&text).with_context(|| format!("in {}", path.display()))?
        }
        None => UserTable::default(),
    };
    check_loopback(cli.listen)?;
    let user_count = users.len();
    let ocs = ocs::Ocs::new(
        users.clone(),
        cli.throttle_scale,
        cli.bruteforce_allowlist.clone(),
        cli.token_auth_enforced,
    );
    let state = Arc::new(
        State::new(
            users,
            secret,
            cli.fault,
            Duration::from_millis(cli.latency_ms),
        )
        .with_ocs(ocs)
        .with_users_file(cli.users.clone()),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let listener = TcpListener::bind(cli.listen)
            .await
            .with_context(|| format!("cannot listen on {}", cli.listen))?;
        let addr = listener.local_addr().context("no local address")?;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on http://{addr}{API_PATH}")
            .and_then(|()| stdout.flush())
            .context("cannot write the start-up line")?;
        drop(stdout);
        tracing::info!(
            fault = cli.fault.name(),
            "serving the JSXC external API and the OCS APIs on {addr} for {user_count} users"
        );
        serve(listener, state).await;
        Ok(())
    })
}

/// The secret from `--secret-file` (one trailing newline dropped), else
/// from `--secret`/the environment; it must not be empty.
fn load_secret(file: Option<&Path>, given: Option<Secret>) -> anyhow::Result<Secret> {
    let secret = match (file, given) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the secret file {}", path.display()))?;
            let value = text.strip_suffix('\n').unwrap_or(&text);
            Secret::new(value.strip_suffix('\r').unwrap_or(value))
        }
        (None, Some(secret)) => secret,
        (None, None) => {
            bail!("no secret: give --secret-file FILE, --secret or XCAUTH_STANDIN_SECRET")
        }
    };
    if secret.is_empty() {
        bail!("the secret is empty");
    }
    Ok(secret)
}

/// The stand-in has no TLS and no real accounts' protection: only loopback.
fn check_loopback(addr: SocketAddr) -> anyhow::Result<()> {
    if !addr.ip().is_loopback() {
        bail!(
            "refusing to listen on {addr}: only loopback addresses (127.0.0.0/8, ::1) are allowed"
        );
    }
    Ok(())
}

/// Accepts connections until SIGINT/SIGTERM; each connection is served
/// with HTTP/1.1 keep-alive on its own task.
async fn serve(listener: TcpListener, state: Arc<State>) {
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // e.g. out of file descriptors: wait instead of spinning
                    tracing::warn!("accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => {
                tracing::info!("stopping");
                return;
            }
        };
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let service = service_fn(move |request| route(Arc::clone(&state), peer, request));
            if let Err(err) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!("connection ended: {err}");
            }
        });
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Returned by the service to make hyper drop the connection without
/// writing anything (the `close` fault).
#[derive(Debug)]
struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped on purpose")
    }
}

impl std::error::Error for DropConnection {}

type HttpResponse = Response<Full<Bytes>>;

async fn route(
    state: Arc<State>,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Result<HttpResponse, DropConnection> {
    let path = request.uri().path();
    if path.starts_with("/ocs/") {
        ocs::handle(&state, peer.ip(), request).await
    } else if path.ends_with("externalApi.php") {
        api_request(&state, request).await
    } else if path.starts_with("/_standin/") {
        Ok(control_request(&state, request).await)
    } else {
        Ok(to_response(Reply::not_found()))
    }
}

async fn api_request(
    state: &State,
    request: Request<Incoming>,
) -> Result<HttpResponse, DropConnection> {
    let signature = request
        .headers()
        .get(api::SIGNATURE_HEADER)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
    // PHP only fills its POST parameters from a form body; anything else
    // leaves the operation unset ("Unsupported operation.").
    let is_form = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    let is_post = request.method() == Method::POST;
    let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => {
            state.record(&Fields::default());
            return Ok(to_response(Reply::empty(413)));
        }
        Err(err) => {
            tracing::debug!("request body not read: {err}");
            return Err(DropConnection);
        }
    };
    let fields = if is_post && is_form {
        Fields::parse_form(&body)
    } else {
        Fields::default()
    };
    state.record(&fields);
    if !is_post {
        return Ok(to_response(Reply::empty(405)));
    }
    let _answering = state.answering();
    let latency = state.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let outcome = state.outcome(signature.as_deref(), &body, &fields);
    let shown = match &outcome {
        Outcome::Reply(reply) => reply.status.to_string(),
        Outcome::Hang => "no answer (hang)".to_owned(),
        Outcome::Close => "connection closed".to_owned(),
    };
    tracing::info!(
        operation = fields.operation.as_str(),
        username = fields.username.as_str(),
        domain = fields.domain.as_str(),
        "API request → {shown}"
    );
    match outcome {
        Outcome::Reply(reply) => Ok(to_response(reply)),
        Outcome::Hang => {
            // hyper does not notice a client giving up while we wait, so the
            // connection is released when the mode changes instead.
            state.hang_over().await;
            Err(DropConnection)
        }
        Outcome::Close => Err(DropConnection),
    }
}

async fn control_request(state: &State, request: Request<Incoming>) -> HttpResponse {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let body = match Limited::new(request.into_body(), MAX_CONTROL_BODY)
        .collect()
        .await
    {
        Ok(collected) => String::from_utf8_lossy(&collected.to_bytes()).into_owned(),
        Err(_) => return text(413, "control body too large\n".to_owned()),
    };
    let post = method == Method::POST;
    match (method, path.as_str()) {
        (Method::GET, "/_standin/stats") => to_response(Reply::json(200, ocs_control::stats_json(state))),
        (Method::POST, "/_standin/reset") => {
            state.reset();
            state.ocs().reset_stats();
            text(200, "counters reset\n".to_owned())
        }
        (_, path) if path.starts_with("/_standin/bruteforce")
            || path == "/_standin/throttle-scale"
            || path == "/_standin/clock"
            || path == "/_standin/token-auth-enforced" =>
        {
            ocs_control::respond(state, post, path, body.trim())
        }
        (Method::POST, "/_standin/users/reload") => match state.reload_users() {
            Ok(count) => {
                tracing::info!("users reloaded: {count}");
                text(200, format!("{count} users\n"))
            }
            Err(why) => text(400, format!("users not reloaded: {why}\n")),
        },
        (Method::GET, "/_standin/fault") => text(200, format!("{}\n", state.fault().name())),
        (Method::POST, "/_standin/fault") => match Fault::parse(&body) {
            Some(fault) => {
                state.set_fault(fault);
                tracing::info!("fault set to {}", fault.name());
                text(200, format!("{}\n", fault.name()))
            }
            None => text(
                400,
                "unknown fault; one of: none http500 http404 hang close nonjson redirect badshape wrongsig\n"
                    .to_owned(),
            ),
        },
        (Method::GET, "/_standin/latency") => {
            text(200, format!("{}\n", state.latency().as_millis()))
        }
        (Method::POST, "/_standin/latency") => match body.trim().parse::<u64>() {
            Ok(ms) => {
                state.set_latency(Duration::from_millis(ms));
                tracing::info!("latency set to {ms} ms");
                text(200, format!("{ms}\n"))
            }
            Err(_) => text(400, "latency: a whole number of milliseconds\n".to_owned()),
        },
        _ => text(404, "no such control endpoint\n".to_owned()),
    }
}

fn text(status: u16, body: String) -> HttpResponse {
    let mut response = to_response(Reply::empty(status));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    *response.body_mut() = Full::new(Bytes::from(body));
    response
}

fn to_response(reply: Reply) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::from(reply.body)));
    *response.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Some(content_type) = reply.content_type {
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    if let Some(location) = reply.location {
        response
            .headers_mut()
            .insert(LOCATION, HeaderValue::from_static(location));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_addresses() {
        assert!(check_loopback("127.0.0.1:0".parse().unwrap()).is_ok());
        assert!(check_loopback("127.3.2.1:80".parse().unwrap()).is_ok());
        assert!(check_loopback("[::1]:0".parse().unwrap()).is_ok());
        assert!(check_loopback("0.0.0.0:0".parse().unwrap()).is_err());
        assert!(check_loopback("[::]:0".parse().unwrap()).is_err());
        assert!(check_loopback("192.168.1.2:8080".parse().unwrap()).is_err());
    }

    #[test]
    fn secret_sources() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "from-file\r\n").unwrap();
        let s = load_secret(Some(&path), Some(Secret::new("flag"))).unwrap();
        assert_eq!(s.expose(), "from-file");
        assert_eq!(
            load_secret(None, Some(Secret::new("flag")))
                .unwrap()
                .expose(),
            "flag"
        );
        assert!(load_secret(None, None).is_err());
        assert!(load_secret(None, Some(Secret::new(""))).is_err());
        std::fs::write(&path, "\n").unwrap();
        assert!(load_secret(Some(&path), None).is_err());
    }
}
