//! The training recipe: a TrainSpec with defaults filled in and every value
//! checked. It is stored with the version, so a version says how it was made.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serval_proto::v1 as pb;
use serval_registry::validate_model_name;

use crate::dataset::ColumnKind;
use crate::error::ServalError;

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
        let learning_rate = hp.learning_rate.unwrap_or(1e-3);
        if !(learning_rate.is_finite() && learning_rate > 0.0 && learning_rate <= 10.0) {
            return Err(invalid(format!(
                "hyper_parameters.learning_rate: {learning_rate} is outside (0, 10]"
            )));
        }
        let batch_size = hp.batch_size.unwrap_or(32);
        if batch_size == 0 || batch_size > MAX_BATCH_SIZE {
            return Err(invalid(format!(
                "hyper_parameters.batch_size: {batch_size} is outside 1..={MAX_BATCH_SIZE}"
            )));
        }
        let epochs = hp.epochs.unwrap_or(10);
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
        Ok(Recipe {
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
        assert_eq!((recipe.batch_size, recipe.epochs, recipe.seed), (32, 10, 42));
        assert_eq!(recipe.learning_rate, 1e-3);
        assert_eq!(recipe.delimiter, ',');
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
