//! The documents the server stores with each version, and their protocol
//! form: what goes into the registry and what ListModels shows.

use serval_model::dataset::{ColumnKind, DataFormat};
use serval_model::documents::{DocumentsJson, VersionDocuments};
use serval_model::encoder::Transform;
use serval_model::evaluation::Evaluation;
use serval_model::training::{
    DatasetSummary, EpochReport, LearningRateSchedule, Recipe, ThresholdObjective, TrainedVersion,
};
use serval_proto::v1 as pb;
use serval_registry::{
    AuditEvent, JobRecord, JobState, ModelRecord, NewVersion, RolloutState, ServingAt, TrafficPolicy,
    VersionRecord,
};

use crate::error::ServalError;

/// The registry write for a freshly trained version of `model`.
pub fn new_version(model: &str, trained: &TrainedVersion, actor: &str) -> Result<NewVersion, ServalError> {
    let json = VersionDocuments::of(trained).to_json()?;
    Ok(NewVersion {
        model: model.to_string(),
        recipe: json.recipe,
        encoder: json.encoder,
        metrics: json.metrics,
        dataset: json.dataset,
        weights: trained.weights.clone(),
        actor: actor.to_string(),
    })
}

/// A stored version's typed documents; the error names the version.
pub fn documents(record: &VersionRecord) -> Result<VersionDocuments, ServalError> {
    VersionDocuments::from_json(&DocumentsJson {
        recipe: record.recipe.clone(),
        encoder: record.encoder.clone(),
        metrics: record.metrics.clone(),
        dataset: record.dataset.clone(),
    })
    .map_err(|source| ServalError::Version {
        model: record.model.clone(),
        version: record.version,
        source,
    })
}

pub fn timestamp(at: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

fn column_type(kind: ColumnKind) -> pb::ColumnType {
    match kind {
        ColumnKind::Numeric => pb::ColumnType::Numeric,
        ColumnKind::Categorical => pb::ColumnType::Categorical,
        ColumnKind::Boolean => pb::ColumnType::Boolean,
    }
}

/// The protocol view of a stored version.
pub fn version_to_proto(record: &VersionRecord) -> Result<pb::ModelVersion, ServalError> {
    let docs = documents(record)?;
    let columns: Vec<pb::FeatureColumn> = docs
        .encoder
        .columns
        .iter()
        .map(|c| pb::FeatureColumn {
            name: c.name.clone(),
            column_type: column_type(c.transform.kind()) as i32,
            width: c.transform.width() as u32,
            categories: match &c.transform {
                Transform::Categorical { categories } => categories.clone(),
                Transform::Boolean {
                    true_token,
                    false_token,
                    ..
                } => vec![true_token.clone(), false_token.clone()],
                Transform::Numeric { .. } | Transform::Quantile { .. } => Vec::new(),
            },
            encoding: describe_encoding(&c.transform),
        })
        .collect();
    let stored = &docs.metrics;
    let metrics = |e: &Evaluation| pb::Metrics {
        auc: e.auc,
        accuracy: e.accuracy,
        precision: e.precision,
        recall: e.recall,
        f1: e.f1,
        log_loss: e.log_loss,
        threshold: e.threshold,
        best_epoch: stored.best_epoch as u32,
        epochs_run: stored.history.len() as u32,
    };
    Ok(pb::ModelVersion {
        model: record.model.clone(),
        version: record.version,
        created_at: Some(timestamp(record.created_at)),
        metrics: Some(metrics(&stored.validation)),
        test_metrics: stored.test.as_ref().map(metrics),
        dataset: Some(dataset_to_proto(&docs.dataset, &docs.recipe)),
        hyper_parameters: Some(hyper_parameters(&docs.recipe)),
        seed: docs.recipe.seed,
        label_column: docs.recipe.label_column.clone(),
        positive_label: docs.recipe.positive_label.clone(),
        input_width: columns.iter().map(|c| c.width).sum(),
        columns,
        weights_sha256: record.weights_sha256.clone(),
    })
}

/// The recipe's hyper-parameters as the protocol reports them.
pub fn hyper_parameters(recipe: &Recipe) -> pb::HyperParameters {
    pb::HyperParameters {
        hidden_layers: recipe.hidden_layers.iter().map(|&w| w as u32).collect(),
        learning_rate: Some(recipe.learning_rate),
        batch_size: Some(recipe.batch_size as u32),
        epochs: Some(recipe.epochs as u32),
        validation_fraction: Some(recipe.validation_fraction),
        patience: Some(recipe.patience as u32),
        l2: Some(recipe.l2),
        dropout: Some(recipe.dropout),
        class_weighting: Some(recipe.class_weighting),
        learning_rate_schedule: match recipe.learning_rate_schedule {
            LearningRateSchedule::Constant => pb::LearningRateSchedule::Constant,
            LearningRateSchedule::Cosine => pb::LearningRateSchedule::Cosine,
        } as i32,
        target_precision: match recipe.threshold {
            ThresholdObjective::Precision(p) => Some(p),
            _ => None,
        },
        target_recall: match recipe.threshold {
            ThresholdObjective::Recall(r) => Some(r),
            _ => None,
        },
    }
}

/// A column's encoding in words, for reports and `serval models`.
fn describe_encoding(transform: &Transform) -> String {
    match transform {
        Transform::Quantile { median, quantiles } => format!(
            "normal quantile transform over {} training quantiles; blanks -> median {median}",
            quantiles.len()
        ),
        Transform::Numeric {
            median,
            log1p,
            mean,
            std,
        } => format!(
            "{}standardised (mean {mean:.4}, std {std:.4}); blanks -> median {median}",
            if *log1p { "log1p, then " } else { "" }
        ),
        Transform::Categorical { categories } => {
            format!("one-hot over {} values + other", categories.len())
        }
        Transform::Boolean {
            true_token,
            false_token,
            fill,
        } => format!("1 = {true_token}, 0 = {false_token}; blanks -> {fill:.4}"),
    }
}

pub fn epoch_to_proto(report: &EpochReport) -> pb::EpochProgress {
    pb::EpochProgress {
        epoch: report.epoch as u32,
        epochs: report.epochs as u32,
        train_loss: report.train_loss,
        validation_loss: report.validation_loss,
        validation_auc: report.validation_auc,
        elapsed_seconds: report.elapsed_seconds,
        learning_rate: report.learning_rate,
    }
}

/// Everything a report draws about a stored version.
pub fn report_to_proto(record: &VersionRecord) -> Result<pb::VersionReport, ServalError> {
    let docs = documents(record)?;
    let point = |p: &[f64; 3]| pb::CurvePoint {
        x: p[0],
        y: p[1],
        threshold: p[2],
    };
    let curves = &docs.metrics.curves;
    let c = curves.confusion;
    Ok(pb::VersionReport {
        version: Some(version_to_proto(record)?),
        history: docs.metrics.history.iter().map(epoch_to_proto).collect(),
        roc: curves.roc.iter().map(point).collect(),
        precision_recall: curves.precision_recall.iter().map(point).collect(),
        calibration: curves
            .calibration
            .iter()
            .map(|b| pb::CalibrationBin {
                mean_predicted: b[0],
                fraction_positive: b[1],
                rows: b[2] as u64,
            })
            .collect(),
        confusion: Some(pb::ConfusionMatrix {
            true_positives: c.true_positives,
            false_positives: c.false_positives,
            true_negatives: c.true_negatives,
            false_negatives: c.false_negatives,
            threshold: docs.metrics.validation.threshold,
        }),
        importance: docs
            .metrics
            .importance
            .iter()
            .map(|(column, importance)| pb::FeatureImportance {
                column: column.clone(),
                importance: *importance,
            })
            .collect(),
    })
}

/// What the version learned from, with how the recipe read and split it.
pub fn dataset_to_proto(d: &DatasetSummary, recipe: &Recipe) -> pb::DatasetSummary {
    pb::DatasetSummary {
        sha256: d.sha256.clone(),
        rows: d.rows,
        columns: d.columns,
        skipped_rows: d.skipped_rows,
        train_rows: d.train_rows,
        validation_rows: d.validation_rows,
        positive_rate: d.positive_rate,
        folds: d.folds,
        source: d.source.clone(),
        objects: d
            .objects
            .iter()
            .map(|o| pb::SourceObject {
                path: o.path.clone(),
                size: o.size,
                e_tag: o.e_tag.clone(),
            })
            .collect(),
        split_key: recipe.split_key.clone(),
        streamed: d.streamed.as_ref().map(|s| pb::StreamedTraining {
            memory_budget: s.memory_budget,
            encoder_sample_rows: s.encoder_sample_rows,
            store_bytes: s.store_bytes,
            spilled: s.spilled,
        }),
        format: match recipe.format {
            DataFormat::Csv => pb::DataFormat::Csv,
            DataFormat::Parquet => pb::DataFormat::Parquet,
            DataFormat::Arrow => pb::DataFormat::Arrow,
        } as i32,
    }
}

pub fn model_to_proto(record: &ModelRecord) -> Result<pb::Model, ServalError> {
    Ok(pb::Model {
        name: record.name.clone(),
        created_at: Some(timestamp(record.created_at)),
        versions: record
            .versions
            .iter()
            .map(version_to_proto)
            .collect::<Result<_, _>>()?,
    })
}

pub fn policy_to_proto(policy: &TrafficPolicy) -> pb::TrafficPolicy {
    pb::TrafficPolicy {
        stable_version: policy.stable_version,
        canary_version: policy.canary_version,
        canary_percent: policy.canary_percent,
        revision: policy.revision,
        updated_at: Some(timestamp(policy.updated_at)),
        shadow_version: policy.shadow_version,
        shadow_percent: policy.shadow_percent,
    }
}

pub fn rollout_state_to_proto(state: &RolloutState) -> pb::RolloutState {
    pb::RolloutState {
        model: state.model.clone(),
        policy: state.policy.as_ref().map(policy_to_proto),
        aliases: state
            .aliases
            .iter()
            .map(|a| pb::AliasInfo {
                name: a.name.clone(),
                version: a.version,
                updated_at: Some(timestamp(a.updated_at)),
            })
            .collect(),
        latest_version: state.latest_version.unwrap_or(0),
    }
}

pub fn audit_event_to_proto(event: &AuditEvent) -> pb::AuditEvent {
    pb::AuditEvent {
        id: event.id,
        at: Some(timestamp(event.at)),
        actor: event.actor.clone(),
        model: event.model.clone(),
        kind: event.kind.clone(),
        before_json: event.before.to_string(),
        after_json: event.after.to_string(),
        reason: event.reason.clone(),
    }
}

pub fn serving_at_to_proto(at: prost_types::Timestamp, serving: &ServingAt) -> pb::ServingAt {
    pb::ServingAt {
        at: Some(at),
        policy: serving.policy.as_ref().map(policy_to_proto),
        latest_version: serving.latest_version.unwrap_or(0),
        default_version: serving
            .policy
            .as_ref()
            .map(|p| p.stable_version)
            .or(serving.latest_version)
            .unwrap_or(0),
    }
}

pub fn job_to_proto(job: &JobRecord) -> pb::TrainingJob {
    let end = job.finished_at.unwrap_or_else(chrono::Utc::now);
    pb::TrainingJob {
        id: job.id.clone(),
        model: job.model.clone(),
        state: match job.state {
            JobState::Running => pb::JobState::Running,
            JobState::Succeeded => pb::JobState::Succeeded,
            JobState::Failed => pb::JobState::Failed,
            JobState::Cancelled => pb::JobState::Cancelled,
        } as i32,
        started_at: Some(timestamp(job.started_at)),
        finished_at: job.finished_at.map(timestamp),
        duration_seconds: (end - job.started_at).num_milliseconds().max(0) as f64 / 1000.0,
        rows: job.rows,
        epochs_done: job.epochs_done,
        epochs: job.epochs,
        version: job.version.unwrap_or(0),
        error: job.error.clone().unwrap_or_default(),
        actor: job.actor.clone(),
        replica: job.replica.clone(),
    }
}
