//! The encoded rows of a streamed training, compact and in blocks: numeric
//! inputs as f16, each categorical column's hot slot as a u16 within the
//! column, the label and the fold as a byte each. Blocks stay in memory
//! when they fit the budget's share and are spilled to an unnamed
//! temporary file otherwise; every epoch reads them in a seeded shuffled
//! order through a shuffle window of a bounded number of blocks.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};

use half::f16;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::trainer::{TrainingBatch, TrainingStream};
use crate::error::ModelError;

/// Rows in a block.
pub const BLOCK_ROWS: usize = 1024;

/// The largest magnitude an f16 holds; encoded values are clipped to it.
const F16_LIMIT: f32 = 65_504.0;

/// Where the blocks are kept.
enum Place {
    Memory(Vec<u8>),
    Disk(File),
}

/// One block: its rows and where its bytes start.
#[derive(Debug, Clone, Copy)]
struct Block {
    rows: usize,
    offset: u64,
}

/// The layout of a row.
#[derive(Debug, Clone)]
pub struct RowLayout {
    /// Numeric inputs.
    pub numeric: usize,
    /// Each categorical column's first one-hot slot among all slots.
    pub first_slots: Vec<u32>,
}

impl RowLayout {
    /// Bytes a row takes in the store.
    pub fn stored_bytes(&self) -> usize {
        2 * self.numeric + 2 * self.first_slots.len() + 2
    }

    /// Bytes a row takes once decoded for the loop.
    pub fn decoded_bytes(&self) -> usize {
        4 * self.numeric + 4 * self.first_slots.len() + 4 + std::mem::size_of::<usize>()
    }

    fn block_bytes(&self, rows: usize) -> usize {
        rows * self.stored_bytes()
    }
}

/// Writes rows into blocks.
pub struct RowStoreWriter {
    layout: RowLayout,
    sink: Sink,
    block: Vec<u8>,
    numeric: Vec<u16>,
    slots: Vec<u16>,
    labels: Vec<u8>,
    folds: Vec<u8>,
    blocks: Vec<Block>,
    written: u64,
    /// Per fold: (positive rows, rows).
    fold_counts: Vec<(usize, usize)>,
}

enum Sink {
    Memory(Vec<u8>),
    Disk(BufWriter<File>),
}

fn spill_error(error: std::io::Error) -> ModelError {
    ModelError::TemporaryStorage(format!(
        "cannot spill encoded training rows to a temporary file (in {}): {error}",
        std::env::temp_dir().display()
    ))
}

impl RowStoreWriter {
    /// A writer for rows of `layout` over `folds` folds, spilling to a
    /// temporary file when `spill`.
    pub fn new(layout: RowLayout, folds: usize, spill: bool) -> Result<Self, ModelError> {
        let sink = if spill {
            Sink::Disk(BufWriter::with_capacity(
                1 << 20,
                tempfile::tempfile().map_err(spill_error)?,
            ))
        } else {
            Sink::Memory(Vec::new())
        };
        Ok(RowStoreWriter {
            layout,
            sink,
            block: Vec::new(),
            numeric: Vec::new(),
            slots: Vec::new(),
            labels: Vec::new(),
            folds: Vec::new(),
            blocks: Vec::new(),
            written: 0,
            fold_counts: vec![(0, 0); folds],
        })
    }

    /// Adds a row: its numeric inputs, each categorical column's hot slot
    /// within the column, its label (1.0 positive) and fold.
    pub fn push(
        &mut self,
        numeric: &[f32],
        slots: &[u16],
        label: f32,
        fold: usize,
    ) -> Result<(), ModelError> {
        self.numeric.extend(
            numeric
                .iter()
                .map(|&x| f16::from_f32(x.clamp(-F16_LIMIT, F16_LIMIT)).to_bits()),
        );
        self.slots.extend_from_slice(slots);
        self.labels.push(u8::from(label == 1.0));
        self.folds.push(fold as u8);
        let counts = &mut self.fold_counts[fold];
        counts.0 += usize::from(label == 1.0);
        counts.1 += 1;
        if self.labels.len() == BLOCK_ROWS {
            self.finish_block()?;
        }
        Ok(())
    }

    fn finish_block(&mut self) -> Result<(), ModelError> {
        let rows = self.labels.len();
        if rows == 0 {
            return Ok(());
        }
        self.block.clear();
        self.block
            .extend(self.numeric.iter().flat_map(|x| x.to_le_bytes()));
        self.block.extend(self.slots.iter().flat_map(|x| x.to_le_bytes()));
        self.block.extend_from_slice(&self.labels);
        self.block.extend_from_slice(&self.folds);
        match &mut self.sink {
            Sink::Memory(bytes) => bytes.extend_from_slice(&self.block),
            Sink::Disk(file) => file.write_all(&self.block).map_err(spill_error)?,
        }
        self.blocks.push(Block {
            rows,
            offset: self.written,
        });
        self.written += self.block.len() as u64;
        self.numeric.clear();
        self.slots.clear();
        self.labels.clear();
        self.folds.clear();
        Ok(())
    }

    /// The store, read through a window of `window_blocks` blocks.
    pub fn finish(mut self, window_blocks: usize) -> Result<RowStore, ModelError> {
        self.finish_block()?;
        let place = match self.sink {
            Sink::Memory(mut bytes) => {
                bytes.shrink_to_fit();
                Place::Memory(bytes)
            }
            Sink::Disk(file) => Place::Disk(file.into_inner().map_err(|e| spill_error(e.into_error()))?),
        };
        Ok(RowStore {
            layout: self.layout,
            place,
            blocks: self.blocks,
            bytes: self.written,
            fold_counts: self.fold_counts,
            window_blocks: window_blocks.max(1),
        })
    }
}

/// The encoded rows, read an epoch at a time.
pub struct RowStore {
    layout: RowLayout,
    place: Place,
    blocks: Vec<Block>,
    bytes: u64,
    fold_counts: Vec<(usize, usize)>,
    window_blocks: usize,
}

/// Decoded rows of a window.
#[derive(Default)]
struct Decoded {
    numeric: Vec<f32>,
    slots: Vec<u32>,
    labels: Vec<f32>,
    folds: Vec<usize>,
}

impl RowStore {
    /// Bytes the rows take.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Whether the rows are in a temporary file.
    pub fn spilled(&self) -> bool {
        matches!(self.place, Place::Disk(_))
    }

    /// Per fold: (positive rows, rows).
    pub fn fold_counts(&self) -> &[(usize, usize)] {
        &self.fold_counts
    }

    /// Appends block `index`'s rows, decoded, to `into`.
    fn decode(&self, index: usize, raw: &mut Vec<u8>, into: &mut Decoded) -> Result<(), ModelError> {
        let block = self.blocks[index];
        let length = self.layout.block_bytes(block.rows);
        let bytes: &[u8] = match &self.place {
            Place::Memory(bytes) => &bytes[block.offset as usize..block.offset as usize + length],
            Place::Disk(file) => {
                raw.resize(length, 0);
                let mut file: &File = file;
                file.seek(SeekFrom::Start(block.offset)).map_err(spill_error)?;
                file.read_exact(raw).map_err(spill_error)?;
                raw
            }
        };
        let (n, c) = (self.layout.numeric, self.layout.first_slots.len());
        let (numeric, rest) = bytes.split_at(block.rows * n * 2);
        let (slots, rest) = rest.split_at(block.rows * c * 2);
        let (labels, folds) = rest.split_at(block.rows);
        into.numeric.extend(
            numeric
                .chunks_exact(2)
                .map(|b| f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32()),
        );
        for (i, local) in slots.chunks_exact(2).enumerate() {
            let first = self.layout.first_slots[i % c];
            into.slots
                .push(first + u32::from(u16::from_le_bytes([local[0], local[1]])));
        }
        into.labels.extend(labels.iter().map(|&l| f32::from(l)));
        into.folds.extend(folds.iter().map(|&f| usize::from(f)));
        Ok(())
    }
}

impl TrainingStream for RowStore {
    fn rows(&self) -> usize {
        self.fold_counts.iter().map(|c| c.1).sum()
    }

    fn member_counts(&self, members: usize) -> Vec<(usize, usize)> {
        let (positives, rows) = self
            .fold_counts
            .iter()
            .fold((0, 0), |(p, r), &(fp, fr)| (p + fp, r + fr));
        (0..members)
            .map(|m| {
                let (fp, fr) = self.fold_counts.get(m).copied().unwrap_or((0, 0));
                (positives - fp, rows - fr)
            })
            .collect()
    }

    fn epoch(
        &mut self,
        batch_size: usize,
        rng: &mut ChaCha8Rng,
        visit: &mut dyn FnMut(&TrainingBatch<'_>) -> Result<(), ModelError>,
    ) -> Result<(), ModelError> {
        let (n, c) = (self.layout.numeric, self.layout.first_slots.len());
        let mut order: Vec<usize> = (0..self.blocks.len()).collect();
        order.shuffle(rng);
        let mut raw = Vec::new();
        let mut window = Decoded::default();
        let mut batch = Decoded::default();
        let mut rows: Vec<usize> = Vec::new();
        for blocks in order.chunks(self.window_blocks) {
            window.numeric.clear();
            window.slots.clear();
            window.labels.clear();
            window.folds.clear();
            for &index in blocks {
                self.decode(index, &mut raw, &mut window)?;
            }
            rows.clear();
            rows.extend(0..window.labels.len());
            rows.shuffle(rng);
            for chosen in rows.chunks(batch_size) {
                batch.numeric.clear();
                batch.slots.clear();
                batch.labels.clear();
                batch.folds.clear();
                for &r in chosen {
                    batch
                        .numeric
                        .extend_from_slice(&window.numeric[r * n..(r + 1) * n]);
                    batch.slots.extend_from_slice(&window.slots[r * c..(r + 1) * c]);
                    batch.labels.push(window.labels[r]);
                    batch.folds.push(window.folds[r]);
                }
                visit(&TrainingBatch {
                    rows: chosen.len(),
                    numeric: &batch.numeric,
                    slots: &batch.slots,
                    labels: &batch.labels,
                    folds: &batch.folds,
                })?;
            }
        }
        Ok(())
    }
}

/// An f32 as the store keeps it.
pub fn stored_value(x: f32) -> f32 {
    f16::from_f32(x.clamp(-F16_LIMIT, F16_LIMIT)).to_f32()
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn epoch_rows(store: &mut RowStore, seed: u64) -> Vec<(Vec<f32>, Vec<u32>, f32, usize)> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut seen = Vec::new();
        store
            .epoch(7, &mut rng, &mut |batch| {
                for r in 0..batch.rows {
                    seen.push((
                        batch.numeric[r * 2..(r + 1) * 2].to_vec(),
                        batch.slots[r..r + 1].to_vec(),
                        batch.labels[r],
                        batch.folds[r],
                    ));
                }
                Ok(())
            })
            .unwrap();
        seen
    }

    #[test]
    fn every_row_comes_back_once_an_epoch_the_same_from_memory_or_disk() {
        let layout = RowLayout {
            numeric: 2,
            first_slots: vec![3],
        };
        // Whole numbers up to 2048 are exact in f16.
        let rows = BLOCK_ROWS + 17;
        let mut stores = Vec::new();
        for spill in [false, true] {
            let mut writer = RowStoreWriter::new(layout.clone(), 4, spill).unwrap();
            for r in 0..rows {
                let x = r as f32;
                writer
                    .push(
                        &[x, -x],
                        &[(r % 5) as u16],
                        f32::from(u8::from(r.is_multiple_of(3))),
                        r % 4,
                    )
                    .unwrap();
            }
            let store = writer.finish(1).unwrap();
            assert_eq!(store.spilled(), spill);
            assert_eq!(store.rows(), rows);
            stores.push(store);
        }
        let from_memory = epoch_rows(&mut stores[0], 5);
        assert_eq!(from_memory, epoch_rows(&mut stores[1], 5));
        assert_ne!(
            from_memory,
            epoch_rows(&mut stores[0], 6),
            "the order follows the seed"
        );
        let mut values: Vec<f32> = from_memory.iter().map(|row| row.0[0]).collect();
        values.sort_by(f32::total_cmp);
        let expected: Vec<f32> = (0..rows).map(|r| r as f32).collect();
        assert_eq!(values, expected, "each row once");
        for (numeric, slots, label, fold) in &from_memory {
            let r = numeric[0] as usize;
            assert_eq!(numeric[1], -(r as f32));
            assert_eq!(slots[0], 3 + (r % 5) as u32);
            assert_eq!(*label, f32::from(u8::from(r.is_multiple_of(3))));
            assert_eq!(*fold, r % 4);
        }
        // Member m learns from the rows outside fold m.
        let counts = stores[0].member_counts(4);
        assert_eq!(counts[1].1, rows - (0..rows).filter(|r| r % 4 == 1).count());
    }
}
