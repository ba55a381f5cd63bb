//! DeleteModel: removes a version or a whole model through the registry
//! (which refuses while an alias or the traffic policy still points at it),
//! then stops this server serving what was deleted at once, and forgets the
//! deleted versions' live statistics and Predict series. Other servers on
//! the same registry do both when their poller reads the audit event.

use std::sync::Arc;

use serval_proto::v1 as pb;
use serval_registry::{AuditEvent, AuditFilter, ChangeContext};
use tokio::sync::broadcast::error::RecvError;
use tonic::{Request, Response, Status};

use super::{ServiceState, actor_of};
use crate::error::ServalError;

pub async fn delete_model(
    state: &ServiceState,
    request: Request<pb::DeleteModelRequest>,
) -> Result<Response<pb::DeleteModelResponse>, Status> {
    let context = ChangeContext {
        actor: actor_of(&request),
        reason: request.get_ref().reason.clone(),
    };
    let request = request.into_inner();
    let deletion = state
        .registry
        .delete(&request.model, request.version, &context)
        .await
        .map_err(ServalError::from)?;
    // Routes move off the deleted versions (loading and warming whatever
    // serves instead) and subscribers (WatchModels) get the delete event.
    if let Err(error) = state.sync.sync().await {
        tracing::warn!(%error, "delete committed, but routing could not be refreshed yet");
    }
    // Correctness: the sync above unloads versions nothing routes to, but a
    // failed sync must not leave a deleted version loaded. Once unloaded, a
    // pinned call reloads it from the registry, finds it gone and answers
    // NOT_FOUND; calls already holding it finish. Its statistics go here
    // too, before the answer: the follower below would forget them only
    // once it gets round to the event.
    for &version in &deletion.versions {
        state.models.unload(&deletion.model, version);
        forget_version(state, &deletion.model, version);
    }
    tracing::info!(
        model = %deletion.model,
        versions = ?deletion.versions,
        bytes_reclaimed = deletion.bytes_reclaimed,
        compaction_deferred = deletion.compaction_deferred.as_deref().unwrap_or(""),
        actor = %context.actor,
        "deleted"
    );
    Ok(Response::new(pb::DeleteModelResponse {
        model: deletion.model,
        versions: deletion.versions,
        bytes_reclaimed: deletion.bytes_reclaimed,
        compaction_deferred: deletion.compaction_deferred.unwrap_or_default(),
    }))
}

/// What this server keeps about a deleted version besides the version
/// itself: its live-statistics window and its Predict series, which would
/// otherwise stay listed (and held) for the life of the process.
fn forget_version(state: &ServiceState, model: &str, version: u32) {
    state.stats.forget(model, version);
    state.metrics.predict.remove_version(model, version);
    state.outcomes.forget(model, version);
}

/// Forgets the versions deleted through any server on the registry as this
/// server's poller applies the events, until the server stops. Events
/// missed while lagging are read back from the registry's audit log.
pub fn spawn_deleted_version_follower(state: Arc<ServiceState>) {
    let mut events = state.sync.subscribe();
    let mut stopping = state.stopping.clone();
    tokio::spawn(async move {
        let forget = |event: &AuditEvent| {
            for version in event.deleted_versions() {
                forget_version(&state, &event.model, version);
            }
        };
        let mut last_seen = state.registry.latest_audit_id().await.ok();
        loop {
            tokio::select! {
                received = events.recv() => match received {
                    Ok(event) => {
                        last_seen = Some(event.id);
                        forget(&event);
                    }
                    Err(RecvError::Lagged(missed)) => {
                        let filter = AuditFilter {
                            after_id: last_seen,
                            ..Default::default()
                        };
                        match state.registry.audit_events(&filter).await {
                            Ok(backlog) => {
                                for event in &backlog {
                                    forget(event);
                                }
                                last_seen = backlog.last().map(|e| e.id).or(last_seen);
                            }
                            Err(error) => tracing::warn!(
                                missed,
                                %error,
                                "missed audit events; deleted versions' statistics may stay listed"
                            ),
                        }
                    }
                    Err(RecvError::Closed) => return,
                },
                () = async { let _ = stopping.wait_for(|stopping| *stopping).await; } => return,
            }
        }
    });
}
