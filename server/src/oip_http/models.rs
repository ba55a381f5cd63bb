//! Model metadata and readiness for the Open Inference Protocol: a
//! version's original columns as input tensors (from the documents stored
//! with it, as `serval models show` reports them), the outputs every
//! version answers with, and whether a version can serve (it loads).

use serde_json::{Value, json};
use serval_proto::v1 as pb;
use serval_registry::{ModelRecord, VersionRecord};
use tonic::Status;

use super::routes::ModelPath;
use super::tensors::{LABEL, PROBABILITY};
use crate::error::ServalError;
use crate::service::ServiceState;

/// `GET /v2/models/{name}[/versions/{v}]`.
pub async fn metadata(state: &ServiceState, path: &ModelPath) -> Result<Value, Status> {
    let record = model(state, &path.name).await?;
    let version = chosen_version(state, &record, path.version)?;
    let described = crate::catalog::version_to_proto(version)?;
    let inputs: Vec<Value> = described
        .columns
        .iter()
        .map(|column| {
            json!({
                "name": column.name,
                "datatype": datatype(column.column_type),
                "shape": [-1],
            })
        })
        .collect();
    Ok(json!({
        "name": record.name,
        "versions": record.versions.iter().map(|v| v.version.to_string()).collect::<Vec<_>>(),
        "platform": "serval",
        "inputs": inputs,
        "outputs": [
            {"name": PROBABILITY, "datatype": "FP32", "shape": [-1]},
            {"name": LABEL, "datatype": "INT32", "shape": [-1]},
        ],
        "parameters": {
            "version": described.version.to_string(),
            "input_width": described.input_width,
            "threshold": described.metrics.as_ref().map(|m| m.threshold),
            "note": format!(
                "inputs: one per column, shape [N]; or instead a single FP32 input of shape \
                 [N, {}] holding rows already encoded",
                described.input_width
            ),
        },
    }))
}

/// `GET /v2/models/{name}[/versions/{v}]/ready`: loads the version (as its
/// first call would) and says which it is.
pub async fn ready(state: &ServiceState, path: &ModelPath) -> Result<Value, Status> {
    crate::service::check_model(&path.name)?;
    let version = match path.version {
        Some(version) => version,
        None => {
            let record = model(state, &path.name).await?;
            chosen_version(state, &record, None)?.version
        }
    };
    state.models.resolve(&path.name, version).await?;
    Ok(json!({"name": path.name, "version": version.to_string(), "ready": true}))
}

async fn model(state: &ServiceState, name: &str) -> Result<ModelRecord, Status> {
    crate::service::check_model(name)?;
    state
        .registry
        .list_models(Some(name))
        .await
        .map_err(ServalError::from)?
        .into_iter()
        .next()
        .ok_or_else(|| ServalError::NotFound(format!("model {name:?} not found")).into())
}

/// The version named, or the one an unpinned call is served by when no
/// canary is drawn: the policy's stable version, else the latest.
fn chosen_version<'a>(
    state: &ServiceState,
    record: &'a ModelRecord,
    version: Option<u32>,
) -> Result<&'a VersionRecord, Status> {
    let find = |v: u32| record.versions.iter().find(|r| r.version == v);
    if let Some(version) = version {
        return find(version).ok_or_else(|| {
            ServalError::NotFound(format!("model {:?} has no version {version}", record.name)).into()
        });
    }
    state
        .routing
        .state(&record.name)
        .and_then(|s| s.policy.as_ref().map(|p| p.stable_version).or(s.latest_version))
        .and_then(find)
        .or_else(|| record.versions.last())
        .ok_or_else(|| ServalError::NotFound(format!("model {:?} has no versions", record.name)).into())
}

/// The datatype a column's values are sent as.
fn datatype(column_type: i32) -> &'static str {
    match pb::ColumnType::try_from(column_type).unwrap_or(pb::ColumnType::Unspecified) {
        pb::ColumnType::Numeric => "FP32",
        pb::ColumnType::Boolean => "BOOL",
        pb::ColumnType::Categorical | pb::ColumnType::Unspecified => "BYTES",
    }
}
