//! The original's `key=value` config file, read strictly: an unknown key or
//! a bad value is an error naming the file and the line.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::Path;

use super::cli::CLI_ONLY;
use super::options::{setting, Layer};
use super::ConfigError;

/// A config file, parsed.
#[derive(Debug)]
pub(super) struct FileLayer {
    /// What the file sets.
    pub layer: Layer,
    /// Repeated keys and a readable file holding the secret.
    pub warnings: Vec<String>,
}

/// Reads and parses the config file. `Ok(None)` when the default file does
/// not exist; a file named explicitly must exist.
pub(super) fn read_config_file(
    path: &Path,
    explicit: bool,
) -> Result<Option<FileLayer>, ConfigError> {
    let text = match fs::read(path) {
        Ok(text) => text,
        Err(e) if !explicit && e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(ConfigError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let mut parsed = parse_config_file(path, &text)?;
    if parsed.layer.secret.is_some() {
        if let Some(warning) = exposure_warning(path, "holds the API secret") {
            parsed.warnings.push(warning);
        }
    }
    Ok(Some(parsed))
}

/// Parses the original's ConfigArgParse format: `key=value`, `key: value`
/// or `key value`; `#`/`;` comment lines and trailing ` # comment`s; blank
/// lines, `[section]` and `---` lines ignored; a bare key switches a flag
/// on. Keys are long option names (an optional leading `--`, `_` for `-`).
pub(super) fn parse_config_file(path: &Path, text: &[u8]) -> Result<FileLayer, ConfigError> {
    let mut layer = Layer::default();
    let mut warnings = Vec::new();
    let mut first_seen: HashMap<&'static str, usize> = HashMap::new();
    for (index, raw) in text.split(|&b| b == b'\n').enumerate() {
        let line_no = index + 1;
        let error = |message: String| ConfigError::File {
            path: path.to_path_buf(),
            line: line_no,
            message,
        };
        let line =
            std::str::from_utf8(raw).map_err(|_| error("the line is not valid UTF-8".into()))?;
        let Some((key, value)) = split_line(line).map_err(error)? else {
            continue;
        };
        let name = key.strip_prefix("--").unwrap_or(key).replace('_', "-");
        let Some(setting) = setting(&name) else {
            return Err(error(if CLI_ONLY.contains(&name.as_str()) {
                format!("`{key}` is only accepted on the command line")
            } else if looks_like_option(key) {
                format!("unknown option `{key}`")
            } else {
                // Perhaps a pasted secret: do not echo it to the log.
                "not a setting (expected name=value with a long option name)".to_owned()
            }));
        };
        let option = setting.long;
        let value = match value {
            Some(value) => value,
            None if setting.switch => "true",
            None => return Err(error(format!("`{key}` needs a value: {option}=..."))),
        };
        (setting.set)(&mut layer, value).map_err(|e| error(format!("{option}: {e}")))?;
        if let Some(first) = first_seen.insert(option, line_no) {
            warnings.push(format!(
                "{}:{line_no}: `{option}` was already set on line {first}; the later value wins",
                path.display()
            ));
        }
    }
    Ok(FileLayer { layer, warnings })
}

/// Option names are lower-case words joined by `-` (or `_`); anything else
/// on its own might be a pasted secret.
fn looks_like_option(key: &str) -> bool {
    key.strip_prefix("--")
        .unwrap_or(key)
        .chars()
        .all(|c| c.is_ascii_lowercase() || c == '-' || c == '_')
}

/// Splits one config line into key and value (`None` for a bare key);
/// `Ok(None)` for lines without a setting.
fn split_line(line: &str) -> Result<Option<(&str, Option<&str>)>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with(['#', ';', '[']) || line.starts_with("---") {
        return Ok(None);
    }
    let line = strip_trailing_comment(line);
    let key_end = line
        .find(|c: char| c == '=' || c == ':' || c.is_whitespace())
        .unwrap_or(line.len());
    let (key, rest) = line.split_at(key_end);
    if key.is_empty() {
        return Err("expected name=value".into());
    }
    let rest = rest.trim_start();
    if rest.is_empty() {
        return Ok(Some((key, None)));
    }
    let value = rest.strip_prefix(['=', ':']).unwrap_or(rest).trim_start();
    if value.is_empty() {
        return Err(format!("`{key}` has no value"));
    }
    Ok(Some((key, Some(value))))
}

/// Cuts a trailing comment: `#` or `;` after white space, as ConfigArgParse
/// did (so `a#b` stays a value, `a #b` is `a`).
fn strip_trailing_comment(line: &str) -> &str {
    let mut previous_blank = false;
    for (i, c) in line.char_indices() {
        if previous_blank && (c == '#' || c == ';') {
            return line[..i].trim_end();
        }
        previous_blank = c.is_whitespace();
    }
    line
}

/// A warning when `path` can be read by group or others.
#[cfg(unix)]
pub(super) fn exposure_warning(path: &Path, what: &str) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o044 != 0).then(|| {
        format!(
            "{} {what} but is readable by group/others (mode {mode:03o}); \
             restrict it, e.g. chmod 600",
            path.display()
        )
    })
}

#[cfg(not(unix))]
pub(super) fn exposure_warning(_path: &Path, _what: &str) -> Option<String> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testutil::*;
    use crate::config::{CacheStorage, Mode};
    use crate::proto::Protocol;
    use std::path::PathBuf;

    #[test]
    fn switch_spellings_in_file() {
        let base = format!("type=generic\nurl={URL}\nsecret=x\n");
        for (line, expected) in [
            ("debug", true),
            ("debug=true", true),
            ("debug = True", true),
            ("debug=yes", true),
            ("debug=1", true),
            ("debug=false", false),
            ("debug=no", false),
            ("debug=0", false),
        ] {
            let c = load_test(&[], &[], Some(&format!("{base}{line}\n"))).unwrap();
            assert_eq!(c.debug, expected, "{line}");
        }
        let (line, message) = file_error(&format!("{base}debug=maybe\n"));
        assert_eq!(line, 4);
        assert!(
            message.contains("debug") && message.contains("maybe"),
            "{message}"
        );
    }

    #[test]
    fn file_syntax() {
        let text = format!(
            "# comment\n\
             ; another comment\n\
             \n\
             [section]\n\
             ---\n\
             \x20  type: prosody   # trailing comment\n\
             url = {URL}\n\
             secret a#b ; comment\n\
             cache_storage=memory\n\
             --cache-query-ttl=5m\r\n\
             recipient-delimiter=+\n"
        );
        let c = load_test(&[], &[], Some(&text)).unwrap();
        assert_eq!(c.mode, Mode::Serve(Protocol::Generic));
        assert_eq!(c.url.as_deref(), Some(URL));
        assert_eq!(c.secret.expose(), "a#b");
        assert_eq!(c.cache_storage, CacheStorage::Memory);
        assert_eq!(c.cache_query_ttl, 300);
        assert_eq!(c.codec.recipient_delimiter, "+");
    }

    #[test]
    fn file_errors_name_the_line() {
        let (line, message) = file_error("# c\n\nurl=https://x.example/\nfrobnicate=1\n");
        assert_eq!(line, 4);
        assert!(message.contains("unknown option `frobnicate`"), "{message}");

        let (line, message) = file_error("url=https://x.example/\n0123abcdef99\n");
        assert_eq!(line, 2);
        assert!(!message.contains("0123abcdef99"), "{message}");

        let (line, message) = file_error("\ncache-query-ttl=soon\n");
        assert_eq!(line, 2);
        assert!(message.starts_with("cache-query-ttl: "), "{message}");

        let (line, message) = file_error("auth-test=a b c\n");
        assert_eq!(line, 1);
        assert!(
            message.contains("only accepted on the command line"),
            "{message}"
        );

        let (line, message) = file_error("type=generic\nurl\n");
        assert_eq!(line, 2);
        assert!(message.contains("needs a value"), "{message}");

        let (line, _) = file_error("secret=\n");
        assert_eq!(line, 1);

        let e = load_test(&[], &[], Some("x\n\ntype=jabber\n")).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("xcauth.conf:1: "), "{text}");
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn repeated_key_warns_and_last_wins() {
        let c = load_test(&BASE, &[], Some("log=/a\nlog=/b\n")).unwrap();
        assert_eq!(c.log_dir, PathBuf::from("/b"));
        assert!(c
            .warnings
            .iter()
            .any(|w| w.contains(":2: `log` was already set on line 1")));
    }

    #[test]
    fn split_line_cases() {
        assert_eq!(split_line("  # x"), Ok(None));
        assert_eq!(split_line("debug"), Ok(Some(("debug", None))));
        assert_eq!(split_line("debug # on"), Ok(Some(("debug", None))));
        assert_eq!(split_line("a=b=c"), Ok(Some(("a", Some("b=c")))));
        assert_eq!(
            split_line("url: http://x:1/"),
            Ok(Some(("url", Some("http://x:1/"))))
        );
        assert_eq!(split_line("key   value"), Ok(Some(("key", Some("value")))));
        assert!(split_line("=x").is_err());
    }

    #[test]
    fn zero_idle_timeout_names_the_key_and_the_line() {
        let text = format!("type=generic\nurl={URL}\nsecret=x\n\nidle-timeout = 0\n");
        let (line, message) = file_error(&text);
        assert_eq!(line, 5);
        assert!(message.starts_with("idle-timeout: "), "{message}");
        assert!(message.contains("at least 1s"), "{message}");
        let e = load_test(&[], &[], Some(&text)).unwrap_err();
        assert!(e.to_string().contains("xcauth.conf:5: idle-timeout"), "{e}");
        assert_eq!(e.exit_code(), 2);
        let c = load_test(&[], &[], Some(&text.replace("= 0", "= 30m"))).unwrap();
        assert_eq!(c.sockets.idle_timeout.as_secs(), 1800);
    }
}
