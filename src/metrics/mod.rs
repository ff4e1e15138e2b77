//! Counters and histograms of this process, in one Prometheus registry.
//!
//! Call sites are one line: `crate::metrics::cache_lookup(CacheLookup::Hit)`
//! and the like reach a process-wide [`Metrics`] (built on first use, so
//! tests and one-shot queries need no set-up). Counting is a relaxed
//! atomic add; nothing here blocks or allocates per request beyond the
//! label lookup of a family.
//!
//! - this file: the families, the functions the rest of xcauth calls, the
//!   bcrypt pool's source, the health state and the text encoding;
//! - [`server`]: `--metrics ADDR`, the bounded HTTP listener for
//!   `GET /metrics` and `GET /health`;
//! - [`totals`]: every process's totals in the database (ejabberd's pool
//!   helpers have no port each), summed by `xcauth stats`.
//!
//! The protocol of a request is known to the stream that read it, not to
//! the decision, so each stream runs inside [`connection`] or [`stream`],
//! which set it for the requests answered there (a task-local value).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::backend::{Backend, BackendError, BackendKind, Cause, Roster, Verdict};
use crate::proto::{Protocol, Reply};
use crate::roster::{RosterError, SyncReport};
use crate::secret::Secret;
use crate::verify::AuthOutcome;

pub mod server;
pub mod totals;

/// Upper bounds (seconds) of the back-end latency buckets: a warm
/// keep-alive request on a LAN takes milliseconds, a cold TLS handshake to
/// a busy Nextcloud a second or more, the default total timeout is 10 s.
const BACKEND_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Upper bounds (seconds) of the bcrypt queue wait buckets: a cost-12 hash
/// takes a few hundred milliseconds, so a queue shows in tenths of seconds.
const BCRYPT_WAIT_BUCKETS: [f64; 10] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// Label sets: fixed names and values, so every series is known up front.
type Labels<const N: usize> = [(&'static str, &'static str); N];

/// What a request came to, for `xcauth_requests_total{result}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Yes: logged in, the user exists, the roster was sent.
    Success,
    /// No: wrong password (also refused by the guard), no such user.
    Rejected,
    /// Refused before any decision (bad input, unsupported command).
    Invalid,
    /// The back end could not be asked and nothing stood in for it.
    Unavailable,
}

impl Outcome {
    /// The label value.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Rejected => "rejected",
            Outcome::Invalid => "invalid",
            Outcome::Unavailable => "unavailable",
        }
    }
}

/// What the password cache did for one login that was not a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheLookup {
    /// A fresh entry matched: the back end was not asked.
    Hit,
    /// No fresh entry matched: the back end is asked.
    Miss,
    /// The back end was unreachable and an entry within
    /// `cache-unreachable-ttl` let the user in.
    Stale,
}

impl CacheLookup {
    fn name(self) -> &'static str {
        match self {
            CacheLookup::Hit => "hit",
            CacheLookup::Miss => "miss",
            CacheLookup::Stale => "stale",
        }
    }
}

/// Why the failure guard answered "no" without asking the back end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardRefusal {
    /// The same wrong password within `negative-ttl`.
    KnownWrong,
    /// Too many distinct wrong passwords for the JID.
    JidLimit,
    /// Too many failures from the client address.
    AddressLimit,
}

impl GuardRefusal {
    fn name(self) -> &'static str {
        match self {
            GuardRefusal::KnownWrong => "known_wrong",
            GuardRefusal::JidLimit => "jid_limit",
            GuardRefusal::AddressLimit => "address_limit",
        }
    }
}

/// What the bcrypt pool reports when scraped (see [`set_bcrypt_source`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BcryptStats {
    /// Jobs waiting, by priority name (e.g. `("login", 3)`,
    /// `("write", 12)`).
    pub queued: Vec<(&'static str, u64)>,
    /// Cache writes dropped since start (the queue was full).
    pub dropped_writes: u64,
    /// Checks that bypassed the pool since start.
    pub bypasses: u64,
}

/// Reads the bcrypt pool's current numbers; called at every scrape and
/// every totals write, so it must be quick and must not block.
pub type BcryptSource = Box<dyn Fn() -> BcryptStats + Send + Sync>;

/// The process's families. Get it with [`metrics`].
pub struct Metrics {
    registry: Registry,
    requests: Family<Labels<3>, Counter>,
    backend_latency: Family<Labels<1>, Histogram>,
    backend_errors: Family<Labels<3>, Counter>,
    cache: Family<Labels<1>, Counter>,
    guard: Family<Labels<1>, Counter>,
    open_connections: Family<Labels<1>, Gauge>,
    connections: Family<Labels<1>, Counter>,
    roster_syncs: Family<Labels<1>, Counter>,
    bcrypt_wait: Family<Labels<1>, Histogram>,
    bcrypt_source: Arc<RwLock<Option<BcryptSource>>>,
    /// Sequence numbers of the last back-end answer and the last failure to
    /// get one (0: none yet), for [`healthy`].
    backend_seq: AtomicU64,
    last_answer: AtomicU64,
    last_failure: AtomicU64,
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// The process-wide families, built on first use.
pub fn metrics() -> &'static Metrics {
    METRICS.get_or_init(Metrics::new)
}

fn backend_histogram() -> Histogram {
    Histogram::new(BACKEND_BUCKETS)
}

fn bcrypt_histogram() -> Histogram {
    Histogram::new(BCRYPT_WAIT_BUCKETS)
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("xcauth");
        let requests = Family::default();
        registry.register(
            "requests",
            "Requests answered, by protocol (none: one-shot query), request and result",
            Family::clone(&requests),
        );
        let backend_latency = Family::new_with_constructor(backend_histogram as fn() -> Histogram);
        registry.register(
            "backend_request_duration_seconds",
            "Time to get an answer (or an error) from the back end, by operation",
            backend_latency.clone(),
        );
        let backend_errors = Family::default();
        registry.register(
            "backend_errors",
            "Back-end questions without an answer, by operation, class and cause",
            Family::clone(&backend_errors),
        );
        let cache = Family::default();
        registry.register(
            "cache_lookups",
            "Password cache lookups of logins: hit, miss, stale (used while the back end was unreachable)",
            Family::clone(&cache),
        );
        let guard = Family::default();
        registry.register(
            "guard_refusals",
            "Failure guard refusals, by reason (a password the cache knows still goes to the back end)",
            Family::clone(&guard),
        );
        let open_connections = Family::default();
        registry.register(
            "open_connections",
            "Socket connections being served, by protocol",
            Family::clone(&open_connections),
        );
        let connections = Family::default();
        registry.register(
            "connections",
            "Socket connections accepted, by protocol",
            Family::clone(&connections),
        );
        let roster_syncs = Family::default();
        registry.register(
            "roster_syncs",
            "Shared roster syncs after logins: unchanged, synced, partial (some ejabberdctl calls failed), failed",
            Family::clone(&roster_syncs),
        );
        let bcrypt_wait = Family::new_with_constructor(bcrypt_histogram as fn() -> Histogram);
        registry.register(
            "bcrypt_wait_seconds",
            "Time bcrypt jobs waited in the pool's queue, by priority",
            bcrypt_wait.clone(),
        );
        let bcrypt_source: Arc<RwLock<Option<BcryptSource>>> = Arc::default();
        registry.register_collector(Box::new(BcryptCollector(Arc::clone(&bcrypt_source))));
        Metrics {
            registry,
            requests,
            backend_latency,
            backend_errors,
            cache,
            guard,
            open_connections,
            connections,
            roster_syncs,
            bcrypt_wait,
            bcrypt_source,
            backend_seq: AtomicU64::new(0),
            last_answer: AtomicU64::new(0),
            last_failure: AtomicU64::new(0),
        }
    }

    /// The OpenMetrics text of every family (what `GET /metrics` sends).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an encoder error would be a
        // bug in a family, and an empty answer is then the honest one.
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    fn roster_sync(&self, result: &Result<SyncReport, RosterError>) {
        let name = match result {
            Ok(r) if r.unchanged => "unchanged",
            Ok(r) if r.failures.is_empty() => "synced",
            Ok(_) => "partial",
            Err(_) => "failed",
        };
        self.roster_syncs.get_or_create(&[("result", name)]).inc();
    }

    /// Records one back-end question: its latency, and its error if any.
    /// A question that needs a setting the domain lacks never reached the
    /// back end: it is counted as an error but is neither latency nor ill
    /// health.
    fn backend_done<T>(
        &self,
        operation: &'static str,
        started: Instant,
        result: &Result<T, BackendError>,
    ) {
        let asked = !matches!(result, Err(e) if matches!(e.cause(), Cause::NotConfigured(_)));
        if asked {
            self.backend_latency
                .get_or_create(&[("operation", operation)])
                .observe(started.elapsed().as_secs_f64());
        }
        match result {
            Ok(_) => self.note_backend(true),
            Err(e) => {
                self.backend_errors
                    .get_or_create(&[
                        ("operation", operation),
                        ("class", class_name(e)),
                        ("cause", cause_name(e.cause())),
                    ])
                    .inc();
                // A refused question was still an answer.
                if asked {
                    self.note_backend(!e.falls_back_to_cache());
                }
            }
        }
    }

    /// See [`healthy`].
    fn healthy(&self) -> bool {
        self.last_failure.load(Ordering::Relaxed) <= self.last_answer.load(Ordering::Relaxed)
    }

    fn note_backend(&self, answered: bool) {
        let seq = self.backend_seq.fetch_add(1, Ordering::Relaxed) + 1;
        let slot = if answered {
            &self.last_answer
        } else {
            &self.last_failure
        };
        slot.fetch_max(seq, Ordering::Relaxed);
    }
}

/// Feeds the bcrypt pool's numbers into the metrics (and `xcauth stats`):
/// `source` is called at every scrape. Call it once when the pool starts;
/// a later call replaces the source.
pub fn set_bcrypt_source(source: BcryptSource) {
    let m = metrics();
    let mut slot = m
        .bcrypt_source
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    *slot = Some(source);
}

/// Records how long a bcrypt job of `priority` waited in the pool's queue.
pub fn bcrypt_wait(priority: &'static str, waited: Duration) {
    metrics()
        .bcrypt_wait
        .get_or_create(&[("priority", priority)])
        .observe(waited.as_secs_f64());
}

/// The bcrypt pool's gauges and totals, read from its source when scraped.
struct BcryptCollector(Arc<RwLock<Option<BcryptSource>>>);

impl std::fmt::Debug for BcryptCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BcryptCollector")
    }
}

impl Collector for BcryptCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = {
            let source = self
                .0
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            match source.as_ref() {
                Some(source) => source(),
                None => return Ok(()),
            }
        };
        let depth = ConstGauge::new(0i64);
        let mut family = encoder.encode_descriptor(
            "bcrypt_queue_depth",
            "bcrypt jobs waiting in the pool's queue, by priority",
            None,
            depth.metric_type(),
        )?;
        for (priority, queued) in &stats.queued {
            let gauge = ConstGauge::new(i64::try_from(*queued).unwrap_or(i64::MAX));
            gauge.encode(family.encode_family(&[("priority", *priority)])?)?;
        }
        for (name, help, value) in [
            (
                "bcrypt_dropped_writes",
                "Cache writes the bcrypt pool dropped (queue full)",
                stats.dropped_writes,
            ),
            (
                "bcrypt_bypasses",
                "bcrypt checks that bypassed the pool",
                stats.bypasses,
            ),
        ] {
            let counter = ConstCounter::new(value);
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        Ok(())
    }
}

/// What a serving process starts for its metrics: the `--metrics`
/// listener (a failure to bind it is logged and serving goes on: a busy
/// port must not take logins down, e.g. when every helper of an ejabberd
/// pool reads the same config file) and, with a database, the
/// [`totals::Recorder`]. Keep the result until the end: dropping it
/// writes the totals a last time. Call inside the runtime.
pub fn start(
    config: &crate::config::Config,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Option<totals::Recorder> {
    if !matches!(config.mode, crate::config::Mode::Serve(_)) {
        return None;
    }
    if let Some(address) = &config.metrics {
        let served = server::bind(address, &config.sockets)
            .and_then(|listener| server::spawn(listener, shutdown.clone()));
        if let Err(e) = served {
            tracing::error!("{e}; serving without metrics");
        }
    }
    totals::Recorder::start(&config.db, config.stats_interval)
}

tokio::task_local! {
    static PROTOCOL: Protocol;
}

/// The protocol label of requests answered in this task.
fn protocol() -> &'static str {
    PROTOCOL.try_with(|p| p.name()).unwrap_or("none")
}

/// Runs `serving`, one socket connection of `protocol`: counted as open
/// while it runs, its requests counted under `protocol`.
pub async fn connection<F: Future>(protocol: Protocol, serving: F) -> F::Output {
    let m = metrics();
    let labels = [("protocol", protocol.name())];
    m.connections.get_or_create(&labels).inc();
    let open = m.open_connections.get_or_create(&labels).clone();
    open.inc();
    struct Closed(Gauge);
    impl Drop for Closed {
        fn drop(&mut self) {
            self.0.dec();
        }
    }
    let _closed = Closed(open);
    PROTOCOL.scope(protocol, serving).await
}

/// Runs `serving`, a stream of `protocol` that is not a socket connection
/// (standard input): its requests are counted under `protocol`.
pub async fn stream<F: Future>(protocol: Protocol, serving: F) -> F::Output {
    PROTOCOL.scope(protocol, serving).await
}

fn request(request: &'static str, outcome: Outcome) {
    metrics()
        .requests
        .get_or_create(&[
            ("protocol", protocol()),
            ("request", request),
            ("result", outcome.name()),
        ])
        .inc();
}

/// Counts an `auth` by how it was decided.
pub fn auth_outcome(outcome: &AuthOutcome) {
    let result = match outcome {
        AuthOutcome::Token
        | AuthOutcome::Cache
        | AuthOutcome::Backend
        | AuthOutcome::CacheWhileUnreachable(_) => Outcome::Success,
        AuthOutcome::Rejected | AuthOutcome::Guarded => Outcome::Rejected,
        AuthOutcome::Unreachable(_) | AuthOutcome::NoBackend => Outcome::Unavailable,
    };
    request("auth", result);
}

/// Counts an `isuser` by its reply, and returns the reply.
pub fn isuser(reply: Reply) -> Reply {
    let result = match reply {
        Reply::Yes | Reply::KnownWhileUnreachable => Outcome::Success,
        Reply::No => Outcome::Rejected,
        Reply::TryLater => Outcome::Unavailable,
        Reply::Invalid(_) => Outcome::Invalid,
        Reply::Roster(_) => Outcome::Success,
    };
    request("isuser", result);
    reply
}

/// Counts a `roster` request (`None`: the back end gave no roster), and
/// returns its answer.
pub fn roster(answer: Option<String>) -> Option<String> {
    let result = match answer {
        Some(_) => Outcome::Success,
        None => Outcome::Unavailable,
    };
    request("roster", result);
    answer
}

/// Counts a request refused before any decision.
pub fn invalid() {
    request("invalid", Outcome::Invalid);
}

/// Counts what the password cache did for a login.
pub fn cache_lookup(lookup: CacheLookup) {
    metrics()
        .cache
        .get_or_create(&[("result", lookup.name())])
        .inc();
}

/// Counts a refusal of the failure guard.
pub fn guard_refusal(reason: GuardRefusal) {
    metrics()
        .guard
        .get_or_create(&[("reason", reason.name())])
        .inc();
}

/// Counts a shared roster sync by its result.
pub fn roster_sync(result: &Result<SyncReport, RosterError>) {
    metrics().roster_sync(result);
}

/// The label of a cause: which of [`Cause`]'s variants, without its text.
fn cause_name(cause: &Cause) -> &'static str {
    match cause {
        Cause::ConnectionRefused => "connection_refused",
        Cause::Timeout => "timeout",
        Cause::Tls(_) => "tls",
        Cause::Connect(_) => "connect",
        Cause::NotFound(_) => "not_found",
        Cause::Redirect { .. } => "redirect",
        Cause::SignatureMismatch => "signature_mismatch",
        Cause::NotConfigured(_) => "not_configured",
        Cause::ApiAccount { .. } => "api_account",
        Cause::TooManyRequests => "too_many_requests",
        Cause::Failed { .. } => "failed",
        Cause::Malformed(_) => "malformed",
    }
}

fn class_name(error: &BackendError) -> &'static str {
    match error {
        BackendError::Rejected(_) => "rejected",
        BackendError::Unavailable(_) => "unavailable",
        BackendError::Throttled(_) => "throttled",
        BackendError::Misconfigured(_) => "misconfigured",
    }
}

/// True unless the latest back-end question of this process went
/// unanswered (unreachable, throttled, misconfigured) and none was answered
/// since. A process that has not asked yet is healthy.
pub fn healthy() -> bool {
    metrics().healthy()
}

/// `backend` with every question timed and every error counted.
pub fn measured(backend: Arc<dyn Backend>) -> Arc<dyn Backend> {
    Arc::new(Measured(backend, metrics()))
}

struct Measured(Arc<dyn Backend>, &'static Metrics);

#[async_trait]
impl Backend for Measured {
    fn kind(&self) -> BackendKind {
        self.0.kind()
    }

    async fn auth(&self, user: &str, password: &Secret) -> Result<Verdict, BackendError> {
        let started = Instant::now();
        let result = self.0.auth(user, password).await;
        self.1.backend_done("auth", started, &result);
        result
    }

    async fn is_user(&self, user: &str) -> Result<bool, BackendError> {
        let started = Instant::now();
        let result = self.0.is_user(user).await;
        self.1.backend_done("isuser", started, &result);
        result
    }

    async fn roster(&self, user: &str) -> Result<Roster, BackendError> {
        let started = Instant::now();
        let result = self.0.roster(user).await;
        self.1.backend_done("roster", started, &result);
        result
    }

    fn waits_for_roster(&self) -> bool {
        self.0.waits_for_roster()
    }

    fn rejection_hint(&self) -> Option<&'static str> {
        self.0.rejection_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::fake::{Reply as Answer, Scripted};

    /// The value of the series `name` (with its labels, as encoded) in the
    /// process-wide registry's text; 0 when absent.
    pub(crate) fn value(name: &str) -> f64 {
        value_in(metrics(), name)
    }

    fn value_in(m: &Metrics, name: &str) -> f64 {
        totals::parse(&m.encode())
            .series
            .get(name)
            .copied()
            .unwrap_or(0.0)
    }

    /// Families of its own, for a test that other tests running at the
    /// same time must not disturb.
    fn private() -> &'static Metrics {
        Box::leak(Box::new(Metrics::new()))
    }

    #[tokio::test]
    async fn requests_are_counted_under_the_protocol_of_their_stream() {
        let key =
            "xcauth_requests_total{protocol=\"postfix\",request=\"isuser\",result=\"unavailable\"}";
        let before = value(key);
        stream(Protocol::Postfix, async { isuser(Reply::TryLater) }).await;
        stream(Protocol::Postfix, async { isuser(Reply::TryLater) }).await;
        assert_eq!(value(key) - before, 2.0);
        // No other test serves postfix streams.
        let invalid_key =
            "xcauth_requests_total{protocol=\"postfix\",request=\"invalid\",result=\"invalid\"}";
        let before = value(invalid_key);
        stream(Protocol::Postfix, async { invalid() }).await;
        assert_eq!(value(invalid_key) - before, 1.0);
    }

    #[tokio::test]
    async fn connections_are_open_while_served() {
        let open = "xcauth_open_connections{protocol=\"saslauthd\"}";
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (started_tx, started) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(connection(Protocol::Saslauthd, async move {
            let _ = started_tx.send(());
            let _ = rx.await;
        }));
        started.await.expect("the connection started");
        let during = totals::parse(&metrics().encode());
        tx.send(()).expect("send");
        serving.await.expect("task");
        assert!(during.series.get(open).copied().unwrap_or(0.0) >= 1.0);
        // Other tests may hold saslauthd connections of their own: the
        // gauge went down by ours.
        let after = value(open);
        assert!(after < during.series[open], "{after}");
    }

    #[tokio::test]
    async fn back_end_errors_are_counted_by_cause_and_latency_observed() {
        let m = private();
        let backend = Measured(
            Arc::new(Scripted::new(vec![
                Err(BackendError::Throttled(Cause::TooManyRequests)),
                Ok(Answer::IsUser(true)),
                Err(BackendError::Unavailable(Cause::Timeout)),
                Err(BackendError::Misconfigured(Cause::NotConfigured(
                    "api-user",
                ))),
            ])),
            m,
        );
        let err = "xcauth_backend_errors_total{operation=\"isuser\",class=\"throttled\",cause=\"too_many_requests\"}";
        let count = "xcauth_backend_request_duration_seconds_count{operation=\"isuser\"}";
        assert!(m.healthy(), "nothing asked yet");
        assert!(backend.is_user("a").await.is_err());
        assert!(!m.healthy(), "throttled");
        assert!(backend.is_user("a").await.is_ok());
        assert!(m.healthy(), "answered since");
        assert_eq!(value_in(m, err), 1.0);
        assert_eq!(value_in(m, count), 2.0);
        assert!(backend.is_user("a").await.is_err());
        assert!(!m.healthy(), "timeout");
        // Never sent: an error, but no latency and no change of health.
        assert!(backend.is_user("a").await.is_err());
        assert!(!m.healthy());
        let not_configured = "xcauth_backend_errors_total{operation=\"isuser\",class=\"misconfigured\",cause=\"not_configured\"}";
        assert_eq!(value_in(m, not_configured), 1.0);
        assert_eq!(value_in(m, count), 3.0);
    }

    #[test]
    fn roster_syncs_are_counted_by_result() {
        let key = |r: &str| format!("xcauth_roster_syncs_total{{result=\"{r}\"}}");
        let m = private();
        let unchanged = SyncReport {
            unchanged: true,
            ..SyncReport::default()
        };
        let partial = SyncReport {
            failures: vec![crate::roster::CallFailure {
                args: vec!["srg_create".into()],
                error: crate::roster::CtlError::Failed {
                    status: Some(1),
                    output: String::new(),
                },
            }],
            ..SyncReport::default()
        };
        m.roster_sync(&Ok(unchanged));
        m.roster_sync(&Ok(SyncReport::default()));
        m.roster_sync(&Ok(partial));
        m.roster_sync(&Err(RosterError::Aborted));
        for r in ["unchanged", "synced", "partial", "failed"] {
            assert_eq!(value_in(m, &key(r)), 1.0, "{r}");
        }
    }

    #[test]
    fn the_bcrypt_source_is_read_when_encoded() {
        let m = private();
        assert!(!m.encode().contains("bcrypt_queue_depth"), "no source yet");
        let source: BcryptSource = Box::new(|| BcryptStats {
            queued: vec![("login", 2), ("write", 5)],
            dropped_writes: 7,
            bypasses: 1,
        });
        *m.bcrypt_source.write().unwrap() = Some(source);
        let text = m.encode();
        assert!(
            text.contains("# TYPE xcauth_bcrypt_queue_depth gauge"),
            "{text}"
        );
        let parsed = totals::parse(&text);
        assert_eq!(
            parsed.series["xcauth_bcrypt_queue_depth{priority=\"write\"}"],
            5.0
        );
        assert_eq!(parsed.series["xcauth_bcrypt_dropped_writes_total"], 7.0);
        assert_eq!(parsed.series["xcauth_bcrypt_bypasses_total"], 1.0);
        bcrypt_wait("login", Duration::from_millis(30));
        assert!(value("xcauth_bcrypt_wait_seconds_count{priority=\"login\"}") >= 1.0);
    }
}
