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
pub async fn live() -> Json<Value> {
    Json(json!({ "status": "alive" }))
}

/// `GET /health/ready`: 200 when the model is loaded and the stores answer and the process
/// is not shutting down; 503 otherwise, with the state of each component.
pub async fn ready(State(state): State<AppState>) -> Response {
    let model = match state.models.current() {
        Some(m) => json!({ "status": "up", "version": &**m.version() }),
        None => json!({ "status": "down", "message": "no model loaded" }),
    };
    let database = match tokio::time::timeout(PROBE_TIMEOUT, db::ping(&state.db)).await {
        Ok(Ok(())) => json!({ "status": "up" }),
        Ok(Err(e)) => json!({ "status": "down", "message": e.to_string() }),
        Err(_) => json!({ "status": "down", "message": "timed out" }),
    };
    let online = match tokio::time::timeout(PROBE_TIMEOUT, state.online.count()).await {
        Ok(Ok(n)) => json!({ "status": "up", "kind": state.online.kind(), "entities": n }),
        Ok(Err(e)) => {
            json!({ "status": "down", "kind": state.online.kind(), "message": e.to_string() })
        }
        Err(_) => json!({ "status": "down", "kind": state.online.kind(), "message": "timed out" }),
    };
    let draining = state.lifecycle.is_draining();
    let all_up = [&model, &database, &online]
        .iter()
        .all(|c| c["status"] == "up");
    let ready = all_up && !draining;
    let body = json!({
        "status": if ready { "ready" } else if draining { "shutting_down" } else { "not_ready" },
        "components": { "model": model, "database": database, "online_store": online },
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}
