//! The task that publishes this replica's live statistics to the registry
//! once a second — the seconds that changed since the last publish, and a
//! heartbeat — then its online quality per version where it changed, and
//! prunes rows older than the longest window now and then. A replica
//! alone on its registry publishes only its heartbeat.
//! It reads the in-memory windows; nothing here runs on the Predict path.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serval_registry::{PublishedQuality, PublishedSecond};

use super::{PRUNE_EVERY, PUBLISH_INTERVAL};
use crate::fleet_stats::summary_to_json;
use crate::live_stats::{MAX_WINDOW_SECONDS, now_second};
use crate::outcomes::VersionQuality;
use crate::service::ServiceState;

/// How long rows outlive the longest window before they are pruned (so a
/// replica whose clock runs a little behind still finds its seconds).
const PRUNE_MARGIN_SECONDS: u64 = 60;

/// Starts publishing `state`'s live statistics; the task publishes once
/// more and ends when the server begins to stop.
pub fn spawn_publisher(state: Arc<ServiceState>) {
    tokio::spawn(publish_task(state));
}

async fn publish_task(state: Arc<ServiceState>) {
    let mut stopping = state.stopping.clone();
    let mut ticker = tokio::time::interval(PUBLISH_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut publisher = Publisher::default();
    loop {
        let stopped = tokio::select! {
            _ = ticker.tick() => false,
            _ = stopping.wait_for(|stopping| *stopping) => true,
        };
        if stopped {
            // The last calls' figures, before the registry closes.
            publisher.publish(&state).await;
            return;
        }
        publisher.publish(&state).await;
        if publisher.publishes % PRUNE_EVERY == 0 {
            prune(&state).await;
        }
    }
}

/// What the task remembers between publishes.
#[derive(Default)]
struct Publisher {
    /// The newest second published; it is published again next time, as
    /// calls may have joined it since.
    published_through: Option<u64>,
    /// The last publish failed (it is logged once, not every second).
    failing: bool,
    publishes: u32,
    /// The online quality last published, by model and version, as JSON.
    published_quality: HashMap<(String, u32), String>,
    /// Online quality was published since the task started (the first
    /// publish replaces what an earlier run under this name left).
    quality_published: bool,
}

impl Publisher {
    async fn publish(&mut self, state: &ServiceState) {
        self.publishes = self.publishes.wrapping_add(1);
        if !has_peers(state).await {
            // Alone: only the heartbeat, so that a replica joining finds
            // this one. Nobody reads the figures, so they stay in memory
            // (and out of the registry's storage) until a peer appears;
            // then everything in the window goes out at once.
            match state.registry.publish_live_stats(&state.replica_name, &[]).await {
                Ok(()) => self.failing = false,
                Err(error) => {
                    if !std::mem::replace(&mut self.failing, true) {
                        tracing::warn!(%error, "cannot publish this replica's heartbeat to the registry");
                    }
                }
            }
            return;
        }
        let now = now_second();
        let oldest = now.saturating_sub(u64::from(MAX_WINDOW_SECONDS) - 1);
        let since = self.published_through.map_or(oldest, |s| s.max(oldest));
        let seconds: Vec<PublishedSecond> = state
            .stats
            .seconds_since(since)
            .into_iter()
            .map(|s| PublishedSecond {
                model: s.model,
                version: s.version,
                second: s.second,
                snapshot: s.snapshot.to_json(),
            })
            .collect();
        match state
            .registry
            .publish_live_stats(&state.replica_name, &seconds)
            .await
        {
            Ok(()) => {
                self.published_through = Some(now);
                if std::mem::take(&mut self.failing) {
                    tracing::info!("live statistics are published to the registry again");
                }
                self.publish_quality(state).await;
            }
            Err(error) => {
                if !std::mem::replace(&mut self.failing, true) {
                    tracing::warn!(
                        %error,
                        "cannot publish live statistics to the registry; other replicas show this \
                         one as stale until it can"
                    );
                }
            }
        }
    }
}

impl Publisher {
    /// Publishes the versions whose online quality changed since the last
    /// publish (most seconds, on a quiet replica, none); a version that no
    /// longer has any is published empty once, then forgotten.
    async fn publish_quality(&mut self, state: &ServiceState) {
        let mut changed = Vec::new();
        let mut current = HashSet::new();
        for model in state.outcomes.models() {
            for quality in state.outcomes.quality(&model) {
                let summary = summary_to_json(&quality);
                let key = (model.clone(), quality.version);
                if self.published_quality.get(&key) != Some(&summary) {
                    changed.push(PublishedQuality {
                        model: model.clone(),
                        version: quality.version,
                        summary,
                    });
                }
                current.insert(key);
            }
        }
        let emptied: Vec<(String, u32)> = self
            .published_quality
            .keys()
            .filter(|key| !current.contains(*key))
            .cloned()
            .collect();
        for (model, version) in &emptied {
            changed.push(PublishedQuality {
                model: model.clone(),
                version: *version,
                summary: summary_to_json(&VersionQuality {
                    version: *version,
                    ..Default::default()
                }),
            });
        }
        if changed.is_empty() && self.quality_published {
            return;
        }
        match state
            .registry
            .publish_online_quality(&state.replica_name, &changed, !self.quality_published)
            .await
        {
            Ok(()) => {
                self.quality_published = true;
                for published in changed {
                    self.published_quality
                        .insert((published.model, published.version), published.summary);
                }
                for key in &emptied {
                    self.published_quality.remove(key);
                }
            }
            // Tried again next second: the summaries stay unpublished.
            Err(error) => tracing::debug!(%error, "cannot publish online quality yet"),
        }
    }
}

async fn prune(state: &ServiceState) {
    let keep = u64::from(MAX_WINDOW_SECONDS) + PRUNE_MARGIN_SECONDS;
    let before_second = now_second().saturating_sub(keep);
    let silent_since = Utc::now() - Duration::from_secs(keep);
    if let Err(error) = state.registry.prune_live_stats(before_second, silent_since).await {
        tracing::debug!(%error, "cannot prune old live statistics yet");
    }
    if let Err(error) = state.registry.prune_online_quality().await {
        tracing::debug!(%error, "cannot prune old online quality yet");
    }
}

/// Whether another replica published within the stale time: only then is
/// anyone reading this one's figures. When the heartbeats cannot be read,
/// the figures go out as usual.
async fn has_peers(state: &ServiceState) -> bool {
    let Ok(heartbeats) = state.registry.replica_heartbeats().await else {
        return true;
    };
    let fresh_since = Utc::now() - state.fleet.stale_after;
    heartbeats
        .iter()
        .any(|h| h.replica != state.replica_name && h.published_at >= fresh_since)
}
