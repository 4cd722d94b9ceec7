//! The services some tests need: PostgreSQL (a database of the test's own), the shared test
//! Redis, a Redis of the test's own that it may kill, and free loopback ports.

use super::{skip_or_fail, unavailable};

const POSTGRES_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const POSTGRES_HOW: &str = "set TITANIC_TEST_POSTGRES_URL to a PostgreSQL server that may \
     create databases (default postgres://postgres@127.0.0.1:5432/postgres); .ci/run installs \
     and starts one";
const REDIS_DEFAULT: &str = "redis://127.0.0.1:6379/0";
const REDIS_HOW: &str = "install redis-server (apt-get install redis-server) or set \
     TITANIC_TEST_REDIS_URL; .ci/run installs and starts one";

/// A database of the test's own on the test PostgreSQL server (`TITANIC_TEST_POSTGRES_URL`,
/// default `postgres://postgres@127.0.0.1:5432/postgres`), dropped with the value.
pub struct PgDatabase {
    admin: String,
    name: String,
}

impl PgDatabase {
    /// `None` with a `SKIPPED` line when no server answers, except in CI, where that fails.
    pub async fn create() -> Option<Self> {
        Self::create_or("SKIPPED").await
    }

    /// As [`PgDatabase::create`], the line starting with `outcome` instead: for a test that
    /// goes on without PostgreSQL.
    pub async fn create_or(outcome: &str) -> Option<Self> {
        match Self::connect().await {
            Ok(db) => Some(db),
            Err(reason) => {
                unavailable(outcome, &reason, POSTGRES_HOW);
                None
            }
        }
    }

    async fn connect() -> Result<Self, String> {
        use sqlx::{Connection, Executor};
        let admin = std::env::var("TITANIC_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| POSTGRES_DEFAULT.to_owned());
        let connected = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            sqlx::PgConnection::connect(&admin),
        )
        .await;
        let why = match connected {
            Ok(Ok(mut conn)) => {
                let name = format!("titanic_test_{}", uuid::Uuid::new_v4().simple());
                conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .await
                    .expect("creating a test database");
                let _ = conn.close().await;
                return Ok(Self { admin, name });
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "no answer in 5 s".to_owned(),
        };
        Err(format!("no PostgreSQL server at {admin}: {why}"))
    }

    pub fn url(&self) -> String {
        let base = self.admin.rsplit_once('/').map_or(&*self.admin, |(b, _)| b);
        format!("{base}/{}", self.name)
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop may run inside a test's runtime: the DROP gets a thread and a runtime of its own.
        let _ = std::thread::spawn(move || {
            use sqlx::{Connection, Executor};
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = conn.execute(sqlx::AssertSqlSafe(sql)).await;
                }
            });
        })
        .join();
    }
}

/// True when a Redis answers PING at `url` within a second.
pub async fn redis_answers(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    let ping = async {
        let mut conn = client.get_multiplexed_async_connection().await.ok()?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .ok()
    };
    matches!(
        tokio::time::timeout(std::time::Duration::from_secs(1), ping).await,
        Ok(Some(_))
    )
}

/// The shared test Redis (`TITANIC_TEST_REDIS_URL`, default 127.0.0.1:6379), or `None` with a
/// `SKIPPED` line outside CI when none answers.
pub async fn shared_redis() -> Option<String> {
    let url = std::env::var("TITANIC_TEST_REDIS_URL").unwrap_or_else(|_| REDIS_DEFAULT.to_owned());
    if redis_answers(&url).await {
        Some(url)
    } else {
        skip_or_fail(&format!("no Redis answers at {url}"), REDIS_HOW);
        None
    }
}

/// A key prefix no other test (or run) uses.
pub fn unique_prefix() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "titanic-test:{}-{nanos}-{}:",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// Deletes every key under `prefix` (a test's own, from [`unique_prefix`]).
pub async fn delete_keys(conn: &mut redis::aio::MultiplexedConnection, prefix: &str) {
    let _: () = redis::cmd("EVAL")
        .arg("for _, k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('DEL', k) end")
        .arg(0)
        .arg(format!("{prefix}*"))
        .query_async(conn)
        .await
        .unwrap();
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A redis-server of the test's own, which the test may kill and restart.
pub struct OwnRedis {
    child: Option<std::process::Child>,
    pub port: u16,
}

impl OwnRedis {
    /// Starts one on a spare port, or `None` (outside CI) without `redis-server`.
    pub async fn start() -> Option<Self> {
        let mut redis = Self {
            child: None,
            port: free_port(),
        };
        if redis.restart().await {
            Some(redis)
        } else {
            skip_or_fail("cannot start redis-server", REDIS_HOW);
            None
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts (again) on the same port, empty; true once it answers.
    pub async fn restart(&mut self) -> bool {
        let spawned = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        let Ok(child) = spawned else {
            return false;
        };
        self.child = Some(child);
        for _ in 0..100 {
            if redis_answers(&self.url()).await {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        false
    }

    /// Kills the server (SIGKILL: no goodbye to clients).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `GET key`, or `None`.
    pub async fn get(&self, key: &str) -> Option<String> {
        let client = redis::Client::open(self.url()).ok()?;
        let mut conn = client.get_multiplexed_async_connection().await.ok()?;
        redis::cmd("GET")
            .arg(key)
            .query_async(&mut conn)
            .await
            .ok()?
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}
