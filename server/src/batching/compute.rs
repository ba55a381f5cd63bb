//! [`ComputePool`]: the fixed set of compute threads that every loaded
//! version's queue shares. A thread takes the next turn from the rotation
//! (`schedule`): a version's queue cuts one batch, runs ONE forward pass
//! and answers its callers, all on that thread, so a call crosses from its
//! task to a compute thread once and back once. Candle's work never lands
//! on the async runtime's threads, and the threads do not grow with the
//! number of loaded versions.
//!
//! Thread arrangement (measured with `serval bench` on 2 cores, see
//! docs/performance.md): candle runs each matrix product on the calling
//! thread (`RAYON_NUM_THREADS=1`, set by the server binary), because
//! spreading a small product over both cores costs ~90 µs of
//! synchronisation against ~10 µs of work. One compute thread then keeps a
//! core busy with large batches while the runtime's threads decode
//! requests and answer callers on the other.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::schedule::{Next, Schedule, Wake};

/// Something the compute threads take turns at: a version's queue, or a
/// one-off job.
pub(super) trait Turn: Send + Sync + 'static {
    /// Runs one turn on a compute thread.
    fn take_turn(self: Arc<Self>, wake: Wake);
}

type Item = Arc<dyn Turn>;

struct Shared {
    schedule: Mutex<Schedule<Item>>,
    wake: Condvar,
    /// Since when work has waited, with every thread asleep, for a caller
    /// to wake one (see [`ComputePool::ready_quietly`]): nanoseconds after
    /// `epoch`, plus one; 0 when nothing waits so.
    quiet_since: AtomicU64,
    epoch: Instant,
}

impl Shared {
    fn nanos(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_nanos() as u64
    }
}

impl Shared {
    fn schedule(&self) -> MutexGuard<'_, Schedule<Item>> {
        // Correctness: no code panics while holding this lock, and a turn
        // runs without it; a poisoned lock still holds a whole schedule.
        self.schedule.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Stops the threads once every handle is gone (after what is queued).
struct Owner(Arc<Shared>);

impl Drop for Owner {
    fn drop(&mut self) {
        self.0.schedule().stop();
        self.0.wake.notify_all();
    }
}

/// A fixed set of compute threads and their rotation; cheap to clone. The
/// threads end when the last clone is dropped and nothing is queued.
#[derive(Clone)]
pub struct ComputePool {
    owner: Arc<Owner>,
    threads: usize,
}

impl ComputePool {
    /// Starts `threads` (at least 1) compute threads.
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let threads = threads.max(1);
        let shared = Arc::new(Shared {
            schedule: Mutex::new(Schedule::default()),
            wake: Condvar::new(),
            quiet_since: AtomicU64::new(0),
            epoch: Instant::now(),
        });
        for i in 0..threads {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("serval-compute-{i}"))
                .spawn(move || compute_thread(&shared))?;
        }
        Ok(ComputePool {
            owner: Arc::new(Owner(shared)),
            threads,
        })
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Gives `item` a turn, behind everything already waiting for one.
    pub(super) fn ready(&self, item: Item) {
        let shared = &self.owner.0;
        if shared.schedule().ready(item) {
            shared.wake.notify_one();
        }
    }

    /// Gives `item` a turn like [`ComputePool::ready`], but leaves waking a
    /// sleeping thread for it to the caller: true when one should be woken
    /// (with [`ComputePool::wake_if_needed`]). `now` is about now.
    pub(super) fn ready_quietly(&self, item: Item, now: Instant) -> bool {
        let shared = &self.owner.0;
        let wanted = shared.schedule().ready(item);
        if wanted {
            let since = shared.nanos(now) + 1;
            let _ = shared
                .quiet_since
                .compare_exchange(0, since, Ordering::Relaxed, Ordering::Relaxed);
        }
        wanted
    }

    /// Wakes a sleeping thread if work waits and no thread is awake to take
    /// it.
    pub(super) fn wake_if_needed(&self) {
        let shared = &self.owner.0;
        let schedule = shared.schedule();
        shared.quiet_since.store(0, Ordering::Relaxed);
        if schedule.wants_a_thread() {
            shared.wake.notify_one();
        }
    }

    /// Wakes a sleeping thread if work queued quietly has waited `after`
    /// at `now` for the caller who was to wake one (its runtime thread may
    /// be busy with many other calls): costs one atomic load when nothing
    /// waits so.
    pub(super) fn wake_if_overdue(&self, now: Instant, after: Duration) {
        let shared = &self.owner.0;
        let since = shared.quiet_since.load(Ordering::Relaxed);
        if since != 0 && shared.nanos(now) + 1 >= since.saturating_add(after.as_nanos() as u64) {
            self.wake_if_needed();
        }
    }

    /// Gives `item` a turn at `at`.
    pub(super) fn at(&self, at: Instant, item: Item) {
        let shared = &self.owner.0;
        if shared.schedule().at(at, item) {
            shared.wake.notify_one();
        }
    }

    /// Runs `job` once on a compute thread, in turn with the queues (a
    /// version's warm-up pass, for one). A panic comes back as `Err`.
    pub fn run<R: Send + 'static>(
        &self,
        job: impl FnOnce() -> R + Send + 'static,
    ) -> oneshot::Receiver<std::thread::Result<R>> {
        let (answer, answered) = oneshot::channel();
        let job: Box<dyn FnOnce() + Send> = Box::new(move || {
            let _ = answer.send(std::panic::catch_unwind(AssertUnwindSafe(job)));
        });
        self.ready(Arc::new(OneOff(Mutex::new(Some(job)))));
        answered
    }
}

/// A job that runs once.
struct OneOff(Mutex<Option<Box<dyn FnOnce() + Send>>>);

impl Turn for OneOff {
    fn take_turn(self: Arc<Self>, _: Wake) {
        let job = self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(job) = job {
            job();
        }
    }
}

/// One compute thread: takes turns until the pool stops.
fn compute_thread(shared: &Shared) {
    let mut schedule = shared.schedule();
    loop {
        match schedule.next(Instant::now()) {
            Next::Run(item, wake) => {
                // A thread is awake and takes what is ready: nothing waits
                // for a caller to wake one.
                shared.quiet_since.store(0, Ordering::Relaxed);
                drop(schedule);
                // A turn catches its own pass's panics; this is the net for
                // anything else, so that the thread goes on.
                if std::panic::catch_unwind(AssertUnwindSafe(|| item.take_turn(wake))).is_err() {
                    tracing::error!("a compute thread's turn panicked; the thread goes on");
                }
                schedule = shared.schedule();
            }
            Next::Sleep(until) => {
                schedule.set_sleeping(true);
                schedule = match until {
                    Some(at) => {
                        let timeout = at.saturating_duration_since(Instant::now());
                        shared
                            .wake
                            .wait_timeout(schedule, timeout)
                            .unwrap_or_else(PoisonError::into_inner)
                            .0
                    }
                    None => shared.wake.wait(schedule).unwrap_or_else(PoisonError::into_inner),
                };
                schedule.set_sleeping(false);
            }
            Next::Stop => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_off_jobs_run_on_a_compute_thread_and_a_panic_is_an_error() {
        let pool = ComputePool::new(1).unwrap();
        let name = pool
            .run(|| std::thread::current().name().map(str::to_string))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(name.as_deref(), Some("serval-compute-0"));
        assert!(pool.run(|| panic!("boom")).await.unwrap().is_err());
        // The thread went on.
        assert_eq!(pool.run(|| 2 + 2).await.unwrap().unwrap(), 4);
    }
}
