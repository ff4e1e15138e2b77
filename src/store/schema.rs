//! The original's four tables, created exactly as it declared them, and the schema version kept in `PRAGMA user_version`.

use rusqlite::{Connection, ErrorCode, TransactionBehavior};

/// Our own schema version, kept in `PRAGMA user_version`. 0 is a file
/// written by the Python original (or an empty one); 1 is the original's
/// four tables, unchanged; 2 adds our own tables beside them ([`OURS`]);
/// 3 adds `authcredential`; 4 the failure guard's `guardfailure` and
/// `guardnotice`; 5 `processtotals` (every process's metric totals); 6
/// `guardpending` (the guard's attempts in flight).
/// The original's tables are never altered, so it keeps reading and
/// writing them.
pub const SCHEMA_VERSION: i64 = 6;

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

/// Our own tables, which the original does not know and ignores.
const OURS: [&str; 9] = [
    // Back-end settings of a domain beyond the original's `domains`
    // columns (see `DomainBackend`).
    "CREATE TABLE IF NOT EXISTS domainbackend (xmppdomain TEXT PRIMARY KEY, \
     backend TEXT, apiuser TEXT, apipassword TEXT, loginform TEXT)",
    // Verified credentials of a JID besides the one in `authcache`;
    // `firstauth` is a verbatim copy of that `authcache` row's, and a row
    // counts only while they agree (see `store/credentials.rs`).
    "CREATE TABLE IF NOT EXISTS authcredential (jid TEXT NOT NULL, pwhash TEXT NOT NULL, \
     firstauth TIMESTAMP, remoteauth TIMESTAMP, anyauth TIMESTAMP, \
     PRIMARY KEY (jid, pwhash))",
    // The failure guard's rejected logins (see `store/guard.rs`): `scope`
    // is `jid` or `address`, `digest` a keyed digest, never a password.
    "CREATE TABLE IF NOT EXISTS guardfailure (scope TEXT NOT NULL, key TEXT NOT NULL, \
     digest TEXT NOT NULL, at TIMESTAMP NOT NULL)",
    "CREATE INDEX IF NOT EXISTS guardfailure_key ON guardfailure (scope, key, at)",
    "CREATE INDEX IF NOT EXISTS guardfailure_at ON guardfailure (at)",
    // Until when a refusal of a key was logged (once per window).
    "CREATE TABLE IF NOT EXISTS guardnotice (scope TEXT NOT NULL, key TEXT NOT NULL, \
     until TIMESTAMP NOT NULL, PRIMARY KEY (scope, key))",
    // The failure guard's attempts in flight: reserved before the back end
    // is asked, turned into a `guardfailure` row or deleted by the answer;
    // one never settled stops counting at `holduntil`.
    "CREATE TABLE IF NOT EXISTS guardpending (id INTEGER PRIMARY KEY, scope TEXT NOT NULL, \
     key TEXT NOT NULL, digest TEXT NOT NULL, at TIMESTAMP NOT NULL, holduntil TIMESTAMP NOT NULL)",
    "CREATE INDEX IF NOT EXISTS guardpending_key ON guardpending (scope, key, holduntil)",
    // Each serving process's metric totals, and the sum of those gone
    // (see `store/totals.rs`).
    "CREATE TABLE IF NOT EXISTS processtotals (process TEXT PRIMARY KEY, \
     pid INTEGER NOT NULL, started TIMESTAMP NOT NULL, updated TIMESTAMP NOT NULL, \
     totals TEXT NOT NULL)",
];

/// Names of the tables in [`SCHEMA`] and [`OURS`].
const TABLES: [&str; 10] = [
    "domains",
    "authcache",
    "rosterinfo",
    "rostergroups",
    "domainbackend",
    "authcredential",
    "guardfailure",
    "guardnotice",
    "guardpending",
    "processtotals",
];

/// Creates missing tables and records [`SCHEMA_VERSION`]. Checks first
/// without a lock, so opening a complete file takes no write lock (and
/// works on a read-only file).
pub(super) fn prepare_schema(conn: &mut Connection) -> rusqlite::Result<()> {
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
        for sql in SCHEMA.iter().chain(OURS.iter()) {
            tx.execute(sql, [])?;
        }
        // Read again under the lock: another process may have set it.
        if user_version(&tx)? < SCHEMA_VERSION {
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        }
        tx.commit()
    };
    match upgrade(conn) {
        // A read-only file with tables is still usable for reading; what
        // is missing (a table a newer version added) fails when written,
        // and the guard then counts in memory.
        Err(e) if present > 0 && e.sqlite_error_code() == Some(ErrorCode::ReadOnly) => Ok(()),
        other => other,
    }
}

/// How many of [`TABLES`] exist.
fn count_tables(conn: &Connection) -> rusqlite::Result<usize> {
    let n: i64 = conn.query_row(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        TABLES,
        |r| r.get(0),
    )?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// `PRAGMA user_version`.
fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::mem;

    #[test]
    fn new_database_is_marked_and_checked() {
        let store = mem();
        let conn = store.conn();
        assert_eq!(user_version(&conn).unwrap(), SCHEMA_VERSION);
        assert_eq!(count_tables(&conn).unwrap(), TABLES.len());
        drop(conn);
        assert_eq!(store.integrity_check().unwrap(), "ok");
    }
}
