//! Feast's feature-server routes, called exactly as Feast's own clients call them (Feast at
//! feast-dev/feast f0bc070): the bodies, headers and response parsing below are quoted from
//! `sdk/python/feast/infra/online_stores/remote.py` and from the push example in
//! `docs/reference/feature-servers/python-feature-server.md`.

use serde_json::{Value, json};

use crate::helpers::TestApp;

/// The headers `requests` sends on `session.post(url, json=body)` from an
/// `AuthenticatedRequestsSession` (`feast/permissions/client/http_auth_requests_wrapper.py`:
/// `self.headers.update({"Authorization": f"Bearer {auth_token}"})`).
/// The `Content-Type` Feast's clients send.
const JSON: Option<&str> = Some("application/json");

fn as_requests(
    app: &TestApp,
    path: &str,
    token: &str,
    content_type: Option<&str>,
    body: &Value,
) -> reqwest::RequestBuilder {
    let mut request = app
        .client
        .post(app.url(path))
        .header("User-Agent", "python-requests/2.32.3")
        .header("Accept-Encoding", "gzip, deflate")
        .header("Accept", "*/*")
        .header("Connection", "keep-alive")
        .header("Authorization", format!("Bearer {token}"))
        .body(serde_json::to_vec(body).unwrap());
    if let Some(content_type) = content_type {
        request = request.header("Content-Type", content_type);
    }
    request
}

/// `POST /get-online-features` as [`as_requests`] sends it, answered 200; the answer.
async fn online_features(
    app: &TestApp,
    token: &str,
    content_type: Option<&str>,
    body: &Value,
) -> Value {
    let response = as_requests(app, "/get-online-features", token, content_type, body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Feast's error body: a JSON string holding `{"module", "class", "message"}`, as
/// `FeastError.from_error_detail(response.json())` (`feast/errors.py`) reads it.
/// Sends a request as [`as_requests`] does, and reads the Feast error it must be answered with.
async fn feast_refusal(
    app: &TestApp,
    path: &str,
    token: &str,
    content_type: Option<&str>,
    body: &Value,
) -> (u16, String, String) {
    let response = as_requests(app, path, token, content_type, body)
        .send()
        .await
        .unwrap();
    feast_error(response).await
}

async fn feast_error(response: reqwest::Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    let detail: Value = serde_json::from_str(body.as_str().expect("a JSON string")).unwrap();
    assert_eq!(detail["module"], "feast.errors", "{detail}");
    (
        status,
        detail["class"].as_str().unwrap().to_owned(),
        detail["message"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn get_online_features_answers_feasts_remote_online_store() {
    let app = TestApp::spawn().await;
    let reader = app.token(&["predict"]);

    // `RemoteOnlineStore.get_online_features` with a FeatureService: `req_body` is entities,
    // full_feature_names, include_feature_view_version_metadata, then feature_service.
    let body = json!({
        "entities": {"passenger_id": [892, 999_999]},
        "full_feature_names": false,
        "include_feature_view_version_metadata": false,
        "feature_service": "titanic_survival",
    });
    let answer = online_features(&app, &reader, JSON, &body).await;
    // `_build_online_response_from_json`: metadata.feature_names, then per result its values
    // and statuses (mapped through `_STATUS_MAP`).
    let names = answer["metadata"]["feature_names"].as_array().unwrap();
    assert_eq!(names[0], "passenger_id");
    assert_eq!(answer["results"].as_array().unwrap().len(), names.len());
    let age = names.iter().position(|n| n == "age").unwrap();
    assert_eq!(answer["results"][age]["values"], json!([34.5, null]));
    assert_eq!(
        answer["results"][age]["statuses"],
        json!(["PRESENT", "NOT_FOUND"])
    );

    // `RemoteOnlineStore.online_read` (`_construct_online_read_api_json_request`): features as
    // `f"{table.name}:{requested_feature}"` and one join key; no other field.
    let body = json!({
        "features": ["passenger_demographics:age", "passenger_demographics:fare"],
        "entities": {"passenger_id": [1, 892]},
    });
    let answer = online_features(&app, &reader, JSON, &body).await;
    // `online_read` looks each requested feature up by index in metadata.feature_names and
    // reads results[index].statuses[row] == "PRESENT" and results[index].values[row];
    // `_get_event_ts` parses results[1].event_timestamps[0] with `datetime.fromisoformat`.
    assert_eq!(
        answer["metadata"]["feature_names"],
        json!(["passenger_id", "age", "fare"])
    );
    assert_eq!(answer["results"][1]["values"], json!([22.0, 34.5]));
    assert_eq!(
        answer["results"][2]["statuses"],
        json!(["PRESENT", "PRESENT"])
    );
    let event_time = answer["results"][1]["event_timestamps"][0]
        .as_str()
        .unwrap();
    assert!(
        event_time.ends_with('Z') && event_time.contains('T'),
        "{event_time}"
    );

    // The documented Python example posts `data=json.dumps(...)`: no Content-Type at all.
    let response = as_requests(&app, "/get-online-features", &reader, None, &body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // Errors are Feast's: a 404 `FeastObjectNotFoundException`, a 401 without a token.
    let unknown = json!({"features": ["nope:age"], "entities": {"passenger_id": [1]}});
    let (status, class, message) =
        feast_refusal(&app, "/get-online-features", &reader, JSON, &unknown).await;
    assert_eq!(
        (status, class.as_str()),
        (404, "FeastObjectNotFoundException")
    );
    assert!(message.contains("nope"), "{message}");
    let response = app
        .client
        .post(app.url("/get-online-features"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(response.headers().contains_key("www-authenticate"));
    let (status, class, _) = feast_error(response).await;
    assert_eq!((status, class.as_str()), (401, "FeastPermissionError"));
    let (status, _, message) = feast_refusal(
        &app,
        "/get-online-features",
        &reader,
        JSON,
        &json!({"features": ["passenger_demographics:age"], "entities": {}}),
    )
    .await;
    assert_eq!(status, 422);
    assert!(message.contains("entities"), "{message}");
    app.stop().await;
}

/// The push example of Feast's python-feature-server.md, as its Python variant sends it
/// (`requests.post(".../push", data=json.dumps(push_data))`: no Content-Type).
fn push_body(to: &str, passenger: i64, age: f64) -> Value {
    json!({
        "push_source_name": "passenger_demographics",
        "df": {
            "passenger_id": [passenger],
            "event_timestamp": ["2026-05-13 10:59:42+00:00"],
            "created": ["2026-05-13 10:59:42"],
            "pclass": [1], "sex": ["female"], "age": [age], "sibsp": [0], "parch": [0],
            "fare": [80.0], "embarked": ["S"], "name": ["Doe, Mrs. Jane"]
        },
        "to": to,
    })
}

async fn stored_rows(app: &TestApp, passenger: i64) -> i64 {
    let pool = app.database().await;
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM feature_rows WHERE entity_key = '{passenger}'"
    )))
    .fetch_one(&pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn push_takes_feasts_data_frames_all_or_nothing() {
    let app = TestApp::spawn().await;
    let writer = app.token(&["features:write"]);
    let reader = app.token(&["predict"]);

    for (to, passenger) in [
        ("online", 6000),
        ("online_and_offline", 6001),
        ("offline", 6002),
    ] {
        let response = as_requests(
            &app,
            "/push",
            &writer,
            None,
            &push_body(to, passenger, 30.0),
        )
        .send()
        .await
        .unwrap();
        assert_eq!(response.status(), 200, "{to}");
        assert!(
            response.bytes().await.unwrap().is_empty(),
            "Feast answers no body"
        );
        assert_eq!(stored_rows(&app, passenger).await, 1, "{to}");
    }
    let read = json!({"features": ["passenger_demographics:age"],
                      "entities": {"passenger_id": [6000, 6001]}});
    let answer = online_features(&app, &reader, None, &read).await;
    assert_eq!(answer["results"][1]["values"], json!([30.0, 30.0]));
    assert_eq!(
        answer["results"][1]["event_timestamps"][0],
        "2026-05-13T10:59:42Z"
    );

    // One invalid row: nothing is stored, and the message names the column and row.
    let mut two = push_body("online", 6003, 30.0);
    two["df"]["passenger_id"] = json!([6003, 6004]);
    for column in [
        "event_timestamp",
        "created",
        "pclass",
        "sex",
        "sibsp",
        "parch",
        "fare",
        "embarked",
        "name",
    ] {
        let first = two["df"][column][0].clone();
        two["df"][column] = json!([first.clone(), first]);
    }
    two["df"]["age"] = json!([30.0, -4.0]);
    let (status, class, message) = feast_refusal(&app, "/push", &writer, None, &two).await;
    assert_eq!((status, class.as_str()), (422, "FeastError"));
    assert!(message.contains("rows[1].age"), "{message}");
    assert_eq!(stored_rows(&app, 6003).await, 0);

    // Feast's own errors: an unknown push source, an unknown `to`, columns of different
    // lengths, no scope.
    let mut unknown = push_body("online", 6005, 30.0);
    unknown["push_source_name"] = json!("driver_stats_push_source");
    let (status, class, _) = feast_refusal(&app, "/push", &writer, None, &unknown).await;
    assert_eq!(
        (status, class.as_str()),
        (422, "PushSourceNotFoundException")
    );
    let (status, _, message) = feast_refusal(
        &app,
        "/push",
        &writer,
        None,
        &push_body("somewhere", 6005, 30.0),
    )
    .await;
    assert_eq!(status, 422);
    assert!(message.contains("to"), "{message}");
    let mut ragged = push_body("online", 6005, 30.0);
    ragged["df"]["age"] = json!([30.0, 31.0]);
    let (status, _, message) = feast_refusal(&app, "/push", &writer, None, &ragged).await;
    assert_eq!(status, 422);
    assert!(message.contains("df.age"), "{message}");
    let (status, class, _) = feast_refusal(
        &app,
        "/push",
        &reader,
        None,
        &push_body("online", 6005, 30.0),
    )
    .await;
    assert_eq!((status, class.as_str()), (403, "FeastPermissionError"));
    assert_eq!(stored_rows(&app, 6005).await, 0);
    app.stop().await;
}
