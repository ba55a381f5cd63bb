//! Job RPCs: list jobs, re-attach to one's progress, cancel one.

use serval_proto::v1 as pb;
use serval_registry::{JobState, RegistryError};
use tonic::{Request, Response, Status};

use super::{ServiceState, TrainEventStream};
use crate::catalog::{job_to_proto, version_to_proto};
use crate::error::ServalError;

pub async fn list_jobs(
    state: &ServiceState,
    request: Request<pb::ListJobsRequest>,
) -> Result<Response<pb::ListJobsResponse>, Status> {
    let request = request.into_inner();
    let limit = if request.limit == 0 {
        100
    } else {
        request.limit.min(10_000)
    };
    let jobs = state
        .registry
        .jobs(
            (!request.model.is_empty()).then_some(request.model.as_str()),
            limit,
        )
        .await
        .map_err(ServalError::from)?;
    Ok(Response::new(pb::ListJobsResponse {
        jobs: jobs.iter().map(job_to_proto).collect(),
    }))
}

/// A running job's events from the start; for a job that has ended, its
/// outcome: the registered version, or the error it ended with.
pub async fn watch_job(
    state: &ServiceState,
    request: Request<pb::WatchJobRequest>,
) -> Result<Response<TrainEventStream>, Status> {
    let id = request.into_inner().job_id;
    if let Some(job) = state.jobs.get(&id) {
        return Ok(Response::new(job.subscribe()));
    }
    let record = state
        .registry
        .job(&id)
        .await
        .map_err(|error| not_here(&id, "watch", error))?;
    match (record.state, record.version) {
        (JobState::Succeeded, Some(version)) => {
            let stored = state
                .registry
                .version(&record.model, Some(version))
                .await
                .map_err(ServalError::from)?;
            let event = pb::TrainEvent {
                event: Some(pb::train_event::Event::Completed(version_to_proto(&stored)?)),
            };
            Ok(Response::new(Box::pin(futures::stream::iter([Ok(event)]))))
        }
        (JobState::Cancelled, _) => Err(Status::cancelled(format!("job {id} was cancelled"))),
        (JobState::Running, _) => Err(Status::unavailable(format!(
            "job {id} is running on another server; watch it there"
        ))),
        _ => Err(Status::aborted(format!(
            "job {id} failed: {}",
            record.error.unwrap_or_default()
        ))),
    }
}

/// The registry's error for job `id`, which this server is not running:
/// not found says where else the job may be. A job still preparing its
/// data is in no registry yet; only the server running it knows it, and
/// `action` must be sent there.
fn not_here(id: &str, action: &str, error: RegistryError) -> ServalError {
    match error {
        RegistryError::JobNotFound(_) => ServalError::NotFound(format!(
            "training job {id:?} not found: not running here and not in the registry (a job still \
             preparing its data is known only to the server running it until its data is prepared; \
             {action} it there)"
        )),
        other => ServalError::from(other),
    }
}

pub async fn cancel_job(
    state: &ServiceState,
    request: Request<pb::CancelJobRequest>,
) -> Result<Response<pb::TrainingJob>, Status> {
    let id = request.into_inner().job_id;
    let running_here = state.jobs.get(&id);
    if let Some(job) = &running_here {
        job.cancel();
    } else {
        // Not running here: running on another server sharing the registry
        // (which sees the request when it records its next epoch), already
        // ended, or unknown (NOT_FOUND from the read below).
        let requested = state
            .registry
            .request_job_cancel(&id)
            .await
            .map_err(ServalError::from)?;
        if !requested {
            let record = state
                .registry
                .job(&id)
                .await
                .map_err(|error| not_here(&id, "cancel", error))?;
            return Err(Status::failed_precondition(format!(
                "job {id} already ended ({})",
                record.state.as_str()
            )));
        }
    }
    let job = match (state.registry.job(&id).await, &running_here) {
        (Ok(record), _) => job_to_proto(&record),
        // Still preparing its data: the registry records a job once its
        // data is prepared (or, cancelled, as it ends).
        (Err(RegistryError::JobNotFound(_)), Some(running)) => pb::TrainingJob {
            id: id.clone(),
            model: running.model.clone(),
            state: pb::JobState::Running as i32,
            replica: state.replica_name.clone(),
            ..Default::default()
        },
        (Err(error), _) => return Err(ServalError::from(error).into()),
    };
    tracing::info!(job = %id, replica = %job.replica, here = running_here.is_some(), "job cancel requested");
    Ok(Response::new(job))
}
