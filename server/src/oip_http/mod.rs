//! The Open Inference Protocol (KServe v2) over HTTP/JSON on its own
//! address (`--http-listen`): health, server and model metadata, and
//! inference. Owns the listener, the per-request context (request id,
//! span, metrics, bearer token, body limit) and the dispatch to handlers;
//! inference goes through `service::predict`, exactly as gRPC Predict does
//! (routing, batching, limits, live statistics, Prometheus series), and
//! errors take their HTTP status from `error::http_status`.
//!
//! Paths are in `routes`, the JSON bodies and their translation to
//! Predict's columns or dense rows in `tensors`; what is not JSON (layout
//! checks, datatypes, parameters, outputs, metadata, the hand-off to
//! Predict) is the protocol's, shared with gRPC, in `crate::oip`.
//!
//! Privacy: a request is logged and counted by its fixed route name and
//! status only; error messages, which may quote a value, go to the caller.

mod routes;
mod tensors;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::metadata::MetadataMap;
use tonic::service::Interceptor;
use tracing::Instrument;

use crate::auth::AuthInterceptor;
use crate::error::http_status;
use crate::oip::metadata::{ModelMetadata, PLATFORM};
use crate::oip::{SERVER_NAME, tensors::arm_name};
use crate::request_context::{REQUEST_ID, new_id, usable_id};
use crate::service::ServiceState;
use crate::telemetry::HttpMetrics;
use crate::trace_context::TraceContext;
use routes::{Endpoint, ModelPath, NoEndpoint};
use tensors::{InferRequest, InferResponse, ResponseParameters};

/// How long a client may take to send a request's headers, and then its
/// body, before the request is ended: a slow sender holds no task for long.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Triton's binary tensor extension: JSON followed by raw tensor bytes.
const BINARY_HEADER: &str = "inference-header-content-length";

/// What every request of the listener shares.
#[derive(Clone)]
pub struct OipHttp {
    state: Arc<ServiceState>,
    auth: AuthInterceptor,
    metrics: HttpMetrics,
    /// Largest request body, in bytes; larger ones are refused with 413.
    max_body_bytes: usize,
}

/// A reply: status and JSON body.
type Reply = Response<Full<Bytes>>;

/// A request that ended in an error: its status and message, sent as
/// `{"error": message}`.
#[derive(Debug)]
struct Failure {
    status: StatusCode,
    message: String,
    allow: Option<Method>,
}

impl Failure {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Failure {
            status,
            message: message.into(),
            allow: None,
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Failure::new(StatusCode::BAD_REQUEST, message)
    }

    fn reply(self) -> Reply {
        let mut reply = json_reply(self.status, &json!({ "error": self.message }));
        if let Some(allow) = self.allow
            && let Ok(value) = HeaderValue::from_str(allow.as_str())
        {
            reply.headers_mut().insert(ALLOW, value);
        }
        reply
    }
}

/// The one way a call's status becomes an HTTP error.
impl From<tonic::Status> for Failure {
    fn from(status: tonic::Status) -> Self {
        Failure::new(http_status(status.code()), status.message())
    }
}

impl From<crate::error::ServalError> for Failure {
    fn from(error: crate::error::ServalError) -> Self {
        tonic::Status::from(error).into()
    }
}

fn json_reply(status: StatusCode, body: &impl Serialize) -> Reply {
    let bytes =
        serde_json::to_vec(body).unwrap_or_else(|_| b"{\"error\":\"cannot write the answer\"}".to_vec());
    let mut reply = Response::new(Full::new(Bytes::from(bytes)));
    *reply.status_mut() = status;
    reply
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    reply
}

impl OipHttp {
    pub fn new(
        state: Arc<ServiceState>,
        auth: AuthInterceptor,
        metrics: HttpMetrics,
        max_body_bytes: usize,
    ) -> Self {
        OipHttp {
            state,
            auth,
            metrics,
            max_body_bytes,
        }
    }

    /// Serves on `listener` until `stop` turns true; then stops accepting,
    /// lets requests in progress finish, and returns once every
    /// connection has closed.
    pub async fn serve(self, listener: TcpListener, mut stop: watch::Receiver<bool>) {
        let this = Arc::new(self);
        let mut connections = JoinSet::new();
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = stopped(&mut stop) => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            };
            let (stream, _) = match accepted {
                Ok(connection) => connection,
                Err(error) => {
                    tracing::warn!(%error, "HTTP listener accept failed");
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let this = this.clone();
            let mut stop = stop.clone();
            connections.spawn(async move {
                let service = service_fn(move |request| {
                    let this = this.clone();
                    async move { Ok::<_, Infallible>(this.handle(request).await) }
                });
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT);
                let connection = builder.serve_connection(TokioIo::new(stream), service);
                tokio::pin!(connection);
                let ended = tokio::select! {
                    ended = connection.as_mut() => ended,
                    () = stopped(&mut stop) => {
                        // Correctness: the request in progress is answered,
                        // then the connection closes.
                        connection.as_mut().graceful_shutdown();
                        connection.await
                    }
                };
                if let Err(error) = ended {
                    tracing::debug!(%error, "HTTP connection ended with an error");
                }
            });
        }
        drop(listener);
        while connections.join_next().await.is_some() {}
    }

    async fn handle(&self, request: Request<Incoming>) -> Reply {
        let started = Instant::now();
        let id = request
            .headers()
            .get(REQUEST_ID)
            .and_then(usable_id)
            .unwrap_or_else(new_id);
        let endpoint = routes::resolve(request.method(), request.uri().path());
        let route = endpoint.as_ref().map_or("unknown", Endpoint::name);
        let span = tracing::info_span!(
            "http",
            request_id = %id,
            route,
            trace_id = tracing::field::Empty,
            parent_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
            otel.name = tracing::field::Empty,
            otel.kind = tracing::field::Empty,
        );
        let mut trace = TraceContext::from_headers(request.headers());
        crate::otlp::join_call(&span, route, &mut trace);
        if let Some(trace) = &trace {
            trace.record(&span);
        }
        async {
            let reply = match endpoint {
                Ok(endpoint) => self.dispatch(endpoint, request, &id).await,
                Err(NoEndpoint::NotFound) => Err(Failure::new(
                    StatusCode::NOT_FOUND,
                    "no such endpoint: the Open Inference Protocol's are /v2, /v2/health/live, \
                     /v2/health/ready and /v2/models/{name}[/versions/{v}][/ready|/infer]",
                )),
                Err(NoEndpoint::MethodNotAllowed { allow }) => Err(Failure {
                    allow: Some(allow.clone()),
                    ..Failure::new(
                        StatusCode::METHOD_NOT_ALLOWED,
                        format!("this endpoint takes {allow} only"),
                    )
                }),
                Err(NoEndpoint::BadVersion(message)) => Err(Failure::bad_request(message)),
            };
            let mut reply = reply.unwrap_or_else(Failure::reply);
            let seconds = started.elapsed().as_secs_f64();
            self.metrics.observe(route, reply.status().as_u16(), seconds);
            tracing::debug!(status = reply.status().as_u16(), seconds, "request finished");
            if let Ok(value) = HeaderValue::from_str(&id) {
                reply.headers_mut().insert(REQUEST_ID, value);
            }
            if let Some(trace) = &trace {
                trace.answer(reply.headers_mut());
            }
            reply
        }
        .instrument(span)
        .await
    }

    async fn dispatch(
        &self,
        endpoint: Endpoint,
        request: Request<Incoming>,
        id: &str,
    ) -> Result<Reply, Failure> {
        let extensions = if endpoint.needs_token() {
            self.authenticate(request.headers())?
        } else {
            http::Extensions::new()
        };
        match endpoint {
            Endpoint::ServerMetadata => Ok(json_reply(
                StatusCode::OK,
                &json!({
                    "name": SERVER_NAME,
                    "version": env!("CARGO_PKG_VERSION"),
                    "extensions": [],
                }),
            )),
            Endpoint::Live => Ok(json_reply(StatusCode::OK, &json!({ "live": true }))),
            Endpoint::Ready => {
                let ready = !*self.state.stopping.borrow();
                let status = if ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                Ok(json_reply(status, &json!({ "ready": ready })))
            }
            Endpoint::ModelMetadata(path) => Ok(json_reply(
                StatusCode::OK,
                &metadata_json(&crate::oip::metadata::metadata(&self.state, &path.name, path.version).await?),
            )),
            Endpoint::ModelReady(path) => {
                let version = crate::oip::metadata::ready(&self.state, &path.name, path.version).await?;
                Ok(json_reply(
                    StatusCode::OK,
                    &json!({"name": path.name, "version": version.to_string(), "ready": true}),
                ))
            }
            Endpoint::Infer(path) => self.infer(path, request, extensions, id).await,
        }
    }

    /// The caller's identity from `Authorization: Bearer …`, checked by the
    /// same interceptor as gRPC calls.
    fn authenticate(&self, headers: &HeaderMap) -> Result<http::Extensions, Failure> {
        let metadata = MetadataMap::from_headers(headers.clone());
        let request = tonic::Request::from_parts(metadata, http::Extensions::new(), ());
        let mut auth = self.auth.clone();
        let (_, extensions, ()) = auth.call(request)?.into_parts();
        Ok(extensions)
    }

    async fn infer(
        &self,
        path: ModelPath,
        request: Request<Incoming>,
        extensions: http::Extensions,
        id: &str,
    ) -> Result<Reply, Failure> {
        if request.headers().contains_key(BINARY_HEADER) {
            return Err(Failure::bad_request(
                "the binary tensor data extension is not supported: send tensors as JSON data \
                 (with tritonclient, binary_data=False)",
            ));
        }
        let body = self.read_body(request).await?;
        let infer: InferRequest = serde_json::from_slice(&body)
            .map_err(|e| Failure::bad_request(format!("the body is not a valid inference request: {e}")))?;
        drop(body);
        let options = infer.options().map_err(Failure::bad_request)?;
        infer
            .check_outputs(options.explain)
            .map_err(Failure::bad_request)?;
        let rows = infer.rows().map_err(Failure::bad_request)?;
        let inference = crate::oip::infer(
            &self.state,
            MetadataMap::new(),
            extensions,
            path.name,
            path.version,
            rows.into(),
            &options,
        )
        .await?;
        let (answer, columns) = (inference.answer, inference.columns);
        let outputs = tensors::outputs(&infer, &answer, &columns).map_err(Failure::bad_request)?;
        Ok(json_reply(
            StatusCode::OK,
            &InferResponse {
                model_name: answer.model.clone(),
                model_version: answer.version.to_string(),
                id: infer.id.clone().unwrap_or_else(|| id.to_string()),
                parameters: ResponseParameters {
                    arm: arm_name(answer.arm),
                    threshold: answer.threshold,
                },
                outputs,
            },
        ))
    }

    /// The whole body, refused (413) beyond the limit and (408) when it
    /// comes too slowly.
    async fn read_body(&self, request: Request<Incoming>) -> Result<Bytes, Failure> {
        let too_large = || {
            Failure::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the body is larger than the server's limit of {} bytes (4 x --max-message-bytes)",
                    self.max_body_bytes
                ),
            )
        };
        let declared = request
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|length| length > self.max_body_bytes as u64) {
            return Err(too_large());
        }
        let body = Limited::new(request.into_body(), self.max_body_bytes);
        match tokio::time::timeout(BODY_READ_TIMEOUT, body.collect()).await {
            Err(_) => Err(Failure::new(
                StatusCode::REQUEST_TIMEOUT,
                format!("the body did not arrive within {BODY_READ_TIMEOUT:?}"),
            )),
            Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => Err(too_large()),
            Ok(Err(error)) => Err(Failure::bad_request(format!("cannot read the body: {error}"))),
            Ok(Ok(collected)) => Ok(collected.to_bytes()),
        }
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// Model metadata as the JSON protocol spells it (with Serval's
/// parameters: the version described, the dense width, the threshold).
fn metadata_json(metadata: &ModelMetadata) -> serde_json::Value {
    let tensors = |tensors: &[crate::oip::metadata::TensorMetadata]| -> Vec<serde_json::Value> {
        tensors
            .iter()
            .map(|t| json!({"name": t.name, "datatype": t.datatype, "shape": t.shape}))
            .collect()
    };
    json!({
        "name": metadata.name,
        "versions": metadata.versions,
        "platform": PLATFORM,
        "inputs": tensors(&metadata.inputs),
        "outputs": tensors(&metadata.outputs),
        "parameters": {
            "version": metadata.version.to_string(),
            "input_width": metadata.input_width,
            "threshold": metadata.threshold,
            "note": metadata.note(),
        },
    })
}

/// Binds the HTTP listener.
pub async fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(address).await
}
