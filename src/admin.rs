//! The administration subcommands (`xcauth domain|user|group|host|roster|cache ...`) that replace the original's shell tools.
//!
//! The original's `xcdeluser`, `xcdelgroup`, `xcdelhost` and
//! `xcrefreshroster` pasted their argument into SQL text for the `sqlite3`
//! shell and into an unquoted shell line for ejabberdctl, so a name with a
//! quote, a space or a `%` broke them or hit other rows. Here every name
//! reaches SQLite as a bound parameter (through [`Store`]) and ejabberdctl
//! as one element of an argument vector: quotes, spaces, `%`, `_`, `;` and
//! non-ASCII are just characters of a name.
//!
//! Secrets are never taken as plain arguments (they would show in the
//! process list) and never printed unless asked for.
//!
//! Exit status: [`EXIT_DONE`], [`EXIT_MISSING`], [`EXIT_ERROR`],
//! [`EXIT_PARTIAL`].

use std::ffi::{OsStr, OsString};
use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::builder::NonEmptyStringValueParser;
use clap::{Parser, Subcommand};

use crate::clock::{Clock, SystemClock};
use crate::config::{self, parse_url, plain_http_warning, CacheStorage, ConfigError};
use crate::roster::{CommandCtl, Ejabberdctl};
use crate::secret::Secret;
use crate::store::{format_timestamp, DomainUpdate, Store, StoreError};

/// First arguments that select the administration commands instead of the
/// server (`xcauth domain list` versus `xcauth -t generic`).
pub const SUBCOMMANDS: [&str; 7] = ["cache", "domain", "group", "help", "host", "roster", "user"];

/// Exit status: done.
pub const EXIT_DONE: u8 = 0;
/// Exit status: the named thing was not in the state the command needs
/// (nothing to delete, change or refresh; a domain to add already there).
pub const EXIT_MISSING: u8 = 1;
/// Exit status: usage, configuration or database error; nothing changed.
pub const EXIT_ERROR: u8 = 2;
/// Exit status: the database was changed, but an ejabberdctl call failed;
/// the failed command is printed so that it can be run by hand.
pub const EXIT_PARTIAL: u8 = 3;

/// Shown in `domain list` in place of a secret.
const HIDDEN: &str = "***";
/// Shown for an empty (NULL) column.
const ABSENT: &str = "-";

/// True if `arg` (the first argument after the program name) names an
/// administration command.
pub fn is_subcommand(arg: &OsStr) -> bool {
    arg.to_str().is_some_and(|a| SUBCOMMANDS.contains(&a))
}

/// Runs an administration command given the whole argument vector
/// (including the program name) and returns the exit status.
pub fn main(args: Vec<OsString>) -> ExitCode {
    let cli = match AdminCli::try_parse_from(args) {
        Ok(cli) => cli,
        // Prints help (exit 0) or the usage error (exit 2).
        Err(e) => e.exit(),
    };
    let report = match prepare_and_perform(cli) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("xcauth: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    // A closed pipe (`xcauth cache list | head`) is not worth a complaint.
    let mut stdout = io::stdout().lock();
    for line in &report.out {
        let _ = writeln!(stdout, "{line}");
    }
    let _ = stdout.flush();
    let mut stderr = io::stderr().lock();
    for line in &report.err {
        let _ = writeln!(stderr, "xcauth: {line}");
    }
    ExitCode::from(report.status)
}

// ----- command line ---------------------------------------------------------

const AFTER_HELP: &str = "\
--db, -c and --ejabberdctl are accepted after any command. Without --db, the \
database is the one the server uses: db= in the config file (/etc/xcauth.conf, \
or -c FILE, or XCAUTH_CONFIG_FILE), XCAUTH_DB, else \
/var/lib/xcauth/xcauth.sqlite3.

Exit status: 0 done; 1 the named thing did not exist (or, for `domain add`, \
already existed); 2 usage, configuration or database error; 3 the database \
was changed but an ejabberdctl call failed (it is printed to be run by hand).";

/// The administration command line. No `Debug`: it is parsed and turned
/// into an [`Action`] at once.
#[derive(Parser)]
#[command(
    name = "xcauth",
    about = "Administers xcauth's database: per-domain back ends, cached users, \
             shared roster groups, virtual hosts, roster state and the password cache.",
    after_help = AFTER_HELP,
    subcommand_required = true,
    arg_required_else_help = true
)]
struct AdminCli {
    /// Config file [default: /etc/xcauth.conf, if present]
    #[arg(short = 'c', long, value_name = "FILE", global = true)]
    config_file: Option<PathBuf>,
    /// SQLite database [default: as the server: db= in the config file,
    /// else /var/lib/xcauth/xcauth.sqlite3]
    #[arg(long, value_name = "PATH", global = true)]
    db: Option<PathBuf>,
    /// ejabberdctl for `user delete` and `group delete` to mirror the
    /// change in ejabberd [default: ejabberdctl= in the config file]
    #[arg(long, value_name = "PATH", global = true)]
    ejabberdctl: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
}

#[derive(Subcommand)]
enum DomainCommand {
    /// Give an XMPP domain its own back end
    Add {
        /// The XMPP domain
        #[arg(value_name = "XMPPDOMAIN", value_parser = NonEmptyStringValueParser::new())]
        domain: String,
        /// JSXC external API URL of its Nextcloud
        #[arg(long, value_name = "URL", value_parser = parse_url)]
        url: String,
        /// Read the API secret from this file
        #[arg(long, value_name = "FILE", required_unless_present = "secret_stdin")]
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
    },
    /// Change some settings of a domain
    Change {
        /// The XMPP domain
        #[arg(value_name = "XMPPDOMAIN", value_parser = NonEmptyStringValueParser::new())]
        domain: String,
        /// New JSXC external API URL
        #[arg(long, value_name = "URL", value_parser = parse_url)]
        url: Option<String>,
        /// Read the new API secret from this file
        #[arg(long, value_name = "FILE")]
        secret_file: Option<PathBuf>,
        /// Read the new API secret from standard input
        #[arg(long, conflicts_with = "secret_file")]
        secret_stdin: bool,
        /// New domain sent to Nextcloud
        #[arg(long, value_name = "DOMAIN", value_parser = NonEmptyStringValueParser::new())]
        auth_domain: Option<String>,
        /// New registration contact ('' clears it)
        #[arg(long, value_name = "JID")]
        contact: Option<String>,
    },
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
enum UserCommand {
    /// Forget a user: cache entry, roster state, group memberships (and
    /// srg_user_del in ejabberd when ejabberdctl is configured)
    Delete {
        /// USER@DOMAIN
        #[arg(value_name = "JID", value_parser = parse_jid)]
        jid: String,
    },
}

#[derive(Subcommand)]
enum GroupCommand {
    /// Forget a shared roster group (and srg_delete it in ejabberd when
    /// ejabberdctl is configured)
    Delete {
        /// GROUP@DOMAIN
        #[arg(value_name = "GROUP@DOMAIN", value_parser = parse_jid)]
        group: String,
    },
}

#[derive(Subcommand)]
enum HostCommand {
    /// Forget a virtual host: cache entries, roster state and groups of its
    /// users, and its domains row
    Delete {
        /// The domain
        #[arg(value_name = "DOMAIN", value_parser = parse_domain)]
        domain: String,
    },
}

#[derive(Subcommand)]
enum RosterCommand {
    /// Rebuild the shared roster at the next login of JID (of everybody
    /// without JID)
    Refresh {
        /// USER@DOMAIN [default: all users]
        #[arg(value_name = "JID", value_parser = NonEmptyStringValueParser::new())]
        jid: Option<String>,
    },
}

#[derive(Subcommand)]
enum CacheCommand {
    /// List the cached logins (never the hashes)
    List,
    /// Delete the cache entry of JID (all entries without JID)
    Flush {
        /// USER@DOMAIN [default: all entries]
        #[arg(value_name = "JID", value_parser = NonEmptyStringValueParser::new())]
        jid: Option<String>,
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

// ----- what to do -----------------------------------------------------------

/// One administration command, with its inputs read (secrets included).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    DomainAdd {
        domain: String,
        url: String,
        secret: Secret,
        auth_domain: Option<String>,
        contact: Option<String>,
    },
    DomainChange {
        domain: String,
        update: DomainUpdate,
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
}

impl Action {
    /// Only `domain add` may create a new database file: the other commands
    /// on a mistyped path would otherwise leave an empty database behind.
    fn may_create_database(&self) -> bool {
        matches!(self, Action::DomainAdd { .. })
    }

    /// Commands that call ejabberdctl when it is configured.
    fn uses_ejabberdctl(&self) -> bool {
        matches!(self, Action::UserDelete { .. } | Action::GroupDelete { .. })
    }
}

/// Why a command could not run. All of them exit with [`EXIT_ERROR`].
#[derive(Debug, thiserror::Error)]
enum AdminError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{}: {source}", path.display())]
    Store {
        path: PathBuf,
        #[source]
        source: StoreError,
    },
    #[error("{0}")]
    Invalid(String),
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

    fn read(self) -> Result<Secret, AdminError> {
        match self {
            SecretSource::File(path) => {
                let bytes = std::fs::read(&path)
                    .map_err(|e| AdminError::Invalid(format!("{}: {e}", path.display())))?;
                secret_from_bytes(bytes, &path.display().to_string())
            }
            SecretSource::Stdin => {
                let stdin = io::stdin();
                if stdin.is_terminal() {
                    eprint!("API secret (shown as typed; end with Enter): ");
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
fn action(command: Command) -> Result<Action, AdminError> {
    let read = |file, stdin| SecretSource::from_args(file, stdin).map(SecretSource::read);
    Ok(match command {
        Command::Domain(DomainCommand::Add {
            domain,
            url,
            secret_file,
            secret_stdin,
            auth_domain,
            contact,
        }) => {
            if domain.contains('@') {
                return Err(AdminError::Invalid(format!(
                    "`{}` is not a domain (it contains @)",
                    shown(&domain)
                )));
            }
            let secret = read(secret_file, secret_stdin).ok_or_else(|| {
                AdminError::Invalid("give the secret with --secret-file or --secret-stdin".into())
            })??;
            Action::DomainAdd {
                domain,
                url,
                secret,
                auth_domain,
                contact: contact.filter(|c| !c.is_empty()),
            }
        }
        Command::Domain(DomainCommand::Change {
            domain,
            url,
            secret_file,
            secret_stdin,
            auth_domain,
            contact,
        }) => {
            let update = DomainUpdate {
                secret: read(secret_file, secret_stdin)
                    .transpose()?
                    .map(|s| s.expose().to_owned()),
                url,
                authdomain: auth_domain,
                regcontact: contact.map(|c| Some(c).filter(|c| !c.is_empty())),
            };
            if update == DomainUpdate::default() {
                return Err(AdminError::Invalid(
                    "nothing to change: give --url, --secret-file, --secret-stdin, \
                     --auth-domain or --contact"
                        .into(),
                ));
            }
            Action::DomainChange { domain, update }
        }
        Command::Domain(DomainCommand::List { show_secrets }) => {
            Action::DomainList { show_secrets }
        }
        Command::Domain(DomainCommand::Remove { domain }) => Action::DomainRemove { domain },
        Command::User(UserCommand::Delete { jid }) => Action::UserDelete { jid },
        Command::Group(GroupCommand::Delete { group }) => Action::GroupDelete { key: group },
        Command::Host(HostCommand::Delete { domain }) => Action::HostDelete { domain },
        Command::Roster(RosterCommand::Refresh { jid }) => Action::RosterRefresh { jid },
        Command::Cache(CacheCommand::List) => Action::CacheList,
        Command::Cache(CacheCommand::Flush { jid }) => Action::CacheFlush { jid },
    })
}

/// Resolves the configuration, reads the inputs, opens the database and
/// performs the command.
fn prepare_and_perform(cli: AdminCli) -> Result<Report, AdminError> {
    let settings =
        config::admin_settings(cli.config_file.as_deref(), &|key| std::env::var(key).ok())?;
    let db = cli.db.unwrap_or(settings.db);
    let ejabberdctl = cli.ejabberdctl.or(settings.ejabberdctl);
    let action = action(cli.command)?;

    let in_memory = db.as_os_str() == ":memory:";
    let created = !in_memory && !db.exists();
    if created && !action.may_create_database() {
        return Err(AdminError::Invalid(format!(
            "{}: no such database (set db= in the config file, or use --db PATH)",
            db.display()
        )));
    }
    let store = Store::open(&db).map_err(|source| AdminError::Store {
        path: db.clone(),
        source,
    })?;
    let ctl = match ejabberdctl {
        Some(path) if action.uses_ejabberdctl() => Some(
            Ctl::new(Arc::new(CommandCtl::new(path)))
                .map_err(|e| AdminError::Invalid(format!("cannot run ejabberdctl: {e}")))?,
        ),
        _ => None,
    };
    let context = Context {
        store: &store,
        ctl: ctl.as_ref(),
        now: SystemClock.now(),
        cache_storage: settings.cache_storage,
    };
    let mut report = perform(action, &context).map_err(|source| AdminError::Store {
        path: db.clone(),
        source,
    })?;
    if created {
        report.note(format!(
            "created the new database {}; make sure the user xcauth runs as can write it \
             and its directory",
            db.display()
        ));
    }
    Ok(report)
}

// ----- doing it -------------------------------------------------------------

/// What a command printed and how it ends.
#[derive(Debug, Default, PartialEq, Eq)]
struct Report {
    /// Lines for standard output.
    out: Vec<String>,
    /// Lines for standard error (prefixed with `xcauth: ` there).
    err: Vec<String>,
    /// Exit status.
    status: u8,
}

impl Report {
    fn line(&mut self, text: impl Into<String>) {
        self.out.push(text.into());
    }

    fn note(&mut self, text: impl Into<String>) {
        self.err.push(text.into());
    }

    /// Notes that the named thing was missing and sets [`EXIT_MISSING`].
    fn missing(&mut self, text: impl Into<String>) {
        self.note(text);
        self.status = EXIT_MISSING;
    }
}

/// ejabberdctl, run to completion from this synchronous code.
struct Ctl {
    ctl: Arc<dyn Ejabberdctl>,
    runtime: tokio::runtime::Runtime,
}

impl Ctl {
    fn new(ctl: Arc<dyn Ejabberdctl>) -> io::Result<Ctl> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Ctl { ctl, runtime })
    }

    /// Runs `ejabberdctl ARGS`, reports it, and says whether it worked. A
    /// failure is reported with the command to run by hand.
    fn call(&self, report: &mut Report, args: &[&str]) -> bool {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let words = shell_words(&args);
        match self.runtime.block_on(self.ctl.run(&args)) {
            Ok(_) => {
                report.line(format!("ejabberdctl {words}: done"));
                true
            }
            Err(e) => {
                report.note(format!(
                    "ejabberdctl {words} failed: {e}; run it by hand once ejabberd is up"
                ));
                false
            }
        }
    }
}

/// What a command works on.
struct Context<'a> {
    store: &'a Store,
    ctl: Option<&'a Ctl>,
    /// Seconds since the epoch, for `regfirst`/`reglatest`.
    now: i64,
    /// The server's cache mode, to say when the cache table is unused.
    cache_storage: CacheStorage,
}

/// Performs `action`. Store errors stop it (and change nothing: each store
/// call is one transaction); everything else ends up in the [`Report`].
fn perform(action: Action, cx: &Context<'_>) -> Result<Report, StoreError> {
    let mut report = Report::default();
    let r = &mut report;
    match action {
        Action::DomainAdd {
            domain,
            url,
            secret,
            auth_domain,
            contact,
        } => {
            if cx.store.domain(&domain)?.is_some() {
                r.missing(format!(
                    "domain {} already exists; use `xcauth domain change`",
                    shown(&domain)
                ));
                return Ok(report);
            }
            let auth_domain = auth_domain.unwrap_or_else(|| domain.clone());
            cx.store.put_domain(
                &domain,
                secret.expose(),
                &url,
                &auth_domain,
                contact.as_deref(),
                cx.now,
            )?;
            r.line(format!(
                "added domain {} (auth domain {}, URL {})",
                shown(&domain),
                shown(&auth_domain),
                shown(&url)
            ));
            if let Some(warning) = plain_http_warning(&url) {
                r.note(format!("warning: {}", shown(&warning)));
            }
        }
        Action::DomainChange { domain, update } => {
            let url = update.url.clone();
            if !cx.store.update_domain(&domain, update, cx.now)? {
                r.missing(format!(
                    "no domain {}; use `xcauth domain add`",
                    shown(&domain)
                ));
                return Ok(report);
            }
            r.line(format!("changed domain {}", shown(&domain)));
            if let Some(warning) = url.as_deref().and_then(plain_http_warning) {
                r.note(warning);
            }
        }
        Action::DomainList { show_secrets } => {
            let rows = cx.store.domains()?;
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|d| {
                    let secret = match &d.authsecret {
                        Some(s) if show_secrets => shown(s),
                        Some(_) => HIDDEN.to_owned(),
                        None => ABSENT.to_owned(),
                    };
                    vec![
                        shown(&d.xmppdomain),
                        optional(d.authdomain.as_deref()),
                        optional(d.authurl.as_deref()),
                        secret,
                        optional(d.regcontact.as_deref()),
                        d.reglatest
                            .map_or_else(|| ABSENT.to_owned(), format_timestamp),
                    ]
                })
                .collect();
            let header = [
                "DOMAIN",
                "AUTH DOMAIN",
                "URL",
                "SECRET",
                "CONTACT",
                "CHANGED (UTC)",
            ];
            r.out.extend(table(&header, &cells));
            r.line(counted(rows.len(), "domain", "domains"));
        }
        Action::DomainRemove { domain } => {
            if cx.store.delete_domain(&domain)? {
                r.line(format!(
                    "removed domain {}; its users now use the global back end",
                    shown(&domain)
                ));
            } else {
                r.missing(format!("no domain {}", shown(&domain)));
            }
        }
        Action::UserDelete { jid } => {
            let gone = cx.store.delete_user(&jid)?;
            if gone.authcache == 0 && gone.rosterinfo == 0 && gone.groups.is_empty() {
                r.missing(format!("nothing stored for {}", shown(&jid)));
                return Ok(report);
            }
            r.line(format!(
                "deleted {}: {}, {}, removed from {}",
                shown(&jid),
                counted(gone.authcache, "cache entry", "cache entries"),
                counted(gone.rosterinfo, "roster state row", "roster state rows"),
                listed(&gone.groups, "group", "groups"),
            ));
            if let Some(ctl) = cx.ctl {
                let (local, user_domain) = split_at_sign(&jid);
                let mut ok = true;
                for key in &gone.groups {
                    let (group, group_domain) = split_at_sign(key);
                    let args = ["srg_user_del", local, user_domain, group, group_domain];
                    ok &= ctl.call(r, &args);
                }
                if !ok {
                    r.status = EXIT_PARTIAL;
                }
            }
        }
        Action::GroupDelete { key } => {
            let known = cx.store.delete_roster_group(&key)?;
            if known {
                r.line(format!("deleted group {}", shown(&key)));
            } else {
                r.missing(format!("no stored group {}", shown(&key)));
            }
            // Also when the database did not know it: ejabberd may still
            // have it (the original called srg_delete either way).
            if let Some(ctl) = cx.ctl {
                let (group, domain) = split_at_sign(&key);
                if !ctl.call(r, &["srg_delete", group, domain]) && known {
                    r.status = EXIT_PARTIAL;
                }
            }
        }
        Action::HostDelete { domain } => {
            let gone = cx.store.delete_host(&domain)?;
            if gone.authcache == 0 && gone.rosterinfo == 0 && gone.groups.is_empty() && !gone.domain
            {
                r.missing(format!("nothing stored for host {}", shown(&domain)));
                return Ok(report);
            }
            r.line(format!(
                "deleted host {}: {}, {}, {}, {}",
                shown(&domain),
                counted(gone.authcache, "cache entry", "cache entries"),
                counted(gone.rosterinfo, "roster state row", "roster state rows"),
                listed(&gone.groups, "group", "groups"),
                if gone.domain {
                    "its domain row"
                } else {
                    "no domain row"
                },
            ));
            if !gone.groups.is_empty() {
                r.note(
                    "ejabberd keeps its own shared roster groups; remove them there \
                     (`xcauth group delete GROUP@DOMAIN --ejabberdctl PATH` runs srg_delete)",
                );
            }
        }
        Action::RosterRefresh { jid: Some(jid) } => match cx.store.roster_info(&jid)? {
            None => r.missing(format!("no roster state for {}", shown(&jid))),
            Some(_) => {
                let cleared = cx.store.clear_roster_hashes(Some(&jid))?;
                if cleared == 0 {
                    r.line(format!(
                        "{}: the roster is already rebuilt at the next login",
                        shown(&jid)
                    ));
                } else {
                    r.line(format!(
                        "{}: the roster is rebuilt at the next login",
                        shown(&jid)
                    ));
                }
            }
        },
        Action::RosterRefresh { jid: None } => {
            let cleared = cx.store.clear_roster_hashes(None)?;
            r.line(format!(
                "cleared {}; each roster is rebuilt at its user's next login",
                counted(cleared, "roster hash", "roster hashes")
            ));
        }
        Action::CacheList => {
            note_cache_storage(r, cx.cache_storage);
            let entries = cx.store.cache_list()?;
            let cells: Vec<Vec<String>> = entries
                .iter()
                .map(|e| {
                    vec![
                        shown(&e.jid),
                        format_timestamp(e.firstauth),
                        format_timestamp(e.remoteauth),
                        format_timestamp(e.anyauth),
                    ]
                })
                .collect();
            let header = [
                "JID",
                "FIRST LOGIN (UTC)",
                "LAST BACK-END CHECK (UTC)",
                "LAST LOGIN (UTC)",
            ];
            r.out.extend(table(&header, &cells));
            r.line(counted(entries.len(), "cache entry", "cache entries"));
        }
        Action::CacheFlush { jid: Some(jid) } => {
            note_cache_storage(r, cx.cache_storage);
            if cx.store.cache_delete(&jid)? {
                r.line(format!("flushed 1 cache entry ({})", shown(&jid)));
            } else {
                r.line("flushed 0 cache entries");
                r.missing(format!("no cache entry for {}", shown(&jid)));
            }
        }
        Action::CacheFlush { jid: None } => {
            note_cache_storage(r, cx.cache_storage);
            let flushed = cx.store.cache_flush()?;
            r.line(format!(
                "flushed {}",
                counted(flushed, "cache entry", "cache entries")
            ));
        }
    }
    Ok(report)
}

/// Says so when the server does not use the database cache.
fn note_cache_storage(r: &mut Report, storage: CacheStorage) {
    let name = match storage {
        CacheStorage::Db => return,
        CacheStorage::None => "none",
        CacheStorage::Memory => "memory",
    };
    r.note(format!(
        "note: the configuration says cache-storage={name}, so the server does not use \
         these rows"
    ));
}

// ----- text -----------------------------------------------------------------

/// Splits `name@domain` at the first `@`, as the roster sync does.
fn split_at_sign(key: &str) -> (&str, &str) {
    key.split_once('@').unwrap_or((key, ""))
}

/// `text` with control characters escaped, so that a stored name cannot
/// break the table or fake a line of output.
fn shown(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// A nullable column for display.
fn optional(value: Option<&str>) -> String {
    match value {
        Some(v) if !v.is_empty() => shown(v),
        _ => ABSENT.to_owned(),
    }
}

/// `1 thing`, `2 things`.
fn counted(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `0 groups`, `1 group (a@d)`, `2 groups (a@d, b@d)`.
fn listed(items: &[String], one: &str, many: &str) -> String {
    let count = counted(items.len(), one, many);
    if items.is_empty() {
        return count;
    }
    let names: Vec<String> = items.iter().map(|i| shown(i)).collect();
    format!("{count} ({})", names.join(", "))
}

/// Left-aligned columns two spaces apart; the last column is not padded.
/// Widths count characters.
fn table(header: &[&str], rows: &[Vec<String>]) -> Vec<String> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.zip(&widths).enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            text.push_str(cell);
            let pad = width.saturating_sub(cell.chars().count());
            text.extend(std::iter::repeat_n(' ', pad));
        }
        text.trim_end().to_owned()
    };
    let mut lines = vec![line(&mut header.iter().copied())];
    for row in rows {
        lines.push(line(&mut row.iter().map(String::as_str)));
    }
    lines
}

/// The arguments as one would type them in a shell, for messages only
/// (nothing here is ever run through a shell).
fn shell_words(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            let plain = !a.is_empty()
                && a.chars()
                    .all(|c| c.is_alphanumeric() || "@%_+-.,:/=".contains(c));
            if plain {
                a.clone()
            } else {
                format!("'{}'", shown(a).replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roster::CtlError;
    use async_trait::async_trait;
    use std::path::Path;
    use std::sync::Mutex;

    /// Records every call; fails the commands named in `fail`.
    #[derive(Default)]
    struct Recorder {
        calls: Mutex<Vec<Vec<String>>>,
        fail: Vec<&'static str>,
    }

    #[async_trait]
    impl Ejabberdctl for Recorder {
        async fn run(&self, args: &[String]) -> Result<String, CtlError> {
            self.calls
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(args.to_vec());
            if args
                .first()
                .is_some_and(|a| self.fail.contains(&a.as_str()))
            {
                return Err(CtlError::Failed {
                    status: Some(1),
                    output: "refused".into(),
                });
            }
            Ok(String::new())
        }
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    struct Fixture {
        store: Store,
        recorder: Arc<Recorder>,
        ctl: Ctl,
    }

    impl Fixture {
        fn new(fail: Vec<&'static str>) -> Fixture {
            let recorder = Arc::new(Recorder {
                fail,
                ..Recorder::default()
            });
            let ctl = Ctl::new(recorder.clone()).unwrap();
            Fixture {
                store: Store::open(Path::new(":memory:")).unwrap(),
                recorder,
                ctl,
            }
        }

        fn run(&self, action: Action, with_ctl: bool) -> Report {
            let cx = Context {
                store: &self.store,
                ctl: with_ctl.then_some(&self.ctl),
                now: 1_000_000_000,
                cache_storage: CacheStorage::Db,
            };
            perform(action, &cx).unwrap()
        }

        fn calls(&self) -> Vec<Vec<String>> {
            self.recorder.calls.lock().unwrap().clone()
        }
    }

    const ODD: [&str; 7] = [
        "o'neil",
        "quo\"te",
        "spa ce",
        "per%cent",
        "under_score",
        "semi;colon",
        "zoë",
    ];

    #[test]
    fn subcommand_names_are_recognised() {
        for name in SUBCOMMANDS {
            assert!(is_subcommand(OsStr::new(name)), "{name}");
        }
        for arg in ["-t", "--type", "generic", "", "Domain", "-A"] {
            assert!(!is_subcommand(OsStr::new(arg)), "{arg}");
        }
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
            AdminCli::try_parse_from(all)
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
        assert!(parse(&["roster", "refresh", "zoë@example.org"]).is_ok());
        let changed = parse(&["domain", "change", "d"]).map(|cli| action(cli.command));
        assert!(matches!(changed, Ok(Err(AdminError::Invalid(_)))));
    }

    #[test]
    fn domain_lifecycle_with_odd_names() {
        for odd in ODD {
            let f = Fixture::new(Vec::new());
            let domain = format!("{odd}.example");
            let add = Action::DomainAdd {
                domain: domain.clone(),
                url: "https://cloud.example/api".into(),
                secret: Secret::new("hunter2-secret"),
                auth_domain: None,
                contact: Some("admin@x".into()),
            };
            let r = f.run(add.clone(), false);
            assert_eq!(r.status, EXIT_DONE, "{r:?}");
            let row = f.store.domain(&domain).unwrap().unwrap();
            assert_eq!(row.authdomain.as_deref(), Some(domain.as_str()));
            assert_eq!(row.authsecret.as_deref(), Some("hunter2-secret"));
            assert_eq!(row.regfirst, Some(1_000_000_000));
            assert_eq!(f.run(add, false).status, EXIT_MISSING);

            let list = f.run(
                Action::DomainList {
                    show_secrets: false,
                },
                false,
            );
            let text = list.out.join("\n");
            assert!(text.contains(&domain) && text.contains(HIDDEN), "{text}");
            assert!(!text.contains("hunter2"), "{text}");
            assert_eq!(list.out.last().map(String::as_str), Some("1 domain"));
            let list = f.run(Action::DomainList { show_secrets: true }, false);
            assert!(list.out.join("\n").contains("hunter2-secret"));

            let change = Action::DomainChange {
                domain: domain.clone(),
                update: DomainUpdate {
                    regcontact: Some(None),
                    authdomain: Some(format!("auth-{odd}")),
                    ..DomainUpdate::default()
                },
            };
            assert_eq!(f.run(change, false).status, EXIT_DONE);
            let row = f.store.domain(&domain).unwrap().unwrap();
            assert_eq!(row.regcontact, None);
            assert_eq!(row.authdomain, Some(format!("auth-{odd}")));
            assert_eq!(row.authsecret.as_deref(), Some("hunter2-secret"));

            let remove = Action::DomainRemove {
                domain: domain.clone(),
            };
            assert_eq!(f.run(remove.clone(), false).status, EXIT_DONE);
            let again = f.run(remove, false);
            assert_eq!(again.status, EXIT_MISSING);
            assert!(again.err[0].contains(&domain), "{again:?}");
            let change = Action::DomainChange {
                domain,
                update: DomainUpdate {
                    url: Some("https://b/".into()),
                    ..DomainUpdate::default()
                },
            };
            assert_eq!(f.run(change, false).status, EXIT_MISSING);
        }
    }

    #[test]
    fn user_delete_mirrors_group_membership_into_ejabberd() {
        for odd in ODD {
            let f = Fixture::new(Vec::new());
            let jid = format!("{odd}@dom {odd}");
            let other = format!("other@dom {odd}");
            let group = format!("g {odd}@dom {odd}");
            f.store.cache_store(&jid, "h", 1).unwrap();
            f.store.cache_store(&other, "h", 1).unwrap();
            f.store.set_roster_hash(&jid, "r", 1).unwrap();
            f.store
                .set_roster_group(&group, &[jid.clone(), other.clone()])
                .unwrap();

            let r = f.run(Action::UserDelete { jid: jid.clone() }, true);
            assert_eq!(r.status, EXIT_DONE, "{r:?}");
            assert_eq!(
                f.calls(),
                vec![strings(&[
                    "srg_user_del",
                    odd,
                    &format!("dom {odd}"),
                    &format!("g {odd}"),
                    &format!("dom {odd}")
                ])]
            );
            assert_eq!(f.store.cache_get(&jid).unwrap(), None);
            assert!(f.store.cache_get(&other).unwrap().is_some());
            assert_eq!(f.store.roster_info(&jid).unwrap(), None);
            assert_eq!(f.store.roster_group(&group).unwrap(), Some(vec![other]));

            let again = f.run(Action::UserDelete { jid }, true);
            assert_eq!(again.status, EXIT_MISSING);
            assert_eq!(f.calls().len(), 1, "no ejabberdctl call for nothing");
        }
    }

    #[test]
    fn failed_ejabberdctl_is_partial_and_says_what_to_run() {
        let f = Fixture::new(vec!["srg_user_del", "srg_delete"]);
        f.store
            .set_roster_group("it's@example.org", &strings(&["a b@example.org"]))
            .unwrap();
        let r = f.run(
            Action::UserDelete {
                jid: "a b@example.org".into(),
            },
            true,
        );
        assert_eq!(r.status, EXIT_PARTIAL);
        assert!(
            r.err[0].contains(r"srg_user_del 'a b' example.org 'it'\''s' example.org failed"),
            "{r:?}"
        );
        // The database side is done anyway.
        assert_eq!(
            f.store.roster_group("it's@example.org").unwrap(),
            Some(Vec::new())
        );

        let r = f.run(
            Action::GroupDelete {
                key: "it's@example.org".into(),
            },
            true,
        );
        assert_eq!(r.status, EXIT_PARTIAL);
        let r = f.run(
            Action::GroupDelete {
                key: "it's@example.org".into(),
            },
            true,
        );
        assert_eq!(r.status, EXIT_MISSING, "missing wins over partial");
    }

    #[test]
    fn group_delete_runs_srg_delete_even_when_unknown() {
        let f = Fixture::new(Vec::new());
        f.store
            .set_roster_group("staff_%;ë@example.org", &strings(&["a@example.org"]))
            .unwrap();
        let r = f.run(
            Action::GroupDelete {
                key: "staff_%;ë@example.org".into(),
            },
            true,
        );
        assert_eq!(r.status, EXIT_DONE, "{r:?}");
        assert_eq!(f.store.roster_group("staff_%;ë@example.org").unwrap(), None);
        let r = f.run(
            Action::GroupDelete {
                key: "gone@example.org".into(),
            },
            true,
        );
        assert_eq!(r.status, EXIT_MISSING);
        assert_eq!(
            f.calls(),
            vec![
                strings(&["srg_delete", "staff_%;ë", "example.org"]),
                strings(&["srg_delete", "gone", "example.org"]),
            ]
        );
        // Without ejabberdctl, nothing is run.
        f.store.set_roster_group("x@example.org", &[]).unwrap();
        let r = f.run(
            Action::GroupDelete {
                key: "x@example.org".into(),
            },
            false,
        );
        assert_eq!(r.status, EXIT_DONE);
        assert_eq!(f.calls().len(), 2);
    }

    #[test]
    fn host_roster_and_cache() {
        let f = Fixture::new(Vec::new());
        for jid in ["a@ex_am%ple.org", "b@ex_am%ple.org", "a@exXamYple.org"] {
            f.store.cache_store(jid, "$2b$04$secret-hash", 1).unwrap();
            f.store.set_roster_hash(jid, "r", 1).unwrap();
        }
        let list = f.run(Action::CacheList, false);
        assert_eq!(list.out.len(), 5, "{list:?}");
        // Sorted by JID: `X` sorts before `_`.
        assert_eq!(
            list.out[2],
            "a@ex_am%ple.org  1970-01-01 00:00:01  1970-01-01 00:00:01        1970-01-01 00:00:01"
        );
        assert_eq!(list.out[4], "3 cache entries");
        assert!(!list.out.join("\n").contains("secret-hash"));

        let r = f.run(
            Action::RosterRefresh {
                jid: Some("a@ex_am%ple.org".into()),
            },
            false,
        );
        assert_eq!(r.status, EXIT_DONE);
        assert_eq!(
            f.store
                .roster_info("a@ex_am%ple.org")
                .unwrap()
                .unwrap()
                .responsehash,
            None
        );
        let r = f.run(
            Action::RosterRefresh {
                jid: Some("nobody@x".into()),
            },
            false,
        );
        assert_eq!(r.status, EXIT_MISSING);
        let r = f.run(Action::RosterRefresh { jid: None }, false);
        assert_eq!(
            r.out,
            strings(&["cleared 2 roster hashes; each roster is rebuilt at its user's next login"])
        );

        let r = f.run(
            Action::HostDelete {
                domain: "ex_am%ple.org".into(),
            },
            false,
        );
        assert_eq!(r.status, EXIT_DONE, "{r:?}");
        assert_eq!(f.store.cache_count().unwrap(), 1);
        assert!(f.store.cache_get("a@exXamYple.org").unwrap().is_some());
        let r = f.run(
            Action::HostDelete {
                domain: "ex_am%ple.org".into(),
            },
            false,
        );
        assert_eq!(r.status, EXIT_MISSING);

        let r = f.run(
            Action::CacheFlush {
                jid: Some("zz@x".into()),
            },
            false,
        );
        assert_eq!(
            (r.status, r.out.clone()),
            (EXIT_MISSING, strings(&["flushed 0 cache entries"]))
        );
        let r = f.run(Action::CacheFlush { jid: None }, false);
        assert_eq!(r.out, strings(&["flushed 1 cache entry"]));
        assert_eq!(f.store.cache_count().unwrap(), 0);
    }

    #[test]
    fn cache_commands_say_when_the_server_does_not_use_the_table() {
        let store = Store::open(Path::new(":memory:")).unwrap();
        for (storage, noted) in [
            (CacheStorage::None, true),
            (CacheStorage::Memory, true),
            (CacheStorage::Db, false),
        ] {
            let cx = Context {
                store: &store,
                ctl: None,
                now: 0,
                cache_storage: storage,
            };
            let r = perform(Action::CacheList, &cx).unwrap();
            assert_eq!(!r.err.is_empty(), noted, "{storage:?}");
        }
    }

    #[test]
    fn text_helpers() {
        assert_eq!(
            table(&["A", "BB"], &[strings(&["xyz", "1"]), strings(&["ë", ""])]),
            strings(&["A    BB", "xyz  1", "ë"])
        );
        assert_eq!(shown("a\nb\tc"), "a\\nb\\tc");
        assert_eq!(
            shell_words(&strings(&["srg_delete", "it's", "", "zoë@x.org"])),
            r"srg_delete 'it'\''s' '' zoë@x.org"
        );
        assert_eq!(listed(&[], "group", "groups"), "0 groups");
        assert_eq!(
            listed(&strings(&["a@d", "b@d"]), "group", "groups"),
            "2 groups (a@d, b@d)"
        );
        assert_eq!(split_at_sign("g@d@e"), ("g", "d@e"));
        assert!(plain_http_warning("http://cloud.example/").is_some());
        assert!(plain_http_warning("http://127.0.0.1:8080/").is_none());
        assert!(plain_http_warning("https://cloud.example/").is_none());
    }
}
