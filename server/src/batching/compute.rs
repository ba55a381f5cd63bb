//! The compute threads: dedicated OS threads that run forward passes, so
//! candle's work never lands on the async runtime's threads.
//!
//! Thread arrangement (measured with `serval bench` on 2 cores, see
//! README "Performance"): candle runs each matrix product on the calling
//! thread (`RAYON_NUM_THREADS=1`, set by the server binary), because
//! spreading a small product over both cores costs ~90 µs of
//! synchronisation against ~10 µs of work. One compute thread then keeps a
//! core busy with large batches while the runtime's threads decode
//! requests and answer callers on the other; a second compute thread only
//! competes with them for the same two cores.

use std::sync::Arc;

use crossbeam_channel::{Sender, unbounded};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// A fixed set of compute threads fed by one queue; cheap to clone. The
/// threads end when the last clone is dropped.
#[derive(Clone)]
pub struct ComputePool {
    jobs: Sender<Job>,
    threads: Arc<usize>,
}

impl ComputePool {
    /// Starts `threads` (at least 1) compute threads.
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let threads = threads.max(1);
        let (jobs, queue) = unbounded::<Job>();
        for i in 0..threads {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("serval-compute-{i}"))
                .spawn(move || {
                    while let Ok(job) = queue.recv() {
                        job();
                    }
                })?;
        }
        Ok(ComputePool {
            jobs,
            threads: Arc::new(threads),
        })
    }

    pub fn threads(&self) -> usize {
        *self.threads
    }

    /// Runs `job` on a compute thread. Returns false if the pool has gone.
    pub fn submit(&self, job: impl FnOnce() + Send + 'static) -> bool {
        self.jobs.send(Box::new(job)).is_ok()
    }
}
