//! Liveness, readiness and the Prometheus endpoint. No token needed.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::state::AppState;
use crate::core::db;

/// How long a readiness probe waits for a store before calling it down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /health/live`: the process is up and answering.
#[utoipa::path(
    get,
    path = "/health/live",
    tag = "health",
    responses((status = 200, description = "Always `{\"status\":\"alive\"}`.", body = super::openapi::Liveness))
)]
pub async fn live() -> Json<Value> {
    Json(json!({ "status": "alive" }))
}

/// `GET /health/ready`: 200 when the model is loaded, the database answers reads and the
/// process is not shutting down (`degraded` while the online store or database writes
/// fail); 503 otherwise, with the state of each component.
#[utoipa::path(
    get,
    path = "/health/ready",
    tag = "health",
    responses(
        (status = 200, description = "Ready (`ready`, or `degraded` while the online store fails and reads fall back to the offline store).", body = super::openapi::Readiness),
        (status = 503, description = "Not ready (`not_ready`: no model or no database) or draining (`shutting_down`), with the state of each component.", body = super::openapi::Readiness),
    )
)]
pub async fn ready(State(state): State<AppState>) -> Response {
    let model = match state.models.current() {
        Some(s) => json!({
            "status": "up",
            "version": &**s.model.version(),
            "feature_service": s.model.feature_service().to_string(),
        }),
        None => json!({ "status": "down", "message": "no model loaded" }),
    };
    let dependencies = &state.features.metrics().dependencies;
    // The `dependency` label of the database calls: `sqlite` or `postgres`.
    let backend = db::Backend::of(&state.stores.pool).as_str();
    let ping = dependencies.time(backend, "ping", db::ping(&state.stores.pool));
    let database = match tokio::time::timeout(PROBE_TIMEOUT, ping).await {
        Ok(Ok(())) => {
            // Reads work; a write tells a full disk or an unwritable file. Failing writes
            // leave the service ready (predictions and reads go on) but degraded.
            let write =
                dependencies.time(backend, "write_probe", db::probe_write(&state.stores.pool));
            match tokio::time::timeout(PROBE_TIMEOUT, write).await {
                Ok(Ok(())) => json!({ "status": "up" }),
                Ok(Err(e)) => {
                    json!({ "status": "degraded", "writes": "failing", "message": e.to_string() })
                }
                Err(_) => {
                    json!({ "status": "degraded", "writes": "failing", "message": "write timed out" })
                }
            }
        }
        Ok(Err(e)) => json!({ "status": "down", "message": e.to_string() }),
        Err(_) => json!({ "status": "down", "message": "timed out" }),
    };
    // The online store has a fallback (the offline store): when it fails the service is
    // degraded, not unready.
    let kind = state.features.online().kind();
    let online = match tokio::time::timeout(PROBE_TIMEOUT, state.features.check_online()).await {
        Ok(Ok(())) => json!({ "status": "up", "kind": kind }),
        Ok(Err(e)) => json!({
            "status": "degraded", "kind": kind, "message": e.to_string(),
            "fallback": "offline_store",
        }),
        Err(_) => {
            state.features.metrics().online_up.set(0);
            json!({ "status": "degraded", "kind": kind, "message": "timed out", "fallback": "offline_store" })
        }
    };
    let draining = state.lifecycle.is_draining();
    let ready = model["status"] == "up" && database["status"] != "down" && !draining;
    let status = if !ready {
        if draining {
            "shutting_down"
        } else {
            "not_ready"
        }
    } else if online["status"] == "up" && database["status"] == "up" {
        "ready"
    } else {
        "degraded"
    };
    let body = json!({
        "status": status,
        "components": { "model": model, "database": database, "online_store": online },
    });
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

/// `GET /metrics`: Prometheus text format (drift and performance gauges are brought up to date first).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    responses((status = 200, description = "Prometheus text exposition format 0.0.4.", body = String, content_type = "text/plain"))
)]
pub async fn metrics(State(state): State<AppState>) -> Response {
    state
        .monitor
        .refresh_gauges(crate::core::time::now_micros());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}
