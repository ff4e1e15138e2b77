//! ejabberd shared roster groups kept in step with Nextcloud groups (SPEC §9), through `ejabberdctl`.
//!
//! After a successful login the caller fetches the user's shared roster
//! from the back end (a normalised [`Roster`]) and hands it to
//! [`RosterSync::spawn_after_login`] (or awaits [`RosterSync::sync`]
//! itself). If the roster's fingerprint equals the one stored for the JID
//! (in `rosterinfo.responsehash`, where the original kept the SHA-256 of the
//! raw reply body; an upgrade therefore re-synchronises each user once),
//! nothing runs. Otherwise the fingerprint is stored and:
//!
//! 1. every member gets its vCard full name set when it changed;
//! 2. every group (by its clean name, see [`clean_group_name`]) is created
//!    in ejabberd when we have no record of it, and members are added or
//!    deleted until ejabberd's group matches the reply;
//! 3. the login user is deleted from the groups it was in last time and is
//!    no longer in, compared as full JIDs (the original compared a bare UID
//!    with the login JID and so never noticed a user leaving a group).
//!
//! Choices beyond the letter of the SPEC, each so that a failure heals on
//! the next login instead of sticking until the Nextcloud groups change:
//! a stored member list or full name records only what ejabberdctl accepted,
//! and when any call failed the stored reply hash is cleared again. The
//! stored `rosterinfo.grouplist` holds clean group names, as the original's
//! did; a group whose `srg_user_del` of the login user failed stays in it.
//!
//! The rooms: [`ctl`] runs ejabberdctl and knows how its versions spell
//! `srg_create`; [`names`] turns Nextcloud names into ejabberd ones;
//! [`plan`] turns a roster into members and groups; this file applies a
//! plan with ejabberdctl and records what it did.
//!
//! ## `srg_create` and ejabberd 24.02
//! The fifth argument of `srg_create` names the groups whose members see
//! the new group. Up to 23.x it is one string in which the two characters
//! `\n` separate group names. Since 24.02 (API v1) it is a list, and
//! ejabberdctl splits a list argument at every `,` and trims blanks around
//! each element. For a group name without `,`, without `\n` and without
//! blanks at either end both spellings are the same argument, so the style
//! matters only for other names; [`SrgCreateStyle::Auto`] then asks
//! `ejabberdctl help srg_create` once (24.02+ prints `display::[ group::binary ]`,
//! older versions `display::binary`) and remembers the answer. A name that
//! the style cannot express is created with an empty display list; with the
//! list style it is then shown to its own members by `srg_add_displayed`
//! (ejabberd 24.06+).

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::backend::Roster;
use crate::store::{split_list, RosterInfo, Store, StoreError};

pub mod ctl;
pub mod names;
mod plan;

pub use ctl::{
    detect_srg_create_style, CommandCtl, CtlError, Ejabberdctl, SrgCreateStyle, DEFAULT_CTL_TIMEOUT,
};
pub use names::{clean_group_name, member_jid, parse_members};

use ctl::{display_argument, plain_display};
use names::split_jid;
use plan::Plan;

/// How long the `auth` answer may wait for the roster sync (SPEC §9); the
/// sync goes on in the background after that.
pub const LOGIN_WAIT: Duration = Duration::from_secs(1);

/// Why a sync stopped. ejabberdctl failures are not among these: they are
/// logged, listed in [`SyncReport::failures`], and the sync goes on.
#[derive(Debug, thiserror::Error)]
pub enum RosterError {
    /// The database failed part-way; the stored hash was cleared where
    /// possible so that the next login tries again.
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

/// What one sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// The reply equals the last one stored: nothing was run or written.
    pub unchanged: bool,
    /// Every ejabberdctl call, in order (arguments after the program name).
    pub calls: Vec<Vec<String>>,
    /// The calls that failed. If any did, the stored reply hash was
    /// cleared, so the next login synchronises again.
    pub failures: Vec<CallFailure>,
    /// The login user's groups now (clean names, sorted).
    pub groups: Vec<String>,
    /// Group names left out because nothing remained after cleaning.
    pub skipped_groups: Vec<String>,
}

/// Keeps ejabberd's shared roster groups in step with the Nextcloud groups
/// of the users who log in (SPEC §9).
pub struct RosterSync {
    ctl: Arc<dyn Ejabberdctl>,
    store: Arc<Store>,
    style: SrgCreateStyle,
    /// What `Auto` found out, once it did.
    detected: Mutex<Option<SrgCreateStyle>>,
    /// One sync at a time in this process: two logins at once would
    /// otherwise both create the same group.
    running: tokio::sync::Mutex<()>,
}

impl fmt::Debug for RosterSync {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RosterSync")
            .field("style", &self.style)
            .finish_non_exhaustive()
    }
}

impl RosterSync {
    /// A sync that runs `ctl` and keeps its state in `store`.
    pub fn new(ctl: Arc<dyn Ejabberdctl>, store: Arc<Store>, style: SrgCreateStyle) -> RosterSync {
        RosterSync {
            ctl,
            store,
            style,
            detected: Mutex::new(None),
            running: tokio::sync::Mutex::new(()),
        }
    }

    /// Starts [`sync`](Self::sync) as its own task and returns its handle.
    /// The caller may wait on the handle for [`LOGIN_WAIT`] at most
    /// (`tokio::time::timeout(LOGIN_WAIT, &mut handle)`); dropping the
    /// handle does not stop the task. The outcome is logged either way.
    pub fn spawn_after_login(
        self: &Arc<Self>,
        user: String,
        domain: String,
        roster: Roster,
        now: i64,
    ) -> JoinHandle<Result<SyncReport, RosterError>> {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let jid = format!("{user}@{domain}");
            let result = this.sync(&user, &domain, &roster, now).await;
            match &result {
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
                     the next login tries again",
                    r.failures.len(),
                    r.calls.len()
                ),
                Err(e) => tracing::error!("shared roster of {jid:?}: {e}"),
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
        // Checked before queueing behind another sync, and again after, as
        // that one may have been for the same user.
        if self.stored_state(&jid, &hash).await?.is_none() {
            return Ok(unchanged);
        }
        let _one_at_a_time = self.running.lock().await;
        let Some(info) = self.stored_state(&jid, &hash).await? else {
            return Ok(unchanged);
        };
        let plan = Plan::from_roster(roster, domain);
        self.db({
            let jid = jid.clone();
            move |s| s.set_roster_hash(&jid, &hash, now)
        })
        .await?;
        let previous_groups = split_list(
            info.and_then(|i| i.grouplist)
                .as_deref()
                .unwrap_or_default(),
        );
        let mut report = SyncReport {
            skipped_groups: plan.skipped_groups.clone(),
            ..SyncReport::default()
        };
        let outcome = self
            .apply(&mut report, &plan, user, domain, &jid, previous_groups)
            .await;
        if outcome.is_err() || !report.failures.is_empty() {
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
            .map(|(clean, _)| clean.clone())
            .collect();
        // Groups whose step 2 already dealt with deleting the login user.
        let mut login_deleted = BTreeSet::new();
        // Groups the login user must stay recorded in, to retry a delete.
        let mut retry = BTreeSet::new();
        for (clean, members) in &plan.groups {
            let key = format!("{clean}@{domain}");
            let stored = self
                .db({
                    let key = key.clone();
                    move |s| s.roster_group(&key)
                })
                .await?;
            let previous: BTreeSet<String> = match stored {
                Some(list) => list.into_iter().collect(),
                None => {
                    if !self.create_group(report, clean, domain).await {
                        // Unrecorded, so the next sync tries again.
                        continue;
                    }
                    let listed = self.call(report, &["srg_get_members", clean, domain]).await;
                    parse_members(listed.as_deref().unwrap_or_default())
                        .into_iter()
                        .collect()
                }
            };
            let mut now_in = previous.clone();
            for jid in members.difference(&previous) {
                let (local, member_domain) = split_jid(jid, domain);
                let args = ["srg_user_add", local, member_domain, clean, domain];
                if self.call(report, &args).await.is_some() {
                    now_in.insert(jid.clone());
                }
            }
            for jid in previous.difference(members) {
                let (local, member_domain) = split_jid(jid, domain);
                let args = ["srg_user_del", local, member_domain, clean, domain];
                let done = self.call(report, &args).await.is_some();
                if done {
                    now_in.remove(jid);
                }
                if jid == login_jid {
                    login_deleted.insert(clean.clone());
                    if !done {
                        retry.insert(clean.clone());
                    }
                }
            }
            let list: Vec<String> = now_in.into_iter().collect();
            self.db(move |s| s.set_roster_group(&key, &list)).await?;
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

    /// `srg_create CLEAN DOMAIN CLEAN CLEAN CLEAN`, with the display
    /// argument spelled for the ejabberd at hand. False if it failed.
    async fn create_group(&self, report: &mut SyncReport, clean: &str, domain: &str) -> bool {
        let style = if plain_display(clean) {
            // Same argument in every style: no need to ask.
            SrgCreateStyle::Legacy
        } else {
            self.resolved_style(report).await
        };
        let display = display_argument(style, clean);
        let args = [
            "srg_create",
            clean,
            domain,
            clean,
            clean,
            display.unwrap_or(""),
        ];
        if self.call(report, &args).await.is_none() {
            return false;
        }
        if display.is_none() {
            match style {
                SrgCreateStyle::List => {
                    // Best effort: needs ejabberd 24.06; a failure is reported.
                    self.call(report, &["srg_add_displayed", clean, domain, clean])
                        .await;
                }
                _ => tracing::warn!(
                    "shared roster group {clean:?}: this ejabberd cannot list it \
                     as displayed to its own members; set that in ejabberd"
                ),
            }
        }
        true
    }

    /// The configured style, or for `Auto` what `ejabberdctl help
    /// srg_create` says (asked once; `Legacy` while that fails).
    async fn resolved_style(&self, report: &mut SyncReport) -> SrgCreateStyle {
        if self.style != SrgCreateStyle::Auto {
            return self.style;
        }
        if let Some(known) = *self.detected.lock().unwrap_or_else(|p| p.into_inner()) {
            return known;
        }
        let help = self.call(report, &["help", "srg_create"]).await;
        match help.as_deref().and_then(detect_srg_create_style) {
            Some(found) => {
                tracing::info!("ejabberd's srg_create takes the {found} display argument");
                *self.detected.lock().unwrap_or_else(|p| p.into_inner()) = Some(found);
                found
            }
            None => {
                tracing::warn!(
                    "cannot tell from `ejabberdctl help srg_create` how it takes its \
                     display argument; using the pre-24.02 form this time"
                );
                SrgCreateStyle::Legacy
            }
        }
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
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|_| RosterError::Aborted)?
            .map_err(RosterError::Store)
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

    fn roster(value: Value) -> Roster {
        parse_roster(&value).expect("roster")
    }

    /// Records calls; answers `srg_get_members` with `members`, fails the
    /// commands named in `fail`.
    #[derive(Default)]
    struct Recorder {
        calls: Mutex<Vec<Vec<String>>>,
        members: String,
        fail: Vec<&'static str>,
        help: Option<&'static str>,
    }

    #[async_trait]
    impl Ejabberdctl for Recorder {
        async fn run(&self, args: &[String]) -> Result<String, CtlError> {
            self.calls.lock().unwrap().push(args.to_vec());
            let command = args.first().map(String::as_str).unwrap_or_default();
            if self.fail.contains(&command) {
                return Err(CtlError::Failed {
                    status: Some(1),
                    output: "no".into(),
                });
            }
            Ok(match command {
                "srg_get_members" => self.members.clone(),
                "help" => self.help.unwrap_or_default().to_owned(),
                _ => String::new(),
            })
        }
    }

    fn argv(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn memory_store() -> Arc<Store> {
        Arc::new(Store::open(Path::new(":memory:")).unwrap())
    }

    #[tokio::test]
    async fn a_previously_unseen_group_is_created_and_filled() {
        let ctl = Arc::new(Recorder {
            members: "old@example.org\n".into(),
            ..Recorder::default()
        });
        let store = memory_store();
        let sync = RosterSync::new(ctl.clone(), store.clone(), SrgCreateStyle::Auto);
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
        let failing = Arc::new(Recorder {
            fail: vec!["srg_user_add"],
            ..Recorder::default()
        });
        let sync = RosterSync::new(failing, store.clone(), SrgCreateStyle::Legacy);
        let report = sync.sync("alice", "example.org", &roster, 1).await.unwrap();
        assert_eq!(report.failures.len(), 2);
        assert_eq!(
            store.roster_group("staff@example.org").unwrap(),
            Some(vec![])
        );
        let info = store.roster_info("alice@example.org").unwrap().unwrap();
        assert_eq!(info.responsehash, None, "hash cleared for a retry");

        let working = Arc::new(Recorder::default());
        let sync = RosterSync::new(working.clone(), store.clone(), SrgCreateStyle::Legacy);
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
    async fn list_style_adds_an_inexpressible_group_to_its_own_display_list() {
        let ctl = Arc::new(Recorder {
            help: Some("display::[ group::binary ] : List of groups to display"),
            ..Recorder::default()
        });
        let sync = RosterSync::new(ctl, memory_store(), SrgCreateStyle::Auto);
        let roster = roster(json!({"alice": {"groups": ["a,b", "c,d", "plain"]}}));
        let report = sync.sync("alice", "d.org", &roster, 1).await.unwrap();
        let creating: Vec<&Vec<String>> = report
            .calls
            .iter()
            .filter(|c| matches!(c[0].as_str(), "help" | "srg_create" | "srg_add_displayed"))
            .collect();
        assert_eq!(
            creating,
            [
                &argv(&["help", "srg_create"]),
                &argv(&["srg_create", "a,b", "d.org", "a,b", "a,b", ""]),
                &argv(&["srg_add_displayed", "a,b", "d.org", "a,b"]),
                &argv(&["srg_create", "c,d", "d.org", "c,d", "c,d", ""]),
                &argv(&["srg_add_displayed", "c,d", "d.org", "c,d"]),
                &argv(&["srg_create", "plain", "d.org", "plain", "plain", "plain"]),
            ]
        );
    }

    #[tokio::test]
    async fn legacy_answer_keeps_commas_in_the_display_argument() {
        let ctl = Arc::new(Recorder {
            help: Some("display::binary : Groups to display"),
            ..Recorder::default()
        });
        let sync = RosterSync::new(ctl, memory_store(), SrgCreateStyle::Auto);
        let roster = roster(json!({"alice": {"groups": ["a,b"]}}));
        let report = sync.sync("alice", "d.org", &roster, 1).await.unwrap();
        assert_eq!(report.calls[0], argv(&["help", "srg_create"]));
        assert_eq!(
            report.calls[1],
            argv(&["srg_create", "a,b", "d.org", "a,b", "a,b", "a,b"])
        );
    }
}
