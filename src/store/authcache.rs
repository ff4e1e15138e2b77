//! Queries of the `authcache` table: bcrypt hashes of the passwords the back end last accepted (SPEC §6).

use rusqlite::{OptionalExtension, Row};

use super::{format_timestamp, text, timestamp, Store, StoreError};

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

impl Store {
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

    /// Deletes the cache entry of `jid`, all its credentials; true if it
    /// existed.
    pub fn cache_delete(&self, jid: &str) -> Result<bool, StoreError> {
        self.write(|c| {
            c.prepare_cached("DELETE FROM authcredential WHERE jid = ?1")?
                .execute([jid])?;
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

    /// Deletes every cache entry, with all credentials; returns how many
    /// entries (JIDs) there were.
    pub fn cache_flush(&self) -> Result<usize, StoreError> {
        self.write(|c| {
            c.execute("DELETE FROM authcredential", [])?;
            c.execute("DELETE FROM authcache", [])
        })
    }

    /// Number of cache entries.
    pub fn cache_count(&self) -> Result<usize, StoreError> {
        self.read(|c| {
            let n: i64 = c.query_row("SELECT COUNT(*) FROM authcache", [], |r| r.get(0))?;
            Ok(usize::try_from(n).unwrap_or(0))
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{mem, strings};

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
}
