//! The password cache of SPEC §6: which cached credentials count, when,
//! and how they are checked without stalling anyone. Storage is either
//! process memory or the SQLite database ([`crate::store`]); passwords are
//! only ever kept as bcrypt hashes there.
//!
//! bcrypt at cost 12 takes hundreds of milliseconds, so every hash and
//! check runs on the blocking pool, and a per-process memo remembers which
//! password (as an HMAC under a random per-process key, never the password
//! itself) was last found to match which stored hash. A repeated login
//! then costs one lookup instead of one bcrypt check; the memo never
//! outlives the entry, because it is only consulted for the exact hash
//! stored at that moment, and the entry's own timestamps still decide
//! whether it counts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tracing::warn;

use crate::secret::Secret;
use crate::store::{CacheEntry, Store, StoreError};

/// bcrypt looks at the first 72 bytes only; longer passwords are never
/// cached (two passwords sharing a 72-byte prefix would match).
pub const BCRYPT_MAX_PASSWORD: usize = 72;

/// `anyauth` is rewritten at most this often per user: it only matters
/// against the query TTL (an hour by default), and skipping the write
/// keeps repeated logins from costing a database transaction each.
pub const ANYAUTH_GRANULARITY: i64 = 60;

/// At most this many users are remembered in the memo; past it, the memo
/// starts afresh (it is only an accelerator).
const MEMO_CAPACITY: usize = 100_000;

/// The TTLs of SPEC §6, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ttls {
    /// A cache hit needs a query (`anyauth`) younger than this.
    pub query: i64,
    /// A cache hit needs a back-end verification younger than this.
    pub verification: i64,
    /// While the back end is unreachable, a verification younger than this
    /// still counts.
    pub unreachable: i64,
}

/// One cached credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// bcrypt hash.
    pub pwhash: String,
    /// First time this JID was cached (kept across refreshes).
    pub firstauth: i64,
    /// Last back-end verification.
    pub remoteauth: i64,
    /// Last successful login of any kind that used the entry.
    pub anyauth: i64,
}

/// Where entries live. Methods block (SQLite); the cache calls them on the
/// blocking pool when [`CacheStorage::blocks`] says so.
pub trait CacheStorage: Send + Sync {
    /// The entry of `jid`.
    fn get(&self, jid: &str) -> Result<Option<Entry>, StoreError>;
    /// Inserts or refreshes: new hash, `remoteauth = anyauth = now`,
    /// `firstauth` kept.
    fn store(&self, jid: &str, pwhash: &str, now: i64) -> Result<(), StoreError>;
    /// `anyauth = now`.
    fn touch(&self, jid: &str, now: i64) -> Result<(), StoreError>;
    /// Deletes the entry if it still holds `pwhash`.
    fn delete_if_hash(&self, jid: &str, pwhash: &str) -> Result<bool, StoreError>;
    /// True when calls may block on I/O or locks.
    fn blocks(&self) -> bool;
}

/// Entries in process memory (`--cache-storage memory`).
#[derive(Debug, Default)]
pub struct MemoryStorage {
    entries: Mutex<HashMap<String, Entry>>,
}

impl MemoryStorage {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding this lock cannot leave an entry half
        // written (every update is one insert), so the data stays usable.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl CacheStorage for MemoryStorage {
    fn get(&self, jid: &str) -> Result<Option<Entry>, StoreError> {
        Ok(self.map().get(jid).cloned())
    }

    fn store(&self, jid: &str, pwhash: &str, now: i64) -> Result<(), StoreError> {
        let mut map = self.map();
        let firstauth = map.get(jid).map_or(now, |e| e.firstauth);
        map.insert(
            jid.to_owned(),
            Entry {
                pwhash: pwhash.to_owned(),
                firstauth,
                remoteauth: now,
                anyauth: now,
            },
        );
        Ok(())
    }

    fn touch(&self, jid: &str, now: i64) -> Result<(), StoreError> {
        if let Some(e) = self.map().get_mut(jid) {
            e.anyauth = now;
        }
        Ok(())
    }

    fn delete_if_hash(&self, jid: &str, pwhash: &str) -> Result<bool, StoreError> {
        let mut map = self.map();
        if map.get(jid).is_some_and(|e| e.pwhash == pwhash) {
            map.remove(jid);
            return Ok(true);
        }
        Ok(false)
    }

    fn blocks(&self) -> bool {
        false
    }
}

impl CacheStorage for Store {
    fn get(&self, jid: &str) -> Result<Option<Entry>, StoreError> {
        Ok(self.cache_get(jid)?.map(|e: CacheEntry| Entry {
            pwhash: e.pwhash,
            firstauth: e.firstauth,
            remoteauth: e.remoteauth,
            anyauth: e.anyauth,
        }))
    }

    fn store(&self, jid: &str, pwhash: &str, now: i64) -> Result<(), StoreError> {
        self.cache_store(jid, pwhash, now)
    }

    fn touch(&self, jid: &str, now: i64) -> Result<(), StoreError> {
        self.cache_touch(jid, now).map(|_| ())
    }

    fn delete_if_hash(&self, jid: &str, pwhash: &str) -> Result<bool, StoreError> {
        self.cache_delete_if_hash(jid, pwhash)
    }

    fn blocks(&self) -> bool {
        true
    }
}

/// What the memo knows about one user: the keyed digest of a password and
/// the stored hash it was compared with, for the last match and the last
/// mismatch.
#[derive(Debug, Clone, Default)]
struct MemoEntry {
    good: Option<([u8; 32], String)>,
    bad: Option<([u8; 32], String)>,
}

/// The cache: policy on top of a [`CacheStorage`].
pub struct Cache {
    storage: Arc<dyn CacheStorage>,
    ttls: Ttls,
    rounds: u32,
    memo_key: [u8; 32],
    memo: Mutex<HashMap<String, MemoEntry>>,
}

impl Cache {
    /// A cache over `storage`, hashing new entries at bcrypt cost `rounds`.
    pub fn new(storage: Arc<dyn CacheStorage>, ttls: Ttls, rounds: u32) -> Cache {
        let mut memo_key = [0u8; 32];
        if getrandom::getrandom(&mut memo_key).is_err() {
            // Without randomness the memo would be predictable; do without
            // it rather than weaken it (every check then runs bcrypt).
            warn!("no random numbers available; the cache memo is off");
        }
        Cache {
            storage,
            ttls,
            rounds,
            memo_key,
            memo: Mutex::new(HashMap::new()),
        }
    }

    /// The TTLs in force.
    pub fn ttls(&self) -> Ttls {
        self.ttls
    }

    /// True when `password` may be cached at all.
    pub fn cacheable(password: &Secret) -> bool {
        password.expose().len() <= BCRYPT_MAX_PASSWORD
    }

    /// True when `entry` may answer without the back end (step 2).
    pub fn fresh(&self, entry: &Entry, now: i64) -> bool {
        now - entry.anyauth < self.ttls.query && now - entry.remoteauth < self.ttls.verification
    }

    /// True when `entry` may answer while the back end is unreachable.
    pub fn usable_while_unreachable(&self, entry: &Entry, now: i64) -> bool {
        now - entry.remoteauth < self.ttls.unreachable
    }

    /// The entry of `jid`; a storage failure is logged and treated as "no
    /// entry" (the back end decides then).
    pub async fn get(&self, jid: &str) -> Option<Entry> {
        let result = self.run(jid, |s, jid| s.get(jid)).await;
        match result {
            Ok(entry) => entry,
            Err(e) => {
                warn!("cache lookup for {jid} failed: {e}");
                None
            }
        }
    }

    /// Does `password` match `entry`'s hash? Memo first, then bcrypt on the
    /// blocking pool.
    pub async fn matches(&self, jid: &str, entry: &Entry, password: &Secret) -> bool {
        let digest = self.digest(password);
        if let Some(known) = self.memo_lookup(jid, &digest, &entry.pwhash) {
            return known;
        }
        let hash = entry.pwhash.clone();
        let pw = password.clone();
        let ok = match tokio::task::spawn_blocking(move || bcrypt::verify(pw.expose(), &hash)).await
        {
            Ok(Ok(ok)) => ok,
            Ok(Err(e)) => {
                warn!("cached hash of {jid} is unusable ({e}); ignoring it");
                false
            }
            Err(_) => false,
        };
        self.memo_store(jid, digest, &entry.pwhash, ok);
        ok
    }

    /// After a back-end success: hash the password and store it with
    /// `remoteauth = anyauth = now`.
    pub async fn remember(&self, jid: &str, password: &Secret, now: i64) {
        if !Cache::cacheable(password) {
            return;
        }
        let digest = self.digest(password);
        let pw = password.clone();
        let rounds = self.rounds;
        let hash =
            match tokio::task::spawn_blocking(move || bcrypt::hash(pw.expose(), rounds)).await {
                Ok(Ok(hash)) => hash,
                Ok(Err(e)) => {
                    warn!("cannot hash the password of {jid} for the cache: {e}");
                    return;
                }
                Err(_) => return,
            };
        let stored = hash.clone();
        match self
            .run(jid, move |s, jid| s.store(jid, &stored, now))
            .await
        {
            Ok(()) => self.memo_store(jid, digest, &hash, true),
            Err(e) => warn!("cannot cache the login of {jid}: {e}"),
        }
    }

    /// Records a login served from the entry (`anyauth = now`), at most
    /// once per [`ANYAUTH_GRANULARITY`].
    pub async fn touch(&self, jid: &str, entry: &Entry, now: i64) {
        if now - entry.anyauth < ANYAUTH_GRANULARITY && now >= entry.anyauth {
            return;
        }
        if let Err(e) = self.run(jid, move |s, jid| s.touch(jid, now)).await {
            warn!("cannot update the cache entry of {jid}: {e}");
        }
    }

    /// Deletes `entry` of `jid` if it is still the stored one (used when the
    /// back end rejected the password that matches it: the password was
    /// changed or revoked).
    pub async fn forget(&self, jid: &str, entry: &Entry) {
        let hash = entry.pwhash.clone();
        match self
            .run(jid, move |s, jid| s.delete_if_hash(jid, &hash))
            .await
        {
            Ok(_) => {
                self.memo_map().remove(jid);
            }
            Err(e) => warn!("cannot delete the cache entry of {jid}: {e}"),
        }
    }

    /// Runs a storage call, on the blocking pool when it may block.
    async fn run<T, F>(&self, jid: &str, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn CacheStorage, &str) -> Result<T, StoreError> + Send + 'static,
    {
        if !self.storage.blocks() {
            return f(self.storage.as_ref(), jid);
        }
        let storage = Arc::clone(&self.storage);
        let jid = jid.to_owned();
        tokio::task::spawn_blocking(move || f(storage.as_ref(), &jid))
            .await
            .map_err(|e| StoreError::Io(format!("cache task failed: {e}")))?
    }

    fn digest(&self, password: &Secret) -> [u8; 32] {
        let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(&self.memo_key) {
            Ok(mac) => mac,
            Err(_) => return [0; 32],
        };
        mac.update(password.expose().as_bytes());
        mac.finalize().into_bytes().into()
    }

    fn memo_map(&self) -> std::sync::MutexGuard<'_, HashMap<String, MemoEntry>> {
        self.memo.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn memo_lookup(&self, jid: &str, digest: &[u8; 32], pwhash: &str) -> Option<bool> {
        if self.memo_key == [0; 32] {
            return None;
        }
        let memo = self.memo_map();
        let entry = memo.get(jid)?;
        let same = |slot: &Option<([u8; 32], String)>| {
            slot.as_ref()
                .is_some_and(|(d, h)| h == pwhash && bool::from(d.ct_eq(digest)))
        };
        if same(&entry.good) {
            Some(true)
        } else if same(&entry.bad) {
            Some(false)
        } else {
            None
        }
    }

    fn memo_store(&self, jid: &str, digest: [u8; 32], pwhash: &str, ok: bool) {
        if self.memo_key == [0; 32] {
            return;
        }
        let mut memo = self.memo_map();
        if memo.len() >= MEMO_CAPACITY && !memo.contains_key(jid) {
            memo.clear();
        }
        let slot = memo.entry(jid.to_owned()).or_default();
        let value = Some((digest, pwhash.to_owned()));
        if ok {
            slot.good = value;
        } else {
            slot.bad = value;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> Cache {
        Cache::new(
            Arc::new(MemoryStorage::default()),
            Ttls {
                query: 3600,
                verification: 86400,
                unreachable: 604800,
            },
            4,
        )
    }

    fn entry(pwhash: &str) -> Entry {
        Entry {
            pwhash: pwhash.into(),
            firstauth: 0,
            remoteauth: 0,
            anyauth: 0,
        }
    }

    #[tokio::test]
    async fn remembered_password_is_answered_by_the_memo_for_that_hash_only() {
        let c = cache();
        let pw = Secret::new("correct horse");
        c.remember("a@d", &pw, 10).await;
        let stored = c.get("a@d").await.expect("stored");
        assert!(stored.pwhash.starts_with("$2b$04$"));
        assert!(c.matches("a@d", &stored, &pw).await);
        assert!(!c.matches("a@d", &stored, &Secret::new("wrong")).await);

        // The memo answers without bcrypt: for a "hash" bcrypt cannot even
        // parse, only the memo can say yes...
        c.memo_store("b@d", c.digest(&pw), "unparseable", true);
        assert!(c.matches("b@d", &entry("unparseable"), &pw).await);
        // ...and only for the exact stored hash and password it saw.
        assert!(!c.matches("b@d", &entry("unparseable-too"), &pw).await);
        assert!(
            !c.matches("b@d", &entry("unparseable"), &Secret::new("other"))
                .await
        );
    }

    #[tokio::test]
    async fn forgetting_an_entry_drops_its_memo() {
        let c = cache();
        let pw = Secret::new("pw");
        c.remember("a@d", &pw, 10).await;
        let stored = c.get("a@d").await.expect("stored");
        c.forget("a@d", &stored).await;
        assert_eq!(c.get("a@d").await, None);
        assert!(c.memo_map().get("a@d").is_none());
    }

    #[test]
    fn long_passwords_are_not_cacheable() {
        assert!(Cache::cacheable(&Secret::new("x".repeat(72))));
        assert!(!Cache::cacheable(&Secret::new("x".repeat(73))));
    }

    #[test]
    fn ttl_rules() {
        let c = cache();
        let e = Entry {
            pwhash: String::new(),
            firstauth: 0,
            remoteauth: 1000,
            anyauth: 2000,
        };
        assert!(c.fresh(&e, 2000 + 3599));
        assert!(!c.fresh(&e, 2000 + 3600), "query TTL");
        let old_check = Entry {
            anyauth: 90_000,
            ..e.clone()
        };
        assert!(!c.fresh(&old_check, 1000 + 86400), "verification TTL");
        assert!(c.usable_while_unreachable(&e, 1000 + 604_799));
        assert!(!c.usable_while_unreachable(&e, 1000 + 604_800));
    }
}
