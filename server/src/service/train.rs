//! Train: reads the spec and the chunked CSV, prepares the data, then trains
//! on a blocking thread while streaming progress, and registers the
//! version in one transaction.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use serval_proto::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::{ServiceState, TrainEventStream, actor_of, invalid};
use crate::catalog::{dataset_to_proto, new_version, version_to_proto};
use crate::error::ServalError;
use crate::training::{self, EpochReport, Recipe};

fn epoch_event(report: &EpochReport) -> pb::TrainEvent {
    pb::TrainEvent {
        event: Some(pb::train_event::Event::Epoch(pb::EpochProgress {
            epoch: report.epoch as u32,
            epochs: report.epochs as u32,
            train_loss: report.train_loss,
            validation_loss: report.validation_loss,
            validation_auc: report.validation_auc,
            elapsed_seconds: report.elapsed_seconds,
        })),
    }
}

pub async fn train(
    state: Arc<ServiceState>,
    request: Request<Streaming<pb::TrainRequest>>,
) -> Result<Response<TrainEventStream>, Status> {
    let actor = actor_of(request.metadata());
    let permit = state.training_slots.clone().try_acquire_owned().map_err(|_| {
        ServalError::ResourceExhausted(format!(
            "{} training job(s) already running, the server's limit; retry later",
            state.limits.max_training_jobs
        ))
    })?;
    let mut stream = request.into_inner();
    let spec = match stream.message().await? {
        Some(pb::TrainRequest {
            payload: Some(pb::train_request::Payload::Spec(spec)),
        }) => spec,
        Some(_) => return Err(invalid("the first message must carry the TrainSpec")),
        None => return Err(invalid("the request stream ended before the TrainSpec")),
    };
    let recipe = Recipe::from_spec(&spec, &state.limits.training)?;
    let model = spec.model;

    let max_bytes = state.limits.training.max_upload_bytes;
    let mut csv = Vec::new();
    while let Some(message) = stream.message().await? {
        match message.payload {
            Some(pb::train_request::Payload::CsvChunk(chunk)) => {
                if csv.len() + chunk.len() > max_bytes {
                    return Err(invalid(format!(
                        "the CSV exceeds {max_bytes} bytes, the server's upload limit"
                    )));
                }
                csv.extend_from_slice(&chunk);
            }
            Some(pb::train_request::Payload::Spec(_)) => {
                return Err(invalid("only the first message may carry a TrainSpec"));
            }
            None => return Err(invalid("a message carried neither a spec nor a csv_chunk")),
        }
    }
    if csv.is_empty() {
        return Err(invalid("no CSV data followed the TrainSpec"));
    }

    let limits = state.limits.training.clone();
    let prepared = tokio::task::spawn_blocking(move || training::prepare(recipe, &csv, &limits))
        .await
        .map_err(|e| ServalError::Internal(format!("data preparation failed: {e}")))??;

    let (events, receiver) = mpsc::unbounded_channel();
    let accepted = pb::TrainAccepted {
        model: model.clone(),
        dataset: Some(dataset_to_proto(&prepared.dataset)),
        input_width: prepared.input_width() as u32,
        epochs: prepared.recipe.epochs as u32,
    };
    let _ = events.send(Ok(pb::TrainEvent {
        event: Some(pb::train_event::Event::Accepted(accepted)),
    }));
    tracing::info!(
        model = %model,
        rows = prepared.dataset.rows,
        input_width = prepared.input_width(),
        "training started"
    );

    tokio::spawn(async move {
        let _permit = permit;
        let progress = events.clone();
        let cancel = AtomicBool::new(false);
        let trained = tokio::task::spawn_blocking(move || {
            // A client that went away does not stop the run: the version
            // is still registered, and progress is simply not delivered.
            training::train(prepared, &cancel, |report| {
                let _ = progress.send(Ok(epoch_event(report)));
            })
        })
        .await
        .map_err(|e| ServalError::Internal(format!("training task failed: {e}")))
        .and_then(|result| result);
        let outcome = match trained {
            Ok(trained) => register(&state, &model, &trained, &actor).await,
            Err(error) => Err(error),
        };
        match outcome {
            Ok(version) => {
                tracing::info!(model = %model, version = version.version, auc = version.metrics.as_ref().map(|m| m.auc), "version registered");
                let _ = events.send(Ok(pb::TrainEvent {
                    event: Some(pb::train_event::Event::Completed(version)),
                }));
            }
            Err(error) => {
                tracing::warn!(model = %model, error = %error, "training failed");
                let _ = events.send(Err(error.into()));
            }
        }
    });
    Ok(Response::new(Box::pin(UnboundedReceiverStream::new(receiver))))
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
