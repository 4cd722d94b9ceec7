//! The Redis online store: materialized on start, read in one round trip for many entities,
//! cached, with per-feature freshness; and its outage: fallback to the offline store, a
//! degraded but ready service, and recovery by itself.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{OwnRedis, TestApp, delete_keys, metric, shared_redis, unique_prefix};

#[tokio::test]
async fn redis_serves_stored_passengers_with_freshness_and_cache() {
    let Some(url) = shared_redis().await else {
        return;
    };
    let prefix = unique_prefix();
    let app = TestApp::spawn_with(&[
        ("TITANIC__REDIS__URL", url.as_str()),
        ("TITANIC__REDIS__KEY_PREFIX", prefix.as_str()),
    ])
    .await;
    let ready = app.public_json("/health/ready").await;
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["components"]["online_store"]["kind"], "redis");

    // Materialized on start under the versioned key layout, without expiry (TTL 0 view).
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let key = format!("{prefix}fv:passenger_demographics:1:892");
    let stored: String = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let stored: Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(stored["v"]["name"], "Kelly, Mr. James");
    assert!(stored["t"].as_i64().unwrap() > 0);
    let ttl: i64 = redis::cmd("TTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(ttl, -1);

    let response = app.post("/predict", &json!({"passenger_id": 892})).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["features"]["source"], "online_store", "{body}");
    assert_eq!(body["features"]["statuses"]["pclass"], "PRESENT");
    assert_eq!(
        body["features"]["statuses"]["cabin"], "NULL_VALUE",
        "no cabin recorded"
    );
    assert!(
        body["features"]["event_time"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );

    // A second read of the same passenger comes from the in-process cache.
    let body = app
        .post_json("/predict", &json!({"passenger_id": 892}))
        .await;
    assert_eq!(body["features"]["source"], "cache", "{body}");
    let metrics = app.metrics().await;
    assert!(
        metric(&metrics, "titanic_feature_cache_hits_total").unwrap() >= 1.0,
        "{metrics}"
    );
    assert_eq!(metric(&metrics, "titanic_online_store_up"), Some(1.0));

    // A push invalidates the cached copy: the next read sees the new values at once.
    let push = json!({"view": "passenger_demographics", "rows": [{"entity": 892, "values":
        {"pclass": 1, "sex": "female", "age": 30, "sibsp": 0, "parch": 0, "name": "Kelly, Mrs. James"}}]});
    let pushed = app
        .post_as("/features/push", &push, &app.token(&["features:write"]))
        .await;
    assert_eq!(pushed.status(), 200);
    let body = app
        .post_json("/predict", &json!({"passenger_id": 892}))
        .await;
    assert_eq!(body["features"]["source"], "online_store", "{body}");
    assert!(
        body["probability"].as_f64().unwrap() > 0.8,
        "now a first-class woman: {body}"
    );

    // Many stored passengers at once.
    let instances: Vec<Value> = (1..=200).map(|id| json!({"passenger_id": id})).collect();
    let response = app
        .post("/predict/batch", &json!({ "instances": instances }))
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let predictions = body["predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), 200);
    assert!(
        predictions
            .iter()
            .all(|p| p["features"]["source"] == "online_store" || p["passenger_id"] == 892)
    );

    delete_keys(&mut conn, &prefix).await;
    app.stop().await;
}

async fn ready_status(app: &TestApp) -> (u16, Value) {
    let response = app.get("/health/ready").await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn redis_outage_degrades_to_the_offline_store_and_recovers() {
    let Some(mut redis) = OwnRedis::start().await else {
        return;
    };
    let url = redis.url();
    let app = TestApp::spawn_with(&[
        ("TITANIC__REDIS__URL", url.as_str()),
        ("TITANIC__FEATURE_CACHE__TTL_MS", "1000"),
    ])
    .await;
    let by_id = json!({"passenger_id": 1});
    let body: Value = app.post("/predict", &by_id).await.json().await.unwrap();
    assert_eq!(body["features"]["source"], "online_store");
    let probability = body["probability"].clone();

    redis.kill();
    // Let the cached copy expire.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // Every kind of request keeps succeeding, from the offline store (each after the
    // cached copy of the previous fallback read expired), or from that cached copy.
    for _ in 0..3 {
        let response = app.post("/predict", &by_id).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["features"]["source"], "offline_store", "{body}");
        assert_eq!(
            body["probability"], probability,
            "same features, same answer"
        );
        let again: Value = app.post("/predict", &by_id).await.json().await.unwrap();
        assert_eq!(again["features"]["source"], "cache", "{again}");
        assert_eq!(again["probability"], probability);
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let batch = json!({"instances": [{"passenger_id": 2}, crate::helpers::passenger()]});
    assert_eq!(app.post("/predict/batch", &batch).await.status(), 200);
    let (status, ready) = ready_status(&app).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["status"], "degraded");
    assert_eq!(ready["components"]["online_store"]["status"], "degraded");
    assert_eq!(
        ready["components"]["online_store"]["fallback"],
        "offline_store"
    );
    let metrics = app.metrics().await;
    assert_eq!(
        metric(&metrics, "titanic_online_store_up"),
        Some(0.0),
        "{metrics}"
    );
    assert!(metric(&metrics, "titanic_online_store_fallbacks_total").unwrap() >= 3.0);

    // Redis comes back empty (no persistence): the service reconnects and re-materializes
    // by itself, and reads go back to the online store.
    assert!(redis.restart().await);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let body: Value = app.post("/predict", &by_id).await.json().await.unwrap();
        let (_, ready) = ready_status(&app).await;
        if body["features"]["source"] == "online_store" && ready["status"] == "ready" {
            break;
        }
        assert!(Instant::now() < deadline, "no recovery: {body} {ready}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let metrics = app.metrics().await;
    assert_eq!(metric(&metrics, "titanic_online_store_up"), Some(1.0));
    assert!(
        !metrics.contains(r#"status="5"#) && !metrics.lines().any(|l| l.contains("status=\"50")),
        "no request failed with a 5xx: {metrics}"
    );
    app.stop().await;
}
