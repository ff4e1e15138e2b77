//! Start-up: turn a resolved [`Config`] into a running service or a
//! one-shot query, and map the result to an exit status.

use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::Arc;

use tracing::{debug, error, info, warn};

use crate::backend::{BackendOptions, HttpClient};
use crate::clock::SystemClock;
use crate::config::{self, Config, Mode};
use crate::listen;
use crate::logging;
use crate::proto::Reply;
use crate::serve::{self, ListenContext, StreamLimits};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const VERSION: &str = env!("CARGO_PKG_VERSION");
use crate::backend::BackendKind;
use crate::cache::{Cache, MemoryStorage, Ttls};
use crate::config::CacheStorage;
use crate::domains::{DbDomains, Global};
use crate::roster::{CommandCtl, RosterSync};
use crate::store::Store;
use crate::verify::{Domains, GlobalOnly, Verifier};

/// Exit status for "yes" answers and clean ends.
const EXIT_TRUE: u8 = 0;
/// Exit status for "no" answers of the one-shot tests.
const EXIT_FALSE: u8 = 1;
/// Exit status for usage and configuration errors.
const EXIT_USAGE: u8 = 2;

/// Everything `main` does, given the process arguments.
pub fn main_with_args<I: IntoIterator<Item = OsString>>(args: I) -> ExitCode {
    let args: Vec<OsString> = args.into_iter().collect();
    if args.get(1).is_some_and(|a| crate::admin::is_subcommand(a)) {
        return crate::admin::main(args);
    }
    let config = match config::load(args, &|key| std::env::var(key).ok()) {
        Ok(config) => config,
        Err(config::ConfigError::Cli(e)) => e.exit(),
        Err(e) => {
            eprintln!("xcauth: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let target = if config.interactive {
        logging::Target::Stderr
    } else {
        logging::Target::Dir(config.log_dir.clone())
    };
    let _guard = match logging::init(&target, config.debug) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("xcauth: cannot open log files ({e}); logging to standard error instead (use -l DIR or -i)");
            match logging::init(&logging::Target::Stderr, config.debug) {
                Ok(guard) => guard,
                Err(_) => return ExitCode::from(EXIT_USAGE),
            }
        }
    };
    for warning in &config.warnings {
        warn!("{warning}");
    }
    // One helper on standard input (how ejabberd and Prosody run us) is
    // served best by a single-threaded reactor: no cross-thread wake-ups,
    // less memory. Socket service spreads connections over all cores.
    // bcrypt and SQLite run on the blocking pool either way.
    let sockets = !config.sockets.listen.is_empty() || std::env::var_os("LISTEN_FDS").is_some();
    let mut builder = if sockets {
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
    runtime.block_on(run(config))
}

/// Runs the configured mode to its end.
pub async fn run(config: Config) -> ExitCode {
    let client = match HttpClient::new(&BackendOptions {
        connect_timeout: config.connect_timeout,
        request_timeout: config.request_timeout,
        ca_file: config.ca_file.clone(),
    }) {
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
    if !matches!(config.mode, Mode::Serve(_)) {
        debug!("one-shot query: {}", describe(&config.mode));
    }
    match config.mode.clone() {
        Mode::Serve(protocol) => serve(&config, protocol, verifier).await,
        Mode::AuthTest {
            user,
            domain,
            password,
        } => {
            let ok = verifier.auth(&user, &domain, &password).await.is_success();
            verifier.settle().await;
            print_bool(ok)
        }
        Mode::IsUserTest { user, domain } => {
            let ok = verifier.isuser(&user, &domain).await == Reply::Yes;
            print_bool(ok)
        }
        Mode::RosterTest { user, domain } => match verifier.roster_and_sync(&user, &domain).await {
            Some(json) => {
                println!("{json}");
                ExitCode::from(EXIT_TRUE)
            }
            None => {
                println!("False");
                ExitCode::from(EXIT_FALSE)
            }
        },
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
    let global = Global {
        kind: config.backend,
        url: config.url.clone(),
        secret: config.secret.clone(),
        login_form: config.login_form,
        api: config.api.clone(),
        roster_ttl: config.roster_ttl,
    };
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
    if let (Some(path), Some(store)) = (&config.ejabberdctl, &store) {
        let ctl = Arc::new(CommandCtl::new(path.clone()));
        let sync = RosterSync::new(ctl, Arc::clone(store));
        verifier = verifier.with_roster_sync(Arc::new(sync));
    }
    Ok(verifier)
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

/// Serves until end of input (stdio) or SIGTERM (sockets).
async fn serve(
    config: &Config,
    protocol: crate::proto::Protocol,
    verifier: Arc<Verifier>,
) -> ExitCode {
    spawn_sighup_handler();
    let shutdown = CancellationToken::new();
    spawn_stop_handler(shutdown.clone());
    let sockets = &config.sockets;
    let mut listeners = match listen::systemd_listeners(protocol) {
        Ok(l) => l,
        Err(e) => {
            error!("socket activation: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    for spec in &sockets.listen {
        match listen::bind(spec, sockets) {
            Ok(bound) => listeners.push(bound),
            Err(e) => {
                error!("{e}");
                eprintln!("xcauth: {e}");
                return ExitCode::from(EXIT_USAGE);
            }
        }
    }
    if listeners.is_empty() {
        match listen::classify_stdin() {
            Ok(listen::Stdin::Stdio) => {}
            Ok(listen::Stdin::Connected(conn)) => {
                info!(
                    "xcauth {VERSION} serving {} on an inherited connection",
                    protocol.name()
                );
                let result = serve::serve_connected(
                    conn,
                    protocol.codec(&config.codec),
                    Arc::clone(&verifier),
                    StreamLimits::socket(sockets.idle_timeout),
                    shutdown,
                )
                .await;
                settle(&verifier, sockets.shutdown_timeout).await;
                return finish_stream(result);
            }
            Ok(listen::Stdin::Listening(fd, family)) => match listen::adopt_listening(fd, family) {
                Ok(listener) => {
                    // Our duplicate is now the only reference we keep: once it
                    // is closed at shutdown, the kernel refuses new clients.
                    if let Err(e) = listen::release_stdin() {
                        warn!("cannot detach standard input from the listening socket: {e}");
                    }
                    listeners.push(listen::Bound {
                        protocol,
                        listener,
                        label: "inherited socket on standard input".into(),
                    });
                }
                Err(e) => {
                    error!("inherited listening socket: {e}");
                    return ExitCode::from(EXIT_USAGE);
                }
            },
            Err(e) => {
                error!("standard input: {e}");
                return ExitCode::from(EXIT_USAGE);
            }
        }
    }
    if listeners.is_empty() {
        info!(
            "xcauth {VERSION} serving {} on standard input",
            protocol.name()
        );
        notify(&[sd_notify::NotifyState::Ready]);
        let result = serve::serve_stdio(
            protocol.codec(&config.codec),
            Arc::clone(&verifier),
            shutdown,
        )
        .await;
        settle(&verifier, sockets.shutdown_timeout).await;
        return finish_stream(result);
    }
    let ctx = ListenContext {
        verifier: Arc::clone(&verifier),
        codec: config.codec.clone(),
        limits: StreamLimits::socket(sockets.idle_timeout),
        connections: Arc::new(Semaphore::new(sockets.max_connections)),
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
    serve::serve_listeners(listeners, ctx, sockets.shutdown_timeout).await;
    // STOPPING=1 must reach systemd before the runtime goes away.
    let _ = told.await;
    settle(&verifier, sockets.shutdown_timeout).await;
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

/// The one-shot query for the log, without the password.
fn describe(mode: &Mode) -> String {
    match mode {
        Mode::Serve(p) => format!("serve {}", p.name()),
        Mode::AuthTest { user, domain, .. } => format!("auth {user}@{domain}"),
        Mode::IsUserTest { user, domain } => format!("isuser {user}@{domain}"),
        Mode::RosterTest { user, domain } => format!("roster {user}@{domain}"),
    }
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

/// Re-opens the log files on every SIGHUP.
fn spawn_sighup_handler() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::hangup()) {
        Ok(mut hup) => {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    logging::request_reopen();
                    info!("SIGHUP: log files re-opened");
                }
            });
        }
        Err(e) => warn!("cannot handle SIGHUP: {e}"),
    }
}
