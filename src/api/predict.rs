//! `POST /predict` and `POST /predict/batch` (scope `predict`).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

use super::error::ApiError;
use super::extract::{ApiJson, Object};
use super::state::AppState;
use crate::core::time::micros_to_rfc3339;
use crate::feature_store::serving::{
    FeatureStatus, ReadSource, ServeFeaturesError, ServedPassenger,
};
use crate::feature_store::{
    FEATURE_NAMES, FeatureVector, FieldError, Passenger, RawPassenger, ValidationErrors,
};
use crate::ml::{Model, Served};

/// Per-feature contributions, serialized as `{"feature": value, ...}` without allocating.
#[derive(Debug, Clone, Copy)]
pub struct Contributions(pub FeatureVector);

impl Serialize for Contributions {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(FEATURE_NAMES.len()))?;
        for (name, value) in FEATURE_NAMES.iter().zip(self.0.iter()) {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// Where the features of a stored passenger came from, and how fresh each was.
#[derive(Debug, Serialize)]
pub struct FeatureProvenance {
    pub source: ReadSource,
    /// Event time of the oldest row used (RFC 3339).
    pub event_time: String,
    pub statuses: BTreeMap<String, FeatureStatus>,
}

impl FeatureProvenance {
    fn of(served: &ServedPassenger) -> Self {
        Self {
            source: served.source,
            event_time: micros_to_rfc3339(served.event_time),
            statuses: served.statuses.iter().cloned().collect(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct PredictionResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passenger_id: Option<i64>,
    pub survived: bool,
    pub probability: f64,
    pub model_version: Arc<str>,
    /// intercept + sum(contributions)
    pub logit: f64,
    pub intercept: f64,
    pub contributions: Contributions,
    /// For a passenger looked up by id: the feature source and per-feature freshness.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub features: Option<FeatureProvenance>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    pub instances: Vec<Object<RawPassenger>>,
}

#[derive(Debug, Serialize)]
pub struct BatchResponse {
    pub model_version: Arc<str>,
    pub predictions: Vec<PredictionResponse>,
}

/// What one request instance asks to score.
enum Subject {
    Features(Option<i64>, Passenger),
    Stored(i64),
}

/// Features given inline win; an instance with only `passenger_id` is looked up.
fn subject(raw: RawPassenger) -> Result<Subject, ValidationErrors> {
    match raw.passenger_id {
        Some(id) if raw.has_no_features() => Ok(Subject::Stored(id)),
        id => raw.validate().map(|p| Subject::Features(id, p)),
    }
}

fn current(state: &AppState) -> Result<Arc<Served>, ApiError> {
    state
        .models
        .current()
        .ok_or_else(|| ApiError::Unavailable("no model is loaded yet".to_owned()))
}

fn score(
    state: &AppState,
    model: &Model,
    id: Option<i64>,
    p: &Passenger,
    features: Option<FeatureProvenance>,
) -> PredictionResponse {
    let prediction = model.predict(p);
    state
        .metrics
        .record_prediction(prediction.survived(), model.version());
    PredictionResponse {
        passenger_id: id,
        survived: prediction.survived(),
        probability: prediction.probability,
        model_version: Arc::clone(model.version()),
        logit: prediction.logit,
        intercept: model.intercept(),
        contributions: Contributions(prediction.contributions),
        features,
    }
}

/// Looks up stored passengers through the served feature service: one read per view for
/// all ids. Each id gets its passenger, or the errors naming what is wrong (prefixed by
/// `field_prefix(i)`).
async fn stored(
    state: &AppState,
    served: &Served,
    ids: &[i64],
    field_prefix: impl Fn(usize) -> String,
) -> Result<Vec<Result<ServedPassenger, Vec<FieldError>>>, ApiError> {
    let found = state
        .features
        .passengers(&served.features, ids)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(found
        .into_iter()
        .zip(ids)
        .enumerate()
        .map(|(i, (result, id))| match result {
            Ok(Some(p)) => Ok(p),
            Ok(None) => Err(vec![FieldError {
                field: format!("{}passenger_id", field_prefix(i)),
                message: format!("no passenger with id {id}"),
            }]),
            Err(ServeFeaturesError::Invalid { errors, .. }) => Err(errors
                .0
                .into_iter()
                .map(|e| FieldError {
                    field: format!("{}stored_features.{}", field_prefix(i), e.field),
                    message: e.message,
                })
                .collect()),
            Err(ServeFeaturesError::Read(e)) => Err(vec![FieldError {
                field: format!("{}passenger_id", field_prefix(i)),
                message: e.to_string(),
            }]),
        })
        .collect())
}

/// `POST /predict`: one passenger's features, or `{"passenger_id": N}` for a stored one
/// (404 when unknown).
pub async fn predict(
    State(state): State<AppState>,
    ApiJson(Object(raw)): ApiJson<Object<RawPassenger>>,
) -> Result<ApiJson<PredictionResponse>, ApiError> {
    let subject = subject(raw)?;
    let served = current(&state)?;
    let response = match subject {
        Subject::Features(id, p) => score(&state, &served.model, id, &p, None),
        Subject::Stored(id) => {
            let mut found = stored(&state, &served, &[id], |_| String::new()).await?;
            match found.pop() {
                Some(Ok(p)) => score(
                    &state,
                    &served.model,
                    Some(id),
                    &p.passenger,
                    Some(FeatureProvenance::of(&p)),
                ),
                Some(Err(errors)) if errors[0].field == "passenger_id" => {
                    return Err(ApiError::NotFound(errors[0].message.clone()));
                }
                Some(Err(errors)) => return Err(ApiError::Validation(ValidationErrors(errors))),
                None => return Err(ApiError::NotFound(format!("no passenger with id {id}"))),
            }
        }
    };
    Ok(ApiJson(response))
}

/// `POST /predict/batch`: `{"instances": [...]}` scored by one model version, in order.
/// Every invalid instance is named (`instances[3].age`, `instances[5].passenger_id`); nothing
/// is scored unless all are valid. Stored passengers are read in one round trip per view.
pub async fn predict_batch(
    State(state): State<AppState>,
    ApiJson(batch): ApiJson<BatchRequest>,
) -> Result<ApiJson<BatchResponse>, ApiError> {
    if batch.instances.len() > state.limits.max_batch_size {
        return Err(ApiError::Validation(ValidationErrors::single(
            "instances",
            format!(
                "at most {} instances per request, got {}",
                state.limits.max_batch_size,
                batch.instances.len()
            ),
        )));
    }
    let mut subjects = Vec::with_capacity(batch.instances.len());
    let mut errors = Vec::new();
    for (i, Object(raw)) in batch.instances.into_iter().enumerate() {
        match subject(raw) {
            Ok(s) => subjects.push(s),
            Err(e) => errors.extend(e.prefixed(&format!("instances[{i}]")).0),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(ValidationErrors(errors)));
    }
    let served = current(&state)?;
    let positions: Vec<usize> = subjects
        .iter()
        .enumerate()
        .filter(|(_, s)| matches!(s, Subject::Stored(_)))
        .map(|(i, _)| i)
        .collect();
    let ids: Vec<i64> = positions
        .iter()
        .filter_map(|&i| match subjects[i] {
            Subject::Stored(id) => Some(id),
            Subject::Features(..) => None,
        })
        .collect();
    let mut lookups = if ids.is_empty() {
        Vec::new()
    } else {
        stored(&state, &served, &ids, |k| {
            format!("instances[{}].", positions[k])
        })
        .await?
    }
    .into_iter();
    let mut resolved = Vec::with_capacity(subjects.len());
    for s in subjects {
        match s {
            Subject::Features(id, p) => resolved.push((id, p, None)),
            Subject::Stored(id) => match lookups.next() {
                Some(Ok(p)) => {
                    let provenance = FeatureProvenance::of(&p);
                    resolved.push((Some(id), p.passenger, Some(provenance)));
                }
                Some(Err(e)) => errors.extend(e),
                None => {}
            },
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(ValidationErrors(errors)));
    }
    let predictions = resolved
        .into_iter()
        .map(|(id, p, provenance)| score(&state, &served.model, id, &p, provenance))
        .collect();
    Ok(ApiJson(BatchResponse {
        model_version: Arc::clone(served.model.version()),
        predictions,
    }))
}
