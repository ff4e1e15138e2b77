//! Nextcloud's stock OCS APIs: the password check `cloud/user` and the
//! provisioning API for users and groups, as a Nextcloud 29 answers them
//! (see NEXTCLOUD.md in the project's shared notes).
//!
//! Served under `/ocs/v2.php/` and `/ocs/v1.php/`:
//!
//! ```text
//! GET cloud/user                          the caller itself (the password check)
//! GET cloud/users/{uid}                   a user (admin, subadmin or self)
//! GET cloud/users/{uid}/groups            a user's gids
//! GET cloud/groups/details?search=S       groups with display names and counts
//! GET cloud/groups/{gid}/users            the member uids (admin or subadmin)
//! GET cloud/groups/{gid}/users/details?limit=N&offset=M[&search=S]
//! GET cloud/groups/{gid}                  (deprecated) the same as …/users
//! ```
//!
//! Every request: its cookies are checked first (a request that sends back
//! any cookie this stand-in sets is refused with 400 and counted: a real
//! Nextcloud would treat it as a logged-in session and skip Basic auth);
//! then the brute-force throttle ([`crate::throttle`]) sleeps or answers
//! 429; then `Authorization: Basic` is checked (wrong password, unknown
//! user and disabled account: 401 with the XML body, whatever the format,
//! and a brute-force failure); then the `OCS-APIRequest: true` header
//! (412 without it); then the endpoint. Answers are JSON with `format=json`
//! (or `Accept: application/json`), else XML; v2 maps the OCS status code
//! to the HTTP status, v1 answers HTTP 200 with statuscode 100 for success
//! (401 stays 401). Every answer sets Nextcloud's cookies. The injected
//! fault and latency apply here as on the JSXC API (`wrongsig` means none).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};

use base64::Engine as _;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, COOKIE, SET_COOKIE};
use hyper::{Method, Request};

use crate::accounts::ADMIN_GROUP;
use crate::api::{write_php_string, Reply, JSON_TYPE};
use crate::state::{Fault, State};
use crate::throttle::{Gate, Subnet, Throttle};
use crate::users::{php_empty, User, UserTable};
use crate::{to_response, DropConnection, HttpResponse};

/// The 401 body, exactly as Nextcloud sends it (also for `format=json`).
pub const UNAUTHORISED_XML: &str = "<ocs><meta><status>failure</status><statuscode>997</statuscode><message>Unauthorised</message></meta><data/></ocs>";
const XML_TYPE: &str = "application/xml; charset=utf-8";
const TEXT_TYPE: &str = "text/plain; charset=utf-8";

/// The instance id (Nextcloud's `instanceid`; also the session cookie's name).
pub const INSTANCE_ID: &str = "ocstandin001";
/// The cookies every answer sets, by name.
pub const COOKIE_NAMES: [&str; 5] = [
    "oc_sessionPassphrase",
    "nc_sameSiteCookielax",
    "nc_sameSiteCookiestrict",
    INSTANCE_ID,
    "cookie_test",
];

/// A value as PHP's OCS formatter sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Php {
    /// `null`.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A string.
    Str(String),
    /// A list (PHP array with keys 0…n-1).
    List(Vec<Php>),
    /// An associative array; PHP writes an empty one as `[]`.
    Map(Vec<(String, Php)>),
}

impl Php {
    fn s(value: &str) -> Php {
        Php::Str(value.to_owned())
    }

    fn map<const N: usize>(pairs: [(&str, Php); N]) -> Php {
        Php::Map(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    fn strings<'a>(items: impl IntoIterator<Item = &'a str>) -> Php {
        Php::List(items.into_iter().map(Php::s).collect())
    }

    /// `json_encode($value, JSON_HEX_TAG)`.
    pub fn json(&self) -> String {
        let mut out = String::new();
        self.write_json(&mut out);
        out
    }

    fn write_json(&self, out: &mut String) {
        match self {
            Php::Null => out.push_str("null"),
            Php::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Php::Int(n) => out.push_str(&n.to_string()),
            Php::Str(s) => write_php_string(s, out),
            Php::List(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write_json(out);
                }
                out.push(']');
            }
            Php::Map(pairs) if pairs.is_empty() => out.push_str("[]"),
            Php::Map(pairs) => {
                out.push('{');
                for (i, (key, value)) in pairs.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_php_string(key, out);
                    out.push(':');
                    value.write_json(out);
                }
                out.push('}');
            }
        }
    }

    /// The OCS XML writer's spelling (list items are `<element>`).
    fn write_xml(&self, name: &str, depth: usize, out: &mut String) {
        let indent = " ".repeat(depth);
        let name = if name.is_empty() || name.bytes().all(|b| b.is_ascii_digit()) {
            "element"
        } else {
            name
        };
        let name = xml_escape(name);
        match self {
            Php::Null => out.push_str(&format!("{indent}<{name}/>\n")),
            Php::Bool(b) => {
                out.push_str(&format!("{indent}<{name}>{}</{name}>\n", u8::from(*b)));
            }
            Php::Int(n) => out.push_str(&format!("{indent}<{name}>{n}</{name}>\n")),
            Php::Str(s) => {
                out.push_str(&format!("{indent}<{name}>{}</{name}>\n", xml_escape(s)));
            }
            Php::List(items) if items.is_empty() => out.push_str(&format!("{indent}<{name}/>\n")),
            Php::Map(pairs) if pairs.is_empty() => out.push_str(&format!("{indent}<{name}/>\n")),
            Php::List(items) => {
                out.push_str(&format!("{indent}<{name}>\n"));
                for item in items {
                    item.write_xml("element", depth + 1, out);
                }
                out.push_str(&format!("{indent}</{name}>\n"));
            }
            Php::Map(pairs) => {
                out.push_str(&format!("{indent}<{name}>\n"));
                for (key, value) in pairs {
                    value.write_xml(key, depth + 1, out);
                }
                out.push_str(&format!("{indent}</{name}>\n"));
            }
        }
    }
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `/ocs/v1.php` or `/ocs/v2.php`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// HTTP 200 (but 401) with statuscode 100 for success.
    V1,
    /// The HTTP status follows the OCS status code.
    V2,
}

/// The endpoints served, with the path parameter decoded as Nextcloud does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `cloud/user`.
    CurrentUser,
    /// `cloud/users/{uid}`.
    User(String),
    /// `cloud/users/{uid}/groups`.
    UserGroups(String),
    /// `cloud/groups/details`.
    GroupsDetails,
    /// `cloud/groups/{gid}` (deprecated form of `…/users`).
    Group(String),
    /// `cloud/groups/{gid}/users`.
    GroupUsers(String),
    /// `cloud/groups/{gid}/users/details`.
    GroupUsersDetails(String),
    /// Anything else.
    Unknown,
}

impl Endpoint {
    /// The key in the stats.
    pub fn key(&self) -> &'static str {
        match self {
            Endpoint::CurrentUser => "cloud/user",
            Endpoint::User(_) => "cloud/users/{uid}",
            Endpoint::UserGroups(_) => "cloud/users/{uid}/groups",
            Endpoint::GroupsDetails => "cloud/groups/details",
            Endpoint::Group(_) => "cloud/groups/{gid}",
            Endpoint::GroupUsers(_) => "cloud/groups/{gid}/users",
            Endpoint::GroupUsersDetails(_) => "cloud/groups/{gid}/users/details",
            Endpoint::Unknown => "(other)",
        }
    }
}

/// Splits a raw request path into the version and the endpoint. Unencoded
/// dot segments go first, as HTTP clients and the web server in front of
/// Nextcloud remove them (`/cloud/users/.` is `/cloud/users/`, no route:
/// 998). The path is then percent-decoded once (Nextcloud's router), so
/// `%2E` is the uid `.` (unknown: 404) and `%2F` a slash (no route: 998);
/// a gid is URL-decoded a second time (the provisioning controller's
/// `urldecode`, `+` included), so `x%2541` names the group `xA`.
pub fn parse_path(raw_path: &str) -> Option<(Version, Endpoint)> {
    let raw_path = remove_dot_segments(raw_path);
    let raw_path = raw_path.as_str();
    let (version, rest) = if let Some(rest) = raw_path.strip_prefix("/ocs/v2.php/") {
        (Version::V2, rest)
    } else if let Some(rest) = raw_path.strip_prefix("/ocs/v1.php/") {
        (Version::V1, rest)
    } else {
        return None;
    };
    let path = percent_encoding::percent_decode_str(rest)
        .decode_utf8_lossy()
        .into_owned();
    let endpoint = if path == "cloud/user" {
        Endpoint::CurrentUser
    } else if path == "cloud/groups/details" {
        Endpoint::GroupsDetails
    } else if let Some(tail) = path.strip_prefix("cloud/users/") {
        match tail.strip_suffix("/groups") {
            Some(uid) if !uid.is_empty() && !uid.contains('/') => {
                Endpoint::UserGroups(uid.to_owned())
            }
            _ if !tail.is_empty() && !tail.contains('/') => Endpoint::User(tail.to_owned()),
            _ => Endpoint::Unknown,
        }
    } else if let Some(tail) = path.strip_prefix("cloud/groups/") {
        if let Some(gid) = tail
            .strip_suffix("/users/details")
            .filter(|g| !g.is_empty())
        {
            Endpoint::GroupUsersDetails(php_urldecode(gid))
        } else if let Some(gid) = tail.strip_suffix("/users").filter(|g| !g.is_empty()) {
            Endpoint::GroupUsers(php_urldecode(gid))
        } else if !tail.is_empty() {
            Endpoint::Group(php_urldecode(tail))
        } else {
            Endpoint::Unknown
        }
    } else {
        Endpoint::Unknown
    };
    Some((version, endpoint))
}

/// RFC 3986's `remove_dot_segments` on a raw path: each unencoded `.`
/// segment goes, each `..` takes the segment before with it (never the
/// root); a trailing one leaves a trailing slash. `%2E` is no dot segment.
pub fn remove_dot_segments(path: &str) -> String {
    let segments: Vec<&str> = path.split('/').collect();
    let last = segments.len() - 1;
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    for (i, segment) in segments.into_iter().enumerate() {
        match segment {
            "." | ".." => {
                if segment == ".." && out.len() > 1 {
                    out.pop();
                }
                if i == last {
                    out.push("");
                }
            }
            other => out.push(other),
        }
    }
    out.join("/")
}

/// PHP's `urldecode`: `+` is a space, `%XX` a byte.
pub fn php_urldecode(text: &str) -> String {
    let spaced = text.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

/// The query parameters that matter (last repeated key wins, as in PHP).
#[derive(Debug, Default)]
struct Query {
    json: bool,
    search: String,
    limit: Option<i64>,
    offset: i64,
}

impl Query {
    fn parse(query: Option<&str>) -> Query {
        let mut q = Query::default();
        for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match key.as_ref() {
                "format" => q.json = value == "json",
                "search" => q.search = value.into_owned(),
                "limit" => q.limit = value.trim().parse().ok(),
                "offset" => q.offset = value.trim().parse().unwrap_or(0).max(0),
                _ => {}
            }
        }
        q
    }
}

/// Nextcloud's Basic auth reading: split at the first `:`; PHP's `empty()`
/// on either part means no credentials at all.
fn basic_credentials(header: Option<&HeaderValue>) -> Option<(String, String)> {
    let value = header?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8_lossy(&decoded).into_owned();
    let (login, password) = text.split_once(':')?;
    if php_empty(login) || php_empty(password) {
        return None;
    }
    Some((login.to_owned(), password.to_owned()))
}

/// The names of the stand-in's cookies a request sends back.
fn returned_cookies(request: &Request<Incoming>) -> Vec<&'static str> {
    let mut found = Vec::new();
    for value in request.headers().get_all(COOKIE) {
        let text = String::from_utf8_lossy(value.as_bytes());
        for pair in text.split(';') {
            let name = pair.split('=').next().unwrap_or("").trim();
            if let Some(known) = COOKIE_NAMES.iter().find(|n| **n == name) {
                if !found.contains(known) {
                    found.push(*known);
                }
            }
        }
    }
    found
}

#[derive(Debug, Default)]
struct Stats {
    requests: u64,
    by_endpoint: BTreeMap<&'static str, u64>,
    by_version: BTreeMap<&'static str, u64>,
    by_status: BTreeMap<u16, u64>,
    unauthorized: u64,
    throttled: u64,
    precondition_failed: u64,
    cookies_returned: u64,
    login_failures: u64,
    logins: u64,
    last: Option<(String, &'static str, String, u16)>,
    /// The last request's path and query as they came on the wire.
    last_path: String,
}

/// Why a login failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LoginError {
    /// Wrong password, unknown user, disabled account: a brute-force failure.
    Failed,
    /// A non-app password where policy wants an app password (2FA user or
    /// `token_auth_enforced`): refused before any check, as Nextcloud's
    /// `PasswordLoginForbiddenException`, and not a brute-force failure.
    PasswordLoginForbidden,
}

/// The OCS side of the stand-in: its own view of the users, the throttle,
/// the policy switch and the counters.
#[derive(Debug)]
pub struct Ocs {
    /// Swapped whole by a reload (see [`Ocs::replace_users`]).
    users: RwLock<&'static UserTable>,
    throttle: Throttle,
    token_auth_enforced: AtomicBool,
    sessions: AtomicU64,
    stats: Mutex<Stats>,
}

impl Default for Ocs {
    fn default() -> Ocs {
        Ocs::new(UserTable::default(), 1.0, Vec::new(), false)
    }
}

fn same_uid(a: &str, b: &str) -> bool {
    // Nextcloud compares `uid_lower` (mb_strtolower) for logins and lookups
    a == b || a.to_lowercase() == b.to_lowercase()
}

fn is_admin(user: &User) -> bool {
    user.groups.iter().any(|g| g == ADMIN_GROUP)
}

/// Nextcloud's `isUserAccessible`: an admin sees everyone; a subadmin sees
/// the non-admin members of the groups it manages.
fn accessible(caller: &User, target: &User) -> bool {
    is_admin(caller)
        || (!is_admin(target)
            && target
                .groups
                .iter()
                .any(|g| caller.extra.subadmin_of.contains(g)))
}

/// One answer before cookies: OCS status code, message, data.
struct Answer {
    code: u16,
    message: &'static str,
    data: Php,
}

impl Answer {
    fn ok(data: Php) -> Answer {
        Answer {
            code: 200,
            message: "OK",
            data,
        }
    }

    fn failure(code: u16, message: &'static str) -> Answer {
        Answer {
            code,
            message,
            data: Php::List(Vec::new()),
        }
    }
}

impl Ocs {
    /// An OCS API over `users`.
    pub fn new(
        users: UserTable,
        throttle_scale: f64,
        allowlist: Vec<Subnet>,
        token_auth_enforced: bool,
    ) -> Ocs {
        Ocs {
            users: RwLock::new(Box::leak(Box::new(users))),
            throttle: Throttle::new(throttle_scale, allowlist),
            token_auth_enforced: AtomicBool::new(token_auth_enforced),
            sessions: AtomicU64::new(0),
            stats: Mutex::new(Stats::default()),
        }
    }

    /// The brute-force throttle (for the control endpoints).
    pub fn throttle(&self) -> &Throttle {
        &self.throttle
    }

    /// Whether only app passwords are accepted (`token_auth_enforced`).
    pub fn token_auth_enforced(&self) -> bool {
        self.token_auth_enforced.load(Ordering::Relaxed)
    }

    /// Switches `token_auth_enforced`.
    pub fn set_token_auth_enforced(&self, on: bool) {
        self.token_auth_enforced.store(on, Ordering::Relaxed);
    }

    fn stats(&self) -> MutexGuard<'_, Stats> {
        self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Zeroes the counters (not the throttle).
    pub fn reset_stats(&self) {
        *self.stats() = Stats::default();
    }

    /// The `ocs` object of `GET /_standin/stats`.
    pub fn stats_json(&self) -> serde_json::Value {
        let stats = self.stats();
        let by_status: BTreeMap<String, u64> = stats
            .by_status
            .iter()
            .map(|(status, n)| (status.to_string(), *n))
            .collect();
        let last = match &stats.last {
            Some((version, endpoint, login, status)) => serde_json::json!({
                "version": version,
                "endpoint": endpoint,
                "login": login,
                "status": status,
            }),
            None => serde_json::Value::Null,
        };
        serde_json::json!({
            "requests": stats.requests,
            "by_endpoint": stats.by_endpoint,
            "by_version": stats.by_version,
            "by_status": by_status,
            "unauthorized": stats.unauthorized,
            "throttled": stats.throttled,
            "precondition_failed": stats.precondition_failed,
            "cookies_returned": stats.cookies_returned,
            "login_failures": stats.login_failures,
            "logins": stats.logins,
            "bruteforce": self.throttle.summary(),
            "last": last,
            "last_path": stats.last_path,
        })
    }

    /// The current users (a reload swaps them; a request keeps the table it
    /// started with).
    fn users(&self) -> &'static UserTable {
        *self.users.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Serves `users` from now on (`POST /_standin/users/reload`).
    pub fn replace_users(&self, users: &'static UserTable) {
        *self.users.write().unwrap_or_else(PoisonError::into_inner) = users;
    }

    fn find_uid(&self, uid: &str) -> Option<&User> {
        let users = self.users().users();
        users
            .iter()
            .find(|u| u.uid == uid)
            .or_else(|| users.iter().find(|u| same_uid(&u.uid, uid)))
    }

    fn by_email(&self, address: &str) -> Vec<&User> {
        let address = address.to_lowercase();
        self.users()
            .users()
            .iter()
            .filter(|u| {
                u.extra
                    .email
                    .as_deref()
                    .is_some_and(|e| e.to_lowercase() == address)
            })
            .collect()
    }

    /// Nextcloud's `logClientIn` for Basic auth: an app password works for
    /// its owner's login name or e-mail address; the main password only
    /// without 2FA and `token_auth_enforced`; the login may be the e-mail
    /// address of exactly one account; disabled accounts never log in.
    fn login(&self, login: &str, password: &str) -> Result<&User, LoginError> {
        let token_owner = self
            .users()
            .users()
            .iter()
            .find(|u| u.extra.is_app_password(password));
        if token_owner.is_none() {
            let two_factor = match self.find_uid(login) {
                Some(user) => user.extra.two_factor,
                None => match self.by_email(login).as_slice() {
                    [] => false,
                    [user] => user.extra.two_factor,
                    _ => true,
                },
            };
            if self.token_auth_enforced() || two_factor {
                return Err(LoginError::PasswordLoginForbidden);
            }
        }
        let user = match token_owner {
            Some(owner) => {
                let by_email = owner
                    .extra
                    .email
                    .as_deref()
                    .is_some_and(|e| e.to_lowercase() == login.to_lowercase());
                (same_uid(&owner.uid, login) || by_email).then_some(owner)
            }
            // as Nextcloud: the login as a uid first; failing that, if it
            // looks like an address, the one account with that address
            None => self
                .find_uid(login)
                .filter(|user| user.main_password_is(password))
                .or_else(|| match self.by_email(login).as_slice() {
                    [user] if login.contains('@') && user.main_password_is(password) => Some(*user),
                    _ => None,
                }),
        };
        match user {
            Some(user) if !user.extra.disabled => Ok(user),
            _ => Err(LoginError::Failed),
        }
    }

    /// All gids that exist: declared ones and those users are in, by gid.
    fn all_groups(&self) -> Vec<&str> {
        let mut gids: Vec<&str> = self
            .users()
            .declared_groups()
            .iter()
            .map(|(gid, _)| gid.as_str())
            .collect();
        for user in self.users().users() {
            gids.extend(user.groups.iter().map(String::as_str));
        }
        gids.sort_unstable();
        gids.dedup();
        gids
    }

    fn group_exists(&self, gid: &str) -> bool {
        self.all_groups().contains(&gid)
    }

    /// The members of a group, by uid (Nextcloud's database backend order).
    fn members(&self, gid: &str) -> Vec<&User> {
        let mut members: Vec<&User> = self
            .users()
            .users()
            .iter()
            .filter(|u| u.groups.iter().any(|g| g == gid))
            .collect();
        members.sort_by(|a, b| a.uid.cmp(&b.uid));
        members
    }

    /// The provisioning API's user record.
    fn user_data(&self, target: &User) -> Php {
        let email = match &target.extra.email {
            Some(address) => Php::s(address),
            None => Php::Null,
        };
        Php::map([
            ("enabled", Php::Bool(!target.extra.disabled)),
            (
                "storageLocation",
                Php::Str(format!("/var/www/nextcloud/data/{}", target.uid)),
            ),
            ("id", Php::s(&target.uid)),
            ("firstLoginTimestamp", Php::Int(1_764_547_200)),
            ("lastLoginTimestamp", Php::Int(1_764_547_200)),
            ("lastLogin", Php::Int(1_764_547_200_000)),
            ("backend", Php::s("Database")),
            (
                "subadmin",
                Php::strings(target.extra.subadmin_of.iter().map(String::as_str)),
            ),
            (
                "quota",
                Php::map([
                    ("free", Php::Int(10_737_418_240)),
                    ("used", Php::Int(0)),
                    ("total", Php::Int(10_737_418_240)),
                    ("relative", Php::Int(0)),
                    ("quota", Php::Int(-3)),
                ]),
            ),
            ("manager", Php::s("")),
            ("avatarScope", Php::s("v2-federated")),
            ("email", email),
            ("additional_mail", Php::List(Vec::new())),
            ("displayname", Php::s(&target.name)),
            ("display-name", Php::s(&target.name)),
            ("phone", Php::s("")),
            ("address", Php::s("")),
            ("website", Php::s("")),
            ("twitter", Php::s("")),
            ("fediverse", Php::s("")),
            ("organisation", Php::s("")),
            ("role", Php::s("")),
            ("headline", Php::s("")),
            ("biography", Php::s("")),
            ("profile_enabled", Php::s("1")),
            ("pronouns", Php::s("")),
            (
                "groups",
                Php::strings(target.groups.iter().map(String::as_str)),
            ),
            ("language", Php::s("en")),
            ("locale", Php::s("")),
            ("notify_email", Php::Null),
            (
                "backendCapabilities",
                Php::map([
                    ("setDisplayName", Php::Bool(true)),
                    ("setPassword", Php::Bool(true)),
                ]),
            ),
        ])
    }

    /// What `me` may see of `target` (`getUserData`): everything for an
    /// admin, a subadmin of one of its groups, or itself; else nothing.
    fn user_data_for(&self, me: &User, target: &User) -> Option<Php> {
        (accessible(me, target) || me.uid == target.uid).then(|| self.user_data(target))
    }

    fn answer(&self, me: &User, endpoint: &Endpoint, query: &Query) -> Answer {
        match endpoint {
            Endpoint::CurrentUser => Answer::ok(self.user_data(me)),
            Endpoint::User(uid) => match self.find_uid(uid) {
                None => Answer::failure(404, "User does not exist"),
                Some(target) => match self.user_data_for(me, target) {
                    Some(data) => Answer::ok(data),
                    None => Answer::failure(998, ""),
                },
            },
            Endpoint::UserGroups(uid) => match self.find_uid(uid) {
                None => Answer::failure(998, ""),
                Some(target) if target.uid == me.uid || is_admin(me) => Answer::ok(Php::map([(
                    "groups",
                    Php::strings(target.groups.iter().map(String::as_str)),
                )])),
                Some(target) if accessible(me, target) => {
                    let shared = target
                        .groups
                        .iter()
                        .filter(|g| me.extra.subadmin_of.contains(g))
                        .map(String::as_str);
                    Answer::ok(Php::map([("groups", Php::strings(shared))]))
                }
                Some(_) => Answer::failure(998, ""),
            },
            Endpoint::GroupsDetails => {
                let search = query.search.to_lowercase();
                let groups: Vec<Php> = self
                    .all_groups()
                    .into_iter()
                    .filter(|gid| {
                        search.is_empty()
                            || gid.to_lowercase().contains(&search)
                            || self.users().group_name(gid).to_lowercase().contains(&search)
                    })
                    .collect::<Vec<&str>>()
                    .into_iter()
                    .map(|gid| {
                        let members = self.members(gid);
                        let disabled = members.iter().filter(|u| u.extra.disabled).count();
                        Php::map([
                            ("id", Php::s(gid)),
                            ("displayname", Php::s(self.users().group_name(gid))),
                            ("usercount", Php::Int(count(members.len()))),
                            ("disabled", Php::Int(count(disabled))),
                            ("canAdd", Php::Bool(true)),
                            ("canRemove", Php::Bool(true)),
                        ])
                    })
                    .collect();
                Answer::ok(Php::map([("groups", Php::List(page(groups, query)))]))
            }
            Endpoint::Group(gid) | Endpoint::GroupUsers(gid) => {
                if !self.group_exists(gid) {
                    return Answer::failure(404, "The requested group could not be found");
                }
                if !is_admin(me) && !me.extra.subadmin_of.contains(gid) {
                    return Answer::failure(403, "");
                }
                let uids = self.members(gid).into_iter().map(|u| u.uid.as_str());
                Answer::ok(Php::map([("users", Php::strings(uids))]))
            }
            Endpoint::GroupUsersDetails(gid) => {
                if !self.group_exists(gid) || (!is_admin(me) && !me.extra.subadmin_of.contains(gid))
                {
                    return Answer::failure(998, "The requested group could not be found");
                }
                let search = query.search.to_lowercase();
                let members: Vec<&User> = self
                    .members(gid)
                    .into_iter()
                    .filter(|u| {
                        search.is_empty()
                            || u.uid.to_lowercase().contains(&search)
                            || u.name.to_lowercase().contains(&search)
                    })
                    .collect();
                let users: Vec<(String, Php)> = page(members, query)
                    .into_iter()
                    .map(|user| {
                        let data = self.user_data_for(me, user).unwrap_or_else(|| {
                            Php::map([("id", Php::s(&user.uid))])
                        });
                        (user.uid.clone(), data)
                    })
                    .collect();
                Answer::ok(Php::map([("users", Php::Map(users))]))
            }
            Endpoint::Unknown => Answer::failure(
                998,
                "Invalid query, please check the syntax. API specifications are here: http://www.freedesktop.org/wiki/Specifications/open-collaboration-services.",
            ),
        }
    }

    /// The `Set-Cookie` values of one answer (a fresh session each time).
    fn cookies(&self) -> [String; 5] {
        let n = self.sessions.fetch_add(1, Ordering::Relaxed) + 1;
        let forever = "expires=Fri, 31-Dec-2100 23:59:59 GMT";
        [
            format!(
                "oc_sessionPassphrase=standin-passphrase-{n:08}; path=/; HttpOnly; SameSite=Lax"
            ),
            format!("nc_sameSiteCookielax=true; path=/; httponly; {forever}; SameSite=lax"),
            format!("nc_sameSiteCookiestrict=true; path=/; httponly; {forever}; SameSite=strict"),
            format!("{INSTANCE_ID}=standinsession{n:08}; path=/; HttpOnly; SameSite=Lax"),
            format!("cookie_test=test; path=/; {forever}"),
        ]
    }

    /// Counts the answer and turns it into a response with the cookies.
    fn finish(
        &self,
        version: Version,
        endpoint: &Endpoint,
        login: &str,
        reply: Reply,
    ) -> HttpResponse {
        {
            let mut stats = self.stats();
            *stats.by_status.entry(reply.status).or_insert(0) += 1;
            match reply.status {
                401 => stats.unauthorized += 1,
                412 => stats.precondition_failed += 1,
                429 => stats.throttled += 1,
                _ => {}
            }
            let version = match version {
                Version::V1 => "v1",
                Version::V2 => "v2",
            };
            stats.last = Some((
                version.to_owned(),
                endpoint.key(),
                login.to_owned(),
                reply.status,
            ));
        }
        let mut response = to_response(reply);
        for cookie in self.cookies() {
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().append(SET_COOKIE, value);
            }
        }
        response
    }
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `limit`/`offset` paging: no limit (or a negative one) means all.
fn page<T>(items: Vec<T>, query: &Query) -> Vec<T> {
    let offset = usize::try_from(query.offset).unwrap_or(0);
    let rest = items.into_iter().skip(offset);
    match query.limit.and_then(|l| usize::try_from(l).ok()) {
        Some(limit) => rest.take(limit).collect(),
        None => rest.collect(),
    }
}

/// Shapes an answer: the envelope in JSON or XML, the HTTP status by version.
fn envelope(version: Version, json: bool, answer: Answer) -> Reply {
    let (status, code) = match version {
        Version::V2 => {
            let status = match answer.code {
                997 => 401,
                998 => 404,
                code if !(200..=600).contains(&code) => 400,
                code => code,
            };
            (status, answer.code)
        }
        Version::V1 => {
            let status = if answer.code == 997 { 401 } else { 200 };
            (status, if answer.code == 200 { 100 } else { answer.code })
        }
    };
    let ok = answer.code == 200;
    let mut meta = vec![
        (
            "status".to_owned(),
            Php::s(if ok { "ok" } else { "failure" }),
        ),
        ("statuscode".to_owned(), Php::Int(code.into())),
        ("message".to_owned(), Php::s(answer.message)),
    ];
    if version == Version::V1 {
        meta.push(("totalitems".to_owned(), Php::s("")));
        meta.push(("itemsperpage".to_owned(), Php::s("")));
    }
    let body = Php::Map(vec![(
        "ocs".to_owned(),
        Php::Map(vec![
            ("meta".to_owned(), Php::Map(meta)),
            ("data".to_owned(), answer.data),
        ]),
    )]);
    if json {
        Reply::json(status, body.json())
    } else {
        let mut out = String::from("<?xml version=\"1.0\"?>\n");
        if let Php::Map(pairs) = &body {
            for (key, value) in pairs {
                value.write_xml(key, 0, &mut out);
            }
        }
        Reply {
            status,
            content_type: Some(XML_TYPE),
            location: None,
            body: out,
        }
    }
}

fn unauthorised() -> Reply {
    Reply {
        status: 401,
        content_type: Some(XML_TYPE),
        location: None,
        body: UNAUTHORISED_XML.to_owned(),
    }
}

fn plain(status: u16, body: String) -> Reply {
    Reply {
        status,
        content_type: Some(TEXT_TYPE),
        location: None,
        body,
    }
}

/// Serves one request under `/ocs/`.
pub async fn handle(
    state: &State,
    peer: IpAddr,
    request: Request<Incoming>,
) -> Result<HttpResponse, DropConnection> {
    let ocs = state.ocs();
    let Some((version, endpoint)) = parse_path(request.uri().path()) else {
        return Ok(to_response(Reply::not_found()));
    };
    let query = Query::parse(request.uri().query());
    let json = query.json
        || request
            .headers()
            .get(ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("application/json"));
    {
        let mut stats = ocs.stats();
        stats.requests += 1;
        stats.last_path = request
            .uri()
            .path_and_query()
            .map_or_else(String::new, |p| p.as_str().to_owned());
        *stats.by_endpoint.entry(endpoint.key()).or_insert(0) += 1;
        let v = match version {
            Version::V1 => "v1",
            Version::V2 => "v2",
        };
        *stats.by_version.entry(v).or_insert(0) += 1;
    }
    let credentials = basic_credentials(request.headers().get(AUTHORIZATION));
    let login = credentials.as_ref().map_or("", |(login, _)| login.as_str());

    let reply = match state.fault() {
        Fault::None | Fault::Wrongsig => None,
        Fault::Http500 => Some(Reply {
            status: 500,
            content_type: Some(JSON_TYPE),
            location: None,
            body: r#"{"message":"Internal Server Error"}"#.to_owned(),
        }),
        Fault::Http404 => Some(Reply::not_found()),
        Fault::Hang => {
            state.hang_over().await;
            return Err(DropConnection);
        }
        Fault::Close => return Err(DropConnection),
        Fault::Nonjson => Some(Reply::html_page()),
        Fault::Redirect => Some(Reply::login_redirect()),
        Fault::Badshape => Some(Reply::json(
            200,
            r#"{"result":"success","data":[]}"#.to_owned(),
        )),
    };
    if let Some(reply) = reply {
        return Ok(ocs.finish(version, &endpoint, login, reply));
    }
    let latency = state.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }

    let returned = returned_cookies(&request);
    if !returned.is_empty() {
        ocs.stats().cookies_returned += 1;
        tracing::warn!(
            "OCS request sent back the cookies {}: refused",
            returned.join(", ")
        );
        let body = format!(
            "xcauth-standin: this request sent back Nextcloud's cookies ({}). A real Nextcloud \
             would take it for a logged-in session and skip Basic auth, so a wrong password \
             could pass. Never send cookies to Nextcloud.\n",
            returned.join(", ")
        );
        return Ok(ocs.finish(version, &endpoint, login, plain(400, body)));
    }

    let slept = match ocs.throttle.gate(peer) {
        Gate::Blocked => {
            tracing::info!(%peer, "throttled: 429");
            let reply = Reply {
                status: 429,
                content_type: Some(XML_TYPE),
                location: None,
                body: "<ocs><meta><status>failure</status><statuscode>429</statuscode><message>Reached maximum delay</message></meta><data/></ocs>".to_owned(),
            };
            return Ok(ocs.finish(version, &endpoint, login, reply));
        }
        Gate::Wait(delay) => {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            !delay.is_zero()
        }
    };

    let Some((login, password)) = credentials.as_ref() else {
        return Ok(ocs.finish(version, &endpoint, "", unauthorised()));
    };
    let me = match ocs.login(login, password) {
        Ok(user) => {
            ocs.throttle.succeed(peer, login, &user.uid);
            ocs.stats().logins += 1;
            user
        }
        Err(LoginError::PasswordLoginForbidden) => {
            tracing::info!(login = login.as_str(), "password login forbidden: 401");
            return Ok(ocs.finish(version, &endpoint, login, unauthorised()));
        }
        Err(LoginError::Failed) => {
            ocs.stats().login_failures += 1;
            let after = ocs.throttle.fail(peer, login, slept);
            tracing::info!(login = login.as_str(), %peer, "login failed: 401");
            if !after.is_zero() {
                tokio::time::sleep(after).await;
            }
            return Ok(ocs.finish(version, &endpoint, login, unauthorised()));
        }
    };

    let has_header = request
        .headers()
        .get("ocs-apirequest")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"));
    if !has_header {
        let reply = Reply::json(412, r#"{"message":"CSRF check failed"}"#.to_owned());
        return Ok(ocs.finish(version, &endpoint, login, reply));
    }
    let answer = if request.method() == Method::GET {
        ocs.answer(me, &endpoint, &query)
    } else {
        ocs.answer(me, &Endpoint::Unknown, &query)
    };
    let reply = envelope(version, json, answer);
    tracing::info!(
        endpoint = endpoint.key(),
        login = login.as_str(),
        "OCS request → {}",
        reply.status
    );
    Ok(ocs.finish(version, &endpoint, login, reply))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_decode_gids_twice() {
        let p = |path| parse_path(path).unwrap().1;
        assert_eq!(p("/ocs/v2.php/cloud/user"), Endpoint::CurrentUser);
        assert_eq!(
            p("/ocs/v2.php/cloud/groups/x%2541/users"),
            Endpoint::GroupUsers("xA".into())
        );
        assert_eq!(
            p("/ocs/v2.php/cloud/groups/x%252541/users/details"),
            Endpoint::GroupUsersDetails("x%41".into())
        );
        assert_eq!(
            p("/ocs/v1.php/cloud/groups/a/b%20c%C3%9C/users"),
            Endpoint::GroupUsers("a/b cÜ".into())
        );
        assert_eq!(
            p("/ocs/v2.php/cloud/groups/a+b"),
            Endpoint::Group("a b".into())
        );
        assert_eq!(
            p("/ocs/v2.php/cloud/users/al%2Bice/groups"),
            Endpoint::UserGroups("al+ice".into())
        );
        assert_eq!(p("/ocs/v2.php/cloud/users/a/b"), Endpoint::Unknown);
        assert_eq!(p("/ocs/v2.php/cloud/users/a%2Fb"), Endpoint::Unknown);
    }

    #[test]
    fn dot_segments_as_nextcloud_sees_them() {
        let p = |path| parse_path(path).unwrap().1;
        // encoded: the literal uids
        assert_eq!(p("/ocs/v2.php/cloud/users/%2E"), Endpoint::User(".".into()));
        assert_eq!(
            p("/ocs/v2.php/cloud/users/%2e%2e"),
            Endpoint::User("..".into())
        );
        assert_eq!(
            p("/ocs/v2.php/cloud/groups/%252E/users/details"),
            Endpoint::GroupUsersDetails(".".into())
        );
        // unencoded: removed before routing, leaving no uid
        assert_eq!(p("/ocs/v2.php/cloud/users/."), Endpoint::Unknown);
        assert_eq!(p("/ocs/v2.php/cloud/users/.."), Endpoint::Unknown);
        assert_eq!(p("/ocs/v2.php/cloud/users/"), Endpoint::Unknown);
        assert_eq!(
            p("/ocs/v2.php/cloud/users/./alice"),
            Endpoint::User("alice".into())
        );
        assert_eq!(
            p("/ocs/v2.php/cloud/groups/x/../details"),
            Endpoint::GroupsDetails
        );
        assert_eq!(remove_dot_segments("/a/b/.."), "/a/");
        assert_eq!(remove_dot_segments("/../.."), "/");
        assert_eq!(remove_dot_segments("/a/%2E/b"), "/a/%2E/b");
        assert_eq!(
            p("/ocs/v2.php/cloud/groups/details"),
            Endpoint::GroupsDetails
        );
        assert!(parse_path("/index.php/cloud/user").is_none());
        assert_eq!(parse_path("/ocs/v1.php/cloud/user").unwrap().0, Version::V1);
    }

    #[test]
    fn envelopes_by_version() {
        let v2 = envelope(
            Version::V2,
            true,
            Answer::failure(404, "User does not exist"),
        );
        assert_eq!(v2.status, 404);
        assert_eq!(
            v2.body,
            r#"{"ocs":{"meta":{"status":"failure","statuscode":404,"message":"User does not exist"},"data":[]}}"#
        );
        let v1 = envelope(
            Version::V1,
            true,
            Answer::failure(404, "User does not exist"),
        );
        assert_eq!(v1.status, 200);
        assert!(v1.body.contains(r#""statuscode":404"#));
        let ok = envelope(
            Version::V1,
            true,
            Answer::ok(Php::map([("a", Php::Int(1))])),
        );
        assert_eq!(ok.status, 200);
        assert!(ok.body.contains(r#""statuscode":100"#));
        assert_eq!(
            envelope(Version::V2, true, Answer::failure(998, "")).status,
            404
        );
        assert_eq!(
            envelope(Version::V2, true, Answer::failure(403, "")).status,
            403
        );
        let xml = envelope(Version::V2, false, Answer::ok(Php::strings(["a<b"])));
        assert!(xml
            .body
            .starts_with("<?xml version=\"1.0\"?>\n<ocs>\n <meta>\n"));
        assert!(xml.body.contains("<element>a&lt;b</element>"));
    }

    #[test]
    fn php_json_spelling() {
        let v = Php::map([
            ("g", Php::strings(["Ünïcode Group", "a/b"])),
            ("n", Php::Null),
            ("e", Php::Map(vec![])),
        ]);
        assert_eq!(
            v.json(),
            r#"{"g":["\u00dcn\u00efcode Group","a\/b"],"n":null,"e":[]}"#
        );
    }

    #[test]
    fn basic_credentials_like_php() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let header = |s: String| HeaderValue::from_str(&s).unwrap();
        assert_eq!(
            basic_credentials(Some(&header(format!("Basic {}", b64("a:b:c"))))),
            Some(("a".into(), "b:c".into()))
        );
        assert_eq!(
            basic_credentials(Some(&header(format!("Basic {}", b64("a:0"))))),
            None
        );
        assert_eq!(
            basic_credentials(Some(&header(format!("Bearer {}", b64("a:b"))))),
            None
        );
        assert_eq!(basic_credentials(None), None);
    }

    fn ocs() -> Ocs {
        let users = UserTable::parse(
            "alice\tpw\tAlice\tstaff\temail=a@x.org\n\
             tfa\ttfa-pw\tT\tstaff\t2fa\tapp-password=app1\tapp-password=app2\n\
             dis\tdis-pw\tD\tstaff\tdisabled\n\
             d1\td1\t\t\temail=same@x.org\n\
             d2\td2\t\t\temail=same@x.org\n\
             b\tb-pw\t\t\temail=b@x.org\n\
             b@x.org\town-pw\n",
        )
        .unwrap();
        Ocs::new(users, 1.0, vec![], false)
    }

    #[test]
    fn login_policy() {
        let o = ocs();
        assert_eq!(o.login("alice", "pw").unwrap().uid, "alice");
        assert_eq!(o.login("ALICE", "pw").unwrap().uid, "alice");
        assert_eq!(o.login("a@x.org", "pw").unwrap().uid, "alice");
        assert_eq!(o.login("b@x.org", "b-pw").unwrap().uid, "b");
        assert_eq!(o.login("b@x.org", "own-pw").unwrap().uid, "b@x.org");
        assert_eq!(o.login("alice", "nope").unwrap_err(), LoginError::Failed);
        assert_eq!(o.login("nobody", "pw").unwrap_err(), LoginError::Failed);
        assert_eq!(o.login("dis", "dis-pw").unwrap_err(), LoginError::Failed);
        // an address of two accounts: Nextcloud's 2FA check treats it as
        // enforced, so the password is refused before it is checked
        assert_eq!(
            o.login("same@x.org", "d1").unwrap_err(),
            LoginError::PasswordLoginForbidden
        );
        assert_eq!(
            o.login("tfa", "tfa-pw").unwrap_err(),
            LoginError::PasswordLoginForbidden
        );
        assert_eq!(o.login("tfa", "app1").unwrap().uid, "tfa");
        assert_eq!(o.login("tfa", "app2").unwrap().uid, "tfa");
        // an app password works only for its owner
        assert_eq!(o.login("alice", "app1").unwrap_err(), LoginError::Failed);
        o.set_token_auth_enforced(true);
        assert_eq!(
            o.login("alice", "pw").unwrap_err(),
            LoginError::PasswordLoginForbidden
        );
        assert_eq!(o.login("tfa", "app1").unwrap().uid, "tfa");
    }
}
