//! From CSV bytes to a trained version: ingest, split, fit the encoder,
//! encode, run the loop, evaluate, and package the registry documents.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;

use serde::{Deserialize, Serialize};

use super::importance::{mean_row, permutation_importance};
use super::recipe::{Recipe, TrainingLimits};
use super::trainer::{EncodedData, EpochReport, LoopEvent, LoopSettings, run_loop};
use crate::dataset::{IngestOptions, ingest_csv, refuse_identifier_columns, stratified_split};
use crate::encoder::{Encoder, EncoderState};
use crate::error::ModelError;
use crate::evaluation::{Curves, Evaluation, choose_threshold, curves, evaluate};
use crate::network::Mlp;

/// Fingerprint and shape of the training data, stored with the version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetSummary {
    pub sha256: String,
    pub rows: u64,
    pub columns: u32,
    pub skipped_rows: u64,
    pub train_rows: u64,
    pub validation_rows: u64,
    pub positive_rate: f64,
}

/// Data parsed, split and encoded: everything the loop needs.
pub struct PreparedTraining {
    pub recipe: Recipe,
    pub encoder: Encoder,
    pub dataset: DatasetSummary,
    data: EncodedData,
}

/// A trained version, ready to register.
pub struct TrainedVersion {
    pub recipe: Recipe,
    pub encoder: EncoderState,
    pub dataset: DatasetSummary,
    pub evaluation: Evaluation,
    pub history: Vec<EpochReport>,
    /// The epoch whose weights were kept (1-based).
    pub best_epoch: usize,
    pub curves: Curves,
    /// Permutation importance of the original columns on the validation
    /// split, most important first.
    pub importance: Vec<(String, f64)>,
    pub network: Mlp,
    pub weights: Vec<u8>,
}

/// Parses and encodes `csv` for `recipe`. Errors are INVALID_ARGUMENT and
/// name the line, column or setting at fault; identifier-like categorical
/// columns are refused unless the recipe allows them.
pub fn prepare(recipe: Recipe, csv: &[u8], limits: &TrainingLimits) -> Result<PreparedTraining, ModelError> {
    let column_types: HashMap<_, _> = recipe.column_types.clone().into_iter().collect();
    let table = ingest_csv(
        csv,
        &IngestOptions {
            delimiter: recipe.delimiter as u8,
            label_column: &recipe.label_column,
            positive_label: &recipe.positive_label,
            drop_columns: &recipe.drop_columns,
            column_types: &column_types,
            max_rows: limits.max_rows,
            max_columns: limits.max_columns,
        },
    )?;
    if !recipe.allow_identifier_columns {
        refuse_identifier_columns(&table)?;
    }
    let split = stratified_split(&table.labels, recipe.validation_fraction, recipe.seed)?;
    let encoder = Encoder::new(EncoderState::fit(&table, &split.train));
    let labels_of = |rows: &[usize]| rows.iter().map(|&i| table.labels[i]).collect::<Vec<f32>>();
    let data = EncodedData {
        width: encoder.width(),
        x_train: encoder.encode_table(&table, &split.train),
        y_train: labels_of(&split.train),
        x_validation: encoder.encode_table(&table, &split.validation),
        y_validation: labels_of(&split.validation),
    };
    let positives = table.labels.iter().filter(|&&l| l == 1.0).count();
    let dataset = DatasetSummary {
        sha256: table.sha256.clone(),
        rows: table.rows_read as u64,
        columns: table.header_columns as u32,
        skipped_rows: table.skipped_rows as u64,
        train_rows: split.train.len() as u64,
        validation_rows: split.validation.len() as u64,
        positive_rate: positives as f64 / table.labels.len() as f64,
    };
    Ok(PreparedTraining {
        recipe,
        encoder,
        dataset,
        data,
    })
}

/// Trains the network on prepared data and evaluates it on the
/// validation split.
pub fn train(
    prepared: PreparedTraining,
    cancel: &AtomicBool,
    on_event: impl FnMut(LoopEvent<'_>),
) -> Result<TrainedVersion, ModelError> {
    let recipe = prepared.recipe;
    let settings = LoopSettings {
        hidden_layers: recipe.hidden_layers.clone(),
        learning_rate: recipe.learning_rate,
        batch_size: recipe.batch_size,
        epochs: recipe.epochs,
        seed: recipe.seed,
        patience: recipe.patience,
        l2: recipe.l2,
        dropout: recipe.dropout,
        class_weighting: recipe.class_weighting,
        schedule: recipe.learning_rate_schedule,
    };
    let mut on_event = on_event;
    let outcome = run_loop(&prepared.data, &settings, cancel, &mut on_event)?;
    let scores = &outcome.validation_scores;
    let labels = &prepared.data.y_validation;
    let threshold = choose_threshold(scores, labels, recipe.threshold);
    let evaluation = evaluate(scores, labels, threshold);
    let curves = curves(scores, labels, threshold);
    let weights = outcome.network.to_safetensors()?;
    // Importance takes a while on large data: it reports progress (the last
    // epoch, complete) and honours cancellation between columns.
    let epochs_run = outcome.history.len();
    let train_rows = prepared.data.y_train.len();
    let loop_seconds = outcome.history.last().map_or(0.0, |e| e.elapsed_seconds);
    let started = std::time::Instant::now();
    let importance = permutation_importance(
        &outcome.network,
        &prepared.encoder,
        &prepared.data.x_validation,
        labels,
        recipe.seed,
        || {
            if cancel.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(ModelError::Cancelled);
            }
            on_event(LoopEvent::Batch {
                epoch: epochs_run,
                epochs: recipe.epochs,
                rows_done: train_rows,
                rows_total: train_rows,
                elapsed_seconds: loop_seconds + started.elapsed().as_secs_f64(),
            });
            Ok(())
        },
    )?;
    let mut encoder = prepared.encoder.state().clone();
    encoder.baseline = mean_row(&prepared.data.x_train, prepared.data.width);
    Ok(TrainedVersion {
        recipe,
        encoder,
        dataset: prepared.dataset,
        evaluation,
        history: outcome.history,
        best_epoch: outcome.best_epoch,
        curves,
        importance,
        network: outcome.network,
        weights,
    })
}

impl PreparedTraining {
    /// Width of an encoded row.
    pub fn input_width(&self) -> usize {
        self.data.width
    }
}
