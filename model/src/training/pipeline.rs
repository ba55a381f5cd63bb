//! From CSV bytes to a trained version: ingest, fold, fit the encoder,
//! encode, run the loop, evaluate on rows that chose nothing, measure
//! importance, and package what is stored.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::device::Device;
use super::ensemble::Shape;
use super::importance::{self, ScoredRows, permutation_importance};
use super::preparation::{self, PreparationWatch};
use super::recipe::{Recipe, TrainingLimits};
use super::row_store::RowStore;
use super::selection::HeldOut;
use super::streamed::{TrainingPath, prepare_streamed, training_path};
use super::trainer::{
    EpochReport, LoopEvent, LoopSettings, TrainingRows, TrainingStream, run_loop, run_streamed_loop,
};
use crate::dataset::{
    ColumnValues, DataFile, SharedFile, TrainingTable, ingest_files, keyed_folds, refuse_identifier_columns,
    stratified_folds,
};
use crate::encoder::{Encoder, EncoderState, Transform};
use crate::error::ModelError;
use crate::evaluation::{Curves, Evaluation, choose_threshold, curves, evaluate, evaluate_labelled};
use crate::network::{Mlp, sigmoid};

/// Fingerprint and shape of the training data, stored with the version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetSummary {
    pub sha256: String,
    pub rows: u64,
    pub columns: u32,
    pub skipped_rows: u64,
    /// Rows the ensemble learned from.
    pub train_rows: u64,
    /// Rows scored out of fold (every training row, for an ensemble).
    pub validation_rows: u64,
    pub positive_rate: f64,
    /// Folds the members held out; 0 for versions trained before
    /// ensembles, which held out one validation split.
    #[serde(default)]
    pub folds: u32,
    /// The server-side source read, as asked; empty for an upload.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    /// Every object read from the source, in the order read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<SourceObject>,
    /// How a training streamed its rows within the memory budget; `None`
    /// when it held them all in memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streamed: Option<StreamedTraining>,
}

/// How a streamed training kept to its memory budget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamedTraining {
    /// The budget, in bytes (the server's --training-memory).
    pub memory_budget: u64,
    /// Rows the encoder was fitted on: a seeded uniform sample.
    pub encoder_sample_rows: u64,
    /// Bytes of the encoded rows.
    pub store_bytes: u64,
    /// Whether the encoded rows were spilled to a temporary file.
    pub spilled: bool,
}

/// One object of a server-side source: what lineage records of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceObject {
    pub path: String,
    pub size: u64,
    /// The store's entity tag, or empty where it keeps none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub e_tag: String,
}

/// Data parsed, folded and encoded: everything the loop needs.
pub struct PreparedTraining {
    pub recipe: Recipe,
    pub encoder: Encoder,
    pub dataset: DatasetSummary,
    /// The rows scored out of fold: every row, or for a streamed training
    /// a bounded seeded sample of them.
    pub(super) data: TrainingRows,
    /// The rows learned from when they are streamed, not held in `data`.
    pub(super) stream: Option<RowStore>,
    /// The mean encoded row: the baseline explanations integrate from.
    pub(super) baseline: Vec<f32>,
    /// Seconds each phase of the preparation took.
    pub phases: Vec<(&'static str, f64)>,
    /// Where the loop's matrix products run (the server's `--device`).
    pub(super) device: Device,
}

/// A trained version, ready to store.
pub struct TrainedVersion {
    pub recipe: Recipe,
    pub encoder: EncoderState,
    pub dataset: DatasetSummary,
    /// Out of fold at the kept epoch, which these rows chose, and at the
    /// threshold chosen on them.
    pub validation: Evaluation,
    /// On rows that chose nothing: each row scored by the member that did
    /// not learn from it, at the epoch and threshold the other folds chose.
    pub test: Evaluation,
    pub history: Vec<EpochReport>,
    /// The epoch whose weights were kept (1-based).
    pub best_epoch: usize,
    /// Curves of the test scores, and the confusion of the test labels.
    pub curves: Curves,
    /// Permutation importance of the original columns, out of fold, most
    /// important first.
    pub importance: Vec<(String, f64)>,
    /// Seconds each phase of the training took (not stored).
    pub phases: Vec<(&'static str, f64)>,
    pub network: Mlp,
    pub weights: Vec<u8>,
}

/// Rows encoded at a time while preparing: bounds the dense copy.
const ENCODE_CHUNK_ROWS: usize = 4096;

/// Parses and encodes `data` (a file in the recipe's format) for `recipe`.
/// Errors name the line, column or setting at fault; identifier-like
/// columns are refused unless the recipe allows them.
pub fn prepare(recipe: Recipe, data: &[u8], limits: &TrainingLimits) -> Result<PreparedTraining, ModelError> {
    prepare_files(
        recipe,
        &[DataFile {
            name: "the upload",
            bytes: data,
        }],
        limits,
    )
}

/// [`prepare`] for data in several files of the recipe's format, read as
/// one table in the order given.
pub fn prepare_files(
    recipe: Recipe,
    files: &[DataFile<'_>],
    limits: &TrainingLimits,
) -> Result<PreparedTraining, ModelError> {
    let started = std::time::Instant::now();
    let column_types: HashMap<_, _> = recipe.column_types.clone().into_iter().collect();
    let options = recipe.ingest_options(&column_types, limits);
    let mut table = ingest_files(recipe.format, files, &options)?;
    let split_key = take_split_key(&mut table, &recipe.split_key)?;
    if !recipe.allow_identifier_columns {
        refuse_identifier_columns(&table)?;
    }
    let members = recipe.members();
    // The fold stream is its own (seed + 11), apart from initialisation,
    // shuffling and dropout.
    let fold_seed = recipe.seed.wrapping_add(11);
    let folds = match split_key {
        Some(key) => keyed_folds(
            &recipe.split_key,
            &key.ids,
            &key.values,
            &table.labels,
            members,
            fold_seed,
        )?,
        None => stratified_folds(&table.labels, members, fold_seed)?,
    };
    let all: Vec<usize> = (0..table.labels.len()).collect();
    // The encoder reads no labels, so every row may shape it.
    let encoder = Encoder::new(EncoderState::fit(&table, &all));
    let (data, baseline) = training_rows(&table, &encoder, &recipe, folds);
    let positives = table.labels.iter().filter(|&&l| l == 1.0).count();
    let dataset = DatasetSummary {
        sha256: table.sha256.clone(),
        rows: table.rows_read as u64,
        columns: table.header_columns as u32,
        skipped_rows: table.skipped_rows as u64,
        train_rows: data.rows() as u64,
        validation_rows: data.rows() as u64,
        positive_rate: positives as f64 / table.labels.len() as f64,
        folds: members as u32,
        source: String::new(),
        objects: Vec::new(),
        streamed: None,
    };
    Ok(PreparedTraining {
        recipe,
        encoder,
        dataset,
        data,
        stream: None,
        baseline,
        phases: vec![("reading and encoding", started.elapsed().as_secs_f64())],
        device: limits.device.clone(),
    })
}

/// Prepares a training of `files` on the path the memory budget allows:
/// every row in memory when the estimate fits `limits.memory`, as
/// [`prepare_files`] does, else streamed in bounded memory. The dataset
/// summary records which. `watch` hears where it stands (the streamed
/// path's rows as it reads them) and cancels it: between chunks when
/// streamed, after reading when in memory.
pub fn prepare_shared(
    recipe: Recipe,
    files: &[SharedFile],
    limits: &TrainingLimits,
    watch: &mut PreparationWatch<'_>,
) -> Result<PreparedTraining, ModelError> {
    watch.phase(preparation::SIZING, 0)?;
    match training_path(recipe.format, files, recipe.delimiter as u8, limits)? {
        TrainingPath::InMemory => {
            watch.phase(preparation::READING, 0)?;
            let loaded = files
                .iter()
                .map(SharedFile::load)
                .collect::<Result<Vec<_>, _>>()?;
            let borrowed: Vec<DataFile<'_>> = files
                .iter()
                .zip(&loaded)
                .map(|(f, bytes)| DataFile { name: &f.name, bytes })
                .collect();
            let prepared = prepare_files(recipe, &borrowed, limits)?;
            watch.check()?;
            Ok(prepared)
        }
        TrainingPath::Streamed => prepare_streamed(recipe, files, limits, watch),
    }
}

/// The split key's column: each row's index into `values`.
pub(super) struct SplitKey {
    pub ids: Vec<u32>,
    pub values: Vec<String>,
}

/// Takes the split key's column out of the table (it is never an input),
/// or `None` without a key.
pub(super) fn take_split_key(table: &mut TrainingTable, key: &str) -> Result<Option<SplitKey>, ModelError> {
    if key.is_empty() {
        return Ok(None);
    }
    let Some(position) = table.features.iter().position(|c| c.name == key) else {
        return Err(ModelError::InvalidData(format!(
            "split_key: the data has no column named {key:?}"
        )));
    };
    // Only equality matters: a number or boolean key is as good as text.
    let numbers = match table.features.remove(position).values {
        ColumnValues::Categorical { ids, dictionary } => {
            return Ok(Some(SplitKey {
                ids,
                values: dictionary,
            }));
        }
        ColumnValues::Numeric(values) => values,
        ColumnValues::Boolean { values, .. } => values.into_iter().map(f64::from).collect(),
    };
    let mut id_of: HashMap<u64, u32> = HashMap::new();
    let mut dictionary = Vec::new();
    let ids = numbers
        .iter()
        .map(|&value| {
            // Every blank (NaN) is one key.
            let bits = if value.is_nan() {
                f64::NAN.to_bits()
            } else {
                value.to_bits()
            };
            *id_of.entry(bits).or_insert_with(|| {
                dictionary.push(if value.is_nan() {
                    String::new()
                } else {
                    value.to_string()
                });
                (dictionary.len() - 1) as u32
            })
        })
        .collect();
    Ok(Some(SplitKey {
        ids,
        values: dictionary,
    }))
}

/// How encoded rows map onto the loop's form: the shape, each encoded
/// input's kind, and each categorical column's span with its first slot.
pub(super) struct Layout {
    pub shape: Shape,
    pub input_kind: Vec<Result<usize, usize>>,
    pub categorical_spans: Vec<(std::ops::Range<usize>, usize)>,
}

pub(super) fn layout(encoder: &Encoder, recipe: &Recipe) -> Layout {
    let mut input_kind = Vec::with_capacity(encoder.width());
    let mut categorical_spans = Vec::new();
    let (mut numeric, mut slots) = (0usize, 0usize);
    for (column, (_, span)) in encoder.state().columns.iter().zip(encoder.column_spans()) {
        if let Transform::Categorical { .. } = column.transform {
            categorical_spans.push((span.clone(), slots));
            input_kind.extend((slots..slots + span.len()).map(Err));
            slots += span.len();
        } else {
            input_kind.extend((numeric..numeric + span.len()).map(Ok));
            numeric += span.len();
        }
    }
    Layout {
        shape: Shape {
            numeric,
            slots,
            categorical: categorical_spans.len(),
            members: recipe.members(),
            hidden: recipe.hidden_layers.clone(),
        },
        input_kind,
        categorical_spans,
    }
}

/// The table's rows in the loop's form — numeric inputs, and the hot slot
/// of each categorical column — and the mean encoded row.
fn training_rows(
    table: &TrainingTable,
    encoder: &Encoder,
    recipe: &Recipe,
    folds: Vec<usize>,
) -> (TrainingRows, Vec<f32>) {
    let Layout {
        shape,
        input_kind,
        categorical_spans,
    } = layout(encoder, recipe);
    let (numeric, categorical) = (shape.numeric, shape.categorical);
    let rows = table.labels.len();
    let width = encoder.width();
    let mut data = TrainingRows {
        shape,
        numeric: Vec::with_capacity(rows * numeric),
        slots: Vec::with_capacity(rows * categorical),
        labels: table.labels.clone(),
        folds,
        input_kind,
    };
    let mut sums = vec![0f64; width];
    let all: Vec<usize> = (0..rows).collect();
    for chunk in all.chunks(ENCODE_CHUNK_ROWS) {
        let encoded = encoder.encode_table(table, chunk);
        for row in encoded.chunks_exact(width) {
            for (sum, &x) in sums.iter_mut().zip(row) {
                *sum += f64::from(x);
            }
            for (j, kind) in data.input_kind.iter().enumerate() {
                if kind.is_ok() {
                    data.numeric.push(row[j]);
                }
            }
            for (span, first_slot) in &categorical_spans {
                let hot = row[span.clone()].iter().position(|&x| x == 1.0).unwrap_or(0);
                data.slots.push((first_slot + hot) as u32);
            }
        }
    }
    let baseline = sums.iter().map(|&s| (s / rows.max(1) as f64) as f32).collect();
    (data, baseline)
}

/// Trains the ensemble on prepared data and evaluates it out of fold.
pub fn train(
    prepared: PreparedTraining,
    cancel: &AtomicBool,
    on_event: impl FnMut(LoopEvent<'_>),
) -> Result<TrainedVersion, ModelError> {
    let recipe = prepared.recipe;
    let data = prepared.data;
    let mut stream = prepared.stream;
    let settings = LoopSettings {
        learning_rate: recipe.learning_rate,
        batch_size: recipe.batch_size,
        epochs: recipe.epochs,
        seed: recipe.seed,
        patience: recipe.patience,
        l2: recipe.l2,
        dropout: recipe.dropout,
        class_weighting: recipe.class_weighting,
        schedule: recipe.learning_rate_schedule,
        threshold: recipe.threshold,
        device: prepared.device.clone(),
    };
    let mut on_event = on_event;
    let outcome = match &mut stream {
        None => run_loop(&data, &settings, cancel, &mut on_event)?,
        Some(stream) => run_streamed_loop(stream, &data, &settings, cancel, &mut on_event)?,
    };
    // The streamed rows (and their temporary file) are not needed past
    // the loop.
    let rows = stream.as_ref().map_or(data.rows(), |s| s.rows());
    drop(stream);
    let labels = &data.labels;

    // Validation: out of fold at the kept epoch, threshold chosen there.
    let scores: Vec<f32> = outcome.best_out_of_fold.iter().map(|&z| sigmoid(z)).collect();
    let threshold = choose_threshold(&scores, labels, recipe.threshold);
    let validation = evaluate(&scores, labels, threshold);
    let HeldOut {
        scores: test_scores,
        positive: test_positive,
    } = outcome.held_out;
    let test = evaluate_labelled(&test_scores, labels, &test_positive, threshold);
    let curves = curves(&test_scores, labels, &test_positive);
    let weights = outcome.network.to_safetensors()?;

    // Importance takes a while on large data: it reports progress (the last
    // epoch, complete) and honours cancellation between columns.
    let epochs_run = outcome.history.len();
    let loop_seconds = outcome.history.last().map_or(0.0, |e| e.elapsed_seconds);
    let started = std::time::Instant::now();
    let parts = out_of_fold_sample(&data, &outcome.network, recipe.seed)?;
    let importance = permutation_importance(&parts, &prepared.encoder, recipe.seed, || {
        if cancel.load(Ordering::Relaxed) {
            return Err(ModelError::Cancelled);
        }
        on_event(LoopEvent::Batch {
            epoch: epochs_run,
            epochs: recipe.epochs,
            rows_done: rows,
            rows_total: rows,
            elapsed_seconds: loop_seconds + started.elapsed().as_secs_f64(),
            rows_per_second: 0.0,
            epoch_seconds: 0.0,
        });
        Ok(())
    })?;
    let mut phases = outcome.phases.clone();
    phases.push(("importance", started.elapsed().as_secs_f64()));
    let mut encoder = prepared.encoder.state().clone();
    encoder.baseline = prepared.baseline;
    Ok(TrainedVersion {
        recipe,
        encoder,
        dataset: prepared.dataset,
        validation,
        test,
        history: outcome.history,
        best_epoch: outcome.best_epoch,
        curves,
        importance,
        phases,
        network: outcome.network,
        weights,
    })
}

/// At most [`importance::MAX_ROWS`] rows (a seeded sample), grouped by fold
/// with the member that did not learn from them.
fn out_of_fold_sample(data: &TrainingRows, network: &Mlp, seed: u64) -> Result<Vec<ScoredRows>, ModelError> {
    let mut picked: Vec<usize> = (0..data.rows()).collect();
    if picked.len() > importance::MAX_ROWS {
        picked.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x05A3_B1E5));
        picked.truncate(importance::MAX_ROWS);
        picked.sort_unstable();
    }
    (0..network.members())
        .map(|member| {
            let mut part = ScoredRows {
                network: network.member(member)?,
                x: Vec::new(),
                y: Vec::new(),
            };
            for &row in picked.iter().filter(|&&r| data.folds[r] == member) {
                part.x.extend(data.encoded_row(row));
                part.y.push(data.labels[row]);
            }
            Ok(part)
        })
        .collect()
}

impl PreparedTraining {
    /// Width of an encoded row.
    pub fn input_width(&self) -> usize {
        self.encoder.width()
    }
}
