use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use config::Environment;
use serde_json::Value;
use titanic::core::config::{Secret, Settings};
use titanic::core::security::{Claims, JwtKeys};
use tokio::sync::oneshot;

pub const SECRET: &str = "integration-test-secret-0123456789abcdef";

/// The API suite runs twice: as `tests/api` on a SQLite file per test, and as
/// `tests/api_postgres` (the same modules) on a PostgreSQL database per test.
pub fn on_postgres() -> bool {
    module_path!().starts_with("api_postgres::")
}

/// A database of the test's own on the test PostgreSQL server (`TITANIC_TEST_POSTGRES_URL`,
/// default `postgres://postgres@127.0.0.1:5432/postgres`), dropped with the value.
pub struct PgDatabase {
    admin: String,
    name: String,
}

impl PgDatabase {
    /// `None` when no server answers (a notice), except in CI, where that panics.
    pub async fn create() -> Option<Self> {
        use sqlx::{Connection, Executor};
        let admin = std::env::var("TITANIC_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
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
                return Some(Self { admin, name });
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "no answer in 5 s".to_owned(),
        };
        let message = format!("no PostgreSQL server at {admin}: {why}");
        if std::env::var_os("CI").is_some() {
            panic!("{message} (required in CI: .ci/run installs and starts PostgreSQL)");
        }
        eprintln!("SKIPPED (PostgreSQL): {message}");
        None
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

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Settings for a test: its own database and data directory, a known secret, port 0.
pub fn settings(dir: &Path, overrides: &[(&str, &str)]) -> Settings {
    let repo = repo();
    let mut vars: HashMap<String, String> = [
        (
            "TITANIC__DATABASE__URL",
            format!("sqlite://{}", dir.join("titanic.db").display()),
        ),
        ("TITANIC__DATA__DIR", dir.display().to_string()),
        (
            "TITANIC__DATA__TRAIN_CSV",
            repo.join("data/titanic/train.csv").display().to_string(),
        ),
        (
            "TITANIC__DATA__TEST_CSV",
            repo.join("data/titanic/test.csv").display().to_string(),
        ),
        ("TITANIC__AUTH__JWT_SECRET", SECRET.to_owned()),
        ("TITANIC__SERVER__PORT", "0".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for (k, v) in overrides {
        vars.insert((*k).to_owned(), (*v).to_owned());
    }
    Settings::load_from(
        "test",
        &repo.join("config"),
        Environment::with_prefix("TITANIC").source(Some(vars)),
    )
    .expect("test settings")
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub keys: JwtKeys,
    /// The server's `database.url`.
    pub database_url: String,
    _postgres: Option<PgDatabase>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    /// The test's data directory (and its SQLite file, when on SQLite).
    _dir: tempfile::TempDir,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(&[]).await
    }

    pub async fn spawn_with(overrides: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        // On PostgreSQL when this is the api_postgres suite and a server answers (else, outside
        // CI, on SQLite after a notice).
        let postgres = if on_postgres() {
            PgDatabase::create().await
        } else {
            None
        };
        let database_url = postgres.as_ref().map_or_else(
            || format!("sqlite://{}", dir.path().join("titanic.db").display()),
            PgDatabase::url,
        );
        let mut overrides = overrides.to_vec();
        overrides.insert(0, ("TITANIC__DATABASE__URL", database_url.as_str()));
        let settings = settings(dir.path(), &overrides);
        let server = titanic::app::build_server(&settings).await.expect("server");
        let addr = server.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            client: reqwest::Client::new(),
            keys: JwtKeys::new(&Secret::new(SECRET), 0).unwrap(),
            database_url,
            _postgres: postgres,
            stop: Some(stop),
            server: Some(server),
            _dir: dir,
        }
    }

    /// The `dependency` label of the server's database calls.
    pub fn backend(&self) -> &'static str {
        titanic::core::db::Backend::of_url(&self.database_url)
            .expect("a supported database")
            .as_str()
    }

    /// The test server's database, opened as the service opens it (a second process would).
    pub async fn database(&self) -> titanic::core::db::Pool {
        titanic::core::db::connect(&titanic::core::config::DatabaseSettings {
            url: self.database_url.clone(),
            max_connections: 2,
        })
        .await
        .expect("the test server's database")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn token(&self, scopes: &[&str]) -> String {
        let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
        self.keys.mint("tester", &scopes, 300)
    }

    pub fn token_with(&self, claims: &Claims) -> String {
        self.keys.encode(claims)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    /// GET with a token of the given scopes.
    pub async fn get_as(&self, path: &str, scopes: &[&str]) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(self.token(scopes))
            .send()
            .await
            .unwrap()
    }

    /// POST a JSON body with a `predict` token.
    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.post_as(path, body, &self.token(&["predict"])).await
    }

    pub async fn post_as(&self, path: &str, body: &Value, token: &str) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Reads a JSON error body and checks its shape; returns (code, body).
pub async fn error_of(response: reqwest::Response) -> (String, Value) {
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let body: Value = response.json().await.unwrap();
    let code = body["error"]["code"]
        .as_str()
        .expect("error.code")
        .to_owned();
    assert!(body["error"]["message"].is_string(), "{body}");
    (code, body)
}

pub fn passenger() -> Value {
    serde_json::json!({
        "pclass": 3, "sex": "male", "age": 22, "sibsp": 1, "parch": 0, "fare": 7.25,
        "embarked": "S", "name": "Braund, Mr. Owen Harris", "ticket": "A/5 21171", "cabin": null
    })
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

/// Refuses to skip in CI; elsewhere says loudly what was skipped.
fn skip_or_fail(what: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{what}: required in CI (.ci/run installs and starts Redis)");
    }
    eprintln!(
        "SKIPPED: {what}; install redis-server (apt-get install redis-server) to run this test"
    );
}

/// The shared test Redis (`TITANIC_TEST_REDIS_URL`, default 127.0.0.1:6379), or `None` with a
/// notice outside CI when none answers.
pub async fn shared_redis() -> Option<String> {
    let url = std::env::var("TITANIC_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/0".to_owned());
    if redis_answers(&url).await {
        Some(url)
    } else {
        skip_or_fail(&format!("no Redis answers at {url}"));
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
            skip_or_fail("cannot start redis-server");
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

    /// `GET key`, or `None` (used by the fault tests, which include this file).
    #[allow(dead_code)]
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

/// The value of one unlabelled sample (`name value`) in a Prometheus text exposition.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}
