//! Serval's server: trains behaviour models (candle MLPs) from CSV uploads,
//! registers every version in the registry, and serves predictions over
//! gRPC.
//!
//! Data flows `dataset` → `encoder` → `training` (→ `mlp`, `metrics`) →
//! registry on Train, and `service` → `serving` → `batching` → `mlp` on
//! Predict.

pub mod auth;
pub mod batching;
pub mod catalog;
pub mod config;
pub mod dataset;
pub mod deadline;
pub mod encoder;
pub mod error;
pub mod explain;
pub mod jobs;
pub mod live_stats;
pub mod metrics;
pub mod metrics_http;
pub mod mlp;
pub mod privacy;
pub mod registry_sync;
pub mod request_context;
pub mod routing;
pub mod server;
pub mod service;
pub mod serving;
pub mod telemetry;
pub mod training;

pub use config::ServerConfig;
pub use error::ServalError;
pub use server::Server;
