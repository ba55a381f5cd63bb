//! Predict's rows as the model crate's input: records and columns converted
//! to [`Cell`]s in the encoder's column order and encoded by the version's
//! encoder, dense rows checked for width and finiteness. Errors name the
//! row and the column. Reads the call as [`crate::wire`] decodes it, so a
//! text value is borrowed from the message, a column name is resolved once
//! per call (per position in a record, reused while records keep their
//! order), and the output is sized once.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use serval_model::encoder::Encoder;
use serval_model::{Cell, ModelError};
use serval_proto::v1 as pb;

use crate::error::ServalError;
use crate::wire::{ColumnRead, Malformed, PredictCall, WireValue, dense_values, read_column, record_fields};

/// Where each of an encoder's columns is found by name; built once per
/// loaded version.
#[derive(Debug, Clone)]
pub struct ColumnIndex {
    /// By a name's length: the names of that length. Performance: a
    /// record's names come in any order (a Rust or Go client's map orders
    /// each record its own way), so each is looked up; comparing it with
    /// the few names of its length costs a fraction of hashing it (with
    /// std's SipHash, the lookups were ~10 % of the server's time at 64
    /// shoppers records a call).
    by_length: Vec<Names>,
    names: Vec<String>,
}

/// The names of one length.
#[derive(Debug, Clone)]
enum Names {
    /// Compared one by one.
    Few(Vec<(Box<[u8]>, usize)>),
    /// Hashed, for the rare model with many names of one length.
    Many(HashMap<Box<[u8]>, usize, BuildHasherDefault<NameHasher>>),
}

/// Names of one length compared one by one at most.
const FEW_NAMES: usize = 8;

impl ColumnIndex {
    pub fn new(encoder: &Encoder) -> Self {
        let names: Vec<String> = encoder.column_names().map(str::to_string).collect();
        let longest = names.iter().map(String::len).max().unwrap_or(0);
        let mut lists: Vec<Vec<(Box<[u8]>, usize)>> = vec![Vec::new(); longest + 1];
        for (i, name) in names.iter().enumerate() {
            lists[name.len()].push((name.as_bytes().into(), i));
        }
        let by_length = lists
            .into_iter()
            .map(|list| {
                if list.len() <= FEW_NAMES {
                    Names::Few(list)
                } else {
                    Names::Many(list.into_iter().collect())
                }
            })
            .collect();
        ColumnIndex { by_length, names }
    }

    /// The encoder column called `name`, if the model uses it.
    #[inline]
    pub fn position(&self, name: &[u8]) -> Option<usize> {
        match self.by_length.get(name.len())? {
            Names::Few(list) => list
                .iter()
                .find(|(candidate, _)| same(candidate, name))
                .map(|&(_, i)| i),
            Names::Many(map) => map.get(name).copied(),
        }
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// Whether two names are the same bytes. Performance: names are short, and
/// comparing them as a few (overlapping) 8-byte words inline costs less
/// than a call to `memcmp` (~6 % of the server's time at 64 records a
/// call).
#[inline]
fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n < 8 {
        return a == b;
    }
    let word = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().expect("8 bytes"));
    let mut at = 0;
    while at + 8 < n {
        if word(a, at) != word(b, at) {
            return false;
        }
        at += 8;
    }
    word(a, n - 8) == word(b, n - 8)
}

/// A multiply-rotate hash of a few words (as rustc's FxHash), for the
/// names of one length when a model has many. Callers choose the names
/// looked up, but never what is in the table, so colliding names cost them
/// only their own lookups.
#[derive(Debug, Default, Clone, Copy)]
pub struct NameHasher(u64);

impl Hasher for NameHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        let mut tail = [0u8; 8];
        let rest = chunks.remainder();
        tail[..rest.len()].copy_from_slice(rest);
        self.add(u64::from_le_bytes(tail));
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

impl NameHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// A call's rows, encoded.
#[derive(Debug, Default)]
pub struct EncodedRows {
    /// Row-major, `encoder.width()` values a row.
    pub input: Vec<f32>,
    /// Per row, per encoder column, the value as the caller sent it (as
    /// text), for explanations; filled only when asked for, and never for
    /// dense rows.
    pub shown: Vec<Vec<String>>,
}

/// Rows in the call, whichever form carries them, or why the forms are
/// not used as they should be.
pub fn row_count(call: &PredictCall) -> Result<usize, String> {
    let forms = [
        !call.records.is_empty(),
        !call.columns.is_empty(),
        !call.dense_rows.is_empty(),
    ];
    match forms.iter().filter(|&&set| set).count() {
        0 => Err("no rows: set records, columns or dense_rows".to_string()),
        1 if !call.columns.is_empty() => read_column(&call.columns[0])
            .map(|column| column_rows(&column))
            .map_err(|Malformed| "columns[0]: not a valid Column message".to_string()),
        1 => Ok(call.records.len() + call.dense_rows.len()),
        _ => Err("set one of records, columns and dense_rows, not several".to_string()),
    }
}

/// The call's rows as one row-major input, checked; with the values shown
/// in explanations when `show` is set.
pub fn encode_call(
    encoder: &Encoder,
    index: &ColumnIndex,
    call: &PredictCall,
    show: bool,
) -> Result<EncodedRows, ServalError> {
    if !call.columns.is_empty() {
        encode_columns(encoder, index, &call.columns, show)
    } else if !call.records.is_empty() {
        encode_records(encoder, index, &call.records, show)
    } else {
        encode_dense(encoder, &call.dense_rows)
    }
}

/// A cell as it is shown in an explanation: as the caller sent it.
fn shown(cell: Cell<'_>) -> String {
    match cell {
        Cell::Text(s) => s.to_string(),
        Cell::Number(x) => x.to_string(),
        Cell::Bool(b) => b.to_string(),
        Cell::Missing => String::new(),
    }
}

fn encode_records(
    encoder: &Encoder,
    index: &ColumnIndex,
    records: &[bytes::Bytes],
    show: bool,
) -> Result<EncodedRows, ServalError> {
    let mut encoded = EncodedRows {
        input: Vec::with_capacity(records.len() * encoder.width()),
        shown: Vec::new(),
    };
    // Each field's encoder column, by its position in the previous record:
    // callers usually send every record's fields in the same order, so a
    // name is looked up once per call and then only compared.
    let mut by_position: Vec<(&[u8], Option<usize>)> = Vec::with_capacity(index.len() + 1);
    let mut found: Vec<WireValue<'_>> = Vec::with_capacity(index.len());
    let mut present: Vec<bool> = Vec::with_capacity(index.len());
    let mut cells: Vec<Cell<'_>> = Vec::with_capacity(index.len());
    for (i, record) in records.iter().enumerate() {
        found.clear();
        found.resize(index.len(), WireValue::Unset);
        present.clear();
        present.resize(index.len(), false);
        let mut position = 0;
        record_fields(record, |name, value| {
            let column = match by_position.get(position) {
                Some(&(seen, column)) if same(seen, name) => column,
                _ => {
                    let column = index.position(name);
                    by_position.truncate(position);
                    by_position.push((name, column));
                    column
                }
            };
            position += 1;
            if let Some(column) = column {
                found[column] = value;
                present[column] = true;
            }
        })
        .map_err(|_| ServalError::InvalidArgument(format!("records[{i}]: not a valid Record message")))?;

        cells.clear();
        for (column, name) in index.names.iter().enumerate() {
            if !present[column] {
                return Err(ModelError::MissingColumn {
                    record: i,
                    column: name.clone(),
                }
                .into());
            }
            let cell = match found[column] {
                WireValue::Unset => {
                    return Err(ServalError::InvalidArgument(format!(
                        "records[{i}]: column {name:?} has no value (set a number, string, bool or null)"
                    )));
                }
                WireValue::Number(x) => Cell::Number(x),
                WireValue::Text(bytes) => Cell::Text(std::str::from_utf8(bytes).map_err(|_| {
                    ServalError::InvalidArgument(format!("records[{i}]: column {name:?}: text is not UTF-8"))
                })?),
                WireValue::Bool(b) => Cell::Bool(b),
                WireValue::Null => Cell::Missing,
            };
            cells.push(cell);
        }
        encoder.encode_cells(i, &cells, &mut encoded.input)?;
        if show {
            encoded.shown.push(cells.iter().map(|&c| shown(c)).collect());
        }
    }
    Ok(encoded)
}

/// Values in a column: the length of its one typed array.
fn column_rows(column: &ColumnRead<'_>) -> usize {
    column
        .numbers
        .len()
        .max(column.strings.len())
        .max(column.bools.len())
}

/// One request column, checked, as the cells of its rows.
enum ColumnValues<'a> {
    Numbers(crate::wire::Numbers<'a>),
    Strings(Vec<&'a str>),
    Bools(Vec<bool>),
}

struct CheckedColumn<'a> {
    values: ColumnValues<'a>,
    /// Per row, whether the value is missing; empty when none is.
    missing: Vec<bool>,
}

impl CheckedColumn<'_> {
    #[inline]
    fn cell(&self, row: usize) -> Cell<'_> {
        if self.missing.get(row).copied().unwrap_or(false) {
            return Cell::Missing;
        }
        match &self.values {
            ColumnValues::Numbers(values) => Cell::Number(values.get(row)),
            ColumnValues::Strings(values) => Cell::Text(values[row]),
            ColumnValues::Bools(values) => Cell::Bool(values[row]),
        }
    }
}

/// Checks one request column (`at` is its position in the request, `name`
/// its name) of a call of `rows` rows.
fn check_column<'a>(
    at: usize,
    name: &str,
    column: ColumnRead<'a>,
    rows: usize,
) -> Result<CheckedColumn<'a>, String> {
    let count = column_rows(&column);
    let kinds = [
        !column.numbers.is_empty(),
        !column.strings.is_empty(),
        !column.bools.is_empty(),
    ];
    let values = match kinds {
        [false, false, false] => {
            return Err(format!(
                "columns[{at}] ({name:?}): no values (set numbers, strings or bools, one per row)"
            ));
        }
        [true, false, false] => ColumnValues::Numbers(column.numbers),
        [false, true, false] => ColumnValues::Strings(
            column
                .strings
                .iter()
                .enumerate()
                .map(|(row, bytes)| {
                    std::str::from_utf8(bytes)
                        .map_err(|_| format!("row {row}, column {name:?}: text is not UTF-8"))
                })
                .collect::<Result<_, _>>()?,
        ),
        [false, false, true] => ColumnValues::Bools(column.bools),
        _ => {
            return Err(format!(
                "columns[{at}] ({name:?}): set one of numbers, strings and bools, not several"
            ));
        }
    };
    if count != rows {
        return Err(format!(
            "columns[{at}] ({name:?}) has {count} values, but columns[0] has {rows}: every column needs one value per row"
        ));
    }
    let mut missing = Vec::new();
    if !column.missing.is_empty() {
        missing.resize(rows, false);
        for &row in &column.missing {
            let slot = missing.get_mut(row as usize).ok_or_else(|| {
                format!("columns[{at}] ({name:?}): missing row {row}, but the call has {rows} rows")
            })?;
            *slot = true;
        }
    }
    Ok(CheckedColumn { values, missing })
}

fn encode_columns(
    encoder: &Encoder,
    index: &ColumnIndex,
    columns: &[bytes::Bytes],
    show: bool,
) -> Result<EncodedRows, ServalError> {
    let invalid = ServalError::InvalidArgument;
    let mut rows = 0;
    // Each encoder column's request column, resolved once for the call.
    let mut sources: Vec<Option<CheckedColumn<'_>>> = (0..index.len()).map(|_| None).collect();
    let mut ignored: Vec<&[u8]> = Vec::new();
    for (at, column) in columns.iter().enumerate() {
        let column = read_column(column)
            .map_err(|Malformed| invalid(format!("columns[{at}]: not a valid Column message")))?;
        let name = std::str::from_utf8(column.name)
            .map_err(|_| invalid(format!("columns[{at}]: the name is not UTF-8")))?;
        if name.is_empty() {
            return Err(invalid(format!("columns[{at}]: no name")));
        }
        if at == 0 {
            rows = column_rows(&column);
        }
        let duplicate = || invalid(format!("columns[{at}]: column {name:?} appears twice"));
        let position = index.position(name.as_bytes());
        match position {
            Some(position) if sources[position].is_some() => return Err(duplicate()),
            // Columns the model does not use are ignored, as in records.
            None if ignored.contains(&name.as_bytes()) => return Err(duplicate()),
            None => ignored.push(column.name),
            Some(_) => {}
        }
        let checked = check_column(at, name, column, rows).map_err(invalid)?;
        if let Some(position) = position {
            sources[position] = Some(checked);
        }
    }
    let sources = sources
        .into_iter()
        .zip(&index.names)
        .map(|(source, name)| source.ok_or_else(|| invalid(format!("columns: missing column {name:?}"))))
        .collect::<Result<Vec<_>, _>>()?;

    let mut encoded = EncodedRows {
        input: Vec::with_capacity(rows * encoder.width()),
        shown: Vec::new(),
    };
    let mut cells: Vec<Cell<'_>> = Vec::with_capacity(sources.len());
    for row in 0..rows {
        cells.clear();
        cells.extend(sources.iter().map(|source| source.cell(row)));
        encoder
            .encode_cells(row, &cells, &mut encoded.input)
            .map_err(|error| match error {
                ModelError::InvalidCell { column, reason, .. } => {
                    invalid(format!("row {row}, column {column:?}: {reason}"))
                }
                other => other.into(),
            })?;
        if show {
            encoded.shown.push(cells.iter().map(|&c| shown(c)).collect());
        }
    }
    Ok(encoded)
}

fn encode_dense(encoder: &Encoder, rows: &[bytes::Bytes]) -> Result<EncodedRows, ServalError> {
    let mut input = Vec::with_capacity(rows.len() * encoder.width());
    for (i, row) in rows.iter().enumerate() {
        let start = input.len();
        dense_values(row, &mut input).map_err(|_| {
            ServalError::InvalidArgument(format!("dense_rows[{i}]: not a valid DenseRow message"))
        })?;
        encoder.check_dense(i, &input[start..])?;
    }
    Ok(EncodedRows {
        input,
        shown: Vec::new(),
    })
}

/// Appends the encoding of `record`, record number `index` of a request,
/// to `out`: what the server computes for it, for tests and tools that
/// hold the public message.
pub fn encode_record(
    encoder: &Encoder,
    index: usize,
    record: &pb::Record,
    out: &mut Vec<f32>,
) -> Result<(), ServalError> {
    let mut cells = Vec::with_capacity(encoder.column_names().len());
    for name in encoder.column_names() {
        let value = record.fields.get(name).ok_or_else(|| ModelError::MissingColumn {
            record: index,
            column: name.to_string(),
        })?;
        cells.push(match &value.kind {
            Some(pb::value::Kind::NumberValue(x)) => Cell::Number(*x),
            Some(pb::value::Kind::StringValue(s)) => Cell::Text(s),
            Some(pb::value::Kind::BoolValue(b)) => Cell::Bool(*b),
            Some(pb::value::Kind::NullValue(_)) => Cell::Missing,
            None => {
                return Err(ServalError::InvalidArgument(format!(
                    "records[{index}]: column {name:?} has no value (set a number, string, bool or null)"
                )));
            }
        });
    }
    Ok(encoder.encode_cells(index, &cells, out)?)
}

#[cfg(test)]
mod tests {
    use super::same;

    #[test]
    fn names_compare_as_bytes_at_every_length() {
        let names = [
            "",
            "a",
            "Month",
            "Weekend",
            "ExitRates",
            "PageValues1234567",
            "ProductRelated_Duration",
        ];
        for a in names {
            for b in names {
                assert_eq!(same(a.as_bytes(), b.as_bytes()), a == b, "{a:?} {b:?}");
            }
            // One byte changed, anywhere.
            for i in 0..a.len() {
                let mut changed = a.as_bytes().to_vec();
                changed[i] ^= 1;
                assert!(!same(a.as_bytes(), &changed), "{a:?} at {i}");
            }
        }
    }
}
