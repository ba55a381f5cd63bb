//! Loaded model versions and where Predict finds them: each version's
//! encoder and network, loaded once from the registry (weights verified)
//! and shared by every call.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serval_registry::Registry;
use tokio::sync::OnceCell;

use crate::catalog::VersionDocuments;
use crate::encoder::Encoder;
use crate::error::ServalError;
use crate::mlp::Mlp;

/// A version ready to score rows.
#[derive(Debug)]
pub struct LoadedVersion {
    pub model: String,
    pub version: u32,
    pub encoder: Encoder,
    pub network: Arc<Mlp>,
}

impl LoadedVersion {
    async fn load(registry: &Registry, model: &str, version: u32) -> Result<Self, ServalError> {
        let record = registry.version(model, Some(version)).await?;
        let docs = VersionDocuments::read(&record)?;
        let weights = registry.weights(model, version).await?;
        let network = Mlp::from_safetensors(&weights)?;
        let encoder = Encoder::new(docs.encoder);
        if network.input_width() != encoder.width() {
            return Err(ServalError::FailedPrecondition(format!(
                "model {model:?} version {version}: network reads {} values but the encoder writes {}",
                network.input_width(),
                encoder.width()
            )));
        }
        Ok(LoadedVersion {
            model: model.to_string(),
            version,
            encoder,
            network: Arc::new(network),
        })
    }

    /// Scores encoded rows off the async runtime.
    pub async fn score(&self, rows: Vec<f32>) -> Result<Vec<f32>, ServalError> {
        let network = self.network.clone();
        tokio::task::spawn_blocking(move || network.predict(&rows))
            .await
            .map_err(|e| ServalError::Internal(format!("scoring task failed: {e}")))?
    }
}

type Slot = Arc<OnceCell<Arc<LoadedVersion>>>;

/// The loaded versions, and the latest version number of each model.
pub struct ModelStore {
    registry: Registry,
    loaded: RwLock<HashMap<(String, u32), Slot>>,
    latest: RwLock<HashMap<String, u32>>,
}

impl ModelStore {
    pub fn new(registry: Registry) -> Self {
        ModelStore {
            registry,
            loaded: RwLock::default(),
            latest: RwLock::default(),
        }
    }

    /// The loaded `version` of `model` (its latest when `None`), loading it
    /// on first use. Concurrent first uses share one load.
    pub async fn resolve(
        &self,
        model: &str,
        version: Option<u32>,
    ) -> Result<Arc<LoadedVersion>, ServalError> {
        let version = match version {
            Some(v) => v,
            None => self.latest_version(model).await?,
        };
        let key = (model.to_string(), version);
        let slot = {
            let loaded = self.loaded.read().expect("model store lock poisoned");
            loaded.get(&key).cloned()
        };
        let slot = match slot {
            Some(slot) => slot,
            None => self
                .loaded
                .write()
                .expect("model store lock poisoned")
                .entry(key)
                .or_default()
                .clone(),
        };
        // Correctness: a failed load is not cached, so a later call retries.
        let loaded = slot
            .get_or_try_init(|| async {
                LoadedVersion::load(&self.registry, model, version)
                    .await
                    .map(Arc::new)
            })
            .await?;
        Ok(loaded.clone())
    }

    async fn latest_version(&self, model: &str) -> Result<u32, ServalError> {
        if let Some(&v) = self.latest.read().expect("model store lock poisoned").get(model) {
            return Ok(v);
        }
        let record = self.registry.version(model, None).await?;
        self.note_registered(model, record.version);
        Ok(record.version)
    }

    /// Records a version registered by this server as its model's latest.
    pub fn note_registered(&self, model: &str, version: u32) {
        let mut latest = self.latest.write().expect("model store lock poisoned");
        let entry = latest.entry(model.to_string()).or_insert(version);
        *entry = (*entry).max(version);
    }
}
