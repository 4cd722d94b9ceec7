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
    for _ in 0..6 {
        statuses.push(
            app.post_as("/predict", &passenger(), &alice)
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(&statuses[..3], &[200, 200, 200], "{statuses:?}");
    assert!(statuses[3..].contains(&429), "{statuses:?}");

    let limited = app.post_as("/predict", &passenger(), &alice).await;
    assert_eq!(limited.status(), 429);
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=1).contains(&retry_after), "{retry_after}");
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

    let metrics = app.get("/metrics").await.text().await.unwrap();
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
