//! xcauth answers "is this password right?" and "does this user exist?" for
//! XMPP servers (ejabberd, Prosody) and mail servers (saslauthd clients,
//! Postfix) from JSXC tokens, a bcrypt-protected cache and Nextcloud: its
//! stock OCS and provisioning APIs, or the JSXC app's external API.
//!
//! A request travels one way through the modules:
//!
//! ```text
//! run (start-up: sockets collected first) → listen (where connections come
//!   from) → serve (per-stream loop)
//!   → proto::* (codec: bytes → Request)
//!   → verify (decision: token → cache → guard → back end; domains picks
//!     the back end of the XMPP domain)
//!   → backend::{jsxc, nextcloud} over backend::http / cache + store (SQLite)
//!   → roster (ejabberd shared roster, after a login)
//!   → proto::* (codec: Reply → bytes) → serve
//! ```
//!
//! [`backend`] holds the kind-neutral boundary (the [`backend::Backend`]
//! trait, answers, errors, the normalised roster) and one file per kind;
//! [`config`] turns the command line, the environment and the original's
//! `key=value` file into one resolved [`config::Config`] (every option is a
//! row of one table); [`run`] starts what it asks for; [`admin`] holds the
//! administrator's subcommands; [`logging`] owns the log files; [`metrics`]
//! counts what happens (`--metrics`, `xcauth stats`).
// deny, not forbid: one audited call (malloc_trim in serve/trim.rs) is
// allowed where it stands.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod backend;
pub mod cache;
pub mod clock;
pub mod config;
pub mod domains;
pub mod guard;
pub mod listen;
pub mod logging;
pub mod metrics;
pub mod proto;
pub mod roster;
pub mod run;
pub mod secret;
pub mod serve;
pub mod store;
pub mod sync;
pub mod token;
pub mod verify;

/// The whole `xcauth` command line as one clap command, for generated
/// documentation (the man pages, `xcauth-mangen` in tools/): the server's
/// options and the administration subcommands with theirs, less the
/// `help` subcommands. The program parses with the same command
/// ([`admin::parse`]).
pub fn command() -> clap::Command {
    fn without_help(command: clap::Command) -> clap::Command {
        command
            .disable_help_subcommand(true)
            .mut_subcommands(without_help)
    }
    let mut command = without_help(admin::command());
    // Built, so that the global options (-c, --db, --ejabberdctl) reach
    // every subcommand's page.
    command.build();
    command
}
