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
        .append(DEMOGRAPHICS, 1, &demographics, source)
        .await?;
    let l = offline.append(SURVIVAL, 1, &labels, source).await?;
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
    pub records: Vec<PassengerRecord>,
    /// Labelled passengers with no feature row at or before the time.
    pub without_features: usize,
    /// Labelled passengers whose features were unusable then (e.g. outside max age).
    pub unusable: usize,
}

fn as_online(row: &FeatureRow) -> OnlineRow {
    OnlineRow {
        event_time: row.event_time,
        values: row.values.clone(),
    }
}

/// Every passenger labelled as of `as_of`, with the service's features as they were at that
/// time: no value with a later event time can leak in.
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
        match service.assemble(id, &rows, as_of, ReadSource::OfflineStore) {
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
    Ok(out)
}
