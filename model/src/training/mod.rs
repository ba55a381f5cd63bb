//! Training: from a recipe and CSV bytes to a trained version, ready to
//! store.
//!
//! `recipe` holds and checks the settings, `pipeline` prepares the data and
//! packages the result, `trainer` runs the optimisation loop, `importance`
//! measures which columns the trained network relies on, `preparation`
//! reports where a preparation stands and carries its cancel flag.

mod device;
mod ensemble;
mod importance;
mod optimizer;
mod pipeline;
pub mod preparation;
mod recipe;
mod row_store;
mod selection;
mod streamed;
mod trainer;

pub use device::{Device, DeviceError, TrainingDevice};
pub use pipeline::{
    DatasetSummary, PreparedTraining, SourceObject, StreamedTraining, TrainedVersion, prepare, prepare_files,
    prepare_shared, train,
};
pub use preparation::{PreparationProgress, PreparationWatch};
pub use recipe::{
    DEFAULT_TRAINING_MEMORY, MAX_BATCH_SIZE, MAX_HIDDEN_LAYERS, MAX_LAYER_WIDTH, Recipe, ThresholdObjective,
    TrainingLimits, defaults,
};
pub use streamed::{TrainingPath, human_bytes, in_memory_estimate, prepare_streamed, training_path};
pub use trainer::{EpochReport, LearningRateSchedule, LoopEvent};
