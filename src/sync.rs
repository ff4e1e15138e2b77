//! Locks that survive a panic elsewhere.
//!
//! Every critical section in xcauth is short and leaves its data whole
//! at each step (one assignment, one insert, a rusqlite transaction that
//! rolls back when dropped), so a lock poisoned by a panicking thread
//! still guards usable data: the next caller takes it over rather than
//! turning one panic into many.

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, taking it over if a panicking thread poisoned it.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
