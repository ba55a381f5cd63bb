//! What serves traffic: aliases, the traffic policy (stable version plus an
//! optional canary share), and the append-only audit log of every change.
//! Each change is one transaction that also appends its audit event.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::storage::Room;
use crate::store::{Backend, timestamp};
use crate::{Registry, RegistryError, Result, validate_alias_name};

/// A model's traffic policy: requests without a version or alias go to the
/// stable version, except `canary_percent` of them to the canary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrafficPolicy {
    pub stable_version: u32,
    pub canary_version: Option<u32>,
    pub canary_percent: f64,
    /// Bumped on every change; pass it back to detect concurrent changes.
    pub revision: u64,
    pub updated_at: DateTime<Utc>,
    /// A version that also scores `shadow_percent` of the default traffic,
    /// without answering (absent from policies recorded before shadows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow_version: Option<u32>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub shadow_percent: f64,
}

fn is_zero(value: &f64) -> bool {
    *value == 0.0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alias {
    pub name: String,
    pub version: u32,
    pub updated_at: DateTime<Utc>,
}

/// Everything that decides which version answers a model's requests.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RolloutState {
    pub model: String,
    pub policy: Option<TrafficPolicy>,
    pub aliases: Vec<Alias>,
    /// The newest version (what serves when there is no policy).
    pub latest_version: Option<u32>,
}

/// A change of the traffic policy.
#[derive(Debug, Clone, PartialEq)]
pub enum TrafficChange {
    /// Send `percent` of requests to `version`; the stable version stays
    /// (when there is no policy yet, the newest version other than the
    /// canary becomes stable).
    Canary { version: u32, percent: f64 },
    /// The canary becomes the stable version, at 100 %.
    Promote,
    /// Remove the canary, or make `to` the stable version with no canary.
    Rollback { to: Option<u32> },
    /// Remove the policy: default traffic follows the latest version.
    Clear,
    /// Score `percent` of default traffic with `version` too, without
    /// answering with it; `None` stops shadowing. Without a policy, the
    /// newest other version becomes stable, as for a canary.
    Shadow { version: Option<u32>, percent: f64 },
}

/// Who makes a change, and why.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChangeContext {
    pub actor: String,
    pub reason: String,
}

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub id: u64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub model: String,
    pub kind: String,
    pub before: Value,
    pub after: Value,
    pub reason: String,
}

/// Which audit events to read.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub model: Option<String>,
    /// Only events with a larger id.
    pub after_id: Option<u64>,
    /// Only events at or before this time.
    pub until: Option<DateTime<Utc>>,
    pub limit: Option<u32>,
}

/// What served a model's default traffic at some moment.
#[derive(Debug, Clone, PartialEq)]
pub struct ServingAt {
    /// The traffic policy in force, if one had been set by then.
    pub policy: Option<TrafficPolicy>,
    /// The newest version registered by then (what served without policy).
    pub latest_version: Option<u32>,
}

/// Appends one audit event inside the caller's transaction.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn append_audit(
    tx: &mut Transaction<'_, Any>,
    at_ms: i64,
    actor: &str,
    model: &str,
    kind: &str,
    before: &Value,
    after: &Value,
    reason: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_events (at_ms, actor, model, kind, before, after, reason) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(at_ms)
    .bind(actor)
    .bind(model)
    .bind(kind)
    .bind(before.to_string())
    .bind(after.to_string())
    .bind(reason)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn policy_from_row(row: &AnyRow) -> TrafficPolicy {
    TrafficPolicy {
        stable_version: row.get::<i64, _>("stable_version") as u32,
        canary_version: row.get::<Option<i64>, _>("canary_version").map(|v| v as u32),
        canary_percent: row.get("canary_percent"),
        revision: row.get::<i64, _>("revision") as u64,
        updated_at: timestamp(row.get("updated_at_ms")),
        shadow_version: row.get::<Option<i64>, _>("shadow_version").map(|v| v as u32),
        shadow_percent: row.get("shadow_percent"),
    }
}

fn event_from_row(row: &AnyRow) -> AuditEvent {
    let document = |field: &str| serde_json::from_str(&row.get::<String, _>(field)).unwrap_or(Value::Null);
    AuditEvent {
        id: row.get::<i64, _>("id") as u64,
        at: timestamp(row.get("at_ms")),
        actor: row.get("actor"),
        model: row.get("model"),
        kind: row.get("kind"),
        before: document("before"),
        after: document("after"),
        reason: row.get("reason"),
    }
}

impl Registry {
    pub(crate) async fn model_id(&self, tx: &mut Transaction<'_, Any>, model: &str) -> Result<i64> {
        sqlx::query_scalar("SELECT id FROM models WHERE name = $1")
            .bind(model)
            .fetch_optional(&mut **tx)
            .await?
            .ok_or_else(|| RegistryError::ModelNotFound(model.to_string()))
    }

    async fn require_version(
        &self,
        tx: &mut Transaction<'_, Any>,
        model: &str,
        model_id: i64,
        version: u32,
    ) -> Result<()> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT version FROM model_versions WHERE model_id = $1 AND version = $2")
                .bind(model_id)
                .bind(i64::from(version))
                .fetch_optional(&mut **tx)
                .await?;
        found.map(|_| ()).ok_or_else(|| RegistryError::VersionNotFound {
            model: model.to_string(),
            version,
        })
    }

    /// Opens a transaction that holds SQLite's write lock from the start, so
    /// read-then-write changes are serialised.
    /// Records a change made in `tx` as one audit event, commits, and
    /// answers with the model's new state.
    #[allow(clippy::too_many_arguments)]
    async fn commit_change(
        &self,
        mut tx: Transaction<'static, Any>,
        now: i64,
        context: &ChangeContext,
        model: &str,
        kind: &str,
        before: &Value,
        after: &Value,
    ) -> Result<RolloutState> {
        append_audit(
            &mut tx,
            now,
            &context.actor,
            model,
            kind,
            before,
            after,
            &context.reason,
        )
        .await?;
        tx.commit().await?;
        self.rollout_state(model).await
    }

    pub(crate) async fn begin_write(&self) -> Result<Transaction<'static, Any>> {
        let mut tx = self.pool.begin().await?;
        // Correctness: the write lock is taken now, before any read, so two
        // changes (from any server sharing the database) cannot both read
        // the same "before" state. SQLite: a no-op write takes the file's
        // write lock. PostgreSQL: one transaction-scoped advisory lock
        // serialises registry writes the same way (they are rare and short).
        let statement = match self.backend {
            Backend::Sqlite => "UPDATE models SET id = id WHERE false",
            Backend::Postgres => "SELECT pg_advisory_xact_lock(7306157330151772210)",
        };
        sqlx::query(statement).execute(&mut *tx).await?;
        Ok(tx)
    }

    /// The aliases, traffic policy and latest version of `model`.
    pub async fn rollout_state(&self, model: &str) -> Result<RolloutState> {
        let mut states = self.rollout_states(Some(model)).await?;
        states
            .pop()
            .ok_or_else(|| RegistryError::ModelNotFound(model.to_string()))
    }

    /// The rollout state of every model (or only `only`), by name.
    pub async fn rollout_states(&self, only: Option<&str>) -> Result<Vec<RolloutState>> {
        let models = sqlx::query(
            "SELECT m.name, (SELECT MAX(version) FROM model_versions v WHERE v.model_id = m.id) AS latest \
             FROM models m WHERE ($1 IS NULL OR m.name = $1) ORDER BY m.name",
        )
        .bind(only)
        .fetch_all(&self.pool)
        .await?;
        let mut states: Vec<RolloutState> = models
            .iter()
            .map(|row| RolloutState {
                model: row.get("name"),
                latest_version: row.get::<Option<i64>, _>("latest").map(|v| v as u32),
                ..Default::default()
            })
            .collect();
        let policies = sqlx::query(
            "SELECT m.name, p.* FROM traffic_policies p JOIN models m ON m.id = p.model_id \
             WHERE ($1 IS NULL OR m.name = $1)",
        )
        .bind(only)
        .fetch_all(&self.pool)
        .await?;
        for row in &policies {
            let name: String = row.get("name");
            if let Some(state) = states.iter_mut().find(|s| s.model == name) {
                state.policy = Some(policy_from_row(row));
            }
        }
        let aliases = sqlx::query(
            "SELECT m.name AS model, a.name, a.version, a.updated_at_ms FROM aliases a \
             JOIN models m ON m.id = a.model_id WHERE ($1 IS NULL OR m.name = $1) ORDER BY a.name",
        )
        .bind(only)
        .fetch_all(&self.pool)
        .await?;
        for row in &aliases {
            let model: String = row.get("model");
            if let Some(state) = states.iter_mut().find(|s| s.model == model) {
                state.aliases.push(Alias {
                    name: row.get("name"),
                    version: row.get::<i64, _>("version") as u32,
                    updated_at: timestamp(row.get("updated_at_ms")),
                });
            }
        }
        Ok(states)
    }

    /// Points alias `name` of `model` at `version` (which must exist).
    pub async fn set_alias(
        &self,
        model: &str,
        name: &str,
        version: u32,
        context: &ChangeContext,
    ) -> Result<RolloutState> {
        let changed = self.point_alias(model, name, version, context).await;
        self.checked_write(changed, Room::Unknown)
    }

    async fn point_alias(
        &self,
        model: &str,
        name: &str,
        version: u32,
        context: &ChangeContext,
    ) -> Result<RolloutState> {
        validate_alias_name(name)?;
        let now = Utc::now().timestamp_millis();
        let mut tx = self.begin_write().await?;
        let model_id = self.model_id(&mut tx, model).await?;
        self.require_version(&mut tx, model, model_id, version).await?;
        let before: Option<i64> =
            sqlx::query_scalar("SELECT version FROM aliases WHERE model_id = $1 AND name = $2")
                .bind(model_id)
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
        sqlx::query(
            "INSERT INTO aliases (model_id, name, version, updated_at_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (model_id, name) DO UPDATE SET version = excluded.version, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(model_id)
        .bind(name)
        .bind(i64::from(version))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let before = before.map_or(Value::Null, |v| json!({ "alias": name, "version": v }));
        let after = json!({ "alias": name, "version": version });
        self.commit_change(tx, now, context, model, "alias_set", &before, &after)
            .await
    }

    /// Removes alias `name` of `model`.
    pub async fn delete_alias(
        &self,
        model: &str,
        name: &str,
        context: &ChangeContext,
    ) -> Result<RolloutState> {
        let changed = self.remove_alias(model, name, context).await;
        self.checked_write(changed, Room::Unknown)
    }

    async fn remove_alias(&self, model: &str, name: &str, context: &ChangeContext) -> Result<RolloutState> {
        let now = Utc::now().timestamp_millis();
        let mut tx = self.begin_write().await?;
        let model_id = self.model_id(&mut tx, model).await?;
        let before: Option<i64> =
            sqlx::query_scalar("DELETE FROM aliases WHERE model_id = $1 AND name = $2 RETURNING version")
                .bind(model_id)
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(before) = before else {
            return Err(RegistryError::AliasNotFound {
                model: model.to_string(),
                name: name.to_string(),
            });
        };
        let before = json!({ "alias": name, "version": before });
        self.commit_change(tx, now, context, model, "alias_deleted", &before, &Value::Null)
            .await
    }

    /// Applies `change` to the traffic policy of `model` in one transaction.
    /// With `expected_revision`, refuses (Conflict) if the policy changed
    /// since the caller read it.
    pub async fn update_traffic(
        &self,
        model: &str,
        change: &TrafficChange,
        expected_revision: Option<u64>,
        context: &ChangeContext,
    ) -> Result<RolloutState> {
        let changed = self
            .change_traffic(model, change, expected_revision, context)
            .await;
        self.checked_write(changed, Room::Unknown)
    }

    async fn change_traffic(
        &self,
        model: &str,
        change: &TrafficChange,
        expected_revision: Option<u64>,
        context: &ChangeContext,
    ) -> Result<RolloutState> {
        let now = Utc::now().timestamp_millis();
        let mut tx = self.begin_write().await?;
        let model_id = self.model_id(&mut tx, model).await?;
        let current = sqlx::query("SELECT * FROM traffic_policies WHERE model_id = $1")
            .bind(model_id)
            .fetch_optional(&mut *tx)
            .await?
            .map(|row| policy_from_row(&row));
        let revision = current.as_ref().map_or(0, |p| p.revision);
        if let Some(expected) = expected_revision
            && expected != revision
        {
            return Err(RegistryError::Conflict {
                model: model.to_string(),
                expected,
                actual: revision,
            });
        }
        if *change == TrafficChange::Clear {
            let Some(policy) = current else {
                return Err(RegistryError::InvalidChange(format!(
                    "model {model:?} has no traffic policy to clear"
                )));
            };
            sqlx::query("DELETE FROM traffic_policies WHERE model_id = $1")
                .bind(model_id)
                .execute(&mut *tx)
                .await?;
            let before = serde_json::to_value(&policy).unwrap_or(Value::Null);
            return self
                .commit_change(tx, now, context, model, "traffic_changed", &before, &Value::Null)
                .await;
        }
        let mut shadow = current
            .as_ref()
            .and_then(|p| p.shadow_version.map(|v| (v, p.shadow_percent)));
        let (stable, canary, percent) = match (change, &current) {
            (TrafficChange::Shadow { version, percent }, _) => {
                if !(0.0..=100.0).contains(percent) || percent.is_nan() {
                    return Err(RegistryError::InvalidChange(format!(
                        "shadow percentage {percent} is outside 0-100"
                    )));
                }
                let Some(version) = version else {
                    let Some(policy) = &current else {
                        return Err(RegistryError::InvalidChange(format!(
                            "model {model:?} has no traffic policy, so no shadow to stop"
                        )));
                    };
                    shadow = None;
                    let kept = (
                        policy.stable_version,
                        policy.canary_version,
                        policy.canary_percent,
                    );
                    return self
                        .write_policy(tx, now, context, (model, model_id), current.clone(), kept, shadow)
                        .await;
                };
                self.require_version(&mut tx, model, model_id, *version).await?;
                let (stable, canary, canary_percent) = match &current {
                    Some(policy) => (
                        policy.stable_version,
                        policy.canary_version,
                        policy.canary_percent,
                    ),
                    None => (
                        self.newest_other_version(&mut tx, model, model_id, *version)
                            .await?,
                        None,
                        0.0,
                    ),
                };
                if *version == stable || canary == Some(*version) {
                    return Err(RegistryError::InvalidChange(format!(
                        "version {version} already serves {model:?}; shadow a version that does not"
                    )));
                }
                shadow = Some((*version, *percent));
                (stable, canary, canary_percent)
            }
            (TrafficChange::Canary { version, percent }, _) => {
                if !(0.0..=100.0).contains(percent) || percent.is_nan() {
                    return Err(RegistryError::InvalidChange(format!(
                        "canary percentage {percent} is outside 0-100"
                    )));
                }
                let stable = match &current {
                    Some(policy) => policy.stable_version,
                    // No policy yet: the newest other version, which is what
                    // served before the canary was registered.
                    None => {
                        self.newest_other_version(&mut tx, model, model_id, *version)
                            .await?
                    }
                };
                self.require_version(&mut tx, model, model_id, *version).await?;
                if *version == stable {
                    return Err(RegistryError::InvalidChange(format!(
                        "version {version} is already the stable version of {model:?}"
                    )));
                }
                (stable, Some(*version), *percent)
            }
            (
                TrafficChange::Promote,
                Some(TrafficPolicy {
                    canary_version: Some(canary),
                    ..
                }),
            ) => (*canary, None, 0.0),
            (TrafficChange::Promote, _) => {
                return Err(RegistryError::InvalidChange(format!(
                    "model {model:?} has no canary to promote"
                )));
            }
            (TrafficChange::Rollback { to: Some(version) }, _) => {
                self.require_version(&mut tx, model, model_id, *version).await?;
                (*version, None, 0.0)
            }
            (TrafficChange::Rollback { to: None }, Some(policy)) if policy.canary_version.is_some() => {
                (policy.stable_version, None, 0.0)
            }
            (TrafficChange::Rollback { to: None }, _) => {
                return Err(RegistryError::InvalidChange(format!(
                    "model {model:?} has no canary to roll back; name a version to roll back to"
                )));
            }
            (TrafficChange::Clear, _) => unreachable!("handled above"),
        };
        // A version that now serves no longer shadows.
        if shadow.is_some_and(|(version, _)| version == stable || canary == Some(version)) {
            shadow = None;
        }
        self.write_policy(
            tx,
            now,
            context,
            (model, model_id),
            current,
            (stable, canary, percent),
            shadow,
        )
        .await
    }

    /// The newest version of `model` other than `version`: what serves
    /// when a policy is first made around `version`.
    async fn newest_other_version(
        &self,
        tx: &mut Transaction<'_, Any>,
        model: &str,
        model_id: i64,
        version: u32,
    ) -> Result<u32> {
        sqlx::query_scalar::<_, Option<i64>>(
            "SELECT MAX(version) FROM model_versions WHERE model_id = $1 AND version != $2",
        )
        .bind(model_id)
        .bind(i64::from(version))
        .fetch_one(&mut **tx)
        .await?
        .map(|v| v as u32)
        .ok_or_else(|| {
            RegistryError::InvalidChange(format!("model {model:?} has no other version to keep as stable"))
        })
    }

    /// Stores the new policy and its audit event, and commits.
    /// Takes the stable version, the canary and its share, and the shadow
    /// and its share.
    #[allow(clippy::too_many_arguments)]
    async fn write_policy(
        &self,
        mut tx: Transaction<'static, Any>,
        now: i64,
        context: &ChangeContext,
        (model, model_id): (&str, i64),
        current: Option<TrafficPolicy>,
        (stable, canary, percent): (u32, Option<u32>, f64),
        shadow: Option<(u32, f64)>,
    ) -> Result<RolloutState> {
        let revision = current.as_ref().map_or(0, |p| p.revision);
        sqlx::query(
            "INSERT INTO traffic_policies (model_id, stable_version, canary_version, canary_percent, revision, updated_at_ms, \
             shadow_version, shadow_percent) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (model_id) DO UPDATE SET stable_version = excluded.stable_version, \
             canary_version = excluded.canary_version, canary_percent = excluded.canary_percent, \
             revision = excluded.revision, updated_at_ms = excluded.updated_at_ms, \
             shadow_version = excluded.shadow_version, shadow_percent = excluded.shadow_percent",
        )
        .bind(model_id)
        .bind(i64::from(stable))
        .bind(canary.map(i64::from))
        .bind(percent)
        .bind((revision + 1) as i64)
        .bind(now)
        .bind(shadow.map(|(version, _)| i64::from(version)))
        .bind(shadow.map_or(0.0, |(_, percent)| percent))
        .execute(&mut *tx)
        .await?;
        let after = TrafficPolicy {
            stable_version: stable,
            canary_version: canary,
            canary_percent: percent,
            revision: revision + 1,
            updated_at: timestamp(now),
            shadow_version: shadow.map(|(version, _)| version),
            shadow_percent: shadow.map_or(0.0, |(_, percent)| percent),
        };
        let before = current.map_or(Value::Null, |p| serde_json::to_value(p).unwrap_or(Value::Null));
        let after_json = serde_json::to_value(&after).unwrap_or(Value::Null);
        self.commit_change(tx, now, context, model, "traffic_changed", &before, &after_json)
            .await
    }

    /// Audit events, oldest first.
    pub async fn audit_events(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>> {
        let rows = sqlx::query(
            "SELECT * FROM audit_events WHERE ($1 IS NULL OR model = $1) AND id > $2 \
             AND ($3 IS NULL OR at_ms <= $3) ORDER BY id LIMIT $4",
        )
        .bind(filter.model.as_deref())
        .bind(filter.after_id.unwrap_or(0).min(i64::MAX as u64) as i64)
        .bind(filter.until.map(|t| t.timestamp_millis()))
        .bind(filter.limit.map_or(i64::MAX, i64::from))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(event_from_row).collect())
    }

    /// The id of the newest audit event (0 when there is none).
    pub async fn latest_audit_id(&self) -> Result<u64> {
        let id: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM audit_events")
            .fetch_one(&self.pool)
            .await?;
        Ok(id.unwrap_or(0) as u64)
    }

    /// What served `model`'s default traffic at `at`, from the audit log.
    pub async fn serving_at(&self, model: &str, at: DateTime<Utc>) -> Result<ServingAt> {
        let exists: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM models WHERE name = $1")
            .bind(model)
            .fetch_one(&self.pool)
            .await?;
        if exists == 0 {
            return Err(RegistryError::ModelNotFound(model.to_string()));
        }
        let at_ms = at.timestamp_millis();
        let policy: Option<String> = sqlx::query_scalar(
            "SELECT after FROM audit_events WHERE model = $1 AND kind = 'traffic_changed' AND at_ms <= $2 \
             ORDER BY id DESC LIMIT 1",
        )
        .bind(model)
        .bind(at_ms)
        .fetch_optional(&self.pool)
        .await?;
        let latest: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(v.version) FROM model_versions v JOIN models m ON m.id = v.model_id \
             WHERE m.name = $1 AND v.created_at_ms <= $2",
        )
        .bind(model)
        .bind(at_ms)
        .fetch_one(&self.pool)
        .await?;
        Ok(ServingAt {
            policy: policy.and_then(|text| serde_json::from_str(&text).ok()),
            latest_version: latest.map(|v| v as u32),
        })
    }
}
