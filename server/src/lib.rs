//! Serval's server: the gRPC edge around the model crate (`serval-model`)
//! and the registry. It trains versions from CSV uploads, registers them,
//! and serves predictions.
//!
//! On Train, `service::train` checks the spec (`service::train_spec`),
//! runs `serval_model::training` on a blocking thread and registers the
//! documents (`catalog`); on Predict, `service::predict` routes
//! (`routing`), finds the loaded version (`serving`), encodes its records
//! with the model crate's encoder and scores them through the version's
//! `batching` queue. `oip_http` and `oip_grpc` serve the Open Inference
//! Protocol over HTTP/JSON and gRPC (what both share is in `oip`) and hand
//! their inference requests to the same Predict. Errors
//! of every crate become status codes in `error`. `otlp` exports spans
//! when `--otlp-endpoint` is set.

pub mod auth;
pub mod batching;
pub mod catalog;
pub mod config;
pub mod deadline;
pub mod encoding;
pub mod error;
pub mod fleet_stats;
pub mod jobs;
pub mod live_stats;
pub mod metrics_http;
pub mod oip;
pub mod oip_grpc;
pub mod oip_http;
pub mod otlp;
pub mod outcomes;
pub mod privacy;
pub mod registry_sync;
pub mod request_context;
pub mod routing;
pub mod server;
pub mod service;
pub mod serving;
pub mod sources;
pub mod spool;
pub mod telemetry;
pub mod trace_context;
pub mod unary_route;
pub mod wire;

pub use config::ServerConfig;
pub use error::ServalError;
pub use server::Server;
