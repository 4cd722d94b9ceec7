//! `POST /predict` and `POST /predict/batch` (scope `predict`).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{FromRequest, Request, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

use super::error::ApiError;
use super::extract::{ApiJson, JsonBody, Object, Requested};
use super::responses::{BadVersionHeader, CannotScore};
use super::routing::{self, Choice};
use super::state::AppState;
use crate::core::json::{JsonWriter, WriteJson};
use crate::core::time::micros_to_rfc3339;
use crate::feature_store::retrieval::{
    FeatureStatus, ReadSource, ServeFeaturesError, ServedPassenger,
};
use crate::feature_store::{
    FEATURE_NAMES, FeatureVector, FieldError, Passenger, RawPassenger, ValidationErrors,
};
use crate::ml::Served;
use crate::monitoring::{Record, RequestInfo};

/// Online and batch prediction.
pub fn routes(protect: &super::Protect) -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(protect.route(utoipa_axum::routes!(predict)))
        .routes(protect.route(utoipa_axum::routes!(predict_batch)))
}

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
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FeatureProvenance {
    pub source: ReadSource,
    /// Event time of the oldest row used (RFC 3339).
    #[schema(format = DateTime)]
    pub event_time: String,
    pub statuses: BTreeMap<String, FeatureStatus>,
    /// Optional fields the model filled in (imputed) because the stored rows gave no usable
    /// value: absent, null or stale (`OUTSIDE_MAX_AGE` in `statuses`). A null `cabin` is a
    /// value (no cabin) and is not listed unless it is stale.
    pub imputed: Vec<String>,
}

impl FeatureProvenance {
    fn of(served: &ServedPassenger) -> Self {
        Self {
            source: served.source,
            event_time: micros_to_rfc3339(served.event_time),
            statuses: served.statuses.iter().cloned().collect(),
            imputed: served.imputed.clone(),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PredictionResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passenger_id: Option<i64>,
    pub survived: bool,
    #[schema(minimum = 0, maximum = 1)]
    pub probability: f64,
    #[schema(value_type = String)]
    pub model_version: Arc<str>,
    /// intercept + sum(contributions)
    pub logit: f64,
    pub intercept: f64,
    pub contributions: Contributions,
    /// For a passenger looked up by id: the feature source and per-feature freshness.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub features: Option<FeatureProvenance>,
}

/// The JSON of a response, written directly: the same bytes as the `Serialize` derive (tested
/// below), without escaping the constant keys for every request.
impl WriteJson for PredictionResponse {
    fn write_json(&self, out: &mut JsonWriter) {
        out.begin_object();
        if let Some(id) = self.passenger_id {
            out.key("passenger_id").i64(id);
        }
        out.key("survived")
            .bool(self.survived)
            .key("probability")
            .f64(self.probability)
            .key("model_version")
            .str(&self.model_version)
            .key("logit")
            .f64(self.logit)
            .key("intercept")
            .f64(self.intercept)
            .key("contributions")
            .begin_object();
        for (name, value) in FEATURE_NAMES.iter().zip(self.contributions.0.iter()) {
            out.key(name).f64(*value);
        }
        out.end_object();
        if let Some(features) = &self.features {
            out.key("features").serialized(features);
        }
        out.end_object();
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// Passengers in the `POST /predict` form, at most `server.max_batch_size`.
    #[schema(value_type = Vec<super::openapi::PassengerInput>)]
    pub instances: Vec<Object<RawPassenger>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BatchResponse {
    #[schema(value_type = String)]
    pub model_version: Arc<str>,
    pub predictions: Vec<PredictionResponse>,
}

impl WriteJson for BatchResponse {
    fn write_json(&self, out: &mut JsonWriter) {
        out.begin_object()
            .key("model_version")
            .str(&self.model_version)
            .key("predictions")
            .begin_array();
        for prediction in &self.predictions {
            out.element();
            prediction.write_json(out);
        }
        out.end_array().end_object();
    }
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

fn score(
    state: &AppState,
    choice: &Choice,
    id: Option<i64>,
    p: &Passenger,
    features: Option<FeatureProvenance>,
) -> PredictionResponse {
    let model = &choice.served.model;
    let prediction = model.predict(p);
    state
        .metrics
        .record_prediction(prediction.survived(), model.version());
    if let Some(shadow) = &choice.shadow {
        routing::shadow_compare(state, &shadow.model, p, &prediction);
    }
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

/// Scores passengers (inline features or stored ids) with the chosen model, in order, and
/// hands them to monitoring (drift, performance, request log). Every
/// invalid input is named, with `name(i)` as the prefix of input `i` (`instances[3]`);
/// nothing is scored unless all are valid. Stored passengers are read in one round trip per
/// view.
pub(crate) async fn predict_all(
    state: &AppState,
    request: &RequestInfo,
    choice: &Choice,
    raws: Vec<RawPassenger>,
    name: impl Fn(usize) -> String,
) -> Result<Vec<PredictionResponse>, ApiError> {
    let rows = raws.len();
    let result = score_all(state, request, choice, raws, name).await;
    // The V2 statistics: every request a model version scored or failed, by any route.
    state.monitor.inference.record(
        choice.served.model.version(),
        rows,
        result.is_ok(),
        request.started.elapsed(),
    );
    result
}

async fn score_all(
    state: &AppState,
    request: &RequestInfo,
    choice: &Choice,
    raws: Vec<RawPassenger>,
    name: impl Fn(usize) -> String,
) -> Result<Vec<PredictionResponse>, ApiError> {
    let mut subjects = Vec::with_capacity(raws.len());
    let mut errors = Vec::new();
    for (i, raw) in raws.into_iter().enumerate() {
        match subject(raw) {
            Ok(s) => subjects.push(s),
            Err(e) => errors.extend(e.prefixed(&name(i)).0),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(ValidationErrors(errors)));
    }
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
        stored(state, &choice.served, &ids, |k| {
            let prefix = name(positions[k]);
            if prefix.is_empty() {
                prefix
            } else {
                format!("{prefix}.")
            }
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
    let mut predictions = Vec::with_capacity(resolved.len());
    let mut records = Vec::with_capacity(resolved.len());
    for (position, (id, p, provenance)) in resolved.into_iter().enumerate() {
        let prediction = score(state, choice, id, &p, provenance);
        records.push(Record {
            position: u32::try_from(position).unwrap_or(u32::MAX),
            passenger_id: id,
            passenger: p,
            probability: prediction.probability,
            model_version: Arc::clone(&prediction.model_version),
        });
        predictions.push(prediction);
    }
    state.monitor.record(request, records, true);
    Ok(predictions)
}

/// `POST /predict`: one passenger's features, or `{"passenger_id": N}` for a stored one
/// (404 when unknown). The model is production, the experiment's candidate, or the version
/// named by the `x-model-version` header.
#[utoipa::path(
    post,
    path = "/predict",
    security(("bearerAuth" = ["predict"])),
    tag = "predict",
    summary = "Score one passenger",
    params(super::openapi::ModelVersionHeader),
    request_body = super::openapi::PassengerInput,
    responses(
        (status = 200, description = "The prediction.", body = PredictionResponse),
        BadVersionHeader,
        (status = 404, description = "No stored passenger with this `passenger_id`, or no model version named by `x-model-version`.", body = super::error::ErrorBody),
        (status = 422, description = "Invalid passenger fields (each named in `details.fields`), or a pinned version that cannot be served.", body = super::error::ErrorBody),
        CannotScore,
    )
)]
pub async fn predict(
    State(state): State<AppState>,
    headers: HeaderMap,
    Requested(request): Requested,
    ApiJson(Object(raw)): ApiJson<Object<RawPassenger>>,
) -> Result<JsonBody<PredictionResponse>, ApiError> {
    let choice = routing::choose(&state, &headers, None).await?;
    let stored_id = raw.passenger_id.filter(|_| raw.has_no_features());
    match predict_all(&state, &request, &choice, vec![raw], |_| String::new()).await {
        Ok(mut predictions) => predictions
            .pop()
            .map(JsonBody)
            .ok_or_else(|| ApiError::Internal("no prediction".to_owned())),
        // A single unknown id is a missing resource, not invalid input.
        Err(ApiError::Validation(errors))
            if stored_id.is_some()
                && errors.0.len() == 1
                && errors.0[0].field == "passenger_id" =>
        {
            Err(ApiError::NotFound(errors.0[0].message.clone()))
        }
        Err(e) => Err(e),
    }
}

/// `POST /predict/batch`: `{"instances": [...]}` scored by one model version, in order; or,
/// with `Content-Type: text/csv`, a streamed Kaggle-format CSV of any size.
#[utoipa::path(
    post,
    path = "/predict/batch",
    security(("bearerAuth" = ["predict"])),
    tag = "predict",
    summary = "Score several passengers (JSON), or stream a Kaggle-format CSV",
    description = "JSON: `{\"instances\": [...]}` scored by one model version, in order. \
        CSV (`Content-Type: text/csv`): a Kaggle `test.csv`-format file of any size, answered \
        as it is scored with `PassengerId,Survived,Probability` rows; the body limit does not \
        apply. A row that cannot be scored ends the streamed response with a last line \
        `error: line N: ...` (the status is already 200 then).",
    params(super::openapi::ModelVersionHeader),
    request_body(content(
        (BatchRequest = "application/json", example = json!({"instances": [
            {"passenger_id": 892},
            {"pclass": 1, "sex": "female", "age": 38, "sibsp": 1, "parch": 0}
        ]})),
        (super::openapi::CsvInput = "text/csv"),
    )),
    responses(
        (status = 200, description = "The predictions, in request order (JSON), or the streamed CSV.",
            content(
                (BatchResponse = "application/json"),
                (super::openapi::CsvOutput = "text/csv"),
            ),
            headers(("x-model-version" = String, description = "The version that scored a CSV batch (CSV responses only)."))),
        BadVersionHeader,
        (status = 404, description = "No model version named by `x-model-version`.", body = super::error::ErrorBody),
        (status = 422, description = "Too many instances, invalid fields or unknown stored ids (each named in `details.fields`), a pinned version that cannot be served, or a CSV whose header lacks a column.", body = super::error::ErrorBody),
        CannotScore,
    )
)]
pub async fn predict_batch(
    State(state): State<AppState>,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let request = Requested::of(&parts);
    if super::middleware::is_csv(&headers) {
        return super::stream::predict_csv(state, request, &headers, body).await;
    }
    let req = Request::from_parts(parts, body);
    let ApiJson(Object(batch)) = ApiJson::<Object<BatchRequest>>::from_request(req, &state).await?;
    let choice = routing::choose(&state, &headers, None).await?;
    let raws = batch.instances.into_iter().map(|Object(r)| r).collect();
    let predictions = predict_all(&state, &request, &choice, raws, |i| {
        format!("instances[{i}]")
    })
    .await?;
    Ok(JsonBody(BatchResponse {
        model_version: Arc::clone(choice.served.model.version()),
        predictions,
    })
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feature_store::N_FEATURES;

    fn response(
        passenger_id: Option<i64>,
        features: Option<FeatureProvenance>,
    ) -> PredictionResponse {
        let mut contributions = [0.0; N_FEATURES];
        for (i, c) in contributions.iter_mut().enumerate() {
            *c = (i as f64 - 6.5) * 0.123_456_789;
        }
        contributions[0] = f64::NAN;
        PredictionResponse {
            passenger_id,
            survived: true,
            probability: 0.731_058_578_630_004_9,
            model_version: Arc::from("v3 \"shadow\"\n"),
            logit: 1.0,
            intercept: -0.25,
            contributions: Contributions(contributions),
            features,
        }
    }

    #[test]
    fn written_responses_are_the_serialized_ones() {
        let provenance = FeatureProvenance {
            source: ReadSource::OnlineStore,
            event_time: micros_to_rfc3339(1_700_000_000_000_000),
            statuses: [
                ("age".to_owned(), FeatureStatus::Present),
                ("cabin".to_owned(), FeatureStatus::NullValue),
            ]
            .into(),
            imputed: vec!["fare".to_owned()],
        };
        let responses = [
            response(None, None),
            response(Some(892), None),
            response(Some(-1), Some(provenance)),
        ];
        for r in &responses {
            let written = String::from_utf8(r.to_json(0)).unwrap();
            assert_eq!(written, serde_json::to_string(r).unwrap());
        }
        for predictions in [vec![], Vec::from(responses)] {
            let batch = BatchResponse {
                model_version: Arc::from("v1"),
                predictions,
            };
            let written = String::from_utf8(batch.to_json(0)).unwrap();
            assert_eq!(written, serde_json::to_string(&batch).unwrap());
        }
    }
}
