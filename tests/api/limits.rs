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
