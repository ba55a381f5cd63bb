//! Predict's rows as the model crate's input: each record's values
//! converted to [`Cell`]s in the encoder's column order and encoded by the
//! version's encoder, dense rows checked for width and finiteness. Errors
//! name the row and the column.

use serval_model::encoder::Encoder;
use serval_model::{Cell, ModelError};
use serval_proto::v1 as pb;
use tonic::Status;

use crate::error::ServalError;

/// The request's rows as one row-major input, checked.
pub fn encode_rows(
    encoder: &Encoder,
    records: &[pb::Record],
    dense_rows: Vec<pb::DenseRow>,
) -> Result<Vec<f32>, Status> {
    let width = encoder.width();
    let mut input = Vec::with_capacity((records.len() + dense_rows.len()) * width);
    let mut cells = Vec::with_capacity(encoder.column_names().len());
    for (i, record) in records.iter().enumerate() {
        encode_record_into(encoder, i, record, &mut cells, &mut input)?;
    }
    for (i, row) in dense_rows.into_iter().enumerate() {
        encoder.check_dense(i, &row.values).map_err(ServalError::from)?;
        if input.is_empty() {
            // One dense row (the common case) is used as it is, uncopied.
            input = row.values;
        } else {
            input.extend_from_slice(&row.values);
        }
    }
    Ok(input)
}

/// Appends the encoding of `record`, record number `index` of a request,
/// to `out`.
pub fn encode_record(
    encoder: &Encoder,
    index: usize,
    record: &pb::Record,
    out: &mut Vec<f32>,
) -> Result<(), Status> {
    encode_record_into(encoder, index, record, &mut Vec::new(), out)
}

/// [`encode_record`] with a buffer for the cells, reused across records.
fn encode_record_into<'a>(
    encoder: &Encoder,
    index: usize,
    record: &'a pb::Record,
    cells: &mut Vec<Cell<'a>>,
    out: &mut Vec<f32>,
) -> Result<(), Status> {
    cells.clear();
    for name in encoder.column_names() {
        let value = record.fields.get(name).ok_or_else(|| {
            ServalError::from(ModelError::MissingColumn {
                record: index,
                column: name.to_string(),
            })
        })?;
        let cell = cell_of(value).ok_or_else(|| {
            ServalError::InvalidArgument(format!(
                "records[{index}]: column {name:?} has no value (set a number, string, bool or null)"
            ))
        })?;
        cells.push(cell);
    }
    encoder
        .encode_cells(index, cells, out)
        .map_err(|e| ServalError::from(e).into())
}

/// A record's value as the model crate's cell; `None` when the value has
/// no kind set.
fn cell_of(value: &pb::Value) -> Option<Cell<'_>> {
    Some(match value.kind.as_ref()? {
        pb::value::Kind::NumberValue(x) => Cell::Number(*x),
        pb::value::Kind::StringValue(s) => Cell::Text(s),
        pb::value::Kind::BoolValue(b) => Cell::Bool(*b),
        pb::value::Kind::NullValue(_) => Cell::Missing,
    })
}
