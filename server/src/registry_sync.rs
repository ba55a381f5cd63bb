//! Keeps the server in step with the registry: the routing table, the loaded
//! versions and the change feed. Every change appends an audit event; this
//! module reads new events (at once after a change made here, at once when
//! PostgreSQL announces a change made elsewhere, and on a timer as the
//! safety net), loads and warms the versions the new state sends traffic
//! to, and only then swaps the state in. Versions no longer referenced are
//! unloaded; subscribers get every event. It also tells the health service
//! whether the registry database can be reached and has room, and keeps
//! this replica's training jobs' heartbeat.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serval_registry::{Announcement, AuditEvent, AuditFilter, Registry, RegistryError};
use tokio::sync::{Mutex, broadcast, watch};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::error::ServalError;
use crate::routing::{RoutingTable, referenced_versions};
use crate::serving::ModelStore;

/// Events kept for slow subscribers before they must re-read the registry.
const EVENT_BUFFER: usize = 1024;

/// Health-check service name that is SERVING while the registry database
/// can be reached and has room (admin calls work), and NOT_SERVING while it
/// cannot be reached or its storage is full (predictions of loaded versions
/// go on; `""` and the model service stay SERVING).
pub const REGISTRY_HEALTH_SERVICE: &str = "serval.registry";

/// What [`REGISTRY_HEALTH_SERVICE`] reports. The health protocol has no
/// "degraded": a full registry, which still serves reads and deletes but
/// takes no new versions, is NOT_SERVING like an unreachable one, and the
/// `serval_registry_storage_full` gauge and the log say which it is.
fn registry_health(reachable: bool, full: bool) -> ServingStatus {
    if reachable && !full {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    }
}

/// How often a replica refreshes its running jobs' heartbeat, and fails
/// other replicas' jobs whose heartbeat went stale.
const JOB_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);

/// A running job whose heartbeat is older than this belongs to a replica
/// that is gone.
pub const JOB_STALE_AFTER: Duration = Duration::from_secs(30);

/// Wait before listening again after the database could not be reached.
const LISTEN_RETRY: Duration = Duration::from_secs(1);

/// What the background tasks need besides the registry.
pub struct BackgroundSettings {
    pub poll_interval: Duration,
    pub replica_name: String,
    pub health: HealthReporter,
}

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

    /// Starts the background tasks, which run until `stop` turns true: the
    /// poller (every `poll_interval`; it also reports whether the database
    /// can be reached and has room to the health service), the change listener
    /// (PostgreSQL), and the jobs' heartbeat.
    pub fn spawn_background(self: &Arc<Self>, settings: BackgroundSettings, stop: watch::Receiver<bool>) {
        tokio::spawn(
            self.clone()
                .poll(settings.poll_interval, settings.health, stop.clone()),
        );
        tokio::spawn(self.clone().listen(stop.clone()));
        tokio::spawn(self.clone().keep_jobs_alive(settings.replica_name, stop));
    }

    async fn poll(
        self: Arc<Self>,
        interval: Duration,
        health: HealthReporter,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reachable = true;
        let mut full = false;
        loop {
            if unless_stopped(&mut stop, ticker.tick()).await.is_none() {
                return;
            }
            let result = self.sync().await;
            let now_reachable = match &result {
                Err(ServalError::Registry(error)) => !error.is_unreachable(),
                _ => true,
            };
            if let Err(error) = result {
                tracing::warn!(%error, "cannot read registry changes; retrying");
            }
            // Writes that found the storage full say so as they fail (and the
            // registry logs it); the health follows at the next tick.
            let now_full = self.registry.storage_status().full;
            if (now_reachable, now_full) == (reachable, full) {
                continue;
            }
            if now_reachable != reachable {
                if now_reachable {
                    tracing::info!("the registry database is reachable again; admin calls work");
                } else {
                    tracing::error!(
                        "the registry database cannot be reached: serving the loaded versions, \
                         admin calls fail until it is back"
                    );
                }
            }
            (reachable, full) = (now_reachable, now_full);
            health
                .set_service_status(REGISTRY_HEALTH_SERVICE, registry_health(reachable, full))
                .await;
        }
    }

    /// Applies changes as PostgreSQL announces them (no-op on SQLite).
    async fn listen(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            let Some(listener) = unless_stopped(&mut stop, self.registry.listen_for_changes()).await else {
                return;
            };
            let mut listener = match listener {
                Ok(Some(listener)) => listener,
                Ok(None) => return,
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for registry changes; the poller covers them");
                    if unless_stopped(&mut stop, tokio::time::sleep(LISTEN_RETRY))
                        .await
                        .is_none()
                    {
                        return;
                    }
                    continue;
                }
            };
            // Anything committed before the listener was up is read now.
            let _ = self.sync().await;
            loop {
                let Some(announcement) = unless_stopped(&mut stop, listener.next()).await else {
                    return;
                };
                match announcement {
                    Ok(Announcement::Event(id)) if id <= *self.applied.lock().await => {}
                    Ok(_) => {
                        if let Err(error) = self.sync().await {
                            tracing::warn!(%error, "cannot read an announced registry change; the poller retries");
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "lost the registry change announcements; reconnecting");
                        if unless_stopped(&mut stop, tokio::time::sleep(LISTEN_RETRY))
                            .await
                            .is_none()
                        {
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Refreshes the heartbeat of this replica's running jobs, and fails
    /// other replicas' jobs whose heartbeat went stale.
    async fn keep_jobs_alive(self: Arc<Self>, replica_name: String, mut stop: watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(JOB_HEARTBEAT_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if unless_stopped(&mut stop, ticker.tick()).await.is_none() {
                return;
            }
            if let Err(error) = self.registry.heartbeat_jobs(&replica_name).await {
                tracing::debug!(%error, "cannot refresh the training jobs' heartbeat");
                continue;
            }
            match self.registry.fail_abandoned_jobs(None, JOB_STALE_AFTER).await {
                Ok(0) => {}
                Ok(jobs) => tracing::warn!(jobs, "failed training jobs whose replica stopped"),
                Err(error) => tracing::debug!(%error, "cannot check for abandoned training jobs"),
            }
        }
    }
}

/// `work`'s output, or `None` when `stop` turns true first: how every
/// background task waits.
async fn unless_stopped<F: std::future::Future>(
    stop: &mut watch::Receiver<bool>,
    work: F,
) -> Option<F::Output> {
    tokio::select! {
        output = work => Some(output),
        _ = stop.wait_for(|stopped| *stopped) => None,
    }
}
