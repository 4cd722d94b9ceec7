//! The HTTP boundary: router, middleware stack, handlers, request/response types and the
//! mapping of errors to responses. The only module that knows about axum.

pub mod connection;
pub mod dashboard;
pub mod error;
pub mod extract;
pub mod feast;
pub mod features;
pub mod health;
pub mod middleware;
pub mod models;
pub mod monitoring;
pub mod oip;
pub mod openapi;
pub mod predict;
pub mod routing;
pub mod server;
pub mod state;
pub mod stream;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::HeaderName;
use axum::routing::{MethodRouter, delete, get, patch, post, put};
use tower::ServiceBuilder;
use tower_http::request_id::PropagateRequestIdLayer;

pub use error::ApiError;
pub use server::Server;
pub use state::{AppState, Limits};

use crate::core::security::scopes;
use openapi::Route;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A method route behind the concurrency limit, a valid token (with `scope`, when given) and
/// the subject's rate limit ([`middleware::guard`]). Layered per method route, so a wrong
/// method is 405 before any token check.
fn guarded(
    state: &AppState,
    scope: Option<&'static str>,
    route: MethodRouter<AppState>,
) -> MethodRouter<AppState> {
    route.route_layer(axum::middleware::from_fn_with_state(
        (state.clone(), scope),
        middleware::guard,
    ))
}

/// Every route [`router`] answers (and `HEAD` on each `GET`), with who may call it. The
/// OpenAPI document takes each operation's security from here; `tests/api/openapi.rs` checks
/// this list against `router()`'s source, the running router and the document.
pub const ROUTES: &[Route] = &[
    Route::open("GET", "/health/live"),
    Route::open("GET", "/health/ready"),
    Route::open("GET", "/metrics"),
    Route::open("GET", "/monitoring"),
    Route::open("GET", "/monitoring/assets/{file}"),
    Route::open("GET", "/openapi.json"),
    Route::scope("POST", "/predict", scopes::PREDICT),
    Route::scope("POST", "/predict/batch", scopes::PREDICT),
    Route::token("GET", "/features/entities"),
    Route::scope("POST", "/features/entities", scopes::FEATURES_WRITE),
    Route::token("GET", "/features/entities/{name}"),
    Route::token("GET", "/features/entities/{name}/versions/{version}"),
    Route::token("GET", "/features/views"),
    Route::scope("POST", "/features/views", scopes::FEATURES_WRITE),
    Route::token("GET", "/features/views/{name}"),
    Route::token("GET", "/features/views/{name}/versions/{version}"),
    Route::token("GET", "/features/services"),
    Route::scope("POST", "/features/services", scopes::FEATURES_WRITE),
    Route::token("GET", "/features/services/{name}"),
    Route::token("GET", "/features/services/{name}/versions/{version}"),
    Route::token("POST", "/features/online"),
    Route::scope("POST", "/features/push", scopes::FEATURES_WRITE),
    Route::scope("POST", "/features/materialize", scopes::FEATURES_WRITE),
    Route::token("POST", "/get-online-features"),
    Route::scope("POST", "/push", scopes::FEATURES_WRITE),
    Route::token("GET", "/models"),
    Route::scope("POST", "/models/train", scopes::MODELS_WRITE),
    Route::token("GET", "/models/jobs/{id}"),
    Route::token("GET", "/models/experiment"),
    Route::scope("PUT", "/models/experiment", scopes::MODELS_WRITE),
    Route::scope("DELETE", "/models/experiment", scopes::MODELS_WRITE),
    Route::scope("PUT", "/models/aliases/{alias}", scopes::MODELS_WRITE),
    Route::token("GET", "/models/aliases/{alias}/history"),
    Route::scope(
        "POST",
        "/models/aliases/{alias}/rollback",
        scopes::MODELS_WRITE,
    ),
    Route::token("GET", "/models/{version}"),
    Route::scope("PATCH", "/models/{version}", scopes::MODELS_WRITE),
    Route::token("GET", "/monitoring/drift"),
    Route::token("GET", "/monitoring/performance"),
    Route::scope("POST", "/feedback", scopes::FEEDBACK_WRITE),
    Route::open("GET", "/v2"),
    Route::open("GET", "/v2/health/live"),
    Route::open("GET", "/v2/health/ready"),
    Route::token("GET", "/v2/models/{model}"),
    Route::token("GET", "/v2/models/{model}/ready"),
    Route::scope("POST", "/v2/models/{model}/infer", scopes::PREDICT),
    Route::token("GET", "/v2/models/{model}/versions/{version}"),
    Route::token("GET", "/v2/models/{model}/versions/{version}/ready"),
    Route::token("GET", "/v2/models/{model}/config"),
    Route::token("GET", "/v2/models/{model}/versions/{version}/config"),
    Route::token("GET", "/v2/models/stats"),
    Route::token("GET", "/v2/models/{model}/stats"),
    Route::token("GET", "/v2/models/{model}/versions/{version}/stats"),
    Route::token("POST", "/v2/repository/index"),
    Route::scope(
        "POST",
        "/v2/models/{model}/versions/{version}/infer",
        scopes::PREDICT,
    ),
];

/// A method route open to anyone, rate-limited per client address (all open routes but the
/// health probes).
fn open<S: Clone + Send + Sync + 'static>(
    state: &AppState,
    route: MethodRouter<S>,
) -> MethodRouter<S> {
    route.route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        middleware::limit_open,
    ))
}

/// The whole application: open routes, routes behind a scope, and the middleware stack.
pub fn router(state: AppState) -> Router {
    // The route of the latency objective (docs/monitoring/alerts.yml) is exported from start.
    state.metrics.declare_route("/predict", "POST");
    let open_routes = Router::new()
        // Probes are never rate-limited: readiness must say whether this replica can serve,
        // not whether its prober's address (often shared with traffic) spent a quota.
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/metrics", open(&state, get(health::metrics)))
        .route("/monitoring", open(&state, get(dashboard::page)))
        .route(
            "/monitoring/assets/{file}",
            open(&state, get(dashboard::assets)),
        )
        .route("/openapi.json", open(&state, get(openapi::openapi_json)));

    let predict = Router::new()
        .route(
            "/predict",
            guarded(&state, Some(scopes::PREDICT), post(predict::predict)),
        )
        .route(
            "/predict/batch",
            guarded(&state, Some(scopes::PREDICT), post(predict::predict_batch)),
        );

    let read = |route| guarded(&state, None, route);
    let write = |route| guarded(&state, Some(scopes::FEATURES_WRITE), route);
    let features = Router::new()
        .route(
            "/features/entities",
            read(get(features::list_entities)).merge(write(post(features::register_entity))),
        )
        .route(
            "/features/entities/{name}",
            read(get(features::entity_versions)),
        )
        .route(
            "/features/entities/{name}/versions/{version}",
            read(get(features::entity_version)),
        )
        .route(
            "/features/views",
            read(get(features::list_views)).merge(write(post(features::register_view))),
        )
        .route("/features/views/{name}", read(get(features::view_versions)))
        .route(
            "/features/views/{name}/versions/{version}",
            read(get(features::view_version)),
        )
        .route(
            "/features/services",
            read(get(features::list_services)).merge(write(post(features::register_service))),
        )
        .route(
            "/features/services/{name}",
            read(get(features::service_versions)),
        )
        .route(
            "/features/services/{name}/versions/{version}",
            read(get(features::service_version)),
        )
        .route("/features/online", read(post(features::online_features)))
        .route("/features/push", write(post(features::push_rows)))
        .route(
            "/features/materialize",
            write(post(features::materialize_views)),
        );

    // Feast's feature server: the same reads and writes, Feast's shapes and error bodies.
    let feast_routes = Router::new()
        .route(
            "/get-online-features",
            read(post(feast::get_online_features)),
        )
        .route("/push", write(post(feast::push)))
        .layer(axum::middleware::from_fn(feast::feast_errors));

    let admin = |route| guarded(&state, Some(scopes::MODELS_WRITE), route);
    let model_routes = Router::new()
        .route("/models", read(get(models::list)))
        .route("/models/train", admin(post(models::train)))
        .route("/models/jobs/{id}", read(get(models::job)))
        .route(
            "/models/experiment",
            read(get(models::experiment))
                .merge(admin(put(models::start_experiment)))
                .merge(admin(delete(models::stop_experiment))),
        )
        .route("/models/aliases/{alias}", admin(put(models::promote)))
        .route(
            "/models/aliases/{alias}/history",
            read(get(models::history)),
        )
        .route(
            "/models/aliases/{alias}/rollback",
            admin(post(models::rollback)),
        )
        .route(
            "/models/{version}",
            read(get(models::get)).merge(admin(patch(models::update))),
        )
        .route("/monitoring/drift", read(get(monitoring::drift)))
        .route(
            "/monitoring/performance",
            read(get(monitoring::performance)),
        )
        .route(
            "/feedback",
            guarded(
                &state,
                Some(scopes::FEEDBACK_WRITE),
                post(monitoring::feedback),
            ),
        );

    let predict_scope = |route| guarded(&state, Some(scopes::PREDICT), route);
    let oip_routes = Router::new()
        .route("/v2", open(&state, get(oip::server_metadata)))
        .route("/v2/health/live", get(oip::server_live))
        .route("/v2/health/ready", get(oip::server_ready))
        .route("/v2/models/{model}", read(get(oip::model_metadata)))
        .route("/v2/models/{model}/ready", read(get(oip::model_ready)))
        .route("/v2/models/{model}/infer", predict_scope(post(oip::infer)))
        .route(
            "/v2/models/{model}/versions/{version}",
            read(get(oip::version_metadata)),
        )
        .route(
            "/v2/models/{model}/versions/{version}/ready",
            read(get(oip::version_ready)),
        )
        .route(
            "/v2/models/{model}/versions/{version}/infer",
            predict_scope(post(oip::infer_version)),
        )
        .route(
            "/v2/models/{model}/config",
            read(get(oip::model_config_route)),
        )
        .route(
            "/v2/models/{model}/versions/{version}/config",
            read(get(oip::version_config)),
        )
        .route("/v2/models/stats", read(get(oip::all_stats)))
        .route("/v2/models/{model}/stats", read(get(oip::model_stats)))
        .route(
            "/v2/models/{model}/versions/{version}/stats",
            read(get(oip::version_stats)),
        )
        .route("/v2/repository/index", read(post(oip::repository_index)));

    // Read top-down: the first layer sees the request first and the response last.
    let stack = ServiceBuilder::new()
        .layer(middleware::RequestIdLayer)
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        // Metrics, the request's span and log lines, header and body limits, the request
        // timeout, JSON error bodies and `Connection: close`, in one layer.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::edge,
        ))
        .layer(DefaultBodyLimit::max(state.limits.body_limit_bytes));

    open_routes
        .merge(predict)
        .merge(features)
        .merge(feast_routes)
        .merge(model_routes)
        .merge(oip_routes)
        .fallback(|| async { ApiError::NotFound("no such route".to_owned()) })
        .layer(stack)
        .with_state(state)
}
