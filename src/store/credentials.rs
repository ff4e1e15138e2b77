//! Several cached credentials per JID (one app password per device): the `authcache` row holds the most recently verified one, exactly as the original would, and our table `authcredential` holds the others.
//!
//! The rules that keep the original working on the same file:
//!
//! - `authcache` always holds the credential last verified by a back end,
//!   written with the original's own statements, so the original (which
//!   reads only that table) still logs that device in.
//! - A row of `authcredential` counts only while the `authcache` row of its
//!   JID exists **and** still has the `firstauth` text it had when the row
//!   was added (copied verbatim into `authcredential.firstauth`). The
//!   original deletes the `authcache` row in `xcdeluser`, and gives a new
//!   row a new `firstauth` (now, with microseconds); either way our rows of
//!   that JID stop counting at once, and our next write for the JID
//!   removes them. An UPDATE by the original (a new password verified, or
//!   a login) keeps `firstauth`, so the other devices keep working.
//! - Our own deletion of the `authcache` credential promotes the most
//!   recently verified of our rows into it (an UPDATE, so columns added by
//!   administrators survive); only the last credential deletes the row.

use rusqlite::{Connection, OptionalExtension, Row};

use super::{format_timestamp, text, timestamp, CacheEntry, Store, StoreError};

/// The `authcache` row of a JID as stored: its hash.
struct Primary {
    pwhash: Option<String>,
}

impl Store {
    /// Every credential of `jid` that counts: the `authcache` row first,
    /// then ours, most recently used first. Empty without an `authcache`
    /// row.
    pub fn credentials(&self, jid: &str) -> Result<Vec<CacheEntry>, StoreError> {
        // One statement, so both tables are read from one snapshot.
        self.read(|c| {
            let mut rows: Vec<(i64, CacheEntry)> = c
                .prepare_cached(
                    "SELECT 0, jid, pwhash, firstauth, remoteauth, anyauth FROM authcache \
                     WHERE jid = ?1 \
                     UNION ALL \
                     SELECT 1, c.jid, c.pwhash, a.firstauth, c.remoteauth, c.anyauth \
                     FROM authcredential c JOIN authcache a \
                       ON a.jid = c.jid AND c.firstauth IS a.firstauth \
                     WHERE c.jid = ?1 AND c.pwhash IS NOT a.pwhash",
                )?
                .query_map([jid], |r| Ok((r.get::<_, i64>(0)?, credential(r, 1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            rows.sort_by(|(ka, a), (kb, b)| ka.cmp(kb).then(b.anyauth.cmp(&a.anyauth)));
            Ok(rows.into_iter().map(|(_, e)| e).collect())
        })
    }

    /// Records a back-end verification of `pwhash` for `jid`: it becomes
    /// the `authcache` credential (`remoteauth = anyauth = now`,
    /// `firstauth` kept, as the original writes it); the credential it
    /// displaces moves to our table; `replaces` (an older hash of the same
    /// password) is dropped; then, beyond `keep` credentials in all, the
    /// least recently used of ours go.
    pub fn credential_store(
        &self,
        jid: &str,
        pwhash: &str,
        replaces: Option<&str>,
        now: i64,
        keep: usize,
    ) -> Result<(), StoreError> {
        let ts = format_timestamp(now);
        self.write(|c| {
            let Some(primary) = primary(c, jid)? else {
                // Rows of ours without an authcache row are orphans.
                c.prepare_cached("DELETE FROM authcredential WHERE jid = ?1")?
                    .execute([jid])?;
                c.prepare_cached(
                    "INSERT INTO authcache (jid, pwhash, firstauth, remoteauth, anyauth) \
                     VALUES (?1, ?2, ?3, ?3, ?3)",
                )?
                .execute([jid, pwhash, &ts])?;
                return Ok(());
            };
            drop_orphans(c, jid)?;
            let displaced = primary
                .pwhash
                .as_deref()
                .is_some_and(|old| old != pwhash && Some(old) != replaces);
            if displaced {
                c.prepare_cached(
                    "INSERT INTO authcredential (jid, pwhash, firstauth, remoteauth, anyauth) \
                     SELECT jid, pwhash, firstauth, remoteauth, anyauth FROM authcache \
                     WHERE jid = ?1 \
                     ON CONFLICT (jid, pwhash) DO UPDATE SET firstauth = excluded.firstauth, \
                     remoteauth = excluded.remoteauth, anyauth = excluded.anyauth",
                )?
                .execute([jid])?;
            }
            c.prepare_cached(
                "DELETE FROM authcredential WHERE jid = ?1 AND (pwhash = ?2 OR pwhash IS ?3)",
            )?
            .execute(rusqlite::params![jid, pwhash, replaces])?;
            c.prepare_cached(
                "UPDATE authcache SET pwhash = ?2, remoteauth = ?3, anyauth = ?3 WHERE jid = ?1",
            )?
            .execute([jid, pwhash, &ts])?;
            // Keep the `keep - 1` most recently used of ours (text order is
            // time order for the stored forms; NULL sorts first, as "very
            // old").
            let ours = i64::try_from(keep.max(1) - 1).unwrap_or(i64::MAX);
            c.prepare_cached(
                "DELETE FROM authcredential WHERE jid = ?1 AND rowid NOT IN \
                 (SELECT rowid FROM authcredential WHERE jid = ?1 \
                  ORDER BY anyauth DESC, remoteauth DESC LIMIT ?2)",
            )?
            .execute(rusqlite::params![jid, ours])?;
            Ok(())
        })
    }

    /// Records a login answered by the credential `pwhash` of `jid`:
    /// `anyauth = now`. False if there is no such credential.
    pub fn credential_touch(&self, jid: &str, pwhash: &str, now: i64) -> Result<bool, StoreError> {
        let ts = format_timestamp(now);
        self.write(|c| {
            let n = c
                .prepare_cached("UPDATE authcache SET anyauth = ?3 WHERE jid = ?1 AND pwhash = ?2")?
                .execute([jid, pwhash, &ts])?;
            if n > 0 {
                return Ok(true);
            }
            let n = c
                .prepare_cached(
                    "UPDATE authcredential SET anyauth = ?3 WHERE jid = ?1 AND pwhash = ?2 \
                     AND EXISTS (SELECT 1 FROM authcache a WHERE a.jid = ?1 \
                                 AND a.firstauth IS authcredential.firstauth)",
                )?
                .execute([jid, pwhash, &ts])?;
            Ok(n > 0)
        })
    }

    /// Deletes the credential `pwhash` of `jid`, if it is still stored;
    /// the other credentials stay. When it is the `authcache` one, the most
    /// recently verified of ours takes its place. True if deleted.
    pub fn credential_delete(&self, jid: &str, pwhash: &str) -> Result<bool, StoreError> {
        self.write(|c| {
            let Some(primary) = primary(c, jid)? else {
                c.prepare_cached("DELETE FROM authcredential WHERE jid = ?1")?
                    .execute([jid])?;
                return Ok(false);
            };
            drop_orphans(c, jid)?;
            if primary.pwhash.as_deref() != Some(pwhash) {
                let n = c
                    .prepare_cached("DELETE FROM authcredential WHERE jid = ?1 AND pwhash = ?2")?
                    .execute([jid, pwhash])?;
                return Ok(n > 0);
            }
            let successor: Option<(i64, String)> = c
                .prepare_cached(
                    "SELECT rowid, pwhash FROM authcredential WHERE jid = ?1 \
                     ORDER BY remoteauth DESC, anyauth DESC LIMIT 1",
                )?
                .query_row([jid], |r| Ok((r.get(0)?, text(r, 1)?.unwrap_or_default())))
                .optional()?;
            match successor {
                Some((rowid, _)) => {
                    c.prepare_cached(
                        "UPDATE authcache SET (pwhash, remoteauth, anyauth) = \
                         (SELECT pwhash, remoteauth, anyauth FROM authcredential WHERE rowid = ?2) \
                         WHERE jid = ?1",
                    )?
                    .execute(rusqlite::params![jid, rowid])?;
                    c.prepare_cached("DELETE FROM authcredential WHERE rowid = ?1")?
                        .execute([rowid])?;
                }
                None => {
                    c.prepare_cached("DELETE FROM authcache WHERE jid = ?1")?
                        .execute([jid])?;
                }
            }
            Ok(true)
        })
    }

    /// Every credential that counts, of every JID: sorted by JID, each
    /// JID's `authcache` one first, then ours, most recently verified
    /// first.
    pub fn credential_list(&self) -> Result<Vec<CacheEntry>, StoreError> {
        self.read(|c| {
            let mut rows: Vec<(i64, CacheEntry)> = c
                .prepare_cached(
                    "SELECT 0, jid, pwhash, firstauth, remoteauth, anyauth FROM authcache \
                     UNION ALL \
                     SELECT 1, c.jid, c.pwhash, a.firstauth, c.remoteauth, c.anyauth \
                     FROM authcredential c JOIN authcache a \
                       ON a.jid = c.jid AND c.firstauth IS a.firstauth \
                     WHERE c.pwhash IS NOT a.pwhash",
                )?
                .query_map([], |r| Ok((r.get::<_, i64>(0)?, credential(r, 1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            rows.sort_by(|(ka, a), (kb, b)| {
                a.jid
                    .cmp(&b.jid)
                    .then(ka.cmp(kb))
                    .then(b.remoteauth.cmp(&a.remoteauth))
            });
            Ok(rows.into_iter().map(|(_, e)| e).collect())
        })
    }
}

/// The `authcache` row of `jid` as stored.
fn primary(c: &Connection, jid: &str) -> rusqlite::Result<Option<Primary>> {
    c.prepare_cached("SELECT pwhash FROM authcache WHERE jid = ?1")?
        .query_row([jid], |r| {
            Ok(Primary {
                pwhash: text(r, 0)?,
            })
        })
        .optional()
}

/// Deletes our rows of `jid` left from an `authcache` row that is gone.
fn drop_orphans(c: &Connection, jid: &str) -> rusqlite::Result<usize> {
    // Compared as stored: the original's `firstauth` has microseconds.
    c.prepare_cached(
        "DELETE FROM authcredential WHERE jid = ?1 AND firstauth IS NOT \
         (SELECT firstauth FROM authcache WHERE jid = ?1)",
    )?
    .execute([jid])
}

/// A credential selected as jid, pwhash, firstauth, remoteauth, anyauth
/// from column `at` on.
fn credential(r: &Row<'_>, at: usize) -> rusqlite::Result<CacheEntry> {
    Ok(CacheEntry {
        jid: text(r, at)?.unwrap_or_default(),
        pwhash: text(r, at + 1)?.unwrap_or_default(),
        firstauth: timestamp(r, at + 2)?.unwrap_or(0),
        remoteauth: timestamp(r, at + 3)?.unwrap_or(0),
        anyauth: timestamp(r, at + 4)?.unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use crate::store::tests::mem;
    use crate::store::Store;

    fn hashes(store: &Store, jid: &str) -> Vec<String> {
        store
            .credentials(jid)
            .unwrap()
            .into_iter()
            .map(|e| e.pwhash)
            .collect()
    }

    fn authcache_hash(store: &Store, jid: &str) -> Option<String> {
        store.cache_get(jid).unwrap().map(|e| e.pwhash)
    }

    #[test]
    fn authcache_holds_the_most_recently_verified_and_ours_the_others() {
        let s = mem();
        s.credential_store("u@d", "h1", None, 10, 8).unwrap();
        s.credential_store("u@d", "h2", None, 20, 8).unwrap();
        assert_eq!(authcache_hash(&s, "u@d").as_deref(), Some("h2"));
        assert!(s.credential_touch("u@d", "h1", 30).unwrap());
        assert!(!s.credential_touch("u@d", "nope", 30).unwrap());
        // Most recently used first, after the authcache one.
        assert_eq!(hashes(&s, "u@d"), ["h2", "h1"]);
        let all = s.credentials("u@d").unwrap();
        assert_eq!(
            all.iter()
                .map(|e| (e.firstauth, e.remoteauth, e.anyauth))
                .collect::<Vec<_>>(),
            [(10, 20, 20), (10, 10, 30)]
        );
        // Verified again: h1 goes back into authcache, h2 moves to ours.
        s.credential_store("u@d", "h1", None, 40, 8).unwrap();
        assert_eq!(authcache_hash(&s, "u@d").as_deref(), Some("h1"));
        assert_eq!(s.credentials("u@d").unwrap().len(), 2);
        // A rehash replaces the old hash of the same password.
        s.credential_store("u@d", "h1-new", Some("h1"), 50, 8)
            .unwrap();
        let mut left = hashes(&s, "u@d");
        left.sort();
        assert_eq!(left, ["h1-new", "h2"]);
        let listed: Vec<(String, String)> = s
            .credential_list()
            .unwrap()
            .into_iter()
            .map(|e| (e.jid, e.pwhash))
            .collect();
        assert_eq!(
            listed,
            [("u@d".into(), "h1-new".into()), ("u@d".into(), "h2".into())]
        );
    }

    #[test]
    fn beyond_the_bound_the_least_recently_used_goes() {
        let s = mem();
        for i in 0..4 {
            s.credential_store("u@d", &format!("h{i}"), None, 10 * i, 3)
                .unwrap();
        }
        // h0 was the least recently used.
        let mut left = hashes(&s, "u@d");
        left.sort();
        assert_eq!(left, ["h1", "h2", "h3"]);
        assert!(s.credential_touch("u@d", "h1", 100).unwrap());
        s.credential_store("u@d", "h4", None, 110, 3).unwrap();
        let mut left = hashes(&s, "u@d");
        left.sort();
        assert_eq!(left, ["h1", "h3", "h4"], "h2 was now the oldest in use");
    }

    #[test]
    fn deleting_one_credential_keeps_the_others_and_promotes_into_authcache() {
        let s = mem();
        s.credential_store("u@d", "h1", None, 10, 8).unwrap();
        s.credential_store("u@d", "h2", None, 20, 8).unwrap();
        s.credential_store("u@d", "h3", None, 30, 8).unwrap();
        assert!(s.credential_delete("u@d", "h1").unwrap());
        assert!(!s.credential_delete("u@d", "h1").unwrap());
        assert_eq!(authcache_hash(&s, "u@d").as_deref(), Some("h3"));
        // The authcache one: the most recently verified of ours replaces it.
        assert!(s.credential_delete("u@d", "h3").unwrap());
        let row = s.cache_get("u@d").unwrap().unwrap();
        assert_eq!(
            (row.pwhash.as_str(), row.firstauth, row.remoteauth),
            ("h2", 10, 20)
        );
        assert_eq!(hashes(&s, "u@d"), ["h2"]);
        // The last one deletes the row.
        assert!(s.credential_delete("u@d", "h2").unwrap());
        assert_eq!(s.cache_get("u@d").unwrap(), None);
        assert_eq!(s.cache_count().unwrap(), 0);
    }

    #[test]
    fn a_row_deleted_or_recreated_by_the_original_takes_our_credentials_with_it() {
        let s = mem();
        s.credential_store("u@d", "h1", None, 10, 8).unwrap();
        s.credential_store("u@d", "h2", None, 20, 8).unwrap();
        // The original's xcdeluser: only authcache.
        s.conn()
            .execute("DELETE FROM authcache WHERE jid = 'u@d'", [])
            .unwrap();
        assert!(s.credentials("u@d").unwrap().is_empty());
        assert!(!s.credential_touch("u@d", "h1", 30).unwrap());
        assert_eq!(s.credential_list().unwrap(), []);

        // The original logs the user in again: a new row, new firstauth.
        s.conn()
            .execute(
                "INSERT OR IGNORE INTO authcache (jid, firstauth) \
                 VALUES ('u@d', '2030-01-01 00:00:00.123456')",
                [],
            )
            .unwrap();
        s.conn()
            .execute(
                "UPDATE authcache SET pwhash = 'py', remoteauth = '2030-01-01 00:00:00.123456', \
                 anyauth = '2030-01-01 00:00:00.123456' WHERE jid = 'u@d'",
                [],
            )
            .unwrap();
        assert_eq!(hashes(&s, "u@d"), ["py"], "the old ones stay dead");
        // Our next write for the JID removes them for good.
        s.credential_store("u@d", "h3", None, 1_900_000_000, 8)
            .unwrap();
        let mut left = hashes(&s, "u@d");
        left.sort();
        assert_eq!(left, ["h3", "py"]);
        let ours: i64 = s
            .conn()
            .query_row("SELECT COUNT(*) FROM authcredential", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ours, 1, "only py, moved out of authcache");
    }

    #[test]
    fn the_originals_update_keeps_the_other_devices() {
        let s = mem();
        s.credential_store("u@d", "h1", None, 10, 8).unwrap();
        s.credential_store("u@d", "h2", None, 20, 8).unwrap();
        // The original verifies another password: it overwrites the row,
        // keeping firstauth.
        s.conn()
            .execute(
                "UPDATE authcache SET pwhash = 'py', remoteauth = '1970-01-01 00:00:30', \
                 anyauth = '1970-01-01 00:00:30' WHERE jid = 'u@d'",
                [],
            )
            .unwrap();
        let mut left = hashes(&s, "u@d");
        left.sort();
        assert_eq!(left, ["h1", "py"], "h2 was only in authcache");
    }

    #[test]
    fn flush_and_purges_cover_our_table() {
        let s = mem();
        let ours = |s: &Store| -> i64 {
            s.conn()
                .query_row("SELECT COUNT(*) FROM authcredential", [], |r| r.get(0))
                .unwrap()
        };
        for jid in ["a@d", "b@d", "c@e", "d@e"] {
            s.credential_store(jid, "h1", None, 10, 8).unwrap();
            s.credential_store(jid, "h2", None, 20, 8).unwrap();
        }
        assert_eq!(ours(&s), 4);
        assert!(s.cache_delete("a@d").unwrap());
        assert_eq!(ours(&s), 3);
        assert_eq!(s.delete_user("b@d").unwrap().authcache, 1);
        assert_eq!(ours(&s), 2);
        assert_eq!(s.delete_host("e").unwrap().authcache, 2);
        assert_eq!(ours(&s), 0);
        s.credential_store("x@d", "h1", None, 10, 8).unwrap();
        s.credential_store("x@d", "h2", None, 20, 8).unwrap();
        assert_eq!(s.cache_flush().unwrap(), 1);
        assert_eq!(ours(&s), 0);
    }
}
