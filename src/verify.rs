//! The decision: one place that answers `auth`, `isuser` and `roster` for
//! every protocol (SPEC §6). Token first, then the back end. No sockets
//! here; the back end and the clock are passed in.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use tracing::{debug, error, info, warn};

use tokio_util::task::TaskTracker;

use crate::backend::{Backend, BackendError, Cause, Roster, Verdict};
use crate::cache::{Cache, Found};
use crate::clock::Clock;
use crate::guard::{self, Guard, Ticket, Verdict as GuardVerdict};
use crate::metrics::{self, CacheLookup};
use crate::proto::{Reply, Request};
use crate::roster::{self, RosterSync};
use crate::secret::Secret;
use crate::sync::lock;
use crate::token::TokenCheck;

pub use crate::domains::{DomainSettings, Domains, GlobalOnly};

/// How an `auth` was decided; drives the log line and the roster update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// A valid JSXC token.
    Token,
    /// A fresh cache entry matched (back end not asked).
    Cache,
    /// The back end said yes.
    Backend,
    /// The back end was unreachable; a cache entry within the unreachable
    /// TTL matched.
    CacheWhileUnreachable(BackendError),
    /// The back end said no (or refused the question).
    Rejected,
    /// The failure guard refused without asking the back end (the same
    /// wrong password again, or too many failures).
    Guarded,
    /// The back end could not be asked and nothing else allowed the login.
    Unreachable(BackendError),
    /// No URL or secret is configured for the domain.
    NoBackend,
}

impl AuthOutcome {
    /// True for the outcomes that let the user in.
    pub fn is_success(&self) -> bool {
        matches!(
            self,
            AuthOutcome::Token
                | AuthOutcome::Cache
                | AuthOutcome::Backend
                | AuthOutcome::CacheWhileUnreachable(_)
        )
    }
}

/// Answers requests; shared by every stream of a process.
pub struct Verifier {
    clock: Arc<dyn Clock>,
    domains: Arc<dyn Domains>,
    cache: Option<Arc<Cache>>,
    roster: Option<Arc<RosterSync>>,
    guard: Option<Arc<Guard>>,
    /// Logins being decided, by keyed digest of JID and password.
    flights: Mutex<HashMap<[u8; 32], Arc<OnceCell<AuthOutcome>>>>,
    /// Logins the back end accepted while their cache write is pending.
    recent: Mutex<HashMap<[u8; 32], i64>>,
    /// When each back end (by address) last failed to answer a login; a
    /// back end that did so within [`OUTAGE_HOLD`] counts as down, and a
    /// saturated bcrypt pool is then waited for rather than bypassed.
    unreachable_at: Mutex<HashMap<usize, i64>>,
    /// Each back end's answer time for logins (moving average, seconds):
    /// a saturated bcrypt pool is bypassed only while it is the slower path.
    latency: Mutex<HashMap<usize, f64>>,
    /// Bypasses of the saturated pool in flight, at most [`MAX_BYPASSES`].
    bypasses: Arc<tokio::sync::Semaphore>,
    /// Key of the digests above (random per process, never stored).
    digest_key: [u8; 32],
    /// Cache writes and roster syncs that outlive the request.
    background: TaskTracker,
}

impl Verifier {
    /// A verifier asking each domain's back end from `domains`, with "now"
    /// from `clock`, without cache or roster sync.
    pub fn new(clock: Arc<dyn Clock>, domains: Arc<dyn Domains>) -> Self {
        Verifier {
            clock,
            domains,
            cache: None,
            roster: None,
            guard: None,
            flights: Mutex::new(HashMap::new()),
            recent: Mutex::new(HashMap::new()),
            unreachable_at: Mutex::new(HashMap::new()),
            latency: Mutex::new(HashMap::new()),
            bypasses: Arc::new(tokio::sync::Semaphore::new(MAX_BYPASSES)),
            digest_key: random_key(),
            background: TaskTracker::new(),
        }
    }

    /// Adds the password cache.
    pub fn with_cache(mut self, cache: Arc<Cache>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// The password cache, if any (its bcrypt pool's statistics are for
    /// monitoring).
    pub fn cache(&self) -> Option<&Arc<Cache>> {
        self.cache.as_ref()
    }

    /// Adds the failure guard.
    pub fn with_guard(mut self, guard: Arc<Guard>) -> Self {
        self.guard = Some(guard);
        self
    }

    /// Adds the ejabberd shared roster sync after successful logins.
    pub fn with_roster_sync(mut self, roster: Arc<RosterSync>) -> Self {
        self.roster = Some(roster);
        self
    }

    /// Waits until cache writes and roster syncs started so far are done
    /// (before exit, and in tests).
    pub async fn settle(&self) {
        self.background.close();
        self.background.wait().await;
        self.background.reopen();
    }

    /// Answers one decoded request. `Quit` and `Invalid` never reach the
    /// back end.
    pub async fn handle(self: Arc<Self>, request: Request) -> Reply {
        match request.canonical() {
            Request::Auth {
                user,
                domain,
                password,
                service,
                client,
            } => {
                if let Some(service) = service {
                    debug!(
                        "auth {user}@{domain} for service \"{}\"",
                        crate::logging::Escaped(&service)
                    );
                }
                let client = client.as_deref();
                match self.auth_from(&user, &domain, &password, client).await {
                    outcome if outcome.is_success() => Reply::Yes,
                    // Nobody could say: a protocol that can tell a
                    // temporary failure from a wrong password says so.
                    AuthOutcome::Unreachable(_) => Reply::TryLater,
                    _ => Reply::No,
                }
            }
            Request::IsUser { user, domain } => metrics::isuser(self.isuser(&user, &domain).await),
            Request::Roster { user, domain } => match self.roster(&user, &domain).await {
                Some(json) => Reply::Roster(json),
                None => Reply::No,
            },
            Request::Invalid { reason } => {
                metrics::invalid();
                info!("refused request: {}", crate::logging::Escaped(&reason));
                Reply::Invalid(reason)
            }
            Request::Quit => Reply::No,
        }
    }

    /// Is `password` right for `user@domain`? Token, cache, back end
    /// (SPEC §6); after a success the shared roster is brought up to date.
    pub async fn auth(&self, user: &str, domain: &str, password: &Secret) -> AuthOutcome {
        self.auth_from(user, domain, password, None).await
    }

    /// [`auth`](Self::auth) for a client at `client` (an address as the
    /// protocol gave it), which the failure guard counts per address.
    pub async fn auth_from(
        &self,
        user: &str,
        domain: &str,
        password: &Secret,
        client: Option<&str>,
    ) -> AuthOutcome {
        let outcome = self.decide_auth(user, domain, password, client).await;
        metrics::auth_outcome(&outcome);
        if outcome.is_success() {
            self.after_login(user, domain).await;
        }
        outcome
    }

    async fn decide_auth(
        &self,
        user: &str,
        domain: &str,
        password: &Secret,
        client: Option<&str>,
    ) -> AuthOutcome {
        let now = self.clock.now();
        let Some(settings) = self.domains.lookup(domain) else {
            warn!("auth {user}@{domain}: no API URL configured for this domain");
            return AuthOutcome::NoBackend;
        };
        let token = match &settings.token_key {
            Some(key) => key.check(user, domain, password.expose(), now),
            None => TokenCheck::NotAToken,
        };
        match token {
            TokenCheck::Valid => {
                debug!("auth {user}@{domain}: valid token");
                return AuthOutcome::Token;
            }
            TokenCheck::Expired => debug!("auth {user}@{domain}: expired token"),
            TokenCheck::BadMac => {
                warn!(
                    "auth {user}@{domain}: token with a bad signature (forged, or another secret?)"
                )
            }
            TokenCheck::NotAToken => {}
        }

        let jid = format!("{user}@{domain}");
        // Identical logins at once (same account, same password) share one
        // decision: one back-end request, at most one bcrypt run.
        let account = guard::account(user, domain);
        let key = self.flight_key(&account, password);
        let flight = {
            let mut flights = lock(&self.flights);
            Arc::clone(flights.entry(key).or_default())
        };
        let login = Login {
            user,
            jid: &jid,
            account: &account,
            password,
            address: client.and_then(guard::client_ip),
            now,
        };
        let outcome = flight
            .get_or_init(|| self.decide_password(&login, &settings))
            .await
            .clone();
        let mut flights = lock(&self.flights);
        if flights.get(&key).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
            flights.remove(&key);
        }
        outcome
    }

    /// The password path of SPEC §6 for a login that is not a token: what
    /// this process knows for free (the memo), then the guard, and only
    /// then bcrypt and the back end, so guesses buy neither CPU nor
    /// back-end requests.
    async fn decide_password(&self, login: &Login<'_>, settings: &DomainSettings) -> AuthOutcome {
        let (jid, password, now) = (login.jid, login.password, login.now);
        if self.recently_verified(jid, password, now) {
            debug!("auth {jid}: verified by the back end moments ago");
            metrics::cache_lookup(CacheLookup::Hit);
            return AuthOutcome::Cache;
        }
        let cache = self.cache.as_ref().filter(|_| Cache::cacheable(password));
        let mut cached = match cache {
            Some(cache) => Some(cache.credentials(jid).await),
            None => None,
        };
        if let (Some(cache), Some(creds)) = (cache, cached.as_mut()) {
            if let Some(entry) = cache.find_in_memo(jid, creds, password, |e| cache.fresh(e, now)) {
                debug!("auth {jid}: cache hit (memo)");
                metrics::cache_lookup(CacheLookup::Hit);
                cache.touch(jid, &entry, now).await;
                return AuthOutcome::Cache;
            }
        }
        let ticket = match &self.guard {
            Some(guard) => match guard
                .reserve(login.account, password, login.address, now)
                .await
            {
                GuardVerdict::Ask(ticket) => Some(ticket),
                refusal => {
                    log_refusal(jid, login.address, &refusal);
                    if !self
                        .known_despite_block(guard, login, cache, cached.as_mut())
                        .await
                    {
                        return AuthOutcome::Guarded;
                    }
                    None
                }
            },
            None => None,
        };
        let mut bypass = None;
        if let (Some(cache), Some(creds)) = (cache, cached.as_mut()) {
            match self.check_cache(cache, settings, login, creds).await {
                CacheStep::Hit => {
                    self.settle_ticket(ticket, false, now).await;
                    return AuthOutcome::Cache;
                }
                CacheStep::Ask(permit) => bypass = permit,
            }
        }
        let answer = self.ask_backend(settings, login).await;
        drop(bypass);
        let (outcome, failed) = self
            .after_answer(answer, settings, login, cache, cached)
            .await;
        self.settle_ticket(ticket, failed, now).await;
        outcome
    }

    /// Ends the guard's reservation of a login, if it made one.
    /// A failure is recorded before the answer goes out, so that an
    /// immediate retry of the same password is already known; any other
    /// end only frees the place, which may follow the answer (with a
    /// database, each is a write transaction: about a millisecond that
    /// the login need not wait for).
    async fn settle_ticket(&self, ticket: Option<Ticket>, failed: bool, now: i64) {
        let (Some(guard), Some(ticket)) = (&self.guard, ticket) else {
            return;
        };
        if failed {
            guard.settle(ticket, true, now).await;
        } else {
            let guard = Arc::clone(guard);
            self.in_background(async move { guard.settle(ticket, false, now).await });
        }
    }

    /// A login the guard refused may still be one the cache knows as good
    /// (guessing must not lock out the real user): then the back end
    /// decides it as usual. Without the memo's word this costs bcrypt, so
    /// a blocked account's entry is checked only now and then.
    async fn known_despite_block(
        &self,
        guard: &Guard,
        login: &Login<'_>,
        cache: Option<&Arc<Cache>>,
        cached: Option<&mut crate::cache::Credentials>,
    ) -> bool {
        let (Some(cache), Some(creds)) = (cache, cached) else {
            return false;
        };
        if creds.is_empty() {
            return false;
        }
        if cache
            .find_in_memo(login.jid, creds, login.password, |_| true)
            .is_some()
        {
            return true;
        }
        if !guard.allow_blocked_check(login.account, login.now) {
            debug!(
                "auth {}: blocked; its cache entry was checked moments ago",
                login.jid
            );
            return false;
        }
        cache
            .find(login.jid, creds, login.password, |_| true)
            .await
            .is_some()
    }

    /// bcrypt against the cached credentials. While the pool is saturated
    /// and asking the back end is the faster path (its measured latency is
    /// below the pool's wait) a login may skip the check, at most
    /// [`MAX_BYPASSES`] at once (see [`Verifier::bypass_permit`]): it then
    /// holds the permit until answered.
    async fn check_cache(
        &self,
        cache: &Arc<Cache>,
        settings: &DomainSettings,
        login: &Login<'_>,
        creds: &mut crate::cache::Credentials,
    ) -> CacheStep {
        let (jid, password, now) = (login.jid, login.password, login.now);
        if creds.is_empty() {
            metrics::cache_lookup(CacheLookup::Miss);
            return CacheStep::Ask(None);
        }
        let fresh = |e: &crate::cache::Entry| cache.fresh(e, now);
        let mut found = if self.backend_down(&settings.backend, now) {
            Found::Miss
        } else {
            cache
                .find_unless_saturated(jid, creds, password, fresh)
                .await
        };
        let mut permit = None;
        if found == Found::Saturated {
            match self.bypass_permit(&settings.backend, cache).await {
                Some(p) => {
                    cache.pool().note_bypass();
                    debug!("auth {jid}: bcrypt pool saturated; asking the back end instead");
                    permit = Some(p);
                }
                None => found = Found::Miss,
            }
        }
        if found == Found::Miss {
            if let Some(entry) = cache.find(jid, creds, password, fresh).await {
                found = Found::Hit(entry);
            }
        }
        match found {
            Found::Hit(entry) => {
                debug!("auth {jid}: cache hit");
                metrics::cache_lookup(CacheLookup::Hit);
                cache.touch(jid, &entry, now).await;
                CacheStep::Hit
            }
            _ => {
                metrics::cache_lookup(CacheLookup::Miss);
                CacheStep::Ask(permit)
            }
        }
    }

    /// A bypass of the saturated pool, when the back end answers faster
    /// than the pool would. At most [`MAX_BYPASSES`] are out at once; when
    /// all are, the login waits for one as long as the pool's wait, then
    /// takes its turn in the pool after all.
    async fn bypass_permit(
        &self,
        backend: &Arc<dyn Backend>,
        cache: &Cache,
    ) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let latency = lock(&self.latency)
            .get(&backend_id(backend))
            .copied()
            .unwrap_or(0.0);
        let wait = cache.pool().estimated_wait();
        if wait.as_secs_f64() <= latency {
            return None;
        }
        if let Ok(permit) = Arc::clone(&self.bypasses).try_acquire_owned() {
            return Some(permit);
        }
        let queued = Arc::clone(&self.bypasses).acquire_owned();
        tokio::time::timeout(wait, queued).await.ok()?.ok()
    }

    /// Asks the back end, measuring how long it takes to answer.
    async fn ask_backend(
        &self,
        settings: &DomainSettings,
        login: &Login<'_>,
    ) -> Result<Verdict, BackendError> {
        let started = std::time::Instant::now();
        let answer = settings.backend.auth(login.user, login.password).await;
        self.note_reachability(&settings.backend, &answer, login.now);
        if answer.is_ok() {
            let took = started.elapsed().as_secs_f64();
            let mut latency = lock(&self.latency);
            if latency.len() < MAX_BACKENDS_TRACKED {
                let ewma = latency.entry(backend_id(&settings.backend)).or_insert(took);
                *ewma = 0.8 * *ewma + 0.2 * took;
            }
        }
        answer
    }

    /// What the back end's answer means, and whether it counts as a failed
    /// guess for the guard: a rejection does, and so does a password that
    /// the cache cannot verify for an account it holds while the back end
    /// is unreachable (in an outage the cache is the only judge).
    async fn after_answer(
        &self,
        answer: Result<Verdict, BackendError>,
        settings: &DomainSettings,
        login: &Login<'_>,
        cache: Option<&Arc<Cache>>,
        cached: Option<crate::cache::Credentials>,
    ) -> (AuthOutcome, bool) {
        let (jid, password, now) = (login.jid, login.password, login.now);
        match answer {
            Ok(Verdict::Accepted) => {
                debug!("auth {jid}: accepted by back end");
                if let (Some(cache), Some(creds)) = (cache, cached) {
                    // The cache write (a bcrypt hash) follows the answer;
                    // until it lands, this process knows the login anyway,
                    // so the client's next request does not ask again.
                    self.note_verified(jid, password, now);
                    self.in_background({
                        let (cache, jid, password) =
                            (Arc::clone(cache), jid.to_owned(), password.clone());
                        async move { cache.remember_with(&jid, &password, now, creds).await }
                    });
                }
                (AuthOutcome::Backend, false)
            }
            Ok(Verdict::Rejected) => {
                match settings.backend.rejection_hint() {
                    Some(hint) => {
                        info!("auth {jid}: wrong password (refused by the back end; {hint})")
                    }
                    None => info!("auth {jid}: wrong password (refused by the back end)"),
                }
                if let (Some(cache), Some(creds)) = (cache, cached) {
                    if !creds.is_empty() {
                        // A password the back end rejects must not keep
                        // working from the cache during a later outage; the
                        // other devices' credentials stay.
                        self.in_background({
                            let (cache, jid, password) =
                                (Arc::clone(cache), jid.to_owned(), password.clone());
                            async move {
                                let gone = cache.forget_password(&jid, creds, &password, now).await;
                                if gone > 0 {
                                    info!(
                                        "auth {jid}: cached password no longer valid; credential removed"
                                    );
                                }
                            }
                        });
                    }
                }
                (AuthOutcome::Rejected, true)
            }
            Err(error) if !error.falls_back_to_cache() => {
                info!("auth {jid}: failed, the back end refused the question: {error}");
                (AuthOutcome::Rejected, false)
            }
            Err(error) => {
                let mut held = false;
                if let (Some(cache), Some(mut creds)) = (cache, cached) {
                    held = !creds.is_empty();
                    let usable = |e: &crate::cache::Entry| cache.usable_while_unreachable(e, now);
                    if let Some(entry) = cache.find(jid, &mut creds, password, usable).await {
                        warn!("auth {jid}: back end unreachable ({error}); accepted from cache");
                        metrics::cache_lookup(CacheLookup::Stale);
                        cache.touch(jid, &entry, now).await;
                        return (AuthOutcome::CacheWhileUnreachable(error), false);
                    }
                }
                log_backend_error(&format!("auth {jid}: failed"), &error);
                (AuthOutcome::Unreachable(error), held)
            }
        }
    }

    /// Keyed digest of JID and password (never the password itself).
    fn flight_key(&self, jid: &str, password: &Secret) -> [u8; 32] {
        crate::secret::keyed_digest(
            &self.digest_key,
            &[jid.as_bytes(), password.expose().as_bytes()],
        )
    }

    /// True when `backend` failed to answer a login within [`OUTAGE_HOLD`]
    /// and has not answered one since.
    fn backend_down(&self, backend: &Arc<dyn Backend>, now: i64) -> bool {
        lock(&self.unreachable_at)
            .get(&backend_id(backend))
            .is_some_and(|at| (0..OUTAGE_HOLD).contains(&(now - at)))
    }

    /// Records whether `backend` answered a login.
    fn note_reachability(
        &self,
        backend: &Arc<dyn Backend>,
        answer: &Result<Verdict, BackendError>,
        now: i64,
    ) {
        let id = backend_id(backend);
        let mut down = lock(&self.unreachable_at);
        match answer {
            Err(e) if e.falls_back_to_cache() => {
                if down.len() >= MAX_BACKENDS_TRACKED && !down.contains_key(&id) {
                    down.retain(|_, at| now - *at < OUTAGE_HOLD);
                    if down.len() >= MAX_BACKENDS_TRACKED {
                        // Not tracked: this back end is treated as up,
                        // which only costs a bypassed login a timeout.
                        return;
                    }
                }
                down.insert(id, now);
            }
            _ => {
                down.remove(&id);
            }
        }
    }

    /// Remembers a back-end success until the cache write is surely done.
    fn note_verified(&self, jid: &str, password: &Secret, now: i64) {
        let key = self.flight_key(jid, password);
        let mut recent = lock(&self.recent);
        if recent.len() >= MAX_RECENT {
            recent.retain(|_, at| now - *at < RECENT_FOR);
            if recent.len() >= MAX_RECENT {
                recent.clear();
            }
        }
        recent.insert(key, now);
    }

    /// True when the back end accepted exactly this login within
    /// [`RECENT_FOR`] (and the cache is on: without it, every login asks).
    /// The window never outlives the cache's own TTLs: with a query or
    /// verification TTL shorter than [`RECENT_FOR`], that TTL bounds it.
    fn recently_verified(&self, jid: &str, password: &Secret, now: i64) -> bool {
        let Some(cache) = &self.cache else {
            return false;
        };
        let ttls = cache.ttls();
        let window = RECENT_FOR.min(ttls.query).min(ttls.verification);
        let key = self.flight_key(jid, password);
        lock(&self.recent)
            .get(&key)
            .is_some_and(|at| (0..window).contains(&(now - at)))
    }

    /// Runs `work` after the answer, tracked so [`Verifier::settle`] and a
    /// graceful stop can wait for it.
    fn in_background<F>(&self, work: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.background.spawn(work);
    }

    /// SPEC §9: fetch the shared roster and sync ejabberd; the login waits
    /// for it at most [`roster::LOGIN_WAIT`].
    async fn after_login(&self, user: &str, domain: &str) {
        let Some(sync) = &self.roster else {
            return;
        };
        let Some(settings) = self.domains.lookup(domain) else {
            return;
        };
        let waits = settings.backend.waits_for_roster();
        let sync = Arc::clone(sync);
        let jid = format!("{user}@{domain}");
        let (user, domain) = (user.to_owned(), domain.to_owned());
        let now = self.clock.now();
        let task = self.background.spawn(async move {
            match settings.backend.roster(&user).await {
                Ok(roster) => {
                    let handle = sync.spawn_after_login(user, domain, roster, now);
                    let _ = handle.await;
                }
                Err(e) => log_backend_error(&format!("shared roster of {user}@{domain}"), &e),
            }
        });
        if !waits {
            debug!("shared roster of {jid}: fetched and synchronised after the login answer");
            return;
        }
        if tokio::time::timeout(roster::LOGIN_WAIT, task)
            .await
            .is_err()
        {
            debug!("shared roster of {jid}: still running after the login answer");
        }
    }

    /// Does `user@domain` exist? `TryLater` when the back end cannot say.
    pub async fn isuser(&self, user: &str, domain: &str) -> Reply {
        let Some(settings) = self.domains.lookup(domain) else {
            warn!("isuser {user}@{domain}: no API URL configured for this domain");
            return Reply::TryLater;
        };
        match settings.backend.is_user(user).await {
            Ok(true) => {
                debug!("isuser {user}@{domain}: yes");
                Reply::Yes
            }
            Ok(false) => {
                info!("isuser {user}@{domain}: no such user");
                Reply::No
            }
            Err(e) if !e.falls_back_to_cache() => {
                info!("isuser {user}@{domain}: the back end refused the question: {e}");
                Reply::No
            }
            Err(e) => {
                log_backend_error(&format!("isuser {user}@{domain}"), &e);
                self.isuser_unreachable(user, domain).await
            }
        }
    }

    /// `isuser` without an answer from the back end (SPEC §6): a user the
    /// cache saw verified within the unreachable TTL is known; others are
    /// "try later" (Postfix defers, XMPP servers hear "no").
    async fn isuser_unreachable(&self, user: &str, domain: &str) -> Reply {
        let Some(cache) = &self.cache else {
            return Reply::TryLater;
        };
        let jid = format!("{user}@{domain}");
        match cache.get(&jid).await {
            Some(entry) if cache.usable_while_unreachable(&entry, self.clock.now()) => {
                Reply::KnownWhileUnreachable
            }
            _ => Reply::TryLater,
        }
    }

    /// `-R`: the shared roster JSON, and with ejabberdctl configured the
    /// sync run to completion (not limited to the login's second).
    pub async fn roster_and_sync(&self, user: &str, domain: &str) -> Option<String> {
        let roster = self.fetch_roster(user, domain).await?;
        let json = roster.to_json();
        if let Some(sync) = &self.roster {
            let handle = sync.spawn_after_login(
                user.to_owned(),
                domain.to_owned(),
                roster,
                self.clock.now(),
            );
            let _ = handle.await;
        }
        Some(json)
    }

    /// The shared roster JSON of `user@domain`, or `None` on failure.
    pub async fn roster(&self, user: &str, domain: &str) -> Option<String> {
        metrics::roster(self.fetch_roster(user, domain).await.map(|r| r.to_json()))
    }

    /// Asks the back end for the shared roster; failures are logged.
    async fn fetch_roster(&self, user: &str, domain: &str) -> Option<Roster> {
        let Some(settings) = self.domains.lookup(domain) else {
            warn!("roster {user}@{domain}: no API URL configured for this domain");
            return None;
        };
        match settings.backend.roster(user).await {
            Ok(roster) => Some(roster),
            Err(e) => {
                log_backend_error(&format!("roster {user}@{domain}"), &e);
                None
            }
        }
    }
}

/// How long a back-end success counts in this process while its cache
/// write (a bcrypt hash, hundreds of milliseconds at cost 12) is pending;
/// well below every cache TTL's default.
const RECENT_FOR: i64 = 60;
/// Logins remembered that way at most.
const MAX_RECENT: usize = 10_000;

/// A back end that failed to answer a login counts as down for this long
/// (seconds) unless it answers one meanwhile: the bcrypt pool is then
/// waited for, not bypassed.
const OUTAGE_HOLD: i64 = 30;
/// Logins that skip a saturated bcrypt pool and ask the back end, at once
/// per process: a crowd of cached logins after a restart must not become
/// a crowd of password checks on Nextcloud (each costs it up to a second
/// of CPU).
pub const MAX_BYPASSES: usize = 8;
/// Back ends whose outages are tracked at most (one per domain at worst).
const MAX_BACKENDS_TRACKED: usize = 1024;

/// Identifies a back end by the address of its shared state.
/// One login on the password path, as the steps of the decision see it.
struct Login<'a> {
    /// The user as sent (the back end is asked with it).
    user: &'a str,
    /// `user@domain`, the cache's key.
    jid: &'a str,
    /// The canonical account, the guard's and the coalescing's key.
    account: &'a str,
    password: &'a Secret,
    /// The client address that counts for the guard.
    address: Option<std::net::IpAddr>,
    now: i64,
}

/// What the cache made of a login that the memo did not know.
enum CacheStep {
    /// A fresh credential matched.
    Hit,
    /// Ask the back end; with a bypass permit when the pool was skipped.
    Ask(Option<tokio::sync::OwnedSemaphorePermit>),
}

/// Logs a refusal by the guard. The address (parsed by us, so it cannot be
/// forged) comes before anything the client chose: fail2ban's filter reads
/// it there.
fn log_refusal(jid: &str, address: Option<std::net::IpAddr>, refusal: &GuardVerdict) {
    match refusal {
        GuardVerdict::KnownWrong => info!(
            "auth {jid}: wrong password (the same one was refused within negative-ttl; not asked again)"
        ),
        GuardVerdict::Refused {
            reason,
            first_in_window,
        } => {
            let from = address.map_or_else(|| "unknown".to_owned(), |a| a.to_string());
            let who = jid.escape_debug();
            if *first_in_window {
                warn!("guard: refused address {from} for {who}: {reason}");
            } else {
                debug!("guard: refused address {from} for {who} again");
            }
        }
        GuardVerdict::Ask(_) => {}
    }
}

fn backend_id(backend: &Arc<dyn Backend>) -> usize {
    Arc::as_ptr(backend) as *const () as usize
}

fn random_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    if getrandom::getrandom(&mut key).is_err() {
        warn!("no random numbers available; login digests use a fixed key");
    }
    key
}

/// Logs a back-end error of `what` by what it means: a set-up problem is an
/// error, a missing optional setting is said at debug level (the start-up
/// log said it once), anything else is a warning.
fn log_backend_error(what: &str, e: &BackendError) {
    match e {
        BackendError::Misconfigured(Cause::NotConfigured(_)) => debug!("{what}: {e}"),
        BackendError::Misconfigured(_) => error!("{what}: {e}"),
        _ => warn!("{what}: back end unreachable: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::fake::{timeout, Asked, Reply as Answer, Scripted};
    use crate::backend::Cause;
    use crate::clock::FixedClock;
    use crate::domains::Fixed;
    use crate::token::TokenKey;

    fn verifier(backend: Arc<Scripted>, now: i64) -> (Arc<Verifier>, Arc<FixedClock>) {
        let clock = Arc::new(FixedClock::new(now));
        let domains = Arc::new(Fixed(DomainSettings {
            backend,
            token_key: Some(Arc::new(TokenKey::new(b"01234"))),
        }));
        (Arc::new(Verifier::new(clock.clone(), domains)), clock)
    }

    fn auth(user: &str, domain: &str, password: &str) -> Request {
        Request::Auth {
            user: user.into(),
            domain: domain.into(),
            password: Secret::new(password),
            service: None,
            client: None,
        }
    }

    #[tokio::test]
    async fn valid_token_never_asks_the_back_end() {
        let backend = Arc::new(Scripted::new(vec![]));
        let (v, _) = verifier(backend.clone(), 2000);
        let reply = v
            .handle(auth("tuser", "tdomain", "AMydsCzkh8-8vjcb9U2gqV/FZQAAEfg"))
            .await;
        assert_eq!(reply, Reply::Yes);
        assert_eq!(backend.calls(), 0);
    }

    #[tokio::test]
    async fn expiry_uses_the_time_of_each_request() {
        let backend = Arc::new(Scripted::new(vec![Ok(Answer::Rejected)]));
        let (v, clock) = verifier(backend.clone(), 2000);
        let token = "AMydsCzkh8-8vjcb9U2gqV/FZQAAEfg";
        assert_eq!(
            v.clone().handle(auth("tuser", "tdomain", token)).await,
            Reply::Yes
        );
        clock.set(5000);
        // Expired now: falls through to the back end, which says no.
        assert_eq!(v.handle(auth("tuser", "tdomain", token)).await, Reply::No);
        assert_eq!(backend.calls(), 1);
    }

    #[tokio::test]
    async fn back_end_answers_map_to_replies() {
        let backend = Arc::new(Scripted::new(vec![
            Ok(Answer::Accepted),
            Ok(Answer::Rejected),
            Err(timeout()),
            Ok(Answer::IsUser(true)),
            Ok(Answer::IsUser(false)),
            Err(BackendError::Unavailable(Cause::ConnectionRefused)),
        ]));
        let (v, _) = verifier(backend.clone(), 2000);
        assert_eq!(
            v.clone().handle(auth("a", "d", "pw:with:colons")).await,
            Reply::Yes
        );
        assert_eq!(v.clone().handle(auth("a", "d", "wrong")).await, Reply::No);
        assert_eq!(
            v.clone().handle(auth("a", "d", "pw")).await,
            Reply::TryLater
        );
        let isuser = || Request::IsUser {
            user: "a".into(),
            domain: "d".into(),
        };
        assert_eq!(v.clone().handle(isuser()).await, Reply::Yes);
        assert_eq!(v.clone().handle(isuser()).await, Reply::No);
        assert_eq!(v.clone().handle(isuser()).await, Reply::TryLater);
        let asked = backend.asked();
        assert_eq!(
            asked[0],
            Asked::Auth("a".into(), Secret::new("pw:with:colons"))
        );
        assert_eq!(asked[3], Asked::IsUser("a".into()));
    }

    #[tokio::test]
    async fn invalid_requests_get_the_failure_reply_without_back_end() {
        let backend = Arc::new(Scripted::new(vec![]));
        let (v, _) = verifier(backend.clone(), 2000);
        let reply = v
            .handle(Request::Invalid {
                reason: "setpass".into(),
            })
            .await;
        assert_eq!(reply, Reply::Invalid("setpass".into()));
        assert_eq!(backend.calls(), 0);
    }

    #[tokio::test]
    async fn identical_concurrent_logins_ask_the_back_end_once() {
        let backend = Arc::new(Scripted::slow(vec![
            Ok(Answer::Accepted),
            Ok(Answer::Rejected),
        ]));
        let (v, _) = verifier(backend.clone(), 2000);
        let password = Secret::new("pw");
        let logins = (0..50).map(|_| v.auth("a", "d", &password));
        let outcomes = futures_util::future::join_all(logins).await;
        assert!(
            outcomes.iter().all(|o| *o == AuthOutcome::Backend),
            "{outcomes:?}"
        );
        assert_eq!(backend.calls(), 1);
        // Another password is its own question.
        assert_eq!(
            v.auth("a", "d", &Secret::new("other")).await,
            AuthOutcome::Rejected
        );
        assert_eq!(backend.calls(), 2);
    }

    #[tokio::test]
    async fn a_login_just_verified_is_not_asked_again_while_its_cache_write_runs() {
        let backend = Arc::new(Scripted::new(vec![Ok(Answer::Accepted)]));
        let (v, clock, _) = cached_verifier(backend.clone(), 1000);
        assert_eq!(
            v.auth("user3", "domain3", &Secret::new("pw")).await,
            AuthOutcome::Backend
        );
        // Not waiting for the background cache write: the next request of
        // this client is still answered without the back end.
        clock.set(1001);
        assert_eq!(
            v.auth("user3", "domain3", &Secret::new("pw")).await,
            AuthOutcome::Cache
        );
        assert_eq!(backend.calls(), 1);
        v.settle().await;
    }

    #[tokio::test]
    async fn no_url_means_failure_not_success() {
        let client = crate::backend::HttpClient::new(&Default::default()).unwrap();
        let global = crate::domains::Global::jsxc(None, Secret::new("01234"));
        let v = Arc::new(Verifier::new(
            Arc::new(FixedClock::new(2000)),
            Arc::new(GlobalOnly::new(global, client)),
        ));
        assert_eq!(v.clone().handle(auth("a", "d", "pw")).await, Reply::No);
        let isuser = Request::IsUser {
            user: "a".into(),
            domain: "d".into(),
        };
        assert_eq!(v.handle(isuser).await, Reply::TryLater);
    }

    #[tokio::test]
    async fn moments_ago_never_outlives_the_cache_ttls() {
        let backend = Arc::new(Scripted::new(vec![
            Ok(Answer::Accepted),
            Ok(Answer::Accepted),
        ]));
        let clock = Arc::new(FixedClock::new(100));
        let domains = Arc::new(Fixed(DomainSettings {
            backend: backend.clone(),
            token_key: None,
        }));
        let storage = Arc::new(crate::cache::MemoryStorage::default());
        let ttls = crate::cache::Ttls {
            query: 2,
            verification: 2,
            unreachable: 2,
        };
        let cache = Arc::new(Cache::new(storage, ttls, 4));
        let v = Verifier::new(clock.clone(), domains).with_cache(cache);
        let pw = Secret::new("pw");
        assert_eq!(v.auth("a", "d", &pw).await, AuthOutcome::Backend);
        assert_eq!(backend.calls(), 1);
        assert_eq!(v.auth("a", "d", &pw).await, AuthOutcome::Cache);
        assert_eq!(backend.calls(), 1);
        // Four seconds later every TTL has run out: the back end decides
        // (a changed password or a disabled user is noticed).
        clock.set(104);
        assert_eq!(v.auth("a", "d", &pw).await, AuthOutcome::Backend);
        assert_eq!(backend.calls(), 2);
        v.settle().await;
    }

    fn cached_verifier(
        backend: Arc<Scripted>,
        now: i64,
    ) -> (
        Arc<Verifier>,
        Arc<FixedClock>,
        Arc<crate::cache::MemoryStorage>,
    ) {
        let clock = Arc::new(FixedClock::new(now));
        let domains = Arc::new(Fixed(DomainSettings {
            backend,
            token_key: Some(Arc::new(TokenKey::new(b"01234"))),
        }));
        let storage = Arc::new(crate::cache::MemoryStorage::default());
        let cache = Arc::new(Cache::new(
            storage.clone(),
            crate::cache::Ttls {
                query: 3600,
                verification: 86400,
                unreachable: 7 * 86400,
            },
            4,
        ));
        let v = Verifier::new(clock.clone(), domains).with_cache(cache);
        (Arc::new(v), clock, storage)
    }

    fn entry(storage: &crate::cache::MemoryStorage) -> Option<crate::cache::Entry> {
        use crate::cache::CacheStorage;
        storage.get("user3@domain3").unwrap()
    }

    /// The reference timeline of SPEC §6, step by step.
    #[tokio::test]
    async fn reference_timeline() {
        let backend = Arc::new(Scripted::new(vec![
            Err(timeout()),
            Ok(Answer::Accepted),
            Ok(Answer::Rejected),
            Ok(Answer::Accepted),
            Ok(Answer::Accepted),
            Err(timeout()),
            Err(timeout()),
            Err(timeout()),
        ]));
        let (v, clock, storage) = cached_verifier(backend.clone(), 1);
        let auth = |pw: &str| auth("user3", "domain3", pw);
        let step = |t: i64, pw: &'static str| {
            let (v, clock) = (v.clone(), clock.clone());
            async move {
                clock.set(t);
                let reply = v.clone().handle(auth(pw)).await;
                v.settle().await;
                reply
            }
        };

        assert_eq!(step(1, "pass3").await, Reply::TryLater);
        assert_eq!((backend.calls(), entry(&storage)), (1, None));
        assert_eq!(step(1, "pass3").await, Reply::Yes);
        let e = entry(&storage).expect("entry created");
        assert_eq!((e.firstauth, e.remoteauth, e.anyauth), (1, 1, 1));
        assert!(e.pwhash.starts_with("$2b$04$"));
        assert_eq!(backend.calls(), 2);

        assert_eq!(step(100, "pass3").await, Reply::Yes);
        assert_eq!(backend.calls(), 2, "served from cache");
        assert_eq!(entry(&storage).unwrap().anyauth, 100);

        assert_eq!(step(200, "badpass").await, Reply::No);
        assert_eq!(backend.calls(), 3);
        assert_eq!(entry(&storage).unwrap().anyauth, 100, "entry unchanged");

        assert_eq!(step(300, "newpass").await, Reply::Yes);
        let e = entry(&storage).unwrap();
        assert_eq!((e.firstauth, e.remoteauth, e.anyauth), (1, 300, 300));
        assert_eq!(backend.calls(), 4);

        let token = "ABbL+6M8K7HGF/vnfaZZi5XFZQAADhE";
        assert_eq!(step(300, token).await, Reply::Yes);
        assert_eq!(backend.calls(), 4);
        assert_eq!(entry(&storage).unwrap(), e, "token leaves the entry alone");

        assert_eq!(step(4000, "newpass").await, Reply::Yes);
        let e = entry(&storage).unwrap();
        assert_eq!((e.remoteauth, e.anyauth), (4000, 4000));
        assert_eq!(backend.calls(), 5);

        assert_eq!(step(8000, "newpass").await, Reply::Yes);
        assert_eq!(entry(&storage).unwrap().anyauth, 8000);
        assert_eq!(backend.calls(), 6);

        let mut t = 8100;
        while t < 4000 + 86400 {
            assert_eq!(step(t, "newpass").await, Reply::Yes, "t={t}");
            t += 1800;
        }
        assert_eq!(
            backend.calls(),
            6,
            "all from cache until the verification TTL"
        );

        assert_eq!(step(t, "newpass").await, Reply::Yes);
        assert_eq!(
            backend.calls(),
            7,
            "verification TTL passed: asked, unreachable, cache ok"
        );

        assert_eq!(step(t + 6 * 86400, "newpass").await, Reply::TryLater);
        assert_eq!(backend.calls(), 8, "older than a week: fail");
    }

    #[tokio::test]
    async fn rejected_password_that_matches_the_cache_is_forgotten() {
        let backend = Arc::new(Scripted::new(vec![
            Ok(Answer::Accepted),
            Ok(Answer::Rejected),
            Err(timeout()),
        ]));
        let (v, clock, storage) = cached_verifier(backend.clone(), 1);
        assert_eq!(
            v.clone().handle(auth("user3", "domain3", "old")).await,
            Reply::Yes
        );
        v.settle().await;
        assert!(entry(&storage).is_some());
        // The password was changed in Nextcloud; after the query TTL the old
        // one is rejected, and the entry goes.
        clock.set(4000);
        assert_eq!(
            v.clone().handle(auth("user3", "domain3", "old")).await,
            Reply::No
        );
        v.settle().await;
        assert_eq!(entry(&storage), None);
        // So an outage later does not let the old password in.
        assert_eq!(
            v.clone().handle(auth("user3", "domain3", "old")).await,
            Reply::TryLater
        );
    }

    #[tokio::test]
    async fn long_passwords_are_never_cached() {
        let long = "x".repeat(73);
        let backend = Arc::new(Scripted::new(vec![
            Ok(Answer::Accepted),
            Ok(Answer::Accepted),
        ]));
        let (v, _, storage) = cached_verifier(backend.clone(), 1);
        assert_eq!(
            v.clone().handle(auth("user3", "domain3", &long)).await,
            Reply::Yes
        );
        v.settle().await;
        assert_eq!(entry(&storage), None);
        assert_eq!(
            v.clone().handle(auth("user3", "domain3", &long)).await,
            Reply::Yes
        );
        assert_eq!(backend.calls(), 2, "asked the back end both times");
    }

    /// The bcrypt pool held busy: one worker blocked, and enough cost-12
    /// checks queued behind it that a new one would wait over a second.
    mod saturated {
        use super::*;
        use crate::cache::pool::{units, BcryptPool, Limits, Priority};
        use crate::cache::{CacheStorage, MemoryStorage, Ttls};
        use std::sync::mpsc;

        pub(super) struct Busy {
            pub pool: Arc<BcryptPool>,
            release: mpsc::Sender<()>,
            queued: Vec<tokio::task::JoinHandle<()>>,
        }

        pub(super) async fn busy_pool() -> Busy {
            let pool = Arc::new(BcryptPool::new(1, Limits::default()));
            let (release, hold) = mpsc::channel::<()>();
            let (started, running) = mpsc::channel::<()>();
            let mut queued = Vec::new();
            let p = Arc::clone(&pool);
            queued.push(tokio::spawn(async move {
                let _ = p
                    .run(Priority::Answer, 0, move || {
                        let _ = started.send(());
                        let _ = hold.recv();
                    })
                    .await;
            }));
            running.recv().expect("the blocker runs");
            while !pool.saturated() {
                let p = Arc::clone(&pool);
                let before = pool.stats().queued_answer;
                queued.push(tokio::spawn(async move {
                    let _ = p.run(Priority::Answer, units(12), || ()).await;
                }));
                while pool.stats().queued_answer == before {
                    tokio::task::yield_now().await;
                }
            }
            Busy {
                pool,
                release,
                queued,
            }
        }

        impl Busy {
            pub async fn release(self) {
                self.release.send(()).unwrap();
                for job in self.queued {
                    job.await.unwrap();
                }
            }
        }

        /// A verifier whose cache holds `pw` for user3@domain3 (cost 4),
        /// verified at 1000, with the memo cold (as after a restart).
        pub(super) fn cold(backend: Arc<Scripted>, pool: &Arc<BcryptPool>) -> Arc<Verifier> {
            let storage = Arc::new(MemoryStorage::default());
            let hash = bcrypt::hash("pw", 4).unwrap();
            storage.store("user3@domain3", &hash, None, 1000).unwrap();
            let cache = Cache::new(
                storage,
                Ttls {
                    query: 3600,
                    verification: 86400,
                    unreachable: 7 * 86400,
                },
                4,
            )
            .with_pool(Arc::clone(pool));
            let domains = Arc::new(Fixed(DomainSettings {
                backend,
                token_key: None,
            }));
            let clock = Arc::new(FixedClock::new(1010));
            Arc::new(Verifier::new(clock, domains).with_cache(Arc::new(cache)))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_saturated_pool_is_bypassed_while_the_back_end_answers() {
        let busy = saturated::busy_pool().await;
        let backend = Arc::new(Scripted::new(vec![Ok(Answer::Accepted)]));
        let v = saturated::cold(backend.clone(), &busy.pool);
        let queued = busy.pool.stats().queued_answer;
        // Fresh entry, cold memo, pool saturated: the back end answers at
        // once instead of a check queued behind the others.
        assert_eq!(
            v.auth("user3", "domain3", &Secret::new("pw")).await,
            AuthOutcome::Backend
        );
        assert_eq!(backend.calls(), 1);
        let stats = busy.pool.stats();
        assert_eq!(stats.bypasses, 1);
        assert_eq!(stats.queued_answer, queued, "no check was queued");
        busy.release().await;
        v.settle().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_saturated_pool_is_waited_for_while_the_back_end_is_down() {
        let busy = saturated::busy_pool().await;
        let backend = Arc::new(Scripted::new(vec![Err(timeout())]));
        let v = saturated::cold(backend.clone(), &busy.pool);
        // Another user's login finds the back end down.
        assert!(matches!(
            v.auth("other", "domain3", &Secret::new("x")).await,
            AuthOutcome::Unreachable(_)
        ));
        assert_eq!(backend.calls(), 1);
        let queued = busy.pool.stats().queued_answer;
        let login = {
            let v = Arc::clone(&v);
            tokio::spawn(async move { v.auth("user3", "domain3", &Secret::new("pw")).await })
        };
        // The login's check joins the queue; the back end is not asked.
        while busy.pool.stats().queued_answer == queued {
            tokio::task::yield_now().await;
        }
        assert_eq!(backend.calls(), 1);
        busy.release().await;
        assert_eq!(login.await.unwrap(), AuthOutcome::Cache);
        assert_eq!(backend.calls(), 1);
        assert_eq!(v.cache().unwrap().pool().stats().bypasses, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bypassed_login_still_falls_back_to_the_cache_when_the_back_end_fails() {
        let busy = saturated::busy_pool().await;
        let backend = Arc::new(Scripted::new(vec![Err(timeout())]));
        let v = saturated::cold(backend.clone(), &busy.pool);
        let login = {
            let v = Arc::clone(&v);
            tokio::spawn(async move { v.auth("user3", "domain3", &Secret::new("pw")).await })
        };
        // Bypassed, asked, unreachable: the login now waits for the pool.
        while backend.calls() == 0 || busy.pool.stats().bypasses == 0 {
            tokio::task::yield_now().await;
        }
        busy.release().await;
        assert!(matches!(
            login.await.unwrap(),
            AuthOutcome::CacheWhileUnreachable(_)
        ));
        assert_eq!(backend.calls(), 1);
    }

    #[tokio::test]
    async fn isuser_during_an_outage_uses_the_cache_for_known_users() {
        let backend = Arc::new(Scripted::new(vec![
            Ok(Answer::Accepted),
            Err(timeout()),
            Err(timeout()),
        ]));
        let (v, _, _) = cached_verifier(backend.clone(), 1);
        assert_eq!(
            v.clone().handle(auth("user3", "domain3", "pw")).await,
            Reply::Yes
        );
        v.settle().await;
        let isuser = |u: &str| Request::IsUser {
            user: u.into(),
            domain: "domain3".into(),
        };
        assert_eq!(
            v.clone().handle(isuser("user3")).await,
            Reply::KnownWhileUnreachable
        );
        assert_eq!(v.clone().handle(isuser("stranger")).await, Reply::TryLater);
    }
}
