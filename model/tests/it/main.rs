//! The model crate's integration tests as one test binary: properties of
//! the CSV ingest and the encoder.

mod formats;
mod properties;
