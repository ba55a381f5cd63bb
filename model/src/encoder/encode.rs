//! [`Encoder`]: the runtime form of an [`EncoderState`], with each
//! column's offset in an encoded row and its category lookup table. Encodes
//! training tables, records given as [`Cell`]s, and checks encoded rows.

use std::collections::HashMap;

use super::cells::{canonical_number, record_boolean, record_number};
use super::{EncoderState, Transform};
use crate::Cell;
use crate::dataset::{ColumnValues, TrainingTable, boolean_token};
use crate::error::ModelError;

/// The runtime encoder: the stored state plus lookup tables.
#[derive(Debug, Clone)]
pub struct Encoder {
    state: EncoderState,
    /// Start of each column's values in a dense row.
    offsets: Vec<usize>,
    /// Category → slot, per categorical column (empty for others).
    category_slots: Vec<HashMap<String, usize>>,
    width: usize,
}

impl Encoder {
    pub fn new(state: EncoderState) -> Self {
        let mut offsets = Vec::with_capacity(state.columns.len());
        let mut width = 0;
        for column in &state.columns {
            offsets.push(width);
            width += column.transform.width();
        }
        let category_slots = state
            .columns
            .iter()
            .map(|column| match &column.transform {
                Transform::Categorical { categories } => categories
                    .iter()
                    .enumerate()
                    .map(|(slot, c)| (c.clone(), slot))
                    .collect(),
                _ => HashMap::new(),
            })
            .collect();
        Encoder {
            state,
            offsets,
            category_slots,
            width,
        }
    }

    pub fn state(&self) -> &EncoderState {
        &self.state
    }

    /// Width of an encoded row.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Start of column `index`'s values in an encoded row.
    pub fn offset(&self, index: usize) -> usize {
        self.offsets[index]
    }

    /// Each original column's name and its values' range in an encoded row,
    /// in order: how encoded attributions sum back to CSV columns.
    pub fn column_spans(&self) -> impl Iterator<Item = (&str, std::ops::Range<usize>)> {
        self.state
            .columns
            .iter()
            .zip(&self.offsets)
            .map(|(column, &start)| (column.name.as_str(), start..start + column.transform.width()))
    }

    /// The row explanations start from: the stored training mean, or for
    /// versions stored without one, the mean implied by the encoding itself
    /// (0 for standardised numbers, the true share for booleans, equal
    /// shares over a categorical column's slots).
    pub fn baseline(&self) -> Vec<f32> {
        if self.state.baseline.len() == self.width {
            return self.state.baseline.clone();
        }
        let mut baseline = Vec::with_capacity(self.width);
        for column in &self.state.columns {
            match &column.transform {
                // A standardised number's training mean is 0; a quantile-
                // transformed one's is 0 up to the asymmetry of its ties.
                Transform::Numeric { .. } | Transform::Quantile { .. } => baseline.push(0.0),
                Transform::Boolean { fill, .. } => baseline.push(*fill as f32),
                Transform::Categorical { categories } => {
                    let slots = categories.len() + 1;
                    baseline.extend(std::iter::repeat_n(1.0 / slots as f32, slots));
                }
            }
        }
        baseline
    }

    fn category_slot(&self, column: usize, value: &str) -> usize {
        let slots = &self.category_slots[column];
        slots.get(value.trim()).copied().unwrap_or(slots.len())
    }

    /// Encodes rows `rows` of a training table (whose columns this encoder
    /// was fitted on) into a row-major matrix.
    pub fn encode_table(&self, table: &TrainingTable, rows: &[usize]) -> Vec<f32> {
        // Per categorical column: dictionary id → slot, resolved once.
        let dictionary_slots: Vec<Vec<usize>> = table
            .features
            .iter()
            .enumerate()
            .map(|(c, column)| match &column.values {
                ColumnValues::Categorical { dictionary, .. } => dictionary
                    .iter()
                    .map(|value| self.category_slot(c, value))
                    .collect(),
                _ => Vec::new(),
            })
            .collect();
        let mut out = vec![0f32; rows.len() * self.width];
        for (r, &row) in rows.iter().enumerate() {
            let dense = &mut out[r * self.width..(r + 1) * self.width];
            for (c, column) in table.features.iter().enumerate() {
                let transform = &self.state.columns[c].transform;
                let offset = self.offsets[c];
                match &column.values {
                    ColumnValues::Numeric(values) => {
                        let x = values[row];
                        dense[offset] = transform.numeric((!x.is_nan()).then_some(x));
                    }
                    ColumnValues::Categorical { ids, .. } => {
                        dense[offset + dictionary_slots[c][ids[row] as usize]] = 1.0;
                    }
                    ColumnValues::Boolean { values, .. } => {
                        let x = values[row];
                        dense[offset] = transform.boolean((!x.is_nan()).then_some(x == 1.0));
                    }
                }
            }
        }
        out
    }

    /// Names of the columns a record must carry, in the order
    /// [`Encoder::encode_cells`] takes their cells.
    pub fn column_names(&self) -> impl ExactSizeIterator<Item = &str> {
        self.state.columns.iter().map(|column| column.name.as_str())
    }

    /// Appends the encoding of one record to `out`: `cells` holds its value
    /// of each column in [`Encoder::column_names`] order. `record` is the
    /// record's index in the caller's request, for the error, which names
    /// the column too; on error `out` is left as it was.
    pub fn encode_cells(
        &self,
        record: usize,
        cells: &[Cell<'_>],
        out: &mut Vec<f32>,
    ) -> Result<(), ModelError> {
        if cells.len() != self.state.columns.len() {
            return Err(ModelError::ShapeMismatch(format!(
                "{} cells for an encoder of {} columns",
                cells.len(),
                self.state.columns.len()
            )));
        }
        let start = out.len();
        out.resize(start + self.width, 0.0);
        for (c, (column, &cell)) in self.state.columns.iter().zip(cells).enumerate() {
            let slot = start + self.offsets[c];
            let encoded = match &column.transform {
                Transform::Numeric { .. } | Transform::Quantile { .. } => record_number(cell).map(|x| {
                    out[slot] = column.transform.numeric(x);
                }),
                Transform::Boolean {
                    true_token,
                    false_token,
                    ..
                } => record_boolean(cell, true_token, false_token).map(|x| {
                    out[slot] = column.transform.boolean(x);
                }),
                Transform::Categorical { categories } => {
                    let index = match cell {
                        Cell::Text(s) => Ok(self.category_slot(c, s)),
                        Cell::Missing => Ok(self.category_slot(c, "")),
                        Cell::Number(x) if !x.is_finite() => Err(format!("{x} is not a finite number")),
                        Cell::Number(x) => Ok(self.category_slot(c, &canonical_number(x))),
                        Cell::Bool(b) => Ok(categories
                            .iter()
                            .position(|category| boolean_token(category) == Some(b))
                            .unwrap_or(categories.len())),
                    };
                    index.map(|index| out[slot + index] = 1.0)
                }
            };
            if let Err(reason) = encoded {
                out.truncate(start);
                return Err(ModelError::InvalidCell {
                    record,
                    column: column.name.clone(),
                    reason,
                });
            }
        }
        Ok(())
    }

    /// Checks already-encoded row number `row` of a request.
    pub fn check_dense(&self, row: usize, values: &[f32]) -> Result<(), ModelError> {
        let reason = if values.len() != self.width {
            format!("has {} values, the model expects {}", values.len(), self.width)
        } else if let Some(i) = values.iter().position(|x| !x.is_finite()) {
            format!("value {i} is {}, not a finite number", values[i])
        } else {
            return Ok(());
        };
        Err(ModelError::InvalidDenseRow { row, reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoder::ColumnState;

    /// amount (numeric, median 10, mean 10, std 5), colour (red, blue,
    /// other), member (Yes/No, fill 0.25).
    fn encoder() -> Encoder {
        Encoder::new(EncoderState {
            columns: vec![
                ColumnState {
                    name: "amount".into(),
                    transform: Transform::Numeric {
                        median: 10.0,
                        log1p: false,
                        mean: 10.0,
                        std: 5.0,
                    },
                },
                ColumnState {
                    name: "colour".into(),
                    transform: Transform::Categorical {
                        categories: vec!["red".into(), "3".into(), "true".into()],
                    },
                },
                ColumnState {
                    name: "member".into(),
                    transform: Transform::Boolean {
                        true_token: "Yes".into(),
                        false_token: "No".into(),
                        fill: 0.25,
                    },
                },
            ],
            baseline: Vec::new(),
        })
    }

    fn encode(cells: &[Cell<'_>]) -> Result<Vec<f32>, ModelError> {
        let mut out = Vec::new();
        encoder().encode_cells(4, cells, &mut out).map(|()| out)
    }

    #[test]
    fn columns_are_laid_out_one_after_another() {
        let e = encoder();
        assert_eq!(e.width(), 1 + 4 + 1);
        let spans: Vec<(&str, std::ops::Range<usize>)> = e.column_spans().collect();
        assert_eq!(spans, [("amount", 0..1), ("colour", 1..5), ("member", 5..6)]);
        assert_eq!(
            e.column_names().collect::<Vec<_>>(),
            ["amount", "colour", "member"]
        );
        // Without a stored baseline: 0 for a standardised number, equal
        // shares over the one-hot slots, the boolean's fill.
        assert_eq!(e.baseline(), vec![0.0, 0.25, 0.25, 0.25, 0.25, 0.25]);
    }

    #[test]
    fn cells_encode_as_their_csv_text_would() {
        assert_eq!(
            encode(&[Cell::Number(20.0), Cell::Text(" red "), Cell::Text("yes")]).unwrap(),
            [2.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        );
        // Missing values: the median, the blank category ("other" here),
        // the boolean fill.
        assert_eq!(
            encode(&[Cell::Missing, Cell::Missing, Cell::Missing]).unwrap(),
            [0.0, 0.0, 0.0, 0.0, 1.0, 0.25]
        );
        // A whole number names the category its CSV spelling would; a bool
        // the category spelled as that boolean; an unseen value is "other".
        assert_eq!(
            encode(&[Cell::Text("5"), Cell::Number(3.0), Cell::Number(0.0)]).unwrap(),
            [-1.0, 0.0, 1.0, 0.0, 0.0, 0.0]
        );
        assert_eq!(
            encode(&[Cell::Number(10.0), Cell::Bool(true), Cell::Bool(false)]).unwrap()[1..5],
            [0.0, 0.0, 1.0, 0.0]
        );
        assert_eq!(
            encode(&[Cell::Number(10.0), Cell::Text("green"), Cell::Bool(true)]).unwrap()[1..5],
            [0.0, 0.0, 0.0, 1.0]
        );
    }

    #[test]
    fn a_bad_cell_names_record_and_column_and_leaves_the_output_as_it_was() {
        let e = encoder();
        let mut out = vec![7.0];
        let error = e
            .encode_cells(
                4,
                &[Cell::Number(1.0), Cell::Text("red"), Cell::Text("maybe")],
                &mut out,
            )
            .unwrap_err();
        assert_eq!(out, [7.0]);
        assert_eq!(
            error.to_string(),
            "records[4]: column \"member\": expected \"Yes\" or \"No\", got \"maybe\""
        );
        let error = encode(&[Cell::Number(f64::INFINITY), Cell::Missing, Cell::Missing]).unwrap_err();
        assert!(matches!(&error, ModelError::InvalidCell { record: 4, column, .. } if column == "amount"));
        let error = encode(&[Cell::Number(1.0), Cell::Number(f64::NAN), Cell::Missing]).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("column \"colour\": NaN is not a finite number"),
            "{error}"
        );
        assert!(matches!(
            encode(&[Cell::Missing]),
            Err(ModelError::ShapeMismatch(_))
        ));
    }

    #[test]
    fn dense_rows_must_have_the_width_and_be_finite() {
        let e = encoder();
        assert!(e.check_dense(0, &[0.0; 6]).is_ok());
        assert_eq!(
            e.check_dense(2, &[0.0; 5]).unwrap_err().to_string(),
            "dense_rows[2]: has 5 values, the model expects 6"
        );
        let mut row = [0.0; 6];
        row[3] = f32::NAN;
        assert_eq!(
            e.check_dense(0, &row).unwrap_err().to_string(),
            "dense_rows[0]: value 3 is NaN, not a finite number"
        );
    }
}
