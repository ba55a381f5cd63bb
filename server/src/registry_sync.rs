//! Keeps the server in step with the registry: the routing table, the loaded
//! versions and the change feed. Every change appends an audit event; this
//! module reads new events (at once after a change made here, and on a
//! timer for changes made elsewhere), loads and warms the versions the new
//! state sends traffic to, and only then swaps the state in. Versions no
//! longer referenced are unloaded; subscribers get every event.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serval_registry::{AuditEvent, AuditFilter, Registry, RegistryError};
use tokio::sync::{Mutex, broadcast, watch};

use crate::error::ServalError;
use crate::routing::{RoutingTable, referenced_versions};
use crate::serving::ModelStore;

/// Events kept for slow subscribers before they must re-read the registry.
const EVENT_BUFFER: usize = 1024;

pub struct RegistrySync {
    registry: Registry,
    models: Arc<ModelStore>,
    routing: Arc<RoutingTable>,
    events: broadcast::Sender<AuditEvent>,
    /// Id of the newest event applied; the lock also serialises syncs.
    applied: Mutex<u64>,
}

impl RegistrySync {
    /// Reads every model's state and loads (and warms) every version it
    /// sends traffic to.
    pub async fn start(
        registry: Registry,
        models: Arc<ModelStore>,
        routing: Arc<RoutingTable>,
    ) -> Result<Arc<Self>, ServalError> {
        let applied = registry.latest_audit_id().await?;
        let states = registry.rollout_states(None).await?;
        for state in &states {
            for version in referenced_versions(state) {
                if let Err(error) = models.resolve(&state.model, version).await {
                    tracing::error!(model = %state.model, version, %error, "cannot load a version that serves traffic");
                }
            }
        }
        routing.replace_all(states);
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        Ok(Arc::new(RegistrySync {
            registry,
            models,
            routing,
            events,
            applied: Mutex::new(applied),
        }))
    }

    /// Applies every event newer than the last one applied.
    pub async fn sync(&self) -> Result<(), ServalError> {
        let mut applied = self.applied.lock().await;
        let events = self
            .registry
            .audit_events(&AuditFilter {
                after_id: Some(*applied),
                ..Default::default()
            })
            .await?;
        let Some(last) = events.last() else {
            return Ok(());
        };
        let models: BTreeSet<&str> = events.iter().map(|e| e.model.as_str()).collect();
        for model in models {
            self.apply_model(model).await?;
        }
        *applied = last.id;
        for event in events {
            let _ = self.events.send(event);
        }
        Ok(())
    }

    async fn apply_model(&self, model: &str) -> Result<(), ServalError> {
        let state = match self.registry.rollout_state(model).await {
            Ok(state) => state,
            Err(RegistryError::ModelNotFound(_)) => {
                self.routing.remove(model);
                for version in self.models.loaded_versions(model) {
                    self.models.unload(model, version);
                }
                return Ok(());
            }
            Err(error) => return Err(error.into()),
        };
        let referenced = referenced_versions(&state);
        // Correctness: versions are loaded and warmed before the new state
        // can route traffic to them; until the swap the old state answers.
        for &version in &referenced {
            if let Err(error) = self.models.resolve(model, version).await {
                tracing::error!(model, version, %error, "cannot load a version that now serves traffic");
            }
        }
        self.routing.replace(state);
        for version in self.models.loaded_versions(model) {
            if !referenced.contains(&version) {
                self.models.unload(model, version);
            }
        }
        Ok(())
    }

    /// New events as they are applied.
    pub fn subscribe(&self) -> broadcast::Receiver<AuditEvent> {
        self.events.subscribe()
    }

    /// Polls the registry every `interval` for changes made elsewhere, until
    /// `stop` turns true.
    pub fn spawn_poller(self: &Arc<Self>, interval: Duration, mut stop: watch::Receiver<bool>) {
        let sync = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = stop.wait_for(|stopped| *stopped) => return,
                }
                if let Err(error) = sync.sync().await {
                    tracing::warn!(%error, "cannot read registry changes; retrying");
                }
            }
        });
    }
}
