//! Loaded model versions and where Predict finds them: each version's
//! encoder, network and batching queue, loaded once from the registry
//! (weights verified) and shared by every call; and, when the operator asks
//! for it, versions that served no call for a while unloaded (loaded again
//! by their next call).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use serval_registry::Registry;
use tokio::sync::OnceCell;
use tower::Layer;

use crate::batching::{
    BatchConfig, BatchLayer, BatchMetricsFamily, Batcher, ComputePool, PredictRows, Scored,
};
use serval_model::encoder::Encoder;
use serval_model::explain::{EncodedExplanation, Scorer};
use serval_model::network::Mlp;

use crate::catalog::documents;
use crate::encoding::ColumnIndex;
use crate::error::ServalError;
use crate::live_stats::VersionStats;
use crate::outcomes::VersionOutcomes;
use crate::telemetry::VersionPredictMetrics;

/// How loaded versions batch their forward passes.
#[derive(Clone)]
pub struct BatchingSettings {
    pub config: BatchConfig,
    pub pool: ComputePool,
    pub metrics: BatchMetricsFamily,
    /// Versions loaded now.
    pub loaded_versions: prometheus::IntGauge,
    /// Loads, first ones and reloads after an idle unload alike.
    pub version_loads: prometheus::IntCounter,
    /// Versions unloaded for serving no call for `--unload-idle-after`.
    pub idle_unloads: prometheus::IntCounter,
}

/// A version ready to score rows.
pub struct LoadedVersion {
    pub model: String,
    pub version: u32,
    pub encoder: Encoder,
    /// The encoder's columns by name.
    pub columns: ColumnIndex,
    pub network: Arc<Mlp>,
    /// Scores at or above it are labelled positive.
    pub threshold: f64,
    /// The batching layer around this version's network.
    pub batcher: Batcher<EncodedExplanation>,
    /// Where this version's calls are counted, set by the first call.
    recorders: OnceLock<CallRecorders>,
    /// When a call last used it: milliseconds since its store's epoch.
    last_used: AtomicU64,
    /// The store's epoch, for `last_used`.
    epoch: Instant,
}

/// A version's live statistics window and Prometheus series. Performance:
/// kept with the loaded version, so a call records itself without the map
/// and label lookups (and the version's `to_string`) each would cost.
pub struct CallRecorders {
    pub stats: VersionStats,
    pub metrics: VersionPredictMetrics,
    /// Where its predictions wait for their outcomes.
    pub outcomes: Arc<VersionOutcomes>,
}

impl LoadedVersion {
    async fn load(
        registry: &Registry,
        batching: &BatchingSettings,
        epoch: Instant,
        model: &str,
        version: u32,
    ) -> Result<Self, ServalError> {
        let record = registry.version(model, Some(version)).await?;
        let docs = documents(&record)?;
        let weights = registry.weights(model, version).await?;
        let network = Mlp::from_safetensors(&weights).map_err(|source| ServalError::Version {
            model: model.to_string(),
            version,
            source,
        })?;
        let threshold = docs.metrics.validation.threshold;
        let encoder = Encoder::new(docs.encoder);
        if network.input_width() != encoder.width() {
            return Err(ServalError::FailedPrecondition(format!(
                "model {model:?} version {version}: network reads {} values but the encoder writes {}",
                network.input_width(),
                encoder.width()
            )));
        }
        // Warm up: one forward pass before any traffic, so the first caller
        // does not pay for first-touch allocations. It runs on a compute
        // thread, in turn with the queues: loading many versions at once
        // starts no thread.
        let network = Arc::new(network);
        let warm = network.clone();
        batching
            .pool
            .run(move || warm.predict(&vec![0.0; warm.input_width()]))
            .await
            .map_err(|_| ServalError::Internal("warm-up failed: the compute threads have stopped".into()))?
            .map_err(|_| ServalError::Internal("warm-up failed: the forward pass panicked".into()))??;
        let layer = BatchLayer::new(
            batching.config,
            batching.pool.clone(),
            batching.metrics.for_version(model, version),
        );
        let scorer = Arc::new(Scorer {
            network: network.clone(),
            baseline: encoder.baseline(),
        });
        Ok(LoadedVersion {
            model: model.to_string(),
            version,
            columns: ColumnIndex::new(&encoder),
            encoder,
            threshold,
            batcher: layer.layer(scorer),
            network,
            recorders: OnceLock::new(),
            last_used: AtomicU64::new(millis_since(epoch, Instant::now())),
            epoch,
        })
    }

    /// Notes that a call started using this version at `at`.
    pub fn mark_used(&self, at: Instant) {
        // Performance: written at most once a millisecond, so that callers
        // on different cores do not take turns owning the cache line.
        let at = millis_since(self.epoch, at);
        if self.last_used.load(Ordering::Relaxed) < at {
            self.last_used.store(at, Ordering::Relaxed);
        }
    }

    /// How long since a call last used it (or since it was loaded).
    pub fn idle_for(&self, now: Instant) -> Duration {
        let used = self.last_used.load(Ordering::Relaxed);
        Duration::from_millis(millis_since(self.epoch, now).saturating_sub(used))
    }

    /// This version's recorders, made by `make` on first use.
    pub fn recorders(&self, make: impl FnOnce() -> CallRecorders) -> &CallRecorders {
        self.recorders.get_or_init(make)
    }

    /// Scores encoded rows through this version's batching queue, with
    /// their explanations when `explain` is set.
    pub async fn score(
        &self,
        rows: Vec<f32>,
        deadline: Option<Instant>,
        explain: bool,
    ) -> Result<Scored<EncodedExplanation>, ServalError> {
        let (answer, wake) = self.batcher.submit_deferring_wake(PredictRows {
            rows,
            deadline,
            explain,
        });
        if let Some(wake) = wake {
            // The compute threads sleep: wake one once this runtime thread
            // has run the other calls ready now (tokio runs a yielding task
            // again before it parks or polls for I/O), so that they share
            // the batch. A lone call waits for nothing but that check.
            tokio::task::yield_now().await;
            wake.now();
        }
        answer.await
    }
}

fn millis_since(epoch: Instant, at: Instant) -> u64 {
    at.saturating_duration_since(epoch).as_millis() as u64
}

type Slot = Arc<OnceCell<Arc<LoadedVersion>>>;

/// The loaded versions of every model.
pub struct ModelStore {
    registry: Registry,
    batching: BatchingSettings,
    /// Model → version → its loaded form (or the load in progress).
    loaded: RwLock<HashMap<String, HashMap<u32, Slot>>>,
    /// Where versions' `last_used` times count from.
    epoch: Instant,
}

impl ModelStore {
    pub fn new(registry: Registry, batching: BatchingSettings) -> Self {
        ModelStore {
            registry,
            batching,
            loaded: RwLock::default(),
            epoch: Instant::now(),
        }
    }

    /// The loaded `version` of `model`, loading (and warming) it on first
    /// use. Concurrent first uses share one load.
    pub async fn resolve(&self, model: &str, version: u32) -> Result<Arc<LoadedVersion>, ServalError> {
        let slot = {
            let loaded = self.loaded.read().expect("model store lock poisoned");
            loaded
                .get(model)
                .and_then(|versions| versions.get(&version))
                .cloned()
        };
        let slot = match slot {
            Some(slot) => slot,
            None => self
                .loaded
                .write()
                .expect("model store lock poisoned")
                .entry(model.to_string())
                .or_default()
                .entry(version)
                .or_default()
                .clone(),
        };
        if let Some(loaded) = slot.get() {
            return Ok(loaded.clone());
        }
        // Performance: the load (registry reads, weight checks, warm-up) is
        // boxed, so its large future is not part of every Predict call's
        // future, which is allocated and moved on every call.
        Box::pin(self.load_into(slot, model, version)).await
    }

    async fn load_into(
        &self,
        slot: Slot,
        model: &str,
        version: u32,
    ) -> Result<Arc<LoadedVersion>, ServalError> {
        // Correctness: a failed load is not cached, so a later call retries,
        // and its empty slot is removed, so unknown versions cannot grow the
        // map.
        let loaded = slot
            .get_or_try_init(|| async {
                let loaded =
                    LoadedVersion::load(&self.registry, &self.batching, self.epoch, model, version).await?;
                self.batching.loaded_versions.inc();
                self.batching.version_loads.inc();
                tracing::info!(model, version, "version loaded and warmed");
                Ok::<_, ServalError>(Arc::new(loaded))
            })
            .await;
        match loaded {
            Ok(loaded) => Ok(loaded.clone()),
            Err(error) => {
                self.forget_empty_slot(model, version, &slot);
                Err(error)
            }
        }
    }

    fn forget_empty_slot(&self, model: &str, version: u32, slot: &Slot) {
        let mut loaded = self.loaded.write().expect("model store lock poisoned");
        if let Some(versions) = loaded.get_mut(model) {
            if versions
                .get(&version)
                .is_some_and(|current| Arc::ptr_eq(current, slot) && !current.initialized())
            {
                versions.remove(&version);
            }
            if versions.is_empty() {
                loaded.remove(model);
            }
        }
    }

    /// Versions of `model` loaded (or loading) now.
    pub fn loaded_versions(&self, model: &str) -> Vec<u32> {
        let loaded = self.loaded.read().expect("model store lock poisoned");
        loaded
            .get(model)
            .map(|v| v.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Drops a version (its batching series too); calls already holding
    /// it finish normally.
    pub fn unload(&self, model: &str, version: u32) {
        if self.remove(model, version, |_| true) {
            self.batching.metrics.remove_version(model, version);
            tracing::info!(model, version, "version unloaded");
        }
    }

    /// Unloads every loaded version that no call has used for `after`; a
    /// later call loads it again. Its metric series stay, so its counts go
    /// on after a reload. Returns how many were unloaded.
    pub fn unload_idle(&self, after: Duration) -> usize {
        let now = Instant::now();
        let idle: Vec<(String, u32)> = {
            let loaded = self.loaded.read().expect("model store lock poisoned");
            loaded
                .iter()
                .flat_map(|(model, versions)| {
                    versions.iter().filter_map(move |(&version, slot)| {
                        let idle = slot.get().is_some_and(|v| v.idle_for(now) >= after);
                        idle.then(|| (model.clone(), version))
                    })
                })
                .collect()
        };
        let mut unloaded = 0;
        for (model, version) in idle {
            // Correctness: checked again under the write lock, so a version a
            // call used meanwhile stays.
            let still_idle = |slot: &Slot| slot.get().is_some_and(|v| v.idle_for(Instant::now()) >= after);
            if self.remove(&model, version, still_idle) {
                self.batching.idle_unloads.inc();
                unloaded += 1;
                tracing::info!(model, version, idle_for = ?after, "idle version unloaded");
            }
        }
        unloaded
    }

    /// Removes a version's slot if `which` says so; true if it was loaded.
    fn remove(&self, model: &str, version: u32, which: impl Fn(&Slot) -> bool) -> bool {
        let removed = {
            let mut loaded = self.loaded.write().expect("model store lock poisoned");
            let Some(versions) = loaded.get_mut(model) else {
                return false;
            };
            let removed = match versions.get(&version) {
                Some(slot) if which(slot) => versions.remove(&version),
                _ => None,
            };
            if versions.is_empty() {
                loaded.remove(model);
            }
            removed
        };
        match removed {
            Some(slot) if slot.initialized() => {
                self.batching.loaded_versions.dec();
                true
            }
            Some(_) => true,
            None => false,
        }
    }
}

/// Unloads versions idle for `after`, checking every `after / 4` (between
/// 10 ms and 10 s), until `stop` turns true.
pub async fn unload_idle_task(
    models: Arc<ModelStore>,
    after: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let every = (after / 4).clamp(Duration::from_millis(10), Duration::from_secs(10));
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        models.unload_idle(after);
    }
}
