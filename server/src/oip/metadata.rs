//! Model metadata and readiness, for both transports: a version's original
//! columns as input tensors (from the documents stored with it, as
//! `serval models show` reports them), the outputs every version answers
//! with, and whether a version can serve (it loads).

use serval_registry::{ModelRecord, VersionRecord};
use tonic::Status;

use super::tensors::{LABEL, PROBABILITY, column_datatype};
use crate::error::ServalError;
use crate::service::ServiceState;

/// The platform a model's metadata names.
pub const PLATFORM: &str = "serval";

/// An input or output tensor as metadata describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorMetadata {
    pub name: String,
    pub datatype: &'static str,
    /// -1: any number of rows.
    pub shape: Vec<i64>,
}

/// A model's metadata, for one of its versions.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelMetadata {
    pub name: String,
    pub versions: Vec<String>,
    pub inputs: Vec<TensorMetadata>,
    pub outputs: Vec<TensorMetadata>,
    /// The version described.
    pub version: u32,
    /// The width of an encoded row, for the dense form.
    pub input_width: u32,
    pub threshold: Option<f64>,
}

impl ModelMetadata {
    /// How the inputs may be sent, in words.
    pub fn note(&self) -> String {
        format!(
            "inputs: one per column, shape [N]; or instead a single FP32 input of shape [N, {}] holding \
             rows already encoded",
            self.input_width
        )
    }
}

/// The metadata of `name`'s `version`, or of the version an unpinned call
/// is served by when no canary is drawn.
pub async fn metadata(
    state: &ServiceState,
    name: &str,
    version: Option<u32>,
) -> Result<ModelMetadata, Status> {
    let record = model(state, name).await?;
    let chosen = chosen_version(state, &record, version)?;
    let described = crate::catalog::version_to_proto(chosen)?;
    let tensor = |name: &str, datatype| TensorMetadata {
        name: name.to_string(),
        datatype,
        shape: vec![-1],
    };
    Ok(ModelMetadata {
        versions: record.versions.iter().map(|v| v.version.to_string()).collect(),
        inputs: described
            .columns
            .iter()
            .map(|column| tensor(&column.name, column_datatype(column.column_type)))
            .collect(),
        outputs: vec![tensor(PROBABILITY, "FP32"), tensor(LABEL, "INT32")],
        version: described.version,
        input_width: described.input_width,
        threshold: described.metrics.as_ref().map(|m| m.threshold),
        name: record.name,
    })
}

/// Loads `name`'s `version` (or the one an unpinned call is served by), as
/// its first call would, and says which it is.
pub async fn ready(state: &ServiceState, name: &str, version: Option<u32>) -> Result<u32, Status> {
    crate::service::check_model(name)?;
    let version = match version {
        Some(version) => version,
        None => {
            let record = model(state, name).await?;
            chosen_version(state, &record, None)?.version
        }
    };
    state.models.resolve(name, version).await?;
    Ok(version)
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
