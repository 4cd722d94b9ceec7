//! `POST /predict` and `POST /predict/batch` (scope `predict`).

use std::sync::Arc;

use axum::extract::State;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

use super::error::ApiError;
use super::extract::{ApiJson, Object};
use super::state::AppState;
use crate::feature_store::{
    FEATURE_NAMES, FeatureVector, FieldError, Passenger, RawPassenger, ValidationErrors,
};
use crate::ml::{Model, Prediction};

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
}

impl PredictionResponse {
    fn new(passenger_id: Option<i64>, p: &Prediction, model: &Model) -> Self {
        Self {
            passenger_id,
            survived: p.survived(),
            probability: p.probability,
            model_version: Arc::clone(model.version()),
            logit: p.logit,
            intercept: model.intercept(),
            contributions: Contributions(p.contributions),
        }
    }
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

/// A passenger given inline or shared from the online store.
enum Shared {
    Owned(Passenger),
    Stored(Arc<Passenger>),
}

impl Shared {
    fn get(&self) -> &Passenger {
        match self {
            Shared::Owned(p) => p,
            Shared::Stored(p) => p,
        }
    }
}

/// What one request instance asks to score.
enum Subject {
    Features(Option<i64>, Passenger),
    Stored(i64),
}

impl Subject {
    /// The stored id asked for (0 for inline features, which always resolve).
    fn stored_id(&self) -> i64 {
        match self {
            Subject::Stored(id) => *id,
            Subject::Features(..) => 0,
        }
    }
}

/// Features given inline win; an instance with only `passenger_id` is looked up.
fn subject(raw: RawPassenger) -> Result<Subject, ValidationErrors> {
    match raw.passenger_id {
        Some(id) if raw.has_no_features() => Ok(Subject::Stored(id)),
        id => raw.validate().map(|p| Subject::Features(id, p)),
    }
}

fn current_model(state: &AppState) -> Result<Arc<Model>, ApiError> {
    state
        .models
        .current()
        .ok_or_else(|| ApiError::Unavailable("no model is loaded yet".to_owned()))
}

fn score(state: &AppState, model: &Model, id: Option<i64>, p: &Passenger) -> PredictionResponse {
    let prediction = model.predict(p);
    state
        .metrics
        .record_prediction(prediction.survived(), model.version());
    PredictionResponse::new(id, &prediction, model)
}

/// The passenger to score, with the id to echo; `None` when a stored id is unknown.
async fn resolve(
    state: &AppState,
    subject: Subject,
) -> Result<Option<(Option<i64>, Shared)>, ApiError> {
    Ok(match subject {
        Subject::Features(id, p) => Some((id, Shared::Owned(p))),
        Subject::Stored(id) => state
            .online
            .get(id)
            .await?
            .map(|p| (Some(id), Shared::Stored(p))),
    })
}

/// `POST /predict`: one passenger's features, or `{"passenger_id": N}` for a stored one.
pub async fn predict(
    State(state): State<AppState>,
    ApiJson(Object(raw)): ApiJson<Object<RawPassenger>>,
) -> Result<ApiJson<PredictionResponse>, ApiError> {
    let subject = subject(raw)?;
    let wanted = match &subject {
        Subject::Stored(id) => Some(*id),
        Subject::Features(..) => None,
    };
    let (id, passenger) = resolve(&state, subject).await?.ok_or_else(|| {
        ApiError::NotFound(format!(
            "no passenger with id {}",
            wanted.unwrap_or_default()
        ))
    })?;
    let model = current_model(&state)?;
    Ok(ApiJson(score(&state, &model, id, passenger.get())))
}

/// `POST /predict/batch`: `{"instances": [...]}` scored by one model version, in order.
/// Every invalid instance is named (`instances[3].age`); nothing is scored unless all are valid.
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
    // Resolve stored passengers first, naming every unknown id.
    let mut passengers = Vec::with_capacity(subjects.len());
    for (i, subject) in subjects.into_iter().enumerate() {
        let wanted = subject.stored_id();
        match resolve(&state, subject).await? {
            Some(found) => passengers.push(found),
            None => errors.push(FieldError {
                field: format!("instances[{i}].passenger_id"),
                message: format!("no passenger with id {wanted}"),
            }),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(ValidationErrors(errors)));
    }
    let model = current_model(&state)?;
    let predictions = passengers
        .into_iter()
        .map(|(id, p)| score(&state, &model, id, p.get()))
        .collect();
    Ok(ApiJson(BatchResponse {
        model_version: Arc::clone(model.version()),
        predictions,
    }))
}
