//! The SQLite database shared by the offline store and the model registry.

use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::core::config::DatabaseSettings;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database url {url:?}: {source}")]
    Url { url: String, source: sqlx::Error },
    #[error("creating the database directory {dir}: {source}")]
    Directory { dir: String, source: std::io::Error },
    #[error("opening the database: {0}")]
    Connect(sqlx::Error),
    #[error("applying migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Opens (creating if needed) the SQLite database in WAL mode and applies the migrations
/// embedded from `migrations/`.
pub async fn connect(settings: &DatabaseSettings) -> Result<SqlitePool, DbError> {
    let options = SqliteConnectOptions::from_str(&settings.url)
        .map_err(|source| DbError::Url {
            url: settings.url.clone(),
            source,
        })?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // With WAL, NORMAL is durable against process crashes; FULL also survives power loss,
        // which is what an acknowledged write promises.
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(5));
    if let Some(parent) = options.get_filename().parent() {
        if !parent.as_os_str().is_empty() && !parent.exists() {
            std::fs::create_dir_all(parent).map_err(|source| DbError::Directory {
                dir: parent.display().to_string(),
                source,
            })?;
        }
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
