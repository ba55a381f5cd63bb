//! The training recipe: a TrainSpec with defaults filled in and every value
//! checked. It is stored with the version, so a version says how it was made.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serval_proto::v1 as pb;
use serval_registry::validate_model_name;

use super::trainer::LearningRateSchedule;
use crate::dataset::ColumnKind;
use crate::error::ServalError;
pub use crate::metrics::ThresholdObjective;

/// Server-side bounds on what a training call may ask for.
#[derive(Debug, Clone)]
pub struct TrainingLimits {
    pub max_epochs: u32,
    pub max_rows: usize,
    pub max_upload_bytes: usize,
}

impl Default for TrainingLimits {
    fn default() -> Self {
        TrainingLimits {
            max_epochs: 1000,
            max_rows: 5_000_000,
            max_upload_bytes: 2 << 30,
        }
    }
}

const MAX_HIDDEN_LAYERS: usize = 8;
const MAX_LAYER_WIDTH: u32 = 4096;
const MAX_BATCH_SIZE: u32 = 65_536;

/// How a version is trained, defaults resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    pub label_column: String,
    pub positive_label: String,
    pub delimiter: char,
    pub drop_columns: Vec<String>,
    pub column_types: BTreeMap<String, ColumnKind>,
    pub hidden_layers: Vec<usize>,
    pub learning_rate: f64,
    pub batch_size: usize,
    pub epochs: usize,
    pub validation_fraction: f64,
    pub seed: u64,
    #[serde(default)]
    pub patience: usize,
    #[serde(default)]
    pub l2: f64,
    #[serde(default)]
    pub dropout: f64,
    #[serde(default)]
    pub class_weighting: bool,
    #[serde(default)]
    pub learning_rate_schedule: LearningRateSchedule,
    #[serde(default)]
    pub threshold: ThresholdObjective,
    /// Keep categorical columns that look like identifiers instead of
    /// refusing them (see `dataset::refuse_identifier_columns`).
    #[serde(default)]
    pub allow_identifier_columns: bool,
}

/// Defaults chosen by `cargo bench -p serval-server --bench train` over the
/// three example datasets (no per-dataset tuning); see README "Training".
/// Batches of 128 at a rate of 0.003 reach the same or better validation
/// AUC than the classic 32 at 0.001 in a quarter of the steps; early
/// stopping ends most runs well before the 20 epochs.
pub mod defaults {
    pub const LEARNING_RATE: f64 = 3e-3;
    pub const BATCH_SIZE: u32 = 128;
    pub const EPOCHS: u32 = 20;
    pub const PATIENCE: u32 = 3;
    pub const L2: f64 = 0.0;
    pub const DROPOUT: f64 = 0.0;
    pub const CLASS_WEIGHTING: bool = false;
}

fn invalid(message: String) -> ServalError {
    ServalError::InvalidArgument(message)
}

impl Recipe {
    /// Checks a spec and fills in the defaults.
    pub fn from_spec(spec: &pb::TrainSpec, limits: &TrainingLimits) -> Result<Self, ServalError> {
        validate_model_name(&spec.model).map_err(|e| invalid(format!("model: {e}")))?;
        if spec.label_column.trim().is_empty() {
            return Err(invalid("label_column: must name the label column".into()));
        }
        if spec.positive_label.trim().is_empty() {
            return Err(invalid(
                "positive_label: must name the positive class value".into(),
            ));
        }
        let delimiter = match spec.delimiter.chars().collect::<Vec<_>>().as_slice() {
            [] => ',',
            [c] if c.is_ascii() && !matches!(c, '"' | '\n' | '\r') => *c,
            _ => {
                return Err(invalid(format!(
                    "delimiter: {:?} is not one ASCII character other than a quote or newline",
                    spec.delimiter
                )));
            }
        };
        let mut column_types = BTreeMap::new();
        for (name, &raw) in &spec.column_types {
            let kind = match pb::ColumnType::try_from(raw) {
                Ok(pb::ColumnType::Numeric) => ColumnKind::Numeric,
                Ok(pb::ColumnType::Categorical) => ColumnKind::Categorical,
                Ok(pb::ColumnType::Boolean) => ColumnKind::Boolean,
                _ => {
                    return Err(invalid(format!(
                        "column_types[{name:?}]: unknown column type {raw}"
                    )));
                }
            };
            column_types.insert(name.trim().to_string(), kind);
        }

        let hp = spec.hyper_parameters.clone().unwrap_or_default();
        let hidden_layers: Vec<usize> = if hp.hidden_layers.is_empty() {
            vec![128, 64]
        } else {
            if hp.hidden_layers.len() > MAX_HIDDEN_LAYERS {
                return Err(invalid(format!(
                    "hyper_parameters.hidden_layers: at most {MAX_HIDDEN_LAYERS} layers"
                )));
            }
            if let Some(w) = hp.hidden_layers.iter().find(|&&w| w == 0 || w > MAX_LAYER_WIDTH) {
                return Err(invalid(format!(
                    "hyper_parameters.hidden_layers: width {w} is outside 1..={MAX_LAYER_WIDTH}"
                )));
            }
            hp.hidden_layers.iter().map(|&w| w as usize).collect()
        };
        let learning_rate = hp.learning_rate.unwrap_or(defaults::LEARNING_RATE);
        if !(learning_rate.is_finite() && learning_rate > 0.0 && learning_rate <= 10.0) {
            return Err(invalid(format!(
                "hyper_parameters.learning_rate: {learning_rate} is outside (0, 10]"
            )));
        }
        let batch_size = hp.batch_size.unwrap_or(defaults::BATCH_SIZE);
        if batch_size == 0 || batch_size > MAX_BATCH_SIZE {
            return Err(invalid(format!(
                "hyper_parameters.batch_size: {batch_size} is outside 1..={MAX_BATCH_SIZE}"
            )));
        }
        let epochs = hp.epochs.unwrap_or(defaults::EPOCHS);
        if epochs == 0 || epochs > limits.max_epochs {
            return Err(invalid(format!(
                "hyper_parameters.epochs: {epochs} is outside 1..={} (the server's limit)",
                limits.max_epochs
            )));
        }
        let validation_fraction = hp.validation_fraction.unwrap_or(0.2);
        if !(validation_fraction > 0.0 && validation_fraction < 1.0) {
            return Err(invalid(format!(
                "hyper_parameters.validation_fraction: {validation_fraction} is outside (0, 1)"
            )));
        }
        let patience = hp.patience.unwrap_or(defaults::PATIENCE) as usize;
        let l2 = hp.l2.unwrap_or(defaults::L2);
        if !(l2.is_finite() && (0.0..=1.0).contains(&l2)) {
            return Err(invalid(format!("hyper_parameters.l2: {l2} is outside [0, 1]")));
        }
        let dropout = hp.dropout.unwrap_or(defaults::DROPOUT);
        if !(dropout.is_finite() && (0.0..0.95).contains(&dropout)) {
            return Err(invalid(format!(
                "hyper_parameters.dropout: {dropout} is outside [0, 0.95)"
            )));
        }
        let learning_rate_schedule = match pb::LearningRateSchedule::try_from(hp.learning_rate_schedule) {
            Ok(pb::LearningRateSchedule::Constant) => LearningRateSchedule::Constant,
            Ok(pb::LearningRateSchedule::Cosine | pb::LearningRateSchedule::Unspecified) => {
                LearningRateSchedule::default()
            }
            Err(_) => {
                return Err(invalid(format!(
                    "hyper_parameters.learning_rate_schedule: unknown value {}",
                    hp.learning_rate_schedule
                )));
            }
        };
        let target = |name: &str, value: f64| {
            if value.is_finite() && value > 0.0 && value <= 1.0 {
                Ok(value)
            } else {
                Err(invalid(format!(
                    "hyper_parameters.{name}: {value} is outside (0, 1]"
                )))
            }
        };
        let threshold = match (hp.target_precision, hp.target_recall) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "hyper_parameters: set target_precision or target_recall, not both".into(),
                ));
            }
            (Some(p), None) => ThresholdObjective::Precision(target("target_precision", p)?),
            (None, Some(r)) => ThresholdObjective::Recall(target("target_recall", r)?),
            (None, None) => ThresholdObjective::MaxF1,
        };
        Ok(Recipe {
            patience,
            l2,
            dropout,
            class_weighting: hp.class_weighting.unwrap_or(defaults::CLASS_WEIGHTING),
            learning_rate_schedule,
            threshold,
            label_column: spec.label_column.trim().to_string(),
            positive_label: spec.positive_label.trim().to_string(),
            delimiter,
            drop_columns: spec.drop_columns.iter().map(|c| c.trim().to_string()).collect(),
            column_types,
            hidden_layers,
            learning_rate,
            batch_size: batch_size as usize,
            epochs: epochs as usize,
            validation_fraction,
            seed: spec.seed.unwrap_or(42),
            allow_identifier_columns: spec.allow_identifier_columns,
        })
    }

    /// The hyper-parameters as the protocol reports them.
    pub fn hyper_parameters(&self) -> pb::HyperParameters {
        pb::HyperParameters {
            hidden_layers: self.hidden_layers.iter().map(|&w| w as u32).collect(),
            learning_rate: Some(self.learning_rate),
            batch_size: Some(self.batch_size as u32),
            epochs: Some(self.epochs as u32),
            validation_fraction: Some(self.validation_fraction),
            patience: Some(self.patience as u32),
            l2: Some(self.l2),
            dropout: Some(self.dropout),
            class_weighting: Some(self.class_weighting),
            learning_rate_schedule: match self.learning_rate_schedule {
                LearningRateSchedule::Constant => pb::LearningRateSchedule::Constant,
                LearningRateSchedule::Cosine => pb::LearningRateSchedule::Cosine,
            } as i32,
            target_precision: match self.threshold {
                ThresholdObjective::Precision(p) => Some(p),
                _ => None,
            },
            target_recall: match self.threshold {
                ThresholdObjective::Recall(r) => Some(r),
                _ => None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> pb::TrainSpec {
        pb::TrainSpec {
            model: "m".into(),
            label_column: "y".into(),
            positive_label: "1".into(),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_are_the_classic_network() {
        let recipe = Recipe::from_spec(&spec(), &TrainingLimits::default()).unwrap();
        assert_eq!(recipe.hidden_layers, vec![128, 64]);
        assert_eq!((recipe.batch_size, recipe.epochs, recipe.seed), (128, 20, 42));
        assert_eq!((recipe.learning_rate, recipe.patience), (3e-3, 3));
        assert_eq!(recipe.delimiter, ',');
        assert!(!recipe.allow_identifier_columns);
    }

    #[test]
    fn the_identifier_flag_is_carried_and_old_recipes_read_as_refusing() {
        let spec = pb::TrainSpec {
            allow_identifier_columns: true,
            ..spec()
        };
        let recipe = Recipe::from_spec(&spec, &TrainingLimits::default()).unwrap();
        assert!(recipe.allow_identifier_columns);
        let mut stored = serde_json::to_value(&recipe).unwrap();
        stored.as_object_mut().unwrap().remove("allow_identifier_columns");
        let read: Recipe = serde_json::from_value(stored).unwrap();
        assert!(!read.allow_identifier_columns);
    }

    #[test]
    fn bad_values_are_named() {
        let limits = TrainingLimits::default();
        type Mutation = Box<dyn Fn(&mut pb::TrainSpec)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (Box::new(|s| s.model = "../x".into()), "model"),
            (Box::new(|s| s.label_column = " ".into()), "label_column"),
            (Box::new(|s| s.positive_label = "".into()), "positive_label"),
            (Box::new(|s| s.delimiter = ";;".into()), "delimiter"),
            (
                Box::new(|s| {
                    s.hyper_parameters = Some(pb::HyperParameters {
                        epochs: Some(0),
                        ..Default::default()
                    })
                }),
                "epochs",
            ),
            (
                Box::new(|s| {
                    s.hyper_parameters = Some(pb::HyperParameters {
                        batch_size: Some(0),
                        ..Default::default()
                    })
                }),
                "batch_size",
            ),
            (
                Box::new(|s| {
                    s.hyper_parameters = Some(pb::HyperParameters {
                        batch_size: Some(1_000_000_000),
                        ..Default::default()
                    })
                }),
                "batch_size",
            ),
            (
                Box::new(|s| {
                    s.hyper_parameters = Some(pb::HyperParameters {
                        learning_rate: Some(f64::NAN),
                        ..Default::default()
                    })
                }),
                "learning_rate",
            ),
            (
                Box::new(|s| {
                    s.hyper_parameters = Some(pb::HyperParameters {
                        hidden_layers: vec![0],
                        ..Default::default()
                    })
                }),
                "hidden_layers",
            ),
            (
                Box::new(|s| {
                    s.hyper_parameters = Some(pb::HyperParameters {
                        validation_fraction: Some(1.0),
                        ..Default::default()
                    })
                }),
                "validation_fraction",
            ),
            (
                Box::new(|s| {
                    s.column_types.insert("a".into(), 99);
                }),
                "column_types",
            ),
        ];
        for (mutate, field) in cases {
            let mut s = spec();
            mutate(&mut s);
            let err = Recipe::from_spec(&s, &limits).unwrap_err();
            assert!(err.to_string().contains(field), "{field}: {err}");
        }
    }
}
