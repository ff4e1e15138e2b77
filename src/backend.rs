//! The Nextcloud JSXC external API client: signed form POSTs and the
//! classification of what comes back (success / rejected / unreachable).

use std::error::Error as StdError;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use reqwest::header::{CONTENT_TYPE, LOCATION};
use serde_json::Value;
use sha1::Sha1;
use tokio::sync::Semaphore;

use crate::secret::Secret;

/// Where and how to ask: the URL, secret and auth domain that apply to one
/// XMPP domain (SPEC §7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The external API URL.
    pub url: String,
    /// The shared secret used for the signature and for tokens.
    pub secret: Secret,
    /// The domain sent to Nextcloud as `domain`.
    pub auth_domain: String,
}

/// One question for the back end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// `operation=auth` with the password.
    Auth(Secret),
    /// `operation=isuser`.
    IsUser,
    /// `operation=sharedroster`.
    SharedRoster,
}

/// A classified back-end answer that is not an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `auth` succeeded.
    Authenticated,
    /// `auth` got `noauth`: wrong password. Never falls back to a cache.
    Rejected,
    /// `isuser` answer.
    IsUser(bool),
    /// `sharedroster` answer: the raw reply body (its SHA-256 steers the
    /// roster sync) and the `data.sharedRoster` value re-serialised.
    Roster {
        /// The exact body bytes Nextcloud sent, as text.
        body: String,
        /// `data.sharedRoster` as compact JSON text (`[]` when empty).
        roster_json: String,
    },
}

/// Why the back end could not give an answer; all of these count as
/// "unreachable" for the cache rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
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
    #[error("HTTP 404 (wrong API URL? Nextcloud needs index.php/ in it: .../index.php/apps/ojsxc/ajax/externalApi.php)")]
    NotFound,
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
    /// Any other non-200 status or `result: error`.
    #[error("back-end error (HTTP {status}): {message}")]
    Failed {
        /// HTTP status.
        status: u16,
        /// Message from the reply, cut short, or a description.
        message: String,
    },
    /// HTTP 200 but not the JSON shape expected.
    #[error("malformed reply: {0} (is the URL the JSXC external API?)")]
    Malformed(String),
}

/// Anything that can answer back-end queries; the real one is
/// [`HttpBackend`], tests use fakes.
#[async_trait]
pub trait Backend: Send + Sync {
    /// Asks `query` about `user` (the local part) at `endpoint`.
    async fn query(
        &self,
        endpoint: &Endpoint,
        user: &str,
        query: &Query,
    ) -> Result<Answer, BackendError>;
}

/// Settings for [`HttpBackend::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendOptions {
    /// Time allowed for TCP connect and TLS handshake.
    pub connect_timeout: Duration,
    /// Time allowed for the whole request, reply body included.
    pub request_timeout: Duration,
    /// A PEM file with CA certificates trusted besides the system roots
    /// (for a Nextcloud with a private CA or a self-signed certificate).
    pub ca_file: Option<PathBuf>,
}

impl Default for BackendOptions {
    /// The original's `--timeout 5,10` and no extra CA.
    fn default() -> Self {
        BackendOptions {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            ca_file: None,
        }
    }
}

/// Why [`HttpBackend::new`] could not set up the client; fatal at start-up.
#[derive(Debug, thiserror::Error)]
pub enum BackendBuildError {
    /// The CA file could not be read.
    #[error("cannot read CA file {}: {source}", path.display())]
    CaFileRead {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The CA file holds no `BEGIN CERTIFICATE` block.
    #[error("CA file {} holds no PEM certificate", path.display())]
    CaFileEmpty {
        /// The file.
        path: PathBuf,
    },
    /// The CA file holds something that is not a usable certificate.
    #[error("CA file {}: {reason}", path.display())]
    CaFileBad {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The HTTP client itself could not be built (e.g. TLS set-up).
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
}

/// Sent as `User-Agent`, so Nextcloud's access log names the caller.
pub const USER_AGENT: &str = concat!("xcauth/", env!("CARGO_PKG_VERSION"));

/// Largest reply body read; a shared roster of a big organisation stays far
/// below, a misconfigured URL serving a download does not.
pub const MAX_REPLY_BYTES: usize = 16 * 1024 * 1024;

/// Longest server message kept in an error (one log line).
const MAX_MESSAGE_CHARS: usize = 200;

/// The real back end: one `reqwest` client (and so one pool of kept-alive
/// connections) for all requests and all endpoints.
///
/// Proxies: like the original (Python `requests`), the client honours
/// `HTTP_PROXY`/`HTTPS_PROXY`/`ALL_PROXY`/`NO_PROXY` from the environment,
/// so a site that needs a proxy to reach its Nextcloud keeps working.
/// Redirects are never followed: a redirect means a wrong API URL, and a
/// POST must not be replayed elsewhere.
#[derive(Debug, Clone)]
pub struct HttpBackend {
    /// Built on first use: loading the system's CA certificates is most of
    /// a cold start, and token-only helpers never need it.
    client: OnceLock<Result<reqwest::Client, String>>,
    options: BackendOptions,
    extra_roots: Vec<reqwest::Certificate>,
    /// Requests to Nextcloud at once, over all streams (see
    /// [`MAX_CONCURRENT_REQUESTS`]).
    in_flight: Arc<Semaphore>,
}

/// Back-end requests in flight at once per process. Nextcloud answers with
/// a pool of PHP workers, so more parallel requests only queue there, while
/// each costs us a connection and its buffers; a pipelining stream could
/// otherwise open hundreds. 64 connections at 20 ms still allow 3 200
/// requests/s.
pub const MAX_CONCURRENT_REQUESTS: usize = 64;

/// Idle keep-alive connections kept per host between bursts.
const IDLE_CONNECTIONS: usize = 16;

impl HttpBackend {
    /// Checks the options (a bad `ca_file` is an error now, not at the first
    /// login); the client itself is built on first use with timeouts, no
    /// redirects, the system roots plus every certificate in `ca_file`.
    pub fn new(options: &BackendOptions) -> Result<Self, BackendBuildError> {
        let extra_roots = match &options.ca_file {
            Some(path) => read_ca_file(path)?,
            None => Vec::new(),
        };
        Ok(HttpBackend {
            client: OnceLock::new(),
            options: options.clone(),
            extra_roots,
            in_flight: Arc::new(Semaphore::new(MAX_CONCURRENT_REQUESTS)),
        })
    }

    fn client(&self) -> Result<&reqwest::Client, BackendError> {
        self.client
            .get_or_init(|| {
                let mut builder = reqwest::Client::builder()
                    .user_agent(USER_AGENT)
                    .redirect(reqwest::redirect::Policy::none())
                    .connect_timeout(self.options.connect_timeout)
                    .timeout(self.options.request_timeout)
                    .pool_max_idle_per_host(IDLE_CONNECTIONS);
                for cert in &self.extra_roots {
                    builder = builder.add_root_certificate(cert.clone());
                }
                builder.build().map_err(|e| describe_chain(&e))
            })
            .as_ref()
            .map_err(|e| BackendError::Connect(format!("cannot set up the HTTP client: {e}")))
    }
}

/// Reads the PEM certificates of `path`.
fn read_ca_file(path: &Path) -> Result<Vec<reqwest::Certificate>, BackendBuildError> {
    let pem = std::fs::read(path).map_err(|source| BackendBuildError::CaFileRead {
        path: path.to_owned(),
        source,
    })?;
    let certs =
        reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| BackendBuildError::CaFileBad {
            path: path.to_owned(),
            reason: describe_chain(&e),
        })?;
    if certs.is_empty() {
        return Err(BackendBuildError::CaFileEmpty {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

#[async_trait]
impl Backend for HttpBackend {
    async fn query(
        &self,
        endpoint: &Endpoint,
        user: &str,
        query: &Query,
    ) -> Result<Answer, BackendError> {
        // Waiting for a slot counts against the request's time.
        let _slot = tokio::time::timeout(self.options.request_timeout, self.in_flight.acquire())
            .await
            .map_err(|_| BackendError::Timeout)?
            .map_err(|_| BackendError::Connect("shutting down".into()))?;
        let client = self.client()?;
        // The bytes signed are the bytes sent: encode once, sign, send.
        let body = encode_body(query, user, &endpoint.auth_domain);
        let signature = sign(body.as_bytes(), endpoint.secret.expose().as_bytes());
        let sent = client
            .post(endpoint.url.as_str())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await;
        let mut response = sent.map_err(transport_error)?;

        let status = response.status().as_u16();
        let location = response
            .headers()
            .get(LOCATION)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let mut reply = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
            if reply.len() + chunk.len() > MAX_REPLY_BYTES {
                return Err(BackendError::Malformed(format!(
                    "reply longer than {} MiB",
                    MAX_REPLY_BYTES / (1024 * 1024)
                )));
            }
            reply.extend_from_slice(&chunk);
        }

        let hidden: Vec<&str> = match query {
            Query::Auth(password) => vec![password.expose(), endpoint.secret.expose()],
            _ => vec![endpoint.secret.expose()],
        };
        classify(query, status, location.as_deref(), &reply).map_err(|e| scrub(e, &hidden))
    }
}

/// The header that carries the body signature.
pub const SIGNATURE_HEADER: &str = "X-JSXC-SIGNATURE";

/// The form body: `operation`, `username`, `domain` and, for `auth`,
/// `password`, in this order, `application/x-www-form-urlencoded`.
pub fn encode_body(query: &Query, user: &str, auth_domain: &str) -> String {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("operation", query.operation());
    form.append_pair("username", user);
    form.append_pair("domain", auth_domain);
    if let Query::Auth(password) = query {
        form.append_pair("password", password.expose());
    }
    form.finish()
}

/// The `X-JSXC-SIGNATURE` value for `body`: `sha1=` and the lowercase hex
/// HMAC-SHA1 keyed with the API secret.
pub fn sign(body: &[u8], secret: &[u8]) -> String {
    // HMAC accepts keys of every length, so this cannot fail.
    let mut mac =
        <Hmac<Sha1> as Mac>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha1={}", hex::encode(mac.finalize().into_bytes()))
}

impl Query {
    /// The `operation` field for this query.
    pub fn operation(&self) -> &'static str {
        match self {
            Query::Auth(_) => "auth",
            Query::IsUser => "isuser",
            Query::SharedRoster => "sharedroster",
        }
    }
}

impl BackendError {
    /// True when the trouble points at the set-up (API URL, secret,
    /// certificates, the JSXC app) rather than a passing outage: worth an
    /// error-level log line, since waiting will not make it go away.
    pub fn is_misconfiguration(&self) -> bool {
        matches!(
            self,
            BackendError::NotFound
                | BackendError::Redirect { .. }
                | BackendError::SignatureMismatch
                | BackendError::Tls(_)
                | BackendError::Malformed(_)
        )
    }
}

/// Classifies a reply (SPEC §4): HTTP 200 with JSON `result` `success` is
/// an answer, `noauth` for `auth` is [`Answer::Rejected`], everything else
/// is a [`BackendError`]. `location` is the `Location` header, if any.
///
/// Error texts never quote the reply body except the server's own `msg`,
/// and never the request.
pub fn classify(
    query: &Query,
    status: u16,
    location: Option<&str>,
    body: &[u8],
) -> Result<Answer, BackendError> {
    match status {
        200 => classify_ok(query, body),
        300..=399 => Err(BackendError::Redirect {
            status,
            location: clip(location.unwrap_or_default()),
        }),
        404 => Err(BackendError::NotFound),
        _ => Err(classify_failure(status, body)),
    }
}

fn classify_ok(query: &Query, body: &[u8]) -> Result<Answer, BackendError> {
    let malformed = |what: &str| BackendError::Malformed(what.to_owned());
    let text = std::str::from_utf8(body).map_err(|_| malformed("reply is not UTF-8 text"))?;
    let json: Value =
        serde_json::from_str(text).map_err(|_| BackendError::Malformed(not_json(text)))?;
    let result = json
        .get("result")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("JSON without a \"result\" text"))?;
    match (result, query) {
        ("success", Query::Auth(_)) => Ok(Answer::Authenticated),
        ("success", Query::IsUser) => json
            .pointer("/data/isUser")
            .and_then(is_user_flag)
            .map(Answer::IsUser)
            .ok_or_else(|| malformed("\"data.isUser\" missing or not a yes/no value")),
        ("success", Query::SharedRoster) => match json.pointer("/data/sharedRoster") {
            Some(roster @ Value::Object(_)) => Ok(roster_answer(text, roster)),
            // PHP encodes an empty associative array as `[]`.
            Some(roster @ Value::Array(a)) if a.is_empty() => Ok(roster_answer(text, roster)),
            _ => Err(malformed("\"data.sharedRoster\" missing or not an object")),
        },
        ("noauth", Query::Auth(_)) => Ok(Answer::Rejected),
        ("error", _) => Err(error_reply(200, &json)),
        (other, _) => Err(BackendError::Malformed(format!(
            "result {:?} for operation {}",
            clip(other),
            query.operation()
        ))),
    }
}

fn roster_answer(body: &str, roster: &Value) -> Answer {
    Answer::Roster {
        body: body.to_owned(),
        roster_json: roster.to_string(),
    }
}

/// `isUser` as Nextcloud versions have sent it: `true`/`false`, `"1"`/`"0"`,
/// `1`/`0`.
fn is_user_flag(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.as_str() {
            "1" | "true" => Some(true),
            "0" | "false" => Some(false),
            _ => None,
        },
        Value::Number(n) => match n.as_u64() {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// A non-200, non-3xx, non-404 reply.
fn classify_failure(status: u16, body: &[u8]) -> BackendError {
    let json = serde_json::from_slice::<Value>(body).ok();
    match json {
        Some(json) if json.get("result").and_then(Value::as_str) == Some("error") => {
            error_reply(status, &json)
        }
        _ => {
            let reason = reqwest::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("unexpected status");
            let kind = if body.is_empty() {
                "no body"
            } else if looks_like_html(body) {
                "an HTML page, not the JSON API"
            } else {
                "not a JSON error reply"
            };
            BackendError::Failed {
                status,
                message: format!("{reason}; {kind}"),
            }
        }
    }
}

/// `{"result":"error","data":{"msg":...}}`; Nextcloud answers a bad
/// signature this way.
fn error_reply(status: u16, json: &Value) -> BackendError {
    let msg = json
        .pointer("/data/msg")
        .or_else(|| json.get("msg"))
        .and_then(Value::as_str);
    match msg {
        Some(m) if m.to_ascii_lowercase().contains("signature") => BackendError::SignatureMismatch,
        Some(m) => BackendError::Failed {
            status,
            message: clip(m),
        },
        None => BackendError::Failed {
            status,
            message: "result \"error\" without a message".to_owned(),
        },
    }
}

fn looks_like_html(body: &[u8]) -> bool {
    body.trim_ascii_start().first() == Some(&b'<')
}

/// Describes a 200 reply that is not JSON without quoting it.
fn not_json(text: &str) -> String {
    if looks_like_html(text.as_bytes()) {
        format!(
            "an HTML page ({} bytes), not JSON: the URL may point at a login or error page",
            text.len()
        )
    } else if text.trim().is_empty() {
        "empty reply, not JSON".to_owned()
    } else {
        format!("{} bytes that are not JSON", text.len())
    }
}

/// One line of at most [`MAX_MESSAGE_CHARS`] characters.
fn clip(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(MAX_MESSAGE_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(MAX_MESSAGE_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// Blots out `hidden` values (password, secret) from an error's texts, in
/// case a misconfigured server echoes what it was sent. Values shorter than
/// 4 bytes are left alone: they would match by chance and say nothing.
fn scrub(err: BackendError, hidden: &[&str]) -> BackendError {
    let clean = |text: String| {
        hidden
            .iter()
            .filter(|h| h.len() >= 4)
            .fold(text, |text, h| {
                let encoded: String = form_urlencoded::byte_serialize(h.as_bytes()).collect();
                text.replace(*h, "***").replace(encoded.as_str(), "***")
            })
    };
    match err {
        BackendError::Failed { status, message } => BackendError::Failed {
            status,
            message: clean(message),
        },
        BackendError::Malformed(m) => BackendError::Malformed(clean(m)),
        BackendError::Redirect { status, location } => BackendError::Redirect {
            status,
            location: clean(location),
        },
        BackendError::Tls(m) => BackendError::Tls(clean(m)),
        BackendError::Connect(m) => BackendError::Connect(clean(m)),
        other => other,
    }
}

/// Maps a `reqwest` failure (connect, TLS, timeout, broken reply) to a
/// [`BackendError`]. The texts come from the error chain without the URL;
/// `reqwest` never puts the request body in an error.
fn transport_error(err: reqwest::Error) -> BackendError {
    let err = err.without_url();
    if has_io_kind(&err, io::ErrorKind::ConnectionRefused) {
        return BackendError::ConnectionRefused;
    }
    if err.is_timeout() {
        return BackendError::Timeout;
    }
    let text = describe_chain(&err);
    if err.is_builder() {
        return BackendError::Connect(format!("invalid API URL: {text}"));
    }
    if is_tls(&err, &text) {
        return BackendError::Tls(text);
    }
    BackendError::Connect(text)
}

/// TLS trouble: tokio-rustls reports every rustls failure as an
/// `InvalidData` I/O error while connecting; certificate words catch the
/// rest.
fn is_tls(err: &reqwest::Error, text: &str) -> bool {
    let rustls_io = err.is_connect() && has_io_kind(err, io::ErrorKind::InvalidData);
    let lower = text.to_ascii_lowercase();
    rustls_io
        || ["certificate", "tls", "handshake", "alert"]
            .iter()
            .any(|w| lower.contains(w))
}

/// True when an I/O error of `kind` is among the causes. An I/O error that
/// wraps another hides the inner one from `source()` (it forwards to the
/// inner error's source), so look inside each one as well: rustls failures
/// arrive as `Other(InvalidData(rustls::Error))`.
fn has_io_kind(err: &(dyn StdError + 'static), kind: io::ErrorKind) -> bool {
    chain(err).any(|e| {
        let mut io = e.downcast_ref::<io::Error>();
        while let Some(this) = io {
            if this.kind() == kind {
                return true;
            }
            io = this
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<io::Error>());
        }
        false
    })
}

/// The error and its sources.
fn chain<'a>(
    err: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(err), |&e| e.source())
}

/// The causes of `err` joined with `": "`, without the generic layers that
/// say nothing to an administrator (reqwest's "error sending request",
/// hyper's "client error (Connect)") when something more specific follows,
/// and without repeats (an I/O error shows its inner error's text).
fn describe_chain(err: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    for e in chain(err) {
        let text = e.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
    }
    let specific = parts.len().saturating_sub(1);
    let mut kept: Vec<&str> = parts
        .iter()
        .enumerate()
        .filter(|(i, text)| {
            *i == specific
                || !(*i == 0
                    || text.starts_with("client error (")
                    || text.starts_with("error sending request"))
        })
        .map(|(_, text)| text.as_str())
        .collect();
    kept.dedup();
    clip(&kept.join(": "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(password: &str) -> Query {
        Query::Auth(Secret::new(password))
    }

    fn ok(query: &Query, body: &str) -> Result<Answer, BackendError> {
        classify(query, 200, None, body.as_bytes())
    }

    #[test]
    fn body_fields_in_order_without_password_unless_auth() {
        assert_eq!(
            encode_body(&auth("pw"), "alice", "example.org"),
            "operation=auth&username=alice&domain=example.org&password=pw"
        );
        assert_eq!(
            encode_body(&Query::IsUser, "alice", "example.org"),
            "operation=isuser&username=alice&domain=example.org"
        );
        assert_eq!(
            encode_body(&Query::SharedRoster, "alice", "example.org"),
            "operation=sharedroster&username=alice&domain=example.org"
        );
    }

    #[test]
    fn body_encodes_special_characters_and_round_trips() {
        let (user, domain, password) = ("al ice:&=", "exämple.org", "p+w&=: é€%");
        let body = encode_body(&auth(password), user, domain);
        // Checked against Python's urllib.parse.urlencode.
        assert_eq!(
            body,
            "operation=auth&username=al+ice%3A%26%3D&domain=ex%C3%A4mple.org\
             &password=p%2Bw%26%3D%3A+%C3%A9%E2%82%AC%25"
        );
        let fields: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let expected = [
            ("operation", "auth"),
            ("username", user),
            ("domain", domain),
            ("password", password),
        ];
        assert_eq!(fields.len(), expected.len());
        for ((k, v), (ek, ev)) in fields.iter().zip(expected) {
            assert_eq!((k.as_str(), v.as_str()), (ek, ev));
        }
    }

    #[test]
    fn signature_matches_independent_hmac_sha1() {
        // Values computed with Python's hmac module.
        let body = encode_body(&auth("p+w&=: é€"), "al ice:&=", "exämple.org");
        assert_eq!(
            sign(body.as_bytes(), b"01234"),
            "sha1=97a554f447b287e27419b4f6f7ad9d8f9fdfb6f6"
        );
        let body = encode_body(&Query::IsUser, "alice", "example.org");
        assert_eq!(
            sign(body.as_bytes(), b"geheim"),
            "sha1=cfb58304271ad9c73b49a99c3b4d70597e495c06"
        );
    }

    #[test]
    fn auth_success_and_noauth() {
        let q = auth("pw");
        assert_eq!(
            ok(&q, r#"{"result":"success","data":{"uid":"alice"}}"#),
            Ok(Answer::Authenticated)
        );
        assert_eq!(ok(&q, r#"{"result":"success"}"#), Ok(Answer::Authenticated));
        assert_eq!(ok(&q, r#"{"result":"noauth"}"#), Ok(Answer::Rejected));
    }

    #[test]
    fn noauth_is_only_an_answer_for_auth() {
        assert!(matches!(
            ok(&Query::IsUser, r#"{"result":"noauth"}"#),
            Err(BackendError::Malformed(_))
        ));
        assert!(matches!(
            ok(&Query::SharedRoster, r#"{"result":"noauth"}"#),
            Err(BackendError::Malformed(_))
        ));
    }

    #[test]
    fn noauth_with_another_status_is_an_error() {
        let got = classify(&auth("pw"), 500, None, br#"{"result":"noauth"}"#);
        assert!(matches!(got, Err(BackendError::Failed { status: 500, .. })));
    }

    #[test]
    fn isuser_in_all_its_spellings() {
        for (value, expected) in [
            ("true", true),
            ("false", false),
            ("\"1\"", true),
            ("\"0\"", false),
            ("1", true),
            ("0", false),
        ] {
            let body = format!(r#"{{"result":"success","data":{{"isUser":{value}}}}}"#);
            assert_eq!(
                ok(&Query::IsUser, &body),
                Ok(Answer::IsUser(expected)),
                "{value}"
            );
        }
        for value in ["\"yes\"", "2", "null", "[]"] {
            let body = format!(r#"{{"result":"success","data":{{"isUser":{value}}}}}"#);
            assert!(
                matches!(ok(&Query::IsUser, &body), Err(BackendError::Malformed(_))),
                "{value}"
            );
        }
        assert!(matches!(
            ok(&Query::IsUser, r#"{"result":"success","data":{}}"#),
            Err(BackendError::Malformed(_))
        ));
    }

    #[test]
    fn roster_keeps_the_body_and_compacts_the_roster() {
        let body = "{\"result\": \"success\",\n \"data\": {\"sharedRoster\": \
                    {\"bob\": {\"name\": \"Bob B\", \"groups\": [\"G1\", \"G2\"]}}}}";
        assert_eq!(
            ok(&Query::SharedRoster, body),
            Ok(Answer::Roster {
                body: body.to_owned(),
                roster_json: r#"{"bob":{"groups":["G1","G2"],"name":"Bob B"}}"#.to_owned(),
            })
        );
    }

    #[test]
    fn empty_roster_arrives_as_empty_array() {
        let body = r#"{"result":"success","data":{"sharedRoster":[]}}"#;
        assert_eq!(
            ok(&Query::SharedRoster, body),
            Ok(Answer::Roster {
                body: body.to_owned(),
                roster_json: "[]".to_owned(),
            })
        );
    }

    #[test]
    fn roster_of_wrong_shape_is_malformed() {
        for roster in ["null", "[1]", "\"x\"", "3"] {
            let body = format!(r#"{{"result":"success","data":{{"sharedRoster":{roster}}}}}"#);
            assert!(
                matches!(
                    ok(&Query::SharedRoster, &body),
                    Err(BackendError::Malformed(_))
                ),
                "{roster}"
            );
        }
        assert!(matches!(
            ok(&Query::SharedRoster, r#"{"result":"success"}"#),
            Err(BackendError::Malformed(_))
        ));
    }

    #[test]
    fn ok_status_with_wrong_shape_is_malformed() {
        let q = auth("pw");
        for body in [
            "",
            "<!DOCTYPE html><html>Login</html>",
            "1",
            "\"success\"",
            "{}",
            r#"{"result":true}"#,
            r#"{"result":"maybe"}"#,
            "{\"result\":",
        ] {
            assert!(
                matches!(ok(&q, body), Err(BackendError::Malformed(_))),
                "{body:?}"
            );
        }
        assert!(matches!(
            classify(&q, 200, None, b"\xff\xfe{}"),
            Err(BackendError::Malformed(_))
        ));
    }

    #[test]
    fn html_is_named_but_not_quoted() {
        let Err(BackendError::Malformed(m)) = ok(&Query::IsUser, "<html>secret-ish</html>") else {
            panic!("not malformed");
        };
        assert!(m.contains("HTML"));
        assert!(!m.contains("secret-ish"));
    }

    #[test]
    fn error_result_on_ok_status_is_failed() {
        assert_eq!(
            ok(
                &Query::SharedRoster,
                r#"{"result":"error","data":{"msg":"User not found"}}"#
            ),
            Err(BackendError::Failed {
                status: 200,
                message: "User not found".to_owned()
            })
        );
    }

    #[test]
    fn nextcloud_signature_complaint() {
        for msg in [
            "Signature not valid.",
            "Signature does not match",
            "bad signature",
        ] {
            let body = format!(r#"{{"result":"error","data":{{"msg":"{msg}"}}}}"#);
            assert_eq!(
                classify(&auth("pw"), 500, None, body.as_bytes()),
                Err(BackendError::SignatureMismatch),
                "{msg}"
            );
        }
    }

    #[test]
    fn other_server_errors_keep_a_short_message() {
        assert_eq!(
            classify(
                &Query::IsUser,
                500,
                None,
                br#"{"result":"error","data":{"msg":"Unsupported operation."}}"#
            ),
            Err(BackendError::Failed {
                status: 500,
                message: "Unsupported operation.".to_owned()
            })
        );
        let long = format!(
            r#"{{"result":"error","data":{{"msg":"line1\nline2 {}"}}}}"#,
            "x".repeat(1000)
        );
        let Err(BackendError::Failed { message, .. }) =
            classify(&Query::IsUser, 500, None, long.as_bytes())
        else {
            panic!("not failed");
        };
        assert!(message.chars().count() <= MAX_MESSAGE_CHARS + 1);
        assert!(message.starts_with("line1 line2 x"));
        assert!(message.ends_with('…'));
    }

    #[test]
    fn non_json_error_pages_are_described() {
        let Err(BackendError::Failed { status, message }) =
            classify(&Query::IsUser, 503, None, b"<html>Maintenance</html>")
        else {
            panic!("not failed");
        };
        assert_eq!(status, 503);
        assert!(message.contains("Service Unavailable"), "{message}");
        assert!(message.contains("HTML"), "{message}");
        assert!(!message.contains("Maintenance"));
        assert!(matches!(
            classify(&Query::IsUser, 401, None, b""),
            Err(BackendError::Failed { status: 401, .. })
        ));
        // Another 2xx is not the 200 the API sends.
        assert!(matches!(
            classify(&Query::IsUser, 204, None, b""),
            Err(BackendError::Failed { status: 204, .. })
        ));
    }

    #[test]
    fn not_found_and_redirects() {
        assert_eq!(
            classify(&Query::IsUser, 404, None, b"<html>nope</html>"),
            Err(BackendError::NotFound)
        );
        assert_eq!(
            classify(
                &Query::IsUser,
                302,
                Some("https://cloud.example.org/login"),
                b""
            ),
            Err(BackendError::Redirect {
                status: 302,
                location: "https://cloud.example.org/login".to_owned()
            })
        );
        assert_eq!(
            classify(&Query::IsUser, 301, None, b""),
            Err(BackendError::Redirect {
                status: 301,
                location: String::new()
            })
        );
        // A redirect is an error even when its body looks like success.
        assert!(matches!(
            classify(&auth("pw"), 307, Some("/x"), br#"{"result":"success"}"#),
            Err(BackendError::Redirect { status: 307, .. })
        ));
    }

    #[test]
    fn scrub_hides_echoed_password_and_secret() {
        let password = "p@ss w0rd&";
        let secret = "the-api-secret";
        let echoed = format!(
            r#"{{"result":"error","data":{{"msg":"got password={} raw {} key {}"}}}}"#,
            form_urlencoded::byte_serialize(password.as_bytes()).collect::<String>(),
            password,
            secret
        );
        let err = classify(&auth(password), 500, None, echoed.as_bytes())
            .map_err(|e| scrub(e, &[password, secret]))
            .unwrap_err();
        let shown = err.to_string();
        assert!(!shown.contains(password), "{shown}");
        assert!(!shown.contains("p%40ss"), "{shown}");
        assert!(!shown.contains(secret), "{shown}");
        assert!(shown.contains("***"), "{shown}");
        // Very short values are not blotted out everywhere.
        let err = BackendError::Malformed("a b c".to_owned());
        assert_eq!(
            scrub(err, &["a"]).to_string(),
            "malformed reply: a b c (is the URL the JSXC external API?)"
        );
    }

    #[test]
    fn clip_respects_character_boundaries() {
        let text = "é".repeat(MAX_MESSAGE_CHARS + 5);
        let out = clip(&text);
        assert_eq!(out.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert_eq!(clip("short"), "short");
    }

    #[test]
    fn default_options_are_the_originals() {
        let o = BackendOptions::default();
        assert_eq!(o.connect_timeout, Duration::from_secs(5));
        assert_eq!(o.request_timeout, Duration::from_secs(10));
        assert_eq!(o.ca_file, None);
    }

    #[test]
    fn user_agent_names_the_version() {
        assert_eq!(USER_AGENT, format!("xcauth/{}", env!("CARGO_PKG_VERSION")));
    }
}
