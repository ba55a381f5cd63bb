//! Predict: checks the request, routes it to a version, encodes the rows
//! with that version's encoder, and scores them through its batching queue.

use std::time::Instant;

use serval_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::{ServiceState, invalid};
use crate::encoder::Encoder;
use crate::error::ServalError;
use crate::routing::Route;

pub async fn predict(
    state: &ServiceState,
    request: Request<pb::PredictRequest>,
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
    let rows = match (request.records.is_empty(), request.dense_rows.is_empty()) {
        (true, true) => return Err(invalid("no rows: set records or dense_rows")),
        (false, false) => return Err(invalid("set records or dense_rows, not both")),
        (false, true) => request.records.len(),
        (true, false) => request.dense_rows.len(),
    };
    if rows > state.limits.max_predict_rows {
        return Err(invalid(format!(
            "{rows} rows in one call; the server accepts at most {}",
            state.limits.max_predict_rows
        )));
    }
    let route = route(state, &request).await?;
    let loaded = state.models.resolve(&request.model, route.version).await?;

    // From here on the call counts in the version's live statistics.
    let outcome = match encode_rows(&loaded.encoder, request.records, request.dense_rows) {
        Ok(input) => loaded.score(input, deadline).await.map_err(Status::from),
        Err(status) => Err(status),
    };
    let (code, scores) = match &outcome {
        Ok(scores) => (tonic::Code::Ok, scores.as_slice()),
        Err(status) => (status.code(), &[][..]),
    };
    let elapsed = started.elapsed();
    state
        .stats
        .record(&request.model, route.version, code, elapsed, scores);
    state.metrics.predict.observe(
        &request.model,
        route.version,
        serval_proto::code_name(code),
        elapsed.as_secs_f64(),
        scores.len(),
    );
    let scores = outcome?;
    let labels = scores.iter().map(|&s| f64::from(s) >= loaded.threshold).collect();
    Ok(Response::new(pb::PredictResponse {
        model: request.model,
        version: route.version,
        scores,
        arm: route.arm as i32,
        labels,
        threshold: loaded.threshold,
    }))
}

/// Routes by the server's copy of the registry; a model it does not know
/// yet (registered through another server a moment ago) triggers one
/// re-read.
async fn route(state: &ServiceState, request: &pb::PredictRequest) -> Result<Route, Status> {
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
            state.sync.sync().await?;
            Ok(route(state)?)
        }
        other => Ok(other?),
    }
}

/// The request's rows as one row-major input, checked: records through the
/// version's encoder, dense rows for width and finiteness. Errors name the
/// row and column.
fn encode_rows(
    encoder: &Encoder,
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
