//! A model-based property test of the feature store: random interleavings of pushes (late,
//! future-dated, repeated, out of order), full and incremental materializations, online store
//! restarts and historical reads, on SQLite and PostgreSQL, with the in-process store and
//! Redis. After every materialization each entity's online row is the offline row in effect
//! at the materialization's time; no push stores a row that changes no point-in-time read; a
//! historical retrieval repeated with the same `created_as_of` answers the same rows.

use std::sync::Arc;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::{Value, json};
use sqlx::Row;

use super::materialize::{Mode, materialize_as_of};
use super::offline::{FeatureRow, OfflineStore};
use super::online::{InProcessStore, OnlineStore, ViewKey};
use super::push::{PushOptions, PushRow, push};
use super::redis_store::RedisStore;
use super::registry::{EntitySpec, FeatureViewSpec, ValueType, Versioned, test_view};
use super::retrieval::{FeatureServer, FeatureStoreMetrics};
use crate::core::db::Pool;
use crate::core::time::{Micros, micros_to_rfc3339, now_micros};

const MINUTE: Micros = 60_000_000;
const KEYS: u8 = 4;
const CASES: usize = 12;

#[derive(Debug, Clone)]
enum Op {
    /// Rows of (entity, event time in minutes from the case's start, age); minutes run from
    /// 10 in the past to 4 ahead (pushes accept up to 5 minutes ahead).
    Push(Vec<(u8, i64, i64)>),
    Materialize(Mode),
    /// The materialization clock moves a minute on.
    Tick,
    /// The online store loses everything (a Redis restart without persistence).
    Restart,
    /// A historical retrieval to repeat, with `created_as_of` = now.
    Remember,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop::collection::vec((0..KEYS, -10i64..=4, 0i64..3), 1..4).prop_map(Op::Push),
        2 => prop_oneof![Just(Mode::Full), Just(Mode::Incremental)].prop_map(Op::Materialize),
        1 => Just(Op::Tick),
        1 => Just(Op::Restart),
        1 => Just(Op::Remember),
    ]
}

/// The cases: fixed seed, bounded count, each a sequence of operations.
fn cases() -> Vec<Vec<Op>> {
    let seed = [7u8; 32];
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed),
    );
    let strategy = prop::collection::vec(op(), 5..30);
    (0..CASES)
        .map(|_| strategy.new_tree(&mut runner).expect("a case").current())
        .collect()
}

/// An online store that can be restarted empty.
enum Online {
    Memory,
    Redis { url: String, prefix: String },
}

impl Online {
    fn open(&self) -> Arc<dyn OnlineStore> {
        match self {
            Online::Memory => Arc::new(InProcessStore::new()),
            Online::Redis { url, prefix } => {
                Arc::new(RedisStore::new(url, prefix).expect("a Redis store"))
            }
        }
    }

    /// Everything the store held is gone (a new in-process store; Redis keys deleted).
    async fn restart(&self) -> Arc<dyn OnlineStore> {
        if let Online::Redis { url, prefix } = self {
            let client = redis::Client::open(url.as_str()).expect("a Redis URL");
            let mut conn = client
                .get_multiplexed_async_connection()
                .await
                .expect("Redis");
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{prefix}*"))
                .query_async(&mut conn)
                .await
                .expect("KEYS");
            if !keys.is_empty() {
                let _: () = redis::cmd("DEL")
                    .arg(keys)
                    .query_async(&mut conn)
                    .await
                    .expect("DEL");
            }
        }
        self.open()
    }
}

fn server(online: Arc<dyn OnlineStore>, offline: &OfflineStore) -> FeatureServer {
    FeatureServer::new(
        online,
        offline.clone(),
        None,
        FeatureStoreMetrics::new().expect("metrics"),
    )
}

fn entity() -> EntitySpec {
    EntitySpec {
        name: "passenger".into(),
        join_key: "passenger_id".into(),
        value_type: ValueType::Int64,
        description: String::new(),
    }
}

/// A historical read to repeat: `created_as_of`, the entity rows, the answer.
type Remembered = (Micros, Vec<(String, Micros)>, Vec<Option<FeatureRow>>);

async fn run_case(pool: &Pool, online: &Online, case: usize, ops: &[Op]) {
    let view: Versioned<FeatureViewSpec> = test_view(
        &format!("model_check_{case}"),
        1,
        json!([{"name": "age", "value_type": "int64"}]),
    );
    let offline = OfflineStore::new(pool.clone());
    let mut features = server(online.open(), &offline);
    let start = now_micros();
    let mut clock = start;
    let keys: Vec<String> = (0..KEYS).map(|k| k.to_string()).collect();
    let mut remembered: Vec<Remembered> = Vec::new();
    for (step, op) in ops.iter().enumerate() {
        let at = format!("case {case} step {step} {op:?}");
        match op {
            Op::Push(rows) => {
                let rows = rows
                    .iter()
                    .map(|&(key, minute, age)| PushRow {
                        entity: json!(key),
                        event_time: Some(micros_to_rfc3339(start + minute * MINUTE)),
                        values: json!({ "age": age })
                            .as_object()
                            .cloned()
                            .unwrap_or_default(),
                    })
                    .collect();
                let outcome = push(
                    &features,
                    &view,
                    &entity(),
                    rows,
                    "t",
                    PushOptions::default(),
                )
                .await
                .expect("push");
                assert!(outcome.rejected.is_empty(), "{at}: {outcome:?}");
                no_row_repeats_the_row_in_effect(pool, &view.name, &at).await;
            }
            Op::Materialize(mode) => {
                clock = clock.max(now_micros());
                materialize_as_of(&features, &view, *mode, 2, clock)
                    .await
                    .expect("materialize");
                online_agrees_with_offline(&features, &view, &keys, clock, &at).await;
            }
            Op::Tick => clock += MINUTE,
            Op::Restart => features = server(online.restart().await, &offline),
            Op::Remember => {
                let created_as_of = now_micros();
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                let entities: Vec<(String, Micros)> = keys
                    .iter()
                    .flat_map(|k| [-5, 0, 3].map(|m| (k.clone(), start + m * MINUTE)))
                    .collect();
                let rows = historical(&offline, &view, &entities, created_as_of).await;
                remembered.push((created_as_of, entities, rows));
            }
        }
        for (created_as_of, entities, rows) in &remembered {
            let again = historical(&offline, &view, entities, *created_as_of).await;
            assert_eq!(
                &again, rows,
                "{at}: historical read as known at {created_as_of}"
            );
        }
    }
}

async fn historical(
    offline: &OfflineStore,
    view: &Versioned<FeatureViewSpec>,
    entities: &[(String, Micros)],
    created_as_of: Micros,
) -> Vec<Option<FeatureRow>> {
    let refs: Vec<(&str, Micros)> = entities.iter().map(|(k, t)| (k.as_str(), *t)).collect();
    offline
        .rows_at(view, &refs, Some(created_as_of))
        .await
        .expect("historical read")
}

/// Each entity's online row is the offline row in effect at `now` (values and event time).
async fn online_agrees_with_offline(
    features: &FeatureServer,
    view: &Versioned<FeatureViewSpec>,
    keys: &[String],
    now: Micros,
    at: &str,
) {
    let online = features
        .online()
        .read(&ViewKey::new(&view.name, view.version), keys)
        .await
        .expect("online read");
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let offline = features
        .offline()
        .latest_of(view, now, None, Some(&refs))
        .await
        .expect("offline read");
    for (key, row) in keys.iter().zip(&online) {
        let expected = offline.iter().find(|r| &r.entity_key == key);
        let got = row
            .as_ref()
            .map(|r| (r.event_time, Value::Object(r.values.clone())));
        let want = expected.map(|r| (r.event_time, Value::Object(r.values.clone())));
        assert_eq!(
            got, want,
            "{at}: entity {key} online vs offline as of {now}"
        );
    }
}

/// In write order, no stored row of an entity and event time equals the one stored before it
/// at that time (it would change no point-in-time read).
async fn no_row_repeats_the_row_in_effect(pool: &Pool, view: &str, at: &str) {
    let rows = sqlx::query(
        "SELECT entity_key, event_time, feature_values FROM feature_rows WHERE view = $1 \
         ORDER BY entity_key, event_time, id",
    )
    .bind(view)
    .fetch_all(pool)
    .await
    .expect("rows");
    let mut previous: Option<(String, Micros, Value)> = None;
    for row in &rows {
        let key: String = row.get("entity_key");
        let time: Micros = row.get("event_time");
        let text: String = row.get("feature_values");
        let values: Value = serde_json::from_str(&text).expect("JSON");
        let current = (key, time, values);
        assert!(
            previous.as_ref() != Some(&current),
            "{at}: {current:?} stored twice in a row"
        );
        previous = Some(current);
    }
}

async fn run_all(pool: Pool, online: &Online) {
    for (case, ops) in cases().iter().enumerate() {
        run_case(&pool, online, case, ops).await;
    }
}

crate::core::db::testing::on_both_backends! {
    async fn with_the_in_process_store(pool) {
        run_all(pool, &Online::Memory).await;
    }
}

crate::core::db::testing::on_both_backends! {
    async fn with_redis(pool) {
        let url = std::env::var("TITANIC_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379/0".to_owned());
        let prefix = format!("titanic-model-{}-{}:", std::process::id(), now_micros());
        let probe = RedisStore::new(&url, &prefix).ok();
        let up = match &probe {
            Some(store) => store.ping().await.is_ok(),
            None => false,
        };
        if !up {
            assert!(
                std::env::var_os("CI").is_none(),
                "Redis at {url}: required in CI (.ci/run installs and starts it)"
            );
            eprintln!("SKIPPED: no Redis answers at {url}; install redis-server to run this test");
            return;
        }
        let online = Online::Redis { url, prefix };
        run_all(pool, &online).await;
        // Leave nothing behind on the shared server.
        online.restart().await;
    }
}
