//! Training: from a recipe and CSV bytes to a trained version, ready to
//! store.
//!
//! `recipe` holds and checks the settings, `pipeline` prepares the data and
//! packages the result, `trainer` runs the optimisation loop, `importance`
//! measures which columns the trained network relies on.

mod ensemble;
mod importance;
mod optimizer;
mod pipeline;
mod recipe;
mod selection;
mod trainer;

pub use pipeline::{
    DatasetSummary, PreparedTraining, SourceObject, TrainedVersion, prepare, prepare_files, train,
};
pub use recipe::{
    MAX_BATCH_SIZE, MAX_HIDDEN_LAYERS, MAX_LAYER_WIDTH, Recipe, ThresholdObjective, TrainingLimits, defaults,
};
pub use trainer::{EpochReport, LearningRateSchedule, LoopEvent};
