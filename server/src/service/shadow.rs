//! Shadow scoring: after a call routed by a model's traffic policy is
//! answered, a share of such calls (the policy's `shadow_percent`) is also
//! scored by the policy's shadow version, and those scores join the
//! outcome store beside the answered rows' ids, so that outcomes reported
//! for the answer also judge the shadow (its online quality). The shadow
//! is never answered with.
//!
//! Shadow work never delays a live answer: it runs in a task of its own
//! that first lets the answer go, through the same compute threads, and is
//! shed — counted, not queued — whenever the answering version has more
//! than one batch waiting or the shadow version has a batch waiting.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serval_proto::v1 as pb;

use super::ServiceState;
use crate::batching::PredictRows;
use crate::error::ServalError;
use crate::outcomes::OutcomeStore;
use crate::routing::Route;
use crate::serving::{LoadedVersion, ModelStore};
use crate::wire::PredictCall;

/// Starts shadow scoring of `request`, answered by `live` with `ids`, if
/// the model's policy has a shadow and this call falls in its share.
/// Returns the model's name for the answer: moved out of the request, and
/// copied only when the request itself goes to the shadow.
pub fn after_answer(
    state: &ServiceState,
    request: PredictCall,
    route: Route,
    live: &LoadedVersion,
    ids: &[String],
) -> String {
    if ids.is_empty() || !matches!(route.arm, pb::Arm::Stable | pb::Arm::Canary) {
        return request.model;
    }
    let Some((version, percent)) = state.routing.shadow(&request.model) else {
        return request.model;
    };
    if version == route.version || rand::random::<f64>() * 100.0 >= percent {
        return request.model;
    }
    let outcomes = state.outcomes.clone();
    if live.batcher.queued_rows() > live.batcher.config().max_batch_rows {
        shed(&outcomes, ids.len());
        return request.model;
    }
    let models = state.models.clone();
    let ids = ids.to_vec();
    let model = request.model.clone();
    tokio::spawn(async move {
        // The answer goes first.
        tokio::task::yield_now().await;
        score_in_shadow(&models, &outcomes, request, version, ids).await;
    });
    model
}

fn shed(outcomes: &OutcomeStore, rows: usize) {
    outcomes
        .totals
        .shadow_shed
        .fetch_add(rows as u64, Ordering::Relaxed);
}

async fn score_in_shadow(
    models: &Arc<ModelStore>,
    outcomes: &Arc<OutcomeStore>,
    request: PredictCall,
    version: u32,
    ids: Vec<String>,
) {
    let rows = ids.len();
    let failed = |error: &dyn std::fmt::Display| {
        tracing::debug!(model = %request.model, version, %error, "shadow scoring failed");
        outcomes
            .totals
            .shadow_failed
            .fetch_add(rows as u64, Ordering::Relaxed);
    };
    let shadow = match models.resolve(&request.model, version).await {
        Ok(shadow) => shadow,
        Err(error) => return failed(&error),
    };
    if shadow.batcher.queued_rows() >= shadow.batcher.config().max_batch_rows {
        return shed(outcomes, rows);
    }
    let encoded = match crate::encoding::encode_call(&shadow.encoder, &shadow.columns, &request, false) {
        Ok(encoded) => encoded,
        Err(error) => return failed(&error),
    };
    let scored = shadow
        .batcher
        .submit(PredictRows {
            rows: encoded.input,
            deadline: None,
            explain: false,
        })
        .await;
    match scored {
        Ok(scored) => {
            let target = outcomes.for_version(&request.model, version);
            let attached = outcomes.attach_shadow(&ids, &target, &scored.scores);
            outcomes
                .totals
                .shadow_scored
                .fetch_add(attached as u64, Ordering::Relaxed);
        }
        Err(ServalError::ResourceExhausted(_)) => shed(outcomes, rows),
        Err(error) => failed(&error),
    }
}
