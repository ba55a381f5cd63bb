//! DeleteModel: removes a version or a whole model through the registry
//! (which refuses while an alias or the traffic policy still points at it),
//! then stops this server serving what was deleted at once. Other servers
//! on the same registry stop when their poller reads the audit event.

use serval_proto::v1 as pb;
use serval_registry::ChangeContext;
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
    // NOT_FOUND; calls already holding it finish.
    for &version in &deletion.versions {
        state.models.unload(&deletion.model, version);
    }
    tracing::info!(
        model = %deletion.model,
        versions = ?deletion.versions,
        bytes_reclaimed = deletion.bytes_reclaimed,
        actor = %context.actor,
        "deleted"
    );
    Ok(Response::new(pb::DeleteModelResponse {
        model: deletion.model,
        versions: deletion.versions,
        bytes_reclaimed: deletion.bytes_reclaimed,
    }))
}
