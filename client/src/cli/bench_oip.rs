//! The bench's requests in the Open Inference Protocol (KServe v2): the
//! same rows as its `serval.v1` Predict requests, as one FP32 tensor
//! `[N, input_width]` (dense rows, sent as raw contents over gRPC, as
//! tritonclient does) or as one input per column (FP32, BOOL or BYTES),
//! encoded once as a gRPC `ModelInferRequest` or a JSON body.

use bytes::Bytes;
use prost::Message;
use serde_json::{Value, json};
use serval_client::proto as pb;
use serval_proto::inference::model_infer_request::InferInputTensor;
use serval_proto::inference::{InferTensorContents, ModelInferRequest};

/// The rows of `request` as a gRPC `ModelInferRequest`, encoded.
pub fn grpc_request(request: &pb::PredictRequest) -> Bytes {
    let mut infer = ModelInferRequest {
        model_name: request.model.clone(),
        model_version: request.version.map(|v| v.to_string()).unwrap_or_default(),
        ..Default::default()
    };
    if !request.dense_rows.is_empty() {
        let (rows, width) = (request.dense_rows.len(), request.dense_rows[0].values.len());
        infer.inputs.push(InferInputTensor {
            name: "input".into(),
            datatype: "FP32".into(),
            shape: vec![rows as i64, width as i64],
            ..Default::default()
        });
        let raw: Vec<u8> = request
            .dense_rows
            .iter()
            .flat_map(|row| row.values.iter().flat_map(|v| v.to_le_bytes()))
            .collect();
        infer.raw_input_contents.push(raw);
    } else {
        for column in &request.columns {
            let (datatype, contents, rows) = if !column.strings.is_empty() {
                let contents = InferTensorContents {
                    bytes_contents: column.strings.iter().map(|s| s.as_bytes().to_vec()).collect(),
                    ..Default::default()
                };
                ("BYTES", contents, column.strings.len())
            } else if !column.bools.is_empty() {
                let contents = InferTensorContents {
                    bool_contents: column.bools.clone(),
                    ..Default::default()
                };
                ("BOOL", contents, column.bools.len())
            } else {
                let contents = InferTensorContents {
                    fp32_contents: column.numbers.iter().map(|&x| x as f32).collect(),
                    ..Default::default()
                };
                ("FP32", contents, column.numbers.len())
            };
            infer.inputs.push(InferInputTensor {
                name: column.name.clone(),
                datatype: datatype.into(),
                shape: vec![rows as i64],
                contents: Some(contents),
                ..Default::default()
            });
        }
    }
    Bytes::from(infer.encode_to_vec())
}

/// The rows of `request` as the JSON body of `POST /v2/models/…/infer`.
pub fn json_request(request: &pb::PredictRequest) -> Bytes {
    let inputs: Vec<Value> = if !request.dense_rows.is_empty() {
        let (rows, width) = (request.dense_rows.len(), request.dense_rows[0].values.len());
        let data: Vec<f32> = request
            .dense_rows
            .iter()
            .flat_map(|row| row.values.iter().copied())
            .collect();
        vec![json!({"name": "input", "datatype": "FP32", "shape": [rows, width], "data": data})]
    } else {
        request
            .columns
            .iter()
            .map(|column| {
                let (datatype, data, rows) = if !column.strings.is_empty() {
                    ("BYTES", json!(column.strings), column.strings.len())
                } else if !column.bools.is_empty() {
                    ("BOOL", json!(column.bools), column.bools.len())
                } else {
                    ("FP32", json!(column.numbers), column.numbers.len())
                };
                json!({"name": column.name, "datatype": datatype, "shape": [rows], "data": data})
            })
            .collect()
    };
    Bytes::from(json!({ "inputs": inputs }).to_string())
}

/// The path an inference for `request` is posted to.
pub fn http_path(request: &pb::PredictRequest) -> String {
    match request.version {
        Some(version) => format!("/v2/models/{}/versions/{version}/infer", request.model),
        None => format!("/v2/models/{}/infer", request.model),
    }
}
