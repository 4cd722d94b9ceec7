use serde_json::Value;

use crate::helpers::TestApp;

#[tokio::test]
async fn live_and_ready() {
    let app = TestApp::spawn().await;
    let live = app.get("/health/live").await;
    assert_eq!(live.status(), 200);
    let ready = app.get("/health/ready").await;
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["components"]["model"]["status"], "up");
    assert_eq!(body["components"]["model"]["version"], "v1");
    assert_eq!(body["components"]["database"]["status"], "up");
    assert_eq!(
        body["components"]["model"]["feature_service"],
        "titanic_survival@1"
    );
    assert_eq!(body["components"]["online_store"]["kind"], "in_process");
    assert_eq!(body["components"]["online_store"]["status"], "up");
    app.stop().await;
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_predictions_by_version() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.post("/predict", &crate::helpers::passenger())
            .await
            .status(),
        200
    );
    assert_eq!(app.get("/no/such/route").await.status(), 404);
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    assert!(
        text.contains(
            r#"titanic_http_requests_total{method="POST",route="/predict",status="200"} 1"#
        ),
        "{text}"
    );
    // Unmatched paths never become labels.
    assert!(text.contains(r#"route="unmatched",status="404""#), "{text}");
    assert!(!text.contains("/no/such/route"));
    assert!(text.contains(r#"titanic_predictions_total{model_version="v1",outcome="died"} 1"#));
    assert!(text.contains("titanic_http_request_duration_seconds_bucket"));
    assert!(text.contains(r#"titanic_model_info{version="v1"} 1"#));
    app.stop().await;
}

#[tokio::test]
async fn request_id_is_set_or_propagated() {
    let app = TestApp::spawn().await;
    let generated = app.get("/health/live").await;
    let id = generated.headers()["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let given = app
        .client
        .get(app.url("/health/live"))
        .header("x-request-id", "my-trace-42")
        .send()
        .await
        .unwrap();
    assert_eq!(given.headers()["x-request-id"], "my-trace-42");
    app.stop().await;
}

#[tokio::test]
async fn readiness_turns_503_while_draining() {
    let app = TestApp::spawn_with(&[("TITANIC__SERVER__SHUTDOWN_DRAIN_SECS", "2")]).await;
    let client = app.client.clone();
    let url = app.url("/health/ready");
    let stopping = tokio::spawn(app.stop());
    // Poll until the drain starts (the listener stays open for 2 s).
    let mut saw_503 = false;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        if let Ok(r) = client.get(&url).send().await
            && r.status() == 503
        {
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["status"], "shutting_down");
            saw_503 = true;
            break;
        }
    }
    assert!(saw_503, "readiness never reported draining");
    stopping.await.unwrap();
}
