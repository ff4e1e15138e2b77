//! Giving memory back to the system once a flood is over. glibc keeps what
//! its per-thread arenas freed for reuse, so after a thousand connections
//! held tens of megabytes between them the process would stay that large
//! until the next flood; `malloc_trim(3)` returns the free pages.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::budget::{process_held, PROCESS_BYTE_BUDGET};

/// Streams held this much at once: a flood, worth trimming after.
const FLOOD_BYTES: usize = PROCESS_BYTE_BUDGET / 4;
/// Streams hold no more than this again: the flood is over.
const CALM_BYTES: usize = PROCESS_BYTE_BUDGET / 64;

/// Bytes the streams held at a flood's peak, or at the last trim after
/// it; 0 when there is nothing to trim. A flood's connections may take a
/// while to go (each finishes the request it has started), so the heap is
/// trimmed each time what they hold has fallen to a quarter, and a last
/// time once it is calm.
static LEVEL: AtomicUsize = AtomicUsize::new(0);

/// Called whenever a stream's share changed: notes a flood, and trims the
/// heap on the blocking pool as it subsides.
pub(super) fn after_change() {
    let held = process_held();
    let level = LEVEL.load(Ordering::Relaxed);
    if held >= FLOOD_BYTES && held > level {
        LEVEL.fetch_max(held, Ordering::Relaxed);
    } else if level > 0 && held <= level / 4 {
        let next = if held <= CALM_BYTES { 0 } else { held };
        let ours = LEVEL
            .compare_exchange(level, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok();
        if ours {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn_blocking(release_free_memory);
            }
        }
    }
}

/// Returns the free pages of every malloc arena to the system.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_free_memory() {
    // SAFETY: malloc_trim only walks and releases malloc's own free lists,
    // under malloc's own locks; it takes no pointer and cannot invalidate
    // any allocation.
    #[allow(unsafe_code)]
    let released = unsafe { libc::malloc_trim(0) };
    tracing::debug!(
        "a flood subsides: free memory {} to the system",
        if released == 1 {
            "returned"
        } else {
            "was not there to return"
        }
    );
}

/// Other C libraries return freed memory themselves (or cannot be asked).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_memory() {}
