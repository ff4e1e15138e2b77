//! Every serving process's metric totals (our `processtotals` table), so that `xcauth stats` can sum a pool of ejabberd helpers that have no port each.
//!
//! `processtotals (process, pid, started, updated, totals)`, primary key
//! `process`: one row per running process (key `PID-STARTMILLIS`, so a
//! reused pid is another process), written every few seconds with its
//! totals (opaque text to this file; `metrics::totals` says what it holds),
//! plus one row [`EXITED`] holding the folded sum of every process that
//! is gone. A process folds its own row into [`EXITED`] when it exits;
//! rows whose process stopped writing (killed, crashed) are folded by the
//! next writer once they are older than the caller's limit, and the
//! oldest rows beyond [`MAX_PROCESS_ROWS`] too. So the table holds at most
//! that many rows plus one, whatever happens to the processes.

use rusqlite::{params, OptionalExtension};

use super::time::format_timestamp;
use super::{text, timestamp, Store, StoreError};

/// The key of the row that holds the sum of every process gone.
pub const EXITED: &str = "exited";

/// Process rows kept at most; past it the least recently written are
/// folded into [`EXITED`]. ejabberd pools are a few dozen processes.
pub const MAX_PROCESS_ROWS: usize = 1000;

/// One row of `processtotals`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessTotals {
    /// `PID-STARTMILLIS`, or [`EXITED`].
    pub process: String,
    /// Process id (0 for [`EXITED`]).
    pub pid: i64,
    /// When the process started (for [`EXITED`]: the earliest start folded
    /// into it).
    pub started: i64,
    /// When the row was last written.
    pub updated: i64,
    /// The totals, as `metrics::totals` writes them.
    pub totals: String,
}

/// Adds the totals of gone rows (second argument) to the [`EXITED`] row's
/// (first argument, `None` when there is none yet); returns the new text.
pub type Fold<'a> = &'a dyn Fn(Option<&str>, &[&str]) -> String;

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ProcessTotals> {
    Ok(ProcessTotals {
        process: text(r, 0)?.unwrap_or_default(),
        pid: r.get::<_, Option<i64>>(1)?.unwrap_or(0),
        started: timestamp(r, 2)?.unwrap_or(0),
        updated: timestamp(r, 3)?.unwrap_or(0),
        totals: text(r, 4)?.unwrap_or_default(),
    })
}

const COLUMNS: &str = "process, pid, started, updated, totals";

impl Store {
    /// Writes `own` (this process's row) and folds the rows of processes
    /// that last wrote before `stale_before` (and the oldest beyond
    /// [`MAX_PROCESS_ROWS`]) into [`EXITED`] with `fold`. Returns whether
    /// `own`'s row was still there: false when it was new, or when another
    /// process folded it meanwhile (this one then went silent too long).
    pub fn totals_write(
        &self,
        own: &ProcessTotals,
        stale_before: i64,
        fold: Fold<'_>,
    ) -> Result<bool, StoreError> {
        self.write(|c| {
            let updated = c.execute(
                "UPDATE processtotals SET updated = ?2, totals = ?3 WHERE process = ?1",
                params![own.process, format_timestamp(own.updated), own.totals],
            )?;
            if updated == 0 {
                c.execute(
                    "INSERT INTO processtotals (process, pid, started, updated, totals) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        own.process,
                        own.pid,
                        format_timestamp(own.started),
                        format_timestamp(own.updated),
                        own.totals
                    ],
                )?;
            }
            let mut gone: Vec<ProcessTotals> = c
                .prepare(&format!(
                    "SELECT {COLUMNS} FROM processtotals WHERE process <> ?1 AND process <> ?2 \
                     AND updated < ?3"
                ))?
                .query_map(
                    params![EXITED, own.process, format_timestamp(stale_before)],
                    row,
                )?
                .collect::<rusqlite::Result<_>>()?;
            let limit = i64::try_from(MAX_PROCESS_ROWS).unwrap_or(i64::MAX);
            let crowded: Vec<ProcessTotals> = c
                .prepare(&format!(
                    "SELECT {COLUMNS} FROM processtotals WHERE process <> ?1 AND process <> ?2 \
                     ORDER BY updated DESC LIMIT -1 OFFSET ?3"
                ))?
                .query_map(params![EXITED, own.process, limit - 1], row)?
                .collect::<rusqlite::Result<_>>()?;
            for extra in crowded {
                if !gone.iter().any(|g| g.process == extra.process) {
                    gone.push(extra);
                }
            }
            fold_rows(c, &gone, fold)?;
            Ok(updated > 0)
        })
    }

    /// Folds `own` into [`EXITED`] and removes its row: the process exits.
    pub fn totals_retire(&self, own: &ProcessTotals, fold: Fold<'_>) -> Result<(), StoreError> {
        self.write(|c| {
            c.execute(
                "DELETE FROM processtotals WHERE process = ?1",
                params![own.process],
            )?;
            fold_rows(c, std::slice::from_ref(own), fold)
        })
    }

    /// Every row, [`EXITED`] included, oldest start first.
    pub fn totals_all(&self) -> Result<Vec<ProcessTotals>, StoreError> {
        self.read(|c| {
            c.prepare(&format!(
                "SELECT {COLUMNS} FROM processtotals ORDER BY started, process"
            ))?
            .query_map([], row)?
            .collect()
        })
    }
}

/// Adds `gone` to the [`EXITED`] row (creating it) and deletes their rows.
fn fold_rows(
    c: &rusqlite::Connection,
    gone: &[ProcessTotals],
    fold: Fold<'_>,
) -> rusqlite::Result<()> {
    if gone.is_empty() {
        return Ok(());
    }
    let exited: Option<ProcessTotals> = c
        .query_row(
            &format!("SELECT {COLUMNS} FROM processtotals WHERE process = ?1"),
            params![EXITED],
            row,
        )
        .optional()?;
    let texts: Vec<&str> = gone.iter().map(|g| g.totals.as_str()).collect();
    let sum = fold(exited.as_ref().map(|e| e.totals.as_str()), &texts);
    let earliest = gone
        .iter()
        .map(|g| g.started)
        .chain(exited.as_ref().map(|e| e.started))
        .min()
        .unwrap_or(0);
    let latest = gone
        .iter()
        .map(|g| g.updated)
        .chain(exited.as_ref().map(|e| e.updated))
        .max()
        .unwrap_or(0);
    for g in gone {
        c.execute(
            "DELETE FROM processtotals WHERE process = ?1",
            params![g.process],
        )?;
    }
    let changed = c.execute(
        "UPDATE processtotals SET started = ?2, updated = ?3, totals = ?4 WHERE process = ?1",
        params![
            EXITED,
            format_timestamp(earliest),
            format_timestamp(latest),
            sum
        ],
    )?;
    if changed == 0 {
        c.execute(
            "INSERT INTO processtotals (process, pid, started, updated, totals) \
             VALUES (?1, 0, ?2, ?3, ?4)",
            params![
                EXITED,
                format_timestamp(earliest),
                format_timestamp(latest),
                sum
            ],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::mem;

    /// Totals are numbers here; folding adds them.
    fn add(exited: Option<&str>, gone: &[&str]) -> String {
        let base: i64 = exited.map_or(0, |e| e.parse().unwrap());
        let more: i64 = gone.iter().map(|g| g.parse::<i64>().unwrap()).sum();
        (base + more).to_string()
    }

    fn own(process: &str, updated: i64, totals: &str) -> ProcessTotals {
        ProcessTotals {
            process: process.into(),
            pid: 1,
            started: 100,
            updated,
            totals: totals.into(),
        }
    }

    fn rows(store: &Store) -> Vec<(String, String)> {
        store
            .totals_all()
            .unwrap()
            .into_iter()
            .map(|r| (r.process, r.totals))
            .collect()
    }

    #[test]
    fn silent_processes_are_folded_and_exits_retire_their_row() {
        let store = mem();
        assert!(!store.totals_write(&own("a", 1000, "5"), 0, &add).unwrap());
        assert!(store.totals_write(&own("a", 1010, "7"), 0, &add).unwrap());
        assert!(!store.totals_write(&own("b", 1010, "3"), 0, &add).unwrap());
        // b writes at 1100; a last wrote at 1010, before 1050: folded.
        assert!(store
            .totals_write(&own("b", 1100, "4"), 1050, &add)
            .unwrap());
        assert_eq!(
            rows(&store),
            vec![("b".into(), "4".into()), (EXITED.into(), "7".into())]
        );
        // a comes back: its row is gone, which it is told.
        assert!(!store
            .totals_write(&own("a", 1110, "1"), 1050, &add)
            .unwrap());
        store.totals_retire(&own("b", 1120, "6"), &add).unwrap();
        let mut all = rows(&store);
        all.sort();
        assert_eq!(
            all,
            vec![("a".into(), "1".into()), (EXITED.into(), "13".into())]
        );
    }

    #[test]
    fn a_version_4_file_gets_the_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v4.sqlite3");
        drop(Store::open(&path).unwrap());
        {
            let c = rusqlite::Connection::open(&path).unwrap();
            c.execute_batch("DROP TABLE processtotals; PRAGMA user_version = 4;")
                .unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert!(store.totals_all().unwrap().is_empty());
        let version: i64 = store
            .conn()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, crate::store::SCHEMA_VERSION);
    }

    #[test]
    fn the_table_is_bounded() {
        let store = mem();
        for i in 0..(MAX_PROCESS_ROWS + 5) {
            let t = 1000 + i64::try_from(i).unwrap();
            store
                .totals_write(&own(&format!("p{i}"), t, "1"), 0, &add)
                .unwrap();
        }
        let all = rows(&store);
        assert_eq!(all.len(), MAX_PROCESS_ROWS + 1);
        let exited = all.iter().find(|(p, _)| p == EXITED).unwrap();
        assert_eq!(exited.1, "5");
        // The newest writer is never folded.
        let last = format!("p{}", MAX_PROCESS_ROWS + 4);
        assert!(all.iter().any(|(p, _)| *p == last));
    }
}
