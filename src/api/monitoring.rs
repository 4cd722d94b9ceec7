//! Monitoring endpoints: drift of served passengers against the training data, live
//! performance from labels sent back, and the feedback that carries those labels.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;

use super::error::ApiError;
use super::extract::{ApiJson, Object, Requested};
use super::responses::DatabaseDown;
use super::state::AppState;
use crate::core::time::now_micros;
use crate::feature_store::ValidationErrors;
use crate::monitoring::drift::DriftReport;
use crate::monitoring::performance::{Feedback, FeedbackError, PerformanceReport, Recorded};

/// Drift, live performance and feedback.
pub fn routes(protect: &super::Protect) -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(protect.route(utoipa_axum::routes!(drift)))
        .routes(protect.route(utoipa_axum::routes!(performance)))
        .routes(protect.route(utoipa_axum::routes!(feedback)))
}

/// `GET /monitoring/drift`: per-feature tests and PSI, the dataset drift share and flag.
#[utoipa::path(
    get,
    path = "/monitoring/drift",
    security(("bearerAuth" = [])),
    tag = "monitoring",
    summary = "Drift of served passengers against the training data",
    responses((status = 200, description = "Per-feature tests and PSI, the dataset drift share and flag.", body = DriftReport))
)]
pub async fn drift(State(state): State<AppState>) -> Json<DriftReport> {
    Json(state.monitor.drift.report(now_micros()))
}

/// `GET /monitoring/performance`: live metrics per model version over the window.
#[utoipa::path(
    get,
    path = "/monitoring/performance",
    security(("bearerAuth" = [])),
    tag = "monitoring",
    summary = "Live performance per model version, from the labels sent back",
    responses((status = 200, description = "Metrics per model version over the window.", body = PerformanceReport))
)]
pub async fn performance(State(state): State<AppState>) -> Json<PerformanceReport> {
    Json(state.monitor.performance.report(now_micros()))
}

/// The truth about one prediction.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackRequest {
    /// The `x-request-id` of the prediction's response.
    #[serde(default)]
    #[schema(min_length = 1)]
    pub request_id: Option<String>,
    /// Picks the passenger of a batch request; alone, the passenger's latest prediction.
    #[serde(default)]
    pub passenger_id: Option<i64>,
    /// Picks the instance of a batch request by its 0-based position.
    #[serde(default)]
    #[schema(maximum = 4294967295u32)]
    pub position: Option<u32>,
    /// `true`/`false`, or Kaggle's `1`/`0`.
    #[schema(value_type = super::openapi::LabelInput)]
    pub survived: Label,
}

#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "true, false, 1 or 0")]
pub enum Label {
    Bool(bool),
    Number(i64),
}

/// `POST /feedback` (scope `feedback:write`): records the label once it is stored.
#[utoipa::path(
    post,
    path = "/feedback",
    security(("bearerAuth" = ["feedback:write"])),
    tag = "monitoring",
    summary = "Send the true outcome of a prediction",
    request_body(content = FeedbackRequest, example = json!({"passenger_id": 892, "survived": false})),
    responses(
        (status = 200, description = "The label is stored, matched with this prediction.", body = Recorded),
        (status = 404, description = "No prediction matches.", body = super::error::ErrorBody),
        (status = 409, description = "This prediction already has a label.", body = super::error::ErrorBody),
        (status = 422, description = "A bad label, or not enough to pick one prediction (the field to supply is named).", body = super::error::ErrorBody),
        DatabaseDown,
    )
)]
pub async fn feedback(
    State(state): State<AppState>,
    Requested(request): Requested,
    body: Result<ApiJson<Object<FeedbackRequest>>, ApiError>,
) -> Result<ApiJson<Recorded>, ApiError> {
    let performance = &state.monitor.performance;
    let body = match body {
        Ok(ApiJson(Object(body))) => body,
        Err(e) => {
            performance.count_invalid();
            return Err(e);
        }
    };
    let survived = match body.survived {
        Label::Bool(b) => b,
        Label::Number(1) => true,
        Label::Number(0) => false,
        Label::Number(n) => {
            performance.count_invalid();
            return Err(ApiError::Validation(ValidationErrors::single(
                "survived",
                format!("must be true, false, 1 or 0, got {n}"),
            )));
        }
    };
    if let Some(id) = body
        .request_id
        .as_deref()
        .filter(|id| !super::middleware::is_plain_request_id(id.as_bytes()))
    {
        performance.count_invalid();
        return Err(ApiError::Validation(ValidationErrors::single(
            "request_id",
            format!(
                "not a request id this service answers with ({} bytes; at most {} visible \
                 ASCII characters)",
                id.len(),
                super::middleware::MAX_REQUEST_ID_BYTES
            ),
        )));
    }
    let feedback = Feedback {
        request_id: body.request_id,
        passenger_id: body.passenger_id,
        position: body.position,
        survived,
        subject: request.subject.map(|s| s.to_string()),
    };
    match performance.submit(feedback).await {
        Ok(recorded) => Ok(ApiJson(recorded)),
        Err(FeedbackError::Invalid { field, message }) => Err(ApiError::Validation(
            ValidationErrors::single(field, message),
        )),
        Err(e @ FeedbackError::NotFound(_)) => Err(ApiError::NotFound(e.to_string())),
        Err(e @ FeedbackError::Duplicate(_)) => Err(ApiError::Conflict(e.to_string())),
        Err(e @ FeedbackError::Db(_)) => Err(ApiError::Unavailable(e.to_string())),
    }
}
