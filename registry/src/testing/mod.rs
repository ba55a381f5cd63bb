//! Test support (feature `testing`): a fresh, empty registry database on
//! either engine, for the tests of every crate.
//!
//! SQLite databases are files in a temporary directory. PostgreSQL
//! databases are created on one server per test process: the one named by
//! `SERVAL_TEST_POSTGRES_URL` when it is set, else a throwaway cluster
//! started on first use from the installed binaries ([`TestCluster`]) and
//! removed when the process ends. Each test gets its own database, dropped
//! when the [`TestDatabase`] is. Without PostgreSQL binaries, the
//! PostgreSQL tests skip (see [`postgres_available`]) unless
//! `SERVAL_REQUIRE_POSTGRES=1`. A SQLite registry can be made full at a
//! chosen size ([`limited_to_pages`]).

mod cluster;
mod full;

use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::{Connection, Executor, PgConnection};

pub use cluster::TestCluster;
pub use full::limited_to_pages;
pub(crate) use full::session_settings;

use crate::{Backend, Registry};

/// Environment variable naming the PostgreSQL server tests create their
/// databases on (a URL whose user may CREATE DATABASE). Set, it wins over
/// starting a throwaway cluster.
pub const POSTGRES_URL_VAR: &str = "SERVAL_TEST_POSTGRES_URL";

/// Environment variable that, set to `1`, makes a missing PostgreSQL a
/// test failure instead of a skip (CI sets it).
pub const REQUIRE_POSTGRES_VAR: &str = "SERVAL_REQUIRE_POSTGRES";

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
    /// When there is no PostgreSQL (check [`postgres_available`] first to
    /// skip instead) or the server cannot be reached.
    pub async fn postgres() -> Self {
        let server = postgres_server_url();
        let name = unique_database_name();
        let mut admin = PgConnection::connect(&server)
            .await
            .unwrap_or_else(|error| panic!("cannot reach the test PostgreSQL server at {server}: {error}"));
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

/// Whether this process has a PostgreSQL server for tests: the one named
/// by `SERVAL_TEST_POSTGRES_URL`, or a throwaway cluster started now (once
/// per process). Without PostgreSQL binaries it prints one line saying the
/// PostgreSQL tests are skipped and returns false, or panics when
/// `SERVAL_REQUIRE_POSTGRES=1`. Tests of the PostgreSQL backend start with
/// `if !postgres_available() { return; }`.
///
/// # Panics
/// When binaries are installed but a cluster cannot be started, or when
/// PostgreSQL is required and missing.
pub fn postgres_available() -> bool {
    shared_server().is_some()
}

/// The test PostgreSQL server's URL.
///
/// # Panics
/// When there is none (see [`postgres_available`]).
pub fn postgres_server_url() -> String {
    shared_server().map(str::to_string).unwrap_or_else(|| {
        panic!(
            "no PostgreSQL for the tests: install it (apt-get install postgresql) or set \
             {POSTGRES_URL_VAR} to a server where this user may CREATE DATABASE"
        )
    })
}

/// The process's one test server URL, decided on first use.
fn shared_server() -> Option<&'static str> {
    /// The cluster, when this process started one: kept for the life of
    /// the process; its watchdog removes it after the process ends.
    static SHARED: OnceLock<Option<(String, Option<TestCluster>)>> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            if let Ok(url) = std::env::var(POSTGRES_URL_VAR) {
                return Some((url, None));
            }
            if TestCluster::binaries().is_none() {
                let required = std::env::var(REQUIRE_POSTGRES_VAR).is_ok_and(|v| v == "1");
                let message = format!(
                    "PostgreSQL tests skipped: no PostgreSQL binaries on PATH or in \
                     /usr/lib/postgresql/*/bin; install them with `apt-get install postgresql` \
                     (or set {POSTGRES_URL_VAR} to a running server)"
                );
                assert!(!required, "{REQUIRE_POSTGRES_VAR}=1: {message}");
                // Straight to the stream, past the test harness's capture:
                // the one line a skipped half of the suite leaves.
                let _ = writeln!(std::io::stderr(), "{message}");
                return None;
            }
            let cluster = TestCluster::start()
                .unwrap_or_else(|error| panic!("cannot start a throwaway PostgreSQL for the tests: {error}"));
            Some((cluster.url(), Some(cluster)))
        })
        .as_ref()
        .map(|(url, _)| url.as_str())
}

/// `server` (a postgres:// URL) with its database path replaced by `name`.
pub fn with_database(server: &str, name: &str) -> String {
    let mut url = url::Url::parse(server).expect("the test PostgreSQL server's URL is a URL");
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
