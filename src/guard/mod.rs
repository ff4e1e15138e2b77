//! The failure guard: xcauth stands between password guessers and
//! Nextcloud, whose own throttling sees every xcauth user as one address.
//!
//! What is counted, and where:
//! - every login that is about to ask the back end is **reserved** against
//!   the limits first, in one atomic step (a database transaction, or one
//!   lock in memory), so a hundred guesses sent at once count as a hundred:
//!   attempts in flight count like failures until the answer settles them
//!   (a rejection turns the reservation into a failure, anything else
//!   drops it; one never settled stops counting after
//!   [`count::RESERVATION_HOLD`]);
//! - the key is the **account**, not the spelling: Nextcloud matches user
//!   ids without regard to case and takes e-mail logins, so `Erin`,
//!   `ERIN@example.org` and `erin` are one count ([`account`]);
//! - failures are keyed digests of account and password (never the
//!   password), per account and, where a client address counts, per
//!   address;
//! - the state lives in the database file when there is one, so the pool
//!   of helpers ejabberd starts shares it, and always also in this
//!   process's memory: when the database cannot be read or written (locked,
//!   full, read-only, damaged) or does not answer within [`SHARED_WAIT`],
//!   the memory decides alone and keeps counting. What was counted only
//!   in memory during such a time keeps counting beside the database's
//!   verdict once it answers again, until its window passes.
//!
//! What follows:
//! - **negative cache**: the same wrong password for the same account
//!   within `negative-ttl` is answered "no" without asking Nextcloud;
//! - **per-account limit**: after `guard-jid-failures` distinct wrong
//!   passwords (and attempts in flight) within `guard-jid-window`, unknown
//!   passwords for that account are refused without asking until the
//!   window has passed. A password this process has verified before (the
//!   memo) still works, and the cached entry is still checked now and then
//!   ([`BLOCKED_CHECK_EVERY`]), so guessing cannot lock out a cached user
//!   and cannot buy bcrypt time either;
//! - **per-address limit**: the same with `guard-address-failures` and
//!   `guard-address-window`, except for addresses on `guard-allowlist`.
//!
//! Each refusal is logged once per window, as
//! `guard: refused address ADDRESS for JID: REASON` (fail2ban's filter in
//! `packaging/fail2ban/` matches it). Every knob is 0 to disable it.

pub mod address;
pub mod count;
pub mod memory;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{info, warn};

pub use address::{client_ip, Network};
pub use count::{assess, blocked_until, distinct_times, Assessment, Attempt, Mark};
pub use memory::{MemoryGuard, MAX_FAILURES_PER_KEY, MAX_MEMORY_KEYS};

use crate::secret::Secret;
use crate::store::StoreError;
use crate::sync::lock;

/// Settings; a count or span of 0 switches its rule off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardSettings {
    /// How long a rejected password is answered from memory, seconds.
    pub negative_ttl: i64,
    /// Distinct wrong passwords per JID that close it for new guesses.
    pub jid_failures: u32,
    /// The window those are counted in, seconds.
    pub jid_window: i64,
    /// Distinct failed logins per client address that close it.
    pub address_failures: u32,
    /// The window those are counted in, seconds.
    pub address_window: i64,
    /// Addresses never limited (e.g. a webmail on this host).
    pub allowlist: Vec<Network>,
}

impl Default for GuardSettings {
    /// Chosen so that a person never notices: a phone retrying an old
    /// password costs Nextcloud one request per 10 minutes; ten different
    /// wrong passwords in a quarter of an hour are guessing; a NAT with
    /// many users needs thirty.
    fn default() -> Self {
        GuardSettings {
            negative_ttl: 600,
            jid_failures: 10,
            jid_window: 900,
            address_failures: 30,
            address_window: 900,
            allowlist: Vec::new(),
        }
    }
}

/// How long one question to the shared state may take before the memory
/// decides alone; past the database's own lock wait it would stall logins.
pub const SHARED_WAIT: Duration = Duration::from_secs(2);
/// After the shared state failed or did not answer, how long the memory
/// decides alone before the database is tried again.
pub const SHARED_RETRY: Duration = Duration::from_secs(5);
/// Questions to the shared state at once; more wait, within
/// [`SHARED_WAIT`], so a stalled database holds at most this many threads.
pub const SHARED_SLOTS: usize = 8;
/// While an account is blocked, its cached entry is checked with bcrypt at
/// most once per this many seconds per process (a password the memo knows
/// needs no check), so guesses cannot buy CPU time.
pub const BLOCKED_CHECK_EVERY: i64 = 30;
/// Accounts whose last blocked check is remembered at most.
const BLOCKED_CHECKS_KEPT: usize = 10_000;

/// One failed login as stored: digest of account and password, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Hex of the keyed digest.
    pub digest: String,
    /// Seconds since the epoch.
    pub at: i64,
}

/// Which counter a mark belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Per account.
    Jid,
    /// Per client address.
    Address,
}

impl Scope {
    /// The name stored and shown.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Jid => "jid",
            Scope::Address => "address",
        }
    }
}

/// Where the guard keeps state that processes share. Each call is one
/// atomic step; an error means "could not say" and the memory decides.
pub trait GuardStore: Send + Sync {
    /// Weighs `attempt` and, when the answer is [`Assessment::Ask`],
    /// reserves it under each of its keys in the same step; returns the
    /// reservations made.
    fn reserve(
        &self,
        settings: &GuardSettings,
        attempt: &Attempt,
    ) -> Result<(Assessment, Vec<i64>), StoreError>;
    /// Ends reservations: a failure at `now` when `failed`, gone otherwise.
    fn settle(&self, tickets: &[i64], failed: bool, now: i64) -> Result<(), StoreError>;
    /// Marks that a refusal of `key` was logged for the window ending
    /// `until`; true if it was not marked yet (log it now).
    fn notice(&self, scope: Scope, key: &str, until: i64) -> Result<bool, StoreError>;
    /// Drops failures older than `before` and reservations no longer held
    /// at `now`.
    fn expire(&self, before: i64, now: i64) -> Result<(), StoreError>;
}

/// The account a login names, as the guard, the negative cache and the
/// coalescing of identical logins count it: Nextcloud matches user ids
/// without regard to case and takes an e-mail login for its account, so
/// the user is lower-cased and a trailing `@DOMAIN` of the login's own
/// domain dropped (`ERIN@Example.org` at `example.org` is `erin`).
pub fn account(user: &str, domain: &str) -> String {
    let user = user.to_lowercase();
    let domain = domain.trim_end_matches('.').to_lowercase();
    let local = match user.rsplit_once('@') {
        Some((local, at)) if at.trim_end_matches('.') == domain && !local.is_empty() => local,
        _ => user.as_str(),
    };
    format!("{local}@{domain}")
}

/// What the guard says about one login before the cache's bcrypt check and
/// the back end.
#[derive(Debug)]
pub enum Verdict {
    /// Go on; settle the ticket with the answer.
    Ask(Ticket),
    /// This very password was rejected for this account within the
    /// negative TTL: answer no.
    KnownWrong,
    /// Too many failures: answer no without asking.
    Refused {
        /// Why, for the log.
        reason: String,
        /// True for the first refusal of this window (log it then).
        first_in_window: bool,
    },
}

/// A reserved attempt; [`Guard::settle`] ends it.
#[derive(Debug, Default)]
pub struct Ticket {
    local: Vec<i64>,
    offline: Vec<i64>,
    shared: Vec<i64>,
}

/// The shared state and whether it is usable.
struct Shared {
    store: Arc<dyn GuardStore>,
    /// Until when the memory decides alone.
    down_until: Mutex<Option<Instant>>,
    slots: Arc<tokio::sync::Semaphore>,
}

/// The guard: settings, a digest key, this process's memory and, where
/// processes share a database, that state too.
pub struct Guard {
    settings: GuardSettings,
    key: Secret,
    /// Everything this process counted: decides alone without a database,
    /// or while it cannot be used.
    local: MemoryGuard,
    /// What this process counted while the database could not be used,
    /// which the database never saw: it keeps counting beside the
    /// database's verdict until its window passes.
    offline: MemoryGuard,
    shared: Option<Shared>,
    blocked_checks: Mutex<HashMap<String, i64>>,
}

impl Guard {
    /// A guard keeping its state in memory and, with `shared`, in that
    /// store as well; digests are keyed with `key` (which must be the same
    /// for every process sharing the store, and is never stored with it).
    pub fn new(settings: GuardSettings, key: Secret, shared: Option<Arc<dyn GuardStore>>) -> Guard {
        Guard {
            local: MemoryGuard::new(settings.clone()),
            offline: MemoryGuard::new(settings.clone()),
            settings,
            key,
            shared: shared.map(|store| Shared {
                store,
                down_until: Mutex::new(None),
                slots: Arc::new(tokio::sync::Semaphore::new(SHARED_SLOTS)),
            }),
            blocked_checks: Mutex::new(HashMap::new()),
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &GuardSettings {
        &self.settings
    }

    /// Hex of the first 16 bytes of HMAC-SHA256(key, account NUL password).
    pub fn digest(&self, account: &str, password: &Secret) -> String {
        let parts = [account.as_bytes(), password.expose().as_bytes()];
        let digest = crate::secret::keyed_digest(self.key.expose().as_bytes(), &parts);
        hex::encode(&digest[..16])
    }

    fn counted_address(&self, address: Option<IpAddr>) -> Option<String> {
        let ip = address?;
        let listed = self.settings.allowlist.iter().any(|n| n.contains(ip));
        (!listed).then(|| ip.to_string())
    }

    /// Before the cache's bcrypt check and the back end: weighs the login
    /// of `account` (see [`account`]) with `password` from `address` at
    /// `now`, and reserves it when it may go on.
    pub async fn reserve(
        &self,
        account: &str,
        password: &Secret,
        address: Option<IpAddr>,
        now: i64,
    ) -> Verdict {
        let attempt = Attempt {
            digest: self.digest(account, password),
            account: account.to_owned(),
            address: self.counted_address(address),
            now,
        };
        let (local, local_tickets) = self
            .local
            .reserve(&self.settings, &attempt)
            .unwrap_or((Assessment::Ask, Vec::new()));
        let shared = {
            let (settings, attempt) = (self.settings.clone(), attempt.clone());
            self.shared(move |s| s.reserve(&settings, &attempt)).await
        };
        let mut ticket = Ticket {
            local: local_tickets,
            ..Ticket::default()
        };
        let verdict = match shared {
            // The database decides, with what was counted while it could
            // not be used; what this process counted besides stays out, so
            // `xcauth guard clear` lifts a block at once.
            Some((verdict, tickets)) => {
                ticket.shared = tickets;
                verdict.stricter(self.offline.peek(&self.settings, &attempt))
            }
            None if self.shared.is_some() => {
                let (_, tickets) = self
                    .offline
                    .reserve(&self.settings, &attempt)
                    .unwrap_or((Assessment::Ask, Vec::new()));
                ticket.offline = tickets;
                local
            }
            None => local,
        };
        if verdict == Assessment::Ask {
            return Verdict::Ask(ticket);
        }
        self.settle(ticket, false, now).await;
        match verdict {
            Assessment::Limited { scope, until } => self.refused(&attempt, scope, until).await,
            _ => {
                crate::metrics::guard_refusal(crate::metrics::GuardRefusal::KnownWrong);
                Verdict::KnownWrong
            }
        }
    }

    async fn refused(&self, attempt: &Attempt, scope: Scope, until: i64) -> Verdict {
        let s = &self.settings;
        let (key, what, limit, window, metric) = match scope {
            Scope::Jid => (
                attempt.account.clone(),
                "wrong passwords",
                s.jid_failures,
                s.jid_window,
                crate::metrics::GuardRefusal::JidLimit,
            ),
            Scope::Address => (
                attempt.address.clone().unwrap_or_default(),
                "failed logins from this address",
                s.address_failures,
                s.address_window,
                crate::metrics::GuardRefusal::AddressLimit,
            ),
        };
        crate::metrics::guard_refusal(metric);
        let first_in_window = match self.shared_notice(scope, &key, until).await {
            Some(first) => first,
            None => self.local.notice(scope, &key, until).unwrap_or(true),
        };
        Verdict::Refused {
            reason: format!(
                "{limit} {what} within {window}s (until {})",
                crate::store::format_timestamp(until)
            ),
            first_in_window,
        }
    }

    async fn shared_notice(&self, scope: Scope, key: &str, until: i64) -> Option<bool> {
        let key = key.to_owned();
        self.shared(move |s| s.notice(scope, &key, until)).await
    }

    /// Ends a reservation with the answer: `failed` when the back end
    /// rejected the password (or, in an outage, the cache could not verify
    /// it against the account's entry).
    pub async fn settle(&self, ticket: Ticket, failed: bool, now: i64) {
        let _ = self.local.settle(&ticket.local, failed, now);
        let _ = self.offline.settle(&ticket.offline, failed, now);
        if !ticket.shared.is_empty() {
            let tickets = ticket.shared;
            self.shared(move |s| s.settle(&tickets, failed, now)).await;
        }
        if failed {
            let keep = self
                .settings
                .negative_ttl
                .max(self.settings.jid_window)
                .max(self.settings.address_window);
            let _ = self.local.expire(now - keep, now);
            let _ = self.offline.expire(now - keep, now);
            self.shared(move |s| s.expire(now - keep, now)).await;
        }
    }

    /// While `account` is blocked: may its cached entry be checked with
    /// bcrypt now? At most once per [`BLOCKED_CHECK_EVERY`] per account.
    pub fn allow_blocked_check(&self, account: &str, now: i64) -> bool {
        let mut checks = lock(&self.blocked_checks);
        if checks.len() >= BLOCKED_CHECKS_KEPT {
            checks.retain(|_, at| *at > now - BLOCKED_CHECK_EVERY);
            if checks.len() >= BLOCKED_CHECKS_KEPT {
                return false;
            }
        }
        match checks.get(account) {
            Some(at) if *at > now - BLOCKED_CHECK_EVERY => false,
            _ => {
                checks.insert(account.to_owned(), now);
                true
            }
        }
    }

    /// Runs `op` on the shared state, within [`SHARED_WAIT`]; `None` when
    /// there is none, it failed, or it is being left alone after a failure.
    async fn shared<T, F>(&self, op: F) -> Option<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn GuardStore) -> Result<T, StoreError> + Send + 'static,
    {
        let shared = self.shared.as_ref()?;
        {
            let down = lock(&shared.down_until);
            // Past `until` the database is tried again; the mark stays
            // until it answers, so the outage is logged once.
            if down.is_some_and(|until| Instant::now() < until) {
                return None;
            }
        }
        let store = Arc::clone(&shared.store);
        let slots = Arc::clone(&shared.slots);
        let work = async move {
            let permit = slots.acquire_owned().await.ok()?;
            let blocking = tokio::task::spawn_blocking(move || {
                let out = op(store.as_ref());
                drop(permit);
                out
            });
            blocking.await.ok()
        };
        let failure = match tokio::time::timeout(SHARED_WAIT, work).await {
            Ok(Some(Ok(value))) => {
                shared.recovered();
                return Some(value);
            }
            Ok(Some(Err(e))) => e.to_string(),
            Ok(None) => "its task failed".to_owned(),
            Err(_) => format!("no answer within {}s", SHARED_WAIT.as_secs()),
        };
        shared.failed(&failure);
        None
    }
}

impl Shared {
    fn failed(&self, why: &str) {
        let mut down = lock(&self.down_until);
        if down.is_none() {
            warn!("guard: the database cannot be used ({why}); counting in this process's memory until it can");
        }
        *down = Some(Instant::now() + SHARED_RETRY);
    }

    fn recovered(&self) {
        let mut down = lock(&self.down_until);
        if down.take().is_some() {
            info!("guard: the database is usable again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    fn guard(settings: GuardSettings, shared: Option<Arc<dyn GuardStore>>) -> Guard {
        Guard::new(settings, Secret::new("k"), shared)
    }

    fn pw(text: &str) -> Secret {
        Secret::new(text)
    }

    fn asked(v: &Verdict) -> bool {
        matches!(v, Verdict::Ask(_))
    }

    /// A shared store that fails (or stalls) while told to, counting calls.
    struct Flaky {
        inner: MemoryGuard,
        failing: AtomicBool,
        stall: AtomicBool,
        calls: AtomicUsize,
    }

    impl Flaky {
        fn new() -> Arc<Flaky> {
            Arc::new(Flaky {
                inner: MemoryGuard::new(GuardSettings::default()),
                failing: AtomicBool::new(false),
                stall: AtomicBool::new(false),
                calls: AtomicUsize::new(0),
            })
        }
        fn gate(&self) -> Result<(), StoreError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.stall.load(Ordering::SeqCst) {
                std::thread::sleep(SHARED_WAIT + Duration::from_millis(500));
            }
            if self.failing.load(Ordering::SeqCst) {
                return Err(StoreError::Io("disk full".into()));
            }
            Ok(())
        }
    }

    impl GuardStore for Flaky {
        fn reserve(
            &self,
            settings: &GuardSettings,
            attempt: &Attempt,
        ) -> Result<(Assessment, Vec<i64>), StoreError> {
            self.gate()?;
            self.inner.reserve(settings, attempt)
        }
        fn settle(&self, tickets: &[i64], failed: bool, now: i64) -> Result<(), StoreError> {
            self.gate()?;
            self.inner.settle(tickets, failed, now)
        }
        fn notice(&self, scope: Scope, key: &str, until: i64) -> Result<bool, StoreError> {
            self.gate()?;
            self.inner.notice(scope, key, until)
        }
        fn expire(&self, before: i64, now: i64) -> Result<(), StoreError> {
            self.gate()?;
            self.inner.expire(before, now)
        }
    }

    #[test]
    fn one_account_whatever_its_spelling() {
        let a = account("erin", "example.org");
        for (user, domain) in [
            ("Erin", "example.org"),
            ("ERIN", "EXAMPLE.ORG"),
            ("erin@example.org", "example.org"),
            ("Erin@Example.Org", "example.org."),
        ] {
            assert_eq!(account(user, domain), a, "{user} {domain}");
        }
        assert_ne!(account("erin@other.org", "example.org"), a);
        assert_ne!(account("erin", "other.org"), a);
        assert_eq!(
            account("@example.org", "example.org"),
            "@example.org@example.org"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hundred_guesses_at_once_reach_the_back_end_ten_times() {
        for shared in [None, Some(Flaky::new() as Arc<dyn GuardStore>)] {
            let g = Arc::new(guard(GuardSettings::default(), shared));
            let mut tasks = Vec::new();
            for i in 0..100 {
                let g = Arc::clone(&g);
                tasks.push(tokio::spawn(async move {
                    g.reserve("a@d", &pw(&format!("guess{i}")), None, 100).await
                }));
            }
            let mut tickets = Vec::new();
            for t in tasks {
                if let Verdict::Ask(ticket) = t.await.unwrap() {
                    tickets.push(ticket);
                }
            }
            // Ten, or fewer on a machine so loaded that a question to the
            // shared store timed out and its reservation landed later
            // (it then holds a place until RESERVATION_HOLD): never more.
            assert!((1..=10).contains(&tickets.len()), "{}", tickets.len());
            for t in tickets {
                g.settle(t, true, 101).await;
            }
            assert!(!asked(&g.reserve("a@d", &pw("another"), None, 102).await));
        }
    }

    #[tokio::test]
    async fn an_accepted_or_unanswered_attempt_frees_its_place() {
        let g = guard(
            GuardSettings {
                jid_failures: 2,
                ..GuardSettings::default()
            },
            None,
        );
        for i in 0..5 {
            let Verdict::Ask(t) = g.reserve("a@d", &pw(&format!("p{i}")), None, 10).await else {
                panic!("refused {i}");
            };
            g.settle(t, false, 10).await;
        }
        let Verdict::Ask(t) = g.reserve("a@d", &pw("w"), None, 10).await else {
            panic!("refused");
        };
        g.settle(t, true, 10).await;
        assert!(matches!(
            g.reserve("a@d", &pw("w"), None, 11).await,
            Verdict::KnownWrong
        ));
    }

    #[tokio::test]
    async fn a_failing_database_leaves_the_memory_counting() {
        let flaky = Flaky::new();
        let g = guard(
            GuardSettings::default(),
            Some(flaky.clone() as Arc<dyn GuardStore>),
        );
        // Three failures while the database works; then it fails.
        for i in 0..3 {
            let Verdict::Ask(t) = g.reserve("a@d", &pw(&format!("g{i}")), None, 100).await else {
                panic!("refused");
            };
            g.settle(t, true, 100).await;
        }
        flaky.failing.store(true, Ordering::SeqCst);
        let mut asked_now = 0;
        for i in 3..50 {
            if let Verdict::Ask(t) = g.reserve("a@d", &pw(&format!("g{i}")), None, 100).await {
                asked_now += 1;
                g.settle(t, true, 100).await;
            }
        }
        assert_eq!(asked_now, 7, "the memory holds the limit of ten");
        // The database was tried once, then left alone for SHARED_RETRY.
        assert!(flaky.calls.load(Ordering::SeqCst) <= 3 * 2 + 3 + 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stalled_database_costs_one_wait_then_none() {
        let flaky = Flaky::new();
        flaky.stall.store(true, Ordering::SeqCst);
        let g = guard(
            GuardSettings::default(),
            Some(flaky.clone() as Arc<dyn GuardStore>),
        );
        let started = Instant::now();
        let first = g.reserve("a@d", &pw("x"), None, 100).await;
        assert!(asked(&first));
        assert!(started.elapsed() >= SHARED_WAIT);
        let started = Instant::now();
        let mut asked_now = 0;
        for i in 0..40 {
            if asked(&g.reserve("a@d", &pw(&format!("g{i}")), None, 100).await) {
                asked_now += 1;
            }
        }
        // No further wait, and the limit held: ten in flight at most.
        assert!(started.elapsed() < SHARED_WAIT);
        assert_eq!(asked_now, 9);
    }

    #[test]
    fn a_flood_of_keys_never_lifts_a_block() {
        let settings = GuardSettings {
            jid_failures: 3,
            ..GuardSettings::default()
        };
        let memory = MemoryGuard::with_capacity(settings.clone(), 64);
        for i in 0..3 {
            memory.record(Scope::Jid, "victim@d", &format!("g{i}"), 10);
        }
        for i in 0..10_000 {
            memory.record(Scope::Jid, &format!("u{i}@d"), "x", 20);
        }
        assert!(memory.keys() <= 64);
        let probe = Attempt {
            digest: "new".into(),
            account: "victim@d".into(),
            address: None,
            now: 30,
        };
        assert!(matches!(
            memory.reserve(&settings, &probe).unwrap().0,
            Assessment::Limited { .. }
        ));
    }

    #[tokio::test]
    async fn addresses_are_limited_unless_allowlisted() {
        let g = guard(
            GuardSettings {
                address_failures: 3,
                allowlist: vec![Network::parse("127.0.0.0/8").unwrap()],
                ..GuardSettings::default()
            },
            None,
        );
        let far = client_ip("192.0.2.7;40000");
        let near = client_ip("127.0.0.1");
        for i in 0..3 {
            for (n, addr) in [far, near].into_iter().enumerate() {
                let guess = pw(&format!("x{n}"));
                let Verdict::Ask(t) = g.reserve(&format!("u{i}@d"), &guess, addr, 10).await else {
                    panic!("refused");
                };
                g.settle(t, true, 10).await;
            }
        }
        assert!(matches!(
            g.reserve("new@d", &pw("y"), far, 11).await,
            Verdict::Refused { .. }
        ));
        assert!(asked(&g.reserve("new@d", &pw("y"), near, 11).await));
        assert!(asked(&g.reserve("new2@d", &pw("y"), None, 11).await));
    }

    #[test]
    fn blocked_checks_come_once_per_interval() {
        let g = guard(GuardSettings::default(), None);
        assert!(g.allow_blocked_check("a@d", 100));
        assert!(!g.allow_blocked_check("a@d", 100 + BLOCKED_CHECK_EVERY - 1));
        assert!(g.allow_blocked_check("b@d", 101));
        assert!(g.allow_blocked_check("a@d", 100 + BLOCKED_CHECK_EVERY));
    }

    #[test]
    fn digests_are_keyed_and_never_the_password() {
        let a = guard(GuardSettings::default(), None);
        let b = Guard::new(GuardSettings::default(), Secret::new("other"), None);
        let d = a.digest("a@d", &pw("hunter2"));
        assert_eq!(d.len(), 32);
        assert!(!d.contains("hunter2"));
        assert_ne!(d, b.digest("a@d", &pw("hunter2")));
        assert_ne!(a.digest("a@d", &pw("x")), a.digest("a@dx", &pw("")));
    }
}
