//! xcauth answers "is this password right?" and "does this user exist?" for
//! XMPP servers (ejabberd, Prosody) and mail servers (saslauthd clients,
//! Postfix) from JSXC tokens, a bcrypt-protected cache and the Nextcloud
//! JSXC external API.
//!
//! A request travels one way through the modules:
//!
//! ```text
//! listen (where connections come from) → serve (per-stream loop)
//!   → proto::* (codec: bytes → Request)
//!   → verify (decision: token → cache → back end; domains picks the back end)
//!   → backend (signed HTTP) / cache + store (SQLite)
//!   → roster (ejabberd shared roster, after a login)
//!   → proto::* (codec: Reply → bytes) → serve
//! ```
//!
//! [`config`] turns the command line, the environment and the original's
//! `key=value` file into one resolved [`config::Config`]; [`run`] starts
//! what it asks for; [`admin`] holds the administrator's subcommands;
//! [`logging`] owns the log files.
#![forbid(unsafe_code)]
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
pub mod proto;
pub mod roster;
pub mod run;
pub mod secret;
pub mod serve;
pub mod store;
pub mod token;
pub mod verify;
