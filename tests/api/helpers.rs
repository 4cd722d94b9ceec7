use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use config::Environment;
use serde_json::Value;
use titanic::core::config::{Secret, Settings};
use titanic::core::security::{Claims, JwtKeys};
use tokio::sync::oneshot;

pub const SECRET: &str = "integration-test-secret-0123456789abcdef";

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
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(&[]).await
    }

    pub async fn spawn_with(overrides: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let settings = settings(dir.path(), overrides);
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
            stop: Some(stop),
            server: Some(server),
            _dir: dir,
        }
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
