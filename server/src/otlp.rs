//! OTLP export of trace spans (`--otlp-endpoint`): the OpenTelemetry
//! layer that turns the server's tracing spans into OpenTelemetry spans, a
//! batch exporter that sends them over OTLP/gRPC, and the spans that have
//! no tracing span of their own: a call's time queued for a batch and its
//! forward pass (both measured on the compute thread), and a training
//! job's epochs (events on the job's span).
//!
//! It does not decide what a call's span is (`request_context`,
//! `oip_http`) nor read trace headers (`trace_context`): it makes the
//! caller's trace the exported span's parent.
//!
//! Off unless the flag is set: then no layer is installed at all, and
//! every function here returns after one atomic load.
//!
//! Privacy: spans carry what the logs carry (RPC or route, request id,
//! model, version, job id, row counts, timings), never feature values nor
//! routing keys; the exporter's layer only takes this crate's spans and
//! events at INFO and above, which follow the logs' rule (see `privacy`).

use std::str::FromStr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, Status, TraceContextExt, TraceFlags, TraceId, TraceState, Tracer as _,
    TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider, SpanData, SpanExporter};
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::registry::LookupSpan;

use crate::trace_context::TraceContext;

/// Set once the export has started: spans are made for OpenTelemetry.
static EXPORTING: AtomicBool = AtomicBool::new(false);
/// For the spans made here with explicit times.
static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// Longest one export may take before it counts as failed.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether spans are exported (one relaxed atomic load).
pub fn is_exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// A started OTLP export; [`OtlpExport::shutdown`] flushes it.
pub struct OtlpExport {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

impl OtlpExport {
    /// Starts exporting to `endpoint` (`http://host:4317`, or `https://`).
    /// Must run inside the Tokio runtime, whose tasks carry the exports.
    /// The sampler follows the caller's sampled flag and samples every
    /// call that has no caller's trace, unless `OTEL_TRACES_SAMPLER` says
    /// otherwise.
    pub fn start(endpoint: &str) -> Result<OtlpExport, String> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| format!("--otlp-endpoint {endpoint:?}: {e}"))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(LoggedExporter(exporter))
            .with_resource(
                Resource::builder()
                    .with_service_name("serval-server")
                    .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
                    .build(),
            )
            .build();
        let tracer = provider.tracer("serval-server");
        let _ = TRACER.set(tracer.clone());
        EXPORTING.store(true, Ordering::Relaxed);
        Ok(OtlpExport { provider, tracer })
    }

    /// The tracing layer that makes OpenTelemetry spans of this crate's
    /// spans (and span events of their events), INFO and above.
    pub fn layer<S>(&self) -> impl Layer<S> + use<S>
    where
        S: Subscriber + for<'span> LookupSpan<'span>,
    {
        tracing_opentelemetry::layer()
            .with_tracer(self.tracer.clone())
            .with_location(false)
            .with_target(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
            .with_context_activation(false)
            .with_filter(Targets::new().with_target("serval_server", tracing::Level::INFO))
    }

    /// Exports what is still queued and stops. Blocks: call it off the
    /// runtime's threads while the runtime still runs.
    pub fn shutdown(self) {
        EXPORTING.store(false, Ordering::Relaxed);
        if let Err(error) = self.provider.shutdown() {
            tracing::warn!(%error, "OTLP export did not flush every span at shutdown");
        }
    }
}

/// The OTLP exporter, logging a failed export: spans are dropped, calls go
/// on.
#[derive(Debug)]
struct LoggedExporter(opentelemetry_otlp::SpanExporter);

impl SpanExporter for LoggedExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let exported = self.0.export(batch).await;
        if let Err(error) = &exported {
            tracing::warn!(%error, spans, "OTLP export failed; these spans are dropped");
        }
        exported
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.0.set_resource(resource);
    }
}

/// Names a call's span (`otel.name`, e.g. the RPC) as a server span, and
/// makes it a child of the caller's span when the caller sent a trace:
/// `trace.span_id` becomes the exported span's id, so the `traceparent`
/// returned names the span the collector receives. A call without a
/// trace starts one, and `trace` becomes it: the response's
/// `traceparent` then tells the caller (and the call's log lines tell the
/// operator) which exported trace is this call's. The span must not have
/// been entered yet.
pub(crate) fn join_call(span: &tracing::Span, name: &str, trace: &mut Option<TraceContext>) {
    if !is_exporting() {
        return;
    }
    span.record("otel.name", name);
    span.record("otel.kind", "server");
    let Some(caller) = trace.as_mut() else {
        let context = span.context();
        let own = context.span().span_context().clone();
        if own.is_valid() {
            *trace = Some(TraceContext::root(
                own.trace_id().to_string(),
                own.span_id().to_string(),
                own.is_sampled(),
            ));
        }
        return;
    };
    let (Ok(trace_id), Ok(parent_id), Ok(flags)) = (
        TraceId::from_hex(&caller.trace_id),
        SpanId::from_hex(&caller.parent_id),
        u8::from_str_radix(&caller.flags, 16),
    ) else {
        return;
    };
    let state = caller
        .state
        .as_ref()
        .and_then(|state| state.to_str().ok())
        .and_then(|state| TraceState::from_str(state).ok())
        .unwrap_or_default();
    let remote = SpanContext::new(trace_id, parent_id, TraceFlags::new(flags), true, state);
    if span
        .set_parent(Context::new().with_remote_span_context(remote))
        .is_ok()
    {
        let own = span.context().span().span_context().span_id();
        if own != SpanId::INVALID {
            caller.span_id = own.to_string();
        }
    }
}

/// One call in a batch, for [`record_batch`].
pub(crate) struct BatchedCall {
    /// The call's span (the caller's task's, captured when it queued).
    pub span: tracing::Span,
    pub enqueued_at: Instant,
    pub rows: usize,
}

/// When a batch ran: cut from the queue at `cut_at`, its forward pass from
/// `pass_started` to `pass_ended`.
pub(crate) struct BatchTimes {
    pub cut_at: Instant,
    pub pass_started: Instant,
    pub pass_ended: Instant,
}

/// Records, under each call's span, its time queued (`batch.queued`: from
/// joining the queue to the batch being cut) and the forward pass it was
/// part of (`batch.forward`: the whole batch's pass, with the batch's rows
/// and calls as attributes, so that a call's trace shows what it shared).
/// Runs on the compute thread after the callers are answered.
pub(crate) fn record_batch(calls: Vec<BatchedCall>, times: &BatchTimes, failed: bool) {
    let Some(tracer) = TRACER.get().filter(|_| is_exporting()) else {
        return;
    };
    let batch_rows: usize = calls.iter().map(|call| call.rows).sum();
    let batch_calls = calls.len();
    let (now, wall_now) = (Instant::now(), SystemTime::now());
    let wall = |at: Instant| wall_now - now.saturating_duration_since(at);
    for call in calls {
        let parent = call.span.context();
        if !parent.span().span_context().is_sampled() {
            continue;
        }
        let mut queued = tracer
            .span_builder("batch.queued")
            .with_start_time(wall(call.enqueued_at))
            .with_attributes([KeyValue::new("rows", call.rows as i64)])
            .start_with_context(tracer, &parent);
        queued.end_with_timestamp(wall(times.cut_at));
        let mut forward = tracer
            .span_builder("batch.forward")
            .with_start_time(wall(times.pass_started))
            .with_attributes([
                KeyValue::new("rows", call.rows as i64),
                KeyValue::new("batch.rows", batch_rows as i64),
                KeyValue::new("batch.calls", batch_calls as i64),
            ])
            .start_with_context(tracer, &parent);
        if failed {
            forward.set_status(Status::error("forward pass failed"));
        }
        forward.end_with_timestamp(wall(times.pass_ended));
    }
}

/// A training epoch's figures, as an event on the job's span.
pub(crate) fn record_epoch(span: &tracing::Span, report: &serval_model::training::EpochReport) {
    if !is_exporting() {
        return;
    }
    span.add_event(
        "epoch",
        vec![
            KeyValue::new("epoch", report.epoch as i64),
            KeyValue::new("epochs", report.epochs as i64),
            KeyValue::new("train_loss", report.train_loss),
            KeyValue::new("validation_loss", report.validation_loss),
            KeyValue::new("validation_auc", report.validation_auc),
            KeyValue::new("learning_rate", report.learning_rate),
            KeyValue::new("elapsed_seconds", report.elapsed_seconds),
        ],
    );
}
