//! Start-up: turn a resolved [`Config`] into a running service or a
//! one-shot query, and map the result to an exit status.
//!
//! [`main_with_args`] owns the process: while it is still single-threaded
//! it takes systemd's variables out of the environment and collects the
//! sockets to serve (systemd's, `--listen`, or standard input), then starts
//! the runtime and hands them to [`run`], which serves what it is given.

use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::Arc;

use tracing::{debug, error, info, warn};

use crate::backend::{BackendOptions, HttpClient};
use crate::clock::SystemClock;
use crate::config::{self, Config, Mode};
use crate::listen::{self, Sockets};
use crate::logging;
use crate::proto::{Reply, Request};
use crate::serve::{self, ListenContext, StreamLimits};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const VERSION: &str = env!("CARGO_PKG_VERSION");
use crate::backend::BackendKind;
use crate::cache::{Cache, MemoryStorage, Ttls};
use crate::config::CacheStorage;
use crate::domains::{DbDomains, Global};
use crate::guard::{Guard, GuardStore};
use crate::roster::{CommandCtl, RosterSync};
use crate::secret::Secret;
use crate::store::SqliteGuard;
use crate::store::Store;
use crate::verify::{Domains, GlobalOnly, Verifier};
use sha2::Digest as _;

/// Exit status for "yes" answers and clean ends.
const EXIT_TRUE: u8 = 0;
/// Exit status for "no" answers of the one-shot tests.
const EXIT_FALSE: u8 = 1;
/// Exit status for usage and configuration errors.
const EXIT_USAGE: u8 = 2;

/// `-A USER DOMAIN -`: the password is the first line of standard input
/// (kept out of the process list).
const PASSWORD_FROM_STDIN: &str = "-";
/// The longest password line `-A USER DOMAIN -` reads, without its line end.
pub const MAX_PASSWORD_LINE: usize = 8 * 1024;

/// The first line of `input` without its line end (`\n` or `\r\n`); at end
/// of input without a line end, what was there. The error never quotes the
/// input.
fn read_password_line(input: impl std::io::BufRead) -> Result<Secret, String> {
    use std::io::BufRead as _;
    let mut line = Vec::new();
    input
        .take(MAX_PASSWORD_LINE as u64 + 1)
        .read_until(b'\n', &mut line)
        .map_err(|e| e.to_string())?;
    if line.is_empty() {
        return Err("no password (empty input)".into());
    }
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    } else if line.len() > MAX_PASSWORD_LINE {
        return Err(format!(
            "the password line is longer than {MAX_PASSWORD_LINE} bytes"
        ));
    }
    String::from_utf8(line)
        .map(Secret::new)
        .map_err(|_| "the password is not valid UTF-8".into())
}

/// Everything `main` does, given the process arguments.
pub fn main_with_args<I: IntoIterator<Item = OsString>>(args: I) -> ExitCode {
    let args: Vec<OsString> = args.into_iter().collect();
    let command_line = match crate::admin::parse(args) {
        Ok(crate::admin::Invocation::Admin(cli)) => return crate::admin::main(cli),
        Ok(crate::admin::Invocation::Service(command_line)) => command_line,
        // Prints help or the version (exit 0) or the usage error (exit 2).
        Err(e) => e.exit(),
    };
    // First, while no other thread exists (the log writer and the runtime
    // start below): this changes the environment.
    let systemd = listen::take_systemd_env();
    // The configuration asks whether systemd passed sockets (named ones
    // need no -t): only descriptors that are ours count.
    let listen_fds = match &systemd {
        Ok(fds) if !fds.is_empty() => Some(fds.len().to_string()),
        _ => None,
    };
    let env = |key: &str| match key {
        "LISTEN_FDS" => listen_fds.clone(),
        _ => std::env::var(key).ok(),
    };
    let default_file = std::path::Path::new(config::DEFAULT_CONFIG_FILE);
    let mut config = match config::load_from(command_line, &env, default_file) {
        Ok(config) => config,
        Err(config::ConfigError::Cli(e)) => e.exit(),
        Err(e) => {
            eprintln!("xcauth: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if let Mode::AuthTest { password, .. } = &mut config.mode {
        if password.expose() == PASSWORD_FROM_STDIN {
            match read_password_line(std::io::stdin().lock()) {
                Ok(read) => *password = read,
                Err(e) => {
                    eprintln!("xcauth: -A ... -: standard input: {e}");
                    return ExitCode::from(EXIT_USAGE);
                }
            }
        }
    }
    // The check prints its findings; it neither logs nor serves.
    if let Mode::Check(request) = config.mode.clone() {
        return crate::admin::check::main(&config, &request);
    }
    let journal = logging::stderr_is_journal(env(logging::JOURNAL_STREAM_ENV).as_deref());
    let target = match (journal, config.interactive) {
        // Started by systemd with standard error on the journal: log there
        // (the files as well only when asked).
        (true, interactive) => logging::Target::Journal {
            files: (config.log_files_under_journal && !interactive).then(|| config.log_dir.clone()),
        },
        (false, true) => logging::Target::Stderr,
        (false, false) => logging::Target::Dir(config.log_dir.clone()),
    };
    let _guard = match logging::init(&target, config.debug) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("xcauth: cannot open log files ({e}); logging to standard error instead (use -l DIR or -i)");
            let fallback = if journal {
                logging::Target::Journal { files: None }
            } else {
                logging::Target::Stderr
            };
            match logging::init(&fallback, config.debug) {
                Ok(guard) => guard,
                Err(_) => return ExitCode::from(EXIT_USAGE),
            }
        }
    };
    if matches!(target, logging::Target::Journal { .. }) {
        debug!("standard error is the journal: logging there");
    }
    for warning in &config.warnings {
        warn!("{warning}");
    }
    let serving = matches!(config.mode, Mode::Serve(_));
    let sockets = match config.mode {
        Mode::Serve(protocol) => match collect_sockets(&config, protocol, systemd) {
            Ok(sockets) => sockets,
            Err(code) => return code,
        },
        _ => Sockets::Stdio,
    };
    // One helper on standard input (how ejabberd and Prosody run us) is
    // served best by a single-threaded reactor: no cross-thread wake-ups,
    // less memory. Socket service spreads connections over all cores.
    // bcrypt and SQLite run on the blocking pool either way.
    let mut builder = if matches!(sockets, Sockets::Listening(_)) {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            error!("cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        if serving {
            spawn_sighup_handler();
            spawn_stop_handler(shutdown.clone());
        }
        run(sockets, config, shutdown).await
    })
}

/// The sockets a service serves, in this order: systemd's descriptors and
/// the `--listen` sockets; when there are none, whatever standard input is
/// (a listening or connected socket, or plain input). Runs before the
/// runtime; a failure is logged and is exit status 2.
fn collect_sockets(
    config: &Config,
    protocol: crate::proto::Protocol,
    systemd: std::io::Result<listen::SystemdFds>,
) -> Result<Sockets, ExitCode> {
    let usage = || ExitCode::from(EXIT_USAGE);
    let mut listeners = match systemd.and_then(|fds| fds.listeners(protocol)) {
        Ok(l) => l,
        Err(e) => {
            error!("socket activation: {e}");
            return Err(usage());
        }
    };
    for spec in &config.sockets.listen {
        match listen::bind(spec, &config.sockets) {
            Ok(bound) => listeners.push(bound),
            Err(e) => {
                error!("{e}");
                eprintln!("xcauth: {e}");
                return Err(usage());
            }
        }
    }
    if !listeners.is_empty() {
        mark_trusted(&mut listeners, config);
        return Ok(Sockets::Listening(listeners));
    }
    match listen::classify_stdin() {
        Ok(listen::Stdin::Stdio) => {
            if !config.sockets.trusted.is_empty() {
                debug!("trusted-socket has no effect on standard input: it is always trusted");
            }
            Ok(Sockets::Stdio)
        }
        Ok(listen::Stdin::Connected(connection)) => {
            let local = connection.local_address();
            let mut trusted = false;
            for entry in &config.sockets.trusted {
                if local.as_ref() == Some(entry) {
                    trusted = true;
                } else {
                    warn_untrusted(entry);
                }
            }
            Ok(Sockets::Connected {
                connection,
                trusted,
            })
        }
        Ok(listen::Stdin::Listening(fd, family)) => {
            let listener = listen::adopt_listening(fd, family);
            // Our duplicate is now the only reference we keep: once it is
            // closed at shutdown, the kernel refuses new clients.
            if let Err(e) = listen::release_stdin() {
                warn!("cannot detach standard input from the listening socket: {e}");
            }
            let mut listeners = vec![listen::Bound {
                protocol,
                listener,
                label: "inherited socket on standard input".into(),
                requests: crate::config::RequestSet::ALL,
                trusted: false,
            }];
            mark_trusted(&mut listeners, config);
            Ok(Sockets::Listening(listeners))
        }
        Err(e) => {
            error!("standard input: {e}");
            Err(usage())
        }
    }
}

/// Marks the sockets listed in `trusted-socket`, warning about each entry
/// that matches none: a typo would otherwise silently leave a server's
/// client addresses unbelieved.
fn mark_trusted(listeners: &mut [listen::Bound], config: &Config) {
    for entry in listen::mark_trusted(listeners, &config.sockets.trusted) {
        warn_untrusted(entry);
    }
}

fn warn_untrusted(entry: &crate::config::ListenAddress) {
    warn!(
        "trusted-socket {entry} matches no socket this process serves \
         (a typo, or a socket unit not enabled); it trusts nothing"
    );
}

/// Runs the configured mode to its end. A service serves `sockets`, bound
/// or adopted beforehand (one-shot queries ignore them), until end of input
/// or until `shutdown` is cancelled; then it drains within the configured
/// shutdown timeout.
pub async fn run(sockets: Sockets, config: Config, shutdown: CancellationToken) -> ExitCode {
    if let Mode::Check(request) = &config.mode {
        return crate::admin::check::run(&config, request).await;
    }
    let options = BackendOptions {
        connect_timeout: config.connect_timeout,
        request_timeout: config.request_timeout,
        ca_file: config.ca_file.clone(),
    };
    let client = match HttpClient::with_max_requests(&options, config.backend_concurrency) {
        Ok(client) => client,
        Err(e) => {
            error!("{e}");
            eprintln!("xcauth: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    for (name, path) in &config.legacy_dbs {
        warn!(
            "--{name} {}: importing pre-2.0 Berkeley-DB files is not supported; run the original xcauth 2.0 release once to convert them into the SQLite database",
            path.display()
        );
    }
    let verifier = match build_verifier(&config, client) {
        Ok(v) => Arc::new(v),
        Err(e) => {
            error!("{e}");
            eprintln!("xcauth: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let _metrics = crate::metrics::start(&config, &shutdown);
    match one_shot_request(config.mode.clone()) {
        None => match config.mode {
            Mode::Serve(protocol) => serve(&config, protocol, sockets, verifier, shutdown).await,
            // Answered at the top.
            _ => ExitCode::from(EXIT_USAGE),
        },
        Some(request) => one_shot(&verifier, request).await,
    }
}

/// A one-shot query (`-A`, `-I`, `-R`) as the request it stands for;
/// `None` for the other modes.
fn one_shot_request(mode: Mode) -> Option<Request> {
    match mode {
        Mode::AuthTest {
            user,
            domain,
            password,
        } => Some(Request::Auth {
            user,
            domain,
            password,
            service: None,
            client: None,
        }),
        Mode::IsUserTest { user, domain } => Some(Request::IsUser { user, domain }),
        Mode::RosterTest { user, domain } => Some(Request::Roster { user, domain }),
        Mode::Serve(_) | Mode::Check(_) => None,
    }
}

/// Answers a one-shot query. Its domain is put in the canonical form
/// first, as every served request's is; one that is not a host name is
/// refused (`False`) without asking any back end.
async fn one_shot(verifier: &Verifier, request: Request) -> ExitCode {
    let request = request.canonical();
    debug!("one-shot query: {}", describe(&request));
    match request {
        Request::Auth {
            user,
            domain,
            password,
            ..
        } => {
            let ok = verifier.auth(&user, &domain, &password).await.is_success();
            verifier.settle().await;
            print_bool(ok)
        }
        Request::IsUser { user, domain } => {
            print_bool(verifier.isuser(&user, &domain).await == Reply::Yes)
        }
        Request::Roster { user, domain } => match verifier.roster_and_sync(&user, &domain).await {
            Some(json) => {
                println!("{json}");
                ExitCode::from(EXIT_TRUE)
            }
            None => print_bool(false),
        },
        Request::Invalid { reason } => {
            info!("refused request: {}", logging::Escaped(&reason));
            print_bool(false)
        }
        Request::Quit => print_bool(false),
    }
}

/// The decision with what the configuration asks for: the database (for
/// per-domain settings, the `db` cache and roster state), the cache, and
/// the shared roster sync.
fn build_verifier(config: &Config, client: Arc<HttpClient>) -> Result<Verifier, String> {
    let needs_db = config.cache_storage == CacheStorage::Db || config.ejabberdctl.is_some();
    let db_exists = config.db.as_os_str() == ":memory:" || config.db.exists();
    let store = if needs_db || db_exists {
        match Store::open(&config.db) {
            Ok(store) => Some(Arc::new(store)),
            Err(e) if needs_db => {
                return Err(format!("database {}: {e}", config.db.display()));
            }
            Err(e) => {
                warn!(
                    "database {}: {e}; per-domain settings unavailable, using the global URL and secret",
                    config.db.display()
                );
                None
            }
        }
    } else {
        debug!(
            "no database at {}; using the global URL and secret for every domain",
            config.db.display()
        );
        None
    };
    let global = Global::from_config(config);
    describe_backend(config, &global);
    let domains: Arc<dyn Domains> = match &store {
        Some(store) => Arc::new(DbDomains::new(Arc::clone(store), global, client)),
        None => Arc::new(GlobalOnly::new(global, client)),
    };
    let mut verifier = Verifier::new(Arc::new(SystemClock), domains);
    let ttls = Ttls {
        query: config.cache_query_ttl,
        verification: config.cache_verification_ttl,
        unreachable: config.cache_unreachable_ttl,
    };
    match (config.cache_storage, &store) {
        (CacheStorage::None, _) => {}
        (CacheStorage::Memory, _) => {
            let storage = Arc::new(MemoryStorage::default());
            verifier = verifier.with_cache(Arc::new(Cache::new(
                storage,
                ttls,
                config.bcrypt_rounds_memory,
            )));
        }
        (CacheStorage::Db, Some(store)) => {
            let storage: Arc<dyn crate::cache::CacheStorage> = Arc::clone(store) as _;
            verifier =
                verifier.with_cache(Arc::new(Cache::new(storage, ttls, config.bcrypt_rounds_db)));
        }
        (CacheStorage::Db, None) => return Err("the db cache needs a database (--db)".into()),
    }
    verifier = verifier.with_guard(Arc::new(build_guard(config, store.as_ref())));
    if let (Some(path), Some(store)) = (&config.ejabberdctl, &store) {
        let ctl = Arc::new(CommandCtl::new(path.clone()).with_timeout(config.ejabberdctl_timeout));
        let sync = RosterSync::new(ctl, Arc::clone(store));
        verifier = verifier.with_roster_sync(Arc::new(sync));
    }
    Ok(verifier)
}

/// The failure guard: its state in the database when there is one (shared
/// by ejabberd's pool of helpers), else in memory. Its digests are keyed
/// with a key derived from the configured secrets (the API secret and the
/// API password), which are not in the database; without either, a random
/// per-process key, and the state stays in memory (other processes could
/// not match its digests).
fn build_guard(config: &Config, store: Option<&Arc<Store>>) -> Guard {
    let mut material = String::from("xcauth guard\0");
    material.push_str(config.secret.expose());
    material.push('\0');
    if let Some(api) = &config.api {
        material.push_str(api.password.expose());
    }
    let key = if config.secret.is_empty() && config.api.is_none() {
        let mut random = [0u8; 32];
        if getrandom::getrandom(&mut random).is_err() {
            warn!("no random numbers available for the guard's key");
        }
        hex::encode(random)
    } else {
        hex::encode(sha2::Sha256::digest(material.as_bytes()))
    };
    let shared_key = !(config.secret.is_empty() && config.api.is_none());
    let shared: Option<Arc<dyn GuardStore>> = match store {
        Some(store) if shared_key => {
            Some(Arc::new(SqliteGuard::new(guard_connection(config, store))))
        }
        _ => None,
    };
    Guard::new(config.guard.clone(), Secret::new(key), shared)
}

/// The guard's own connection to the database file, so that its counting
/// never waits behind cache or roster work on the process's connection (a
/// private `:memory:` database has only that one).
fn guard_connection(config: &Config, store: &Arc<Store>) -> Arc<Store> {
    if config.db.as_os_str() == ":memory:" {
        return Arc::clone(store);
    }
    match Store::open(&config.db) {
        Ok(own) => Arc::new(own),
        Err(e) => {
            warn!("guard: no connection of its own to the database ({e}); sharing the process's");
            Arc::clone(store)
        }
    }
}

/// Says at start-up which back end the global settings mean, and what a
/// missing setting costs.
fn describe_backend(config: &Config, global: &Global) {
    let Some(url) = &global.url else { return };
    let kind = global.kind_for(url);
    match kind {
        BackendKind::Jsxc => debug!("back end: JSXC external API at {url}"),
        BackendKind::Nextcloud => {
            let api = global.api.as_ref().map(|a| a.user.as_str());
            debug!(
                "back end: stock Nextcloud at {url}, login names {}, API account {}",
                global.login_form.name(),
                api.unwrap_or("none")
            );
            if api.is_none() {
                let known = if config.cache_storage == CacheStorage::None {
                    "nobody (no cache)"
                } else {
                    "only users the cache saw log in within cache-unreachable-ttl"
                };
                warn!(
                    "backend=nextcloud without api-user: isuser knows {known}; \
                     ejabberd bounces messages to users it believes do not exist and \
                     Postfix defers their mail, and shared roster sync is off. \
                     Set api-user= and api-password-file= (an app password of an admin \
                     or group subadmin account)"
                );
            }
            if global.secret.is_empty() {
                debug!("no secret: JSXC token logins are off");
            }
        }
    }
}

/// Serves `sockets` until end of input (stdio, an inherited connection) or
/// `shutdown` (listening sockets).
async fn serve(
    config: &Config,
    protocol: crate::proto::Protocol,
    sockets: Sockets,
    verifier: Arc<Verifier>,
    shutdown: CancellationToken,
) -> ExitCode {
    let limits = &config.sockets;
    let listeners = match sockets {
        Sockets::Connected {
            connection,
            trusted,
        } => {
            info!(
                "xcauth {VERSION} serving {} on an inherited connection",
                protocol.name()
            );
            let serving = serve::serve_connected(
                connection,
                trusted,
                protocol.codec(&config.codec),
                Arc::clone(&verifier),
                StreamLimits::socket(limits.idle_timeout, limits.write_timeout),
                shutdown,
            );
            let result = crate::metrics::connection(protocol, serving).await;
            settle(&verifier, limits.shutdown_timeout).await;
            return finish_stream(result);
        }
        Sockets::Stdio => {
            info!(
                "xcauth {VERSION} serving {} on standard input",
                protocol.name()
            );
            notify(&[sd_notify::NotifyState::Ready]);
            let serving = serve::serve_stdio(
                protocol.codec(&config.codec),
                Arc::clone(&verifier),
                StreamLimits::stdio(limits.write_timeout),
                shutdown,
            );
            let result = crate::metrics::stream(protocol, serving).await;
            settle(&verifier, limits.shutdown_timeout).await;
            return finish_stream(result);
        }
        Sockets::Listening(listeners) => listeners,
    };
    let listeners = match serve::register(listeners) {
        Ok(registered) => registered,
        Err(e) => {
            error!("cannot serve the listening sockets: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let ctx = ListenContext {
        verifier: Arc::clone(&verifier),
        codec: config.codec.clone(),
        limits: StreamLimits::socket(limits.idle_timeout, limits.write_timeout),
        connections: Arc::new(Semaphore::new(limits.max_connections)),
        shutdown: shutdown.clone(),
        tasks: TaskTracker::new(),
    };
    info!("xcauth {VERSION} ready");
    notify(&[sd_notify::NotifyState::Ready]);
    let stopping = shutdown.clone();
    let told = tokio::spawn(async move {
        stopping.cancelled().await;
        notify(&[sd_notify::NotifyState::Stopping]);
        info!("stopping: finishing requests in flight");
    });
    serve::serve_listeners(listeners, ctx, limits.shutdown_timeout).await;
    // STOPPING=1 must reach systemd before the runtime goes away.
    let _ = told.await;
    settle(&verifier, limits.shutdown_timeout).await;
    info!("stopped");
    ExitCode::from(EXIT_TRUE)
}

/// Lets cache writes and roster syncs finish, within `limit`.
async fn settle(verifier: &Verifier, limit: std::time::Duration) {
    if tokio::time::timeout(limit, verifier.settle())
        .await
        .is_err()
    {
        warn!("background work (cache writes, roster sync) still running after {limit:?}; exiting anyway");
    }
}

fn finish_stream(result: std::io::Result<()>) -> ExitCode {
    match result {
        Ok(()) => {
            info!("end of input, exiting");
            ExitCode::from(EXIT_TRUE)
        }
        Err(e) => {
            error!("stream failed: {e}");
            ExitCode::from(EXIT_FALSE)
        }
    }
}

/// Tells systemd about our state when it asked (NOTIFY_SOCKET); a no-op
/// otherwise.
fn notify(states: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        debug!("sd_notify: {e}");
    }
}

/// SIGTERM and SIGINT start a graceful stop.
fn spawn_stop_handler(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (term, int) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::spawn(async move {
                tokio::select! {
                    _ = term.recv() => info!("SIGTERM received"),
                    _ = int.recv() => info!("SIGINT received"),
                }
                shutdown.cancel();
            });
        }
        _ => warn!("cannot handle SIGTERM/SIGINT"),
    }
}

/// A one-shot query for the log, without the password.
fn describe(request: &Request) -> String {
    let (what, user, domain) = match request {
        Request::Auth { user, domain, .. } => ("auth", user, domain),
        Request::IsUser { user, domain } => ("isuser", user, domain),
        Request::Roster { user, domain } => ("roster", user, domain),
        Request::Invalid { .. } | Request::Quit => return "refused".to_owned(),
    };
    format!(
        "{what} {}@{}",
        logging::Escaped(user),
        logging::Escaped(domain)
    )
}

fn print_bool(ok: bool) -> ExitCode {
    if ok {
        println!("True");
        ExitCode::from(EXIT_TRUE)
    } else {
        println!("False");
        ExitCode::from(EXIT_FALSE)
    }
}

/// On every SIGHUP: re-opens the log files and has the domain rows
/// re-read at the next request (instead of within
/// [`RELOAD_AFTER`](crate::domains::RELOAD_AFTER)).
fn spawn_sighup_handler() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::hangup()) {
        Ok(mut hup) => {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    logging::request_reopen();
                    crate::domains::request_reload();
                    info!("SIGHUP: log files re-opened; domain rows re-read at the next request");
                }
            });
        }
        Err(e) => warn!("cannot handle SIGHUP: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listen::{Bound, Listener};
    use crate::proto::Protocol;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    #[test]
    fn password_line_from_standard_input() {
        let read = |input: &[u8]| read_password_line(input).map(|s| s.expose().to_owned());
        assert_eq!(read(b"pw with spaces\n").unwrap(), "pw with spaces");
        assert_eq!(read(b"crlf\r\nsecond line\n").unwrap(), "crlf");
        assert_eq!(read(b"no line end").unwrap(), "no line end");
        assert_eq!(read(b"-\n").unwrap(), "-");
        assert_eq!(read(b"\n").unwrap(), "");
        assert!(read(b"").unwrap_err().contains("empty input"));
        let longest = vec![b'x'; MAX_PASSWORD_LINE];
        assert_eq!(
            read(&[&longest[..], b"\n"].concat()).unwrap().len(),
            MAX_PASSWORD_LINE
        );
        assert_eq!(read(&longest).unwrap().len(), MAX_PASSWORD_LINE);
        let over = vec![b'x'; MAX_PASSWORD_LINE + 1];
        let e = read(&over).unwrap_err();
        assert!(e.contains("longer than"), "{e}");
        let e = read(b"\xffhunter2\n").unwrap_err();
        assert!(e.contains("UTF-8") && !e.contains("hunter2"), "{e}");
    }

    /// The library serves a socket its caller bound (on port 0, so no port
    /// is guessed) and stops when told to.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn run_serves_the_listeners_it_is_given_until_shutdown() {
        let dir = tempfile::tempdir().expect("dir");
        let db = dir.path().join("absent.sqlite3");
        let args = [
            "xcauth".into(),
            "-t".into(),
            "generic".into(),
            "--url".into(),
            "http://127.0.0.1:9/unused".into(),
            "--secret".into(),
            "S".into(),
            "--cache-storage".into(),
            "none".into(),
            "--db".into(),
            db.into_os_string(),
        ];
        let config = config::load_with_default_file(args, &|_| None, &dir.path().join("none.conf"))
            .expect("config");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let at = listener.local_addr().expect("addr");
        let sockets = Sockets::Listening(vec![Bound {
            protocol: Protocol::Generic,
            listener: Listener::Tcp(listener),
            label: "test".into(),
            requests: crate::config::RequestSet::ALL,
            trusted: false,
        }]);
        let shutdown = CancellationToken::new();
        let serving = tokio::spawn(run(sockets, config, shutdown.clone()));

        let stream = tokio::net::TcpStream::connect(at).await.expect("connect");
        let (reader, mut writer) = stream.into_split();
        let token = crate::token::make(b"S", "alice", "example.org", u32::MAX);
        writer
            .write_all(format!("auth:alice:example.org:{token}\n").as_bytes())
            .await
            .expect("write");
        let mut line = String::new();
        BufReader::new(reader)
            .read_line(&mut line)
            .await
            .expect("answer");
        assert_eq!(line, "1\n");

        shutdown.cancel();
        let code = tokio::time::timeout(std::time::Duration::from_secs(10), serving)
            .await
            .expect("run ends after shutdown")
            .expect("run task");
        assert_eq!(code, ExitCode::from(EXIT_TRUE));
    }
}
