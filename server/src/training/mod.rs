//! Training: from a spec and CSV bytes to a version ready to register.
//!
//! `recipe` resolves and checks the spec, `pipeline` prepares the data and
//! packages the result, `trainer` runs the optimisation loop, `importance`
//! measures which columns the trained network relies on.

mod importance;
mod optimizer;
mod pipeline;
mod recipe;
mod trainer;

pub use pipeline::{DatasetSummary, PreparedTraining, TrainedVersion, prepare, train};
pub use recipe::{Recipe, ThresholdObjective, TrainingLimits};
pub use trainer::{EpochReport, LearningRateSchedule, LoopEvent};
