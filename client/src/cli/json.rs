//! JSON renderings of protocol messages for `--json` output.

use serde_json::{Value, json};
use serval_client::proto as pb;

pub fn timestamp(ts: Option<&prost_types::Timestamp>) -> Value {
    ts.and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos as u32))
        .map(|t| Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)))
        .unwrap_or(Value::Null)
}

/// A version's metrics: `metrics` on its validation rows (which chose the
/// epoch and threshold), `test_metrics` on rows that chose nothing (null
/// for versions trained before they were kept).
pub fn metrics(m: Option<&pb::Metrics>) -> Value {
    let Some(m) = m.copied() else {
        return Value::Null;
    };
    json!({
        "auc": m.auc,
        "accuracy": m.accuracy,
        "precision": m.precision,
        "recall": m.recall,
        "f1": m.f1,
        "log_loss": m.log_loss,
        "threshold": m.threshold,
    })
}

pub fn dataset(d: Option<&pb::DatasetSummary>) -> Value {
    let d = d.cloned().unwrap_or_default();
    let mut value = json!({
        "sha256": d.sha256,
        "rows": d.rows,
        "columns": d.columns,
        "skipped_rows": d.skipped_rows,
        "train_rows": d.train_rows,
        "validation_rows": d.validation_rows,
        "positive_rate": d.positive_rate,
        "folds": d.folds,
        "split_key": d.split_key,
        "format": d.format().as_str_name().trim_start_matches("DATA_FORMAT_").to_ascii_lowercase(),
        "source": d.source,
        "objects": d.objects.iter().map(|o| json!({"path": o.path, "size": o.size, "e_tag": o.e_tag})).collect::<Vec<_>>(),
    });
    if let Some(s) = &d.streamed {
        value["streamed"] = json!({
            "memory_budget": s.memory_budget,
            "encoder_sample_rows": s.encoder_sample_rows,
            "store_bytes": s.store_bytes,
            "spilled": s.spilled,
        });
    }
    value
}

pub fn version(v: &pb::ModelVersion) -> Value {
    let hp = v.hyper_parameters.clone().unwrap_or_default();
    json!({
        "model": v.model,
        "version": v.version,
        "created_at": timestamp(v.created_at.as_ref()),
        "metrics": metrics(v.metrics.as_ref()),
        "test_metrics": metrics(v.test_metrics.as_ref()),
        "dataset": dataset(v.dataset.as_ref()),
        "hyper_parameters": {
            "hidden_layers": hp.hidden_layers,
            "learning_rate": hp.learning_rate,
            "batch_size": hp.batch_size,
            "epochs": hp.epochs,
            "validation_fraction": hp.validation_fraction,
        },
        "seed": v.seed,
        "label_column": v.label_column,
        "positive_label": v.positive_label,
        "input_width": v.input_width,
        "columns": v.columns.iter().map(|c| json!({
            "name": c.name,
            "type": pb::ColumnType::try_from(c.column_type).map(|t| t.as_str_name()).unwrap_or("UNKNOWN"),
            "width": c.width,
            "categories": c.categories,
        })).collect::<Vec<_>>(),
        "weights_sha256": v.weights_sha256,
    })
}

pub fn model(m: &pb::Model) -> Value {
    json!({
        "name": m.name,
        "created_at": timestamp(m.created_at.as_ref()),
        "versions": m.versions.iter().map(version).collect::<Vec<_>>(),
    })
}

pub fn arm_name(arm: i32) -> &'static str {
    match pb::Arm::try_from(arm).unwrap_or(pb::Arm::Unspecified) {
        pb::Arm::Unspecified => "",
        pb::Arm::Pinned => "pinned",
        pb::Arm::Alias => "alias",
        pb::Arm::Stable => "stable",
        pb::Arm::Canary => "canary",
        pb::Arm::Latest => "latest",
    }
}

pub fn policy(p: Option<&pb::TrafficPolicy>) -> Value {
    match p {
        None => Value::Null,
        Some(p) => json!({
            "stable_version": p.stable_version,
            "canary_version": p.canary_version,
            "canary_percent": p.canary_percent,
            "revision": p.revision,
            "updated_at": timestamp(p.updated_at.as_ref()),
            "shadow_version": p.shadow_version,
            "shadow_percent": p.shadow_percent,
        }),
    }
}

pub fn rollout_state(s: &pb::RolloutState) -> Value {
    json!({
        "model": s.model,
        "policy": policy(s.policy.as_ref()),
        "aliases": s.aliases.iter().map(|a| json!({
            "name": a.name,
            "version": a.version,
            "updated_at": timestamp(a.updated_at.as_ref()),
        })).collect::<Vec<_>>(),
        "latest_version": s.latest_version,
    })
}

pub fn audit_event(e: &pb::AuditEvent) -> Value {
    let parse = |text: &str| serde_json::from_str::<Value>(text).unwrap_or(Value::Null);
    json!({
        "id": e.id,
        "at": timestamp(e.at.as_ref()),
        "actor": e.actor,
        "model": e.model,
        "kind": e.kind,
        "before": parse(&e.before_json),
        "after": parse(&e.after_json),
        "reason": e.reason,
    })
}

pub fn version_stats(v: &pb::VersionStats) -> Value {
    json!({
        "version": v.version,
        "arm": arm_name(v.arm),
        "requests": v.requests,
        "errors": v.errors,
        "errors_by_code": v.errors_by_code,
        "error_rate": v.error_rate,
        "p50_ms": v.p50_ms,
        "p99_ms": v.p99_ms,
        "mean_score": v.mean_score,
        "score_histogram": v.score_histogram,
        "replicas": v.replicas,
        "online": v.online.as_ref().map(online_quality),
        "shadow": v.shadow.as_ref().map(online_quality),
        "awaiting_outcomes": v.awaiting_outcomes,
    })
}

/// `GetLiveStats`: the fleet's figures per version, and each replica's.
pub fn live_stats(stats: &pb::GetLiveStatsResponse) -> Value {
    let versions = |versions: &[pb::VersionStats]| versions.iter().map(version_stats).collect::<Vec<_>>();
    json!({
        "window_seconds": stats.window_seconds,
        "stale_after_seconds": stats.stale_after_seconds,
        "versions": versions(&stats.versions),
        "replicas": stats.replicas.iter().map(|r| json!({
            "replica": r.replica,
            "answering": r.answering,
            "stale": r.stale,
            "last_published": timestamp(r.last_published.as_ref()),
            "versions": versions(&r.versions),
        })).collect::<Vec<_>>(),
    })
}

pub fn online_quality(q: &pb::OnlineQuality) -> Value {
    json!({
        "outcomes": q.outcomes,
        "positives": q.positives,
        "auc": q.auc,
        "log_loss": q.log_loss,
        "mean_score": q.mean_score,
        "positive_rate": q.positive_rate,
        "calibration": q.calibration.iter().map(|b| json!({
            "mean_predicted": b.mean_predicted,
            "fraction_positive": b.fraction_positive,
            "rows": b.rows,
        })).collect::<Vec<_>>(),
    })
}
