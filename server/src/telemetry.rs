//! The server's metrics registry: every metric family the server keeps,
//! registered once per server so that several servers can share a process.

use prometheus::Registry;

use crate::batching::BatchMetricsFamily;

/// Metric families of one server.
#[derive(Clone)]
pub struct ServerMetrics {
    pub registry: Registry,
    pub batching: BatchMetricsFamily,
}

impl ServerMetrics {
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let batching = BatchMetricsFamily::register(&registry)?;
        Ok(ServerMetrics { registry, batching })
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut text = String::new();
        let encoder = prometheus::TextEncoder::new();
        if let Err(error) = encoder.encode_utf8(&self.registry.gather(), &mut text) {
            tracing::error!(%error, "cannot encode metrics");
        }
        text
    }
}
