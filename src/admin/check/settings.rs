//! The resolved settings as `xcauth check` prints them: the ones every
//! domain shares, then the back end of the global settings and of each
//! database row. Secrets show only whether they are set and their length,
//! never a character of them.

use std::path::Path;

use super::{out, Target};
use crate::backend::{BackendKind, BackendSpec};
use crate::config::Config;
use crate::secret::Secret;
use crate::store::DomainRow;

/// `set (N chars)` or `not set`.
pub(crate) fn masked(secret: &Secret) -> String {
    if secret.is_empty() {
        "not set".to_owned()
    } else {
        format!("set ({} chars)", secret.expose().chars().count())
    }
}

/// [`masked`], and the file it came from when that is known.
fn masked_from(secret: &Secret, file: Option<&Path>) -> String {
    match file {
        Some(path) if !secret.is_empty() => {
            format!("{}, from file {}", masked(secret), path.display())
        }
        _ => masked(secret),
    }
}

/// Prints the settings.
pub(crate) fn print(config: &Config, targets: &[Target], rows: &[DomainRow]) {
    out("Settings (secrets masked):");
    let shown = |path: &Option<std::path::PathBuf>| {
        path.as_ref()
            .map_or_else(|| "none".to_owned(), |p| p.display().to_string())
    };
    let timeout = format!(
        "connect {}s, request {}s",
        config.connect_timeout.as_secs_f64(),
        config.request_timeout.as_secs_f64()
    );
    let log = if config.interactive {
        "standard error (interactive)".to_owned()
    } else {
        config.log_dir.display().to_string()
    };
    let shared = [
        ("config-file", shown(&config.config_file)),
        ("db", config.db.display().to_string()),
        (
            "cache-storage",
            format!("{:?}", config.cache_storage).to_lowercase(),
        ),
        ("timeout", timeout),
        ("ca-file", shown(&config.ca_file)),
        ("log", log),
        ("ejabberdctl", shown(&config.ejabberdctl)),
    ];
    out("  shared by every domain");
    for (name, value) in shared {
        line(name, &value);
    }
    for target in targets {
        let row = rows
            .iter()
            .find(|r| target.scope == format!("domain {}", r.xmppdomain));
        match row {
            None => out(&format!(
                "  {} (config file and command line)",
                crate::admin::report::shown(&target.scope)
            )),
            Some(_) => out(&format!(
                "  {} (database row; empty columns take the global value)",
                crate::admin::report::shown(&target.scope)
            )),
        }
        // A row's own secret is in the database; an inherited one is the
        // global secret, from the global file.
        let files = match row {
            None => (
                config.secret_file.as_deref(),
                config.api_password_file.as_deref(),
            ),
            Some(row) => (
                inherited(row.authsecret.as_deref(), config.secret_file.as_deref()),
                inherited(
                    row.backend.apipassword.as_deref(),
                    config.api_password_file.as_deref(),
                ),
            ),
        };
        backend(&target.spec, row.is_none(), files);
    }
}

/// The global file of a value a row leaves empty; `None` for the row's own.
fn inherited<'a>(own: Option<&str>, global: Option<&'a Path>) -> Option<&'a Path> {
    own.is_none_or(str::is_empty).then_some(global).flatten()
}

/// The lines of one back end; `files`: where the secret and the API
/// password were read from, if from files.
fn backend(spec: &BackendSpec, global: bool, files: (Option<&Path>, Option<&Path>)) {
    line("url", &crate::admin::report::shown_url(&spec.url));
    line("backend", spec.kind.name());
    if !global {
        line("auth-domain", &spec.auth_domain);
    }
    let secret = match (spec.kind, spec.secret.is_empty()) {
        (BackendKind::Nextcloud, true) => "not set (JSXC token logins off)".to_owned(),
        _ => masked_from(&spec.secret, files.0),
    };
    line("secret", &secret);
    if spec.kind == BackendKind::Nextcloud {
        line("login-form", spec.login_form.name());
        match &spec.api {
            Some(api) => {
                line("api-user", &api.user);
                line("api-password", &masked_from(&api.password, files.1));
            }
            None => line("api-user", "none"),
        }
        line("roster-ttl", &format!("{}s", spec.roster_ttl.as_secs()));
    }
}

fn line(name: &str, value: &str) {
    out(&format!(
        "    {name:<14} {}",
        crate::admin::report::shown(value)
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_tells_only_the_length() {
        assert_eq!(masked(&Secret::new("hunter2-ü")), "set (9 chars)");
        assert_eq!(masked(&Secret::default()), "not set");
    }
}
