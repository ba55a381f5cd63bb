//! Serval's model: everything that turns rows into a trained network and a
//! network into scores and explanations — data ingest and type inference,
//! the encoder, the MLP, training, evaluation, importance, explanations, and
//! the documents stored with a version.
//!
//! It knows nothing of gRPC or the registry: inputs are its own types (a
//! [`Cell`] per value to score, a [`Recipe`](training::Recipe), CSV bytes),
//! and every failure is a [`ModelError`] named by its cause, which the server
//! maps to a status code in one place.
//!
//! Data flows `dataset` → `encoder` → `training` (→ `network`,
//! `evaluation`) → [`documents`] on Train, and [`Cell`] → `encoder` →
//! [`BatchScorer`] (`explain::Scorer`) on Predict.

pub mod cell;
pub mod dataset;
pub mod documents;
pub mod encoder;
pub mod error;
pub mod evaluation;
pub mod explain;
pub mod network;
pub mod scorer;
pub mod training;

pub use cell::Cell;
pub use error::ModelError;
pub use scorer::BatchScorer;
