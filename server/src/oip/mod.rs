//! The Open Inference Protocol (KServe v2) as both of its transports use
//! it: the datatypes an input may have and which of Predict's column
//! values each becomes, the checks on input shapes, the request
//! parameters Serval reads, the output tensors made from Predict's answer,
//! model metadata and readiness, and the hand-off of one inference to
//! `service::predict`, the same code path as `serval.v1` Predict.
//!
//! Owns no I/O and no wire format: `oip_http` reads and writes JSON,
//! `oip_grpc` protobuf tensors (typed or raw contents); each turns its
//! tensors into [`Rows`] with the helpers here and its outputs from
//! [`Output`].

pub mod metadata;
pub mod tensors;

use std::time::Duration;

use serval_proto::v1 as pb;
use tonic::Status;
use tonic::metadata::{MetadataMap, MetadataValue};

use crate::service::ServiceState;
use crate::wire::PredictCall;
pub use tensors::{
    ATTRIBUTION, Datatype, InferOptions, LABEL, Layout, Output, OutputData, PROBABILITY, ParameterValue,
    Rows, TensorShape,
};

/// The server's answer to a metadata request: its name.
pub const SERVER_NAME: &str = "serval";

/// A version as the protocol spells it (a path segment or `model_version`).
pub fn parse_version(text: &str) -> Result<u32, String> {
    text.parse().map_err(|_| {
        let shown: String = text.chars().take(40).filter(|c| !c.is_control()).collect();
        format!("version {shown:?} is not a version number")
    })
}

/// Predict's answer to one inference, and the answering version's original
/// columns (in its order) when explained, for the attribution outputs.
pub struct Inference {
    pub answer: pb::PredictResponse,
    pub columns: Vec<String>,
}

/// Rows as `service::predict` reads them: encoded `serval.v1.Column`s or
/// `serval.v1.DenseRow`s (see `wire`).
#[derive(Debug, Default)]
pub struct EncodedRows {
    pub columns: Vec<bytes::Bytes>,
    pub dense_rows: Vec<bytes::Bytes>,
}

impl From<Rows> for EncodedRows {
    fn from(rows: Rows) -> Self {
        match rows {
            Rows::Columns(columns) => EncodedRows {
                columns: columns.iter().map(encoded).collect(),
                dense_rows: Vec::new(),
            },
            Rows::Dense(rows) => EncodedRows {
                columns: Vec::new(),
                dense_rows: rows.iter().map(encoded).collect(),
            },
        }
    }
}

/// Scores `rows` with `model` through `service::predict`, exactly as a
/// `serval.v1` Predict call with the same rows would be: routing,
/// batching, limits, live statistics and errors are Predict's.
/// `metadata` and `extensions` are the call's (deadline, caller).
pub async fn infer(
    state: &ServiceState,
    mut metadata: MetadataMap,
    extensions: http::Extensions,
    model: String,
    version: Option<u32>,
    rows: EncodedRows,
    options: &InferOptions,
) -> Result<Inference, Status> {
    let EncodedRows { columns, dense_rows } = rows;
    let call = PredictCall {
        model,
        version,
        records: Vec::new(),
        dense_rows,
        alias: options.alias.clone(),
        routing_key: options.routing_key.clone(),
        explain: options.explain,
        // Every column's attribution, in the answering version's order.
        top_k: if options.explain { u32::MAX } else { 0 },
        columns,
    };
    if let Some(timeout) = options.timeout
        && let Ok(value) = MetadataValue::try_from(grpc_timeout(timeout))
    {
        metadata.insert("grpc-timeout", value);
    }
    let model = call.model.clone();
    let answer = crate::service::predict(state, tonic::Request::from_parts(metadata, extensions, call))
        .await?
        .into_inner();
    let columns = if options.explain {
        let loaded = state.models.resolve(&model, answer.version).await?;
        loaded.encoder.column_names().map(str::to_string).collect()
    } else {
        Vec::new()
    };
    Ok(Inference { answer, columns })
}

fn encoded(message: &impl prost::Message) -> bytes::Bytes {
    bytes::Bytes::from(message.encode_to_vec())
}

/// A deadline as gRPC's `grpc-timeout` header spells it, for Predict.
fn grpc_timeout(timeout: Duration) -> String {
    let micros = timeout.as_micros();
    if micros < 100_000_000 {
        format!("{micros}u")
    } else {
        format!("{}S", timeout.as_secs().min(99_999_999))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_become_grpc_timeout_values() {
        assert_eq!(grpc_timeout(Duration::from_micros(2500)), "2500u");
        assert_eq!(grpc_timeout(Duration::from_secs(500)), "500S");
    }

    #[test]
    fn versions_are_whole_numbers() {
        assert_eq!(parse_version("3"), Ok(3));
        assert!(parse_version("latest").unwrap_err().contains("\"latest\""));
        assert!(parse_version("-1").is_err());
    }
}
