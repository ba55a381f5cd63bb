//! Predict: checks the request, routes it to a version, encodes the rows
//! with that version's encoder, and scores them through its batching queue.
//! The request arrives as [`PredictCall`], the server's allocation-free
//! reading of `serval.v1.PredictRequest` (see `predict_route`).

use std::time::Instant;

use serval_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::{ServiceState, explanation, invalid};
use crate::error::ServalError;
use crate::routing::Route;
use crate::serving::CallRecorders;
use crate::wire::PredictCall;

pub async fn predict(
    state: &ServiceState,
    request: Request<PredictCall>,
) -> Result<Response<pb::PredictResponse>, Status> {
    let started = Instant::now();
    let deadline = crate::deadline::from_metadata(request.metadata());
    let request = request.into_inner();
    super::check_model(&request.model)?;
    if request.version.is_some() && !request.alias.is_empty() {
        return Err(invalid("set version or alias, not both"));
    }
    if !request.alias.is_empty() {
        super::check_alias(&request.alias)?;
    }
    let rows = crate::encoding::row_count(&request).map_err(invalid)?;
    if rows > state.limits.max_predict_rows {
        return Err(invalid(format!(
            "{rows} rows in one call; the server accepts at most {}",
            state.limits.max_predict_rows
        )));
    }
    if request.explain && rows > explanation::MAX_EXPLAIN_ROWS {
        return Err(invalid(format!(
            "explain: {rows} rows in one call; explanations are limited to {} rows a call",
            explanation::MAX_EXPLAIN_ROWS
        )));
    }
    let route = route(state, &request).await?;
    let loaded = state.models.resolve(&request.model, route.version).await?;

    // From here on the call counts in the version's live statistics.
    loaded.mark_used(started);
    let encoded = crate::encoding::encode_call(&loaded.encoder, &loaded.columns, &request, request.explain);
    let (outcome, shown) = match encoded {
        Ok(encoded) => (
            loaded
                .score(encoded.input, deadline, request.explain)
                .await
                .map_err(Status::from),
            encoded.shown,
        ),
        Err(error) => (Err(Status::from(error)), Vec::new()),
    };
    let (code, scores) = match &outcome {
        Ok(scored) => (tonic::Code::Ok, scored.scores.as_slice()),
        Err(status) => (status.code(), &[][..]),
    };
    let elapsed = started.elapsed();
    let recorders = loaded.recorders(|| CallRecorders {
        stats: state.stats.for_version(&request.model, route.version),
        metrics: state.metrics.predict.for_version(&request.model, route.version),
        outcomes: state.outcomes.for_version(&request.model, route.version),
    });
    recorders.stats.record(code, elapsed, scores);
    recorders
        .metrics
        .observe(code, elapsed.as_secs_f64(), scores.len());
    let scored = outcome?;
    let explanations = scored
        .explanations
        .iter()
        .enumerate()
        .map(|(i, encoded)| {
            explanation::by_column(
                &loaded.encoder,
                encoded,
                shown.get(i).map(Vec::as_slice),
                request.top_k,
            )
        })
        .collect();
    let scores = scored.scores;
    let labels = scores.iter().map(|&s| f64::from(s) >= loaded.threshold).collect();
    let prediction_ids = state.outcomes.track(&recorders.outcomes, &scores);
    let model = super::shadow::after_answer(state, request, route, &loaded, &prediction_ids);
    Ok(Response::new(pb::PredictResponse {
        model,
        version: route.version,
        scores,
        arm: route.arm as i32,
        labels,
        threshold: loaded.threshold,
        explanations,
        prediction_ids,
    }))
}

/// Routes by the server's copy of the registry; a model it does not know
/// yet (registered through another server a moment ago) triggers one
/// re-read.
async fn route(state: &ServiceState, request: &PredictCall) -> Result<Route, Status> {
    if !request.routing_key.is_empty() {
        // Privacy: the key only ever in hashed form (computed only when
        // debug logging is on).
        tracing::debug!(
            routing_key_hash = %crate::privacy::routing_key_hash(&request.routing_key),
            "routing by key"
        );
    }
    let route = |state: &ServiceState| {
        state.routing.route(
            &request.model,
            request.version,
            &request.alias,
            &request.routing_key,
        )
    };
    match route(state) {
        Err(ServalError::NotFound(_)) if state.routing.state(&request.model).is_none() => {
            // Boxed: the re-read's large future stays out of every call's.
            Box::pin(state.sync.sync()).await?;
            Ok(route(state)?)
        }
        other => Ok(other?),
    }
}
