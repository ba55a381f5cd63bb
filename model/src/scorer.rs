//! [`BatchScorer`]: what a batching layer needs of a model — score a stack
//! of encoded rows in one pass, and explain some of them in the same job.
//! The batching layer is generic over it, so it knows nothing of networks
//! or explanations.

use crate::ModelError;

/// Scores stacked, encoded rows in one pass. Called on a compute thread,
/// never on an async runtime's.
pub trait BatchScorer: Send + Sync + 'static {
    /// One row's explanation.
    type Explanation: Send + 'static;

    /// Values per row.
    fn width(&self) -> usize;

    /// Scores `rows` (row-major, a whole number of rows): one per row.
    fn score(&self, rows: &[f32]) -> Result<Vec<f32>, ModelError>;

    /// Explains `rows`: one explanation per row. Runs in the same compute
    /// job as the batch's pass, over the rows whose callers asked.
    fn explain(&self, rows: &[f32]) -> Result<Vec<Self::Explanation>, ModelError> {
        let _ = rows;
        Err(ModelError::ExplanationsUnavailable)
    }
}
