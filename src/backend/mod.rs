//! The back end boundary: what xcauth asks Nextcloud, in words that do not
//! depend on which API answers.
//!
//! - this file: the [`Backend`] trait, its answers ([`Verdict`], a
//!   normalised [`Roster`]) and its errors ([`BackendError`], each variant
//!   saying what the caller does next, with the [`Cause`] for the log);
//! - [`http`]: the one HTTP client every kind shares (pool, process-wide
//!   concurrency limit, body-size limit, TLS roots);
//! - [`jsxc`]: the Nextcloud JSXC app's signed external API (SPEC §4);
//! - [`nextcloud`]: stock Nextcloud's OCS and provisioning APIs, no app.
//!
//! A second kind of back end is a new file beside `jsxc.rs` implementing
//! [`Backend`], and a [`BackendKind`] variant that [`build`] maps to it;
//! the decision (`verify`) and the roster sync (`roster`) only see this
//! file's types.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::secret::Secret;

pub mod http;
pub mod jsxc;
pub mod nextcloud;

pub use http::{BackendBuildError, BackendOptions, HttpClient, MAX_REPLY_BYTES, USER_AGENT};
pub use nextcloud::{ApiAccount, LoginForm};

/// Which API a domain's Nextcloud is asked through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// The JSXC app's signed external API (Nextcloud ≤ 30 with the app).
    Jsxc,
    /// Stock Nextcloud's OCS and provisioning APIs (Nextcloud 25 and newer).
    Nextcloud,
}

impl BackendKind {
    /// The name used in configuration and logs.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Jsxc => "jsxc",
            BackendKind::Nextcloud => "nextcloud",
        }
    }

    /// Parses `jsxc` or `nextcloud`.
    pub fn parse(text: &str) -> Result<BackendKind, String> {
        match text {
            "jsxc" => Ok(BackendKind::Jsxc),
            "nextcloud" => Ok(BackendKind::Nextcloud),
            other => Err(format!("{other:?}: expected jsxc or nextcloud")),
        }
    }

    /// The kind a URL without an explicit `backend` means: `jsxc` for the
    /// JSXC API path, `nextcloud` for anything else (a base URL).
    pub fn for_url(url: &str) -> BackendKind {
        let path = url.split(['?', '#']).next().unwrap_or_default();
        if path.trim_end_matches('/').ends_with(jsxc::API_PATH) {
            BackendKind::Jsxc
        } else {
            BackendKind::Nextcloud
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Everything needed to build the back end of one XMPP domain (SPEC §7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSpec {
    /// The API kind.
    pub kind: BackendKind,
    /// JSXC: the external API URL; nextcloud: the base URL.
    pub url: String,
    /// The shared secret (JSXC signature, and tokens for both kinds).
    pub secret: Secret,
    /// The domain Nextcloud is told about (JSXC), or that the
    /// `user@domain` login form appends (nextcloud).
    pub auth_domain: String,
    /// nextcloud: how login names are made.
    pub login_form: LoginForm,
    /// nextcloud: the account for existence and groups.
    pub api: Option<ApiAccount>,
    /// nextcloud: how long a built shared roster is reused.
    pub roster_ttl: std::time::Duration,
}

/// How long a stock-Nextcloud roster is reused by default.
pub const DEFAULT_ROSTER_TTL: std::time::Duration = std::time::Duration::from_secs(600);

impl BackendSpec {
    /// A JSXC spec (the original's settings).
    pub fn jsxc(url: String, secret: Secret, auth_domain: String) -> Self {
        BackendSpec {
            kind: BackendKind::Jsxc,
            url,
            secret,
            auth_domain,
            login_form: LoginForm::default(),
            api: None,
            roster_ttl: DEFAULT_ROSTER_TTL,
        }
    }
}

/// Builds the back end `spec` describes on the shared `client`.
pub fn build(spec: &BackendSpec, client: &Arc<HttpClient>) -> Arc<dyn Backend> {
    crate::metrics::measured(match spec.kind {
        BackendKind::Jsxc => Arc::new(jsxc::JsxcBackend::new(
            Arc::clone(client),
            spec.url.clone(),
            spec.secret.clone(),
            spec.auth_domain.clone(),
        )),
        BackendKind::Nextcloud => Arc::new(nextcloud::NextcloudBackend::new(
            Arc::clone(client),
            nextcloud::NextcloudSettings {
                base: spec.url.clone(),
                auth_domain: spec.auth_domain.clone(),
                login_form: spec.login_form,
                api: spec.api.clone(),
                roster_ttl: spec.roster_ttl,
            },
        )),
    })
}

/// The answer to "is this password right?" when the back end could give
/// one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Right password.
    Accepted,
    /// Wrong password (or refused by Nextcloud's login policy). Never falls
    /// back to the cache; a cached copy of this password is forgotten.
    Rejected,
}

/// One domain's Nextcloud, asked about local user names (the XMPP domain is
/// part of the back end, see [`BackendSpec::auth_domain`]).
#[async_trait]
pub trait Backend: Send + Sync {
    /// The kind, for logs.
    fn kind(&self) -> BackendKind;
    /// Is `password` right for `user`?
    async fn auth(&self, user: &str, password: &Secret) -> Result<Verdict, BackendError>;
    /// Does `user` exist (and may log in)?
    async fn is_user(&self, user: &str) -> Result<bool, BackendError>;
    /// The shared roster of `user`: every member of the user's groups.
    async fn roster(&self, user: &str) -> Result<Roster, BackendError>;
    /// Whether a login's answer may wait (up to `roster::LOGIN_WAIT`) for
    /// the roster fetch and sync: true where fetching is one request, so the
    /// roster is in place when the client asks for it. False where it takes
    /// several: the answer then never waits for them.
    fn waits_for_roster(&self) -> bool {
        true
    }
    /// What a rejected password may mean besides a wrong one, for the log.
    fn rejection_hint(&self) -> Option<&'static str> {
        None
    }
}

/// Why the back end gave no answer, sorted by what the caller does next.
/// All but [`BackendError::Rejected`] count as "unreachable" for the cache
/// rules of SPEC §6.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// The back end refused the question itself (e.g. a roster for a user
    /// it does not know). Answer no; the cache is not consulted.
    #[error("refused: {0}")]
    Rejected(Cause),
    /// A passing outage (down, slow, overloaded): the cache rules apply,
    /// and waiting may help.
    #[error("{0}")]
    Unavailable(Cause),
    /// Nextcloud throttles xcauth's address: the cache rules apply; the
    /// administrator should allowlist xcauth.
    #[error("{0}")]
    Throttled(Cause),
    /// The set-up is wrong (URL, secret, certificates, account, app):
    /// waiting will not help. The cache rules apply; logged as an error.
    #[error("{0}")]
    Misconfigured(Cause),
}

impl BackendError {
    /// What happened, with its hint.
    pub fn cause(&self) -> &Cause {
        match self {
            BackendError::Rejected(c)
            | BackendError::Unavailable(c)
            | BackendError::Throttled(c)
            | BackendError::Misconfigured(c) => c,
        }
    }

    /// True for the errors the cache may stand in for (SPEC §6).
    pub fn falls_back_to_cache(&self) -> bool {
        !matches!(self, BackendError::Rejected(_))
    }

    /// True when the trouble points at the set-up rather than a passing
    /// outage: worth an error-level log line.
    pub fn is_misconfiguration(&self) -> bool {
        matches!(self, BackendError::Misconfigured(_))
    }
}

/// What went wrong talking to the back end; the text says it and gives the
/// administrator a hint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Cause {
    /// Nothing listens at the URL's host and port.
    #[error("connection refused (is Nextcloud running and the API URL right?)")]
    ConnectionRefused,
    /// Connect or whole-request timeout passed.
    #[error("timeout (Nextcloud too slow or unreachable; see --timeout)")]
    Timeout,
    /// TLS handshake or certificate problem.
    #[error("TLS error: {0} (certificate not trusted? see --ca-file)")]
    Tls(String),
    /// Other connection trouble (DNS, reset, closed without answer).
    #[error("connection failed: {0}")]
    Connect(String),
    /// HTTP 404: the URL does not point at the API.
    #[error("HTTP 404 ({0})")]
    NotFound(&'static str),
    /// A 3xx answer; redirects are not followed.
    #[error("HTTP {status} redirect to {location:?} (not followed; use the final URL as API URL)")]
    Redirect {
        /// The status code.
        status: u16,
        /// The `Location` header, if any.
        location: String,
    },
    /// Nextcloud rejected our signature: the secrets differ.
    #[error("signature mismatch (wrong API secret? compare with the JSXC admin page)")]
    SignatureMismatch,
    /// The question needs a setting that is missing.
    #[error("not configured: {0}")]
    NotConfigured(&'static str),
    /// The account xcauth uses for the provisioning API was refused.
    #[error("API account refused (HTTP {status}): {hint}")]
    ApiAccount {
        /// HTTP status (0: not asked, still backing off).
        status: u16,
        /// What to check.
        hint: String,
    },
    /// Nextcloud answered 429: it throttles this address.
    #[error("HTTP 429: Nextcloud throttles xcauth's address (add it to Nextcloud's brute-force allowlist)")]
    TooManyRequests,
    /// Any other unexpected status or an error reply.
    #[error("back-end error (HTTP {status}): {message}")]
    Failed {
        /// HTTP status.
        status: u16,
        /// Message from the reply, cut short, or a description.
        message: String,
    },
    /// A reply of the wrong shape.
    #[error("malformed reply: {0}")]
    Malformed(String),
}

/// One member of a shared roster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Member {
    /// Display name, when the back end gives one.
    pub name: Option<String>,
    /// Names of the shared groups the member is in, as the back end lists
    /// them (display names).
    pub groups: Vec<String>,
}

/// A user's shared roster, whichever back end it came from: members by
/// user id (`name`, or `name@domain` for another domain).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roster {
    /// Members by user id, sorted.
    pub members: BTreeMap<String, Member>,
}

impl Roster {
    /// The roster as JSON text, the shape of JSXC's `sharedroster` data:
    /// `{"uid":{"groups":[…],"name":"…"},…}` with keys sorted, and `[]`
    /// when empty (as PHP writes an empty array). This is what a `roster:`
    /// request answers.
    pub fn to_json(&self) -> String {
        if self.members.is_empty() {
            return "[]".to_owned();
        }
        let mut all = Map::new();
        for (uid, member) in &self.members {
            let mut entry = Map::new();
            entry.insert(
                "groups".into(),
                Value::Array(member.groups.iter().cloned().map(Value::String).collect()),
            );
            if let Some(name) = &member.name {
                entry.insert("name".into(), Value::String(name.clone()));
            }
            all.insert(uid.clone(), Value::Object(entry));
        }
        Value::Object(all).to_string()
    }

    /// A stable digest of the content (lowercase hex SHA-256 of
    /// [`to_json`](Self::to_json)): equal rosters give equal fingerprints
    /// whatever order or spelling the back end used. Stored in
    /// `rosterinfo.responsehash` in place of the original's hash of the raw
    /// reply body, so an upgrade re-synchronises each user once.
    pub fn fingerprint(&self) -> String {
        hex::encode(Sha256::digest(self.to_json().as_bytes()))
    }
}

#[cfg(test)]
pub mod fake;

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: Option<&str>, groups: &[&str]) -> Member {
        Member {
            name: name.map(str::to_owned),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        }
    }

    #[test]
    fn roster_json_is_sorted_and_empty_is_an_array() {
        assert_eq!(Roster::default().to_json(), "[]");
        let mut roster = Roster::default();
        roster
            .members
            .insert("bob".into(), member(Some("Bob B"), &["G1", "G2"]));
        roster
            .members
            .insert("al\"ice".into(), member(None, &["Ünï"]));
        assert_eq!(
            roster.to_json(),
            r#"{"al\"ice":{"groups":["Ünï"]},"bob":{"groups":["G1","G2"],"name":"Bob B"}}"#
        );
    }

    #[test]
    fn fingerprint_follows_content_only() {
        let mut a = Roster::default();
        a.members.insert("x".into(), member(Some("X"), &["g"]));
        a.members.insert("y".into(), member(Some("Y"), &["g"]));
        let mut b = Roster::default();
        b.members.insert("y".into(), member(Some("Y"), &["g"]));
        b.members.insert("x".into(), member(Some("X"), &["g"]));
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint().len(), 64);
        b.members.insert("x".into(), member(Some("X2"), &["g"]));
        assert_ne!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn errors_say_what_happens_next() {
        assert!(!BackendError::Rejected(Cause::NotFound("x")).falls_back_to_cache());
        for e in [
            BackendError::Unavailable(Cause::Timeout),
            BackendError::Throttled(Cause::TooManyRequests),
            BackendError::Misconfigured(Cause::SignatureMismatch),
        ] {
            assert!(e.falls_back_to_cache(), "{e:?}");
        }
        assert!(BackendError::Misconfigured(Cause::SignatureMismatch).is_misconfiguration());
        assert!(!BackendError::Unavailable(Cause::Timeout).is_misconfiguration());
    }
}
