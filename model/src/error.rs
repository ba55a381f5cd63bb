//! [`ModelError`]: every way the model crate fails, named by cause. The
//! server decides the status code each becomes, in one place.

/// What went wrong, by cause.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The training data cannot be used; the message names the line,
    /// column or count at fault.
    #[error("{0}")]
    InvalidData(String),
    /// A training setting is out of range or contradicts another; the
    /// message names the setting.
    #[error("{0}")]
    InvalidSetting(String),
    /// A record to score lacks a column the model reads.
    #[error("records[{record}]: missing column {column:?}")]
    MissingColumn { record: usize, column: String },
    /// A record's value cannot be encoded for its column.
    #[error("records[{record}]: column {column:?}: {reason}")]
    InvalidCell {
        record: usize,
        column: String,
        reason: String,
    },
    /// An already-encoded row has the wrong width or a non-finite value.
    #[error("dense_rows[{row}]: {reason}")]
    InvalidDenseRow { row: usize, reason: String },
    /// The loss stopped being finite.
    #[error("training diverged in epoch {epoch} (loss {loss}); lower the learning rate")]
    Diverged { epoch: usize, loss: f64 },
    /// Training was asked to stop.
    #[error("training was cancelled")]
    Cancelled,
    /// Stored weights do not describe a network this crate can run.
    #[error("stored weights are unusable: {0}")]
    CorruptWeights(String),
    /// A stored document cannot be read; the reason quotes no stored values.
    #[error("stored {document} is unreadable: {reason}")]
    CorruptDocument { document: &'static str, reason: String },
    /// The scorer asked for explanations cannot give them.
    #[error("this predictor cannot explain its scores")]
    ExplanationsUnavailable,
    /// Rows handed over do not fit the network or its baseline: a bug in
    /// the caller, not bad input.
    #[error("{0}")]
    ShapeMismatch(String),
    /// The training memory budget cannot hold what a streamed training
    /// needs at the least; the message names the setting and the need.
    #[error("{0}")]
    MemoryBudget(String),
    /// The temporary file encoded rows spill to cannot be written or read.
    #[error("{0}")]
    TemporaryStorage(String),
    /// The tensor library failed.
    #[error("tensor computation failed: {0}")]
    Compute(#[from] candle_core::Error),
}
