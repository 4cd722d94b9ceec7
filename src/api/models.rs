//! The model registry over HTTP: versions (with their editable description and tags),
//! aliases with their history, promotion and rollback (which swap the served model at once
//! when they move `production`), and training as a background job. Reads need any valid
//! token; writes need `models:write`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::{ApiJson, Object};
use super::responses::{DatabaseDown, NoSuchVersion, RegistryDown};
use super::state::AppState;
use crate::core::security::Claims;
use crate::core::time::parse_rfc3339;
use crate::feature_store::ValidationErrors;
use crate::ml::experiment::{Experiment, ExperimentSpec};
use crate::ml::jobs::{Job, JobStatus, TrainRequest};
use crate::ml::lifecycle::{self, TrainingData};
use crate::ml::model::ModelArtifact;
use crate::ml::registry::{
    AliasAction, AliasChange, AliasEvent, AliasMove, UpdateError, VersionSummary, VersionUpdate,
};
use crate::ml::serving::ActiveExperiment;
use crate::service;

/// The model registry.
pub fn routes(protect: &super::Protect) -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(protect.route(utoipa_axum::routes!(list)))
        .routes(protect.route(utoipa_axum::routes!(train)))
        .routes(protect.route(utoipa_axum::routes!(job)))
        .routes(protect.route(utoipa_axum::routes!(experiment)))
        .routes(protect.route(utoipa_axum::routes!(start_experiment)))
        .routes(protect.route(utoipa_axum::routes!(stop_experiment)))
        .routes(protect.route(utoipa_axum::routes!(promote)))
        .routes(protect.route(utoipa_axum::routes!(history)))
        .routes(protect.route(utoipa_axum::routes!(rollback)))
        .routes(protect.route(utoipa_axum::routes!(get)))
        .routes(protect.route(utoipa_axum::routes!(update)))
}

/// `GET /models/{version}`: the version's record, and its artifact.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelDetail {
    #[serde(flatten)]
    pub record: VersionSummary,
    /// The stored artifact (see docs/models.md).
    pub artifact: ModelArtifact,
}

/// `GET /models/aliases/{alias}/history`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AliasHistory {
    pub alias: String,
    pub events: Vec<AliasEvent>,
}

/// `POST /models/train`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrainAccepted {
    pub job_id: String,
    pub status: JobStatus,
    /// `/models/jobs/{job_id}`.
    pub status_url: String,
}

/// `GET /models/experiment`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExperimentState {
    /// `null` when no experiment runs.
    #[schema(required = true)]
    pub experiment: Option<Experiment>,
    /// The candidate version this process has loaded, if any.
    #[schema(required = true)]
    pub candidate_loaded: Option<String>,
}

/// `PUT /models/experiment`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExperimentStarted {
    pub experiment: Experiment,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ModelList {
    /// The version this process is serving.
    pub serving: Option<String>,
    pub aliases: BTreeMap<String, String>,
    pub versions: Vec<VersionSummary>,
}

/// `GET /models`
#[utoipa::path(
    get,
    path = "/models",
    security(("bearerAuth" = [])),
    tag = "models",
    summary = "Every model version with its metrics and aliases, and the version this process serves",
    responses(
        (status = 200, description = "The registry.", body = ModelList),
        RegistryDown,
    )
)]
pub async fn list(State(state): State<AppState>) -> Result<ApiJson<ModelList>, ApiError> {
    let registry = &state.stores.models;
    Ok(ApiJson(ModelList {
        serving: state
            .models
            .current()
            .map(|s| s.model.version().to_string()),
        aliases: registry.aliases().await?.into_iter().collect(),
        versions: registry.list().await?,
    }))
}

/// `GET /models/{version}`: the version's record and its whole artifact (parameters,
/// metrics, data, features).
#[utoipa::path(
    get,
    path = "/models/{version}",
    security(("bearerAuth" = [])),
    tag = "models",
    summary = "One version's record and whole artifact",
    params(("version" = String, Path, min_length = 1, example = "v1", description = "The model version.")),
    responses(
        (status = 200, description = "The version, its aliases, description, tags, who trained and last edited it, its metrics and its artifact.", body = ModelDetail),
        NoSuchVersion,
        (status = 422, description = "The stored artifact cannot be read (field `version`).", body = super::error::ErrorBody),
        RegistryDown,
    )
)]
pub async fn get(
    State(state): State<AppState>,
    Path(version): Path<String>,
) -> Result<ApiJson<ModelDetail>, ApiError> {
    let record = state.stores.models.summary(&version).await?;
    let artifact = state.stores.models.artifact(&version).await?;
    Ok(ApiJson(ModelDetail { record, artifact }))
}

/// The body of `PATCH /models/{version}`: every field optional.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VersionPatch {
    /// Replaces the description (at most 2000 characters; newlines and tabs allowed, no other
    /// control characters); `""` or `null` clears it; absent leaves it as it is.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 2000)]
    pub description: Option<Option<String>>,
    /// Merged into the version's tags: a string sets the tag, `null` removes it, tags not
    /// named stay. Names are 1-64 characters of `A-Z`, `a-z`, `0-9`, `_`, `-`, `.`, `:` and
    /// `/`; values at most 256 characters, no control characters. At most 32 changes at once,
    /// and a version holds at most 32 tags.
    #[serde(default)]
    pub tags: BTreeMap<String, Option<String>>,
}

/// A field that is present, even as `null`, is `Some`; an absent one (`serde(default)`) `None`.
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

impl From<UpdateError> for ApiError {
    fn from(e: UpdateError) -> Self {
        match e {
            UpdateError::Registry(e) => e.into(),
            UpdateError::Invalid(errors) => ApiError::Validation(errors),
        }
    }
}

/// `PATCH /models/{version}`: edits the description and tags, recording who and when.
#[utoipa::path(
    patch,
    path = "/models/{version}",
    security(("bearerAuth" = ["models:write"])),
    tag = "models",
    summary = "Edit a version's description and tags",
    params(("version" = String, Path, min_length = 1, example = "v1", description = "The model version.")),
    request_body(content = VersionPatch, example = json!({"description": "retrained with the women-and-children features", "tags": {"stage": "candidate", "ticket": "ML-42", "obsolete": null}})),
    responses(
        (status = 200, description = "The version as it now is (without its artifact); `updated_by` and `updated_at` name this edit, unless the body changed nothing.", body = VersionSummary),
        NoSuchVersion,
        (status = 422, description = "An invalid field, named: `description`, `tags` (a bad name, too many changes, or more than 32 tags on the version) or `tags.<name>` (a bad value).", body = super::error::ErrorBody),
        RegistryDown,
    )
)]
pub async fn update(
    State(state): State<AppState>,
    Path(version): Path<String>,
    Extension(claims): Extension<Arc<Claims>>,
    ApiJson(Object(patch)): ApiJson<Object<VersionPatch>>,
) -> Result<ApiJson<VersionSummary>, ApiError> {
    let description = patch.description.map(Option::unwrap_or_default);
    let update = VersionUpdate::parse(description, patch.tags).map_err(ApiError::Validation)?;
    let updated = state
        .stores
        .models
        .update(&version, &update, &claims.sub)
        .await?;
    tracing::info!(version = %version, by = %claims.sub, "model version edited");
    Ok(ApiJson(updated))
}

/// `GET /models/aliases/{alias}/history`: every move of the alias, oldest first.
#[utoipa::path(
    get,
    path = "/models/aliases/{alias}/history",
    security(("bearerAuth" = [])),
    tag = "models",
    summary = "Every move of an alias, oldest first",
    params(("alias" = String, Path, min_length = 1, example = "production", description = "The alias.")),
    responses(
        (status = 200, description = "The alias's moves (empty for an alias never set).", body = AliasHistory),
        RegistryDown,
    )
)]
pub async fn history(
    State(state): State<AppState>,
    Path(alias): Path<String>,
) -> Result<ApiJson<AliasHistory>, ApiError> {
    let events: Vec<AliasEvent> = state.stores.models.history(Some(&alias)).await?;
    Ok(ApiJson(AliasHistory { alias, events }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromoteRequest {
    pub version: String,
    #[serde(default)]
    #[schema(max_length = 1000)]
    pub reason: String,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    #[serde(default)]
    #[schema(max_length = 1000)]
    pub reason: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Moved {
    #[serde(flatten)]
    pub moved: AliasMove,
    /// The version this process serves after the move.
    pub serving: Option<String>,
}

impl From<service::aliases::Moved> for Moved {
    fn from(m: service::aliases::Moved) -> Self {
        Self {
            moved: m.moved,
            serving: m.serving,
        }
    }
}

/// `PUT /models/aliases/{alias}`: points the alias at a version that loads and can be
/// served (422 otherwise, and the alias stays); `production` swaps the served model at once.
#[utoipa::path(
    put,
    path = "/models/aliases/{alias}",
    security(("bearerAuth" = ["models:write"])),
    tag = "models",
    summary = "Point an alias at a version (`production` swaps the served model)",
    params(("alias" = String, Path, min_length = 1, max_length = 64, pattern = "^[a-z0-9_-]+$", example = "production", description = "The alias: 1-64 characters of a-z, 0-9, `_` and `-`.")),
    request_body(content = PromoteRequest, example = json!({"version": "v1", "reason": "back to the first model"})),
    responses(
        (status = 200, description = "The move, and the version this process serves after it.", body = Moved),
        NoSuchVersion,
        (status = 422, description = "An invalid alias name, or a version that cannot be served.", body = super::error::ErrorBody),
        RegistryDown,
    )
)]
pub async fn promote(
    State(state): State<AppState>,
    Path(alias): Path<String>,
    Extension(claims): Extension<Arc<Claims>>,
    ApiJson(Object(request)): ApiJson<Object<PromoteRequest>>,
) -> Result<ApiJson<Moved>, ApiError> {
    check_reason(&request.reason)?;
    let change = AliasChange {
        action: AliasAction::Promote,
        actor: &claims.sub,
        reason: &request.reason,
    };
    let moved = state.promote(&alias, &request.version, &change).await?;
    Ok(ApiJson(moved.into()))
}

/// The longest reason kept in an alias's history (every event is kept and listed).
const MAX_REASON_CHARS: usize = 1000;

fn check_reason(reason: &str) -> Result<(), ApiError> {
    let chars = reason.chars().count();
    if chars > MAX_REASON_CHARS {
        return Err(ApiError::Validation(
            crate::feature_store::ValidationErrors::single(
                "reason",
                format!("must be at most {MAX_REASON_CHARS} characters, got {chars}"),
            ),
        ));
    }
    Ok(())
}

/// `POST /models/aliases/{alias}/rollback`: back to the version the alias held before.
#[utoipa::path(
    post,
    path = "/models/aliases/{alias}/rollback",
    security(("bearerAuth" = ["models:write"])),
    tag = "models",
    summary = "Move an alias back to the version it held before",
    params(("alias" = String, Path, min_length = 1, max_length = 64, pattern = "^[a-z0-9_-]+$", example = "production", description = "The alias: 1-64 characters of a-z, 0-9, `_` and `-`.")),
    request_body(content = RollbackRequest, example = json!({"reason": "the new version misbehaves"})),
    responses(
        (status = 200, description = "The move, and the version this process serves after it.", body = Moved),
        (status = 404, description = "The alias was never set.", body = super::error::ErrorBody),
        (status = 409, description = "The alias has no earlier version.", body = super::error::ErrorBody),
        (status = 422, description = "An invalid alias name, or an earlier version that cannot be served.", body = super::error::ErrorBody),
        RegistryDown,
    )
)]
pub async fn rollback(
    State(state): State<AppState>,
    Path(alias): Path<String>,
    Extension(claims): Extension<Arc<Claims>>,
    ApiJson(Object(request)): ApiJson<Object<RollbackRequest>>,
) -> Result<ApiJson<Moved>, ApiError> {
    check_reason(&request.reason)?;
    let moved = state.rollback(&alias, &claims.sub, &request.reason).await?;
    Ok(ApiJson(moved.into()))
}

/// `POST /models/train`: 202 with a job id; the job trains (one at a time), registers, and
/// with `promote` moves `production` and swaps the served model.
#[utoipa::path(
    post,
    path = "/models/train",
    security(("bearerAuth" = ["models:write"])),
    tag = "models",
    summary = "Start a training job",
    request_body(content = TrainRequest, example = json!({"promote": false})),
    responses(
        (status = 202, description = "The job is queued; poll `status_url`.", body = TrainAccepted,
            headers(("location" = String, description = "The job's status URL, `/models/jobs/{id}`."))),
        (status = 422, description = "An `as_of` that is not RFC 3339 or lies in the future.", body = super::error::ErrorBody),
        (status = 503, description = "The job could not be recorded (`unavailable`).", body = super::error::ErrorBody),
    )
)]
pub async fn train(
    State(state): State<AppState>,
    Extension(claims): Extension<Arc<Claims>>,
    ApiJson(Object(request)): ApiJson<Object<TrainRequest>>,
) -> Result<Response, ApiError> {
    let data = match request.as_of.as_deref().map(parse_rfc3339) {
        None => TrainingData::Latest,
        Some(Ok(t)) if t > crate::core::time::now_micros() => {
            return Err(ApiError::Validation(ValidationErrors::single(
                "as_of",
                "is in the future",
            )));
        }
        Some(Ok(t)) => TrainingData::AsOf(t),
        Some(Err(e)) => return Err(ApiError::Validation(ValidationErrors::single("as_of", e))),
    };
    let job = state
        .service
        .start_training(request, data, claims.sub.clone())
        .await
        .map_err(|e| ApiError::Unavailable(format!("recording the job: {e}")))?;
    let location = format!("/models/jobs/{}", job.id);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location.clone())],
        ApiJson(TrainAccepted {
            job_id: job.id,
            status: job.status,
            status_url: location,
        }),
    )
        .into_response())
}

/// `GET /models/jobs/{id}`
#[utoipa::path(
    get,
    path = "/models/jobs/{id}",
    security(("bearerAuth" = [])),
    tag = "models",
    summary = "A training job's status and outcome",
    params(("id" = String, Path, min_length = 1, description = "The job id from `POST /models/train`.")),
    responses(
        (status = 200, description = "The job.", body = Job),
        (status = 404, description = "No such job.", body = super::error::ErrorBody),
        DatabaseDown,
    )
)]
pub async fn job(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<ApiJson<Job>, ApiError> {
    state
        .stores
        .jobs
        .get(&id)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?
        .map(ApiJson)
        .ok_or_else(|| ApiError::NotFound(format!("no training job {id}")))
}

/// `GET /models/experiment`: the running experiment, if any.
#[utoipa::path(
    get,
    path = "/models/experiment",
    security(("bearerAuth" = [])),
    tag = "models",
    summary = "The running experiment, if any",
    responses(
        (status = 200, description = "The stored experiment (`null` when none) and the candidate this process loaded.", body = ExperimentState),
        DatabaseDown,
    )
)]
pub async fn experiment(
    State(state): State<AppState>,
) -> Result<ApiJson<ExperimentState>, ApiError> {
    let stored = state
        .stores
        .experiments
        .get()
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let active = state.models.experiment();
    Ok(ApiJson(ExperimentState {
        experiment: stored,
        candidate_loaded: active.map(|a| a.candidate.model.version().to_string()),
    }))
}

/// `PUT /models/experiment`: starts or changes the experiment (the candidate must load and
/// be servable); every replica follows within seconds.
#[utoipa::path(
    put,
    path = "/models/experiment",
    security(("bearerAuth" = ["models:write"])),
    tag = "models",
    summary = "Start or change a shadow or canary experiment",
    request_body(content = super::openapi::ExperimentInput, example = json!({"mode": "shadow", "version": "v1"})),
    responses(
        (status = 200, description = "The experiment as stored.", body = ExperimentStarted),
        (status = 404, description = "No such candidate version.", body = super::error::ErrorBody),
        (status = 422, description = "A canary `share` outside (0, 1], or a candidate that cannot be served.", body = super::error::ErrorBody),
        DatabaseDown,
    )
)]
pub async fn start_experiment(
    State(state): State<AppState>,
    Extension(claims): Extension<Arc<Claims>>,
    ApiJson(Object(spec)): ApiJson<Object<ExperimentSpec>>,
) -> Result<ApiJson<ExperimentStarted>, ApiError> {
    spec.check()
        .map_err(|e| ApiError::Validation(ValidationErrors::single("share", e)))?;
    let candidate = lifecycle::load_served(&state.stores, &spec.version).await?;
    let stored = state
        .stores
        .experiments
        .set(&spec, &claims.sub)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    state.models.set_experiment(Some(ActiveExperiment {
        spec,
        candidate: std::sync::Arc::new(candidate),
    }));
    tracing::info!(experiment = ?stored, "experiment started");
    Ok(ApiJson(ExperimentStarted { experiment: stored }))
}

/// `DELETE /models/experiment`: ends it; production answers everything again.
#[utoipa::path(
    delete,
    path = "/models/experiment",
    security(("bearerAuth" = ["models:write"])),
    tag = "models",
    summary = "End the experiment",
    responses(
        (status = 204, description = "Ended; production answers everything again."),
        (status = 404, description = "No experiment is running.", body = super::error::ErrorBody),
        DatabaseDown,
    )
)]
pub async fn stop_experiment(State(state): State<AppState>) -> Result<StatusCode, ApiError> {
    let had = state
        .stores
        .experiments
        .clear()
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    state.models.set_experiment(None);
    if had {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("no experiment is running".to_owned()))
    }
}
