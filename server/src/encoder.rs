//! Preprocessing fitted on the training split and stored with each version:
//! turns raw records (as in the CSV) into the dense rows the network reads.
//!
//! [`EncoderState`] is the stored document; [`Encoder`] is its runtime form
//! with lookup tables. Training rows and Predict records go through the same
//! per-cell functions, so a record scores exactly like its CSV row.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serval_proto::v1 as pb;

use crate::dataset::{
    ColumnKind, ColumnValues, FeatureColumn, NumericCell, TrainingTable, boolean_token, parse_number,
};

/// Categories kept per column, most frequent first; rarer values fall into
/// the column's "other" bucket.
pub const MAX_CATEGORIES: usize = 256;

/// Skewness above which a non-negative numeric column is log1p-transformed
/// before standardising (counts and durations).
const LOG1P_SKEWNESS: f64 = 2.0;

/// Raw numbers are clipped to ±1e15 before fitting and encoding, so sums of
/// squares stay finite and the fitted statistics are storable.
const RAW_LIMIT: f64 = 1e15;

/// Standardised values are clipped to ±1e6: far outside anything seen in
/// training, and never infinite in the network's f32 arithmetic.
const ENCODED_LIMIT: f64 = 1e6;

/// The fitted preprocessing, as stored in the registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncoderState {
    pub columns: Vec<ColumnState>,
    /// The training split's mean encoded row: the baseline explanations
    /// integrate from. An aggregate, never a row. Empty in versions stored
    /// before it was kept (see [`Encoder::baseline`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub baseline: Vec<f32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnState {
    pub name: String,
    #[serde(flatten)]
    pub transform: Transform,
}

/// How one column becomes encoded values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Transform {
    /// `((log1p?)(x or median) - mean) / std`: one value.
    Numeric {
        median: f64,
        log1p: bool,
        mean: f64,
        std: f64,
    },
    /// One-hot over `categories`, plus a last "other" slot.
    Categorical { categories: Vec<String> },
    /// 1 for true, 0 for false, `fill` (the training share of true) when
    /// missing: one value.
    Boolean {
        true_token: String,
        false_token: String,
        fill: f64,
    },
}

impl Transform {
    pub fn kind(&self) -> ColumnKind {
        match self {
            Transform::Numeric { .. } => ColumnKind::Numeric,
            Transform::Categorical { .. } => ColumnKind::Categorical,
            Transform::Boolean { .. } => ColumnKind::Boolean,
        }
    }

    /// Encoded values this column contributes.
    pub fn width(&self) -> usize {
        match self {
            Transform::Categorical { categories } => categories.len() + 1,
            _ => 1,
        }
    }

    fn numeric(&self, x: Option<f64>) -> f32 {
        match self {
            Transform::Numeric {
                median,
                log1p,
                mean,
                std,
            } => {
                let x = x.unwrap_or(*median).clamp(-RAW_LIMIT, RAW_LIMIT);
                let x = if *log1p { x.max(0.0).ln_1p() } else { x };
                ((x - mean) / std).clamp(-ENCODED_LIMIT, ENCODED_LIMIT) as f32
            }
            _ => unreachable!("numeric() on a non-numeric column"),
        }
    }

    fn boolean(&self, x: Option<bool>) -> f32 {
        match self {
            Transform::Boolean { fill, .. } => match x {
                Some(true) => 1.0,
                Some(false) => 0.0,
                None => *fill as f32,
            },
            _ => unreachable!("boolean() on a non-boolean column"),
        }
    }
}

impl EncoderState {
    /// Fits every feature column of `table` on the rows in `train`.
    pub fn fit(table: &TrainingTable, train: &[usize]) -> Self {
        let columns = table
            .features
            .iter()
            .map(|column| ColumnState {
                name: column.name.clone(),
                transform: fit_column(column, train),
            })
            .collect();
        EncoderState {
            columns,
            baseline: Vec::new(),
        }
    }
}

fn fit_column(column: &FeatureColumn, train: &[usize]) -> Transform {
    match &column.values {
        ColumnValues::Numeric(values) => {
            let mut present: Vec<f64> = train
                .iter()
                .map(|&i| values[i])
                .filter(|x| !x.is_nan())
                .map(|x| x.clamp(-RAW_LIMIT, RAW_LIMIT))
                .collect();
            present.sort_by(f64::total_cmp);
            let median = if present.is_empty() {
                0.0
            } else if present.len() % 2 == 1 {
                present[present.len() / 2]
            } else {
                (present[present.len() / 2 - 1] + present[present.len() / 2]) / 2.0
            };
            let log1p = present.first().is_some_and(|&min| min >= 0.0) && skewness(&present) > LOG1P_SKEWNESS;
            let transformed: Vec<f64> = train
                .iter()
                .map(|&i| {
                    let x = if values[i].is_nan() {
                        median
                    } else {
                        values[i].clamp(-RAW_LIMIT, RAW_LIMIT)
                    };
                    if log1p { x.ln_1p() } else { x }
                })
                .collect();
            let (mean, std) = mean_std(&transformed);
            Transform::Numeric {
                median,
                log1p,
                mean,
                std: if std > 1e-9 { std } else { 1.0 },
            }
        }
        ColumnValues::Categorical { ids, dictionary } => {
            let mut counts = vec![0usize; dictionary.len()];
            for &i in train {
                counts[ids[i] as usize] += 1;
            }
            let mut order: Vec<usize> = (0..dictionary.len()).filter(|&id| counts[id] > 0).collect();
            order.sort_by(|&a, &b| {
                counts[b]
                    .cmp(&counts[a])
                    .then_with(|| dictionary[a].cmp(&dictionary[b]))
            });
            order.truncate(MAX_CATEGORIES);
            Transform::Categorical {
                categories: order.into_iter().map(|id| dictionary[id].clone()).collect(),
            }
        }
        ColumnValues::Boolean {
            values,
            true_token,
            false_token,
        } => {
            let present: Vec<f64> = train
                .iter()
                .map(|&i| values[i] as f64)
                .filter(|x| !x.is_nan())
                .collect();
            let fill = if present.is_empty() {
                0.5
            } else {
                present.iter().sum::<f64>() / present.len() as f64
            };
            Transform::Boolean {
                true_token: true_token.clone(),
                false_token: false_token.clone(),
                fill,
            }
        }
    }
}

fn mean_std(values: &[f64]) -> (f64, f64) {
    if values.is_empty() {
        return (0.0, 1.0);
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

fn skewness(values: &[f64]) -> f64 {
    let (mean, std) = mean_std(values);
    if std < 1e-12 {
        return 0.0;
    }
    values.iter().map(|x| ((x - mean) / std).powi(3)).sum::<f64>() / values.len() as f64
}

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
                Transform::Numeric { .. } => baseline.push(0.0),
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

    /// Appends the encoding of one record to `out`. Fields the model does not
    /// use are ignored; the error names the offending column.
    pub fn encode_record(
        &self,
        fields: &HashMap<String, pb::Value>,
        out: &mut Vec<f32>,
    ) -> Result<(), String> {
        let start = out.len();
        out.resize(start + self.width, 0.0);
        for (c, column) in self.state.columns.iter().enumerate() {
            let name = &column.name;
            let value = fields
                .get(name)
                .ok_or_else(|| format!("missing column {name:?}"))?
                .kind
                .as_ref()
                .ok_or_else(|| {
                    format!("column {name:?} has no value (set a number, string, bool or null)")
                })?;
            let slot = start + self.offsets[c];
            match &column.transform {
                Transform::Numeric { .. } => {
                    out[slot] = column.transform.numeric(record_number(name, value)?);
                }
                Transform::Boolean {
                    true_token,
                    false_token,
                    ..
                } => {
                    let x = record_boolean(name, value, true_token, false_token)?;
                    out[slot] = column.transform.boolean(x);
                }
                Transform::Categorical { categories } => {
                    let index = match value {
                        pb::value::Kind::StringValue(s) => self.category_slot(c, s),
                        pb::value::Kind::NullValue(_) => self.category_slot(c, ""),
                        pb::value::Kind::NumberValue(x) => {
                            if !x.is_finite() {
                                return Err(format!("column {name:?}: {x} is not a finite number"));
                            }
                            self.category_slot(c, &canonical_number(*x))
                        }
                        pb::value::Kind::BoolValue(b) => categories
                            .iter()
                            .position(|category| boolean_token(category) == Some(*b))
                            .unwrap_or(categories.len()),
                    };
                    out[slot + index] = 1.0;
                }
            }
        }
        Ok(())
    }

    /// Checks an already-encoded row.
    pub fn check_dense(&self, values: &[f32]) -> Result<(), String> {
        if values.len() != self.width {
            return Err(format!(
                "has {} values, the model expects {}",
                values.len(),
                self.width
            ));
        }
        if let Some(i) = values.iter().position(|x| !x.is_finite()) {
            return Err(format!("value {i} is {}, not a finite number", values[i]));
        }
        Ok(())
    }
}

/// Formats a number the way a CSV usually spells it: integers without a
/// fractional part.
fn canonical_number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

fn record_number(name: &str, value: &pb::value::Kind) -> Result<Option<f64>, String> {
    match value {
        pb::value::Kind::NumberValue(x) if x.is_finite() => Ok(Some(*x)),
        pb::value::Kind::NumberValue(x) => Err(format!("column {name:?}: {x} is not a finite number")),
        pb::value::Kind::StringValue(s) => match parse_number(s) {
            NumericCell::Value(x) => Ok(Some(x)),
            NumericCell::Missing => Ok(None),
            NumericCell::Unparsable => Err(format!(
                "column {name:?}: expected a number, got {:?}",
                truncate(s)
            )),
        },
        pb::value::Kind::NullValue(_) => Ok(None),
        pb::value::Kind::BoolValue(_) => Err(format!("column {name:?}: expected a number, got a bool")),
    }
}

fn record_boolean(
    name: &str,
    value: &pb::value::Kind,
    true_token: &str,
    false_token: &str,
) -> Result<Option<bool>, String> {
    let from_text = |s: &str| -> Result<Option<bool>, String> {
        let s = s.trim();
        if s.is_empty() {
            Ok(None)
        } else if s.eq_ignore_ascii_case(true_token) {
            Ok(Some(true))
        } else if s.eq_ignore_ascii_case(false_token) {
            Ok(Some(false))
        } else {
            boolean_token(s).map(Some).ok_or_else(|| {
                format!(
                    "column {name:?}: expected {true_token:?} or {false_token:?}, got {:?}",
                    truncate(s)
                )
            })
        }
    };
    match value {
        pb::value::Kind::BoolValue(b) => Ok(Some(*b)),
        pb::value::Kind::NullValue(_) => Ok(None),
        pb::value::Kind::StringValue(s) => from_text(s),
        pb::value::Kind::NumberValue(x) if *x == 1.0 => Ok(Some(true)),
        pb::value::Kind::NumberValue(x) if *x == 0.0 => Ok(Some(false)),
        pb::value::Kind::NumberValue(x) => {
            Err(format!("column {name:?}: expected a boolean (or 1/0), got {x}"))
        }
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}
