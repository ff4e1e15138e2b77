//! The one bcrypt pool of the process: a few threads, as many as there are
//! cores, run every bcrypt hash and check, answer-path checks ahead of
//! background cache writes, each queue with its own bound.
//!
//! A cost-12 check takes hundreds of milliseconds, so after a restart (memo
//! cold) a crowd of cached logins would otherwise queue for seconds or
//! minutes. The pool therefore knows how long a new check would wait
//! ([`BcryptPool::estimated_wait`]: the queued work times the measured cost
//! of a unit, over the workers), and the decision (`verify`) may ask the
//! back end instead while the pool is [saturated](BcryptPool::saturated).
//! A background write that cannot start within [`BACKGROUND_START_WITHIN`]
//! (or finds its queue full) is dropped and counted: the cache is only an
//! accelerator and an outage fallback, never worth an unbounded queue.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tracing::debug;

use crate::secret::Secret;
use crate::sync::lock;

/// At most this many answer-path checks wait for a worker; one more is
/// refused at once ([`PoolError::Full`]), so a flood of logins cannot
/// grow the queue without limit. Each waiting check holds one password
/// and one hash (a few hundred bytes).
pub const ANSWER_QUEUE: usize = 4096;

/// At most this many background jobs (cache writes) wait for a worker; one
/// more is dropped at once.
pub const BACKGROUND_QUEUE: usize = 1024;

/// A background job that has not started this long after it was queued is
/// dropped (counted in [`PoolStats::dropped_writes`], logged at debug).
pub const BACKGROUND_START_WITHIN: Duration = Duration::from_secs(5);

/// The pool counts as saturated when a new answer-path check would wait
/// longer than this for a worker.
pub const SATURATED_AFTER: Duration = Duration::from_secs(1);

/// At most this many worker threads, however many cores there are.
pub const MAX_WORKERS: usize = 64;

/// The cost of one unit of bcrypt work (one round of the key schedule,
/// 2^cost per hash) assumed until something was measured: about 250 ms
/// for cost 12 on a modest core, so that a crowd arriving before the
/// first check ends is already seen as one.
const ASSUMED_NANOS_PER_UNIT: u64 = 60_000;

/// The cost at which a pool that calibrates ([`Limits::calibrate`]) times
/// one hash when it starts (a few milliseconds), so that the first crowd
/// is judged by this machine's speed and load rather than the assumption.
const CALIBRATION_COST: u32 = 6;

/// How much the measured cost per unit follows the latest job: 1/4.
const MEASURE_WEIGHT: u64 = 4;

/// Which queue a job waits in; [`Priority::Answer`] jobs always start
/// first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// A check someone is waiting for (a login answer, or the deletion of
    /// a credential the back end rejected).
    Answer,
    /// A cache write after the answer; dropped rather than delayed long.
    Background,
}

impl Priority {
    /// Its label in the metrics (`xcauth_bcrypt_*{priority=...}`).
    pub fn label(self) -> &'static str {
        match self {
            Priority::Answer => "login",
            Priority::Background => "write",
        }
    }
}

/// Why a job did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// Its queue was full.
    #[error("the bcrypt queue is full")]
    Full,
    /// A background job could not start within [`BACKGROUND_START_WITHIN`].
    #[error("the bcrypt job could not start in time")]
    Late,
    /// The job panicked or the pool stopped.
    #[error("the bcrypt job failed")]
    Lost,
}

/// The numbers of a pool, for monitoring: gauges (queued, running) as of
/// now, counters since the pool started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    /// Worker threads.
    pub workers: usize,
    /// Answer-path checks waiting for a worker.
    pub queued_answer: usize,
    /// Background jobs waiting for a worker.
    pub queued_background: usize,
    /// Jobs running now.
    pub running: usize,
    /// Jobs started so far.
    pub started: u64,
    /// Time jobs spent waiting for a worker, summed over all started jobs.
    pub total_wait: Duration,
    /// The longest any started job waited for a worker.
    pub max_wait: Duration,
    /// Background jobs dropped (queue full, or not started in time).
    pub dropped_writes: u64,
    /// Answer-path checks refused because their queue was full.
    pub refused_checks: u64,
    /// Logins that asked the back end instead of waiting for the pool.
    pub bypasses: u64,
    /// How long a new answer-path check would wait now.
    pub estimated_wait: Duration,
}

/// Limits of a pool; [`Limits::default`] holds the named constants.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// See [`ANSWER_QUEUE`].
    pub answer_queue: usize,
    /// See [`BACKGROUND_QUEUE`].
    pub background_queue: usize,
    /// See [`BACKGROUND_START_WITHIN`].
    pub background_start_within: Duration,
    /// See [`SATURATED_AFTER`].
    pub saturated_after: Duration,
    /// Time one small hash when the pool starts, instead of assuming a
    /// cost until the first job is measured.
    pub calibrate: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            answer_queue: ANSWER_QUEUE,
            background_queue: BACKGROUND_QUEUE,
            background_start_within: BACKGROUND_START_WITHIN,
            saturated_after: SATURATED_AFTER,
            calibrate: true,
        }
    }
}

type Work = Box<dyn FnOnce() + Send>;

struct Job {
    work: Work,
    priority: Priority,
    units: u64,
    queued_at: Instant,
}

#[derive(Default)]
struct Queues {
    answer: VecDeque<Job>,
    background: VecDeque<Job>,
    stopping: bool,
}

struct Inner {
    limits: Limits,
    workers: usize,
    queues: Mutex<Queues>,
    ready: Condvar,
    queued_answer: AtomicUsize,
    queued_background: AtomicUsize,
    /// Units of the queued answer-path jobs (what a new one waits for).
    queued_answer_units: AtomicU64,
    /// Units of the jobs running now (a new job may wait for them too).
    running_units: AtomicU64,
    running: AtomicUsize,
    started: AtomicU64,
    total_wait_nanos: AtomicU64,
    max_wait_nanos: AtomicU64,
    dropped_writes: AtomicU64,
    refused_checks: AtomicU64,
    bypasses: AtomicU64,
    nanos_per_unit: AtomicU64,
    stopped: AtomicBool,
}

/// The bcrypt pool. Dropping the last handle stops its threads once the
/// queued jobs are done.
pub struct BcryptPool {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for BcryptPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BcryptPool")
            .field("stats", &self.stats())
            .finish()
    }
}

/// Units of work of a bcrypt hash of `cost` (2^cost rounds).
pub fn units(cost: u32) -> u64 {
    1u64 << cost.min(40)
}

/// Threads for this machine: one per core (as far as the process may use
/// them), at least one, at most [`MAX_WORKERS`].
pub fn workers_for_cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, MAX_WORKERS)
}

impl BcryptPool {
    /// The process's pool, sized to the cores, started on first use. The
    /// cache uses it; monitoring reads its [`stats`](Self::stats).
    pub fn shared() -> Arc<BcryptPool> {
        static SHARED: OnceLock<Arc<BcryptPool>> = OnceLock::new();
        Arc::clone(SHARED.get_or_init(|| {
            let pool = Arc::new(BcryptPool::new(workers_for_cores(), Limits::default()));
            // The metrics read the numbers at each scrape: atomics only.
            let watched = Arc::downgrade(&pool);
            crate::metrics::set_bcrypt_source(Box::new(move || {
                let stats = watched
                    .upgrade()
                    .map(|pool| pool.stats())
                    .unwrap_or_default();
                crate::metrics::BcryptStats {
                    queued: vec![
                        (Priority::Answer.label(), stats.queued_answer as u64),
                        (Priority::Background.label(), stats.queued_background as u64),
                    ],
                    dropped_writes: stats.dropped_writes,
                    bypasses: stats.bypasses,
                }
            }));
            pool
        }))
    }

    /// A pool of `workers` threads (at least one, at most [`MAX_WORKERS`])
    /// under `limits`.
    pub fn new(workers: usize, limits: Limits) -> BcryptPool {
        let workers = workers.clamp(1, MAX_WORKERS);
        let inner = Arc::new(Inner {
            limits,
            workers,
            queues: Mutex::new(Queues::default()),
            ready: Condvar::new(),
            queued_answer: AtomicUsize::new(0),
            queued_background: AtomicUsize::new(0),
            queued_answer_units: AtomicU64::new(0),
            running_units: AtomicU64::new(0),
            running: AtomicUsize::new(0),
            started: AtomicU64::new(0),
            total_wait_nanos: AtomicU64::new(0),
            max_wait_nanos: AtomicU64::new(0),
            dropped_writes: AtomicU64::new(0),
            refused_checks: AtomicU64::new(0),
            bypasses: AtomicU64::new(0),
            nanos_per_unit: AtomicU64::new(ASSUMED_NANOS_PER_UNIT),
            stopped: AtomicBool::new(false),
        });
        for i in 0..workers {
            let inner = Arc::clone(&inner);
            let calibrate = i == 0 && limits.calibrate;
            let spawned = std::thread::Builder::new()
                .name(format!("xcauth-bcrypt-{i}"))
                .spawn(move || {
                    if calibrate {
                        inner.calibrate();
                    }
                    inner.work()
                });
            if let Err(e) = spawned {
                // The threads already started do the work; with none at
                // all, every job ends as `Lost` (the login fails closed).
                tracing::error!("cannot start a bcrypt thread: {e}");
            }
        }
        BcryptPool { inner }
    }

    /// Checks `password` against the bcrypt hash `pwhash`: `Ok(Err(_))`
    /// when the hash is unusable.
    pub async fn verify(
        &self,
        priority: Priority,
        password: &Secret,
        pwhash: &str,
    ) -> Result<Result<bool, bcrypt::BcryptError>, PoolError> {
        let cost = pwhash.get(4..6).and_then(|c| c.parse().ok()).unwrap_or(0);
        let (password, pwhash) = (password.clone(), pwhash.to_owned());
        self.run(priority, units(cost), move || {
            bcrypt::verify(password.expose(), &pwhash)
        })
        .await
    }

    /// A new bcrypt hash of `password` at cost `rounds`.
    pub async fn hash(
        &self,
        priority: Priority,
        password: &Secret,
        rounds: u32,
    ) -> Result<Result<String, bcrypt::BcryptError>, PoolError> {
        let password = password.clone();
        self.run(priority, units(rounds), move || {
            bcrypt::hash(password.expose(), rounds)
        })
        .await
    }

    /// Runs `work` (about `units` of bcrypt work) on a worker when its
    /// turn comes.
    pub async fn run<T, F>(&self, priority: Priority, units: u64, work: F) -> Result<T, PoolError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let work: Work = Box::new(move || {
            let _ = tx.send(work());
        });
        self.inner.submit(priority, units, work)?;
        // The sender goes without a value when the job is dropped late or
        // panics.
        rx.await.map_err(|_| {
            if priority == Priority::Background {
                PoolError::Late
            } else {
                PoolError::Lost
            }
        })
    }

    /// How long an answer-path check queued now would wait for a worker:
    /// the queued answer-path work and the work running now, times the
    /// measured cost of a unit, over the workers.
    pub fn estimated_wait(&self) -> Duration {
        let inner = &self.inner;
        let units = inner
            .queued_answer_units
            .load(Ordering::Relaxed)
            .saturating_add(inner.running_units.load(Ordering::Relaxed));
        let per_unit = inner.nanos_per_unit.load(Ordering::Relaxed);
        let nanos = units.saturating_mul(per_unit) / inner.workers as u64;
        Duration::from_nanos(nanos)
    }

    /// True when a new answer-path check would wait longer than the
    /// saturation bound ([`SATURATED_AFTER`]).
    pub fn saturated(&self) -> bool {
        self.estimated_wait() > self.inner.limits.saturated_after
    }

    /// Counts a login that asked the back end instead of waiting.
    pub fn note_bypass(&self) {
        self.inner.bypasses.fetch_add(1, Ordering::Relaxed);
    }

    /// The pool's numbers now.
    pub fn stats(&self) -> PoolStats {
        let i = &self.inner;
        PoolStats {
            workers: i.workers,
            queued_answer: i.queued_answer.load(Ordering::Relaxed),
            queued_background: i.queued_background.load(Ordering::Relaxed),
            running: i.running.load(Ordering::Relaxed),
            started: i.started.load(Ordering::Relaxed),
            total_wait: Duration::from_nanos(i.total_wait_nanos.load(Ordering::Relaxed)),
            max_wait: Duration::from_nanos(i.max_wait_nanos.load(Ordering::Relaxed)),
            dropped_writes: i.dropped_writes.load(Ordering::Relaxed),
            refused_checks: i.refused_checks.load(Ordering::Relaxed),
            bypasses: i.bypasses.load(Ordering::Relaxed),
            estimated_wait: self.estimated_wait(),
        }
    }
}

impl Drop for BcryptPool {
    fn drop(&mut self) {
        self.inner.stopped.store(true, Ordering::Relaxed);
        self.inner.lock().stopping = true;
        self.inner.ready.notify_all();
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queues> {
        // Jobs run outside the lock; a panic inside it cannot leave the
        // queues half changed.
        lock(&self.queues)
    }

    fn submit(&self, priority: Priority, units: u64, work: Work) -> Result<(), PoolError> {
        let job = Job {
            work,
            priority,
            units,
            queued_at: Instant::now(),
        };
        let mut queues = self.lock();
        if queues.stopping {
            return Err(PoolError::Lost);
        }
        match priority {
            Priority::Answer => {
                if queues.answer.len() >= self.limits.answer_queue {
                    self.refused_checks.fetch_add(1, Ordering::Relaxed);
                    return Err(PoolError::Full);
                }
                queues.answer.push_back(job);
                self.queued_answer.fetch_add(1, Ordering::Relaxed);
                self.queued_answer_units.fetch_add(units, Ordering::Relaxed);
            }
            Priority::Background => {
                self.drop_late(&mut queues);
                if queues.background.len() >= self.limits.background_queue {
                    self.dropped_writes.fetch_add(1, Ordering::Relaxed);
                    debug!("bcrypt pool: background queue full; cache write dropped");
                    return Err(PoolError::Full);
                }
                queues.background.push_back(job);
                self.queued_background.fetch_add(1, Ordering::Relaxed);
            }
        }
        drop(queues);
        self.ready.notify_one();
        Ok(())
    }

    /// Drops the background jobs that waited too long (the oldest are in
    /// front).
    fn drop_late(&self, queues: &mut Queues) {
        let limit = self.limits.background_start_within;
        while queues
            .background
            .front()
            .is_some_and(|job| job.queued_at.elapsed() >= limit)
        {
            let late = queues.background.pop_front();
            self.queued_background.fetch_sub(1, Ordering::Relaxed);
            self.dropped_writes.fetch_add(1, Ordering::Relaxed);
            // Counted first: dropping the job is what tells its caller.
            drop(late);
            debug!("bcrypt pool: cache write not started within {limit:?}; dropped");
        }
    }

    /// The next job, answer-path first; `None` once the pool stops and the
    /// queues are empty.
    fn next(&self) -> Option<Job> {
        let mut queues = self.lock();
        loop {
            if let Some(job) = queues.answer.pop_front() {
                self.queued_answer.fetch_sub(1, Ordering::Relaxed);
                self.queued_answer_units
                    .fetch_sub(job.units, Ordering::Relaxed);
                return Some(job);
            }
            self.drop_late(&mut queues);
            if let Some(job) = queues.background.pop_front() {
                self.queued_background.fetch_sub(1, Ordering::Relaxed);
                return Some(job);
            }
            if queues.stopping {
                return None;
            }
            queues = self.ready.wait(queues).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn work(&self) {
        while let Some(job) = self.next() {
            let waited_for = job.queued_at.elapsed();
            crate::metrics::bcrypt_wait(job.priority.label(), waited_for);
            let waited = saturating_nanos(waited_for);
            self.total_wait_nanos.fetch_add(waited, Ordering::Relaxed);
            self.max_wait_nanos.fetch_max(waited, Ordering::Relaxed);
            self.started.fetch_add(1, Ordering::Relaxed);
            self.running.fetch_add(1, Ordering::Relaxed);
            self.running_units.fetch_add(job.units, Ordering::Relaxed);
            let began = Instant::now();
            // A panicking job loses its answer (the caller sees `Lost`),
            // not the thread.
            let _ = catch_unwind(AssertUnwindSafe(job.work));
            let took = saturating_nanos(began.elapsed());
            self.running.fetch_sub(1, Ordering::Relaxed);
            self.running_units.fetch_sub(job.units, Ordering::Relaxed);
            self.measure(took, job.units);
        }
    }

    /// Times one hash at [`CALIBRATION_COST`] as the first measurement.
    fn calibrate(&self) {
        let began = Instant::now();
        if bcrypt::hash("calibration", CALIBRATION_COST).is_ok() {
            let per_unit = saturating_nanos(began.elapsed()) / units(CALIBRATION_COST);
            self.nanos_per_unit
                .store(per_unit.max(1), Ordering::Relaxed);
        }
    }

    /// Moves the cost per unit towards what the last job took.
    fn measure(&self, nanos: u64, units: u64) {
        if units == 0 {
            return;
        }
        let sample = (nanos / units).max(1);
        let _ = self
            .nanos_per_unit
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                let next = if sample >= old {
                    old + (sample - old) / MEASURE_WEIGHT
                } else {
                    old - (old - sample) / MEASURE_WEIGHT
                };
                Some(next.max(1))
            });
    }
}

fn saturating_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A job that holds its worker until the returned sender is used (or
    /// dropped), and says when it started.
    fn block(pool: &Arc<BcryptPool>) -> (mpsc::Sender<()>, tokio::task::JoinHandle<()>) {
        let (release, hold) = mpsc::channel::<()>();
        let (started_tx, started_rx) = mpsc::channel::<()>();
        let pool2 = Arc::clone(pool);
        let handle = tokio::spawn(async move {
            let _ = pool2
                .run(Priority::Answer, 0, move || {
                    let _ = started_tx.send(());
                    let _ = hold.recv();
                })
                .await;
        });
        started_rx.recv().expect("the blocker starts");
        (release, handle)
    }

    /// One worker, judging by the assumed cost (no calibration run).
    fn one_worker(limits: Limits) -> Arc<BcryptPool> {
        Arc::new(BcryptPool::new(
            1,
            Limits {
                calibrate: false,
                ..limits
            },
        ))
    }

    /// Waits (without sleeping) until `n` jobs are queued in total.
    async fn queued(pool: &BcryptPool, n: usize) {
        while pool.stats().queued_answer + pool.stats().queued_background < n {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_queued_answer_check_overtakes_queued_writes() {
        let pool = one_worker(Limits::default());
        let (release, blocker) = block(&pool);
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut jobs = Vec::new();
        for (i, priority) in [
            Priority::Background,
            Priority::Background,
            Priority::Background,
            Priority::Answer,
        ]
        .into_iter()
        .enumerate()
        {
            let (pool2, order) = (Arc::clone(&pool), Arc::clone(&order));
            jobs.push(tokio::spawn(async move {
                pool2
                    .run(priority, 1, move || order.lock().unwrap().push(i))
                    .await
            }));
            // Queued in this order.
            queued(&pool, i + 1).await;
        }
        assert_eq!(pool.stats().queued_background, 3);
        assert_eq!(pool.stats().queued_answer, 1);
        release.send(()).unwrap();
        blocker.await.unwrap();
        for job in jobs {
            job.await.unwrap().expect("each job ran");
        }
        assert_eq!(*order.lock().unwrap(), [3, 0, 1, 2]);
        let stats = pool.stats();
        assert_eq!((stats.started, stats.dropped_writes), (5, 0));
        assert_eq!((stats.queued_answer, stats.queued_background), (0, 0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_that_cannot_start_in_time_is_dropped_and_counted() {
        // Every queued write is already late once a worker is free.
        let pool = one_worker(Limits {
            background_start_within: Duration::ZERO,
            ..Limits::default()
        });
        let (release, blocker) = block(&pool);
        let ran = Arc::new(AtomicBool::new(false));
        let write = {
            let (pool, ran) = (Arc::clone(&pool), Arc::clone(&ran));
            tokio::spawn(async move {
                pool.run(Priority::Background, 1, move || {
                    ran.store(true, Ordering::SeqCst)
                })
                .await
            })
        };
        queued(&pool, 1).await;
        release.send(()).unwrap();
        blocker.await.unwrap();
        assert_eq!(write.await.unwrap(), Err(PoolError::Late));
        assert!(!ran.load(Ordering::SeqCst));
        let stats = pool.stats();
        assert_eq!(stats.dropped_writes, 1);
        assert_eq!(stats.queued_background, 0);
        // Answer-path checks are never dropped for being late.
        assert_eq!(pool.run(Priority::Answer, 1, || 7).await, Ok(7));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn full_queues_refuse_at_once() {
        let pool = one_worker(Limits {
            answer_queue: 1,
            background_queue: 2,
            ..Limits::default()
        });
        let (release, blocker) = block(&pool);
        let mut waiting = Vec::new();
        for (n, priority) in [Priority::Background, Priority::Background, Priority::Answer]
            .into_iter()
            .enumerate()
        {
            let pool2 = Arc::clone(&pool);
            waiting.push(tokio::spawn(
                async move { pool2.run(priority, 1, || ()).await },
            ));
            queued(&pool, n + 1).await;
        }
        assert_eq!(
            pool.run(Priority::Background, 1, || ()).await,
            Err(PoolError::Full)
        );
        assert_eq!(
            pool.run(Priority::Answer, 1, || ()).await,
            Err(PoolError::Full)
        );
        let stats = pool.stats();
        assert_eq!((stats.dropped_writes, stats.refused_checks), (1, 1));
        release.send(()).unwrap();
        blocker.await.unwrap();
        for job in waiting {
            assert_eq!(job.await.unwrap(), Ok(()));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn saturation_follows_the_queued_answer_work() {
        let pool = one_worker(Limits::default());
        let (release, blocker) = block(&pool);
        assert!(!pool.saturated());
        // Before anything was measured, a cost-12 check counts about a
        // quarter of a second: four queued are below the bound, five above
        // (the blocker running counts nothing).
        let mut waiting = Vec::new();
        for n in 1..=5 {
            let pool2 = Arc::clone(&pool);
            waiting.push(tokio::spawn(async move {
                pool2.run(Priority::Answer, units(12), || ()).await
            }));
            queued(&pool, n).await;
            assert_eq!(pool.saturated(), n >= 5, "{n} queued: {:?}", pool.stats());
        }
        // Background writes do not delay answers, so they do not count.
        let pool2 = Arc::clone(&pool);
        let write =
            tokio::spawn(async move { pool2.run(Priority::Background, units(12), || ()).await });
        queued(&pool, 6).await;
        assert_eq!(pool.stats().queued_background, 1);
        release.send(()).unwrap();
        blocker.await.unwrap();
        for job in waiting {
            assert_eq!(job.await.unwrap(), Ok(()));
        }
        assert_eq!(write.await.unwrap(), Ok(()));
        assert!(!pool.saturated());
        let stats = pool.stats();
        assert_eq!(stats.started, 7);
        assert!(stats.max_wait > Duration::ZERO && stats.total_wait >= stats.max_wait);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn running_work_counts_towards_the_wait() {
        let pool = one_worker(Limits::default());
        let (release, hold) = mpsc::channel::<()>();
        let (started, running) = mpsc::channel::<()>();
        let pool2 = Arc::clone(&pool);
        let job = tokio::spawn(async move {
            pool2
                .run(Priority::Background, units(12) * 5, move || {
                    let _ = started.send(());
                    let _ = hold.recv();
                })
                .await
        });
        running.recv().unwrap();
        assert_eq!(pool.stats().running, 1);
        assert!(pool.saturated(), "{:?}", pool.stats());
        release.send(()).unwrap();
        assert_eq!(job.await.unwrap(), Ok(()));
        // The answer is handed over from inside the job, so the worker may
        // count it as running a moment longer.
        let deadline = Instant::now() + Duration::from_secs(10);
        while pool.stats().running != 0 && Instant::now() < deadline {
            tokio::task::yield_now().await;
        }
        assert_eq!(pool.stats().running, 0);
    }

    #[tokio::test]
    async fn calibration_replaces_the_assumed_cost() {
        let pool = BcryptPool::new(1, Limits::default());
        // The calibration runs before the first job.
        assert_eq!(pool.run(Priority::Answer, 0, || ()).await, Ok(()));
        assert_ne!(
            pool.inner.nanos_per_unit.load(Ordering::Relaxed),
            ASSUMED_NANOS_PER_UNIT
        );
    }

    #[tokio::test]
    async fn bcrypt_runs_on_the_pool() {
        let pool = BcryptPool::new(2, Limits::default());
        let pw = Secret::new("pw");
        let hash = pool
            .hash(Priority::Background, &pw, 4)
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(
            pool.verify(Priority::Answer, &pw, &hash).await,
            Ok(Ok(true))
        ));
        assert!(matches!(
            pool.verify(Priority::Answer, &Secret::new("no"), &hash)
                .await,
            Ok(Ok(false))
        ));
        assert!(matches!(
            pool.verify(Priority::Answer, &pw, "not a hash").await,
            Ok(Err(_))
        ));
        assert_eq!(pool.stats().started, 4);
    }
}
