//! The application layer: the use cases the HTTP API and the command line share, on top of
//! the feature store, the model lifecycle and monitoring. Nothing here knows HTTP.
//!
//! - [`Service`]: what a serving process holds, and installing a model into it;
//! - [`training`]: training jobs (one at a time, recorded, installed when promoted);
//! - [`aliases`]: moving an alias, and swapping the served model when it is `production`;
//! - [`supervise`]: the background loop that keeps a process in step with shared state;
//! - [`batch`]: scoring a CSV file, historical retrieval into a file, materialization.

pub mod aliases;
pub mod batch;
pub mod supervise;
pub mod training;

use std::sync::Arc;

use crate::core::config::Settings;
use crate::feature_store::retrieval::FeatureServer;
use crate::ml::lifecycle::Stores;
use crate::ml::{ModelServer, Served};
use crate::monitoring::{Metrics, Monitor};

/// Everything a serving process shares between requests and background tasks.
pub struct Service {
    pub models: Arc<ModelServer>,
    pub features: Arc<FeatureServer>,
    pub stores: Stores,
    pub settings: Arc<Settings>,
    pub metrics: Metrics,
    /// Drift, live performance and the request log.
    pub monitor: Arc<Monitor>,
    /// One training job at a time.
    pub training: Arc<tokio::sync::Semaphore>,
    /// Models of versions pinned by requests, loaded on first use.
    pub pinned: moka::sync::Cache<String, Arc<Served>>,
}

impl Service {
    pub fn new(
        settings: &Settings,
        stores: Stores,
        features: Arc<FeatureServer>,
        metrics: Metrics,
        monitor: Monitor,
    ) -> Self {
        Self {
            models: Arc::new(ModelServer::new()),
            features,
            stores,
            settings: Arc::new(settings.clone()),
            metrics,
            monitor: Arc::new(monitor),
            training: Arc::new(tokio::sync::Semaphore::new(1)),
            pinned: moka::sync::Cache::new(8),
        }
    }

    /// Serves `served` from now on (an atomic swap: requests in flight finish on the model
    /// they started with).
    pub fn install(&self, served: Served) {
        let version = served.model.version().clone();
        self.monitor
            .drift
            .set_reference(version.clone(), served.model.reference().clone());
        let previous = self.models.swap(served);
        self.metrics.set_model_version(&version);
        tracing::info!(
            version = %version,
            previous = previous.as_ref().map_or("none", |p| &**p.model.version()),
            "now serving model"
        );
    }

    /// The version this process serves, if any.
    pub fn serving_version(&self) -> Option<String> {
        self.models.current().map(|s| s.model.version().to_string())
    }
}
