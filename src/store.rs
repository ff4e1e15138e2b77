//! The SQLite state file shared with the original Python xcauth 2.x: schema, timestamps, queries.
//!
//! Compatibility both ways is the point of this module: a file written by
//! the Python version is read and updated in place, and the Python version
//! can still read what we write. Hence:
//!
//! - the four tables are created exactly as the original declared them, and
//!   nothing else is added to the file except `PRAGMA user_version`, which
//!   the original never reads or writes (it stays 0 in its files);
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

use std::cell::Cell;
use std::fmt;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, Row, TransactionBehavior};

/// How long a statement waits for another process's lock before giving up
/// with [`StoreError::Busy`].
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Our own schema version, kept in `PRAGMA user_version`. 0 is a file
/// written by the Python original (or an empty one); 1 is the original's
/// four tables, unchanged. Later additive changes bump it.
pub const SCHEMA_VERSION: i64 = 1;

/// The original's tables (SPEC §8). `IF NOT EXISTS` makes creation safe when
/// several processes open a new file at the same instant.
const SCHEMA: [&str; 4] = [
    "CREATE TABLE IF NOT EXISTS domains (xmppdomain TEXT PRIMARY KEY, authsecret TEXT, \
     authurl TEXT, authdomain TEXT, regcontact TEXT, \
     regfirst TIMESTAMP DEFAULT CURRENT_TIMESTAMP, \
     reglatest TIMESTAMP DEFAULT CURRENT_TIMESTAMP)",
    "CREATE TABLE IF NOT EXISTS authcache (jid TEXT PRIMARY KEY, pwhash TEXT, \
     firstauth TIMESTAMP DEFAULT CURRENT_TIMESTAMP, \
     remoteauth TIMESTAMP DEFAULT CURRENT_TIMESTAMP, \
     anyauth TIMESTAMP DEFAULT CURRENT_TIMESTAMP)",
    "CREATE TABLE IF NOT EXISTS rosterinfo (jid TEXT PRIMARY KEY, fullname TEXT, \
     grouplist TEXT, responsehash TEXT, \
     last_update TIMESTAMP DEFAULT CURRENT_TIMESTAMP)",
    "CREATE TABLE IF NOT EXISTS rostergroups (groupname TEXT PRIMARY KEY, userlist TEXT)",
];

/// Names of the tables in [`SCHEMA`].
const TABLES: [&str; 4] = ["domains", "authcache", "rosterinfo", "rostergroups"];

/// Separator of the member lists in `rostergroups.userlist` and
/// `rosterinfo.grouplist`.
const LIST_SEPARATOR: char = '\t';

/// "The key ends with `?1`", where `?1` is `@domain`. Plain `LIKE '%@' ||
/// domain` would treat `_` and `%` in the domain as wildcards; `length` and
/// `substr` both count characters, so this compares exactly.
const KEY_ENDS_WITH: &str = "length({col}) >= length(?1) \
     AND substr({col}, length({col}) - length(?1) + 1) = ?1";

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

/// One row of `domains`: the per-domain back end (SPEC §7).
#[derive(Clone, PartialEq, Eq)]
pub struct DomainRow {
    /// The XMPP domain (the key).
    pub xmppdomain: String,
    /// Shared secret for this domain's back end; never printed by `Debug`.
    pub authsecret: Option<String>,
    /// URL of this domain's back end.
    pub authurl: Option<String>,
    /// Domain sent to Nextcloud in place of the XMPP domain.
    pub authdomain: Option<String>,
    /// Registration contact, free text for administrators.
    pub regcontact: Option<String>,
    /// First registration, seconds since the epoch (0 if unreadable).
    pub regfirst: Option<i64>,
    /// Latest registration change, seconds since the epoch (0 if unreadable).
    pub reglatest: Option<i64>,
}

impl fmt::Debug for DomainRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DomainRow")
            .field("xmppdomain", &self.xmppdomain)
            .field("authsecret", &self.authsecret.as_ref().map(|_| "***"))
            .field("authurl", &self.authurl)
            .field("authdomain", &self.authdomain)
            .field("regcontact", &self.regcontact)
            .field("regfirst", &self.regfirst)
            .field("reglatest", &self.reglatest)
            .finish()
    }
}

/// Columns to change in an existing `domains` row; `None` keeps a column.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct DomainUpdate {
    /// New shared secret; never printed by `Debug`.
    pub secret: Option<String>,
    /// New back-end URL.
    pub url: Option<String>,
    /// New auth domain.
    pub authdomain: Option<String>,
    /// New registration contact; `Some(None)` clears it.
    pub regcontact: Option<Option<String>>,
}

impl fmt::Debug for DomainUpdate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DomainUpdate")
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .field("url", &self.url)
            .field("authdomain", &self.authdomain)
            .field("regcontact", &self.regcontact)
            .finish()
    }
}

/// One row of `authcache`: a bcrypt hash of the last password the back end
/// accepted, and when (SPEC §6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    /// `user@domain`.
    pub jid: String,
    /// bcrypt hash (`$2b$...`); empty if the column was NULL.
    pub pwhash: String,
    /// First successful login, seconds since the epoch.
    pub firstauth: i64,
    /// Last verification by the back end.
    pub remoteauth: i64,
    /// Last successful login by any means.
    pub anyauth: i64,
}

/// One row of `rosterinfo`: shared-roster state of one JID (SPEC §9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterInfo {
    /// `user@domain`.
    pub jid: String,
    /// Full name last sent to ejabberd's vCard.
    pub fullname: Option<String>,
    /// Tab-separated groups the user was last put in (see [`split_list`]).
    pub grouplist: Option<String>,
    /// SHA-256 (hex) of the last `sharedroster` reply.
    pub responsehash: Option<String>,
    /// When `responsehash` was stored, seconds since the epoch.
    pub last_update: Option<i64>,
}

/// What [`Store::delete_user`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserDeletion {
    /// `authcache` rows deleted (0 or 1).
    pub authcache: usize,
    /// `rosterinfo` rows deleted (0 or 1).
    pub rosterinfo: usize,
    /// Keys of the `rostergroups` whose member list lost the user, sorted
    /// (the caller may mirror this with `srg_user_del`).
    pub groups: Vec<String>,
}

/// What [`Store::delete_host`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostDeletion {
    /// `authcache` rows of the domain deleted.
    pub authcache: usize,
    /// `rosterinfo` rows of the domain deleted.
    pub rosterinfo: usize,
    /// Keys of the deleted `rostergroups` rows, sorted.
    pub groups: Vec<String>,
    /// Whether the `domains` row existed.
    pub domain: bool,
}

/// Splits a stored tab-separated list; an empty string is an empty list.
pub fn split_list(list: &str) -> Vec<String> {
    if list.is_empty() {
        Vec::new()
    } else {
        list.split(LIST_SEPARATOR).map(str::to_owned).collect()
    }
}

/// Joins a list for storage: sorted, without duplicates, tab-separated (the
/// original stored its sets this way).
fn join_list(items: &[String]) -> String {
    let mut sorted: Vec<&str> = items.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.dedup();
    sorted.join("\t")
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
        prepare_schema(&mut conn).map_err(classify)?;
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    /// The connection. A panic in another thread while holding it cannot
    /// leave a transaction open (dropping a rusqlite transaction rolls it
    /// back), so a poisoned lock is still safe to use.
    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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

    // ----- domains -------------------------------------------------------

    /// The `domains` row of `xmppdomain`, if any.
    pub fn domain(&self, xmppdomain: &str) -> Result<Option<DomainRow>, StoreError> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT xmppdomain, authsecret, authurl, authdomain, regcontact, \
                 regfirst, reglatest FROM domains WHERE xmppdomain = ?1",
            )?
            .query_row([xmppdomain], domain_row)
            .optional()
        })
    }

    /// All `domains` rows, sorted by domain.
    pub fn domains(&self) -> Result<Vec<DomainRow>, StoreError> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT xmppdomain, authsecret, authurl, authdomain, regcontact, \
                 regfirst, reglatest FROM domains ORDER BY xmppdomain",
            )?
            .query_map([], domain_row)?
            .collect()
        })
    }

    /// Sets secret, URL, auth domain and contact of `xmppdomain`, creating
    /// the row if needed (`regfirst = now`); `reglatest = now` either way.
    /// Returns true when the row was created.
    pub fn put_domain(
        &self,
        xmppdomain: &str,
        secret: &str,
        url: &str,
        authdomain: &str,
        regcontact: Option<&str>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let ts = format_timestamp(now);
        self.write(|c| {
            let updated = c
                .prepare_cached(
                    "UPDATE domains SET authsecret = ?2, authurl = ?3, authdomain = ?4, \
                     regcontact = ?5, reglatest = ?6 WHERE xmppdomain = ?1",
                )?
                .execute(rusqlite::params![
                    xmppdomain, secret, url, authdomain, regcontact, ts
                ])?;
            if updated > 0 {
                return Ok(false);
            }
            c.prepare_cached(
                "INSERT INTO domains (xmppdomain, authsecret, authurl, authdomain, \
                 regcontact, regfirst, reglatest) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
            )?
            .execute(rusqlite::params![
                xmppdomain, secret, url, authdomain, regcontact, ts
            ])?;
            Ok(true)
        })
    }

    /// Changes the given columns of an existing `domains` row and sets
    /// `reglatest = now`. Returns false (and changes nothing) if there is no
    /// such row.
    pub fn update_domain(
        &self,
        xmppdomain: &str,
        update: DomainUpdate,
        now: i64,
    ) -> Result<bool, StoreError> {
        // Only fixed column names go into the SQL text; values are bound.
        let mut sql = String::from("UPDATE domains SET reglatest = ?2");
        let mut values: Vec<Option<String>> = vec![Some(format_timestamp(now))];
        let columns = [
            ("authsecret", update.secret.map(Some)),
            ("authurl", update.url.map(Some)),
            ("authdomain", update.authdomain.map(Some)),
            ("regcontact", update.regcontact),
        ];
        for (column, value) in columns {
            if let Some(value) = value {
                values.push(value);
                sql.push_str(&format!(", {column} = ?{}", values.len() + 1));
            }
        }
        sql.push_str(" WHERE xmppdomain = ?1");
        self.write(|c| {
            let mut stmt = c.prepare(&sql)?;
            stmt.raw_bind_parameter(1, xmppdomain)?;
            for (i, value) in values.iter().enumerate() {
                stmt.raw_bind_parameter(i + 2, value)?;
            }
            Ok(stmt.raw_execute()? > 0)
        })
    }

    /// Deletes the `domains` row of `xmppdomain`; true if it existed.
    pub fn delete_domain(&self, xmppdomain: &str) -> Result<bool, StoreError> {
        self.write(|c| {
            Ok(
                c.prepare_cached("DELETE FROM domains WHERE xmppdomain = ?1")?
                    .execute([xmppdomain])?
                    > 0,
            )
        })
    }

    // ----- authcache -----------------------------------------------------

    /// The cache entry of `jid`, if any.
    pub fn cache_get(&self, jid: &str) -> Result<Option<CacheEntry>, StoreError> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT jid, pwhash, firstauth, remoteauth, anyauth FROM authcache \
                 WHERE jid = ?1",
            )?
            .query_row([jid], cache_entry)
            .optional()
        })
    }

    /// Records a back-end verification: a new entry gets `firstauth =
    /// remoteauth = anyauth = now`; an existing one gets the new hash and
    /// `remoteauth = anyauth = now`, keeping `firstauth`.
    pub fn cache_store(&self, jid: &str, pwhash: &str, now: i64) -> Result<(), StoreError> {
        let ts = format_timestamp(now);
        self.write(|c| {
            let updated = c
                .prepare_cached(
                    "UPDATE authcache SET pwhash = ?2, remoteauth = ?3, anyauth = ?3 \
                     WHERE jid = ?1",
                )?
                .execute([jid, pwhash, &ts])?;
            if updated == 0 {
                c.prepare_cached(
                    "INSERT INTO authcache (jid, pwhash, firstauth, remoteauth, anyauth) \
                     VALUES (?1, ?2, ?3, ?3, ?3)",
                )?
                .execute([jid, pwhash, &ts])?;
            }
            Ok(())
        })
    }

    /// Records a login answered from the cache: `anyauth = now`. Returns
    /// false if there is no entry.
    pub fn cache_touch(&self, jid: &str, now: i64) -> Result<bool, StoreError> {
        let ts = format_timestamp(now);
        self.write(|c| {
            Ok(
                c.prepare_cached("UPDATE authcache SET anyauth = ?2 WHERE jid = ?1")?
                    .execute([jid, &ts])?
                    > 0,
            )
        })
    }

    /// Deletes the cache entry of `jid`; true if it existed.
    pub fn cache_delete(&self, jid: &str) -> Result<bool, StoreError> {
        self.write(|c| {
            Ok(c.prepare_cached("DELETE FROM authcache WHERE jid = ?1")?
                .execute([jid])?
                > 0)
        })
    }

    /// Deletes the cache entry of `jid` only if it still holds `pwhash`, so
    /// an entry another process refreshed meanwhile survives. True if
    /// deleted.
    pub fn cache_delete_if_hash(&self, jid: &str, pwhash: &str) -> Result<bool, StoreError> {
        self.write(|c| {
            Ok(
                c.prepare_cached("DELETE FROM authcache WHERE jid = ?1 AND pwhash = ?2")?
                    .execute([jid, pwhash])?
                    > 0,
            )
        })
    }

    /// All cache entries, sorted by JID.
    pub fn cache_list(&self) -> Result<Vec<CacheEntry>, StoreError> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT jid, pwhash, firstauth, remoteauth, anyauth FROM authcache \
                 ORDER BY jid",
            )?
            .query_map([], cache_entry)?
            .collect()
        })
    }

    /// Deletes every cache entry; returns how many there were.
    pub fn cache_flush(&self) -> Result<usize, StoreError> {
        self.write(|c| c.execute("DELETE FROM authcache", []))
    }

    /// Number of cache entries.
    pub fn cache_count(&self) -> Result<usize, StoreError> {
        self.read(|c| {
            let n: i64 = c.query_row("SELECT COUNT(*) FROM authcache", [], |r| r.get(0))?;
            Ok(usize::try_from(n).unwrap_or(0))
        })
    }

    // ----- shared-roster state -------------------------------------------

    /// The `rosterinfo` row of `jid`, if any.
    pub fn roster_info(&self, jid: &str) -> Result<Option<RosterInfo>, StoreError> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT jid, fullname, grouplist, responsehash, last_update \
                 FROM rosterinfo WHERE jid = ?1",
            )?
            .query_row([jid], |r| {
                Ok(RosterInfo {
                    jid: text(r, 0)?.unwrap_or_default(),
                    fullname: text(r, 1)?,
                    grouplist: text(r, 2)?,
                    responsehash: text(r, 3)?,
                    last_update: timestamp(r, 4)?,
                })
            })
            .optional()
        })
    }

    /// Stores the hash of the latest `sharedroster` reply of `jid` and
    /// `last_update = now`.
    pub fn set_roster_hash(&self, jid: &str, hash: &str, now: i64) -> Result<(), StoreError> {
        let ts = format_timestamp(now);
        self.upsert_rosterinfo(
            jid,
            "UPDATE rosterinfo SET responsehash = ?2, last_update = ?3 WHERE jid = ?1",
            "INSERT INTO rosterinfo (jid, responsehash, last_update) VALUES (?1, ?2, ?3)",
            &[hash, &ts],
        )
    }

    /// Stores the full name last sent to ejabberd for `jid`.
    pub fn set_fullname(&self, jid: &str, name: &str) -> Result<(), StoreError> {
        self.upsert_rosterinfo(
            jid,
            "UPDATE rosterinfo SET fullname = ?2 WHERE jid = ?1",
            "INSERT INTO rosterinfo (jid, fullname) VALUES (?1, ?2)",
            &[name],
        )
    }

    /// Stores the groups `jid` is in (sorted, tab-separated).
    pub fn set_grouplist(&self, jid: &str, groups: &[String]) -> Result<(), StoreError> {
        let list = join_list(groups);
        self.upsert_rosterinfo(
            jid,
            "UPDATE rosterinfo SET grouplist = ?2 WHERE jid = ?1",
            "INSERT INTO rosterinfo (jid, grouplist) VALUES (?1, ?2)",
            &[&list],
        )
    }

    /// UPDATE-then-INSERT of some `rosterinfo` columns; `?1` is the JID,
    /// `?2...` the `values`.
    fn upsert_rosterinfo(
        &self,
        jid: &str,
        update: &str,
        insert: &str,
        values: &[&str],
    ) -> Result<(), StoreError> {
        let params: Vec<&str> = std::iter::once(jid).chain(values.iter().copied()).collect();
        let params = rusqlite::params_from_iter(params);
        self.write(|c| {
            if c.prepare_cached(update)?.execute(params.clone())? == 0 {
                c.prepare_cached(insert)?.execute(params)?;
            }
            Ok(())
        })
    }

    /// Members of the shared-roster group `groupname` (`group@domain`) as
    /// last stored, or `None` if the group is unknown.
    pub fn roster_group(&self, groupname: &str) -> Result<Option<Vec<String>>, StoreError> {
        self.read(|c| {
            c.prepare_cached("SELECT userlist FROM rostergroups WHERE groupname = ?1")?
                .query_row([groupname], |r| text(r, 0))
                .optional()
        })
        .map(|found| found.map(|list| split_list(&list.unwrap_or_default())))
    }

    /// Stores the members of `groupname` (sorted, tab-separated).
    pub fn set_roster_group(&self, groupname: &str, members: &[String]) -> Result<(), StoreError> {
        let list = join_list(members);
        self.write(|c| {
            if c.prepare_cached("UPDATE rostergroups SET userlist = ?2 WHERE groupname = ?1")?
                .execute([groupname, &list])?
                == 0
            {
                c.prepare_cached("INSERT INTO rostergroups (groupname, userlist) VALUES (?1, ?2)")?
                    .execute([groupname, &list])?;
            }
            Ok(())
        })
    }

    /// Forgets the group `groupname`; true if it was known.
    pub fn delete_roster_group(&self, groupname: &str) -> Result<bool, StoreError> {
        self.write(|c| {
            Ok(
                c.prepare_cached("DELETE FROM rostergroups WHERE groupname = ?1")?
                    .execute([groupname])?
                    > 0,
            )
        })
    }

    /// Clears the stored `sharedroster` hash of `jid` (or of everybody), so
    /// the next login synchronises the roster again. Returns how many hashes
    /// were cleared.
    pub fn clear_roster_hashes(&self, jid: Option<&str>) -> Result<usize, StoreError> {
        self.write(|c| match jid {
            Some(jid) => c.execute(
                "UPDATE rosterinfo SET responsehash = NULL \
                 WHERE jid = ?1 AND responsehash IS NOT NULL",
                [jid],
            ),
            None => c.execute(
                "UPDATE rosterinfo SET responsehash = NULL WHERE responsehash IS NOT NULL",
                [],
            ),
        })
    }

    // ----- administration ------------------------------------------------

    /// Forgets everything cached about `jid`: its `authcache` and
    /// `rosterinfo` rows, and its membership in every stored group.
    pub fn delete_user(&self, jid: &str) -> Result<UserDeletion, StoreError> {
        self.write(|c| {
            let authcache = c.execute("DELETE FROM authcache WHERE jid = ?1", [jid])?;
            let rosterinfo = c.execute("DELETE FROM rosterinfo WHERE jid = ?1", [jid])?;
            // instr() narrows the scan; membership is decided on the split list.
            let candidates: Vec<(String, String)> = c
                .prepare(
                    "SELECT groupname, userlist FROM rostergroups \
                     WHERE instr(userlist, ?1) > 0 ORDER BY groupname",
                )?
                .query_map([jid], |r| {
                    Ok((
                        text(r, 0)?.unwrap_or_default(),
                        text(r, 1)?.unwrap_or_default(),
                    ))
                })?
                .collect::<rusqlite::Result<_>>()?;
            let mut groups = Vec::new();
            for (group, list) in candidates {
                let members = split_list(&list);
                if !members.iter().any(|m| m == jid) {
                    continue;
                }
                let rest: Vec<String> = members.into_iter().filter(|m| m != jid).collect();
                c.execute(
                    "UPDATE rostergroups SET userlist = ?2 WHERE groupname = ?1",
                    [group.as_str(), &join_list(&rest)],
                )?;
                groups.push(group);
            }
            Ok(UserDeletion {
                authcache,
                rosterinfo,
                groups,
            })
        })
    }

    /// Forgets a whole virtual host: the `authcache` and `rosterinfo` rows
    /// of JIDs ending in `@domain`, the groups whose key ends in `@domain`,
    /// and the `domains` row. `x@sub.domain` and `x@otherdomain` stay.
    pub fn delete_host(&self, domain: &str) -> Result<HostDeletion, StoreError> {
        let suffix = format!("@{domain}");
        let jid_match = KEY_ENDS_WITH.replace("{col}", "jid");
        let group_match = KEY_ENDS_WITH.replace("{col}", "groupname");
        self.write(|c| {
            let authcache = c.execute(
                &format!("DELETE FROM authcache WHERE {jid_match}"),
                [&suffix],
            )?;
            let rosterinfo = c.execute(
                &format!("DELETE FROM rosterinfo WHERE {jid_match}"),
                [&suffix],
            )?;
            let groups: Vec<String> = c
                .prepare(&format!(
                    "SELECT groupname FROM rostergroups WHERE {group_match} ORDER BY groupname"
                ))?
                .query_map([&suffix], |r| Ok(text(r, 0)?.unwrap_or_default()))?
                .collect::<rusqlite::Result<_>>()?;
            c.execute(
                &format!("DELETE FROM rostergroups WHERE {group_match}"),
                [&suffix],
            )?;
            let domain = c.execute("DELETE FROM domains WHERE xmppdomain = ?1", [domain])? > 0;
            Ok(HostDeletion {
                authcache,
                rosterinfo,
                groups,
                domain,
            })
        })
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

/// Creates missing tables and records [`SCHEMA_VERSION`]. Checks first
/// without a lock, so opening a complete file takes no write lock (and
/// works on a read-only file).
fn prepare_schema(conn: &mut Connection) -> rusqlite::Result<()> {
    let present = count_tables(conn)?;
    let version = user_version(conn)?;
    if version > SCHEMA_VERSION {
        tracing::warn!(
            version,
            known = SCHEMA_VERSION,
            "database written by a newer xcauth; using the columns this version knows"
        );
    }
    if present == TABLES.len() && version >= SCHEMA_VERSION {
        return Ok(());
    }
    let upgrade = |conn: &mut Connection| -> rusqlite::Result<()> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for sql in SCHEMA {
            tx.execute(sql, [])?;
        }
        // Read again under the lock: another process may have set it.
        if user_version(&tx)? < SCHEMA_VERSION {
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        }
        tx.commit()
    };
    match upgrade(conn) {
        // All tables are there; only the version marker could not be
        // written. A read-only file is still usable for reading.
        Err(e) if present == TABLES.len() && e.sqlite_error_code() == Some(ErrorCode::ReadOnly) => {
            Ok(())
        }
        other => other,
    }
}

/// How many of [`TABLES`] exist.
fn count_tables(conn: &Connection) -> rusqlite::Result<usize> {
    let n: i64 = conn.query_row(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN (?1, ?2, ?3, ?4)",
        TABLES,
        |r| r.get(0),
    )?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// `PRAGMA user_version`.
fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
}

/// Reads a `domains` row selected in declaration order.
fn domain_row(r: &Row<'_>) -> rusqlite::Result<DomainRow> {
    Ok(DomainRow {
        xmppdomain: text(r, 0)?.unwrap_or_default(),
        authsecret: text(r, 1)?,
        authurl: text(r, 2)?,
        authdomain: text(r, 3)?,
        regcontact: text(r, 4)?,
        regfirst: timestamp(r, 5)?,
        reglatest: timestamp(r, 6)?,
    })
}

/// Reads an `authcache` row selected in declaration order. A missing
/// timestamp counts as very old, so the entry is not trusted.
fn cache_entry(r: &Row<'_>) -> rusqlite::Result<CacheEntry> {
    Ok(CacheEntry {
        jid: text(r, 0)?.unwrap_or_default(),
        pwhash: text(r, 1)?.unwrap_or_default(),
        firstauth: timestamp(r, 2)?.unwrap_or(0),
        remoteauth: timestamp(r, 3)?.unwrap_or(0),
        anyauth: timestamp(r, 4)?.unwrap_or(0),
    })
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

// ----- timestamps -----------------------------------------------------------

const SECS_PER_DAY: i64 = 86_400;
/// 0001-01-01 00:00:00, the earliest time Python's datetime can hold.
const MIN_TIMESTAMP: i64 = -62_135_596_800;
/// 9999-12-31 23:59:59, the latest time Python's datetime can hold.
const MAX_TIMESTAMP: i64 = 253_402_300_799;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`: count in 400-year eras starting on March 1st, so the
/// leap day is the last day of the year).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y.rem_euclid(400);
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`]: (year, month, day).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Seconds since the epoch as the text this module writes,
/// `YYYY-MM-DD HH:MM:SS` UTC. Clamped to the years 1..=9999 so that Python
/// can always read it back.
pub fn format_timestamp(secs: i64) -> String {
    let secs = secs.clamp(MIN_TIMESTAMP, MAX_TIMESTAMP);
    let (year, month, day) = civil_from_days(secs.div_euclid(SECS_PER_DAY));
    let in_day = secs.rem_euclid(SECS_PER_DAY);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        in_day / 3600,
        in_day % 3600 / 60,
        in_day % 60
    )
}

/// Parses a stored timestamp into seconds since the epoch: `YYYY-MM-DD`,
/// then optionally a space or `T`, `HH:MM`, `:SS`, `.fraction` (dropped,
/// rounding down), and a zone `Z` or `±HH:MM` (without one, UTC). `None`
/// for anything else, including impossible dates.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let s = text.trim().as_bytes();
    let year = number(s, 0, 4)?;
    let month = number(s, 5, 2)?;
    let day = number(s, 8, 2)?;
    if s.get(4) != Some(&b'-') || s.get(7) != Some(&b'-') {
        return None;
    }
    let (mut hour, mut minute, mut second) = (0, 0, 0);
    let mut pos = 10;
    if matches!(s.get(pos), Some(b' ' | b'T' | b't')) {
        hour = number(s, pos + 1, 2)?;
        if s.get(pos + 3) != Some(&b':') {
            return None;
        }
        minute = number(s, pos + 4, 2)?;
        pos += 6;
        if s.get(pos) == Some(&b':') {
            second = number(s, pos + 1, 2)?;
            pos += 3;
            if s.get(pos) == Some(&b'.') {
                pos += 1;
                let digits = s[pos..].iter().take_while(|b| b.is_ascii_digit()).count();
                if digits == 0 {
                    return None;
                }
                pos += digits;
            }
        }
    }
    let offset = match &s[pos..] {
        [] | [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let zone = [*h1, *h2, *m1, *m2];
            let hours = number(&zone, 0, 2)?;
            let minutes = number(&zone, 2, 2)?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let offset = hours * 3600 + minutes * 60;
            if *sign == b'-' {
                -offset
            } else {
                offset
            }
        }
        _ => return None,
    };
    if !(1..=12).contains(&month)
        || !(1..=days_in_month(year, month)).contains(&day)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    Some(
        days_from_civil(year, month, day) * SECS_PER_DAY + hour * 3600 + minute * 60 + second
            - offset,
    )
}

/// The decimal number in `s[start..start + len]`, all digits.
fn number(s: &[u8], start: usize, len: usize) -> Option<i64> {
    let digits = s.get(start..start + len)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0, |acc, d| acc * 10 + i64::from(d - b'0')),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem() -> Store {
        match Store::open(Path::new(":memory:")) {
            Ok(s) => s,
            Err(e) => panic!("open :memory: failed: {e}"),
        }
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    // ----- timestamps ----------------------------------------------------

    #[test]
    fn known_instants_format_and_parse() {
        let cases = [
            (0, "1970-01-01 00:00:00"),
            (-1, "1969-12-31 23:59:59"),
            (951_825_600, "2000-02-29 12:00:00"),
            (1_795_879_448, "2026-11-28 15:24:08"),
            (2_147_483_647, "2038-01-19 03:14:07"),
            (2_147_483_648, "2038-01-19 03:14:08"),
            (4_107_542_400, "2100-03-01 00:00:00"),
            (MIN_TIMESTAMP, "0001-01-01 00:00:00"),
            (MAX_TIMESTAMP, "9999-12-31 23:59:59"),
        ];
        for (secs, text) in cases {
            assert_eq!(format_timestamp(secs), text, "format {secs}");
            assert_eq!(parse_timestamp(text), Some(secs), "parse {text}");
        }
    }

    #[test]
    fn every_day_over_four_centuries_round_trips() {
        // 1900 (not leap) .. 2400 (leap): covers every leap-year rule.
        let first = days_from_civil(1900, 1, 1);
        let last = days_from_civil(2401, 1, 1);
        let mut expected = (1900, 1, 1);
        for days in first..last {
            assert_eq!(civil_from_days(days), expected);
            assert_eq!(days_from_civil(expected.0, expected.1, expected.2), days);
            let (y, m, d) = expected;
            expected = if d < days_in_month(y, m) {
                (y, m, d + 1)
            } else if m < 12 {
                (y, m + 1, 1)
            } else {
                (y + 1, 1, 1)
            };
        }
        assert_eq!(expected, (2401, 1, 1));
    }

    #[test]
    fn leap_days() {
        assert!(parse_timestamp("2024-02-29 00:00:00").is_some());
        assert!(parse_timestamp("2000-02-29 00:00:00").is_some());
        assert_eq!(parse_timestamp("2100-02-29 00:00:00"), None);
        assert_eq!(parse_timestamp("2023-02-29 00:00:00"), None);
        assert_eq!(
            parse_timestamp("2024-03-01 00:00:00"),
            parse_timestamp("2024-02-29 00:00:00").map(|t| t + SECS_PER_DAY)
        );
    }

    #[test]
    fn accepted_variants() {
        let base = 1_795_879_442; // 2026-11-28 15:24:02
        for text in [
            "2026-11-28 15:24:02",
            "2026-11-28 15:24:02.016053",
            "2026-11-28 15:24:02.999999",
            "2026-11-28 15:24:02.5",
            "2026-11-28T15:24:02",
            "2026-11-28T15:24:02.016053Z",
            "2026-11-28 15:24:02+00:00",
            "2026-11-28 16:24:02+01:00",
            "2026-11-28 14:54:02-00:30",
            "  2026-11-28 15:24:02\n",
        ] {
            assert_eq!(parse_timestamp(text), Some(base), "{text:?}");
        }
        assert_eq!(parse_timestamp("2026-11-28 15:24"), Some(base - 2));
        assert_eq!(
            parse_timestamp("2026-11-28"),
            Some(base - 15 * 3600 - 24 * 60 - 2)
        );
        // A fraction before 1970 still rounds down.
        assert_eq!(parse_timestamp("1969-12-31 23:59:59.5"), Some(-1));
    }

    #[test]
    fn rejected_texts() {
        for text in [
            "",
            "yesterday",
            "2026-11-28 15:24:02.",
            "2026-11-28 15:24:60",
            "2026-11-28 24:00:00",
            "2026-11-28 15:60:00",
            "2026-13-01 00:00:00",
            "2026-00-01 00:00:00",
            "2026-04-31 00:00:00",
            "2026-11-00 00:00:00",
            "2026-11-28 15:24:02 junk",
            "2026-11-28 15:24:02+1",
            "2026-11-28x15:24:02",
            "26-11-28 15:24:02",
            "2026/11/28 15:24:02",
            "+026-11-28 15:24:02",
            "2026-11-28 1:24:02",
            "2026-11-28 15:24:02ü",
            "１２３４-11-28",
        ] {
            assert_eq!(parse_timestamp(text), None, "{text:?}");
        }
    }

    #[test]
    fn format_clamps_to_what_python_reads() {
        assert_eq!(format_timestamp(i64::MIN), "0001-01-01 00:00:00");
        assert_eq!(format_timestamp(i64::MAX), "9999-12-31 23:59:59");
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

    // ----- domains -------------------------------------------------------

    #[test]
    fn domain_lifecycle() {
        let store = mem();
        assert_eq!(store.domain("d.example").unwrap(), None);
        assert!(store
            .put_domain("d.example", "s1", "https://a/", "a.example", None, 100)
            .unwrap());
        assert!(!store
            .put_domain(
                "d.example",
                "s2",
                "https://b/",
                "b.example",
                Some("admin@b"),
                200
            )
            .unwrap());
        let row = store.domain("d.example").unwrap().unwrap();
        assert_eq!(row.authsecret.as_deref(), Some("s2"));
        assert_eq!(row.authurl.as_deref(), Some("https://b/"));
        assert_eq!(row.authdomain.as_deref(), Some("b.example"));
        assert_eq!(row.regcontact.as_deref(), Some("admin@b"));
        assert_eq!((row.regfirst, row.reglatest), (Some(100), Some(200)));

        let changed = store
            .update_domain(
                "d.example",
                DomainUpdate {
                    url: Some("https://c/".into()),
                    regcontact: Some(None),
                    ..DomainUpdate::default()
                },
                300,
            )
            .unwrap();
        assert!(changed);
        let row = store.domain("d.example").unwrap().unwrap();
        assert_eq!(row.authsecret.as_deref(), Some("s2"));
        assert_eq!(row.authurl.as_deref(), Some("https://c/"));
        assert_eq!(row.authdomain.as_deref(), Some("b.example"));
        assert_eq!(row.regcontact, None);
        assert_eq!((row.regfirst, row.reglatest), (Some(100), Some(300)));

        let secret_only = DomainUpdate {
            secret: Some("s3".into()),
            ..DomainUpdate::default()
        };
        assert!(!store
            .update_domain("other", secret_only.clone(), 400)
            .unwrap());
        assert_eq!(store.domain("other").unwrap(), None);
        assert!(store.update_domain("d.example", secret_only, 400).unwrap());
        assert_eq!(
            store
                .domain("d.example")
                .unwrap()
                .unwrap()
                .authsecret
                .as_deref(),
            Some("s3")
        );

        store
            .put_domain("a.example", "s", "u", "a", None, 1)
            .unwrap();
        let names: Vec<String> = store
            .domains()
            .unwrap()
            .into_iter()
            .map(|d| d.xmppdomain)
            .collect();
        assert_eq!(names, strings(&["a.example", "d.example"]));

        assert!(store.delete_domain("d.example").unwrap());
        assert!(!store.delete_domain("d.example").unwrap());
        assert_eq!(store.domains().unwrap().len(), 1);
    }

    #[test]
    fn debug_hides_domain_secrets() {
        let store = mem();
        store
            .put_domain("d.example", "hunter2-secret", "u", "a", None, 1)
            .unwrap();
        let row = store.domain("d.example").unwrap().unwrap();
        let update = DomainUpdate {
            secret: Some("hunter2-secret".into()),
            ..DomainUpdate::default()
        };
        let printed = format!("{row:?} {update:?} {store:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("d.example"));
    }

    // ----- authcache -----------------------------------------------------

    #[test]
    fn cache_entry_lifecycle() {
        let store = mem();
        assert_eq!(store.cache_get("u@d").unwrap(), None);
        assert!(!store.cache_touch("u@d", 5).unwrap());
        store.cache_store("u@d", "$2b$04$one", 1).unwrap();
        assert!(store.cache_touch("u@d", 100).unwrap());
        let e = store.cache_get("u@d").unwrap().unwrap();
        assert_eq!(
            e,
            CacheEntry {
                jid: "u@d".into(),
                pwhash: "$2b$04$one".into(),
                firstauth: 1,
                remoteauth: 1,
                anyauth: 100
            }
        );
        store.cache_store("u@d", "$2b$04$two", 300).unwrap();
        let e = store.cache_get("u@d").unwrap().unwrap();
        assert_eq!(
            (e.pwhash.as_str(), e.firstauth, e.remoteauth, e.anyauth),
            ("$2b$04$two", 1, 300, 300)
        );

        assert!(!store.cache_delete_if_hash("u@d", "$2b$04$one").unwrap());
        assert!(store.cache_get("u@d").unwrap().is_some());
        assert!(store.cache_delete_if_hash("u@d", "$2b$04$two").unwrap());
        assert_eq!(store.cache_get("u@d").unwrap(), None);

        store.cache_store("b@d", "h", 1).unwrap();
        store.cache_store("a@d", "h", 1).unwrap();
        assert_eq!(store.cache_count().unwrap(), 2);
        let jids: Vec<String> = store
            .cache_list()
            .unwrap()
            .into_iter()
            .map(|e| e.jid)
            .collect();
        assert_eq!(jids, strings(&["a@d", "b@d"]));
        assert!(store.cache_delete("a@d").unwrap());
        assert!(!store.cache_delete("a@d").unwrap());
        assert_eq!(store.cache_flush().unwrap(), 1);
        assert_eq!(store.cache_count().unwrap(), 0);
    }

    // ----- roster state --------------------------------------------------

    #[test]
    fn roster_state() {
        let store = mem();
        store.set_fullname("a@d", "Ann").unwrap();
        store.set_roster_hash("a@d", "h1", 50).unwrap();
        store
            .set_grouplist("a@d", &strings(&["staff@d", "all@d", "staff@d"]))
            .unwrap();
        let info = store.roster_info("a@d").unwrap().unwrap();
        assert_eq!(info.fullname.as_deref(), Some("Ann"));
        assert_eq!(info.responsehash.as_deref(), Some("h1"));
        assert_eq!(info.last_update, Some(50));
        assert_eq!(info.grouplist.as_deref(), Some("all@d\tstaff@d"));
        store.set_grouplist("a@d", &[]).unwrap();
        let info = store.roster_info("a@d").unwrap().unwrap();
        assert_eq!(info.grouplist.as_deref(), Some(""));
        assert_eq!(split_list(""), Vec::<String>::new());

        store.set_roster_hash("b@d", "h2", 60).unwrap();
        assert_eq!(store.clear_roster_hashes(Some("a@d")).unwrap(), 1);
        assert_eq!(store.clear_roster_hashes(Some("a@d")).unwrap(), 0);
        assert_eq!(
            store.roster_info("a@d").unwrap().unwrap().responsehash,
            None
        );
        assert_eq!(
            store
                .roster_info("b@d")
                .unwrap()
                .unwrap()
                .responsehash
                .as_deref(),
            Some("h2")
        );
        store.set_roster_hash("a@d", "h3", 70).unwrap();
        assert_eq!(store.clear_roster_hashes(None).unwrap(), 2);
        // Full name survives a hash change.
        assert_eq!(
            store
                .roster_info("a@d")
                .unwrap()
                .unwrap()
                .fullname
                .as_deref(),
            Some("Ann")
        );

        assert_eq!(store.roster_group("g@d").unwrap(), None);
        store
            .set_roster_group("g@d", &strings(&["c@d", "a@d", "b@d"]))
            .unwrap();
        assert_eq!(
            store.roster_group("g@d").unwrap(),
            Some(strings(&["a@d", "b@d", "c@d"]))
        );
        store.set_roster_group("g@d", &[]).unwrap();
        assert_eq!(store.roster_group("g@d").unwrap(), Some(Vec::new()));
        assert!(store.delete_roster_group("g@d").unwrap());
        assert!(!store.delete_roster_group("g@d").unwrap());
        assert_eq!(store.roster_group("g@d").unwrap(), None);
    }

    // ----- odd names and administration ----------------------------------

    const ODD_DOMAINS: [&str; 6] = [
        "ex_ample.org",
        "ex%ample.org",
        "o'neil.example",
        "quote\".example",
        "spa ce.example",
        "zoë.example",
    ];

    #[test]
    fn odd_names_in_every_delete_function() {
        for domain in ODD_DOMAINS {
            let store = mem();
            let jid = format!("o'b_r%i \"ë\"@{domain}");
            let group = format!("g'_%ë@{domain}");
            store.put_domain(domain, "s", "u", domain, None, 1).unwrap();
            store.cache_store(&jid, "h", 1).unwrap();
            store.set_fullname(&jid, "O'Brïen").unwrap();
            store
                .set_roster_group(&group, std::slice::from_ref(&jid))
                .unwrap();

            assert_eq!(
                store.cache_get(&jid).unwrap().map(|e| e.jid),
                Some(jid.clone())
            );
            assert!(store.cache_delete_if_hash(&jid, "h").unwrap(), "{domain}");
            store.cache_store(&jid, "h", 1).unwrap();
            assert!(store.cache_delete(&jid).unwrap(), "{domain}");
            assert!(store.delete_roster_group(&group).unwrap(), "{domain}");
            assert!(store.delete_domain(domain).unwrap(), "{domain}");

            store.cache_store(&jid, "h", 1).unwrap();
            store
                .set_roster_group(&group, &[jid.clone(), format!("x@{domain}")])
                .unwrap();
            let d = store.delete_user(&jid).unwrap();
            assert_eq!((d.authcache, d.rosterinfo), (1, 1), "{domain}");
            assert_eq!(d.groups, vec![group.clone()]);
            assert_eq!(
                store.roster_group(&group).unwrap(),
                Some(vec![format!("x@{domain}")])
            );

            store.put_domain(domain, "s", "u", domain, None, 1).unwrap();
            store.cache_store(&jid, "h", 1).unwrap();
            store.set_roster_hash(&jid, "r", 1).unwrap();
            let h = store.delete_host(domain).unwrap();
            assert_eq!(
                h,
                HostDeletion {
                    authcache: 1,
                    rosterinfo: 1,
                    groups: vec![group.clone()],
                    domain: true
                },
                "{domain}"
            );
            assert_eq!(store.cache_count().unwrap(), 0);
        }
    }

    #[test]
    fn delete_host_keeps_lookalike_domains() {
        let store = mem();
        // `_` and `%` must not act as LIKE wildcards: "exXample.org" and
        // "ex_ample.org" are different hosts.
        let keep = [
            "alice@xexample.org",
            "alice@sub.example.org",
            "alice@example.org.evil",
            "alice@example.orgx",
            "alice@other-domain",
            "alice@exXample.org",
            "alice@ex_ample.org",
            "alice@ex%ample.org",
            "example.org",
            "alice@EXAMPLE.ORG",
        ];
        let gone = ["alice@example.org", "b@example.org", "x@y@example.org"];
        for jid in keep.iter().chain(&gone) {
            store.cache_store(jid, "h", 1).unwrap();
            store.set_roster_hash(jid, "r", 1).unwrap();
            store
                .set_roster_group(&format!("g-{jid}"), &[jid.to_string()])
                .unwrap();
        }
        store
            .put_domain("example.org", "s", "u", "a", None, 1)
            .unwrap();
        store
            .put_domain("xexample.org", "s", "u", "a", None, 1)
            .unwrap();

        let h = store.delete_host("example.org").unwrap();
        assert_eq!((h.authcache, h.rosterinfo, h.domain), (3, 3, true));
        assert_eq!(
            h.groups,
            strings(&[
                "g-alice@example.org",
                "g-b@example.org",
                "g-x@y@example.org"
            ])
        );
        let mut left: Vec<String> = store
            .cache_list()
            .unwrap()
            .into_iter()
            .map(|e| e.jid)
            .collect();
        let mut want = strings(&keep);
        want.sort();
        left.sort();
        assert_eq!(left, want);
        for jid in keep {
            assert!(store.roster_info(jid).unwrap().is_some(), "{jid}");
            assert!(
                store.roster_group(&format!("g-{jid}")).unwrap().is_some(),
                "{jid}"
            );
        }
        assert!(store.domain("xexample.org").unwrap().is_some());

        // Same with a domain that contains the wildcards itself.
        let h = store.delete_host("ex_ample.org").unwrap();
        assert_eq!((h.authcache, h.rosterinfo, h.domain), (1, 1, false));
        assert!(store.cache_get("alice@exXample.org").unwrap().is_some());
        let h = store.delete_host("ex%ample.org").unwrap();
        assert_eq!(h.authcache, 1);
        assert!(store.cache_get("alice@exXample.org").unwrap().is_some());
    }

    #[test]
    fn delete_user_matches_whole_members_only() {
        let store = mem();
        store
            .set_roster_group(
                "g@example.org",
                &strings(&[
                    "alice@example.org",
                    "alice@example.org.evil",
                    "xalice@example.org",
                ]),
            )
            .unwrap();
        store
            .set_roster_group("h@example.org", &strings(&["alice@example.orgx"]))
            .unwrap();
        store.cache_store("alice@example.org.evil", "h", 1).unwrap();
        let d = store.delete_user("alice@example.org").unwrap();
        assert_eq!(
            d,
            UserDeletion {
                authcache: 0,
                rosterinfo: 0,
                groups: strings(&["g@example.org"])
            }
        );
        assert_eq!(
            store.roster_group("g@example.org").unwrap(),
            Some(strings(&["alice@example.org.evil", "xalice@example.org"]))
        );
        assert_eq!(
            store.roster_group("h@example.org").unwrap(),
            Some(strings(&["alice@example.orgx"]))
        );
        assert_eq!(store.cache_count().unwrap(), 1);
    }

    #[test]
    fn store_can_be_shared_between_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<Store>();
    }

    #[test]
    fn new_database_is_marked_and_checked() {
        let store = mem();
        let conn = store.conn();
        assert_eq!(user_version(&conn).unwrap(), SCHEMA_VERSION);
        assert_eq!(count_tables(&conn).unwrap(), 4);
        drop(conn);
        assert_eq!(store.integrity_check().unwrap(), "ok");
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
