//! The failure guard's state in the database file (our `guardfailure` and `guardnotice` tables), shared by every process that opens it.
//!
//! ejabberd starts a pool of helpers; each opens the file, and a guess
//! answered by one helper must count for all of them. So the failures and
//! the "refusal already logged" marks live here rather than in memory.
//!
//! - `guardfailure (scope, key, digest, at)`: one row per rejected login
//!   and counter (`jid` or `address`), `digest` the guard's keyed digest of
//!   JID and password (never the password), `at` a timestamp as the other
//!   tables write it. The index on `(scope, key, at)` answers "the failures
//!   of this key since then" without a scan, the one on `at` finds what
//!   to expire. No primary key: the same
//!   digest may fail several times, and every failure counts.
//! - `guardnotice (scope, key, until)`, primary key `(scope, key)`: the
//!   end of the last window in which a refusal of the key was logged. One
//!   statement (an upsert that only moves `until` forward) decides which
//!   process logs, so a pool of helpers logs each refusal once per window.
//!
//! Bounded: [`Store::guard_expire`] deletes failures and notices older
//! than the longest window; a key keeps its newest
//! [`MAX_FAILURES_PER_KEY`] failures (the counts never need more), and the
//! table as a whole its newest [`MAX_GUARD_FAILURES`], so a flood of
//! failures, for one key or for many, cannot grow the file without bound.
//!
//! Every write is one short `BEGIN IMMEDIATE` transaction, with the
//! store's lock wait, like the other tables.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use rusqlite::{params, OptionalExtension};

use super::time::format_timestamp;
use super::{text, timestamp, Store, StoreError};
use crate::guard::{Failure, GuardStore, Scope, MAX_FAILURES_PER_KEY};

/// Failures kept in the whole table at most; past it the oldest written
/// go first. Far above what a busy server records in a window (each row
/// is a rejection by the back end), small enough for a file (about 100 MB).
pub const MAX_GUARD_FAILURES: usize = 1_000_000;

/// Every this many inserts (by row id), the whole table is checked
/// against [`MAX_GUARD_FAILURES`]; the check walks the index, so it is
/// not done on every insert (a bound below this is checked every time).
const TOTAL_CHECK_EVERY: i64 = 1024;

/// The failures of one key, as `xcauth guard list` shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardEntry {
    /// Which counter.
    pub scope: Scope,
    /// The JID or the address.
    pub key: String,
    /// Its stored failures, oldest first.
    pub failures: Vec<Failure>,
    /// The end of the window whose refusal was last logged, if any.
    pub noticed_until: Option<i64>,
}

/// The scope stored as `name`; `None` for a name this version does not
/// know (a newer xcauth's, or hand-written).
fn scope_named(name: &str) -> Option<Scope> {
    [Scope::Jid, Scope::Address]
        .into_iter()
        .find(|s| s.name() == name)
}

impl Store {
    /// Records a failure of `key` in `scope`, then drops the key's oldest
    /// failures beyond [`MAX_FAILURES_PER_KEY`] (and, now and then, the
    /// table's beyond [`MAX_GUARD_FAILURES`]).
    pub fn guard_record(
        &self,
        scope: Scope,
        key: &str,
        failure: &Failure,
    ) -> Result<(), StoreError> {
        self.guard_record_bounded(
            scope,
            key,
            failure,
            MAX_FAILURES_PER_KEY,
            MAX_GUARD_FAILURES,
        )
    }

    /// [`Store::guard_record`] with the bounds given (tests use small ones).
    fn guard_record_bounded(
        &self,
        scope: Scope,
        key: &str,
        failure: &Failure,
        per_key: usize,
        total: usize,
    ) -> Result<(), StoreError> {
        let per_key = i64::try_from(per_key).unwrap_or(i64::MAX);
        let total = i64::try_from(total).unwrap_or(i64::MAX);
        self.write(|c| {
            c.execute(
                "INSERT INTO guardfailure (scope, key, digest, at) VALUES (?1, ?2, ?3, ?4)",
                params![
                    scope.name(),
                    key,
                    failure.digest,
                    format_timestamp(failure.at)
                ],
            )?;
            let id = c.last_insert_rowid();
            c.execute(
                "DELETE FROM guardfailure WHERE rowid IN (SELECT rowid FROM guardfailure \
                 WHERE scope = ?1 AND key = ?2 ORDER BY at DESC, rowid DESC LIMIT -1 OFFSET ?3)",
                params![scope.name(), key, per_key],
            )?;
            if id % TOTAL_CHECK_EVERY == 0 || total < TOTAL_CHECK_EVERY {
                c.execute(
                    "DELETE FROM guardfailure WHERE rowid <= (SELECT rowid FROM guardfailure \
                     ORDER BY rowid DESC LIMIT 1 OFFSET ?1)",
                    [total],
                )?;
            }
            Ok(())
        })
    }

    /// The failures of `key` in `scope` at or after `since`, oldest first.
    pub fn guard_failures(
        &self,
        scope: Scope,
        key: &str,
        since: i64,
    ) -> Result<Vec<Failure>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT digest, at FROM guardfailure WHERE scope = ?1 AND key = ?2 AND at >= ?3 \
                 ORDER BY at, rowid",
            )?;
            let rows =
                stmt.query_map(params![scope.name(), key, format_timestamp(since)], |r| {
                    Ok(Failure {
                        digest: text(r, 0)?.unwrap_or_default(),
                        at: timestamp(r, 1)?.unwrap_or(0),
                    })
                })?;
            rows.collect()
        })
    }

    /// Marks that a refusal of `key` was logged for the window ending
    /// `until`. True for exactly one caller per window, across processes:
    /// the upsert moves `until` only forward, and SQLite reports whether it
    /// changed a row.
    pub fn guard_notice(&self, scope: Scope, key: &str, until: i64) -> Result<bool, StoreError> {
        self.write(|c| {
            let changed = c.execute(
                "INSERT INTO guardnotice (scope, key, until) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (scope, key) DO UPDATE SET until = excluded.until \
                 WHERE guardnotice.until < excluded.until",
                params![scope.name(), key, format_timestamp(until)],
            )?;
            Ok(changed == 1)
        })
    }

    /// Deletes failures older than `before` and notices whose window ended
    /// before it; returns the failures deleted.
    pub fn guard_expire(&self, before: i64) -> Result<usize, StoreError> {
        let before = format_timestamp(before);
        self.write(|c| {
            let n = c.execute("DELETE FROM guardfailure WHERE at < ?1", [&before])?;
            c.execute("DELETE FROM guardnotice WHERE until < ?1", [&before])?;
            Ok(n)
        })
    }

    /// Every key with stored failures, by scope (JIDs first) and key.
    /// Rows of a scope this version does not know are left out.
    pub fn guard_entries(&self) -> Result<Vec<GuardEntry>, StoreError> {
        let rows: Vec<(String, String, Failure)> = self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT scope, key, digest, at FROM guardfailure ORDER BY scope DESC, key, at, rowid",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    text(r, 0)?.unwrap_or_default(),
                    text(r, 1)?.unwrap_or_default(),
                    Failure {
                        digest: text(r, 2)?.unwrap_or_default(),
                        at: timestamp(r, 3)?.unwrap_or(0),
                    },
                ))
            })?;
            rows.collect()
        })?;
        let mut entries: Vec<GuardEntry> = Vec::new();
        for (scope_name, key, failure) in rows {
            let Some(scope) = scope_named(&scope_name) else {
                continue;
            };
            match entries.last_mut() {
                Some(last) if last.scope == scope && last.key == key => {
                    last.failures.push(failure);
                }
                _ => entries.push(GuardEntry {
                    scope,
                    key,
                    failures: vec![failure],
                    noticed_until: None,
                }),
            }
        }
        self.read(|c| {
            let mut stmt =
                c.prepare_cached("SELECT until FROM guardnotice WHERE scope = ?1 AND key = ?2")?;
            for entry in &mut entries {
                entry.noticed_until = stmt
                    .query_row(params![entry.scope.name(), entry.key], |r| timestamp(r, 0))
                    .optional()?
                    .flatten();
            }
            Ok(())
        })?;
        Ok(entries)
    }

    /// Deletes the failures and notices of `key` (a JID or an address, in
    /// either scope), or of every key when `None`; returns the failures
    /// deleted.
    pub fn guard_clear(&self, key: Option<&str>) -> Result<usize, StoreError> {
        self.write(|c| match key {
            Some(key) => {
                let n = c.execute("DELETE FROM guardfailure WHERE key = ?1", [key])?;
                c.execute("DELETE FROM guardnotice WHERE key = ?1", [key])?;
                Ok(n)
            }
            None => {
                let n = c.execute("DELETE FROM guardfailure", [])?;
                c.execute("DELETE FROM guardnotice", [])?;
                Ok(n)
            }
        })
    }
}

/// Seconds between two expiries by one process. The guard asks to expire
/// after every rejection; old rows are not counted anyway (every query
/// names its window), so deleting them once a minute is enough and keeps
/// the write lock short under a flood.
pub const EXPIRE_EVERY: i64 = 60;

/// The guard's [`GuardStore`] in the database file. The guard's calls
/// cannot fail, so a database error is logged and the guard errs towards
/// asking the back end: a failure not recorded, none found, a refusal
/// logged (twice rather than never).
#[derive(Debug)]
pub struct SqliteGuard {
    store: Arc<Store>,
    /// The `before` of the last expiry done.
    expired: AtomicI64,
}

impl SqliteGuard {
    /// The guard's state in `store`'s file.
    pub fn new(store: Arc<Store>) -> SqliteGuard {
        SqliteGuard {
            store,
            expired: AtomicI64::new(i64::MIN),
        }
    }
}

impl GuardStore for SqliteGuard {
    fn record(&self, scope: Scope, key: &str, failure: &Failure) {
        if let Err(e) = self.store.guard_record(scope, key, failure) {
            tracing::warn!("guard: cannot record a failure: {e}");
        }
    }

    fn failures(&self, scope: Scope, key: &str, since: i64) -> Vec<Failure> {
        self.store
            .guard_failures(scope, key, since)
            .unwrap_or_else(|e| {
                tracing::warn!("guard: cannot read failures: {e}");
                Vec::new()
            })
    }

    fn notice(&self, scope: Scope, key: &str, until: i64) -> bool {
        self.store
            .guard_notice(scope, key, until)
            .unwrap_or_else(|e| {
                tracing::warn!("guard: cannot mark a refusal as logged: {e}");
                true
            })
    }

    fn expire(&self, before: i64) {
        let last = self.expired.load(Ordering::Relaxed);
        if before < last.saturating_add(EXPIRE_EVERY)
            || self
                .expired
                .compare_exchange(last, before, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        if let Err(e) = self.store.guard_expire(before) {
            tracing::warn!("guard: cannot expire old failures: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::{Guard, GuardSettings, Verdict};
    use crate::secret::Secret;
    use crate::store::tests::mem;

    fn failure(digest: &str, at: i64) -> Failure {
        Failure {
            digest: digest.to_owned(),
            at,
        }
    }

    fn count(store: &Store) -> i64 {
        store
            .conn()
            .query_row("SELECT COUNT(*) FROM guardfailure", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn failures_round_trip_by_scope_key_and_time() {
        let s = mem();
        s.guard_record(Scope::Jid, "a@d", &failure("d1", 100))
            .unwrap();
        s.guard_record(Scope::Jid, "a@d", &failure("d1", 200))
            .unwrap();
        s.guard_record(Scope::Jid, "b@d", &failure("d2", 150))
            .unwrap();
        s.guard_record(Scope::Address, "a@d", &failure("d3", 150))
            .unwrap();
        assert_eq!(
            s.guard_failures(Scope::Jid, "a@d", 0).unwrap(),
            vec![failure("d1", 100), failure("d1", 200)]
        );
        assert_eq!(
            s.guard_failures(Scope::Jid, "a@d", 101).unwrap(),
            vec![failure("d1", 200)]
        );
        assert_eq!(
            s.guard_failures(Scope::Jid, "a@d", 200).unwrap(),
            vec![failure("d1", 200)]
        );
        assert_eq!(
            s.guard_failures(Scope::Address, "a@d", 0).unwrap(),
            vec![failure("d3", 150)]
        );
        // Stored as the other tables' timestamps.
        let at: String = s
            .conn()
            .query_row("SELECT at FROM guardfailure WHERE key = 'b@d'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(at, "1970-01-01 00:02:30");
    }

    #[test]
    fn a_key_keeps_its_newest_failures_only() {
        let s = mem();
        for i in 0..(MAX_FAILURES_PER_KEY as i64 + 50) {
            s.guard_record(Scope::Jid, "flood@d", &failure(&format!("g{i}"), 1000 + i))
                .unwrap();
        }
        s.guard_record(Scope::Jid, "other@d", &failure("x", 5))
            .unwrap();
        let kept = s.guard_failures(Scope::Jid, "flood@d", 0).unwrap();
        assert_eq!(kept.len(), MAX_FAILURES_PER_KEY);
        assert_eq!(kept[0].at, 1050, "the oldest went first");
        assert_eq!(
            kept.last().unwrap().at,
            1000 + MAX_FAILURES_PER_KEY as i64 + 49
        );
        // Another key is not touched by the flood's trimming.
        assert_eq!(s.guard_failures(Scope::Jid, "other@d", 0).unwrap().len(), 1);
        assert_eq!(count(&s), MAX_FAILURES_PER_KEY as i64 + 1);
    }

    #[test]
    fn the_table_keeps_its_newest_failures_only() {
        let s = mem();
        for i in 0..40 {
            s.guard_record_bounded(
                Scope::Address,
                &format!("192.0.2.{i}"),
                &failure("x", i),
                8,
                10,
            )
            .unwrap();
        }
        assert_eq!(count(&s), 10);
        assert_eq!(
            s.guard_failures(Scope::Address, "192.0.2.39", 0)
                .unwrap()
                .len(),
            1
        );
        assert!(s
            .guard_failures(Scope::Address, "192.0.2.29", 0)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn the_table_is_trimmed_every_so_many_inserts() {
        let s = mem();
        let total = 2 * TOTAL_CHECK_EVERY as usize;
        let inserts = 5 * TOTAL_CHECK_EVERY;
        for i in 0..inserts {
            s.guard_record_bounded(Scope::Jid, &format!("u{i}@d"), &failure("x", i), 8, total)
                .unwrap();
        }
        // Trimmed to the bound at the last multiple of the interval, then
        // grown by fewer than the interval.
        let n = usize::try_from(count(&s)).unwrap();
        assert!(n >= total && n < total + TOTAL_CHECK_EVERY as usize, "{n}");
        let last = format!("u{}@d", inserts - 1);
        assert_eq!(s.guard_failures(Scope::Jid, &last, 0).unwrap().len(), 1);
        assert!(s.guard_failures(Scope::Jid, "u0@d", 0).unwrap().is_empty());
    }

    #[test]
    fn expire_drops_old_failures_and_ended_notices() {
        let s = mem();
        s.guard_record(Scope::Jid, "a@d", &failure("d", 100))
            .unwrap();
        s.guard_record(Scope::Jid, "a@d", &failure("d", 300))
            .unwrap();
        assert!(s.guard_notice(Scope::Jid, "a@d", 150).unwrap());
        assert!(s.guard_notice(Scope::Jid, "b@d", 400).unwrap());
        assert_eq!(s.guard_expire(200).unwrap(), 1);
        assert_eq!(
            s.guard_failures(Scope::Jid, "a@d", 0).unwrap(),
            vec![failure("d", 300)]
        );
        let notices: i64 = s
            .conn()
            .query_row("SELECT COUNT(*) FROM guardnotice", [], |r| r.get(0))
            .unwrap();
        assert_eq!(notices, 1);
        // The expired notice's window may be logged again; the kept one not.
        assert!(s.guard_notice(Scope::Jid, "a@d", 150).unwrap());
        assert!(!s.guard_notice(Scope::Jid, "b@d", 400).unwrap());
    }

    #[test]
    fn a_notice_is_given_once_per_window() {
        let s = mem();
        assert!(s.guard_notice(Scope::Jid, "a@d", 1000).unwrap());
        assert!(!s.guard_notice(Scope::Jid, "a@d", 1000).unwrap());
        assert!(!s.guard_notice(Scope::Jid, "a@d", 900).unwrap());
        assert!(s.guard_notice(Scope::Address, "a@d", 1000).unwrap());
        assert!(s.guard_notice(Scope::Jid, "a@d", 1001).unwrap());
    }

    #[test]
    fn entries_and_clear() {
        let s = mem();
        s.guard_record(Scope::Address, "::1", &failure("x", 10))
            .unwrap();
        s.guard_record(Scope::Jid, "b@d", &failure("y", 20))
            .unwrap();
        s.guard_record(Scope::Jid, "a@d", &failure("z", 30))
            .unwrap();
        s.guard_record(Scope::Jid, "a@d", &failure("w", 40))
            .unwrap();
        assert!(s.guard_notice(Scope::Jid, "a@d", 940).unwrap());
        let entries = s.guard_entries().unwrap();
        let keys: Vec<(Scope, &str, usize, Option<i64>)> = entries
            .iter()
            .map(|e| (e.scope, e.key.as_str(), e.failures.len(), e.noticed_until))
            .collect();
        assert_eq!(
            keys,
            vec![
                (Scope::Jid, "a@d", 2, Some(940)),
                (Scope::Jid, "b@d", 1, None),
                (Scope::Address, "::1", 1, None),
            ]
        );
        assert_eq!(s.guard_clear(Some("a@d")).unwrap(), 2);
        assert_eq!(s.guard_clear(Some("a@d")).unwrap(), 0);
        assert_eq!(s.guard_entries().unwrap().len(), 2);
        assert_eq!(s.guard_clear(None).unwrap(), 2);
        assert!(s.guard_entries().unwrap().is_empty());
        // The cleared notice is gone too.
        assert!(s.guard_notice(Scope::Jid, "a@d", 940).unwrap());
    }

    #[test]
    fn the_guard_expires_at_most_once_a_minute() {
        let store = Arc::new(mem());
        let g = SqliteGuard::new(Arc::clone(&store));
        g.record(Scope::Jid, "a@d", &failure("x", 100));
        g.expire(200);
        assert_eq!(count(&store), 0);
        g.record(Scope::Jid, "a@d", &failure("x", 150));
        g.expire(200 + EXPIRE_EVERY - 1);
        assert_eq!(count(&store), 1, "too soon");
        g.expire(200 + EXPIRE_EVERY);
        assert_eq!(count(&store), 0);
    }

    #[test]
    fn the_guard_works_on_the_database() {
        let store = Arc::new(mem());
        let g = Guard::new(
            GuardSettings::default(),
            Secret::new("k"),
            Box::new(SqliteGuard::new(Arc::clone(&store))),
        );
        let jid = "alice@example.org";
        g.rejected(jid, &Secret::new("old"), None, 1000);
        assert_eq!(
            g.check(jid, &Secret::new("old"), None, 1030),
            Verdict::KnownWrong
        );
        for i in 0..10 {
            g.rejected(jid, &Secret::new(format!("guess{i}")), None, 1100 + i);
        }
        assert!(matches!(
            g.check(jid, &Secret::new("new"), None, 1200),
            Verdict::Refused {
                first_in_window: true,
                ..
            }
        ));
        assert!(matches!(
            g.check(jid, &Secret::new("new"), None, 1201),
            Verdict::Refused {
                first_in_window: false,
                ..
            }
        ));
        // No password is stored, only digests.
        let stored: Vec<String> = store
            .guard_failures(Scope::Jid, jid, 0)
            .unwrap()
            .into_iter()
            .map(|f| f.digest)
            .collect();
        assert!(stored.iter().all(|d| d.len() == 32 && !d.contains("guess")));
    }
}
