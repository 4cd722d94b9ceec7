//! Feature management over HTTP: the versioned registry, pushing rows, online reads in
//! Feast's shape with freshness, and materialization.

use serde_json::{Value, json};
use titanic::core::time::{micros_to_rfc3339, now_micros};

use crate::helpers::{TestApp, error_of};

const WRITE: &[&str] = &["features:write"];

fn names(items: &Value) -> Vec<String> {
    items["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| format!("{}@{}", i["name"].as_str().unwrap(), i["version"]))
        .collect()
}

#[tokio::test]
async fn registry_lists_and_reads_builtin_definitions() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.get("/features/views").await.status(),
        401,
        "token needed"
    );
    let any = &["predict"];
    let entities = app.get_json("/features/entities", any).await;
    assert_eq!(names(&entities), ["passenger@1"]);
    assert_eq!(entities["items"][0]["spec"]["join_key"], "passenger_id");
    let views = app.get_json("/features/views", any).await;
    assert_eq!(
        names(&views),
        ["passenger_demographics@1", "passenger_survival@1"]
    );
    let view = app
        .get_json("/features/views/passenger_demographics/versions/1", any)
        .await;
    let features = view["spec"]["features"].as_array().unwrap();
    assert_eq!(features.len(), 10);
    assert_eq!(features[0]["name"], "pclass");
    assert_eq!(
        features[0]["validation"],
        json!({"range": {"min": 1.0, "max": 3.0}})
    );
    assert_eq!(view["created_by"], "system");
    let services = app
        .get_json("/features/services/titanic_survival", any)
        .await;
    assert_eq!(names(&services), ["titanic_survival@1"]);
    let missing = app.get_as("/features/views/nope", any).await;
    assert_eq!(missing.status(), 404);
    assert_eq!(error_of(missing).await.0, "not_found");
    app.stop().await;
}

fn demographics_v2(ttl_secs: u64) -> Value {
    json!({
        "name": "passenger_demographics",
        "entity": "passenger",
        "source": "push",
        "ttl_secs": ttl_secs,
        "features": [
            {"name": "pclass", "value_type": "int64", "required": true,
             "validation": {"range": {"min": 1, "max": 3}}},
            {"name": "sex", "value_type": "string", "required": true,
             "validation": {"one_of": ["male", "female"]}},
            {"name": "age", "value_type": "float64", "validation": {"range": {"min": 0, "max": 120}}},
            {"name": "sibsp", "value_type": "int64", "required": true},
            {"name": "parch", "value_type": "int64", "required": true}
        ]
    })
}

#[tokio::test]
async fn changed_definitions_become_new_immutable_versions() {
    let app = TestApp::spawn().await;
    let token = app.token(WRITE);
    let response = app
        .post_as("/features/views", &demographics_v2(60), &token)
        .await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        (body["version"].clone(), body["created"].clone()),
        (json!(2), json!(true))
    );
    assert_eq!(body["created_by"], "tester");
    // The same definition again: no new version.
    let again = app
        .post_as("/features/views", &demographics_v2(60), &token)
        .await;
    assert_eq!(again.status(), 200);
    let body: Value = again.json().await.unwrap();
    assert_eq!(
        (body["version"].clone(), body["created"].clone()),
        (json!(2), json!(false))
    );
    // Old versions stay readable and unchanged.
    let all = app
        .get_json("/features/views/passenger_demographics", &["predict"])
        .await;
    assert_eq!(
        names(&all),
        ["passenger_demographics@1", "passenger_demographics@2"]
    );
    assert_eq!(
        all["items"][0]["spec"]["features"]
            .as_array()
            .unwrap()
            .len(),
        10
    );
    assert_eq!(all["items"][1]["spec"]["ttl_secs"], 60);

    // A service over the new version.
    let service = json!({"name": "slim", "views": [
        {"view": "passenger_demographics", "version": 2, "features": ["pclass", "sex"]}]});
    assert_eq!(
        app.post_as("/features/services", &service, &token)
            .await
            .status(),
        201
    );

    // Writes need the scope; bad definitions name their fields.
    let denied = app
        .post_as(
            "/features/views",
            &demographics_v2(5),
            &app.token(&["predict"]),
        )
        .await;
    assert_eq!(denied.status(), 403);
    let bad = json!({"name": "Bad Name", "entity": "ghost", "source": "x", "features": [
        {"name": "n", "value_type": "string", "validation": {"range": {"min": 0, "max": 1}}}]});
    let response = app.post_as("/features/views", &bad, &token).await;
    assert_eq!(response.status(), 422);
    let (_, err) = error_of(response).await;
    let fields: Vec<&str> = err["error"]["details"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["name", "features[0].validation"], "{err}");
    let unknown_feature = json!({"name": "s2", "views": [
        {"view": "passenger_demographics", "version": 1, "features": ["height"]}]});
    let response = app
        .post_as("/features/services", &unknown_feature, &token)
        .await;
    assert_eq!(response.status(), 422);
    app.stop().await;
}

#[tokio::test]
async fn pushed_rows_are_validated_per_row_durable_and_served() {
    let app = TestApp::spawn().await;
    let token = app.token(WRITE);
    let push = json!({"view": "passenger_demographics", "rows": [
        {"entity": 5000, "values": {"pclass": 1, "sex": "female", "age": 30, "sibsp": 0, "parch": 0,
                                    "fare": 80.0, "name": "Doe, Mrs. Jane"}},
        {"entity": 5001, "values": {"pclass": 9, "sex": "female", "sibsp": 0, "parch": 0}},
        {"entity": "abc", "values": {"pclass": 1, "sex": "male", "sibsp": 0, "parch": 0, "height": 2}},
        {"entity": 5002, "event_time": "2999-01-01T00:00:00Z",
         "values": {"pclass": 1, "sex": "male", "sibsp": 0, "parch": 0}}
    ]});
    let response = app.post_as("/features/push", &push, &token).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        (body["accepted"].clone(), body["written"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(body["online"]["status"], "written");
    let rejected = body["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 3);
    assert_eq!(rejected[0]["index"], 1);
    assert_eq!(rejected[0]["errors"][0]["field"], "pclass");
    let fields: Vec<&str> = rejected[1]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["height", "entity"]);
    assert_eq!(rejected[2]["errors"][0]["field"], "event_time");

    // Durable: the acknowledged row is in the database.
    let pool = app.database().await;
    let stored: String =
        sqlx::query_scalar("SELECT feature_values FROM feature_rows WHERE entity_key = '5000'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(stored.contains("Doe, Mrs. Jane"), "{stored}");

    // Served at once by id.
    let response = app.post("/predict", &json!({"passenger_id": 5000})).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert!(body["probability"].as_f64().unwrap() > 0.7, "{body}");
    assert_eq!(body["features"]["statuses"]["fare"], "PRESENT");

    // Nothing valid: 422 naming rows and fields. Pushing needs the scope.
    let none_valid = json!({"view": "passenger_demographics", "rows": [
        {"entity": 1, "values": {"sex": "x"}}]});
    let response = app.post_as("/features/push", &none_valid, &token).await;
    assert_eq!(response.status(), 422);
    let (_, err) = error_of(response).await;
    assert_eq!(err["error"]["details"]["fields"][0]["field"], "rows[0].sex");
    let denied = app
        .post_as("/features/push", &push, &app.token(&["predict"]))
        .await;
    assert_eq!(denied.status(), 403);
    app.stop().await;
}

#[tokio::test]
async fn online_features_follow_feast_and_never_serve_stale_values() {
    let app = TestApp::spawn().await;
    let reader = app.token(&["predict"]);
    let request = json!({"feature_service": "titanic_survival",
                         "entities": {"passenger_id": [892, 999_999]}});
    let response = app.post_as("/features/online", &request, &reader).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let names = body["metadata"]["feature_names"].as_array().unwrap();
    assert_eq!(names[0], "passenger_id");
    assert_eq!(names.len(), 11);
    assert_eq!(body["results"][0]["values"], json!([892, 999_999]));
    let age = names.iter().position(|n| n == "age").unwrap();
    let column = &body["results"][age];
    assert_eq!(column["values"][0], 34.5);
    assert_eq!(column["statuses"], json!(["PRESENT", "NOT_FOUND"]));
    assert_eq!(column["values"][1], Value::Null);
    assert_eq!(column["event_timestamps"][1], "1970-01-01T00:00:00Z");

    // A view version whose values expire after 1 s: an old value is withheld.
    let token = app.token(WRITE);
    assert_eq!(
        app.post_as("/features/views", &demographics_v2(1), &token)
            .await
            .status(),
        201
    );
    let old = micros_to_rfc3339(now_micros() - 10_000_000);
    let rows = json!({"view": "passenger_demographics", "version": 2, "rows": [
        {"entity": 7000, "event_time": old, "values": {"pclass": 2, "sex": "male", "age": 40, "sibsp": 0, "parch": 0}},
        {"entity": 7001, "values": {"pclass": 2, "sex": "male", "age": 41, "sibsp": 0, "parch": 0}}
    ]});
    assert_eq!(
        app.post_as("/features/push", &rows, &token).await.status(),
        200
    );
    let request = json!({"features": ["passenger_demographics@2:age"],
                         "entities": {"passenger_id": [7000, 7001]},
                         "full_feature_names": true});
    let body: Value = app
        .post_as("/features/online", &request, &reader)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        body["metadata"]["feature_names"],
        json!(["passenger_id", "passenger_demographics__age"])
    );
    assert_eq!(
        body["results"][1]["statuses"],
        json!(["OUTSIDE_MAX_AGE", "PRESENT"])
    );
    assert_eq!(body["results"][1]["values"], json!([null, 41]));
    assert_eq!(body["results"][1]["event_timestamps"][0], old);

    // Bad requests name the problem.
    let wrong_key = json!({"feature_service": "titanic_survival", "entities": {"ticket": ["x"]}});
    assert_eq!(
        app.post_as("/features/online", &wrong_key, &reader)
            .await
            .status(),
        422
    );
    let both = json!({"feature_service": "titanic_survival", "features": ["passenger_demographics:age"],
                      "entities": {"passenger_id": [1]}});
    assert_eq!(
        app.post_as("/features/online", &both, &reader)
            .await
            .status(),
        422
    );
    let unknown =
        json!({"features": ["passenger_demographics:height"], "entities": {"passenger_id": [1]}});
    assert_eq!(
        app.post_as("/features/online", &unknown, &reader)
            .await
            .status(),
        422
    );
    app.stop().await;
}

#[tokio::test]
async fn materialization_is_idempotent_and_reports_counts() {
    let app = TestApp::spawn().await;
    let token = app.token(WRITE);
    let full: Value = app
        .post_as("/features/materialize", &json!({"mode": "full"}), &token)
        .await
        .json()
        .await
        .unwrap();
    let report = &full["reports"][0];
    assert_eq!(report["view"], "passenger_demographics");
    assert_eq!(report["entities"], 891 + 418);
    assert_eq!(report["chunks"], 3, "500 entities per chunk");
    let again: Value = app
        .post_as("/features/materialize", &json!({}), &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["reports"][0]["mode"], "incremental");
    assert_eq!(again["reports"][0]["entities"], 0);
    assert_eq!(again["reports"][0]["watermark"], report["watermark"]);
    let denied = app
        .post_as(
            "/features/materialize",
            &json!({}),
            &app.token(&["predict"]),
        )
        .await;
    assert_eq!(denied.status(), 403);
    app.stop().await;
}

#[tokio::test]
async fn historical_features_are_as_of_each_row_and_as_known_then() {
    let app = TestApp::spawn().await;
    let token = app.token(WRITE);
    let hour = 3_600_000_000;
    let now = now_micros();
    let push = |age: i64, at: i64| {
        json!({"view": "passenger_demographics", "rows": [
            {"entity": 6000, "event_time": micros_to_rfc3339(at),
             "values": {"pclass": 2, "sex": "male", "age": age, "sibsp": 0, "parch": 0}}
        ]})
    };
    let first = app
        .post_as("/features/push", &push(30, now - 3 * hour), &token)
        .await;
    assert_eq!(first.status(), 200);
    let known = micros_to_rfc3339(now_micros());
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let second = app
        .post_as("/features/push", &push(31, now - hour), &token)
        .await;
    assert_eq!(second.status(), 200);

    let times = [now - 4 * hour, now - 2 * hour, now].map(micros_to_rfc3339);
    let ask = |created_as_of: Option<&str>| {
        let mut request = json!({
            "features": ["passenger_demographics:age"],
            "entities": {"passenger_id": [6000, 6000, 6000]},
            "event_timestamps": times,
        });
        if let Some(t) = created_as_of {
            request["created_as_of"] = json!(t);
        }
        request
    };
    let read = app
        .post_as("/features/historical", &ask(None), &token)
        .await;
    assert_eq!(read.status(), 200);
    let body: Value = read.json().await.unwrap();
    assert_eq!(
        body["metadata"]["feature_names"],
        json!(["passenger_id", "age"])
    );
    assert_eq!(body["results"][1]["values"], json!([null, 30, 31]));
    assert_eq!(body["results"][1]["statuses"][0], "NOT_FOUND");
    assert_eq!(body["results"][1]["statuses"][2], "PRESENT");
    // As known before the second push: the same call, the same answer, every time.
    for _ in 0..2 {
        let then: Value = app
            .post_as("/features/historical", &ask(Some(&known)), &token)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(then["results"][1]["values"], json!([null, 30, 30]));
    }

    // Bad input names the field.
    let mut short = ask(None);
    short["event_timestamps"] = json!([times[0]]);
    let response = app.post_as("/features/historical", &short, &token).await;
    assert_eq!(response.status(), 422);
    let (code, body) = error_of(response).await;
    assert_eq!(code, "validation_failed");
    assert_eq!(
        body["error"]["details"]["fields"][0]["field"],
        "event_timestamps"
    );
    let mut bad = ask(None);
    bad["event_timestamps"][1] = json!("yesterday");
    let response = app.post_as("/features/historical", &bad, &token).await;
    assert_eq!(response.status(), 422);
    let (_, body) = error_of(response).await;
    assert_eq!(
        body["error"]["details"]["fields"][0]["field"],
        "event_timestamps[1]"
    );
}
