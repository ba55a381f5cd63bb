//! The task that publishes this replica's live statistics to the registry
//! once a second — the seconds that changed since the last publish, and a
//! heartbeat — and prunes rows older than the longest window now and then.
//! It reads the in-memory windows; nothing here runs on the Predict path.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serval_registry::PublishedSecond;

use super::{PRUNE_EVERY, PUBLISH_INTERVAL};
use crate::live_stats::{MAX_WINDOW_SECONDS, now_second};
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
}

impl Publisher {
    async fn publish(&mut self, state: &ServiceState) {
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
        self.publishes = self.publishes.wrapping_add(1);
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

async fn prune(state: &ServiceState) {
    let keep = u64::from(MAX_WINDOW_SECONDS) + PRUNE_MARGIN_SECONDS;
    let before_second = now_second().saturating_sub(keep);
    let silent_since = Utc::now() - Duration::from_secs(keep);
    if let Err(error) = state.registry.prune_live_stats(before_second, silent_since).await {
        tracing::debug!(%error, "cannot prune old live statistics yet");
    }
}
