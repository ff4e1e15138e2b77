//! The SQLite state file shared with the original Python xcauth 2.x: schema, timestamps, queries.
//!
//! Compatibility both ways is the point of this module: a file written by
//! the Python version is read and updated in place, and the Python version
//! can still read what we write. Hence:
//!
//! - the four tables are created exactly as the original declared them and
//!   never altered; what the original has no columns for lives in tables of
//!   our own beside them (`domainbackend`, `authcredential`, the guard's
//!   `guardfailure` and `guardnotice`), which it
//!   ignores, and `PRAGMA user_version`, which it never reads or writes (it
//!   stays 0 in its files);
//! - timestamps are UTC text `YYYY-MM-DD HH:MM:SS` (what Python's sqlite3
//!   adapter writes for a datetime without microseconds, and what
//!   `CURRENT_TIMESTAMP` gives); both that and the `.ffffff` form are read;
//! - every write names only the columns it needs (administrators add their
//!   own columns), as UPDATE-then-INSERT inside one transaction rather than
//!   `INSERT OR REPLACE`, which would reset the other columns;
//! - the journal mode of a file is left alone (the original used `delete`).
//!
//! Several processes share one file (ejabberd starts a pool of helpers), so
//! every connection waits up to [`BUSY_TIMEOUT`] for a lock, and every write
//! is one short `BEGIN IMMEDIATE` transaction: the write lock is taken up
//! front, so two writers never deadlock half-way through.
//!
//! The API is synchronous; async callers go through `spawn_blocking`.
//!
//! Layout: this file holds [`Store`] itself (opening, the lock wait, the
//! read and write transactions) and [`StoreError`]; `schema` creates the
//! tables and keeps the version; `time` writes and reads the timestamps;
//! `domains`, `authcache` and `roster` hold the queries of their tables;
//! `credentials` the several cached credentials of a JID (`authcache` and
//! our `authcredential`);
//! `guard` the failure guard's state (`guardfailure`, `guardnotice`);
//! `purge` the deletions that span tables (a user, a host);
//! `totals` every process's metric totals (`processtotals`).

mod authcache;
mod credentials;
mod domains;
mod guard;
mod purge;
mod roster;
mod schema;
mod time;
mod totals;

pub use authcache::CacheEntry;
pub use domains::{DomainBackend, DomainRow, DomainUpdate};
pub use guard::{GuardEntry, SqliteGuard, MAX_GUARD_FAILURES};
pub use purge::{HostDeletion, UserDeletion};
pub use roster::{split_list, RosterInfo};
pub use schema::SCHEMA_VERSION;
pub use time::{format_timestamp, parse_timestamp};
pub use totals::{ProcessTotals, EXITED, MAX_PROCESS_ROWS};

use crate::sync::lock;
use std::cell::Cell;
use std::fmt;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode, OpenFlags, Row, TransactionBehavior};

/// How long a statement waits for another process's lock before giving up
/// with [`StoreError::Busy`].
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a database operation failed, by what the caller does next.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process held the lock longer than [`BUSY_TIMEOUT`]. Nothing
    /// was changed; treat as a temporary failure (the cache falls back to
    /// the back end, an admin command can be repeated).
    #[error("the database stayed locked by another process")]
    Busy,
    /// The file is damaged or is not an SQLite database. Retrying will not
    /// help; an administrator must restore or remove it.
    #[error("the database file is damaged or not a database: {0}")]
    Corrupt(String),
    /// The file cannot be opened, read or written (missing directory,
    /// permissions, read-only file system, disk full). An administrator
    /// must fix the file system; a read may still work.
    #[error("cannot access the database file: {0}")]
    Io(String),
    /// Any other SQLite failure (for example a table missing a column this
    /// program needs). Log it; the operation did not happen.
    #[error("database error: {0}")]
    Sql(String),
}

/// Sorts a SQLite failure into [`StoreError`]. The texts carry SQLite's
/// message (table and column names), never bound values.
fn classify(err: rusqlite::Error) -> StoreError {
    match err.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Busy,
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
            StoreError::Corrupt(err.to_string())
        }
        Some(
            ErrorCode::CannotOpen
            | ErrorCode::PermissionDenied
            | ErrorCode::ReadOnly
            | ErrorCode::SystemIoFailure
            | ErrorCode::DiskFull,
        ) => StoreError::Io(err.to_string()),
        _ => StoreError::Sql(err.to_string()),
    }
}

/// The SQLite state file. One connection, used by one thread at a time;
/// each process (or each test thread standing in for one) opens its own.
pub struct Store {
    conn: Mutex<Connection>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) the database at `path`; `:memory:` gives a
    /// private in-memory database. Missing tables are created; existing
    /// ones, their data and the journal mode are left as they are.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if path.as_os_str() != ":memory:" {
            create_private(path);
        }
        // No SQLITE_OPEN_URI: a path is a path, even if it starts with "file:".
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(path, flags).map_err(classify)?;
        conn.busy_handler(Some(wait_for_lock)).map_err(classify)?;
        schema::prepare_schema(&mut conn).map_err(classify)?;
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    /// The connection. A panic in another thread while holding it cannot
    /// leave a transaction open (dropping a rusqlite transaction rolls it
    /// back), so a poisoned lock is still safe to use.
    fn conn(&self) -> MutexGuard<'_, Connection> {
        lock(&self.conn)
    }

    /// Runs reads outside any explicit transaction (each statement sees a
    /// consistent snapshot on its own).
    fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        f(&self.conn()).map_err(classify)
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction: committed if `f`
    /// succeeds, rolled back otherwise.
    fn write<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(classify)?;
        let out = f(&tx).map_err(classify)?;
        tx.commit().map_err(classify)?;
        Ok(out)
    }

    /// Proves the file can be written, for `xcauth check`: a table is made
    /// and filled in one write transaction that is then rolled back, so
    /// nothing changes.
    pub fn probe_write(&self) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(classify)?;
        tx.execute_batch(
            "CREATE TABLE xcauth_check_probe (x TEXT);
             INSERT INTO xcauth_check_probe VALUES ('probe');",
        )
        .map_err(classify)?;
        tx.rollback().map_err(classify)
    }

    /// Result of `PRAGMA integrity_check`: `"ok"`, or the problems found,
    /// one a line.
    pub fn integrity_check(&self) -> Result<String, StoreError> {
        self.read(|c| {
            let lines: Vec<String> = c
                .prepare("PRAGMA integrity_check")?
                .query_map([], |r| Ok(text(r, 0)?.unwrap_or_default()))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(lines.join("\n"))
        })
    }
}

thread_local! {
    /// When the current wait for a lock began; SQLite calls the busy
    /// handler on the thread that runs the statement.
    static WAITING_SINCE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Busy handler: retry every 0.5 to 2.5 ms until [`BUSY_TIMEOUT`].
///
/// SQLite's own `busy_timeout` backs off to 100 ms sleeps, so a connection
/// that has waited a while polls rarely and keeps losing the lock to
/// newcomers that poll every millisecond; under a burst of logins from a
/// pool of helpers one of them could wait out the whole timeout. Short,
/// jittered sleeps keep the waiting roughly fair.
fn wait_for_lock(attempt: i32) -> bool {
    let now = Instant::now();
    let since = WAITING_SINCE.with(|cell| match cell.get() {
        Some(since) if attempt > 0 => since,
        _ => {
            cell.set(Some(now));
            now
        }
    });
    if now.duration_since(since) >= BUSY_TIMEOUT {
        return false;
    }
    // Jitter from the wall clock's nanoseconds, so that waiters do not
    // retry in lockstep; its value does not matter.
    let jitter = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() % 2_000);
    std::thread::sleep(Duration::from_micros(500 + u64::from(jitter)));
    true
}

/// Creates a missing database file readable by owner and group only (the
/// umask may narrow it further): it holds the domains' secrets. SQLite
/// would create it world-readable under the usual umask. Failures are left
/// for SQLite to report when it opens the path.
fn create_private(path: &Path) {
    if path.symlink_metadata().is_ok() {
        return;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o660);
    }
    // An empty file is a valid empty database; losing the race to another
    // process (AlreadyExists) is fine too.
    let _ = options.open(path);
}

/// A column as text, whatever SQLite type an administrator's hand-written
/// SQL gave it; NULL is `None`.
fn text(r: &Row<'_>, idx: usize) -> rusqlite::Result<Option<String>> {
    Ok(match r.get_ref(idx)? {
        ValueRef::Null => None,
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Real(f) => Some(f.to_string()),
        ValueRef::Text(b) | ValueRef::Blob(b) => Some(String::from_utf8_lossy(b).into_owned()),
    })
}

/// A timestamp column: NULL is `None`; text in a form [`parse_timestamp`]
/// accepts is its time; anything else (including numbers, whose unit is
/// unknowable) is 0, "very old".
fn timestamp(r: &Row<'_>, idx: usize) -> rusqlite::Result<Option<i64>> {
    Ok(match r.get_ref(idx)? {
        ValueRef::Null => None,
        ValueRef::Text(b) | ValueRef::Blob(b) => Some(
            std::str::from_utf8(b)
                .ok()
                .and_then(parse_timestamp)
                .unwrap_or(0),
        ),
        ValueRef::Integer(_) | ValueRef::Real(_) => Some(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A private in-memory database.
    pub(super) fn mem() -> Store {
        match Store::open(Path::new(":memory:")) {
            Ok(s) => s,
            Err(e) => panic!("open :memory: failed: {e}"),
        }
    }

    pub(super) fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn unreadable_stored_timestamps_are_very_old() {
        let store = mem();
        store.conn().execute_batch(
            "INSERT INTO authcache VALUES ('a@x', 'h', 'garbage', 12345, NULL);
             INSERT INTO domains (xmppdomain, regfirst, reglatest) VALUES ('x', NULL, '2026-13-99');",
        )
        .unwrap();
        let entry = store.cache_get("a@x").unwrap().unwrap();
        assert_eq!(
            (entry.firstauth, entry.remoteauth, entry.anyauth),
            (0, 0, 0)
        );
        let row = store.domain("x").unwrap().unwrap();
        assert_eq!((row.regfirst, row.reglatest), (None, Some(0)));
    }

    #[test]
    fn store_can_be_shared_between_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<Store>();
    }

    #[test]
    fn probe_write_changes_nothing() {
        let store = mem();
        store.probe_write().unwrap();
        store.probe_write().unwrap();
        let tables: i64 = store
            .read(|c| {
                c.query_row(
                    "SELECT count(*) FROM sqlite_master WHERE name = 'xcauth_check_probe'",
                    [],
                    |r| r.get(0),
                )
            })
            .unwrap();
        assert_eq!(tables, 0);
    }

    #[test]
    fn errors_are_classified() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-dir").join("x.sqlite3");
        assert!(matches!(Store::open(&missing), Err(StoreError::Io(_))));

        let junk = dir.path().join("junk.sqlite3");
        std::fs::write(&junk, vec![b'x'; 4096]).unwrap();
        let result = Store::open(&junk);
        assert!(matches!(result, Err(StoreError::Corrupt(_))), "{result:?}");
    }
}
