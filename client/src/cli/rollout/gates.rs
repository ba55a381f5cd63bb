//! The live-statistics gates of `serval rollout start`: a step's canary is
//! judged on the fleet's figures (every live replica merged), and a failed
//! gate names the replicas where the canary fails, worst first, from the
//! per-replica breakdown.

use serval_client::proto as pb;

/// The limits a step's canary must keep.
#[derive(Debug, Clone, Copy)]
pub struct LiveGates {
    pub min_requests: u64,
    pub max_error_rate: f64,
    pub max_p99_ms: f64,
}

/// Why the canary `version` fails a gate at `percent`, or None when it
/// passes every one.
pub fn live_gate_failure(
    gates: &LiveGates,
    stats: &pb::GetLiveStatsResponse,
    version: u32,
    percent: f64,
) -> Option<String> {
    let canary = canary_of(&stats.versions, version);
    if canary.requests < gates.min_requests {
        return Some(format!(
            "only {} canary requests at {percent}%, fewer than --min-requests {}",
            canary.requests, gates.min_requests
        ));
    }
    if canary.error_rate > gates.max_error_rate {
        let on = where_failing(
            stats,
            version,
            gates.max_error_rate,
            |v| v.error_rate,
            |v| format!("error rate {:.4} over {} requests", v.error_rate, v.requests),
        );
        return Some(format!(
            "error rate {:.4} > {} at {percent}%{on}",
            canary.error_rate, gates.max_error_rate
        ));
    }
    if canary.p99_ms > gates.max_p99_ms {
        let on = where_failing(
            stats,
            version,
            gates.max_p99_ms,
            |v| v.p99_ms,
            |v| format!("p99 {:.1} ms over {} requests", v.p99_ms, v.requests),
        );
        return Some(format!(
            "p99 {:.1} ms > {} ms at {percent}%{on}",
            canary.p99_ms, gates.max_p99_ms
        ));
    }
    None
}

fn canary_of(versions: &[pb::VersionStats], version: u32) -> pb::VersionStats {
    versions
        .iter()
        .find(|v| v.version == version)
        .cloned()
        .unwrap_or_default()
}

/// "; failing on r3 (…), r1 (…)": the live replicas whose canary figure
/// passes `limit`, worst first; or "; worst on r3 (…)" when the fleet
/// fails though no replica does alone. Empty without a breakdown.
fn where_failing(
    stats: &pb::GetLiveStatsResponse,
    version: u32,
    limit: f64,
    figure: impl Fn(&pb::VersionStats) -> f64,
    describe: impl Fn(&pb::VersionStats) -> String,
) -> String {
    let mut replicas: Vec<(&str, pb::VersionStats)> = stats
        .replicas
        .iter()
        .filter(|r| !r.stale)
        .map(|r| (r.replica.as_str(), canary_of(&r.versions, version)))
        .filter(|(_, canary)| canary.requests > 0)
        .collect();
    replicas.sort_by(|a, b| figure(&b.1).total_cmp(&figure(&a.1)).then(a.0.cmp(b.0)));
    let named = |(name, canary): &(&str, pb::VersionStats)| format!("{name} ({})", describe(canary));
    let failing: Vec<String> = replicas
        .iter()
        .filter(|(_, canary)| figure(canary) > limit)
        .map(named)
        .collect();
    if !failing.is_empty() {
        format!("; failing on {}", failing.join(", "))
    } else if let Some(worst) = replicas.first() {
        format!("; worst on {}", named(worst))
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canary(requests: u64, errors: u64, p99_ms: f64) -> pb::VersionStats {
        pb::VersionStats {
            version: 2,
            requests,
            errors,
            error_rate: errors as f64 / requests as f64,
            p99_ms,
            ..Default::default()
        }
    }

    fn replica(name: &str, stale: bool, canary: pb::VersionStats) -> pb::ReplicaLiveStats {
        pb::ReplicaLiveStats {
            replica: name.into(),
            stale,
            versions: vec![canary],
            ..Default::default()
        }
    }

    const GATES: LiveGates = LiveGates {
        min_requests: 10,
        max_error_rate: 0.01,
        max_p99_ms: 50.0,
    };

    #[test]
    fn a_failed_gate_names_the_replicas_where_the_canary_fails_worst_first() {
        let stats = pb::GetLiveStatsResponse {
            versions: vec![canary(300, 110, 5.0)],
            replicas: vec![
                replica("b", false, canary(100, 0, 5.0)),
                replica("c", false, canary(100, 100, 1.0)),
                replica("a", false, canary(100, 10, 5.0)),
                // Stale replicas are not in the fleet's figures, nor named.
                replica("d", true, canary(100, 100, 1.0)),
            ],
            ..Default::default()
        };
        assert_eq!(
            live_gate_failure(&GATES, &stats, 2, 25.0).unwrap(),
            "error rate 0.3667 > 0.01 at 25%; failing on c (error rate 1.0000 over 100 requests), \
             a (error rate 0.1000 over 100 requests)"
        );
    }

    #[test]
    fn when_no_replica_fails_alone_the_worst_is_named() {
        let stats = pb::GetLiveStatsResponse {
            versions: vec![canary(200, 0, 60.0)],
            replicas: vec![
                replica("a", false, canary(100, 0, 45.0)),
                replica("b", false, canary(100, 0, 48.0)),
            ],
            ..Default::default()
        };
        assert_eq!(
            live_gate_failure(&GATES, &stats, 2, 5.0).unwrap(),
            "p99 60.0 ms > 50 ms at 5%; worst on b (p99 48.0 ms over 100 requests)"
        );
    }

    #[test]
    fn too_few_requests_fail_and_a_healthy_canary_passes() {
        let few = pb::GetLiveStatsResponse {
            versions: vec![canary(3, 0, 1.0)],
            ..Default::default()
        };
        assert_eq!(
            live_gate_failure(&GATES, &few, 2, 5.0).unwrap(),
            "only 3 canary requests at 5%, fewer than --min-requests 10"
        );
        let missing = pb::GetLiveStatsResponse::default();
        assert!(live_gate_failure(&GATES, &missing, 2, 5.0).is_some());
        let healthy = pb::GetLiveStatsResponse {
            versions: vec![canary(100, 1, 10.0)],
            ..Default::default()
        };
        assert_eq!(live_gate_failure(&GATES, &healthy, 2, 5.0), None);
        // A server without the breakdown: the fleet's figures alone.
        let mut failing = healthy.clone();
        failing.versions[0] = canary(100, 50, 10.0);
        assert_eq!(
            live_gate_failure(&GATES, &failing, 2, 5.0).unwrap(),
            "error rate 0.5000 > 0.01 at 5%"
        );
    }
}
