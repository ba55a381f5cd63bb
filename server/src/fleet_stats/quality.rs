//! Online quality across the replicas: the summary a replica publishes per
//! version (live and shadow [`QualitySummary`], predictions awaiting an
//! outcome) as JSON, and the fleet's figures — the answering replica's
//! in-memory summaries merged with the live replicas' published ones.
//! Outcomes are still joined on the replica that issued the prediction; only
//! the summaries travel.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use serval_registry::ReplicaQuality;

use crate::outcomes::{QualitySummary, VersionQuality};

/// What a replica publishes of one version's online quality.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PublishedSummary {
    live: QualitySummary,
    shadow: QualitySummary,
    awaiting: u64,
}

/// `quality` as the JSON text a replica publishes.
pub fn summary_to_json(quality: &VersionQuality) -> String {
    serde_json::to_string(&PublishedSummary {
        live: quality.live.clone(),
        shadow: quality.shadow.clone(),
        awaiting: quality.awaiting,
    })
    .expect("a quality summary serialises")
}

fn summary_from_json(version: u32, json: &str) -> serde_json::Result<VersionQuality> {
    let PublishedSummary {
        live,
        shadow,
        awaiting,
    } = serde_json::from_str(json)?;
    Ok(VersionQuality {
        version,
        live,
        shadow,
        awaiting,
    })
}

/// The other replicas' published online quality, by replica, read from
/// `published` (what `answering` published of itself is ignored: memory is
/// fresher). Rows that do not read are skipped, logged.
pub fn published_by_replica(
    answering: &str,
    published: &[ReplicaQuality],
) -> BTreeMap<String, Vec<VersionQuality>> {
    let mut by_replica: BTreeMap<String, Vec<VersionQuality>> = BTreeMap::new();
    for row in published.iter().filter(|row| row.replica != answering) {
        match summary_from_json(row.version, &row.summary) {
            Ok(quality) => by_replica.entry(row.replica.clone()).or_default().push(quality),
            Err(error) => tracing::warn!(
                replica = %row.replica,
                %error,
                "skipping a published online-quality summary that does not read"
            ),
        }
    }
    by_replica
}

/// The fleet's online quality per version: `local` merged with the
/// summaries of the replicas in `live` (the answering replica's own
/// published rows are never in `others`).
pub fn merge_fleet(
    local: &[VersionQuality],
    others: &BTreeMap<String, Vec<VersionQuality>>,
    live: &HashSet<&str>,
) -> Vec<VersionQuality> {
    let mut merged: BTreeMap<u32, VersionQuality> = BTreeMap::new();
    let sources = others
        .iter()
        .filter(|(replica, _)| live.contains(replica.as_str()))
        .flat_map(|(_, qualities)| qualities.iter());
    for quality in local.iter().chain(sources) {
        let into = merged.entry(quality.version).or_insert_with(|| VersionQuality {
            version: quality.version,
            ..Default::default()
        });
        into.live.merge(&quality.live);
        into.shadow.merge(&quality.shadow);
        into.awaiting += quality.awaiting;
    }
    merged.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quality(version: u32, labels: &[(f32, bool)], awaiting: u64) -> VersionQuality {
        let mut live = QualitySummary::default();
        for (score, label) in labels {
            live.add(*score, *label);
        }
        VersionQuality {
            version,
            live,
            shadow: QualitySummary::default(),
            awaiting,
        }
    }

    fn row(replica: &str, quality: &VersionQuality) -> ReplicaQuality {
        ReplicaQuality {
            replica: replica.into(),
            version: quality.version,
            summary: summary_to_json(quality),
            published_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn live_replicas_summaries_merge_with_the_local_ones_and_stale_ones_do_not() {
        let local = vec![quality(1, &[(0.9, true), (0.1, false)], 3)];
        let b = quality(1, &[(0.8, true)], 1);
        let b2 = quality(2, &[(0.2, false)], 0);
        let c = quality(1, &[(0.7, false)], 5);
        let mine = quality(1, &[(0.5, true); 10], 0);
        let published = vec![row("a", &mine), row("b", &b), row("b", &b2), row("c", &c)];
        let others = published_by_replica("a", &published);
        assert_eq!(
            others.keys().collect::<Vec<_>>(),
            ["b", "c"],
            "a's own row is ignored"
        );
        // The JSON round trip keeps the counts (sums to the last bit or so).
        let read = &others["b"];
        assert_eq!(read.len(), 2);
        for (read, sent) in read.iter().zip([&b, &b2]) {
            assert_eq!(read.version, sent.version);
            assert_eq!(read.awaiting, sent.awaiting);
            assert_eq!(read.live.outcomes(), sent.live.outcomes());
            assert_eq!(read.live.positives(), sent.live.positives());
            assert_eq!(read.live.auc(), sent.live.auc());
            assert!((read.live.log_loss() - sent.live.log_loss()).abs() < 1e-12);
        }

        let fleet = merge_fleet(&local, &others, &HashSet::from(["b"]));
        assert_eq!(fleet.len(), 2);
        assert_eq!(fleet[0].version, 1);
        assert_eq!(fleet[0].live.outcomes(), 3);
        assert_eq!(fleet[0].live.positives(), 2);
        assert_eq!(fleet[0].awaiting, 4);
        assert_eq!((fleet[1].version, fleet[1].live.outcomes()), (2, 1));

        let with_c = merge_fleet(&local, &others, &HashSet::from(["b", "c"]));
        assert_eq!(with_c[0].live.outcomes(), 4);
        assert_eq!(with_c[0].awaiting, 9);

        // Alone, the fleet's figures are the replica's own.
        assert!(merge_fleet(&local, &BTreeMap::new(), &HashSet::new()) == local);
    }
}
