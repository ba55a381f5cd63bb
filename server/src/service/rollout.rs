//! Rollout RPCs: aliases, traffic changes, state, history, live statistics
//! (the fleet's, see `fleet_stats`) and the change stream. A change first loads and warms the versions it
//! will send traffic to (refusing it, with nothing stored, if they cannot
//! load), then commits one transaction with its audit event, then brings
//! this server's routing up to date at once.

use std::collections::HashSet;
use std::pin::Pin;

use futures::Stream;
use serval_proto::v1 as pb;
use serval_registry::{AuditFilter, ChangeContext, RegistryError, TrafficChange};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::outcomes::attach_online_quality;
use super::{ServiceState, actor_of, invalid};
use crate::catalog::{audit_event_to_proto, rollout_state_to_proto, serving_at_to_proto, timestamp};
use crate::error::ServalError;
use crate::fleet_stats::{VersionView, merge_fleet, published_by_replica};
use crate::live_stats::MAX_WINDOW_SECONDS;

pub type AuditEventStream = Pin<Box<dyn Stream<Item = Result<pb::AuditEvent, Status>> + Send>>;

/// Registry errors of a change: a version the change names must exist, so
/// a missing one is a failed precondition, not a missing resource.
fn change_error(error: RegistryError) -> Status {
    match error {
        RegistryError::VersionNotFound { .. } => ServalError::FailedPrecondition(error.to_string()).into(),
        other => ServalError::from(other).into(),
    }
}

fn context<T>(request: &Request<T>, reason: &str) -> ChangeContext {
    ChangeContext {
        actor: actor_of(request),
        reason: reason.to_string(),
    }
}

/// Loads and warms `version` before a change routes traffic to it.
async fn preload(state: &ServiceState, model: &str, version: u32) -> Result<(), Status> {
    state
        .models
        .resolve(model, version)
        .await
        .map(|_| ())
        .map_err(|error| match error {
            ServalError::Registry(error) => change_error(error),
            other => Status::failed_precondition(format!(
                "model {model:?} version {version} cannot serve: {other}"
            )),
        })
}

async fn refresh(state: &ServiceState) {
    if let Err(error) = state.sync.sync().await {
        tracing::warn!(%error, "change committed, but routing could not be refreshed yet");
    }
}

pub async fn set_alias(
    state: &ServiceState,
    request: Request<pb::SetAliasRequest>,
) -> Result<Response<pb::RolloutState>, Status> {
    let context = context(&request, &request.get_ref().reason);
    let request = request.into_inner();
    serval_registry::validate_alias_name(&request.alias).map_err(|e| invalid(format!("alias: {e}")))?;
    preload(state, &request.model, request.version).await?;
    let updated = state
        .registry
        .set_alias(&request.model, &request.alias, request.version, &context)
        .await
        .map_err(change_error)?;
    refresh(state).await;
    Ok(Response::new(rollout_state_to_proto(&updated)))
}

pub async fn delete_alias(
    state: &ServiceState,
    request: Request<pb::DeleteAliasRequest>,
) -> Result<Response<pb::RolloutState>, Status> {
    let context = context(&request, &request.get_ref().reason);
    let request = request.into_inner();
    let updated = state
        .registry
        .delete_alias(&request.model, &request.alias, &context)
        .await
        .map_err(change_error)?;
    refresh(state).await;
    Ok(Response::new(rollout_state_to_proto(&updated)))
}

pub async fn update_traffic(
    state: &ServiceState,
    request: Request<pb::UpdateTrafficRequest>,
) -> Result<Response<pb::RolloutState>, Status> {
    let context = context(&request, &request.get_ref().reason);
    let request = request.into_inner();
    let model = request.model.as_str();
    let change = match request.change {
        Some(pb::update_traffic_request::Change::Canary(canary)) => {
            if !(0.0..=100.0).contains(&canary.percent) {
                return Err(invalid(format!(
                    "canary.percent: {} is outside 0-100",
                    canary.percent
                )));
            }
            preload(state, model, canary.version).await?;
            TrafficChange::Canary {
                version: canary.version,
                percent: canary.percent,
            }
        }
        Some(pb::update_traffic_request::Change::Promote(_)) => TrafficChange::Promote,
        Some(pb::update_traffic_request::Change::Rollback(rollback)) => {
            if let Some(version) = rollback.to_version {
                preload(state, model, version).await?;
            }
            TrafficChange::Rollback {
                to: rollback.to_version,
            }
        }
        Some(pb::update_traffic_request::Change::Clear(_)) => TrafficChange::Clear,
        Some(pb::update_traffic_request::Change::Shadow(shadow)) => {
            if !(0.0..=100.0).contains(&shadow.percent) {
                return Err(invalid(format!(
                    "shadow.percent: {} is outside 0-100",
                    shadow.percent
                )));
            }
            if let Some(version) = shadow.version {
                preload(state, model, version).await?;
            }
            TrafficChange::Shadow {
                version: shadow.version,
                percent: shadow.percent,
            }
        }
        None => return Err(invalid("change: set canary, promote, rollback, clear or shadow")),
    };
    let updated = state
        .registry
        .update_traffic(model, &change, request.expected_revision, &context)
        .await
        .map_err(change_error)?;
    refresh(state).await;
    Ok(Response::new(rollout_state_to_proto(&updated)))
}

pub async fn get_rollout_state(
    state: &ServiceState,
    request: Request<pb::GetRolloutStateRequest>,
) -> Result<Response<pb::RolloutState>, Status> {
    let rollout = state
        .registry
        .rollout_state(&request.get_ref().model)
        .await
        .map_err(ServalError::from)?;
    Ok(Response::new(rollout_state_to_proto(&rollout)))
}

pub async fn get_rollout_history(
    state: &ServiceState,
    request: Request<pb::GetRolloutHistoryRequest>,
) -> Result<Response<pb::GetRolloutHistoryResponse>, Status> {
    let request = request.into_inner();
    let at = match &request.at {
        Some(at) => Some(
            chrono::DateTime::from_timestamp(at.seconds, at.nanos.max(0) as u32)
                .ok_or_else(|| invalid("at: not a valid timestamp"))?,
        ),
        None => None,
    };
    // An unknown model is NOT_FOUND, not an empty log; a deleted one still
    // has its history (and no serving state).
    let exists = match state.registry.rollout_state(&request.model).await {
        Ok(_) => true,
        Err(serval_registry::RegistryError::ModelNotFound(_)) => false,
        Err(error) => return Err(ServalError::from(error).into()),
    };
    let limit = if request.limit == 0 { 1000 } else { request.limit };
    let mut events = state
        .registry
        .audit_events(&AuditFilter {
            model: Some(request.model.clone()),
            until: at,
            ..Default::default()
        })
        .await
        .map_err(ServalError::from)?;
    if !exists && events.is_empty() {
        let unknown = serval_registry::RegistryError::ModelNotFound(request.model.clone());
        return Err(ServalError::from(unknown).into());
    }
    let skip = events.len().saturating_sub(limit as usize);
    events.drain(..skip);
    let serving_at = match at {
        Some(at) if exists => {
            let serving = state
                .registry
                .serving_at(&request.model, at)
                .await
                .map_err(ServalError::from)?;
            Some(serving_at_to_proto(timestamp(at), &serving))
        }
        _ => None,
    };
    Ok(Response::new(pb::GetRolloutHistoryResponse {
        events: events.iter().map(audit_event_to_proto).collect(),
        serving_at,
    }))
}

pub async fn get_live_stats(
    state: &ServiceState,
    request: Request<pb::GetLiveStatsRequest>,
) -> Result<Response<pb::GetLiveStatsResponse>, Status> {
    let request = request.into_inner();
    if request.window_seconds > MAX_WINDOW_SECONDS {
        return Err(invalid(format!("window_seconds: at most {MAX_WINDOW_SECONDS}")));
    }
    let window = if request.window_seconds == 0 {
        60
    } else {
        request.window_seconds
    };
    let rollout = state
        .registry
        .rollout_state(&request.model)
        .await
        .map_err(ServalError::from)?;
    let arm_of = |version: u32| match &rollout.policy {
        Some(policy) if policy.canary_version == Some(version) => pb::Arm::Canary,
        Some(policy) if policy.stable_version == version => pb::Arm::Stable,
        _ => pb::Arm::Unspecified,
    };
    let view = crate::fleet_stats::fleet_view(state, &request.model, window).await?;
    let versions = |versions: &[VersionView]| -> Vec<pb::VersionStats> {
        versions
            .iter()
            .map(|v| version_stats_to_proto(v, arm_of(v.version)))
            .collect()
    };
    // Outcomes are matched on the replica that issued the prediction; each
    // replica publishes its summaries, and the fleet's online quality merges
    // this replica's (from memory) with the live replicas' published ones.
    let model = request.model;
    let local_quality = state.outcomes.quality(&model);
    let published = state
        .registry
        .online_quality_published(&model)
        .await
        .map_err(ServalError::from)?;
    let other_quality = published_by_replica(&state.replica_name, &published);
    let live_replicas: HashSet<&str> = view
        .replicas
        .iter()
        .filter(|r| !r.stale && !r.answering)
        .map(|r| r.replica.as_str())
        .collect();
    let mut fleet_versions = versions(&view.versions);
    attach_online_quality(
        &merge_fleet(&local_quality, &other_quality, &live_replicas),
        &mut fleet_versions,
        arm_of,
    );
    Ok(Response::new(pb::GetLiveStatsResponse {
        model: model.clone(),
        window_seconds: window,
        versions: fleet_versions,
        replicas: view
            .replicas
            .iter()
            .map(|r| {
                let mut replica_versions = versions(&r.versions);
                let own_quality = if r.answering {
                    Some(local_quality.as_slice())
                } else {
                    other_quality.get(&r.replica).map(Vec::as_slice)
                };
                if let Some(quality) = own_quality {
                    attach_online_quality(quality, &mut replica_versions, arm_of);
                }
                pb::ReplicaLiveStats {
                    replica: r.replica.clone(),
                    answering: r.answering,
                    stale: r.stale,
                    last_published: r.last_published.map(timestamp),
                    versions: replica_versions,
                }
            })
            .collect(),
        stale_after_seconds: state.fleet.stale_after.as_secs_f64(),
    }))
}

fn version_stats_to_proto(view: &VersionView, arm: pb::Arm) -> pb::VersionStats {
    let s = view.snapshot.summary();
    pb::VersionStats {
        version: view.version,
        arm: arm as i32,
        requests: s.requests,
        errors: s.errors,
        errors_by_code: s
            .errors_by_code
            .iter()
            .map(|(code, n)| (serval_proto::code_name(*code).to_string(), *n))
            .collect(),
        error_rate: s.error_rate(),
        p50_ms: s.p50_ms,
        p99_ms: s.p99_ms,
        mean_score: s.mean_score,
        score_histogram: s.score_histogram.to_vec(),
        replicas: view.replicas,
        ..Default::default()
    }
}

pub async fn watch_models(
    state: &ServiceState,
    request: Request<pb::WatchModelsRequest>,
) -> Result<Response<AuditEventStream>, Status> {
    let request = request.into_inner();
    // Subscribe before reading the backlog, so nothing falls in between.
    let mut live = state.sync.subscribe();
    let model = (!request.model.is_empty()).then_some(request.model);
    let registry = state.registry.clone();
    let sync = state.sync.clone();
    let mut stopping = state.stopping.clone();
    let (sender, receiver) = mpsc::channel(256);
    let latest = registry.latest_audit_id().await.map_err(ServalError::from)?;
    let mut last_sent = if request.after_id > 0 {
        request.after_id.min(latest)
    } else {
        latest
    };
    tokio::spawn(async move {
        let wanted = |event: &serval_registry::AuditEvent| model.as_deref().is_none_or(|m| m == event.model);
        // Events the subscriber asked to replay, or missed while lagging.
        // An event this server has not applied yet (written since the
        // stream began) is applied first, so a call made after the event
        // arrives already routes by it.
        let backlog = |after: u64| {
            let registry = registry.clone();
            let model = model.clone();
            let sync = sync.clone();
            async move {
                let events = registry
                    .audit_events(&AuditFilter {
                        model,
                        after_id: Some(after),
                        ..Default::default()
                    })
                    .await?;
                if !events.is_empty()
                    && let Err(error) = sync.sync().await
                {
                    tracing::warn!(%error, "cannot apply registry changes before streaming them");
                }
                Ok::<_, RegistryError>(events)
            }
        };
        let mut pending = match backlog(last_sent).await {
            Ok(events) => events,
            Err(error) => {
                let _ = sender.send(Err(ServalError::from(error).into())).await;
                return;
            }
        };
        loop {
            for event in pending.drain(..) {
                if event.id <= last_sent || !wanted(&event) {
                    continue;
                }
                last_sent = event.id;
                if sender.send(Ok(audit_event_to_proto(&event))).await.is_err() {
                    return;
                }
            }
            tokio::select! {
                received = live.recv() => match received {
                    Ok(event) => pending.push(event),
                    Err(broadcast::error::RecvError::Lagged(_)) => match backlog(last_sent).await {
                        Ok(events) => pending = events,
                        Err(error) => {
                            let _ = sender.send(Err(ServalError::from(error).into())).await;
                            return;
                        }
                    },
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = sender.closed() => return,
                () = async { let _ = stopping.wait_for(|stopping| *stopping).await; } => {
                    let _ = sender.send(Err(Status::unavailable("the server is shutting down; reconnect"))).await;
                    return;
                }
            }
        }
    });
    Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
}
