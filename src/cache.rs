//! The password cache of SPEC §6: which cached credentials count, when,
//! and how they are checked without stalling anyone. Storage is either
//! process memory or the SQLite database ([`crate::store`]); passwords are
//! only ever kept as bcrypt hashes there.
//!
//! A JID keeps up to [`MAX_CREDENTIALS`] verified credentials (users with
//! a second factor have one app password per device), each with its own
//! `remoteauth` and `anyauth` under the TTLs of SPEC §6; a new one beyond
//! the bound replaces the least recently used. A login first asks the memo
//! about every credential, then runs bcrypt only until one matches, and
//! never on the same credential twice: at most [`MAX_CREDENTIALS`] checks.
//!
//! bcrypt at cost 12 takes hundreds of milliseconds, so every hash and
//! check runs on the process's one bcrypt pool ([`pool`]), login checks
//! ahead of background cache writes, and a per-process memo remembers which
//! password (as an HMAC under a random per-process key, never the password
//! itself) was last found to match which stored hash. A repeated login
//! then costs one lookup instead of one bcrypt check; the memo never
//! outlives the entry, because it is only consulted for the exact hash
//! stored at that moment, and the entry's own timestamps still decide
//! whether it counts. The memo holds at most [`MEMO_CAPACITY`] users; past
//! it, the least recently used eighth goes.

pub mod pool;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use subtle::ConstantTimeEq;
use tracing::{debug, warn};

use crate::secret::Secret;
use crate::store::{CacheEntry, Store, StoreError};
use crate::sync::lock;
use pool::{BcryptPool, PoolError, Priority};

/// bcrypt looks at the first 72 bytes only; longer passwords are never
/// cached (two passwords sharing a 72-byte prefix would match).
pub const BCRYPT_MAX_PASSWORD: usize = 72;

/// `anyauth` is rewritten at most this often per user: it only matters
/// against the query TTL (an hour by default), and skipping the write
/// keeps repeated logins from costing a database transaction each.
pub const ANYAUTH_GRANULARITY: i64 = 60;

/// At most this many users are remembered in the memo (each with at most
/// `2 * MAX_CREDENTIALS` facts of about a hundred bytes); past it, the
/// least recently used eighth is forgotten (the memo is only an
/// accelerator).
pub const MEMO_CAPACITY: usize = 100_000;

/// At most this many verified credentials are kept per JID (one app
/// password per device); past it, the least recently used one goes.
pub const MAX_CREDENTIALS: usize = 8;

/// True when a timestamp of `entry` lies after `now`.
fn stamped_in_future(entry: &Entry, now: i64) -> bool {
    entry.remoteauth > now || entry.anyauth > now || entry.firstauth > now
}

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
    /// First time this JID was cached (kept across refreshes and shared by
    /// all its credentials, as the original's `authcache.firstauth`).
    pub firstauth: i64,
    /// Last back-end verification of this credential.
    pub remoteauth: i64,
    /// Last successful login of any kind that used this credential.
    pub anyauth: i64,
}

/// Where credentials live. Methods block (SQLite); the cache calls them on
/// the blocking pool when [`CacheStorage::blocks`] says so.
///
/// A JID has at most [`MAX_CREDENTIALS`] credentials; each has its own
/// `remoteauth` and `anyauth`, so each follows the TTL rules of SPEC §6 on
/// its own.
pub trait CacheStorage: Send + Sync {
    /// Every credential of `jid`, in no particular order.
    fn credentials(&self, jid: &str) -> Result<Vec<Entry>, StoreError>;
    /// Records a back-end verification of `pwhash`: a new credential, or
    /// a refresh of the stored one with that hash (`remoteauth = anyauth =
    /// now`, `firstauth` kept). `replaces`, an older hash of the same
    /// password, goes. Beyond [`MAX_CREDENTIALS`], the least recently used
    /// others go.
    fn store(
        &self,
        jid: &str,
        pwhash: &str,
        replaces: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError>;
    /// `anyauth = now` for the credential `pwhash`.
    fn touch(&self, jid: &str, pwhash: &str, now: i64) -> Result<(), StoreError>;
    /// Deletes the credential `pwhash` if it is still stored; the others
    /// stay.
    fn delete_if_hash(&self, jid: &str, pwhash: &str) -> Result<bool, StoreError>;
    /// True when calls may block on I/O or locks.
    fn blocks(&self) -> bool;

    /// The most recently verified credential of `jid` (the one the
    /// original's `authcache` row holds).
    fn get(&self, jid: &str) -> Result<Option<Entry>, StoreError> {
        Ok(latest(self.credentials(jid)?))
    }
}

/// The most recently verified of `entries`; the first of equals.
fn latest(entries: Vec<Entry>) -> Option<Entry> {
    entries
        .into_iter()
        .reduce(|a, b| if b.remoteauth > a.remoteauth { b } else { a })
}

/// Credentials in process memory (`--cache-storage memory`).
#[derive(Debug, Default)]
pub struct MemoryStorage {
    entries: Mutex<HashMap<String, Vec<Entry>>>,
}

impl MemoryStorage {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Entry>>> {
        // A panic while holding this lock cannot leave a credential half
        // written (every update is one assignment), so the data stays usable.
        lock(&self.entries)
    }
}

impl CacheStorage for MemoryStorage {
    fn credentials(&self, jid: &str) -> Result<Vec<Entry>, StoreError> {
        Ok(self.map().get(jid).cloned().unwrap_or_default())
    }

    fn store(
        &self,
        jid: &str,
        pwhash: &str,
        replaces: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut map = self.map();
        let list = map.entry(jid.to_owned()).or_default();
        let firstauth = list.iter().map(|e| e.firstauth).min().unwrap_or(now);
        list.retain(|e| e.pwhash != pwhash && Some(e.pwhash.as_str()) != replaces);
        while list.len() >= MAX_CREDENTIALS {
            let Some(lru) = least_recently_used(list) else {
                break;
            };
            list.remove(lru);
        }
        list.push(Entry {
            pwhash: pwhash.to_owned(),
            firstauth,
            remoteauth: now,
            anyauth: now,
        });
        Ok(())
    }

    fn touch(&self, jid: &str, pwhash: &str, now: i64) -> Result<(), StoreError> {
        if let Some(list) = self.map().get_mut(jid) {
            for e in list.iter_mut().filter(|e| e.pwhash == pwhash) {
                e.anyauth = now;
            }
        }
        Ok(())
    }

    fn delete_if_hash(&self, jid: &str, pwhash: &str) -> Result<bool, StoreError> {
        let mut map = self.map();
        let Some(list) = map.get_mut(jid) else {
            return Ok(false);
        };
        let before = list.len();
        list.retain(|e| e.pwhash != pwhash);
        let deleted = list.len() < before;
        if list.is_empty() {
            map.remove(jid);
        }
        Ok(deleted)
    }

    fn blocks(&self) -> bool {
        false
    }
}

/// Index of the credential to drop first: the oldest `anyauth`, then the
/// oldest `remoteauth` (the same order the database uses).
fn least_recently_used(list: &[Entry]) -> Option<usize> {
    list.iter()
        .enumerate()
        .min_by_key(|(_, e)| (e.anyauth, e.remoteauth))
        .map(|(i, _)| i)
}

impl CacheStorage for Store {
    fn credentials(&self, jid: &str) -> Result<Vec<Entry>, StoreError> {
        Ok(Store::credentials(self, jid)?
            .into_iter()
            .map(|e: CacheEntry| Entry {
                pwhash: e.pwhash,
                firstauth: e.firstauth,
                remoteauth: e.remoteauth,
                anyauth: e.anyauth,
            })
            .collect())
    }

    fn store(
        &self,
        jid: &str,
        pwhash: &str,
        replaces: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        self.credential_store(jid, pwhash, replaces, now, MAX_CREDENTIALS)
    }

    fn touch(&self, jid: &str, pwhash: &str, now: i64) -> Result<(), StoreError> {
        self.credential_touch(jid, pwhash, now).map(|_| ())
    }

    fn delete_if_hash(&self, jid: &str, pwhash: &str) -> Result<bool, StoreError> {
        self.credential_delete(jid, pwhash)
    }

    fn blocks(&self) -> bool {
        true
    }
}

/// What the memo knows about one user: keyed digests of passwords and the
/// stored hashes they were compared with, for matches and mismatches kept
/// apart (so that a stream of wrong guesses cannot push out the matches),
/// each at most [`MAX_CREDENTIALS`], oldest dropped first.
#[derive(Debug, Clone, Default)]
struct MemoEntry {
    good: Vec<([u8; 32], String)>,
    bad: Vec<([u8; 32], String)>,
    /// [`Memo::tick`] when last looked up or written.
    used: u64,
}

/// The memo: what is known per user, with a use counter for eviction.
#[derive(Debug, Default)]
struct Memo {
    users: HashMap<String, MemoEntry>,
    tick: u64,
}

impl Memo {
    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    /// Makes room for one more user below `capacity`: forgets the least
    /// recently used eighth (at least one), so eviction costs O(1)
    /// amortised per new user.
    fn make_room(&mut self, capacity: usize) {
        if self.users.len() < capacity.max(1) {
            return;
        }
        let mut ticks: Vec<u64> = self.users.values().map(|e| e.used).collect();
        let drop = (ticks.len() / 8).max(1);
        let (_, cutoff, _) = ticks.select_nth_unstable(drop - 1);
        let cutoff = *cutoff;
        self.users.retain(|_, e| e.used > cutoff);
    }
}

/// What a cache lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// A usable credential matches.
    Hit(Entry),
    /// None matches.
    Miss,
    /// The memo did not know, and the bcrypt pool is saturated: the
    /// credentials not checked yet are left for later (see
    /// [`Cache::find_unless_saturated`]).
    Saturated,
}

/// How a lookup runs the bcrypt checks the memo cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Checks {
    /// Wait for the pool at this priority.
    Wait(Priority),
    /// At answer priority, unless the pool is saturated.
    UnlessSaturated,
}

/// Why a lookup did not finish.
enum Unfinished {
    Saturated,
    Pool(PoolError),
}

/// The credentials of one JID during one login, most recently used first,
/// with what this login already found out about each (so no hash is
/// checked twice, whatever the memo forgets meanwhile).
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    entries: Vec<Entry>,
    known: Vec<Option<bool>>,
}

impl Credentials {
    /// The credentials, most recently used first.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The cache: policy on top of a [`CacheStorage`].
pub struct Cache {
    storage: Arc<dyn CacheStorage>,
    ttls: Ttls,
    rounds: u32,
    memo_key: [u8; 32],
    memo: Mutex<Memo>,
    memo_capacity: usize,
    pool: Arc<BcryptPool>,
    bcrypt_checks: AtomicUsize,
    /// Until when lookups skip a storage that failed or stalled.
    storage_down_until: Mutex<Option<std::time::Instant>>,
}

/// How long a login waits for the cache's storage to say what it holds;
/// past it (another process holds the database's lock, say) the login goes
/// on as if nothing were cached, rather than queueing behind the lock.
pub const STORAGE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// After a lookup failed or waited [`STORAGE_WAIT`], how long lookups go
/// on without the storage before it is tried again.
pub const STORAGE_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

impl Cache {
    /// A cache over `storage`, hashing new entries at bcrypt cost `rounds`
    /// on the process's bcrypt pool ([`BcryptPool::shared`]).
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
            memo: Mutex::new(Memo::default()),
            memo_capacity: MEMO_CAPACITY,
            pool: BcryptPool::shared(),
            bcrypt_checks: AtomicUsize::new(0),
            storage_down_until: Mutex::new(None),
        }
    }

    /// The same cache on another bcrypt pool (tests, tools).
    pub fn with_pool(mut self, pool: Arc<BcryptPool>) -> Cache {
        self.pool = pool;
        self
    }

    /// The same cache with a memo of at most `users` users instead of
    /// [`MEMO_CAPACITY`].
    pub fn with_memo_capacity(mut self, users: usize) -> Cache {
        self.memo_capacity = users.max(1);
        self
    }

    /// The bcrypt pool this cache runs on (its statistics are for
    /// monitoring).
    pub fn pool(&self) -> &Arc<BcryptPool> {
        &self.pool
    }

    /// How many users the memo knows something about now.
    pub fn memo_users(&self) -> usize {
        self.memo_map().users.len()
    }

    /// How many bcrypt checks of a password against a stored hash this
    /// cache has run (hashing new passwords not counted).
    pub fn bcrypt_checks(&self) -> usize {
        self.bcrypt_checks.load(Ordering::Relaxed)
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
    /// An entry stamped in the future (a clock set back, a hand-edited
    /// row) is stale, never fresh.
    pub fn fresh(&self, entry: &Entry, now: i64) -> bool {
        !stamped_in_future(entry, now)
            && now - entry.anyauth < self.ttls.query
            && now - entry.remoteauth < self.ttls.verification
    }

    /// True when `entry` may answer while the back end is unreachable.
    pub fn usable_while_unreachable(&self, entry: &Entry, now: i64) -> bool {
        !stamped_in_future(entry, now) && now - entry.remoteauth < self.ttls.unreachable
    }

    /// The most recently verified credential of `jid`; a storage failure
    /// is logged and treated as "no entry" (the back end decides then).
    pub async fn get(&self, jid: &str) -> Option<Entry> {
        latest(self.credentials(jid).await.entries)
    }

    /// Every credential of `jid`, most recently used first; a storage
    /// failure is logged and treated as "none".
    /// A storage that stalls costs one login [`STORAGE_WAIT`], and the
    /// next ones nothing for [`STORAGE_RETRY`] (they see no entry).
    pub async fn credentials(&self, jid: &str) -> Credentials {
        let skip = {
            let down = lock(&self.storage_down_until);
            down.is_some_and(|until| std::time::Instant::now() < until)
        };
        let found = if skip {
            Err("skipped: it failed or stalled moments ago".to_owned())
        } else {
            let lookup = self.run(jid, |s, jid| s.credentials(jid));
            match tokio::time::timeout(STORAGE_WAIT, lookup).await {
                Ok(Ok(entries)) => Ok(entries),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {}s", STORAGE_WAIT.as_secs())),
            }
        };
        let mut entries = match found {
            Ok(entries) => {
                let mut down = lock(&self.storage_down_until);
                if down.take().is_some() {
                    tracing::info!("cache: the storage answers again");
                }
                entries
            }
            Err(e) => {
                if !skip {
                    let mut down = lock(&self.storage_down_until);
                    if down.is_none() {
                        warn!("cache lookup for {jid} failed ({e}); going on without the cache for {}s at a time", STORAGE_RETRY.as_secs());
                    }
                    *down = Some(std::time::Instant::now() + STORAGE_RETRY);
                }
                debug!("cache lookup for {jid}: {e}");
                Vec::new()
            }
        };
        entries.sort_by_key(|e| std::cmp::Reverse((e.anyauth, e.remoteauth)));
        let known = vec![None; entries.len()];
        Credentials { entries, known }
    }

    /// The first of the credentials for which `usable` holds that
    /// `password` matches. The memo answers for all of them first; only
    /// then is bcrypt run (at answer priority, waiting for the pool), one
    /// credential after the other, until one matches. Each credential is
    /// checked at most once per [`Credentials`], so a login never costs
    /// more than [`MAX_CREDENTIALS`] bcrypt checks. A full bcrypt queue
    /// counts as "no match" (the back end decides, or the login fails).
    pub async fn find(
        &self,
        jid: &str,
        creds: &mut Credentials,
        password: &Secret,
        usable: impl Fn(&Entry) -> bool,
    ) -> Option<Entry> {
        match self
            .find_as(jid, creds, password, usable, Checks::Wait(Priority::Answer))
            .await
        {
            Ok(found) => found,
            Err(Unfinished::Pool(e)) => {
                warn!("auth {jid}: not checked against the cache: {e}");
                None
            }
            Err(Unfinished::Saturated) => None,
        }
    }

    /// The first of the credentials for which `usable` holds that the memo
    /// knows `password` matches; never runs bcrypt. What the memo says is
    /// kept in `creds`.
    pub fn find_in_memo(
        &self,
        jid: &str,
        creds: &mut Credentials,
        password: &Secret,
        usable: impl Fn(&Entry) -> bool,
    ) -> Option<Entry> {
        let digest = self.digest(password);
        for (entry, known) in creds.entries.iter().zip(creds.known.iter_mut()) {
            if known.is_none() {
                *known = self.memo_lookup(jid, &digest, &entry.pwhash);
            }
        }
        creds
            .entries
            .iter()
            .zip(&creds.known)
            .find(|(e, k)| **k == Some(true) && usable(e))
            .map(|(e, _)| e.clone())
    }

    /// Like [`find`](Self::find), but when the memo does not know and the
    /// bcrypt pool is [saturated](BcryptPool::saturated), gives up with
    /// [`Found::Saturated`] instead of waiting: the caller may then ask the
    /// back end. What was learnt stays in `creds`; the credentials not
    /// checked can still be checked later (during an outage).
    pub async fn find_unless_saturated(
        &self,
        jid: &str,
        creds: &mut Credentials,
        password: &Secret,
        usable: impl Fn(&Entry) -> bool,
    ) -> Found {
        match self
            .find_as(jid, creds, password, usable, Checks::UnlessSaturated)
            .await
        {
            Ok(Some(entry)) => Found::Hit(entry),
            Ok(None) => Found::Miss,
            Err(Unfinished::Saturated) => Found::Saturated,
            Err(Unfinished::Pool(e)) => {
                warn!("auth {jid}: not checked against the cache: {e}");
                Found::Miss
            }
        }
    }

    async fn find_as(
        &self,
        jid: &str,
        creds: &mut Credentials,
        password: &Secret,
        usable: impl Fn(&Entry) -> bool,
        checks: Checks,
    ) -> Result<Option<Entry>, Unfinished> {
        if let Some(entry) = self.find_in_memo(jid, creds, password, &usable) {
            return Ok(Some(entry));
        }
        let digest = self.digest(password);
        let priority = match checks {
            Checks::Wait(priority) => priority,
            Checks::UnlessSaturated => Priority::Answer,
        };
        for i in 0..creds.entries.len() {
            if creds.known[i].is_some() || !usable(&creds.entries[i]) {
                continue;
            }
            if checks == Checks::UnlessSaturated && self.pool.saturated() {
                return Err(Unfinished::Saturated);
            }
            let entry = creds.entries[i].clone();
            let ok = self
                .bcrypt_check(jid, &entry.pwhash, password, priority)
                .await
                .map_err(Unfinished::Pool)?;
            self.memo_store(jid, digest, &entry.pwhash, ok);
            creds.known[i] = Some(ok);
            if ok {
                return Ok(Some(entry));
            }
        }
        Ok(None)
    }

    /// Does `password` match `entry`'s hash? Memo first, then bcrypt on the
    /// pool at answer priority; a full queue counts as "no".
    pub async fn matches(&self, jid: &str, entry: &Entry, password: &Secret) -> bool {
        let digest = self.digest(password);
        if let Some(known) = self.memo_lookup(jid, &digest, &entry.pwhash) {
            return known;
        }
        match self
            .bcrypt_check(jid, &entry.pwhash, password, Priority::Answer)
            .await
        {
            Ok(ok) => {
                self.memo_store(jid, digest, &entry.pwhash, ok);
                ok
            }
            Err(e) => {
                warn!("auth {jid}: not checked against the cache: {e}");
                false
            }
        }
    }

    /// bcrypt on the pool; an unusable hash never matches.
    async fn bcrypt_check(
        &self,
        jid: &str,
        pwhash: &str,
        password: &Secret,
        priority: Priority,
    ) -> Result<bool, PoolError> {
        self.bcrypt_checks.fetch_add(1, Ordering::Relaxed);
        match self.pool.verify(priority, password, pwhash).await? {
            Ok(ok) => Ok(ok),
            Err(e) => {
                warn!("cached hash of {jid} is unusable ({e}); ignoring it");
                Ok(false)
            }
        }
    }

    /// After a back-end success: stores the password with `remoteauth =
    /// anyauth = now` (see [`Cache::remember_with`]).
    pub async fn remember(&self, jid: &str, password: &Secret, now: i64) {
        let creds = self.credentials(jid).await;
        self.remember_with(jid, password, now, creds).await;
    }

    /// After a back-end success, with the credentials this login already
    /// looked at: a stored credential that matches `password` is refreshed
    /// in place (no new hash, unless its bcrypt cost is not the configured
    /// one); otherwise a new hash is stored beside the others, and the
    /// least recently used goes if there are [`MAX_CREDENTIALS`] already.
    ///
    /// Its bcrypt work is background work: when the pool cannot start it
    /// within [`pool::BACKGROUND_START_WITHIN`] (or its queue is full), the
    /// write is dropped (counted by the pool, logged at debug).
    pub async fn remember_with(
        &self,
        jid: &str,
        password: &Secret,
        now: i64,
        mut creds: Credentials,
    ) {
        if !Cache::cacheable(password) {
            return;
        }
        let checks = Checks::Wait(Priority::Background);
        let found = match self
            .find_as(jid, &mut creds, password, |_| true, checks)
            .await
        {
            Ok(found) => found,
            Err(Unfinished::Pool(e)) => {
                debug!("cache write for {jid} dropped: {e}");
                return;
            }
            Err(Unfinished::Saturated) => return,
        };
        if let Some(entry) = found
            .as_ref()
            .filter(|e| bcrypt_cost(&e.pwhash) == Some(self.rounds))
        {
            let hash = entry.pwhash.clone();
            if let Err(e) = self
                .run(jid, move |s, jid| s.store(jid, &hash, None, now))
                .await
            {
                warn!("cannot cache the login of {jid}: {e}");
            }
            return;
        }
        let digest = self.digest(password);
        let hash = match self
            .pool
            .hash(Priority::Background, password, self.rounds)
            .await
        {
            Ok(Ok(hash)) => hash,
            Ok(Err(e)) => {
                warn!("cannot hash the password of {jid} for the cache: {e}");
                return;
            }
            Err(e) => {
                debug!("cache write for {jid} dropped: {e}");
                return;
            }
        };
        let stored = hash.clone();
        let replaces = found.map(|e| e.pwhash);
        match self
            .run(jid, move |s, jid| {
                s.store(jid, &stored, replaces.as_deref(), now)
            })
            .await
        {
            Ok(()) => self.memo_store(jid, digest, &hash, true),
            Err(e) => warn!("cannot cache the login of {jid}: {e}"),
        }
    }

    /// Records a login served from `entry` (`anyauth = now`), at most once
    /// per [`ANYAUTH_GRANULARITY`].
    pub async fn touch(&self, jid: &str, entry: &Entry, now: i64) {
        if now - entry.anyauth < ANYAUTH_GRANULARITY && now >= entry.anyauth {
            return;
        }
        let hash = entry.pwhash.clone();
        if let Err(e) = self.run(jid, move |s, jid| s.touch(jid, &hash, now)).await {
            warn!("cannot update the cache entry of {jid}: {e}");
        }
    }

    /// After the back end rejected `password`: deletes every credential it
    /// matches that could still let anyone in (fresh, or usable while the
    /// back end is unreachable), so a changed or revoked password stops
    /// working during a later outage. The other credentials stay. Returns
    /// how many went. Its checks run at answer priority and are never
    /// dropped for being late: a deletion is not a mere accelerator.
    pub async fn forget_password(
        &self,
        jid: &str,
        mut creds: Credentials,
        password: &Secret,
        now: i64,
    ) -> usize {
        let mut gone = 0;
        let usable = |e: &Entry| self.fresh(e, now) || self.usable_while_unreachable(e, now);
        while let Some(entry) = self.find(jid, &mut creds, password, usable).await {
            self.forget(jid, &entry).await;
            gone += 1;
            // Not found again: it is no longer "usable" below.
            if let Some(i) = creds.entries.iter().position(|e| e.pwhash == entry.pwhash) {
                creds.entries.remove(i);
                creds.known.remove(i);
            }
        }
        gone
    }

    /// Deletes the credential `entry` of `jid` if it is still stored (used
    /// when the back end rejected the password that matches it: the
    /// password was changed or revoked). The other credentials stay.
    pub async fn forget(&self, jid: &str, entry: &Entry) {
        let hash = entry.pwhash.clone();
        match self
            .run(jid, move |s, jid| s.delete_if_hash(jid, &hash))
            .await
        {
            Ok(_) => self.memo_forget(jid, &entry.pwhash),
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
        crate::secret::keyed_digest(&self.memo_key, &[password.expose().as_bytes()])
    }

    fn memo_map(&self) -> std::sync::MutexGuard<'_, Memo> {
        lock(&self.memo)
    }

    fn memo_lookup(&self, jid: &str, digest: &[u8; 32], pwhash: &str) -> Option<bool> {
        if self.memo_key == [0; 32] {
            return None;
        }
        let mut memo = self.memo_map();
        let tick = memo.next_tick();
        let entry = memo.users.get_mut(jid)?;
        entry.used = tick;
        let same = |slots: &[([u8; 32], String)]| {
            slots
                .iter()
                .any(|(d, h)| h == pwhash && bool::from(d.ct_eq(digest)))
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
        if !memo.users.contains_key(jid) {
            memo.make_room(self.memo_capacity);
        }
        let tick = memo.next_tick();
        let slot = memo.users.entry(jid.to_owned()).or_default();
        slot.used = tick;
        let slots = if ok { &mut slot.good } else { &mut slot.bad };
        // One password matches a hash: a newer match of the same hash
        // replaces the older one.
        slots.retain(|(d, h)| !(h == pwhash && (ok || d == &digest)));
        if slots.len() >= MAX_CREDENTIALS {
            slots.remove(0);
        }
        slots.push((digest, pwhash.to_owned()));
    }

    /// Drops what the memo knows about the hash `pwhash` of `jid`.
    fn memo_forget(&self, jid: &str, pwhash: &str) {
        let mut memo = self.memo_map();
        if let Some(slot) = memo.users.get_mut(jid) {
            slot.good.retain(|(_, h)| h != pwhash);
            slot.bad.retain(|(_, h)| h != pwhash);
            if slot.good.is_empty() && slot.bad.is_empty() {
                memo.users.remove(jid);
            }
        }
    }
}

/// The cost of a `$2b$NN$...` hash.
fn bcrypt_cost(pwhash: &str) -> Option<u32> {
    pwhash.get(4..6)?.parse().ok()
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
    async fn the_memo_stays_bounded_and_forgets_the_least_recently_used() {
        const CAP: usize = 64;
        let c = cache().with_memo_capacity(CAP);
        let pw = Secret::new("pw");
        let digest = c.digest(&pw);
        c.memo_store("regular@d", digest, "h", true);
        for i in 0..20 * CAP {
            c.memo_store(&format!("user{i}@d"), digest, "h", i % 2 == 0);
            assert!(c.memo_users() <= CAP, "{} users after {i}", c.memo_users());
            if i % 16 == 0 {
                // A user who logs in now and then stays known.
                assert!(c.matches("regular@d", &entry("h"), &pw).await);
            }
        }
        assert!(c.memo_users() > CAP / 2, "only an eighth goes at a time");
        assert_eq!(c.memo_lookup("regular@d", &digest, "h"), Some(true));
        // The first users, never seen again, are gone (the memo answers
        // nothing, so bcrypt would decide).
        assert_eq!(c.memo_lookup("user0@d", &digest, "h"), None);
        let last = format!("user{}@d", 20 * CAP - 1);
        assert_eq!(c.memo_lookup(&last, &digest, "h"), Some(false));
    }

    #[tokio::test]
    async fn forgetting_an_entry_drops_its_memo() {
        let c = cache();
        let pw = Secret::new("pw");
        c.remember("a@d", &pw, 10).await;
        let stored = c.get("a@d").await.expect("stored");
        c.forget("a@d", &stored).await;
        assert_eq!(c.get("a@d").await, None);
        assert!(!c.memo_map().users.contains_key("a@d"));
    }

    /// Several devices of one user against the fake back end, over both
    /// storages.
    mod devices {
        use super::*;
        use crate::backend::fake::{timeout, Reply as Answer, Scripted};
        use crate::backend::BackendError;
        use crate::clock::FixedClock;
        use crate::domains::{DomainSettings, Fixed};
        use crate::proto::{Reply, Request};
        use crate::verify::Verifier;

        const JID: &str = "tom@example.org";

        struct Rig {
            verifier: Arc<Verifier>,
            clock: Arc<FixedClock>,
            cache: Arc<Cache>,
            storage: Arc<dyn CacheStorage>,
            backend: Arc<Scripted>,
        }

        fn storages() -> Vec<(&'static str, Arc<dyn CacheStorage>)> {
            let db = match Store::open(std::path::Path::new(":memory:")) {
                Ok(s) => s,
                Err(e) => panic!("open :memory: failed: {e}"),
            };
            vec![
                ("memory", Arc::new(MemoryStorage::default())),
                ("db", Arc::new(db)),
            ]
        }

        fn rig(storage: Arc<dyn CacheStorage>, script: Vec<Result<Answer, BackendError>>) -> Rig {
            let backend = Arc::new(Scripted::new(script));
            let clock = Arc::new(FixedClock::new(0));
            let domains = Arc::new(Fixed(DomainSettings {
                backend: backend.clone(),
                token_key: None,
            }));
            let cache = Arc::new(Cache::new(
                Arc::clone(&storage),
                Ttls {
                    query: 3600,
                    verification: 86400,
                    unreachable: 604_800,
                },
                4,
            ));
            let verifier =
                Arc::new(Verifier::new(clock.clone(), domains).with_cache(Arc::clone(&cache)));
            Rig {
                verifier,
                clock,
                cache,
                storage,
                backend,
            }
        }

        impl Rig {
            async fn login(&self, t: i64, password: &str) -> Reply {
                self.clock.set(t);
                let reply = Arc::clone(&self.verifier)
                    .handle(Request::Auth {
                        user: "tom".into(),
                        domain: "example.org".into(),
                        password: Secret::new(password),
                        service: None,
                        client: None,
                    })
                    .await;
                self.verifier.settle().await;
                reply
            }

            fn count(&self) -> usize {
                self.storage.credentials(JID).unwrap().len()
            }
        }

        #[tokio::test]
        async fn two_devices_alternate_without_the_back_end_once_both_are_cached() {
            for (name, storage) in storages() {
                let r = rig(storage, vec![Ok(Answer::Accepted), Ok(Answer::Accepted)]);
                assert_eq!(r.login(10, "app-pw-phone").await, Reply::Yes);
                assert_eq!(r.login(20, "app-pw-laptop").await, Reply::Yes);
                assert_eq!((r.backend.calls(), r.count()), (2, 2), "{name}");
                let checks = r.cache.bcrypt_checks();
                for (i, pw) in ["app-pw-phone", "app-pw-laptop"]
                    .iter()
                    .cycle()
                    .take(6)
                    .enumerate()
                {
                    let t = 100 + 100 * i as i64;
                    assert_eq!(r.login(t, pw).await, Reply::Yes, "{name} {pw} at {t}");
                }
                assert_eq!(
                    r.backend.calls(),
                    2,
                    "{name}: no back-end request once both are cached"
                );
                assert_eq!(r.cache.bcrypt_checks(), checks, "{name}: the memo answers");
                // Each credential kept its own times.
                let mut times: Vec<(i64, i64)> = r
                    .storage
                    .credentials(JID)
                    .unwrap()
                    .iter()
                    .map(|e| (e.remoteauth, e.anyauth))
                    .collect();
                times.sort_unstable();
                assert_eq!(times, [(10, 500), (20, 600)], "{name}");
                // The most recently verified one is what `authcache` holds.
                assert_eq!(
                    r.storage.get(JID).unwrap().unwrap().remoteauth,
                    20,
                    "{name}"
                );
            }
        }

        #[tokio::test]
        async fn the_ninth_credential_evicts_the_least_recently_used() {
            for (name, storage) in storages() {
                let r = rig(storage, vec![Ok(Answer::Accepted); 10]);
                for i in 0..MAX_CREDENTIALS as i64 {
                    assert_eq!(r.login(100 * i, &format!("device-{i}")).await, Reply::Yes);
                }
                assert_eq!(
                    (r.backend.calls(), r.count()),
                    (MAX_CREDENTIALS, MAX_CREDENTIALS)
                );
                // Device 0 is used again, so device 1 is now the least
                // recently used.
                assert_eq!(r.login(750, "device-0").await, Reply::Yes);
                assert_eq!(r.backend.calls(), MAX_CREDENTIALS, "{name}");

                let checks = r.cache.bcrypt_checks();
                assert_eq!(r.login(800, "device-8").await, Reply::Yes);
                assert!(
                    r.cache.bcrypt_checks() - checks <= MAX_CREDENTIALS,
                    "{name}: a login runs bcrypt at most once per credential"
                );
                assert_eq!(r.backend.calls(), MAX_CREDENTIALS + 1);
                assert_eq!(r.count(), MAX_CREDENTIALS, "{name}: still bounded");

                // Device 1 was dropped: it asks the back end again...
                assert_eq!(r.login(900, "device-1").await, Reply::Yes);
                assert_eq!(r.backend.calls(), MAX_CREDENTIALS + 2, "{name}");
                // ...and the others are still served from the cache (device
                // 2 was the least recently used and made room for device 1).
                for i in [0, 3, 4, 5, 6, 7, 8, 1] {
                    assert_eq!(r.login(1000 + i, &format!("device-{i}")).await, Reply::Yes);
                }
                assert_eq!(r.backend.calls(), MAX_CREDENTIALS + 2, "{name}");
                assert_eq!(r.count(), MAX_CREDENTIALS, "{name}");
            }
        }

        #[tokio::test]
        async fn a_rejected_password_removes_only_its_own_credential() {
            for (name, storage) in storages() {
                let r = rig(
                    storage,
                    vec![
                        Ok(Answer::Accepted),
                        Ok(Answer::Accepted),
                        Ok(Answer::Rejected),
                        Err(timeout()),
                        Err(timeout()),
                    ],
                );
                assert_eq!(r.login(10, "revoked").await, Reply::Yes);
                assert_eq!(r.login(20, "kept").await, Reply::Yes);
                // After the query TTL the revoked app password is asked
                // about, and rejected.
                assert_eq!(r.login(4000, "revoked").await, Reply::No);
                let left = r.storage.credentials(JID).unwrap();
                assert_eq!(left.len(), 1, "{name}");
                assert_eq!(left[0].remoteauth, 20, "{name}: the other device's stays");
                // During an outage the kept one works, the revoked one not.
                assert_eq!(r.login(4100, "kept").await, Reply::Yes, "{name}");
                assert_eq!(r.login(4200, "revoked").await, Reply::TryLater, "{name}");
                assert_eq!(r.backend.calls(), 5);
            }
        }

        #[tokio::test]
        async fn outage_fallback_uses_any_matching_credential_within_the_unreachable_ttl() {
            const WEEK: i64 = 604_800;
            for (name, storage) in storages() {
                let r = rig(
                    storage,
                    vec![
                        Ok(Answer::Accepted),
                        Ok(Answer::Accepted),
                        Err(timeout()),
                        Err(timeout()),
                        Err(timeout()),
                        Err(timeout()),
                        Err(timeout()),
                    ],
                );
                assert_eq!(r.login(10, "old-device").await, Reply::Yes);
                assert_eq!(r.login(200_000, "new-device").await, Reply::Yes);
                // The older credential (not the one in `authcache`) still
                // answers within its own unreachable TTL...
                assert_eq!(
                    r.login(10 + WEEK - 1, "old-device").await,
                    Reply::Yes,
                    "{name}"
                );
                assert_eq!(
                    r.login(10 + WEEK - 1, "wrong").await,
                    Reply::TryLater,
                    "{name}"
                );
                // ...and not after it, while the newer one still does.
                assert_eq!(
                    r.login(10 + WEEK + 1, "old-device").await,
                    Reply::TryLater,
                    "{name}"
                );
                assert_eq!(
                    r.login(10 + WEEK + 2, "new-device").await,
                    Reply::Yes,
                    "{name}"
                );
                assert_eq!(
                    r.login(200_000 + WEEK, "new-device").await,
                    Reply::TryLater,
                    "{name}"
                );
                assert_eq!(r.backend.calls(), 7);
            }
        }

        #[tokio::test]
        async fn a_password_verified_again_refreshes_its_credential_in_place() {
            for (name, storage) in storages() {
                let r = rig(storage, vec![Ok(Answer::Accepted); 3]);
                assert_eq!(r.login(10, "a").await, Reply::Yes);
                assert_eq!(r.login(20, "b").await, Reply::Yes);
                let before: Vec<String> = r
                    .storage
                    .credentials(JID)
                    .unwrap()
                    .into_iter()
                    .map(|e| e.pwhash)
                    .collect();
                // Query TTL passed: asked again, accepted; no duplicate.
                assert_eq!(r.login(5000, "a").await, Reply::Yes);
                let after = r.storage.credentials(JID).unwrap();
                assert_eq!(after.len(), 2, "{name}");
                let a = r.storage.get(JID).unwrap().unwrap();
                assert_eq!(
                    (a.firstauth, a.remoteauth, a.anyauth),
                    (10, 5000, 5000),
                    "{name}"
                );
                assert!(before.contains(&a.pwhash), "{name}: same hash, refreshed");
            }
        }
    }

    #[test]
    fn an_entry_stamped_in_the_future_is_stale() {
        let c = cache();
        let e = Entry {
            pwhash: String::new(),
            firstauth: 100,
            remoteauth: 5000,
            anyauth: 5000,
        };
        assert!(
            !c.fresh(&e, 4000),
            "a clock set back does not make it fresh"
        );
        assert!(!c.usable_while_unreachable(&e, 4000));
        assert!(c.fresh(&e, 5000));
        assert!(c.usable_while_unreachable(&e, 5000));
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
