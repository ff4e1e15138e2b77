//! The failure guard: xcauth stands between password guessers and
//! Nextcloud, whose own throttling sees every xcauth user as one address.
//!
//! What is counted, and where:
//! - every password the back end rejects, as a keyed digest of JID and
//!   password (never the password), per JID and, where the client address
//!   is known (saslauthd's fifth field, the Prosody module), per address;
//! - the state lives in the database file when there is one, so the pool
//!   of helpers ejabberd starts shares it; otherwise in process memory.
//!
//! What follows:
//! - **negative cache**: the same wrong password for the same JID within
//!   `negative-ttl` is answered "no" without asking Nextcloud;
//! - **per-JID limit**: after `guard-jid-failures` distinct wrong passwords
//!   within `guard-jid-window`, unknown passwords for that JID are refused
//!   without asking until the window has passed. A password the cache knows
//!   as good still works (the cache is asked first), so guessing cannot lock
//!   out a user whose login is cached;
//! - **per-address limit**: the same with `guard-address-failures` and
//!   `guard-address-window`, except for addresses on `guard-allowlist`.
//!
//! Each refusal is logged once per window, as
//! `guard: refused JID from ADDRESS: REASON` (fail2ban's filter in
//! `packaging/fail2ban/` matches it). Every knob is 0 to disable it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::secret::Secret;

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

/// An address range of the allowlist: `ADDR` or `ADDR/BITS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    bits: u8,
}

impl Network {
    /// Parses `127.0.0.1`, `10.0.0.0/8`, `::1`, `2001:db8::/32`.
    pub fn parse(text: &str) -> Result<Network, String> {
        let (addr, bits) = match text.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{text:?}: not an IP address or ADDRESS/BITS"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            Some(b) => b
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(|| format!("{text:?}: prefix length must be 0 to {max}"))?,
            None => max,
        };
        Ok(Network { addr, bits })
    }

    /// True when `addr` is in the range (an IPv4 address and its
    /// IPv4-mapped IPv6 form are the same address).
    pub fn contains(&self, addr: IpAddr) -> bool {
        let (net, net_bits) = as_v6(self.addr, self.bits);
        let (addr, _) = as_v6(addr, 0);
        let mask = match net_bits {
            0 => 0,
            bits => u128::MAX << (128 - u32::from(bits)),
        };
        net & mask == addr & mask
    }
}

/// `addr` as 128 bits (IPv4 mapped into `::ffff:0:0/96`) and `bits` as the
/// prefix length in that space.
fn as_v6(addr: IpAddr, bits: u8) -> (u128, u8) {
    match addr {
        IpAddr::V4(v4) => (u128::from(v4.to_ipv6_mapped()), bits.saturating_add(96)),
        IpAddr::V6(v6) => (u128::from(v6), bits),
    }
}

/// The client address as the protocols give it (`1.2.3.4;5678`,
/// `[::1]:5678`, `::1`), reduced to the IP; `None` when it is not one.
pub fn client_ip(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    if let Ok(ip) = text.parse() {
        return Some(ip);
    }
    // saslauthd's `ADDR;PORT`.
    if let Some((addr, _)) = text.rsplit_once(';') {
        if let Ok(ip) = addr.parse() {
            return Some(ip);
        }
    }
    // `[v6]:port` and `v4:port`.
    if let Ok(sock) = text.parse::<std::net::SocketAddr>() {
        return Some(sock.ip());
    }
    None
}

/// What the guard says about one login before the back end is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Ask the back end.
    Ask,
    /// This very password was rejected for this JID within the negative
    /// TTL: answer no.
    KnownWrong,
    /// Too many failures: answer no without asking. `first_in_window`:
    /// log it (once per window).
    Refused {
        /// Why, for the log.
        reason: String,
        /// True for the first refusal of this window.
        first_in_window: bool,
    },
}

/// The time of the first failure of each distinct digest in `failures`,
/// oldest first: what the limits count (repeating one wrong password is
/// not guessing).
pub fn distinct_times(failures: &[Failure]) -> Vec<i64> {
    let mut sorted: Vec<&Failure> = failures.iter().collect();
    sorted.sort_by_key(|f| f.at);
    let mut seen = std::collections::HashSet::new();
    sorted
        .into_iter()
        .filter(|f| seen.insert(f.digest.as_str()))
        .map(|f| f.at)
        .collect()
}

/// With `times` from [`distinct_times`] (those within the window), the
/// end of the block once `limit` of them are there: when the limit-th
/// newest leaves the window.
pub fn blocked_until(times: &[i64], limit: u32, window: i64) -> Option<i64> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    (limit > 0 && times.len() >= limit).then(|| times[times.len() - limit] + window)
}

/// One failed login as stored: digest of JID and password, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Hex of the keyed digest.
    pub digest: String,
    /// Seconds since the epoch.
    pub at: i64,
}

/// Which counter a failure belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Per JID.
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

/// Where the guard keeps its state.
pub trait GuardStore: Send + Sync {
    /// Records a failure of `key` in `scope`.
    fn record(&self, scope: Scope, key: &str, failure: &Failure);
    /// The failures of `key` in `scope` at or after `since`.
    fn failures(&self, scope: Scope, key: &str, since: i64) -> Vec<Failure>;
    /// Marks that a refusal of `key` was logged for the window ending
    /// `until`; true if it was not marked yet (log it now).
    fn notice(&self, scope: Scope, key: &str, until: i64) -> bool;
    /// Drops failures older than `before`.
    fn expire(&self, before: i64);
}

/// Guard state in process memory (no database), bounded.
#[derive(Debug, Default)]
pub struct MemoryGuard {
    inner: Mutex<MemoryState>,
}

#[derive(Debug, Default)]
struct MemoryState {
    failures: HashMap<(Scope, String), Vec<Failure>>,
    notices: HashMap<(Scope, String), i64>,
}

/// Keys kept in memory at most; past it the oldest state is dropped.
pub const MAX_MEMORY_KEYS: usize = 100_000;
/// Failures kept per key at most (the counts never need more).
pub const MAX_FAILURES_PER_KEY: usize = 256;

impl GuardStore for MemoryGuard {
    fn record(&self, scope: Scope, key: &str, failure: &Failure) {
        let mut state = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if state.failures.len() >= MAX_MEMORY_KEYS {
            state.failures.clear();
            state.notices.clear();
        }
        let list = state.failures.entry((scope, key.to_owned())).or_default();
        list.push(failure.clone());
        if list.len() > MAX_FAILURES_PER_KEY {
            list.remove(0);
        }
    }

    fn failures(&self, scope: Scope, key: &str, since: i64) -> Vec<Failure> {
        let state = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        state
            .failures
            .get(&(scope, key.to_owned()))
            .map(|list| list.iter().filter(|f| f.at >= since).cloned().collect())
            .unwrap_or_default()
    }

    fn notice(&self, scope: Scope, key: &str, until: i64) -> bool {
        let mut state = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let slot = state
            .notices
            .entry((scope, key.to_owned()))
            .or_insert(i64::MIN);
        if *slot >= until {
            return false;
        }
        *slot = until;
        true
    }

    fn expire(&self, before: i64) {
        let mut state = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        state.failures.retain(|_, list| {
            list.retain(|f| f.at >= before);
            !list.is_empty()
        });
    }
}

/// The guard: settings, a digest key and a store.
pub struct Guard {
    settings: GuardSettings,
    key: Secret,
    store: Box<dyn GuardStore>,
}

impl Guard {
    /// A guard keeping state in `store`, digesting with `key` (which must
    /// be the same for every process sharing the store, and is never
    /// stored with it).
    pub fn new(settings: GuardSettings, key: Secret, store: Box<dyn GuardStore>) -> Guard {
        Guard {
            settings,
            key,
            store,
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &GuardSettings {
        &self.settings
    }

    /// Hex of the first 16 bytes of HMAC-SHA256(key, jid NUL password).
    pub fn digest(&self, jid: &str, password: &Secret) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.key.expose().as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(jid.as_bytes());
        mac.update(&[0]);
        mac.update(password.expose().as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..16])
    }

    fn allowlisted(&self, address: Option<IpAddr>) -> bool {
        address.is_some_and(|a| self.settings.allowlist.iter().any(|n| n.contains(a)))
    }

    /// Before asking the back end about `password` for `jid` (from
    /// `address`, if known) at `now`.
    pub fn check(
        &self,
        jid: &str,
        password: &Secret,
        address: Option<IpAddr>,
        now: i64,
    ) -> Verdict {
        let s = &self.settings;
        let digest = self.digest(jid, password);
        if s.negative_ttl > 0 {
            let recent = self
                .store
                .failures(Scope::Jid, jid, now - s.negative_ttl + 1);
            if recent.iter().any(|f| f.digest == digest) {
                crate::metrics::guard_refusal(crate::metrics::GuardRefusal::KnownWrong);
                return Verdict::KnownWrong;
            }
        }
        if s.jid_failures > 0 && s.jid_window > 0 {
            if let Some(until) = self.limit(Scope::Jid, jid, s.jid_failures, s.jid_window, now) {
                crate::metrics::guard_refusal(crate::metrics::GuardRefusal::JidLimit);
                return Verdict::Refused {
                    reason: format!(
                        "{} wrong passwords within {}s (until {})",
                        s.jid_failures,
                        s.jid_window,
                        crate::store::format_timestamp(until)
                    ),
                    first_in_window: self.store.notice(Scope::Jid, jid, until),
                };
            }
        }
        if let Some(ip) = address.filter(|_| !self.allowlisted(address)) {
            if s.address_failures > 0 && s.address_window > 0 {
                let key = ip.to_string();
                if let Some(until) = self.limit(
                    Scope::Address,
                    &key,
                    s.address_failures,
                    s.address_window,
                    now,
                ) {
                    crate::metrics::guard_refusal(crate::metrics::GuardRefusal::AddressLimit);
                    return Verdict::Refused {
                        reason: format!(
                            "{} failed logins from this address within {}s (until {})",
                            s.address_failures,
                            s.address_window,
                            crate::store::format_timestamp(until)
                        ),
                        first_in_window: self.store.notice(Scope::Address, &key, until),
                    };
                }
            }
        }
        Verdict::Ask
    }

    /// `Some(end of the block)` when `key` has `limit` distinct failures in
    /// the window before `now`.
    fn limit(&self, scope: Scope, key: &str, limit: u32, window: i64, now: i64) -> Option<i64> {
        let failures = self.store.failures(scope, key, now - window + 1);
        blocked_until(&distinct_times(&failures), limit, window)
    }

    /// After the back end rejected `password` for `jid`.
    pub fn rejected(&self, jid: &str, password: &Secret, address: Option<IpAddr>, now: i64) {
        let failure = Failure {
            digest: self.digest(jid, password),
            at: now,
        };
        self.store.record(Scope::Jid, jid, &failure);
        if let Some(ip) = address.filter(|_| !self.allowlisted(address)) {
            self.store.record(Scope::Address, &ip.to_string(), &failure);
        }
        let keep = self
            .settings
            .negative_ttl
            .max(self.settings.jid_window)
            .max(self.settings.address_window);
        self.store.expire(now - keep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(settings: GuardSettings) -> Guard {
        Guard::new(settings, Secret::new("k"), Box::new(MemoryGuard::default()))
    }

    fn pw(text: &str) -> Secret {
        Secret::new(text)
    }

    #[test]
    fn the_same_wrong_password_is_known_for_the_negative_ttl() {
        let g = guard(GuardSettings::default());
        let jid = "alice@example.org";
        assert_eq!(g.check(jid, &pw("old"), None, 1000), Verdict::Ask);
        g.rejected(jid, &pw("old"), None, 1000);
        // A phone retrying every 30 s: answered without asking.
        for t in (1030..1600).step_by(30) {
            assert_eq!(
                g.check(jid, &pw("old"), None, t),
                Verdict::KnownWrong,
                "{t}"
            );
        }
        assert_eq!(g.check(jid, &pw("old"), None, 1600), Verdict::Ask);
        // Another password, or another JID, is asked about.
        assert_eq!(g.check(jid, &pw("new"), None, 1100), Verdict::Ask);
        assert_eq!(
            g.check("bob@example.org", &pw("old"), None, 1100),
            Verdict::Ask
        );
    }

    #[test]
    fn distinct_failures_close_a_jid_until_the_window_passes() {
        let g = guard(GuardSettings::default());
        let jid = "alice@example.org";
        for i in 0..10 {
            assert_eq!(
                g.check(jid, &pw(&format!("guess{i}")), None, 100 + i),
                Verdict::Ask
            );
            g.rejected(jid, &pw(&format!("guess{i}")), None, 100 + i);
        }
        let Verdict::Refused {
            first_in_window, ..
        } = g.check(jid, &pw("guess10"), None, 200)
        else {
            panic!("not refused");
        };
        assert!(first_in_window);
        let Verdict::Refused {
            first_in_window, ..
        } = g.check(jid, &pw("guess11"), None, 201)
        else {
            panic!("not refused");
        };
        assert!(!first_in_window, "logged once per window");
        // The oldest of the ten leaves the window at 100 + 900.
        assert!(matches!(
            g.check(jid, &pw("x"), None, 999),
            Verdict::Refused { .. }
        ));
        assert_eq!(g.check(jid, &pw("x"), None, 1000), Verdict::Ask);
    }

    #[test]
    fn repeating_one_wrong_password_is_not_guessing() {
        let g = guard(GuardSettings {
            negative_ttl: 0,
            ..GuardSettings::default()
        });
        for t in 0..50 {
            g.rejected("a@d", &pw("same"), None, t);
        }
        assert_eq!(g.check("a@d", &pw("other"), None, 60), Verdict::Ask);
    }

    #[test]
    fn addresses_are_limited_unless_allowlisted() {
        let settings = GuardSettings {
            address_failures: 3,
            allowlist: vec![Network::parse("127.0.0.0/8").unwrap()],
            ..GuardSettings::default()
        };
        let g = guard(settings);
        let far = client_ip("192.0.2.7;40000");
        let near = client_ip("127.0.0.1");
        for i in 0..3 {
            g.rejected(&format!("u{i}@d"), &pw("x"), far, 10);
            g.rejected(&format!("u{i}@d"), &pw("x"), near, 10);
        }
        assert!(matches!(
            g.check("new@d", &pw("y"), far, 11),
            Verdict::Refused { .. }
        ));
        assert_eq!(g.check("new@d", &pw("y"), near, 11), Verdict::Ask);
        assert_eq!(g.check("new@d", &pw("y"), None, 11), Verdict::Ask);
    }

    #[test]
    fn zero_switches_each_rule_off() {
        let g = guard(GuardSettings {
            negative_ttl: 0,
            jid_failures: 0,
            jid_window: 900,
            address_failures: 0,
            address_window: 900,
            allowlist: vec![],
        });
        for i in 0..100 {
            g.rejected("a@d", &pw(&i.to_string()), client_ip("192.0.2.1"), 5);
        }
        assert_eq!(
            g.check("a@d", &pw("0"), client_ip("192.0.2.1"), 6),
            Verdict::Ask
        );
    }

    #[test]
    fn digests_are_keyed_and_never_the_password() {
        let a = guard(GuardSettings::default());
        let b = Guard::new(
            GuardSettings::default(),
            Secret::new("other"),
            Box::new(MemoryGuard::default()),
        );
        let d = a.digest("a@d", &pw("hunter2"));
        assert_eq!(d.len(), 32);
        assert!(!d.contains("hunter2"));
        assert_ne!(d, b.digest("a@d", &pw("hunter2")));
        // JID and password cannot be shifted into each other.
        assert_ne!(a.digest("a@d", &pw("x")), a.digest("a@dx", &pw("")));
    }

    #[test]
    fn networks_and_client_addresses() {
        let n = Network::parse("10.1.0.0/16").unwrap();
        assert!(n.contains("10.1.200.3".parse().unwrap()));
        assert!(!n.contains("10.2.0.1".parse().unwrap()));
        assert!(n.contains("::ffff:10.1.0.9".parse().unwrap()));
        let v6 = Network::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:1::1".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
        assert!(Network::parse("10.0.0.0/33").is_err());
        assert!(Network::parse("host").is_err());
        assert_eq!(client_ip("192.0.2.1;1234"), "192.0.2.1".parse().ok());
        assert_eq!(client_ip("[::1]:5000"), "::1".parse().ok());
        assert_eq!(client_ip("2001:db8::5"), "2001:db8::5".parse().ok());
        assert_eq!(client_ip("nonsense"), None);
    }
}
