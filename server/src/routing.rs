//! Which version answers a Predict call: a pinned version, an alias, the
//! traffic policy (stable or canary, sticky by routing key), or the latest
//! version. Holds an in-memory copy of every model's rollout state, swapped
//! whole when the registry changes.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rand::Rng;
use serval_proto::v1 as pb;
use serval_registry::RolloutState;
use sha2::{Digest, Sha256};

use crate::error::ServalError;

/// Buckets the canary share is measured in: 0.01 % each.
const BUCKETS: u64 = 10_000;

/// The routing decision for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub version: u32,
    pub arm: pb::Arm,
}

/// The rollout state of every model, as the server routes by it.
#[derive(Default)]
pub struct RoutingTable {
    models: RwLock<HashMap<String, Arc<RolloutState>>>,
}

/// Which of 10 000 buckets a routing key falls in, for a model. Stable
/// across processes and releases (SHA-256), so replicas agree and a key
/// keeps its arm while the canary share only rises.
pub fn routing_bucket(model: &str, key: &str) -> u64 {
    let digest = Sha256::new_with_prefix(model.as_bytes())
        .chain_update([0u8])
        .chain_update(key.as_bytes())
        .finalize();
    u64::from_be_bytes(digest[..8].try_into().expect("8 bytes")) % BUCKETS
}

/// Whether a bucket falls in the canary share.
fn in_canary(bucket: u64, percent: f64) -> bool {
    (bucket as f64) < percent * (BUCKETS as f64) / 100.0
}

impl RoutingTable {
    /// Replaces the state of `state.model`.
    pub fn replace(&self, state: RolloutState) {
        self.models
            .write()
            .expect("routing lock poisoned")
            .insert(state.model.clone(), Arc::new(state));
    }

    /// Replaces every model's state.
    pub fn replace_all(&self, states: Vec<RolloutState>) {
        let models = states
            .into_iter()
            .map(|s| (s.model.clone(), Arc::new(s)))
            .collect();
        *self.models.write().expect("routing lock poisoned") = models;
    }

    /// Forgets a deleted model.
    pub fn remove(&self, model: &str) {
        self.models.write().expect("routing lock poisoned").remove(model);
    }

    pub fn state(&self, model: &str) -> Option<Arc<RolloutState>> {
        self.models
            .read()
            .expect("routing lock poisoned")
            .get(model)
            .cloned()
    }

    /// Every model's state.
    pub fn states(&self) -> Vec<Arc<RolloutState>> {
        self.models
            .read()
            .expect("routing lock poisoned")
            .values()
            .cloned()
            .collect()
    }

    /// The version shadowing `model`'s default traffic, and its share.
    pub fn shadow(&self, model: &str) -> Option<(u32, f64)> {
        let state = self.state(model)?;
        let policy = state.policy.as_ref()?;
        policy.shadow_version.map(|v| (v, policy.shadow_percent))
    }

    /// Chooses the version for a call.
    pub fn route(
        &self,
        model: &str,
        version: Option<u32>,
        alias: &str,
        routing_key: &str,
    ) -> Result<Route, ServalError> {
        if let Some(version) = version {
            return Ok(Route {
                version,
                arm: pb::Arm::Pinned,
            });
        }
        let state = self
            .state(model)
            .ok_or_else(|| ServalError::NotFound(format!("model {model:?} not found")))?;
        if !alias.is_empty() {
            return state
                .aliases
                .iter()
                .find(|a| a.name == alias)
                .map(|a| Route {
                    version: a.version,
                    arm: pb::Arm::Alias,
                })
                .ok_or_else(|| ServalError::NotFound(format!("model {model:?} has no alias {alias:?}")));
        }
        if let Some(policy) = &state.policy {
            if let Some(canary) = policy.canary_version {
                let bucket = if routing_key.is_empty() {
                    rand::rng().random_range(0..BUCKETS)
                } else {
                    routing_bucket(model, routing_key)
                };
                if in_canary(bucket, policy.canary_percent) {
                    return Ok(Route {
                        version: canary,
                        arm: pb::Arm::Canary,
                    });
                }
            }
            return Ok(Route {
                version: policy.stable_version,
                arm: pb::Arm::Stable,
            });
        }
        state
            .latest_version
            .map(|version| Route {
                version,
                arm: pb::Arm::Latest,
            })
            .ok_or_else(|| ServalError::NotFound(format!("model {model:?} has no versions")))
    }
}

/// The versions a state sends traffic to: stable, canary, shadow, aliases,
/// and the latest version when there is no policy.
pub fn referenced_versions(state: &RolloutState) -> Vec<u32> {
    let mut versions: Vec<u32> = state.aliases.iter().map(|a| a.version).collect();
    match &state.policy {
        Some(policy) => {
            versions.push(policy.stable_version);
            versions.extend(policy.canary_version);
            versions.extend(policy.shadow_version);
        }
        None => versions.extend(state.latest_version),
    }
    versions.sort_unstable();
    versions.dedup();
    versions
}

#[cfg(test)]
mod tests {
    use serval_registry::{Alias, TrafficPolicy};

    use super::*;

    fn state(canary_percent: f64) -> RolloutState {
        RolloutState {
            model: "m".into(),
            policy: Some(TrafficPolicy {
                stable_version: 1,
                canary_version: Some(2),
                canary_percent,
                revision: 1,
                updated_at: Default::default(),
                shadow_version: Some(4),
                shadow_percent: 20.0,
            }),
            aliases: vec![Alias {
                name: "production".into(),
                version: 3,
                updated_at: Default::default(),
            }],
            latest_version: Some(3),
        }
    }

    #[test]
    fn keys_only_move_from_stable_to_canary_as_the_share_rises() {
        let table = RoutingTable::default();
        let mut previous: Vec<pb::Arm> = Vec::new();
        for percent in [0.0, 5.0, 10.0, 25.0, 50.0, 99.0, 100.0] {
            table.replace(state(percent));
            let arms: Vec<pb::Arm> = (0..2000)
                .map(|k| table.route("m", None, "", &format!("user-{k}")).unwrap().arm)
                .collect();
            let canary = arms.iter().filter(|&&a| a == pb::Arm::Canary).count() as f64 / 20.0;
            assert!((canary - percent).abs() < 3.5, "{canary}% at {percent}%");
            for (before, after) in previous.iter().zip(&arms) {
                assert!(!(*before == pb::Arm::Canary && *after == pb::Arm::Stable));
            }
            previous = arms;
        }
    }

    #[test]
    fn pinned_alias_policy_and_latest() {
        let table = RoutingTable::default();
        table.replace(state(0.0));
        assert_eq!(
            table.route("m", Some(7), "production", "k").unwrap().arm,
            pb::Arm::Pinned
        );
        assert_eq!(table.route("m", None, "production", "k").unwrap().version, 3);
        assert!(matches!(
            table.route("m", None, "staging", ""),
            Err(ServalError::NotFound(_))
        ));
        assert_eq!(
            table.route("m", None, "", "k").unwrap(),
            Route {
                version: 1,
                arm: pb::Arm::Stable
            }
        );
        table.replace(RolloutState {
            policy: None,
            ..state(0.0)
        });
        assert_eq!(table.route("m", None, "", "").unwrap().arm, pb::Arm::Latest);
        assert!(matches!(
            table.route("ghost", None, "", ""),
            Err(ServalError::NotFound(_))
        ));
        assert_eq!(referenced_versions(&state(5.0)), vec![1, 2, 3, 4]);
        let table = RoutingTable::default();
        table.replace(state(5.0));
        assert_eq!(table.shadow("m"), Some((4, 20.0)));
        assert_eq!(table.shadow("other"), None);
    }

    #[test]
    fn buckets_are_stable() {
        assert_eq!(routing_bucket("m", "user-1"), routing_bucket("m", "user-1"));
        assert_ne!(routing_bucket("m", "user-1"), routing_bucket("n", "user-1"));
    }
}
