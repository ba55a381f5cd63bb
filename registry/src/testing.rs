//! Test support (feature `testing`): a fresh, empty registry database on
//! either engine, for the tests of every crate.
//!
//! SQLite databases are files in a temporary directory. PostgreSQL
//! databases are created on the server named by `SERVAL_TEST_POSTGRES_URL`
//! (`scripts/test-postgres.sh start` runs a throwaway one and prints the
//! line to export); each test gets its own database, dropped when the
//! [`TestDatabase`] is.

use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::{Connection, Executor, PgConnection};

use crate::{Backend, Registry};

/// Environment variable naming the PostgreSQL server tests create their
/// databases on (a URL whose user may CREATE DATABASE).
pub const POSTGRES_URL_VAR: &str = "SERVAL_TEST_POSTGRES_URL";

/// One empty registry database that lives as long as this value.
#[derive(Debug)]
pub struct TestDatabase {
    backend: Backend,
    location: String,
    /// Keeps the SQLite file's directory.
    _dir: Option<tempfile::TempDir>,
    /// PostgreSQL: the server URL and the database's name, to drop it.
    postgres: Option<(String, String)>,
}

impl TestDatabase {
    /// A fresh database on `backend`.
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => Self::sqlite(),
            Backend::Postgres => Self::postgres().await,
        }
    }

    /// A new SQLite file in a temporary directory.
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let location = dir.path().join("serval.db").to_string_lossy().into_owned();
        TestDatabase {
            backend: Backend::Sqlite,
            location,
            _dir: Some(dir),
            postgres: None,
        }
    }

    /// A new, empty database on the test PostgreSQL server.
    ///
    /// # Panics
    /// When `SERVAL_TEST_POSTGRES_URL` is not set or the server cannot be
    /// reached: the PostgreSQL tests are part of the suite, not optional.
    pub async fn postgres() -> Self {
        let server = postgres_server_url();
        let name = unique_database_name();
        let mut admin = PgConnection::connect(&server).await.unwrap_or_else(|error| {
            panic!("cannot reach the test PostgreSQL server at {server} ({POSTGRES_URL_VAR}): {error}")
        });
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .expect("create a test database");
        let _ = admin.close().await;
        TestDatabase {
            backend: Backend::Postgres,
            location: with_database(&server, &name),
            _dir: None,
            postgres: Some((server, name)),
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// What `serval-server --database` and [`Registry::open`] take.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Opens (and migrates) the registry in this database.
    pub async fn open(&self) -> Registry {
        Registry::open(&self.location)
            .await
            .unwrap_or_else(|error| panic!("open test registry {}: {error}", self.location))
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some((server, name)) = self.postgres.take() else {
            return;
        };
        // Best effort, off any async runtime: a database left behind only
        // costs disk on a throwaway server.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
            if let Ok(runtime) = runtime {
                runtime.block_on(async {
                    if let Ok(mut admin) = PgConnection::connect(&server).await {
                        let _ = admin
                            .execute(sqlx::AssertSqlSafe(format!(
                                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                            )))
                            .await;
                    }
                });
            }
        })
        .join();
    }
}

/// The test PostgreSQL server's URL.
///
/// # Panics
/// When `SERVAL_TEST_POSTGRES_URL` is not set, saying how to start one.
pub fn postgres_server_url() -> String {
    std::env::var(POSTGRES_URL_VAR).unwrap_or_else(|_| {
        panic!(
            "{POSTGRES_URL_VAR} is not set: the PostgreSQL tests need a server. Start a throwaway \
             one with `eval \"$(scripts/test-postgres.sh start)\"` (needs Debian's postgresql \
             package), or point the variable at a server where this user may CREATE DATABASE"
        )
    })
}

/// `server` (a postgres:// URL) with its database path replaced by `name`.
pub fn with_database(server: &str, name: &str) -> String {
    let mut url = url::Url::parse(server).expect("SERVAL_TEST_POSTGRES_URL is a URL");
    url.set_path(name);
    url.to_string()
}

fn unique_database_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "serval_test_{}_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
