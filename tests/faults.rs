//! Faults against the real `titanic` binary, each under load or right after acknowledged
//! writes: Redis killed and restarted, the SQLite database made unwritable or its disk
//! filled, SIGTERM with clients sending, SIGKILL in the middle of training, and SIGKILL right
//! after writes were acknowledged. Every test starts `titanic serve` as a child process on a
//! free loopback port with a scratch data directory.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

#[path = "faults/inject.rs"]
mod inject;
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use inject::{Immutable, Tmpfs, demographics, error_of, server_errors};
use support::{
    Api, OwnRedis, Server, SlowRequest, Steps, eventually, metric, passenger, run_ok, scratch,
    titanic_for_server,
};

/// Outcomes of requests, by kind ("200", "503 unavailable", "error: ...").
#[derive(Default)]
struct Tally {
    outcomes: std::sync::Mutex<BTreeMap<String, u64>>,
    /// `features.source` of the by-id predictions since the last `take_sources`.
    sources: std::sync::Mutex<BTreeMap<String, u64>>,
    ok: AtomicU64,
}

impl Tally {
    fn count(&self, outcome: String) {
        *self.outcomes.lock().unwrap().entry(outcome).or_default() += 1;
    }

    fn source(&self, source: &str) {
        *self
            .sources
            .lock()
            .unwrap()
            .entry(source.to_owned())
            .or_default() += 1;
    }

    fn take_sources(&self) -> BTreeMap<String, u64> {
        std::mem::take(&mut *self.sources.lock().unwrap())
    }

    fn sources_seen(&self, source: &str) -> u64 {
        self.sources
            .lock()
            .unwrap()
            .get(source)
            .copied()
            .unwrap_or(0)
    }

    fn outcomes(&self) -> BTreeMap<String, u64> {
        self.outcomes.lock().unwrap().clone()
    }
}

/// Clients sending predictions (by passenger id, inline, and batches of both) until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(api: &Api, workers: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Tally::default());
        let workers = (0..workers)
            .map(|w| {
                let (api, stop, tally) = (api.clone(), stop.clone(), tally.clone());
                tokio::spawn(async move {
                    let mut i: u64 = w as u64;
                    while !stop.load(Ordering::Relaxed) {
                        i += 7;
                        let id = 1 + (i % 1309) as i64;
                        let (path, body) = match i % 3 {
                            0 => ("/predict", json!({ "passenger_id": id })),
                            1 => ("/predict", passenger()),
                            _ => (
                                "/predict/batch",
                                json!({"instances": [{"passenger_id": id}, passenger()]}),
                            ),
                        };
                        let sent = api
                            .http
                            .post(api.url(path))
                            .bearer_auth(&api.predict)
                            .json(&body)
                            .send()
                            .await;
                        match sent {
                            Ok(r) if r.status() == 200 => {
                                let body: Value = r.json().await.unwrap_or(Value::Null);
                                let first = if path == "/predict" {
                                    &body
                                } else {
                                    &body["predictions"][0]
                                };
                                if let Some(source) = first["features"]["source"].as_str() {
                                    tally.source(source);
                                }
                                tally.ok.fetch_add(1, Ordering::Relaxed);
                                tally.count("200".to_owned());
                            }
                            Ok(r) => {
                                let status = r.status();
                                let text = r.text().await.unwrap_or_default();
                                tally.count(format!("{status} {path}: {text}"));
                            }
                            Err(e) => tally.count(format!("error {path}: {e}")),
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            tally,
            workers,
        }
    }

    /// Waits until `n` more requests succeeded (at most 60 s).
    async fn wait_ok(&self, n: u64) {
        let target = self.tally.ok.load(Ordering::Relaxed) + n;
        let tally = self.tally.clone();
        eventually(Duration::from_secs(60), "load makes progress", || {
            let done = tally.ok.load(Ordering::Relaxed);
            async move {
                if done >= target {
                    Ok(())
                } else {
                    Err(format!("{done} of {target} requests"))
                }
            }
        })
        .await;
    }

    async fn stop(self) -> BTreeMap<String, u64> {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers {
            w.await.unwrap();
        }
        self.tally.outcomes()
    }
}

// ---------------------------------------------------------------------------------------
// Redis killed under load
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_under_load_degrades_without_errors_and_recovers() {
    let mut steps = Steps::new();
    let Some(mut redis) = OwnRedis::start().await else {
        return;
    };
    let dir = scratch();
    let url = redis.url();
    let server = Server::start(
        dir.path(),
        &[
            ("TITANIC__REDIS__URL", url.as_str()),
            ("TITANIC__FEATURE_CACHE__TTL_MS", "100"),
        ],
    )
    .await;
    let api = Api::new(&server, dir.path());
    let (status, ready) = api.ready().await;
    assert_eq!(
        (status, ready["status"].as_str()),
        (200, Some("ready")),
        "{ready}"
    );

    steps.next("Redis killed under load: no request fails");
    let load = Load::start(&api, 6);
    load.wait_ok(100).await;
    assert!(
        load.tally.sources_seen("online_store") > 0,
        "served from Redis before the fault: {:?}",
        load.tally.take_sources()
    );

    redis.kill();
    steps.next("readiness turns degraded (still 200)");
    // Readiness turns degraded (still 200: the offline store answers reads).
    eventually(Duration::from_secs(15), "readiness degraded", || async {
        let (status, ready) = api.ready().await;
        let online = &ready["components"]["online_store"];
        if status == 200
            && ready["status"] == "degraded"
            && online["status"] == "degraded"
            && online["fallback"] == "offline_store"
        {
            Ok(())
        } else {
            Err(format!("{status} {ready}"))
        }
    })
    .await;
    steps.next("stored passengers are read from the SQLite history meanwhile");
    // Stored passengers are read from the SQLite history meanwhile.
    load.tally.take_sources();
    eventually(Duration::from_secs(15), "reads fall back", || async {
        let seen = load.tally.sources_seen("offline_store");
        if seen >= 20 {
            Ok(())
        } else {
            Err(format!("{seen} offline reads"))
        }
    })
    .await;
    let during = load.tally.take_sources();
    assert_eq!(
        during.get("online_store"),
        None,
        "nothing read from a dead Redis: {during:?}"
    );
    let metrics = api.metrics().await;
    assert_eq!(metric(&metrics, "titanic_online_store_up"), Some(0.0));
    assert!(metric(&metrics, "titanic_online_store_fallbacks_total").unwrap() >= 20.0);

    steps.next("Redis back empty: the service reconnects, materializes again and reads from it");
    // Redis comes back empty: the service reconnects, materializes again and reads from it.
    assert!(redis.restart().await, "redis-server restarts");
    eventually(Duration::from_secs(30), "recovery", || async {
        let (status, ready) = api.ready().await;
        let up = metric(&api.metrics().await, "titanic_online_store_up");
        let from_redis = load.tally.sources_seen("online_store");
        if status == 200 && ready["status"] == "ready" && up == Some(1.0) && from_redis >= 10 {
            Ok(())
        } else {
            Err(format!(
                "{status} {ready}, up {up:?}, {:?}",
                load.tally.sources.lock().unwrap()
            ))
        }
    })
    .await;
    let stored = redis
        .get("titanic:v1:fv:passenger_demographics:1:1")
        .await
        .expect("passenger 1 materialized into the new Redis");
    assert!(stored.contains("Braund"), "{stored}");

    let outcomes = load.stop().await;
    let failed: Vec<_> = outcomes.iter().filter(|(k, _)| *k != "200").collect();
    assert!(failed.is_empty(), "every request succeeded: {outcomes:?}");
    assert!(outcomes["200"] >= 200, "{outcomes:?}");
    let errors = server_errors(&api.metrics().await);
    assert!(errors.is_empty(), "no 5xx on the server: {errors:?}");
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// SIGTERM under load
// ---------------------------------------------------------------------------------------

/// The body of a `Transfer-Encoding: chunked` response, which must end with its last chunk.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").expect("a chunk size line");
        let size = usize::from_str_radix(size.trim(), 16).expect("a hexadecimal chunk size");
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
}

fn says_close(headers: &reqwest::header::HeaderMap) -> bool {
    headers
        .get("connection")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("close"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_answers_every_accepted_request_and_exits_0() {
    let mut steps = Steps::new();
    let dir = scratch();
    let mut server = Server::start(
        dir.path(),
        &[
            ("TITANIC__SERVER__SHUTDOWN_DRAIN_SECS", "2"),
            ("TITANIC__SERVER__SHUTDOWN_TIMEOUT_SECS", "10"),
        ],
    )
    .await;
    let api = Api::new(&server, dir.path());
    let addr = server.addr.clone();
    let body = json!({"pclass": 2, "sex": "female", "age": 30, "sibsp": 0, "parch": 0}).to_string();
    let csv = std::fs::read(support::repo().join("data/titanic/test.csv")).unwrap();
    let slow = |path: &str, content_type: &str, body: &[u8]| {
        SlowRequest::start(&addr, &api.predict, path, content_type, body)
    };
    steps.next("a request in flight across the whole shutdown");
    // In flight across the whole shutdown: started before the signal.
    let mut in_flight: Vec<(&str, SlowRequest)> = (0..4)
        .map(|_| {
            (
                "json",
                slow("/predict", "application/json", body.as_bytes()),
            )
        })
        .collect();
    in_flight.push(("csv", slow("/predict/batch", "text/csv", &csv)));

    steps.next("clients that honour Connection: close send until told to go");
    // Clients that honour `Connection: close`: each sends until a response says the server
    // is going away, sends a few more (new connections, during the drain), then stops.
    let outcomes = Arc::new(Tally::default());
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (api, outcomes, body) = (api.clone(), outcomes.clone(), body.clone());
            tokio::spawn(async move {
                let mut after_close = None::<u32>;
                while after_close.is_none_or(|n| n < 3) {
                    let sent = api
                        .http
                        .post(api.url("/predict"))
                        .bearer_auth(&api.predict)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await;
                    match sent {
                        Ok(r) => {
                            let close = says_close(r.headers());
                            let status = r.status().as_u16();
                            let complete = r
                                .json::<Value>()
                                .await
                                .is_ok_and(|b| b["model_version"].is_string());
                            let outcome = if status != 200 || !complete {
                                format!("{status} (complete body: {complete})")
                            } else if after_close.is_some() && !close {
                                "200 without Connection: close while draining".to_owned()
                            } else {
                                "200".to_owned()
                            };
                            outcomes.count(outcome);
                            if close {
                                after_close = Some(after_close.map_or(0, |n| n + 1));
                            } else {
                                outcomes.ok.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        // The listener closed: the server never accepted this one.
                        Err(e) if e.is_connect() => {
                            outcomes.count("refused (listener closed)".to_owned());
                            break;
                        }
                        Err(e) => {
                            outcomes.count(format!("failed: {e:?}"));
                            break;
                        }
                    }
                }
            })
        })
        .collect();
    let progress = outcomes.clone();
    eventually(Duration::from_secs(60), "load before the signal", || {
        let done = progress.ok.load(Ordering::Relaxed);
        async move {
            if done >= 200 {
                Ok(())
            } else {
                Err(format!("{done} requests"))
            }
        }
    })
    .await;

    server.sigterm();
    steps.next("readiness says shutting down at once, requests still served");
    // Readiness says so at once, while requests are still served.
    eventually(
        Duration::from_secs(10),
        "readiness 503 shutting_down",
        || async {
            let (status, ready) = api.ready().await;
            if status == 503 && ready["status"] == "shutting_down" {
                Ok(())
            } else {
                Err(format!("{status} {ready}"))
            }
        },
    )
    .await;
    steps.next("requests sent during the drain are accepted and finished");
    // Sent during the drain, on new connections: still accepted, finished after the close.
    for _ in 0..3 {
        in_flight.push((
            "json",
            slow("/predict", "application/json", body.as_bytes()),
        ));
    }
    for w in workers {
        tokio::time::timeout(Duration::from_secs(30), w)
            .await
            .expect("clients stop once told Connection: close")
            .unwrap();
    }
    steps.next("the listener closes after the drain");
    // The listener closes after the drain: new connections are refused.
    eventually(Duration::from_secs(15), "listener closed", || {
        let addr = addr.clone();
        async move {
            match std::net::TcpStream::connect(&addr) {
                Err(_) => Ok(()),
                Ok(_) => Err("still accepting".to_owned()),
            }
        }
    })
    .await;
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the process waits for the requests in flight"
    );
    steps.next("every request in flight since before the signal completes");
    // Every request in flight since before the signal or the drain completes normally.
    let finished = tokio::task::spawn_blocking(move || {
        in_flight
            .into_iter()
            .map(|(kind, r)| (kind, r.finish()))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    for (kind, response) in &finished {
        let head = response
            .split("\r\n\r\n")
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        assert!(response.starts_with("HTTP/1.1 200"), "{kind}: {response}");
        // (The CSV's response head went out before the signal, once its header was read.)
        if *kind == "json" {
            assert!(head.contains("connection: close"), "{kind}: {head}");
        }
        match *kind {
            "csv" => {
                let (_, body) = response.split_once("\r\n\r\n").unwrap();
                let csv = if head.contains("transfer-encoding: chunked") {
                    dechunk(body)
                } else {
                    body.to_owned()
                };
                let mut lines = csv.lines();
                assert_eq!(lines.next(), Some("PassengerId,Survived,Probability"));
                let rows: Vec<&str> = lines.collect();
                assert_eq!(rows.len(), 418, "the whole CSV was scored: {csv}");
                assert!(rows.iter().all(|r| r.split(',').count() == 3), "{csv}");
            }
            _ => assert!(response.contains("\"model_version\":\"v1\""), "{response}"),
        }
    }
    let status = server.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "{status:?}\n{}", server.log_text());
    let outcomes = outcomes.outcomes();
    let failed: Vec<_> = outcomes
        .iter()
        .filter(|(k, _)| *k != "200" && *k != "refused (listener closed)")
        .collect();
    assert!(failed.is_empty(), "{outcomes:?}");
    assert!(server.log_text().contains("server stopped"));
}

// ---------------------------------------------------------------------------------------
// Killed while training
// ---------------------------------------------------------------------------------------

/// Training slow enough to be killed in the middle: 10 folds, nested cross-validation over
/// nine penalties (about a thousand fits).
const SLOW_TRAINING: [(&str, &str); 2] = [
    ("TITANIC__TRAINING__FOLDS", "10"),
    (
        "TITANIC__TRAINING__ALPHA_GRID",
        "0.01,0.03,0.1,0.3,1,3,10,30,100",
    ),
];

/// The response when the server acknowledged the request (2xx); `None` once it is gone or
/// refuses.
async fn acknowledged(request: reqwest::RequestBuilder) -> Option<reqwest::Response> {
    let r = request.send().await.ok()?;
    r.status().is_success().then_some(r)
}

/// The versions `titanic models list` prints, with their aliases.
fn listed_versions(dir: &std::path::Path) -> Vec<String> {
    run_ok(titanic_for_server(dir).args(["models", "list"]))
        .lines()
        .map(|l| {
            let version = l.split_whitespace().next().unwrap_or_default();
            let aliases = l.rsplit_once('[').map(|(_, a)| a.trim_end_matches(']'));
            match aliases {
                Some(a) => format!("{version} [{a}]"),
                None => version.to_owned(),
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_training_leaves_no_partial_model_and_fails_the_job() {
    let mut steps = Steps::new();
    let dir = scratch();
    run_ok(titanic_for_server(dir.path()).args(["train", "--promote"]));
    assert_eq!(listed_versions(dir.path()), ["v1 [production]"]);

    steps.next("a training job over HTTP, the server killed while it runs");
    // A training job over HTTP, and the server killed while it runs.
    let mut server = Server::start(dir.path(), &SLOW_TRAINING).await;
    let api = Api::new(&server, dir.path());
    let r = api
        .post("/models/train", &api.models, &json!({"promote": true}))
        .await;
    assert_eq!(r.status(), 202);
    let job: Value = r.json().await.unwrap();
    let id = job["job_id"].as_str().unwrap().to_owned();
    let path = format!("/models/jobs/{id}");
    eventually(Duration::from_secs(60), "job fitting", || async {
        let job: Value = api.get(&path).await.json().await.unwrap();
        if job["status"] == "running" && server.log_text().contains("training started") {
            Ok(())
        } else {
            Err(job.to_string())
        }
    })
    .await;
    server.sigkill();
    assert_eq!(
        listed_versions(dir.path()),
        ["v1 [production]"],
        "nothing half-registered"
    );

    steps.next("titanic train --promote killed while fitting");
    // `titanic train --promote` killed while fitting.
    let mut cli = titanic_for_server(dir.path())
        .envs(SLOW_TRAINING)
        .args(["train", "--promote"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = cli.stderr.take().unwrap();
    let started = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .any(|l| l.contains("training started"))
    });
    let started = tokio::time::timeout(Duration::from_secs(60), started)
        .await
        .expect("titanic train starts fitting")
        .unwrap();
    assert!(started, "titanic train logged its start");
    cli.kill().unwrap();
    cli.wait().unwrap();
    assert_eq!(listed_versions(dir.path()), ["v1 [production]"]);

    steps.next("the store is whole: serve starts, the job says interrupted, v1 answers");
    // The store is whole: serve starts on it, the job says it was interrupted (once its
    // heartbeat has been silent for 15 s: another live replica could have been running it),
    // production is the complete v1 and answers.
    let server = Server::start(dir.path(), &SLOW_TRAINING).await;
    let api = api.at(&server);
    let job: Value = eventually(Duration::from_secs(60), "the job is failed", || async {
        let job: Value = api.get(&path).await.json().await.unwrap();
        if job["status"] == "failed" {
            Ok(job)
        } else {
            Err(job.to_string())
        }
    })
    .await;
    assert!(
        job["error"].as_str().unwrap().contains("interrupted"),
        "{job}"
    );
    assert!(job["finished_at"].is_string(), "{job}");
    let models: Value = api.get("/models").await.json().await.unwrap();
    let versions: Vec<&str> = models["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["v1"], "{models}");
    assert_eq!(models["aliases"]["production"], "v1");
    assert_eq!(models["serving"], "v1");
    assert_eq!(api.get("/models/v1").await.status(), 200);
    let (_, body) = api.predict_id(892).await;
    assert_eq!(body["model_version"], "v1");
    let (status, ready) = api.ready().await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["components"]["model"]["version"], "v1");
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// Durability of acknowledged writes across SIGKILL
// ---------------------------------------------------------------------------------------

/// What the writers got a 2xx for.
#[derive(Default)]
struct Acked {
    /// Pushed entity ids (each with its own name).
    pushed: std::sync::Mutex<Vec<i64>>,
    /// Request ids of predictions whose label was acknowledged.
    labelled: std::sync::Mutex<Vec<String>>,
    /// Versions the `staging` alias was acknowledged to point at, in order.
    staged: std::sync::Mutex<Vec<String>>,
}

fn pushed_name(id: i64) -> String {
    format!("Durable, Mrs. Row {id}")
}

fn sigkill_pid(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Opens the test's SQLite file directly (after the server is gone or beside it).
async fn sqlite(dir: &std::path::Path) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.join("titanic.db").display()))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill_right_after_the_response() {
    let mut steps = Steps::new();
    let dir = scratch();
    two_versions(dir.path());
    let mut server = Server::start(dir.path(), &[]).await;
    let api = Api::new(&server, dir.path());
    let promoted = api.promote("production", "v2").await;
    assert_eq!(promoted.status(), 200);

    steps.next("three writers at once, SIGKILL right after the 30th push response");
    // Three writers at once; the push writer sends SIGKILL right after its 30th response.
    let acked = Arc::new(Acked::default());
    let pid = server.child.id();
    let pushes = {
        let (api, acked) = (api.clone(), acked.clone());
        tokio::spawn(async move {
            for i in 0.. {
                let id = 100_000 + i;
                let push = api.http.post(api.url("/features/push"));
                let row = json!({"entity": id, "values": demographics(&pushed_name(id))});
                let body = json!({"view": "passenger_demographics", "rows": [row]});
                let Some(r) = acknowledged(push.bearer_auth(&api.features).json(&body)).await
                else {
                    return;
                };
                let body: Value = r.json().await.unwrap();
                assert_eq!(body["written"], 1, "{body}");
                acked.pushed.lock().unwrap().push(id);
                if i == 29 {
                    sigkill_pid(pid);
                    return;
                }
            }
        })
    };
    let labels = {
        let (api, acked) = (api.clone(), acked.clone());
        tokio::spawn(async move {
            for i in 0_i64.. {
                let predict = api.http.post(api.url("/predict")).bearer_auth(&api.predict);
                let passenger = json!({"passenger_id": 1 + i % 891});
                let Some(r) = acknowledged(predict.json(&passenger)).await else {
                    return;
                };
                let rid = r.headers()["x-request-id"].to_str().unwrap().to_owned();
                let feedback = api
                    .http
                    .post(api.url("/feedback"))
                    .bearer_auth(&api.feedback);
                let label = json!({"request_id": rid, "survived": i % 2 == 0});
                if acknowledged(feedback.json(&label)).await.is_none() {
                    return;
                }
                acked.labelled.lock().unwrap().push(rid);
            }
        })
    };
    let promotions = {
        let (api, acked) = (api.clone(), acked.clone());
        tokio::spawn(async move {
            for i in 0.. {
                let version = if i % 2 == 0 { "v1" } else { "v2" };
                let put = api.http.put(api.url("/models/aliases/staging"));
                let alias = json!({"version": version});
                if acknowledged(put.bearer_auth(&api.models).json(&alias))
                    .await
                    .is_none()
                {
                    return;
                }
                acked.staged.lock().unwrap().push(version.to_owned());
            }
        })
    };
    for w in [pushes, labels, promotions] {
        tokio::time::timeout(Duration::from_secs(120), w)
            .await
            .expect("writers end when the server dies")
            .unwrap();
    }
    let status = server.wait_exit(Duration::from_secs(10)).await;
    assert!(!status.success(), "killed: {status:?}");
    let pushed = acked.pushed.lock().unwrap().clone();
    let labelled = acked.labelled.lock().unwrap().clone();
    let staged = acked.staged.lock().unwrap().clone();
    assert_eq!(pushed.len(), 30);
    assert!(
        !labelled.is_empty() && !staged.is_empty(),
        "{labelled:?} {staged:?}"
    );

    steps.next("restarted on the same files, every acknowledged write is there");
    // Restarted on the same files, every acknowledged write is there.
    let server = Server::start(dir.path(), &[]).await;
    let api = api.at(&server);
    let names = api.stored_names(&pushed).await;
    for id in &pushed {
        assert_eq!(names[id], json!(pushed_name(*id)), "pushed row {id}");
    }
    let models: Value = api.get("/models").await.json().await.unwrap();
    assert_eq!(models["aliases"]["production"], "v2", "{models}");
    assert_eq!(models["serving"], "v2", "{models}");
    let history: Value = api
        .get("/models/aliases/staging/history")
        .await
        .json()
        .await
        .unwrap();
    let moves: Vec<&str> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["version"].as_str().unwrap())
        .collect();
    steps.next("every acknowledged alias move is there, in order");
    // Every acknowledged move, in order; at most one more (sent, not yet answered).
    assert!(
        moves.len() == staged.len() || moves.len() == staged.len() + 1,
        "{moves:?} vs {staged:?}"
    );
    assert_eq!(moves[..staged.len()], staged[..]);
    assert_eq!(models["aliases"]["staging"], *moves.last().unwrap());
    let performance: Value = api
        .get("/monitoring/performance")
        .await
        .json()
        .await
        .unwrap();
    steps.next("live performance is refilled from the stored labels");
    // The restarted process refilled live performance from the stored labels.
    let restored: u64 = performance["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["labelled"].as_u64().unwrap())
        .sum();
    assert!(
        restored >= labelled.len() as u64,
        "{restored} labels restored, {} acknowledged: {performance}",
        labelled.len()
    );
    server.stop().await;
    let pool = sqlite(dir.path()).await;
    let stored: Vec<String> = sqlx::query_scalar("SELECT request_id FROM feedback")
        .fetch_all(&pool)
        .await
        .unwrap();
    for rid in &labelled {
        assert!(stored.contains(rid), "label for {rid} lost");
    }
    assert!(stored.len() <= labelled.len() + 1);
    pool.close().await;
}

// ---------------------------------------------------------------------------------------
// SQLite unwritable (immutable files) or its disk full
// ---------------------------------------------------------------------------------------

/// A refused write: 503 `unavailable` with a message naming the store and SQLite's reason.
async fn refused(what: &str, r: reqwest::Response, reasons: &[&str]) -> String {
    let (status, code, message) = error_of(r).await;
    assert_eq!(
        (status, code.as_str()),
        (503, "unavailable"),
        "{what}: {message}"
    );
    assert!(
        reasons.iter().any(|reason| message.contains(reason)),
        "{what}: the message names the cause: {message}"
    );
    message
}

/// Reads that must go on answering 200 while writes fail.
async fn reads_answer(api: &Api, staging: Option<&str>) {
    assert_eq!(api.get("/health/live").await.status(), 200);
    assert_eq!(
        api.aliases().await.get("staging").map(String::as_str),
        staging
    );
    let (_, body) = api.predict_id(7).await;
    assert!(body["probability"].is_number());
    let inline = api.post("/predict", &api.predict, &passenger()).await;
    assert_eq!(inline.status(), 200);
}

/// Readiness while writes fail: still 200 (reads and predictions go on), `degraded`, with the
/// database's write failure named. (Polled: on a full disk the first probes may still fit in
/// the space the WAL file already has; each one that does uses some of it up.)
async fn writes_failing(api: &Api, reasons: &[&str]) {
    eventually(Duration::from_secs(15), "readiness degraded", || async {
        let (status, ready) = api.ready().await;
        assert_eq!(
            status, 200,
            "reads go on, so the service stays ready: {ready}"
        );
        let database = &ready["components"]["database"];
        let message = database["message"].as_str().unwrap_or_default();
        if ready["status"] == "degraded"
            && database["status"] == "degraded"
            && database["writes"] == "failing"
            && reasons.iter().any(|r| message.contains(r))
        {
            Ok(())
        } else {
            Err(ready.to_string())
        }
    })
    .await;
}

/// Readiness back to `ready` once the database takes writes again.
async fn writes_recover(api: &Api) {
    eventually(Duration::from_secs(10), "readiness ready again", || async {
        match api.ready().await {
            (200, ready) if ready["status"] == "ready" => Ok(()),
            (status, ready) => Err(format!("{status} {ready}")),
        }
    })
    .await;
}

/// Two model versions (v1 in production), ready for a promotion of `staging`.
fn two_versions(dir: &std::path::Path) {
    run_ok(titanic_for_server(dir).args(["train", "--promote"]));
    run_ok(titanic_for_server(dir).arg("train"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unwritable_database_refuses_writes_with_503_while_reads_go_on() {
    let mut steps = Steps::new();
    let dir = scratch();
    if Immutable::supported_in(dir.path()).is_none() {
        return;
    }
    two_versions(dir.path());
    let server = Server::start(dir.path(), &[]).await;
    let api = Api::new(&server, dir.path());

    steps.next("writes acknowledged before the fault");
    // Acknowledged before the fault.
    let r = api
        .push(&[(20_001, demographics("Before, Mrs. Fault"))])
        .await;
    assert_eq!(r.status(), 200);
    let (before, _) = api.predict_id(3).await;
    assert_eq!(api.feedback(&before, true).await.status(), 200);
    assert_eq!(api.promote("staging", "v2").await.status(), 200);
    let (during, _) = api.predict_id(4).await;

    steps.next("the database refuses writes: 503 for writes, reads go on");
    // The fault: the database file and its WAL refuse every write, even root's (the WAL's
    // index, `-shm`, stays writable: readers need it).
    let db = dir.path().join("titanic.db");
    let wal = dir.path().join("titanic.db-wal");
    assert!(wal.is_file(), "WAL mode");
    let fault = Immutable::set(&[db, wal]);
    let load = Load::start(&api, 3);
    load.wait_ok(30).await;

    const CAUSE: &[&str] = &["disk I/O error", "readonly", "read-only"];
    let push = refused(
        "push",
        api.push(&[(20_002, demographics("During, Mrs. Fault"))])
            .await,
        CAUSE,
    )
    .await;
    assert!(push.contains("offline store"), "{push}");
    refused("feedback", api.feedback(&during, false).await, CAUSE).await;
    let promotion = refused("promotion", api.promote("staging", "v1").await, CAUSE).await;
    assert!(promotion.contains("model registry"), "{promotion}");
    refused(
        "training job",
        api.post("/models/train", &api.models, &json!({})).await,
        CAUSE,
    )
    .await;
    reads_answer(&api, Some("v2")).await;
    assert_eq!(
        api.stored_names(&[20_001]).await[&20_001],
        "Before, Mrs. Fault"
    );
    writes_failing(&api, CAUSE).await;
    load.wait_ok(30).await;

    steps.next("fault lifted: writes succeed without a restart");
    // Lifted: writes succeed again without a restart.
    fault.lift();
    eventually(Duration::from_secs(10), "writes again", || async {
        let r = api
            .push(&[(20_003, demographics("After, Mrs. Fault"))])
            .await;
        match r.status().as_u16() {
            200 => Ok(()),
            s => Err(format!("{s} {}", r.text().await.unwrap_or_default())),
        }
    })
    .await;
    writes_recover(&api).await;
    assert_eq!(api.feedback(&during, false).await.status(), 200);
    let outcomes = load.stop().await;
    assert_eq!(outcomes.keys().collect::<Vec<_>>(), ["200"], "{outcomes:?}");
    server.stop().await;

    steps.next("restarted: acknowledged writes are there, refused ones are not");
    // Restarted: what was acknowledged is there, what was refused is not.
    let server = Server::start(dir.path(), &[]).await;
    let api = api.at(&server);
    let names = api.stored_names(&[20_001, 20_002, 20_003]).await;
    assert_eq!(names[&20_001], "Before, Mrs. Fault");
    assert_eq!(names[&20_002], Value::Null, "the refused push left nothing");
    assert_eq!(names[&20_003], "After, Mrs. Fault");
    assert_eq!(api.aliases().await["staging"], "v2");
    server.stop().await;
    let pool = sqlite(dir.path()).await;
    let labels: Vec<String> = sqlx::query_scalar("SELECT request_id FROM feedback ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(labels, [before, during]);
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_refuses_writes_with_503_keeps_acknowledged_ones_and_recovers() {
    let mut steps = Steps::new();
    let scratch = scratch();
    let Some(disk) = Tmpfs::mount(&scratch.path().join("disk"), "8m") else {
        return;
    };
    let dir = disk.dir.clone();
    two_versions(&dir);
    let mut server = Server::start(&dir, &[]).await;
    let api = Api::new(&server, &dir);
    let r = api
        .push(&[(30_000, demographics("Before, Mr. Full"))])
        .await;
    assert_eq!(r.status(), 200);
    let (before, _) = api.predict_id(5).await;
    assert_eq!(api.feedback(&before, true).await.status(), 200);

    steps.next("the disk fills up");
    // The disk fills up.
    let filler = dir.join("filler");
    let filled = disk.fill(&filler);
    assert!(filled > 0);
    let load = Load::start(&api, 3);

    steps.next(
        "writes are refused with 503 once SQLite's space is used up; acknowledged ones are kept",
    );
    // Writes go on until the space SQLite already holds is used up; from then on they are
    // refused with 503. None is answered otherwise, and every acknowledged one is kept.
    const CAUSE: &[&str] = &["full", "disk I/O error"];
    let mut pushed: Vec<i64> = Vec::new();
    let mut refusals = 0;
    let mut labels = vec![before.clone()];
    let mut staged = Vec::new();
    for round in 0..200_i64 {
        // 400 rows per push, about 60 KB of history each.
        let ids: Vec<i64> = (0..400).map(|k| 31_000 + round * 400 + k).collect();
        let rows: Vec<(i64, Value)> = ids
            .iter()
            .map(|id| {
                (
                    *id,
                    demographics(&format!("Full, Mr. Row {id} {}", "x".repeat(80))),
                )
            })
            .collect();
        let r = api.push(&rows).await;
        if r.status() == 200 {
            pushed.extend(&ids);
        } else {
            let m = refused("push", r, CAUSE).await;
            eprintln!("round {round}: push refused: {m}");
            refusals += 1;
        }
        let (rid, _) = api.predict_id(1 + round % 891).await;
        let r = api.feedback(&rid, round % 2 == 0).await;
        if r.status() == 200 {
            labels.push(rid);
        } else {
            let m = refused("feedback", r, CAUSE).await;
            eprintln!("round {round}: feedback refused: {m}");
            refusals += 1;
        }
        let version = if round % 2 == 0 { "v2" } else { "v1" };
        let r = api.promote("staging", version).await;
        if r.status() == 200 {
            staged.push(version);
        } else {
            let m = refused("promotion", r, CAUSE).await;
            eprintln!("round {round}: promotion refused: {m}");
            refusals += 1;
        }
        if refusals >= 6 {
            break;
        }
    }
    assert!(refusals >= 6, "a full disk refuses writes");
    eprintln!(
        "full disk: {} rows pushed, {} labels and {} promotions acknowledged, {refusals} refused",
        pushed.len(),
        labels.len(),
        staged.len()
    );
    reads_answer(&api, staged.last().copied()).await;
    writes_failing(&api, CAUSE).await;
    let metrics = api.metrics().await;
    let errors = server_errors(&metrics);
    assert!(
        errors.iter().all(|l| l.contains("status=\"503\"")),
        "only 503s: {errors:?}"
    );

    steps.next("space again: writes succeed without a restart");
    // Space again: writes succeed without a restart.
    std::fs::remove_file(&filler).unwrap();
    eventually(Duration::from_secs(10), "writes again", || async {
        let r = api.push(&[(30_001, demographics("After, Mr. Full"))]).await;
        match r.status().as_u16() {
            200 => Ok(()),
            s => Err(format!("{s} {}", r.text().await.unwrap_or_default())),
        }
    })
    .await;
    writes_recover(&api).await;
    let outcomes = load.stop().await;
    assert_eq!(outcomes.keys().collect::<Vec<_>>(), ["200"], "{outcomes:?}");
    server.sigterm();
    assert!(server.wait_exit(Duration::from_secs(30)).await.success());

    steps.next("restarted: every acknowledged write is there");
    // Restarted: every acknowledged write is there.
    let server = Server::start(&dir, &[]).await;
    let api = api.at(&server);
    let mut check = pushed.clone();
    check.extend([30_000, 30_001]);
    for ids in check.chunks(2000) {
        let names = api.stored_names(ids).await;
        for id in ids {
            assert!(names[id].is_string(), "pushed row {id} lost");
        }
    }
    if let Some(version) = staged.last() {
        assert_eq!(api.aliases().await["staging"], *version);
    }
    server.stop().await;
    let pool = sqlite(&dir).await;
    let stored: Vec<String> = sqlx::query_scalar("SELECT request_id FROM feedback")
        .fetch_all(&pool)
        .await
        .unwrap();
    for rid in &labels {
        assert!(stored.contains(rid), "label {rid} lost");
    }
    pool.close().await;
    drop(disk);
}
