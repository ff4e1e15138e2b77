//! Stock Nextcloud (25 and newer), no app needed: passwords through the OCS
//! API with Nextcloud's full login policy, existence and groups through the
//! provisioning API with an API account. How a real Nextcloud answers is
//! recorded in `NEXTCLOUD.md`; the facts this file depends on:
//!
//! - `GET /ocs/v2.php/cloud/user` with Basic auth and `OCS-APIRequest: true`
//!   is 200 for a right password or app password and 401 (an XML body,
//!   whatever format was asked for) for a wrong one, an unknown or disabled
//!   user, and a main password that the policy refuses (second factor,
//!   `token_auth_enforced`); 412 without the header; 429 once Nextcloud
//!   throttles our address. The answer decides by status code only.
//! - Every answer sets session cookies; the client never sends one back.
//! - `GET /ocs/v2.php/cloud/users/{uid}` (admin or subadmin account) is 200
//!   with `enabled`, 404 with statuscode 404 for an unknown user and 404
//!   with statuscode 998 without rights, but also for a path no route
//!   matches (`/cloud/users/`): 998 alone does not prove the account lacks
//!   rights.
//! - `/cloud/users/%2E` reaches Nextcloud as the uid `.` (404, unknown), but
//!   the URL library removes `%2E` and `%2E%2E` segments as dot segments
//!   before sending; Nextcloud's router decodes `%2F` before matching. So
//!   the uids `.`, `..`, empty or with a `/` cannot be asked about; they are
//!   answered as Nextcloud answers the first two (unknown user) without a
//!   request. Every other uid goes into the path percent-encoded, dots too.
//! - A gid in a path is URL-decoded twice by Nextcloud, so it is encoded
//!   twice here (a dot becomes `%252E`, which survives the URL library).
//! - Each wrong API password counts as a brute-force failure against our
//!   address: after an API-account refusal, the account is not used again
//!   for [`API_BACKOFF_FIRST`], doubling up to [`API_BACKOFF_MAX`]. A 401
//!   is such a refusal. A 998 or 403 about one user or group is not: it
//!   makes xcauth look up the account's own record (at most once per
//!   [`API_RIGHTS_RECHECK`], concurrent askers sharing the look-up), and only
//!   when that record shows no admin or subadmin rights does the account
//!   back off. Otherwise the one question is answered as unavailable.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::Value;
use tokio::sync::Mutex as AsyncMutex;

use super::http::{clip, reason, HttpClient, HttpReply};
use super::{Backend, BackendError, BackendKind, Cause, Member, Roster, Verdict};
use crate::secret::Secret;
use crate::sync::lock;

/// How the Nextcloud login name is made from the XMPP user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LoginForm {
    /// The local part: `alice`.
    #[default]
    User,
    /// Local part and auth domain: `alice@example.org` (Nextcloud accounts
    /// named by mail address).
    UserAtDomain,
}

impl LoginForm {
    /// The configuration spelling.
    pub fn name(self) -> &'static str {
        match self {
            LoginForm::User => "user",
            LoginForm::UserAtDomain => "user@domain",
        }
    }

    /// Parses `user` or `user@domain`.
    pub fn parse(text: &str) -> Result<LoginForm, String> {
        match text {
            "user" => Ok(LoginForm::User),
            "user@domain" => Ok(LoginForm::UserAtDomain),
            other => Err(format!("{other:?}: expected user or user@domain")),
        }
    }
}

/// The account xcauth asks about users and groups with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiAccount {
    /// Login name of an admin, or of a subadmin of the groups to share.
    pub user: String,
    /// Its password, ideally an app password.
    pub password: Secret,
}

/// The first pause after the API account was refused.
pub const API_BACKOFF_FIRST: Duration = Duration::from_secs(60);
/// The longest pause between attempts with a refused API account.
pub const API_BACKOFF_MAX: Duration = Duration::from_secs(3600);
/// How long the API account's own record, once it showed admin or subadmin
/// rights, stands for them: a refusal about one user or group within this
/// time asks nothing more of Nextcloud.
pub const API_RIGHTS_RECHECK: Duration = Duration::from_secs(60);
/// Members asked for per page of a group.
pub const GROUP_PAGE: usize = 500;
/// Pages read of one group at most (so 50 000 members); a bigger group is
/// cut there, with a warning.
pub const MAX_GROUP_PAGES: usize = 100;
/// Rosters kept in the cache at most; beyond, the oldest are dropped.
pub const MAX_CACHED_ROSTERS: usize = 10_000;

/// Where the provisioning API lives below the base URL.
const OCS: &str = "/ocs/v2.php/cloud";

/// Characters left as they are in a path segment; everything else is
/// percent-encoded (`/`, `%`, `.`, space, quotes, non-ASCII among them). The
/// dot is encoded so that no id turns into a dot segment on the way.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'~');

/// One XMPP domain's stock Nextcloud.
#[derive(Debug)]
pub struct NextcloudBackend {
    client: Arc<HttpClient>,
    base: String,
    auth_domain: String,
    login_form: LoginForm,
    api: Option<ApiAccount>,
    roster_ttl: Duration,
    state: Mutex<State>,
    /// When the API account's own record last showed its rights. Held
    /// across that look-up, so concurrent refusals share one.
    rights_shown: AsyncMutex<Option<Instant>>,
}

/// Whom an API request asks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subject {
    /// The API account itself: any refusal is the account's.
    Account,
    /// Another user or a group: a 998 or 403 may be about that subject only.
    Other,
}

#[derive(Debug, Default)]
struct State {
    /// While set and in the future, the API account is not used.
    api_blocked_until: Option<Instant>,
    /// The pause after the next refusal.
    api_backoff: Option<Duration>,
    /// Rosters by user, with the time they were built.
    rosters: HashMap<String, (Instant, Roster)>,
}

/// What to build a [`NextcloudBackend`] from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextcloudSettings {
    /// The Nextcloud root, e.g. `https://cloud.example.org`.
    pub base: String,
    /// The domain for the `user@domain` login form.
    pub auth_domain: String,
    /// How login names are made.
    pub login_form: LoginForm,
    /// The API account, if configured.
    pub api: Option<ApiAccount>,
    /// How long a built roster is reused.
    pub roster_ttl: Duration,
}

impl NextcloudBackend {
    /// The Nextcloud `settings` describe, asked through `client`.
    pub fn new(client: Arc<HttpClient>, settings: NextcloudSettings) -> Self {
        NextcloudBackend {
            client,
            base: settings.base.trim_end_matches('/').to_owned(),
            auth_domain: settings.auth_domain,
            login_form: settings.login_form,
            api: settings.api,
            roster_ttl: settings.roster_ttl,
            state: Mutex::new(State::default()),
            rights_shown: AsyncMutex::new(None),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// The Nextcloud login name (and uid) of `user`.
    pub fn login_name(&self, user: &str) -> String {
        match self.login_form {
            LoginForm::User => user.to_owned(),
            LoginForm::UserAtDomain => format!("{user}@{}", self.auth_domain),
        }
    }

    /// `GET base + path` with Basic auth and the OCS header.
    async fn get(&self, path: &str, login: &str, password: &Secret) -> Result<HttpReply, Cause> {
        let url = format!("{}{path}", self.base);
        let hidden = [password.expose()];
        self.client
            .send(|c| {
                c.get(url.as_str())
                    .basic_auth(login, Some(password.expose()))
                    .header("OCS-APIRequest", "true")
                    .header(reqwest::header::ACCEPT, "application/json")
            })
            .await
            .map_err(|c| super::http::scrub(c, &hidden))
    }

    /// A request with the API account about another user or a group,
    /// honouring the back-off. A 998 or 403 may concern that subject only:
    /// it backs the account off only when the account's own record no
    /// longer shows its rights; otherwise this one question is unavailable.
    async fn api_get(&self, path: &str) -> Result<Value, BackendError> {
        match self.api_request(path, Subject::Other).await {
            Err(BackendError::Misconfigured(Cause::ApiAccount {
                status: status @ (403 | 404),
                ..
            })) => {
                self.confirm_rights().await?;
                Err(BackendError::Unavailable(Cause::Failed {
                    status,
                    message: "Nextcloud would not answer about this user or group (no rights \
                              over it, or no route for it), but the API account's own record \
                              still shows admin or subadmin rights: only this question goes \
                              unanswered, the account is not paused"
                        .into(),
                }))
            }
            other => other,
        }
    }

    /// A request with the API account, honouring the back-off. A refusal
    /// backs the account off, but a 998 or 403 about an `Other` subject,
    /// which is returned for [`Self::api_get`] to weigh.
    async fn api_request(&self, path: &str, subject: Subject) -> Result<Value, BackendError> {
        let Some(api) = &self.api else {
            return Err(BackendError::Misconfigured(Cause::NotConfigured(
                "no api-user configured for this Nextcloud",
            )));
        };
        if let Some(until) = self.state().api_blocked_until {
            let now = Instant::now();
            if until > now {
                return Err(BackendError::Misconfigured(Cause::ApiAccount {
                    status: 0,
                    hint: format!(
                        "the API account {:?} was refused; not retried for another {}s",
                        clip(&api.user),
                        (until - now).as_secs()
                    ),
                }));
            }
        }
        let reply = self
            .get(path, &api.user, &api.password)
            .await
            .map_err(transport)?;
        match classify_api(&reply, &api.user) {
            Ok(value) => {
                let mut state = self.state();
                state.api_blocked_until = None;
                state.api_backoff = None;
                Ok(value)
            }
            Err(e @ BackendError::Misconfigured(Cause::ApiAccount { status, .. })) => {
                if subject == Subject::Account || !matches!(status, 403 | 404) {
                    self.back_off();
                }
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Pauses the API account after a refusal, doubling the pause each time.
    fn back_off(&self) {
        let mut state = self.state();
        let pause = state.api_backoff.unwrap_or(API_BACKOFF_FIRST);
        state.api_blocked_until = Some(Instant::now() + pause);
        state.api_backoff = Some((pause * 2).min(API_BACKOFF_MAX));
    }

    /// Ok when the API account's own record showed admin or subadmin rights
    /// within [`API_RIGHTS_RECHECK`]; else looks it up once for all callers
    /// waiting here. A record without rights backs the account off.
    async fn confirm_rights(&self) -> Result<(), BackendError> {
        let mut shown = self.rights_shown.lock().await;
        if shown.is_some_and(|at| at.elapsed() < API_RIGHTS_RECHECK) {
            return Ok(());
        }
        let data = self.probe_api_account().await?;
        if !shows_rights(&data) {
            self.back_off();
            let user = self.api.as_ref().map(|a| clip(&a.user)).unwrap_or_default();
            return Err(BackendError::Misconfigured(Cause::ApiAccount {
                status: 404,
                hint: format!(
                    "the API account {user:?} can log in but is neither an admin nor a \
                     subadmin any more: make it one"
                ),
            }));
        }
        *shown = Some(Instant::now());
        Ok(())
    }

    /// Looks up the API account's own account (one provisioning request),
    /// for `xcauth check` and after a refusal about another user: proves
    /// its password and that the provisioning API answers. The reply's
    /// `ocs.data`.
    pub async fn probe_api_account(&self) -> Result<Value, BackendError> {
        let user = self
            .api
            .as_ref()
            .map(|a| segment(&a.user))
            .unwrap_or_default();
        let value = self
            .api_request(&format!("{OCS}/users/{user}?format=json"), Subject::Account)
            .await?;
        Ok(value["ocs"]["data"].clone())
    }

    /// The roster, built from the group APIs (several requests).
    async fn build_roster(&self, uid: &str) -> Result<Roster, BackendError> {
        let me = self
            .api_get(&format!("{OCS}/users/{}", user_segment(uid)?))
            .await?;
        let data = &me["ocs"]["data"];
        let my_groups: Vec<String> = strings(&data["groups"]);
        let mut names: BTreeMap<String, String> = BTreeMap::new();
        let mut members: BTreeMap<String, (Option<String>, BTreeSet<String>)> = BTreeMap::new();
        for gid in &my_groups {
            names.insert(gid.clone(), self.group_display_name(gid).await?);
            for (member, name) in self.group_members(gid).await? {
                let entry = members.entry(member).or_default();
                if entry.0.is_none() {
                    entry.0 = name;
                }
                entry.1.insert(gid.clone());
            }
        }
        let mut roster = Roster::default();
        for (member, (name, groups)) in members {
            let groups = my_groups
                .iter()
                .filter(|g| groups.contains(*g))
                .map(|g| names.get(g).cloned().unwrap_or_else(|| g.clone()))
                .collect();
            roster.members.insert(member, Member { name, groups });
        }
        Ok(roster)
    }

    /// Members of `gid` with their display names, page by page.
    async fn group_members(
        &self,
        gid: &str,
    ) -> Result<Vec<(String, Option<String>)>, BackendError> {
        let mut all = Vec::new();
        for page in 0..MAX_GROUP_PAGES {
            let path = format!(
                "{OCS}/groups/{}/users/details?limit={GROUP_PAGE}&offset={}&format=json",
                group_segment(gid),
                page * GROUP_PAGE
            );
            let value = self.api_get(&path).await?;
            let users = &value["ocs"]["data"]["users"];
            let batch: Vec<(String, Option<String>)> = match users {
                Value::Object(map) => map
                    .iter()
                    .map(|(uid, details)| {
                        let id = details["id"].as_str().unwrap_or(uid).to_owned();
                        let name = details["displayname"].as_str().map(str::to_owned);
                        (id, name)
                    })
                    .collect(),
                // PHP's empty array.
                Value::Array(list) if list.is_empty() => Vec::new(),
                _ => {
                    return Err(malformed("\"data.users\" of a group is not an object"));
                }
            };
            let done = batch.len() < GROUP_PAGE;
            all.extend(batch);
            if done {
                return Ok(all);
            }
        }
        tracing::warn!(
            "group {:?}: more than {} members; the shared roster holds the first ones only",
            clip(gid),
            GROUP_PAGE * MAX_GROUP_PAGES
        );
        Ok(all)
    }

    /// The display name of `gid` (the gid itself if Nextcloud has none).
    async fn group_display_name(&self, gid: &str) -> Result<String, BackendError> {
        let search: String = form_urlencoded::byte_serialize(gid.as_bytes()).collect::<String>();
        let path = format!("{OCS}/groups/details?search={search}&limit=1000&format=json");
        let value = self.api_get(&path).await?;
        let found = value["ocs"]["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|g| g["id"].as_str() == Some(gid))
            .and_then(|g| g["displayname"].as_str())
            .filter(|name| !name.is_empty())
            .map(str::to_owned);
        Ok(found.unwrap_or_else(|| gid.to_owned()))
    }
}

#[async_trait]
impl Backend for NextcloudBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Nextcloud
    }

    async fn auth(&self, user: &str, password: &Secret) -> Result<Verdict, BackendError> {
        let login = self.login_name(user);
        let reply = self
            .get(&format!("{OCS}/user?format=json"), &login, password)
            .await
            .map_err(transport)?;
        classify_login(&reply, &login)
    }

    async fn is_user(&self, user: &str) -> Result<bool, BackendError> {
        let uid = self.login_name(user);
        let path = match user_segment(&uid) {
            Ok(segment) => format!("{OCS}/users/{segment}?format=json"),
            Err(_) => return Ok(false),
        };
        match self.api_get(&path).await {
            Ok(value) => Ok(enabled(&value["ocs"]["data"])),
            Err(BackendError::Rejected(Cause::NotFound(_))) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn roster(&self, user: &str) -> Result<Roster, BackendError> {
        let uid = self.login_name(user);
        if let Some((at, roster)) = self.state().rosters.get(&uid) {
            if at.elapsed() < self.roster_ttl {
                return Ok(roster.clone());
            }
        }
        let roster = self.build_roster(&uid).await?;
        let mut state = self.state();
        if state.rosters.len() >= MAX_CACHED_ROSTERS {
            let ttl = self.roster_ttl;
            state.rosters.retain(|_, (at, _)| at.elapsed() < ttl);
            if state.rosters.len() >= MAX_CACHED_ROSTERS {
                state.rosters.clear();
            }
        }
        state.rosters.insert(uid, (Instant::now(), roster.clone()));
        Ok(roster)
    }

    fn rejection_hint(&self) -> Option<&'static str> {
        // Nextcloud answers 401 alike for all of these.
        Some(
            "or an unknown or disabled account, or Nextcloud's login policy: \
             users with a second factor, and everyone under token_auth_enforced, \
             need an app password",
        )
    }

    fn waits_for_roster(&self) -> bool {
        // Building a roster takes a request per group and page: never on
        // the answer path.
        false
    }
}

/// `enabled` of a user's data; absent counts as enabled (older versions).
fn enabled(data: &Value) -> bool {
    match &data["enabled"] {
        Value::Bool(b) => *b,
        Value::String(s) => s != "false" && s != "0" && !s.is_empty(),
        Value::Number(n) => n.as_u64() != Some(0),
        _ => true,
    }
}

fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::Array(list) => list
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Value::Object(map) => map
            .values()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// One path segment, percent-encoded.
pub fn segment(text: &str) -> String {
    utf8_percent_encode(text, SEGMENT).to_string()
}

/// A uid as a path segment, or "no such user" for the uids no request can
/// name: the URL library drops the segments `%2E` and `%2E%2E`, leaving
/// `/cloud/users/` or `/cloud/` (998), and Nextcloud's router decodes `%2F`
/// before it matches, so a uid with a `/` matches no route (998). Nextcloud
/// answers the uids `.` and `..` as unknown users and allows none of these.
pub fn user_segment(uid: &str) -> Result<String, BackendError> {
    if matches!(uid, "" | "." | "..") || uid.contains('/') {
        return Err(BackendError::Rejected(Cause::NotFound("no such user")));
    }
    Ok(segment(uid))
}

/// Whether the API account's own record shows the rights the lookups need:
/// a member of `admin`, or a subadmin of some group.
fn shows_rights(data: &Value) -> bool {
    strings(&data["groups"]).iter().any(|g| g == "admin") || !strings(&data["subadmin"]).is_empty()
}

/// A gid as a path segment: encoded twice, as Nextcloud decodes it twice.
pub fn group_segment(gid: &str) -> String {
    segment(&segment(gid))
}

const NOT_THE_BASE: &str =
    "url must be the Nextcloud base URL, e.g. https://cloud.example.org (add /index.php if pretty URLs are off)";

fn malformed(what: &str) -> BackendError {
    BackendError::Misconfigured(Cause::Malformed(format!(
        "{what} (is url the Nextcloud base URL?)"
    )))
}

/// Transport trouble: TLS and an oversized reply point at the set-up, the
/// rest is an outage.
fn transport(cause: Cause) -> BackendError {
    match cause {
        Cause::Tls(_) | Cause::Malformed(_) => BackendError::Misconfigured(cause),
        other => BackendError::Unavailable(other),
    }
}

/// Statuses every OCS request treats alike.
fn common_failure(reply: &HttpReply) -> BackendError {
    match reply.status {
        300..=399 => BackendError::Misconfigured(Cause::Redirect {
            status: reply.status,
            location: clip(reply.location.as_deref().unwrap_or_default()),
        }),
        412 => BackendError::Misconfigured(Cause::Failed {
            status: 412,
            message: "Nextcloud misses the OCS-APIRequest header: does a proxy strip it?".into(),
        }),
        429 => BackendError::Throttled(Cause::TooManyRequests),
        404 => BackendError::Misconfigured(Cause::NotFound(NOT_THE_BASE)),
        status => BackendError::Unavailable(Cause::Failed {
            status,
            message: reason(status).to_owned(),
        }),
    }
}

/// The password check's reply (status code decides; the body only names
/// the account).
pub fn classify_login(reply: &HttpReply, login: &str) -> Result<Verdict, BackendError> {
    match reply.status {
        200 => {
            let json: Value = serde_json::from_slice(&reply.body)
                .map_err(|_| malformed("the password check's reply is not JSON"))?;
            let Some(id) = json.pointer("/ocs/data/id").and_then(Value::as_str) else {
                return Err(malformed(
                    "the password check's reply has no \"ocs.data.id\"",
                ));
            };
            if same_account(id, login) {
                Ok(Verdict::Accepted)
            } else {
                // An e-mail address or another login name of a different
                // account: that account's password must not open this JID.
                tracing::warn!(
                    "Nextcloud accepted login {:?} as account {:?}; refused: the account must be the login",
                    clip(login),
                    clip(id)
                );
                Ok(Verdict::Rejected)
            }
        }
        401 => Ok(Verdict::Rejected),
        _ => Err(common_failure(reply)),
    }
}

/// Nextcloud matches login names without regard to case.
fn same_account(id: &str, login: &str) -> bool {
    id == login || id.to_lowercase() == login.to_lowercase()
}

/// A provisioning reply with the API account `api_user`.
pub fn classify_api(reply: &HttpReply, api_user: &str) -> Result<Value, BackendError> {
    let json = serde_json::from_slice::<Value>(&reply.body).ok();
    let statuscode = json
        .as_ref()
        .and_then(|j| j.pointer("/ocs/meta/statuscode"))
        .and_then(Value::as_u64);
    let api = |status: u16, hint: &str| {
        BackendError::Misconfigured(Cause::ApiAccount {
            status,
            hint: format!("{hint} (api-user {:?})", clip(api_user)),
        })
    };
    match (reply.status, statuscode) {
        (200, Some(100 | 200)) => Ok(json.unwrap_or_default()),
        (200, Some(404)) | (404, Some(404)) | (404, Some(101)) => {
            Err(BackendError::Rejected(Cause::NotFound("no such user")))
        }
        (200, Some(998)) | (404, Some(998)) => Err(api(
            404,
            "the API account has no rights over this user or group: make it an admin, or a subadmin of the groups",
        )),
        (200, _) => Err(malformed("a provisioning reply without \"ocs.meta.statuscode\"")),
        (401, _) => Err(api(
            401,
            "wrong API password, or the account cannot log in (use an app password); each try counts as a brute-force failure",
        )),
        (403, _) => Err(api(403, "the API account lacks the rights for the provisioning API")),
        _ => Err(common_failure(reply)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: &str) -> HttpReply {
        HttpReply {
            status,
            location: None,
            body: body.as_bytes().to_vec(),
        }
    }

    const UNAUTHORISED: &str = "<?xml version=\"1.0\"?>\n<ocs><meta><status>failure</status><statuscode>997</statuscode><message>Unauthorised</message></meta><data/></ocs>";

    #[test]
    fn login_is_decided_by_the_status() {
        let ok = r#"{"ocs":{"meta":{"status":"ok","statuscode":200,"message":"OK"},"data":{"id":"alice","displayname":"Alice"}}}"#;
        assert_eq!(
            classify_login(&reply(200, ok), "alice"),
            Ok(Verdict::Accepted)
        );
        assert_eq!(
            classify_login(&reply(200, ok), "Alice"),
            Ok(Verdict::Accepted)
        );
        assert_eq!(
            classify_login(&reply(401, UNAUTHORISED), "alice"),
            Ok(Verdict::Rejected)
        );
        // Another account's e-mail address is not this user's login.
        assert_eq!(
            classify_login(&reply(200, ok), "bob@example.org"),
            Ok(Verdict::Rejected)
        );
        assert!(matches!(
            classify_login(&reply(200, "<html>"), "alice"),
            Err(BackendError::Misconfigured(Cause::Malformed(_)))
        ));
    }

    #[test]
    fn login_failures_have_a_cause_and_a_hint() {
        let err = classify_login(&reply(429, ""), "a").unwrap_err();
        assert_eq!(err, BackendError::Throttled(Cause::TooManyRequests));
        assert!(err.to_string().contains("allowlist"), "{err}");
        let err = classify_login(&reply(412, ""), "a").unwrap_err();
        assert!(err.to_string().contains("OCS-APIRequest"), "{err}");
        assert!(err.is_misconfiguration());
        let err = classify_login(&reply(404, ""), "a").unwrap_err();
        assert!(err.to_string().contains("base URL"), "{err}");
        let mut moved = reply(301, "");
        moved.location = Some("https://cloud.example.org/ocs/v2.php/cloud/user".into());
        let err = classify_login(&moved, "a").unwrap_err();
        assert!(err.to_string().contains("final URL"), "{err}");
        let err = classify_login(&reply(503, ""), "a").unwrap_err();
        assert!(matches!(err, BackendError::Unavailable(_)), "{err:?}");
    }

    #[test]
    fn provisioning_replies() {
        let found = r#"{"ocs":{"meta":{"statuscode":200},"data":{"id":"bob","enabled":false}}}"#;
        let value = classify_api(&reply(200, found), "api").unwrap();
        assert!(!enabled(&value["ocs"]["data"]));
        let unknown = r#"{"ocs":{"meta":{"status":"failure","statuscode":404,"message":"User does not exist"},"data":[]}}"#;
        assert!(matches!(
            classify_api(&reply(404, unknown), "api"),
            Err(BackendError::Rejected(Cause::NotFound(_)))
        ));
        let no_rights = r#"{"ocs":{"meta":{"statuscode":998},"data":[]}}"#;
        let err = classify_api(&reply(404, no_rights), "api").unwrap_err();
        assert!(err.to_string().contains("subadmin"), "{err}");
        let err = classify_api(&reply(401, UNAUTHORISED), "api").unwrap_err();
        assert!(matches!(
            err,
            BackendError::Misconfigured(Cause::ApiAccount { status: 401, .. })
        ));
        assert!(err.to_string().contains("app password"), "{err}");
        // The v1 API: HTTP 200 with the OCS status inside.
        let v1 = r#"{"ocs":{"meta":{"statuscode":100},"data":{"id":"bob"}}}"#;
        assert!(classify_api(&reply(200, v1), "api").is_ok());
        let v1_missing = r#"{"ocs":{"meta":{"statuscode":404},"data":[]}}"#;
        assert!(matches!(
            classify_api(&reply(200, v1_missing), "api"),
            Err(BackendError::Rejected(_))
        ));
    }

    #[test]
    fn gids_are_encoded_twice_and_names_once() {
        assert_eq!(segment("a b/ü%41'\""), "a%20b%2F%C3%BC%2541%27%22");
        assert_eq!(group_segment("x%41"), "x%252541");
        assert_eq!(group_segment("Team A/B"), "Team%2520A%252FB");
        assert_eq!(group_segment("."), "%252E");
        assert_eq!(group_segment("Ops & Co."), "Ops%2520%2526%2520Co%252E");
    }

    #[test]
    fn dots_are_encoded_and_unsendable_uids_are_unknown() {
        assert_eq!(user_segment("a.b").unwrap(), "a%2Eb");
        assert_eq!(user_segment("...").unwrap(), "%2E%2E%2E");
        for uid in ["", ".", "..", "a/b", "/"] {
            assert_eq!(
                user_segment(uid),
                Err(BackendError::Rejected(Cause::NotFound("no such user"))),
                "{uid:?}"
            );
        }
        // Why "." and ".." cannot be asked about: the URL library takes
        // their encoded segments for dot segments and drops them.
        for (dots, path) in [
            ("%2E", "/ocs/v2.php/cloud/users/"),
            ("%2e%2e", "/ocs/v2.php/cloud/"),
            ("%2E%2E", "/ocs/v2.php/cloud/"),
        ] {
            let url = reqwest::Url::parse(&format!("http://h{OCS}/users/{dots}?format=json"));
            assert_eq!(url.unwrap().path(), path, "{dots}");
        }
        let url = reqwest::Url::parse(&format!("http://h{OCS}/users/%2E%2E%2E"));
        assert_eq!(url.unwrap().path(), "/ocs/v2.php/cloud/users/%2E%2E%2E");
    }

    #[test]
    fn the_own_record_shows_rights_by_role() {
        let admin = serde_json::json!({"groups": ["admin"], "subadmin": []});
        let subadmin = serde_json::json!({"groups": [], "subadmin": ["staff"]});
        let plain = serde_json::json!({"groups": ["staff"], "subadmin": [], "enabled": true});
        assert!(shows_rights(&admin));
        assert!(shows_rights(&subadmin));
        assert!(!shows_rights(&plain));
        assert!(!shows_rights(&Value::Null));
    }

    #[test]
    fn enabled_in_its_spellings() {
        for (v, e) in [
            (serde_json::json!({"enabled": true}), true),
            (serde_json::json!({"enabled": false}), false),
            (serde_json::json!({"enabled": "false"}), false),
            (serde_json::json!({"enabled": 0}), false),
            (serde_json::json!({}), true),
        ] {
            assert_eq!(enabled(&v), e, "{v}");
        }
    }
}
