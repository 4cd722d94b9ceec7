//! The model registry over HTTP: versions, aliases with their history, promotion and
//! rollback (which swap the served model at once when they move `production`), and training
//! as a background job. Reads need any valid token; writes need `models:write`.

use std::collections::BTreeMap;

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::error::ApiError;
use super::extract::{ApiJson, Object};
use super::state::AppState;
use crate::core::security::Claims;
use crate::core::time::parse_rfc3339;
use crate::feature_store::ValidationErrors;
use crate::ml::experiment::ExperimentSpec;
use crate::ml::jobs::{Job, TrainRequest};
use crate::ml::lifecycle::{self, TrainingData};
use crate::ml::registry::{
    AliasAction, AliasChange, AliasEvent, AliasMove, PRODUCTION, VersionSummary,
};
use crate::ml::serving::ActiveExperiment;

#[derive(Debug, Serialize)]
pub struct ModelList {
    /// The version this process is serving.
    pub serving: Option<String>,
    pub aliases: BTreeMap<String, String>,
    pub versions: Vec<VersionSummary>,
}

/// `GET /models`
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

/// `GET /models/{version}`: the whole artifact (parameters, metrics, data, features).
pub async fn get(
    State(state): State<AppState>,
    Path(version): Path<String>,
) -> Result<ApiJson<Value>, ApiError> {
    let artifact = state.stores.models.artifact(&version).await?;
    let aliases: Vec<String> = state
        .stores
        .models
        .aliases()
        .await?
        .into_iter()
        .filter(|(_, v)| *v == version)
        .map(|(a, _)| a)
        .collect();
    Ok(ApiJson(json!({
        "version": version,
        "aliases": aliases,
        "artifact": artifact,
    })))
}

/// `GET /models/aliases/{alias}/history`: every move of the alias, oldest first.
pub async fn history(
    State(state): State<AppState>,
    Path(alias): Path<String>,
) -> Result<ApiJson<Value>, ApiError> {
    let events: Vec<AliasEvent> = state.stores.models.history(Some(&alias)).await?;
    Ok(ApiJson(json!({ "alias": alias, "events": events })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromoteRequest {
    pub version: String,
    #[serde(default)]
    pub reason: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    #[serde(default)]
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct Moved {
    #[serde(flatten)]
    pub moved: AliasMove,
    /// The version this process serves after the move.
    pub serving: Option<String>,
}

fn moved(state: &AppState, moved: AliasMove, served: crate::ml::Served) -> Moved {
    if moved.alias == PRODUCTION {
        state.install(served);
    }
    Moved {
        moved,
        serving: state
            .models
            .current()
            .map(|s| s.model.version().to_string()),
    }
}

/// `PUT /models/aliases/{alias}`: points the alias at a version that loads and can be
/// served (422 otherwise, and the alias stays); `production` swaps the served model at once.
pub async fn promote(
    State(state): State<AppState>,
    Path(alias): Path<String>,
    Extension(claims): Extension<Claims>,
    ApiJson(Object(request)): ApiJson<Object<PromoteRequest>>,
) -> Result<ApiJson<Moved>, ApiError> {
    let change = AliasChange {
        action: AliasAction::Promote,
        actor: &claims.sub,
        reason: &request.reason,
    };
    let (m, served) = lifecycle::promote(&state.stores, &alias, &request.version, &change).await?;
    Ok(ApiJson(moved(&state, m, served)))
}

/// `POST /models/aliases/{alias}/rollback`: back to the version the alias held before.
pub async fn rollback(
    State(state): State<AppState>,
    Path(alias): Path<String>,
    Extension(claims): Extension<Claims>,
    ApiJson(Object(request)): ApiJson<Object<RollbackRequest>>,
) -> Result<ApiJson<Moved>, ApiError> {
    let (m, served) =
        lifecycle::rollback(&state.stores, &alias, &claims.sub, &request.reason).await?;
    Ok(ApiJson(moved(&state, m, served)))
}

/// `POST /models/train`: 202 with a job id; the job trains (one at a time), registers, and
/// with `promote` moves `production` and swaps the served model.
pub async fn train(
    State(state): State<AppState>,
    Extension(claims): Extension<Claims>,
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
        .stores
        .jobs
        .create(&request, &claims.sub)
        .await
        .map_err(|e| ApiError::Unavailable(format!("recording the job: {e}")))?;
    let id = job.id.clone();
    let runner = state.clone();
    tokio::spawn(async move {
        run_job(runner, id, data, request.promote, claims.sub).await;
    });
    let location = format!("/models/jobs/{}", job.id);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location.clone())],
        ApiJson(json!({ "job_id": job.id, "status": job.status, "status_url": location })),
    )
        .into_response())
}

async fn run_job(state: AppState, id: String, data: TrainingData, promote: bool, actor: String) {
    let Ok(_permit) = state.training.acquire().await else {
        return;
    };
    let jobs = &state.stores.jobs;
    if let Err(e) = jobs.start(&id).await {
        tracing::error!(job = %id, error = %e, "cannot mark the job running");
    }
    let promote_by = promote.then_some(actor.as_str());
    let outcome = lifecycle::train_model(&state.settings, &state.stores, &data, promote_by).await;
    let recorded = match &outcome {
        Ok(trained) => {
            if trained.promoted {
                match lifecycle::load_served(&state.stores, &trained.version).await {
                    Ok(served) => state.install(served),
                    Err(e) => tracing::error!(job = %id, error = %e, "trained model did not load"),
                }
            }
            jobs.finish(&id, Ok(&trained.version)).await
        }
        Err(e) => {
            tracing::warn!(job = %id, error = %e, "training job failed");
            jobs.finish(&id, Err(&e.to_string())).await
        }
    };
    if let Err(e) = recorded {
        tracing::error!(job = %id, error = %e, "cannot record the job's outcome");
    }
}

/// `GET /models/jobs/{id}`
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
pub async fn experiment(State(state): State<AppState>) -> Result<ApiJson<Value>, ApiError> {
    let stored = state
        .stores
        .experiments
        .get()
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let active = state.models.experiment();
    Ok(ApiJson(json!({
        "experiment": stored,
        "candidate_loaded": active.map(|a| a.candidate.model.version().to_string()),
    })))
}

/// `PUT /models/experiment`: starts or changes the experiment (the candidate must load and
/// be servable); every replica follows within seconds.
pub async fn start_experiment(
    State(state): State<AppState>,
    Extension(claims): Extension<Claims>,
    ApiJson(Object(spec)): ApiJson<Object<ExperimentSpec>>,
) -> Result<ApiJson<Value>, ApiError> {
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
    Ok(ApiJson(json!({ "experiment": stored })))
}

/// `DELETE /models/experiment`: ends it; production answers everything again.
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
