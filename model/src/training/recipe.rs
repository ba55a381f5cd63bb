//! The training recipe: every setting of a training run, defaults filled in
//! and each value checked. It is stored with the version, so a version says
//! how it was made. Settings are named as the protocol names them
//! (`hyper_parameters.epochs`), so an error points at what to change.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::device::Device;
use super::trainer::LearningRateSchedule;
use crate::dataset::{ColumnKind, DataFormat, IngestOptions};
use crate::error::ModelError;
pub use crate::evaluation::ThresholdObjective;

/// Bounds a server puts on what one training run may ask for, and where
/// its arithmetic runs.
#[derive(Debug, Clone)]
pub struct TrainingLimits {
    pub max_epochs: u32,
    /// Data rows at most (header excluded).
    pub max_rows: usize,
    /// Columns in the data at most (label and dropped columns included).
    pub max_columns: usize,
    /// Bytes a training may hold of what it builds from the data; data
    /// whose in-memory form would need more is streamed within it.
    pub memory: u64,
    /// Where the training loop's matrix products run.
    pub device: Device,
}

impl Default for TrainingLimits {
    fn default() -> Self {
        TrainingLimits {
            max_epochs: 1000,
            max_rows: usize::MAX,
            max_columns: 32_768,
            memory: DEFAULT_TRAINING_MEMORY,
            device: Device::Cpu,
        }
    }
}

/// The default training memory budget: 1 GiB.
pub const DEFAULT_TRAINING_MEMORY: u64 = 1 << 30;

pub const MAX_HIDDEN_LAYERS: usize = 8;
pub const MAX_LAYER_WIDTH: usize = 4096;
pub const MAX_BATCH_SIZE: usize = 65_536;

/// How a version is trained, defaults resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    pub label_column: String,
    pub positive_label: String,
    /// The training data's file format.
    #[serde(default)]
    pub format: DataFormat,
    /// The CSV's field delimiter (CSV only).
    pub delimiter: char,
    pub drop_columns: Vec<String>,
    pub column_types: BTreeMap<String, ColumnKind>,
    /// Hidden widths of each member of the ensemble (of the one network,
    /// for versions trained before ensembles).
    pub hidden_layers: Vec<usize>,
    pub learning_rate: f64,
    pub batch_size: usize,
    pub epochs: usize,
    /// The share of rows each member holds out: the ensemble has
    /// [`Recipe::members`] members, one per fold of this size. (Versions
    /// trained before ensembles held this share out as one validation
    /// split.)
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
    /// A column (such as a user id) whose value decides each row's fold,
    /// so all rows with one value stay on one side of every split; it is
    /// not an input. Empty: rows are folded one by one, stratified.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub split_key: String,
}

/// The same defaults for every dataset, chosen by held-out AUC on three
/// 80/20 splits (seeds 42, 1, 2) of each example dataset against LightGBM
/// and CatBoost (`scripts/bench-quality.sh`; docs/user-guide.md
/// "Quality"): four cross-fitted members of 64-32 units learn more than one
/// wide network, and with dropout 0.2 they need about 20 epochs of batches
/// of 256 at a rate of 0.01, early-stopped on out-of-fold AUC.
pub mod defaults {
    pub const HIDDEN_LAYERS: [usize; 2] = [64, 32];
    /// Four members.
    pub const VALIDATION_FRACTION: f64 = 0.25;
    pub const SEED: u64 = 42;
    pub const LEARNING_RATE: f64 = 0.01;
    pub const BATCH_SIZE: u32 = 256;
    pub const EPOCHS: u32 = 20;
    pub const PATIENCE: u32 = 6;
    pub const L2: f64 = 0.0;
    pub const DROPOUT: f64 = 0.2;
    pub const CLASS_WEIGHTING: bool = false;
}

/// Members of an ensemble at most and at least.
pub const MAX_MEMBERS: usize = 8;
pub const MIN_MEMBERS: usize = 2;

fn invalid(message: String) -> ModelError {
    ModelError::InvalidSetting(message)
}

impl Recipe {
    /// How the recipe's data is read: its delimiter, label, dropped
    /// columns and given column types (`column_types`, the recipe's as a
    /// map), within `limits`.
    pub fn ingest_options<'a>(
        &'a self,
        column_types: &'a std::collections::HashMap<String, ColumnKind>,
        limits: &TrainingLimits,
    ) -> IngestOptions<'a> {
        IngestOptions {
            delimiter: self.delimiter as u8,
            label_column: &self.label_column,
            positive_label: &self.positive_label,
            drop_columns: &self.drop_columns,
            column_types,
            max_rows: limits.max_rows,
            max_columns: limits.max_columns,
        }
    }

    /// The default recipe for a label column and its positive value.
    pub fn new(label_column: &str, positive_label: &str) -> Self {
        Recipe {
            label_column: label_column.trim().to_string(),
            positive_label: positive_label.trim().to_string(),
            format: DataFormat::Csv,
            delimiter: ',',
            drop_columns: Vec::new(),
            column_types: BTreeMap::new(),
            hidden_layers: defaults::HIDDEN_LAYERS.to_vec(),
            learning_rate: defaults::LEARNING_RATE,
            batch_size: defaults::BATCH_SIZE as usize,
            epochs: defaults::EPOCHS as usize,
            validation_fraction: defaults::VALIDATION_FRACTION,
            seed: defaults::SEED,
            patience: defaults::PATIENCE as usize,
            l2: defaults::L2,
            dropout: defaults::DROPOUT,
            class_weighting: defaults::CLASS_WEIGHTING,
            learning_rate_schedule: LearningRateSchedule::default(),
            threshold: ThresholdObjective::default(),
            allow_identifier_columns: false,
            split_key: String::new(),
        }
    }

    /// Members of the ensemble: one per fold of `validation_fraction` of
    /// the rows, from [`MIN_MEMBERS`] to [`MAX_MEMBERS`].
    pub fn members(&self) -> usize {
        ((1.0 / self.validation_fraction).round() as usize).clamp(MIN_MEMBERS, MAX_MEMBERS)
    }

    /// Checks every setting against its range and `limits`; the error
    /// names the setting.
    pub fn check(&self, limits: &TrainingLimits) -> Result<(), ModelError> {
        if self.label_column.trim().is_empty() {
            return Err(invalid("label_column: must name the label column".into()));
        }
        if self.positive_label.trim().is_empty() {
            return Err(invalid(
                "positive_label: must name the positive class value".into(),
            ));
        }
        if matches!(self.delimiter, '"' | '\n' | '\r') || !self.delimiter.is_ascii() {
            return Err(invalid(format!(
                "delimiter: {:?} is not one ASCII character other than a quote or newline",
                self.delimiter.to_string()
            )));
        }
        if self.hidden_layers.len() > MAX_HIDDEN_LAYERS {
            return Err(invalid(format!(
                "hyper_parameters.hidden_layers: at most {MAX_HIDDEN_LAYERS} layers"
            )));
        }
        if let Some(w) = self
            .hidden_layers
            .iter()
            .find(|&&w| w == 0 || w > MAX_LAYER_WIDTH)
        {
            return Err(invalid(format!(
                "hyper_parameters.hidden_layers: width {w} is outside 1..={MAX_LAYER_WIDTH}"
            )));
        }
        let key = self.split_key.as_str();
        if key == self.label_column {
            return Err(invalid(format!(
                "split_key: {key:?} is the label column; name a key such as a user id"
            )));
        }
        if self.drop_columns.iter().any(|c| c == key) {
            return Err(invalid(format!(
                "split_key: {key:?} is also in drop_columns; the key is never an input, so \
                 it need not be dropped"
            )));
        }
        let learning_rate = self.learning_rate;
        if !(learning_rate.is_finite() && learning_rate > 0.0 && learning_rate <= 10.0) {
            return Err(invalid(format!(
                "hyper_parameters.learning_rate: {learning_rate} is outside (0, 10]"
            )));
        }
        let batch_size = self.batch_size;
        if batch_size == 0 || batch_size > MAX_BATCH_SIZE {
            return Err(invalid(format!(
                "hyper_parameters.batch_size: {batch_size} is outside 1..={MAX_BATCH_SIZE}"
            )));
        }
        let epochs = self.epochs;
        if epochs == 0 || epochs > limits.max_epochs as usize {
            return Err(invalid(format!(
                "hyper_parameters.epochs: {epochs} is outside 1..={} (the server's limit)",
                limits.max_epochs
            )));
        }
        let validation_fraction = self.validation_fraction;
        if !(validation_fraction > 0.0 && validation_fraction < 1.0) {
            return Err(invalid(format!(
                "hyper_parameters.validation_fraction: {validation_fraction} is outside (0, 1)"
            )));
        }
        let l2 = self.l2;
        if !(l2.is_finite() && (0.0..=1.0).contains(&l2)) {
            return Err(invalid(format!("hyper_parameters.l2: {l2} is outside [0, 1]")));
        }
        let dropout = self.dropout;
        if !(dropout.is_finite() && (0.0..0.95).contains(&dropout)) {
            return Err(invalid(format!(
                "hyper_parameters.dropout: {dropout} is outside [0, 0.95)"
            )));
        }
        let (name, target) = match self.threshold {
            ThresholdObjective::MaxF1 => return Ok(()),
            ThresholdObjective::Precision(p) => ("target_precision", p),
            ThresholdObjective::Recall(r) => ("target_recall", r),
        };
        if !(target.is_finite() && target > 0.0 && target <= 1.0) {
            return Err(invalid(format!(
                "hyper_parameters.{name}: {target} is outside (0, 1]"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipe() -> Recipe {
        Recipe::new("y", "1")
    }

    #[test]
    fn defaults_are_four_members_of_64_32() {
        let recipe = recipe();
        recipe.check(&TrainingLimits::default()).unwrap();
        assert_eq!(
            (recipe.hidden_layers.clone(), recipe.members()),
            (vec![64, 32], 4)
        );
        assert_eq!((recipe.batch_size, recipe.epochs, recipe.seed), (256, 20, 42));
        assert_eq!(
            (recipe.learning_rate, recipe.patience, recipe.dropout),
            (0.01, 6, 0.2)
        );
        assert_eq!(recipe.delimiter, ',');
        assert!(!recipe.allow_identifier_columns);
    }

    #[test]
    fn the_held_out_share_sets_the_members() {
        let members = |validation_fraction| {
            Recipe {
                validation_fraction,
                ..recipe()
            }
            .members()
        };
        assert_eq!(
            [members(0.2), members(0.5), members(0.9), members(0.01)],
            [5, 2, 2, 8]
        );
    }

    #[test]
    fn old_recipes_read_as_refusing_identifier_columns() {
        let recipe = Recipe {
            allow_identifier_columns: true,
            ..recipe()
        };
        let mut stored = serde_json::to_value(&recipe).unwrap();
        stored.as_object_mut().unwrap().remove("allow_identifier_columns");
        let read: Recipe = serde_json::from_value(stored).unwrap();
        assert!(!read.allow_identifier_columns);
    }

    #[test]
    fn bad_values_are_named() {
        let limits = TrainingLimits::default();
        type Mutation = Box<dyn Fn(&mut Recipe)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (Box::new(|r| r.label_column = " ".into()), "label_column"),
            (Box::new(|r| r.positive_label = "".into()), "positive_label"),
            (Box::new(|r| r.delimiter = '"'), "delimiter"),
            (Box::new(|r| r.epochs = 0), "epochs"),
            (Box::new(|r| r.epochs = 1001), "epochs"),
            (Box::new(|r| r.batch_size = 0), "batch_size"),
            (Box::new(|r| r.batch_size = 1_000_000_000), "batch_size"),
            (Box::new(|r| r.learning_rate = f64::NAN), "learning_rate"),
            (Box::new(|r| r.hidden_layers = vec![0]), "hidden_layers"),
            (Box::new(|r| r.hidden_layers = vec![8; 9]), "hidden_layers"),
            (Box::new(|r| r.validation_fraction = 1.0), "validation_fraction"),
            (Box::new(|r| r.l2 = -1.0), "l2"),
            (Box::new(|r| r.dropout = 0.95), "dropout"),
            (Box::new(|r| r.split_key = "y".into()), "split_key"),
            (
                Box::new(|r| {
                    r.split_key = "user".into();
                    r.drop_columns = vec!["user".into()];
                }),
                "split_key",
            ),
            (
                Box::new(|r| r.threshold = ThresholdObjective::Precision(1.5)),
                "target_precision",
            ),
            (
                Box::new(|r| r.threshold = ThresholdObjective::Recall(0.0)),
                "target_recall",
            ),
        ];
        for (mutate, field) in cases {
            let mut r = recipe();
            mutate(&mut r);
            let err = r.check(&limits).unwrap_err();
            assert!(matches!(err, ModelError::InvalidSetting(_)), "{field}: {err:?}");
            assert!(err.to_string().contains(field), "{field}: {err}");
        }
    }
}
