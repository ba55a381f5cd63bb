//! Live statistics across the replicas sharing a registry. Each replica
//! publishes its per-second [`StatsSnapshot`](crate::live_stats::StatsSnapshot)s
//! to the registry once a second from a background task (`publisher`), off
//! the Predict path, which only records into its in-memory window as before;
//! any replica answers `GetLiveStats` for the fleet by merging its own
//! window with the others' published seconds (`view`). A replica that has
//! not published for [`FleetSettings::stale_after`] is shown as stale and
//! left out of the fleet's figures. The same task publishes the replica's
//! online quality per version when it changed (`quality`), and the fleet's
//! online quality merges the live replicas' summaries the same way.

mod publisher;
mod quality;
mod view;

use std::time::Duration;

pub use publisher::spawn_publisher;
pub use quality::{merge_fleet, published_by_replica, summary_to_json};
pub use view::{FleetView, ReplicaView, VersionView, assemble, fleet_view};

/// How often a replica publishes its live statistics.
pub const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);

/// Publishes between two prunings of old rows (by each replica).
const PRUNE_EVERY: u32 = 10;

/// How replicas share their live statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetSettings {
    /// A replica that has not published for this long drops out of the
    /// fleet's figures and is shown as stale.
    pub stale_after: Duration,
}

impl Default for FleetSettings {
    fn default() -> Self {
        FleetSettings {
            stale_after: Duration::from_secs(5),
        }
    }
}
