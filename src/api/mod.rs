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
pub mod responses;
pub mod routing;
pub mod server;
pub mod state;
pub mod stream;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::HeaderName;
use axum::routing::MethodRouter;
use tower::ServiceBuilder;
use tower_http::request_id::PropagateRequestIdLayer;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};

pub use error::ApiError;
pub use server::Server;
pub use state::{AppState, Limits};

use crate::core::security::scopes;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Who may call a route, as its OpenAPI operation declares it: no `security` is open; a
/// `bearerAuth` requirement with no scope is any valid token; with a scope, that scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Open,
    Token,
    Scope(&'static str),
}

impl Access {
    /// The access an operation declares. Panics on a scope the service does not know, which
    /// is a mistake in a handler's `#[utoipa::path]`, found when the router is built.
    pub fn of(operation: &utoipa::openapi::path::Operation) -> Self {
        let Some(requirements) = &operation.security else {
            return Access::Open;
        };
        let declared: Vec<String> = requirements
            .iter()
            .filter_map(|r| serde_json::to_value(r).ok())
            .filter_map(|v| serde_json::from_value::<Vec<String>>(v[openapi::BEARER].clone()).ok())
            .flatten()
            .collect();
        match declared.as_slice() {
            [] => Access::Token,
            [scope] => Access::Scope(
                scopes::ALL
                    .iter()
                    .copied()
                    .find(|s| s == scope)
                    .unwrap_or_else(|| {
                        panic!("unknown scope {scope:?} in an operation's security")
                    }),
            ),
            more => panic!("an operation requires several scopes: {more:?}"),
        }
    }
}

/// How [`api`] puts each route behind what its operation declares: [`Protect::Enforce`]
/// builds the serving router; [`Protect::Describe`] only collects the document.
pub enum Protect {
    Describe,
    Enforce(AppState),
}

impl Protect {
    /// A route (one method on one path) behind the access its operation declares: open routes
    /// are rate-limited per client address; the others pass [`middleware::guard`] (the
    /// concurrency limit, a valid token, the subject's rate limit and the scope). Layered per
    /// method route, so a wrong method is 405 before any token check.
    pub fn route(&self, route: UtoipaMethodRouter<AppState>) -> UtoipaMethodRouter<AppState> {
        let Protect::Enforce(state) = self else {
            return route;
        };
        let (schemas, paths, method_router) = route;
        let access = {
            let mut operations = paths.paths.values().flat_map(|item| {
                [&item.get, &item.post, &item.put, &item.delete, &item.patch]
                    .into_iter()
                    .flatten()
            });
            match (operations.next(), operations.next()) {
                (Some(operation), None) => Access::of(operation),
                _ => panic!(
                    "Protect::route takes one operation: {:?}",
                    paths.paths.keys()
                ),
            }
        };
        let method_router = match access {
            Access::Open => method_router.route_layer(axum::middleware::from_fn_with_state(
                state.clone(),
                middleware::limit_open,
            )),
            Access::Token => guarded(state, None, method_router),
            Access::Scope(scope) => guarded(state, Some(scope), method_router),
        };
        (schemas, paths, method_router)
    }

    /// A health probe: open and never rate-limited, since readiness must say whether this
    /// replica can serve, not whether its prober's address (often shared with traffic) spent
    /// a quota.
    pub fn probe(&self, route: UtoipaMethodRouter<AppState>) -> UtoipaMethodRouter<AppState> {
        route
    }
}

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

/// Every route, each declared once beside its handler by the module that handles it.
pub fn api(protect: &Protect) -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::base())
        .merge(health::routes(protect))
        .merge(openapi::routes(protect))
        .merge(dashboard::routes(protect))
        .merge(predict::routes(protect))
        .merge(features::routes(protect))
        .merge(feast::routes(protect))
        .merge(models::routes(protect))
        .merge(monitoring::routes(protect))
        .merge(oip::routes(protect))
}

/// The whole application: every route of [`api`] and the middleware stack.
pub fn router(state: AppState) -> Router {
    // The route of the latency objective (docs/monitoring/alerts.yml) is exported from start.
    state.metrics.declare_route("/predict", "POST");
    let (routes, _) = api(&Protect::Enforce(state.clone())).split_for_parts();
    // The document is built here, not on the first `GET /openapi.json`: reading each
    // operation's access cannot fail on a request, and no request waits for it.
    openapi::document();

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

    routes
        .fallback(|| async { ApiError::NotFound("no such route".to_owned()) })
        .layer(stack)
        .with_state(state)
}
