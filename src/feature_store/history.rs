//! Passengers in and out of the offline history: CSV records become rows of the demographics
//! and survival views, and training sets are read back point-in-time through a feature
//! service, with the same assembly code serving uses.

use std::collections::HashMap;
use std::io::{Read, Write};

use serde_json::Value;

use super::ingest::{BoundedCsv, CsvError};
use super::offline::{Appended, FeatureRow, NewRow, OfflineError, OfflineStore, Unchanged};
use super::online::OnlineRow;
use super::passenger::PassengerRecord;
use super::registry::Versioned;
use super::registry::{
    DEMOGRAPHICS, FeatureRegistry, FeatureServiceSpec, FeatureViewSpec, Kind, RegistryError,
    SURVIVAL,
};
use super::retrieval::{FeatureColumn, ReadSource, ServeFeaturesError, ServiceViews, status_of};
use crate::core::config::StaleValues;
use crate::core::time::{Micros, parse_rfc3339};

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
        .append_unless(Unchanged::Latest, DEMOGRAPHICS, 1, &demographics, source)
        .await?;
    let l = offline
        .append_unless(Unchanged::Latest, SURVIVAL, 1, &labels, source)
        .await?;
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

/// Entity rows per historical-retrieval query: bounds the rows one query reads.
const HISTORICAL_CHUNK: usize = 5_000;

/// Historical retrieval for a feature service's views: for each entity row, each view's row
/// as of that row's own time, as known at `created_as_of` ([`OfflineStore::rows_at`]), in
/// bounded chunks.
pub async fn historical_rows(
    offline: &OfflineStore,
    service: &ServiceViews,
    entities: &[(&str, Micros)],
    created_as_of: Option<Micros>,
) -> Result<Vec<Vec<Option<OnlineRow>>>, OfflineError> {
    let mut per_view = Vec::with_capacity(service.views.len());
    for (_, view) in service.projections() {
        per_view.push(rows_at(offline, view, entities, created_as_of).await?);
    }
    Ok(per_view)
}

/// [`OfflineStore::rows_at`] in bounded chunks.
async fn rows_at(
    offline: &OfflineStore,
    view: &Versioned<FeatureViewSpec>,
    entities: &[(&str, Micros)],
    created_as_of: Option<Micros>,
) -> Result<Vec<Option<OnlineRow>>, OfflineError> {
    let mut rows = Vec::with_capacity(entities.len());
    for chunk in entities.chunks(HISTORICAL_CHUNK) {
        let found = offline.rows_at(view, chunk, created_as_of).await?;
        rows.extend(found.iter().map(|r| r.as_ref().map(as_online)));
    }
    Ok(rows)
}

/// Historical retrieval (Feast's `get_historical_features`): for each entity row (an entity
/// and a time), each requested feature as of that row's own time, within its view's TTL, as
/// known at `created_as_of`; statuses are judged as of each row's time. Columns in request
/// order, a value per entity row.
pub async fn historical_features(
    offline: &OfflineStore,
    requests: &[(Versioned<FeatureViewSpec>, Vec<String>)],
    entities: &[(&str, Micros)],
    created_as_of: Option<Micros>,
) -> Result<Vec<FeatureColumn>, OfflineError> {
    let mut columns = Vec::new();
    for (view, features) in requests {
        let rows = rows_at(offline, view, entities, created_as_of).await?;
        for feature in features {
            let mut column = FeatureColumn {
                view: view.name.clone(),
                feature: feature.clone(),
                values: Vec::with_capacity(entities.len()),
                statuses: Vec::with_capacity(entities.len()),
                event_times: Vec::with_capacity(entities.len()),
            };
            for (row, &(_, at)) in rows.iter().zip(entities) {
                let (status, value) = status_of(row.as_ref(), feature, view.spec.ttl_secs, at);
                column.values.push(value.cloned().unwrap_or(Value::Null));
                column.statuses.push(status);
                column.event_times.push(row.as_ref().map(|r| r.event_time));
            }
            columns.push(column);
        }
    }
    Ok(columns)
}

/// What went wrong streaming an entity table.
#[derive(Debug, thiserror::Error)]
pub enum HistoricalCsvError {
    #[error(transparent)]
    Csv(#[from] CsvError),
    #[error("header: missing column {0} (the entity table needs the join key and event_timestamp)")]
    MissingColumn(String),
    #[error("line {line}: {message}")]
    Row { line: u64, message: String },
    #[error(transparent)]
    Offline(#[from] OfflineError),
    #[error("writing the output: {0}")]
    Write(String),
}

/// Historical retrieval for an entity table of any size, streamed: `input` is a CSV with the
/// join key's column and `event_timestamp` (RFC 3339), other columns carried through; `output`
/// gets each row followed by one column per requested feature (empty when there is no value),
/// [`HISTORICAL_CHUNK`] rows at a time. Returns the rows written.
pub async fn historical_csv<R: Read, W: Write>(
    offline: &OfflineStore,
    requests: &[(Versioned<FeatureViewSpec>, Vec<String>)],
    join_key: &str,
    input: R,
    output: W,
    created_as_of: Option<Micros>,
    max_record_bytes: usize,
) -> Result<u64, HistoricalCsvError> {
    let mut reader = BoundedCsv::new(input, max_record_bytes)?;
    let column = |name: &str| {
        reader
            .headers()
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| HistoricalCsvError::MissingColumn(name.to_owned()))
    };
    let (key_at, time_at) = (column(join_key)?, column("event_timestamp")?);
    let write_error = |e: csv::Error| HistoricalCsvError::Write(e.to_string());
    let mut writer = csv::Writer::from_writer(output);
    let mut header: Vec<String> = reader.headers().iter().map(str::to_owned).collect();
    header.extend(requests.iter().flat_map(|(_, f)| f.iter().cloned()));
    writer.write_record(&header).map_err(write_error)?;
    let mut written = 0;
    let mut chunk: Vec<(csv::StringRecord, Micros)> = Vec::with_capacity(HISTORICAL_CHUNK);
    let mut done = false;
    while !done {
        let next = reader.next_raw().map(|r| r.cloned());
        match next {
            Some(record) => {
                let record = record?;
                let line = reader.line();
                let time = record.get(time_at).unwrap_or_default();
                let at = parse_rfc3339(time).map_err(|e| HistoricalCsvError::Row {
                    line,
                    message: format!("event_timestamp: {e}"),
                })?;
                if record.get(key_at).is_none_or(str::is_empty) {
                    return Err(HistoricalCsvError::Row {
                        line,
                        message: format!("{join_key}: empty"),
                    });
                }
                chunk.push((record, at));
                if chunk.len() < HISTORICAL_CHUNK {
                    continue;
                }
            }
            None => done = true,
        }
        let entities: Vec<(&str, Micros)> = chunk
            .iter()
            .map(|(r, at)| (r.get(key_at).unwrap_or_default(), *at))
            .collect();
        let columns = historical_features(offline, requests, &entities, created_as_of).await?;
        for (i, (record, _)) in chunk.iter().enumerate() {
            let mut out: Vec<String> = record.iter().map(str::to_owned).collect();
            out.extend(columns.iter().map(|c| match &c.values[i] {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            }));
            writer.write_record(&out).map_err(write_error)?;
            written += 1;
        }
        chunk.clear();
    }
    writer
        .flush()
        .map_err(|e| HistoricalCsvError::Write(e.to_string()))?;
    Ok(written)
}

/// Every passenger labelled as of `as_of`, each with the service's features as of its label's
/// own event time (within each view's TTL): no value from after a label can leak into its row.
/// The passengers with features but no label at `as_of` follow, unlabelled, with the features
/// they had then. With `created_as_of`, only rows written by then are seen, so the same call
/// always gives the same set.
pub async fn training_rows(
    offline: &OfflineStore,
    service: &ServiceViews,
    as_of: Micros,
    created_as_of: Option<Micros>,
) -> Result<TrainingRows, OfflineError> {
    let labels = offline
        .latest_as_of(SURVIVAL, as_of, created_as_of, None)
        .await?;
    let entities: Vec<(&str, Micros)> = labels
        .iter()
        .map(|l| (l.entity_key.as_str(), l.event_time))
        .collect();
    let per_view = historical_rows(offline, service, &entities, created_as_of).await?;
    let mut out = TrainingRows::default();
    for (i, label) in labels.iter().enumerate() {
        let (Ok(id), Some(Value::Bool(survived))) = (
            label.entity_key.parse::<i64>(),
            label.values.get("survived"),
        ) else {
            out.unusable += 1;
            continue;
        };
        let rows: Vec<Option<&OnlineRow>> = per_view.iter().map(|v| v[i].as_ref()).collect();
        match service.assemble(
            id,
            &rows,
            label.event_time,
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
    // The unlabelled: every other entity with a row in one of the service's views at `as_of`.
    let labelled: std::collections::HashSet<&str> =
        labels.iter().map(|l| l.entity_key.as_str()).collect();
    let mut per_view: Vec<HashMap<String, OnlineRow>> = Vec::new();
    for (_, view) in service.projections() {
        let rows = offline.latest_of(view, as_of, created_as_of, None).await?;
        per_view.push(
            rows.iter()
                .filter(|r| !labelled.contains(r.entity_key.as_str()))
                .map(|r| (r.entity_key.clone(), as_online(r)))
                .collect(),
        );
    }
    let mut keys: Vec<&String> = per_view.iter().flat_map(HashMap::keys).collect();
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

            let at = |as_of| training_rows(&offline, &service, as_of, None);
            let at_200 = at(200).await.unwrap();
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
            let at_250 = at(250).await.unwrap();
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

            // At 300 the labels are still those of 100, so the features are those of 100:
            // passenger 2's first features came after its label; passenger 3 is unlabelled.
            let at_300 = at(300).await.unwrap();
            assert_eq!(at_300.records.len(), 2);
            assert_eq!(at_300.without_features, 1);
            assert_eq!(at_300.records[0].passenger.age, Some(22.0), "as of the label's time");
            assert_eq!((at_300.records[1].passenger_id, at_300.records[1].survived), (3, None));
            assert_eq!(
                at_300.records[0].survived,
                Some(false),
                "label of 400 not yet known"
            );

            // The label of 400 comes with the features of its own time.
            let at_400 = at(400).await.unwrap();
            assert_eq!(at_400.records[0].survived, Some(true));
            assert_eq!(at_400.records[0].passenger.age, Some(80.0));
            assert!(at(99).await.unwrap().records.is_empty());

            // As known before the correction of 400 was written: its label was not there.
            let known = crate::core::time::now_micros();
            std::thread::sleep(std::time::Duration::from_millis(2));
            offline
                .append(SURVIVAL, 1, &[label("1", 400, false)], "t")
                .await
                .unwrap();
            let then = training_rows(&offline, &service, 400, Some(known)).await.unwrap();
            assert_eq!(then.records[0].survived, Some(true));
            let now = at(400).await.unwrap();
            assert_eq!(now.records[0].survived, Some(false), "the later write wins now");
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

    crate::core::db::testing::on_both_backends! {
        async fn an_entity_table_streams_through_historical_retrieval(pool) {
            use crate::core::time::micros_to_rfc3339;
            let (offline, registry) = stores(pool).await;
            offline
                .append(DEMOGRAPHICS, 1, &[demographics("1", 100, 22.0, 3), demographics("1", 300, 23.0, 3)], "t")
                .await
                .unwrap();
            let view = registry
                .get::<FeatureViewSpec>(Kind::View, DEMOGRAPHICS, 1)
                .await
                .unwrap();
            let requests = [(view, vec!["age".to_owned(), "pclass".to_owned()])];
            let input = format!(
                "passenger_id,event_timestamp,note\n1,{},a\n1,{},\"b, c\"\n2,{},d\n",
                micros_to_rfc3339(50),
                micros_to_rfc3339(200),
                micros_to_rfc3339(400),
            );
            let mut output = Vec::new();
            let n = historical_csv(&offline, &requests, "passenger_id", input.as_bytes(), &mut output, None, 1024)
                .await
                .unwrap();
            assert_eq!(n, 3);
            let text = String::from_utf8(output).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines[0], "passenger_id,event_timestamp,note,age,pclass");
            assert!(lines[1].ends_with(",a,,"), "nothing before 100: {}", lines[1]);
            assert!(lines[2].ends_with(",\"b, c\",22.0,3"), "{}", lines[2]);
            assert!(lines[3].ends_with(",d,,"), "{}", lines[3]);

            // A bad time names its line; a missing column is named.
            let bad = "passenger_id,event_timestamp\n1,soon\n";
            let e = historical_csv(&offline, &requests, "passenger_id", bad.as_bytes(), Vec::new(), None, 1024)
                .await
                .unwrap_err();
            assert!(e.to_string().starts_with("line 2: event_timestamp"), "{e}");
            let e = historical_csv(&offline, &requests, "passenger_id", "id,event_timestamp\n".as_bytes(), Vec::new(), None, 1024)
                .await
                .unwrap_err();
            assert!(e.to_string().contains("missing column passenger_id"), "{e}");
        }
    }
}
