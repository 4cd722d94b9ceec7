//! The one application state, shared by every handler and middleware.

use std::sync::Arc;

use crate::core::config::Settings;
use crate::core::rate_limit::RateLimiter;
use crate::core::security::JwtKeys;
use crate::core::shutdown::Lifecycle;
use crate::core::time::now_micros;
use crate::feature_store::Passenger;
use crate::feature_store::profile::observe;
use crate::feature_store::serving::FeatureServer;
use crate::ml::lifecycle::Stores;
use crate::ml::{ModelServer, Served};
use crate::monitoring::Metrics;
use crate::monitoring::drift::DriftMonitor;

#[derive(Clone)]
pub struct AppState {
    pub models: Arc<ModelServer>,
    pub features: Arc<FeatureServer>,
    pub stores: Stores,
    pub settings: Arc<Settings>,
    pub metrics: Metrics,
    /// Served passengers against the production model's training data.
    pub drift: Arc<DriftMonitor>,
    pub keys: Arc<JwtKeys>,
    pub limiter: Arc<RateLimiter>,
    pub lifecycle: Lifecycle,
    pub limits: Limits,
    /// One training job at a time.
    pub training: Arc<tokio::sync::Semaphore>,
    /// Models of versions pinned by requests, loaded on first use.
    pub pinned: moka::sync::Cache<String, Arc<Served>>,
}

impl AppState {
    /// Serves `served` from now on (an atomic swap: requests in flight finish on the model
    /// they started with).
    pub fn install(&self, served: Served) {
        let version = served.model.version().clone();
        self.drift
            .set_reference(version.clone(), served.model.reference().clone());
        let previous = self.models.swap(served);
        self.metrics.set_model_version(&version);
        tracing::info!(
            version = %version,
            previous = previous.as_ref().map_or("none", |p| &**p.model.version()),
            "now serving model"
        );
    }
}

impl AppState {
    /// Records passengers that were just scored, for drift monitoring.
    pub fn observe<'a>(&self, passengers: impl IntoIterator<Item = &'a Passenger>) {
        self.drift
            .observe(now_micros(), passengers.into_iter().map(observe));
    }
}

/// Request limits enforced by handlers (the byte limit and timeout are layers).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_batch_size: usize,
    pub body_limit_bytes: usize,
    pub request_timeout: std::time::Duration,
}
