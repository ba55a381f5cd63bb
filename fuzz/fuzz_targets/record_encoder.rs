//! The record encoder on arbitrary Predict records: no panic, success
//! appends exactly one row of finite values, and an error names a column.
//!
//! The encoder is fitted once on a small fixed CSV. The input is read as a
//! list of fields, each a head byte (low nibble: the column name, high
//! nibble: the value kind) followed by the value's bytes.
#![no_main]

use std::collections::HashMap;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use serval_proto::v1 as pb;
use serval_server::dataset::{IngestOptions, ingest_csv};
use serval_server::encoder::{Encoder, EncoderState};

/// The fitted columns, the label, and names the encoder does not know.
const NAMES: [&str; 9] = [
    "amount", "visits", "colour", "member", "flag", "empty", "label", "", "zz",
];


fuzz_target!(|data: &[u8]| {
    let encoder = encoder();
    let fields = decode(data);
    let mut out = vec![42.0f32; 3];
    match encoder.encode_record(&fields, &mut out) {
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
        Err(message) => assert!(
            encoder
                .state()
                .columns
                .iter()
                .any(|c| message.contains(&format!("{:?}", c.name))),
            "message {message:?} names no column"
        ),
    }
});
