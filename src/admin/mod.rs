//! The administration subcommands (`xcauth domain|user|group|host|roster|cache|guard ...`) that replace the original's shell tools.
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
//!
//! Layout: `cli` parses the command line into an `Action` (reading the
//! secret); this file resolves the configuration, opens the database and
//! hands each action to its function in `domain` (the `domains` table) or
//! `users` (users, groups, hosts, roster state, the password cache) or
//! `guard` (the failure guard's state);
//! `report` collects what is printed; `ctl` runs ejabberdctl.

mod cli;
mod ctl;
mod domain;
mod guard;
mod report;
mod users;

use std::ffi::{OsStr, OsString};
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;

use crate::clock::{Clock, SystemClock};
use crate::config::{self, CacheStorage, ConfigError};
use crate::guard::GuardSettings;
use crate::roster::CommandCtl;
use crate::store::{Store, StoreError};
use cli::{Action, AdminCli};
use ctl::Ctl;
use report::Report;

/// First arguments that select the administration commands instead of the
/// server (`xcauth domain list` versus `xcauth -t generic`).
pub const SUBCOMMANDS: [&str; 8] = [
    "cache", "domain", "group", "guard", "help", "host", "roster", "user",
];

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

/// The administration subcommands' clap command, for generated
/// documentation; parsing goes through [`main`].
pub fn command() -> clap::Command {
    <AdminCli as clap::CommandFactory>::command()
}

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

/// Resolves the configuration, reads the inputs, opens the database and
/// performs the command.
fn prepare_and_perform(cli: AdminCli) -> Result<Report, AdminError> {
    let settings =
        config::admin_settings(cli.config_file.as_deref(), &|key| std::env::var(key).ok())?;
    let db = cli.db.unwrap_or(settings.db);
    let ejabberdctl = cli.ejabberdctl.or(settings.ejabberdctl);
    let action = cli::action(cli.command)?;

    let in_memory = db.as_os_str() == ":memory:";
    let created = !in_memory && !db.exists();
    if created && action.is_guard() {
        return Err(AdminError::Invalid(format!(
            "{}: no such database; without one the server keeps the guard's state in the \
             memory of each process, which cannot be listed or cleared from here \
             (restarting the server clears it)",
            db.display()
        )));
    }
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
        guard: settings.guard,
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

/// What a command works on.
struct Context<'a> {
    store: &'a Store,
    ctl: Option<&'a Ctl>,
    /// Seconds since the epoch, for `regfirst`/`reglatest`.
    now: i64,
    /// The server's cache mode, to say when the cache table is unused.
    cache_storage: CacheStorage,
    /// The guard's limits as the server reads them.
    guard: GuardSettings,
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
            backend,
        } => domain::add(
            cx,
            r,
            &domain,
            &url,
            &secret,
            auth_domain,
            contact.as_deref(),
            &backend,
        )?,
        Action::DomainChange {
            domain,
            update,
            backend,
        } => domain::change(cx, r, &domain, update, &backend)?,
        Action::DomainList { show_secrets } => domain::list(cx, r, show_secrets)?,
        Action::DomainRemove { domain } => domain::remove(cx, r, &domain)?,
        Action::UserDelete { jid } => users::delete_user(cx, r, &jid)?,
        Action::GroupDelete { key } => users::delete_group(cx, r, &key)?,
        Action::HostDelete { domain } => users::delete_host(cx, r, &domain)?,
        Action::RosterRefresh { jid } => users::refresh_roster(cx, r, jid.as_deref())?,
        Action::CacheList => users::list_cache(cx, r)?,
        Action::CacheFlush { jid } => users::flush_cache(cx, r, jid.as_deref())?,
        Action::GuardList => guard::list(cx, r)?,
        Action::GuardClear { key } => guard::clear(cx, r, key.as_deref())?,
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    //! The fake ejabberdctl and the fixture the actions' tests share.

    use super::*;
    use crate::roster::{CtlError, Ejabberdctl};
    use async_trait::async_trait;
    use std::path::Path;
    use std::sync::Mutex;

    /// Records every call; fails the commands named in `fail`.
    #[derive(Default)]
    pub(super) struct Recorder {
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

    pub(super) fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    pub(super) struct Fixture {
        pub(super) store: Store,
        recorder: Arc<Recorder>,
        ctl: Ctl,
    }

    impl Fixture {
        pub(super) fn new(fail: Vec<&'static str>) -> Fixture {
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

        pub(super) fn run(&self, action: Action, with_ctl: bool) -> Report {
            let cx = Context {
                store: &self.store,
                ctl: with_ctl.then_some(&self.ctl),
                now: 1_000_000_000,
                cache_storage: CacheStorage::Db,
                guard: GuardSettings::default(),
            };
            perform(action, &cx).unwrap()
        }

        pub(super) fn calls(&self) -> Vec<Vec<String>> {
            self.recorder.calls.lock().unwrap().clone()
        }
    }

    pub(super) const ODD: [&str; 7] = [
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
}
