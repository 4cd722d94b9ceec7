//! Passengers in and out of the offline history: CSV records become rows of the demographics
//! and survival views, and training sets are read back point-in-time through a feature
//! service, with the same assembly code serving uses.

use std::collections::HashMap;

use serde_json::Value;

use super::offline::{Appended, FeatureRow, NewRow, OfflineError, OfflineStore};
use super::online::OnlineRow;
use super::passenger::PassengerRecord;
use super::registry::{
    DEMOGRAPHICS, FeatureRegistry, FeatureServiceSpec, FeatureViewSpec, Kind, RegistryError,
    SURVIVAL,
};
use super::serving::{ReadSource, ServeFeaturesError, ServiceViews};
use crate::core::config::StaleValues;
use crate::core::time::Micros;

/// The demographics rows and (for labelled records) the survival rows of CSV records.
pub fn passenger_rows(
    records: &[PassengerRecord],
    event_time: Micros,
) -> (Vec<NewRow>, Vec<NewRow>) {
    let mut demographics = Vec::with_capacity(records.len());
    let mut labels = Vec::new();
    for r in records {
        let key = r.passenger_id.to_string();
        let mut values = match serde_json::to_value(r.passenger.to_raw(None)) {
            Ok(Value::Object(map)) => map,
            _ => continue,
        };
        values.remove("passenger_id");
        demographics.push(NewRow {
            entity_key: key.clone(),
            event_time,
            values,
        });
        if let Some(survived) = r.survived {
            let mut values = serde_json::Map::new();
            values.insert("survived".to_owned(), Value::Bool(survived));
            labels.push(NewRow {
                entity_key: key,
                event_time,
                values,
            });
        }
    }
    (demographics, labels)
}

/// Appends CSV records to the history; returns what each view got.
pub async fn ingest(
    offline: &OfflineStore,
    records: &[PassengerRecord],
    source: &str,
    event_time: Micros,
) -> Result<(Appended, Appended), OfflineError> {
    let (demographics, labels) = passenger_rows(records, event_time);
    let d = offline
        .append_changed(DEMOGRAPHICS, 1, &demographics, source)
        .await?;
    let l = offline.append_changed(SURVIVAL, 1, &labels, source).await?;
    Ok((d, l))
}

/// A feature service version with its view versions, from the registry.
pub async fn resolve_service(
    registry: &FeatureRegistry,
    name: &str,
    version: i64,
) -> Result<ServiceViews, RegistryError> {
    let service = registry
        .get::<FeatureServiceSpec>(Kind::Service, name, version)
        .await?;
    let mut views = Vec::with_capacity(service.spec.views.len());
    for p in &service.spec.views {
        views.push(
            registry
                .get::<FeatureViewSpec>(Kind::View, &p.view, p.version)
                .await?,
        );
    }
    Ok(ServiceViews { service, views })
}

/// A point-in-time training set.
#[derive(Debug, Clone, Default)]
pub struct TrainingRows {
    /// The labelled passengers, then the unlabelled ones (`survived` is `None`): every
    /// passenger with usable features at the time and no label.
    pub records: Vec<PassengerRecord>,
    /// Labelled passengers with no feature row at or before the time.
    pub without_features: usize,
    /// Labelled passengers whose features were unusable then (e.g. outside max age).
    pub unusable: usize,
}

fn as_online(row: &FeatureRow) -> OnlineRow {
    OnlineRow {
        event_time: row.event_time,
        write_time: row.write_time,
        values: row.values.clone(),
    }
}

/// Every passenger labelled as of `as_of`, with the service's features as they were at that
/// time: no value with a later event time can leak in. The passengers with features but no
/// label at that time follow, unlabelled.
pub async fn training_rows(
    offline: &OfflineStore,
    service: &ServiceViews,
    as_of: Micros,
) -> Result<TrainingRows, OfflineError> {
    let labels = offline.latest_as_of(SURVIVAL, as_of, None).await?;
    let mut per_view: Vec<HashMap<String, OnlineRow>> = Vec::new();
    for (_, view) in service.projections() {
        let rows = offline.latest_as_of(&view.name, as_of, None).await?;
        per_view.push(
            rows.iter()
                .map(|r| (r.entity_key.clone(), as_online(r)))
                .collect(),
        );
    }
    let mut out = TrainingRows::default();
    for label in &labels {
        let (Ok(id), Some(Value::Bool(survived))) = (
            label.entity_key.parse::<i64>(),
            label.values.get("survived"),
        ) else {
            out.unusable += 1;
            continue;
        };
        let rows: Vec<Option<&OnlineRow>> =
            per_view.iter().map(|m| m.get(&label.entity_key)).collect();
        match service.assemble(
            id,
            &rows,
            as_of,
            ReadSource::OfflineStore,
            StaleValues::Impute,
        ) {
            Ok(Some(served)) => out.records.push(PassengerRecord {
                passenger_id: id,
                survived: Some(*survived),
                passenger: served.passenger,
            }),
            Ok(None) => out.without_features += 1,
            Err(ServeFeaturesError::Invalid { .. }) | Err(ServeFeaturesError::Read(_)) => {
                out.unusable += 1
            }
        }
    }
    out.records.sort_by_key(|r| r.passenger_id);
    // The unlabelled: every other entity with a row in one of the service's views.
    let labelled: std::collections::HashSet<&str> =
        labels.iter().map(|l| l.entity_key.as_str()).collect();
    let mut keys: Vec<&String> = per_view
        .iter()
        .flat_map(HashMap::keys)
        .filter(|k| !labelled.contains(k.as_str()))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let mut unlabelled = Vec::new();
    for key in keys {
        let Ok(id) = key.parse::<i64>() else { continue };
        let rows: Vec<Option<&OnlineRow>> = per_view.iter().map(|m| m.get(key)).collect();
        if let Ok(Some(served)) = service.assemble(
            id,
            &rows,
            as_of,
            ReadSource::OfflineStore,
            StaleValues::Impute,
        ) {
            unlabelled.push(PassengerRecord {
                passenger_id: id,
                survived: None,
                passenger: served.passenger,
            });
        }
    }
    unlabelled.sort_by_key(|r| r.passenger_id);
    out.records.extend(unlabelled);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feature_store::registry::SURVIVAL_SERVICE;
    use serde_json::json;

    async fn stores(pool: crate::core::db::Pool) -> (OfflineStore, FeatureRegistry) {
        let registry = FeatureRegistry::new(pool.clone());
        registry.ensure_builtins().await.unwrap();
        (OfflineStore::new(pool), registry)
    }

    fn demographics(key: &str, t: Micros, age: f64, pclass: i64) -> NewRow {
        NewRow {
            entity_key: key.to_owned(),
            event_time: t,
            values: json!({"pclass": pclass, "sex": "male", "age": age, "sibsp": 0, "parch": 0})
                .as_object()
                .unwrap()
                .clone(),
        }
    }

    fn label(key: &str, t: Micros, survived: bool) -> NewRow {
        NewRow {
            entity_key: key.to_owned(),
            event_time: t,
            values: json!({ "survived": survived }).as_object().unwrap().clone(),
        }
    }

    crate::core::db::testing::on_both_backends! {
        async fn training_rows_are_point_in_time_correct(pool) {
            let (offline, registry) = stores(pool).await;
            offline
                .append(DEMOGRAPHICS, 1, &[demographics("1", 100, 22.0, 3)], "t")
                .await
                .unwrap();
            offline
                .append(
                    SURVIVAL,
                    1,
                    &[label("1", 100, false), label("2", 100, true)],
                    "t",
                )
                .await
                .unwrap();
            // Later facts: passenger 1 re-recorded at 300, passenger 2 first appears at 300, and
            // passenger 1's label is corrected at 400.
            offline
                .append(
                    DEMOGRAPHICS,
                    1,
                    &[
                        demographics("1", 300, 80.0, 1),
                        demographics("2", 300, 5.0, 2),
                    ],
                    "t",
                )
                .await
                .unwrap();
            offline
                .append(SURVIVAL, 1, &[label("1", 400, true)], "t")
                .await
                .unwrap();
            let service = resolve_service(&registry, SURVIVAL_SERVICE, 1)
                .await
                .unwrap();

            let at_200 = training_rows(&offline, &service, 200).await.unwrap();
            assert_eq!(
                at_200.records.len(),
                1,
                "passenger 2 had no features at 200"
            );
            // A passenger with features and no label (at 250) follows the labelled ones.
            offline
                .append(DEMOGRAPHICS, 1, &[demographics("3", 250, 30.0, 3)], "t")
                .await
                .unwrap();
            let at_250 = training_rows(&offline, &service, 250).await.unwrap();
            let ids: Vec<(i64, Option<bool>)> = at_250
                .records
                .iter()
                .map(|r| (r.passenger_id, r.survived))
                .collect();
            assert_eq!(ids, [(1, Some(false)), (3, None)]);
            assert_eq!(at_200.without_features, 1);
            let p1 = &at_200.records[0];
            assert_eq!((p1.passenger_id, p1.survived), (1, Some(false)));
            assert_eq!(
                p1.passenger.age,
                Some(22.0),
                "the age of 300 must not leak into 200"
            );
            assert_eq!(p1.passenger.pclass.number(), 3);

            let at_300 = training_rows(&offline, &service, 300).await.unwrap();
            assert_eq!(at_300.records.len(), 3);
            assert_eq!(at_300.records[0].passenger.age, Some(80.0));
            assert_eq!(
                at_300.records[0].survived,
                Some(false),
                "label of 400 not yet known"
            );

            let at_400 = training_rows(&offline, &service, 400).await.unwrap();
            assert_eq!(at_400.records[0].survived, Some(true));
            assert!(
                training_rows(&offline, &service, 99)
                    .await
                    .unwrap()
                    .records
                    .is_empty()
            );
        }
    }

    crate::core::db::testing::on_both_backends! {
        async fn ingesting_csv_records_twice_appends_nothing_new(pool) {
            let (offline, _registry) = stores(pool).await;
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/titanic/train.csv");
            let records = crate::feature_store::ingest::read_all(&path, crate::feature_store::ingest::DEFAULT_MAX_RECORD_BYTES).unwrap();
            let (d, l) = ingest(&offline, &records, "train.csv", 1).await.unwrap();
            assert_eq!((d.written, l.written), (891, 891));
            let (d, l) = ingest(&offline, &records, "train.csv", 2).await.unwrap();
            assert_eq!(
                (d.written, d.unchanged, l.written),
                (0, 891, 0),
                "later, same facts"
            );
        }
    }
}
