//! A `TrainSpec` as the model crate's `Recipe`: protocol values converted,
//! defaults filled in, and every setting checked (by the recipe itself),
//! with errors naming the field.

use serval_model::dataset::{ColumnKind, DataFormat};
use serval_model::training::{LearningRateSchedule, Recipe, ThresholdObjective, TrainingLimits, defaults};
use serval_proto::v1 as pb;
use serval_registry::validate_model_name;

use crate::error::ServalError;

fn invalid(message: String) -> ServalError {
    ServalError::InvalidArgument(message)
}

/// The recipe `spec` asks for, checked against `limits`.
pub fn recipe(spec: &pb::TrainSpec, limits: &TrainingLimits) -> Result<Recipe, ServalError> {
    validate_model_name(&spec.model).map_err(|e| invalid(format!("model: {e}")))?;
    let mut recipe = Recipe::new(&spec.label_column, &spec.positive_label);
    recipe.delimiter = match spec.delimiter.chars().collect::<Vec<_>>().as_slice() {
        [] => ',',
        [c] => *c,
        _ => {
            return Err(invalid(format!(
                "delimiter: {:?} is not one ASCII character other than a quote or newline",
                spec.delimiter
            )));
        }
    };
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
        recipe.column_types.insert(name.trim().to_string(), kind);
    }
    recipe.drop_columns = spec.drop_columns.iter().map(|c| c.trim().to_string()).collect();
    recipe.format = match pb::DataFormat::try_from(spec.format) {
        Ok(pb::DataFormat::Unspecified | pb::DataFormat::Csv) => DataFormat::Csv,
        Ok(pb::DataFormat::Parquet) => DataFormat::Parquet,
        Ok(pb::DataFormat::Arrow) => DataFormat::Arrow,
        Err(_) => return Err(invalid(format!("format: unknown data format {}", spec.format))),
    };
    recipe.seed = spec.seed.unwrap_or(defaults::SEED);
    recipe.allow_identifier_columns = spec.allow_identifier_columns;
    recipe.split_key = spec.split_key.trim().to_string();

    let hp = spec.hyper_parameters.clone().unwrap_or_default();
    if !hp.hidden_layers.is_empty() {
        recipe.hidden_layers = hp.hidden_layers.iter().map(|&w| w as usize).collect();
    }
    recipe.learning_rate = hp.learning_rate.unwrap_or(defaults::LEARNING_RATE);
    recipe.batch_size = hp.batch_size.unwrap_or(defaults::BATCH_SIZE) as usize;
    recipe.epochs = hp.epochs.unwrap_or(defaults::EPOCHS) as usize;
    recipe.validation_fraction = hp.validation_fraction.unwrap_or(defaults::VALIDATION_FRACTION);
    recipe.patience = hp.patience.unwrap_or(defaults::PATIENCE) as usize;
    recipe.l2 = hp.l2.unwrap_or(defaults::L2);
    recipe.dropout = hp.dropout.unwrap_or(defaults::DROPOUT);
    recipe.class_weighting = hp.class_weighting.unwrap_or(defaults::CLASS_WEIGHTING);
    recipe.learning_rate_schedule = match pb::LearningRateSchedule::try_from(hp.learning_rate_schedule) {
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
    recipe.threshold = match (hp.target_precision, hp.target_recall) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "hyper_parameters: set target_precision or target_recall, not both".into(),
            ));
        }
        (Some(p), None) => ThresholdObjective::Precision(p),
        (None, Some(r)) => ThresholdObjective::Recall(r),
        (None, None) => ThresholdObjective::MaxF1,
    };
    recipe.check(limits)?;
    Ok(recipe)
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
    fn defaults_are_the_models_defaults() {
        let recipe = recipe(&spec(), &TrainingLimits::default()).unwrap();
        assert_eq!(recipe, serval_model::training::Recipe::new("y", "1"));
        assert_eq!(recipe.delimiter, ',');
        assert!(!recipe.allow_identifier_columns);
    }

    #[test]
    fn the_identifier_flag_is_carried() {
        let spec = pb::TrainSpec {
            allow_identifier_columns: true,
            ..spec()
        };
        assert!(
            recipe(&spec, &TrainingLimits::default())
                .unwrap()
                .allow_identifier_columns
        );
    }

    #[test]
    fn the_split_key_is_carried_and_checked() {
        let keyed = |key: &str| pb::TrainSpec {
            split_key: key.into(),
            ..spec()
        };
        let limits = TrainingLimits::default();
        assert_eq!(recipe(&keyed(" user_id "), &limits).unwrap().split_key, "user_id");
        let err = recipe(&keyed("y"), &limits).unwrap_err();
        assert!(
            err.to_string().contains("split_key: \"y\" is the label column"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_are_named() {
        let limits = TrainingLimits::default();
        type Mutation = Box<dyn Fn(&mut pb::TrainSpec)>;
        let hyper = |hp: pb::HyperParameters| Some(hp);
        let cases: Vec<(Mutation, &str)> = vec![
            (Box::new(|s| s.model = "../x".into()), "model"),
            (Box::new(|s| s.label_column = " ".into()), "label_column"),
            (Box::new(|s| s.positive_label = "".into()), "positive_label"),
            (Box::new(|s| s.delimiter = ";;".into()), "delimiter"),
            (Box::new(|s| s.delimiter = "\n".into()), "delimiter"),
            (
                Box::new(move |s| {
                    s.hyper_parameters = hyper(pb::HyperParameters {
                        epochs: Some(0),
                        ..Default::default()
                    })
                }),
                "epochs",
            ),
            (
                Box::new(move |s| {
                    s.hyper_parameters = hyper(pb::HyperParameters {
                        batch_size: Some(1_000_000_000),
                        ..Default::default()
                    })
                }),
                "batch_size",
            ),
            (
                Box::new(move |s| {
                    s.hyper_parameters = hyper(pb::HyperParameters {
                        hidden_layers: vec![0],
                        ..Default::default()
                    })
                }),
                "hidden_layers",
            ),
            (
                Box::new(move |s| {
                    s.hyper_parameters = hyper(pb::HyperParameters {
                        target_precision: Some(0.5),
                        target_recall: Some(0.5),
                        ..Default::default()
                    })
                }),
                "not both",
            ),
            (
                Box::new(move |s| {
                    s.hyper_parameters = hyper(pb::HyperParameters {
                        learning_rate_schedule: 99,
                        ..Default::default()
                    })
                }),
                "learning_rate_schedule",
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
            let err = recipe(&s, &limits).unwrap_err();
            assert_eq!(
                tonic::Status::from(err).code(),
                tonic::Code::InvalidArgument,
                "{field}"
            );
            let mut s = spec();
            mutate(&mut s);
            let message = recipe(&s, &limits).unwrap_err().to_string();
            assert!(message.contains(field), "{field}: {message}");
        }
    }
}
