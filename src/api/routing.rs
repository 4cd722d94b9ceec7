//! Which model answers a request: the version pinned by the `x-model-version` header (or an
//! OIP `/versions/{v}/` path), else the experiment's candidate for its canary share, else
//! production (with the candidate scoring a shadow copy in a shadow experiment).

use std::sync::Arc;

use axum::http::HeaderMap;

use super::error::ApiError;
use super::state::AppState;
use crate::feature_store::Passenger;
use crate::ml::experiment::Mode;
use crate::ml::lifecycle;
use crate::ml::{Model, Prediction, Served};

/// The request header that pins a model version.
pub const MODEL_VERSION_HEADER: &str = "x-model-version";

/// The model that answers, and the one scoring a shadow copy, if any.
pub struct Choice {
    pub served: Arc<Served>,
    pub shadow: Option<Arc<Served>>,
}

fn production(state: &AppState) -> Result<Arc<Served>, ApiError> {
    state
        .models
        .current()
        .ok_or_else(|| ApiError::Unavailable("no model is loaded yet".to_owned()))
}

/// A loaded model of any registered version (cached; loaded on first use).
async fn version(state: &AppState, version: &str) -> Result<Arc<Served>, ApiError> {
    if let Some(served) = state.pinned.get(version) {
        return Ok(served);
    }
    let served = Arc::new(lifecycle::load_served(&state.stores, version).await?);
    state.pinned.insert(version.to_owned(), Arc::clone(&served));
    Ok(served)
}

pub async fn choose(
    state: &AppState,
    headers: &HeaderMap,
    pinned: Option<&str>,
) -> Result<Choice, ApiError> {
    let production = production(state)?;
    let experiment = state.models.experiment();
    let header = headers
        .get(MODEL_VERSION_HEADER)
        .map(|v| {
            v.to_str().map_err(|_| {
                ApiError::BadRequest(format!("{MODEL_VERSION_HEADER} is not valid text"))
            })
        })
        .transpose()?;
    if let Some(wanted) = pinned.or(header).map(str::trim) {
        let served = if **production.model.version() == *wanted {
            production
        } else if let Some(e) = experiment.filter(|e| **e.candidate.model.version() == *wanted) {
            Arc::clone(&e.candidate)
        } else {
            version(state, wanted).await?
        };
        return Ok(Choice {
            served,
            shadow: None,
        });
    }
    Ok(match experiment {
        Some(e) if e.spec.mode == Mode::Canary && rand::random::<f64>() < e.spec.share => Choice {
            served: Arc::clone(&e.candidate),
            shadow: None,
        },
        Some(e) if e.spec.mode == Mode::Shadow => Choice {
            served: production,
            shadow: Some(Arc::clone(&e.candidate)),
        },
        _ => Choice {
            served: production,
            shadow: None,
        },
    })
}

/// Scores the shadow copy and records how it compares; never affects the response.
pub fn shadow_compare(
    state: &AppState,
    shadow: &Model,
    passenger: &Passenger,
    primary: &Prediction,
) {
    let candidate = shadow.predict(passenger);
    let agree = candidate.survived() == primary.survived();
    let delta = (candidate.probability - primary.probability).abs();
    state.metrics.record_shadow(shadow.version(), agree, delta);
    tracing::debug!(
        candidate = %shadow.version(),
        candidate_probability = candidate.probability,
        primary_probability = primary.probability,
        agree,
        "shadow prediction"
    );
}
