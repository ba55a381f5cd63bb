//! ReportOutcomes: checks a batch of reported outcomes, joins them to this
//! server's predictions (`outcomes`) and posts those of other replicas
//! sharing the registry to them (`outcomes::mailbox`); and the online quality that
//! GetLiveStats reports per version (the fleet's, see `fleet_stats`). Unknown, foreign, expired and repeated
//! ids are counted, not refused; malformed rows are refused, named.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use serval_proto::v1 as pb;
use serval_registry::MailboxOutcome;
use tonic::{Request, Response, Status};

use super::{ServiceState, invalid};
use crate::error::ServalError;
use crate::outcomes::ids::{self, ReplicaTag};
use crate::outcomes::{Outcome, QualitySummary, VersionQuality, now_seconds};

/// Outcomes one call may carry.
pub const MAX_OUTCOMES_PER_CALL: usize = 100_000;

/// Longer than any prediction id: refused as malformed, not looked up.
const MAX_ID_BYTES: usize = 128;

pub async fn report_outcomes(
    state: &ServiceState,
    request: Request<pb::ReportOutcomesRequest>,
) -> Result<Response<pb::ReportOutcomesResponse>, Status> {
    if !state.outcomes.enabled() {
        return Err(ServalError::FailedPrecondition(
            "outcome tracking is off on this server (--outcome-tracking off): it issued no prediction ids"
                .into(),
        )
        .into());
    }
    let request = request.into_inner();
    if request.outcomes.len() > MAX_OUTCOMES_PER_CALL {
        return Err(invalid(format!(
            "outcomes: {} in one call; the server accepts at most {MAX_OUTCOMES_PER_CALL}",
            request.outcomes.len()
        )));
    }
    let mut outcomes = Vec::with_capacity(request.outcomes.len());
    for (row, reported) in request.outcomes.iter().enumerate() {
        let id = reported.prediction_id.as_str();
        if id.is_empty() {
            return Err(invalid(format!("outcomes[{row}].prediction_id: empty")));
        }
        if id.len() > MAX_ID_BYTES {
            return Err(invalid(format!(
                "outcomes[{row}].prediction_id: {} bytes; a prediction id has at most {MAX_ID_BYTES}",
                id.len()
            )));
        }
        let observed_at = match &reported.observed_at {
            None => None,
            Some(at) if (0..1_000_000_000).contains(&at.nanos) && at.seconds >= 0 => {
                Some(u32::try_from(at.seconds).unwrap_or(u32::MAX))
            }
            Some(_) => {
                return Err(invalid(format!(
                    "outcomes[{row}].observed_at: not a valid time after 1970"
                )));
            }
        };
        outcomes.push(Outcome {
            prediction_id: id,
            label: reported.label,
            observed_at,
        });
    }
    let (outcomes, forwarded) = forward_to_their_replicas(state, outcomes).await?;
    let counts = state.outcomes.report(&outcomes);
    Ok(Response::new(pb::ReportOutcomesResponse {
        matched: counts.matched,
        unmatched: counts.unmatched,
        expired: counts.expired,
        duplicate: counts.duplicate,
        other_replica: counts.other_replica,
        forwarded,
    }))
}

/// Posts the outcomes of ids issued by other replicas sharing the registry
/// (those with a heartbeat there) to them; answers the rest and how many
/// were posted. Nothing is joined here before the post is stored, so a
/// failed call can be sent again without duplicates.
async fn forward_to_their_replicas<'a>(
    state: &ServiceState,
    outcomes: Vec<Outcome<'a>>,
) -> Result<(Vec<Outcome<'a>>, u64), Status> {
    let own = state.outcomes.tag();
    let foreign_tag = |outcome: &Outcome<'_>| {
        ids::parse(outcome.prediction_id)
            .map(|id| id.tag)
            .filter(|tag| *tag != own)
    };
    if !outcomes.iter().any(|o| foreign_tag(o).is_some()) {
        return Ok((outcomes, 0));
    }
    let fleet: HashSet<ReplicaTag> = state
        .registry
        .replica_heartbeats()
        .await
        .map_err(ServalError::from)?
        .iter()
        .map(|heartbeat| ReplicaTag::of(&heartbeat.replica))
        .filter(|tag| *tag != own)
        .collect();
    let now = now_seconds();
    let mut local = Vec::with_capacity(outcomes.len());
    let mut posted = Vec::new();
    for outcome in outcomes {
        match foreign_tag(&outcome).filter(|tag| fleet.contains(tag)) {
            Some(tag) => posted.push(MailboxOutcome {
                replica_tag: tag.value(),
                prediction_id: outcome.prediction_id.to_string(),
                label: outcome.label,
                observed_at: outcome.observed_at.unwrap_or(now),
            }),
            None => local.push(outcome),
        }
    }
    state
        .registry
        .post_outcomes(&posted)
        .await
        .map_err(ServalError::from)?;
    let forwarded = posted.len() as u64;
    state
        .outcomes
        .totals
        .forwarded
        .fetch_add(forwarded, Ordering::Relaxed);
    Ok((local, forwarded))
}

fn online_quality(summary: &QualitySummary) -> Option<pb::OnlineQuality> {
    (summary.outcomes() > 0).then(|| pb::OnlineQuality {
        outcomes: summary.outcomes(),
        positives: summary.positives(),
        auc: summary.auc(),
        log_loss: summary.log_loss(),
        mean_score: summary.mean_score(),
        positive_rate: summary.positive_rate(),
        calibration: summary
            .calibration(10)
            .into_iter()
            .map(|bin| pb::CalibrationBin {
                mean_predicted: bin.mean_predicted,
                fraction_positive: bin.fraction_positive,
                rows: bin.rows,
            })
            .collect(),
    })
}

/// Adds each version's online quality in `qualities` to `versions`
/// (GetLiveStats), and the versions with outcomes but no call in the
/// window, as `arm_of` says.
pub fn attach_online_quality(
    qualities: &[VersionQuality],
    versions: &mut Vec<pb::VersionStats>,
    arm_of: impl Fn(u32) -> pb::Arm,
) {
    for VersionQuality {
        version,
        live,
        shadow,
        awaiting,
    } in qualities
    {
        let version = *version;
        let index = match versions.iter().position(|v| v.version == version) {
            Some(index) => index,
            None => {
                versions.push(pb::VersionStats {
                    version,
                    arm: arm_of(version) as i32,
                    ..Default::default()
                });
                versions.len() - 1
            }
        };
        let stats = &mut versions[index];
        stats.online = online_quality(live);
        stats.shadow = online_quality(shadow);
        stats.awaiting_outcomes = *awaiting;
    }
    versions.sort_by_key(|v| v.version);
}
