//! What streams hold in memory: each stream's byte budget, and the one
//! budget that all streams of the process share, so that a thousand
//! clients that pipeline without reading cannot each fill their own.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::BytesMut;

use super::STREAM_BYTE_BUDGET;

/// Bytes all streams of a process may hold at once (buffered requests,
/// answers not yet written, and the buffers' spare room). Past it, a stream
/// that already has work in flight stops reading until its answers drain;
/// a stream with nothing in flight may still read and start a request, so
/// quiet clients are served during a flood. Peak memory is therefore about
/// this plus one read buffer per open connection.
pub const PROCESS_BYTE_BUDGET: usize = 64 * 1024 * 1024;

/// A buffer larger than this is given back once it is empty, so that a
/// burst does not leave every connection holding its largest buffer.
pub const KEPT_BUFFER_BYTES: usize = 64 * 1024;

/// Bytes held by every stream of the process. One counter per process: it
/// is the process's memory that the budget bounds, whichever socket or
/// stream the bytes belong to.
static PROCESS_HELD: AtomicUsize = AtomicUsize::new(0);

/// Bytes the streams of this process hold now.
pub fn process_held() -> usize {
    PROCESS_HELD.load(Ordering::Relaxed)
}

/// What one stream holds, for its own budget and the process's.
#[derive(Default)]
pub(super) struct Budget {
    /// Bytes of answers finished but not yet encoded (set by the request
    /// futures as they finish).
    pub finished: Arc<AtomicUsize>,
    /// Roster requests started and not yet answered.
    pub rosters: usize,
    /// Over budget when last looked (logged once per crossing).
    pub over: bool,
    /// Bytes of each request in the making, in request order (answers are
    /// taken in that order).
    working: VecDeque<usize>,
    /// Their sum.
    working_bytes: usize,
    /// This stream's share of [`PROCESS_HELD`].
    counted: usize,
}

impl Budget {
    /// Whether a new request may start, given what is buffered; `idle`
    /// when the stream has nothing in flight (and, with `output` empty,
    /// may then start one request whatever the process holds).
    pub fn has_room(&mut self, input: &BytesMut, output: &BytesMut, idle: bool) -> bool {
        let held = self.finished.load(Ordering::Relaxed) + self.working_bytes;
        self.count(input.capacity() + output.capacity() + held);
        input.len() + output.len() + held < STREAM_BYTE_BUDGET
            && ((idle && output.is_empty()) || process_held() < PROCESS_BYTE_BUDGET)
    }

    /// Counts a request started whose future holds `bytes`.
    pub fn started(&mut self, bytes: usize) {
        self.working.push_back(bytes);
        self.working_bytes += bytes;
    }

    /// Forgets the oldest request started: its answer was taken.
    pub fn answered(&mut self) {
        if let Some(bytes) = self.working.pop_front() {
            self.working_bytes -= bytes;
        }
    }

    /// Sets this stream's share of the process's bytes to `held`.
    fn count(&mut self, held: usize) {
        if held > self.counted {
            PROCESS_HELD.fetch_add(held - self.counted, Ordering::Relaxed);
        } else {
            PROCESS_HELD.fetch_sub(self.counted - held, Ordering::Relaxed);
        }
        self.counted = held;
        super::trim::after_change();
    }
}

impl Drop for Budget {
    fn drop(&mut self) {
        PROCESS_HELD.fetch_sub(self.counted, Ordering::Relaxed);
        super::trim::after_change();
    }
}

/// Gives back the memory of an empty buffer grown past
/// [`KEPT_BUFFER_BYTES`], keeping `keep` bytes of room.
pub fn shrink_if_empty(buffer: &mut BytesMut, keep: usize) {
    if buffer.is_empty() && buffer.capacity() > KEPT_BUFFER_BYTES {
        *buffer = BytesMut::with_capacity(keep);
    }
}
