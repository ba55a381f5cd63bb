//! The Open Inference Protocol over gRPC (`inference.GRPCInferenceService`)
//! through the generated client on a real server's port: liveness,
//! readiness and metadata, inference by column (typed and raw contents)
//! and by dense tensor scoring exactly as `serval.v1` Predict does for the
//! same rows, the explanation outputs, tokens, the status codes of bad
//! requests, and reflection.

use serval_client::proto as pb;
use serval_proto::inference as oip;
use serval_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use tonic::Code;
use tonic::transport::Channel;

use crate::common::*;
use crate::oip_rows::*;

type Input = oip::model_infer_request::InferInputTensor;

fn client(test: &TestServer) -> GrpcInferenceServiceClient<Channel> {
    GrpcInferenceServiceClient::new(test.client.channel().clone())
}

fn input(name: &str, datatype: &str, shape: Vec<i64>, contents: Option<oip::InferTensorContents>) -> Input {
    Input {
        name: name.into(),
        datatype: datatype.into(),
        shape,
        contents,
        ..Default::default()
    }
}

/// The rows as one input per column in typed contents: x as FP64 (NaN
/// where missing), colour as BYTES, member as BOOL.
fn typed_inputs(rows: &[(Option<f64>, &str, bool)]) -> Vec<Input> {
    let n = vec![rows.len() as i64];
    vec![
        input(
            "x",
            "FP64",
            n.clone(),
            Some(oip::InferTensorContents {
                fp64_contents: rows.iter().map(|r| r.0.unwrap_or(f64::NAN)).collect(),
                ..Default::default()
            }),
        ),
        input(
            "colour",
            "BYTES",
            n.clone(),
            Some(oip::InferTensorContents {
                bytes_contents: rows.iter().map(|r| r.1.as_bytes().to_vec()).collect(),
                ..Default::default()
            }),
        ),
        input(
            "member",
            "BOOL",
            n,
            Some(oip::InferTensorContents {
                bool_contents: rows.iter().map(|r| r.2).collect(),
                ..Default::default()
            }),
        ),
    ]
}

/// The same rows as tritonclient sends them: x as FP32, every input's
/// elements in `raw_input_contents` (BYTES length-prefixed).
fn raw_request(rows: &[(Option<f64>, &str, bool)]) -> oip::ModelInferRequest {
    let n = vec![rows.len() as i64];
    oip::ModelInferRequest {
        model_name: "small".into(),
        inputs: vec![
            input("x", "FP32", n.clone(), None),
            input("colour", "BYTES", n.clone(), None),
            input("member", "BOOL", n, None),
        ],
        raw_input_contents: vec![
            rows.iter()
                .flat_map(|r| (r.0.unwrap_or(f64::NAN) as f32).to_le_bytes())
                .collect(),
            rows.iter()
                .flat_map(|r| (r.1.len() as u32).to_le_bytes().into_iter().chain(r.1.bytes()))
                .collect(),
            rows.iter().map(|r| u8::from(r.2)).collect(),
        ],
        ..Default::default()
    }
}

fn typed_request(rows: &[(Option<f64>, &str, bool)]) -> oip::ModelInferRequest {
    oip::ModelInferRequest {
        model_name: "small".into(),
        inputs: typed_inputs(rows),
        ..Default::default()
    }
}

/// An output read from `raw_output_contents` as floats (INT32 too),
/// checking its datatype and shape.
fn output(answer: &oip::ModelInferResponse, name: &str) -> Vec<f64> {
    assert_eq!(
        answer.outputs.len(),
        answer.raw_output_contents.len(),
        "one raw entry per output"
    );
    let at = answer
        .outputs
        .iter()
        .position(|o| o.name == name)
        .unwrap_or_else(|| panic!("no output {name}: {:?}", answer.outputs));
    let tensor = &answer.outputs[at];
    let raw = &answer.raw_output_contents[at];
    let values: Vec<f64> = match tensor.datatype.as_str() {
        "FP32" => raw
            .chunks_exact(4)
            .map(|b| f64::from(f32::from_le_bytes(b.try_into().unwrap())))
            .collect(),
        "INT32" => raw
            .chunks_exact(4)
            .map(|b| f64::from(i32::from_le_bytes(b.try_into().unwrap())))
            .collect(),
        other => panic!("output {name}: unexpected datatype {other}"),
    };
    assert_eq!(tensor.shape, vec![values.len() as i64], "{name}");
    values
}

fn string_parameter(answer: &oip::ModelInferResponse, key: &str) -> String {
    match answer
        .parameters
        .get(key)
        .and_then(|p| p.parameter_choice.clone())
    {
        Some(oip::infer_parameter::ParameterChoice::StringParam(s)) => s,
        other => panic!("parameter {key}: {other:?}"),
    }
}

fn scores(answer: &pb::PredictResponse) -> Vec<f64> {
    answer.scores.iter().map(|&s| f64::from(s)).collect()
}

async fn predict_records(test: &mut TestServer, explain: bool) -> pb::PredictResponse {
    test.client
        .predict(pb::PredictRequest {
            model: "small".into(),
            records: as_records(&small_rows()),
            explain,
            top_k: if explain { 100 } else { 0 },
            ..Default::default()
        })
        .await
        .unwrap()
}

fn explain_parameter() -> std::collections::HashMap<String, oip::InferParameter> {
    [(
        "explain".to_string(),
        oip::InferParameter {
            parameter_choice: Some(oip::infer_parameter::ParameterChoice::BoolParam(true)),
        },
    )]
    .into()
}

#[tokio::test]
async fn liveness_readiness_and_server_metadata_answer() {
    let test = TestServer::start().await;
    let mut oip = client(&test);
    let live = oip
        .server_live(oip::ServerLiveRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(live.live);
    let ready = oip
        .server_ready(oip::ServerReadyRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(ready.ready);
    let server = oip
        .server_metadata(oip::ServerMetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(server.name, "serval");
    assert_eq!(server.version, env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn model_metadata_and_readiness_describe_the_versions_columns() {
    let mut test = TestServer::start().await;
    let trained = test.client.train(small_spec("small"), small_csv()).await.unwrap();
    let mut oip = client(&test);
    let metadata = oip
        .model_metadata(oip::ModelMetadataRequest {
            name: "small".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(metadata.name, "small");
    assert_eq!(metadata.versions, vec!["1"]);
    assert_eq!(metadata.platform, "serval");
    assert_eq!(metadata.inputs.len(), trained.columns.len());
    for column in &trained.columns {
        let tensor = metadata
            .inputs
            .iter()
            .find(|t| t.name == column.name)
            .unwrap_or_else(|| panic!("no input {}", column.name));
        let expected = match pb::ColumnType::try_from(column.column_type).unwrap() {
            pb::ColumnType::Numeric => "FP32",
            pb::ColumnType::Boolean => "BOOL",
            _ => "BYTES",
        };
        assert_eq!(
            (tensor.datatype.as_str(), tensor.shape.as_slice()),
            (expected, &[-1i64][..])
        );
    }
    let outputs: Vec<(&str, &str)> = metadata
        .outputs
        .iter()
        .map(|t| (t.name.as_str(), t.datatype.as_str()))
        .collect();
    assert_eq!(outputs, [("probability", "FP32"), ("label", "INT32")]);

    let ready = |name: &str, version: &str| oip::ModelReadyRequest {
        name: name.into(),
        version: version.into(),
    };
    assert!(
        oip.model_ready(ready("small", ""))
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    assert!(
        oip.model_ready(ready("small", "1"))
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    assert!(
        !oip.model_ready(ready("small", "9"))
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    assert!(
        !oip.model_ready(ready("nope", ""))
            .await
            .unwrap()
            .into_inner()
            .ready
    );

    let unknown = oip
        .model_metadata(oip::ModelMetadataRequest {
            name: "nope".into(),
            version: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    let bad_version = oip
        .model_metadata(oip::ModelMetadataRequest {
            name: "small".into(),
            version: "latest".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad_version.code(), Code::InvalidArgument, "{bad_version:?}");
}

#[tokio::test]
async fn infer_by_column_typed_or_raw_scores_as_predict_of_the_same_records() {
    let mut test = trained_small().await;
    let grpc = predict_records(&mut test, false).await;
    let expected = scores(&grpc);
    let expected_labels: Vec<f64> = grpc.labels.iter().map(|&l| f64::from(u8::from(l))).collect();
    let mut oip = client(&test);
    let rows = small_rows();

    let mut typed = typed_request(&rows);
    typed.id = "call-1".into();
    let answer = oip.model_infer(typed).await.unwrap().into_inner();
    assert_eq!(answer.model_name, "small");
    assert_eq!(answer.model_version, "1");
    assert_eq!(answer.id, "call-1");
    assert_eq!(string_parameter(&answer, "arm"), "latest");
    assert_close(&output(&answer, "probability"), &expected, 1e-6, "typed");
    assert_eq!(output(&answer, "label"), expected_labels);
    assert!(
        answer.outputs.iter().all(|o| !o.name.starts_with("attribution/")),
        "no attributions unless asked"
    );

    let answer = oip.model_infer(raw_request(&rows)).await.unwrap().into_inner();
    assert_close(&output(&answer, "probability"), &expected, 1e-6, "raw");
    assert_eq!(output(&answer, "label"), expected_labels);

    // Only the outputs asked for, and a pinned version.
    let mut asked = raw_request(&rows);
    asked.model_version = "1".into();
    asked.outputs = vec![oip::model_infer_request::InferRequestedOutputTensor {
        name: "label".into(),
        ..Default::default()
    }];
    let answer = oip.model_infer(asked).await.unwrap().into_inner();
    assert_eq!(answer.outputs.len(), 1);
    assert_eq!(output(&answer, "label"), expected_labels);
    assert_eq!(string_parameter(&answer, "arm"), "pinned");
}

#[tokio::test]
async fn infer_with_a_dense_tensor_scores_as_dense_predict() {
    let mut test = trained_small().await;
    let DensePredicted {
        dense,
        width,
        flat: encoded,
        scores: dense_scores,
    } = dense_predicted(&mut test).await;
    let shape = vec![dense.len() as i64, width as i64];
    let typed = oip::ModelInferRequest {
        model_name: "small".into(),
        inputs: vec![input(
            "input",
            "FP32",
            shape.clone(),
            Some(oip::InferTensorContents {
                fp32_contents: encoded.clone(),
                ..Default::default()
            }),
        )],
        ..Default::default()
    };
    let raw = oip::ModelInferRequest {
        model_name: "small".into(),
        inputs: vec![input("input", "FP32", shape, None)],
        raw_input_contents: vec![encoded.iter().flat_map(|x| x.to_le_bytes()).collect()],
        ..Default::default()
    };
    let mut oip = client(&test);
    for (request, what) in [(typed, "typed"), (raw, "raw")] {
        let answer = oip.model_infer(request).await.unwrap().into_inner();
        assert_close(&output(&answer, "probability"), &dense_scores, 1e-6, what);
    }
    // A row of the wrong width is refused as dense Predict refuses it.
    let narrow = oip
        .model_infer(oip::ModelInferRequest {
            model_name: "small".into(),
            inputs: vec![input(
                "input",
                "FP32",
                vec![1, width as i64 - 1],
                Some(oip::InferTensorContents {
                    fp32_contents: vec![0.0; width - 1],
                    ..Default::default()
                }),
            )],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(narrow.code(), Code::InvalidArgument);
    assert!(
        narrow.message().contains(&format!("expects {width}")),
        "{narrow:?}"
    );
}

#[tokio::test]
async fn explain_adds_one_attribution_output_per_original_column() {
    let mut test = trained_small().await;
    let grpc = predict_records(&mut test, true).await;
    let mut request = raw_request(&small_rows());
    request.parameters = explain_parameter();
    let answer = client(&test).model_infer(request).await.unwrap().into_inner();
    let columns = ["x", "colour", "member"];
    assert_eq!(answer.outputs.len(), 2 + columns.len(), "{:?}", answer.outputs);
    for column in columns {
        let expected: Vec<f64> = grpc
            .explanations
            .iter()
            .map(|e| {
                e.attributions
                    .iter()
                    .find(|a| a.column == column)
                    .expect("every column")
                    .attribution
            })
            .collect();
        assert_close(
            &output(&answer, &format!("attribution/{column}")),
            &expected,
            1e-5,
            column,
        );
    }
    assert_close(&output(&answer, "probability"), &scores(&grpc), 1e-6, "explained");
}

#[tokio::test]
async fn bad_requests_get_predicts_codes_and_name_the_input() {
    let test = trained_small().await;
    let mut oip = client(&test);
    let rows = small_rows();
    let code_and_message = |result: Result<tonic::Response<oip::ModelInferResponse>, tonic::Status>| {
        let status = result.unwrap_err();
        (status.code(), status.message().to_string())
    };

    let mut unknown = raw_request(&rows);
    unknown.model_name = "nope".into();
    let (code, message) = code_and_message(oip.model_infer(unknown).await);
    assert_eq!(code, Code::NotFound, "{message}");
    assert!(message.contains("\"nope\""), "{message}");

    let mut unknown_version = raw_request(&rows);
    unknown_version.model_version = "7".into();
    assert_eq!(
        code_and_message(oip.model_infer(unknown_version).await).0,
        Code::NotFound
    );

    // member declared FP32 but sent as booleans.
    let mut wrong_type = typed_request(&rows);
    wrong_type.inputs[2].datatype = "FP32".into();
    let (code, message) = code_and_message(oip.model_infer(wrong_type).await);
    assert_eq!(code, Code::InvalidArgument, "{message}");
    assert!(
        message.contains("input \"member\"") && message.contains("FP32"),
        "{message}"
    );

    // A numeric column sent as booleans reaches Predict, which names it.
    let mut wrong_values = typed_request(&rows);
    wrong_values.inputs[0] = input(
        "x",
        "BOOL",
        vec![rows.len() as i64],
        Some(oip::InferTensorContents {
            bool_contents: vec![true; rows.len()],
            ..Default::default()
        }),
    );
    let (code, message) = code_and_message(oip.model_infer(wrong_values).await);
    assert_eq!(code, Code::InvalidArgument, "{message}");
    assert!(message.contains("column \"x\""), "{message}");

    let ragged = oip::ModelInferRequest {
        model_name: "small".into(),
        inputs: vec![input(
            "input",
            "FP32",
            vec![2, 3],
            Some(oip::InferTensorContents {
                fp32_contents: vec![1.0; 5],
                ..Default::default()
            }),
        )],
        ..Default::default()
    };
    let (code, message) = code_and_message(oip.model_infer(ragged).await);
    assert_eq!(code, Code::InvalidArgument, "{message}");
    assert!(
        message.contains("input \"input\"") && message.contains("[2, 3]"),
        "{message}"
    );

    let mut uneven = raw_request(&rows);
    uneven.inputs[1].shape = vec![3];
    let (code, message) = code_and_message(oip.model_infer(uneven).await);
    assert_eq!(code, Code::InvalidArgument, "{message}");
    assert!(message.contains("input \"colour\""), "{message}");

    let mut missing = typed_request(&rows);
    missing.inputs.remove(1);
    let (code, message) = code_and_message(oip.model_infer(missing).await);
    assert_eq!(code, Code::InvalidArgument, "{message}");
    assert!(message.contains("colour"), "{message}");

    let mut bad_parameter = raw_request(&rows);
    bad_parameter.parameters = [(
        "explain".to_string(),
        oip::InferParameter {
            parameter_choice: Some(oip::infer_parameter::ParameterChoice::StringParam("yes".into())),
        },
    )]
    .into();
    let (code, message) = code_and_message(oip.model_infer(bad_parameter).await);
    assert_eq!(code, Code::InvalidArgument, "{message}");
    assert!(message.contains("parameters.explain"), "{message}");

    let mut unknown_alias = raw_request(&rows);
    unknown_alias.parameters = [(
        "alias".to_string(),
        oip::InferParameter {
            parameter_choice: Some(oip::infer_parameter::ParameterChoice::StringParam(
                "production".into(),
            )),
        },
    )]
    .into();
    let (code, message) = code_and_message(oip.model_infer(unknown_alias).await);
    assert_eq!(code, Code::NotFound, "{message}");
    assert!(message.contains("production"), "{message}");

    // Nothing refused broke the server.
    oip.model_infer(raw_request(&rows)).await.unwrap();
}

#[tokio::test]
async fn tokens_guard_model_methods_and_leave_health_open() {
    let dir = tempfile::tempdir().unwrap();
    let test = TestServer::start_in(dir, |config| {
        config.tokens = Some("admin:alice:alice-admin-token,predict:checkout:checkout-predict-token".into());
    })
    .await;
    let metadata = serval_client::CallMetadata::default()
        .with_token("alice-admin-token")
        .unwrap();
    let mut admin = serval_client::ServalClient::connect_with(&test.server.url(), metadata)
        .await
        .unwrap();
    admin.train(small_spec("small"), small_csv()).await.unwrap();

    let mut anonymous = client(&test);
    assert!(
        anonymous
            .server_live(oip::ServerLiveRequest {})
            .await
            .unwrap()
            .into_inner()
            .live
    );
    assert!(
        anonymous
            .server_ready(oip::ServerReadyRequest {})
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    anonymous
        .server_metadata(oip::ServerMetadataRequest {})
        .await
        .unwrap();
    let refused = anonymous
        .model_infer(raw_request(&small_rows()))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    let metadata_request = || oip::ModelMetadataRequest {
        name: "small".into(),
        version: String::new(),
    };
    assert_eq!(
        anonymous
            .model_metadata(metadata_request())
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    let ready_request = oip::ModelReadyRequest {
        name: "small".into(),
        version: String::new(),
    };
    assert_eq!(
        anonymous
            .model_ready(ready_request.clone())
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );

    let mut predictor = GrpcInferenceServiceClient::with_interceptor(
        test.client.channel().clone(),
        |mut request: tonic::Request<()>| {
            request
                .metadata_mut()
                .insert("authorization", "Bearer checkout-predict-token".parse().unwrap());
            Ok(request)
        },
    );
    let answer = predictor
        .model_infer(raw_request(&small_rows()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(output(&answer, "probability").len(), small_rows().len());
    predictor.model_metadata(metadata_request()).await.unwrap();
    assert!(
        predictor
            .model_ready(ready_request)
            .await
            .unwrap()
            .into_inner()
            .ready
    );
}

#[tokio::test]
async fn reflection_lists_the_inference_service() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let test = TestServer::start().await;
    let mut reflection = ServerReflectionClient::new(test.client.channel().clone());
    let ask = |request| tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let mut answers = reflection
        .server_reflection_info(futures::stream::iter([
            ask(MessageRequest::ListServices(String::new())),
            ask(MessageRequest::FileContainingSymbol(
                "inference.GRPCInferenceService".into(),
            )),
        ]))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        answers.message().await.unwrap().unwrap().message_response
    else {
        panic!("expected a service list");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.iter().any(|n| n == "inference.GRPCInferenceService"),
        "{names:?}"
    );
    match answers.message().await.unwrap().unwrap().message_response {
        Some(MessageResponse::FileDescriptorResponse(files)) => {
            assert!(!files.file_descriptor_proto.is_empty())
        }
        other => panic!("expected the service's file descriptor, got {other:?}"),
    }
}
