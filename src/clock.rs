//! Time as an input: the decision asks a [`Clock`] for "now" once per
//! request, so tests can fix it and long-running processes never use a
//! stale start-up time.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Source of the current time in whole seconds since the Unix epoch.
pub trait Clock: Send + Sync {
    /// Seconds since 1970-01-01 00:00:00 UTC.
    fn now(&self) -> i64;
}

/// The real wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            Err(_) => 0,
        }
    }
}

/// A clock that says what it is told; for tests and the reference timeline.
#[derive(Debug, Default)]
pub struct FixedClock(AtomicI64);

impl FixedClock {
    /// A clock standing at `t`.
    pub fn new(t: i64) -> Self {
        FixedClock(AtomicI64::new(t))
    }

    /// Moves the clock to `t`.
    pub fn set(&self, t: i64) {
        self.0.store(t, Ordering::SeqCst);
    }
}

impl Clock for FixedClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}
