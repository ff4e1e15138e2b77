//! Command line, environment and the original's `key=value` config file,
//! resolved into one [`Config`] (command line > environment > file >
//! defaults).

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::builder::PossibleValuesParser;
use clap::{Arg, ArgAction, ArgGroup, CommandFactory, FromArgMatches, Parser};

use crate::proto::{CodecOptions, Protocol, SaslauthdFields};
use crate::secret::Secret;

/// Where cached credentials live (SPEC §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheStorage {
    /// No cache (default).
    #[default]
    None,
    /// In process memory, lost on exit.
    Memory,
    /// In the SQLite database.
    Db,
}

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
}

/// Where a `--listen` socket is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddress {
    /// A TCP address such as `127.0.0.1:23663` or `[::1]:23663`.
    Tcp(std::net::SocketAddr),
    /// A Unix socket path (`unix:/run/saslauthd/mux`).
    Unix(PathBuf),
}

/// One `--listen PROTO=ADDR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenSpec {
    /// The protocol spoken on this socket.
    pub protocol: Protocol,
    /// Where to listen.
    pub address: ListenAddress,
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
    /// On SIGTERM, in-flight requests get this long to finish.
    pub shutdown_timeout: Duration,
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
            shutdown_timeout: Duration::from_secs(10),
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
    /// credential).
    pub secret: Secret,
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
    /// Own listeners and limits for socket service.
    pub sockets: SocketOptions,
    /// Codec settings (Postfix recipient delimiter, saslauthd framing).
    pub codec: CodecOptions,
    /// Legacy pre-2.0 database options that were given (name, path).
    pub legacy_dbs: Vec<(&'static str, PathBuf)>,
    /// The config file that was read, if any.
    pub config_file: Option<PathBuf>,
    /// Problems worth a log line that do not stop the start (a secret on
    /// the command line, a secret file readable by others, ...).
    pub warnings: Vec<String>,
}

/// The config file read when neither `-c` nor `XCAUTH_CONFIG_FILE` names
/// one; a missing file is fine, an unreadable one is an error.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/xcauth.conf";
/// Default `--db`.
pub const DEFAULT_DB: &str = "/var/lib/xcauth/xcauth.sqlite3";
/// Default `--log`.
pub const DEFAULT_LOG_DIR: &str = "/var/log/xcauth";
/// Prefix of the environment variables: `XCAUTH_` + long option name in
/// upper case with `-` turned into `_`.
pub const ENV_PREFIX: &str = "XCAUTH_";

const DEFAULT_QUERY_TTL: i64 = 60 * 60;
const DEFAULT_VERIFICATION_TTL: i64 = 24 * 60 * 60;
const DEFAULT_UNREACHABLE_TTL: i64 = 7 * 24 * 60 * 60;
/// `(db, memory)`: the db cache outlives the process, so it gets the
/// expensive cost; the memory cache only has to slow down a core dump.
const DEFAULT_BCRYPT_ROUNDS: (u32, u32) = (12, 4);
const DEFAULT_TIMEOUTS: (Duration, Duration) = (Duration::from_secs(5), Duration::from_secs(10));
/// bcrypt accepts costs 4..=31.
const BCRYPT_ROUNDS: std::ops::RangeInclusive<u32> = 4..=31;
/// File names looked up in `$CREDENTIALS_DIRECTORY` (systemd
/// `LoadCredential=`), first match wins.
const CREDENTIAL_NAMES: [&str; 2] = ["xcauth-secret", "secret"];
const CONFIG_FILE_ENV: &str = "XCAUTH_CONFIG_FILE";

const PROTOCOL_NAMES: [&str; 5] = ["generic", "prosody", "ejabberd", "saslauthd", "postfix"];
const CACHE_STORAGE_NAMES: [&str; 3] = ["none", "memory", "db"];
const SASLAUTHD_FIELDS_NAMES: [&str; 3] = ["auto", "4", "5"];

/// Why no [`Config`] could be made. Every variant means "do not start";
/// [`ConfigError::exit_code`] says with which status.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Command-line usage error, or `--help`/`--version`: call `.exit()`,
    /// which prints it and exits 0 (help, version) or 2.
    #[error(transparent)]
    Cli(#[from] clap::Error),
    /// A line of the config file is wrong.
    #[error("{}:{line}: {message}", path.display())]
    File {
        /// The config file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// A file named by the configuration cannot be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Options that are fine one by one but not together (or missing).
    #[error("{0}")]
    Invalid(String),
}

impl ConfigError {
    /// Process exit status: 0 for `--help`/`--version`, 2 for everything
    /// else.
    pub fn exit_code(&self) -> i32 {
        match self {
            ConfigError::Cli(e) => e.exit_code(),
            _ => 2,
        }
    }
}

const AFTER_HELP: &str = "\
One of -t, -A, -I or -R is required. -A, -I and -R take precedence over -t \
and imply -i and -d.

Every option except -c, -A, -I and -R can also be set in the config file \
(/etc/xcauth.conf, or -c FILE) as name=value with its long name (a switch as \
`debug` or `debug=true`), or in the environment as XCAUTH_NAME (e.g. \
XCAUTH_SECRET_FILE). The command line beats the environment, which beats the \
config file. When no secret is set, the systemd credential `xcauth-secret` \
is used.

Time spans are seconds, or a number with s, m, h, d or w (90, 30m, 1h, 2d, 1w).

Administration (domains, cached users, groups, roster refresh): xcauth help";

/// The command line as clap sees it. Values are parsed by the same
/// functions as environment and file values, so all three accept the same
/// spellings. No defaults here: an absent option must fall through to the
/// environment and the file.
// No `Debug`: it holds the secret and the -A password as plain strings.
#[derive(Parser)]
#[command(
    name = "xcauth",
    version,
    disable_version_flag = true,
    about = "Answers \"is this password right?\" and \"does this user exist?\" for \
             XMPP servers (ejabberd, Prosody) and mail servers (saslauthd, Postfix) \
             from JSXC tokens and the Nextcloud JSXC external API.",
    after_help = AFTER_HELP,
    group(ArgGroup::new("one_shot").args(["auth_test", "isuser_test", "roster_test"])),
)]
struct Cli {
    /// Config file [default: /etc/xcauth.conf, if present]
    #[arg(short = 'c', long, value_name = "FILE")]
    config_file: Option<PathBuf>,
    /// Protocol to serve on standard input or inherited sockets (prosody =
    /// generic)
    #[arg(short = 't', long = "type", value_name = "TYPE",
          value_parser = PossibleValuesParser::new(PROTOCOL_NAMES))]
    protocol: Option<String>,
    /// One-shot auth query; prints True or False
    #[arg(short = 'A', long, num_args = 3, value_names = ["USER", "DOMAIN", "PASSWORD"],
          allow_hyphen_values = true)]
    auth_test: Option<Vec<String>>,
    /// One-shot isuser query; prints True or False
    #[arg(short = 'I', long, num_args = 2, value_names = ["USER", "DOMAIN"])]
    isuser_test: Option<Vec<String>>,
    /// One-shot shared roster query; prints the JSON
    #[arg(short = 'R', long, num_args = 2, value_names = ["USER", "DOMAIN"])]
    roster_test: Option<Vec<String>>,
    /// JSXC external API URL (shown on the Nextcloud JSXC admin page)
    #[arg(short, long, value_name = "URL", value_parser = parse_url)]
    url: Option<String>,
    /// API secret; visible in the process list, prefer --secret-file
    #[arg(short, long, value_name = "SECRET")]
    secret: Option<String>,
    /// File holding the API secret
    #[arg(long, value_name = "PATH")]
    secret_file: Option<PathBuf>,
    /// Extra CA certificates (PEM) to trust for the API URL
    #[arg(long, value_name = "PATH")]
    ca_file: Option<PathBuf>,
    /// Back-end timeouts in seconds: CONNECT[,TOTAL] [default: 5,10]
    #[arg(long, value_name = "SECONDS", value_parser = parse_timeouts)]
    timeout: Option<(Duration, Duration)>,
    /// SQLite database (domains, cache, roster state)
    /// [default: /var/lib/xcauth/xcauth.sqlite3]
    #[arg(long, value_name = "PATH")]
    db: Option<PathBuf>,
    /// Where to cache verified passwords [default: none]
    #[arg(long, value_name = "WHERE", value_parser = PossibleValuesParser::new(CACHE_STORAGE_NAMES))]
    cache_storage: Option<String>,
    /// Cache hits need a query younger than this [default: 1h]
    #[arg(long, value_name = "SPAN", value_parser = parse_span)]
    cache_query_ttl: Option<i64>,
    /// Cache hits need a back-end verification younger than this
    /// [default: 1d]
    #[arg(long, value_name = "SPAN", value_parser = parse_span)]
    cache_verification_ttl: Option<i64>,
    /// While the back end is unreachable, accept cache entries verified
    /// within this span [default: 1w]
    #[arg(long, value_name = "SPAN", value_parser = parse_span)]
    cache_unreachable_ttl: Option<i64>,
    /// bcrypt cost of cached passwords: DB[,MEMORY], 4 to 31; each step
    /// doubles the time [default: 12,4]
    #[arg(long, value_name = "ROUNDS", value_parser = parse_rounds)]
    cache_bcrypt_rounds: Option<(u32, u32)>,
    /// Log directory [default: /var/log/xcauth]
    #[arg(short, long, value_name = "DIR")]
    log: Option<PathBuf>,
    /// Log debug messages
    #[arg(short, long)]
    debug: bool,
    /// Log to standard error instead of the log directory
    #[arg(short, long)]
    interactive: bool,
    /// Keep ejabberd shared roster groups in sync, running the ejabberdctl
    /// at PATH
    #[arg(long, value_name = "PATH")]
    ejabberdctl: Option<PathBuf>,
    /// postfix: characters that start an address extension (e.g. +)
    /// [default: none]
    #[arg(long, value_name = "CHARS")]
    recipient_delimiter: Option<String>,
    /// saslauthd: number of request fields [default: auto]
    #[arg(long, value_name = "N", value_parser = PossibleValuesParser::new(SASLAUTHD_FIELDS_NAMES))]
    saslauthd_fields: Option<String>,
    /// Serve PROTO on ADDR (host:port or unix:PATH) without systemd;
    /// repeatable, e.g. --listen prosody=127.0.0.1:23663
    #[arg(long, value_name = "PROTO=ADDR", value_parser = parse_listen_one)]
    listen: Vec<ListenSpec>,
    /// Permission bits of Unix sockets created by --listen [default: 0660]
    #[arg(long, value_name = "OCTAL", value_parser = parse_mode)]
    socket_mode: Option<u32>,
    /// Owner of Unix sockets created by --listen (user name or uid)
    #[arg(long, value_name = "USER")]
    socket_owner: Option<String>,
    /// Group of Unix sockets created by --listen (group name or gid)
    #[arg(long, value_name = "GROUP")]
    socket_group: Option<String>,
    /// Most socket connections served at once [default: 1024]
    #[arg(long, value_name = "N", value_parser = parse_count)]
    max_connections: Option<usize>,
    /// Close socket connections idle this long [default: 1h]
    #[arg(long, value_name = "SPAN", value_parser = parse_span)]
    idle_timeout: Option<i64>,
    /// On SIGTERM, let in-flight requests finish for this long [default: 10s]
    #[arg(long, value_name = "SPAN", value_parser = parse_span)]
    shutdown_timeout: Option<i64>,
    /// Accepted for compatibility; no effect (see --ejabberdctl)
    #[arg(short = 'T', long)]
    update_roster: bool,
    /// Legacy pre-2.0 domain database (not read)
    #[arg(short = 'b', long, value_name = "PATH")]
    domain_db: Option<PathBuf>,
    /// Legacy pre-2.0 cache database (not read)
    #[arg(long, value_name = "PATH")]
    cache_db: Option<PathBuf>,
    /// Legacy pre-2.0 shared roster database (not read)
    #[arg(long, value_name = "PATH")]
    shared_roster_db: Option<PathBuf>,
}

/// The clap command: [`Cli`] plus a `--version` without the `-V` the
/// original never had.
fn command() -> clap::Command {
    Cli::command().arg(
        Arg::new("version")
            .long("version")
            .action(ArgAction::Version)
            .help("Print the version and exit"),
    )
}

/// Settings that may come from the environment and the config file, by
/// long option name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Url,
    Secret,
    SecretFile,
    Type,
    Db,
    CacheStorage,
    CacheQueryTtl,
    CacheVerificationTtl,
    CacheUnreachableTtl,
    CacheBcryptRounds,
    Timeout,
    CaFile,
    Log,
    Debug,
    Interactive,
    Ejabberdctl,
    RecipientDelimiter,
    SaslauthdFields,
    Listen,
    SocketMode,
    SocketOwner,
    SocketGroup,
    MaxConnections,
    IdleTimeout,
    ShutdownTimeout,
    UpdateRoster,
    DomainDb,
    CacheDb,
    SharedRosterDb,
}

const SETTINGS: [(&str, Key); 29] = [
    ("url", Key::Url),
    ("secret", Key::Secret),
    ("secret-file", Key::SecretFile),
    ("type", Key::Type),
    ("db", Key::Db),
    ("cache-storage", Key::CacheStorage),
    ("cache-query-ttl", Key::CacheQueryTtl),
    ("cache-verification-ttl", Key::CacheVerificationTtl),
    ("cache-unreachable-ttl", Key::CacheUnreachableTtl),
    ("cache-bcrypt-rounds", Key::CacheBcryptRounds),
    ("timeout", Key::Timeout),
    ("ca-file", Key::CaFile),
    ("log", Key::Log),
    ("debug", Key::Debug),
    ("interactive", Key::Interactive),
    ("ejabberdctl", Key::Ejabberdctl),
    ("recipient-delimiter", Key::RecipientDelimiter),
    ("saslauthd-fields", Key::SaslauthdFields),
    ("listen", Key::Listen),
    ("socket-mode", Key::SocketMode),
    ("socket-owner", Key::SocketOwner),
    ("socket-group", Key::SocketGroup),
    ("max-connections", Key::MaxConnections),
    ("idle-timeout", Key::IdleTimeout),
    ("shutdown-timeout", Key::ShutdownTimeout),
    ("update-roster", Key::UpdateRoster),
    ("domain-db", Key::DomainDb),
    ("cache-db", Key::CacheDb),
    ("shared-roster-db", Key::SharedRosterDb),
];

/// Long options that only make sense on the command line.
const CLI_ONLY: [&str; 6] = [
    "config-file",
    "auth-test",
    "isuser-test",
    "roster-test",
    "version",
    "help",
];

impl Key {
    fn is_switch(self) -> bool {
        matches!(self, Key::Debug | Key::Interactive | Key::UpdateRoster)
    }
}

/// What one source (command line, environment or file) says; `None` means
/// "ask the next source".
#[derive(Debug, Default)]
struct Layer {
    url: Option<String>,
    secret: Option<Secret>,
    secret_file: Option<PathBuf>,
    protocol: Option<Protocol>,
    db: Option<PathBuf>,
    cache_storage: Option<CacheStorage>,
    cache_query_ttl: Option<i64>,
    cache_verification_ttl: Option<i64>,
    cache_unreachable_ttl: Option<i64>,
    bcrypt_rounds: Option<(u32, u32)>,
    timeouts: Option<(Duration, Duration)>,
    ca_file: Option<PathBuf>,
    log_dir: Option<PathBuf>,
    debug: Option<bool>,
    interactive: Option<bool>,
    ejabberdctl: Option<PathBuf>,
    recipient_delimiter: Option<String>,
    saslauthd_fields: Option<SaslauthdFields>,
    listen: Option<Vec<ListenSpec>>,
    socket_mode: Option<u32>,
    socket_owner: Option<String>,
    socket_group: Option<String>,
    max_connections: Option<usize>,
    idle_timeout: Option<i64>,
    shutdown_timeout: Option<i64>,
    domain_db: Option<PathBuf>,
    cache_db: Option<PathBuf>,
    shared_roster_db: Option<PathBuf>,
}

impl Layer {
    /// Sets `key` from its text form; the error says what is wrong with
    /// the value (the caller adds where it came from).
    fn set(&mut self, key: Key, value: &str) -> Result<(), String> {
        match key {
            Key::Url => self.url = Some(parse_url(value)?),
            Key::Secret => self.secret = Some(Secret::new(value)),
            Key::SecretFile => self.secret_file = Some(PathBuf::from(value)),
            Key::Type => self.protocol = Some(parse_protocol(value)?),
            Key::Db => self.db = Some(PathBuf::from(value)),
            Key::CacheStorage => self.cache_storage = Some(parse_cache_storage(value)?),
            Key::CacheQueryTtl => self.cache_query_ttl = Some(parse_span(value)?),
            Key::CacheVerificationTtl => self.cache_verification_ttl = Some(parse_span(value)?),
            Key::CacheUnreachableTtl => self.cache_unreachable_ttl = Some(parse_span(value)?),
            Key::CacheBcryptRounds => self.bcrypt_rounds = Some(parse_rounds(value)?),
            Key::Timeout => self.timeouts = Some(parse_timeouts(value)?),
            Key::CaFile => self.ca_file = Some(PathBuf::from(value)),
            Key::Log => self.log_dir = Some(PathBuf::from(value)),
            Key::Debug => self.debug = Some(parse_switch(value)?),
            Key::Interactive => self.interactive = Some(parse_switch(value)?),
            Key::Ejabberdctl => self.ejabberdctl = Some(PathBuf::from(value)),
            Key::RecipientDelimiter => self.recipient_delimiter = Some(value.to_owned()),
            Key::SaslauthdFields => self.saslauthd_fields = Some(parse_saslauthd_fields(value)?),
            Key::Listen => self.listen = Some(parse_listen_list(value)?),
            Key::SocketMode => self.socket_mode = Some(parse_mode(value)?),
            Key::SocketOwner => self.socket_owner = Some(value.to_owned()),
            Key::SocketGroup => self.socket_group = Some(value.to_owned()),
            Key::MaxConnections => self.max_connections = Some(parse_count(value)?),
            Key::IdleTimeout => self.idle_timeout = Some(parse_span(value)?),
            Key::ShutdownTimeout => self.shutdown_timeout = Some(parse_span(value)?),
            // Checked so that a typo is reported, then dropped: it has no effect.
            Key::UpdateRoster => {
                parse_switch(value)?;
            }
            Key::DomainDb => self.domain_db = Some(PathBuf::from(value)),
            Key::CacheDb => self.cache_db = Some(PathBuf::from(value)),
            Key::SharedRosterDb => self.shared_roster_db = Some(PathBuf::from(value)),
        }
        Ok(())
    }

    /// `self` where it says something, else `lower`. `secret` and
    /// `secret-file` travel together, so an explicit secret beats a secret
    /// file of the same source, and a source naming either beats both of a
    /// lower one.
    fn over(self, lower: Layer) -> Layer {
        let (secret, secret_file) = if self.secret.is_some() || self.secret_file.is_some() {
            (self.secret, self.secret_file)
        } else {
            (lower.secret, lower.secret_file)
        };
        Layer {
            url: self.url.or(lower.url),
            secret,
            secret_file,
            protocol: self.protocol.or(lower.protocol),
            db: self.db.or(lower.db),
            cache_storage: self.cache_storage.or(lower.cache_storage),
            cache_query_ttl: self.cache_query_ttl.or(lower.cache_query_ttl),
            cache_verification_ttl: self.cache_verification_ttl.or(lower.cache_verification_ttl),
            cache_unreachable_ttl: self.cache_unreachable_ttl.or(lower.cache_unreachable_ttl),
            bcrypt_rounds: self.bcrypt_rounds.or(lower.bcrypt_rounds),
            timeouts: self.timeouts.or(lower.timeouts),
            ca_file: self.ca_file.or(lower.ca_file),
            log_dir: self.log_dir.or(lower.log_dir),
            debug: self.debug.or(lower.debug),
            interactive: self.interactive.or(lower.interactive),
            ejabberdctl: self.ejabberdctl.or(lower.ejabberdctl),
            recipient_delimiter: self.recipient_delimiter.or(lower.recipient_delimiter),
            saslauthd_fields: self.saslauthd_fields.or(lower.saslauthd_fields),
            listen: self.listen.or(lower.listen),
            socket_mode: self.socket_mode.or(lower.socket_mode),
            socket_owner: self.socket_owner.or(lower.socket_owner),
            socket_group: self.socket_group.or(lower.socket_group),
            max_connections: self.max_connections.or(lower.max_connections),
            idle_timeout: self.idle_timeout.or(lower.idle_timeout),
            shutdown_timeout: self.shutdown_timeout.or(lower.shutdown_timeout),
            domain_db: self.domain_db.or(lower.domain_db),
            cache_db: self.cache_db.or(lower.cache_db),
            shared_roster_db: self.shared_roster_db.or(lower.shared_roster_db),
        }
    }

    /// The command line's part. Switches only ever say "on": an absent
    /// `-d` leaves the decision to the environment and the file.
    fn from_cli(cli: &Cli) -> Result<Layer, ConfigError> {
        // clap already restricted these to the possible values.
        let invalid = |option: &str, e: String| ConfigError::Invalid(format!("--{option}: {e}"));
        Ok(Layer {
            url: cli.url.clone(),
            secret: cli.secret.as_deref().map(Secret::new),
            secret_file: cli.secret_file.clone(),
            protocol: cli
                .protocol
                .as_deref()
                .map(parse_protocol)
                .transpose()
                .map_err(|e| invalid("type", e))?,
            db: cli.db.clone(),
            cache_storage: cli
                .cache_storage
                .as_deref()
                .map(parse_cache_storage)
                .transpose()
                .map_err(|e| invalid("cache-storage", e))?,
            cache_query_ttl: cli.cache_query_ttl,
            cache_verification_ttl: cli.cache_verification_ttl,
            cache_unreachable_ttl: cli.cache_unreachable_ttl,
            bcrypt_rounds: cli.cache_bcrypt_rounds,
            timeouts: cli.timeout,
            ca_file: cli.ca_file.clone(),
            log_dir: cli.log.clone(),
            debug: cli.debug.then_some(true),
            interactive: cli.interactive.then_some(true),
            ejabberdctl: cli.ejabberdctl.clone(),
            recipient_delimiter: cli.recipient_delimiter.clone(),
            saslauthd_fields: cli
                .saslauthd_fields
                .as_deref()
                .map(parse_saslauthd_fields)
                .transpose()
                .map_err(|e| invalid("saslauthd-fields", e))?,
            listen: (!cli.listen.is_empty()).then(|| cli.listen.clone()),
            socket_mode: cli.socket_mode,
            socket_owner: cli.socket_owner.clone(),
            socket_group: cli.socket_group.clone(),
            max_connections: cli.max_connections,
            idle_timeout: cli.idle_timeout,
            shutdown_timeout: cli.shutdown_timeout,
            domain_db: cli.domain_db.clone(),
            cache_db: cli.cache_db.clone(),
            shared_roster_db: cli.shared_roster_db.clone(),
        })
    }
}

/// The environment variable for a long option name: `cache-storage` →
/// `XCAUTH_CACHE_STORAGE`.
fn env_name(option: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        option.to_ascii_uppercase().replace('-', "_")
    )
}

/// The environment's part. Empty variables count as unset (systemd's
/// `Environment=XCAUTH_URL=` clears a value).
fn env_layer(env: &dyn Fn(&str) -> Option<String>) -> Result<Layer, ConfigError> {
    let mut layer = Layer::default();
    for (option, key) in SETTINGS {
        let name = env_name(option);
        if let Some(value) = env(&name).filter(|v| !v.is_empty()) {
            layer
                .set(key, &value)
                .map_err(|e| ConfigError::Invalid(format!("{name}: {e}")))?;
        }
    }
    Ok(layer)
}

/// A config file, parsed.
#[derive(Debug)]
struct FileLayer {
    layer: Layer,
    warnings: Vec<String>,
}

/// Parses the original's ConfigArgParse format: `key=value`, `key: value`
/// or `key value`; `#`/`;` comment lines and trailing ` # comment`s; blank
/// lines, `[section]` and `---` lines ignored; a bare key switches a flag
/// on. Keys are long option names (an optional leading `--`, `_` for `-`).
fn parse_config_file(path: &Path, text: &[u8]) -> Result<FileLayer, ConfigError> {
    let mut layer = Layer::default();
    let mut warnings = Vec::new();
    let mut first_seen: HashMap<&'static str, usize> = HashMap::new();
    for (index, raw) in text.split(|&b| b == b'\n').enumerate() {
        let line_no = index + 1;
        let error = |message: String| ConfigError::File {
            path: path.to_path_buf(),
            line: line_no,
            message,
        };
        let line =
            std::str::from_utf8(raw).map_err(|_| error("the line is not valid UTF-8".into()))?;
        let Some((key, value)) = split_line(line).map_err(error)? else {
            continue;
        };
        let name = key.strip_prefix("--").unwrap_or(key).replace('_', "-");
        let Some((option, setting)) = SETTINGS.into_iter().find(|(option, _)| *option == name)
        else {
            return Err(error(if CLI_ONLY.contains(&name.as_str()) {
                format!("`{key}` is only accepted on the command line")
            } else if looks_like_option(key) {
                format!("unknown option `{key}`")
            } else {
                // Perhaps a pasted secret: do not echo it to the log.
                "not a setting (expected name=value with a long option name)".to_owned()
            }));
        };
        let value = match value {
            Some(value) => value,
            None if setting.is_switch() => "true",
            None => return Err(error(format!("`{key}` needs a value: {option}=..."))),
        };
        layer
            .set(setting, value)
            .map_err(|e| error(format!("{option}: {e}")))?;
        if let Some(first) = first_seen.insert(option, line_no) {
            warnings.push(format!(
                "{}:{line_no}: `{option}` was already set on line {first}; the later value wins",
                path.display()
            ));
        }
    }
    Ok(FileLayer { layer, warnings })
}

/// Option names are lower-case words joined by `-` (or `_`); anything else
/// on its own might be a pasted secret.
fn looks_like_option(key: &str) -> bool {
    key.strip_prefix("--")
        .unwrap_or(key)
        .chars()
        .all(|c| c.is_ascii_lowercase() || c == '-' || c == '_')
}

/// Splits one config line into key and value (`None` for a bare key);
/// `Ok(None)` for lines without a setting.
fn split_line(line: &str) -> Result<Option<(&str, Option<&str>)>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with(['#', ';', '[']) || line.starts_with("---") {
        return Ok(None);
    }
    let line = strip_trailing_comment(line);
    let key_end = line
        .find(|c: char| c == '=' || c == ':' || c.is_whitespace())
        .unwrap_or(line.len());
    let (key, rest) = line.split_at(key_end);
    if key.is_empty() {
        return Err("expected name=value".into());
    }
    let rest = rest.trim_start();
    if rest.is_empty() {
        return Ok(Some((key, None)));
    }
    let value = rest.strip_prefix(['=', ':']).unwrap_or(rest).trim_start();
    if value.is_empty() {
        return Err(format!("`{key}` has no value"));
    }
    Ok(Some((key, Some(value))))
}

/// Cuts a trailing comment: `#` or `;` after white space, as ConfigArgParse
/// did (so `a#b` stays a value, `a #b` is `a`).
fn strip_trailing_comment(line: &str) -> &str {
    let mut previous_blank = false;
    for (i, c) in line.char_indices() {
        if previous_blank && (c == '#' || c == ';') {
            return line[..i].trim_end();
        }
        previous_blank = c.is_whitespace();
    }
    line
}

/// Reads and parses the config file. `Ok(None)` when the default file does
/// not exist; a file named explicitly must exist.
fn read_config_file(path: &Path, explicit: bool) -> Result<Option<FileLayer>, ConfigError> {
    let text = match fs::read(path) {
        Ok(text) => text,
        Err(e) if !explicit && e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(ConfigError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let mut parsed = parse_config_file(path, &text)?;
    if parsed.layer.secret.is_some() {
        if let Some(warning) = exposure_warning(path, "holds the API secret") {
            parsed.warnings.push(warning);
        }
    }
    Ok(Some(parsed))
}

/// A warning when `path` can be read by group or others.
#[cfg(unix)]
fn exposure_warning(path: &Path, what: &str) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o044 != 0).then(|| {
        format!(
            "{} {what} but is readable by group/others (mode {mode:03o}); \
             restrict it, e.g. chmod 600",
            path.display()
        )
    })
}

#[cfg(not(unix))]
fn exposure_warning(_path: &Path, _what: &str) -> Option<String> {
    None
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

/// The systemd credential (`LoadCredential=xcauth-secret:...`), if any.
fn credential_secret(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Secret>, ConfigError> {
    let Some(dir) = env("CREDENTIALS_DIRECTORY").filter(|d| !d.is_empty()) else {
        return Ok(None);
    };
    for name in CREDENTIAL_NAMES {
        let path = Path::new(&dir).join(name);
        match fs::metadata(&path) {
            Ok(_) => return read_secret(&path).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => return Err(ConfigError::Io { path, source }),
        }
    }
    Ok(None)
}

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
    let matches = command().try_get_matches_from(args)?;
    let cli = Cli::from_arg_matches(&matches)?;
    let mut warnings = Vec::new();

    let env_path = env(CONFIG_FILE_ENV).filter(|p| !p.is_empty());
    let (file_path, explicit) = match (&cli.config_file, env_path) {
        (Some(path), _) => (path.clone(), true),
        (None, Some(path)) => (PathBuf::from(path), true),
        (None, None) => (default_file.to_path_buf(), false),
    };

    let cli_layer = Layer::from_cli(&cli)?;
    let env_layer = env_layer(env)?;
    let file = read_config_file(&file_path, explicit)?;
    let config_file = file.as_ref().map(|_| file_path);
    let file_layer = match file {
        Some(file) => {
            warnings.extend(file.warnings);
            file.layer
        }
        None => Layer::default(),
    };
    let merged = cli_layer.over(env_layer).over(file_layer);

    // Sockets that say their own protocol (--listen, systemd socket names)
    // need no -t; generic is then the fallback for unnamed descriptors.
    let sockets_given = merged.listen.as_ref().is_some_and(|l| !l.is_empty())
        || env("LISTEN_FDS").is_some_and(|n| !n.is_empty());
    let protocol = match merged.protocol {
        None if sockets_given => Some(Protocol::Generic),
        other => other,
    };
    let mode = mode(&cli, protocol)?;
    let one_shot = !matches!(mode, Mode::Serve(_));

    let url = merged.url.ok_or_else(|| {
        ConfigError::Invalid(format!(
            "no API URL: set url=... in {}, XCAUTH_URL or --url \
             (the URL is shown on the Nextcloud JSXC admin page)",
            config_file.as_deref().unwrap_or(default_file).display()
        ))
    })?;
    if let Some(warning) = plain_http_warning(&url) {
        warnings.push(warning);
    }

    if cli.secret.is_some() {
        warnings.push(
            "the secret given with --secret is visible in the process list; \
             use secret-file=PATH in the config file or --secret-file instead"
                .into(),
        );
    }
    let secret = match (merged.secret, merged.secret_file) {
        (Some(secret), _) => Some(secret),
        (None, Some(path)) => {
            let secret = read_secret(&path)?;
            if let Some(warning) = exposure_warning(&path, "is the secret file") {
                warnings.push(warning);
            }
            Some(secret)
        }
        (None, None) => credential_secret(env)?,
    };
    let secret = secret.filter(|s| !s.is_empty()).ok_or_else(|| {
        ConfigError::Invalid(format!(
            "no API secret: set secret-file=PATH (or secret=...) in {}, \
             XCAUTH_SECRET_FILE or XCAUTH_SECRET, or a systemd credential named \
             xcauth-secret (the secret is shown on the Nextcloud JSXC admin page)",
            config_file.as_deref().unwrap_or(default_file).display()
        ))
    })?;

    let (bcrypt_rounds_db, bcrypt_rounds_memory) =
        merged.bcrypt_rounds.unwrap_or(DEFAULT_BCRYPT_ROUNDS);
    let (connect_timeout, request_timeout) = merged.timeouts.unwrap_or(DEFAULT_TIMEOUTS);
    let legacy_dbs = [
        ("domain-db", merged.domain_db),
        ("cache-db", merged.cache_db),
        ("shared-roster-db", merged.shared_roster_db),
    ]
    .into_iter()
    .filter_map(|(name, path)| path.map(|path| (name, path)))
    .collect();

    Ok(Config {
        mode,
        url: Some(url),
        secret,
        db: merged.db.unwrap_or_else(|| PathBuf::from(DEFAULT_DB)),
        cache_storage: merged.cache_storage.unwrap_or_default(),
        cache_query_ttl: merged.cache_query_ttl.unwrap_or(DEFAULT_QUERY_TTL),
        cache_verification_ttl: merged
            .cache_verification_ttl
            .unwrap_or(DEFAULT_VERIFICATION_TTL),
        cache_unreachable_ttl: merged
            .cache_unreachable_ttl
            .unwrap_or(DEFAULT_UNREACHABLE_TTL),
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
        sockets: {
            let d = SocketOptions::default();
            let span = |v: Option<i64>, default: Duration| {
                v.map(|s| Duration::from_secs(u64::try_from(s).unwrap_or(0)))
                    .unwrap_or(default)
            };
            SocketOptions {
                listen: merged.listen.unwrap_or_default(),
                mode: merged.socket_mode.unwrap_or(d.mode),
                owner: merged.socket_owner,
                group: merged.socket_group,
                max_connections: merged.max_connections.unwrap_or(d.max_connections),
                idle_timeout: span(merged.idle_timeout, d.idle_timeout),
                shutdown_timeout: span(merged.shutdown_timeout, d.shutdown_timeout),
            }
        },
        codec: CodecOptions {
            recipient_delimiter: merged.recipient_delimiter.unwrap_or_default(),
            saslauthd_fields: merged.saslauthd_fields.unwrap_or_default(),
        },
        legacy_dbs,
        config_file,
        warnings,
    })
}

/// `-A`, `-I`, `-R` (at most one, clap enforces it) before `-t`.
fn mode(cli: &Cli, protocol: Option<Protocol>) -> Result<Mode, ConfigError> {
    if let Some(values) = &cli.auth_test {
        let [user, domain, password] = values_of::<3>(values, "--auth-test")?;
        return Ok(Mode::AuthTest {
            user,
            domain,
            password: Secret::new(password),
        });
    }
    if let Some(values) = &cli.isuser_test {
        let [user, domain] = values_of::<2>(values, "--isuser-test")?;
        return Ok(Mode::IsUserTest { user, domain });
    }
    if let Some(values) = &cli.roster_test {
        let [user, domain] = values_of::<2>(values, "--roster-test")?;
        return Ok(Mode::RosterTest { user, domain });
    }
    match protocol {
        Some(protocol) => Ok(Mode::Serve(protocol)),
        None => Err(ConfigError::Invalid(format!(
            "one of -t, -A, -I, -R is required (type=... may also be set in the config file)\n\n{}\n\n\
             For more information, try '--help'.",
            command().render_usage()
        ))),
    }
}

fn values_of<const N: usize>(values: &[String], option: &str) -> Result<[String; N], ConfigError> {
    <[String; N]>::try_from(values.to_vec())
        .map_err(|_| ConfigError::Invalid(format!("{option} takes {N} values")))
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

pub(crate) fn parse_url(text: &str) -> Result<String, String> {
    let url = url::Url::parse(text).map_err(|e| format!("`{text}` is not a URL ({e})"))?;
    match url.scheme() {
        "https" | "http" => Ok(text.to_owned()),
        other => Err(format!("`{text}` is not an http(s) URL (scheme `{other}`)")),
    }
}

fn parse_protocol(text: &str) -> Result<Protocol, String> {
    Protocol::from_name(text).ok_or_else(|| {
        format!(
            "`{text}` is not a type; use one of {}",
            PROTOCOL_NAMES.join(", ")
        )
    })
}

fn parse_cache_storage(text: &str) -> Result<CacheStorage, String> {
    match text {
        "none" => Ok(CacheStorage::None),
        "memory" => Ok(CacheStorage::Memory),
        "db" => Ok(CacheStorage::Db),
        _ => Err(format!(
            "`{text}` is not a cache storage; use one of {}",
            CACHE_STORAGE_NAMES.join(", ")
        )),
    }
}

/// `PROTO=ADDR`: ADDR is `unix:PATH` or a TCP `host:port` (`[v6]:port`).
fn parse_listen_one(text: &str) -> Result<ListenSpec, String> {
    let (proto, addr) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected PROTO=ADDR, e.g. prosody=127.0.0.1:23663"))?;
    let protocol = parse_protocol(proto.trim())?;
    let addr = addr.trim();
    let address = if let Some(path) = addr.strip_prefix("unix:") {
        if !path.starts_with('/') {
            return Err(format!("{addr:?}: a Unix socket path must be absolute"));
        }
        ListenAddress::Unix(PathBuf::from(path))
    } else {
        ListenAddress::Tcp(addr.parse().map_err(|_| {
            format!("{addr:?}: expected IP:PORT ([::1]:PORT for IPv6) or unix:/PATH")
        })?)
    };
    Ok(ListenSpec { protocol, address })
}

/// Several `PROTO=ADDR` separated by commas or spaces (file and
/// environment form of `--listen`).
fn parse_listen_list(text: &str) -> Result<Vec<ListenSpec>, String> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|part| !part.is_empty())
        .map(parse_listen_one)
        .collect()
}

/// Octal permission bits such as `0660` or `660`.
fn parse_mode(text: &str) -> Result<u32, String> {
    u32::from_str_radix(text.trim(), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("{text:?}: expected octal permission bits such as 0660"))
}

/// A positive count.
fn parse_count(text: &str) -> Result<usize, String> {
    text.trim()
        .parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{text:?}: expected a positive number"))
}

fn parse_saslauthd_fields(text: &str) -> Result<SaslauthdFields, String> {
    match text {
        "auto" => Ok(SaslauthdFields::Auto),
        "4" => Ok(SaslauthdFields::Four),
        "5" => Ok(SaslauthdFields::Five),
        _ => Err(format!("`{text}` is not one of auto, 4, 5")),
    }
}

/// A switch value as ConfigArgParse took it (plus on/off).
fn parse_switch(text: &str) -> Result<bool, String> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" | "on" => Ok(true),
        "false" | "no" | "0" | "off" => Ok(false),
        _ => Err(format!("`{text}` is not true or false")),
    }
}

/// A time span in seconds: `90`, `90s`, `30m`, `1h`, `2d`, `1w`.
fn parse_span(text: &str) -> Result<i64, String> {
    let trimmed = text.trim();
    let bad = || {
        format!(
            "`{text}` is not a time span; use seconds or a number with s, m, h, d or w \
             (90, 30m, 1h, 2d, 1w)"
        )
    };
    if trimmed.starts_with('-') {
        return Err(format!("`{text}`: a time span cannot be negative"));
    }
    let (digits, factor) = match trimmed.char_indices().last() {
        Some((at, unit)) if unit.is_ascii_alphabetic() => {
            let factor = match unit {
                's' => 1,
                'm' => 60,
                'h' => 60 * 60,
                'd' => 24 * 60 * 60,
                'w' => 7 * 24 * 60 * 60,
                _ => return Err(bad()),
            };
            (&trimmed[..at], factor)
        }
        _ => (trimmed, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    digits
        .parse::<i64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .ok_or_else(|| format!("`{text}` is too long a time span"))
}

/// `FIRST[,SECOND]`; one value stands for both.
fn split_pair(text: &str) -> Result<(&str, &str), String> {
    let mut parts = text.split(',').map(str::trim);
    let first = parts.next().unwrap_or_default();
    let second = parts.next().unwrap_or(first);
    if parts.next().is_some() {
        return Err(format!("`{text}`: give one or two comma-separated values"));
    }
    Ok((first, second))
}

/// bcrypt costs `DB[,MEMORY]`.
fn parse_rounds(text: &str) -> Result<(u32, u32), String> {
    let one = |part: &str| -> Result<u32, String> {
        let rounds: u32 = part
            .parse()
            .map_err(|_| format!("`{part}` is not a number of bcrypt rounds"))?;
        if BCRYPT_ROUNDS.contains(&rounds) {
            Ok(rounds)
        } else {
            Err(format!(
                "bcrypt rounds must be from {} to {}, not {rounds}",
                BCRYPT_ROUNDS.start(),
                BCRYPT_ROUNDS.end()
            ))
        }
    };
    let (db, memory) = split_pair(text)?;
    Ok((one(db)?, one(memory)?))
}

/// Timeouts `CONNECT[,TOTAL]` in (possibly fractional) seconds.
fn parse_timeouts(text: &str) -> Result<(Duration, Duration), String> {
    let one = |part: &str| -> Result<Duration, String> {
        let seconds: f64 = part
            .parse()
            .map_err(|_| format!("`{part}` is not a number of seconds"))?;
        if !seconds.is_finite() || seconds <= 0.0 {
            return Err(format!(
                "a timeout must be a positive number of seconds, not `{part}`"
            ));
        }
        Duration::try_from_secs_f64(seconds).map_err(|_| format!("`{part}` is too long a timeout"))
    };
    let (connect, total) = split_pair(text)?;
    Ok((one(connect)?, one(total)?))
}

/// What the administration subcommands take from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSettings {
    /// Database path, default [`DEFAULT_DB`].
    pub db: PathBuf,
    /// ejabberdctl to mirror deletions into ejabberd, if configured.
    pub ejabberdctl: Option<PathBuf>,
    /// Where the server caches passwords.
    pub cache_storage: CacheStorage,
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
    let (path, explicit) = match (config_file, env(CONFIG_FILE_ENV).filter(|p| !p.is_empty())) {
        (Some(path), _) => (path.to_path_buf(), true),
        (None, Some(path)) => (PathBuf::from(path), true),
        (None, None) => (PathBuf::from(DEFAULT_CONFIG_FILE), false),
    };
    let file = read_config_file(&path, explicit)?;
    let config_file = file.as_ref().map(|_| path);
    let merged = env_layer(env)?.over(file.map(|f| f.layer).unwrap_or_default());
    Ok(AdminSettings {
        db: merged.db.unwrap_or_else(|| PathBuf::from(DEFAULT_DB)),
        ejabberdctl: merged.ejabberdctl,
        cache_storage: merged.cache_storage.unwrap_or_default(),
        config_file,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const URL: &str = "https://cloud.example.org/index.php/apps/ojsxc/ajax/externalApi.php";

    /// An environment made of `pairs`.
    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |key| map.get(key).cloned()
    }

    /// A temporary directory holding `xcauth.conf` with `text`.
    fn conf(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("xcauth.conf");
        fs::File::create(&path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        (dir, path)
    }

    /// Loads with `args` (after argv[0]), `env` and `file` as the default
    /// config file (None: a default file that does not exist).
    fn load_test(
        args: &[&str],
        env: &[(&str, &str)],
        file: Option<&str>,
    ) -> Result<Config, ConfigError> {
        let env = env_of(env);
        let (dir, path) = conf(file.unwrap_or(""));
        let default = if file.is_some() {
            path
        } else {
            dir.path().join("absent.conf")
        };
        let argv = std::iter::once("xcauth").chain(args.iter().copied());
        load_with_default_file(argv, &env, &default)
    }

    /// The minimum for a serving run, on the command line.
    const BASE: [&str; 6] = ["-t", "generic", "-u", URL, "-s", "x"];

    /// `args` plus url, type and an env secret.
    fn ok(args: &[&str]) -> Config {
        let mut all = vec!["-t", "generic", "-u", URL];
        all.extend_from_slice(args);
        load_test(&all, &[("XCAUTH_SECRET", "s3cr3t")], None).unwrap()
    }

    fn file_error(text: &str) -> (usize, String) {
        match load_test(&[], &[], Some(text)) {
            Err(ConfigError::File { line, message, .. }) => (line, message),
            other => panic!("expected a file error, got {other:?}"),
        }
    }

    fn invalid(result: Result<Config, ConfigError>) -> String {
        match result {
            Err(ConfigError::Invalid(message)) => message,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

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
    fn command_line_beats_environment_beats_file_beats_default() {
        let file = "type=ejabberd\nurl=https://file.example/\nsecret=file\n\
                    cache-storage=db\ntimeout=1\nlog=/file/log\ncache-query-ttl=1m\n";
        let env = [
            ("XCAUTH_URL", "https://env.example/"),
            ("XCAUTH_CACHE_STORAGE", "memory"),
            ("XCAUTH_TIMEOUT", "2"),
            ("XCAUTH_SECRET", "env"),
        ];
        let cli = [
            "-u",
            "https://cli.example/",
            "--cache-storage",
            "none",
            "-s",
            "cli",
        ];

        let c = load_test(&[], &[], Some(file)).unwrap();
        assert_eq!(c.mode, Mode::Serve(Protocol::Ejabberd));
        assert_eq!(c.url.as_deref(), Some("https://file.example/"));
        assert_eq!(c.secret.expose(), "file");
        assert_eq!(c.cache_storage, CacheStorage::Db);
        assert_eq!(c.connect_timeout, Duration::from_secs(1));
        assert_eq!(c.log_dir, PathBuf::from("/file/log"));
        assert_eq!(c.cache_query_ttl, 60);
        assert!(c.config_file.is_some());
        // Not set anywhere: default.
        assert_eq!(c.cache_verification_ttl, 86400);

        let c = load_test(&[], &env, Some(file)).unwrap();
        assert_eq!(c.url.as_deref(), Some("https://env.example/"));
        assert_eq!(c.secret.expose(), "env");
        assert_eq!(c.cache_storage, CacheStorage::Memory);
        assert_eq!(c.connect_timeout, Duration::from_secs(2));
        assert_eq!(c.log_dir, PathBuf::from("/file/log"));

        let c = load_test(&cli, &env, Some(file)).unwrap();
        assert_eq!(c.url.as_deref(), Some("https://cli.example/"));
        assert_eq!(c.secret.expose(), "cli");
        assert_eq!(c.cache_storage, CacheStorage::None);
        assert_eq!(c.connect_timeout, Duration::from_secs(2));
        assert_eq!(c.mode, Mode::Serve(Protocol::Ejabberd));
    }

    #[test]
    fn switches_from_environment_and_file() {
        let c = load_test(
            &BASE,
            &[("XCAUTH_DEBUG", "true")],
            Some("debug=false\ninteractive\n"),
        )
        .unwrap();
        assert!(c.debug);
        assert!(c.interactive);
        let c = load_test(&BASE, &[("XCAUTH_INTERACTIVE", "0")], Some("interactive\n")).unwrap();
        assert!(!c.interactive);
        // Empty variables are unset.
        let c = load_test(&BASE, &[("XCAUTH_LOG", "")], Some("log=/x\n")).unwrap();
        assert_eq!(c.log_dir, PathBuf::from("/x"));
    }

    #[test]
    fn bad_environment_value_names_the_variable() {
        let m = invalid(load_test(
            &BASE,
            &[("XCAUTH_CACHE_QUERY_TTL", "soon")],
            None,
        ));
        assert!(m.starts_with("XCAUTH_CACHE_QUERY_TTL: "), "{m}");
        assert!(m.contains("soon"), "{m}");
    }

    #[test]
    fn every_option_long_and_short() {
        let dir = tempfile::tempdir().unwrap();
        let secret_path = dir.path().join("s");
        fs::write(&secret_path, "from-file\n").unwrap();
        let secret_file = secret_path.to_str().unwrap();

        let long = load_test(
            &[
                "--type",
                "postfix",
                "--url",
                URL,
                "--secret",
                "x",
                "--db",
                ":memory:",
                "--cache-storage",
                "memory",
                "--cache-query-ttl",
                "2m",
                "--cache-verification-ttl",
                "3h",
                "--cache-unreachable-ttl",
                "4d",
                "--cache-bcrypt-rounds",
                "10,5",
                "--timeout",
                "1.5,3",
                "--log",
                "/l",
                "--debug",
                "--interactive",
                "--ejabberdctl",
                "/usr/sbin/ejabberdctl",
                "--update-roster",
                "--domain-db",
                "/d",
                "--cache-db",
                "/c",
                "--shared-roster-db",
                "/r",
                "--ca-file",
                "/ca.pem",
                "--recipient-delimiter",
                "+-",
                "--saslauthd-fields",
                "5",
            ],
            &[],
            None,
        )
        .unwrap();
        assert_eq!(long.mode, Mode::Serve(Protocol::Postfix));
        assert_eq!(long.secret.expose(), "x");
        assert_eq!(long.db, PathBuf::from(":memory:"));
        assert_eq!(long.cache_storage, CacheStorage::Memory);
        assert_eq!(
            (
                long.cache_query_ttl,
                long.cache_verification_ttl,
                long.cache_unreachable_ttl
            ),
            (120, 3 * 3600, 4 * 86400)
        );
        assert_eq!((long.bcrypt_rounds_db, long.bcrypt_rounds_memory), (10, 5));
        assert_eq!(long.connect_timeout, Duration::from_millis(1500));
        assert_eq!(long.request_timeout, Duration::from_secs(3));
        assert_eq!(long.log_dir, PathBuf::from("/l"));
        assert!(long.debug && long.interactive);
        assert_eq!(
            long.ejabberdctl,
            Some(PathBuf::from("/usr/sbin/ejabberdctl"))
        );
        assert_eq!(long.ca_file, Some(PathBuf::from("/ca.pem")));
        assert_eq!(long.codec.recipient_delimiter, "+-");
        assert_eq!(long.codec.saslauthd_fields, SaslauthdFields::Five);
        assert_eq!(
            long.legacy_dbs,
            vec![
                ("domain-db", PathBuf::from("/d")),
                ("cache-db", PathBuf::from("/c")),
                ("shared-roster-db", PathBuf::from("/r")),
            ]
        );

        let (_dir, conf_path) = conf("type=saslauthd\n");
        let short = load_test(
            &[
                "-c",
                conf_path.to_str().unwrap(),
                "-u",
                URL,
                "-s",
                "y",
                "-l",
                "/short",
                "-d",
                "-i",
                "-T",
                "-b",
                "/dom",
            ],
            &[],
            None,
        )
        .unwrap();
        assert_eq!(short.mode, Mode::Serve(Protocol::Saslauthd));
        assert_eq!(short.config_file.as_deref(), Some(conf_path.as_path()));
        assert_eq!(short.url.as_deref(), Some(URL));
        assert_eq!(short.secret.expose(), "y");
        assert_eq!(short.log_dir, PathBuf::from("/short"));
        assert!(short.debug && short.interactive);
        assert_eq!(short.legacy_dbs, vec![("domain-db", PathBuf::from("/dom"))]);

        let c = load_test(
            &["-t", "prosody", "-u", URL, "--secret-file", secret_file],
            &[],
            None,
        )
        .unwrap();
        assert_eq!(c.mode, Mode::Serve(Protocol::Generic));
        assert_eq!(c.secret.expose(), "from-file");

        for (short, long) in [
            ("-A", "--auth-test"),
            ("-I", "--isuser-test"),
            ("-R", "--roster-test"),
        ] {
            for flag in [short, long] {
                let mut args = vec![flag, "u", "d"];
                if short == "-A" {
                    args.push("-pw");
                }
                let c = ok(&args);
                let expected = match short {
                    "-A" => Mode::AuthTest {
                        user: "u".into(),
                        domain: "d".into(),
                        password: Secret::new("-pw"),
                    },
                    "-I" => Mode::IsUserTest {
                        user: "u".into(),
                        domain: "d".into(),
                    },
                    _ => Mode::RosterTest {
                        user: "u".into(),
                        domain: "d".into(),
                    },
                };
                assert_eq!(c.mode, expected, "{flag}");
            }
        }
    }

    #[test]
    fn one_shot_implies_debug_and_interactive_and_beats_type() {
        let c = ok(&["-A", "user", "example.org", "pw"]);
        assert!(matches!(c.mode, Mode::AuthTest { .. }));
        assert!(c.debug && c.interactive);
        let c = load_test(
            &["-I", "user", "example.org"],
            &[],
            Some(&format!(
                "type=ejabberd\nurl={URL}\nsecret=x\ndebug=false\n"
            )),
        )
        .unwrap();
        assert_eq!(
            c.mode,
            Mode::IsUserTest {
                user: "user".into(),
                domain: "example.org".into()
            }
        );
        assert!(c.debug && c.interactive);
    }

    #[test]
    fn two_one_shot_queries_conflict() {
        let r = load_test(
            &["-u", URL, "-s", "x", "-I", "a", "b", "-R", "a", "b"],
            &[],
            None,
        );
        assert!(matches!(r, Err(ConfigError::Cli(_))), "{r:?}");
        assert_eq!(r.unwrap_err().exit_code(), 2);
    }

    #[test]
    fn missing_mode_url_or_secret() {
        let e = load_test(&["-u", URL, "-s", "x"], &[], None).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let m = invalid(Err(e));
        assert!(m.starts_with("one of -t, -A, -I, -R is required"), "{m}");
        assert!(m.contains("Usage:"), "{m}");

        let m = invalid(load_test(&["-t", "generic", "-s", "x"], &[], None));
        assert!(m.contains("no API URL") && m.contains("XCAUTH_URL"), "{m}");

        let m = invalid(load_test(&["-t", "generic", "-u", URL], &[], None));
        assert!(m.contains("no API secret"), "{m}");
        assert!(
            m.contains("secret-file") && m.contains("xcauth-secret"),
            "{m}"
        );
    }

    #[test]
    fn usage_errors_are_clap_errors() {
        for args in [
            &["--type", "xmpp"][..],
            &["--cache-storage", "disk"],
            &["--saslauthd-fields", "6"],
            &["--no-such-option"],
            &["-A", "only", "two"],
            &["--url", "not a url"],
            &["--url", "ftp://example.org/"],
            &["--timeout", "0"],
            &["--cache-bcrypt-rounds", "3"],
            &["--cache-query-ttl", "-1h"],
        ] {
            match load_test(args, &[], None) {
                Err(e @ ConfigError::Cli(_)) => assert_eq!(e.exit_code(), 2, "{args:?}"),
                other => panic!("{args:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn time_spans() {
        for (text, seconds) in [
            ("0", 0),
            ("90", 90),
            ("90s", 90),
            ("30m", 1800),
            ("1h", 3600),
            ("2d", 172800),
            ("1w", 604800),
            (" 5m ", 300),
        ] {
            assert_eq!(parse_span(text), Ok(seconds), "{text}");
        }
        for text in [
            "",
            "h",
            "-5",
            "-1h",
            "1.5h",
            "1y",
            "1H",
            "abc",
            "+5",
            "1 h",
            "99999999999999999999",
        ] {
            assert!(parse_span(text).is_err(), "{text}");
        }
        assert!(parse_span("-5").unwrap_err().contains("negative"));
        assert!(parse_span("1y").unwrap_err().contains("30m"));
    }

    #[test]
    fn bcrypt_rounds() {
        assert_eq!(parse_rounds("12,4"), Ok((12, 4)));
        assert_eq!(parse_rounds("10"), Ok((10, 10)));
        assert_eq!(parse_rounds(" 31 , 4 "), Ok((31, 4)));
        for bad in ["3", "32", "12,3", "x", "12,4,4", "", "12,"] {
            assert!(parse_rounds(bad).is_err(), "{bad}");
        }
        let c = ok(&["--cache-bcrypt-rounds", "8"]);
        assert_eq!((c.bcrypt_rounds_db, c.bcrypt_rounds_memory), (8, 8));
    }

    #[test]
    fn timeouts() {
        let s = Duration::from_secs;
        assert_eq!(parse_timeouts("5,10"), Ok((s(5), s(10))));
        assert_eq!(parse_timeouts("7"), Ok((s(7), s(7))));
        assert_eq!(
            parse_timeouts("0.25, 2"),
            Ok((Duration::from_millis(250), s(2)))
        );
        for bad in ["0", "-1", "x", "1,2,3", "inf", "NaN", "1,", "1e300"] {
            assert!(parse_timeouts(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn switch_spellings_in_file() {
        let base = format!("type=generic\nurl={URL}\nsecret=x\n");
        for (line, expected) in [
            ("debug", true),
            ("debug=true", true),
            ("debug = True", true),
            ("debug=yes", true),
            ("debug=1", true),
            ("debug=false", false),
            ("debug=no", false),
            ("debug=0", false),
        ] {
            let c = load_test(&[], &[], Some(&format!("{base}{line}\n"))).unwrap();
            assert_eq!(c.debug, expected, "{line}");
        }
        let (line, message) = file_error(&format!("{base}debug=maybe\n"));
        assert_eq!(line, 4);
        assert!(
            message.contains("debug") && message.contains("maybe"),
            "{message}"
        );
    }

    #[test]
    fn file_syntax() {
        let text = format!(
            "# comment\n\
             ; another comment\n\
             \n\
             [section]\n\
             ---\n\
             \x20  type: prosody   # trailing comment\n\
             url = {URL}\n\
             secret a#b ; comment\n\
             cache_storage=memory\n\
             --cache-query-ttl=5m\r\n\
             recipient-delimiter=+\n"
        );
        let c = load_test(&[], &[], Some(&text)).unwrap();
        assert_eq!(c.mode, Mode::Serve(Protocol::Generic));
        assert_eq!(c.url.as_deref(), Some(URL));
        assert_eq!(c.secret.expose(), "a#b");
        assert_eq!(c.cache_storage, CacheStorage::Memory);
        assert_eq!(c.cache_query_ttl, 300);
        assert_eq!(c.codec.recipient_delimiter, "+");
    }

    #[test]
    fn file_errors_name_the_line() {
        let (line, message) = file_error("# c\n\nurl=https://x.example/\nfrobnicate=1\n");
        assert_eq!(line, 4);
        assert!(message.contains("unknown option `frobnicate`"), "{message}");

        let (line, message) = file_error("url=https://x.example/\n0123abcdef99\n");
        assert_eq!(line, 2);
        assert!(!message.contains("0123abcdef99"), "{message}");

        let (line, message) = file_error("\ncache-query-ttl=soon\n");
        assert_eq!(line, 2);
        assert!(message.starts_with("cache-query-ttl: "), "{message}");

        let (line, message) = file_error("auth-test=a b c\n");
        assert_eq!(line, 1);
        assert!(
            message.contains("only accepted on the command line"),
            "{message}"
        );

        let (line, message) = file_error("type=generic\nurl\n");
        assert_eq!(line, 2);
        assert!(message.contains("needs a value"), "{message}");

        let (line, _) = file_error("secret=\n");
        assert_eq!(line, 1);

        let e = load_test(&[], &[], Some("x\n\ntype=jabber\n")).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("xcauth.conf:1: "), "{text}");
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn repeated_key_warns_and_last_wins() {
        let c = load_test(&BASE, &[], Some("log=/a\nlog=/b\n")).unwrap();
        assert_eq!(c.log_dir, PathBuf::from("/b"));
        assert!(c
            .warnings
            .iter()
            .any(|w| w.contains(":2: `log` was already set on line 1")));
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
    fn help_hides_secret_from_environment() {
        let secret = "very-secret-value-123";
        let e = load_test(
            &["--help"],
            &[("XCAUTH_SECRET", secret), ("XCAUTH_URL", URL)],
            Some(&format!("secret={secret}\n")),
        )
        .unwrap_err();
        assert_eq!(e.exit_code(), 0);
        let ConfigError::Cli(e) = e else {
            panic!("expected clap help")
        };
        assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp);
        let help = e.to_string();
        assert!(!help.contains(secret), "{help}");
        for option in [
            "--config-file",
            "--secret-file",
            "--auth-test",
            "-A",
            "--cache-bcrypt-rounds",
            "--saslauthd-fields",
            "--shared-roster-db",
            "--version",
            "XCAUTH_",
        ] {
            assert!(help.contains(option), "{option} missing from help");
        }
    }

    #[test]
    fn version_exits_zero() {
        let e = load_test(&["--version"], &[], None).unwrap_err();
        assert_eq!(e.exit_code(), 0);
        assert!(e.to_string().contains(env!("CARGO_PKG_VERSION")));
        // The original had no -V.
        assert!(matches!(
            load_test(&["-V"], &[], None),
            Err(ConfigError::Cli(e)) if e.kind() != clap::error::ErrorKind::DisplayVersion
        ));
    }

    #[test]
    fn legacy_options_from_file_and_env() {
        let c = load_test(
            &BASE[..4],
            &[("XCAUTH_SECRET", "x"), ("XCAUTH_CACHE_DB", "/env/cache")],
            Some("shared_roster_db=/file/roster\ncache-db=/file/cache\nupdate-roster\n"),
        )
        .unwrap();
        assert_eq!(
            c.legacy_dbs,
            vec![
                ("cache-db", PathBuf::from("/env/cache")),
                ("shared-roster-db", PathBuf::from("/file/roster")),
            ]
        );
    }

    #[test]
    fn every_setting_has_an_option_and_a_variable() {
        let cmd = command();
        for (option, _) in SETTINGS {
            let arg = cmd.get_arguments().find(|a| a.get_long() == Some(option));
            assert!(arg.is_some(), "--{option} missing");
        }
        assert_eq!(env_name("cache-storage"), "XCAUTH_CACHE_STORAGE");
        assert_eq!(env_name("secret-file"), "XCAUTH_SECRET_FILE");
        command().debug_assert();
    }

    #[test]
    fn split_line_cases() {
        assert_eq!(split_line("  # x"), Ok(None));
        assert_eq!(split_line("debug"), Ok(Some(("debug", None))));
        assert_eq!(split_line("debug # on"), Ok(Some(("debug", None))));
        assert_eq!(split_line("a=b=c"), Ok(Some(("a", Some("b=c")))));
        assert_eq!(
            split_line("url: http://x:1/"),
            Ok(Some(("url", Some("http://x:1/"))))
        );
        assert_eq!(split_line("key   value"), Ok(Some(("key", Some("value")))));
        assert!(split_line("=x").is_err());
    }
}
