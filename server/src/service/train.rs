//! Train: reads the spec and the chunked CSV (`upload.rs`), takes a
//! training slot, prepares the data, then trains on a blocking thread while
//! streaming progress, and registers the version in one transaction.

use std::sync::Arc;

use serval_proto::v1 as pb;
use serval_registry::JobState;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use super::upload::UploadSlot;
use super::{ServiceState, TrainEventStream, actor_of, invalid};
use crate::catalog::{dataset_to_proto, epoch_to_proto, new_version, version_to_proto};
use crate::error::ServalError;
use crate::jobs::RunningJob;
use crate::sources::SourceData;
use crate::spool::Spooled;
use serval_model::ModelError;
use serval_model::dataset::SharedFile;
use serval_model::training::{self, EpochReport, LoopEvent};

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
    ) -> Result<training::PreparedTraining, ModelError> {
        match self {
            TrainingData::Upload(upload) => {
                // The temporary file, if any, lives until the data is prepared.
                let (file, _held) = upload.shared_file("the upload");
                training::prepare_shared(recipe, &[file], limits)
            }
            TrainingData::Source(source) => {
                let (files, _held): (Vec<SharedFile>, Vec<_>) = source
                    .files
                    .into_iter()
                    .map(|(name, data)| data.shared_file(&name))
                    .unzip();
                let mut prepared = training::prepare_shared(recipe, &files, limits)?;
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

    let limits = state.limits.training.clone();
    let asked = spec.source.clone();
    let prepared = tokio::task::spawn_blocking(move || data.prepare(recipe, &asked, &limits))
        .await
        .map_err(|e| ServalError::Internal(format!("data preparation failed: {e}")))?
        .map_err(ServalError::from)?;

    let job = state.jobs.start();
    state
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
        .map_err(|e| {
            state.jobs.remove(&job.id);
            ServalError::from(e)
        })?;
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
        "training started"
    );
    let events = job.subscribe();
    state.metrics.jobs.running.inc();
    // The job's span is a child of the call's, so its log lines keep the
    // call's request id and trace; exported, it holds the epochs as events.
    let job_span = tracing::info_span!("training_job", job = %job.id, model = %model);
    tokio::spawn(run_job(state, job, model, actor, prepared, permit).instrument(job_span));
    Ok(Response::new(events))
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
