//! The served model, swappable atomically: readers take a cheap snapshot (`Arc<Served>`) per
//! request, so a swap never mixes two versions within one request.

use std::sync::Arc;

use arc_swap::ArcSwapOption;

use super::model::{Model, ModelError};
use crate::feature_store::serving::ServiceViews;

/// A model together with the feature service version it reads its inputs through.
#[derive(Debug)]
pub struct Served {
    pub model: Model,
    pub features: ServiceViews,
}

impl Served {
    /// Refuses a model whose features this service cannot produce.
    pub fn new(model: Model, features: ServiceViews) -> Result<Self, ModelError> {
        let wanted = model.feature_service();
        let refuse = |reason: String| ModelError::FeatureService {
            service: wanted.to_string(),
            reason,
        };
        if features.service.name != wanted.name || features.service.version != wanted.version {
            return Err(refuse(format!(
                "resolved {}@{} instead",
                features.service.name, features.service.version
            )));
        }
        features.check_produces_passengers().map_err(refuse)?;
        Ok(Self { model, features })
    }
}

#[derive(Debug, Default)]
pub struct ModelServer {
    current: ArcSwapOption<Served>,
}

impl ModelServer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves `served` from now on; returns what it replaced.
    pub fn swap(&self, served: Served) -> Option<Arc<Served>> {
        self.current.swap(Some(Arc::new(served)))
    }

    /// The model to use for one request, or `None` before the first load.
    pub fn current(&self) -> Option<Arc<Served>> {
        self.current.load_full()
    }
}
