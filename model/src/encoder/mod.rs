//! Preprocessing fitted on the training split and stored with each version:
//! turns raw records (as in the CSV) into the dense rows the network reads.
//!
//! [`EncoderState`] is the stored document (this file); `fit` makes it
//! from a training table; [`Encoder`] (`encode`) is its runtime form with
//! lookup tables; `cells` reads one record value for a column. Training
//! rows and Predict records go through the same per-cell functions, so a
//! record scores exactly like its CSV row.

mod cells;
mod encode;
mod fit;
mod quantile;

use serde::{Deserialize, Serialize};

pub use encode::Encoder;
pub use quantile::normal_quantile;

use crate::dataset::ColumnKind;

/// Categories kept per column, most frequent first; rarer values fall into
/// the column's "other" bucket.
pub const MAX_CATEGORIES: usize = 256;

/// Skewness above which a non-negative numeric column is log1p-transformed
/// before standardising (counts and durations), for numeric columns with
/// too few distinct values for the quantile transform.
const LOG1P_SKEWNESS: f64 = 2.0;

/// Distinct training values a numeric column needs for the normal-quantile
/// transform; with fewer it is standardised.
const MIN_QUANTILE_DISTINCT: usize = 3;

/// Quantiles stored per numeric column at most, and at least (when many
/// numeric columns share [`QUANTILE_BUDGET`]).
const MAX_QUANTILES: usize = 256;
const MIN_QUANTILES: usize = 16;

/// Quantiles stored over all numeric columns at most, so a table with
/// thousands of numeric columns keeps a stored encoder of a few megabytes.
const QUANTILE_BUDGET: usize = 1 << 18;

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
    /// `Φ⁻¹(F(x or median))`, where `F` is the training values' empirical
    /// CDF read off evenly spaced `quantiles`: one value.
    Quantile { median: f64, quantiles: Vec<f64> },
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
            Transform::Numeric { .. } | Transform::Quantile { .. } => ColumnKind::Numeric,
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
            Transform::Quantile { median, quantiles } => {
                let x = x.unwrap_or(*median).clamp(-RAW_LIMIT, RAW_LIMIT);
                quantile::transform(x, quantiles) as f32
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
