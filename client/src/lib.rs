//! Typed Rust client for Serval, and the pieces of the `serval` command-line
//! tool that other programs may reuse (CSV → records).
//!
//! ```no_run
//! # async fn demo() -> Result<(), serval_client::ClientError> {
//! let mut client = serval_client::ServalClient::connect("http://127.0.0.1:50051").await?;
//! let models = client.list_models(None).await?;
//! # Ok(()) }
//! ```

mod client;
pub mod records;
pub mod report;

pub use client::{
    CallMetadata, ClientError, ConnectOptions, RawClient, ServalClient, TrainUpload, UPLOAD_CHUNK_BYTES,
};
pub use serval_proto::code_name;
pub use serval_proto::v1 as proto;
