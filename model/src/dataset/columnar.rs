//! Parquet and Arrow IPC training data: the file's schema decides each
//! column's type — numbers, booleans, or text (whose kind is then inferred
//! from its values, as a CSV column's is) — with the same overrides,
//! dropped columns, label rules and limits as a CSV. Nested and other types
//! training cannot use are refused, naming the column.
//!
//! The result is the same [`TrainingTable`] a CSV of the same rows gives,
//! so the same seed trains the same model from either.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Schema};
use serde::{Deserialize, Serialize};

use super::inference::{ColumnKind, NumericCell, boolean_token, parse_number};
use super::ingest::{
    ColumnValues, FeatureColumn, IngestOptions, InternedColumn, Rows, TrainingTable, invalid,
    one_label_class, plan_columns, positive_never_occurs, typed_column,
};
use crate::error::ModelError;

/// The file format of training data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataFormat {
    #[default]
    Csv,
    Parquet,
    /// Arrow IPC, file or stream form.
    Arrow,
}

impl DataFormat {
    /// The format a file name's extension names, if any.
    pub fn of_path(path: &str) -> Option<Self> {
        let extension = path.rsplit_once('.')?.1.to_ascii_lowercase();
        match extension.as_str() {
            "csv" | "tsv" | "txt" => Some(DataFormat::Csv),
            "parquet" | "pq" => Some(DataFormat::Parquet),
            "arrow" | "ipc" | "feather" | "arrows" => Some(DataFormat::Arrow),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DataFormat::Csv => "CSV",
            DataFormat::Parquet => "Parquet",
            DataFormat::Arrow => "Arrow",
        }
    }
}

/// One feature column as it is gathered, by the kind its values arrive in.
enum Gathered {
    /// Text cells, interned (a blank or null is "").
    Text(InternedColumn),
    /// Numbers; NaN for null.
    Numbers(Vec<f64>),
    /// Booleans; NaN for null.
    Booleans(Vec<f32>),
}

/// How each column of the file is read.
#[derive(Clone, Copy, PartialEq)]
enum Reading {
    Text,
    Number,
    Boolean,
}

fn reading_of(name: &str, data_type: &DataType) -> Result<Reading, ModelError> {
    Ok(match data_type {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Float16
        | DataType::Float32
        | DataType::Float64
        | DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => Reading::Number,
        DataType::Boolean => Reading::Boolean,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Reading::Text,
        DataType::Dictionary(_, value)
            if matches!(**value, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) =>
        {
            Reading::Text
        }
        other => {
            return Err(invalid(format!(
                "column {name:?} has type {other}, which training cannot use: drop it, or store it as a \
                 number, text or boolean"
            )));
        }
    })
}

/// Reads record batches of `schema` into a training table.
pub fn ingest_batches(
    schema: &Arc<Schema>,
    batches: impl Iterator<Item = Result<RecordBatch, ModelError>>,
    sha256: String,
    what: &str,
    options: &IngestOptions<'_>,
) -> Result<TrainingTable, ModelError> {
    ingest_batch_rows(schema, batches, sha256, what, options, Rows::Whole)
}

/// [`ingest_batches`] of the whole data or of a part of it.
pub(crate) fn ingest_batch_rows(
    schema: &Arc<Schema>,
    batches: impl Iterator<Item = Result<RecordBatch, ModelError>>,
    sha256: String,
    what: &str,
    options: &IngestOptions<'_>,
    part: Rows,
) -> Result<TrainingTable, ModelError> {
    let header: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| f.name().trim().to_string())
        .collect();
    for (i, name) in header.iter().enumerate() {
        if name.is_empty() {
            return Err(invalid(format!(
                "{what} schema, column {}: empty column name",
                i + 1
            )));
        }
        if header[..i].contains(name) {
            return Err(invalid(format!(
                "{what} schema: column {name:?} appears more than once"
            )));
        }
    }
    let (label_index, feature_indices) = plan_columns(&header, options, what)?;
    let label_reading = reading_of(&header[label_index], schema.field(label_index).data_type())?;
    let readings = feature_indices
        .iter()
        .map(|&i| reading_of(&header[i], schema.field(i).data_type()))
        .collect::<Result<Vec<_>, _>>()?;
    let mut gathered: Vec<Gathered> = readings
        .iter()
        .map(|reading| match reading {
            Reading::Text => Gathered::Text(InternedColumn::default()),
            Reading::Number => Gathered::Numbers(Vec::new()),
            Reading::Boolean => Gathered::Booleans(Vec::new()),
        })
        .collect();
    let positive = options.positive_label.trim();
    let positive_number = match parse_number(positive) {
        NumericCell::Value(x) => Some(x),
        _ => None,
    };
    let mut labels = Vec::new();
    let mut label_values: Vec<String> = Vec::new();
    let mut rows_read = 0usize;
    let mut skipped_rows = 0usize;
    for batch in batches {
        let batch = batch?;
        let rows = batch.num_rows();
        rows_read += rows;
        if rows_read > options.max_rows {
            return Err(invalid(format!(
                "the {what} file has more than {} data rows, the server's training row limit",
                options.max_rows
            )));
        }
        // The label of each row; None skips the row (a null or blank label).
        let label_column = batch.column(label_index);
        let kept: Vec<Option<bool>> = match label_reading {
            Reading::Boolean => {
                let wanted = boolean_token(positive);
                let values = label_column.as_boolean();
                (0..rows)
                    .map(|r| label_column.is_valid(r).then(|| Some(values.value(r)) == wanted))
                    .collect()
            }
            Reading::Number => {
                let values = numbers(&header[label_index], label_column)?;
                (0..rows)
                    .map(|r| (!values[r].is_nan()).then(|| Some(values[r]) == positive_number))
                    .collect()
            }
            Reading::Text => {
                let values = texts(&header[label_index], label_column)?;
                values
                    .iter()
                    .map(|cell| {
                        let cell = cell.as_deref().unwrap_or("").trim();
                        (!cell.is_empty()).then(|| cell == positive)
                    })
                    .collect()
            }
        };
        record_label_values(label_column, &kept, &mut label_values);
        skipped_rows += kept.iter().filter(|k| k.is_none()).count();
        labels.extend(kept.iter().flatten().map(|&p| f32::from(u8::from(p))));
        for ((column, &index), reading) in gathered.iter_mut().zip(&feature_indices).zip(&readings) {
            let array = batch.column(index);
            let name = &header[index];
            match (column, reading) {
                (Gathered::Text(interned), _) => {
                    for (cell, keep) in texts(name, array)?.iter().zip(&kept) {
                        if keep.is_some() {
                            interned.push(cell.as_deref().unwrap_or(""));
                        }
                    }
                }
                (Gathered::Numbers(values), _) => {
                    let numbers = numbers(name, array)?;
                    values.extend(
                        numbers
                            .iter()
                            .zip(&kept)
                            .filter(|(_, k)| k.is_some())
                            .map(|(x, _)| *x),
                    );
                }
                (Gathered::Booleans(values), _) => {
                    let booleans = array.as_boolean();
                    values.extend((0..rows).filter(|&r| kept[r].is_some()).map(|r| {
                        if array.is_valid(r) {
                            f32::from(u8::from(booleans.value(r)))
                        } else {
                            f32::NAN
                        }
                    }));
                }
            }
        }
    }
    if rows_read == 0 && part == Rows::Whole {
        return Err(invalid(format!("the {what} file has no data rows")));
    }
    let positives = labels.iter().filter(|&&l| l == 1.0).count();
    if part == Rows::Whole {
        if labels.is_empty() {
            return Err(invalid(format!(
                "every row has a blank label in column {:?}",
                options.label_column
            )));
        }
        if positives == 0 {
            return Err(positive_never_occurs(options, &label_values));
        }
        if positives == labels.len() {
            return Err(one_label_class(options));
        }
    }
    let features = feature_indices
        .iter()
        .zip(gathered)
        .map(|(&i, column)| feature(&header[i], column, options))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(TrainingTable {
        header_columns: header.len(),
        rows_read,
        skipped_rows,
        labels,
        features,
        sha256,
    })
}

/// A few distinct label values, for the error when the positive one never
/// occurs.
fn record_label_values(column: &ArrayRef, kept: &[Option<bool>], seen: &mut Vec<String>) {
    const KEPT: usize = 13;
    if seen.len() >= KEPT {
        return;
    }
    let texts = arrow_cast::display::ArrayFormatter::try_new(column.as_ref(), &Default::default());
    if let Ok(texts) = texts {
        for (r, keep) in kept.iter().enumerate() {
            if keep.is_some() && seen.len() < KEPT {
                let text = texts.value(r).to_string();
                if !seen.contains(&text) {
                    seen.push(text);
                }
            }
        }
    }
}

/// The column as typed values, by its override or its values' kind.
fn feature(name: &str, column: Gathered, options: &IngestOptions<'_>) -> Result<FeatureColumn, ModelError> {
    let asked = options.column_types.get(name).copied();
    match (column, asked) {
        (Gathered::Text(interned), _) => typed_column(name, interned, options),
        (Gathered::Numbers(values), None | Some(ColumnKind::Numeric)) => Ok(FeatureColumn {
            name: name.to_string(),
            kind: ColumnKind::Numeric,
            values: ColumnValues::Numeric(values),
        }),
        (Gathered::Numbers(values), Some(_)) => {
            // As text, the way a CSV spells the numbers.
            let mut interned = InternedColumn::default();
            for x in values {
                interned.push(&if x.is_nan() { String::new() } else { spelled(x) });
            }
            typed_column(name, interned, options)
        }
        (Gathered::Booleans(values), None | Some(ColumnKind::Boolean)) => Ok(FeatureColumn {
            name: name.to_string(),
            kind: ColumnKind::Boolean,
            values: ColumnValues::Boolean {
                values,
                true_token: "true".into(),
                false_token: "false".into(),
            },
        }),
        (Gathered::Booleans(values), Some(ColumnKind::Numeric)) => Ok(FeatureColumn {
            name: name.to_string(),
            kind: ColumnKind::Numeric,
            values: ColumnValues::Numeric(values.into_iter().map(f64::from).collect()),
        }),
        (Gathered::Booleans(values), Some(ColumnKind::Categorical)) => {
            let mut interned = InternedColumn::default();
            for x in values {
                interned.push(match x {
                    x if x.is_nan() => "",
                    1.0 => "true",
                    _ => "false",
                });
            }
            typed_column(name, interned, options)
        }
    }
}

/// A number as a CSV usually spells it: whole numbers without a fraction.
fn spelled(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// A numeric column's values; NaN for null (and for non-finite values).
fn numbers(name: &str, array: &ArrayRef) -> Result<Vec<f64>, ModelError> {
    let cast = arrow_cast::cast(array.as_ref(), &DataType::Float64)
        .map_err(|e| invalid(format!("column {name:?}: cannot read its numbers: {e}")))?;
    let values = cast.as_primitive::<Float64Type>();
    Ok((0..values.len())
        .map(|r| {
            if values.is_valid(r) && values.value(r).is_finite() {
                values.value(r)
            } else {
                f64::NAN
            }
        })
        .collect())
}

/// A text column's cells; None for null.
fn texts(name: &str, array: &ArrayRef) -> Result<Vec<Option<String>>, ModelError> {
    let cast = arrow_cast::cast(array.as_ref(), &DataType::Utf8)
        .map_err(|e| invalid(format!("column {name:?}: cannot read its text: {e}")))?;
    let values = cast.as_string::<i32>();
    Ok((0..values.len())
        .map(|r| values.is_valid(r).then(|| values.value(r).to_string()))
        .collect())
}
