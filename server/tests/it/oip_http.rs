//! The Open Inference Protocol over HTTP/JSON, through real HTTP/1.1 on a
//! real server: health and metadata, inference by column and by dense
//! tensor scoring exactly as gRPC Predict does for the same rows, the
//! explanation outputs, pinned versions, authentication, and the HTTP
//! status of each kind of bad request.

use std::collections::HashMap;
use std::net::SocketAddr;

use serde_json::{Value, json};
use serval_client::proto as pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;
use crate::oip_rows::*;

/// An HTTP answer: status, headers (lower-case names) and body.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: HashMap<String, String>,
    pub(crate) body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The `error` message of a refused request, checking its status.
    fn error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "{}", self.body);
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error message: {}", self.body))
            .to_string()
    }
}

/// One HTTP/1.1 request over a fresh TCP connection.
pub(crate) async fn request(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: serval\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    // A server may refuse before reading the whole body; then the write
    // fails and the answer is still there to read.
    let _ = stream.write_all(body).await;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a header block");
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_string(),
    }
}

async fn get(address: SocketAddr, path: &str) -> Answer {
    request(address, "GET", path, &[], b"").await
}

async fn post(address: SocketAddr, path: &str, body: &Value) -> Answer {
    request(address, "POST", path, &[], body.to_string().as_bytes()).await
}

fn http(test: &TestServer) -> SocketAddr {
    test.server.http_addr().expect("HTTP is on in tests")
}

/// The rows as one input per column.
pub(crate) fn as_inputs(rows: &[(Option<f64>, &str, bool)]) -> Value {
    let n = rows.len();
    json!([
        {"name": "x", "datatype": "FP64", "shape": [n], "data": rows.iter().map(|r| r.0).collect::<Vec<_>>()},
        {"name": "colour", "datatype": "BYTES", "shape": [n], "data": rows.iter().map(|r| r.1).collect::<Vec<_>>()},
        {"name": "member", "datatype": "BOOL", "shape": [n], "data": rows.iter().map(|r| r.2).collect::<Vec<_>>()},
    ])
}

/// An output's values as floats.
fn output(answer: &Value, name: &str) -> Vec<f64> {
    let outputs = answer["outputs"].as_array().expect("outputs");
    let tensor = outputs
        .iter()
        .find(|o| o["name"] == name)
        .unwrap_or_else(|| panic!("no output {name}: {answer}"));
    let data: Vec<f64> = tensor["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(tensor["shape"], json!([data.len()]), "{name}");
    data
}

#[tokio::test]
async fn health_and_server_metadata_answer() {
    let test = TestServer::start().await;
    let live = get(http(&test), "/v2/health/live").await;
    assert_eq!((live.status, live.json()), (200, json!({"live": true})));
    assert_eq!(live.headers["content-type"], "application/json");
    let ready = get(http(&test), "/v2/health/ready").await;
    assert_eq!((ready.status, ready.json()), (200, json!({"ready": true})));
    let server = get(http(&test), "/v2").await;
    assert_eq!(server.status, 200);
    assert_eq!(
        server.json(),
        json!({"name": "serval", "version": env!("CARGO_PKG_VERSION"), "extensions": []})
    );
    // Every answer carries a request id: the caller's, or a new one.
    let traced = request(http(&test), "GET", "/v2", &[("x-request-id", "trace-42")], b"").await;
    assert_eq!(traced.headers["x-request-id"], "trace-42");
    assert!(!server.headers["x-request-id"].is_empty());
}

#[tokio::test]
async fn model_metadata_lists_the_original_columns_with_their_datatypes() {
    let mut test = TestServer::start().await;
    let trained = test.client.train(small_spec("small"), small_csv()).await.unwrap();
    let metadata = get(http(&test), "/v2/models/small").await;
    assert_eq!(metadata.status, 200, "{}", metadata.body);
    let metadata = metadata.json();
    assert_eq!(metadata["name"], "small");
    assert_eq!(metadata["versions"], json!(["1"]));
    assert_eq!(metadata["platform"], "serval");
    let inputs: HashMap<String, (String, Value)> = metadata["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["name"].as_str().unwrap().to_string(),
                (i["datatype"].as_str().unwrap().to_string(), i["shape"].clone()),
            )
        })
        .collect();
    assert_eq!(inputs.len(), trained.columns.len(), "{metadata}");
    assert!(
        !inputs.contains_key("label") && !inputs.contains_key("id"),
        "{metadata}"
    );
    for column in &trained.columns {
        let expected = match pb::ColumnType::try_from(column.column_type).unwrap() {
            pb::ColumnType::Numeric => "FP32",
            pb::ColumnType::Boolean => "BOOL",
            _ => "BYTES",
        };
        assert_eq!(
            inputs[&column.name],
            (expected.to_string(), json!([-1])),
            "{}",
            column.name
        );
    }
    assert_eq!(inputs["x"].0, "FP32");
    assert_eq!(inputs["colour"].0, "BYTES");
    assert_eq!(
        metadata["outputs"],
        json!([
            {"name": "probability", "datatype": "FP32", "shape": [-1]},
            {"name": "label", "datatype": "INT32", "shape": [-1]},
        ])
    );
    assert_eq!(metadata["parameters"]["input_width"], json!(trained.input_width));
    assert!(
        metadata["parameters"]["note"]
            .as_str()
            .unwrap()
            .contains(&format!("[N, {}]", trained.input_width))
    );

    let pinned = get(http(&test), "/v2/models/small/versions/1").await;
    assert_eq!(pinned.status, 200);
    assert_eq!(pinned.json()["inputs"], metadata["inputs"]);
    let ready = get(http(&test), "/v2/models/small/ready").await;
    assert_eq!((ready.status, ready.json()["version"].clone()), (200, json!("1")));
    assert_eq!(
        get(http(&test), "/v2/models/small/versions/1/ready").await.status,
        200
    );

    assert!(
        get(http(&test), "/v2/models/small/versions/9")
            .await
            .error(404)
            .contains("version 9")
    );
    assert_eq!(
        get(http(&test), "/v2/models/small/versions/9/ready").await.status,
        404
    );
    assert!(
        get(http(&test), "/v2/models/nope")
            .await
            .error(404)
            .contains("\"nope\"")
    );
    assert_eq!(get(http(&test), "/v2/models/nope/ready").await.status, 404);
}

#[tokio::test]
async fn infer_by_column_scores_as_grpc_predict_of_the_same_records() {
    let mut test = trained_small().await;
    let rows = small_rows();
    let grpc = test
        .client
        .predict(pb::PredictRequest {
            model: "small".into(),
            records: as_records(&rows),
            ..Default::default()
        })
        .await
        .unwrap();
    let answer = post(
        http(&test),
        "/v2/models/small/infer",
        &json!({"id": "call-1", "inputs": as_inputs(&rows)}),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let answer = answer.json();
    assert_eq!(answer["model_name"], "small");
    assert_eq!(answer["model_version"], "1");
    assert_eq!(answer["id"], "call-1");
    assert_eq!(answer["parameters"]["arm"], "latest");
    let grpc_scores: Vec<f64> = grpc.scores.iter().map(|&s| f64::from(s)).collect();
    assert_close(&output(&answer, "probability"), &grpc_scores, 1e-6, "probability");
    let grpc_labels: Vec<f64> = grpc.labels.iter().map(|&l| f64::from(u8::from(l))).collect();
    assert_eq!(output(&answer, "label"), grpc_labels);
    assert!(
        !answer["outputs"].to_string().contains("attribution/"),
        "no attributions unless asked"
    );

    // The same rows with x as text and as whole numbers where it is one,
    // and only the probability asked for.
    let n = rows.len();
    let text: Vec<Option<String>> = rows.iter().map(|r| r.0.map(|x| x.to_string())).collect();
    let mut inputs = as_inputs(&rows);
    inputs[0] = json!({"name": "x", "datatype": "BYTES", "shape": [n], "data": text});
    let by_text = post(
        http(&test),
        "/v2/models/small/infer",
        &json!({"inputs": inputs, "outputs": [{"name": "probability"}]}),
    )
    .await
    .json();
    assert_eq!(by_text["outputs"].as_array().unwrap().len(), 1, "{by_text}");
    assert_close(&output(&by_text, "probability"), &grpc_scores, 1e-6, "x as text");
}

#[tokio::test]
async fn infer_with_a_dense_tensor_scores_as_grpc_dense_rows() {
    let mut test = trained_small().await;
    let DensePredicted {
        dense,
        width,
        flat: encoded,
        scores: grpc_scores,
    } = dense_predicted(&mut test).await;
    let n = dense.len();
    let nested: Vec<&Vec<f32>> = dense.iter().map(|row| &row.values).collect();
    for data in [json!(nested), json!(encoded)] {
        let answer = post(
            http(&test),
            "/v2/models/small/infer",
            &json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [n, width], "data": data}]}),
        )
        .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_close(
            &output(&answer.json(), "probability"),
            &grpc_scores,
            1e-6,
            "dense",
        );
    }
    // A row of the wrong width is refused, naming the row.
    let narrow = post(
        http(&test),
        "/v2/models/small/infer",
        &json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, width - 1],
                           "data": vec![0.0; width - 1]}]}),
    )
    .await;
    assert!(narrow.error(400).contains(&format!("expects {width}")));
}

#[tokio::test]
async fn explain_adds_one_attribution_output_per_original_column() {
    let mut test = trained_small().await;
    let rows = small_rows();
    let grpc = test
        .client
        .predict(pb::PredictRequest {
            model: "small".into(),
            records: as_records(&rows),
            explain: true,
            top_k: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let answer = post(
        http(&test),
        "/v2/models/small/infer",
        &json!({"inputs": as_inputs(&rows), "parameters": {"explain": true}}),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let answer = answer.json();
    let names: Vec<&str> = answer["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    let columns = ["x", "colour", "member"];
    assert_eq!(names.len(), 2 + columns.len(), "{names:?}");
    let mut sums = vec![0.0; rows.len()];
    for column in columns {
        let attributions = output(&answer, &format!("attribution/{column}"));
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
        assert_close(&attributions, &expected, 1e-5, column);
        for (sum, a) in sums.iter_mut().zip(&attributions) {
            *sum += a;
        }
    }
    // Together they account for each row's logit as gRPC's do.
    let expected_sums: Vec<f64> = grpc
        .explanations
        .iter()
        .map(|e| e.attributions.iter().map(|a| a.attribution).sum())
        .collect();
    assert_close(&sums, &expected_sums, 1e-4, "sum of attributions");
    let grpc_scores: Vec<f64> = grpc.scores.iter().map(|&s| f64::from(s)).collect();
    assert_close(
        &output(&answer, "probability"),
        &grpc_scores,
        1e-6,
        "explained probability",
    );
}

#[tokio::test]
async fn a_version_in_the_path_pins_the_answering_version() {
    let mut test = TestServer::start().await;
    train_two_small_versions(&mut test.client).await;
    let rows = small_rows();
    let body = json!({"inputs": as_inputs(&rows)});
    let mut by_version = Vec::new();
    for version in [1u32, 2] {
        let grpc = test
            .client
            .predict(pb::PredictRequest {
                model: "small".into(),
                version: Some(version),
                records: as_records(&rows),
                ..Default::default()
            })
            .await
            .unwrap();
        let answer = post(
            http(&test),
            &format!("/v2/models/small/versions/{version}/infer"),
            &body,
        )
        .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        let answer = answer.json();
        assert_eq!(answer["model_version"], version.to_string());
        assert_eq!(answer["parameters"]["arm"], "pinned");
        let scores = output(&answer, "probability");
        let grpc_scores: Vec<f64> = grpc.scores.iter().map(|&s| f64::from(s)).collect();
        assert_close(&scores, &grpc_scores, 1e-6, &format!("version {version}"));
        by_version.push(scores);
    }
    assert_ne!(by_version[0], by_version[1], "the versions score differently");
    let latest = post(http(&test), "/v2/models/small/infer", &body).await.json();
    assert_eq!(latest["model_version"], "2");
    assert!(
        post(http(&test), "/v2/models/small/versions/7/infer", &body)
            .await
            .error(404)
            .contains("7")
    );
}

#[tokio::test]
async fn bad_requests_get_the_http_status_a_caller_can_act_on() {
    let dir = tempfile::tempdir().unwrap();
    // Bodies above 4 x 64 KiB are refused.
    let mut test = TestServer::start_in(dir, |config| config.max_message_bytes = 64 << 10).await;
    test.client.train(small_spec("small"), small_csv()).await.unwrap();
    let address = http(&test);
    let infer = "/v2/models/small/infer";
    let rows = small_rows();

    let unknown = post(
        address,
        "/v2/models/nope/infer",
        &json!({"inputs": as_inputs(&rows)}),
    )
    .await;
    assert!(unknown.error(404).contains("\"nope\""));
    let bad_name = post(
        address,
        "/v2/models/n%20pe/infer",
        &json!({"inputs": as_inputs(&rows)}),
    )
    .await;
    assert!(bad_name.error(400).contains("model"));

    let mut wrong_type = as_inputs(&rows);
    wrong_type[2]["datatype"] = json!("FP32");
    let message = post(address, infer, &json!({ "inputs": wrong_type }))
        .await
        .error(400);
    assert!(
        message.contains("input \"member\"") && message.contains("FP32"),
        "{message}"
    );

    let ragged = json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 3], "data": [[1, 2, 3], [4, 5]]}]});
    let message = post(address, infer, &ragged).await.error(400);
    assert!(
        message.contains("input \"input\"") && message.contains("shape [2, 3]"),
        "{message}"
    );
    let short = json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [3], "data": [1, 2]}]});
    assert!(
        post(address, infer, &short)
            .await
            .error(400)
            .contains("input \"x\"")
    );

    let malformed = request(address, "POST", infer, &[], b"{\"inputs\": [").await;
    assert!(malformed.error(400).contains("not a valid inference request"));
    let no_inputs = request(address, "POST", infer, &[], b"{\"id\": \"1\"}").await;
    assert!(no_inputs.error(400).contains("inputs"));

    let mut missing = as_inputs(&rows);
    missing.as_array_mut().unwrap().remove(1);
    assert!(
        post(address, infer, &json!({ "inputs": missing }))
            .await
            .error(400)
            .contains("colour")
    );

    let bad_parameter = json!({"inputs": as_inputs(&rows), "parameters": {"explain": "yes"}});
    assert!(
        post(address, infer, &bad_parameter)
            .await
            .error(400)
            .contains("parameters.explain")
    );
    let unknown_alias = json!({"inputs": as_inputs(&rows), "parameters": {"alias": "production"}});
    assert!(
        post(address, infer, &unknown_alias)
            .await
            .error(404)
            .contains("production")
    );
    let unknown_output = json!({"inputs": as_inputs(&rows), "outputs": [{"name": "logit"}]});
    assert!(
        post(address, infer, &unknown_output)
            .await
            .error(400)
            .contains("logit")
    );

    let binary = request(
        address,
        "POST",
        infer,
        &[("Inference-Header-Content-Length", "10")],
        b"{}",
    )
    .await;
    assert!(binary.error(400).contains("binary"));

    let huge = vec![b' '; 300 << 10];
    assert!(
        request(address, "POST", infer, &[], &huge)
            .await
            .error(413)
            .contains("limit")
    );

    assert!(
        get(address, "/v2/nothing")
            .await
            .error(404)
            .contains("/v2/health/live")
    );
    assert_eq!(get(address, "/").await.status, 404);
    let wrong_method = get(address, infer).await;
    assert!(wrong_method.error(405).contains("POST"));
    assert_eq!(wrong_method.headers["allow"], "POST");
    assert_eq!(get(address, "/v2/models/small/versions/latest").await.status, 400);

    // Nothing refused reached the version's scores or broke the server.
    let after = post(address, infer, &json!({"inputs": as_inputs(&rows)})).await;
    assert_eq!(after.status, 200, "{}", after.body);
}

#[tokio::test]
async fn tokens_guard_model_endpoints_and_leave_health_open() {
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
    let address = http(&test);
    let body = json!({"inputs": as_inputs(&small_rows())}).to_string();
    let infer = |headers: &'static [(&'static str, &'static str)]| {
        let body = body.clone();
        async move {
            request(
                address,
                "POST",
                "/v2/models/small/infer",
                headers,
                body.as_bytes(),
            )
            .await
        }
    };

    assert!(infer(&[]).await.error(401).contains("authorization"));
    assert!(
        infer(&[("Authorization", "Bearer wrong-token-123")])
            .await
            .error(401)
            .contains("unknown token")
    );
    assert_eq!(
        infer(&[("Authorization", "checkout-predict-token")]).await.status,
        401
    );
    let allowed = infer(&[("Authorization", "Bearer checkout-predict-token")]).await;
    assert_eq!(allowed.status, 200, "{}", allowed.body);
    assert_eq!(get(address, "/v2/models/small").await.status, 401);
    assert_eq!(get(address, "/v2/models/small/ready").await.status, 401);
    let metadata = request(
        address,
        "GET",
        "/v2/models/small",
        &[("Authorization", "Bearer checkout-predict-token")],
        b"",
    )
    .await;
    assert_eq!(metadata.status, 200, "{}", metadata.body);

    for open in ["/v2/health/live", "/v2/health/ready", "/v2"] {
        assert_eq!(get(address, open).await.status, 200, "{open}");
    }
}

#[tokio::test]
async fn a_callers_traceparent_comes_back_with_this_requests_span() {
    let test = TestServer::start().await;
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let tracestate = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE";
    let answer = request(
        http(&test),
        "GET",
        "/v2/health/live",
        &[("traceparent", traceparent), ("tracestate", tracestate)],
        b"",
    )
    .await;
    assert_eq!(answer.status, 200);
    // The caller's tracestate comes back unchanged...
    assert_eq!(answer.headers["tracestate"], tracestate);
    // ...unless it is malformed: then it is dropped, and the trace kept.
    let malformed = request(
        http(&test),
        "GET",
        "/v2/health/live",
        &[("traceparent", traceparent), ("tracestate", "Rojo=1,=2")],
        b"",
    )
    .await;
    assert!(malformed.headers.contains_key("traceparent"));
    assert!(!malformed.headers.contains_key("tracestate"));
    let returned = &answer.headers["traceparent"];
    assert!(
        returned.starts_with("00-0af7651916cd43dd8448eb211c80319c-") && returned.ends_with("-01"),
        "{returned}"
    );
    assert_ne!(returned, traceparent);
    // Without one, nothing is added.
    assert!(
        !get(http(&test), "/v2/health/live")
            .await
            .headers
            .contains_key("traceparent")
    );
}
