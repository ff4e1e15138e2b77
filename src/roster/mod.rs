//! ejabberd shared roster groups kept in step with Nextcloud groups (SPEC §9), through `ejabberdctl`.
//!
//! After a successful login the caller fetches the user's shared roster
//! from the back end (a normalised [`Roster`]) and hands it to
//! [`RosterSync::spawn_after_login`] (or awaits [`RosterSync::sync`]
//! itself). If the roster's fingerprint equals the one stored for the JID
//! (in `rosterinfo.responsehash`, where the original kept the SHA-256 of the
//! raw reply body; an upgrade therefore re-synchronises each user once),
//! nothing runs. Otherwise:
//!
//! 1. every member gets its vCard full name set when it changed;
//! 2. every group (by its clean name, see [`clean_group_name`], and its
//!    ejabberd id, see [`group_id`]) is created in ejabberd when we have no
//!    record of it, and members are added or deleted until ejabberd's
//!    group matches the reply;
//! 3. the login user is deleted from the groups it was in last time and is
//!    no longer in, compared as full JIDs (the original compared a bare UID
//!    with the login JID and so never noticed a user leaving a group);
//! 4. only when every step worked is the fingerprint stored.
//!
//! ## Group ids
//! ejabberd 24.12 nodepreps the group id in `srg_create` only, so the id
//! must be one nodeprep leaves alone: [`group_id`] keeps plain names
//! (`staff`) and gives every other name `SLUG-HASH` ([`id`] has the
//! formula). A group is created as `srg_create ID DOMAIN CLEAN CLEAN ID`:
//! the clean name is its label and description, and it is displayed to its
//! own members. An id is one plain word in both spellings of that last
//! argument (one string up to ejabberd 23.x, a list split at `,` since
//! 24.02), so the ejabberd version does not matter. `rostergroups` is keyed
//! `ID@DOMAIN` and `rosterinfo.grouplist` holds ids.
//!
//! ## Groups of the old scheme
//! Before, the clean name itself was the id. Once per process, before its
//! first sync, [`migrate_legacy_groups`] deletes each stored group whose
//! name is not one of our ids ([`id::is_group_id`]) with `srg_delete`,
//! forgets it, renames it to its new id in the users' `grouplist`s and
//! clears the stored hash of its members and users, whose next login then
//! creates the group under its new id. A group whose `srg_delete` fails is
//! kept and tried again by a later sync (at most every
//! [`MIGRATION_RETRY`]); the function is public (and synchronous) so that
//! the administration commands can run it too.
//!
//! ## Retries
//! Each failed step stays pending until a later login of the user does it,
//! and the log line names what is pending ([`SyncReport::pending`]): a
//! stored member list or full name records only what ejabberdctl accepted;
//! a group whose `srg_create` or `srg_get_members` failed is not recorded,
//! so it is created and read again; a group whose `srg_user_del` of the
//! login user failed stays in `grouplist`; and when anything failed (a
//! call, or the database) the new fingerprint is not stored and the old
//! one is cleared.
//!
//! The rooms: [`ctl`] runs ejabberdctl; [`names`] turns Nextcloud names
//! into clean names and JIDs; [`id`] turns clean names into ejabberd ids;
//! `plan` turns a roster into members and groups; this file applies a
//! plan with ejabberdctl and records what it did.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::backend::Roster;
use crate::store::{split_list, RosterInfo, Store, StoreError};
use crate::sync::lock;

pub mod ctl;
pub mod id;
pub mod names;
mod plan;

pub use ctl::{CommandCtl, CtlError, Ejabberdctl, DEFAULT_CTL_TIMEOUT};
pub use id::group_id;
pub use names::{clean_group_name, member_jid, parse_members};

use names::split_jid;
use plan::Plan;

/// How long the `auth` answer may wait for the roster sync (SPEC §9); the
/// sync goes on in the background after that.
pub const LOGIN_WAIT: Duration = Duration::from_secs(1);

/// Least time between two tries of a migration that left groups pending.
pub const MIGRATION_RETRY: Duration = Duration::from_secs(300);

/// Why a sync stopped. ejabberdctl failures are not among these: they are
/// logged, listed in [`SyncReport::failures`], and the sync goes on.
#[derive(Debug, thiserror::Error)]
pub enum RosterError {
    /// The database failed part-way; the new hash was not stored (and the
    /// old one cleared where possible), so the next login tries again.
    #[error("shared roster state: {0}")]
    Store(#[from] StoreError),
    /// The background task panicked or was cancelled.
    #[error("the shared roster task stopped before it finished")]
    Aborted,
}

/// One ejabberdctl call that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallFailure {
    /// The arguments after the program name.
    pub args: Vec<String>,
    /// What went wrong.
    pub error: CtlError,
}

impl CallFailure {
    /// The step this call was, in words: what is still to do.
    pub fn step(&self) -> String {
        let a: Vec<&str> = self.args.iter().map(String::as_str).collect();
        match a.as_slice() {
            ["set_vcard", local, domain, ..] => format!("full name of {local}@{domain}"),
            ["srg_create", id, domain, label, ..] => {
                format!("creating group {id}@{domain} ({label:?})")
            }
            ["srg_get_members", id, domain] => format!("reading the members of {id}@{domain}"),
            ["srg_user_add", local, member_domain, id, domain] => {
                format!("adding {local}@{member_domain} to {id}@{domain}")
            }
            ["srg_user_del", local, member_domain, id, domain] => {
                format!("removing {local}@{member_domain} from {id}@{domain}")
            }
            ["srg_delete", id, domain] => format!("deleting old group {id}@{domain}"),
            _ => format!("ejabberdctl {a:?}"),
        }
    }
}

/// What one sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// The reply equals the last one stored: nothing was run or written.
    pub unchanged: bool,
    /// A sync for the JID was running: this roster waits for it to end,
    /// and is synchronised next unless a later one replaces it.
    pub queued: bool,
    /// Every ejabberdctl call, in order (arguments after the program name).
    pub calls: Vec<Vec<String>>,
    /// The calls that failed. If any did, the new reply hash was not
    /// stored and the old one cleared, so the next login synchronises again.
    pub failures: Vec<CallFailure>,
    /// The login user's groups now (ejabberd ids, sorted).
    pub groups: Vec<String>,
    /// Group names left out because nothing remained after cleaning.
    pub skipped_groups: Vec<String>,
}

impl SyncReport {
    /// The steps still to do, in words, one for each failed call.
    pub fn pending(&self) -> Vec<String> {
        self.failures.iter().map(CallFailure::step).collect()
    }
}

/// What [`migrate_legacy_groups`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// Every ejabberdctl call, in order.
    pub calls: Vec<Vec<String>>,
    /// Old groups removed: stored key (`CLEAN@DOMAIN`) and new id.
    pub migrated: Vec<(String, String)>,
    /// Users whose stored hash was cleared (their next login rebuilds).
    pub users: Vec<String>,
    /// Old groups still to remove (their `srg_delete` failed).
    pub pending: Vec<CallFailure>,
}

/// Removes the groups the old scheme (clean name as id) created, once, so
/// that none is left behind: for each stored group whose name is not one
/// of our ids, `srg_delete CLEAN DOMAIN` through `srg_delete` (given the
/// arguments after the program name); when that worked, the row goes,
/// each `rosterinfo.grouplist` naming it names the new id instead, and the
/// hashes of its members and users are cleared (their next login creates
/// the group under its new id, with its members). When it failed, the row
/// stays for a later try. Logs what it migrated and what is pending.
///
/// Synchronous, for the administration commands; the server runs it
/// through [`RosterSync::migrate_legacy_groups`].
pub fn migrate_legacy_groups(
    store: &Store,
    srg_delete: &mut dyn FnMut(&[String]) -> Result<(), CtlError>,
) -> Result<MigrationReport, StoreError> {
    let mut report = MigrationReport::default();
    for key in store.roster_group_names()? {
        let Some((old, domain)) = key.rsplit_once('@') else {
            continue;
        };
        if id::is_group_id(old) {
            continue;
        }
        let new = group_id(old);
        let args = vec!["srg_delete".to_owned(), old.to_owned(), domain.to_owned()];
        report.calls.push(args.clone());
        if let Err(error) = srg_delete(&args) {
            tracing::warn!(
                "shared roster: old group {key:?} (now {new:?}) not removed yet: \
                 srg_delete failed: {error}; tried again later"
            );
            report.pending.push(CallFailure { args, error });
            continue;
        }
        let users = store.retire_roster_group(&key, &new)?.unwrap_or_default();
        tracing::info!(
            "shared roster: old group {key:?} removed; it is now {new:?}, \
             rebuilt at the next login of {}",
            if users.is_empty() {
                "any member".to_owned()
            } else {
                users.join(", ")
            }
        );
        report.users.extend(users);
        report.migrated.push((key, new));
    }
    report.users.sort_unstable();
    report.users.dedup();
    if !report.pending.is_empty() {
        let keys: Vec<String> = report
            .pending
            .iter()
            .map(|f| format!("{}@{}", f.args[1], f.args[2]))
            .collect();
        tracing::warn!(
            "shared roster: {} old groups still to remove: {}",
            keys.len(),
            keys.join(", ")
        );
    }
    Ok(report)
}

/// Whether the migration is done in this process, or when it may run again.
#[derive(Debug, Default)]
struct Migration {
    done: bool,
    /// Seconds since the epoch before which a pending one is not retried.
    not_before: Option<i64>,
}

/// Keeps ejabberd's shared roster groups in step with the Nextcloud groups
/// of the users who log in (SPEC §9).
pub struct RosterSync {
    ctl: Arc<dyn Ejabberdctl>,
    store: Arc<Store>,
    /// One sync at a time in this process (two logins at once would
    /// otherwise both create the same group); it also guards the migration.
    running: tokio::sync::Mutex<Migration>,
    /// The migration is done: a sync no longer needs the lock to look.
    migrated: AtomicBool,
    /// JIDs whose sync task runs, each with the latest roster that arrived
    /// meanwhile ([`RosterSync::spawn_after_login`]: latest wins).
    slots: std::sync::Mutex<HashMap<String, Option<Queued>>>,
}

/// A roster waiting for the sync of its JID to finish.
struct Queued {
    roster: Roster,
    now: i64,
}

impl fmt::Debug for RosterSync {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RosterSync").finish_non_exhaustive()
    }
}

impl RosterSync {
    /// A sync that runs `ctl` and keeps its state in `store`.
    pub fn new(ctl: Arc<dyn Ejabberdctl>, store: Arc<Store>) -> RosterSync {
        RosterSync {
            ctl,
            store,
            running: tokio::sync::Mutex::new(Migration::default()),
            migrated: AtomicBool::new(false),
            slots: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Sync tasks running and rosters waiting for one, over all JIDs.
    pub fn queue_len(&self) -> (usize, usize) {
        let slots = lock(&self.slots);
        (slots.len(), slots.values().filter(|q| q.is_some()).count())
    }

    /// Starts [`sync`](Self::sync) as its own task and returns its handle.
    /// The caller may wait on the handle for [`LOGIN_WAIT`] at most
    /// (`tokio::time::timeout(LOGIN_WAIT, &mut handle)`); dropping the
    /// handle does not stop the task. The outcome is logged either way.
    ///
    /// Coalesced per JID, latest wins: while a sync for the JID runs, the
    /// roster waits in the JID's one slot, replacing any roster already
    /// waiting there, and the handle is done at once ([`SyncReport::queued`]).
    /// When the running sync ends, the waiting roster is synchronised next.
    /// So a hung ejabberdctl holds one task and at most two rosters per JID,
    /// however often the user logs in.
    pub fn spawn_after_login(
        self: &Arc<Self>,
        user: String,
        domain: String,
        roster: Roster,
        now: i64,
    ) -> JoinHandle<Result<SyncReport, RosterError>> {
        let jid = format!("{user}@{domain}");
        {
            let mut slots = lock(&self.slots);
            if let Some(slot) = slots.get_mut(&jid) {
                let replaced = slot.replace(Queued { roster, now }).is_some();
                tracing::debug!(
                    "shared roster of {jid:?}: a sync is running; this roster is next{}",
                    if replaced {
                        " (replacing an older one)"
                    } else {
                        ""
                    }
                );
                return tokio::spawn(std::future::ready(Ok(SyncReport {
                    queued: true,
                    ..SyncReport::default()
                })));
            }
            slots.insert(jid.clone(), None);
        }
        self.run_slot(jid, user, domain, roster, now)
    }

    /// Runs the sync of `jid`, then the roster left in its slot meanwhile,
    /// if any (in a task of its own), or frees the slot.
    fn run_slot(
        self: &Arc<Self>,
        jid: String,
        user: String,
        domain: String,
        roster: Roster,
        now: i64,
    ) -> JoinHandle<Result<SyncReport, RosterError>> {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let result = this.sync(&user, &domain, &roster, now).await;
            crate::metrics::roster_sync(&result);
            drop(roster);
            log_outcome(&jid, &result);
            let next = {
                let mut slots = lock(&this.slots);
                match slots.get_mut(&jid).and_then(Option::take) {
                    Some(next) => Some(next),
                    None => {
                        slots.remove(&jid);
                        None
                    }
                }
            };
            if let Some(next) = next {
                drop(this.run_slot(jid, user, domain, next.roster, next.now));
            }
            result
        })
    }

    /// Synchronises the shared roster after `user@domain` logged in, given
    /// the user's `roster`. Dropping the future part-way leaves the work half done: use
    /// [`spawn_after_login`](Self::spawn_after_login) when the caller may
    /// stop waiting.
    pub async fn sync(
        &self,
        user: &str,
        domain: &str,
        roster: &Roster,
        now: i64,
    ) -> Result<SyncReport, RosterError> {
        let jid = format!("{user}@{domain}");
        let hash = roster.fingerprint();
        let unchanged = SyncReport {
            unchanged: true,
            ..SyncReport::default()
        };
        // Until the old scheme's groups are gone, every sync takes the lock
        // and first sees to them, even for an unchanged roster.
        let migrating = if self.migrated.load(Ordering::Acquire) {
            None
        } else {
            let mut migration = self.running.lock().await;
            self.migrate_when_due(&mut migration, now).await;
            self.migrated.store(migration.done, Ordering::Release);
            Some(migration)
        };
        // Otherwise checked before queueing behind another sync, and again
        // after, as that one may have been for the same user.
        let _one_at_a_time = match migrating {
            Some(guard) => guard,
            None => {
                if self.stored_state(&jid, &hash).await?.is_none() {
                    return Ok(unchanged);
                }
                self.running.lock().await
            }
        };
        let Some(info) = self.stored_state(&jid, &hash).await? else {
            return Ok(unchanged);
        };
        let plan = Plan::from_roster(roster, domain);
        let previous_groups = split_list(
            info.and_then(|i| i.grouplist)
                .as_deref()
                .unwrap_or_default(),
        );
        let mut report = SyncReport {
            skipped_groups: plan.skipped_groups.clone(),
            ..SyncReport::default()
        };
        let mut outcome = self
            .apply(&mut report, &plan, user, domain, &jid, previous_groups)
            .await;
        if outcome.is_ok() && report.failures.is_empty() {
            // Only now: anything short of this is done again next time.
            outcome = self
                .db({
                    let jid = jid.clone();
                    move |s| s.set_roster_hash(&jid, &hash, now)
                })
                .await;
        } else {
            // The stored hash is an older reply's; cleared, so that even a
            // return to that reply synchronises again.
            let forget = self
                .db({
                    let jid = jid.clone();
                    move |s| s.clear_roster_hashes(Some(&jid))
                })
                .await;
            if let Err(e) = forget {
                tracing::warn!("shared roster of {jid:?}: cannot clear the stored hash: {e}");
            }
        }
        outcome.map(|()| report)
    }

    /// Runs [`migrate_legacy_groups`] with this sync's ejabberdctl and
    /// store, off the reactor. It does not wait for a running sync.
    pub async fn migrate_legacy_groups(&self) -> Result<MigrationReport, RosterError> {
        let (ctl, store) = (Arc::clone(&self.ctl), Arc::clone(&self.store));
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            migrate_legacy_groups(&store, &mut |args| handle.block_on(ctl.run(args)).map(drop))
        })
        .await
        .map_err(|_| RosterError::Aborted)?
        .map_err(RosterError::Store)
    }

    /// Runs [`migrate_legacy_groups`] unless it is done in this process or
    /// its last try is less than [`MIGRATION_RETRY`] ago. Its failures never
    /// stop a sync.
    async fn migrate_when_due(&self, migration: &mut Migration, now: i64) {
        if migration.done || migration.not_before.is_some_and(|t| now < t) {
            return;
        }
        let result = self.migrate_legacy_groups().await;
        match result {
            Ok(r) if r.pending.is_empty() => migration.done = true,
            Ok(_) => {}
            Err(e) => tracing::warn!(
                "shared roster: migrating the old groups stopped: {e}; tried again later"
            ),
        }
        if !migration.done {
            let wait = i64::try_from(MIGRATION_RETRY.as_secs()).unwrap_or(i64::MAX);
            migration.not_before = Some(now.saturating_add(wait));
        }
    }

    /// The stored `rosterinfo` row of `jid` (`Some(None)` if there is
    /// none), or `None` when its hash is `hash`: nothing to do.
    async fn stored_state(
        &self,
        jid: &str,
        hash: &str,
    ) -> Result<Option<Option<RosterInfo>>, RosterError> {
        let info = self
            .db({
                let jid = jid.to_owned();
                move |s| s.roster_info(&jid)
            })
            .await?;
        let same = info.as_ref().and_then(|i| i.responsehash.as_deref()) == Some(hash);
        Ok((!same).then_some(info))
    }

    /// Steps 1–3 of SPEC §9.
    async fn apply(
        &self,
        report: &mut SyncReport,
        plan: &Plan,
        user: &str,
        domain: &str,
        login_jid: &str,
        previous_groups: Vec<String>,
    ) -> Result<(), RosterError> {
        // 1. Full names.
        for (jid, name) in &plan.members {
            let Some(name) = name else { continue };
            let stored = self
                .db({
                    let jid = jid.clone();
                    move |s| s.roster_info(&jid)
                })
                .await?
                .and_then(|i| i.fullname);
            if stored.as_deref() == Some(name.as_str()) {
                continue;
            }
            let (local, member_domain) = split_jid(jid, domain);
            if self
                .call(report, &["set_vcard", local, member_domain, "FN", name])
                .await
                .is_some()
            {
                let (jid, name) = (jid.clone(), name.clone());
                self.db(move |s| s.set_fullname(&jid, &name)).await?;
            }
        }

        // 2. Groups and their members.
        let user_groups: BTreeSet<String> = plan
            .groups
            .iter()
            .filter(|(_, members)| members.contains(login_jid))
            .map(|(clean, _)| group_id(clean))
            .collect();
        // Groups whose step 2 already dealt with deleting the login user.
        let mut login_deleted = BTreeSet::new();
        // Groups the login user must stay recorded in, to retry a delete.
        let mut retry = BTreeSet::new();
        for (clean, members) in &plan.groups {
            let id = group_id(clean);
            let key = format!("{id}@{domain}");
            let stored = self
                .db({
                    let key = key.clone();
                    move |s| s.roster_group(&key)
                })
                .await?;
            // False when ejabberd's members are unknown: the group is then
            // left unrecorded, so the next sync creates and reads it again.
            let mut record = true;
            let previous: BTreeSet<String> = match stored {
                Some(list) => list.into_iter().collect(),
                None => {
                    let create = ["srg_create", id.as_str(), domain, clean, clean, &id];
                    if self.call(report, &create).await.is_none() {
                        continue;
                    }
                    let listed = self.call(report, &["srg_get_members", &id, domain]).await;
                    record = listed.is_some();
                    parse_members(listed.as_deref().unwrap_or_default())
                        .into_iter()
                        .collect()
                }
            };
            let mut now_in = previous.clone();
            for jid in members.difference(&previous) {
                let (local, member_domain) = split_jid(jid, domain);
                let args = ["srg_user_add", local, member_domain, &id, domain];
                if self.call(report, &args).await.is_some() {
                    now_in.insert(jid.clone());
                }
            }
            for jid in previous.difference(members) {
                let (local, member_domain) = split_jid(jid, domain);
                let args = ["srg_user_del", local, member_domain, &id, domain];
                let done = self.call(report, &args).await.is_some();
                if done {
                    now_in.remove(jid);
                }
                if jid == login_jid {
                    login_deleted.insert(id.clone());
                    if !done {
                        retry.insert(id.clone());
                    }
                }
            }
            if record {
                let list: Vec<String> = now_in.into_iter().collect();
                self.db(move |s| s.set_roster_group(&key, &list)).await?;
            }
        }

        // 3. Groups the login user left (they may be absent from the reply).
        for group in previous_groups {
            if group.is_empty() || user_groups.contains(&group) || login_deleted.contains(&group) {
                continue;
            }
            let args = ["srg_user_del", user, domain, group.as_str(), domain];
            if self.call(report, &args).await.is_none() {
                retry.insert(group);
                continue;
            }
            let key = format!("{group}@{domain}");
            let login_jid = login_jid.to_owned();
            self.db(move |s| {
                if let Some(members) = s.roster_group(&key)? {
                    if members.contains(&login_jid) {
                        let rest: Vec<String> =
                            members.into_iter().filter(|m| *m != login_jid).collect();
                        s.set_roster_group(&key, &rest)?;
                    }
                }
                Ok(())
            })
            .await?;
        }
        report.groups = user_groups.iter().cloned().collect();
        let recorded: Vec<String> = user_groups.union(&retry).cloned().collect();
        let login_jid = login_jid.to_owned();
        self.db(move |s| s.set_grouplist(&login_jid, &recorded))
            .await?;
        Ok(())
    }

    /// Runs one ejabberdctl command, recording it; `None` (and a log line
    /// and a [`CallFailure`]) if it failed.
    async fn call(&self, report: &mut SyncReport, args: &[&str]) -> Option<String> {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        tracing::debug!("ejabberdctl {args:?}");
        report.calls.push(args.clone());
        match self.ctl.run(&args).await {
            Ok(out) => Some(out),
            Err(error) => {
                tracing::warn!("ejabberdctl {args:?} failed: {error}");
                report.failures.push(CallFailure { args, error });
                None
            }
        }
    }

    /// Runs a blocking store operation off the reactor.
    async fn db<T, F>(&self, f: F) -> Result<T, RosterError>
    where
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        db(&self.store, f).await
    }
}

/// Runs a blocking store operation on `store` off the reactor.
async fn db<T, F>(store: &Arc<Store>, f: F) -> Result<T, RosterError>
where
    F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|_| RosterError::Aborted)?
        .map_err(RosterError::Store)
}

/// Logs how a sync of `jid` ended.
fn log_outcome(jid: &str, result: &Result<SyncReport, RosterError>) {
    match result {
        Ok(r) if r.unchanged => {
            tracing::debug!("shared roster of {jid:?}: unchanged");
        }
        Ok(r) if r.failures.is_empty() => {
            tracing::info!(
                "shared roster of {jid:?}: {} ejabberdctl calls",
                r.calls.len()
            );
        }
        Ok(r) => tracing::warn!(
            "shared roster of {jid:?}: {} of {} ejabberdctl calls failed; \
             pending until a later login: {}",
            r.failures.len(),
            r.calls.len(),
            r.pending().join("; ")
        ),
        Err(e) => tracing::error!(
            "shared roster of {jid:?}: {e}; the whole sync is pending until a later login"
        ),
    }
}

/// Waits for a sync started by [`RosterSync::spawn_after_login`] at most
/// `limit`; `None` if it is still running (it goes on in the background).
pub async fn wait_at_most(
    handle: JoinHandle<Result<SyncReport, RosterError>>,
    limit: Duration,
) -> Option<Result<SyncReport, RosterError>> {
    match tokio::time::timeout(limit, handle).await {
        Ok(Ok(result)) => Some(result),
        Ok(Err(_)) => Some(Err(RosterError::Aborted)),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::jsxc::parse_roster;
    use async_trait::async_trait;
    use serde_json::{json, Value};
    use std::path::Path;
    use std::sync::Mutex;

    fn roster(value: Value) -> Roster {
        parse_roster(&value).expect("roster")
    }

    /// Records calls; answers `srg_get_members` with `members`, fails the
    /// calls named in `fail` (a command, or a command and its first
    /// argument separated by a blank).
    #[derive(Default)]
    struct Recorder {
        calls: Mutex<Vec<Vec<String>>>,
        members: String,
        fail: Mutex<Vec<String>>,
    }

    impl Recorder {
        fn failing(fail: &[&str]) -> Recorder {
            let r = Recorder::default();
            r.set_fail(fail);
            r
        }

        fn set_fail(&self, fail: &[&str]) {
            *self.fail.lock().unwrap() = fail.iter().map(|f| (*f).to_owned()).collect();
        }

        fn take(&self) -> Vec<Vec<String>> {
            std::mem::take(&mut *self.calls.lock().unwrap())
        }
    }

    #[async_trait]
    impl Ejabberdctl for Recorder {
        async fn run(&self, args: &[String]) -> Result<String, CtlError> {
            self.calls.lock().unwrap().push(args.to_vec());
            let command = args.first().map(String::as_str).unwrap_or_default();
            let with_first = args[..args.len().min(2)].join(" ");
            let fails = self
                .fail
                .lock()
                .unwrap()
                .iter()
                .any(|f| *f == command || *f == with_first);
            if fails {
                return Err(CtlError::Failed {
                    status: Some(1),
                    output: "no".into(),
                });
            }
            Ok(match command {
                "srg_get_members" => self.members.clone(),
                _ => String::new(),
            })
        }
    }

    fn argv(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn strings(items: &[&str]) -> Vec<String> {
        argv(items)
    }

    fn memory_store() -> Arc<Store> {
        Arc::new(Store::open(Path::new(":memory:")).unwrap())
    }

    const BOARD: &str = "board-4816cbfd74aa8297";
    const OPS: &str = "ops_co-2e674c4fe232b0a7";

    #[tokio::test]
    async fn a_previously_unseen_group_is_created_and_filled() {
        let ctl = Arc::new(Recorder {
            members: "old@example.org\n".into(),
            ..Recorder::default()
        });
        let store = memory_store();
        let sync = RosterSync::new(ctl.clone(), store.clone());
        let roster = roster(json!({"alice": {"name": "Alice", "groups": ["staff"]}}));
        let report = sync
            .sync("alice", "example.org", &roster, 10)
            .await
            .unwrap();
        assert!(!report.unchanged);
        assert!(report.failures.is_empty());
        assert_eq!(report.groups, ["staff"]);
        let expected = vec![
            argv(&["set_vcard", "alice", "example.org", "FN", "Alice"]),
            argv(&[
                "srg_create",
                "staff",
                "example.org",
                "staff",
                "staff",
                "staff",
            ]),
            argv(&["srg_get_members", "staff", "example.org"]),
            argv(&[
                "srg_user_add",
                "alice",
                "example.org",
                "staff",
                "example.org",
            ]),
            argv(&["srg_user_del", "old", "example.org", "staff", "example.org"]),
        ];
        assert_eq!(report.calls, expected);
        assert_eq!(*ctl.calls.lock().unwrap(), expected);
        assert_eq!(
            store.roster_group("staff@example.org").unwrap(),
            Some(vec!["alice@example.org".to_owned()])
        );
        let info = store.roster_info("alice@example.org").unwrap().unwrap();
        assert_eq!(info.grouplist.as_deref(), Some("staff"));
        assert_eq!(info.responsehash, Some(roster.fingerprint()));
        assert_eq!(info.fullname.as_deref(), Some("Alice"));

        let again = sync
            .sync("alice", "example.org", &roster, 20)
            .await
            .unwrap();
        assert!(again.unchanged);
        assert_eq!(ctl.calls.lock().unwrap().len(), expected.len());
    }

    #[tokio::test]
    async fn failures_are_reported_and_retried_on_the_next_login() {
        let store = memory_store();
        let roster = roster(json!({"alice": {"groups": ["staff"]}, "bob": {"groups": ["staff"]}}));
        let failing = Arc::new(Recorder::failing(&["srg_user_add"]));
        let sync = RosterSync::new(failing, store.clone());
        let report = sync.sync("alice", "example.org", &roster, 1).await.unwrap();
        assert_eq!(report.failures.len(), 2);
        assert_eq!(
            report.pending(),
            [
                "adding alice@example.org to staff@example.org",
                "adding bob@example.org to staff@example.org"
            ]
        );
        assert_eq!(
            store.roster_group("staff@example.org").unwrap(),
            Some(vec![])
        );
        let info = store.roster_info("alice@example.org").unwrap().unwrap();
        assert_eq!(info.responsehash, None, "hash cleared for a retry");

        let working = Arc::new(Recorder::default());
        let sync = RosterSync::new(working.clone(), store.clone());
        let report = sync.sync("alice", "example.org", &roster, 2).await.unwrap();
        assert!(report.failures.is_empty());
        assert_eq!(
            report.calls,
            vec![
                argv(&[
                    "srg_user_add",
                    "alice",
                    "example.org",
                    "staff",
                    "example.org"
                ]),
                argv(&["srg_user_add", "bob", "example.org", "staff", "example.org"]),
            ]
        );
    }

    #[tokio::test]
    async fn odd_names_get_nodeprep_stable_ids_and_keep_their_label() {
        let ctl = Arc::new(Recorder::default());
        let store = memory_store();
        let sync = RosterSync::new(ctl.clone(), store.clone());
        let roster = roster(json!({
            "alice": {"groups": ["Board", "Ops & Co.", "staff"]},
            "bob": {"groups": ["Ops & Co."]}
        }));
        let report = sync.sync("alice", "d.org", &roster, 1).await.unwrap();
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        assert_eq!(
            ctl.take(),
            vec![
                argv(&["srg_create", BOARD, "d.org", "Board", "Board", BOARD]),
                argv(&["srg_get_members", BOARD, "d.org"]),
                argv(&["srg_user_add", "alice", "d.org", BOARD, "d.org"]),
                argv(&["srg_create", OPS, "d.org", "Ops & Co.", "Ops & Co.", OPS]),
                argv(&["srg_get_members", OPS, "d.org"]),
                argv(&["srg_user_add", "alice", "d.org", OPS, "d.org"]),
                argv(&["srg_user_add", "bob", "d.org", OPS, "d.org"]),
                argv(&["srg_create", "staff", "d.org", "staff", "staff", "staff"]),
                argv(&["srg_get_members", "staff", "d.org"]),
                argv(&["srg_user_add", "alice", "d.org", "staff", "d.org"]),
            ]
        );
        assert_eq!(report.groups, [BOARD, OPS, "staff"]);
        assert_eq!(
            store.roster_group_names().unwrap(),
            [
                format!("{BOARD}@d.org"),
                format!("{OPS}@d.org"),
                "staff@d.org".to_owned()
            ]
        );
        let info = store.roster_info("alice@d.org").unwrap().unwrap();
        assert_eq!(
            info.grouplist.as_deref(),
            Some(format!("{BOARD}\t{OPS}\tstaff").as_str())
        );

        // Leaving a group deletes the user under the id.
        let report = sync
            .sync(
                "alice",
                "d.org",
                &self::roster(json!({"alice": {"groups": ["staff"]}})),
                2,
            )
            .await
            .unwrap();
        assert_eq!(
            report.calls,
            vec![
                argv(&["srg_user_del", "alice", "d.org", BOARD, "d.org"]),
                argv(&["srg_user_del", "alice", "d.org", OPS, "d.org"]),
            ]
        );
        assert_eq!(
            store.roster_group(&format!("{OPS}@d.org")).unwrap(),
            Some(strings(&["bob@d.org"]))
        );
    }

    #[tokio::test]
    async fn a_failed_create_or_member_read_is_done_again() {
        let store = memory_store();
        let ctl = Arc::new(Recorder::failing(&["srg_create"]));
        let sync = RosterSync::new(ctl.clone(), store.clone());
        let roster = roster(json!({"alice": {"groups": ["Board"]}}));
        let report = sync.sync("alice", "d.org", &roster, 1).await.unwrap();
        assert_eq!(
            report.pending(),
            [format!("creating group {BOARD}@d.org (\"Board\")")]
        );
        assert_eq!(store.roster_group(&format!("{BOARD}@d.org")).unwrap(), None);
        ctl.take();

        // Now srg_get_members fails: members are added, the group stays
        // unrecorded.
        ctl.set_fail(&["srg_get_members"]);
        let report = sync.sync("alice", "d.org", &roster, 2).await.unwrap();
        assert_eq!(
            ctl.take(),
            vec![
                argv(&["srg_create", BOARD, "d.org", "Board", "Board", BOARD]),
                argv(&["srg_get_members", BOARD, "d.org"]),
                argv(&["srg_user_add", "alice", "d.org", BOARD, "d.org"]),
            ]
        );
        assert_eq!(
            report.pending(),
            [format!("reading the members of {BOARD}@d.org")]
        );
        assert_eq!(store.roster_group(&format!("{BOARD}@d.org")).unwrap(), None);
        assert_eq!(
            store
                .roster_info("alice@d.org")
                .unwrap()
                .unwrap()
                .responsehash,
            None
        );

        ctl.set_fail(&[]);
        let report = sync.sync("alice", "d.org", &roster, 3).await.unwrap();
        assert!(report.failures.is_empty());
        assert_eq!(
            ctl.take(),
            vec![
                argv(&["srg_create", BOARD, "d.org", "Board", "Board", BOARD]),
                argv(&["srg_get_members", BOARD, "d.org"]),
                argv(&["srg_user_add", "alice", "d.org", BOARD, "d.org"]),
            ]
        );
        assert_eq!(
            store.roster_group(&format!("{BOARD}@d.org")).unwrap(),
            Some(strings(&["alice@d.org"]))
        );
        let again = sync.sync("alice", "d.org", &roster, 4).await.unwrap();
        assert!(again.unchanged);
        assert!(ctl.take().is_empty());
    }

    #[tokio::test]
    async fn a_failed_delete_of_the_login_user_is_done_again() {
        let store = memory_store();
        let ctl = Arc::new(Recorder::default());
        let sync = RosterSync::new(ctl.clone(), store.clone());
        let both = roster(json!({"alice": {"groups": ["Board", "staff"]}}));
        sync.sync("alice", "d.org", &both, 1).await.unwrap();
        ctl.take();
        ctl.set_fail(&["srg_user_del"]);
        let only_staff = roster(json!({"alice": {"groups": ["staff"]}}));
        let report = sync.sync("alice", "d.org", &only_staff, 2).await.unwrap();
        assert_eq!(
            report.pending(),
            [format!("removing alice@d.org from {BOARD}@d.org")]
        );
        let info = store.roster_info("alice@d.org").unwrap().unwrap();
        assert_eq!(
            info.grouplist.as_deref(),
            Some(format!("{BOARD}\tstaff").as_str())
        );
        ctl.take();
        ctl.set_fail(&[]);
        let report = sync.sync("alice", "d.org", &only_staff, 3).await.unwrap();
        assert!(report.failures.is_empty());
        assert_eq!(
            report.calls,
            vec![argv(&["srg_user_del", "alice", "d.org", BOARD, "d.org"])]
        );
        let info = store.roster_info("alice@d.org").unwrap().unwrap();
        assert_eq!(info.grouplist.as_deref(), Some("staff"));
        assert!(info.responsehash.is_some());
    }

    #[test]
    fn pending_steps_are_named() {
        let failure = |args: &[&str]| CallFailure {
            args: argv(args),
            error: CtlError::Timeout(Duration::from_secs(1)),
        };
        let report = SyncReport {
            failures: vec![
                failure(&["set_vcard", "bob", "x.org", "FN", "Bob"]),
                failure(&["srg_user_del", "bob", "x.org", "staff", "d.org"]),
                failure(&["srg_delete", "Ops & Co.", "d.org"]),
                failure(&["status"]),
            ],
            ..SyncReport::default()
        };
        assert_eq!(
            report.pending(),
            [
                "full name of bob@x.org",
                "removing bob@x.org from staff@d.org",
                "deleting old group Ops & Co.@d.org",
                "ejabberdctl [\"status\"]",
            ]
        );
    }

    /// Old-scheme state: groups `Board`, `Ops & Co.` and `staff` of d.org
    /// as the clean name was the id.
    fn old_scheme_store() -> Arc<Store> {
        let store = memory_store();
        for (key, members) in [
            ("Board@d.org", &["alice@d.org", "bob@d.org"][..]),
            ("Ops & Co.@d.org", &["alice@d.org"][..]),
            ("staff@d.org", &["alice@d.org", "carol@d.org"][..]),
        ] {
            store.set_roster_group(key, &strings(members)).unwrap();
        }
        for (jid, groups) in [
            ("alice@d.org", &["Board", "Ops & Co.", "staff"][..]),
            ("bob@d.org", &["Board"][..]),
            ("carol@d.org", &["staff"][..]),
        ] {
            store.set_roster_hash(jid, "old", 1).unwrap();
            store.set_grouplist(jid, &strings(groups)).unwrap();
        }
        store
    }

    #[tokio::test]
    async fn old_groups_are_deleted_once_and_their_users_rebuilt() {
        let store = old_scheme_store();
        let ctl = Arc::new(Recorder::failing(&["srg_delete Ops & Co."]));
        let sync = RosterSync::new(ctl.clone(), store.clone());
        let report = sync.migrate_legacy_groups().await.unwrap();
        assert_eq!(
            report.calls,
            vec![
                argv(&["srg_delete", "Board", "d.org"]),
                argv(&["srg_delete", "Ops & Co.", "d.org"]),
            ]
        );
        assert_eq!(
            report.migrated,
            [("Board@d.org".to_owned(), BOARD.to_owned())]
        );
        assert_eq!(report.users, strings(&["alice@d.org", "bob@d.org"]));
        assert_eq!(report.pending.len(), 1);
        assert_eq!(
            report.pending[0].step(),
            "deleting old group Ops & Co.@d.org"
        );
        assert_eq!(
            store.roster_group_names().unwrap(),
            strings(&["Ops & Co.@d.org", "staff@d.org"])
        );
        let info = |jid: &str| store.roster_info(jid).unwrap().unwrap();
        assert_eq!(
            info("alice@d.org").grouplist.as_deref(),
            Some(format!("Ops & Co.\t{BOARD}\tstaff").as_str())
        );
        assert_eq!(info("alice@d.org").responsehash, None);
        assert_eq!(info("bob@d.org").grouplist.as_deref(), Some(BOARD));
        assert_eq!(info("bob@d.org").responsehash, None);
        assert_eq!(info("carol@d.org").responsehash.as_deref(), Some("old"));

        // The pending one is tried again; nothing else is touched twice.
        ctl.set_fail(&[]);
        ctl.take();
        // Synchronously, as the administration commands run it.
        let mut deletes = Vec::new();
        let report = migrate_legacy_groups(&store, &mut |args| {
            deletes.push(args.to_vec());
            Ok(())
        })
        .unwrap();
        assert_eq!(deletes, report.calls);
        assert_eq!(
            report.calls,
            vec![argv(&["srg_delete", "Ops & Co.", "d.org"])]
        );
        assert!(report.pending.is_empty());
        assert_eq!(
            store.roster_group_names().unwrap(),
            strings(&["staff@d.org"])
        );
        assert_eq!(
            info("alice@d.org").grouplist.as_deref(),
            Some(format!("{BOARD}\t{OPS}\tstaff").as_str())
        );
        let report = sync.migrate_legacy_groups().await.unwrap();
        assert!(report.calls.is_empty(), "nothing left: {:?}", report.calls);
    }

    #[tokio::test]
    async fn the_sync_migrates_first_then_rebuilds_under_the_new_ids() {
        let store = old_scheme_store();
        let ctl = Arc::new(Recorder::default());
        let sync = RosterSync::new(ctl.clone(), store.clone());
        let roster = roster(json!({
            "alice": {"groups": ["Board", "Ops & Co.", "staff"]},
            "bob": {"groups": ["Board"]},
            "carol": {"groups": ["staff"]}
        }));
        let report = sync.sync("alice", "d.org", &roster, 1000).await.unwrap();
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        assert_eq!(
            ctl.take(),
            vec![
                argv(&["srg_delete", "Board", "d.org"]),
                argv(&["srg_delete", "Ops & Co.", "d.org"]),
                argv(&["srg_create", BOARD, "d.org", "Board", "Board", BOARD]),
                argv(&["srg_get_members", BOARD, "d.org"]),
                argv(&["srg_user_add", "alice", "d.org", BOARD, "d.org"]),
                argv(&["srg_user_add", "bob", "d.org", BOARD, "d.org"]),
                argv(&["srg_create", OPS, "d.org", "Ops & Co.", "Ops & Co.", OPS]),
                argv(&["srg_get_members", OPS, "d.org"]),
                argv(&["srg_user_add", "alice", "d.org", OPS, "d.org"]),
            ]
        );
        // Once per process: carol's unchanged `staff` is left alone, and
        // bob's login (his hash was cleared) only records his groups.
        let report = sync.sync("bob", "d.org", &roster, 1001).await.unwrap();
        assert!(report.calls.is_empty(), "{:?}", report.calls);
        assert_eq!(
            store
                .roster_info("bob@d.org")
                .unwrap()
                .unwrap()
                .grouplist
                .as_deref(),
            Some(BOARD)
        );
    }

    #[tokio::test]
    async fn a_pending_migration_is_retried_by_a_later_sync_even_if_unchanged() {
        let store = old_scheme_store();
        let ctl = Arc::new(Recorder::failing(&["srg_delete"]));
        let sync = RosterSync::new(ctl.clone(), store.clone());
        let carol = roster(json!({"carol": {"groups": ["staff"]}}));
        // carol's roster is synced once so that it is unchanged from now on.
        sync.sync("carol", "d.org", &carol, 1000).await.unwrap();
        let first = ctl.take();
        assert_eq!(
            first[..2],
            [
                argv(&["srg_delete", "Board", "d.org"]),
                argv(&["srg_delete", "Ops & Co.", "d.org"]),
            ]
        );
        assert!(
            sync.sync("carol", "d.org", &carol, 1001)
                .await
                .unwrap()
                .unchanged
        );
        assert!(ctl.take().is_empty(), "not again before MIGRATION_RETRY");
        ctl.set_fail(&[]);
        let later = 1000 + MIGRATION_RETRY.as_secs() as i64;
        assert!(
            sync.sync("carol", "d.org", &carol, later)
                .await
                .unwrap()
                .unchanged
        );
        assert_eq!(ctl.take().len(), 2);
        assert_eq!(
            store.roster_group_names().unwrap(),
            strings(&["staff@d.org"])
        );
        assert!(
            sync.sync("carol", "d.org", &carol, later + 1000)
                .await
                .unwrap()
                .unchanged
        );
        assert!(ctl.take().is_empty(), "done for this process");
    }

    /// A hung ejabberdctl (a real script, run through [`CommandCtl`]) and
    /// many logins of one user: one sync runs, one roster waits (the
    /// latest), nothing else piles up; once ejabberdctl answers, the first
    /// roster and then the last one are applied, none in between.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn syncs_of_one_jid_coalesce_while_ejabberdctl_hangs() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let calls = dir.path().join("calls");
        let go = dir.path().join("go");
        let script = dir.path().join("ejabberdctl");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"$*\" >> {calls}\nwhile [ ! -e {go} ]; do sleep 0.02; done\n",
                calls = calls.display(),
                go = go.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let ctl = Arc::new(CommandCtl::new(&script));
        let sync = Arc::new(RosterSync::new(ctl, memory_store()));
        let named =
            |i: usize| roster(json!({"alice": {"name": format!("Alice {i}"), "groups": []}}));

        let first = sync.spawn_after_login("alice".into(), "example.org".into(), named(1), 10);
        // The first ejabberdctl call has started and hangs.
        let started = async {
            while std::fs::read_to_string(&calls).map_or(true, |c| !c.ends_with('\n')) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), started)
            .await
            .expect("ejabberdctl started");
        let n = 50;
        for i in 2..=n {
            let handle = sync.spawn_after_login("alice".into(), "example.org".into(), named(i), 10);
            let report = handle.await.unwrap().unwrap();
            assert!(report.queued, "login {i} waits in the slot");
            assert_eq!(sync.queue_len(), (1, 1), "one running, one waiting");
        }
        // Still the one ejabberdctl run: no sync task ran behind it.
        assert_eq!(std::fs::read_to_string(&calls).unwrap().lines().count(), 1);

        std::fs::write(&go, b"").unwrap();
        let report = tokio::time::timeout(Duration::from_secs(20), first)
            .await
            .expect("first sync ends")
            .unwrap()
            .unwrap();
        assert!(!report.queued);
        let drained = async {
            while sync.queue_len() != (0, 0) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(20), drained)
            .await
            .expect("the waiting roster is synchronised");
        let ran = std::fs::read_to_string(&calls).unwrap();
        let vcards: Vec<&str> = ran.lines().filter(|l| l.starts_with("set_vcard")).collect();
        assert_eq!(
            vcards,
            [
                "set_vcard alice example.org FN Alice 1",
                &format!("set_vcard alice example.org FN Alice {n}")
            ],
            "{ran}"
        );
    }
}
