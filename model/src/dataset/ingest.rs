//! Parses an uploaded CSV into a [`TrainingTable`]: validated header, rows
//! with a label, and one typed column per feature.
//!
//! Cells are interned per column while reading, so memory grows with the
//! rows (4 bytes a cell) plus each column's distinct values, not with the
//! text of the file.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use super::inference::{ColumnKind, NumericCell, boolean_token, infer_kind, parse_number};
use crate::error::ModelError;

/// What the trainer asked for.
#[derive(Debug, Clone)]
pub struct IngestOptions<'a> {
    pub delimiter: u8,
    pub label_column: &'a str,
    pub positive_label: &'a str,
    pub drop_columns: &'a [String],
    pub column_types: &'a HashMap<String, ColumnKind>,
    /// Data rows accepted at most (header excluded).
    pub max_rows: usize,
    /// Columns accepted at most (label and dropped columns included).
    pub max_columns: usize,
}

/// The parsed, labelled data a model is trained on.
#[derive(Debug)]
pub struct TrainingTable {
    /// Columns in the header, label and dropped columns included.
    pub header_columns: usize,
    /// Data rows read.
    pub rows_read: usize,
    /// Rows left out because their label was blank.
    pub skipped_rows: usize,
    /// 1.0 for the positive class, 0.0 otherwise; one per kept row.
    pub labels: Vec<f32>,
    /// Feature columns in header order.
    pub features: Vec<FeatureColumn>,
    /// SHA-256 of the uploaded bytes.
    pub sha256: String,
}

#[derive(Debug)]
pub struct FeatureColumn {
    pub name: String,
    pub kind: ColumnKind,
    pub values: ColumnValues,
}

/// One column's cells, one per kept row.
#[derive(Debug)]
pub enum ColumnValues {
    /// NaN marks a blank or unparsable cell.
    Numeric(Vec<f64>),
    /// Index into `dictionary` (trimmed cell text; "" for blanks).
    Categorical { ids: Vec<u32>, dictionary: Vec<String> },
    /// 1.0 true, 0.0 false, NaN blank.
    Boolean {
        values: Vec<f32>,
        true_token: String,
        false_token: String,
    },
}

/// Interns one column's trimmed cells.
#[derive(Default)]
pub(super) struct InternedColumn {
    index: HashMap<String, u32>,
    dictionary: Vec<String>,
    counts: Vec<usize>,
    ids: Vec<u32>,
}

impl InternedColumn {
    pub(super) fn push(&mut self, cell: &str) {
        let cell = cell.trim();
        let id = match self.index.get(cell) {
            Some(&id) => id,
            None => {
                let id = self.dictionary.len() as u32;
                self.index.insert(cell.to_string(), id);
                self.dictionary.push(cell.to_string());
                self.counts.push(0);
                id
            }
        };
        self.counts[id as usize] += 1;
        self.ids.push(id);
    }

    fn distinct(&self) -> impl Iterator<Item = (&str, usize)> {
        self.dictionary
            .iter()
            .map(String::as_str)
            .zip(self.counts.iter().copied())
    }
}

pub(super) fn invalid(message: impl Into<String>) -> ModelError {
    ModelError::InvalidData(message.into())
}

/// Parses `bytes` as a CSV with a header row and returns the labelled,
/// typed table, or an INVALID_ARGUMENT naming the offending line or column.
pub fn ingest_csv(bytes: &[u8], options: &IngestOptions<'_>) -> Result<TrainingTable, ModelError> {
    ingest_csv_rows(bytes, options, Rows::Whole, &line_here)
}

/// How an error names a CSV row: given the row's index among the data
/// rows and the line it starts on in the bytes read, where it is (`line
/// 7`, or `part-1.csv: line 7` for rows copied from a file).
pub(crate) type Place<'a> = &'a dyn Fn(u64, u64) -> String;

/// A row's line in the bytes read, as its place.
pub(crate) fn line_here(_row: u64, line: u64) -> String {
    format!("line {line}")
}

/// Whether a read holds the whole data or a part of it (a chunk or a
/// sample read while streaming): a part may lack a class, and is not
/// fingerprinted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rows {
    Whole,
    Part,
}

/// [`ingest_csv`] of the whole data or of a part of it.
pub(crate) fn ingest_csv_rows(
    bytes: &[u8],
    options: &IngestOptions<'_>,
    rows: Rows,
    place: Place<'_>,
) -> Result<TrainingTable, ModelError> {
    let sha256 = match rows {
        Rows::Whole => hex::encode(Sha256::digest(bytes)),
        Rows::Part => String::new(),
    };
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(invalid("the CSV is empty: expected a header row and data rows"));
    }
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(options.delimiter)
        .has_headers(true)
        .flexible(false)
        .from_reader(bytes);

    let header = read_header(&mut reader)?;
    let (label_index, feature_indices) = plan_columns(&header, options, "CSV")?;

    let mut label = InternedColumn::default();
    let mut columns: Vec<InternedColumn> = feature_indices
        .iter()
        .map(|_| InternedColumn::default())
        .collect();
    let mut rows_read = 0usize;
    let mut skipped_rows = 0usize;
    let mut record = csv::ByteRecord::new();
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(error) => return Err(csv_error(error, place)),
        }
        rows_read += 1;
        if rows_read > options.max_rows {
            return Err(invalid(format!(
                "the CSV has more than {} data rows, the server's training row limit",
                options.max_rows
            )));
        }
        let cell = |i: usize| -> Result<&str, ModelError> {
            std::str::from_utf8(&record[i]).map_err(|_| {
                let line = record.position().map_or(rows_read as u64 + 1, |p| p.line());
                invalid(format!(
                    "{}, column {:?}: not valid UTF-8 text",
                    place(rows_read as u64 - 1, line),
                    header[i]
                ))
            })
        };
        let label_cell = cell(label_index)?;
        if label_cell.trim().is_empty() {
            skipped_rows += 1;
            continue;
        }
        label.push(label_cell);
        for (column, &i) in columns.iter_mut().zip(&feature_indices) {
            column.push(cell(i)?);
        }
    }
    if rows_read == 0 {
        return Err(invalid("the CSV has a header but no data rows"));
    }
    if label.ids.is_empty() && rows == Rows::Whole {
        return Err(invalid(format!(
            "every row has a blank label in column {:?}",
            options.label_column
        )));
    }

    let labels = match rows {
        Rows::Whole => binary_labels(&label, options)?,
        Rows::Part => {
            let positive = label.index.get(options.positive_label.trim()).copied();
            label
                .ids
                .iter()
                .map(|&id| f32::from(u8::from(Some(id) == positive)))
                .collect()
        }
    };
    let features = feature_indices
        .iter()
        .zip(columns)
        .map(|(&i, column)| typed_column(&header[i], column, options))
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

/// The label's index and the feature columns' indices in `header`, after
/// checking the options against it (`what` names the file kind in errors).
pub(super) fn plan_columns(
    header: &[String],
    options: &IngestOptions<'_>,
    what: &str,
) -> Result<(usize, Vec<usize>), ModelError> {
    if header.len() > options.max_columns {
        return Err(invalid(format!(
            "the {what} has {} columns, more than the server's limit of {} columns per training upload",
            header.len(),
            options.max_columns
        )));
    }
    let column_index = |name: &str| header.iter().position(|h| h == name);
    let label_index = column_index(options.label_column).ok_or_else(|| {
        invalid(format!(
            "label column {:?} is not in the {what} header (columns: {})",
            options.label_column,
            list(header)
        ))
    })?;
    for name in options.drop_columns {
        if name == options.label_column {
            return Err(invalid(format!(
                "drop_columns: cannot drop the label column {name:?}"
            )));
        }
        if column_index(name).is_none() {
            return Err(invalid(format!(
                "drop_columns: column {name:?} is not in the {what} header"
            )));
        }
    }
    for name in options.column_types.keys() {
        if column_index(name).is_none() {
            return Err(invalid(format!(
                "column_types: column {name:?} is not in the {what} header"
            )));
        }
        if name == options.label_column {
            return Err(invalid(format!(
                "column_types: {name:?} is the label column, not a feature"
            )));
        }
    }
    let feature_indices: Vec<usize> = (0..header.len())
        .filter(|&i| i != label_index && !options.drop_columns.contains(&header[i]))
        .collect();
    if feature_indices.is_empty() {
        return Err(invalid(
            "no feature columns left: every column is the label or dropped",
        ));
    }

    Ok((label_index, feature_indices))
}

fn read_header(reader: &mut csv::Reader<&[u8]>) -> Result<Vec<String>, ModelError> {
    let raw = reader
        .byte_headers()
        .map_err(|e| csv_error(e, &line_here))?
        .clone();
    let mut header = Vec::with_capacity(raw.len());
    for (i, name) in raw.iter().enumerate() {
        let name = std::str::from_utf8(name)
            .map_err(|_| invalid(format!("header, column {}: not valid UTF-8 text", i + 1)))?
            .trim()
            .to_string();
        if name.is_empty() {
            return Err(invalid(format!("header, column {}: empty column name", i + 1)));
        }
        if header.contains(&name) {
            return Err(invalid(format!("header: column {name:?} appears more than once")));
        }
        header.push(name);
    }
    Ok(header)
}

/// A CSV reader's error; a row it names is named by `place`.
pub(super) fn csv_error(error: csv::Error, place: Place<'_>) -> ModelError {
    match error.kind() {
        csv::ErrorKind::UnequalLengths {
            pos,
            expected_len,
            len,
        } => {
            // The header is the reader's record 0.
            let (row, line) = pos
                .as_ref()
                .map_or((0, 0), |p| (p.record().saturating_sub(1), p.line()));
            invalid(format!(
                "{}: {len} fields, but the header has {expected_len}",
                place(row, line)
            ))
        }
        _ => invalid(format!("malformed CSV: {error}")),
    }
}

/// Maps the label column to 1.0 (positive) / 0.0, insisting on two classes.
fn binary_labels(label: &InternedColumn, options: &IngestOptions<'_>) -> Result<Vec<f32>, ModelError> {
    let positive = options.positive_label.trim();
    let Some(&positive_id) = label.index.get(positive) else {
        return Err(positive_never_occurs(options, &label.dictionary));
    };
    if label.dictionary.len() < 2 {
        return Err(one_label_class(options));
    }
    Ok(label
        .ids
        .iter()
        .map(|&id| if id == positive_id { 1.0 } else { 0.0 })
        .collect())
}

/// The positive label is not among the label column's `values`.
pub(super) fn positive_never_occurs(options: &IngestOptions<'_>, values: &[String]) -> ModelError {
    invalid(format!(
        "positive label {:?} never occurs in label column {:?} (values: {})",
        options.positive_label,
        options.label_column,
        list(values)
    ))
}

/// Every labelled row is positive.
pub(super) fn one_label_class(options: &IngestOptions<'_>) -> ModelError {
    invalid(format!(
        "label column {:?} has only one class ({:?}); training needs positive and negative rows",
        options.label_column,
        options.positive_label.trim()
    ))
}

pub(super) fn typed_column(
    name: &str,
    column: InternedColumn,
    options: &IngestOptions<'_>,
) -> Result<FeatureColumn, ModelError> {
    let kind = options
        .column_types
        .get(name)
        .copied()
        .unwrap_or_else(|| infer_kind(column.distinct()));
    let values = match kind {
        ColumnKind::Numeric => {
            let parsed: Vec<f64> = column
                .dictionary
                .iter()
                .map(|cell| match parse_number(cell) {
                    NumericCell::Value(x) => x,
                    NumericCell::Missing | NumericCell::Unparsable => f64::NAN,
                })
                .collect();
            ColumnValues::Numeric(column.ids.iter().map(|&id| parsed[id as usize]).collect())
        }
        ColumnKind::Boolean => boolean_column(name, &column)?,
        ColumnKind::Categorical => ColumnValues::Categorical {
            ids: column.ids,
            dictionary: column.dictionary,
        },
    };
    Ok(FeatureColumn {
        name: name.to_string(),
        kind,
        values,
    })
}

fn boolean_column(name: &str, column: &InternedColumn) -> Result<ColumnValues, ModelError> {
    let mut true_token = None;
    let mut false_token = None;
    let mut mapped = Vec::with_capacity(column.dictionary.len());
    for cell in &column.dictionary {
        if cell.is_empty() {
            mapped.push(f32::NAN);
            continue;
        }
        let slot = match boolean_token(cell) {
            Some(true) => &mut true_token,
            Some(false) => &mut false_token,
            None => {
                return Err(invalid(format!(
                    "column {name:?} is boolean but holds {cell:?}; use categorical"
                )));
            }
        };
        match slot {
            Some(existing) if existing != cell => {
                return Err(invalid(format!(
                    "column {name:?} is boolean but spells one value two ways ({existing:?}, {cell:?}); use categorical"
                )));
            }
            _ => *slot = Some(cell.clone()),
        }
        mapped.push(if boolean_token(cell) == Some(true) {
            1.0
        } else {
            0.0
        });
    }
    Ok(ColumnValues::Boolean {
        values: column.ids.iter().map(|&id| mapped[id as usize]).collect(),
        true_token: true_token.unwrap_or_else(|| "true".to_string()),
        false_token: false_token.unwrap_or_else(|| "false".to_string()),
    })
}

/// A short, bounded listing of names for error messages.
pub(super) fn list(names: &[String]) -> String {
    const SHOWN: usize = 12;
    let mut shown: Vec<String> = names
        .iter()
        .take(SHOWN)
        .map(|n| format!("{:?}", n.chars().take(40).collect::<String>()))
        .collect();
    if names.len() > SHOWN {
        shown.push(format!("… {} more", names.len() - SHOWN));
    }
    shown.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ingest(csv: &str) -> Result<TrainingTable, ModelError> {
        ingest_with(csv, &[], &HashMap::new())
    }

    fn ingest_with(
        csv: &str,
        drop: &[String],
        types: &HashMap<String, ColumnKind>,
    ) -> Result<TrainingTable, ModelError> {
        ingest_csv(
            csv.as_bytes(),
            &IngestOptions {
                delimiter: b',',
                label_column: "y",
                positive_label: "yes",
                drop_columns: drop,
                column_types: types,
                max_rows: 1000,
                max_columns: 1000,
            },
        )
    }

    fn message(result: Result<TrainingTable, ModelError>) -> String {
        match result {
            Err(ModelError::InvalidData(m)) => m,
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    #[test]
    fn parses_types_labels_and_blank_labels() {
        let table = ingest(
            "id,amount,flag,colour,y\r\n1,1.5,TRUE,red,yes\r\n2, ,FALSE,blue,no\r\n3,2,TRUE,,\r\n4,3,FALSE,red,no\r\n",
        )
        .unwrap();
        assert_eq!(table.rows_read, 4);
        assert_eq!(table.skipped_rows, 1);
        assert_eq!(table.labels, vec![1.0, 0.0, 0.0]);
        let kinds: Vec<_> = table.features.iter().map(|f| (f.name.as_str(), f.kind)).collect();
        assert_eq!(
            kinds,
            vec![
                ("id", ColumnKind::Numeric),
                ("amount", ColumnKind::Numeric),
                ("flag", ColumnKind::Boolean),
                ("colour", ColumnKind::Categorical)
            ]
        );
        match &table.features[1].values {
            ColumnValues::Numeric(v) => {
                assert_eq!(v[0], 1.5);
                assert!(v[1].is_nan());
                assert_eq!(v[2], 3.0);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn quoted_fields_and_other_delimiters() {
        let table = ingest_csv(
            b"a;y\n\"x;1\";yes\n\"he said \"\"hi\"\"\";no\n",
            &IngestOptions {
                delimiter: b';',
                label_column: "y",
                positive_label: "yes",
                drop_columns: &[],
                column_types: &HashMap::new(),
                max_rows: 10,
                max_columns: 1000,
            },
        )
        .unwrap();
        match &table.features[0].values {
            ColumnValues::Categorical { dictionary, .. } => {
                assert_eq!(dictionary, &vec!["x;1".to_string(), "he said \"hi\"".to_string()])
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(message(ingest("")).contains("empty"));
        assert!(message(ingest("a,y\n")).contains("no data rows"));
        assert!(message(ingest("a,b\n1,2\n")).contains("label column \"y\""));
        assert!(message(ingest("a,y\n1,no\n2,no\n")).contains("never occurs"));
        assert!(message(ingest("a,y\n1,yes\n2,yes\n")).contains("only one class"));
        assert!(message(ingest("a,y\n1,yes\n2,no,3\n")).contains("line 3"));
        assert!(message(ingest("a,a,y\n1,2,yes\n")).contains("more than once"));
        assert!(message(ingest("a,y\n1,\n")).contains("blank label"));
        assert!(message(ingest_with("a,y\n1,yes\n", &["nope".into()], &HashMap::new())).contains("nope"));
        assert!(
            message(ingest_with("a,y\n1,yes\n2,no\n", &["a".into()], &HashMap::new()))
                .contains("no feature columns")
        );
        let types = HashMap::from([("a".to_string(), ColumnKind::Boolean)]);
        assert!(message(ingest_with("a,y\nmaybe,yes\nno,no\n", &[], &types)).contains("\"maybe\""));
        let garbage = [
            0xffu8, 0xfe, b',', b'y', b'\n', 0x80, b',', b'y', b'e', b's', b'\n',
        ];
        let err = ingest_csv(
            &garbage,
            &IngestOptions {
                delimiter: b',',
                label_column: "y",
                positive_label: "yes",
                drop_columns: &[],
                column_types: &HashMap::new(),
                max_rows: 10,
                max_columns: 1000,
            },
        );
        assert!(message(err).contains("UTF-8"));
    }

    #[test]
    fn row_limit_is_enforced() {
        let err = ingest_csv(
            b"a,y\n1,yes\n2,no\n3,no\n",
            &IngestOptions {
                delimiter: b',',
                label_column: "y",
                positive_label: "yes",
                drop_columns: &[],
                column_types: &HashMap::new(),
                max_rows: 2,
                max_columns: 1000,
            },
        );
        assert!(message(err).contains("more than 2 data rows"));
    }
}
