//! What the guard counts, as pure functions both stores share: one attempt is weighed against a key's failures and the attempts still in flight, and is either refused or reserved in the same atomic step.

use super::{GuardSettings, Scope};

/// How long an attempt reserved and never settled (its process died while
/// the back end was asked) keeps counting, seconds. Longer than any back-end
/// request may take, short against the windows.
pub const RESERVATION_HOLD: i64 = 300;

/// One counted entry of a key: a failed login, or an attempt in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// Hex of the keyed digest of account and password.
    pub digest: String,
    /// When it failed, or when the attempt was reserved.
    pub at: i64,
    /// True for an attempt still in flight.
    pub pending: bool,
}

/// One login about to ask the back end, as a store weighs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// Keyed digest of the account and the password.
    pub digest: String,
    /// The canonical account ([`super::account`]).
    pub account: String,
    /// The client address counted, when there is one and it is not on the
    /// allowlist.
    pub address: Option<String>,
    /// The time of the request.
    pub now: i64,
}

impl Attempt {
    /// Until when a reservation of this attempt counts if never settled.
    pub fn hold_until(&self) -> i64 {
        self.now + RESERVATION_HOLD
    }

    /// The keys the attempt counts under: its account and, when one
    /// counts, its address.
    pub fn keys(&self) -> impl Iterator<Item = (Scope, &str)> {
        std::iter::once((Scope::Jid, self.account.as_str()))
            .chain(self.address.as_deref().map(|a| (Scope::Address, a)))
    }

    /// The oldest failure time any rule looks at.
    pub fn since(&self, settings: &GuardSettings) -> i64 {
        let longest = settings
            .negative_ttl
            .max(settings.jid_window)
            .max(settings.address_window);
        self.now - longest + 1
    }
}

/// What a store decided for one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assessment {
    /// Ask the back end; the attempt is reserved.
    Ask,
    /// This password failed for this account within the negative TTL.
    KnownWrong,
    /// The key of `scope` has its limit of distinct failures and attempts
    /// in flight, until `until`.
    Limited {
        /// Which counter.
        scope: Scope,
        /// The end of the block.
        until: i64,
    },
}

impl Assessment {
    /// How strict: a refusal beats asking; of two blocks, the longer.
    fn rank(&self) -> (u8, i64) {
        match self {
            Assessment::Ask => (0, 0),
            Assessment::KnownWrong => (1, 0),
            Assessment::Limited { until, .. } => (2, *until),
        }
    }

    /// The stricter of two assessments.
    pub fn stricter(self, other: Assessment) -> Assessment {
        if other.rank() > self.rank() {
            other
        } else {
            self
        }
    }
}

/// The time of the first mark of each distinct digest, oldest first: what
/// the limits count (repeating one wrong password is not guessing).
pub fn distinct_times<'a>(marks: impl IntoIterator<Item = (&'a str, i64)>) -> Vec<i64> {
    let mut sorted: Vec<(&str, i64)> = marks.into_iter().collect();
    sorted.sort_by_key(|(_, at)| *at);
    let mut seen = std::collections::HashSet::new();
    sorted
        .into_iter()
        .filter(|(digest, _)| seen.insert(*digest))
        .map(|(_, at)| at)
        .collect()
}

/// With `times` from [`distinct_times`] (those within the window), the
/// end of the block once `limit` of them are there: when the limit-th
/// newest leaves the window.
pub fn blocked_until(times: &[i64], limit: u32, window: i64) -> Option<i64> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    (limit > 0 && times.len() >= limit).then(|| times[times.len() - limit] + window)
}

/// The block of one key: its failures within `window` and every attempt in
/// flight, counted by distinct digest.
fn limited(marks: &[Mark], limit: u32, window: i64, now: i64) -> Option<i64> {
    if limit == 0 || window <= 0 {
        return None;
    }
    let since = now - window + 1;
    let counted = marks
        .iter()
        .filter(|m| m.pending || m.at >= since)
        .map(|m| (m.digest.as_str(), m.at));
    blocked_until(&distinct_times(counted), limit, window).map(|until| until.max(now + 1))
}

/// Weighs `attempt` against the marks of its account (`jid`) and of its
/// address (`address`, empty without one). The caller holds whatever
/// makes this and the reservation that follows an [`Assessment::Ask`] one
/// atomic step (a transaction, a lock).
pub fn assess(
    settings: &GuardSettings,
    attempt: &Attempt,
    jid: &[Mark],
    address: &[Mark],
) -> Assessment {
    let now = attempt.now;
    if settings.negative_ttl > 0 {
        let since = now - settings.negative_ttl + 1;
        if jid
            .iter()
            .any(|m| !m.pending && m.at >= since && m.digest == attempt.digest)
        {
            return Assessment::KnownWrong;
        }
    }
    if let Some(until) = limited(jid, settings.jid_failures, settings.jid_window, now) {
        return Assessment::Limited {
            scope: Scope::Jid,
            until,
        };
    }
    if attempt.address.is_some() {
        let (limit, window) = (settings.address_failures, settings.address_window);
        if let Some(until) = limited(address, limit, window, now) {
            return Assessment::Limited {
                scope: Scope::Address,
                until,
            };
        }
    }
    Assessment::Ask
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(digest: &str, at: i64, pending: bool) -> Mark {
        Mark {
            digest: digest.into(),
            at,
            pending,
        }
    }

    fn attempt(digest: &str, now: i64) -> Attempt {
        Attempt {
            digest: digest.into(),
            account: "a@d".into(),
            address: Some("192.0.2.1".into()),
            now,
        }
    }

    #[test]
    fn attempts_in_flight_count_like_failures() {
        let s = GuardSettings::default();
        let marks: Vec<Mark> = (0..10).map(|i| mark(&format!("d{i}"), 100, true)).collect();
        assert!(matches!(
            assess(&s, &attempt("new", 100), &marks, &[]),
            Assessment::Limited {
                scope: Scope::Jid,
                ..
            }
        ));
        assert_eq!(
            assess(&s, &attempt("new", 100), &marks[..9], &[]),
            Assessment::Ask
        );
    }

    #[test]
    fn the_same_password_in_flight_twice_counts_once() {
        let s = GuardSettings::default();
        let mut marks: Vec<Mark> = (0..9).map(|i| mark(&format!("d{i}"), 5, false)).collect();
        marks.push(mark("x", 6, true));
        marks.push(mark("x", 6, true));
        assert!(matches!(
            assess(&s, &attempt("y", 7), &marks, &[]),
            Assessment::Limited { .. }
        ));
        marks.pop();
        marks.pop();
        assert_eq!(assess(&s, &attempt("y", 7), &marks, &[]), Assessment::Ask);
    }

    #[test]
    fn a_pending_mark_is_never_known_wrong() {
        let s = GuardSettings::default();
        assert_eq!(
            assess(&s, &attempt("x", 7), &[mark("x", 6, true)], &[]),
            Assessment::Ask
        );
        assert_eq!(
            assess(&s, &attempt("x", 7), &[mark("x", 6, false)], &[]),
            Assessment::KnownWrong
        );
    }

    #[test]
    fn addresses_count_only_with_an_address() {
        let s = GuardSettings {
            address_failures: 2,
            ..GuardSettings::default()
        };
        let marks = [mark("a", 1, false), mark("b", 2, true)];
        assert!(matches!(
            assess(&s, &attempt("c", 3), &[], &marks),
            Assessment::Limited {
                scope: Scope::Address,
                ..
            }
        ));
        let mut without = attempt("c", 3);
        without.address = None;
        assert_eq!(assess(&s, &without, &[], &marks), Assessment::Ask);
    }

    #[test]
    fn the_stricter_assessment_wins() {
        let block = Assessment::Limited {
            scope: Scope::Jid,
            until: 9,
        };
        assert_eq!(Assessment::Ask.stricter(block), block);
        assert_eq!(block.stricter(Assessment::Ask), block);
        assert_eq!(
            Assessment::KnownWrong.stricter(Assessment::Ask),
            Assessment::KnownWrong
        );
    }
}
