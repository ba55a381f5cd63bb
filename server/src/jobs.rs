//! Training jobs while they run: each job's cancel flag and the events it
//! has produced, so a client can leave, re-attach (the events so far, then
//! live ones) or cancel. The registry keeps every job's record; this module
//! only holds what lives as long as the run.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::Stream;
use serval_proto::v1 as pb;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

pub type JobEventStream = Pin<Box<dyn Stream<Item = Result<pb::TrainEvent, Status>> + Send>>;

/// A job's events, each numbered in order. In-epoch progress events, and
/// preparation events within a phase, are not kept: only the latest one,
/// so the log grows with epochs and phases, not time.
#[derive(Default)]
struct JobLog {
    sequence: u64,
    events: Vec<(u64, pb::TrainEvent)>,
    progress: Option<(u64, pb::TrainEvent)>,
    /// Set once the job ends: `Ok` after its Completed event, or why not.
    end: Option<Result<(), Status>>,
}

impl JobLog {
    /// What a subscriber that has seen everything up to `seen` gets next.
    fn after(&self, seen: u64) -> Vec<(u64, pb::TrainEvent)> {
        let mut next: Vec<(u64, pb::TrainEvent)> =
            self.events.iter().filter(|(n, _)| *n > seen).cloned().collect();
        let last_durable = self.events.last().map_or(0, |(n, _)| *n);
        if let Some((n, progress)) = &self.progress
            && *n > seen
            && *n > last_durable
        {
            next.push((*n, progress.clone()));
        }
        next
    }
}

/// One running job (preparing its data, or training).
pub struct RunningJob {
    pub id: String,
    pub model: String,
    cancel: Arc<AtomicBool>,
    log: Mutex<JobLog>,
    /// Bumped whenever the log changes, to wake subscribers.
    changed: watch::Sender<u64>,
}

impl RunningJob {
    /// The flag the training loop checks between batches.
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }

    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// Appends an event (an in-epoch progress event, or a preparation
    /// event past its phase's start, replaces the previous such event).
    pub fn push(&self, event: pb::TrainEvent) {
        let mut log = self.log.lock().expect("job log lock poisoned");
        log.sequence += 1;
        let numbered = (log.sequence, event);
        let passing = match &numbered.1.event {
            Some(pb::train_event::Event::Progress(_)) => true,
            Some(pb::train_event::Event::Preparing(progress)) => progress.rows_read > 0,
            _ => false,
        };
        if passing {
            log.progress = Some(numbered);
        } else {
            log.events.push(numbered);
        }
        drop(log);
        self.changed.send_modify(|n| *n += 1);
    }

    /// Ends the job's stream: after a Completed event (`Ok`), or with an
    /// error.
    pub fn end(&self, outcome: Result<(), Status>) {
        self.log.lock().expect("job log lock poisoned").end = Some(outcome);
        self.changed.send_modify(|n| *n += 1);
    }

    /// The job's events from the start, then live ones, until it ends.
    pub fn subscribe(self: &Arc<Self>) -> JobEventStream {
        self.subscribe_watched().0
    }

    /// [`subscribe`](Self::subscribe), and a handle that tells when the
    /// subscriber has gone.
    pub fn subscribe_watched(self: &Arc<Self>) -> (JobEventStream, Subscriber) {
        let job = self.clone();
        let mut changed = self.changed.subscribe();
        let (sender, receiver) = mpsc::channel(64);
        let subscriber = Subscriber(sender.clone());
        tokio::spawn(async move {
            let mut seen = 0;
            loop {
                let (pending, end) = {
                    let log = job.log.lock().expect("job log lock poisoned");
                    (log.after(seen), log.end.clone())
                };
                for (number, event) in pending {
                    seen = number;
                    if sender.send(Ok(event)).await.is_err() {
                        return;
                    }
                }
                if let Some(end) = end {
                    if let Err(status) = end {
                        let _ = sender.send(Err(status)).await;
                    }
                    return;
                }
                if changed.changed().await.is_err() {
                    return;
                }
            }
        });
        (Box::pin(ReceiverStream::new(receiver)), subscriber)
    }
}

/// One subscriber of a job's events, watched.
pub struct Subscriber(mpsc::Sender<Result<pb::TrainEvent, Status>>);

impl Subscriber {
    /// Resolves once the subscriber has dropped its stream (a caller that
    /// left, or whose call was reset).
    pub async fn gone(&self) {
        self.0.closed().await;
    }
}

/// The jobs running on this server.
#[derive(Default)]
pub struct Jobs {
    running: Mutex<HashMap<String, Arc<RunningJob>>>,
}

impl Jobs {
    /// Registers a new running job of `model` with a fresh id.
    pub fn start(&self, model: &str) -> Arc<RunningJob> {
        let id = format!("job-{:016x}", rand::random::<u64>());
        let (changed, _) = watch::channel(0);
        let job = Arc::new(RunningJob {
            id: id.clone(),
            model: model.to_string(),
            cancel: Arc::new(AtomicBool::new(false)),
            log: Mutex::new(JobLog::default()),
            changed,
        });
        self.running
            .lock()
            .expect("jobs lock poisoned")
            .insert(id, job.clone());
        job
    }

    pub fn get(&self, id: &str) -> Option<Arc<RunningJob>> {
        self.running.lock().expect("jobs lock poisoned").get(id).cloned()
    }

    /// Forgets a job that ended (its record stays in the registry).
    pub fn remove(&self, id: &str) {
        self.running.lock().expect("jobs lock poisoned").remove(id);
    }

    /// Every running job.
    pub fn all(&self) -> Vec<Arc<RunningJob>> {
        self.running
            .lock()
            .expect("jobs lock poisoned")
            .values()
            .cloned()
            .collect()
    }
}
