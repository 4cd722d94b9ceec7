//! The model registry over HTTP: training jobs, aliases with history, promotion and rollback
//! that swap the served model atomically, broken models refused, and promotions made by
//! another process picked up by the server.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use titanic::ml::registry::{AliasAction, AliasChange, ModelRegistry};

use crate::helpers::{TestApp, error_of, metric, passenger, step};

const ADMIN: &[&str] = &["models:write", "predict"];

async fn train_job(app: &TestApp, promote: bool) -> String {
    let response = app
        .post_as(
            "/models/train",
            &json!({ "promote": promote }),
            &app.token(ADMIN),
        )
        .await;
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "queued");
    assert_eq!(
        location,
        format!("/models/jobs/{}", body["job_id"].as_str().unwrap())
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let job = app.get_json(&location, &["predict"]).await;
        match job["status"].as_str().unwrap() {
            "succeeded" => return job["version"].as_str().unwrap().to_owned(),
            "failed" => panic!("training failed: {job}"),
            _ => {}
        }
        assert!(Instant::now() < deadline, "job did not finish: {job}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn serving(app: &TestApp) -> String {
    let body = app.post_json("/predict", &passenger()).await;
    body["model_version"].as_str().unwrap().to_owned()
}

async fn move_alias(app: &TestApp, alias: &str, version: &str) -> reqwest::Response {
    let body = json!({"version": version, "reason": "test"});
    let path = format!("/models/aliases/{alias}");
    app.send(Method::PUT, &path, ADMIN, Some(&body)).await
}

async fn rollback(app: &TestApp, alias: &str, body: Value) -> reqwest::Response {
    let path = format!("/models/aliases/{alias}/rollback");
    app.send(Method::POST, &path, ADMIN, Some(&body)).await
}

#[tokio::test]
async fn training_registers_a_version_without_promoting_it() {
    let app = TestApp::spawn().await;
    let list = app.get_json("/models", &["predict"]).await;
    assert_eq!(list["serving"], "v1");
    assert_eq!(list["aliases"], json!({"production": "v1"}));
    let first = &list["versions"][0];
    assert_eq!(first["trained_by"], "bootstrap");
    assert_eq!(
        (&first["description"], &first["tags"]),
        (&json!(""), &json!({}))
    );
    assert_eq!(first["updated_by"], Value::Null);

    let future = app
        .post_as(
            "/models/train",
            &json!({"as_of": "2999-01-01T00:00:00Z"}),
            &app.token(ADMIN),
        )
        .await;
    assert_eq!(future.status(), 422, "refused before a job is made");
    let v2 = train_job(&app, false).await;
    assert_eq!(v2, "v2");
    assert_eq!(serving(&app).await, "v1", "training alone does not promote");
    let list = app.get_json("/models", &["predict"]).await;
    assert_eq!(
        list["versions"][0]["trained_by"], "tester",
        "the job's requester"
    );
    let detail = app.get_json("/models/v2", &["predict"]).await;
    assert_eq!(
        detail["artifact"]["feature_service"]["name"],
        "titanic_survival"
    );
    assert!(
        detail["artifact"]["metrics"]["accuracy"]["mean"]
            .as_f64()
            .unwrap()
            > 0.8
    );
    app.stop().await;
}

#[tokio::test]
async fn promotion_and_rollback_swap_the_served_model_and_are_recorded() {
    let app = TestApp::spawn().await;
    assert_eq!(train_job(&app, false).await, "v2");

    let staged = move_alias(&app, "staging", "v2").await;
    assert_eq!(staged.status(), 200);
    assert_eq!(serving(&app).await, "v1", "only production is served");

    let promoted: Value = move_alias(&app, "production", "v2")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(promoted["previous_version"], "v1");
    assert_eq!(promoted["serving"], "v2");
    assert_eq!(promoted["moved"], true);
    assert_eq!(serving(&app).await, "v2", "swapped at once");
    // Promoting it again changes nothing and adds nothing to the history, so the rollback
    // below still goes back to v1.
    let again = move_alias(&app, "production", "v2").await;
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.unwrap();
    assert_eq!(
        (
            &again["moved"],
            &again["previous_version"],
            &again["serving"]
        ),
        (&json!(false), &json!("v2"), &json!("v2"))
    );

    let rolled = rollback(&app, "production", json!({"reason": "regression"})).await;
    assert_eq!(rolled.status(), 200);
    let rolled: Value = rolled.json().await.unwrap();
    assert_eq!(
        (rolled["version"].clone(), rolled["serving"].clone()),
        (json!("v1"), json!("v1"))
    );
    assert_eq!(serving(&app).await, "v1");
    let nothing = rollback(&app, "production", json!({})).await;
    assert_eq!(nothing.status(), 409);
    assert_eq!(error_of(nothing).await.0, "conflict");

    let history = app
        .get_json("/models/aliases/production/history", &["predict"])
        .await;
    let events: Vec<(String, String, String)> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["version"].as_str().unwrap().to_owned(),
                e["actor"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            ("promote".into(), "v1".into(), "bootstrap".into()),
            ("promote".into(), "v2".into(), "tester".into()),
            ("rollback".into(), "v1".into(), "tester".into()),
        ]
    );
    assert_eq!(history["events"][2]["reason"], "regression");
    assert_eq!(history["events"][2]["previous_version"], "v2");
    app.stop().await;
}

#[tokio::test]
async fn alias_changes_refuse_unknown_versions_and_aliases_bad_names_and_missing_scopes() {
    let app = TestApp::spawn().await;
    assert_eq!(rollback(&app, "nightly", json!({})).await.status(), 404);
    assert_eq!(move_alias(&app, "production", "v99").await.status(), 404);
    assert_eq!(move_alias(&app, "Bad Alias!", "v1").await.status(), 422);
    let denied = app
        .send(
            Method::PUT,
            "/models/aliases/production",
            &["predict"],
            Some(&json!({"version": "v2"})),
        )
        .await;
    assert_eq!(denied.status(), 403);
    app.stop().await;
}

async fn db(app: &TestApp) -> titanic::core::db::Pool {
    app.database().await
}

#[tokio::test]
async fn broken_models_are_refused_and_serving_continues() {
    let app = TestApp::spawn().await;
    let pool = db(&app).await;
    let good: String =
        sqlx::query_scalar("SELECT artifact FROM model_versions WHERE version = 'v1'")
            .fetch_one(&pool)
            .await
            .unwrap();
    let mut wrong_count: Value = serde_json::from_str(&good).unwrap();
    wrong_count["coefficients"].as_array_mut().unwrap().pop();
    let mut wrong_service: Value = serde_json::from_str(&good).unwrap();
    wrong_service["feature_service"]["version"] = json!(42);
    for (version, artifact) in [
        ("v7", wrong_count.to_string()),
        ("v8", wrong_service.to_string()),
        ("v9", "{not json".to_owned()),
    ] {
        sqlx::query(
            "INSERT INTO model_versions (version, artifact, metrics, data_hash, created_at)
             VALUES ($1, $2, '{}', 'sha256:x', '2026-01-01T00:00:00Z')",
        )
        .bind(version)
        .bind(artifact)
        .execute(&pool)
        .await
        .unwrap();
        let refused = move_alias(&app, "production", version).await;
        assert_eq!(refused.status(), 422, "{version}");
        let (_, err) = error_of(refused).await;
        assert_eq!(
            err["error"]["details"]["fields"][0]["field"], "version",
            "{err}"
        );
    }
    let list = app.get_json("/models", &["predict"]).await;
    assert_eq!(
        list["aliases"]["production"], "v1",
        "the alias did not move"
    );
    assert_eq!(serving(&app).await, "v1");

    // Another process points production at a broken version behind the server's back: the
    // server refuses it, says so in its metrics, and keeps serving v1.
    let registry = ModelRegistry::new(pool.clone());
    let change = AliasChange {
        action: AliasAction::Promote,
        actor: "elsewhere",
        reason: "",
    };
    registry
        .set_alias("production", "v9", &change)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = app.metrics().await;
        if metrics.contains(r#"titanic_model_reloads_total{outcome="refused"} 1"#) {
            break;
        }
        assert!(Instant::now() < deadline, "no refusal recorded: {metrics}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(serving(&app).await, "v1");
    app.stop().await;
}

#[tokio::test]
async fn promotions_by_another_process_are_picked_up() {
    let app = TestApp::spawn().await;
    let v2 = train_job(&app, false).await;
    let registry = ModelRegistry::new(db(&app).await);
    let change = AliasChange {
        action: AliasAction::Promote,
        actor: "cli:ops",
        reason: "",
    };
    registry
        .set_alias("production", &v2, &change)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while serving(&app).await != v2 {
        assert!(Instant::now() < deadline, "promotion not picked up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"titanic_model_info{version="v2"} 1"#),
        "{metrics}"
    );
    assert!(!metrics.contains(r#"titanic_model_info{version="v1"}"#));
    assert!(metrics.contains(r#"titanic_model_reloads_total{outcome="loaded"} 1"#));
    app.stop().await;
}

#[tokio::test]
async fn hot_swap_under_load_never_fails_or_mixes_versions() {
    let app = TestApp::spawn_with(&[
        ("TITANIC__RATE_LIMIT__PER_SECOND", "1000000"),
        ("TITANIC__RATE_LIMIT__BURST", "1000000"),
    ])
    .await;
    train_job(&app, false).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..6 {
        let (client, url, token, stop) = (
            app.client.clone(),
            app.url(if w % 2 == 0 {
                "/predict"
            } else {
                "/predict/batch"
            }),
            app.token(&["predict"]),
            stop.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut seen = std::collections::BTreeMap::<String, u32>::new();
            let batch =
                json!({"instances": [passenger(), {"passenger_id": 1}, {"passenger_id": 892}]});
            let body = if w % 2 == 0 { passenger() } else { batch };
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let response = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
                let body: Value = response.json().await.unwrap();
                let version = body["model_version"].as_str().unwrap().to_owned();
                if let Some(predictions) = body["predictions"].as_array() {
                    for p in predictions {
                        assert_eq!(p["model_version"], body["model_version"], "mixed batch");
                    }
                }
                *seen.entry(version).or_default() += 1;
            }
            seen
        }));
    }
    for round in 0..6 {
        let version = if round % 2 == 0 { "v2" } else { "v1" };
        let moved = move_alias(&app, "production", version).await;
        let status = moved.status();
        assert_eq!(status, 200, "{}", moved.text().await.unwrap());
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut versions = std::collections::BTreeSet::new();
    for w in workers {
        for (version, n) in w.await.unwrap() {
            assert!(n > 0);
            versions.insert(version);
        }
    }
    assert_eq!(
        versions.into_iter().collect::<Vec<_>>(),
        ["v1", "v2"],
        "every response named one of the two versions, and both were served"
    );
    let metrics = app.metrics().await;
    assert_eq!(
        metric(&metrics, "titanic_rate_limited_requests_total"),
        Some(0.0)
    );
    app.stop().await;
}

async fn put_experiment(app: &TestApp, body: Value) -> reqwest::Response {
    app.send(Method::PUT, "/models/experiment", ADMIN, Some(&body))
        .await
}

async fn end_experiment(app: &TestApp) -> reqwest::Response {
    app.send(Method::DELETE, "/models/experiment", ADMIN, None)
        .await
}

/// `POST /predict` with `x-model-version: version`.
async fn predict_pinned(app: &TestApp, version: &str) -> reqwest::Response {
    app.client
        .post(app.url("/predict"))
        .bearer_auth(app.token(&["predict"]))
        .header("x-model-version", version)
        .json(&passenger())
        .send()
        .await
        .unwrap()
}

async fn versions_answering(app: &TestApp, n: usize) -> std::collections::BTreeMap<String, usize> {
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..n {
        *seen.entry(serving(app).await).or_default() += 1;
    }
    seen
}

#[tokio::test]
async fn experiments_canary_shadow_and_pinned_versions() {
    let app = TestApp::spawn_with(&[
        ("TITANIC__RATE_LIMIT__PER_SECOND", "1000000"),
        ("TITANIC__RATE_LIMIT__BURST", "1000000"),
    ])
    .await;
    let v2 = train_job(&app, false).await;

    step(
        "a header pins any registered version for one request",
        async {
            let pinned = predict_pinned(&app, &v2).await;
            let body: Value = pinned.json().await.unwrap();
            assert_eq!(body["model_version"], "v2");
            let unknown = predict_pinned(&app, "v404").await;
            assert_eq!(unknown.status(), 404);
        },
    )
    .await;

    step("a canary's candidate answers its share", async {
        let bad = put_experiment(&app, json!({"mode": "canary", "version": v2, "share": 0})).await;
        assert_eq!(bad.status(), 422);
        let started =
            put_experiment(&app, json!({"mode": "canary", "version": v2, "share": 0.5})).await;
        assert_eq!(started.status(), 200);
        let seen = versions_answering(&app, 200).await;
        assert!(
            seen["v1"] > 40 && seen["v2"] > 40,
            "about half each: {seen:?}"
        );
        put_experiment(&app, json!({"mode": "canary", "version": v2, "share": 1.0})).await;
        assert_eq!(
            versions_answering(&app, 20)
                .await
                .keys()
                .collect::<Vec<_>>(),
            ["v2"]
        );
    })
    .await;

    step(
        "a shadow's candidate is only compared; production answers everything",
        async {
            let shadow = put_experiment(&app, json!({"mode": "shadow", "version": v2})).await;
            assert_eq!(shadow.status(), 200);
            assert_eq!(
                versions_answering(&app, 30)
                    .await
                    .keys()
                    .collect::<Vec<_>>(),
                ["v1"]
            );
            let metrics = app.metrics().await;
            let compared: f64 = metrics
                .lines()
                .filter(|l| l.starts_with("titanic_shadow_predictions_total{agreement="))
                .filter(|l| l.contains(r#"candidate="v2""#))
                .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
                .sum();
            assert_eq!(compared, 30.0, "{metrics}");
            assert!(
                metrics.contains(r#"titanic_shadow_probability_delta_count{candidate="v2"} 30"#)
            );
            let state = app.get_json("/models/experiment", &["predict"]).await;
            assert_eq!(state["experiment"]["mode"], "shadow");
            assert_eq!(state["experiment"]["updated_by"], "tester");
        },
    )
    .await;

    step(
        "ending the experiment serves production alone, once",
        async {
            let ended = end_experiment(&app).await;
            assert_eq!(ended.status(), 204);
            assert_eq!(
                versions_answering(&app, 10)
                    .await
                    .keys()
                    .collect::<Vec<_>>(),
                ["v1"]
            );
            let again = end_experiment(&app).await;
            assert_eq!(again.status(), 404);
        },
    )
    .await;
    app.stop().await;
}

async fn patch(app: &TestApp, version: &str, body: Value, scopes: &[&str]) -> reqwest::Response {
    let path = format!("/models/{version}");
    app.send(Method::PATCH, &path, scopes, Some(&body)).await
}

async fn fields_of(response: reqwest::Response) -> Vec<String> {
    assert_eq!(response.status(), 422);
    let (code, body) = error_of(response).await;
    assert_eq!(code, "validation_failed", "{body}");
    body["error"]["details"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn versions_take_a_description_and_tags_recording_who_and_when() {
    let app = TestApp::spawn().await;
    step(
        "a version's record names who trained it and the build",
        async {
            let detail = app.get_json("/models/v1", &["predict"]).await;
            assert_eq!(detail["trained_by"], "bootstrap");
            assert_eq!(
                (&detail["description"], &detail["tags"]),
                (&json!(""), &json!({}))
            );
            let training = &detail["artifact"]["training"];
            assert_eq!(training["trained_by"], "bootstrap");
            assert_eq!(
                training["git_commit"],
                json!(titanic::core::build::GIT_COMMIT)
            );
            assert_eq!(
                training["crate_versions"]["linfa-logistic"],
                titanic::core::build::LINFA_LOGISTIC_VERSION
            );
        },
    )
    .await;

    step("editing needs models:write", async {
        let anonymous = app
            .client
            .patch(app.url("/models/v1"))
            .json(&json!({"description": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(anonymous.status(), 401);
        let denied = patch(&app, "v1", json!({"description": "x"}), &["predict"]).await;
        assert_eq!(denied.status(), 403);
    })
    .await;

    step(
        "an edit sets the description and tags, recording who and when",
        async {
            let edited = patch(
        &app,
        "v1",
        json!({"description": "first model", "tags": {"stage": "candidate", "owner": "ml"}}),
        ADMIN,
    )
    .await;
            assert_eq!(edited.status(), 200);
            let edited: Value = edited.json().await.unwrap();
            assert_eq!(edited["version"], "v1");
            assert_eq!(edited["description"], "first model");
            assert_eq!(edited["tags"], json!({"owner": "ml", "stage": "candidate"}));
            assert_eq!(edited["updated_by"], "tester");
            assert!(edited["updated_at"].as_str().unwrap().ends_with('Z'));
            assert_eq!(edited["aliases"], json!(["production"]));
            assert!(
                edited.get("artifact").is_none(),
                "the record, not the artifact"
            );
        },
    )
    .await;

    step(
        "tags merge (null removes one); an absent description stays, a null one is cleared",
        async {
            let merged: Value = patch(
                &app,
                "v1",
                json!({"tags": {"owner": null, "stage": "production", "never-set": null}}),
                ADMIN,
            )
            .await
            .json()
            .await
            .unwrap();
            assert_eq!(merged["tags"], json!({"stage": "production"}));
            assert_eq!(merged["description"], "first model");
            let cleared: Value = patch(&app, "v1", json!({"description": null}), ADMIN)
                .await
                .json()
                .await
                .unwrap();
            assert_eq!(cleared["description"], "");
            let detail = app.get_json("/models/v1", &["predict"]).await;
            assert_eq!(detail["tags"], json!({"stage": "production"}));
            assert_eq!(
                detail["artifact"]["format_version"], 4,
                "the artifact is untouched"
            );
            let list = app.get_json("/models", &["predict"]).await;
            assert_eq!(list["versions"][0]["tags"], json!({"stage": "production"}));
        },
    )
    .await;

    step(
        "refusals (no such version, bad fields each named, unknown fields, too many tags) \
         change nothing",
        async {
            assert_eq!(
                patch(&app, "v99", json!({"description": "x"}), ADMIN)
                    .await
                    .status(),
                404
            );
            let bad = patch(
                &app,
                "v1",
                json!({
                    "description": "x".repeat(2001),
                    "tags": {"bad name": "v", "ok": "y".repeat(257), "fine": "z"}
                }),
                ADMIN,
            )
            .await;
            assert_eq!(fields_of(bad).await, ["description", "tags", "tags.ok"]);
            let unknown = patch(&app, "v1", json!({"owner": "me"}), ADMIN).await;
            assert_eq!(fields_of(unknown).await, ["owner"]);
            let many: serde_json::Map<String, Value> =
                (0..33).map(|i| (format!("t{i}"), json!("x"))).collect();
            let too_many = patch(&app, "v1", json!({ "tags": many }), ADMIN).await;
            assert_eq!(fields_of(too_many).await, ["tags"]);
            let full: serde_json::Map<String, Value> =
                (0..31).map(|i| (format!("t{i}"), json!("x"))).collect();
            assert_eq!(
                patch(&app, "v1", json!({ "tags": full }), ADMIN)
                    .await
                    .status(),
                200
            );
            let over = patch(
                &app,
                "v1",
                json!({"tags": {"one-more": "x"}, "description": "no"}),
                ADMIN,
            )
            .await;
            assert_eq!(fields_of(over).await, ["tags"]);
            let kept = app.get_json("/models/v1", &["predict"]).await;
            assert_eq!(kept["tags"].as_object().unwrap().len(), 32);
            assert_eq!(kept["description"], "", "a refused edit changes nothing");
        },
    )
    .await;
    app.stop().await;
}
