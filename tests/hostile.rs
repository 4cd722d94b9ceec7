//! Hostile clients against the real `titanic` binary: request sizes chosen to exhaust memory,
//! records without an end, long request ids, refusals on keep-alive connections, trickling
//! uploads, idle and trickling connections, and more connections than the cap. Each test
//! starts `titanic serve` as a child process, is bounded in time, and checks that the
//! server's peak resident memory stays under [`PEAK_RSS_MIB`] (docs/security.md).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::{Api, Server, metric, passenger, scratch, step, token};

/// The most resident memory the server may reach under any test here (the debug build the
/// tests run; the release build stays well under it too).
const PEAK_RSS_MIB: u64 = 128;

/// Every test's whole run, at most.
const WITHIN: Duration = Duration::from_secs(120);

/// Runs one scenario, failing it when it takes longer than [`WITHIN`].
async fn bounded(scenario: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(WITHIN, scenario)
        .await
        .expect("within the time bound");
}

/// The server's peak resident set so far (VmHWM), in MiB.
fn peak_rss_mib(server: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id()))
        .expect("the server's /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmHWM")
        / 1024
}

fn assert_memory_bounded(server: &Server) {
    let peak = peak_rss_mib(server);
    assert!(
        peak < PEAK_RSS_MIB,
        "peak RSS {peak} MiB, over the bound of {PEAK_RSS_MIB} MiB"
    );
    eprintln!("peak RSS: {peak} MiB");
}

/// A raw HTTP/1.1 answer: the head (status line and headers, lower-cased names) and body.
#[derive(Debug)]
struct Raw {
    status: u16,
    head: String,
    body: String,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Reads one answer from `stream`: the head, then `content-length` bytes, or (chunked or
/// unsized) until the connection closes.
async fn read_answer<R: AsyncRead + Unpin>(stream: &mut R) -> Option<Raw> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let mut raw = Raw {
        status,
        head,
        body: String::new(),
    };
    let length = raw
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok());
    let mut body = buf[head_end..].to_vec();
    loop {
        if length.is_some_and(|n| body.len() >= n) {
            break;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    if raw
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        body = dechunk(&body);
    }
    raw.body = String::from_utf8_lossy(&body).into_owned();
    Some(raw)
}

/// The data of a chunked body (as far as it arrived).
fn dechunk(mut bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = bytes.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&bytes[..end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok());
        let Some(size) = size.filter(|n| *n > 0) else {
            break;
        };
        let data = &bytes[end + 2..];
        out.extend_from_slice(&data[..size.min(data.len())]);
        bytes = data.get(size + 2..).unwrap_or(&[]);
    }
    out
}

/// Sends `head` then, in a task, each body chunk after its delay (write errors ignored: the
/// server may answer and close before it has read them), and reads the answer.
async fn exchange(addr: &str, head: String, body: Vec<(Duration, Vec<u8>)>) -> Raw {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let sender = tokio::spawn(async move {
        if writer.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        for (delay, chunk) in body {
            tokio::time::sleep(delay).await;
            if writer.write_all(&chunk).await.is_err() {
                return;
            }
        }
        // Held open (not finished with a last chunk) until the answer has been read.
        std::future::pending::<()>().await;
    });
    let answer = tokio::time::timeout(Duration::from_secs(60), read_answer(&mut reader))
        .await
        .expect("an answer within 60 s")
        .expect("an answer before the connection closed");
    sender.abort();
    answer
}

const CSV_HEADER: &str = "PassengerId,Pclass,Name,Sex,Age,SibSp,Parch,Ticket,Fare,Cabin,Embarked\n";

fn csv_head(addr: &str, token: &str) -> String {
    format!(
        "POST /predict/batch HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\n\
         content-type: text/csv\r\ntransfer-encoding: chunked\r\n\r\n"
    )
}

/// One chunk of a chunked body.
fn chunked(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bodies_get_clear_errors_and_memory_stays_flat() {
    bounded(hostile_bodies()).await;
}

async fn hostile_bodies() {
    let dir = scratch();
    let server = Server::start(dir.path(), &[]).await;
    let api = Api::new(&server, dir.path());
    let addr = server.addr.clone();

    step(
        "1. a shape that would size a huge allocation is refused naming the input",
        async {
            // 1. A shape that would size a huge allocation: 400 naming the input, and the process
            // stays up.
            let huge = json!({"inputs": [{"name": "pclass", "datatype": "INT64",
                "shape": [1_000_000_000_000_000i64], "data": [1]}]});
            let r = api
                .post("/v2/models/titanic/infer", &api.predict, &huge)
                .await;
            assert_eq!(r.status(), 400);
            let message = r.json::<Value>().await.unwrap()["error"]
                .as_str()
                .unwrap()
                .to_owned();
            assert!(
                message.contains("pclass") && message.contains("rows"),
                "{message}"
            );
            for (body, expected) in [
                // More values than the shape says, nested.
                (
                    json!({"inputs": [{"name": "pclass", "datatype": "INT64", "shape": [2],
                        "data": [[1], [2], [3]]}]}),
                    "more than 2 values",
                ),
                (
                    json!({"inputs": [{"name": "pclass", "datatype": "INT64", "shape": [-1], "data": []}]}),
                    "shape",
                ),
                (
                    json!({"inputs": [
                        {"name": "pclass", "datatype": "INT64", "shape": [1], "data": [1]},
                        {"name": "sex", "datatype": "BYTES", "shape": [2], "data": ["male", "female"]}]}),
                    "rows",
                ),
                (
                    json!({"inputs": [{"name": "pclass", "datatype": "INT64", "shape": [1], "data": [1]}],
                        "outputs": [{"name": "probability"}, {"name": "probability"}]}),
                    "twice",
                ),
            ] {
                let r = api
                    .post("/v2/models/titanic/infer", &api.predict, &body)
                    .await;
                assert_eq!(r.status(), 400, "{body}");
                let message = r.json::<Value>().await.unwrap()["error"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                assert!(message.contains(expected), "{body}: {message}");
            }
            assert_eq!(api.get("/health/live").await.status(), 200);
        },
    )
    .await;

    step(
        "2. collections over the item limit are refused by name before they are built",
        async {
            // 2. Collections over the item limit are refused by name before they are built.
            let instances: Vec<Value> = (0..10_001).map(|_| json!({})).collect();
            let r = api
                .post(
                    "/predict/batch",
                    &api.predict,
                    &json!({ "instances": instances }),
                )
                .await;
            assert_eq!(r.status(), 422);
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"]["details"]["fields"][0]["field"], "instances");
            let age = "passenger_demographics:age";
            let twice = json!({"features": [age, age], "entities": {"passenger_id": [1]}});
            let r = api.post("/features/online", &api.predict, &twice).await;
            assert_eq!(r.status(), 422);
        },
    )
    .await;

    step(
        "3. a CSV row with a quote never closed ends the stream with an error",
        async {
            // 3. A CSV row opening a quote it never closes, 32 MB long: the stream ends with the
            // error line naming the row, without reading (or holding) the rest.
            let token = api.predict.clone();
            let mut first = CSV_HEADER.as_bytes().to_vec();
            first.extend_from_slice(b"1,3,\"");
            let filler = chunked(&vec![b'A'; 1 << 20]);
            let mut body = vec![(Duration::ZERO, chunked(&first))];
            body.extend((0..32).map(|_| (Duration::ZERO, filler.clone())));
            let answer = exchange(&addr, csv_head(&addr, &token), body).await;
            assert_eq!(answer.status, 200, "{answer:?}");
            let last = answer.body.lines().rfind(|l| !l.is_empty()).unwrap_or("");
            assert!(
                last.contains("error: line 2: the record is longer than 65536 bytes"),
                "{last}"
            );
            // A header line without a newline: 422 before any row.
            let filler = chunked(&vec![b'P'; 1 << 20]);
            let body = (0..32).map(|_| (Duration::ZERO, filler.clone())).collect();
            let answer = exchange(&addr, csv_head(&addr, &token), body).await;
            assert_eq!(answer.status, 422, "{answer:?}");
            assert!(answer.body.contains("line 1"), "{}", answer.body);
        },
    )
    .await;

    step(
        "4. a long request id is replaced, a short plain one kept",
        async {
            // 4. Request ids: a long one is replaced by one of the service's, a short plain
            // one kept.
            let long = "x".repeat(15_000);
            for (given, kept) in [
                (long.as_str(), false),
                (&long[..129], false),
                ("id with spaces", false),
                (&long[..128], true),
            ] {
                let r = api
                    .http
                    .post(api.url("/predict"))
                    .bearer_auth(&api.predict)
                    .header("x-request-id", given)
                    .json(&passenger())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                let answered = r.headers()["x-request-id"].to_str().unwrap();
                assert_eq!(
                    answered == given,
                    kept,
                    "{given:.20}... answered {answered}"
                );
                if !kept {
                    assert_eq!(answered.len(), 36, "a UUID: {answered}");
                }
            }
            let r = api
                .post(
                    "/feedback",
                    &api.feedback,
                    &json!({"request_id": long, "survived": true}),
                )
                .await;
            assert_eq!(r.status(), 422);
            // Texts kept for ever (an alias's history) are bounded too.
            let r = api
                .send(
                    reqwest::Method::PUT,
                    "/models/aliases/production",
                    &api.models,
                    &json!({"version": "v1", "reason": "x".repeat(1001)}),
                )
                .await;
            assert_eq!(r.status(), 422);
        },
    )
    .await;

    step(
        "5. refusals before the body is read close the connection; answers after it keep it",
        async {
            // 5. Refusals before the body is read say `Connection: close`; an answer after the body
            // was read keeps the connection.
            let passenger = serde_json::to_string(&passenger()).unwrap();
            for (token, length, status) in [
                ("forged", passenger.len(), 401),
                (api.predict.as_str(), 50 << 20, 413),
            ] {
                let head = format!(
                    "POST /predict HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\n\
             content-type: application/json\r\ncontent-length: {length}\r\n\r\n"
                );
                let answer = exchange(&addr, head, Vec::new()).await;
                assert_eq!(answer.status, status, "{answer:?}");
                assert_eq!(answer.header("connection"), Some("close"), "{answer:?}");
            }
            let mut stream = TcpStream::connect(&addr).await.unwrap();
            for _ in 0..3 {
                let request = format!(
                    "POST /predict HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {}\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n\r\n{passenger}",
                    api.predict,
                    passenger.len()
                );
                stream.write_all(request.as_bytes()).await.unwrap();
                let answer = read_answer(&mut stream).await.expect("an answer");
                assert_eq!(answer.status, 200, "{answer:?}");
                assert_eq!(answer.header("connection"), None, "{answer:?}");
            }
        },
    )
    .await;

    assert_eq!(api.get("/health/live").await.status(), 200);
    assert_memory_bounded(&server);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_cannot_hold_the_service() {
    bounded(slow_and_idle_clients()).await;
}

async fn slow_and_idle_clients() {
    let dir = scratch();
    let server = Server::start(
        dir.path(),
        &[
            ("TITANIC__SERVER__REQUEST_TIMEOUT_SECS", "2"),
            ("TITANIC__SERVER__HEADER_READ_TIMEOUT_SECS", "2"),
            ("TITANIC__SERVER__KEEP_ALIVE_TIMEOUT_SECS", "3"),
            ("TITANIC__SERVER__STALL_TIMEOUT_SECS", "3"),
            ("TITANIC__SERVER__MAX_CONCURRENT_REQUESTS", "16"),
            ("TITANIC__SERVER__MAX_CONCURRENT_PER_SUBJECT", "4"),
            ("TITANIC__SERVER__MAX_CONNECTIONS", "300"),
        ],
    )
    .await;
    let api = Api::new(&server, dir.path());
    let addr = server.addr.clone();
    let mallory = token(dir.path(), "mallory", "predict");
    let alice = token(dir.path(), "alice", "predict");

    // Mallory: 12 uploads trickling a byte every 300 ms, 150 idle sockets and 30 sockets
    // trickling a request head.
    let mut uploads = Vec::new();
    for _ in 0..12 {
        let (addr, head) = (addr.clone(), csv_head(&addr, &mallory));
        uploads.push(tokio::spawn(async move {
            let mut body = vec![(Duration::ZERO, chunked(CSV_HEADER.as_bytes()))];
            body.extend((0..100).map(|_| (Duration::from_millis(300), chunked(b"9"))));
            exchange(&addr, head, body).await
        }));
    }
    let mut idle = Vec::new();
    for _ in 0..150 {
        idle.push(TcpStream::connect(&addr).await.unwrap());
    }
    let mut trickling = Vec::new();
    for _ in 0..30 {
        let addr = addr.clone();
        trickling.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(&addr).await.unwrap();
            let started = Instant::now();
            for b in b"POST /predict HTTP/1.1\r\nx-slow: "
                .iter()
                .cycle()
                .take(200)
            {
                if stream.write_all(&[*b]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            started.elapsed()
        }));
    }

    // Alice keeps being served meanwhile.
    let started = Instant::now();
    let mut served = 0;
    while started.elapsed() < Duration::from_secs(6) {
        let r = api.post("/predict", &alice, &passenger()).await;
        assert_eq!(r.status(), 200, "{:?}", r.text().await);
        served += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served > 20);

    // Mallory held at most her share; the rest were refused, and the trickles were cut off.
    let mut refused = 0;
    let mut cut = 0;
    for upload in uploads {
        let answer = upload.await.unwrap();
        match answer.status {
            429 => {
                refused += 1;
                assert!(answer.body.contains("too_many_in_flight"), "{answer:?}");
            }
            200 => {
                assert!(answer.body.contains("the upload sent"), "{answer:?}");
                cut += 1;
            }
            other => panic!("{other}: {answer:?}"),
        }
    }
    assert_eq!((refused, cut), (8, 4));
    for t in trickling {
        let held = t.await.unwrap();
        assert!(
            held < Duration::from_secs(10),
            "a trickled head held {held:?}"
        );
    }
    // The idle sockets were closed by the server.
    for mut socket in idle {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut byte)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    }
    let metrics = api.metrics().await;
    let closed = |reason: &str| {
        metric(
            &metrics,
            &format!("titanic_http_connections_closed_total{{reason=\"{reason}\"}}"),
        )
        .unwrap_or(0.0)
    };
    assert!(closed("idle_timeout") >= 150.0, "{metrics}");
    assert!(closed("header_timeout") >= 30.0, "{metrics}");
    assert!(metric(&metrics, "titanic_slow_uploads_total").unwrap_or(0.0) >= 4.0);
    assert!(metric(&metrics, "titanic_subject_shed_requests_total").unwrap_or(0.0) >= 8.0);

    // More connections than the cap: the extra are answered 503 and closed at once, and the
    // service goes on.
    let mut held = Vec::new();
    for _ in 0..320 {
        held.push(TcpStream::connect(&addr).await.unwrap());
    }
    let mut refusals = 0;
    for socket in held.iter_mut().rev().take(40) {
        let answer = tokio::time::timeout(Duration::from_secs(2), read_answer(socket)).await;
        if let Ok(Some(answer)) = answer {
            assert_eq!(answer.status, 503);
            assert!(answer.body.contains("overloaded"));
            refusals += 1;
        }
    }
    assert!(refusals >= 15, "{refusals} of the last 40 refused");
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = api.post("/predict", &alice, &passenger()).await;
    assert_eq!(r.status(), 200);
    let metrics = api.metrics().await;
    assert!(
        metric(
            &metrics,
            "titanic_http_connections_closed_total{reason=\"refused\"}"
        )
        .unwrap_or(0.0)
            >= 20.0
    );
    assert!(
        !server.log_text().contains("accept failed"),
        "{}",
        server.log_text()
    );
    assert_memory_bounded(&server);
    server.stop().await;
}
