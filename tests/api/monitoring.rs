//! Drift monitoring over HTTP: served passengers against the model's training data.

use serde_json::{Value, json};
use titanic::feature_store::passenger::Pclass;
use titanic::feature_store::{Passenger, ingest};

use crate::helpers::{TestApp, metric, repo};

fn train() -> Vec<(i64, Passenger)> {
    ingest::read_all(
        &repo().join("data/titanic/train.csv"),
        ingest::DEFAULT_MAX_RECORD_BYTES,
    )
    .unwrap()
    .into_iter()
    .map(|r| (r.passenger_id, r.passenger))
    .collect()
}

/// Scores the passengers through `POST /predict/batch` (inline features, no ids).
async fn serve(app: &TestApp, passengers: &[Passenger]) {
    let instances: Vec<Value> = passengers
        .iter()
        .map(|p| serde_json::to_value(p.to_raw(None)).unwrap())
        .collect();
    let response = app
        .post("/predict/batch", &json!({ "instances": instances }))
        .await;
    assert_eq!(response.status(), 200);
}

async fn drift(app: &TestApp) -> Value {
    let response = app.get_as("/monitoring/drift", &[]).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn drift_needs_a_token_and_starts_without_data() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/monitoring/drift").await.status(), 401);
    let report = drift(&app).await;
    assert_eq!(report["status"], "insufficient_data");
    assert_eq!(report["reference_version"], "v1");
    assert_eq!(report["window"]["observations"], 0);
    assert_eq!(report["dataset_drift"], false);
    assert_eq!(report["features"].as_array().unwrap().len(), 9);
    app.stop().await;
}

#[tokio::test]
async fn a_sample_of_the_training_population_is_not_flagged() {
    let app = TestApp::spawn().await;
    let sample: Vec<Passenger> = train().into_iter().step_by(3).map(|(_, p)| p).collect();
    serve(&app, &sample).await;
    let report = drift(&app).await;
    assert_eq!(report["status"], "ok", "{report}");
    assert_eq!(report["window"]["observations"], 297);
    assert_eq!(report["dataset_drift"], false, "{report}");
    assert!(report["drift_share"].as_f64().unwrap() < 0.5);
    for f in report["features"].as_array().unwrap() {
        assert!(f["p_value"].is_f64(), "{f}");
        assert!(f["psi"].as_f64().unwrap() < 0.1, "{f}");
    }
    let text = app.metrics().await;
    assert_eq!(
        metric(&text, "titanic_drift_window_observations"),
        Some(297.0)
    );
    assert_eq!(metric(&text, "titanic_dataset_drift"), Some(0.0));
    app.stop().await;
}

#[tokio::test]
async fn old_rich_first_class_passengers_are_flagged() {
    let app = TestApp::spawn().await;
    let shifted: Vec<Passenger> = train()
        .into_iter()
        .filter(|(_, p)| p.pclass == Pclass::First)
        .map(|(_, mut p)| {
            p.age = Some(p.age.unwrap_or(40.0) + 20.0);
            p.fare = p.fare.map(|f| (f * 3.0).min(1000.0));
            p
        })
        .collect();
    serve(&app, &shifted).await;
    let report = drift(&app).await;
    assert_eq!(report["dataset_drift"], true, "{report}");
    let drifted: Vec<&str> = report["features"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["drifted"] == true)
        .map(|f| f["feature"].as_str().unwrap())
        .collect();
    for f in ["pclass", "age", "fare"] {
        assert!(drifted.contains(&f), "{f} not in {drifted:?}");
    }
    let text = app.metrics().await;
    assert_eq!(metric(&text, "titanic_dataset_drift"), Some(1.0));
    assert_eq!(
        metric(&text, "titanic_feature_drifted{feature=\"age\"}"),
        Some(1.0)
    );
    app.stop().await;
}

/// Polls until `check` holds or five seconds pass.
async fn eventually<F, Fut>(mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if check().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

async fn pool(app: &TestApp) -> titanic::core::db::Pool {
    app.database().await
}

async fn send_feedback(app: &TestApp, body: Value) -> reqwest::Response {
    app.post_as("/feedback", &body, &app.token(&["feedback:write"]))
        .await
}

#[tokio::test]
async fn every_prediction_is_logged_with_its_request_id_and_subject() {
    let app = TestApp::spawn().await;
    let response = app.post("/predict", &crate::helpers::passenger()).await;
    assert_eq!(response.status(), 200);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.unwrap();
    let db = pool(&app).await;
    let logged = eventually(|| {
        let db = db.clone();
        let request_id = request_id.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM prediction_log WHERE request_id = $1",
            )
            .bind(request_id)
            .fetch_one(&db)
            .await
            .unwrap()
                == 1
        }
    })
    .await;
    assert!(logged, "the prediction was not logged");
    let (subject, features, probability, version, latency): (String, String, f64, String, i64) =
        sqlx::query_as(
            "SELECT subject, features, probability, model_version, latency_us \
             FROM prediction_log WHERE request_id = $1",
        )
        .bind(&request_id)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(subject, "tester");
    assert_eq!(probability, body["probability"].as_f64().unwrap());
    assert_eq!(version, "v1");
    assert!(latency >= 0);
    let features: Value = serde_json::from_str(&features).unwrap();
    assert_eq!(features["name"], "Braund, Mr. Owen Harris");
    let text = app.metrics().await;
    assert_eq!(
        metric(&text, "titanic_request_log_written_total"),
        Some(1.0)
    );
    app.stop().await;
}

#[tokio::test]
async fn a_full_log_queue_drops_and_counts_but_never_fails_a_request() {
    let app =
        TestApp::spawn_with(&[("TITANIC__MONITORING__REQUEST_LOG__QUEUE_CAPACITY", "1")]).await;
    let sample: Vec<Passenger> = train().into_iter().take(200).map(|(_, p)| p).collect();
    serve(&app, &sample).await;
    let counted = eventually(|| async {
        let text = app.metrics().await;
        let written = metric(&text, "titanic_request_log_written_total").unwrap_or(0.0);
        let dropped = metric(
            &text,
            "titanic_request_log_dropped_total{reason=\"queue_full\"}",
        )
        .unwrap_or(0.0);
        dropped > 0.0 && written + dropped == 200.0
    })
    .await;
    assert!(counted, "{}", app.metrics().await);
    app.stop().await;
}

#[tokio::test]
async fn the_request_log_keeps_its_row_budget_and_counts_what_it_evicts() {
    let app = TestApp::spawn_with(&[("TITANIC__MONITORING__REQUEST_LOG__MAX_ROWS", "50")]).await;
    let sample: Vec<Passenger> = train().into_iter().take(200).map(|(_, p)| p).collect();
    serve(&app, &sample).await;
    let counted = eventually(|| async {
        let text = app.metrics().await;
        metric(&text, "titanic_request_log_written_total") == Some(200.0)
            && metric(&text, "titanic_request_log_evicted_total") == Some(150.0)
    })
    .await;
    assert!(counted, "{}", app.metrics().await);
    // The newest 50: the last passengers of the batch.
    let positions: Vec<i64> = sqlx::query_scalar("SELECT position FROM prediction_log ORDER BY id")
        .fetch_all(&app.database().await)
        .await
        .unwrap();
    assert_eq!(positions, (150..200).collect::<Vec<i64>>());
    app.stop().await;
}

#[tokio::test]
async fn feedback_gives_live_performance_by_model_version() {
    let app = TestApp::spawn().await;
    let passengers = train();
    // Two single predictions by request id, and one batch labelled by passenger id.
    let mut ids = Vec::new();
    let mut truths = Vec::new();
    for (id, p) in passengers.iter().take(2) {
        let response = app
            .post(
                "/predict",
                &serde_json::to_value(p.to_raw(Some(*id))).unwrap(),
            )
            .await;
        ids.push(
            response.headers()["x-request-id"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
        truths.push(*id);
    }
    let labels: std::collections::HashMap<i64, bool> = ingest::read_all(
        &repo().join("data/titanic/train.csv"),
        ingest::DEFAULT_MAX_RECORD_BYTES,
    )
    .unwrap()
    .into_iter()
    .map(|r| (r.passenger_id, r.survived.unwrap()))
    .collect();
    let batch: Vec<Value> = [3i64, 4, 5]
        .iter()
        .map(|id| json!({ "passenger_id": id }))
        .collect();
    let response = app
        .post("/predict/batch", &json!({ "instances": batch }))
        .await;
    let batch_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();

    // Scope, missing fields, ambiguity, unknown ids.
    let no_scope = app
        .post(
            "/feedback",
            &json!({"request_id": ids[0], "survived": true}),
        )
        .await;
    assert_eq!(no_scope.status(), 403);
    let r = send_feedback(&app, json!({"survived": true})).await;
    assert_eq!(r.status(), 422);
    let r = send_feedback(&app, json!({"request_id": ids[0], "survived": 2})).await;
    assert_eq!(r.status(), 422);
    let r = send_feedback(&app, json!({"request_id": ids[0], "survived": "yes"})).await;
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("true, false, 1 or 0"));
    let r = send_feedback(&app, json!({"request_id": batch_id, "survived": true})).await;
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("position"));
    let r = send_feedback(&app, json!({"request_id": "nope", "survived": true})).await;
    assert_eq!(r.status(), 404);

    for (request_id, id) in ids.iter().zip(&truths) {
        let r = send_feedback(
            &app,
            json!({"request_id": request_id, "survived": labels[id]}),
        )
        .await;
        assert_eq!(r.status(), 200);
        let recorded: Value = r.json().await.unwrap();
        assert_eq!(recorded["model_version"], "v1");
    }
    for id in [3i64, 4, 5] {
        let r = send_feedback(
            &app,
            json!({"request_id": batch_id, "passenger_id": id, "survived": u8::from(labels[&id])}),
        )
        .await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
    let again = send_feedback(&app, json!({"request_id": ids[0], "survived": true})).await;
    assert_eq!(again.status(), 409);

    let report = app.get_json("/monitoring/performance", &[]).await;
    let v1 = &report["versions"][0];
    assert_eq!(v1["model_version"], "v1");
    assert_eq!(v1["labelled"], 5);
    assert_eq!(v1["predictions"], 5);
    let accuracy = v1["accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&accuracy));
    assert!(v1["estimated_accuracy"].as_f64().unwrap() >= 0.5);
    let text = app.metrics().await;
    assert_eq!(
        metric(
            &text,
            "titanic_live_performance{metric=\"accuracy\",model_version=\"v1\"}"
        ),
        Some(accuracy)
    );
    assert_eq!(
        metric(&text, "titanic_feedback_total{outcome=\"recorded\"}"),
        Some(5.0)
    );
    // No request id, a bad label twice, and the ambiguous batch.
    assert_eq!(
        metric(&text, "titanic_feedback_total{outcome=\"invalid\"}"),
        Some(4.0)
    );
    app.stop().await;
}

#[tokio::test]
async fn system_metrics_cover_the_process_runtime_and_dependencies() {
    let app = TestApp::spawn().await;
    let r = app.post("/predict", &json!({"passenger_id": 1})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(app.get("/health/ready").await.status(), 200);
    let text = app.metrics().await;
    for name in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "titanic_tokio_workers",
        "titanic_http_requests_in_flight",
    ] {
        assert!(metric(&text, name).is_some(), "{name} missing");
    }
    // The stored passenger was read from the online store (in-process here) and the
    // readiness probe pinged the database.
    let count = |labels: &str| {
        metric(
            &text,
            &format!("titanic_dependency_request_duration_seconds_count{{{labels}}}"),
        )
    };
    assert!(count("dependency=\"in_process\",operation=\"read\"").unwrap() >= 1.0);
    let ping = format!("dependency=\"{}\",operation=\"ping\"", app.backend());
    assert!(count(&ping).unwrap() >= 1.0);
    app.stop().await;
}
