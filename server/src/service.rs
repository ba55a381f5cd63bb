//! The `serval.v1.ModelService` gRPC service: Train, Predict, ListModels.
//! Request checking and translation live here; the work is delegated to
//! `training`, `serving` and the registry.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use futures::Stream;
use serval_proto::v1 as pb;
use serval_proto::v1::model_service_server::ModelService;
use serval_registry::Registry;
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::catalog::{dataset_to_proto, model_to_proto, new_version, version_to_proto};
use crate::error::ServalError;
use crate::serving::{BatchingSettings, ModelStore};
use crate::training::{self, EpochReport, Recipe, TrainingLimits};

/// Limits on what one call may ask for.
#[derive(Debug, Clone)]
pub struct ServiceLimits {
    pub training: TrainingLimits,
    /// Rows one Predict call may carry.
    pub max_predict_rows: usize,
    /// Training runs at once; more are refused with RESOURCE_EXHAUSTED.
    pub max_training_jobs: usize,
}

impl Default for ServiceLimits {
    fn default() -> Self {
        ServiceLimits {
            training: TrainingLimits::default(),
            max_predict_rows: 4096,
            max_training_jobs: 2,
        }
    }
}

/// Shared state behind the service.
pub struct ServiceState {
    pub registry: Registry,
    pub models: ModelStore,
    pub limits: ServiceLimits,
    training_slots: Arc<Semaphore>,
}

impl ServiceState {
    pub fn new(registry: Registry, limits: ServiceLimits, batching: BatchingSettings) -> Self {
        ServiceState {
            models: ModelStore::new(registry.clone(), batching),
            registry,
            training_slots: Arc::new(Semaphore::new(limits.max_training_jobs)),
            limits,
        }
    }
}

/// The gRPC service handle; cheap to clone.
#[derive(Clone)]
pub struct ModelServiceImpl {
    state: Arc<ServiceState>,
}

impl ModelServiceImpl {
    pub fn new(state: Arc<ServiceState>) -> Self {
        ModelServiceImpl { state }
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::TrainEvent, Status>> + Send>>;

fn invalid(message: impl Into<String>) -> Status {
    ServalError::InvalidArgument(message.into()).into()
}

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

#[tonic::async_trait]
impl ModelService for ModelServiceImpl {
    type TrainStream = EventStream;

    async fn train(
        &self,
        request: Request<Streaming<pb::TrainRequest>>,
    ) -> Result<Response<Self::TrainStream>, Status> {
        let state = self.state.clone();
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
                Ok(trained) => register(&state, &model, &trained).await,
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

    async fn predict(
        &self,
        request: Request<pb::PredictRequest>,
    ) -> Result<Response<pb::PredictResponse>, Status> {
        let deadline = crate::deadline::from_metadata(request.metadata());
        let request = request.into_inner();
        if request.model.is_empty() {
            return Err(invalid("model: must name a model"));
        }
        let rows = match (request.records.is_empty(), request.dense_rows.is_empty()) {
            (true, true) => return Err(invalid("no rows: set records or dense_rows")),
            (false, false) => return Err(invalid("set records or dense_rows, not both")),
            (false, true) => request.records.len(),
            (true, false) => request.dense_rows.len(),
        };
        if rows > self.state.limits.max_predict_rows {
            return Err(invalid(format!(
                "{rows} rows in one call; the server accepts at most {}",
                self.state.limits.max_predict_rows
            )));
        }
        let loaded = self.state.models.resolve(&request.model, request.version).await?;
        let input = encode_rows(&loaded.encoder, request.records, request.dense_rows)?;
        let scores = loaded.score(input, deadline).await?;
        Ok(Response::new(pb::PredictResponse {
            model: request.model,
            version: loaded.version,
            scores,
        }))
    }

    async fn list_models(
        &self,
        request: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        let filter = request.into_inner().model;
        let records = self
            .state
            .registry
            .list_models((!filter.is_empty()).then_some(filter.as_str()))
            .await
            .map_err(ServalError::from)?;
        let models = records.iter().map(model_to_proto).collect::<Result<_, _>>()?;
        Ok(Response::new(pb::ListModelsResponse { models }))
    }
}

/// The request's rows as one row-major input, checked: records through the
/// version's encoder, dense rows for width and finiteness. Errors name the
/// row and column.
fn encode_rows(
    encoder: &crate::encoder::Encoder,
    records: Vec<pb::Record>,
    dense_rows: Vec<pb::DenseRow>,
) -> Result<Vec<f32>, Status> {
    let width = encoder.width();
    let mut input = Vec::with_capacity((records.len() + dense_rows.len()) * width);
    for (i, record) in records.iter().enumerate() {
        encoder
            .encode_record(&record.fields, &mut input)
            .map_err(|e| invalid(format!("records[{i}]: {e}")))?;
    }
    for (i, row) in dense_rows.into_iter().enumerate() {
        encoder
            .check_dense(&row.values)
            .map_err(|e| invalid(format!("dense_rows[{i}]: {e}")))?;
        if input.is_empty() {
            // One dense row (the common case) is used as it is, uncopied.
            input = row.values;
        } else {
            input.extend_from_slice(&row.values);
        }
    }
    Ok(input)
}

/// Writes a trained version to the registry and makes it the latest.
async fn register(
    state: &ServiceState,
    model: &str,
    trained: &training::TrainedVersion,
) -> Result<pb::ModelVersion, ServalError> {
    let record = state
        .registry
        .register_version(new_version(model, trained)?)
        .await?;
    state.models.note_registered(model, record.version);
    version_to_proto(&record)
}
