//! Helpers for the configuration tests: a fake environment, a temporary
//! config file and `load` with both.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::PathBuf;

use super::{load_with_default_file, Config, ConfigError};

pub(super) const URL: &str = "https://cloud.example.org/index.php/apps/ojsxc/ajax/externalApi.php";

/// An environment made of `pairs`.
pub(super) fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |key| map.get(key).cloned()
}

/// A temporary directory holding `xcauth.conf` with `text`.
pub(super) fn conf(text: &str) -> (tempfile::TempDir, PathBuf) {
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
pub(super) fn load_test(
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
pub(super) const BASE: [&str; 6] = ["-t", "generic", "-u", URL, "-s", "x"];

/// `args` plus url, type and an env secret.
pub(super) fn ok(args: &[&str]) -> Config {
    let mut all = vec!["-t", "generic", "-u", URL];
    all.extend_from_slice(args);
    load_test(&all, &[("XCAUTH_SECRET", "s3cr3t")], None).unwrap()
}

pub(super) fn file_error(text: &str) -> (usize, String) {
    match load_test(&[], &[], Some(text)) {
        Err(ConfigError::File { line, message, .. }) => (line, message),
        other => panic!("expected a file error, got {other:?}"),
    }
}

pub(super) fn invalid(result: Result<Config, ConfigError>) -> String {
    match result {
        Err(ConfigError::Invalid(message)) => message,
        other => panic!("expected Invalid, got {other:?}"),
    }
}
