//! Drift monitoring over HTTP: served passengers against the model's training data.

use serde_json::{Value, json};
use titanic::feature_store::passenger::Pclass;
use titanic::feature_store::{Passenger, ingest};

use crate::helpers::{TestApp, metric, repo};

fn train() -> Vec<(i64, Passenger)> {
    ingest::read_all(&repo().join("data/titanic/train.csv"))
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

async fn metrics(app: &TestApp) -> String {
    app.get("/metrics").await.text().await.unwrap()
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
    let text = metrics(&app).await;
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
    let text = metrics(&app).await;
    assert_eq!(metric(&text, "titanic_dataset_drift"), Some(1.0));
    assert_eq!(
        metric(&text, "titanic_feature_drifted{feature=\"age\"}"),
        Some(1.0)
    );
    app.stop().await;
}
