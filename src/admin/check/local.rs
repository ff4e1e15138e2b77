//! The tests on this machine: the database (opens, reads, writes, is not
//! readable by everybody), the log directory (writable) and ejabberdctl
//! (runs).

use std::fs::{self, OpenOptions};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use super::{CheckRequest, Findings};
use crate::config::{CacheStorage, Config};
use crate::roster::{CommandCtl, Ejabberdctl};
use crate::store::{DomainRow, Store};

/// The shared roster group ejabberdctl is asked about: a name no
/// installation uses, so the answer is an empty list.
pub(crate) const PROBE_GROUP: &str = "xcauth-check-probe";

/// What the database test found.
#[derive(Default)]
pub(crate) struct Database {
    /// The domain rows, as the service would read them.
    pub(crate) rows: Vec<DomainRow>,
}

/// Tests the database the way the service uses it, and reads its domain
/// rows. A missing file is created by the service only when it needs one
/// (the `db` cache, ejabberdctl); the check never creates it.
pub(crate) async fn database(config: &Config, findings: &mut Findings) -> Database {
    let path = config.db.clone();
    let scope = "database";
    let shown = path.display().to_string();
    if path.as_os_str() == ":memory:" {
        findings.pass(scope, "open", ":memory: (nothing is kept between runs)");
        return Database::default();
    }
    let needed = config.cache_storage == CacheStorage::Db || config.ejabberdctl.is_some();
    let metadata = match fs::metadata(&path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            missing(&path, needed, findings);
            return Database::default();
        }
        Err(e) => {
            findings.fail(scope, "open", &format!("{shown}: {e}"));
            return Database::default();
        }
    };
    permissions(&shown, &metadata, findings);
    // SQLite and its busy wait block: off the runtime.
    let opened = tokio::task::spawn_blocking(move || -> Result<(usize, Vec<DomainRow>), String> {
        let store = Store::open(&path).map_err(|e| format!("cannot open: {e}"))?;
        let rows = store
            .domains()
            .map_err(|e| format!("cannot read the domains table: {e}"))?;
        store.probe_write().map_err(|e| {
            format!("readable, but not writable: {e} (the directory must be writable too, for the journal)")
        })?;
        Ok((rows.len(), rows))
    })
    .await
    .unwrap_or_else(|_| Err("the database test stopped".to_owned()));
    match opened {
        Ok((count, rows)) => {
            findings.pass(
                scope,
                "read-write",
                &format!(
                    "{shown} readable and writable (a write was rolled back); domain rows: {count}"
                ),
            );
            Database { rows }
        }
        Err(e) => {
            findings.fail(scope, "read-write", &format!("{shown}: {e}"));
            Database::default()
        }
    }
}

/// A database that does not exist yet.
fn missing(path: &Path, needed: bool, findings: &mut Findings) {
    let shown = path.display();
    if !needed {
        findings.pass(
            "database",
            "open",
            &format!("none at {shown}; not needed (no db cache, no ejabberdctl): no domain rows"),
        );
        return;
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    match writable_dir(dir) {
        Ok(()) => findings.warn(
            "database",
            "open",
            &format!("{shown} does not exist yet; the service creates it at its first start"),
        ),
        Err(e) => findings.fail(
            "database",
            "open",
            &format!("{shown} does not exist and cannot be created: {e}"),
        ),
    }
}

/// The database holds the domains' secrets and API passwords (and the
/// password hashes of the cache): nobody but the service's user and group
/// should read it.
fn permissions(shown: &str, metadata: &fs::Metadata, findings: &mut Findings) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = metadata.permissions().mode() & 0o7777;
        if mode & 0o002 != 0 {
            findings.fail(
                "database",
                "mode",
                &format!(
                    "{shown} has mode {mode:04o}: everybody may change it; it holds domain \
                     secrets: chmod 660 (or 600) and chown it to the user xcauth runs as"
                ),
            );
        } else if mode & 0o004 != 0 {
            findings.warn(
                "database",
                "mode",
                &format!(
                    "{shown} has mode {mode:04o}: every local user can read it; it holds \
                     domain secrets and API passwords: chmod o-r {shown}"
                ),
            );
        } else {
            findings.pass(
                "database",
                "mode",
                &format!("{shown} has mode {mode:04o} (not readable by others)"),
            );
        }
    }
    #[cfg(not(unix))]
    let _ = (shown, metadata, findings);
}

/// Whether a file can be made in `dir` (made and removed again).
fn writable_dir(dir: &Path) -> Result<(), String> {
    let probe = dir.join(format!(".xcauth-check.{}", std::process::id()));
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(|e| format!("cannot create files in {}: {e}", dir.display()))?;
    let _ = fs::remove_file(&probe);
    Ok(())
}

/// The service writes `xcauth.log` and `xcauth.err` in the log directory.
pub(crate) fn log_dir(config: &Config, findings: &mut Findings) {
    let scope = "log";
    if config.interactive {
        findings.pass(
            scope,
            "directory",
            "not used: interactive (logs go to standard error)",
        );
        return;
    }
    let dir = &config.log_dir;
    let shown = dir.display();
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            findings.fail(scope, "directory", &format!("{shown} is not a directory"));
            return;
        }
        Err(e) => {
            findings.fail(
                scope,
                "directory",
                &format!("{shown}: {e} (create it, owned by the user xcauth runs as; the service would log to standard error)"),
            );
            return;
        }
    }
    for name in ["xcauth.log", "xcauth.err"] {
        let file = dir.join(name);
        if file.exists() {
            if let Err(e) = OpenOptions::new().append(true).open(&file) {
                findings.fail(scope, "directory", &format!("{}: {e}", file.display()));
                return;
            }
        }
    }
    match writable_dir(dir) {
        Ok(()) => findings.pass(scope, "directory", &format!("{shown} is writable")),
        Err(e) => findings.fail(scope, "directory", &e),
    }
}

/// Runs a harmless command of the ones the roster sync uses (and the
/// sudoers rule of `xcejabberdctl` allows): the members of a group that
/// does not exist, on the host of `--user`, else of the first domain row,
/// else `localhost`.
pub(crate) async fn ejabberdctl(
    config: &Config,
    request: &CheckRequest,
    rows: &[DomainRow],
    findings: &mut Findings,
) {
    let Some(path) = &config.ejabberdctl else {
        return;
    };
    let host = super::user_domain(request)
        .map(str::to_owned)
        .or_else(|| rows.first().map(|r| r.xmppdomain.clone()))
        .unwrap_or_else(|| "localhost".to_owned());
    let ctl: Arc<dyn Ejabberdctl> =
        Arc::new(CommandCtl::new(path.clone()).with_timeout(config.ejabberdctl_timeout));
    let args = vec!["srg_get_members".to_owned(), PROBE_GROUP.to_owned(), host];
    let command = format!("{} {}", path.display(), args.join(" "));
    let started = Instant::now();
    match ctl.run(&args).await {
        Ok(_) => findings.pass(
            "ejabberdctl",
            "run",
            &format!(
                "`{command}` succeeded in {} ms",
                started.elapsed().as_millis()
            ),
        ),
        Err(e) => findings.fail(
            "ejabberdctl",
            "run",
            &format!(
                "`{command}`: {e} (is ejabberd running? the service's user must be allowed \
                 to run it: use the sudo wrapper xcejabberdctl with packaging/sudoers.d/xcauth)"
            ),
        ),
    }
}
