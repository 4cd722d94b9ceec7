//! Liveness, readiness and the Prometheus endpoint. No token needed.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::state::AppState;
use crate::core::db;

/// The probes and `/metrics`.
pub fn routes(protect: &super::Protect) -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(protect.probe(utoipa_axum::routes!(live)))
        .routes(protect.probe(utoipa_axum::routes!(ready)))
        .routes(protect.route(utoipa_axum::routes!(metrics)))
}

/// How long a readiness probe waits for a store before calling it down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /health/live`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Liveness {
    pub status: LiveStatus,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LiveStatus {
    Alive,
}

/// `GET /health/ready`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    pub status: ReadinessStatus,
    pub components: ReadinessComponents,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReadinessStatus {
    Ready,
    Degraded,
    NotReady,
    ShuttingDown,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReadinessComponents {
    pub model: ComponentState,
    pub database: ComponentState,
    pub online_store: ComponentState,
}

/// One component's state; the optional fields appear where they apply.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct ComponentState {
    pub status: ComponentStatus,
    /// Why the component is not up.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub message: Option<String>,
    /// model: the served version.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub version: Option<String>,
    /// model: its feature service, `name@version`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub feature_service: Option<String>,
    /// database while degraded: `failing` (reads work, writes do not).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub writes: Option<WritesState>,
    /// online_store: `redis` or `memory`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub kind: Option<&'static str>,
    /// online_store while degraded: `offline_store`, where reads go instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub fallback: Option<Fallback>,
}

impl ComponentState {
    fn new(status: ComponentStatus) -> Self {
        Self {
            status,
            ..Self::default()
        }
    }

    fn because(status: ComponentStatus, message: impl Into<String>) -> Self {
        Self {
            status,
            message: Some(message.into()),
            ..Self::default()
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ComponentStatus {
    #[default]
    Up,
    Down,
    Degraded,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WritesState {
    Failing,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Fallback {
    OfflineStore,
}

/// `GET /health/live`: the process is up and answering.
#[utoipa::path(
    get,
    path = "/health/live",
    tag = "health",
    responses((status = 200, description = "Always `{\"status\":\"alive\"}`.", body = Liveness))
)]
pub async fn live() -> Json<Liveness> {
    Json(Liveness {
        status: LiveStatus::Alive,
    })
}

/// `GET /health/ready`: 200 when the model is loaded, the database answers reads and the
/// process is not shutting down (`degraded` while the online store or database writes
/// fail); 503 otherwise, with the state of each component.
#[utoipa::path(
    get,
    path = "/health/ready",
    tag = "health",
    responses(
        (status = 200, description = "Ready (`ready`, or `degraded` while the online store fails and reads fall back to the offline store, or database writes fail).", body = Readiness),
        (status = 503, description = "Not ready (`not_ready`: no model or no database) or draining (`shutting_down`), with the state of each component.", body = Readiness),
    )
)]
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    use ComponentStatus::{Degraded, Down, Up};
    let model = match state.models.current() {
        Some(s) => ComponentState {
            version: Some(s.model.version().to_string()),
            feature_service: Some(s.model.feature_service().to_string()),
            ..ComponentState::new(Up)
        },
        None => ComponentState::because(Down, "no model loaded"),
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
            let failing = |message: String| ComponentState {
                writes: Some(WritesState::Failing),
                ..ComponentState::because(Degraded, message)
            };
            match tokio::time::timeout(PROBE_TIMEOUT, write).await {
                Ok(Ok(())) => ComponentState::new(Up),
                Ok(Err(e)) => failing(e.to_string()),
                Err(_) => failing("write timed out".to_owned()),
            }
        }
        Ok(Err(e)) => ComponentState::because(Down, e.to_string()),
        Err(_) => ComponentState::because(Down, "timed out"),
    };
    // The online store has a fallback (the offline store): when it fails the service is
    // degraded, not unready.
    let kind = Some(state.features.online().kind());
    let degraded = |message: String| ComponentState {
        kind,
        fallback: Some(Fallback::OfflineStore),
        ..ComponentState::because(Degraded, message)
    };
    let online = match tokio::time::timeout(PROBE_TIMEOUT, state.features.check_online()).await {
        Ok(Ok(())) => ComponentState {
            kind,
            ..ComponentState::new(Up)
        },
        Ok(Err(e)) => degraded(e.to_string()),
        Err(_) => {
            state.features.metrics().online_up.set(0);
            degraded("timed out".to_owned())
        }
    };
    let draining = state.lifecycle.is_draining();
    let ready = model.status == Up && database.status != Down && !draining;
    let status = if !ready {
        if draining {
            ReadinessStatus::ShuttingDown
        } else {
            ReadinessStatus::NotReady
        }
    } else if online.status == Up && database.status == Up {
        ReadinessStatus::Ready
    } else {
        ReadinessStatus::Degraded
    };
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Readiness {
        status,
        components: ReadinessComponents {
            model,
            database,
            online_store: online,
        },
    };
    (code, Json(body))
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
