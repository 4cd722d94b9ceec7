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
        .busy_timeout(BUSY_TIMEOUT);
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
        .after_connect(|conn, _| Box::pin(async move { mark_if_read_only(conn).await }))
        .after_release(|conn, _| Box::pin(async move { still_usable(conn).await }))
        .connect_with(options)
        .await
        .map_err(DbError::Connect)?;
    sqlx::migrate!("./migrations").run(&pool).await?;
    Ok(pool)
}

/// How long a statement waits for another connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// SQLite opens a database file it may not write (permissions, an immutable file, a
/// read-only mount) read-only, silently, and the connection stays so after the file is
/// writable again. Such a connection is marked `query_only`, so that [`still_usable`] closes
/// it after one use instead of keeping it in the pool (reads go on meanwhile; writes through
/// it fail with "attempt to write a readonly database"). A table created in a transaction
/// that is rolled back tells, without writing anything to disk: the CREATE fails with
/// SQLITE_READONLY on a read-only connection, and with SQLITE_BUSY at once (no busy wait
/// here) while another connection writes.
async fn mark_if_read_only(conn: &mut sqlx::SqliteConnection) -> Result<(), sqlx::Error> {
    sqlx::raw_sql("PRAGMA busy_timeout = 0")
        .execute(&mut *conn)
        .await?;
    sqlx::raw_sql("BEGIN").execute(&mut *conn).await?;
    let probe = sqlx::raw_sql("CREATE TABLE _titanic_write_probe (x INTEGER)")
        .execute(&mut *conn)
        .await;
    sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await?;
    let read_only = match probe {
        Ok(_) => false,
        // SQLITE_READONLY and its extended codes.
        Err(sqlx::Error::Database(e)) => e
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            .is_some_and(|c| c & 0xff == 8),
        Err(e) => return Err(e),
    };
    let restore = format!("PRAGMA busy_timeout = {}", BUSY_TIMEOUT.as_millis());
    sqlx::raw_sql(sqlx::AssertSqlSafe(restore))
        .execute(&mut *conn)
        .await?;
    if read_only {
        tracing::warn!("the database file cannot be written: opened a read-only connection");
        sqlx::raw_sql("PRAGMA query_only = 1")
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Whether a connection given back to the pool may be reused: not when it was opened
/// read-only (see [`mark_if_read_only`]), and not when sqlx still counts a transaction on it.
/// When a COMMIT fails because the disk is full or the file cannot be written, SQLite rolls
/// the transaction back by itself; sqlx still counts it as open, its own ROLLBACK then fails,
/// and the connection would keep a transaction depth of 1 for good: every later
/// `BEGIN IMMEDIATE` on it fails ("attempted to call begin_with at non-zero transaction
/// depth") long after the disk has room again. Such connections are closed (the pool opens
/// fresh ones). The pragma runs after any rollback a dropped transaction queued.
async fn still_usable(conn: &mut sqlx::SqliteConnection) -> Result<bool, sqlx::Error> {
    use sqlx::Connection;
    let query_only: i64 = sqlx::query_scalar("PRAGMA query_only")
        .fetch_one(&mut *conn)
        .await?;
    if conn.is_in_transaction() {
        tracing::warn!("closing a connection left in a transaction that SQLite ended");
        return Ok(false);
    }
    Ok(query_only == 0)
}

/// A cheap round trip, for readiness.
pub async fn ping(pool: &SqlitePool) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1").execute(pool).await.map(|_| ())
}

/// A small write that reaches the disk (one row rewritten, committed), for readiness: it
/// fails while the disk is full or the file cannot be written, when reads still work.
pub async fn probe_write(pool: &SqlitePool) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO health_probe (id, probed_at) VALUES (1, ?1)
         ON CONFLICT (id) DO UPDATE SET probed_at = excluded.probed_at",
    )
    .bind(crate::core::time::now_micros())
    .execute(pool)
    .await
    .map(|_| ())
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
        probe_write(&pool).await.unwrap();
        probe_write(&pool).await.unwrap();
        pool.close().await;
        // Reopening applies nothing new and keeps working.
        let again = connect(&settings).await.unwrap();
        ping(&again).await.unwrap();
    }

    #[tokio::test]
    async fn a_connection_whose_transaction_sqlite_ended_is_not_reused() {
        let dir = tempfile::tempdir().unwrap();
        let pool = connect(&DatabaseSettings {
            url: format!("sqlite://{}", dir.path().join("t.db").display()),
            max_connections: 1,
        })
        .await
        .unwrap();
        // SQLite ends the transaction behind sqlx's back, as it does when a COMMIT fails
        // with SQLITE_FULL or SQLITE_IOERR; sqlx's ROLLBACK on drop then fails.
        let mut tx = begin_write(&pool).await.unwrap();
        sqlx::query("ROLLBACK").execute(&mut *tx).await.unwrap();
        drop(tx);
        // The only connection was given back; the next write transaction still begins.
        let mut tx = begin_write(&pool).await.unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }

    #[tokio::test]
    async fn a_connection_that_cannot_write_is_marked_and_not_reused() {
        use sqlx::ConnectOptions;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let pool = connect(&DatabaseSettings {
            url: url.clone(),
            max_connections: 1,
        })
        .await
        .unwrap();
        let mut writable = pool.acquire().await.unwrap();
        mark_if_read_only(&mut writable).await.unwrap();
        assert!(still_usable(&mut writable).await.unwrap());
        drop(writable);
        // Opened read-only, as SQLite does by itself with a file it may not write.
        let mut read_only = SqliteConnectOptions::from_str(&url)
            .unwrap()
            .read_only(true)
            .connect()
            .await
            .unwrap();
        mark_if_read_only(&mut read_only).await.unwrap();
        assert!(!still_usable(&mut read_only).await.unwrap());
        let one: i64 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&mut read_only)
            .await
            .unwrap();
        assert_eq!(one, 1, "it still reads");
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
