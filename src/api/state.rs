//! The one application state, shared by every handler and middleware.

use std::sync::Arc;

use crate::core::rate_limit::RateLimiter;
use crate::core::security::JwtKeys;
use crate::core::shutdown::Lifecycle;
use crate::service::Service;

/// A handle on the [`Shared`] state: one reference count to clone, because middleware and
/// extractors clone the state several times per request.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// Everything handlers and middleware share, behind [`AppState`]: the application's
/// [`Service`] (reached through `Deref`, so handlers write `state.models`) and what only the
/// HTTP layer needs.
pub struct Shared {
    pub service: Arc<Service>,
    pub keys: Arc<JwtKeys>,
    pub limiter: Arc<RateLimiter>,
    /// The header a trusted proxy sets to the client's address (`rate_limit.client_ip_header`).
    pub client_ip_header: Option<axum::http::HeaderName>,
    /// Permits for requests behind a token (`server.max_concurrent_requests`).
    pub concurrency: Arc<tokio::sync::Semaphore>,
    /// Each subject's share of those (`server.max_concurrent_per_subject`).
    pub subject_slots: Arc<crate::core::slots::SubjectSlots>,
    pub lifecycle: Lifecycle,
    /// Requests taking this long or longer are logged at WARN (`log.slow_request_ms`).
    pub slow_request: std::time::Duration,
    /// Log lines about refused tokens, at most one a second.
    pub refused_tokens: crate::core::telemetry::Throttle,
    pub limits: Limits,
}

impl std::ops::Deref for Shared {
    type Target = Service;

    fn deref(&self) -> &Service {
        &self.service
    }
}

/// Request limits: header and body bytes and the timeout are layers; batch size and JSON
/// nesting are checked where the body is read.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_batch_size: usize,
    /// Bytes a streamed upload must send per second (over each `request_timeout`).
    pub min_upload_bytes_per_sec: u64,
    pub body_limit_bytes: usize,
    pub max_json_depth: usize,
    pub max_header_bytes: usize,
    pub request_timeout: std::time::Duration,
}

impl Limits {
    pub fn of(server: &crate::core::config::ServerSettings) -> Self {
        Self {
            max_batch_size: server.max_batch_size,
            min_upload_bytes_per_sec: server.min_upload_bytes_per_sec,
            body_limit_bytes: server.body_limit_bytes,
            max_json_depth: server.max_json_depth,
            max_header_bytes: server.max_header_bytes,
            request_timeout: std::time::Duration::from_secs(server.request_timeout_secs),
        }
    }
}
