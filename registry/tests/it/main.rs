//! The registry's integration tests, one binary: every behaviour runs
//! against a SQLite file and a PostgreSQL database (see
//! `serval_registry::testing` for how the test server is found).

/// Runs each named `async fn(Backend)` as two tests, `NAME::sqlite` and
/// `NAME::postgres`; the second skips when there is no PostgreSQL (see
/// `serval_registry::testing::postgres_available`).
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn sqlite() {
                    super::$name(serval_registry::Backend::Sqlite).await
                }

                #[tokio::test]
                async fn postgres() {
                    if !serval_registry::testing::postgres_available() {
                        return;
                    }
                    super::$name(serval_registry::Backend::Postgres).await
                }
            }
        )*
    };
}

/// A version of `model` with these weights and placeholder metadata.
fn new_version(model: &str, weights: &[u8]) -> serval_registry::NewVersion {
    serval_registry::NewVersion {
        model: model.to_string(),
        recipe: serde_json::json!({"label_column": "y"}),
        encoder: serde_json::json!({"columns": []}),
        metrics: serde_json::json!({"auc": 0.9}),
        dataset: serde_json::json!({"rows": 10}),
        weights: weights.to_vec(),
        actor: "trainer".to_string(),
    }
}

mod changes;
mod delete;
mod fleet_stats;
mod jobs;
mod rollout;
mod storage;
mod store;
