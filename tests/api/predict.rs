use serde_json::{Value, json};

use crate::helpers::{TestApp, error_of, passenger};

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// probability = sigmoid(intercept + sum(contributions)), and logit is that sum.
fn assert_consistent(p: &Value) {
    let contributions = p["contributions"].as_object().expect("contributions");
    assert_eq!(contributions.len(), titanic::feature_store::N_FEATURES);
    let sum: f64 = contributions.values().map(|v| v.as_f64().unwrap()).sum();
    let logit = p["intercept"].as_f64().unwrap() + sum;
    assert!((logit - p["logit"].as_f64().unwrap()).abs() < 1e-9, "{p}");
    let probability = p["probability"].as_f64().unwrap();
    assert!((sigmoid(logit) - probability).abs() < 1e-9, "{p}");
    assert_eq!(p["survived"].as_bool().unwrap(), probability >= 0.5);
    assert_eq!(p["model_version"], "v1");
}

#[tokio::test]
async fn predicts_from_features_with_contributions() {
    let app = TestApp::spawn().await;
    let response = app.post("/predict", &passenger()).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_consistent(&body);
    // A third-class adult man: the model must say he is unlikely to survive.
    assert!(body["probability"].as_f64().unwrap() < 0.3, "{body}");
    assert!(body["contributions"]["sex_male"].as_f64().unwrap() < 0.0);

    let woman = json!({"pclass": 1, "sex": "female", "age": 38, "sibsp": 1, "parch": 0});
    let body: Value = app.post("/predict", &woman).await.json().await.unwrap();
    assert_consistent(&body);
    assert!(body["probability"].as_f64().unwrap() > 0.8, "{body}");
    app.stop().await;
}

#[tokio::test]
async fn predicts_a_stored_passenger_by_id() {
    let app = TestApp::spawn().await;
    // Passenger 892 comes from the bundled test.csv.
    let response = app.post("/predict", &json!({"passenger_id": 892})).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["passenger_id"], 892);
    assert_consistent(&body);

    let missing = app
        .post("/predict", &json!({"passenger_id": 999_999}))
        .await;
    assert_eq!(missing.status(), 404);
    let (code, _) = error_of(missing).await;
    assert_eq!(code, "not_found");
    app.stop().await;
}

#[tokio::test]
async fn invalid_values_are_422_naming_each_field() {
    let app = TestApp::spawn().await;
    let bad =
        json!({"pclass": 4, "sex": "robot", "age": -3, "sibsp": 0, "parch": 99, "embarked": "X"});
    let response = app.post("/predict", &bad).await;
    assert_eq!(response.status(), 422);
    let (code, body) = error_of(response).await;
    assert_eq!(code, "validation_failed");
    let fields: Vec<&str> = body["error"]["details"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["pclass", "sex", "age", "parch", "embarked"]);

    // Wrong type and unknown field: named too.
    for (body, field) in [
        (
            json!({"pclass": "first", "sex": "male", "sibsp": 0, "parch": 0}),
            "pclass",
        ),
        (json!({"pclas": 3}), "pclas"),
    ] {
        let response = app.post("/predict", &body).await;
        assert_eq!(response.status(), 422);
        let (_, err) = error_of(response).await;
        let named = err["error"]["details"]["fields"][0]["field"]
            .as_str()
            .unwrap();
        assert_eq!(named, field, "{err}");
    }

    // Positional arrays are not passengers, at the top level or in a batch.
    let response = app.post("/predict", &json!([892])).await;
    assert_eq!(response.status(), 422);
    let (_, err) = error_of(response).await;
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("JSON object"),
        "{err}"
    );
    let response = app
        .post("/predict/batch", &json!({"instances": [[3, "male"]]}))
        .await;
    assert_eq!(response.status(), 422);
    let (_, err) = error_of(response).await;
    assert_eq!(
        err["error"]["details"]["fields"][0]["field"], "instances[0]",
        "{err}"
    );

    // Missing required fields are listed.
    let response = app.post("/predict", &json!({"age": 30})).await;
    let (_, err) = error_of(response).await;
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("pclass: is required")
    );
    app.stop().await;
}

#[tokio::test]
async fn malformed_json_is_400_and_wrong_content_type_415() {
    let app = TestApp::spawn().await;
    let token = app.token(&["predict"]);
    let response = app
        .client
        .post(app.url("/predict"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(r#"{"pclass": 3,"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(error_of(response).await.0, "bad_request");

    let response = app
        .client
        .post(app.url("/predict"))
        .bearer_auth(&token)
        .header("content-type", "text/plain")
        .body(passenger().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    assert_eq!(error_of(response).await.0, "unsupported_media_type");
    app.stop().await;
}

#[tokio::test]
async fn batch_keeps_order_and_matches_single_predictions() {
    let app = TestApp::spawn().await;
    let instances = vec![
        json!({"passenger_id": 3}),
        passenger(),
        json!({"pclass": 1, "sex": "female", "sibsp": 0, "parch": 0}),
        json!({"passenger_id": 1}),
        json!({"passenger_id": 892}),
    ];
    let response = app
        .post("/predict/batch", &json!({ "instances": instances }))
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["model_version"], "v1");
    let predictions = body["predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), instances.len());
    for (instance, batch) in instances.iter().zip(predictions) {
        assert_consistent(batch);
        let single: Value = app.post("/predict", instance).await.json().await.unwrap();
        assert_eq!(single["probability"], batch["probability"], "{instance}");
        assert_eq!(single["passenger_id"], batch["passenger_id"]);
    }
    assert_eq!(predictions[0]["passenger_id"], 3);
    assert_eq!(predictions[3]["passenger_id"], 1);
    assert_eq!(predictions[4]["passenger_id"], 892);
    app.stop().await;
}

#[tokio::test]
async fn batch_names_the_bad_instances() {
    let app = TestApp::spawn().await;
    let body = json!({ "instances": [
        passenger(),
        {"pclass": 0, "sex": "male", "sibsp": 0, "parch": 0},
        passenger(),
        {"passenger_id": 123_456_789},
    ]});
    let response = app.post("/predict/batch", &body).await;
    assert_eq!(response.status(), 422);
    let (_, err) = error_of(response).await;
    assert_eq!(
        err["error"]["details"]["fields"][0]["field"],
        "instances[1].pclass"
    );

    let response = app
        .post(
            "/predict/batch",
            &json!({"instances": [passenger(), {"passenger_id": 123_456_789}]}),
        )
        .await;
    assert_eq!(response.status(), 422);
    let (_, err) = error_of(response).await;
    assert_eq!(
        err["error"]["details"]["fields"][0]["field"],
        "instances[1].passenger_id"
    );

    let response = app.post("/predict/batch", &json!({"instance": []})).await;
    assert_eq!(response.status(), 422);
    app.stop().await;
}

#[tokio::test]
async fn batch_streams_csv_of_any_size_in_order() {
    let app = TestApp::spawn().await;
    // 30,000 rows (about 2 MB): twice the JSON body limit, so only streaming can take it.
    let test_csv =
        std::fs::read_to_string(crate::helpers::repo().join("data/titanic/test.csv")).unwrap();
    let mut lines = test_csv.lines();
    let header = lines.next().unwrap();
    let rows: Vec<&str> = lines.collect();
    let mut body = format!("{header}\n");
    for i in 0..30_000 {
        let row = rows[i % rows.len()];
        let rest = &row[row.find(',').unwrap()..];
        body.push_str(&format!("{}{rest}\n", 100_000 + i));
    }
    assert!(body.len() > 2 * 1024 * 1024 - 200_000);
    let response = app
        .client
        .post(app.url("/predict/batch"))
        .bearer_auth(app.token(&["predict"]))
        .header("content-type", "text/csv")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/csv; charset=utf-8"
    );
    assert_eq!(response.headers()["x-model-version"], "v1");
    let text = response.text().await.unwrap();
    let out: Vec<&str> = text.lines().collect();
    assert_eq!(out[0], "PassengerId,Survived,Probability");
    assert_eq!(out.len(), 30_001);
    for (i, line) in out[1..].iter().enumerate() {
        assert!(line.starts_with(&format!("{},", 100_000 + i)), "{line}");
    }
    // The first row is test.csv's passenger 892: the same answer as /predict.
    let single = app
        .post_json("/predict", &json!({"passenger_id": 892}))
        .await;
    let p: f64 = out[1].rsplit(',').next().unwrap().parse().unwrap();
    assert!((p - single["probability"].as_f64().unwrap()).abs() < 1e-6);

    // A bad header is refused before anything is sent; a bad row ends the stream with an
    // error line naming it.
    let bad_header = app
        .client
        .post(app.url("/predict/batch"))
        .bearer_auth(app.token(&["predict"]))
        .header("content-type", "text/csv")
        .body("PassengerId,Pclass\n1,3\n")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_header.status(), 422);
    let bad_row = format!(
        "{header}\n{}\n893,3,\"X, Mr. Y\",male,old,0,0,1,7,,S\n",
        rows[0]
    );
    let response = app
        .client
        .post(app.url("/predict/batch"))
        .bearer_auth(app.token(&["predict"]))
        .header("content-type", "text/csv")
        .body(bad_row)
        .send()
        .await
        .unwrap();
    let text = response.text().await.unwrap();
    let last = text.lines().last().unwrap();
    assert!(last.starts_with("error: line 3: column Age"), "{text}");
    assert_eq!(text.lines().count(), 3);
    app.stop().await;
}
