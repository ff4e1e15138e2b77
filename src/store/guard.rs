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
use crate::guard::{
    assess, Assessment, Attempt, Failure, GuardSettings, GuardStore, Mark, Scope,
    MAX_FAILURES_PER_KEY,
};

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
        self.write(|c| record_in(c, scope, key, failure, per_key, total))
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

    /// Deletes failures older than `before`, notices whose window ended
    /// before it and reservations no longer held at `now`; returns the
    /// failures deleted.
    pub fn guard_expire(&self, before: i64, now: i64) -> Result<usize, StoreError> {
        let (before, now) = (format_timestamp(before), format_timestamp(now));
        self.write(|c| {
            let n = c.execute("DELETE FROM guardfailure WHERE at < ?1", [&before])?;
            c.execute("DELETE FROM guardnotice WHERE until < ?1", [&before])?;
            c.execute("DELETE FROM guardpending WHERE holduntil < ?1", [&now])?;
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
                c.execute("DELETE FROM guardpending WHERE key = ?1", [key])?;
                Ok(n)
            }
            None => {
                let n = c.execute("DELETE FROM guardfailure", [])?;
                c.execute("DELETE FROM guardnotice", [])?;
                c.execute("DELETE FROM guardpending", [])?;
                Ok(n)
            }
        })
    }
}

/// Seconds between two expiries by one process. Old rows are not counted
/// anyway (every query names its window), so deleting them once a minute
/// is enough and keeps the write lock short under a flood.
pub const EXPIRE_EVERY: i64 = 60;

/// Records a failure in the transaction `c` and trims the key's oldest
/// beyond `per_key` (and, now and then, the table's beyond `total`).
fn record_in(
    c: &rusqlite::Connection,
    scope: Scope,
    key: &str,
    failure: &Failure,
    per_key: usize,
    total: usize,
) -> rusqlite::Result<()> {
    let per_key = i64::try_from(per_key).unwrap_or(i64::MAX);
    let total = i64::try_from(total).unwrap_or(i64::MAX);
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
}

/// The marks of one key: failures since `since` and reservations held at
/// `now`.
fn marks(
    c: &rusqlite::Connection,
    scope: Scope,
    key: &str,
    since: i64,
    now: i64,
) -> rusqlite::Result<Vec<Mark>> {
    let mut out = Vec::new();
    let mut failures = c.prepare_cached(
        "SELECT digest, at FROM guardfailure WHERE scope = ?1 AND key = ?2 AND at >= ?3",
    )?;
    let rows = failures.query_map(params![scope.name(), key, format_timestamp(since)], |r| {
        Ok(Mark {
            digest: text(r, 0)?.unwrap_or_default(),
            at: timestamp(r, 1)?.unwrap_or(0),
            pending: false,
        })
    })?;
    for row in rows {
        out.push(row?);
    }
    let mut pending = c.prepare_cached(
        "SELECT digest, at FROM guardpending WHERE scope = ?1 AND key = ?2 AND holduntil >= ?3",
    )?;
    let rows = pending.query_map(params![scope.name(), key, format_timestamp(now)], |r| {
        Ok(Mark {
            digest: text(r, 0)?.unwrap_or_default(),
            at: timestamp(r, 1)?.unwrap_or(0),
            pending: true,
        })
    })?;
    for row in rows {
        out.push(row?);
    }
    Ok(out)
}

impl Store {
    /// Weighs `attempt` and reserves it when it may go on, in one
    /// `BEGIN IMMEDIATE` transaction: every process sharing the file sees
    /// each attempt before the next is weighed.
    pub fn guard_reserve(
        &self,
        settings: &GuardSettings,
        attempt: &Attempt,
    ) -> Result<(Assessment, Vec<i64>), StoreError> {
        self.write(|c| {
            let since = attempt.since(settings);
            let jid = marks(c, Scope::Jid, &attempt.account, since, attempt.now)?;
            let address = match &attempt.address {
                Some(a) => marks(c, Scope::Address, a, since, attempt.now)?,
                None => Vec::new(),
            };
            let verdict = assess(settings, attempt, &jid, &address);
            if verdict != Assessment::Ask {
                return Ok((verdict, Vec::new()));
            }
            let mut tickets = Vec::new();
            for (scope, key) in attempt.keys() {
                c.execute(
                    "INSERT INTO guardpending (scope, key, digest, at, holduntil) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        scope.name(),
                        key,
                        attempt.digest,
                        format_timestamp(attempt.now),
                        format_timestamp(attempt.hold_until())
                    ],
                )?;
                tickets.push(c.last_insert_rowid());
            }
            Ok((Assessment::Ask, tickets))
        })
    }

    /// Ends reservations: each becomes a failure at `now` when `failed`,
    /// and is deleted either way, in one transaction (so no other process
    /// sees the attempt gone before its failure is there).
    pub fn guard_settle(&self, tickets: &[i64], failed: bool, now: i64) -> Result<(), StoreError> {
        self.write(|c| {
            for id in tickets {
                let row = c
                    .query_row(
                        "DELETE FROM guardpending WHERE id = ?1 RETURNING scope, key, digest",
                        [id],
                        |r| {
                            Ok((
                                text(r, 0)?.unwrap_or_default(),
                                text(r, 1)?.unwrap_or_default(),
                                text(r, 2)?.unwrap_or_default(),
                            ))
                        },
                    )
                    .optional()?;
                let Some((scope, key, digest)) = row.filter(|_| failed) else {
                    continue;
                };
                if let Some(scope) = scope_named(&scope) {
                    let failure = Failure { digest, at: now };
                    record_in(
                        c,
                        scope,
                        &key,
                        &failure,
                        MAX_FAILURES_PER_KEY,
                        MAX_GUARD_FAILURES,
                    )?;
                }
            }
            Ok(())
        })
    }
}

/// The guard's [`GuardStore`] in the database file, shared by every
/// process that opens it. It should have a connection of its own, so that
/// the guard never waits behind cache or roster work.
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
    fn reserve(
        &self,
        settings: &GuardSettings,
        attempt: &Attempt,
    ) -> Result<(Assessment, Vec<i64>), StoreError> {
        self.store.guard_reserve(settings, attempt)
    }

    fn settle(&self, tickets: &[i64], failed: bool, now: i64) -> Result<(), StoreError> {
        self.store.guard_settle(tickets, failed, now)
    }

    fn notice(&self, scope: Scope, key: &str, until: i64) -> Result<bool, StoreError> {
        self.store.guard_notice(scope, key, until)
    }

    fn expire(&self, before: i64, now: i64) -> Result<(), StoreError> {
        let last = self.expired.load(Ordering::Relaxed);
        if before < last.saturating_add(EXPIRE_EVERY)
            || self
                .expired
                .compare_exchange(last, before, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return Ok(());
        }
        self.store.guard_expire(before, now).map(|_| ())
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
        assert_eq!(s.guard_expire(200, 200).unwrap(), 1);
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
        store
            .guard_record(Scope::Jid, "a@d", &failure("x", 100))
            .unwrap();
        g.expire(200, 200).unwrap();
        assert_eq!(count(&store), 0);
        store
            .guard_record(Scope::Jid, "a@d", &failure("x", 150))
            .unwrap();
        g.expire(200 + EXPIRE_EVERY - 1, 300).unwrap();
        assert_eq!(count(&store), 1, "too soon");
        g.expire(200 + EXPIRE_EVERY, 300).unwrap();
        assert_eq!(count(&store), 0);
    }

    fn attempt(account: &str, digest: &str, now: i64) -> Attempt {
        Attempt {
            digest: digest.to_owned(),
            account: account.to_owned(),
            address: Some("192.0.2.9".to_owned()),
            now,
        }
    }

    #[test]
    fn reservations_count_until_settled() {
        let s = mem();
        let settings = GuardSettings::default();
        let mut tickets = Vec::new();
        for i in 0..10 {
            let (verdict, t) = s
                .guard_reserve(&settings, &attempt("a@d", &format!("g{i}"), 100))
                .unwrap();
            assert_eq!(verdict, Assessment::Ask, "{i}");
            assert_eq!(t.len(), 2, "one per account and address");
            tickets.push(t);
        }
        // Ten in flight: the eleventh is refused before any answer came.
        let (verdict, t) = s
            .guard_reserve(&settings, &attempt("a@d", "g10", 100))
            .unwrap();
        assert!(matches!(
            verdict,
            Assessment::Limited {
                scope: Scope::Jid,
                ..
            }
        ));
        assert!(t.is_empty());
        // Answers: five accepted (gone), five rejected (failures).
        for (i, t) in tickets.iter().enumerate() {
            s.guard_settle(t, i % 2 == 0, 101).unwrap();
        }
        assert_eq!(s.guard_failures(Scope::Jid, "a@d", 0).unwrap().len(), 5);
        assert_eq!(
            s.guard_failures(Scope::Address, "192.0.2.9", 0)
                .unwrap()
                .len(),
            5
        );
        let pending: i64 = s
            .conn()
            .query_row("SELECT COUNT(*) FROM guardpending", [], |r| r.get(0))
            .unwrap();
        assert_eq!(pending, 0);
        assert_eq!(
            s.guard_reserve(&settings, &attempt("a@d", "g0", 102))
                .unwrap()
                .0,
            Assessment::KnownWrong
        );
        assert_eq!(
            s.guard_reserve(&settings, &attempt("a@d", "new", 102))
                .unwrap()
                .0,
            Assessment::Ask
        );
    }

    #[test]
    fn a_reservation_never_settled_stops_counting() {
        let s = mem();
        let settings = GuardSettings {
            jid_failures: 1,
            ..GuardSettings::default()
        };
        s.guard_reserve(&settings, &attempt("a@d", "x", 100))
            .unwrap();
        let later = attempt("a@d", "y", 100 + crate::guard::count::RESERVATION_HOLD);
        assert!(matches!(
            s.guard_reserve(&settings, &later).unwrap().0,
            Assessment::Limited { .. }
        ));
        let after = attempt("a@d", "y", 101 + crate::guard::count::RESERVATION_HOLD);
        assert_eq!(
            s.guard_reserve(&settings, &after).unwrap().0,
            Assessment::Ask
        );
        s.guard_expire(0, after.now + crate::guard::count::RESERVATION_HOLD + 1)
            .unwrap();
        let pending: i64 = s
            .conn()
            .query_row("SELECT COUNT(*) FROM guardpending", [], |r| r.get(0))
            .unwrap();
        assert_eq!(pending, 0);
    }

    #[test]
    fn connections_on_one_file_reserve_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("guard.sqlite3");
        let settings = GuardSettings::default();
        let asked = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for p in 0..4 {
                let (path, settings, asked) = (&path, &settings, &asked);
                scope.spawn(move || {
                    let store = Store::open(path).unwrap();
                    for i in 0..25 {
                        let a = attempt("a@d", &format!("p{p}-{i}"), 100);
                        if store.guard_reserve(settings, &a).unwrap().0 == Assessment::Ask {
                            asked.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(asked.load(Ordering::Relaxed), 10);
    }

    #[test]
    fn the_guard_works_on_the_database() {
        let store = Arc::new(mem());
        let shared: Arc<dyn GuardStore> = Arc::new(SqliteGuard::new(Arc::clone(&store)));
        let g = Guard::new(GuardSettings::default(), Secret::new("k"), Some(shared));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let account = "alice@example.org";
            for i in 0..10 {
                let Verdict::Ask(t) = g
                    .reserve(account, &Secret::new(format!("guess{i}")), None, 1100 + i)
                    .await
                else {
                    panic!("refused early");
                };
                g.settle(t, true, 1100 + i).await;
            }
            assert!(matches!(
                g.reserve(account, &Secret::new("guess0"), None, 1200).await,
                Verdict::KnownWrong
            ));
            assert!(matches!(
                g.reserve(account, &Secret::new("new"), None, 1200).await,
                Verdict::Refused {
                    first_in_window: true,
                    ..
                }
            ));
            assert!(matches!(
                g.reserve(account, &Secret::new("new"), None, 1201).await,
                Verdict::Refused {
                    first_in_window: false,
                    ..
                }
            ));
            // No password is stored, only digests.
            let stored: Vec<String> = store
                .guard_failures(Scope::Jid, account, 0)
                .unwrap()
                .into_iter()
                .map(|f| f.digest)
                .collect();
            assert_eq!(stored.len(), 10);
            assert!(stored.iter().all(|d| d.len() == 32 && !d.contains("guess")));
        });
    }
}
