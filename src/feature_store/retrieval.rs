//! Reading features: [`FeatureServer`] for online reads (a bounded TTL cache in front of the
//! online store, the offline store as fallback when the online store is down, and a freshness
//! status for every value, Feast's present / null / not found / outside max age; a stale value
//! is never served as fresh), and [`ServiceViews`], which assembles a passenger from a feature
//! service's rows the same way for serving and for training sets.

use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;
use prometheus::{IntCounter, IntGauge};
use serde::Serialize;
use serde_json::Value;

use super::offline::{OfflineError, OfflineStore, Values};
use super::online::{OnlineError, OnlineRow, OnlineStore, ViewKey};
use super::passenger::{FieldError, Passenger, RawPassenger, ValidationErrors};
use super::registry::{FeatureServiceSpec, FeatureViewSpec, Versioned};
use crate::core::config::StaleValues;
use crate::core::dependency::DependencyMetrics;
use crate::core::time::{Micros, now_micros};

/// Counters and gauges of the feature store (exported with the `titanic_` prefix of the
/// process registry), registered into that registry by the
/// caller (this module does not own a registry).
#[derive(Debug, Clone)]
pub struct FeatureStoreMetrics {
    pub online_up: IntGauge,
    pub cache_hits: IntCounter,
    pub cache_misses: IntCounter,
    pub offline_fallbacks: IntCounter,
    pub online_write_failures: IntCounter,
    /// Latency and errors of the online and offline stores' calls.
    pub dependencies: DependencyMetrics,
}

impl FeatureStoreMetrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        Ok(Self {
            online_up: IntGauge::new(
                "online_store_up",
                "1 when the online store answers, 0 while reads fall back to the offline store",
            )?,
            cache_hits: IntCounter::new(
                "feature_cache_hits_total",
                "Online feature reads answered by the in-process cache",
            )?,
            cache_misses: IntCounter::new(
                "feature_cache_misses_total",
                "Online feature reads that went past the in-process cache",
            )?,
            offline_fallbacks: IntCounter::new(
                "online_store_fallbacks_total",
                "Entity reads served from the offline store (online store down or missing the entity)",
            )?,
            online_write_failures: IntCounter::new(
                "online_store_write_failures_total",
                "Online store writes that failed (the offline store keeps the data)",
            )?,
            dependencies: DependencyMetrics::new()?,
        })
    }

    pub fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        let mut all: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(self.online_up.clone()),
            Box::new(self.cache_hits.clone()),
            Box::new(self.cache_misses.clone()),
            Box::new(self.offline_fallbacks.clone()),
            Box::new(self.online_write_failures.clone()),
        ];
        all.extend(self.dependencies.collectors());
        all
    }
}

/// The operations timed on the online store (the `operation` of
/// `titanic_dependency_request_duration_seconds` and `titanic_dependency_errors_total`).
pub const ONLINE_OPERATIONS: &[&str] = &["read", "write"];
/// The operations timed on the database: health probes, offline feature reads, the request
/// log, feedback and the performance window's prediction reads.
pub const DATABASE_OPERATIONS: &[&str] = &[
    "ping",
    "write_probe",
    "read_features",
    "request_log_write",
    "feedback_write",
    "prediction_log_read",
];

/// Per-value freshness, named as in Feast's `get-online-features` response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FeatureStatus {
    Present,
    NullValue,
    NotFound,
    OutsideMaxAge,
}

/// Where a read was answered from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReadSource {
    /// The in-process cache (of online rows and of what the offline fallback read).
    Cache,
    OnlineStore,
    OfflineStore,
}

#[derive(Debug, thiserror::Error)]
pub enum FeatureReadError {
    #[error("online store failed ({online}) and so did the offline store ({offline})")]
    BothDown {
        online: OnlineError,
        offline: OfflineError,
    },
}

/// Rows of one view version for many entities, each with where it was read from.
#[derive(Debug, Clone)]
pub struct ViewRead {
    pub rows: Vec<Option<Arc<OnlineRow>>>,
    pub sources: Vec<ReadSource>,
}

/// The status and value of one feature of one entity.
pub fn status_of<'r>(
    row: Option<&'r OnlineRow>,
    feature: &str,
    ttl_secs: u64,
    now: Micros,
) -> (FeatureStatus, Option<&'r Value>) {
    let Some(row) = row else {
        return (FeatureStatus::NotFound, None);
    };
    let max_age = i64::try_from(ttl_secs.saturating_mul(1_000_000)).unwrap_or(i64::MAX);
    if ttl_secs > 0 && now.saturating_sub(row.event_time) > max_age {
        return (FeatureStatus::OutsideMaxAge, None);
    }
    match row.values.get(feature) {
        None | Some(Value::Null) => (FeatureStatus::NullValue, None),
        Some(v) => (FeatureStatus::Present, Some(v)),
    }
}

/// One feature's values for many entities.
#[derive(Debug, Clone)]
pub struct FeatureColumn {
    pub view: String,
    pub feature: String,
    pub values: Vec<Value>,
    pub statuses: Vec<FeatureStatus>,
    pub event_times: Vec<Option<Micros>>,
}

/// A stored passenger assembled from a feature service, ready for the model.
#[derive(Debug, Clone)]
pub struct ServedPassenger {
    pub passenger: Passenger,
    /// The oldest event time among the rows used.
    pub event_time: Micros,
    pub statuses: Vec<(String, FeatureStatus)>,
    /// Optional fields the model fills in because the stored rows give no usable value
    /// (absent, null or stale; a null `cabin` is a value, no cabin, unless it is stale).
    pub imputed: Vec<String>,
    pub source: ReadSource,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeFeaturesError {
    #[error(transparent)]
    Read(#[from] FeatureReadError),
    #[error("stored features of passenger {passenger_id} are not usable: {errors}")]
    Invalid {
        passenger_id: i64,
        errors: ValidationErrors,
    },
}

pub struct FeatureServer {
    online: Arc<dyn OnlineStore>,
    offline: OfflineStore,
    cache: Option<Cache<String, Cached>>,
    metrics: FeatureStoreMetrics,
    stale: StaleValues,
}

/// What the cache knows of an entity: its row (from the online store or the offline
/// fallback), or that neither store has one.
#[derive(Debug, Clone)]
enum Cached {
    Row(Arc<OnlineRow>),
    Missing,
}

fn cache_key(view: &ViewKey, entity: &str) -> String {
    format!("{}\u{1f}{}\u{1f}{entity}", view.name, view.version)
}

impl FeatureServer {
    /// `cache`: (entries, time to live) for an in-process cache in front of the online store.
    pub fn new(
        online: Arc<dyn OnlineStore>,
        offline: OfflineStore,
        cache: Option<(u64, Duration)>,
        metrics: FeatureStoreMetrics,
    ) -> Self {
        metrics.online_up.set(1);
        metrics
            .dependencies
            .declare(online.kind(), ONLINE_OPERATIONS);
        metrics
            .dependencies
            .declare(offline.backend().as_str(), DATABASE_OPERATIONS);
        Self {
            online,
            offline,
            cache: cache.map(|(entries, ttl)| {
                Cache::builder()
                    .max_capacity(entries)
                    .time_to_live(ttl)
                    .build()
            }),
            metrics,
            stale: StaleValues::default(),
        }
    }

    /// What serving does with stale optional values (`features.stale_values`).
    pub fn with_stale_values(mut self, stale: StaleValues) -> Self {
        self.stale = stale;
        self
    }

    pub fn online(&self) -> &dyn OnlineStore {
        self.online.as_ref()
    }

    pub fn offline(&self) -> &OfflineStore {
        &self.offline
    }

    pub fn metrics(&self) -> &FeatureStoreMetrics {
        &self.metrics
    }

    /// Pings the online store and records whether it is up.
    pub async fn check_online(&self) -> Result<(), OnlineError> {
        let result = self
            .metrics
            .dependencies
            .time(self.online.kind(), "ping", self.online.ping())
            .await;
        self.metrics.online_up.set(i64::from(result.is_ok()));
        result
    }

    /// The latest rows of `keys` for one view version: from the cache, else the online store,
    /// else the offline store's latest values as of now. The offline store answers for keys the
    /// online store does not have (never materialized, evicted, expired, or a Redis that lost
    /// its data) and for every key while the online store fails; what it answers, a row or
    /// none, is cached too. A cached row may hold more features than `features`.
    pub async fn read(
        &self,
        spec: &Versioned<FeatureViewSpec>,
        features: &[String],
        keys: &[String],
    ) -> Result<ViewRead, FeatureReadError> {
        let key = ViewKey::new(&spec.name, spec.version);
        let view = &key;
        let mut rows: Vec<Option<Arc<OnlineRow>>> = vec![None; keys.len()];
        let mut sources = vec![ReadSource::OnlineStore; keys.len()];
        let mut missing: Vec<usize> = Vec::with_capacity(keys.len());
        match &self.cache {
            Some(cache) => {
                for (i, key) in keys.iter().enumerate() {
                    match cache.get(&cache_key(view, key)) {
                        Some(cached) => {
                            self.metrics.cache_hits.inc();
                            if let Cached::Row(row) = cached {
                                rows[i] = Some(row);
                            }
                            sources[i] = ReadSource::Cache;
                        }
                        None => {
                            self.metrics.cache_misses.inc();
                            missing.push(i);
                        }
                    }
                }
            }
            None => missing.extend(0..keys.len()),
        }
        if missing.is_empty() {
            return Ok(ViewRead { rows, sources });
        }
        let wanted: Vec<String> = missing.iter().map(|&i| keys[i].clone()).collect();
        let online_read = self.online.read(view, &wanted);
        let deps = &self.metrics.dependencies;
        let (absent, online_error) = match deps.time(self.online.kind(), "read", online_read).await
        {
            Ok(found) => {
                self.metrics.online_up.set(1);
                let mut absent = Vec::new();
                for (&i, row) in missing.iter().zip(found) {
                    match row {
                        Some(row) => {
                            let row = Arc::new(row);
                            if let Some(cache) = &self.cache {
                                cache.insert(
                                    cache_key(view, &keys[i]),
                                    Cached::Row(Arc::clone(&row)),
                                );
                            }
                            rows[i] = Some(row);
                        }
                        None => absent.push(i),
                    }
                }
                (absent, None)
            }
            Err(e) => {
                self.metrics.online_up.set(0);
                (missing, Some(e))
            }
        };
        if absent.is_empty() {
            return Ok(ViewRead { rows, sources });
        }
        let refs: Vec<&str> = absent.iter().map(|&i| keys[i].as_str()).collect();
        let offline_read = self
            .offline
            .latest_of(spec, now_micros(), None, Some(&refs));
        let latest = match deps
            .time(
                self.offline.backend().as_str(),
                "read_features",
                offline_read,
            )
            .await
        {
            Ok(latest) => latest,
            Err(offline) => match online_error {
                Some(online) => return Err(FeatureReadError::BothDown { online, offline }),
                // The online store answered; without the offline store, what it lacks is
                // reported as not found.
                None => {
                    tracing::warn!(error = %offline, "offline store failed; online misses stay missing");
                    return Ok(ViewRead { rows, sources });
                }
            },
        };
        let mut by_key: std::collections::HashMap<String, OnlineRow> = latest
            .into_iter()
            .map(|r| {
                let row = OnlineRow {
                    event_time: r.event_time,
                    write_time: r.write_time,
                    values: r.values,
                };
                (r.entity_key, row)
            })
            .collect();
        // What the fallback read (a row, or that there is none) is cached like an online
        // row, so an entity the online store lacks (expired, never materialized, unknown)
        // costs one offline read per cache lifetime, not one per request.
        let mut served_offline = 0;
        for &i in &absent {
            let found = by_key.remove(&keys[i]).map(Arc::new);
            if let Some(cache) = &self.cache {
                let cached = found
                    .as_ref()
                    .map_or(Cached::Missing, |r| Cached::Row(Arc::clone(r)));
                cache.insert(cache_key(view, &keys[i]), cached);
            }
            if let Some(row) = found {
                rows[i] = Some(Arc::new(OnlineRow {
                    event_time: row.event_time,
                    write_time: row.write_time,
                    values: project(&row.values, features),
                }));
                sources[i] = ReadSource::OfflineStore;
                served_offline += 1;
            }
        }
        self.metrics.offline_fallbacks.inc_by(served_offline);
        Ok(ViewRead { rows, sources })
    }

    /// Writes rows to the online store and drops them from the cache. A failure is counted
    /// and returned; the offline store still holds the data for the next materialization.
    pub async fn write(
        &self,
        view: &ViewKey,
        ttl_secs: u64,
        rows: Vec<(String, OnlineRow)>,
    ) -> Result<(), OnlineError> {
        let keys: Vec<String> = rows.iter().map(|(k, _)| cache_key(view, k)).collect();
        let result = self
            .metrics
            .dependencies
            .time(
                self.online.kind(),
                "write",
                self.online.write(view, rows, ttl_secs),
            )
            .await;
        if let Some(cache) = &self.cache {
            for k in &keys {
                cache.invalidate(k);
            }
        }
        match &result {
            Ok(()) => self.metrics.online_up.set(1),
            Err(_) => {
                self.metrics.online_up.set(0);
                self.metrics.online_write_failures.inc();
            }
        }
        result
    }

    /// Feature values for many entities, one column per requested feature (Feast's
    /// `get-online-features`): one read per view version, statuses judged as of now.
    pub async fn online_features(
        &self,
        requests: &[(Versioned<FeatureViewSpec>, Vec<String>)],
        keys: &[String],
    ) -> Result<Vec<FeatureColumn>, FeatureReadError> {
        let now = now_micros();
        let mut columns = Vec::new();
        for (view, features) in requests {
            let read = self.read(view, features, keys).await?;
            for feature in features {
                let mut column = FeatureColumn {
                    view: view.name.clone(),
                    feature: feature.clone(),
                    values: Vec::with_capacity(keys.len()),
                    statuses: Vec::with_capacity(keys.len()),
                    event_times: Vec::with_capacity(keys.len()),
                };
                for row in &read.rows {
                    let (status, value) =
                        status_of(row.as_deref(), feature, view.spec.ttl_secs, now);
                    column.values.push(value.cloned().unwrap_or(Value::Null));
                    column.statuses.push(status);
                    column.event_times.push(row.as_ref().map(|r| r.event_time));
                }
                columns.push(column);
            }
        }
        Ok(columns)
    }

    /// Assembles stored passengers from the views of a feature service, as of now.
    pub async fn passengers(
        &self,
        service: &ServiceViews,
        ids: &[i64],
    ) -> Result<Vec<Result<Option<ServedPassenger>, ServeFeaturesError>>, FeatureReadError> {
        let keys: Vec<String> = ids.iter().map(i64::to_string).collect();
        let mut per_view = Vec::with_capacity(service.views.len());
        for (projection, view) in service.projections() {
            per_view.push(self.read(view, &projection.features, &keys).await?);
        }
        let now = now_micros();
        Ok(ids
            .iter()
            .enumerate()
            .map(|(i, &id)| {
                let rows: Vec<Option<&OnlineRow>> =
                    per_view.iter().map(|r| r.rows[i].as_deref()).collect();
                // The least direct source used for any of its views.
                let source = per_view
                    .iter()
                    .map(|r| r.sources[i])
                    .max_by_key(|s| match s {
                        ReadSource::Cache => 0,
                        ReadSource::OnlineStore => 1,
                        ReadSource::OfflineStore => 2,
                    })
                    .unwrap_or(ReadSource::OnlineStore);
                service.assemble(id, &rows, now, source, self.stale)
            })
            .collect())
    }
}

/// A feature service version with the view versions it reads, resolved from the registry.
#[derive(Debug, Clone)]
pub struct ServiceViews {
    pub service: Versioned<FeatureServiceSpec>,
    /// One per `service.spec.views` entry, in the same order.
    pub views: Vec<Versioned<FeatureViewSpec>>,
}

/// The optional passenger fields: without a usable value, the model imputes them (a missing
/// `cabin` reads as no cabin).
const IMPUTED_FIELDS: &[&str] = &["age", "fare", "embarked", "name", "ticket", "cabin"];

/// Passenger fields a feature service may provide, and those it must.
const PASSENGER_FIELDS: &[&str] = &[
    "pclass", "sex", "age", "sibsp", "parch", "fare", "embarked", "name", "ticket", "cabin",
];
const REQUIRED_PASSENGER_FIELDS: &[&str] = &["pclass", "sex", "sibsp", "parch"];

impl ServiceViews {
    pub fn projections(
        &self,
    ) -> impl Iterator<
        Item = (
            &super::registry::ViewProjection,
            &Versioned<FeatureViewSpec>,
        ),
    > {
        self.service.spec.views.iter().zip(&self.views)
    }

    /// Checks that the passenger pipeline can be fed from this service: every feature it
    /// lists is a passenger field of the right type, and the required fields are all there.
    pub fn check_produces_passengers(&self) -> Result<(), String> {
        let mut provided = Vec::new();
        for (projection, view) in self.projections() {
            if view.spec.entity != super::registry::PASSENGER {
                return Err(format!(
                    "view {} is keyed by {:?}, not by passenger",
                    view.name, view.spec.entity
                ));
            }
            for f in &projection.features {
                if !PASSENGER_FIELDS.contains(&f.as_str()) {
                    return Err(format!(
                        "feature {}:{f} is not a passenger field the pipeline knows",
                        view.name
                    ));
                }
                provided.push(f.as_str());
            }
        }
        let missing: Vec<&str> = REQUIRED_PASSENGER_FIELDS
            .iter()
            .copied()
            .filter(|f| !provided.contains(f))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("service does not provide {}", missing.join(", ")))
        }
    }

    /// One passenger from its rows (one per view, `None` where the view has none), judged as
    /// of `now`: the same code path for serving (now) and for training sets (as of a time).
    /// A stale value is never used; with [`StaleValues::Refuse`] a stale optional value makes
    /// the passenger unusable too, each stale field named.
    pub fn assemble(
        &self,
        id: i64,
        rows: &[Option<&OnlineRow>],
        now: Micros,
        source: ReadSource,
        stale_values: StaleValues,
    ) -> Result<Option<ServedPassenger>, ServeFeaturesError> {
        if rows.iter().all(Option::is_none) {
            return Ok(None);
        }
        let mut values = Values::new();
        let mut statuses = Vec::new();
        let mut event_time = Micros::MAX;
        for ((projection, view), row) in self.projections().zip(rows) {
            if let Some(r) = row {
                event_time = event_time.min(r.event_time);
            }
            for feature in &projection.features {
                let (status, value) = status_of(*row, feature, view.spec.ttl_secs, now);
                statuses.push((feature.clone(), status));
                if let Some(v) = value {
                    values.insert(feature.clone(), v.clone());
                }
            }
        }
        values.insert("passenger_id".to_owned(), Value::from(id));
        let stale: Vec<&str> = statuses
            .iter()
            .filter(|(_, s)| *s == FeatureStatus::OutsideMaxAge)
            .map(|(f, _)| f.as_str())
            .collect();
        if stale_values == StaleValues::Refuse && !stale.is_empty() {
            let errors = stale
                .iter()
                .map(|f| FieldError {
                    field: (*f).to_owned(),
                    message: "is outside its view's max age (features.stale_values = \"refuse\")"
                        .to_owned(),
                })
                .collect();
            return Err(ServeFeaturesError::Invalid {
                passenger_id: id,
                errors: ValidationErrors(errors),
            });
        }
        let imputed = statuses
            .iter()
            .filter(|(f, s)| match s {
                FeatureStatus::Present => false,
                FeatureStatus::NullValue => f != "cabin",
                FeatureStatus::NotFound | FeatureStatus::OutsideMaxAge => true,
            })
            .filter(|(f, _)| IMPUTED_FIELDS.contains(&f.as_str()))
            .map(|(f, _)| f.clone())
            .collect();
        serde_json::from_value::<RawPassenger>(Value::Object(values))
            .map_err(|e| ValidationErrors::single("features", e.to_string()))
            .and_then(RawPassenger::validate)
            .map_err(|mut errors| {
                for e in &mut errors.0 {
                    if stale.contains(&e.field.as_str()) {
                        e.message = "is outside its view's max age".to_owned();
                    }
                }
                ServeFeaturesError::Invalid {
                    passenger_id: id,
                    errors,
                }
            })
            .map(|passenger| {
                Some(ServedPassenger {
                    passenger,
                    event_time,
                    statuses,
                    imputed,
                    source,
                })
            })
    }
}

/// Only the named features of a row.
pub fn project(values: &Values, features: &[String]) -> Values {
    features
        .iter()
        .filter_map(|f| values.get(f).map(|v| (f.clone(), v.clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(t: Micros) -> OnlineRow {
        OnlineRow {
            event_time: t,
            write_time: t,
            values: json!({"age": 30, "fare": null})
                .as_object()
                .unwrap()
                .clone(),
        }
    }

    #[test]
    fn statuses_follow_feast() {
        let r = row(1_000_000);
        assert_eq!(
            status_of(Some(&r), "age", 0, 10_000_000_000).0,
            FeatureStatus::Present
        );
        assert_eq!(
            status_of(Some(&r), "fare", 0, 0).0,
            FeatureStatus::NullValue
        );
        assert_eq!(
            status_of(Some(&r), "cabin", 0, 0).0,
            FeatureStatus::NullValue
        );
        assert_eq!(status_of(None, "age", 0, 0).0, FeatureStatus::NotFound);
        // 10 s max age: fresh at 11 s, stale just after.
        assert_eq!(
            status_of(Some(&r), "age", 10, 11_000_000).0,
            FeatureStatus::Present
        );
        let (stale, value) = status_of(Some(&r), "age", 10, 11_000_001);
        assert_eq!((stale, value), (FeatureStatus::OutsideMaxAge, None));
    }

    /// The built-in demographics view without `age`, and `age` from a view whose values go
    /// stale after 10 s.
    fn service_with_a_stale_age() -> ServiceViews {
        use super::super::registry::{DEMOGRAPHICS, ViewProjection, builtin_views};
        let demographics = builtin_views()
            .into_iter()
            .find(|v| v.name == DEMOGRAPHICS)
            .unwrap();
        let mut ages = demographics.clone();
        ages.name = "ages".into();
        ages.ttl_secs = 10;
        fn versioned<T>(name: &str, spec: T) -> Versioned<T> {
            Versioned {
                name: name.to_owned(),
                version: 1,
                created_at: String::new(),
                created_by: String::new(),
                spec,
            }
        }
        let others = [
            "pclass", "sex", "sibsp", "parch", "fare", "embarked", "name", "ticket",
        ];
        let spec = FeatureServiceSpec {
            name: "s".into(),
            description: String::new(),
            owner: String::new(),
            views: vec![
                ViewProjection {
                    view: DEMOGRAPHICS.into(),
                    version: 1,
                    features: others.map(String::from).to_vec(),
                },
                ViewProjection {
                    view: "ages".into(),
                    version: 1,
                    features: vec!["age".into()],
                },
            ],
        };
        ServiceViews {
            service: versioned("s", spec),
            views: vec![
                versioned(DEMOGRAPHICS, demographics),
                versioned("ages", ages),
            ],
        }
    }

    #[test]
    fn a_stale_optional_value_is_imputed_and_said_so_or_refused() {
        let service = service_with_a_stale_age();
        let person = OnlineRow {
            event_time: 0,
            write_time: 0,
            values: json!({"pclass": 3, "sex": "male", "sibsp": 0, "parch": 0, "fare": 7.25,
                           "embarked": "S", "name": "Braund, Mr. Owen Harris", "ticket": "A/5"})
            .as_object()
            .unwrap()
            .clone(),
        };
        let age = row(0);
        let rows = [Some(&person), Some(&age)];
        let assemble =
            |now, stale| service.assemble(892, &rows, now, ReadSource::OnlineStore, stale);

        let fresh = assemble(5_000_000, StaleValues::Refuse).unwrap().unwrap();
        assert_eq!(fresh.passenger.age, Some(30.0));
        assert!(fresh.imputed.is_empty(), "{:?}", fresh.imputed);

        let imputed = assemble(11_000_001, StaleValues::Impute).unwrap().unwrap();
        assert_eq!(imputed.passenger.age, None, "a stale value is never used");
        assert_eq!(
            imputed.imputed,
            ["age"],
            "the model fills it in, and says so"
        );
        assert!(
            imputed
                .statuses
                .contains(&("age".to_owned(), FeatureStatus::OutsideMaxAge))
        );

        match assemble(11_000_001, StaleValues::Refuse) {
            Err(ServeFeaturesError::Invalid { errors, .. }) => {
                assert_eq!(errors.0.len(), 1);
                assert_eq!(errors.0[0].field, "age");
                assert!(
                    errors.0[0].message.contains("max age"),
                    "{}",
                    errors.0[0].message
                );
            }
            other => panic!("expected a refusal, got {other:?}"),
        }

        // A passenger without a fare (null): imputed, and a null cabin is no cabin.
        let mut no_fare = person.clone();
        no_fare.values.insert("fare".into(), Value::Null);
        let rows = [Some(&no_fare), Some(&age)];
        let served = service
            .assemble(
                892,
                &rows,
                5_000_000,
                ReadSource::OnlineStore,
                StaleValues::Refuse,
            )
            .unwrap()
            .unwrap();
        assert_eq!(served.imputed, ["fare"]);
    }

    crate::core::db::testing::on_both_backends! {
        async fn what_the_fallback_read_is_cached_rows_and_misses(pool) {
            use crate::feature_store::offline::NewRow;
            use crate::feature_store::online::InProcessStore;
            let server = FeatureServer::new(
                Arc::new(InProcessStore::new()),
                OfflineStore::new(pool),
                Some((100, Duration::from_secs(60))),
                FeatureStoreMetrics::new().unwrap(),
            );
            let row = NewRow {
                entity_key: "1".into(),
                event_time: 5,
                values: json!({"age": 30, "fare": 7.25}).as_object().unwrap().clone(),
            };
            server.offline().append("v", 1, &[row], "t").await.unwrap();
            let spec = crate::feature_store::registry::test_view(
                "v",
                1,
                json!([{"name": "age", "value_type": "int64"}, {"name": "fare", "value_type": "float64"}]),
            );
            let view = ViewKey::new("v", 1);
            let keys = ["1".to_owned(), "2".to_owned()];
            let features = ["age".to_owned()];
            let first = server.read(&spec, &features, &keys).await.unwrap();
            assert_eq!(first.sources[0], ReadSource::OfflineStore);
            assert_eq!(Value::Object(first.rows[0].as_ref().unwrap().values.clone()), json!({"age": 30}));
            assert!(first.rows[1].is_none());
            let fallbacks = || server.metrics().offline_fallbacks.get();
            assert_eq!(fallbacks(), 1);
            let hits = server.metrics().cache_hits.get();
            // Again: both answered by the cache, the row and the miss, with no offline read.
            let again = server.read(&spec, &features, &keys).await.unwrap();
            assert_eq!(again.sources, [ReadSource::Cache, ReadSource::Cache]);
            assert_eq!(again.rows[0].as_ref().unwrap().values["age"], 30);
            assert!(again.rows[1].is_none());
            assert_eq!(fallbacks(), 1);
            assert_eq!(server.metrics().cache_hits.get(), hits + 2);
            // Another projection of the same cached row still has its features.
            let fare = server.read(&spec, &["fare".to_owned()], &keys[..1]).await.unwrap();
            assert_eq!(fare.rows[0].as_ref().unwrap().values["fare"], 7.25);
            // A write through this server drops the cached miss.
            let pushed = OnlineRow { event_time: 9, write_time: 9, values: json!({"age": 4}).as_object().unwrap().clone() };
            server.write(&view, 0, vec![("2".into(), pushed)]).await.unwrap();
            let after = server.read(&spec, &features, &keys[1..]).await.unwrap();
            assert_eq!(after.rows[0].as_ref().unwrap().values["age"], 4);
        }
    }

    #[test]
    fn projection_keeps_only_named_features() {
        let values = json!({"a": 1, "b": 2}).as_object().unwrap().clone();
        let p = project(&values, &["b".to_owned(), "c".to_owned()]);
        assert_eq!(Value::Object(p), json!({"b": 2}));
    }
}
