//! Middleware functions used in the router's `ServiceBuilder` stacks: metrics, JSON error
//! bodies for bare statuses from layers, JWT authorization per scope, and rate limiting.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::state::AppState;
use crate::core::security::{Claims, TokenError};
use crate::core::shutdown::Lifecycle;
use crate::monitoring::Metrics;

/// A bounded label for the method (custom methods would otherwise grow the label set).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// Decrements the in-flight gauge even when the request future is dropped.
struct InFlight<'a>(&'a prometheus::IntGauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Counts requests by matched route pattern (never the raw path), method and status, and
/// observes latency.
pub async fn track_metrics(State(metrics): State<Metrics>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let method = method_label(req.method());
    metrics.http_in_flight.inc();
    let _guard = InFlight(&metrics.http_in_flight);
    let response = next.run(req).await;
    let status = response.status();
    metrics
        .http_requests
        .with_label_values(&[route.as_str(), method, status.as_str()])
        .inc();
    metrics
        .http_duration
        .with_label_values(&[route.as_str(), method])
        .observe(start.elapsed().as_secs_f64());
    response
}

/// Layers (fallback, method router, body limit, timeout) answer with bare statuses; give
/// them the service's JSON error body, keeping headers such as `Allow`.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let allow = response.headers().get(header::ALLOW).cloned();
    let mut replaced = ApiError::from_status(status).into_response();
    if let Some(allow) = allow {
        replaced.headers_mut().insert(header::ALLOW, allow);
    }
    replaced
}

/// While draining, ask clients to close their connection after each response, so that none
/// is left idle (and racing a new request against the close) when the listener shuts.
pub async fn close_when_draining(
    State(lifecycle): State<Lifecycle>,
    req: Request,
    next: Next,
) -> Response {
    let mut response = next.run(req).await;
    if lifecycle.is_draining() {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// True for a streamed CSV body (`POST /predict/batch` with `Content-Type: text/csv`), which
/// is read in bounded chunks and so not held to the body limit.
pub fn is_csv(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/csv"))
}

/// Refuses bodies over `limit` bytes with 413: at once when `Content-Length` says so,
/// otherwise when reading passes the limit. Streamed CSV bodies are exempt.
pub async fn limit_body(State(limit): State<usize>, req: Request, next: Next) -> Response {
    if is_csv(req.headers()) {
        return next.run(req).await;
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return ApiError::PayloadTooLarge.into_response();
    }
    let req = req.map(|body| axum::body::Body::new(http_body_util::Limited::new(body, limit)));
    next.run(req).await
}

fn bearer(req: &Request) -> Result<&str, TokenError> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or(TokenError::Missing)?;
    let value = value.to_str().map_err(|_| TokenError::Malformed)?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err(TokenError::Malformed),
    }
}

/// Verifies the bearer token and requires `scope` (any valid token when `None`); the claims
/// go into the request extensions.
pub async fn authorize(
    State((state, scope)): State<(AppState, Option<&'static str>)>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let claims = bearer(&req)
        .and_then(|token| state.keys.verify(token))
        .map_err(|e| {
            state
                .metrics
                .auth_failures
                .with_label_values(&[e.reason()])
                .inc();
            ApiError::Unauthorized(e)
        })?;
    if let Some(scope) = scope.filter(|s| !claims.has_scope(s)) {
        state
            .metrics
            .auth_failures
            .with_label_values(&["missing_scope"])
            .inc();
        return Err(ApiError::Forbidden(scope));
    }
    req.extensions_mut().insert(claims);
    Ok(next.run(req).await)
}

/// Per-subject rate limit; runs after [`authorize`].
pub async fn rate_limit(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let subject = req
        .extensions()
        .get::<Claims>()
        .map_or("", |c| c.sub.as_str());
    if let Err(limited) = state.limiter.check(subject) {
        state.metrics.rate_limited.inc();
        return Err(ApiError::RateLimited {
            retry_after_secs: limited.retry_after_secs(),
        });
    }
    Ok(next.run(req).await)
}
