//! Command line, environment and the original's `key=value` config file,
//! resolved into one [`Config`] (command line > environment > file >
//! defaults).
//!
//! - `options.rs`: the option table, one row per setting (start here to
//!   add an option); `table.rs` holds the macro that expands it;
//! - `values.rs`: the value types (spans, rounds, timeouts, counts, modes,
//!   listen specs) with their parsers and bounds;
//! - `cli.rs`: the clap command; `file.rs`: the strict file reader;
//! - `resolved.rs`: [`Config`], [`load`] and [`admin_settings`].

use std::io;
use std::path::PathBuf;

#[macro_use]
mod table;
mod cli;
mod file;
mod options;
mod resolved;
#[cfg(test)]
mod testutil;
mod values;

pub use cli::{command, CommandLine};
pub use resolved::{
    admin_settings, admin_settings_from, load, load_from, load_with_default_file, AdminSettings,
    CheckRequest, Config, Mode, SocketOptions,
};
pub(crate) use resolved::{masked_url, plain_http_warning};
pub(crate) use values::parse_url;
pub use values::{CacheStorage, ListenAddress, ListenSpec, RequestSet};

/// Parses config file text the way [`load`] reads the file, without
/// touching the file system: the warnings (repeated keys), or the error
/// naming the first bad line. For the fuzz targets; not a stable API.
#[doc(hidden)]
pub fn parse_config_text(text: &[u8]) -> Result<Vec<String>, ConfigError> {
    file::parse_config_file(std::path::Path::new("xcauth.conf"), text).map(|parsed| parsed.warnings)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_text_is_read_like_the_file() {
        let warnings = parse_config_text(b"type=generic\n# note\ntype=ejabberd\n").unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("already set on line 1"),
            "{warnings:?}"
        );
        match parse_config_text(b"type=generic\n\nno-such-option=1\n") {
            Err(ConfigError::File {
                line: 3, message, ..
            }) => {
                assert!(message.contains("unknown option"), "{message}")
            }
            other => panic!("{other:?}"),
        }
    }
}
