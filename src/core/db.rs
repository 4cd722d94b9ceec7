//! The SQLite database shared by the offline store and the model registry.

use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::core::config::DatabaseSettings;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database url {url:?}: {message}")]
    Url { url: String, message: String },
    #[error("creating the database directory {dir}: {cause}")]
    Directory { dir: String, cause: std::io::Error },
    #[error("opening the database: {0}")]
    Connect(sqlx::Error),
    #[error("applying migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Opens (creating if needed) the SQLite database in WAL mode and applies the migrations
/// embedded from `migrations/`.
/// Begins a transaction that will write, taking SQLite's write lock at once (`BEGIN
/// IMMEDIATE`). A deferred transaction that reads and then writes fails at once with
/// "database is locked" when another connection committed in between (the busy timeout does
/// not apply to that upgrade); an immediate one waits its turn instead.
pub async fn begin_write(
    pool: &SqlitePool,
) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
    pool.begin_with("BEGIN IMMEDIATE").await
}

pub async fn connect(settings: &DatabaseSettings) -> Result<SqlitePool, DbError> {
    let url_error = |message: String| DbError::Url {
        url: settings.url.clone(),
        message,
    };
    // sqlx would read any other text as a file name and create it.
    if !settings.url.starts_with("sqlite:") {
        return Err(url_error(
            "only SQLite is supported: use sqlite://PATH or sqlite::memory:".to_owned(),
        ));
    }
    let options = SqliteConnectOptions::from_str(&settings.url)
        .map_err(|e| url_error(e.to_string()))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // With WAL, NORMAL is durable against process crashes; FULL also survives power loss,
        // which is what an acknowledged write promises.
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(5));
    if let Some(parent) = options.get_filename().parent()
        && !parent.as_os_str().is_empty()
        && !parent.exists()
    {
        std::fs::create_dir_all(parent).map_err(|cause| DbError::Directory {
            dir: parent.display().to_string(),
            cause,
        })?;
    }
    let pool = SqlitePoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
        .map_err(DbError::Connect)?;
    sqlx::migrate!("./migrations").run(&pool).await?;
    Ok(pool)
}

/// A cheap round trip, for readiness.
pub async fn ping(pool: &SqlitePool) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1").execute(pool).await.map(|_| ())
}

/// A migrated database in a fresh temporary directory, for tests.
#[cfg(test)]
pub(crate) async fn temp_pool() -> (SqlitePool, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let pool = connect(&DatabaseSettings {
        url: format!("sqlite://{}", dir.path().join("t.db").display()),
        max_connections: 2,
    })
    .await
    .expect("test database");
    (pool, dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn creates_the_file_in_wal_mode_with_migrations_applied() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dir/t.db");
        let settings = DatabaseSettings {
            url: format!("sqlite://{}", path.display()),
            max_connections: 2,
        };
        let pool = connect(&settings).await.unwrap();
        assert!(path.is_file());
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        let tables: Vec<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
                .fetch_all(&pool)
                .await
                .unwrap();
        for table in [
            "feature_rows",
            "model_aliases",
            "model_versions",
            "registry",
        ] {
            assert!(tables.iter().any(|t| t == table), "{tables:?}");
        }
        ping(&pool).await.unwrap();
        pool.close().await;
        // Reopening applies nothing new and keeps working.
        let again = connect(&settings).await.unwrap();
        ping(&again).await.unwrap();
    }

    #[tokio::test]
    async fn a_bad_url_is_reported() {
        let settings = DatabaseSettings {
            url: "postgres-ish://nowhere".to_owned(),
            max_connections: 1,
        };
        assert!(matches!(connect(&settings).await, Err(DbError::Url { .. })));
    }
}
