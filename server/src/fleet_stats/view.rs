//! The fleet's live statistics for one model: this replica's window from
//! memory, the other replicas' published seconds from the registry, each
//! replica's figures and staleness, and the live replicas merged.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serval_registry::{ReplicaHeartbeat, ReplicaSecond};

use crate::error::ServalError;
use crate::live_stats::{StatsSnapshot, window_start};
use crate::service::ServiceState;

/// One version's figures, and how many replicas they merge.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionView {
    pub version: u32,
    pub snapshot: StatsSnapshot,
    pub replicas: u32,
}

/// One replica's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaView {
    pub replica: String,
    /// The replica answering (its figures come from its memory).
    pub answering: bool,
    /// Silent for longer than the stale time: not in the fleet's figures.
    pub stale: bool,
    pub last_published: Option<DateTime<Utc>>,
    pub versions: Vec<VersionView>,
}

/// The fleet's figures per version, and each replica's.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetView {
    /// Every live replica merged, by version.
    pub versions: Vec<VersionView>,
    /// The answering replica first, then the others by name.
    pub replicas: Vec<ReplicaView>,
}

/// The fleet's figures for `model` over the last `window_seconds`, as seen
/// by the replica that `state` is.
pub async fn fleet_view(
    state: &ServiceState,
    model: &str,
    window_seconds: u32,
) -> Result<FleetView, ServalError> {
    let since = window_start(window_seconds);
    let local = state.stats.merged(model, since);
    let published = state.registry.live_stats_since(model, since).await?;
    let heartbeats = state.registry.replica_heartbeats().await?;
    Ok(assemble(
        &state.replica_name,
        local,
        &published,
        &heartbeats,
        Utc::now(),
        state.fleet.stale_after,
    ))
}

/// [`fleet_view`]'s arithmetic: `local` is the answering replica's own
/// window (what it published of itself is ignored: memory is fresher);
/// the other replicas' seconds are merged per version, and each is stale
/// when its heartbeat is older than `stale_after` at `now` (or missing).
pub fn assemble(
    answering: &str,
    local: Vec<(u32, StatsSnapshot)>,
    published: &[ReplicaSecond],
    heartbeats: &[ReplicaHeartbeat],
    now: DateTime<Utc>,
    stale_after: Duration,
) -> FleetView {
    let mut others: BTreeMap<&str, BTreeMap<u32, StatsSnapshot>> = BTreeMap::new();
    for second in published.iter().filter(|s| s.replica != answering) {
        let snapshot = match StatsSnapshot::from_json(&second.snapshot) {
            Ok(snapshot) => snapshot,
            Err(error) => {
                tracing::warn!(
                    replica = %second.replica,
                    %error,
                    "skipping a published live-statistics second that does not read"
                );
                continue;
            }
        };
        others
            .entry(second.replica.as_str())
            .or_default()
            .entry(second.version)
            .or_default()
            .merge(&snapshot);
    }
    let last_published: BTreeMap<&str, DateTime<Utc>> = heartbeats
        .iter()
        .map(|h| (h.replica.as_str(), h.published_at))
        .collect();
    let stale_after = chrono::Duration::from_std(stale_after).unwrap_or(chrono::Duration::MAX);
    let is_stale = |replica: &str| {
        last_published
            .get(replica)
            .is_none_or(|at| now.signed_duration_since(*at) > stale_after)
    };

    let as_views = |versions: Vec<(u32, StatsSnapshot)>| -> Vec<VersionView> {
        versions
            .into_iter()
            .map(|(version, snapshot)| VersionView {
                version,
                snapshot,
                replicas: 1,
            })
            .collect()
    };
    let mut replicas = vec![ReplicaView {
        replica: answering.to_string(),
        answering: true,
        stale: false,
        last_published: last_published.get(answering).copied(),
        versions: as_views(local),
    }];
    let names: BTreeSet<&str> = others
        .keys()
        .copied()
        .chain(last_published.keys().copied())
        .filter(|name| *name != answering)
        .collect();
    for name in names {
        let stale = is_stale(name);
        let versions = others.remove(name).unwrap_or_default();
        if stale && versions.is_empty() {
            // Gone for a while, with nothing in the window: not shown.
            continue;
        }
        replicas.push(ReplicaView {
            replica: name.to_string(),
            answering: false,
            stale,
            last_published: last_published.get(name).copied(),
            versions: as_views(versions.into_iter().collect()),
        });
    }

    let mut fleet: BTreeMap<u32, VersionView> = BTreeMap::new();
    for replica in replicas.iter().filter(|r| !r.stale) {
        for version in &replica.versions {
            let merged = fleet.entry(version.version).or_insert_with(|| VersionView {
                version: version.version,
                snapshot: StatsSnapshot::default(),
                replicas: 0,
            });
            merged.snapshot.merge(&version.snapshot);
            merged.replicas += 1;
        }
    }
    FleetView {
        versions: fleet.into_values().collect(),
        replicas,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requests(n: u64) -> StatsSnapshot {
        StatsSnapshot {
            requests: n,
            ..Default::default()
        }
    }

    fn second(replica: &str, version: u32, second: u64, n: u64) -> ReplicaSecond {
        ReplicaSecond {
            replica: replica.to_string(),
            version,
            second,
            snapshot: requests(n).to_json(),
        }
    }

    fn heartbeat(replica: &str, at: DateTime<Utc>) -> ReplicaHeartbeat {
        ReplicaHeartbeat {
            replica: replica.to_string(),
            published_at: at,
        }
    }

    #[test]
    fn live_replicas_merge_and_a_stale_one_is_shown_but_left_out() {
        let now = Utc::now();
        let published = [
            // What "a" published of itself is ignored: its memory answers.
            second("a", 1, 100, 1000),
            second("b", 1, 100, 3),
            second("b", 1, 101, 4),
            second("b", 2, 101, 5),
            second("c", 1, 100, 20),
            second("d", 1, 100, 1),
        ];
        let heartbeats = [
            heartbeat("a", now),
            heartbeat("b", now - chrono::Duration::seconds(1)),
            // Silent for 6 s with a 5 s stale time.
            heartbeat("c", now - chrono::Duration::seconds(6)),
            // Live, with nothing for this model.
            heartbeat("e", now),
            // Long gone, with nothing in the window: not listed.
            heartbeat("f", now - chrono::Duration::seconds(60)),
        ];
        let view = assemble(
            "a",
            vec![(1, requests(10))],
            &published,
            &heartbeats,
            now,
            Duration::from_secs(5),
        );
        let listed: Vec<(&str, bool, bool)> = view
            .replicas
            .iter()
            .map(|r| (r.replica.as_str(), r.answering, r.stale))
            .collect();
        // "d" published figures but no heartbeat: stale.
        assert_eq!(
            listed,
            [
                ("a", true, false),
                ("b", false, false),
                ("c", false, true),
                ("d", false, true),
                ("e", false, false),
            ]
        );
        let totals: Vec<(u32, u64, u32)> = view
            .versions
            .iter()
            .map(|v| (v.version, v.snapshot.requests, v.replicas))
            .collect();
        assert_eq!(totals, [(1, 10 + 3 + 4, 2), (2, 5, 1)]);
        let b: Vec<(u32, u64)> = view.replicas[1]
            .versions
            .iter()
            .map(|v| (v.version, v.snapshot.requests))
            .collect();
        assert_eq!(b, [(1, 7), (2, 5)]);
        assert_eq!(view.replicas[2].versions[0].snapshot.requests, 20);
        assert!(view.replicas[4].versions.is_empty());
    }

    #[test]
    fn alone_the_answering_replica_is_the_fleet() {
        let view = assemble(
            "a",
            vec![(3, requests(2))],
            &[],
            &[],
            Utc::now(),
            Duration::from_secs(5),
        );
        assert_eq!(view.replicas.len(), 1);
        assert_eq!(view.replicas[0].last_published, None);
        assert_eq!(view.versions.len(), 1);
        assert_eq!(
            (view.versions[0].snapshot.requests, view.versions[0].replicas),
            (2, 1)
        );
    }
}
