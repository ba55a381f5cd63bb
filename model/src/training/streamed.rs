//! Training in bounded memory: choosing between holding the rows in memory
//! and streaming them, and preparing a streamed training.
//!
//! A streamed training reads the data three times, a part at a time: a
//! census (rows and columns; Parquet's from its footer), a seeded uniform
//! sample that types the columns and fits the encoder, then every row,
//! encoded into a compact [`RowStore`]. A row's fold is a seeded hash of
//! its position among the labelled rows (or of its split key's value), so
//! no pass needs the others' rows. A bounded seeded sample of the rows is
//! also kept in the loop's full form: it is scored out of fold every epoch,
//! chooses the epoch, and gives the validation and test figures and
//! importance. Memory is set by the budget: half for the sample while the
//! encoder is fitted, then half for the store (or none, when it spills to
//! disk), an eighth for the shuffle window and a quarter for the scored
//! rows.

use std::collections::HashMap;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::pipeline::{DatasetSummary, PreparedTraining, StreamedTraining, layout, take_split_key};
use super::preparation::{self, PreparationWatch};
use super::recipe::{Recipe, TrainingLimits};
use super::row_store::{BLOCK_ROWS, RowLayout, RowStoreWriter, stored_value};
use super::trainer::{TrainingRows, TrainingStream};
use crate::dataset::{
    Census, ColumnKind, DataFormat, IngestOptions, SharedFile, TrainingTable, census, columns_of,
    fold_of_key, line_breaks, parquet_rows, read_chunks, refuse_identifier_columns,
};
use crate::encoder::{Encoder, EncoderState};
use crate::error::ModelError;

/// Bytes a cell of the data takes while it is held in memory to train
/// from: the typed column (f64 numbers or interned ids), its encoded form,
/// and what fitting copies (about 490 bytes a row at 18 columns, measured).
const IN_MEMORY_BYTES_PER_CELL: u64 = 24;

/// Bytes a row takes in memory beside its cells (label, fold, scores).
const IN_MEMORY_BYTES_PER_ROW: u64 = 32;

/// The encoder's sample: at most this many rows, and at least this many
/// (or every row, if fewer) within the budget.
const MAX_SAMPLE_ROWS: usize = 500_000;
const MIN_SAMPLE_ROWS: usize = 500;

/// Rows scored out of fold at most.
const MAX_SCORED_ROWS: usize = 1_000_000;

/// Bytes a scored row costs the loop beside its inputs: its label and fold,
/// this epoch's and the kept epoch's scores, the held-out choice, and the
/// AUC's sort.
const SCORED_ROW_OVERHEAD: usize = 64;

/// Labelled rows encoded at a time.
const ENCODE_CHUNK_ROWS: usize = 4096;

/// How a training will hold its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrainingPath {
    /// Every row in memory, as always.
    InMemory,
    /// Rows streamed from a compact store within the memory budget.
    Streamed,
}

/// Rows in `files`, estimated cheaply: Parquet's footer, a CSV's line
/// breaks, an Arrow file's bytes at 8 a cell.
fn estimated_rows(format: DataFormat, files: &[SharedFile], columns: usize) -> Result<u64, ModelError> {
    let mut rows = 0u64;
    for file in files {
        rows += match format {
            DataFormat::Parquet => parquet_rows(file)? as u64,
            DataFormat::Csv => line_breaks(file)?,
            DataFormat::Arrow => file.len()? / (8 * columns.max(1) as u64),
        };
    }
    Ok(rows)
}

/// Memory the in-memory path would need for `files`, estimated.
pub fn in_memory_estimate(
    format: DataFormat,
    files: &[SharedFile],
    delimiter: u8,
) -> Result<u64, ModelError> {
    let Some(first) = files.first() else {
        return Ok(0);
    };
    let columns = columns_of(format, first, delimiter)?;
    let rows = estimated_rows(format, files, columns)?;
    // The in-memory path reads each file whole, and a columnar reader
    // copies it once more.
    let mut file_bytes = 0u64;
    for file in files {
        file_bytes += file.len()?;
    }
    let copies = if format == DataFormat::Csv { 1 } else { 2 };
    Ok(rows * (columns as u64 * IN_MEMORY_BYTES_PER_CELL + IN_MEMORY_BYTES_PER_ROW) + copies * file_bytes)
}

/// The path a training of `files` takes under `limits`.
pub fn training_path(
    format: DataFormat,
    files: &[SharedFile],
    delimiter: u8,
    limits: &TrainingLimits,
) -> Result<TrainingPath, ModelError> {
    Ok(
        if in_memory_estimate(format, files, delimiter)? <= limits.memory {
            TrainingPath::InMemory
        } else {
            TrainingPath::Streamed
        },
    )
}

fn too_small(budget: u64, need: String) -> ModelError {
    ModelError::MemoryBudget(format!(
        "the server's --training-memory ({}) is too small for this data: {need}; raise --training-memory",
        human_bytes(budget)
    ))
}

/// Bytes as people read them (KiB, MiB, GiB).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["bytes", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A seeded 64-bit hash of a row's position (SplitMix64's finaliser).
fn position_hash(position: u64, seed: u64) -> u64 {
    let mut z = position
        .wrapping_add(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Prepares a streamed training of `files` for `recipe` within
/// `limits.memory` bytes, reporting each pass's rows to `watch` and
/// stopping between chunks once it is cancelled.
pub fn prepare_streamed(
    recipe: Recipe,
    files: &[SharedFile],
    limits: &TrainingLimits,
    watch: &mut PreparationWatch<'_>,
) -> Result<PreparedTraining, ModelError> {
    let budget = limits.memory;
    let column_types: HashMap<_, _> = recipe.column_types.clone().into_iter().collect();
    let mut options = recipe.ingest_options(&column_types, limits);
    let mut clock = std::time::Instant::now();
    let mut phases = Vec::new();
    let mut lap = |name: &'static str, clock: &mut std::time::Instant| {
        phases.push((name, clock.elapsed().as_secs_f64()));
        *clock = std::time::Instant::now();
    };
    watch.phase(preparation::COUNTING, 0)?;
    let Census {
        rows: rows_read,
        columns,
        sha256,
    } = census(recipe.format, files, &options, &mut |rows| {
        watch.rows(rows as u64)
    })?;
    lap("census", &mut clock);
    if rows_read == 0 {
        return Err(ModelError::InvalidData("the data has no data rows".into()));
    }
    options.max_rows = usize::MAX;

    // The sample: a seeded uniform choice of rows, typed and fitted on.
    let mut file_bytes = 0u64;
    for file in files {
        file_bytes += file.len()?;
    }
    let sample_row_bytes = 2 * (file_bytes / rows_read as u64) + 16 * columns as u64 + 64;
    let sample_rows = ((budget / 2) / sample_row_bytes).min(MAX_SAMPLE_ROWS as u64) as usize;
    let sample_rows = sample_rows.min(rows_read);
    if sample_rows < MIN_SAMPLE_ROWS.min(rows_read) {
        return Err(too_small(
            budget,
            format!(
                "the encoder's sample needs at least {} rows of about {sample_row_bytes} bytes each in half of it",
                MIN_SAMPLE_ROWS.min(rows_read)
            ),
        ));
    }
    let mut sampled = rand::seq::index::sample(
        &mut ChaCha8Rng::seed_from_u64(recipe.seed.wrapping_add(13)),
        rows_read,
        sample_rows,
    )
    .into_vec();
    sampled.sort_unstable();
    let mut next = 0usize;
    let mut sample: Option<TrainingTable> = None;
    watch.phase(preparation::SAMPLING, rows_read as u64)?;
    read_chunks(
        recipe.format,
        files,
        &options,
        usize::MAX,
        &mut |position| {
            watch.rows(position as u64)?;
            let chosen = sampled.get(next) == Some(&position);
            next += usize::from(chosen);
            Ok(chosen)
        },
        &mut |table| {
            sample = Some(table);
            Ok(())
        },
    )?;
    drop(sampled);
    lap("reading the sample", &mut clock);
    let mut sample = sample.ok_or_else(|| ModelError::InvalidData("the data has no data rows".into()))?;
    // Every part is read with the kinds the sample found.
    let mut kinds: HashMap<String, ColumnKind> =
        sample.features.iter().map(|c| (c.name.clone(), c.kind)).collect();
    take_split_key(&mut sample, &recipe.split_key)?;
    if !recipe.allow_identifier_columns {
        refuse_identifier_columns(&sample)?;
    }
    watch.phase(preparation::FITTING, rows_read as u64)?;
    let all: Vec<usize> = (0..sample.labels.len()).collect();
    let encoder = Encoder::new(EncoderState::fit(&sample, &all));
    let header_columns = sample.header_columns;
    drop(sample);
    lap("fitting the encoder", &mut clock);
    for (name, kind) in &column_types {
        kinds.insert(name.clone(), *kind);
    }

    // The store and the scored rows.
    let layout = layout(&encoder, &recipe);
    let row_layout = RowLayout {
        numeric: layout.shape.numeric,
        first_slots: layout
            .categorical_spans
            .iter()
            .map(|(_, first)| *first as u32)
            .collect(),
    };
    let store_bytes = rows_read as u64 * row_layout.stored_bytes() as u64;
    let spill = store_bytes > budget / 2;
    let block_bytes = (BLOCK_ROWS * row_layout.decoded_bytes()) as u64;
    let window_blocks = (budget / 8) / block_bytes;
    if window_blocks == 0 {
        return Err(too_small(
            budget,
            format!(
                "an eighth of it must hold a block of {BLOCK_ROWS} decoded rows ({})",
                human_bytes(block_bytes)
            ),
        ));
    }
    let scored_row_bytes = row_layout.decoded_bytes() + SCORED_ROW_OVERHEAD;
    let scored_target = ((budget / 4) as usize / scored_row_bytes)
        .min(MAX_SCORED_ROWS)
        .min(rows_read);
    // A row is scored when its hash falls under this share of the range.
    let scored_below = ((scored_target as f64 / rows_read as f64) * u64::MAX as f64) as u64;

    let members = recipe.members();
    let fold_seed = recipe.seed.wrapping_add(11);
    let scored_seed = recipe.seed.wrapping_add(17);
    let mut writer = RowStoreWriter::new(row_layout.clone(), members, spill)?;
    let mut scored = TrainingRows {
        shape: layout.shape.clone(),
        numeric: Vec::new(),
        slots: Vec::new(),
        labels: Vec::new(),
        folds: Vec::new(),
        input_kind: layout.input_kind.clone(),
    };
    let width = encoder.width();
    let mut sums = vec![0f64; width];
    let (mut kept, mut skipped) = (0usize, 0usize);
    let mut encode_seconds = 0.0;
    let mut numeric = Vec::with_capacity(row_layout.numeric);
    let mut slots = Vec::with_capacity(row_layout.first_slots.len());
    let chunk_options = IngestOptions {
        column_types: &kinds,
        ..options.clone()
    };
    watch.phase(preparation::ENCODING, rows_read as u64)?;
    read_chunks(
        recipe.format,
        files,
        &chunk_options,
        ENCODE_CHUNK_ROWS,
        &mut |_| Ok(true),
        &mut |mut table| {
            let chunk_started = std::time::Instant::now();
            skipped += table.skipped_rows;
            let key = take_split_key(&mut table, &recipe.split_key)?;
            let key_folds: Option<Vec<usize>> = key.as_ref().map(|key| {
                key.values
                    .iter()
                    .map(|v| fold_of_key(v, members, fold_seed))
                    .collect()
            });
            let rows: Vec<usize> = (0..table.labels.len()).collect();
            let encoded = encoder.encode_table(&table, &rows);
            for (r, row) in encoded.chunks_exact(width.max(1)).enumerate() {
                let position = kept as u64;
                kept += 1;
                let fold = match (&key, &key_folds) {
                    (Some(key), Some(folds)) => folds[key.ids[r] as usize],
                    _ => (position_hash(position, fold_seed) % members as u64) as usize,
                };
                for (sum, &x) in sums.iter_mut().zip(row) {
                    *sum += f64::from(x);
                }
                numeric.clear();
                for (j, kind) in layout.input_kind.iter().enumerate() {
                    if kind.is_ok() {
                        numeric.push(row[j]);
                    }
                }
                slots.clear();
                for (span, _) in &layout.categorical_spans {
                    let hot = row[span.clone()].iter().position(|&x| x == 1.0).unwrap_or(0);
                    slots.push(hot as u16);
                }
                let label = table.labels[r];
                writer.push(&numeric, &slots, label, fold)?;
                if position_hash(position, scored_seed) < scored_below || scored_target == rows_read {
                    scored.numeric.extend(numeric.iter().map(|&x| stored_value(x)));
                    scored.slots.extend(
                        slots
                            .iter()
                            .zip(&row_layout.first_slots)
                            .map(|(&s, &f)| f + u32::from(s)),
                    );
                    scored.labels.push(label);
                    scored.folds.push(fold);
                }
            }
            encode_seconds += chunk_started.elapsed().as_secs_f64();
            watch.rows((kept + skipped) as u64)
        },
    )?;
    let store = writer.finish(window_blocks as usize)?;
    let pass = clock.elapsed().as_secs_f64();
    phases.push(("decoding", pass - encode_seconds));
    phases.push(("encoding and storing", encode_seconds));
    check_classes(&recipe, store.fold_counts(), &scored)?;
    let positives: usize = store.fold_counts().iter().map(|c| c.0).sum();
    let baseline = sums.iter().map(|&s| (s / kept.max(1) as f64) as f32).collect();
    let dataset = DatasetSummary {
        sha256,
        rows: rows_read as u64,
        columns: header_columns as u32,
        skipped_rows: skipped as u64,
        train_rows: store.rows() as u64,
        validation_rows: scored.rows() as u64,
        positive_rate: positives as f64 / kept.max(1) as f64,
        folds: members as u32,
        source: String::new(),
        objects: Vec::new(),
        streamed: Some(StreamedTraining {
            memory_budget: budget,
            encoder_sample_rows: sample_rows as u64,
            store_bytes: store.bytes(),
            spilled: store.spilled(),
        }),
    };
    Ok(PreparedTraining {
        recipe,
        encoder,
        dataset,
        data: scored,
        stream: Some(store),
        baseline,
        phases,
        device: limits.device.clone(),
    })
}

/// Both classes in the data, and in every fold, both among all rows and
/// among the scored ones.
fn check_classes(
    recipe: &Recipe,
    fold_counts: &[(usize, usize)],
    scored: &TrainingRows,
) -> Result<(), ModelError> {
    let (positives, rows) = fold_counts.iter().fold((0, 0), |(p, r), c| (p + c.0, r + c.1));
    if rows == 0 {
        return Err(ModelError::InvalidData(format!(
            "every row has a blank label in column {:?}",
            recipe.label_column
        )));
    }
    if positives == 0 {
        return Err(ModelError::InvalidData(format!(
            "positive label {:?} never occurs in label column {:?}",
            recipe.positive_label, recipe.label_column
        )));
    }
    if positives == rows {
        return Err(ModelError::InvalidData(format!(
            "label column {:?} has only one class ({:?}); training needs positive and negative rows",
            recipe.label_column,
            recipe.positive_label.trim()
        )));
    }
    let folds = fold_counts.len();
    let by = if recipe.split_key.is_empty() {
        String::new()
    } else {
        format!("split_key {:?}: ", recipe.split_key)
    };
    for (fold, &(positive, count)) in fold_counts.iter().enumerate() {
        let scored_of = |class: f32| {
            scored
                .folds
                .iter()
                .zip(&scored.labels)
                .any(|(&f, &l)| f == fold && l == class)
        };
        for (present, scored_present, name) in [
            (positive > 0, scored_of(1.0), "positive"),
            (count > positive, scored_of(0.0), "negative"),
        ] {
            if !present {
                return Err(ModelError::InvalidData(format!(
                    "{by}fold {} of {folds} holds no {name} row; the data is too small or too one-sided to \
                     split into {folds} folds",
                    fold + 1
                )));
            }
            if !scored_present {
                return Err(ModelError::MemoryBudget(format!(
                    "the rows scored out of fold within the server's --training-memory hold no {name} row of \
                     fold {} of {folds}; raise --training-memory",
                    fold + 1
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_hashes_spread_over_folds() {
        let mut counts = [0usize; 4];
        for position in 0..40_000u64 {
            counts[(position_hash(position, 7) % 4) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| (9_500..10_500).contains(&c)), "{counts:?}");
        assert_ne!(position_hash(1, 7), position_hash(1, 8));
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_bytes(512), "512 bytes");
        assert_eq!(human_bytes(3 << 20), "3.0 MiB");
        assert_eq!(human_bytes(1 << 30), "1.0 GiB");
    }
}
