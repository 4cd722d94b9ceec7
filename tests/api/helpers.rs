use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;

use config::Environment;
use serde_json::Value;
use titanic::core::config::{Secret, Settings};
use titanic::core::security::{Claims, JwtKeys};
use tokio::sync::oneshot;

pub use crate::support::{
    OwnRedis, PgDatabase, SECRET, Steps, delete_keys, free_port, metric, passenger, repo,
    shared_redis, step, unique_prefix,
};

/// The API suite runs twice: as `tests/api` on a SQLite file per test, and as
/// `tests/api_postgres` (the same modules) on a PostgreSQL database per test.
pub fn on_postgres() -> bool {
    module_path!().starts_with("api_postgres::")
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
            PgDatabase::create_or("RAN ON SQLITE").await
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

    /// GET with a token of the given scopes, read as JSON (whatever the status).
    pub async fn get_json(&self, path: &str, scopes: &[&str]) -> Value {
        self.get_as(path, scopes).await.json().await.unwrap()
    }

    /// GET without a token, read as JSON (whatever the status).
    pub async fn public_json(&self, path: &str) -> Value {
        self.get(path).await.json().await.unwrap()
    }

    /// POST a JSON body with a `predict` token, the answer read as JSON (whatever the status).
    pub async fn post_json(&self, path: &str, body: &Value) -> Value {
        self.post(path, body).await.json().await.unwrap()
    }

    /// The Prometheus text of `GET /metrics`.
    pub async fn metrics(&self) -> String {
        self.get("/metrics").await.text().await.unwrap()
    }

    /// Any request with a token of the given scopes and, when given, a JSON body.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        scopes: &[&str],
        body: Option<&Value>,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .request(method, self.url(path))
            .bearer_auth(self.token(scopes));
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.unwrap()
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
