//! The database shared by the offline store, the feature and model registries, the training
//! jobs and the monitoring tables: SQLite (one file, the embedded default) or PostgreSQL (one
//! database shared by every replica), chosen by the URL's scheme. The rest of the crate sees
//! one pool type, [`Pool`] (sqlx's `Any` driver), and writes SQL both backends run: `$N`
//! placeholders, `ON CONFLICT`, 64-bit integers, doubles and text. The few differences live
//! here ([`Backend`], [`begin_write`]) and in the two migration folders, `migrations/sqlite`
//! and `migrations/postgres`, which hold the same versions with the same meaning.

use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection};

use crate::core::config::DatabaseSettings;
use crate::core::os_user::{self, Access, OsUser};

/// The pool every store uses, whatever the backend.
pub type Pool = sqlx::AnyPool;
/// A transaction on [`Pool`].
pub type Tx = sqlx::Transaction<'static, sqlx::Any>;
/// A row read through [`Pool`].
pub type DbRow = sqlx::any::AnyRow;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database url {url:?}: {message}")]
    Url { url: String, message: String },
    /// A SQLite file, or the directory that holds it, that this process may not use.
    #[error("the SQLite database {file} cannot be used (this process: {user}): {problem}; {fix}")]
    Access {
        file: String,
        user: String,
        problem: String,
        fix: String,
    },
    /// The database named by the URL (password hidden) could not be opened at start.
    #[error("cannot open the database {url} (this process: {user}): {cause}; {fix}")]
    Unavailable {
        url: String,
        user: String,
        cause: String,
        fix: String,
    },
    #[error("opening the database: {0}")]
    Connect(sqlx::Error),
    #[error("applying migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Which database server a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend of a database URL, or `None` for a scheme this service does not support.
    pub fn of_url(url: &str) -> Option<Self> {
        let scheme = url.split_once(':').map(|(s, _)| s)?;
        match scheme {
            "sqlite" => Some(Self::Sqlite),
            "postgres" | "postgresql" => Some(Self::Postgres),
            _ => None,
        }
    }

    /// The backend behind a pool.
    pub fn of(pool: &Pool) -> Self {
        match pool.connect_options().database_url.scheme() {
            "sqlite" => Self::Sqlite,
            _ => Self::Postgres,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// The PostgreSQL advisory lock every write transaction takes (see [`begin_write`]); an
/// arbitrary constant, "titanic" in ASCII.
const WRITE_LOCK: i64 = 0x0074_6974_616e_6963;

/// Begins a transaction that will write, holding the database's write lock from the start, so
/// that transactions that read and then write run one at a time, on either backend:
/// - SQLite: `BEGIN IMMEDIATE`. A deferred transaction that reads and then writes fails at
///   once with "database is locked" when another connection committed in between (the busy
///   timeout does not apply to that upgrade); an immediate one waits its turn instead.
/// - PostgreSQL: `BEGIN`, then a transaction-scoped advisory lock shared by every replica.
///   Under READ COMMITTED two replicas could otherwise both read "no such row" and both
///   insert, or hand out the same next version; and row ids (identity columns) are drawn at
///   insert time, so without one writer at a time a reader could see id 8 committed before
///   id 7 and an id watermark would skip 7. With the lock, ids are committed in order, as in
///   SQLite.
pub async fn begin_write(pool: &Pool) -> Result<Tx, sqlx::Error> {
    match Backend::of(pool) {
        Backend::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await,
        Backend::Postgres => {
            let mut tx = pool.begin().await?;
            take_write_lock(&mut tx).await?;
            Ok(tx)
        }
    }
}

/// [`begin_write`] on a connection the caller holds (`backend` is its pool's).
pub async fn begin_write_on(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
) -> Result<sqlx::Transaction<'_, sqlx::Any>, sqlx::Error> {
    match backend {
        Backend::Sqlite => sqlx::Connection::begin_with(conn, "BEGIN IMMEDIATE").await,
        Backend::Postgres => {
            let mut tx = sqlx::Connection::begin(conn).await?;
            take_write_lock(&mut tx).await?;
            Ok(tx)
        }
    }
}

/// PostgreSQL: the transaction-scoped advisory lock every writer takes (see [`begin_write`]).
async fn take_write_lock(tx: &mut sqlx::Transaction<'_, sqlx::Any>) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1 FROM pg_advisory_xact_lock($1)")
        .bind(WRITE_LOCK)
        .execute(&mut **tx)
        .await
        .map(|_| ())
}

/// The PostgreSQL session lock that [`exclusively`] holds while a `serve` bootstraps.
pub const BOOTSTRAP_LOCK: i64 = WRITE_LOCK + 1;

/// Runs `work` while holding a PostgreSQL session-level advisory lock (`lock`) on a connection
/// of its own, outside the pool, so that `work` may use the whole pool: replicas starting
/// together on an empty database take turns, and the second finds what the first did (one
/// ingestion, one trained `v1`) instead of doing it again. Should the process die, its
/// connection closes and the server releases the lock. On SQLite, which one host uses,
/// `work` simply runs.
pub async fn exclusively<T, F>(pool: &Pool, lock: i64, work: F) -> Result<T, sqlx::Error>
where
    F: Future<Output = T>,
{
    if Backend::of(pool) == Backend::Sqlite {
        return Ok(work.await);
    }
    let mut conn = pool.connect_options().connect().await?;
    sqlx::query("SELECT 1 FROM pg_advisory_lock($1)")
        .bind(lock)
        .execute(&mut conn)
        .await?;
    let out = work.await;
    // Closing the session releases its locks.
    if let Err(e) = conn.close().await {
        tracing::warn!(error = %e, "closing the connection that held a lock");
    }
    Ok(out)
}

/// Opens the database named by `settings.url` (`sqlite://PATH`, `sqlite::memory:`,
/// `postgres://...`), creating a SQLite file and its directory if needed, and applies the
/// migrations for its backend, embedded from `migrations/sqlite` or `migrations/postgres`.
pub async fn connect(settings: &DatabaseSettings) -> Result<Pool, DbError> {
    let url_error = |message: String| DbError::Url {
        url: redacted(&settings.url),
        message,
    };
    // sqlx would read any other text as a file name and create it.
    let backend = Backend::of_url(&settings.url).ok_or_else(|| {
        url_error(
            "unsupported database: use sqlite://PATH, sqlite::memory: or postgres://USER@HOST/DATABASE"
                .to_owned(),
        )
    })?;
    sqlx::any::install_default_drivers();
    if backend == Backend::Sqlite {
        prepare_sqlite(&settings.url, &url_error).await?;
    }
    let options =
        AnyConnectOptions::from_str(&settings.url).map_err(|e| url_error(e.to_string()))?;
    let connect_options = options.clone();
    let pool = AnyPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if backend == Backend::Sqlite {
                    sqlite_session(conn).await?;
                }
                Ok(())
            })
        })
        .after_release(move |conn, _| {
            Box::pin(async move {
                match backend {
                    Backend::Sqlite => still_usable(conn).await,
                    Backend::Postgres => Ok(!conn.is_in_transaction()),
                }
            })
        })
        .connect_with(options)
        .await;
    let pool = match pool {
        Ok(pool) => pool,
        Err(cause) => {
            return Err(unavailable(&settings.url, backend, &connect_options, cause).await);
        }
    };
    match backend {
        Backend::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&pool).await?,
        Backend::Postgres => sqlx::migrate!("./migrations/postgres").run(&pool).await?,
    }
    Ok(pool)
}

/// The URL with any password replaced, for messages.
pub fn redacted(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((credentials, host)) if credentials.contains(':') => {
                let user = credentials.split(':').next().unwrap_or_default();
                format!("{scheme}://{user}:***@{host}")
            }
            _ => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// The start-up error for a database that did not open: the cause (for a pool that timed out,
/// what one more attempt says, since the pool's error does not tell), this process's user and
/// what to check.
async fn unavailable(
    url: &str,
    backend: Backend,
    options: &AnyConnectOptions,
    cause: sqlx::Error,
) -> DbError {
    let cause = match cause {
        sqlx::Error::PoolTimedOut => {
            match tokio::time::timeout(Duration::from_secs(5), options.connect()).await {
                Ok(Err(e)) => e.to_string(),
                Ok(Ok(conn)) => {
                    let _ = conn.close().await;
                    "no connection within 5 s".to_owned()
                }
                Err(_) => "no answer within 5 s".to_owned(),
            }
        }
        cause => cause.to_string(),
    };
    let fix = match backend {
        Backend::Sqlite => "check that this user may read and write the file and create files \
                            in its directory, or set TITANIC__DATABASE__URL to another path"
            .to_owned(),
        Backend::Postgres => {
            let address = options.database_url.host_str().map_or_else(
                || "the URL's host".to_owned(),
                |host| format!("{host}:{}", options.database_url.port().unwrap_or(5432)),
            );
            format!(
                "check that PostgreSQL answers at {address} from this host and that the URL's role, \
                 password and database exist (createdb), or correct TITANIC__DATABASE__URL"
            )
        }
    };
    DbError::Unavailable {
        url: redacted(url),
        user: OsUser::current().to_string(),
        cause,
        fix,
    }
}

/// Creates the SQLite file (and its directory, owner-only) if missing and puts it in WAL mode,
/// once, on a connection of its own: the journal mode is a property of the file, kept by every
/// later connection, and changing it needs a lock no busy timeout waits for. First checks
/// that this process may create files in the directory and read and write the database files
/// (SQLite would otherwise open an unwritable file read-only without a word, or fail with
/// "unable to open database file", naming neither the path nor the user).
async fn prepare_sqlite(url: &str, url_error: &dyn Fn(String) -> DbError) -> Result<(), DbError> {
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|e| url_error(e.to_string()))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // With WAL, NORMAL is durable against process crashes; FULL also survives power loss,
        // which is what an acknowledged write promises.
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(BUSY_TIMEOUT);
    if !in_memory(url) {
        check_sqlite_access(options.get_filename())?;
    }
    let conn = options.connect().await;
    let conn = match conn {
        Ok(conn) => conn,
        Err(cause) => {
            let any = AnyConnectOptions::from_str(url).map_err(|e| url_error(e.to_string()))?;
            return Err(unavailable(url, Backend::Sqlite, &any, cause).await);
        }
    };
    conn.close().await.map_err(DbError::Connect)
}

/// `sqlite::memory:` and `?mode=memory` databases have no file.
fn in_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

/// The database file's directory exists (created owner-only when missing) and this process
/// may create files in it, and the database, its WAL and its shared-memory index, where they
/// exist, may be read and written by it. The error names the path, its owner and mode, this
/// process's user and the fix.
fn check_sqlite_access(file: &std::path::Path) -> Result<(), DbError> {
    let dir = match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => std::path::Path::new("."),
    };
    let user = OsUser::current();
    let error = |problem: String, fix: String| DbError::Access {
        file: file.display().to_string(),
        user: user.to_string(),
        problem,
        fix,
    };
    let elsewhere =
        "or set TITANIC__DATABASE__URL to sqlite://PATH in a directory this user may write";
    let shown = dir.display();
    if !dir.exists() {
        if let Err(cause) = crate::core::security::create_private_dir(dir) {
            let existing = dir.ancestors().skip(1).find(|a| a.exists());
            let parent = existing.map_or_else(String::new, |a| {
                format!(" ({} is {})", a.display(), os_user::describe(a))
            });
            return Err(error(
                format!(
                    "its directory {shown} does not exist and cannot be created: {cause}{parent}"
                ),
                format!(
                    "mount a volume this user may write at {shown} (Kubernetes: with \
                     securityContext.fsGroup: {gid}), {elsewhere}",
                    gid = user.gid
                ),
            ));
        }
        return Ok(());
    }
    if !os_user::may(dir, Access::CreateIn) {
        return Err(error(
            format!(
                "this user may not create files in its directory {shown} ({})",
                os_user::describe(dir)
            ),
            format!(
                "give the directory to this user (chown -R {owner} {shown}; Kubernetes: \
                 securityContext.fsGroup: {gid} on the pod, which makes a volume the group's; \
                 Docker or Podman: a named volume, or chown the host directory), {elsewhere}",
                owner = user.owner(),
                gid = user.gid
            ),
        ));
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut path = file.as_os_str().to_owned();
        path.push(suffix);
        let path = std::path::PathBuf::from(path);
        if (path.exists() || path.is_symlink()) && !os_user::may(&path, Access::ReadWrite) {
            return Err(error(
                format!(
                    "this user may not read and write {} ({})",
                    path.display(),
                    os_user::describe(&path)
                ),
                format!(
                    "give the database files to this user (chown {owner} {file}*; a volume \
                     written before by another user keeps that user's files), {elsewhere}",
                    owner = user.owner(),
                    file = file.display()
                ),
            ));
        }
    }
    Ok(())
}

/// How long a statement waits for another connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A new SQLite connection's settings: the busy timeout, FULL synchronous (see
/// [`prepare_sqlite`]), foreign keys, and the read-only check of [`mark_if_read_only`].
async fn sqlite_session(conn: &mut sqlx::AnyConnection) -> Result<(), sqlx::Error> {
    sqlx::raw_sql("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON")
        .execute(&mut *conn)
        .await?;
    mark_if_read_only(conn).await
}

/// SQLite opens a database file it may not write (permissions, an immutable file, a
/// read-only mount) read-only, silently, and the connection stays so after the file is
/// writable again. Such a connection is marked `query_only`, so that [`still_usable`] closes
/// it after one use instead of keeping it in the pool (reads go on meanwhile; writes through
/// it fail with "attempt to write a readonly database"). A table created in a transaction
/// that is rolled back tells, without writing anything to disk: the CREATE fails with
/// SQLITE_READONLY on a read-only connection, and with SQLITE_BUSY at once (no busy wait
/// here) while another connection writes.
async fn mark_if_read_only(conn: &mut sqlx::AnyConnection) -> Result<(), sqlx::Error> {
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

/// Whether a SQLite connection given back to the pool may be reused: not when it was opened
/// read-only (see [`mark_if_read_only`]), and not when sqlx still counts a transaction on it.
/// When a COMMIT fails because the disk is full or the file cannot be written, SQLite rolls
/// the transaction back by itself; sqlx still counts it as open, its own ROLLBACK then fails,
/// and the connection would keep a transaction depth of 1 for good: every later
/// `BEGIN IMMEDIATE` on it fails ("attempted to call begin_with at non-zero transaction
/// depth") long after the disk has room again. Such connections are closed (the pool opens
/// fresh ones). The pragma runs after any rollback a dropped transaction queued.
async fn still_usable(conn: &mut sqlx::AnyConnection) -> Result<bool, sqlx::Error> {
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
pub async fn ping(pool: &Pool) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1").execute(pool).await.map(|_| ())
}

/// Below this much free space on the filesystem of a SQLite database, readiness calls its
/// writes failing (see [`probe_write`]).
pub const MIN_FREE_BYTES: u64 = 1 << 20;

/// Why [`probe_write`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(
        "the disk holding the database is full: {free} bytes free in {dir} (below {MIN_FREE_BYTES})"
    )]
    DiskFull { free: u64, dir: String },
    #[error("reading the free space of {dir}: {cause}")]
    Space { dir: String, cause: std::io::Error },
}

/// A small write that reaches the disk (one row rewritten, committed), for readiness: it
/// fails while the disk is full or the file cannot be written, when reads still work.
///
/// On SQLite the write alone does not tell a full disk: in WAL mode SQLite rewrites the space
/// its files already hold, so a one-row commit can go on succeeding for good while every
/// write that needs a new page is refused. So the probe also fails when less than
/// [`MIN_FREE_BYTES`] are free on the database's filesystem.
pub async fn probe_write(pool: &Pool) -> Result<(), ProbeError> {
    sqlx::query(
        "INSERT INTO health_probe (id, probed_at) VALUES (1, $1)
         ON CONFLICT (id) DO UPDATE SET probed_at = excluded.probed_at",
    )
    .bind(crate::core::time::now_micros())
    .execute(pool)
    .await?;
    match free_space(pool).await? {
        Some((free, dir)) if free < MIN_FREE_BYTES => Err(ProbeError::DiskFull {
            free,
            dir: dir.display().to_string(),
        }),
        _ => Ok(()),
    }
}

/// The bytes free (to this process) on the filesystem holding a SQLite database file, with
/// the file's directory; `None` on PostgreSQL and for an in-memory database.
pub async fn free_space(pool: &Pool) -> Result<Option<(u64, std::path::PathBuf)>, ProbeError> {
    if Backend::of(pool) != Backend::Sqlite {
        return Ok(None);
    }
    let file: String =
        sqlx::query_scalar("SELECT file FROM pragma_database_list WHERE name = 'main'")
            .fetch_one(pool)
            .await?;
    let Some(dir) = std::path::Path::new(&file)
        .parent()
        .filter(|_| !file.is_empty())
    else {
        return Ok(None);
    };
    match rustix::fs::statvfs(dir) {
        Ok(s) => Ok(Some((
            s.f_bavail.saturating_mul(s.f_frsize),
            dir.to_owned(),
        ))),
        Err(e) => Err(ProbeError::Space {
            dir: dir.display().to_string(),
            cause: e.into(),
        }),
    }
}

/// A migrated database in a fresh temporary directory, for tests.
#[cfg(test)]
pub(crate) async fn temp_pool() -> (Pool, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let pool = connect(&DatabaseSettings {
        url: format!("sqlite://{}", dir.path().join("t.db").display()),
        max_connections: 2,
    })
    .await
    .expect("test database");
    (pool, dir)
}

/// Fresh databases on both backends for the stores' tests.
#[cfg(test)]
pub(crate) mod testing {
    use sqlx::{Connection, Executor};

    use super::{Pool, connect};
    use crate::core::config::DatabaseSettings;

    /// The PostgreSQL server the tests create their databases on:
    /// `TITANIC_TEST_POSTGRES_URL`, by default the local server on 127.0.0.1:5432.
    fn admin_url() -> String {
        std::env::var("TITANIC_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
    }

    /// A migrated database that is removed afterwards.
    pub(crate) struct TestDb {
        pub pool: Pool,
        _dir: Option<tempfile::TempDir>,
        postgres: Option<String>,
    }

    impl TestDb {
        pub async fn sqlite() -> Self {
            let (pool, dir) = super::temp_pool().await;
            Self {
                pool,
                _dir: Some(dir),
                postgres: None,
            }
        }

        /// A new database on the test PostgreSQL server; `None` (the test skips) when no
        /// server answers, except in CI (`CI` set), where that fails the test.
        pub async fn postgres() -> Option<Self> {
            let admin = admin_url();
            let connected = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                sqlx::PgConnection::connect(&admin),
            )
            .await;
            let mut conn = match connected {
                Ok(Ok(conn)) => conn,
                Ok(Err(e)) => return unavailable(&admin, &e.to_string()),
                Err(_) => return unavailable(&admin, "no answer in 5 s"),
            };
            let name = format!("titanic_test_{}", uuid::Uuid::new_v4().simple());
            conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .await
                .expect("creating a test database");
            let _ = conn.close().await;
            let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
            let pool = connect(&DatabaseSettings {
                url: format!("{base}/{name}"),
                max_connections: 4,
            })
            .await
            .expect("test database");
            Some(Self {
                pool,
                _dir: None,
                postgres: Some(name),
            })
        }

        /// Closes the pool and drops a PostgreSQL database (a SQLite file goes with its
        /// directory).
        pub async fn remove(self) {
            self.pool.close().await;
            if let Some(name) = self.postgres {
                let mut conn = sqlx::PgConnection::connect(&admin_url())
                    .await
                    .expect("test PostgreSQL server");
                conn.execute(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .await
                .expect("dropping a test database");
            }
        }
    }

    fn unavailable(url: &str, why: &str) -> Option<TestDb> {
        let message = format!("no PostgreSQL server for the tests at {url}: {why}");
        if std::env::var_os("CI").is_some() {
            panic!("{message} (CI is set: start one, see .ci/run)");
        }
        eprintln!("skipping: {message}");
        None
    }

    /// Defines each `async fn name(pool) { ... }` as two tests, `name::sqlite` and
    /// `name::postgres`, each on a fresh migrated database of its backend.
    macro_rules! on_both_backends {
        ($(async fn $name:ident($pool:ident) $body:block)*) => {$(
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                async fn body($pool: $crate::core::db::Pool) $body

                #[tokio::test]
                async fn sqlite() {
                    let db = $crate::core::db::testing::TestDb::sqlite().await;
                    body(db.pool.clone()).await;
                    db.remove().await;
                }

                #[tokio::test]
                async fn postgres() {
                    if let Some(db) = $crate::core::db::testing::TestDb::postgres().await {
                        body(db.pool.clone()).await;
                        db.remove().await;
                    }
                }
            }
        )*};
    }
    pub(crate) use on_both_backends;
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
        // The free space is read where the file is (a full disk is tested in tests/faults.rs).
        let (free, dir) = free_space(&pool).await.unwrap().expect("a SQLite file");
        assert_eq!(dir, path.parent().unwrap());
        assert!(
            free >= MIN_FREE_BYTES,
            "{free} bytes free in {}",
            dir.display()
        );
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
        let mut read_only = AnyConnectOptions::from_str(&format!("{url}?mode=ro"))
            .unwrap()
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

    #[tokio::test]
    async fn other_databases_are_refused_with_the_password_hidden() {
        let settings = DatabaseSettings {
            url: "mysql://app:hunter2@db/titanic".to_owned(),
            max_connections: 1,
        };
        let err = connect(&settings).await.unwrap_err().to_string();
        assert!(err.contains("unsupported database"), "{err}");
        assert!(err.contains("mysql://app:***@db/titanic"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        assert_eq!(Backend::of_url("postgresql://h/d"), Some(Backend::Postgres));
        assert_eq!(Backend::of_url("sqlite::memory:"), Some(Backend::Sqlite));
        assert_eq!(redacted("postgres://u@h/d"), "postgres://u@h/d");
    }

    #[tokio::test]
    async fn postgres_gets_every_migration_and_reconnects() {
        let Some(db) = testing::TestDb::postgres().await else {
            return;
        };
        assert_eq!(Backend::of(&db.pool), Backend::Postgres);
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT CAST(table_name AS TEXT) FROM information_schema.tables \
             WHERE table_schema = 'public' ORDER BY table_name",
        )
        .fetch_all(&db.pool)
        .await
        .unwrap();
        let (sqlite, _dir) = temp_pool().await;
        let mut sqlite_tables: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' \
             AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )
        .fetch_all(&sqlite)
        .await
        .unwrap();
        sqlite_tables.sort();
        assert_eq!(tables, sqlite_tables, "the same tables on both backends");
        let applied: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
                .fetch_all(&db.pool)
                .await
                .unwrap();
        let applied_sqlite: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
                .fetch_all(&sqlite)
                .await
                .unwrap();
        assert_eq!(applied, applied_sqlite, "the same migration versions");
        ping(&db.pool).await.unwrap();
        probe_write(&db.pool).await.unwrap();
        probe_write(&db.pool).await.unwrap();
        assert!(
            free_space(&db.pool).await.unwrap().is_none(),
            "PostgreSQL's disk is the server's"
        );
        // Opening the migrated database again applies nothing and works.
        let url = db.pool.connect_options().database_url.to_string();
        let again = connect(&DatabaseSettings {
            url,
            max_connections: 1,
        })
        .await
        .unwrap();
        ping(&again).await.unwrap();
        again.close().await;
        db.remove().await;
    }

    #[tokio::test]
    async fn postgres_write_transactions_run_one_at_a_time() {
        let Some(db) = testing::TestDb::postgres().await else {
            return;
        };
        let mut first = begin_write(&db.pool).await.unwrap();
        sqlx::query("INSERT INTO health_probe (id, probed_at) VALUES (1, 1)")
            .execute(&mut *first)
            .await
            .unwrap();
        let pool = db.pool.clone();
        let second = tokio::spawn(async move {
            let mut tx = begin_write(&pool).await.unwrap();
            // Reads after the first committed, as in SQLite's BEGIN IMMEDIATE.
            let seen: Option<i64> =
                sqlx::query_scalar("SELECT probed_at FROM health_probe WHERE id = 1")
                    .fetch_optional(&mut *tx)
                    .await
                    .unwrap();
            tx.commit().await.unwrap();
            seen
        });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(
            !second.is_finished(),
            "the second writer waits for the lock"
        );
        first.commit().await.unwrap();
        assert_eq!(second.await.unwrap(), Some(1));
        db.remove().await;
    }

    #[tokio::test]
    async fn postgres_connects_over_tls_when_the_url_asks() {
        let Some(db) = testing::TestDb::postgres().await else {
            return;
        };
        let on: String = sqlx::query_scalar("SHOW ssl")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        if on != "on" {
            eprintln!("skipping: the test PostgreSQL server has ssl = {on}");
            db.remove().await;
            return;
        }
        let mut url = db.pool.connect_options().database_url.clone();
        url.set_query(Some("sslmode=require"));
        let tls = connect(&DatabaseSettings {
            url: url.to_string(),
            max_connections: 1,
        })
        .await
        .unwrap();
        let encrypted: bool =
            sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                .fetch_one(&tls)
                .await
                .unwrap();
        assert!(encrypted, "the session is encrypted");
        tls.close().await;
        db.remove().await;
    }
}
