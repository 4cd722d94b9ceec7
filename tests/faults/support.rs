//! The real `titanic` binary as a child process, and the faults the tests inject around it:
//! a Redis of the test's own that can be killed, SIGTERM and SIGKILL, an immutable database
//! file, a small tmpfs that fills up.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const SECRET: &str = "faults-test-secret-0123456789abcdef0123456789";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A scratch directory on the same file system as the build (not /tmp, which may be a tmpfs).
pub fn scratch() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("scratch directory")
}

/// Refuses to skip in CI; elsewhere says loudly what was skipped and why.
pub fn skip_or_fail(what: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{what}: required in CI (.ci/run runs as root and installs redis-server)");
    }
    eprintln!("SKIPPED: {what}");
}

/// The binary with a clean environment keeping its state in `dir`.
pub fn titanic(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_titanic"));
    for (key, _) in std::env::vars() {
        if key.starts_with("TITANIC") || key == "RUST_LOG" {
            cmd.env_remove(key);
        }
    }
    cmd.current_dir(dir)
        .env("TITANIC_ENV", "test")
        .env("TITANIC_CONFIG_DIR", repo().join("config"))
        .env(
            "TITANIC__DATABASE__URL",
            format!("sqlite://{}", dir.join("titanic.db").display()),
        )
        .env("TITANIC__DATA__DIR", dir)
        .env(
            "TITANIC__DATA__TRAIN_CSV",
            repo().join("data/titanic/train.csv"),
        )
        .env(
            "TITANIC__DATA__TEST_CSV",
            repo().join("data/titanic/test.csv"),
        )
        .env("TITANIC__AUTH__JWT_SECRET", SECRET)
        .env("TITANIC__LOG__FORMAT", "json")
        .env("TITANIC__LOG__LEVEL", "info,tower_http=warn")
        .env("TITANIC__RATE_LIMIT__PER_SECOND", "1000000")
        .env("TITANIC__RATE_LIMIT__BURST", "1000000")
        // The tests poll health and metrics often, from one address.
        .env("TITANIC__RATE_LIMIT__OPEN__PER_SECOND", "1000000")
        .env("TITANIC__RATE_LIMIT__OPEN__BURST", "1000000")
        .stdin(Stdio::null());
    cmd
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs a CLI command to completion; panics with its output when it fails.
pub fn run_ok(cmd: &mut Command) -> String {
    let out: Output = cmd.output().expect("run titanic");
    assert!(
        out.status.success(),
        "{:?} failed: {}\n{}",
        cmd,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// A token minted by the binary itself, with the same configuration as the server.
pub fn token(dir: &Path, scopes: &str) -> String {
    run_ok(titanic(dir).args([
        "token", "--sub", "faults", "--scopes", scopes, "--ttl", "900",
    ]))
    .trim()
    .to_owned()
}

/// `titanic serve` as a child process on a free loopback port.
pub struct Server {
    pub child: Child,
    pub addr: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts `serve` on port 0 in `dir` and waits (at most 120 s) for its `listening` line.
    pub async fn start(dir: &Path, extra: &[(&str, &str)]) -> Server {
        let mut cmd = titanic(dir);
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
            predict: token(dir, "predict"),
            features: token(dir, "features:write"),
            models: token(dir, "models:write"),
            feedback: token(dir, "feedback:write"),
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
            &json!({ "version": version, "reason": "faults test" }),
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

/// A passenger_demographics row whose name marks it as the test's.
pub fn demographics(name: &str) -> Value {
    json!({
        "pclass": 2, "sex": "female", "age": 33, "sibsp": 0, "parch": 1, "fare": 21.0,
        "embarked": "S", "name": name,
    })
}

pub fn inline_passenger() -> Value {
    json!({
        "pclass": 3, "sex": "male", "age": 22, "sibsp": 1, "parch": 0, "fare": 7.25,
        "embarked": "S", "name": "Braund, Mr. Owen Harris", "ticket": "A/5 21171", "cabin": null
    })
}

/// Checks an error response: JSON `{"error":{"code","message"}}`; returns (status, code, message).
pub async fn error_of(r: reqwest::Response) -> (u16, String, String) {
    let status = r.status().as_u16();
    let body: Value = r.json().await.expect("a JSON error body");
    let code = body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!code.is_empty() && !message.is_empty(), "{body}");
    (status, code, message)
}

/// Polls `check` every 50 ms until it returns `Ok`, at most `within`; panics with the last
/// `Err` otherwise.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + within;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) => {
                assert!(
                    Instant::now() < deadline,
                    "{what}: not within {within:?}; last: {last}"
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of one sample (`name{labels} value` or `name value`) in Prometheus text.
pub fn metric(text: &str, sample: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(sample))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Every `titanic_http_requests_total` sample with a 5xx status.
pub fn server_errors(metrics: &str) -> Vec<String> {
    metrics
        .lines()
        .filter(|l| l.starts_with("titanic_http_requests_total{") && l.contains("status=\"5"))
        .map(str::to_owned)
        .collect()
}

// The test Redis helper is the API tests' own `OwnRedis` (with `get`).
#[path = "../api/helpers.rs"]
#[allow(dead_code)]
mod shared;
#[allow(unused_imports)]
pub use shared::{OwnRedis, PgDatabase, shared_redis, unique_prefix};

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| text(&o.stdout).trim() == "0")
}

fn sh(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            text(&out.stderr).trim()
        ))
    }
}

/// Files made immutable (`chattr +i`): on ext4 even root's writes through descriptors opened
/// before fail with EPERM (file permissions would not stop root, nor an open descriptor).
/// The flag is cleared again on drop.
pub struct Immutable {
    files: Vec<PathBuf>,
}

impl Immutable {
    /// Checks that `chattr +i` stops a write through an already open descriptor in `dir`;
    /// `None` (after [`skip_or_fail`]) when it does not here.
    pub fn supported_in(dir: &Path) -> Option<()> {
        use std::io::Write;
        if !is_root() {
            skip_or_fail("chattr +i needs root (CAP_LINUX_IMMUTABLE)");
            return None;
        }
        let probe = dir.join("immutable-probe");
        std::fs::write(&probe, b"probe").unwrap();
        let mut open = std::fs::OpenOptions::new()
            .append(true)
            .open(&probe)
            .unwrap();
        let set = sh("chattr", &["+i", probe.to_str().unwrap()]);
        let refused = set.is_ok() && open.write_all(b"more").is_err();
        let _ = sh("chattr", &["-i", probe.to_str().unwrap()]);
        drop(open);
        let _ = std::fs::remove_file(&probe);
        match (set, refused) {
            (Ok(()), true) => Some(()),
            (Err(e), _) => {
                skip_or_fail(&format!(
                    "chattr +i does not work in {}: {e}",
                    dir.display()
                ));
                None
            }
            (Ok(()), false) => {
                skip_or_fail(&format!(
                    "the file system of {} ignores the immutable flag for open files",
                    dir.display()
                ));
                None
            }
        }
    }

    pub fn set(files: &[PathBuf]) -> Immutable {
        for f in files {
            let name = f.to_str().unwrap();
            sh("chattr", &["+i", name]).unwrap_or_else(|e| panic!("{e}"));
        }
        Immutable {
            files: files.to_vec(),
        }
    }

    pub fn lift(mut self) {
        self.clear();
    }

    fn clear(&mut self) {
        for f in self.files.drain(..) {
            let _ = sh("chattr", &["-i", f.to_str().unwrap()]);
        }
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        self.clear();
    }
}

/// A small tmpfs mounted on a directory: a disk that fills up. Unmounted on drop.
pub struct Tmpfs {
    pub dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`mount -o size=`) on `dir`; `None` (after [`skip_or_fail`])
    /// when mounting is not possible here.
    pub fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        if !is_root() {
            skip_or_fail("mounting a tmpfs needs root");
            return None;
        }
        let options = format!("size={size},mode=0755");
        match sh(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &options,
                "tmpfs",
                dir.to_str().unwrap(),
            ],
        ) {
            Ok(()) => Some(Tmpfs {
                dir: dir.to_path_buf(),
            }),
            Err(e) => {
                skip_or_fail(&format!("cannot mount a tmpfs: {e}"));
                None
            }
        }
    }

    /// Writes `filler` until the file system is full; returns the bytes written.
    pub fn fill(&self, filler: &Path) -> u64 {
        use std::io::Write;
        let mut file = std::fs::File::create(filler).unwrap();
        let chunk = vec![0xA5u8; 64 * 1024];
        let mut written = 0u64;
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(_) => break,
            }
        }
        // The last partial pages too.
        loop {
            match file.write(&chunk[..512]) {
                Ok(n) if n > 0 => written += n as u64,
                _ => break,
            }
        }
        let _ = file.sync_all();
        written
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let dir = self.dir.to_str().unwrap();
        if sh("umount", &[dir]).is_err() {
            let _ = sh("umount", &["-l", dir]);
        }
    }
}
