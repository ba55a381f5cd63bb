//! CSV ingest on arbitrary bytes: no panic, a rejection is always invalid
//! data with a message, and an accepted table fits and encodes.
//!
//! The first byte chooses the options (delimiter, positive label, a column
//! type override, a dropped column, the row limit); the rest is the upload.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use serval_model::ModelError;
use serval_model::dataset::{ColumnKind, IngestOptions, ingest_csv};
use serval_model::encoder::{Encoder, EncoderState};

const DELIMITERS: [u8; 4] = [b',', b';', b'\t', b'|'];
const POSITIVE: [&str; 4] = ["yes", "1", "TRUE", "a"];

fuzz_target!(|data: &[u8]| {
    let Some((&control, csv)) = data.split_first() else {
        return;
    };
    let delimiter = DELIMITERS[usize::from(control & 3)];
    let positive_label = POSITIVE[usize::from((control >> 2) & 3)];
    let mut column_types = HashMap::new();
    match (control >> 4) & 3 {
        1 => column_types.insert("a".to_string(), ColumnKind::Numeric),
        2 => column_types.insert("a".to_string(), ColumnKind::Boolean),
        3 => column_types.insert("a".to_string(), ColumnKind::Categorical),
        _ => None,
    };
    let drop_columns = if control & 0x40 != 0 {
        vec!["b".to_string()]
    } else {
        Vec::new()
    };
    let max_rows = if control & 0x80 != 0 { 4 } else { 100_000 };
    let options = IngestOptions {
        delimiter,
        label_column: "y",
        positive_label,
        drop_columns: &drop_columns,
        column_types: &column_types,
        max_rows,
        max_columns: 1000,
    };
    match ingest_csv(csv, &options) {
        Ok(table) => {
            let rows = table.labels.len();
            assert_eq!(rows + table.skipped_rows, table.rows_read);
            assert!(table.labels.contains(&1.0) && table.labels.contains(&0.0));
            let all: Vec<usize> = (0..rows).collect();
            let encoder = Encoder::new(EncoderState::fit(&table, &all));
            let dense = encoder.encode_table(&table, &all);
            assert_eq!(dense.len(), rows * encoder.width());
        }
        Err(ModelError::InvalidData(message)) => assert!(!message.trim().is_empty()),
        Err(other) => panic!("expected invalid data, got {other:?}"),
    }
});
