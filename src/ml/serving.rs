//! The served model, swappable atomically: readers take a cheap snapshot (`Arc<Model>`) per
//! request, so a swap never mixes two versions within one request.

use std::sync::Arc;

use arc_swap::ArcSwapOption;

use super::model::Model;

#[derive(Debug, Default)]
pub struct ModelServer {
    current: ArcSwapOption<Model>,
}

impl ModelServer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves `model` from now on; returns the model it replaced.
    pub fn swap(&self, model: Model) -> Option<Arc<Model>> {
        self.current.swap(Some(Arc::new(model)))
    }

    /// The model to use for one request, or `None` before the first load.
    pub fn current(&self) -> Option<Arc<Model>> {
        self.current.load_full()
    }
}
