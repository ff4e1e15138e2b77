//! The HTTP client all back-end kinds share: one pool of kept-alive
//! connections, a process-wide limit on requests in flight, a limit on reply
//! size, and TLS with the system's roots plus the administrator's CA file.

use std::error::Error as StdError;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::LOCATION;
use tokio::sync::{OnceCell, Semaphore};

use super::Cause;

/// Settings for [`HttpClient::new`].
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

/// Why [`HttpClient::new`] could not set up the client; fatal at start-up.
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
}

/// Sent as `User-Agent`, so Nextcloud's access log names the caller.
pub const USER_AGENT: &str = concat!("xcauth/", env!("CARGO_PKG_VERSION"));

/// Largest reply body read; a shared roster of a big organisation stays far
/// below, a misconfigured URL serving a download does not.
pub const MAX_REPLY_BYTES: usize = 16 * 1024 * 1024;

/// Reply body bytes held at once over all replies being read, per process
/// (two whole replies of [`MAX_REPLY_BYTES`]). A reply that would pass it is
/// dropped as malformed (the cache may answer instead): a hostile or broken
/// server answering every one of [`MAX_CONCURRENT_REQUESTS`] requests with
/// a huge body cannot make us hold a gigabyte.
pub const MAX_BODY_BYTES_IN_FLIGHT: usize = 2 * MAX_REPLY_BYTES;

/// Back-end requests in flight at once per process. Nextcloud answers with
/// a pool of PHP workers, so more parallel requests only queue there, while
/// each costs us a connection and its buffers; a pipelining stream could
/// otherwise open hundreds. 64 connections at 20 ms still allow 3 200
/// requests/s.
pub const MAX_CONCURRENT_REQUESTS: usize = 64;

/// Idle keep-alive connections kept per host between bursts.
const IDLE_CONNECTIONS: usize = 16;

/// Longest server message kept in an error (one log line).
pub const MAX_MESSAGE_CHARS: usize = 200;

/// A reply as the back-end kinds classify it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpReply {
    /// The status code.
    pub status: u16,
    /// The `Location` header, if any.
    pub location: Option<String>,
    /// The whole body (at most [`MAX_REPLY_BYTES`]).
    pub body: Vec<u8>,
}

/// The shared client: one `reqwest` client (one pool of kept-alive
/// connections) for all requests of all domains and kinds.
///
/// Proxies: like the original (Python `requests`), the client honours
/// `HTTP_PROXY`/`HTTPS_PROXY`/`ALL_PROXY`/`NO_PROXY` from the environment.
/// Redirects are never followed: a redirect means a wrong URL, and a
/// request must not be replayed elsewhere. Cookies are never stored or sent
/// back (a returned Nextcloud session cookie would skip the password check).
#[derive(Debug)]
pub struct HttpClient {
    /// Built on first use, on the blocking pool: loading the system's CA
    /// certificates is most of a cold start (and blocks), and token-only
    /// helpers never need it.
    client: OnceCell<Result<reqwest::Client, String>>,
    options: BackendOptions,
    extra_roots: Vec<reqwest::Certificate>,
    /// Requests to Nextcloud at once, over all streams (see
    /// [`MAX_CONCURRENT_REQUESTS`], `backend-concurrency`).
    in_flight: Semaphore,
    /// Body bytes held by the replies being read, over all requests (see
    /// [`MAX_BODY_BYTES_IN_FLIGHT`]).
    body_bytes: Semaphore,
}

impl HttpClient {
    /// Checks the options (a bad `ca_file` is an error now, not at the first
    /// login); the client itself is built on first use with timeouts, no
    /// redirects, the system roots plus every certificate in `ca_file`.
    pub fn new(options: &BackendOptions) -> Result<Arc<Self>, BackendBuildError> {
        Self::with_max_requests(options, MAX_CONCURRENT_REQUESTS)
    }

    /// [`HttpClient::new`] with at most `max_requests` (at least 1) requests
    /// in flight at once instead of [`MAX_CONCURRENT_REQUESTS`]
    /// (`backend-concurrency`).
    pub fn with_max_requests(
        options: &BackendOptions,
        max_requests: usize,
    ) -> Result<Arc<Self>, BackendBuildError> {
        let extra_roots = match &options.ca_file {
            Some(path) => read_ca_file(path)?,
            None => Vec::new(),
        };
        Ok(Arc::new(HttpClient {
            client: OnceCell::new(),
            options: options.clone(),
            extra_roots,
            in_flight: Semaphore::new(max_requests.max(1)),
            body_bytes: Semaphore::new(MAX_BODY_BYTES_IN_FLIGHT),
        }))
    }

    /// The options it was made with.
    pub fn options(&self) -> &BackendOptions {
        &self.options
    }

    async fn client(&self) -> Result<&reqwest::Client, Cause> {
        let built = self
            .client
            .get_or_init(|| async {
                let options = self.options.clone();
                let roots = self.extra_roots.clone();
                tokio::task::spawn_blocking(move || build_client(&options, roots))
                    .await
                    .unwrap_or_else(|_| Err("the set-up task stopped".to_owned()))
            })
            .await;
        built
            .as_ref()
            .map_err(|e| Cause::Connect(format!("cannot set up the HTTP client: {e}")))
    }

    /// Reads a reply's body, holding its buffer's bytes in [`Self::body_bytes`].
    async fn read_body(&self, response: &mut reqwest::Response) -> Result<Vec<u8>, Cause> {
        let mut body = Vec::new();
        let mut held = None::<tokio::sync::SemaphorePermit<'_>>;
        let mut counted = 0;
        while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
            if body.len() + chunk.len() > MAX_REPLY_BYTES {
                return Err(Cause::Malformed(format!(
                    "reply longer than {} MiB",
                    MAX_REPLY_BYTES / (1024 * 1024)
                )));
            }
            body.reserve(chunk.len());
            // What the buffer holds now, and the chunk until it is copied.
            let wanted = (body.capacity() + chunk.len()).saturating_sub(counted);
            if wanted == 0 {
                body.extend_from_slice(&chunk);
                continue;
            }
            let more = u32::try_from(wanted)
                .ok()
                .and_then(|n| self.body_bytes.try_acquire_many(n).ok())
                .ok_or_else(|| {
                    Cause::Malformed(format!(
                        "replies being read hold over {} MiB: this one is dropped",
                        MAX_BODY_BYTES_IN_FLIGHT / (1024 * 1024)
                    ))
                })?;
            counted += wanted;
            match held.as_mut() {
                Some(permit) => permit.merge(more),
                None => held = Some(more),
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Sends the request `make` builds and reads the whole reply. Waiting
    /// for a slot counts against the request's time.
    pub async fn send(
        &self,
        make: impl FnOnce(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<HttpReply, Cause> {
        let _slot = tokio::time::timeout(self.options.request_timeout, self.in_flight.acquire())
            .await
            .map_err(|_| Cause::Timeout)?
            .map_err(|_| Cause::Connect("shutting down".into()))?;
        let client = self.client().await?;
        let mut response = make(client).send().await.map_err(transport_error)?;
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get(LOCATION)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let body = self.read_body(&mut response).await?;
        Ok(HttpReply {
            status,
            location,
            body,
        })
    }
}

fn build_client(
    options: &BackendOptions,
    roots: Vec<reqwest::Certificate>,
) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(options.connect_timeout)
        .timeout(options.request_timeout)
        .pool_max_idle_per_host(IDLE_CONNECTIONS);
    for cert in roots {
        builder = builder.add_root_certificate(cert);
    }
    builder.build().map_err(|e| describe_chain(&e))
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

/// One line of at most [`MAX_MESSAGE_CHARS`] characters, control
/// characters blanked.
pub fn clip(text: &str) -> String {
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

/// True when `body` starts like an HTML page.
pub fn looks_like_html(body: &[u8]) -> bool {
    body.trim_ascii_start().first() == Some(&b'<')
}

/// The canonical reason phrase of `status`, or a fallback.
pub fn reason(status: u16) -> &'static str {
    reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("unexpected status")
}

/// Blots out `hidden` values (password, secret) from a cause's texts, in
/// case a misconfigured server echoes what it was sent: every occurrence,
/// raw or form-encoded, however short the value. A text that [`clip`] cut
/// may end in the first part of a value: that part is blotted out too.
pub fn scrub(cause: Cause, hidden: &[&str]) -> Cause {
    let clean = |text: String| scrub_text(text, hidden);
    match cause {
        Cause::Failed { status, message } => Cause::Failed {
            status,
            message: clean(message),
        },
        Cause::Malformed(m) => Cause::Malformed(clean(m)),
        Cause::Redirect { status, location } => Cause::Redirect {
            status,
            location: clean(location),
        },
        Cause::Tls(m) => Cause::Tls(clean(m)),
        Cause::Connect(m) => Cause::Connect(clean(m)),
        other => other,
    }
}

/// [`scrub`] for one text.
fn scrub_text(text: String, hidden: &[&str]) -> String {
    let (mut text, cut) = match text.strip_suffix('…') {
        Some(kept) => (kept.to_owned(), true),
        None => (text, false),
    };
    for value in hidden.iter().filter(|h| !h.is_empty()) {
        let encoded: String = form_urlencoded::byte_serialize(value.as_bytes()).collect();
        text = text.replace(*value, "***").replace(encoded.as_str(), "***");
        if cut {
            for form in [*value, encoded.as_str()] {
                blot_cut_start(&mut text, form);
            }
        }
    }
    if cut {
        text.push('…');
    }
    text
}

/// Replaces the longest start of `value` that `text` ends with.
fn blot_cut_start(text: &mut String, value: &str) {
    let longest = value
        .char_indices()
        .map(|(i, c)| i + c.len_utf8())
        .rev()
        .find(|&end| text.ends_with(&value[..end]));
    if let Some(end) = longest {
        text.truncate(text.len() - end);
        text.push_str("***");
    }
}

/// Maps a `reqwest` failure (connect, TLS, timeout, broken reply) to a
/// [`Cause`]. The texts come from the error chain without the URL;
/// `reqwest` never puts the request body in an error.
fn transport_error(err: reqwest::Error) -> Cause {
    let err = err.without_url();
    if has_io_kind(&err, io::ErrorKind::ConnectionRefused) {
        return Cause::ConnectionRefused;
    }
    if err.is_timeout() {
        return Cause::Timeout;
    }
    let text = describe_chain(&err);
    if err.is_builder() {
        return Cause::Connect(format!("invalid API URL: {text}"));
    }
    if is_tls(&err, &text) {
        return Cause::Tls(text);
    }
    Cause::Connect(text)
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

    #[test]
    fn scrub_hides_echoed_values_of_any_length() {
        let cause = Cause::Failed {
            status: 500,
            message: "got p%40ss+w0rd%26 raw p@ss w0rd& key the-api-secret".into(),
        };
        let shown = scrub(cause, &["p@ss w0rd&", "the-api-secret"]).to_string();
        assert!(!shown.contains("p@ss"), "{shown}");
        assert!(!shown.contains("p%40ss"), "{shown}");
        assert!(!shown.contains("the-api-secret"), "{shown}");
        assert!(shown.contains("***"), "{shown}");
        // A three-character password is still a password.
        let cause = Cause::Malformed("echo: pw1 end".to_owned());
        assert_eq!(
            scrub(cause, &["pw1"]).to_string(),
            "malformed reply: echo: *** end"
        );
    }

    /// A 250-character password echoed by a server: the message is cut at
    /// MAX_MESSAGE_CHARS before it is scrubbed, and no part of it stays.
    #[test]
    fn scrub_hides_the_start_of_a_value_cut_off_by_clip() {
        let password: String = ('a'..='z').cycle().take(250).collect();
        let echoed = clip(&format!("invalid password {password} for alice"));
        assert!(echoed.ends_with('…'));
        let shown = scrub(Cause::Malformed(echoed), &[&password]).to_string();
        assert!(!shown.contains("abcdef"), "{shown}");
        assert!(shown.ends_with("invalid password ***…"), "{shown}");
    }

    #[test]
    fn clip_respects_character_boundaries() {
        let text = "é".repeat(MAX_MESSAGE_CHARS + 5);
        let out = clip(&text);
        assert_eq!(out.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert_eq!(clip("short"), "short");
        assert_eq!(clip("a\nb"), "a b");
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
