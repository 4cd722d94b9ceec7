use std::time::Duration;

use serde_json::json;

use crate::helpers::{TestApp, error_of, passenger};

#[tokio::test]
async fn oversized_body_is_413() {
    let app = TestApp::spawn_with(&[("TITANIC__SERVER__BODY_LIMIT_BYTES", "2048")]).await;
    let instances: Vec<_> = (0..100).map(|_| passenger()).collect();
    let response = app
        .post("/predict/batch", &json!({ "instances": instances }))
        .await;
    assert_eq!(response.status(), 413);
    assert_eq!(error_of(response).await.0, "payload_too_large");
    // A body under the limit still works.
    assert_eq!(app.post("/predict", &passenger()).await.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn too_many_instances_is_422() {
    let app = TestApp::spawn_with(&[("TITANIC__SERVER__MAX_BATCH_SIZE", "3")]).await;
    let instances: Vec<_> = (0..4).map(|_| passenger()).collect();
    let response = app
        .post("/predict/batch", &json!({ "instances": instances }))
        .await;
    assert_eq!(response.status(), 422);
    let (_, err) = error_of(response).await;
    assert_eq!(err["error"]["details"]["fields"][0]["field"], "instances");
    app.stop().await;
}

#[tokio::test]
async fn rate_limit_is_per_subject_with_retry_after_and_recovers() {
    let app = TestApp::spawn_with(&[
        ("TITANIC__RATE_LIMIT__PER_SECOND", "2"),
        ("TITANIC__RATE_LIMIT__BURST", "3"),
    ])
    .await;
    let alice = app.keys.mint("alice", &["predict".to_owned()], 300);
    let bob = app.keys.mint("bob", &["predict".to_owned()], 300);
    let mut statuses = Vec::new();
    let mut remaining = Vec::new();
    for _ in 0..6 {
        let response = app.post_as("/predict", &passenger(), &alice).await;
        statuses.push(response.status().as_u16());
        let header =
            |name: &str| -> u64 { response.headers()[name].to_str().unwrap().parse().unwrap() };
        assert_eq!(header("ratelimit-limit"), 3);
        remaining.push(header("ratelimit-remaining"));
        assert!(
            header("ratelimit-reset") <= 2,
            "a bucket of 3 at 2/s is full in 2 s"
        );
    }
    assert_eq!(&statuses[..3], &[200, 200, 200], "{statuses:?}");
    assert_eq!(&statuses[3..], &[429, 429, 429], "{statuses:?}");
    assert_eq!(remaining, [2, 1, 0, 0, 0, 0]);

    let limited = app.post_as("/predict", &passenger(), &alice).await;
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["ratelimit-remaining"], "0");
    assert_eq!(limited.headers()["ratelimit-policy"], "2;w=1;burst=3");
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(retry_after, 1);
    assert_eq!(error_of(limited).await.0, "rate_limited");

    // Another subject has its own budget.
    assert_eq!(
        app.post_as("/predict", &passenger(), &bob).await.status(),
        200
    );

    // After the advertised wait, alice is served again.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    assert_eq!(
        app.post_as("/predict", &passenger(), &alice).await.status(),
        200
    );

    let metrics = app.metrics().await;
    assert!(
        metrics.contains("titanic_rate_limited_requests_total"),
        "{metrics}"
    );
    assert!(!metrics.contains("titanic_rate_limited_requests_total 0"));
    app.stop().await;
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors() {
    let app = TestApp::spawn().await;
    let response = app.get("/nope").await;
    assert_eq!(response.status(), 404);
    assert_eq!(error_of(response).await.0, "not_found");
    let response = app
        .client
        .post(app.url("/health/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET,HEAD");
    assert_eq!(error_of(response).await.0, "method_not_allowed");
    // A wrong method on a protected route is 405 before any token check.
    let response = app.get("/predict").await;
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "POST");
    assert_eq!(error_of(response).await.0, "method_not_allowed");
    app.stop().await;
}

#[tokio::test]
async fn a_request_over_the_time_limit_is_503_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn_with(&[("TITANIC__SERVER__REQUEST_TIMEOUT_SECS", "1")]).await;
    let token = app.token(&["predict"]);
    // A client that announces a body and then stalls holds the handler past the limit.
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /predict HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{{\"pclass\": 3"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = std::time::Instant::now();
    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            response.extend_from_slice(&buf[..n]);
            if response.windows(4).any(|w| w == b"\r\n\r\n") && response.ends_with(b"}}") {
                break;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no response within 10 s");
    assert!(started.elapsed() >= Duration::from_millis(900));
    let text = String::from_utf8_lossy(&response).to_lowercase();
    assert!(text.starts_with("http/1.1 503"), "{text}");
    assert!(text.contains("retry-after: 1"), "{text}");
    assert!(text.contains(r#""code":"timeout""#), "{text}");
    app.stop().await;
}

/// Found by schemathesis: bodies decoded into structs also accepted a JSON array of the field
/// values (`[]` for a struct whose fields all have defaults), so `POST /models/train` with
/// `[]` started a training job and `POST /models/aliases/production/rollback` with `[]` rolled
/// production back. Every JSON body must be an object.
#[tokio::test]
async fn every_json_body_must_be_an_object() {
    let app = TestApp::spawn().await;
    let token = app.token(&[
        "predict",
        "features:write",
        "models:write",
        "feedback:write",
    ]);
    let routes = [
        ("POST", "/predict"),
        ("POST", "/predict/batch"),
        ("POST", "/features/entities"),
        ("POST", "/features/views"),
        ("POST", "/features/services"),
        ("POST", "/features/online"),
        ("POST", "/features/push"),
        ("POST", "/features/materialize"),
        ("POST", "/models/train"),
        ("PUT", "/models/experiment"),
        ("PUT", "/models/aliases/production"),
        ("POST", "/models/aliases/production/rollback"),
        ("POST", "/feedback"),
        ("POST", "/v2/models/titanic/infer"),
        ("POST", "/v2/models/titanic/versions/v1/infer"),
    ];
    for (method, path) in routes {
        let response = app
            .client
            .request(method.parse().unwrap(), app.url(path))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body("[]")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 422, "{method} {path}");
        let body: serde_json::Value = response.json().await.unwrap();
        let message = if path.starts_with("/v2/") {
            body["error"].as_str().unwrap().to_owned()
        } else {
            body["error"]["message"].as_str().unwrap().to_owned()
        };
        assert!(
            message.contains("expected a JSON object"),
            "{method} {path}: {body}"
        );
    }
    // Nothing was started or moved.
    let models = app
        .get_as("/models", &[])
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(models["aliases"]["production"], "v1", "{models}");
    app.stop().await;
}

#[tokio::test]
async fn quotas_are_per_scope_class() {
    let app = TestApp::spawn_with(&[
        ("TITANIC__RATE_LIMIT__PER_SECOND", "1"),
        ("TITANIC__RATE_LIMIT__BURST", "50"),
        ("TITANIC__RATE_LIMIT__PREDICT__BURST", "2"),
    ])
    .await;
    let token = app.token(&["predict"]);
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(
            app.post_as("/predict", &passenger(), &token)
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses, [200, 200, 429]);
    // The same subject still has its read quota (the default burst of 50).
    let response = app.get_as("/models", &["predict"]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["ratelimit-limit"], "50");
    app.stop().await;
}

#[tokio::test]
async fn open_routes_are_limited_per_client_address_and_recover() {
    let app = TestApp::spawn_with(&[
        ("TITANIC__RATE_LIMIT__OPEN__PER_SECOND", "1"),
        ("TITANIC__RATE_LIMIT__OPEN__BURST", "3"),
    ])
    .await;
    let mut statuses = Vec::new();
    for path in ["/metrics", "/v2", "/monitoring", "/metrics", "/v2"] {
        statuses.push(app.get(path).await.status().as_u16());
    }
    assert_eq!(&statuses[..3], &[200, 200, 200], "{statuses:?}");
    assert_eq!(&statuses[3..], &[429, 429], "{statuses:?}");
    // The health probes are never limited: readiness reports the replica, not a quota.
    for path in [
        "/health/live",
        "/health/ready",
        "/v2/health/live",
        "/v2/health/ready",
    ] {
        assert_eq!(app.get(path).await.status(), 200, "{path}");
    }
    let limited = app.get("/metrics").await;
    assert_eq!(limited.status(), 429);
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(error_of(limited).await.0, "rate_limited");
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    let again = app.get("/metrics").await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["ratelimit-limit"], "3");
    app.stop().await;
}

#[tokio::test]
async fn the_client_address_can_come_from_a_trusted_proxy_header() {
    let app = TestApp::spawn_with(&[
        ("TITANIC__RATE_LIMIT__OPEN__PER_SECOND", "1"),
        ("TITANIC__RATE_LIMIT__OPEN__BURST", "1"),
        ("TITANIC__RATE_LIMIT__CLIENT_IP_HEADER", "x-forwarded-for"),
    ])
    .await;
    let from = |chain: &'static str| {
        app.client
            .get(app.url("/v2"))
            .header("x-forwarded-for", chain)
            .send()
    };
    // The last address (the one the proxy appended) is the client.
    assert_eq!(
        from("203.0.113.9, 198.51.100.1").await.unwrap().status(),
        200
    );
    assert_eq!(
        from("203.0.113.10, 198.51.100.1").await.unwrap().status(),
        429
    );
    assert_eq!(from("198.51.100.2").await.unwrap().status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn json_nested_too_deep_is_400() {
    let app = TestApp::spawn_with(&[("TITANIC__SERVER__MAX_JSON_DEPTH", "4")]).await;
    let deep = format!("{}1{}", "[".repeat(5), "]".repeat(5));
    let response = app
        .client
        .post(app.url("/predict/batch"))
        .bearer_auth(app.token(&["predict"]))
        .header("content-type", "application/json")
        .body(format!(r#"{{"instances": {deep}}}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let (code, body) = error_of(response).await;
    assert_eq!(code, "bad_request");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nesting"),
        "{body}"
    );
    // Three levels ({"instances":[{...}]}) are within the limit.
    let ok = app
        .post("/predict/batch", &json!({"instances": [passenger()]}))
        .await;
    assert_eq!(ok.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn headers_over_the_limit_are_431() {
    let app = TestApp::spawn_with(&[("TITANIC__SERVER__MAX_HEADER_BYTES", "4096")]).await;
    let response = app
        .client
        .get(app.url("/health/live"))
        .header("x-padding", "a".repeat(5000))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 431);
    let (code, body) = error_of(response).await;
    assert_eq!(code, "headers_too_large");
    assert_eq!(body["error"]["details"]["limit_bytes"], 4096);
    let response = app
        .client
        .get(app.url("/health/live"))
        .header("x-padding", "a".repeat(3000))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn over_the_concurrency_limit_is_503_at_once_and_recovers() {
    use tokio::io::AsyncWriteExt;
    let app = TestApp::spawn_with(&[("TITANIC__SERVER__MAX_CONCURRENT_REQUESTS", "2")]).await;
    let token = app.token(&["predict"]);
    // Two clients that announce a body and stall hold both permits.
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        let head = format!(
            "POST /predict HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{{\"pclass\": 3"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stalled.push(stream);
    }
    // The server has both (a bounded wait for the two handlers to start).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let shed = loop {
        let response = app.post("/predict", &passenger()).await;
        if response.status() == 503 {
            break response;
        }
        assert!(std::time::Instant::now() < deadline, "never shed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(shed.headers()["retry-after"], "1");
    assert_eq!(error_of(shed).await.0, "overloaded");
    // Open routes are not behind the limit: probes still answer.
    assert_eq!(app.get("/health/live").await.status(), 200);
    // The stalled clients go away; their permits come back.
    drop(stalled);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if app.post("/predict", &passenger()).await.status() == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let metrics = app.metrics().await;
    let shed_count = crate::helpers::metric(&metrics, "titanic_load_shed_requests_total").unwrap();
    assert!(shed_count >= 1.0, "{shed_count}");
    app.stop().await;
}

#[tokio::test]
async fn permits_come_back_after_every_kind_of_response() {
    let app = TestApp::spawn_with(&[("TITANIC__SERVER__MAX_CONCURRENT_REQUESTS", "1")]).await;
    // Sequential requests, each one finished before the next: never shed.
    for _ in 0..5 {
        assert_eq!(app.post("/predict", &passenger()).await.status(), 200);
    }
    // Error responses give their permit back too.
    assert_eq!(
        app.post("/predict", &json!({"pclass": 9})).await.status(),
        422
    );
    let csv =
        std::fs::read_to_string(crate::helpers::repo().join("data/titanic/test.csv")).unwrap();
    let stream = |body: String| {
        app.client
            .post(app.url("/predict/batch"))
            .bearer_auth(app.token(&["predict"]))
            .header("content-type", "text/csv")
            .body(body)
            .send()
    };
    // A streamed response read to its end ...
    let full = stream(csv.clone()).await.unwrap();
    assert_eq!(full.status(), 200);
    assert_eq!(full.text().await.unwrap().lines().count(), 419);
    assert_eq!(app.post("/predict", &passenger()).await.status(), 200);
    // ... and one dropped before its end both release the permit.
    let big: String = std::iter::once(csv.lines().next().unwrap().to_owned())
        .chain(csv.lines().skip(1).cycle().take(200_000).map(str::to_owned))
        .collect::<Vec<_>>()
        .join("\n");
    let dropped = stream(big).await.unwrap();
    assert_eq!(dropped.status(), 200);
    drop(dropped);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let status = app.post("/predict", &passenger()).await.status();
        if status == 200 {
            break;
        }
        assert_eq!(status, 503);
        assert!(
            std::time::Instant::now() < deadline,
            "the dropped stream kept its permit"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn json_content_types() {
    let app = TestApp::spawn().await;
    let body = passenger().to_string();
    for (content_type, status) in [
        ("application/json", 200),
        ("application/json; charset=utf-8", 200),
        ("Application/JSON", 200),
        ("application/vnd.titanic+json", 200),
        ("text/plain", 415),
        ("application/jsonx", 415),
        ("application/x-www-form-urlencoded", 415),
    ] {
        let response = app
            .client
            .post(app.url("/predict"))
            .bearer_auth(app.token(&["predict"]))
            .header("content-type", content_type)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{content_type}");
    }
    let response = app
        .client
        .post(app.url("/predict"))
        .bearer_auth(app.token(&["predict"]))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "no content type: read as JSON");
    app.stop().await;
}

#[tokio::test]
async fn a_stalled_csv_upload_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn_with(&[
        ("TITANIC__SERVER__REQUEST_TIMEOUT_SECS", "1"),
        ("TITANIC__SERVER__MAX_CONCURRENT_REQUESTS", "1"),
    ])
    .await;
    let token = app.token(&["predict"]);
    let csv =
        std::fs::read_to_string(crate::helpers::repo().join("data/titanic/test.csv")).unwrap();
    let start: String = csv.lines().take(3).map(|l| format!("{l}\n")).collect();
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /predict/batch HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: text/csv\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{start}\r\n",
        start.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // Then nothing more: the service ends the response with an error line.
    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), async {
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&response).contains("cut off") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => response.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "still waiting after 15 s");
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("892,0,") || text.contains("892,1,"), "{text}");
    assert!(
        text.contains("error:") && text.contains("cut off"),
        "{text}"
    );
    // Its concurrency slot is free again.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while app.post("/predict", &passenger()).await.status() != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the slot was not released"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.stop().await;
}
