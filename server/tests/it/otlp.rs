//! OTLP export against a real OTLP trace receiver (the collector's gRPC
//! `TraceService`, from `opentelemetry-proto`, on a loopback port): the
//! server binary started with `--otlp-endpoint` exports a Predict's span
//! as a child of the caller's `traceparent`, with its time queued and its
//! forward pass under it, and a training job's span with its epochs as
//! events; the spans are flushed at shutdown, and no feature value nor
//! routing key reaches any of them. A call without a trace starts one and
//! names it in its response; an HTTP inference joins its caller's trace.

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use serval_client::proto as pb;
use tokio_stream::wrappers::TcpListenerStream;

use crate::common::*;
use crate::process::{Process, spawn_with_env};

/// Keeps every export it receives.
#[derive(Clone, Default)]
struct Receiver {
    received: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.received.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Receiver {
    /// Serves on an ephemeral loopback port; returns its URL.
    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let service = TraceServiceServer::new(self.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        format!("http://{address}")
    }

    fn spans(&self) -> Vec<Span> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .flat_map(|request| &request.resource_spans)
            .flat_map(|resource| &resource.scope_spans)
            .flat_map(|scope| scope.spans.clone())
            .collect()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A receiver, and a server exporting to it with model "small" trained.
async fn exporting_server(dir: &std::path::Path) -> (Receiver, Process, serval_client::ServalClient) {
    let receiver = Receiver::default();
    let endpoint = receiver.start().await;
    let server = spawn_with_env(dir, &["--otlp-endpoint", &endpoint], &[]).await;
    let mut client = server.client().await;
    client
        .train(small_spec("small"), small_csv())
        .await
        .expect("trained");
    (receiver, server, client)
}

/// Stops the server (which flushes its spans) and returns every span
/// received.
async fn spans_after_shutdown(server: &mut Process, receiver: &Receiver) -> Vec<Span> {
    server.signal("-TERM");
    assert!(server.wait().await.success());
    receiver.spans()
}

/// The first span named `name` that `pick` accepts.
fn span<'a>(spans: &'a [Span], name: &str, pick: impl Fn(&Span) -> bool) -> &'a Span {
    spans
        .iter()
        .find(|s| s.name == name && pick(s))
        .unwrap_or_else(|| {
            let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
            panic!("no {name} span in {names:?}")
        })
}

/// The span id in a response's `traceparent`.
fn returned_span_id(traceparent: &str) -> String {
    traceparent.split('-').nth(2).expect("a span id").to_string()
}

const CALLER_TRACE: &str = "5c8a3fb2d1e04f6a9b7c0d1e2f3a4b5c";
const CALLER_SPAN: &str = "a1b2c3d4e5f60718";
/// Values found nowhere else: neither may reach an exported span.
const FEATURE_TEXT: &str = "ZanzibarOrchid";
const FEATURE_NUMBER: f64 = 7351.0625;
const ROUTING_KEY: &str = "user-quokka-99317";

#[tokio::test]
async fn spans_join_the_callers_trace_and_carry_no_feature_values() {
    let dir = tempfile::tempdir().unwrap();
    let (receiver, mut server, mut client) = exporting_server(dir.path()).await;

    let mut request = tonic::Request::new(pb::PredictRequest {
        model: "small".into(),
        routing_key: ROUTING_KEY.into(),
        records: vec![small_record(FEATURE_NUMBER, FEATURE_TEXT, true)],
        ..Default::default()
    });
    let traceparent = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    request
        .metadata_mut()
        .insert("traceparent", traceparent.parse().unwrap());
    request
        .metadata_mut()
        .insert("tracestate", "congo=t61rcWkgMzE".parse().unwrap());
    let response = client.raw().predict(request).await.expect("predicted");
    let call_span_id = returned_span_id(response.metadata().get("traceparent").unwrap().to_str().unwrap());

    // Spans are batched; shutting down flushes them.
    let spans = spans_after_shutdown(&mut server, &receiver).await;
    let call = span(&spans, "Predict", |_| true);
    assert_eq!(hex(&call.trace_id), CALLER_TRACE, "the caller's trace");
    assert_eq!(
        hex(&call.parent_span_id),
        CALLER_SPAN,
        "the caller's span is the parent"
    );
    assert_eq!(
        hex(&call.span_id),
        call_span_id,
        "the traceparent returned names this span"
    );
    assert_eq!(call.trace_state, "congo=t61rcWkgMzE");
    for part in ["batch.queued", "batch.forward"] {
        let part_span = span(&spans, part, |_| true);
        assert_eq!(hex(&part_span.trace_id), CALLER_TRACE, "{part}");
        assert_eq!(part_span.parent_span_id, call.span_id, "{part} is under the call");
        assert!(
            part_span.start_time_unix_nano <= part_span.end_time_unix_nano,
            "{part}"
        );
        assert!(
            call.start_time_unix_nano <= part_span.start_time_unix_nano
                && part_span.end_time_unix_nano <= call.end_time_unix_nano,
            "{part} lies within the call"
        );
    }

    // The training job: one span under its Train call, an event per epoch.
    let job = span(&spans, "training_job", |_| true);
    let train = span(&spans, "Train", |_| true);
    assert_eq!(job.parent_span_id, train.span_id);
    let epochs: Vec<_> = job.events.iter().filter(|e| e.name == "epoch").collect();
    assert_eq!(epochs.len(), 3, "{:?}", job.events);
    assert!(
        epochs[2].attributes.iter().any(|a| a.key == "validation_auc"),
        "{:?}",
        epochs[2]
    );

    // Privacy: nothing the caller sent as data is in any span, attribute
    // or event (nor in the resource around them).
    let exported = format!("{:?}", receiver.received.lock().unwrap());
    assert!(exported.contains("batch.forward"), "{exported}");
    for secret in [
        FEATURE_TEXT.to_string(),
        FEATURE_NUMBER.to_string(),
        "7351".to_string(),
        ROUTING_KEY.to_string(),
        "quokka".to_string(),
    ] {
        assert!(!exported.contains(&secret), "{secret:?} was exported");
    }
}

#[tokio::test]
async fn a_call_without_a_trace_starts_one_and_http_inference_joins_the_callers() {
    let dir = tempfile::tempdir().unwrap();
    let (receiver, mut server, mut client) = exporting_server(dir.path()).await;

    // No traceparent: the server's own trace is named in the response.
    let response = client
        .raw()
        .predict(pb::PredictRequest {
            model: "small".into(),
            records: vec![small_record(1.0, "red", true)],
            ..Default::default()
        })
        .await
        .expect("predicted");
    let returned = response
        .metadata()
        .get("traceparent")
        .expect("a traceparent naming the call's own trace")
        .to_str()
        .unwrap()
        .to_string();
    let fields: Vec<&str> = returned.split('-').collect();
    assert_eq!(fields.len(), 4, "{returned}");
    assert_eq!(fields[0], "00", "{returned}");
    let (own_trace, own_span) = (fields[1].to_string(), fields[2].to_string());
    assert_eq!((own_trace.len(), own_span.len()), (32, 16), "{returned}");

    // An HTTP inference with the caller's traceparent.
    let traceparent = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    let body = serde_json::json!({ "inputs": crate::oip_http::as_inputs(&[(Some(2.0), "blue", false)]) });
    let answer = crate::oip_http::request(
        server.http,
        "POST",
        "/v2/models/small/infer",
        &[("traceparent", &traceparent)],
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let http_span_id = returned_span_id(&answer.headers["traceparent"]);

    let spans = spans_after_shutdown(&mut server, &receiver).await;
    let predict = span(&spans, "Predict", |_| true);
    assert_eq!(
        hex(&predict.trace_id),
        own_trace,
        "the trace returned is the one exported"
    );
    assert_eq!(hex(&predict.span_id), own_span);
    assert!(
        predict.parent_span_id.is_empty(),
        "a trace of its own has no parent"
    );
    let infer = span(&spans, "infer", |_| true);
    assert_eq!(hex(&infer.trace_id), CALLER_TRACE, "the caller's trace");
    assert_eq!(
        hex(&infer.parent_span_id),
        CALLER_SPAN,
        "the caller's span is the parent"
    );
    assert_eq!(
        hex(&infer.span_id),
        http_span_id,
        "the traceparent returned names this span"
    );
    let forward = span(&spans, "batch.forward", |s| s.parent_span_id == infer.span_id);
    assert_eq!(hex(&forward.trace_id), CALLER_TRACE);
}

#[tokio::test]
async fn an_unreachable_collector_fails_no_call() {
    // A port that was free a moment ago: nothing listens there.
    let endpoint = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let dir = tempfile::tempdir().unwrap();
    let mut server = spawn_with_env(dir.path(), &["--otlp-endpoint", &endpoint], &[]).await;
    let mut client = server.client().await;
    client
        .train(small_spec("small"), small_csv())
        .await
        .expect("trained");
    let answers = futures::stream::iter(0..8)
        .then(|i| {
            let mut client = client.clone();
            async move {
                let mut request = tonic::Request::new(pb::PredictRequest {
                    model: "small".into(),
                    records: vec![small_record(f64::from(i), "red", false)],
                    ..Default::default()
                });
                request.metadata_mut().insert(
                    "traceparent",
                    format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01").parse().unwrap(),
                );
                client.raw().predict(request).await
            }
        })
        .collect::<Vec<_>>()
        .await;
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    server.signal("-TERM");
    assert!(server.wait().await.success(), "{}", server.log());
    assert!(
        server.log().contains("OTLP export failed"),
        "the failed export is logged: {}",
        server.log()
    );
}

#[tokio::test]
async fn a_malformed_endpoint_stops_the_server_at_start_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_serval-server"))
        .args(["--listen", "127.0.0.1:0", "--http-listen", "off", "--database"])
        .arg(dir.path().join("serval.db"))
        .args(["--otlp-endpoint", "not a url"])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--otlp-endpoint"), "{stderr}");
}
