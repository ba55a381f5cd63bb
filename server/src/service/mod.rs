//! The `serval.v1.ModelService` gRPC service. This module holds the shared
//! state and the trait implementation, which only delegates: `train`,
//! `predict` and `rollout` check and translate requests, and the work is
//! done by `training`, `serving`, `routing` and the registry.

mod delete;
mod explanation;
mod jobs;
mod outcomes;
mod predict;
mod predict_route;
mod rollout;
mod shadow;
mod train;
mod train_spec;
mod upload;

use std::sync::Arc;

use serval_proto::v1 as pb;
use serval_proto::v1::model_service_server::ModelService;
use serval_registry::Registry;
use tokio::sync::{Semaphore, watch};
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{caller_name, require_admin};
use crate::catalog::model_to_proto;
use crate::error::ServalError;
use crate::fleet_stats::FleetSettings;
use crate::jobs::Jobs;
use crate::live_stats::LiveStats;
use crate::outcomes::OutcomeStore;
use crate::registry_sync::RegistrySync;
use crate::routing::RoutingTable;
use crate::serving::ModelStore;
use crate::sources::DataSources;
use crate::telemetry::ServerMetrics;
use serval_model::training::TrainingLimits;

/// Limits on what one call may ask for.
#[derive(Debug, Clone)]
pub struct ServiceLimits {
    pub training: TrainingLimits,
    /// Where training may read server-side sources from.
    pub sources: DataSources,
    /// Size and time limits of one training upload.
    pub upload: UploadLimits,
    /// Rows one Predict call may carry.
    pub max_predict_rows: usize,
    /// Training runs at once (from the end of their upload); more are
    /// refused with RESOURCE_EXHAUSTED.
    pub max_training_jobs: usize,
    /// Training uploads in progress at once; more are refused with
    /// RESOURCE_EXHAUSTED.
    pub max_uploads: usize,
}

impl Default for ServiceLimits {
    fn default() -> Self {
        ServiceLimits {
            training: TrainingLimits::default(),
            sources: DataSources::default(),
            upload: UploadLimits::default(),
            max_predict_rows: 4096,
            max_training_jobs: 2,
            max_uploads: 4,
        }
    }
}

/// Shared state behind the service.
pub struct ServiceState {
    pub registry: Registry,
    pub models: Arc<ModelStore>,
    pub routing: Arc<RoutingTable>,
    pub sync: Arc<RegistrySync>,
    pub stats: LiveStats,
    pub jobs: Jobs,
    pub limits: ServiceLimits,
    /// Turns true when the server begins to shut down; long-lived streams
    /// end then.
    pub stopping: watch::Receiver<bool>,
    pub metrics: ServerMetrics,
    /// This server's name among replicas; its training jobs and published
    /// live statistics carry it.
    pub replica_name: String,
    /// How replicas share live statistics.
    pub fleet: FleetSettings,
    /// Predictions awaiting outcomes, and online quality.
    pub outcomes: Arc<OutcomeStore>,
    training_slots: Arc<Semaphore>,
    upload_slots: Arc<Semaphore>,
}

impl ServiceState {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        registry: Registry,
        models: Arc<ModelStore>,
        routing: Arc<RoutingTable>,
        sync: Arc<RegistrySync>,
        limits: ServiceLimits,
        stopping: watch::Receiver<bool>,
        metrics: ServerMetrics,
        replica_name: String,
        outcomes: Arc<OutcomeStore>,
    ) -> Self {
        ServiceState {
            replica_name,
            outcomes,
            registry,
            models,
            routing,
            sync,
            stats: LiveStats::default(),
            fleet: FleetSettings::default(),
            jobs: Jobs::default(),
            stopping,
            metrics,
            training_slots: Arc::new(Semaphore::new(limits.max_training_jobs)),
            upload_slots: Arc::new(Semaphore::new(limits.max_uploads)),
            limits,
        }
    }
}

impl ServiceState {
    /// With live statistics shared across replicas as `fleet` says.
    pub fn with_fleet(mut self, fleet: FleetSettings) -> Self {
        self.fleet = fleet;
        self
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

pub use crate::jobs::JobEventStream as TrainEventStream;
pub use delete::spawn_deleted_version_follower;
/// Predict itself, for the Open Inference Protocol (`oip`, over HTTP and
/// gRPC), which reaches it with the same
/// [`PredictCall`](crate::wire::PredictCall) as `serval.v1` Predict.
pub(crate) use predict::predict;
pub use predict_route::{PREDICT_PATH, PredictRoute, predict_route};
pub use upload::UploadLimits;

fn invalid(message: impl Into<String>) -> Status {
    ServalError::InvalidArgument(message.into()).into()
}

/// Refuses malformed model names before any lookup (INVALID_ARGUMENT with
/// a bounded echo of the name), so absurd names never reach the registry,
/// the loaded-version map or an error message whole.
pub(crate) fn check_model(name: &str) -> Result<(), Status> {
    serval_registry::validate_model_name(name).map_err(|e| invalid(format!("model: {e}")))
}

fn check_alias(name: &str) -> Result<(), Status> {
    serval_registry::validate_alias_name(name).map_err(|e| invalid(format!("alias: {e}")))
}

/// Job ids are opaque, but bounded: anything longer than 64 printable
/// characters cannot be one.
fn check_job_id(id: &str) -> Result<(), Status> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_graphic()) {
        let shown: String = id.chars().take(40).filter(|c| !c.is_control()).collect();
        return Err(invalid(format!("job_id: {shown:?} is not a job id")));
    }
    Ok(())
}

/// Who is calling, for the audit log: the token's name when tokens are in
/// use, else the `x-serval-actor` header (the CLI sends the user name), or
/// "anonymous".
pub fn actor_of<T>(request: &Request<T>) -> String {
    if let Some(name) = caller_name(request) {
        return name.to_string();
    }
    header_actor(request.metadata())
}

fn header_actor(metadata: &MetadataMap) -> String {
    metadata
        .get("x-serval-actor")
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.chars()
                .filter(|c| !c.is_control())
                .take(128)
                .collect::<String>()
        })
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "anonymous".to_string())
}

#[tonic::async_trait]
impl ModelService for ModelServiceImpl {
    type TrainStream = TrainEventStream;
    type WatchModelsStream = rollout::AuditEventStream;
    type WatchJobStream = TrainEventStream;

    async fn train(
        &self,
        request: Request<Streaming<pb::TrainRequest>>,
    ) -> Result<Response<TrainEventStream>, Status> {
        require_admin(&request, "Train")?;
        train::train(self.state.clone(), request).await
    }

    /// Served through [`PredictRoute`], which reads the request as
    /// [`PredictCall`](crate::wire::PredictCall) without this message's
    /// per-value allocations; this entry point, for callers holding the
    /// public message, reads it the same way.
    async fn predict(
        &self,
        request: Request<pb::PredictRequest>,
    ) -> Result<Response<pb::PredictResponse>, Status> {
        use prost::Message as _;
        let (metadata, extensions, message) = request.into_parts();
        let call = crate::wire::PredictCall::decode(message.encode_to_vec().as_slice())
            .map_err(|e| ServalError::Internal(format!("re-reading the request failed: {e}")))?;
        predict::predict(&self.state, Request::from_parts(metadata, extensions, call)).await
    }

    async fn list_models(
        &self,
        request: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        let filter = request.into_inner().model;
        if !filter.is_empty() {
            check_model(&filter)?;
        }
        let records = self
            .state
            .registry
            .list_models((!filter.is_empty()).then_some(filter.as_str()))
            .await
            .map_err(ServalError::from)?;
        let models = records.iter().map(model_to_proto).collect::<Result<_, _>>()?;
        Ok(Response::new(pb::ListModelsResponse { models }))
    }

    async fn set_alias(
        &self,
        request: Request<pb::SetAliasRequest>,
    ) -> Result<Response<pb::RolloutState>, Status> {
        require_admin(&request, "SetAlias")?;
        check_model(&request.get_ref().model)?;
        check_alias(&request.get_ref().alias)?;
        rollout::set_alias(&self.state, request).await
    }

    async fn delete_alias(
        &self,
        request: Request<pb::DeleteAliasRequest>,
    ) -> Result<Response<pb::RolloutState>, Status> {
        require_admin(&request, "DeleteAlias")?;
        check_model(&request.get_ref().model)?;
        check_alias(&request.get_ref().alias)?;
        rollout::delete_alias(&self.state, request).await
    }

    async fn update_traffic(
        &self,
        request: Request<pb::UpdateTrafficRequest>,
    ) -> Result<Response<pb::RolloutState>, Status> {
        require_admin(&request, "UpdateTraffic")?;
        check_model(&request.get_ref().model)?;
        rollout::update_traffic(&self.state, request).await
    }

    async fn get_rollout_state(
        &self,
        request: Request<pb::GetRolloutStateRequest>,
    ) -> Result<Response<pb::RolloutState>, Status> {
        check_model(&request.get_ref().model)?;
        rollout::get_rollout_state(&self.state, request).await
    }

    async fn get_rollout_history(
        &self,
        request: Request<pb::GetRolloutHistoryRequest>,
    ) -> Result<Response<pb::GetRolloutHistoryResponse>, Status> {
        check_model(&request.get_ref().model)?;
        rollout::get_rollout_history(&self.state, request).await
    }

    async fn get_live_stats(
        &self,
        request: Request<pb::GetLiveStatsRequest>,
    ) -> Result<Response<pb::GetLiveStatsResponse>, Status> {
        check_model(&request.get_ref().model)?;
        rollout::get_live_stats(&self.state, request).await
    }

    async fn list_jobs(
        &self,
        request: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        if !request.get_ref().model.is_empty() {
            check_model(&request.get_ref().model)?;
        }
        jobs::list_jobs(&self.state, request).await
    }

    async fn watch_job(
        &self,
        request: Request<pb::WatchJobRequest>,
    ) -> Result<Response<TrainEventStream>, Status> {
        check_job_id(&request.get_ref().job_id)?;
        jobs::watch_job(&self.state, request).await
    }

    async fn cancel_job(
        &self,
        request: Request<pb::CancelJobRequest>,
    ) -> Result<Response<pb::TrainingJob>, Status> {
        require_admin(&request, "CancelJob")?;
        check_job_id(&request.get_ref().job_id)?;
        jobs::cancel_job(&self.state, request).await
    }

    async fn get_version_report(
        &self,
        request: Request<pb::GetVersionReportRequest>,
    ) -> Result<Response<pb::VersionReport>, Status> {
        let request = request.into_inner();
        check_model(&request.model)?;
        let record = self
            .state
            .registry
            .version(&request.model, request.version)
            .await
            .map_err(ServalError::from)?;
        Ok(Response::new(crate::catalog::report_to_proto(&record)?))
    }

    async fn delete_model(
        &self,
        request: Request<pb::DeleteModelRequest>,
    ) -> Result<Response<pb::DeleteModelResponse>, Status> {
        require_admin(&request, "DeleteModel")?;
        check_model(&request.get_ref().model)?;
        delete::delete_model(&self.state, request).await
    }

    async fn report_outcomes(
        &self,
        request: Request<pb::ReportOutcomesRequest>,
    ) -> Result<Response<pb::ReportOutcomesResponse>, Status> {
        outcomes::report_outcomes(&self.state, request).await
    }

    async fn watch_models(
        &self,
        request: Request<pb::WatchModelsRequest>,
    ) -> Result<Response<Self::WatchModelsStream>, Status> {
        if !request.get_ref().model.is_empty() {
            check_model(&request.get_ref().model)?;
        }
        rollout::watch_models(&self.state, request).await
    }
}
