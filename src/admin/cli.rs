//! What the administrator asked for: the clap command line of the subcommands, turned into an [`Action`] with its secret read.

use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::path::PathBuf;

use clap::builder::NonEmptyStringValueParser;
use clap::{Args, FromArgMatches, Subcommand};

use super::AdminError;
use crate::backend::{BackendKind, LoginForm};
use crate::config::{parse_url, CommandLine};
use crate::guard::client_ip;
use crate::logging::Escaped;
use crate::proto::domain::canonical_domain;
use crate::secret::Secret;
use crate::store::{DomainBackend, DomainUpdate};

const AFTER_HELP: &str = "\
Without --db, the commands use the server's database: --db, XCAUTH_DB, db= in \
the config file (/etc/xcauth.conf, or -c FILE, or XCAUTH_CONFIG_FILE), else \
/var/lib/xcauth/xcauth.sqlite3.

Exit status of the commands: 0 done; 1 the named thing did not exist (or, for \
`domain add`, already existed); 2 usage, configuration or database error; 3 the \
database was changed but an ejabberdctl call failed (it is printed to be run by \
hand).

To test the service's configuration (settings, database, log directory, \
ejabberdctl, each Nextcloud): xcauth check [--quick] [--user USER@DOMAIN] \
(also spelled --configtest).";

/// The whole command line: the server's options (the option table and
/// `-c`, `-A`, `-I`, `-R`), which are also the global options of the
/// administration subcommands, and the subcommands. `xcauth --help` and
/// `xcauth help` show both; `xcauth help COMMAND` one command.
pub fn command() -> clap::Command {
    let service = crate::config::command();
    let after = format!(
        "{}\n\n{AFTER_HELP}",
        service
            .get_after_help()
            .map(|h| h.to_string())
            .unwrap_or_default()
    );
    Command::augment_subcommands(service)
        .subcommand_value_name("COMMAND")
        .subcommand_help_heading("Administration commands")
        .after_help(after)
}

/// What the command line asks for: the server (or a one-shot query), or an
/// administration command.
// Parsed once per run; boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Invocation {
    /// No subcommand: serve, or `-A`/`-I`/`-R`.
    Service(CommandLine),
    /// A subcommand, with the options given around it.
    Admin(AdminCli),
}

/// Parses the whole argument vector (including the program name). A
/// subcommand may follow any global option (`xcauth -c FILE domain list`,
/// `xcauth --db PATH -d domain list`); `-A`, `-I` and `-R` with a
/// subcommand are a usage error.
pub fn parse<I, T>(args: I) -> Result<Invocation, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let mut cmd = command();
    let matches = cmd.try_get_matches_from_mut(args)?;
    let options = CommandLine::from_matches(&matches)
        .map_err(|e| cmd.error(clap::error::ErrorKind::WrongNumberOfValues, e.to_string()))?;
    if matches.subcommand().is_none() {
        return Ok(Invocation::Service(options));
    }
    if options.has_one_shot() {
        return Err(cmd.error(
            clap::error::ErrorKind::ArgumentConflict,
            "-A, -I and -R cannot be combined with a command",
        ));
    }
    let command = Command::from_arg_matches(&matches)?;
    if let Command::Check(check) = command {
        // The check runs with the service's command line, so that it reads
        // the configuration as the service does.
        return Ok(Invocation::Service(options.into_check(
            crate::config::CheckRequest {
                quick: check.quick,
                user: check.user,
                password_stdin: check.password_stdin,
            },
        )));
    }
    Ok(Invocation::Admin(AdminCli { options, command }))
}

/// An administration command line. No `Debug`: it is parsed and turned
/// into an [`Action`] at once.
pub struct AdminCli {
    /// The global options (`-c`, `--db`, `--ejabberdctl`, and the server's
    /// settings such as `--cache-storage` or the guard's limits).
    pub(super) options: CommandLine,
    pub(super) command: Command,
}

#[derive(Subcommand)]
// Parsed once per run; boxing the domain arguments would buy nothing.
#[allow(clippy::large_enum_variant)]
pub(super) enum Command {
    /// Per-domain back ends (URL, secret, auth domain), the `domains` table
    #[command(subcommand)]
    Domain(DomainCommand),
    /// A user's cached state
    #[command(subcommand)]
    User(UserCommand),
    /// Shared roster groups
    #[command(subcommand)]
    Group(GroupCommand),
    /// Everything cached about a virtual host
    #[command(subcommand)]
    Host(HostCommand),
    /// Shared roster state
    #[command(subcommand)]
    Roster(RosterCommand),
    /// The password cache
    #[command(subcommand)]
    Cache(CacheCommand),
    /// The failure guard: JIDs and addresses with failed logins, and their
    /// blocks
    #[command(subcommand)]
    Guard(GuardCommand),
    /// Test the service's configuration as the service reads it: settings
    /// (secrets masked), database, log directory, ejabberdctl, each
    /// Nextcloud; exit 0 when no test fails, 1 otherwise (also spelled
    /// --configtest)
    Check(CheckArgs),
    /// Metric totals of every xcauth process sharing the database
    Stats {
        /// Output format
        #[arg(long, value_name = "FORMAT", default_value = "table", value_parser = ["table", "prometheus"])]
        format: String,
    },
}

/// `xcauth check`'s own options.
#[derive(Args)]
pub(super) struct CheckArgs {
    /// Only the fast tests, terse (a monitoring probe; makes no login)
    #[arg(long, conflicts_with = "user")]
    quick: bool,
    /// Also isuser and roster for this user
    #[arg(long, value_name = "USER@DOMAIN")]
    user: Option<String>,
    /// With --user: read its password from standard input for an auth test
    #[arg(long, requires = "user")]
    password_stdin: bool,
}

/// A domain's back-end settings, as `domain add` takes them. `domain
/// change` takes the same arguments, all optional, and words their help
/// for a change; `domain add` makes the URL and a secret required.
#[derive(Args)]
pub(super) struct DomainArgs {
    /// The XMPP domain
    #[arg(value_name = "XMPPDOMAIN", value_parser = NonEmptyStringValueParser::new())]
    domain: String,
    /// JSXC external API URL of its Nextcloud
    #[arg(long, value_name = "URL", value_parser = parse_url)]
    url: Option<String>,
    /// Read the API secret from this file
    #[arg(long, value_name = "FILE")]
    secret_file: Option<PathBuf>,
    /// Read the API secret from standard input
    #[arg(long, conflicts_with = "secret_file")]
    secret_stdin: bool,
    /// Domain sent to Nextcloud [default: the XMPP domain]
    #[arg(long, value_name = "DOMAIN", value_parser = NonEmptyStringValueParser::new())]
    auth_domain: Option<String>,
    /// Registration contact (free text, e.g. the admin's JID)
    #[arg(long, value_name = "JID")]
    contact: Option<String>,
    /// Kind of back end [default: jsxc for a URL ending in
    /// /apps/ojsxc/ajax/externalApi.php, else nextcloud]
    #[arg(long, value_name = "KIND", value_parser = parse_backend)]
    backend: Option<String>,
    /// Nextcloud account for existence and group questions (an admin, or a
    /// subadmin of the shared groups)
    #[arg(long, value_name = "NAME", value_parser = NonEmptyStringValueParser::new())]
    api_user: Option<String>,
    /// Read the API account's password (ideally an app password) from this
    /// file
    #[arg(long, value_name = "FILE")]
    api_password_file: Option<PathBuf>,
    /// Read the API account's password from standard input
    #[arg(long, conflicts_with_all = ["api_password_file", "secret_stdin"])]
    api_password_stdin: bool,
    /// Login name sent to Nextcloud: the bare user, or user@domain
    #[arg(long, value_name = "FORM", value_parser = parse_login_form)]
    login_form: Option<String>,
}

/// `--backend`: `jsxc` or `nextcloud`.
fn parse_backend(text: &str) -> Result<String, String> {
    BackendKind::parse(text).map(|kind| kind.name().to_owned())
}

/// `--login-form`: `user` or `user@domain`.
fn parse_login_form(text: &str) -> Result<String, String> {
    LoginForm::parse(text).map(|form| form.name().to_owned())
}

#[derive(Subcommand)]
pub(super) enum DomainCommand {
    /// Give an XMPP domain its own back end
    #[command(
        mut_arg("url", |a| a.required(true)),
        mut_arg("secret_file", |a| a.required_unless_present_any(["secret_stdin", "backend"]))
    )]
    Add(DomainArgs),
    /// Change some settings of a domain
    #[command(
        mut_arg("url", |a| a.help("New JSXC external API URL")),
        mut_arg("secret_file", |a| a.help("Read the new API secret from this file")),
        mut_arg("secret_stdin", |a| a.help("Read the new API secret from standard input")),
        mut_arg("auth_domain", |a| a.help("New domain sent to Nextcloud")),
        mut_arg("contact", |a| a.help("New registration contact ('' clears it)")),
        mut_arg("backend", |a| a.help("New kind of back end: jsxc or nextcloud")),
        mut_arg("api_user", |a| a.help("New Nextcloud account for existence and group questions")),
        mut_arg("api_password_file", |a| a.help("Read the API account's new password from this file")),
        mut_arg("api_password_stdin", |a| a.help("Read the API account's new password from standard input")),
        mut_arg("login_form", |a| a.help("New login name form: user or user@domain"))
    )]
    Change(DomainArgs),
    /// List the domains with their own back end (secrets hidden)
    List {
        /// Show the secrets instead of ***
        #[arg(long)]
        show_secrets: bool,
    },
    /// Remove a domain's row (its users fall back to the global back end)
    Remove {
        /// The XMPP domain
        #[arg(value_name = "XMPPDOMAIN", value_parser = NonEmptyStringValueParser::new())]
        domain: String,
    },
}

#[derive(Subcommand)]
pub(super) enum UserCommand {
    /// Forget a user: cache entry, roster state, group memberships (and
    /// srg_user_del in ejabberd when ejabberdctl is configured)
    Delete {
        /// USER@DOMAIN
        #[arg(value_name = "JID", value_parser = parse_jid)]
        jid: String,
    },
}

#[derive(Subcommand)]
pub(super) enum GroupCommand {
    /// Forget a shared roster group (and srg_delete it in ejabberd when
    /// ejabberdctl is configured)
    Delete {
        /// GROUP@DOMAIN
        #[arg(value_name = "GROUP@DOMAIN", value_parser = parse_jid)]
        group: String,
    },
}

#[derive(Subcommand)]
pub(super) enum HostCommand {
    /// Forget a virtual host: cache entries, roster state and groups of its
    /// users, and its domains row
    Delete {
        /// The domain
        #[arg(value_name = "DOMAIN", value_parser = parse_domain)]
        domain: String,
    },
}

#[derive(Subcommand)]
pub(super) enum RosterCommand {
    /// Rebuild the shared roster at the next login of JID (of everybody
    /// without JID)
    Refresh {
        /// USER@DOMAIN [default: all users]
        #[arg(value_name = "JID", value_parser = NonEmptyStringValueParser::new())]
        jid: Option<String>,
    },
}

#[derive(Subcommand)]
pub(super) enum CacheCommand {
    /// List the cached logins (never the hashes)
    List,
    /// Delete the cache entry of JID (all entries without JID)
    Flush {
        /// USER@DOMAIN [default: all entries]
        #[arg(value_name = "JID", value_parser = NonEmptyStringValueParser::new())]
        jid: Option<String>,
    },
}

#[derive(Subcommand)]
pub(super) enum GuardCommand {
    /// List the JIDs and addresses with failed logins: failures in the
    /// current window, and whether they are refused now (never the digests)
    List,
    /// Forget the failures of JID or ADDRESS, lifting its block (of all
    /// without an argument)
    Clear {
        /// USER@DOMAIN or an IP address [default: all]
        #[arg(value_name = "JID|ADDRESS", value_parser = NonEmptyStringValueParser::new())]
        key: Option<String>,
    },
}

/// `NAME@DOMAIN` with both halves non-empty.
fn parse_jid(text: &str) -> Result<String, String> {
    match text.split_once('@') {
        Some((name, domain)) if !name.is_empty() && !domain.is_empty() => Ok(text.to_owned()),
        _ => Err("expected NAME@DOMAIN".into()),
    }
}

/// A domain: non-empty, without `@` (a JID here is a mistake).
fn parse_domain(text: &str) -> Result<String, String> {
    if text.is_empty() {
        Err("the domain is empty".into())
    } else if text.contains('@') {
        Err("expected a domain, not a JID".into())
    } else {
        Ok(text.to_owned())
    }
}

/// One administration command, with its inputs read (secrets included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Action {
    DomainAdd {
        domain: String,
        url: String,
        secret: Secret,
        auth_domain: Option<String>,
        contact: Option<String>,
        /// Settings for our `domainbackend` table; all `None`: no row.
        backend: DomainBackend,
    },
    DomainChange {
        domain: String,
        update: DomainUpdate,
        /// Settings for our `domainbackend` table; `None` keeps a field.
        backend: DomainBackend,
    },
    DomainList {
        show_secrets: bool,
    },
    DomainRemove {
        domain: String,
    },
    UserDelete {
        jid: String,
    },
    /// `key` is `GROUP@DOMAIN`, the `rostergroups` key.
    GroupDelete {
        key: String,
    },
    HostDelete {
        domain: String,
    },
    RosterRefresh {
        jid: Option<String>,
    },
    CacheList,
    CacheFlush {
        jid: Option<String>,
    },
    GuardList,
    /// `key` is a JID or an address as the guard stores it.
    GuardClear {
        key: Option<String>,
    },
    /// `prometheus`: the text format instead of a table.
    Stats {
        prometheus: bool,
    },
}

impl Action {
    /// Only `domain add` may create a new database file: the other commands
    /// on a mistyped path would otherwise leave an empty database behind.
    pub(super) fn may_create_database(&self) -> bool {
        matches!(self, Action::DomainAdd { .. })
    }

    /// Commands that call ejabberdctl when it is configured.
    pub(super) fn uses_ejabberdctl(&self) -> bool {
        matches!(self, Action::UserDelete { .. } | Action::GroupDelete { .. })
    }

    /// The guard's commands, which need the server's database.
    pub(super) fn is_guard(&self) -> bool {
        matches!(self, Action::GuardList | Action::GuardClear { .. })
    }
}

/// Where a secret comes from.
enum SecretSource {
    File(PathBuf),
    Stdin,
}

impl SecretSource {
    fn from_args(file: Option<PathBuf>, stdin: bool) -> Option<SecretSource> {
        match (file, stdin) {
            (Some(path), _) => Some(SecretSource::File(path)),
            (None, true) => Some(SecretSource::Stdin),
            (None, false) => None,
        }
    }

    /// Reads it; `what` names it in the prompt on a terminal.
    fn read(self, what: &str) -> Result<Secret, AdminError> {
        match self {
            SecretSource::File(path) => {
                let bytes = std::fs::read(&path)
                    .map_err(|e| AdminError::Invalid(format!("{}: {e}", path.display())))?;
                secret_from_bytes(bytes, &path.display().to_string())
            }
            SecretSource::Stdin => {
                let stdin = io::stdin();
                if stdin.is_terminal() {
                    eprint!("{what} (shown as typed; end with Enter): ");
                    let _ = io::stderr().flush();
                    let mut line = String::new();
                    stdin
                        .lock()
                        .read_line(&mut line)
                        .map_err(|e| AdminError::Invalid(format!("standard input: {e}")))?;
                    secret_from_bytes(line.into_bytes(), "standard input")
                } else {
                    read_secret(stdin.lock(), "standard input")
                }
            }
        }
    }
}

/// Reads a whole secret from `input` (a pipe or file).
fn read_secret(mut input: impl Read, origin: &str) -> Result<Secret, AdminError> {
    let mut bytes = Vec::new();
    input
        .read_to_end(&mut bytes)
        .map_err(|e| AdminError::Invalid(format!("{origin}: {e}")))?;
    secret_from_bytes(bytes, origin)
}

/// The secret in `bytes`: UTF-8, trailing line ends removed (as for
/// `secret-file=`), not empty. The error never quotes the content.
fn secret_from_bytes(bytes: Vec<u8>, origin: &str) -> Result<Secret, AdminError> {
    let text = String::from_utf8(bytes)
        .map_err(|_| AdminError::Invalid(format!("{origin}: the secret is not valid UTF-8")))?;
    let secret = text.trim_end_matches(['\r', '\n']);
    if secret.is_empty() {
        return Err(AdminError::Invalid(format!(
            "{origin}: the secret is empty"
        )));
    }
    Ok(Secret::new(secret))
}

/// Turns the parsed command line into an [`Action`], reading secrets.
pub(super) fn action(command: Command) -> Result<Action, AdminError> {
    Ok(match command {
        // [`parse`] hands the check to the service's start-up.
        Command::Check(_) => {
            return Err(AdminError::Invalid(
                "check is not a database command".into(),
            ))
        }
        Command::Domain(DomainCommand::Add(args)) => domain_add(args)?,
        Command::Domain(DomainCommand::Change(args)) => domain_change(args)?,
        Command::Domain(DomainCommand::List { show_secrets }) => {
            Action::DomainList { show_secrets }
        }
        Command::Domain(DomainCommand::Remove { domain }) => Action::DomainRemove {
            domain: canonical_arg(&domain)?,
        },
        Command::User(UserCommand::Delete { jid }) => Action::UserDelete { jid },
        Command::Group(GroupCommand::Delete { group }) => Action::GroupDelete { key: group },
        Command::Host(HostCommand::Delete { domain }) => Action::HostDelete { domain },
        Command::Roster(RosterCommand::Refresh { jid }) => Action::RosterRefresh { jid },
        Command::Cache(CacheCommand::List) => Action::CacheList,
        Command::Cache(CacheCommand::Flush { jid }) => Action::CacheFlush { jid },
        Command::Guard(GuardCommand::List) => Action::GuardList,
        Command::Guard(GuardCommand::Clear { key }) => Action::GuardClear {
            key: key.map(|k| guard_key(&k)),
        },
        Command::Stats { format } => Action::Stats {
            prometheus: format == "prometheus",
        },
    })
}

/// The key the guard stores for `text`: an address in its canonical form
/// (`2001:DB8::1` and `[2001:db8::1]:5222` are `2001:db8::1`), a JID as the
/// account it counts for (`Erin@Example.org` is `erin@example.org`).
fn guard_key(text: &str) -> String {
    match client_ip(text) {
        Some(ip) if !text.contains('@') => ip.to_string(),
        _ => match text.rsplit_once('@') {
            Some((user, domain)) => crate::guard::account(user, domain),
            None => text.to_owned(),
        },
    }
}

/// The domain of a `domain` command in the canonical form the service
/// looks rows up by; one that is not a host name is refused.
fn canonical_arg(domain: &str) -> Result<String, AdminError> {
    if domain.contains('@') {
        return Err(AdminError::Invalid(format!(
            "`{}` is not a domain (it contains @)",
            Escaped(domain)
        )));
    }
    canonical_domain(domain).map_err(|why| {
        AdminError::Invalid(format!(
            "`{}` is not a valid domain: {why}",
            Escaped(domain)
        ))
    })
}

/// `domain add`: a domain (not a JID), its URL and its secret.
fn domain_add(args: DomainArgs) -> Result<Action, AdminError> {
    let domain = canonical_arg(&args.domain)?;
    // clap already insists on the URL; this keeps the code from relying on it.
    let url = args
        .url
        .ok_or_else(|| AdminError::Invalid("give the URL with --url".into()))?;
    let backend = domain_backend(
        args.backend,
        args.api_user,
        args.api_password_file,
        args.api_password_stdin,
        args.login_form,
    )?;
    // The JSXC API signs every request with the secret; stock Nextcloud
    // needs none (it then only checks tokens, with the global secret).
    let kind = match backend.kind.as_deref() {
        Some(name) => BackendKind::parse(name).map_err(AdminError::Invalid)?,
        None => BackendKind::for_url(&url),
    };
    let secret = match SecretSource::from_args(args.secret_file, args.secret_stdin) {
        Some(source) => source.read("API secret")?,
        None if kind == BackendKind::Nextcloud => Secret::new(""),
        None => {
            return Err(AdminError::Invalid(
                "the jsxc back end needs the secret: give --secret-file or --secret-stdin".into(),
            ))
        }
    };
    Ok(Action::DomainAdd {
        domain,
        url,
        secret,
        auth_domain: args.auth_domain,
        contact: args.contact.filter(|c| !c.is_empty()),
        backend,
    })
}

/// The settings of our `domainbackend` table from the command line, the
/// API password read.
fn domain_backend(
    kind: Option<String>,
    api_user: Option<String>,
    password_file: Option<PathBuf>,
    password_stdin: bool,
    login_form: Option<String>,
) -> Result<DomainBackend, AdminError> {
    let apipassword = SecretSource::from_args(password_file, password_stdin)
        .map(|source| source.read("API password"))
        .transpose()?
        .map(|s| s.expose().to_owned());
    Ok(DomainBackend {
        kind,
        apiuser: api_user,
        apipassword,
        loginform: login_form,
    })
}

/// `domain change`: at least one setting to change.
fn domain_change(args: DomainArgs) -> Result<Action, AdminError> {
    let domain = canonical_arg(&args.domain)?;
    let update = DomainUpdate {
        secret: SecretSource::from_args(args.secret_file, args.secret_stdin)
            .map(|source| source.read("API secret"))
            .transpose()?
            .map(|s| s.expose().to_owned()),
        url: args.url,
        authdomain: args.auth_domain,
        regcontact: args.contact.map(|c| Some(c).filter(|c| !c.is_empty())),
    };
    let backend = domain_backend(
        args.backend,
        args.api_user,
        args.api_password_file,
        args.api_password_stdin,
        args.login_form,
    )?;
    if update == DomainUpdate::default() && backend.is_empty() {
        return Err(AdminError::Invalid(
            "nothing to change: give --url, --secret-file, --secret-stdin, \
             --auth-domain, --contact, --backend, --api-user, --api-password-file, \
             --api-password-stdin or --login-form"
                .into(),
        ));
    }
    Ok(Action::DomainChange {
        domain,
        update,
        backend,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_keys_are_canonical_addresses_or_as_given() {
        assert_eq!(guard_key("2001:DB8::1"), "2001:db8::1");
        assert_eq!(guard_key("[2001:db8::1]:5222"), "2001:db8::1");
        assert_eq!(guard_key("192.0.2.1;4000"), "192.0.2.1");
        assert_eq!(guard_key("zoë@example.org"), "zoë@example.org");
        assert_eq!(guard_key("not an address"), "not an address");
    }

    #[test]
    fn the_whole_command_is_consistent() {
        command().debug_assert();
    }

    /// Global options before the subcommand (`xcauth --db X -d domain
    /// list`), the original spelling after it, and the server's settings
    /// given before it reach the administration commands.
    #[test]
    fn subcommands_follow_global_options() {
        let admin = |args: &[&str]| match parse([&["xcauth"], args].concat()) {
            Ok(Invocation::Admin(cli)) => cli,
            Ok(Invocation::Service(_)) => panic!("{args:?}: taken for the server"),
            Err(e) => panic!("{args:?}: {e}"),
        };
        let settings = |cli: &AdminCli| {
            crate::config::admin_settings_from(&cli.options, &|_| None).expect("settings")
        };
        for args in [
            &["--db", "/x.db", "-d", "domain", "list"][..],
            &["domain", "list", "--db", "/x.db"],
            &["-d", "domain", "--db", "/x.db", "list"],
            &["-t", "ejabberd", "--db=/x.db", "domain", "list"],
        ] {
            let cli = admin(args);
            assert!(
                matches!(cli.command, Command::Domain(DomainCommand::List { .. })),
                "{args:?}"
            );
            assert_eq!(settings(&cli).db, PathBuf::from("/x.db"), "{args:?}");
        }
        let cli = admin(&[
            "--ejabberdctl",
            "/bin/ctl",
            "--cache-storage",
            "db",
            "--guard-jid-failures",
            "3",
            "guard",
            "list",
        ]);
        let s = settings(&cli);
        assert_eq!(s.ejabberdctl, Some(PathBuf::from("/bin/ctl")));
        assert_eq!(s.cache_storage, crate::config::CacheStorage::Db);
        assert_eq!(s.guard.jid_failures, 3);
        // The server's command line is still the server's.
        assert!(matches!(
            parse(["xcauth", "-t", "generic", "-d"]),
            Ok(Invocation::Service(_))
        ));
        assert!(matches!(
            parse(["xcauth", "-I", "alice", "example.org"]),
            Ok(Invocation::Service(o)) if o.has_one_shot()
        ));
        // A one-shot query and a command at once is a usage error.
        let e = parse(["xcauth", "-I", "alice", "example.org", "cache", "list"])
            .err()
            .expect("usage error");
        assert_eq!(e.exit_code(), 2);
        // Unknown words are not commands.
        assert!(parse(["xcauth", "-d", "nosuch"]).is_err());
    }

    /// `xcauth help` and `xcauth --help` are the same text, with the
    /// commands and the options; `xcauth help COMMAND` is the command's.
    #[test]
    fn help_lists_commands_and_options() {
        let help = |args: &[&str]| {
            let e = parse([&["xcauth"], args].concat())
                .err()
                .expect("help is an early exit");
            assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp, "{args:?}");
            assert_eq!(e.exit_code(), 0);
            e.render().to_string()
        };
        let text = help(&["help"]);
        assert_eq!(text, help(&["--help"]));
        for word in [
            "domain",
            "user",
            "group",
            "host",
            "roster",
            "cache",
            "guard",
            "--auth-test",
            "--type",
            "--db",
            "--cache-storage",
            "Exit status",
        ] {
            assert!(text.contains(word), "{word} missing from help");
        }
        let domain = help(&["help", "domain"]);
        assert!(domain.contains("Usage: xcauth domain"), "{domain}");
        assert!(domain.contains("--db"), "{domain}");
        let add = help(&["help", "domain", "add"]);
        assert!(
            add.contains("--api-password-file") && add.contains("XMPPDOMAIN"),
            "{add}"
        );
        assert_eq!(add, help(&["domain", "add", "--help"]));
    }

    #[test]
    fn secrets_from_input() {
        let s = read_secret(&b"s3cret\r\n"[..], "stdin").unwrap();
        assert_eq!(s.expose(), "s3cret");
        let s = read_secret(&b"with space\n\n"[..], "stdin").unwrap();
        assert_eq!(s.expose(), "with space");
        let empty = read_secret(&b"\n"[..], "stdin").unwrap_err().to_string();
        assert!(empty.contains("empty"), "{empty}");
        let bad = read_secret(&b"\xff\xfe-hunter2"[..], "stdin")
            .unwrap_err()
            .to_string();
        assert!(bad.contains("UTF-8") && !bad.contains("hunter2"), "{bad}");
    }

    #[test]
    fn command_line_shapes() {
        let parse = |args: &[&str]| {
            let mut all = vec!["xcauth"];
            all.extend_from_slice(args);
            match super::parse(all) {
                Ok(Invocation::Admin(cli)) => Ok(cli),
                Ok(Invocation::Service(_)) => Err("no subcommand"),
                Err(_) => Err("usage error"),
            }
        };
        assert!(parse(&["domain", "list", "--db", "x", "-c", "y"]).is_ok());
        assert!(parse(&["domain", "add", "d", "--url", "https://a/"]).is_err());
        assert!(parse(&["domain", "add", "d", "--url", "ftp://a/", "--secret-stdin"]).is_err());
        assert!(parse(&[
            "domain",
            "add",
            "d",
            "--url",
            "https://a/",
            "--secret-stdin",
            "--secret-file",
            "f"
        ])
        .is_err());
        assert!(parse(&["domain", "add", "d", "--url", "https://a/", "--secret", "x"]).is_err());
        assert!(parse(&["user", "delete", "no-at-sign"]).is_err());
        assert!(parse(&["user", "delete", "@example.org"]).is_err());
        assert!(parse(&["group", "delete", "staff@"]).is_err());
        assert!(parse(&["host", "delete", "a@example.org"]).is_err());
        assert!(parse(&["host", "delete", ""]).is_err());
        assert!(parse(&["cache", "flush"]).is_ok());
        assert!(parse(&["guard", "list"]).is_ok());
        assert!(parse(&["guard", "clear"]).is_ok());
        assert!(parse(&["guard", "clear", ""]).is_err());
        assert!(parse(&["guard", "list", "x"]).is_err());
        assert!(parse(&["roster", "refresh", "zoë@example.org"]).is_ok());
        let changed = parse(&["domain", "change", "d"]).map(|cli| action(cli.command));
        assert!(matches!(changed, Ok(Err(AdminError::Invalid(_)))));
    }

    /// `domain add|change|remove` work on the canonical form of their
    /// domain, and refuse one that is not a host name before reading any
    /// secret.
    #[test]
    fn domain_commands_take_the_canonical_domain() {
        let action_of = |args: &[&str]| {
            let cli = parse([&["xcauth", "domain"], args].concat()).expect("parsed");
            match cli {
                Invocation::Admin(cli) => action(cli.command),
                Invocation::Service(_) => panic!("{args:?}: taken for the server"),
            }
        };
        assert_eq!(
            action_of(&["remove", "EXAMPLE.Org."]).expect("action"),
            Action::DomainRemove {
                domain: "example.org".into()
            }
        );
        match action_of(&["change", "Example.ORG", "--url", "https://a.example/"]) {
            Ok(Action::DomainChange { domain, .. }) => assert_eq!(domain, "example.org"),
            other => panic!("{other:?}"),
        }
        for bad in [
            "example.org\u{200B}",
            "exa mple.org",
            "under_score.example",
            "example.org..",
            "\u{202E}gro.elpmaxe",
            "192.0.2.1",
        ] {
            for args in [
                &["remove", bad][..],
                &["change", bad, "--url", "https://a.example/"],
                // No secret given: the domain is refused before any is read.
                &["add", bad, "--url", "https://a.example/", "--secret-stdin"],
            ] {
                match action_of(args) {
                    Err(AdminError::Invalid(text)) => {
                        assert!(text.contains("not a valid domain"), "{text}");
                        assert!(!text.contains('\u{200B}') && !text.contains('\u{202E}'));
                    }
                    other => panic!("{args:?}: {other:?}"),
                }
            }
        }
    }
}
