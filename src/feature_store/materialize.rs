//! Materialization: copying the latest offline values of a feature view version into the
//! online store. Full runs cover every entity; incremental runs cover the entities with rows
//! written since the stored watermark. Either way the work is streamed in bounded chunks of
//! entities, and running it twice writes the same values again (idempotent).

use serde::Serialize;

use super::offline::OfflineError;
use super::online::{OnlineError, OnlineRow, ViewKey};
use super::registry::{FeatureViewSpec, Versioned};
use super::retrieval::{FeatureServer, project};
use crate::core::time::{Micros, now_micros};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, Default, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[schema(as = MaterializeMode)]
pub enum Mode {
    Full,
    #[default]
    Incremental,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = MaterializeReport)]
pub struct Report {
    pub view: String,
    pub version: i64,
    pub mode: Mode,
    /// Entities whose latest values were written to the online store.
    pub entities: u64,
    pub chunks: u64,
    /// Offline row id the view version is now materialized up to.
    pub watermark: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum MaterializeError {
    #[error(transparent)]
    Offline(#[from] OfflineError),
    #[error(transparent)]
    Online(#[from] OnlineError),
}

/// Copies the latest offline values (as of `now`) of these entities into the online store;
/// returns how many entities had values.
pub async fn refresh(
    server: &FeatureServer,
    view: &Versioned<FeatureViewSpec>,
    keys: &[&str],
    now: Micros,
) -> Result<usize, MaterializeError> {
    let features: Vec<String> = view.spec.features.iter().map(|f| f.name.clone()).collect();
    let rows: Vec<(String, OnlineRow)> = server
        .offline()
        .latest_of(view, now, None, Some(keys))
        .await?
        .into_iter()
        .map(|r| {
            let row = OnlineRow {
                event_time: r.event_time,
                write_time: r.write_time,
                values: project(&r.values, &features),
            };
            (r.entity_key, row)
        })
        .collect();
    let n = rows.len();
    let key = ViewKey::new(&view.name, view.version);
    server.write(&key, view.spec.ttl_secs, rows).await?;
    Ok(n)
}

/// Materializes one view version as of now, `chunk` entities at a time.
pub async fn materialize(
    server: &FeatureServer,
    view: &Versioned<FeatureViewSpec>,
    mode: Mode,
    chunk: usize,
) -> Result<Report, MaterializeError> {
    materialize_as_of(server, view, mode, chunk, now_micros()).await
}

/// Materializes one view version with the values as of `now`. The watermark stops before the
/// first row whose event time is after `now` (a push may be up to 5 minutes ahead): that row
/// is not served yet, and the incremental run after its time comes copies it.
pub async fn materialize_as_of(
    server: &FeatureServer,
    view: &Versioned<FeatureViewSpec>,
    mode: Mode,
    chunk: usize,
    now: Micros,
) -> Result<Report, MaterializeError> {
    let offline = server.offline();
    let key = ViewKey::new(&view.name, view.version);
    let upto = offline.last_row_id(&view.name).await?;
    let after = match mode {
        Mode::Full => 0,
        Mode::Incremental => server.online().watermark(&key).await?.unwrap_or(0),
    };
    let not_yet = offline.first_row_after(&view.name, after, now).await?;
    let mut report = Report {
        view: view.name.clone(),
        version: view.version,
        mode,
        entities: 0,
        chunks: 0,
        watermark: not_yet.map_or(upto, |id| id - 1).max(after),
    };
    if mode == Mode::Incremental && upto <= after {
        return Ok(report);
    }
    let mut after_key = String::new();
    loop {
        let keys = offline
            .keys_written_between(&view.name, after, upto, &after_key, chunk.max(1) as i64)
            .await?;
        let Some(last) = keys.last().cloned() else {
            break;
        };
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        report.entities += refresh(server, view, &refs, now).await? as u64;
        report.chunks += 1;
        after_key = last;
    }
    server
        .online()
        .set_watermark(&key, report.watermark)
        .await?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::feature_store::offline::{NewRow, OfflineStore};
    use crate::feature_store::online::InProcessStore;
    use crate::feature_store::retrieval::FeatureStoreMetrics;

    fn view() -> Versioned<FeatureViewSpec> {
        let spec: FeatureViewSpec = serde_json::from_value(json!({
            "name": "v", "entity": "passenger", "source": "push", "ttl_secs": 0,
            "features": [{"name": "age", "value_type": "float64"}],
        }))
        .unwrap();
        Versioned {
            name: "v".into(),
            version: 1,
            created_at: String::new(),
            created_by: String::new(),
            spec,
        }
    }

    fn row(t: Micros, age: f64) -> NewRow {
        NewRow {
            entity_key: "1".into(),
            event_time: t,
            values: json!({ "age": age }).as_object().unwrap().clone(),
        }
    }

    async fn online_age(server: &FeatureServer) -> Option<f64> {
        let rows = server
            .online()
            .read(&ViewKey::new("v", 1), &["1".to_owned()])
            .await
            .unwrap();
        rows[0].as_ref().map(|r| r.values["age"].as_f64().unwrap())
    }

    crate::core::db::testing::on_both_backends! {
        async fn a_future_dated_row_is_served_once_its_time_comes(pool) {
            let server = FeatureServer::new(
                Arc::new(InProcessStore::new()),
                OfflineStore::new(pool),
                None,
                FeatureStoreMetrics::new().unwrap(),
            );
            let view = view();
            let offline = server.offline();
            offline.append("v", 1, &[row(1_000, 20.0)], "t").await.unwrap();
            // Pushed at 2,000 for 5,000 (a writer whose clock runs ahead).
            offline.append("v", 1, &[row(5_000, 21.0)], "t").await.unwrap();
            let early = materialize_as_of(&server, &view, Mode::Incremental, 10, 2_000)
                .await
                .unwrap();
            assert_eq!(online_age(&server).await, Some(20.0), "not served before its time");
            assert_eq!(early.watermark, 1, "the watermark stops before the future row");
            // A run just before its time keeps the watermark there.
            let late = materialize_as_of(&server, &view, Mode::Incremental, 10, 4_999)
                .await
                .unwrap();
            assert_eq!(late.watermark, 1);
            let due = materialize_as_of(&server, &view, Mode::Incremental, 10, 5_000)
                .await
                .unwrap();
            assert_eq!(due.watermark, 2);
            assert_eq!(online_age(&server).await, Some(21.0), "served when its time came");
        }
    }

    crate::core::db::testing::on_both_backends! {
        async fn each_view_version_has_its_own_watermark_and_rules(pool) {
            let server = FeatureServer::new(
                Arc::new(InProcessStore::new()),
                OfflineStore::new(pool),
                None,
                FeatureStoreMetrics::new().unwrap(),
            );
            let v1 = view();
            server.offline().append("v", 1, &[row(1_000, 130.0)], "t").await.unwrap();
            let first = materialize_as_of(&server, &v1, Mode::Incremental, 10, 2_000)
                .await
                .unwrap();
            assert_eq!(first.watermark, 1);
            // Version 2 bounds ages to 120: its first incremental run reads the whole history
            // (its own watermark starts at 0) and serves version 1's row revalidated.
            let v2 = crate::feature_store::registry::test_view(
                "v",
                2,
                json!([{"name": "age", "value_type": "float64", "validation": {"range": {"min": 0, "max": 120}}}]),
            );
            let report = materialize_as_of(&server, &v2, Mode::Incremental, 10, 2_000)
                .await
                .unwrap();
            assert_eq!((report.version, report.watermark), (2, 1));
            let read = |version| {
                let server = &server;
                async move {
                    server
                        .online()
                        .read(&ViewKey::new("v", version), &["1".to_owned()])
                        .await
                        .unwrap()
                        .remove(0)
                        .map(|r| r.values)
                }
            };
            assert_eq!(read(1).await.unwrap()["age"], 130.0);
            assert!(read(2).await.unwrap().get("age").is_none(), "refused by version 2's rule");
        }
    }
}
