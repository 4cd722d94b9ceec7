//! `titanic serve` as a child process, requests against it with a token of each scope, and a
//! request left half-sent.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{titanic_for_server, token};

/// `titanic serve` as a child process on a free loopback port.
pub struct Server {
    pub child: Child,
    pub addr: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts `serve` on port 0 in `dir` and waits (at most 120 s) for its `listening` line.
    pub async fn start(dir: &Path, extra: &[(&str, &str)]) -> Server {
        let mut cmd = titanic_for_server(dir);
        cmd.env("TITANIC__SERVER__PORT", "0")
            .env("TITANIC__SERVER__HOST", "127.0.0.1")
            .arg("serve")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn titanic serve");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel::<String>();
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        for (stream, addr_tx) in [
            (
                Box::new(stdout) as Box<dyn std::io::Read + Send>,
                Some(addr_tx),
            ),
            (Box::new(stderr), None),
        ] {
            let log = log.clone();
            // Keeps reading so the server never blocks on a full pipe.
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Some(tx) = &addr_tx
                        && line.contains("\"listening\"")
                        && let Ok(v) = serde_json::from_str::<Value>(&line)
                        && let Some(addr) = v["addr"].as_str()
                    {
                        let _ = tx.send(addr.to_owned());
                    }
                    log.lock().unwrap().push(line);
                }
            });
        }
        let addr =
            tokio::task::spawn_blocking(move || addr_rx.recv_timeout(Duration::from_secs(120)))
                .await
                .unwrap();
        let mut server = Server {
            child,
            addr: String::new(),
            log,
        };
        match addr {
            Ok(addr) => server.addr = addr,
            Err(_) => panic!(
                "titanic serve did not report its address:\n{}",
                server.log_text()
            ),
        }
        server
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// SIGKILL: no shutdown code runs.
    pub fn sigkill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit, at most `within`.
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit within {within:?}:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// SIGTERM and a clean exit (status 0) within 30 s.
    pub async fn stop(mut self) {
        self.sigterm();
        let status = self.wait_exit(Duration::from_secs(30)).await;
        assert!(status.success(), "{status:?}\n{}", self.log_text());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Tokens for every scope, and requests against one server.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
    pub predict: String,
    pub features: String,
    pub models: String,
    pub feedback: String,
}

impl Api {
    pub fn new(server: &Server, dir: &Path) -> Api {
        Api {
            base: server.base(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            predict: token(dir, "tests", "predict"),
            features: token(dir, "tests", "features:write"),
            models: token(dir, "tests", "models:write"),
            feedback: token(dir, "tests", "feedback:write"),
        }
    }

    /// The same tokens against another (restarted) server.
    pub fn at(&self, server: &Server) -> Api {
        Api {
            base: server.base(),
            ..self.clone()
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(&self.predict)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: &Value,
    ) -> reqwest::Response {
        self.http
            .request(method, self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    pub async fn post(&self, path: &str, token: &str, body: &Value) -> reqwest::Response {
        self.send(reqwest::Method::POST, path, token, body).await
    }

    /// `GET /health/ready`: (status code, body).
    pub async fn ready(&self) -> (u16, Value) {
        let r = self.get("/health/ready").await;
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    pub async fn metrics(&self) -> String {
        self.get("/metrics").await.text().await.unwrap()
    }

    /// `POST /predict` of a stored passenger: (request id, body).
    pub async fn predict_id(&self, id: i64) -> (String, Value) {
        let r = self
            .post("/predict", &self.predict, &json!({ "passenger_id": id }))
            .await;
        assert_eq!(r.status(), 200, "predict {id}");
        let request_id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
        (request_id, r.json().await.unwrap())
    }

    /// `POST /features/push` of one passenger_demographics row per entity.
    pub async fn push(&self, rows: &[(i64, Value)]) -> reqwest::Response {
        let rows: Vec<Value> = rows
            .iter()
            .map(|(id, values)| json!({ "entity": id, "values": values }))
            .collect();
        self.post(
            "/features/push",
            &self.features,
            &json!({ "view": "passenger_demographics", "rows": rows }),
        )
        .await
    }

    pub async fn feedback(&self, request_id: &str, survived: bool) -> reqwest::Response {
        self.post(
            "/feedback",
            &self.feedback,
            &json!({ "request_id": request_id, "survived": survived }),
        )
        .await
    }

    pub async fn promote(&self, alias: &str, version: &str) -> reqwest::Response {
        self.send(
            reqwest::Method::PUT,
            &format!("/models/aliases/{alias}"),
            &self.models,
            &json!({ "version": version, "reason": "integration test" }),
        )
        .await
    }

    /// `GET /models`: alias -> version.
    pub async fn aliases(&self) -> BTreeMap<String, String> {
        let r = self.get("/models").await;
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        serde_json::from_value(body["aliases"].clone()).unwrap()
    }

    /// `POST /features/online` of passenger_demographics values: id -> name (null: none).
    pub async fn stored_names(&self, ids: &[i64]) -> BTreeMap<i64, Value> {
        let r = self
            .post(
                "/features/online",
                &self.predict,
                &json!({
                    "features": ["passenger_demographics:name"],
                    "entities": { "passenger_id": ids },
                }),
            )
            .await;
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        let names = body["metadata"]["feature_names"].as_array().unwrap();
        let column = names.iter().position(|n| n == "name").unwrap();
        let values = body["results"][column]["values"].as_array().unwrap();
        ids.iter().copied().zip(values.iter().cloned()).collect()
    }
}

/// A `POST` whose head and first half of the body are sent now and the rest on `finish`: it
/// is in flight (accepted, its handler waiting for the body) for as long as the test wants.
pub struct SlowRequest {
    stream: std::net::TcpStream,
    rest: Vec<u8>,
}

impl SlowRequest {
    pub fn start(addr: &str, token: &str, path: &str, content_type: &str, body: &[u8]) -> Self {
        use std::io::Write;
        let mut stream = std::net::TcpStream::connect(addr).expect("connect while listening");
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let (first, rest) = body.split_at(body.len() / 2);
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(first).unwrap();
        stream.flush().unwrap();
        Self {
            stream,
            rest: rest.to_vec(),
        }
    }

    /// Sends the rest of the body; returns the whole raw response (read until the server
    /// closes the connection, at most 30 s).
    pub fn finish(mut self) -> String {
        use std::io::{Read, Write};
        self.stream.write_all(&self.rest).unwrap();
        self.stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut response = Vec::new();
        let _ = self.stream.read_to_end(&mut response);
        String::from_utf8_lossy(&response).into_owned()
    }
}
