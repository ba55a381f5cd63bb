//! The registry's integration tests, one binary: every behaviour runs
//! against a SQLite file and a PostgreSQL database (see
//! `serval_registry::testing` for how the test server is found).

/// Runs each named `async fn(Backend)` as two tests, `NAME::sqlite` and
/// `NAME::postgres`.
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
                    super::$name(serval_registry::Backend::Postgres).await
                }
            }
        )*
    };
}

mod changes;
mod delete;
mod jobs;
mod rollout;
mod store;
