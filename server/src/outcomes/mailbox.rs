//! The task that takes the outcomes other replicas posted for this one's
//! predictions from the registry's outcome mailbox once a second and joins
//! them here, as if they had been reported here; and prunes posts older
//! than the outcome window now and then. Replicas whose ids an outcome
//! carries are found by their tag (`ids`); ReportOutcomes posts.

use std::sync::Arc;

use chrono::Utc;
use serval_registry::MailboxOutcome;

use super::{Outcome, OutcomeStore};
use crate::service::ServiceState;

/// How often the mailbox is read.
const TAKE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Outcomes taken in one transaction; more wait for the next turn, which
/// comes at once while full batches keep coming.
const TAKE_AT_MOST: u32 = 10_000;

/// Turns between two prunings of old posts (by each replica).
const PRUNE_EVERY: u32 = 60;

/// Starts taking `state`'s posted outcomes (when outcome tracking is on);
/// the task ends when the server begins to stop.
pub fn spawn_mailbox(state: Arc<ServiceState>) {
    if state.outcomes.enabled() {
        tokio::spawn(mailbox_task(state));
    }
}

async fn mailbox_task(state: Arc<ServiceState>) {
    let mut stopping = state.stopping.clone();
    let mut ticker = tokio::time::interval(TAKE_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let tag = state.outcomes.tag().value();
    let mut failing = false;
    let mut turns: u32 = 0;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stopping.wait_for(|stopping| *stopping) => return,
        }
        loop {
            let taken = state
                .registry
                .take_outcomes(tag, TAKE_AT_MOST, |posted| join(&state.outcomes, posted))
                .await;
            match taken {
                Ok(taken) => {
                    if std::mem::take(&mut failing) {
                        tracing::info!("outcomes posted by other replicas are taken again");
                    }
                    if taken < TAKE_AT_MOST as usize {
                        break;
                    }
                }
                Err(error) => {
                    if !std::mem::replace(&mut failing, true) {
                        tracing::warn!(
                            %error,
                            "cannot take the outcomes other replicas posted for this one; they wait \
                             in the registry"
                        );
                    }
                    break;
                }
            }
        }
        turns = turns.wrapping_add(1);
        if turns.is_multiple_of(PRUNE_EVERY) {
            let posted_before = Utc::now() - state.outcomes.window();
            if let Err(error) = state.registry.prune_outcome_mailbox(posted_before).await {
                tracing::debug!(%error, "cannot prune old posted outcomes yet");
            }
        }
    }
}

/// Joins outcomes taken from the mailbox to this replica's predictions.
fn join(store: &OutcomeStore, posted: &[MailboxOutcome]) {
    let outcomes: Vec<Outcome<'_>> = posted
        .iter()
        .map(|outcome| Outcome {
            prediction_id: &outcome.prediction_id,
            label: outcome.label,
            observed_at: Some(outcome.observed_at),
        })
        .collect();
    store.report(&outcomes);
}
