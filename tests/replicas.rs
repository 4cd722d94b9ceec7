//! More than one replica: two `titanic serve` processes on one PostgreSQL database and one
//! Redis, as pods of one Deployment run. Started together on an empty database, they
//! bootstrap one after the other, so there is one model, not two; a promotion made through either is served by both within seconds (each
//! follows the `production` alias in the shared registry); a label sent to one replica finds
//! the prediction the other one made and logged; a rollback reaches both as well.
//!
//! The database is a fresh one on the PostgreSQL server named by `TITANIC_TEST_POSTGRES_URL`
//! (default `postgres://postgres@127.0.0.1:5432/postgres`), dropped afterwards; the test skips
//! without a server, except in CI, where it fails.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use sqlx::Connection;

use support::{Api, PgDatabase, Server, Steps, eventually, scratch, shared_redis, unique_prefix};

/// The version that answers a by-id prediction on `api`.
async fn serving(api: &Api, id: i64) -> String {
    let (_, body) = api.predict_id(id).await;
    body["model_version"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn both_serve(a: &Api, b: &Api, version: &str, what: &str) {
    eventually(Duration::from_secs(15), what, || async {
        let answered = (serving(a, 1).await, serving(b, 2).await);
        if answered == (version.to_owned(), version.to_owned()) {
            Ok(())
        } else {
            Err(format!("(a, b) serve {answered:?}"))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_one_postgres_and_follow_promotions() {
    let mut steps = Steps::new();
    let Some(db) = PgDatabase::create().await else {
        return;
    };
    let Some(redis) = shared_redis().await else {
        return;
    };
    let url = db.url();
    let prefix = unique_prefix();
    let shared = [
        ("TITANIC__DATABASE__URL", url.as_str()),
        ("TITANIC__REDIS__URL", redis.as_str()),
        ("TITANIC__REDIS__KEY_PREFIX", prefix.as_str()),
    ];
    let (dir_a, dir_b) = (scratch(), scratch());

    steps.next("both start at once on the empty database and bootstrap one model");
    // Both start at once on the empty database. They bootstrap one at a time: the first
    // ingests, trains v1 and promotes it; the second finds v1 in production and serves it,
    // having ingested and trained nothing of its own.
    let (a, b) = tokio::join!(
        Server::start(dir_a.path(), &shared),
        Server::start(dir_b.path(), &shared)
    );
    let api_a = Api::new(&a, dir_a.path());
    let api_b = api_a.at(&b);
    for api in [&api_a, &api_b] {
        let (status, ready) = api.ready().await;
        assert_eq!(status, 200, "{ready}");
        assert_eq!(
            ready["components"]["online_store"]["kind"], "redis",
            "{ready}"
        );
        assert_eq!(api.aliases().await["production"], "v1");
    }
    let models: Value = api_b.get("/models").await.json().await.unwrap();
    let versions = models["versions"].as_array().expect("versions");
    assert_eq!(versions.len(), 1, "one model for both replicas: {models}");
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let (rows, passengers): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COUNT(DISTINCT entity_key) FROM feature_rows \
         WHERE view = 'passenger_demographics'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        (rows, passengers),
        (1309, 1309),
        "train.csv and test.csv ingested once"
    );
    conn.close().await.unwrap();
    both_serve(&api_a, &api_b, "v1", "both replicas serve v1").await;

    steps.next("a training job asked of A is visible from B");
    // A training job asked of replica A is visible from replica B (jobs live in the database).
    let r = api_a
        .post("/models/train", &api_a.models, &json!({ "promote": false }))
        .await;
    assert_eq!(r.status(), 202);
    let job: Value = r.json().await.unwrap();
    let status_url = job["status_url"].as_str().unwrap().to_owned();
    let version = eventually(Duration::from_secs(120), "the job succeeds", || async {
        let job: Value = api_b.get(&status_url).await.json().await.unwrap();
        match job["status"].as_str() {
            Some("succeeded") => Ok(job["version"].as_str().unwrap().to_owned()),
            Some("failed") => panic!("training failed: {job}"),
            _ => Err(job.to_string()),
        }
    })
    .await;
    assert_eq!(version, "v2");

    steps.next("promoted through B: A follows without a restart");
    // Promoted through B: A follows within seconds, without a restart.
    let r = api_b.promote("production", "v2").await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    both_serve(
        &api_a,
        &api_b,
        "v2",
        "both replicas serve v2 after the promotion",
    )
    .await;
    assert_eq!(api_a.aliases().await["production"], "v2");

    steps.next("a label sent to B finds the prediction A made");
    // A label sent to B finds the prediction A made (once A's request log wrote it).
    let (request_id, body) = api_a.predict_id(3).await;
    assert_eq!(body["model_version"], "v2");
    let labelled: Value = eventually(Duration::from_secs(15), "B finds A's prediction", || {
        let (api_b, request_id) = (&api_b, &request_id);
        async move {
            let r = api_b.feedback(request_id, true).await;
            match r.status().as_u16() {
                200 => Ok(r.json::<Value>().await.unwrap()),
                status => Err(format!("{status}: {}", r.text().await.unwrap())),
            }
        }
    })
    .await;
    assert_eq!(labelled["model_version"], "v2", "{labelled}");

    steps.next("rolled back through A: both go back to v1");
    // Rolled back through A: both go back to v1.
    let r = api_a
        .post(
            "/models/aliases/production/rollback",
            &api_a.models,
            &json!({ "reason": "replicas test" }),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    both_serve(
        &api_a,
        &api_b,
        "v1",
        "both replicas serve v1 after the rollback",
    )
    .await;
    let history: Value = api_b
        .get("/models/aliases/production/history")
        .await
        .json()
        .await
        .unwrap();
    let actions: Vec<(&str, &str)> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["version"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [("promote", "v1"), ("promote", "v2"), ("rollback", "v1")]
    );

    a.stop().await;
    b.stop().await;
}
