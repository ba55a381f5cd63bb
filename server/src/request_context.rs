//! The outermost layer of the gRPC server: gives every call a request id
//! (the caller's `x-request-id`, or a new one), runs the call inside a
//! tracing span carrying it — so every log line about the call names it —
//! returns the id in the response headers, and counts the call by RPC and
//! final status code with its latency. A caller's W3C `traceparent` (and
//! `tracestate`) puts the call in the caller's trace (`trace_context`).
//!
//! Privacy: a call is logged and counted by its status code only, never by
//! its status message or contents — an INVALID_ARGUMENT message may quote a
//! caller's feature value (see `privacy`).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::BoxFuture;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::{Body, Frame};
use tower::{Layer, Service};
use tracing::Instrument;

use crate::telemetry::GrpcMetrics;
use crate::trace_context::TraceContext;

pub(crate) const REQUEST_ID: &str = "x-request-id";

#[derive(Clone)]
pub struct RequestContextLayer {
    metrics: GrpcMetrics,
}

impl RequestContextLayer {
    pub fn new(metrics: GrpcMetrics) -> Self {
        RequestContextLayer { metrics }
    }
}

impl<S> Layer<S> for RequestContextLayer {
    type Service = RequestContext<S>;

    fn layer(&self, inner: S) -> RequestContext<S> {
        RequestContext {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct RequestContext<S> {
    inner: S,
    metrics: GrpcMetrics,
}

/// A caller's request id is kept if it is short, printable ASCII.
pub(crate) fn usable_id(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    (!text.is_empty() && text.len() <= 128 && text.bytes().all(|b| b.is_ascii_graphic()))
        .then(|| text.to_string())
}

pub(crate) fn new_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// `Predict` from `/serval.v1.ModelService/Predict`; bounded, so a hostile
/// path cannot create unbounded metric series.
fn rpc_name(path: &str) -> String {
    match path.rsplit_once('/') {
        Some((service, method))
            if !method.is_empty()
                && method.len() <= 64
                && method.bytes().all(|b| b.is_ascii_alphanumeric())
                && (service.ends_with("ModelService")
                    || service.ends_with("inference.GRPCInferenceService")
                    || service.contains("grpc.")) =>
        {
            method.to_string()
        }
        _ => "unknown".to_string(),
    }
}

fn grpc_status(headers: &HeaderMap) -> Option<i32> {
    headers.get("grpc-status")?.to_str().ok()?.parse().ok()
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequestContext<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
{
    type Response = Response<ObservedBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let id = request
            .headers()
            .get(REQUEST_ID)
            .and_then(usable_id)
            .unwrap_or_else(new_id);
        let mut header = HeaderValue::from_str(&id).expect("checked or generated as ASCII");
        request.headers_mut().insert(REQUEST_ID, header.clone());
        // Performance: an id is unique to its call, so HPACK must not add it
        // to the connection's header table. Indexed, every response inserted
        // one entry and compared its value with every earlier id still in
        // the table (~3 µs a call, measured at 256 callers); marked
        // sensitive, it is sent as a never-indexed literal.
        header.set_sensitive(true);
        let rpc = rpc_name(request.uri().path());
        let span = tracing::info_span!(
            "rpc",
            request_id = %id,
            rpc = %rpc,
            trace_id = tracing::field::Empty,
            parent_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
            otel.name = tracing::field::Empty,
            otel.kind = tracing::field::Empty,
        );
        let mut trace = TraceContext::from_headers(request.headers());
        crate::otlp::join_call(&span, &rpc, &mut trace);
        if let Some(trace) = &trace {
            trace.record(&span);
        }
        let metrics = self.metrics.clone();
        let started = Instant::now();
        // Correctness: the clone that was polled ready is the one called.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(
            async move {
                let response = inner.call(request).await?;
                let (mut parts, body) = response.into_parts();
                parts.headers.insert(REQUEST_ID, header);
                if let Some(trace) = trace {
                    trace.answer(&mut parts.headers);
                }
                let code = grpc_status(&parts.headers);
                let body = ObservedBody {
                    inner: body,
                    observation: Some(Observation {
                        metrics,
                        rpc,
                        started,
                        code,
                        span: tracing::Span::current(),
                    }),
                };
                Ok(Response::from_parts(parts, body))
            }
            .instrument(span),
        )
    }
}

/// What is recorded once a call's response ends.
struct Observation {
    metrics: GrpcMetrics,
    rpc: String,
    started: Instant,
    code: Option<i32>,
    span: tracing::Span,
}

impl Observation {
    fn finish(self, ended_early: bool) {
        // A body dropped before its trailers: the caller went away.
        let code = match (self.code, ended_early) {
            (Some(code), _) => code,
            (None, true) => tonic::Code::Cancelled as i32,
            (None, false) => tonic::Code::Ok as i32,
        };
        let name = serval_proto::code_name(tonic::Code::from_i32(code));
        let seconds = self.started.elapsed().as_secs_f64();
        self.metrics.observe(&self.rpc, name, seconds);
        self.span
            .in_scope(|| tracing::debug!(code = name, seconds, "call finished"));
    }
}

pin_project_lite::pin_project! {
    /// A response body that notes the `grpc-status` trailer and records the
    /// call when the body ends (or is dropped).
    pub struct ObservedBody<B> {
        #[pin]
        inner: B,
        observation: Option<Observation>,
    }

    impl<B> PinnedDrop for ObservedBody<B> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(observation) = this.project().observation.take() {
                observation.finish(true);
            }
        }
    }
}

impl<B: Body> Body for ObservedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(trailers), Some(observation)) = (frame.trailers_ref(), this.observation.as_mut())
                    && let Some(code) = grpc_status(trailers)
                {
                    observation.code = Some(code);
                }
            }
            Poll::Ready(None) => {
                if let Some(observation) = this.observation.take() {
                    observation.finish(false);
                }
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace_context::{TRACEPARENT, TRACESTATE};

    #[test]
    fn rpc_names_are_bounded() {
        assert_eq!(rpc_name("/serval.v1.ModelService/Predict"), "Predict");
        assert_eq!(rpc_name("/grpc.health.v1.Health/Check"), "Check");
        assert_eq!(
            rpc_name("/inference.GRPCInferenceService/ModelInfer"),
            "ModelInfer"
        );
        assert_eq!(rpc_name("/evil/../../etc"), "unknown");
        assert_eq!(
            rpc_name(&format!("/serval.v1.ModelService/{}", "A".repeat(500))),
            "unknown"
        );
    }

    #[tokio::test]
    async fn the_request_id_is_returned_unindexed() {
        let metrics = crate::telemetry::ServerMetrics::new().unwrap().grpc;
        let inner = tower::service_fn(|_: Request<()>| async {
            Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
        });
        let mut service = RequestContextLayer::new(metrics).layer(inner);
        let request = Request::builder()
            .uri("/serval.v1.ModelService/Predict")
            .header(REQUEST_ID, "req-42")
            .body(())
            .unwrap();
        let response = service.call(request).await.unwrap();
        let id = response.headers().get(REQUEST_ID).unwrap();
        assert_eq!(id, "req-42");
        // Sensitive values go out as HPACK never-indexed literals, so unique
        // ids do not churn the connection's header table.
        assert!(id.is_sensitive());
    }

    #[tokio::test]
    async fn a_callers_traceparent_comes_back_with_this_calls_span() {
        let metrics = crate::telemetry::ServerMetrics::new().unwrap().grpc;
        let inner = tower::service_fn(|_: Request<()>| async {
            Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
        });
        let mut service = RequestContextLayer::new(metrics).layer(inner);
        let call = |traceparent: Option<&str>| {
            let mut request = Request::builder()
                .uri("/serval.v1.ModelService/Predict")
                .header(TRACESTATE, "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
            if let Some(value) = traceparent {
                request = request.header(TRACEPARENT, value);
            }
            request.body(()).unwrap()
        };
        let response = service
            .call(call(Some(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )))
            .await
            .unwrap();
        assert_eq!(
            response.headers()[TRACESTATE],
            "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
        );
        let returned = response.headers().get(TRACEPARENT).unwrap().to_str().unwrap();
        let fields: Vec<&str> = returned.split('-').collect();
        assert_eq!(
            (fields[0], fields[1], fields[3]),
            ("00", "4bf92f3577b34da6a3ce929d0e0e4736", "01")
        );
        assert!(
            fields[2].len() == 16 && fields[2] != "00f067aa0ba902b7",
            "{returned}"
        );
        // Without one, or with a malformed one, nothing is added.
        for traceparent in [None, Some("00-xyz-00f067aa0ba902b7-01")] {
            let response = service.call(call(traceparent)).await.unwrap();
            assert!(response.headers().get(TRACEPARENT).is_none());
            assert!(response.headers().get(TRACESTATE).is_none());
        }
    }
}
