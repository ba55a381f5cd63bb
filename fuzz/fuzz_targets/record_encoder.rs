//! The record encoder on arbitrary records: no panic, success appends
//! exactly one row of finite values, and an error names a column.
//!
//! The encoder is fitted once on a small fixed CSV. The input is read as a
//! list of fields, each a head byte (low nibble: the column name, high
//! nibble: the value kind) followed by the value's bytes.
#![no_main]

use std::collections::HashMap;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use serval_model::dataset::{IngestOptions, ingest_csv};
use serval_model::encoder::{Encoder, EncoderState};
use serval_model::{Cell, ModelError};

/// The fitted columns, the label, and names the encoder does not know.
const NAMES: [&str; 9] = [
    "amount", "visits", "colour", "member", "flag", "empty", "label", "", "zz",
];

const TRAINING: &str = "amount,visits,colour,member,flag,empty,label
12.5,3,red,Yes,true,,1
0,1,blue,No,false,,0
7.25,10,green,Yes,false,,0
1e3,2,red,No,true,,1
3,,blue,Yes,true,,0
";

/// A value as decoded from the input, owned.
#[derive(Debug)]
enum Value {
    Number(f64),
    Text(String),
    Bool(bool),
    Missing,
}

fn encoder() -> &'static Encoder {
    static ENCODER: OnceLock<Encoder> = OnceLock::new();
    ENCODER.get_or_init(|| {
        let table = ingest_csv(
            TRAINING.as_bytes(),
            &IngestOptions {
                delimiter: b',',
                label_column: "label",
                positive_label: "1",
                drop_columns: &[],
                column_types: &HashMap::new(),
                max_rows: 100,
                max_columns: 100,
            },
        )
        .expect("the fixed CSV ingests");
        let all: Vec<usize> = (0..table.labels.len()).collect();
        Encoder::new(EncoderState::fit(&table, &all))
    })
}

/// Fields from the fuzzer's bytes; a truncated last field is dropped.
fn decode(mut data: &[u8]) -> HashMap<String, Value> {
    let mut fields = HashMap::new();
    while let Some((&head, rest)) = data.split_first() {
        let name = NAMES[usize::from(head & 0x0f) % NAMES.len()];
        let (value, rest) = match head >> 4 {
            0 if rest.len() >= 8 => {
                let (bytes, rest) = rest.split_at(8);
                (Value::Number(f64::from_le_bytes(bytes.try_into().unwrap())), rest)
            }
            1 => {
                let Some((&len, rest)) = rest.split_first() else { break };
                let len = usize::from(len).min(rest.len());
                let (bytes, rest) = rest.split_at(len);
                (Value::Text(String::from_utf8_lossy(bytes).into_owned()), rest)
            }
            2 => match rest.split_first() {
                Some((&b, rest)) => (Value::Bool(b & 1 == 1), rest),
                None => break,
            },
            3 => (Value::Missing, rest),
            _ => break,
        };
        fields.insert(name.to_string(), value);
        data = rest;
    }
    fields
}

fn cell(value: &Value) -> Cell<'_> {
    match value {
        Value::Number(x) => Cell::Number(*x),
        Value::Text(s) => Cell::Text(s),
        Value::Bool(b) => Cell::Bool(*b),
        Value::Missing => Cell::Missing,
    }
}

fuzz_target!(|data: &[u8]| {
    let encoder = encoder();
    let fields = decode(data);
    let cells: Result<Vec<Cell<'_>>, ModelError> = encoder
        .column_names()
        .map(|name| {
            fields.get(name).map(cell).ok_or_else(|| ModelError::MissingColumn {
                record: 0,
                column: name.to_string(),
            })
        })
        .collect();
    let mut out = vec![42.0f32; 3];
    match cells.and_then(|cells| encoder.encode_cells(0, &cells, &mut out)) {
        Ok(()) => {
            assert_eq!(out[..3], [42.0f32; 3]);
            assert_eq!(out.len(), 3 + encoder.width());
            for slot in 0..encoder.width() {
                assert!(
                    out[3 + slot].is_finite(),
                    "value {slot} is {} for {fields:?}",
                    out[3 + slot]
                );
            }
        }
        Err(error) => {
            let message = error.to_string();
            assert!(
                encoder.column_names().any(|name| message.contains(&format!("{name:?}"))),
                "message {message:?} names no column"
            );
            assert_eq!(out, [42.0f32; 3], "a failed record leaves the output as it was");
        }
    }
});
