//! The served model, swappable atomically: readers take a cheap snapshot (`Arc<Served>`) per
//! request, so a swap never mixes two versions within one request.

use std::sync::Arc;

use arc_swap::ArcSwapOption;

use super::experiment::ExperimentSpec;
use super::model::{Model, ModelError};
use crate::feature_store::retrieval::ServiceViews;

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

/// The running experiment with its loaded candidate.
#[derive(Debug)]
pub struct ActiveExperiment {
    pub spec: ExperimentSpec,
    pub candidate: Arc<Served>,
}

#[derive(Debug, Default)]
pub struct ModelServer {
    current: ArcSwapOption<Served>,
    experiment: ArcSwapOption<ActiveExperiment>,
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

    /// Starts (or replaces, or with `None` ends) the experiment.
    pub fn set_experiment(&self, experiment: Option<ActiveExperiment>) {
        self.experiment.store(experiment.map(Arc::new));
    }

    pub fn experiment(&self) -> Option<Arc<ActiveExperiment>> {
        self.experiment.load_full()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feature_store::registry::{
        FeatureServiceSpec, Versioned, ViewProjection, builtin_services, builtin_views,
    };
    use crate::ml::model::tests_support::artifact_for;

    fn service(features: &[&str]) -> ServiceViews {
        let view = builtin_views().remove(0);
        let spec = FeatureServiceSpec {
            views: vec![ViewProjection {
                view: view.name.clone(),
                version: 1,
                features: features.iter().map(|s| (*s).to_owned()).collect(),
            }],
            ..builtin_services().remove(0)
        };
        ServiceViews {
            service: Versioned::unrecorded("titanic_survival", 1, spec),
            views: vec![Versioned::unrecorded(&view.name.clone(), 1, view)],
        }
    }

    #[test]
    fn a_model_is_served_only_with_features_it_can_get() {
        let model = || Model::from_artifact("v1", artifact_for("titanic_survival", 1)).unwrap();
        let all = ["pclass", "sex", "age", "sibsp", "parch"];
        assert!(Served::new(model(), service(&all)).is_ok());
        let err = Served::new(model(), service(&["pclass", "age", "sibsp", "parch"])).unwrap_err();
        assert!(err.to_string().contains("does not provide sex"), "{err}");
        let other = Model::from_artifact("v2", artifact_for("titanic_survival", 2)).unwrap();
        let err = Served::new(other, service(&all)).unwrap_err();
        assert!(err.to_string().contains("titanic_survival@2"), "{err}");
        let mut labels = service(&all);
        labels.views[0].spec.entity = "ticket".to_owned();
        assert!(Served::new(model(), labels).is_err());
    }
}
