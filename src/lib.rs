//! xcauth answers "is this password right?" and "does this user exist?" for
//! XMPP servers (ejabberd, Prosody) and mail servers (saslauthd clients,
//! Postfix) from JSXC tokens and the Nextcloud JSXC external API.
//!
//! A request travels one way through the modules:
//!
//! ```text
//! serve (transport) → proto::* (codec: bytes → Request)
//!   → verify (decision: token → back end) → backend (signed HTTP)
//!   → proto::* (codec: Reply → bytes) → serve
//! ```
//!
//! [`config`] turns the command line, the environment and the original's
//! `key=value` file into one resolved [`config::Config`]; [`logging`] owns the
//! log files; [`token`] checks JSXC time-limited tokens.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod backend;
pub mod cache;
pub mod clock;
pub mod config;
pub mod domains;
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
