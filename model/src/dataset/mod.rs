//! Training data: reading a CSV, Parquet or Arrow file into typed columns,
//! inferring column types, refusing identifier-like columns, and the
//! folds. Nothing here is stored; the registry only ever sees
//! the fitted encoder and aggregates.

mod chunks;
mod columnar;
mod files;
mod identifiers;
mod inference;
mod ingest;
mod split;

pub use chunks::{Census, FileData, SharedFile, census, columns_of, line_breaks, parquet_rows, read_chunks};
pub use columnar::{DataFormat, ingest_batches};
pub use files::{DataFile, ingest_files};
pub use identifiers::refuse_identifier_columns;
pub use inference::{ColumnKind, NumericCell, boolean_token, parse_number};
pub use ingest::{ColumnValues, FeatureColumn, IngestOptions, TrainingTable, ingest_csv};
pub use split::{fold_of_key, keyed_folds, stratified_folds};
