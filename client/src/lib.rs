//! Typed Rust client for Serval, and the pieces of the `serval` command-line
//! tool that other programs may reuse (CSV → records).
//!
//! ```no_run
//! # async fn demo() -> Result<(), serval_client::ClientError> {
//! use serval_client::{ConnectOptions, ServalClient};
//! let mut client = ServalClient::connect("http://127.0.0.1:50051").await?;
//! let models = client.list_models(None).await?;
//! // Several replicas of one registry: calls take turns, and reads are
//! // retried on another replica when one is unreachable.
//! let urls = ["http://10.0.0.1:50051", "http://10.0.0.2:50051"];
//! let mut replicated = ServalClient::connect_many(&urls, ConnectOptions::default()).await?;
//! # Ok(()) }
//! ```

mod client;
pub mod records;
mod replicas;
pub mod report;
mod retry;

pub use client::{
    CallMetadata, ClientError, ConnectOptions, RawClient, ServalClient, TrainUpload, UPLOAD_CHUNK_BYTES,
};
pub use serval_proto::code_name;
pub use serval_proto::v1 as proto;
