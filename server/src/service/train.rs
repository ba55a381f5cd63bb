//! Train: reads the spec and the chunked CSV (`upload.rs`), takes a
//! training slot and answers with the job's events; the job prepares the
//! data, then trains, each on a blocking thread while streaming progress
//! (and honouring a cancel), and registers the version in one transaction.

use std::sync::Arc;

use futures::StreamExt;
use serval_proto::v1 as pb;
use serval_registry::JobState;
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use super::upload::UploadSlot;
use super::{ServiceState, TrainEventStream, actor_of, invalid};
use crate::catalog::{dataset_to_proto, epoch_to_proto, new_version, version_to_proto};
use crate::error::ServalError;
use crate::jobs::{RunningJob, Subscriber};
use crate::sources::SourceData;
use crate::spool::Spooled;
use serval_model::ModelError;
use serval_model::dataset::SharedFile;
use serval_model::training::{
    self, EpochReport, LoopEvent, PreparationProgress, PreparationWatch, preparation,
};

/// What a training reads: an upload, or the objects of a server-side
/// source.
enum TrainingData {
    Upload(Spooled),
    Source(SourceData),
}

impl TrainingData {
    /// The prepared training, with the source's lineage in its dataset
    /// summary.
    fn prepare(
        self,
        recipe: training::Recipe,
        asked: &str,
        limits: &training::TrainingLimits,
        watch: &mut PreparationWatch<'_>,
    ) -> Result<training::PreparedTraining, ModelError> {
        match self {
            TrainingData::Upload(upload) => {
                // The temporary file, if any, lives until the data is prepared.
                let (file, _held) = upload.shared_file("the upload");
                training::prepare_shared(recipe, &[file], limits, watch)
            }
            TrainingData::Source(source) => {
                let (files, _held): (Vec<SharedFile>, Vec<_>) = source
                    .files
                    .into_iter()
                    .map(|(name, data)| data.shared_file(&name))
                    .unzip();
                let mut prepared = training::prepare_shared(recipe, &files, limits, watch)?;
                prepared.dataset.source = asked.to_string();
                prepared.dataset.objects = source.objects;
                Ok(prepared)
            }
        }
    }
}

/// Phases and their seconds, for a log line: `census 1.2 s, decoding 3.4 s`.
fn phases_text(phases: &[(&str, f64)]) -> String {
    phases
        .iter()
        .map(|(name, seconds)| format!("{name} {seconds:.1} s"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn preparing_event(job_id: &str, progress: &PreparationProgress) -> pb::TrainEvent {
    pb::TrainEvent {
        event: Some(pb::train_event::Event::Preparing(pb::PreparationProgress {
            job_id: job_id.to_string(),
            phase: progress.phase.to_string(),
            rows_read: progress.rows_read,
            rows_total: progress.rows_total,
            elapsed_seconds: progress.elapsed_seconds,
        })),
    }
}

fn epoch_event(report: &EpochReport) -> pb::TrainEvent {
    pb::TrainEvent {
        event: Some(pb::train_event::Event::Epoch(epoch_to_proto(report))),
    }
}

pub async fn train(
    state: Arc<ServiceState>,
    request: Request<Streaming<pb::TrainRequest>>,
) -> Result<Response<TrainEventStream>, Status> {
    let actor = actor_of(&request);
    let mut stream = request.into_inner();
    let idle_timeout = state.limits.upload.idle_timeout;
    let first = tokio::time::timeout(idle_timeout, stream.message())
        .await
        .map_err(|_| {
            ServalError::DeadlineExceeded(format!(
                "no TrainSpec came within {} (the server's --upload-idle-timeout)",
                humantime::format_duration(idle_timeout)
            ))
        })??;
    let spec = match first {
        Some(pb::TrainRequest {
            payload: Some(pb::train_request::Payload::Spec(spec)),
        }) => spec,
        Some(_) => return Err(invalid("the first message must carry the TrainSpec")),
        None => return Err(invalid("the request stream ended before the TrainSpec")),
    };
    let recipe = super::train_spec::recipe(&spec, &state.limits.training)?;
    // Correctness: a source is checked against the allowed prefixes before
    // anything is listed or read, and before any slot is taken.
    let source = (!spec.source.is_empty())
        .then(|| state.limits.sources.check(&spec.source))
        .transpose()?;
    let model = spec.model;
    // Slots: an upload in progress holds an upload slot only, and a
    // training slot is taken once its data is complete, so uploads that
    // are slow or stalled never keep trainings that are ready from
    // running. When every training slot is busy the call is refused now,
    // before the client sends its data for nothing.
    let busy = || -> Status {
        ServalError::ResourceExhausted(format!(
            "{} training job(s) already running, the server's limit; retry later",
            state.limits.max_training_jobs
        ))
        .into()
    };
    if state.training_slots.available_permits() == 0 {
        return Err(busy());
    }
    let uploading = UploadSlot::take(&state.upload_slots, &state.metrics.jobs.uploads).ok_or_else(|| {
        ServalError::ResourceExhausted(format!(
            "{} upload(s) already in progress, the server's limit; retry later",
            state.limits.max_uploads
        ))
    })?;
    let data = match &source {
        None => {
            let upload = super::upload::gather(&mut stream, &state.limits.upload).await?;
            if upload.is_empty() {
                return Err(invalid("no CSV data followed the TrainSpec"));
            }
            TrainingData::Upload(upload)
        }
        Some(source) => {
            if super::upload::gather(&mut stream, &state.limits.upload)
                .await?
                .is_empty()
            {
                TrainingData::Source(
                    state
                        .limits
                        .sources
                        .read(source, state.limits.upload.spill_after)
                        .await?,
                )
            } else {
                return Err(invalid(
                    "source: a spec that names a source takes no uploaded data",
                ));
            }
        }
    };
    // Correctness: another upload may have finished first and taken the
    // last slot since the check above; then this one is refused too.
    let permit = state
        .training_slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| busy())?;
    drop(uploading);

    // The job exists from here: its first event names it, so a client can
    // follow or cancel the preparation, which may take a while on large
    // data.
    let job = state.jobs.start(&model);
    job.push(preparing_event(
        &job.id,
        &PreparationProgress {
            phase: preparation::STARTING,
            rows_read: 0,
            rows_total: 0,
            elapsed_seconds: 0.0,
        },
    ));
    let (events, caller) = job.subscribe_watched();
    // Correctness: a client whose upload failed resets the call, which the
    // server reads as the end of the upload; the reset also means the
    // response is never sent. So the preparation starts only once the
    // response stream has handed out its first event, the job's name: a
    // reset call drops the stream instead, and nothing starts.
    let (taken, first_taken) = oneshot::channel();
    let mut taken = Some(taken);
    let events: TrainEventStream = Box::pin(events.inspect(move |_| {
        if let Some(taken) = taken.take() {
            let _ = taken.send(());
        }
    }));
    tracing::info!(model = %model, job = %job.id, "training started");
    // The job's span is a child of the call's, so its log lines keep the
    // call's request id and trace; exported, it holds the epochs as events.
    let job_span = tracing::info_span!("training_job", job = %job.id, model = %model);
    let asked = spec.source.clone();
    tokio::spawn(
        prepare_job(
            state,
            job,
            (caller, first_taken),
            model,
            actor,
            recipe,
            data,
            asked,
            permit,
        )
        .instrument(job_span),
    );
    Ok(Response::new(events))
}

/// Prepares the job's data on a blocking thread, reporting its phases and
/// rows, then trains. Data that cannot be trained from ends the job with
/// its error and leaves no record in the registry; a cancel ends it
/// cancelled (recorded) and nothing is registered. A call reset before
/// its answer went out (a client whose upload failed) starts nothing.
#[allow(clippy::too_many_arguments)]
async fn prepare_job(
    state: Arc<ServiceState>,
    job: Arc<RunningJob>,
    (caller, first_taken): (Subscriber, oneshot::Receiver<()>),
    model: String,
    actor: String,
    recipe: training::Recipe,
    data: TrainingData,
    asked: String,
    permit: OwnedSemaphorePermit,
) {
    let caller_there = tokio::select! {
        taken = first_taken => taken.is_ok(),
        () = caller.gone() => false,
    };
    drop(caller);
    if !caller_there {
        tracing::info!(model = %model, job = %job.id, "the call was reset before it was answered; job ended");
        job.end(Err(ServalError::Model(ModelError::Cancelled).into()));
        state.jobs.remove(&job.id);
        return;
    }
    let limits = state.limits.training.clone();
    let epochs = recipe.epochs as u32;
    let preparing = job.clone();
    let prepared = tokio::task::spawn_blocking(move || {
        let cancel = preparing.cancel_flag();
        let reporter = preparing.clone();
        let mut watch = PreparationWatch::new(&cancel, move |progress: &PreparationProgress| {
            reporter.push(preparing_event(&reporter.id, progress));
        });
        data.prepare(recipe, &asked, &limits, &mut watch)
    })
    .await
    .map_err(|e| ServalError::Internal(format!("data preparation failed: {e}")))
    .and_then(|result| result.map_err(ServalError::from));
    // Correctness: a cancel that arrives after the last chunk still ends
    // the job before it trains.
    let prepared = match prepared {
        Ok(_) if job.is_cancelled() => Err(ServalError::Model(ModelError::Cancelled)),
        other => other,
    };
    let prepared = match prepared {
        Ok(prepared) => prepared,
        Err(error) => {
            end_unprepared(&state, &job, &model, &actor, epochs, error).await;
            return;
        }
    };

    if let Err(error) = state
        .registry
        .start_job(
            &job.id,
            &model,
            &actor,
            prepared.dataset.rows,
            prepared.recipe.epochs as u32,
            &state.replica_name,
        )
        .await
    {
        tracing::error!(%error, job = %job.id, "cannot record the job");
        job.end(Err(ServalError::from(error).into()));
        state.jobs.remove(&job.id);
        return;
    }
    job.push(pb::TrainEvent {
        event: Some(pb::train_event::Event::Accepted(pb::TrainAccepted {
            model: model.clone(),
            dataset: Some(dataset_to_proto(&prepared.dataset, &prepared.recipe)),
            input_width: prepared.input_width() as u32,
            epochs: prepared.recipe.epochs as u32,
            job_id: job.id.clone(),
        })),
    });
    tracing::info!(
        model = %model,
        job = %job.id,
        rows = prepared.dataset.rows,
        input_width = prepared.input_width(),
        streamed = prepared.dataset.streamed.is_some(),
        phases = %phases_text(&prepared.phases),
        "data prepared"
    );
    state.metrics.jobs.running.inc();
    run_job(state, job, model, actor, prepared, permit).await;
}

/// Ends a job whose data was not prepared: cancelled (recorded in the
/// registry as such, with no rows), or refused (not recorded: as if no job
/// had started, the caller gets the error).
async fn end_unprepared(
    state: &ServiceState,
    job: &RunningJob,
    model: &str,
    actor: &str,
    epochs: u32,
    error: ServalError,
) {
    if matches!(error, ServalError::Model(ModelError::Cancelled)) {
        tracing::info!(model = %model, job = %job.id, "job cancelled while preparing its data");
        let recorded = async {
            state
                .registry
                .start_job(&job.id, model, actor, 0, epochs, &state.replica_name)
                .await?;
            state
                .registry
                .finish_job(&job.id, JobState::Cancelled, None, Some("cancelled"))
                .await
        };
        if let Err(error) = recorded.await {
            tracing::error!(%error, job = %job.id, "cannot record how the job ended");
        }
        state
            .metrics
            .jobs
            .finished
            .with_label_values(&[JobState::Cancelled.as_str()])
            .inc();
    } else {
        tracing::info!(model = %model, job = %job.id, %error, "the data cannot be trained from");
    }
    job.end(Err(error.into()));
    state.jobs.remove(&job.id);
}

/// Trains on a blocking thread, records progress in the job and the
/// registry, and registers the version unless the job was cancelled. A
/// client that goes away does not stop it.
async fn run_job(
    state: Arc<ServiceState>,
    job: Arc<RunningJob>,
    model: String,
    actor: String,
    prepared: training::PreparedTraining,
    _permit: OwnedSemaphorePermit,
) {
    let (epochs_done, mut epoch_updates) = mpsc::unbounded_channel::<u32>();
    let registry = state.registry.clone();
    let job_id = job.id.clone();
    let cancellable = job.clone();
    let recorder = tokio::spawn(async move {
        while let Some(epoch) = epoch_updates.recv().await {
            match registry.job_progress(&job_id, epoch).await {
                // Asked through another replica sharing the registry.
                Ok(true) => {
                    tracing::info!(job = %job_id, "job cancel requested through another server");
                    cancellable.cancel();
                }
                Ok(false) => {}
                Err(error) => tracing::warn!(%error, "cannot record job progress"),
            }
        }
    });
    let trainer_job = job.clone();
    let job_span = tracing::Span::current();
    let trained = tokio::task::spawn_blocking(move || {
        let cancel = trainer_job.cancel_flag();
        training::train(prepared, &cancel, |event| match event {
            LoopEvent::Epoch(report) => {
                tracing::info!(
                    epoch = report.epoch,
                    elapsed_seconds = report.elapsed_seconds,
                    validation_auc = report.validation_auc,
                    "epoch ended"
                );
                let _ = epochs_done.send(report.epoch as u32);
                trainer_job.push(epoch_event(report));
                crate::otlp::record_epoch(&job_span, report);
            }
            LoopEvent::Batch {
                epoch,
                epochs,
                rows_done,
                rows_total,
                elapsed_seconds,
                rows_per_second,
                epoch_seconds,
            } => trainer_job.push(pb::TrainEvent {
                event: Some(pb::train_event::Event::Progress(pb::BatchProgress {
                    epoch: epoch as u32,
                    epochs: epochs as u32,
                    rows_done: rows_done as u64,
                    rows_total: rows_total as u64,
                    elapsed_seconds,
                    rows_per_second,
                    estimated_epoch_seconds: epoch_seconds,
                })),
            }),
        })
    })
    .await
    .map_err(|e| ServalError::Internal(format!("training task failed: {e}")))
    .and_then(|result| result.map_err(ServalError::from));
    let _ = recorder.await;

    // Correctness: a cancel that arrives after the last batch still
    // prevents the version from being registered.
    if let Ok(trained) = &trained {
        tracing::info!(job = %job.id, phases = %phases_text(&trained.phases), "training loop done");
    }
    let outcome = match trained {
        Ok(_) if job.is_cancelled() => Err(ModelError::Cancelled.into()),
        Ok(trained) => register(&state, &model, &trained, &actor).await,
        Err(error) => Err(error),
    };
    let (job_state, version, error) = match &outcome {
        Ok(version) => (JobState::Succeeded, Some(version.version), None),
        Err(ServalError::Model(ModelError::Cancelled)) => {
            (JobState::Cancelled, None, Some("cancelled".to_string()))
        }
        Err(error) => (JobState::Failed, None, Some(error.to_string())),
    };
    state.metrics.jobs.running.dec();
    state
        .metrics
        .jobs
        .finished
        .with_label_values(&[job_state.as_str()])
        .inc();
    if let Err(error) = state
        .registry
        .finish_job(&job.id, job_state, version, error.as_deref())
        .await
    {
        tracing::error!(%error, job = %job.id, "cannot record how the job ended");
    }
    match outcome {
        Ok(version) => {
            tracing::info!(model = %model, job = %job.id, version = version.version, "version registered");
            job.push(pb::TrainEvent {
                event: Some(pb::train_event::Event::Completed(version)),
            });
            job.end(Ok(()));
        }
        Err(error) => {
            tracing::warn!(model = %model, job = %job.id, %error, "training ended without a version");
            job.end(Err(error.into()));
        }
    }
    state.jobs.remove(&job.id);
}

/// Writes a trained version to the registry and brings the server's routing
/// up to date (the new version becomes the latest).
async fn register(
    state: &ServiceState,
    model: &str,
    trained: &training::TrainedVersion,
    actor: &str,
) -> Result<pb::ModelVersion, ServalError> {
    let record = state
        .registry
        .register_version(new_version(model, trained, actor)?)
        .await?;
    if let Err(error) = state.sync.sync().await {
        tracing::warn!(%error, "registered, but could not refresh routing yet");
    }
    version_to_proto(&record)
}
