//! The resolved [`Config`]: the command line over the environment over the
//! config file over the defaults, with the secret read and nothing left
//! optional that has a default.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::file::{exposure_warning, read_config_file};
use super::options::Layer;
use super::values::{CacheStorage, ListenAddress, ListenSpec, Span};
use super::{cli, ConfigError, DEFAULT_CONFIG_FILE, DEFAULT_DB, DEFAULT_LOG_DIR};
use crate::backend::{ApiAccount, BackendKind, LoginForm, DEFAULT_ROSTER_TTL};
use crate::guard::GuardSettings;
use crate::proto::{CodecOptions, Protocol};
use crate::secret::Secret;

/// What this run does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Serve requests of `protocol` on stdin/stdout (or inherited sockets).
    Serve(Protocol),
    /// `-A USER DOMAIN PASSWORD`: one auth query, print True/False.
    AuthTest {
        /// User.
        user: String,
        /// Domain.
        domain: String,
        /// Password or token.
        password: Secret,
    },
    /// `-I USER DOMAIN`: one isuser query, print True/False.
    IsUserTest {
        /// User.
        user: String,
        /// Domain.
        domain: String,
    },
    /// `-R USER DOMAIN`: print the shared roster JSON.
    RosterTest {
        /// User.
        user: String,
        /// Domain.
        domain: String,
    },
    /// `xcauth check` (`--configtest`): test the configuration, print the
    /// results, exit 0 (nothing failed) or 1.
    Check(CheckRequest),
}

/// What `xcauth check` was asked to do beyond the standard tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckRequest {
    /// `--quick`: only the fast tests, for a monitoring probe.
    pub quick: bool,
    /// `--user USER@DOMAIN`: also isuser and roster for this user.
    pub user: Option<String>,
    /// `--password-stdin`: read the user's password from standard input
    /// (otherwise a prompt when it is a terminal) for an auth test.
    pub password_stdin: bool,
}

/// Socket service settings (SPEC §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketOptions {
    /// Own listeners (`--listen`).
    pub listen: Vec<ListenSpec>,
    /// Permission bits of Unix sockets we create.
    pub mode: u32,
    /// Owner (user name or uid) of Unix sockets we create.
    pub owner: Option<String>,
    /// Group (name or gid) of Unix sockets we create.
    pub group: Option<String>,
    /// Most connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// A connection with no request for this long is closed.
    pub idle_timeout: Duration,
    /// A peer (socket or standard output) that takes none of our answer
    /// for this long is closed.
    pub write_timeout: Duration,
    /// On SIGTERM, in-flight requests get this long to finish.
    pub shutdown_timeout: Duration,
    /// Sockets whose clients are believed when they send a client's
    /// address (`--trusted-socket`), by their local address.
    pub trusted: Vec<ListenAddress>,
}

impl Default for SocketOptions {
    fn default() -> Self {
        SocketOptions {
            listen: Vec::new(),
            mode: 0o660,
            owner: None,
            group: None,
            max_connections: 1024,
            idle_timeout: Duration::from_secs(60 * 60),
            write_timeout: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(10),
            trusted: Vec::new(),
        }
    }
}

/// Everything a run needs, with no option left unresolved.
#[derive(Debug, Clone)]
pub struct Config {
    /// What to do.
    pub mode: Mode,
    /// Global API URL (`--url`); `None` when not configured.
    pub url: Option<String>,
    /// Global API secret (`--secret`, `secret-file`, environment, systemd
    /// credential); empty only for the nextcloud kind (no token logins).
    pub secret: Secret,
    /// Global back-end kind (`backend`); `None`: decided by the URL.
    pub backend: Option<BackendKind>,
    /// nextcloud: the API account (`api-user` with its password from
    /// `api-password-file`, `XCAUTH_API_PASSWORD` or the systemd credential
    /// `xcauth-api-password`).
    pub api: Option<ApiAccount>,
    /// nextcloud: how login names are made (`login-form`).
    pub login_form: LoginForm,
    /// nextcloud: how long a user's shared roster is reused (`roster-ttl`).
    pub roster_ttl: Duration,
    /// The failure guard's limits.
    pub guard: GuardSettings,
    /// Database path (`--db`), default `/var/lib/xcauth/xcauth.sqlite3`.
    pub db: PathBuf,
    /// Cache mode.
    pub cache_storage: CacheStorage,
    /// Maximum time between queries for a cache hit, seconds.
    pub cache_query_ttl: i64,
    /// Maximum time since the last back-end verification for a cache hit.
    pub cache_verification_ttl: i64,
    /// Maximum cache age used while the back end is unreachable.
    pub cache_unreachable_ttl: i64,
    /// bcrypt cost for the `db` cache.
    pub bcrypt_rounds_db: u32,
    /// bcrypt cost for the `memory` cache.
    pub bcrypt_rounds_memory: u32,
    /// Back-end connect timeout.
    pub connect_timeout: Duration,
    /// Back-end whole-request timeout.
    pub request_timeout: Duration,
    /// Extra CA certificate file (PEM) trusted besides the system roots.
    pub ca_file: Option<PathBuf>,
    /// Log directory (`--log`).
    pub log_dir: PathBuf,
    /// Debug-level logging.
    pub debug: bool,
    /// Log to stderr instead of files.
    pub interactive: bool,
    /// ejabberdctl to run for shared roster updates.
    pub ejabberdctl: Option<PathBuf>,
    /// Limit for one ejabberdctl run (`ejabberdctl-timeout`).
    pub ejabberdctl_timeout: Duration,
    /// Back-end requests in flight at once (`backend-concurrency`).
    pub backend_concurrency: usize,
    /// Log files too when standard error is the journal
    /// (`log-files-under-journal`).
    pub log_files_under_journal: bool,
    /// Own listeners and limits for socket service.
    pub sockets: SocketOptions,
    /// Codec settings (Postfix recipient delimiter, saslauthd framing).
    pub codec: CodecOptions,
    /// Where to serve `/metrics` and `/health` (`--metrics`), if anywhere.
    pub metrics: Option<ListenAddress>,
    /// How often a serving process writes its metric totals to the
    /// database (`stats-interval`).
    pub stats_interval: Duration,
    /// Legacy pre-2.0 database options that were given (name, path).
    pub legacy_dbs: Vec<(&'static str, PathBuf)>,
    /// The config file that was read, if any.
    pub config_file: Option<PathBuf>,
    /// The file the secret was read from (`secret-file`), if it was.
    pub secret_file: Option<PathBuf>,
    /// The file the API password was read from (`api-password-file`), if
    /// it was.
    pub api_password_file: Option<PathBuf>,
    /// Problems worth a log line that do not stop the start (a secret on
    /// the command line, a secret file readable by others, ...).
    pub warnings: Vec<String>,
}

const DEFAULT_QUERY_TTL: i64 = 60 * 60;
const DEFAULT_VERIFICATION_TTL: i64 = 24 * 60 * 60;
const DEFAULT_UNREACHABLE_TTL: i64 = 7 * 24 * 60 * 60;
/// `(db, memory)`: the db cache outlives the process, so it gets the
/// expensive cost; the memory cache only has to slow down a core dump.
const DEFAULT_BCRYPT_ROUNDS: (u32, u32) = (12, 4);
const DEFAULT_TIMEOUTS: (Duration, Duration) = (Duration::from_secs(5), Duration::from_secs(10));
/// File names looked up in `$CREDENTIALS_DIRECTORY` (systemd
/// `LoadCredential=`), first match wins.
const CREDENTIAL_NAMES: [&str; 2] = ["xcauth-secret", "secret"];
/// The systemd credential holding the API account's password.
const API_PASSWORD_CREDENTIAL: &str = "xcauth-api-password";
/// The variable holding the API account's password.
const API_PASSWORD_ENV: &str = "XCAUTH_API_PASSWORD";
const CONFIG_FILE_ENV: &str = "XCAUTH_CONFIG_FILE";

/// Resolves the configuration from the command line (`args`, including
/// `argv[0]`), the environment (`env`, e.g. `|k| std::env::var(k).ok()`)
/// and the config file (`-c`, `XCAUTH_CONFIG_FILE` or
/// [`DEFAULT_CONFIG_FILE`]).
pub fn load<I, T>(args: I, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    load_with_default_file(args, env, Path::new(DEFAULT_CONFIG_FILE))
}

/// [`load`] with another default config file (for tests and packagers).
pub fn load_with_default_file<I, T>(
    args: I,
    env: &dyn Fn(&str) -> Option<String>,
    default_file: &Path,
) -> Result<Config, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    load_from(cli::parse(args)?, env, default_file)
}

/// [`load_with_default_file`] for a command line parsed already (by the
/// command with the administration subcommands, for instance).
pub fn load_from(
    cli: cli::CommandLine,
    env: &dyn Fn(&str) -> Option<String>,
    default_file: &Path,
) -> Result<Config, ConfigError> {
    let mut warnings = Vec::new();

    let env_path = env(CONFIG_FILE_ENV).filter(|p| !p.is_empty());
    let (file_path, explicit) = match (&cli.config_file, env_path) {
        (Some(path), _) => (path.clone(), true),
        (None, Some(path)) => (PathBuf::from(path), true),
        (None, None) => (default_file.to_path_buf(), false),
    };

    let secret_on_command_line = cli.settings.secret.is_some();
    let env_layer = Layer::from_env(env)?;
    let file = read_config_file(&file_path, explicit)?;
    let config_file = file.as_ref().map(|_| file_path);
    let file_layer = match file {
        Some(file) => {
            warnings.extend(file.warnings);
            file.layer
        }
        None => Layer::default(),
    };
    let merged = cli.settings.over(env_layer).over(file_layer);
    let guard = guard_settings(&merged);
    let metrics = metrics_address(&merged)?;
    let stats_interval = merged
        .stats_interval
        .map_or(crate::metrics::totals::WRITE_EVERY, |s| s.duration());
    if stats_interval > crate::metrics::totals::MAX_WRITE_EVERY {
        return Err(ConfigError::Invalid(format!(
            "stats-interval={}s: at most {}s (xcauth stats takes a process silent for {}s for gone)",
            stats_interval.as_secs(),
            crate::metrics::totals::MAX_WRITE_EVERY.as_secs(),
            crate::metrics::totals::STALE_AFTER.as_secs()
        )));
    }

    // Sockets that say their own protocol (--listen, systemd socket names)
    // need no -t; generic is then the fallback for unnamed descriptors.
    let sockets_given = merged.listen.as_ref().is_some_and(|l| !l.0.is_empty())
        || env("LISTEN_FDS").is_some_and(|n| !n.is_empty());
    let protocol = match merged.protocol {
        None if sockets_given => Some(Protocol::Generic),
        other => other,
    };
    // -A, -I and -R before -t.
    let mode = match (cli.one_shot, protocol) {
        (Some(one_shot), _) => one_shot,
        (None, Some(protocol)) => Mode::Serve(protocol),
        (None, None) => {
            return Err(ConfigError::Invalid(format!(
                "one of -t, -A, -I, -R is required (type=... may also be set in the config file)\n\n{}\n\n\
                 For more information, try '--help'.",
                cli::command().render_usage()
            )))
        }
    };
    // The check reports the service's own logging settings.
    let one_shot = !matches!(mode, Mode::Serve(_) | Mode::Check(_));

    let url = merged.url.map(|url| url.0).ok_or_else(|| {
        ConfigError::Invalid(format!(
            "no URL: set url=... in {}, XCAUTH_URL or --url \
             (the Nextcloud base URL, e.g. https://cloud.example.org, or for \
             backend=jsxc the URL shown on the Nextcloud JSXC admin page)",
            config_file.as_deref().unwrap_or(default_file).display()
        ))
    })?;
    if let Some(warning) = plain_http_warning(&url) {
        warnings.push(warning);
    }

    if secret_on_command_line {
        warnings.push(
            "the secret given with --secret is visible in the process list; \
             use secret-file=PATH in the config file or --secret-file instead"
                .into(),
        );
    }
    let mut secret_file = None;
    let secret = match (merged.secret, merged.secret_file) {
        (Some(secret), _) => Some(secret),
        (None, Some(path)) => {
            let secret = read_secret(&path)?;
            if let Some(warning) = exposure_warning(&path, "is the secret file") {
                warnings.push(warning);
            }
            secret_file = Some(path);
            Some(secret)
        }
        (None, None) => credential_secret(env, &CREDENTIAL_NAMES)?,
    };
    let secret = secret.filter(|s| !s.is_empty());
    let kind = merged.backend.unwrap_or_else(|| BackendKind::for_url(&url));
    // The stock-Nextcloud kind needs a secret only for JSXC tokens.
    let secret = match (secret, kind) {
        (Some(secret), _) => secret,
        (None, BackendKind::Nextcloud) => Secret::default(),
        (None, BackendKind::Jsxc) => {
            return Err(ConfigError::Invalid(format!(
                "no API secret: set secret-file=PATH (or secret=...) in {}, \
                 XCAUTH_SECRET_FILE or XCAUTH_SECRET, or a systemd credential named \
                 xcauth-secret (the secret is shown on the Nextcloud JSXC admin page)",
                config_file.as_deref().unwrap_or(default_file).display()
            )))
        }
    };
    let api_password_file = merged.api_password_file.clone();
    let api_password = match merged.api_password_file {
        Some(path) => {
            let password = read_secret(&path)?;
            if let Some(warning) = exposure_warning(&path, "is the API password file") {
                warnings.push(warning);
            }
            Some(password)
        }
        None => match env(API_PASSWORD_ENV).filter(|p| !p.is_empty()) {
            Some(password) => Some(Secret::new(password)),
            None => credential_secret(env, &[API_PASSWORD_CREDENTIAL])?,
        },
    };
    let api = match (merged.api_user.filter(|u| !u.is_empty()), api_password) {
        (Some(user), Some(password)) => Some(ApiAccount { user, password }),
        (Some(user), None) => {
            return Err(ConfigError::Invalid(format!(
                "api-user={user} has no password: set api-password-file=PATH, \
                 {API_PASSWORD_ENV} or a systemd credential named {API_PASSWORD_CREDENTIAL}"
            )))
        }
        (None, Some(_)) => {
            warnings.push("an API password is set but no api-user; it is not used".into());
            None
        }
        (None, None) => None,
    };

    let (bcrypt_rounds_db, bcrypt_rounds_memory) = merged
        .bcrypt_rounds
        .map_or(DEFAULT_BCRYPT_ROUNDS, |r| (r.db, r.memory));
    let (connect_timeout, request_timeout) = merged
        .timeouts
        .map_or(DEFAULT_TIMEOUTS, |t| (t.connect, t.total));
    let legacy_dbs = [
        ("domain-db", merged.domain_db),
        ("cache-db", merged.cache_db),
        ("shared-roster-db", merged.shared_roster_db),
    ]
    .into_iter()
    .filter_map(|(name, path)| path.map(|path| (name, path)))
    .collect();
    let ttl = |span: Option<Span>, default: i64| span.map_or(default, |s| s.0);
    let sockets = SocketOptions::default();
    let secret_file = secret_file.filter(|_| !secret.is_empty());
    let api_password_file = api_password_file.filter(|_| api.is_some());

    Ok(Config {
        mode,
        url: Some(url),
        secret,
        backend: merged.backend,
        api,
        login_form: merged.login_form.unwrap_or_default(),
        guard,
        roster_ttl: merged.roster_ttl.map_or(DEFAULT_ROSTER_TTL, |s| {
            Duration::from_secs(s.0.unsigned_abs())
        }),
        db: merged.db.unwrap_or_else(|| PathBuf::from(DEFAULT_DB)),
        cache_storage: merged.cache_storage.unwrap_or_default(),
        cache_query_ttl: ttl(merged.cache_query_ttl, DEFAULT_QUERY_TTL),
        cache_verification_ttl: ttl(merged.cache_verification_ttl, DEFAULT_VERIFICATION_TTL),
        cache_unreachable_ttl: ttl(merged.cache_unreachable_ttl, DEFAULT_UNREACHABLE_TTL),
        bcrypt_rounds_db,
        bcrypt_rounds_memory,
        connect_timeout,
        request_timeout,
        ca_file: merged.ca_file,
        log_dir: merged
            .log_dir
            .unwrap_or_else(|| PathBuf::from(DEFAULT_LOG_DIR)),
        debug: one_shot || merged.debug.unwrap_or(false),
        interactive: one_shot || merged.interactive.unwrap_or(false),
        ejabberdctl: merged.ejabberdctl,
        ejabberdctl_timeout: merged
            .ejabberdctl_timeout
            .map_or(crate::roster::DEFAULT_CTL_TIMEOUT, |s| s.duration()),
        backend_concurrency: merged
            .backend_concurrency
            .map_or(crate::backend::http::MAX_CONCURRENT_REQUESTS, |n| n.0),
        log_files_under_journal: merged.log_files_under_journal.unwrap_or(false),
        sockets: SocketOptions {
            listen: merged.listen.map(|l| l.0).unwrap_or_default(),
            mode: merged.socket_mode.map_or(sockets.mode, |m| m.0),
            owner: merged.socket_owner,
            group: merged.socket_group,
            max_connections: merged
                .max_connections
                .map_or(sockets.max_connections, |n| n.0),
            idle_timeout: merged
                .idle_timeout
                .map_or(sockets.idle_timeout, |s| s.duration()),
            write_timeout: merged
                .write_timeout
                .map_or(sockets.write_timeout, |s| s.duration()),
            shutdown_timeout: merged
                .shutdown_timeout
                .map_or(sockets.shutdown_timeout, |s| s.duration()),
            trusted: merged.trusted_socket.map(|t| t.0).unwrap_or_default(),
        },
        codec: CodecOptions {
            recipient_delimiter: merged.recipient_delimiter.unwrap_or_default(),
            saslauthd_fields: merged.saslauthd_fields.unwrap_or_default(),
        },
        metrics,
        stats_interval,
        legacy_dbs,
        config_file,
        secret_file,
        api_password_file,
        warnings,
    })
}

/// `--metrics`: a TCP address other hosts can reach is refused unless
/// `metrics-allow-remote` is set. The metrics have no authentication and
/// tell anyone who can read them how many logins fail, when and over which
/// protocol, and when the back end is down: worth knowing to time a
/// guessing attack, and the health check is a free probe. A Unix socket
/// or loopback keeps them to this host.
fn metrics_address(merged: &Layer) -> Result<Option<ListenAddress>, ConfigError> {
    let Some(address) = merged.metrics.clone().map(|m| m.0) else {
        return Ok(None);
    };
    if let ListenAddress::Tcp(addr) = &address {
        if !addr.ip().is_loopback() && !merged.metrics_allow_remote.unwrap_or(false) {
            return Err(ConfigError::Invalid(format!(
                "metrics={addr}: not a loopback address. The metrics have no authentication \
                 and show when logins fail (useful for timing password guesses): use \
                 127.0.0.1:PORT, [::1]:PORT or a Unix socket path, or set \
                 metrics-allow-remote to serve them to other hosts anyway (behind a firewall)"
            )));
        }
    }
    Ok(Some(address))
}

/// The guard's settings from a merged layer, defaults where absent.
pub(super) fn guard_settings(merged: &Layer) -> GuardSettings {
    let d = GuardSettings::default();
    GuardSettings {
        negative_ttl: merged.negative_ttl.map_or(d.negative_ttl, |s| s.0),
        jid_failures: merged.guard_jid_failures.map_or(d.jid_failures, |n| n.0),
        jid_window: merged.guard_jid_window.map_or(d.jid_window, |s| s.0),
        address_failures: merged
            .guard_address_failures
            .map_or(d.address_failures, |n| n.0),
        address_window: merged
            .guard_address_window
            .map_or(d.address_window, |s| s.0),
        allowlist: merged.guard_allowlist.clone().map_or(d.allowlist, |n| n.0),
    }
}

/// A warning for `http://` to anything but this host: passwords would
/// cross the network in clear text (the signature protects only integrity).
pub(crate) fn plain_http_warning(text: &str) -> Option<String> {
    let url = url::Url::parse(text).ok()?;
    if url.scheme() != "http" {
        return None;
    }
    let local = match url.host()? {
        url::Host::Domain(name) => name.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    };
    (!local).then(|| {
        format!("the API URL {text} uses plain http: passwords travel unencrypted; use https")
    })
}

/// Reads a secret file: the whole content minus trailing line ends.
fn read_secret(path: &Path) -> Result<Secret, ConfigError> {
    let io_error = |source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    };
    let bytes = fs::read(path).map_err(io_error)?;
    let text = String::from_utf8(bytes).map_err(|_| {
        io_error(io::Error::new(
            io::ErrorKind::InvalidData,
            "the secret is not valid UTF-8",
        ))
    })?;
    let secret = text.trim_end_matches(['\r', '\n']);
    if secret.is_empty() {
        return Err(ConfigError::Invalid(format!(
            "the secret file {} is empty",
            path.display()
        )));
    }
    Ok(Secret::new(secret))
}

/// The first of the systemd credentials `names`
/// (`LoadCredential=xcauth-secret:...`), if any.
fn credential_secret(
    env: &dyn Fn(&str) -> Option<String>,
    names: &[&str],
) -> Result<Option<Secret>, ConfigError> {
    let Some(dir) = env("CREDENTIALS_DIRECTORY").filter(|d| !d.is_empty()) else {
        return Ok(None);
    };
    for name in names {
        let path = Path::new(&dir).join(name);
        match fs::metadata(&path) {
            Ok(_) => return read_secret(&path).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => return Err(ConfigError::Io { path, source }),
        }
    }
    Ok(None)
}

/// What the administration subcommands take from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSettings {
    /// Database path, default [`DEFAULT_DB`].
    pub db: PathBuf,
    /// ejabberdctl to mirror deletions into ejabberd, if configured.
    pub ejabberdctl: Option<PathBuf>,
    /// Limit for one ejabberdctl run (`ejabberdctl-timeout`).
    pub ejabberdctl_timeout: Duration,
    /// Where the server caches passwords.
    pub cache_storage: CacheStorage,
    /// The failure guard's limits, as the server reads them.
    pub guard: GuardSettings,
    /// The config file that was read, if any.
    pub config_file: Option<PathBuf>,
}

/// Resolves `db`, `ejabberdctl` and `cache-storage` as [`load`] does
/// (environment > config file > defaults; the file is `config_file`, else
/// `XCAUTH_CONFIG_FILE`, else [`DEFAULT_CONFIG_FILE`] if present), without
/// asking for a URL or secret. The subcommands' own options go on top.
pub fn admin_settings(
    config_file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<AdminSettings, ConfigError> {
    let cli = cli::CommandLine {
        config_file: config_file.map(Path::to_path_buf),
        ..cli::CommandLine::default()
    };
    admin_settings_from(&cli, env)
}

/// [`admin_settings`] with the command line's options on top (`xcauth
/// --db PATH -c FILE domain list`): command line > environment > file >
/// defaults, as for the server.
pub fn admin_settings_from(
    cli: &cli::CommandLine,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<AdminSettings, ConfigError> {
    let config_file = cli.config_file.as_deref();
    let (path, explicit) = match (config_file, env(CONFIG_FILE_ENV).filter(|p| !p.is_empty())) {
        (Some(path), _) => (path.to_path_buf(), true),
        (None, Some(path)) => (PathBuf::from(path), true),
        (None, None) => (PathBuf::from(DEFAULT_CONFIG_FILE), false),
    };
    let file = read_config_file(&path, explicit)?;
    let config_file = file.as_ref().map(|_| path);
    let merged = cli
        .settings
        .clone()
        .over(Layer::from_env(env)?)
        .over(file.map(|f| f.layer).unwrap_or_default());
    let guard = guard_settings(&merged);
    Ok(AdminSettings {
        db: merged.db.unwrap_or_else(|| PathBuf::from(DEFAULT_DB)),
        ejabberdctl: merged.ejabberdctl,
        ejabberdctl_timeout: merged
            .ejabberdctl_timeout
            .map_or(crate::roster::DEFAULT_CTL_TIMEOUT, |s| s.duration()),
        cache_storage: merged.cache_storage.unwrap_or_default(),
        guard,
        config_file,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testutil::*;
    use crate::proto::SaslauthdFields;

    #[test]
    fn defaults() {
        let c = ok(&[]);
        assert_eq!(c.mode, Mode::Serve(Protocol::Generic));
        assert_eq!(c.url.as_deref(), Some(URL));
        assert_eq!(c.secret.expose(), "s3cr3t");
        assert_eq!(c.db, PathBuf::from("/var/lib/xcauth/xcauth.sqlite3"));
        assert_eq!(c.cache_storage, CacheStorage::None);
        assert_eq!(c.cache_query_ttl, 3600);
        assert_eq!(c.cache_verification_ttl, 86400);
        assert_eq!(c.cache_unreachable_ttl, 604800);
        assert_eq!((c.bcrypt_rounds_db, c.bcrypt_rounds_memory), (12, 4));
        assert_eq!(c.connect_timeout, Duration::from_secs(5));
        assert_eq!(c.request_timeout, Duration::from_secs(10));
        assert_eq!(c.log_dir, PathBuf::from("/var/log/xcauth"));
        assert!(!c.debug && !c.interactive);
        assert_eq!(c.ca_file, None);
        assert_eq!(c.ejabberdctl, None);
        assert_eq!(c.codec.recipient_delimiter, "");
        assert_eq!(c.codec.saslauthd_fields, SaslauthdFields::Auto);
        assert!(c.legacy_dbs.is_empty());
        assert_eq!(c.config_file, None);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn missing_mode_url_or_secret() {
        let e = load_test(&["-u", URL, "-s", "x"], &[], None).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let m = invalid(Err(e));
        assert!(m.starts_with("one of -t, -A, -I, -R is required"), "{m}");
        assert!(m.contains("Usage:"), "{m}");

        let m = invalid(load_test(&["-t", "generic", "-s", "x"], &[], None));
        assert!(m.contains("no URL") && m.contains("XCAUTH_URL"), "{m}");

        let m = invalid(load_test(&["-t", "generic", "-u", URL], &[], None));
        assert!(m.contains("no API secret"), "{m}");
        assert!(
            m.contains("secret-file") && m.contains("xcauth-secret"),
            "{m}"
        );
    }

    #[test]
    fn config_file_choice() {
        let (_dir, path) = conf(&format!("type=postfix\nurl={URL}\nsecret=x\n"));
        let path_str = path.to_str().unwrap();
        // XCAUTH_CONFIG_FILE replaces the default.
        let c = load_test(
            &[],
            &[("XCAUTH_CONFIG_FILE", path_str)],
            Some("type=ejabberd\n"),
        )
        .unwrap();
        assert_eq!(c.mode, Mode::Serve(Protocol::Postfix));
        assert_eq!(c.config_file.as_deref(), Some(path.as_path()));
        // -c beats XCAUTH_CONFIG_FILE.
        let (_dir2, other) = conf(&format!("type=saslauthd\nurl={URL}\nsecret=x\n"));
        let c = load_test(
            &["-c", other.to_str().unwrap()],
            &[("XCAUTH_CONFIG_FILE", path_str)],
            None,
        )
        .unwrap();
        assert_eq!(c.mode, Mode::Serve(Protocol::Saslauthd));
        // A named file must exist; the default one need not.
        let missing = path.with_file_name("missing.conf");
        let r = load_test(&["-c", missing.to_str().unwrap()], &[], None);
        assert!(matches!(r, Err(ConfigError::Io { .. })), "{r:?}");
        assert!(load_test(&BASE, &[], None).is_ok());
    }

    #[test]
    fn secret_sources() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret.txt");
        fs::write(&file, "filesecret\r\n").unwrap();
        let file = file.to_str().unwrap();
        let base = ["-t", "generic", "-u", URL];

        // secret-file in the file; explicit secret in the same layer wins.
        let c = load_test(&base, &[], Some(&format!("secret-file={file}\n"))).unwrap();
        assert_eq!(c.secret.expose(), "filesecret");
        let c = load_test(
            &base,
            &[],
            Some(&format!("secret-file={file}\nsecret=plain\n")),
        )
        .unwrap();
        assert_eq!(c.secret.expose(), "plain");
        // A higher layer's secret file beats a lower layer's secret.
        let c = load_test(
            &base,
            &[("XCAUTH_SECRET_FILE", file)],
            Some("secret=plain\n"),
        )
        .unwrap();
        assert_eq!(c.secret.expose(), "filesecret");
        // --secret works, with a warning.
        let mut args = base.to_vec();
        args.extend(["-s", "cli"]);
        let c = load_test(&args, &[("XCAUTH_SECRET_FILE", file)], None).unwrap();
        assert_eq!(c.secret.expose(), "cli");
        assert!(
            c.warnings.iter().any(|w| w.contains("process list")),
            "{:?}",
            c.warnings
        );
        assert!(!c.warnings.iter().any(|w| w.contains("cli")));

        // Missing and empty secret files.
        let missing = dir.path().join("nope");
        let r = load_test(
            &base,
            &[("XCAUTH_SECRET_FILE", missing.to_str().unwrap())],
            None,
        );
        assert!(matches!(r, Err(ConfigError::Io { .. })), "{r:?}");
        let empty = dir.path().join("empty");
        fs::write(&empty, "\n").unwrap();
        let m = invalid(load_test(
            &base,
            &[("XCAUTH_SECRET_FILE", empty.to_str().unwrap())],
            None,
        ));
        assert!(m.contains("empty"), "{m}");
    }

    #[test]
    fn systemd_credential() {
        let base = ["-t", "generic", "-u", URL];
        let creds = tempfile::tempdir().unwrap();
        let creds_dir = creds.path().to_str().unwrap();
        // Nothing in the directory: still no secret.
        let m = invalid(load_test(
            &base,
            &[("CREDENTIALS_DIRECTORY", creds_dir)],
            None,
        ));
        assert!(m.contains("no API secret"), "{m}");

        fs::write(creds.path().join("secret"), "plain-name\n").unwrap();
        let c = load_test(&base, &[("CREDENTIALS_DIRECTORY", creds_dir)], None).unwrap();
        assert_eq!(c.secret.expose(), "plain-name");

        fs::write(creds.path().join("xcauth-secret"), "cred\n").unwrap();
        let c = load_test(&base, &[("CREDENTIALS_DIRECTORY", creds_dir)], None).unwrap();
        assert_eq!(c.secret.expose(), "cred");

        // Any configured secret beats the credential.
        let c = load_test(
            &base,
            &[("CREDENTIALS_DIRECTORY", creds_dir)],
            Some("secret=configured\n"),
        )
        .unwrap();
        assert_eq!(c.secret.expose(), "configured");
    }

    #[cfg(unix)]
    #[test]
    fn readable_config_file_with_secret_warns() {
        use std::os::unix::fs::PermissionsExt;
        let (_dir, path) = conf(&format!("type=generic\nurl={URL}\nsecret=x\n"));
        let path_str = path.to_str().unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let c = load_test(&["-c", path_str], &[], None).unwrap();
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let c = load_test(&["-c", path_str], &[], None).unwrap();
        assert!(
            c.warnings
                .iter()
                .any(|w| w.contains("readable by group/others") && w.contains("644")),
            "{:?}",
            c.warnings
        );
        // Without a secret in it, a readable file is fine.
        let (_dir, path) = conf(&format!("type=generic\nurl={URL}\n"));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let c = load_test(
            &["-c", path.to_str().unwrap(), "--secret-file", "/dev/null"],
            &[],
            None,
        );
        // /dev/null is empty: the error is about the secret, not a warning.
        assert!(invalid(c).contains("empty"));
    }

    #[test]
    fn plain_http_warns_except_on_loopback() {
        assert!(plain_http_warning("http://cloud.example.org/x").is_some());
        assert!(plain_http_warning("http://localhost/x").is_none());
        assert!(plain_http_warning("http://127.0.0.1:8080/x").is_none());
        assert!(plain_http_warning("http://[::1]/x").is_none());
        assert!(plain_http_warning(URL).is_none());
        let c = load_test(
            &[
                "-t",
                "generic",
                "-u",
                "http://cloud.example.org/",
                "-s",
                "x",
            ],
            &[],
            None,
        )
        .unwrap();
        assert!(c.warnings.iter().any(|w| w.contains("plain http")));
    }

    #[test]
    fn metrics_only_on_loopback_or_a_unix_socket_unless_allowed() {
        use std::net::SocketAddr;
        let tcp = |a: &str| Some(ListenAddress::Tcp(a.parse::<SocketAddr>().unwrap()));
        assert_eq!(ok(&[]).metrics, None);
        assert_eq!(
            ok(&["--metrics", "127.0.0.1:9155"]).metrics,
            tcp("127.0.0.1:9155")
        );
        assert_eq!(ok(&["--metrics", "[::1]:0"]).metrics, tcp("[::1]:0"));
        let unix = Some(ListenAddress::Unix(PathBuf::from("/run/xcauth/metrics")));
        assert_eq!(ok(&["--metrics", "/run/xcauth/metrics"]).metrics, unix);
        assert_eq!(ok(&["--metrics", "unix:/run/xcauth/metrics"]).metrics, unix);
        for remote in ["0.0.0.0:9155", "192.0.2.1:9155", "[::]:9155"] {
            let m = invalid(load_test(&BASE, &[("XCAUTH_METRICS", remote)], None));
            assert!(m.contains("not a loopback address"), "{m}");
            assert!(m.contains("metrics-allow-remote"), "{m}");
            let file = format!("metrics={remote}\nmetrics-allow-remote\n");
            let c = load_test(&BASE, &[], Some(&file)).unwrap();
            assert_eq!(c.metrics, tcp(remote));
        }
        for bad in ["9155", "localhost:9155", "relative/path", ""] {
            let result = load_test(&BASE, &[], Some(&format!("metrics={bad}\n")));
            assert!(
                matches!(result, Err(ConfigError::File { line: 1, .. })),
                "{bad}: {result:?}"
            );
        }
    }
}
