//! The command line: the clap command built from the option table plus the
//! options only the command line has (`-c`, `-A`, `-I`, `-R`, `--version`).
//!
//! The administration subcommands (`src/admin/cli.rs`) are added to this
//! same command, so the options here are the global options of every
//! subcommand too: `xcauth -c FILE domain list`. `-c`, `--db` and
//! `--ejabberdctl` are also accepted after a subcommand (the original
//! spelling `xcauth domain list --db PATH`).

use std::ffi::OsString;
use std::path::PathBuf;

use clap::builder::ValueParser;
use clap::{Arg, ArgAction, ArgGroup, ArgMatches, Command};

use super::options::{Layer, Setting, OPTIONS};
use super::resolved::{CheckRequest, Mode};
use super::ConfigError;
use crate::secret::Secret;

/// Long options that only make sense on the command line (the file reader
/// says so instead of "unknown option").
pub(super) const CLI_ONLY: [&str; 10] = [
    "config-file",
    "auth-test",
    "isuser-test",
    "roster-test",
    "version",
    "help",
    "configtest",
    "quick",
    "user",
    "password-stdin",
];

const ABOUT: &str = "Answers \"is this password right?\" and \"does this user exist?\" for \
                     XMPP servers (ejabberd, Prosody) and mail servers (saslauthd, Postfix) \
                     from JSXC tokens and the Nextcloud JSXC external API.";

const AFTER_HELP: &str = "\
Without a command, one of -t, -A, -I, -R or --configtest is required. -A, -I and -R take \
precedence over -t and imply -i and -d.

Every option except -c, -A, -I and -R can also be set in the config file \
(/etc/xcauth.conf, or -c FILE) as name=value with its long name (a switch as \
`debug` or `debug=true`), or in the environment as XCAUTH_NAME (e.g. \
XCAUTH_SECRET_FILE). The command line beats the environment, which beats the \
config file. When no secret is set, the systemd credential `xcauth-secret` \
is used.

Time spans are seconds, or a number with s, m, h, d or w (90, 30m, 1h, 2d, 1w).

The commands above administer the database (domains, cached users, groups, \
roster state, the cache, the guard). The options before a command apply to it \
as to the server (its database, ejabberdctl, cache-storage, the guard's \
limits; options the command does not use are checked but have no effect); \
-c, --db and --ejabberdctl may also follow it. -A, -I and -R do not combine \
with a command. `xcauth help COMMAND` shows a command's own options.";

/// Options given on the command line that stay global to the
/// administration subcommands: accepted after them as well.
const GLOBAL_AFTER_SUBCOMMANDS: [&str; 2] = ["db", "ejabberdctl"];

/// What the command line says (its options; a subcommand is the
/// caller's). Resolve it with [`load_from`](super::load_from) or
/// [`admin_settings_from`](super::admin_settings_from).
// No `Debug`: the -A password is in `one_shot`.
#[derive(Clone, Default)]
pub struct CommandLine {
    /// `-c FILE`.
    pub(super) config_file: Option<PathBuf>,
    /// `-A`, `-I` or `-R` (clap allows at most one).
    pub(super) one_shot: Option<Mode>,
    /// The settings from the table.
    pub(super) settings: Layer,
}

impl CommandLine {
    /// The options of `matches`, which come from [`command`] (possibly with
    /// subcommands added).
    pub fn from_matches(matches: &ArgMatches) -> Result<CommandLine, ConfigError> {
        Ok(CommandLine {
            config_file: matches.get_one::<PathBuf>("config_file").cloned(),
            one_shot: one_shot(matches)?,
            settings: Layer::from_matches(matches),
        })
    }

    /// `-A`, `-I` or `-R` was given.
    pub fn has_one_shot(&self) -> bool {
        self.one_shot.is_some()
    }

    /// Makes this the command line of `xcauth check`: the same as
    /// `--configtest` with the check's own options.
    pub fn into_check(mut self, request: CheckRequest) -> CommandLine {
        self.one_shot = Some(Mode::Check(request));
        self
    }

    /// `-c FILE`, if given.
    pub fn config_file(&self) -> Option<&std::path::Path> {
        self.config_file.as_deref()
    }
}

/// The clap command. Values are parsed by the same functions as
/// environment and file values, so all three accept the same spellings. No
/// defaults here: an absent option must fall through to the environment
/// and the file.
pub fn command() -> Command {
    let mut args: Vec<Arg> = OPTIONS.iter().map(setting_arg).collect();
    // The one-shot queries follow -t in --help: they are its alternatives.
    let after_type = args
        .iter()
        .position(|a| a.get_long() == Some("type"))
        .map_or(0, |at| at + 1);
    args.splice(after_type..after_type, one_shot_args());
    let args = args.into_iter().map(|arg| {
        let global = arg
            .get_long()
            .is_some_and(|long| GLOBAL_AFTER_SUBCOMMANDS.contains(&long));
        arg.global(global)
    });
    Command::new("xcauth")
        .version(env!("CARGO_PKG_VERSION"))
        .disable_version_flag(true)
        .about(ABOUT)
        .after_help(AFTER_HELP)
        .arg(
            Arg::new("config_file")
                .short('c')
                .long("config-file")
                .value_name("FILE")
                .value_parser(ValueParser::path_buf())
                .action(ArgAction::Set)
                .global(true)
                .help("Config file [default: /etc/xcauth.conf, if present]"),
        )
        .args(args)
        .args(check_args())
        .group(ArgGroup::new("one_shot").args([
            "auth_test",
            "isuser_test",
            "roster_test",
            "configtest",
        ]))
        // --version without the -V the original never had.
        .arg(
            Arg::new("version")
                .long("version")
                .action(ArgAction::Version)
                .help("Print the version and exit"),
        )
}

/// The clap argument of one table row; its id is the long name.
fn setting_arg(setting: &Setting) -> Arg {
    let mut arg = Arg::new(setting.long)
        .long(setting.long)
        .help(setting.help.trim());
    if let Some(short) = setting.short {
        arg = arg.short(short);
    }
    if let Some(name) = setting.value_name {
        arg = arg.value_name(name);
    }
    (setting.clap)(arg)
}

fn one_shot_args() -> [Arg; 3] {
    let query = |id: &'static str, short: char, long: &'static str, help: &'static str| {
        Arg::new(id)
            .short(short)
            .long(long)
            .action(ArgAction::Set)
            .value_parser(ValueParser::string())
            .help(help)
    };
    [
        query(
            "auth_test",
            'A',
            "auth-test",
            "One-shot auth query; prints True or False. A PASSWORD of - is read \
             from standard input (one line)",
        )
        .num_args(3)
        .value_names(["USER", "DOMAIN", "PASSWORD"])
        .allow_hyphen_values(true),
        query(
            "isuser_test",
            'I',
            "isuser-test",
            "One-shot isuser query; prints True or False",
        )
        .num_args(2)
        .value_names(["USER", "DOMAIN"]),
        query(
            "roster_test",
            'R',
            "roster-test",
            "One-shot shared roster query; prints the JSON",
        )
        .num_args(2)
        .value_names(["USER", "DOMAIN"]),
    ]
}

/// `--configtest` (also `xcauth check`) and its options.
fn check_args() -> [Arg; 4] {
    [
        Arg::new("configtest")
            .long("configtest")
            .action(ArgAction::SetTrue)
            .help(
                "Test the configuration as the service reads it (also: xcauth check); \
                 exit 0 when no test fails, 1 otherwise",
            ),
        Arg::new("quick")
            .long("quick")
            .action(ArgAction::SetTrue)
            .requires("configtest")
            .conflicts_with("user")
            .help("With --configtest: only the fast tests, terse (a monitoring probe)"),
        Arg::new("user")
            .long("user")
            .value_name("USER@DOMAIN")
            .action(ArgAction::Set)
            .value_parser(ValueParser::string())
            .requires("configtest")
            .help("With --configtest: also isuser and roster for this user"),
        Arg::new("password_stdin")
            .long("password-stdin")
            .action(ArgAction::SetTrue)
            .requires("user")
            .help("With --user: read its password from standard input for an auth test"),
    ]
}

/// Parses `args` (including `argv[0]`).
pub(super) fn parse<I, T>(args: I) -> Result<CommandLine, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let matches = command().try_get_matches_from(args)?;
    CommandLine::from_matches(&matches)
}

/// `-A`, `-I` or `-R`, if given.
fn one_shot(matches: &ArgMatches) -> Result<Option<Mode>, ConfigError> {
    if let Some([user, domain, password]) = values_of::<3>(matches, "auth_test")? {
        return Ok(Some(Mode::AuthTest {
            user,
            domain,
            password: Secret::new(password),
        }));
    }
    if let Some([user, domain]) = values_of::<2>(matches, "isuser_test")? {
        return Ok(Some(Mode::IsUserTest { user, domain }));
    }
    if let Some([user, domain]) = values_of::<2>(matches, "roster_test")? {
        return Ok(Some(Mode::RosterTest { user, domain }));
    }
    if matches.get_flag("configtest") {
        return Ok(Some(Mode::Check(CheckRequest {
            quick: matches.get_flag("quick"),
            user: matches.get_one::<String>("user").cloned(),
            password_stdin: matches.get_flag("password_stdin"),
        })));
    }
    Ok(None)
}

fn values_of<const N: usize>(
    matches: &ArgMatches,
    id: &str,
) -> Result<Option<[String; N]>, ConfigError> {
    let Some(values) = matches.get_many::<String>(id) else {
        return Ok(None);
    };
    <[String; N]>::try_from(values.cloned().collect::<Vec<_>>())
        .map(Some)
        .map_err(|_| ConfigError::Invalid(format!("--{} takes {N} values", id.replace('_', "-"))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testutil::*;
    use crate::config::CacheStorage;
    use crate::proto::{Protocol, SaslauthdFields};
    use std::fs;
    use std::time::Duration;

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

    /// The knobs that were constants keep their defaults, take a value,
    /// and refuse 0 (no ejabberdctl run or back-end request could succeed).
    #[test]
    fn former_constants_as_options() {
        let c = ok(&[]);
        assert_eq!(c.ejabberdctl_timeout, crate::roster::DEFAULT_CTL_TIMEOUT);
        assert_eq!(c.ejabberdctl_timeout, Duration::from_secs(30));
        assert_eq!(
            c.backend_concurrency,
            crate::backend::http::MAX_CONCURRENT_REQUESTS
        );
        assert_eq!(c.backend_concurrency, 64);
        assert!(!c.log_files_under_journal);
        let c = ok(&[
            "--ejabberdctl-timeout",
            "2m",
            "--backend-concurrency",
            "2",
            "--log-files-under-journal",
        ]);
        assert_eq!(c.ejabberdctl_timeout, Duration::from_secs(120));
        assert_eq!(c.backend_concurrency, 2);
        assert!(c.log_files_under_journal);
        for args in [
            &["--ejabberdctl-timeout", "0"][..],
            &["--backend-concurrency", "0"],
            &["--backend-concurrency=-1"],
        ] {
            let e = load_test(args, &[], None).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{args:?}");
            let option = args[0].split('=').next().unwrap_or_default();
            assert!(e.to_string().contains(option), "{args:?}: {e}");
        }
    }

    #[test]
    fn zero_idle_timeout_is_a_usage_error_naming_the_option() {
        for zero in ["0", "0s", "0h"] {
            let e = load_test(&["--idle-timeout", zero], &[], None).unwrap_err();
            assert_eq!(e.exit_code(), 2);
            let ConfigError::Cli(e) = e else {
                panic!("expected a clap error")
            };
            assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation);
            let text = e.to_string();
            assert!(text.contains("--idle-timeout"), "{text}");
            assert!(text.contains("at least 1s"), "{text}");
        }
        let c = ok(&["--idle-timeout", "1", "--shutdown-timeout", "0"]);
        assert_eq!(c.sockets.idle_timeout, Duration::from_secs(1));
        assert_eq!(c.sockets.shutdown_timeout, Duration::ZERO);
        let c = ok(&[
            "--cache-query-ttl",
            "0",
            "--cache-verification-ttl",
            "0",
            "--cache-unreachable-ttl",
            "0",
        ]);
        assert_eq!(
            (
                c.cache_query_ttl,
                c.cache_verification_ttl,
                c.cache_unreachable_ttl
            ),
            (0, 0, 0)
        );
    }
}
