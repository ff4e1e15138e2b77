//! Nextcloud's brute-force throttling, per client address, as measured on Nextcloud 29.
//!
//! Every failed login adds an entry to the bucket of its address (IPv4 /32,
//! IPv6 /56). Before a login is checked, the request sleeps for
//! `0.1 s × 2^n` (at most 25 s), `n` being the failures of the last 12
//! hours; with no failure there is no sleep, and a failure that did not
//! sleep before sleeps afterwards (so the first failure already takes
//! 0.2 s, as measured). With more than 10 failures in the last 30 minutes
//! (and so the full 25 s delay) every request gets 429 at once. A
//! successful login removes only that user's entries of the bucket.
//! Allowlisted addresses are never delayed nor refused (their failures are
//! still recorded, as Nextcloud does). All delays are multiplied by the
//! scale (`--throttle-scale`), the time windows are not; tests move the
//! stand-in's clock instead.

use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// The longest delay before a check.
pub const MAX_DELAY: Duration = Duration::from_secs(25);
/// The first delay; doubled for each further failure.
const FIRST_DELAY: Duration = Duration::from_millis(100);
/// Failures older than this are forgotten.
pub const LOOK_BACK: Duration = Duration::from_secs(12 * 3600);
/// The window for [`MAX_ATTEMPTS`].
pub const BLOCK_WINDOW: Duration = Duration::from_secs(30 * 60);
/// More failures than this within [`BLOCK_WINDOW`] give 429.
pub const MAX_ATTEMPTS: usize = 10;

/// An allowlist entry, `ADDR/BITS` or a bare address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    addr: IpAddr,
    bits: u8,
}

impl Subnet {
    /// Reads `127.0.0.1/32`, `::1/128`, `10.0.0.0/8` or a bare address.
    pub fn parse(text: &str) -> Result<Subnet, String> {
        let text = text.trim();
        let (addr, bits) = match text.split_once('/') {
            Some((addr, bits)) => (addr, Some(bits)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?}: not an IP address or CIDR subnet"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(bits) => match bits.parse::<u8>() {
                Ok(bits) if bits <= max => bits,
                _ => return Err(format!("{text:?}: the prefix length must be 0..={max}")),
            },
        };
        Ok(Subnet { addr, bits })
    }

    /// Whether `ip` lies in this subnet (IPv4 never matches IPv6).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, normalise(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.bits.into())
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.bits.into())
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.bits)
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: usize) -> bool {
    (0..bits).all(|i| {
        let mask = 0x80u8 >> (i % 8);
        a[i / 8] & mask == b[i / 8] & mask
    })
}

/// An IPv4-mapped IPv6 address is its IPv4 address.
fn normalise(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The bucket an address belongs to, as text: the IPv4 address, or the
/// IPv6 /56 subnet.
pub fn bucket_of(ip: IpAddr) -> String {
    match normalise(ip) {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let mut octets = v6.octets();
            octets[7..].fill(0);
            format!("{}/56", std::net::Ipv6Addr::from(octets))
        }
    }
}

/// The delay before a check after `failures` recent failures (unscaled).
pub fn delay_for(failures: usize) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    // 0.1 s × 2^n exceeds 25 s from n = 8 on
    if failures >= 8 {
        return MAX_DELAY;
    }
    FIRST_DELAY * (1u32 << failures)
}

#[derive(Debug)]
struct Failure {
    bucket: String,
    login: String,
    at: Instant,
}

#[derive(Debug)]
struct Inner {
    failures: Vec<Failure>,
    allowlist: Vec<Subnet>,
    scale: f64,
    /// How far the stand-in's clock has been moved forward.
    clock_offset: Duration,
}

/// What the throttle says before a login is checked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Gate {
    /// Go on after sleeping this long (already scaled; may be zero).
    Wait(Duration),
    /// Answer 429 at once.
    Blocked,
}

/// The brute-force state of the whole stand-in.
#[derive(Debug)]
pub struct Throttle {
    inner: Mutex<Inner>,
}

impl Throttle {
    /// A throttle with this delay scale and allowlist.
    pub fn new(scale: f64, allowlist: Vec<Subnet>) -> Throttle {
        Throttle {
            inner: Mutex::new(Inner {
                failures: Vec::new(),
                allowlist,
                scale,
                clock_offset: Duration::ZERO,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The delay scale.
    pub fn scale(&self) -> f64 {
        self.lock().scale
    }

    /// Sets the delay scale (a finite number ≥ 0).
    pub fn set_scale(&self, scale: f64) {
        self.lock().scale = scale;
    }

    /// The allowlist.
    pub fn allowlist(&self) -> Vec<Subnet> {
        self.lock().allowlist.clone()
    }

    /// Replaces the allowlist.
    pub fn set_allowlist(&self, allowlist: Vec<Subnet>) {
        self.lock().allowlist = allowlist;
    }

    /// Moves the stand-in's clock forward (for the 30-minute and 12-hour windows).
    pub fn advance_clock(&self, by: Duration) {
        let mut inner = self.lock();
        inner.clock_offset = inner.clock_offset.saturating_add(by);
    }

    fn now(inner: &Inner) -> Instant {
        Instant::now() + inner.clock_offset
    }

    fn allowed(inner: &Inner, ip: IpAddr) -> bool {
        inner.allowlist.iter().any(|net| net.contains(ip))
    }

    fn count(inner: &Inner, bucket: &str, window: Duration) -> usize {
        let now = Self::now(inner);
        inner
            .failures
            .iter()
            .filter(|f| f.bucket == bucket && now.saturating_duration_since(f.at) < window)
            .count()
    }

    /// Recent failures counted against `ip` (0 for allowlisted addresses).
    #[cfg(test)]
    pub fn failures(&self, ip: IpAddr) -> usize {
        let inner = self.lock();
        if Self::allowed(&inner, ip) {
            return 0;
        }
        Self::count(&inner, &bucket_of(ip), LOOK_BACK)
    }

    /// The gate for a request from `ip`.
    pub fn gate(&self, ip: IpAddr) -> Gate {
        let inner = self.lock();
        if Self::allowed(&inner, ip) {
            return Gate::Wait(Duration::ZERO);
        }
        let bucket = bucket_of(ip);
        let delay = delay_for(Self::count(&inner, &bucket, LOOK_BACK));
        if delay == MAX_DELAY && Self::count(&inner, &bucket, BLOCK_WINDOW) > MAX_ATTEMPTS {
            return Gate::Blocked;
        }
        Gate::Wait(delay.mul_f64(inner.scale))
    }

    /// Records a failed login by `login` from `ip`; returns the scaled
    /// delay the failure itself then sleeps if the request did not sleep
    /// before (zero otherwise, and for allowlisted addresses).
    pub fn fail(&self, ip: IpAddr, login: &str, slept_before: bool) -> Duration {
        let mut inner = self.lock();
        let at = Self::now(&inner);
        let bucket = bucket_of(ip);
        inner
            .failures
            .retain(|f| at.saturating_duration_since(f.at) < LOOK_BACK);
        inner.failures.push(Failure {
            bucket: bucket.clone(),
            login: login.to_owned(),
            at,
        });
        if slept_before || Self::allowed(&inner, ip) {
            return Duration::ZERO;
        }
        delay_for(Self::count(&inner, &bucket, LOOK_BACK)).mul_f64(inner.scale)
    }

    /// A successful login of `uid` (logged in as `login`) from `ip`: forgets
    /// that user's failures from that address, and no others.
    pub fn succeed(&self, ip: IpAddr, login: &str, uid: &str) {
        let mut inner = self.lock();
        if Self::allowed(&inner, ip) {
            return;
        }
        let bucket = bucket_of(ip);
        inner
            .failures
            .retain(|f| f.bucket != bucket || (f.login != login && f.login != uid));
    }

    /// Clears the bucket of `ip` (`occ security:bruteforce:reset IP`), or
    /// every bucket; returns how many failures were dropped.
    pub fn reset(&self, ip: Option<IpAddr>) -> usize {
        let mut inner = self.lock();
        let before = inner.failures.len();
        match ip {
            Some(ip) => {
                let bucket = bucket_of(ip);
                inner.failures.retain(|f| f.bucket != bucket);
            }
            None => inner.failures.clear(),
        }
        before - inner.failures.len()
    }

    /// `{bucket: recent failures}` for the stats.
    pub fn summary(&self) -> serde_json::Value {
        let inner = self.lock();
        let mut map = serde_json::Map::new();
        for failure in &inner.failures {
            if !map.contains_key(&failure.bucket) {
                let n = Self::count(&inner, &failure.bucket, LOOK_BACK);
                if n > 0 {
                    map.insert(failure.bucket.clone(), n.into());
                }
            }
        }
        serde_json::Value::Object(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn delays_follow_the_measured_table() {
        let ms: Vec<u128> = (0..12).map(|n| delay_for(n).as_millis()).collect();
        assert_eq!(
            ms,
            [0, 200, 400, 800, 1600, 3200, 6400, 12800, 25000, 25000, 25000, 25000]
        );
    }

    #[test]
    fn eleven_failures_block() {
        let t = Throttle::new(1.0, vec![]);
        // the first failure sleeps afterwards, the others before
        assert_eq!(t.gate(LOCAL), Gate::Wait(Duration::ZERO));
        assert_eq!(t.fail(LOCAL, "u0", false), Duration::from_millis(200));
        for n in 1..11 {
            assert_eq!(t.gate(LOCAL), Gate::Wait(delay_for(n)));
            assert_eq!(t.fail(LOCAL, &format!("u{n}"), true), Duration::ZERO);
        }
        assert_eq!(t.gate(LOCAL), Gate::Blocked);
        // after 30 minutes: no longer blocked, still delayed
        t.advance_clock(BLOCK_WINDOW);
        assert_eq!(t.gate(LOCAL), Gate::Wait(MAX_DELAY));
        t.advance_clock(LOOK_BACK);
        assert_eq!(t.gate(LOCAL), Gate::Wait(Duration::ZERO));
    }

    #[test]
    fn success_clears_only_that_user() {
        let t = Throttle::new(0.5, vec![]);
        t.fail(LOCAL, "alice", false);
        t.fail(LOCAL, "bob", true);
        t.fail(LOCAL, "alice", true);
        assert_eq!(t.failures(LOCAL), 3);
        t.succeed(LOCAL, "alice", "alice");
        assert_eq!(t.failures(LOCAL), 1);
        assert_eq!(t.gate(LOCAL), Gate::Wait(Duration::from_millis(100)));
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        t.fail(other, "x", false);
        assert_eq!(t.reset(Some(LOCAL)), 1);
        assert_eq!(t.failures(other), 1);
        assert_eq!(t.reset(None), 1);
    }

    #[test]
    fn allowlist_and_subnets() {
        let net = Subnet::parse("127.0.0.0/8").unwrap();
        assert!(net.contains("127.1.2.3".parse().unwrap()));
        assert!(net.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!net.contains("::1".parse().unwrap()));
        assert!(Subnet::parse("::1")
            .unwrap()
            .contains("::1".parse().unwrap()));
        assert!(Subnet::parse("1.2.3.4/33").is_err());
        assert!(Subnet::parse("nonsense").is_err());
        let t = Throttle::new(1.0, vec![Subnet::parse("127.0.0.1/32").unwrap()]);
        for n in 0..20 {
            assert_eq!(t.fail(LOCAL, &format!("u{n}"), false), Duration::ZERO);
        }
        assert_eq!(t.gate(LOCAL), Gate::Wait(Duration::ZERO));
        assert_eq!(t.failures(LOCAL), 0);
    }

    #[test]
    fn ipv6_buckets_are_slash_56() {
        let a: IpAddr = "2001:db8:0:ab01::1".parse().unwrap();
        let b: IpAddr = "2001:db8:0:abff::2".parse().unwrap();
        let c: IpAddr = "2001:db8:0:ac00::1".parse().unwrap();
        assert_eq!(bucket_of(a), bucket_of(b));
        assert_ne!(bucket_of(a), bucket_of(c));
        assert_eq!(bucket_of("::ffff:10.0.0.1".parse().unwrap()), "10.0.0.1");
    }
}
