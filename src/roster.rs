//! ejabberd shared roster groups kept in step with Nextcloud groups (SPEC §9), through `ejabberdctl`.
//!
//! After a successful login the caller fetches the user's `sharedroster`
//! reply and hands it to [`RosterSync::spawn_after_login`] (or awaits
//! [`RosterSync::sync`] itself). If the SHA-256 of the reply body equals the
//! one stored for the JID, nothing runs. Otherwise the hash is stored and:
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

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;
use unicode_general_category::{get_general_category, GeneralCategory};

use crate::config::ENV_PREFIX;
use crate::store::{split_list, RosterInfo, Store, StoreError};

/// How long the `auth` answer may wait for the roster sync (SPEC §9); the
/// sync goes on in the background after that.
pub const LOGIN_WAIT: Duration = Duration::from_secs(1);

/// Default limit for one ejabberdctl run. A healthy one takes about a
/// second (it starts an Erlang node); ejabberdctl's own RPC timeout is 60 s.
pub const DEFAULT_CTL_TIMEOUT: Duration = Duration::from_secs(30);

/// Most characters of ejabberdctl's complaint kept in a [`CtlError`].
const COMPLAINT_LIMIT: usize = 400;

/// A group name ending in this (ZERO WIDTH SPACE) is left out: the
/// administrator's way to keep big groups out of the shared roster.
const EXCLUDED_GROUP_MARK: char = '\u{200B}';

// ----- ejabberdctl ---------------------------------------------------------

/// Why one ejabberdctl run failed. The sync logs it and goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CtlError {
    /// The program could not be started (missing, not executable).
    #[error("cannot run {0}")]
    Spawn(String),
    /// It ran longer than the limit and was killed.
    #[error("no answer within {0:?}; killed")]
    Timeout(Duration),
    /// It exited unsuccessfully; `output` is the start of its complaint
    /// (stderr, or stdout where ejabberdctl prints its errors).
    #[error("exit status {}: {output}", status_text(*.status))]
    Failed {
        /// Exit code; `None` when a signal ended it.
        status: Option<i32>,
        /// Start of the complaint, at most a few hundred characters.
        output: String,
    },
}

fn status_text(status: Option<i32>) -> String {
    status.map_or_else(|| "none (killed by a signal)".to_owned(), |c| c.to_string())
}

/// Runs ejabberdctl commands. The real one is [`CommandCtl`]; tests swap in
/// recording fakes.
#[async_trait]
pub trait Ejabberdctl: Send + Sync {
    /// Runs `ejabberdctl ARGS...` and returns its standard output.
    async fn run(&self, args: &[String]) -> Result<String, CtlError>;
}

/// The ejabberdctl program (or a wrapper such as `xcejabberdctl`), run with
/// an argument vector, never through a shell.
#[derive(Debug, Clone)]
pub struct CommandCtl {
    path: PathBuf,
    timeout: Duration,
}

impl CommandCtl {
    /// The program at `path`, with [`DEFAULT_CTL_TIMEOUT`].
    pub fn new(path: impl Into<PathBuf>) -> CommandCtl {
        CommandCtl {
            path: path.into(),
            timeout: DEFAULT_CTL_TIMEOUT,
        }
    }

    /// Sets the limit for one run; a run still going then is killed.
    pub fn with_timeout(mut self, timeout: Duration) -> CommandCtl {
        self.timeout = timeout;
        self
    }

    /// The program run.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[async_trait]
impl Ejabberdctl for CommandCtl {
    async fn run(&self, args: &[String]) -> Result<String, CtlError> {
        let mut cmd = tokio::process::Command::new(&self.path);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // ejabberdctl decodes its arguments in the locale's charset: under
        // C/POSIX "jürgen" would reach ejabberd as "jÃ¼rgen", and still exit
        // 0. Our arguments are UTF-8, so say so.
        cmd.env("LC_ALL", "C.UTF-8");
        // Our own settings (XCAUTH_SECRET above all) are none of its business.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with(ENV_PREFIX) {
                cmd.env_remove(key);
            }
        }
        let child = cmd
            .spawn()
            .map_err(|e| CtlError::Spawn(format!("{}: {e}", self.path.display())))?;
        // On timeout the future, and with it the child, is dropped, and
        // kill_on_drop kills it (its own children finish on their own).
        let output = tokio::time::timeout(self.timeout, child.wait_with_output())
            .await
            .map_err(|_| CtlError::Timeout(self.timeout))?
            .map_err(|e| CtlError::Spawn(format!("{}: {e}", self.path.display())))?;
        if output.status.success() {
            return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
        }
        let complaint = if output.stderr.iter().all(u8::is_ascii_whitespace) {
            &output.stdout
        } else {
            &output.stderr
        };
        Err(CtlError::Failed {
            status: output.status.code(),
            output: excerpt(complaint),
        })
    }
}

/// The start of a complaint: lossy UTF-8, trimmed, at most
/// [`COMPLAINT_LIMIT`] characters.
fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    match text.char_indices().nth(COMPLAINT_LIMIT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// How `srg_create` takes its last argument, the groups shown to the new
/// group's members (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SrgCreateStyle {
    /// ejabberd up to 23.x: one string, group names separated by the two
    /// characters `\n`.
    Legacy,
    /// ejabberd 24.02 and later: a list, which ejabberdctl splits at `,`,
    /// trimming blanks around each element.
    List,
    /// Ask `ejabberdctl help srg_create` the first time it matters and
    /// remember the answer (`Legacy` while the question fails).
    #[default]
    Auto,
}

impl FromStr for SrgCreateStyle {
    type Err = String;

    fn from_str(s: &str) -> Result<SrgCreateStyle, String> {
        match s.to_ascii_lowercase().as_str() {
            "legacy" => Ok(SrgCreateStyle::Legacy),
            "list" => Ok(SrgCreateStyle::List),
            "auto" => Ok(SrgCreateStyle::Auto),
            _ => Err(format!("{s:?}: expected legacy, list or auto")),
        }
    }
}

impl fmt::Display for SrgCreateStyle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SrgCreateStyle::Legacy => "legacy",
            SrgCreateStyle::List => "list",
            SrgCreateStyle::Auto => "auto",
        })
    }
}

/// The style `ejabberdctl help srg_create` reveals: `display::[` (a list,
/// 24.02+) or `display::` followed by a plain type; `None` when the text
/// says neither.
pub fn detect_srg_create_style(help: &str) -> Option<SrgCreateStyle> {
    let (_, after) = help.split_once("display::")?;
    if after.trim_start().starts_with('[') {
        Some(SrgCreateStyle::List)
    } else {
        Some(SrgCreateStyle::Legacy)
    }
}

/// Whether `clean` is spelled the same as a one-group display argument in
/// both styles (no `,`, no `\n`, no blank at either end).
fn plain_display(clean: &str) -> bool {
    !clean.contains(',')
        && !clean.contains("\\n")
        && !clean.starts_with(char::is_whitespace)
        && !clean.ends_with(char::is_whitespace)
}

/// The display argument naming just `clean` in `style`, or `None` when that
/// style cannot express it.
fn display_argument(style: SrgCreateStyle, clean: &str) -> Option<&str> {
    let expressible = match style {
        SrgCreateStyle::Legacy => !clean.contains("\\n"),
        SrgCreateStyle::List | SrgCreateStyle::Auto => plain_display(clean),
    };
    expressible.then_some(clean)
}

// ----- names ---------------------------------------------------------------

/// Whether a character may stay in a group name: general category one of
/// Lu Ll Lm Lo Nd Nl No Pc Pd Ps Pe Pi Pf Po Sm Sc Sk So Zs (so no controls,
/// format characters, marks, titlecase letters or line separators).
fn kept_in_group_name(c: char) -> bool {
    use GeneralCategory as G;
    c != '@'
        && matches!(
            get_general_category(c),
            G::UppercaseLetter // Lu
                | G::LowercaseLetter // Ll
                | G::ModifierLetter // Lm
                | G::OtherLetter // Lo
                | G::DecimalNumber // Nd
                | G::LetterNumber // Nl
                | G::OtherNumber // No
                | G::ConnectorPunctuation // Pc
                | G::DashPunctuation // Pd
                | G::OpenPunctuation // Ps
                | G::ClosePunctuation // Pe
                | G::InitialPunctuation // Pi
                | G::FinalPunctuation // Pf
                | G::OtherPunctuation // Po
                | G::MathSymbol // Sm
                | G::CurrencySymbol // Sc
                | G::ModifierSymbol // Sk
                | G::OtherSymbol // So
                | G::SpaceSeparator // Zs
        )
}

/// The ejabberd group identifier for a Nextcloud group name (SPEC §9): only
/// the characters of the allowed general categories, without `@`.
pub fn clean_group_name(name: &str) -> String {
    name.chars().filter(|&c| kept_in_group_name(c)).collect()
}

/// The full JID of a roster member: `name@domain` is kept, a bare `name`
/// gets the login's domain. `None` for an empty UID or an empty half.
pub fn member_jid(uid: &str, login_domain: &str) -> Option<String> {
    match uid.split_once('@') {
        Some((local, domain)) if !local.is_empty() && !domain.is_empty() => Some(uid.to_owned()),
        Some(_) => None,
        None if uid.is_empty() => None,
        None => Some(format!("{uid}@{login_domain}")),
    }
}

/// Splits a JID at its first `@` into local part and domain; without `@`
/// the domain is `default_domain` (as the original did).
fn split_jid<'a>(jid: &'a str, default_domain: &'a str) -> (&'a str, &'a str) {
    jid.split_once('@').unwrap_or((jid, default_domain))
}

/// Lowercase hex SHA-256 of a `sharedroster` reply body, as stored in
/// `rosterinfo.responsehash`.
pub fn response_hash(body: &str) -> String {
    hex::encode(Sha256::digest(body.as_bytes()))
}

/// The JIDs in `srg_get_members` output: one a line, blank lines skipped.
pub fn parse_members(output: &str) -> Vec<String> {
    output
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

// ----- the sync ------------------------------------------------------------

/// Why a sync stopped. ejabberdctl failures are not among these: they are
/// logged, listed in [`SyncReport::failures`], and the sync goes on.
#[derive(Debug, thiserror::Error)]
pub enum RosterError {
    /// The roster is neither an object of members nor `[]`. Nothing was
    /// run or stored; the login itself stays successful.
    #[error("the shared roster has an unexpected shape: {0}")]
    Malformed(String),
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

/// The members and groups of one `sharedroster` reply, as full JIDs and
/// clean group names, sorted.
#[derive(Debug, Default)]
struct Plan {
    /// Member JID → full name, if the reply gives one.
    members: BTreeMap<String, Option<String>>,
    /// Clean group name → member JIDs.
    groups: BTreeMap<String, BTreeSet<String>>,
    skipped_groups: Vec<String>,
}

impl Plan {
    fn from_roster(roster: &Value, domain: &str) -> Result<Plan, RosterError> {
        let mut plan = Plan::default();
        let entries = match roster {
            Value::Object(map) => map,
            // PHP encodes an empty array as `[]`, not `{}`.
            Value::Array(list) if list.is_empty() => return Ok(plan),
            Value::Array(_) => return Err(RosterError::Malformed("a non-empty array".into())),
            _ => return Err(RosterError::Malformed("neither object nor array".into())),
        };
        for (uid, entry) in entries {
            let Some(jid) = member_jid(uid, domain) else {
                tracing::warn!("shared roster: member {uid:?} is not a usable user name; skipped");
                continue;
            };
            let name = entry.get("name").and_then(Value::as_str).map(str::to_owned);
            let known = plan.members.entry(jid.clone()).or_default();
            if known.is_none() {
                *known = name;
            }
            for group in group_names(entry.get("groups")) {
                if group.ends_with(EXCLUDED_GROUP_MARK) {
                    continue;
                }
                let clean = clean_group_name(group);
                if clean.is_empty() {
                    if !plan.skipped_groups.iter().any(|g| g == group) {
                        tracing::warn!(
                            "shared roster: group {group:?} has no usable characters; skipped"
                        );
                        plan.skipped_groups.push(group.to_owned());
                    }
                    continue;
                }
                plan.groups.entry(clean).or_default().insert(jid.clone());
            }
        }
        Ok(plan)
    }
}

/// The group names of a member entry: a JSON array of strings, or an object
/// with string values (what PHP makes of an array with gaps in its keys).
fn group_names(groups: Option<&Value>) -> Vec<&str> {
    match groups {
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        Some(Value::Object(map)) => map.values().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
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
        body: String,
        roster: Value,
        now: i64,
    ) -> JoinHandle<Result<SyncReport, RosterError>> {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let jid = format!("{user}@{domain}");
            let result = this.sync(&user, &domain, &body, &roster, now).await;
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
    /// the raw `sharedroster` reply `body` and its `data.sharedRoster`
    /// value. Dropping the future part-way leaves the work half done: use
    /// [`spawn_after_login`](Self::spawn_after_login) when the caller may
    /// stop waiting.
    pub async fn sync(
        &self,
        user: &str,
        domain: &str,
        body: &str,
        roster: &Value,
        now: i64,
    ) -> Result<SyncReport, RosterError> {
        let jid = format!("{user}@{domain}");
        let hash = response_hash(body);
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
        let plan = Plan::from_roster(roster, domain)?;
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
    use serde_json::json;

    #[test]
    fn clean_name_keeps_allowed_categories_and_drops_at() {
        assert_eq!(clean_group_name("Team @ Home ☃!"), "Team  Home ☃!");
        assert_eq!(clean_group_name("staff"), "staff");
        // Control, format (U+200B, U+200E), line separator, combining mark:
        assert_eq!(
            clean_group_name("a\tb\u{200B}c\u{200E}d\u{2028}e\u{301}"),
            "abcde"
        );
        // Titlecase letters (Lt) are not in the list; No-break space (Zs) is.
        assert_eq!(clean_group_name("ǅx\u{A0}y"), "x\u{A0}y");
        assert_eq!(
            clean_group_name("Ärzte-Team (Süd) €½ „x“ «y» ·_·"),
            "Ärzte-Team (Süd) €½ „x“ «y» ·_·"
        );
        assert_eq!(
            clean_group_name("a;b $(touch /x) `id`"),
            "a;b $(touch /x) `id`"
        );
        assert_eq!(clean_group_name("@@\u{7}"), "");
    }

    #[test]
    fn kept_categories_are_exactly_the_listed_ones() {
        const KEPT: [&str; 19] = [
            "Lu", "Ll", "Lm", "Lo", "Nd", "Nl", "No", "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po",
            "Sm", "Sc", "Sk", "So", "Zs",
        ];
        for c in (0..=0x10FFFF_u32).filter_map(char::from_u32) {
            let by_name = c != '@' && KEPT.contains(&get_general_category(c).abbreviation());
            assert_eq!(kept_in_group_name(c), by_name, "U+{:04X}", c as u32);
        }
    }

    #[test]
    fn member_jids_are_completed_with_the_login_domain() {
        assert_eq!(
            member_jid("bob", "example.org").as_deref(),
            Some("bob@example.org")
        );
        assert_eq!(
            member_jid("bob@other.net", "example.org").as_deref(),
            Some("bob@other.net")
        );
        assert_eq!(
            member_jid("Zoë Smith", "example.org").as_deref(),
            Some("Zoë Smith@example.org")
        );
        assert_eq!(member_jid("", "example.org"), None);
        assert_eq!(member_jid("@example.org", "example.org"), None);
        assert_eq!(member_jid("bob@", "example.org"), None);
        assert_eq!(
            split_jid("bob@other.net", "example.org"),
            ("bob", "other.net")
        );
        assert_eq!(split_jid("bob", "example.org"), ("bob", "example.org"));
    }

    #[test]
    fn response_hash_is_lowercase_sha256_hex() {
        assert_eq!(
            response_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn members_output_is_one_jid_a_line() {
        assert_eq!(
            parse_members("a@x\r\n\n b@x \n"),
            vec!["a@x".to_owned(), "b@x".to_owned()]
        );
        assert!(parse_members("").is_empty());
    }

    #[test]
    fn help_text_tells_the_style() {
        let new = "  Command Name: srg_create\n\n  Arguments: group::binary : Group identifier\n \
                   host::binary\n             label::binary : Group name\n             \
                   description::binary\n             display::[ group::binary ] : List of groups to display\n";
        let old = "  Arguments: group::binary\n             host::binary\n             \
                   name::binary\n             description::binary\n             display::binary : Groups to display\n";
        assert_eq!(detect_srg_create_style(new), Some(SrgCreateStyle::List));
        assert_eq!(detect_srg_create_style(old), Some(SrgCreateStyle::Legacy));
        assert_eq!(
            detect_srg_create_style("Error: command \"help\" not known."),
            None
        );
    }

    #[test]
    fn display_argument_per_style() {
        assert!(plain_display("staff"));
        assert!(plain_display("Team  Home ☃!"));
        assert_eq!(display_argument(SrgCreateStyle::List, "a,b"), None);
        assert_eq!(display_argument(SrgCreateStyle::Legacy, "a,b"), Some("a,b"));
        assert_eq!(display_argument(SrgCreateStyle::List, " a"), None);
        assert_eq!(display_argument(SrgCreateStyle::Legacy, "a\\nb"), None);
        assert_eq!(display_argument(SrgCreateStyle::List, "a\\nb"), None);
        assert_eq!("LIST".parse(), Ok(SrgCreateStyle::List));
        assert!("both".parse::<SrgCreateStyle>().is_err());
    }

    #[test]
    fn plan_skips_marked_and_empty_groups_and_merges_same_clean_names() {
        let roster = json!({
            "alice": {"name": "Alice", "groups": ["staff", "Everyone\u{200B}", "@@"]},
            "bob@other.net": {"groups": ["staff\u{7}", "x"]},
            "": {"name": "nobody"},
            "carol": {"groups": {"0": "x", "3": "y"}},
            "dave": "not an object"
        });
        let plan = Plan::from_roster(&roster, "example.org").unwrap();
        assert_eq!(
            plan.members.keys().collect::<Vec<_>>(),
            [
                "alice@example.org",
                "bob@other.net",
                "carol@example.org",
                "dave@example.org"
            ]
        );
        assert_eq!(plan.members["alice@example.org"].as_deref(), Some("Alice"));
        assert_eq!(plan.members["bob@other.net"], None);
        assert_eq!(plan.groups.keys().collect::<Vec<_>>(), ["staff", "x", "y"]);
        assert_eq!(
            plan.groups["staff"].iter().collect::<Vec<_>>(),
            ["alice@example.org", "bob@other.net"]
        );
        assert_eq!(plan.skipped_groups, ["@@"]);
        assert!(Plan::from_roster(&json!([]), "d")
            .unwrap()
            .groups
            .is_empty());
        assert!(matches!(
            Plan::from_roster(&json!([1]), "d"),
            Err(RosterError::Malformed(_))
        ));
        assert!(matches!(
            Plan::from_roster(&json!("x"), "d"),
            Err(RosterError::Malformed(_))
        ));
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
        let roster = json!({"alice": {"name": "Alice", "groups": ["staff"]}});
        let report = sync
            .sync("alice", "example.org", "b1", &roster, 10)
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
        assert_eq!(info.responsehash, Some(response_hash("b1")));
        assert_eq!(info.fullname.as_deref(), Some("Alice"));

        let again = sync
            .sync("alice", "example.org", "b1", &roster, 20)
            .await
            .unwrap();
        assert!(again.unchanged);
        assert_eq!(ctl.calls.lock().unwrap().len(), expected.len());
    }

    #[tokio::test]
    async fn failures_are_reported_and_retried_on_the_next_login() {
        let store = memory_store();
        let roster = json!({"alice": {"groups": ["staff"]}, "bob": {"groups": ["staff"]}});
        let failing = Arc::new(Recorder {
            fail: vec!["srg_user_add"],
            ..Recorder::default()
        });
        let sync = RosterSync::new(failing, store.clone(), SrgCreateStyle::Legacy);
        let report = sync
            .sync("alice", "example.org", "b", &roster, 1)
            .await
            .unwrap();
        assert_eq!(report.failures.len(), 2);
        assert_eq!(
            store.roster_group("staff@example.org").unwrap(),
            Some(vec![])
        );
        let info = store.roster_info("alice@example.org").unwrap().unwrap();
        assert_eq!(info.responsehash, None, "hash cleared for a retry");

        let working = Arc::new(Recorder::default());
        let sync = RosterSync::new(working.clone(), store.clone(), SrgCreateStyle::Legacy);
        let report = sync
            .sync("alice", "example.org", "b", &roster, 2)
            .await
            .unwrap();
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
        let roster = json!({"alice": {"groups": ["a,b", "c,d", "plain"]}});
        let report = sync.sync("alice", "d.org", "b", &roster, 1).await.unwrap();
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
        let roster = json!({"alice": {"groups": ["a,b"]}});
        let report = sync.sync("alice", "d.org", "b", &roster, 1).await.unwrap();
        assert_eq!(report.calls[0], argv(&["help", "srg_create"]));
        assert_eq!(
            report.calls[1],
            argv(&["srg_create", "a,b", "d.org", "a,b", "a,b", "a,b"])
        );
    }

    #[tokio::test]
    async fn a_malformed_roster_changes_nothing() {
        let ctl = Arc::new(Recorder::default());
        let store = memory_store();
        let sync = RosterSync::new(ctl.clone(), store.clone(), SrgCreateStyle::Legacy);
        let err = sync
            .sync("alice", "d.org", "b", &json!(3), 1)
            .await
            .unwrap_err();
        assert!(matches!(err, RosterError::Malformed(_)));
        assert!(ctl.calls.lock().unwrap().is_empty());
        assert_eq!(store.roster_info("alice@d.org").unwrap(), None);
    }
}
