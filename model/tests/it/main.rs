//! The model crate's integration tests as one test binary: properties of
//! the CSV ingest and the encoder, file formats, and splitting by a key.

mod formats;
mod properties;
mod splits;
mod streamed;
