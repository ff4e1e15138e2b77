//! The option table: every setting xcauth takes from the command line, the
//! environment (`XCAUTH_NAME`) and the config file (`name=value`), once.

use std::path::PathBuf;

use clap::{Arg, ArgMatches};

use super::values::{
    CacheStorage, Count, Limit, Listen, MetricsAddress, Networks, Octal, PositiveSpan, Rounds,
    Span, Timeouts, TrustedSockets, Url, Value,
};
use super::{ConfigError, ENV_PREFIX};
use crate::backend::{BackendKind, LoginForm};
use crate::proto::{Protocol, SaslauthdFields};
use crate::secret::Secret;

/// One row of the table, as the sources use it.
pub(super) struct Setting {
    /// Long option name; also the file key and, upper-cased, the variable.
    pub long: &'static str,
    /// Short option letter, if any.
    pub short: Option<char>,
    /// Placeholder in `--help`; `None` for a switch.
    pub value_name: Option<&'static str>,
    /// Help text (leading blank included; trim before use).
    pub help: &'static str,
    /// A bare key in the file means "true".
    pub switch: bool,
    /// Sets the clap argument's action and value parser.
    pub clap: fn(Arg) -> Arg,
    /// Sets the field from the environment's or the file's text.
    pub set: fn(&mut Layer, &str) -> Result<(), String>,
    /// Sets the field from the command line, if given there.
    pub take: fn(&mut Layer, &ArgMatches),
    /// A valid value, for the table's tests.
    #[cfg(test)]
    pub example: &'static str,
}

// To add an option, add a row here: its doc comment is the `--help` text,
// then `field: Type => "long-name"`, optionally `short 'x'` and
// `value "NAME"`. The type (values.rs) brings the parser and the bounds;
// the command line, XCAUTH_LONG_NAME and `long-name=` in the config file
// then all work. Use the field in `load` (resolved.rs) with its default.
// A new kind of value gets a `Value` impl in values.rs; the table's tests
// then try every row on all three sources with the type's EXAMPLE.
//
// Spans of 0: the cache TTLs accept 0 (query and verification 0: "never
// fresh", the cache only answers while the back end is unreachable;
// unreachable 0: the cache never stands in for the back end).
// shutdown-timeout accepts 0: "stop at once, abandoning requests in
// flight" is a choice, not a mistake. idle-timeout refuses 0 (every
// connection would be closed at once), and so do both back-end timeouts
// (no request could ever succeed).
options! {
    /// Protocol to serve on standard input or inherited sockets (prosody =
    /// generic)
    protocol: Protocol => "type", short 't', value "TYPE";
    /// Nextcloud base URL (backend=nextcloud), or the JSXC external API URL
    /// shown on the Nextcloud JSXC admin page (backend=jsxc)
    url: Url => "url", short 'u', value "URL";
    /// Which API to ask: nextcloud (stock Nextcloud, no app) or jsxc (the
    /// JSXC app) [default: jsxc for a .../apps/ojsxc/ajax/externalApi.php
    /// URL, else nextcloud]
    backend: BackendKind => "backend", value "KIND";
    /// API secret (jsxc: signature and tokens; nextcloud: tokens only);
    /// visible in the process list, prefer --secret-file
    secret: Secret => "secret", short 's', value "SECRET";
    /// File holding the API secret
    secret_file: PathBuf => "secret-file", value "PATH";
    /// nextcloud: account for user existence and groups (an admin, or a
    /// subadmin of the groups to share)
    api_user: String => "api-user", value "NAME";
    /// nextcloud: file holding the API account's (app) password; also
    /// XCAUTH_API_PASSWORD or the systemd credential xcauth-api-password
    api_password_file: PathBuf => "api-password-file", value "PATH";
    /// nextcloud: the Nextcloud login name of an XMPP user: user, or
    /// user@domain [default: user]
    login_form: LoginForm => "login-form", value "FORM";
    // Span: 0 builds the roster afresh at every login.
    /// nextcloud: reuse a user's shared roster for this long [default: 10m]
    roster_ttl: Span => "roster-ttl", value "SPAN";
    /// Extra CA certificates (PEM) to trust for the API URL
    ca_file: PathBuf => "ca-file", value "PATH";
    // Timeouts refuses 0: no request could ever succeed.
    /// Back-end timeouts in seconds: CONNECT[,TOTAL] [default: 5,10]
    timeouts: Timeouts => "timeout", value "SECONDS";
    /// SQLite database (domains, cache, roster state)
    /// [default: /var/lib/xcauth/xcauth.sqlite3]
    db: PathBuf => "db", value "PATH";
    /// Where to cache verified passwords [default: none]
    cache_storage: CacheStorage => "cache-storage", value "WHERE";
    // The three TTLs are `Span`s: 0 is allowed (see above).
    /// Cache hits need a query younger than this [default: 1h]
    cache_query_ttl: Span => "cache-query-ttl", value "SPAN";
    /// Cache hits need a back-end verification younger than this
    /// [default: 1d]
    cache_verification_ttl: Span => "cache-verification-ttl", value "SPAN";
    /// While the back end is unreachable, accept cache entries verified
    /// within this span [default: 1w]
    cache_unreachable_ttl: Span => "cache-unreachable-ttl", value "SPAN";
    /// bcrypt cost of cached passwords: DB[,MEMORY], 4 to 31; each step
    /// doubles the time [default: 12,4]
    bcrypt_rounds: Rounds => "cache-bcrypt-rounds", value "ROUNDS";
    // The guard's spans and counts accept 0: it switches the rule off.
    /// The same wrong password for the same JID is answered "no" without
    /// asking Nextcloud for this long [default: 10m]
    negative_ttl: Span => "negative-ttl", value "SPAN";
    /// Distinct wrong passwords per JID within guard-jid-window before
    /// further unknown passwords are refused unasked [default: 10]
    guard_jid_failures: Limit => "guard-jid-failures", value "N";
    /// The window guard-jid-failures counts in [default: 15m]
    guard_jid_window: Span => "guard-jid-window", value "SPAN";
    /// Failed logins per client address within guard-address-window before
    /// further logins from it are refused unasked [default: 30]
    guard_address_failures: Limit => "guard-address-failures", value "N";
    /// The window guard-address-failures counts in [default: 15m]
    guard_address_window: Span => "guard-address-window", value "SPAN";
    /// Client addresses never limited, comma-separated, ADDR or ADDR/BITS
    /// (e.g. a webmail on this host: 127.0.0.1,::1)
    guard_allowlist: Networks => "guard-allowlist", value "LIST";
    /// Log directory [default: /var/log/xcauth]
    log_dir: PathBuf => "log", short 'l', value "DIR";
    /// Log debug messages
    debug: bool => "debug", short 'd';
    /// Log to standard error instead of the log directory
    interactive: bool => "interactive", short 'i';
    /// Keep ejabberd shared roster groups in sync, running the ejabberdctl
    /// at PATH
    ejabberdctl: PathBuf => "ejabberdctl", value "PATH";
    /// postfix: characters that start an address extension (e.g. +)
    /// [default: none]
    recipient_delimiter: String => "recipient-delimiter", value "CHARS";
    /// saslauthd: number of request fields [default: auto]
    saslauthd_fields: SaslauthdFields => "saslauthd-fields", value "N";
    /// Serve PROTO on ADDR (host:port or unix:PATH) without systemd;
    /// repeatable, e.g. --listen prosody=127.0.0.1:23663; PROTO:auth+isuser=ADDR
    /// answers only those requests there (auth, isuser, roster)
    listen: Listen => "listen", value "PROTO[:REQUESTS]=ADDR";
    /// A socket whose clients are believed when they send a client's
    /// address (Prosody's authclient:, saslauthd's fifth field): unix:/PATH
    /// or IP:PORT, matched against the address of each served socket;
    /// repeatable. Elsewhere the peer's address counts (a loopback or Unix
    /// peer as none); standard input is always trusted
    trusted_socket: TrustedSockets => "trusted-socket", value "ADDR";
    /// Permission bits of Unix sockets created by --listen [default: 0660]
    socket_mode: Octal => "socket-mode", value "OCTAL";
    /// Owner of Unix sockets created by --listen (user name or uid)
    socket_owner: String => "socket-owner", value "USER";
    /// Group of Unix sockets created by --listen (group name or gid)
    socket_group: String => "socket-group", value "GROUP";
    /// Most socket connections served at once [default: 1024]
    max_connections: Count => "max-connections", value "N";
    // PositiveSpan: 0 would close every connection at once.
    /// Close socket connections idle this long [default: 1h]
    idle_timeout: PositiveSpan => "idle-timeout", value "SPAN";
    // PositiveSpan: 0 would close every peer at its first answer.
    /// Close a connection (or standard output) that takes none of our
    /// answer for this long [default: 30s]
    write_timeout: PositiveSpan => "write-timeout", value "SPAN";
    // Span: 0 stops at once, abandoning requests in flight.
    /// On SIGTERM, let in-flight requests finish for this long [default: 10s]
    shutdown_timeout: Span => "shutdown-timeout", value "SPAN";
    // Knobs that were constants, with the same defaults; and the journal.
    // PositiveSpan: an ejabberdctl run limited to 0s could never succeed.
    /// Kill an ejabberdctl run (roster sync, user and group delete) that
    /// takes longer than this [default: 30s]
    ejabberdctl_timeout: PositiveSpan => "ejabberdctl-timeout", value "SPAN";
    // Count: at least 1, or no request could ever be sent.
    /// Most requests to Nextcloud in flight at once, over all connections
    /// of this process [default: 64]
    backend_concurrency: Count => "backend-concurrency", value "N";
    /// When standard error is systemd's journal (JOURNAL_STREAM), write
    /// the log files as well [default: journal only]
    log_files_under_journal: bool => "log-files-under-journal";
    // --metrics (src/metrics/): a TCP address must be loopback unless
    // metrics-allow-remote is set (checked in resolved.rs).
    /// Serve Prometheus metrics (GET /metrics) and a health check (GET
    /// /health) on ADDR: a loopback IP:PORT such as 127.0.0.1:9155, or a
    /// Unix socket path [default: off]
    metrics: MetricsAddress => "metrics", value "ADDR";
    /// Allow --metrics on an address other hosts can reach (the metrics
    /// have no authentication and show when logins fail)
    metrics_allow_remote: bool => "metrics-allow-remote";
    // PositiveSpan, at most 30s (resolved.rs): `xcauth stats` takes a
    // process silent for a minute for gone.
    /// How often a serving process with a database writes its metric
    /// totals there, for xcauth stats (1s to 30s) [default: 10s]
    stats_interval: PositiveSpan => "stats-interval", value "SPAN";
    /// Accepted for compatibility; no effect (see --ejabberdctl)
    update_roster: bool => "update-roster", short 'T';
    /// Legacy pre-2.0 domain database (not read)
    domain_db: PathBuf => "domain-db", short 'b', value "PATH";
    /// Legacy pre-2.0 cache database (not read)
    cache_db: PathBuf => "cache-db", value "PATH";
    /// Legacy pre-2.0 shared roster database (not read)
    shared_roster_db: PathBuf => "shared-roster-db", value "PATH";
}

/// The row for a long option name.
pub(super) fn setting(long: &str) -> Option<&'static Setting> {
    OPTIONS.iter().find(|s| s.long == long)
}

impl Layer {
    /// `self` where it says something, else `lower`. `secret` and
    /// `secret-file` travel together, so an explicit secret beats a secret
    /// file of the same source, and a source naming either beats both of a
    /// lower one.
    pub(super) fn over(self, mut lower: Layer) -> Layer {
        if self.secret.is_some() || self.secret_file.is_some() {
            lower.secret = None;
            lower.secret_file = None;
        }
        self.or(lower)
    }

    /// The command line's part.
    pub(super) fn from_matches(matches: &ArgMatches) -> Layer {
        let mut layer = Layer::default();
        for setting in OPTIONS {
            (setting.take)(&mut layer, matches);
        }
        layer
    }

    /// The environment's part. Empty variables count as unset (systemd's
    /// `Environment=XCAUTH_URL=` clears a value).
    pub(super) fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Layer, ConfigError> {
        let mut layer = Layer::default();
        for setting in OPTIONS {
            let name = env_name(setting.long);
            if let Some(value) = env(&name).filter(|v| !v.is_empty()) {
                (setting.set)(&mut layer, &value)
                    .map_err(|e| ConfigError::Invalid(format!("{name}: {e}")))?;
            }
        }
        Ok(layer)
    }
}

/// The environment variable for a long option name: `cache-storage` →
/// `XCAUTH_CACHE_STORAGE`.
pub(super) fn env_name(option: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        option.to_ascii_uppercase().replace('-', "_")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::cli;
    use crate::config::file::parse_config_file;
    use crate::config::testutil::*;
    use crate::config::{CacheStorage, Mode};
    use std::path::Path;
    use std::time::Duration;

    /// Every row of the table is a command-line option (long and, where
    /// the row has one, short), a variable and a file key, and all of them
    /// set the same field to the same value.
    #[test]
    fn every_setting_has_an_option_and_a_variable() {
        let mut cmd = cli::command();
        cmd.build();
        cmd.clone().debug_assert();
        assert_eq!(env_name("cache-storage"), "XCAUTH_CACHE_STORAGE");
        assert_eq!(env_name("secret-file"), "XCAUTH_SECRET_FILE");
        let unset = format!("{:?}", Layer::default());
        for s in OPTIONS {
            let option = format!("--{}", s.long);
            let arg = cmd.get_arguments().find(|a| a.get_long() == Some(s.long));
            let arg = arg.unwrap_or_else(|| panic!("{option} missing"));
            assert_eq!(arg.get_short(), s.short, "{option}");
            assert!(!s.help.trim().is_empty(), "{option} has no help");

            let cli_args = |flag: &str| {
                let mut argv = vec!["xcauth".to_owned(), flag.to_owned()];
                if !s.switch {
                    argv.push(s.example.to_owned());
                }
                format!("{:?}", cli::parse(argv).unwrap().settings)
            };
            let from_cli = cli_args(&option);
            assert_ne!(from_cli, unset, "{option} set nothing");
            if let Some(short) = s.short {
                assert_eq!(cli_args(&format!("-{short}")), from_cli, "-{short}");
            }

            let variable = env_name(s.long);
            let env = env_of(&[(&variable, s.example)]);
            let from_env = format!("{:?}", Layer::from_env(&env).unwrap());
            assert_eq!(from_env, from_cli, "{variable}");

            for key in [s.long.to_owned(), s.long.replace('-', "_")] {
                let text = format!("{key}={}\n", s.example);
                let file = parse_config_file(Path::new("x.conf"), text.as_bytes()).unwrap();
                assert_eq!(format!("{:?}", file.layer), from_cli, "{key}= in the file");
            }
        }
        // Every other long option is one the file reader knows as
        // command-line only.
        for arg in cmd.get_arguments() {
            let long = arg.get_long().expect("every option has a long name");
            assert!(
                setting(long).is_some() || cli::CLI_ONLY.contains(&long),
                "--{long} is neither in the table nor in CLI_ONLY"
            );
        }
        for long in cli::CLI_ONLY {
            assert!(
                cmd.get_arguments().any(|a| a.get_long() == Some(long)),
                "--{long}"
            );
        }
    }

    /// The zero-span decisions of the table comment, row by row.
    #[test]
    fn spans_of_zero() {
        for (long, zero_allowed) in [
            ("cache-query-ttl", true),
            ("cache-verification-ttl", true),
            ("cache-unreachable-ttl", true),
            ("shutdown-timeout", true),
            ("idle-timeout", false),
            ("write-timeout", false),
            ("timeout", false),
        ] {
            let row = setting(long).unwrap();
            let mut layer = Layer::default();
            let result = (row.set)(&mut layer, "0");
            assert_eq!(result.is_ok(), zero_allowed, "{long}: {result:?}");
            for zero in ["0s", "0m", "0w"].into_iter().filter(|_| long != "timeout") {
                assert_eq!(
                    (row.set)(&mut layer, zero).is_ok(),
                    zero_allowed,
                    "{long}={zero}"
                );
            }
            assert!((row.set)(&mut layer, "1").is_ok(), "{long}=1");
        }
    }

    #[test]
    fn zero_idle_timeout_in_the_environment_names_the_variable() {
        let m = invalid(load_test(&BASE, &[("XCAUTH_IDLE_TIMEOUT", "0")], None));
        assert!(m.starts_with("XCAUTH_IDLE_TIMEOUT: "), "{m}");
        assert!(m.contains("at least 1s"), "{m}");
        let c = load_test(
            &BASE,
            &[
                ("XCAUTH_SHUTDOWN_TIMEOUT", "0"),
                ("XCAUTH_CACHE_QUERY_TTL", "0"),
            ],
            None,
        )
        .unwrap();
        assert_eq!(c.sockets.shutdown_timeout, Duration::ZERO);
        assert_eq!(c.cache_query_ttl, 0);
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
}
