//! The model artifact (what the registry stores) and the loaded model that scores passengers.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::evaluation::CvMetrics;
use super::train::TrainParams;
use crate::feature_store::profile::ReferenceProfile;
use crate::feature_store::{FEATURE_NAMES, FeatureVector, N_FEATURES, Passenger, Preprocessing};

/// Version of the artifact layout; bumped when it changes incompatibly.
/// 2: adds the feature service the model was trained on.
/// 3: the pipeline's companions (ticket and family survival) and fare per person; the
///    reference profile of the training data for drift monitoring.
/// 4: the women-and-children companion features, the group size and the fare per head
///    (unlabelled passengers in the companions table); repeated cross-validation metrics.
pub const ARTIFACT_FORMAT: u32 = 4;

/// A feature service version, as recorded by a model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FeatureServiceRef {
    pub name: String,
    pub version: i64,
}

impl std::fmt::Display for FeatureServiceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

/// Facts about the data a model was trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TrainingInfo {
    pub rows: usize,
    pub positives: usize,
    /// Unlabelled passengers of the store read with the rows (their tickets count towards
    /// the fare per head; they are not training rows).
    #[serde(default)]
    pub unlabelled: usize,
    /// `sha256:<hex>` of the training rows in canonical form (see `dataset::data_hash`).
    pub data_hash: String,
    /// RFC 3339, UTC.
    pub trained_at: String,
    /// The point in time the training set was read as of (RFC 3339, UTC).
    pub as_of: String,
    /// Who trained the model: the token subject of an HTTP training job, `cli:<user>` on the
    /// command line, `bootstrap` for a model the service trained on its own.
    #[serde(default)]
    pub trained_by: String,
    /// The commit the training binary was built from, when known (`core::build::GIT_COMMIT`).
    #[serde(default)]
    pub git_commit: Option<String>,
    /// Versions of the service and of the fitting crates (`linfa`, `linfa-logistic`,
    /// `titanic`) that trained the model.
    #[serde(default)]
    pub crate_versions: std::collections::BTreeMap<String, String>,
    /// Where the training set came from, enough to rebuild it (`titanic train --reproduce`);
    /// absent in artifacts made before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<DataSource>,
}

/// Where a training set came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DataSource {
    /// The offline store: every passenger labelled as of `as_of`, each with the feature
    /// service's features as of its label's event time, among the rows written by
    /// `created_as_of` (RFC 3339, UTC), read through these view versions.
    FeatureStore {
        feature_service: FeatureServiceRef,
        views: Vec<FeatureServiceRef>,
        as_of: String,
        created_as_of: String,
    },
    /// Exactly the labelled rows of a CSV file (`titanic train --data`), by its SHA-256.
    File { path: String, file_hash: String },
}

/// Everything needed to score with a trained model, stored as JSON in the registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ModelArtifact {
    pub format_version: u32,
    pub algorithm: String,
    /// The feature service (version) the model's inputs come from.
    pub feature_service: FeatureServiceRef,
    /// The model's inputs, in the order of `coefficients`.
    pub feature_names: Vec<String>,
    /// One per feature, on the standardized scale for the continuous ones.
    pub coefficients: Vec<f64>,
    pub intercept: f64,
    /// What training fitted to transform a passenger into the features (medians for
    /// imputation, scaling, the companions table); see docs/models.md.
    #[schema(value_type = Object)]
    pub preprocessing: Preprocessing,
    /// The distribution of the watched input features in the training rows: the reference
    /// drift is measured against.
    #[schema(value_type = Object)]
    pub reference: ReferenceProfile,
    pub params: TrainParams,
    pub metrics: CvMetrics,
    pub training: TrainingInfo,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    #[error("model artifact is unreadable: {0}")]
    Unreadable(String),
    #[error("model artifact format {found} is not supported (expected {ARTIFACT_FORMAT})")]
    Format { found: u32 },
    #[error("model expects features {found:?}, this build produces {expected:?}")]
    Features {
        found: Vec<String>,
        expected: Vec<String>,
    },
    #[error("model has {found} coefficients for {N_FEATURES} features")]
    CoefficientCount { found: usize },
    #[error("model has non-finite parameters")]
    NonFinite,
    #[error("model's reference profile does not describe the watched features")]
    Reference,
    #[error("model's feature service {service} cannot be served: {reason}")]
    FeatureService { service: String, reason: String },
}

impl ModelError {
    /// True when the artifact was written in an earlier layout than this build's (every
    /// change to the feature pipeline bumps [`ARTIFACT_FORMAT`]): retraining replaces it.
    /// A newer or a broken artifact is not outdated.
    pub fn is_outdated(&self) -> bool {
        matches!(self, ModelError::Format { found } if *found < ARTIFACT_FORMAT)
    }
}

/// One scored passenger.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    pub probability: f64,
    /// intercept + sum(contributions)
    pub logit: f64,
    /// coefficient * transformed value, in [`FEATURE_NAMES`] order.
    pub contributions: FeatureVector,
}

impl Prediction {
    pub fn survived(&self) -> bool {
        self.probability >= 0.5
    }
}

/// Fitted parameters: the one scoring path, used in cross-validation and in serving.
#[derive(Debug, Clone, PartialEq)]
pub struct Scorer {
    pub coefficients: FeatureVector,
    pub intercept: f64,
    pub preprocessing: Preprocessing,
}

impl Scorer {
    /// Transform and score one passenger, with per-feature contributions.
    #[inline]
    pub fn predict(&self, passenger: &Passenger) -> Prediction {
        let x = self.preprocessing.transform(passenger);
        let mut contributions = [0.0; N_FEATURES];
        let mut logit = self.intercept;
        for i in 0..N_FEATURES {
            // `+ 0.0` turns a negative zero (negative coefficient times 0) into 0.
            contributions[i] = self.coefficients[i] * x[i] + 0.0;
            logit += contributions[i];
        }
        Prediction {
            probability: sigmoid(logit),
            logit,
            contributions,
        }
    }

    /// Probability of survival only.
    #[inline]
    pub fn probability(&self, passenger: &Passenger) -> f64 {
        self.predict(passenger).probability
    }
}

/// A validated model ready to score. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Model {
    version: Arc<str>,
    feature_service: FeatureServiceRef,
    scorer: Scorer,
    reference: Arc<ReferenceProfile>,
}

/// Logistic function, stable for large |z|.
#[inline]
pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

impl ModelArtifact {
    /// Parses an artifact. One in another layout is reported by its `format_version` (an
    /// older layout may lack fields this one needs), anything else unreadable as such.
    pub fn from_json(text: &str) -> Result<Self, ModelError> {
        serde_json::from_str(text).map_err(|e| {
            #[derive(Deserialize)]
            struct Version {
                format_version: u32,
            }
            match serde_json::from_str::<Version>(text) {
                Ok(v) if v.format_version != ARTIFACT_FORMAT => ModelError::Format {
                    found: v.format_version,
                },
                _ => ModelError::Unreadable(e.to_string()),
            }
        })
    }

    pub fn to_json(&self) -> String {
        // Plain data with finite floats: serialization cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl Model {
    /// Checks the artifact (format, feature names and count, finiteness) before it can serve.
    pub fn from_artifact(version: &str, artifact: ModelArtifact) -> Result<Self, ModelError> {
        if artifact.format_version != ARTIFACT_FORMAT {
            return Err(ModelError::Format {
                found: artifact.format_version,
            });
        }
        if artifact.feature_names.iter().ne(FEATURE_NAMES.iter()) {
            return Err(ModelError::Features {
                found: artifact.feature_names.clone(),
                expected: FEATURE_NAMES.iter().map(|s| (*s).to_owned()).collect(),
            });
        }
        let coefficients: FeatureVector =
            artifact.coefficients.as_slice().try_into().map_err(|_| {
                ModelError::CoefficientCount {
                    found: artifact.coefficients.len(),
                }
            })?;
        if !(coefficients.iter().all(|c| c.is_finite())
            && artifact.intercept.is_finite()
            && artifact.preprocessing.is_finite())
        {
            return Err(ModelError::NonFinite);
        }
        if !artifact.reference.matches_schema() {
            return Err(ModelError::Reference);
        }
        Ok(Self {
            version: Arc::from(version),
            reference: Arc::new(artifact.reference),
            feature_service: artifact.feature_service,
            scorer: Scorer {
                coefficients,
                intercept: artifact.intercept,
                preprocessing: artifact.preprocessing,
            },
        })
    }

    pub fn version(&self) -> &Arc<str> {
        &self.version
    }

    pub fn feature_service(&self) -> &FeatureServiceRef {
        &self.feature_service
    }

    /// The training data's distribution of the watched features.
    pub fn reference(&self) -> &Arc<ReferenceProfile> {
        &self.reference
    }

    pub fn intercept(&self) -> f64 {
        self.scorer.intercept
    }

    /// Transform and score one passenger.
    #[inline]
    pub fn predict(&self, passenger: &Passenger) -> Prediction {
        self.scorer.predict(passenger)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigmoid_is_stable_and_symmetric() {
        assert_eq!(sigmoid(0.0), 0.5);
        assert!((sigmoid(2.0) + sigmoid(-2.0) - 1.0).abs() < 1e-15);
        assert_eq!(sigmoid(-1000.0), 0.0);
        assert_eq!(sigmoid(1000.0), 1.0);
        assert!((sigmoid(1.0) - 0.731_058_578_630_004_9).abs() < 1e-15);
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;
    use crate::feature_store::passenger::Passenger;
    use crate::ml::evaluation::CvMetrics;

    /// A small valid artifact recording the given feature service.
    pub(crate) fn artifact_for(service: &str, version: i64) -> ModelArtifact {
        let p = Passenger::minimal();
        ModelArtifact {
            format_version: ARTIFACT_FORMAT,
            algorithm: "test".into(),
            feature_service: FeatureServiceRef {
                name: service.into(),
                version,
            },
            feature_names: FEATURE_NAMES.iter().map(|s| (*s).to_owned()).collect(),
            coefficients: (0..N_FEATURES).map(|i| i as f64 / 10.0 - 0.5).collect(),
            intercept: 0.25,
            preprocessing: Preprocessing::fit(&[&p], &[true], &[]),
            reference: ReferenceProfile::fit([&p]),
            params: TrainParams {
                folds: 5,
                repeats: 1,
                seed: 1,
                alpha: 1.0,
                alpha_grid: Vec::new(),
                max_iterations: 10,
            },
            metrics: CvMetrics::new(5, 1, vec![], (&[], &[])),
            training: TrainingInfo {
                rows: 1,
                positives: 1,
                unlabelled: 0,
                data_hash: "sha256:0".into(),
                trained_at: "2026-01-01T00:00:00Z".into(),
                as_of: "2026-01-01T00:00:00Z".into(),
                trained_by: "test".into(),
                git_commit: None,
                crate_versions: crate::core::build::crate_versions(),
                source: None,
            },
        }
    }
}

#[cfg(test)]
mod artifact_tests {
    use super::tests_support::artifact_for;
    use super::*;
    use crate::feature_store::passenger::RawPassenger;

    fn artifact() -> ModelArtifact {
        artifact_for("svc", 1)
    }

    #[test]
    fn valid_artifact_loads_and_round_trips_json() {
        let a = artifact();
        let back = ModelArtifact::from_json(&a.to_json()).unwrap();
        assert_eq!(back, a);
        assert!(Model::from_artifact("v1", back).is_ok());
    }

    #[test]
    fn broken_artifacts_are_refused() {
        let mut a = artifact();
        a.coefficients.pop();
        assert_eq!(
            Model::from_artifact("v", a).unwrap_err(),
            ModelError::CoefficientCount {
                found: N_FEATURES - 1
            }
        );
        let mut a = artifact();
        a.coefficients[3] = f64::NAN;
        assert_eq!(
            Model::from_artifact("v", a).unwrap_err(),
            ModelError::NonFinite
        );
        let mut a = artifact();
        a.feature_names[0] = "something_else".into();
        assert!(matches!(
            Model::from_artifact("v", a),
            Err(ModelError::Features { .. })
        ));
        let mut a = artifact();
        a.format_version = 99;
        assert_eq!(
            Model::from_artifact("v", a).unwrap_err(),
            ModelError::Format { found: 99 }
        );
        assert!(matches!(
            ModelArtifact::from_json("{not json"),
            Err(ModelError::Unreadable(_))
        ));
        // An old layout is named by its version even when its fields no longer parse, and
        // only an older one counts as outdated.
        let old = ModelArtifact::from_json(r#"{"format_version": 1, "weights": [1.0]}"#);
        assert_eq!(old.clone().unwrap_err(), ModelError::Format { found: 1 });
        assert!(old.unwrap_err().is_outdated());
        assert!(!ModelError::Format { found: 99 }.is_outdated());
        assert!(!ModelError::CoefficientCount { found: 3 }.is_outdated());
    }

    #[test]
    fn contributions_sum_with_intercept_to_the_logit() {
        let model = Model::from_artifact("v1", artifact()).unwrap();
        let p = RawPassenger {
            pclass: Some(3),
            sex: Some("male".into()),
            age: Some(40.0),
            sibsp: Some(2),
            parch: Some(1),
            fare: Some(20.0),
            embarked: Some("Q".into()),
            cabin: Some("C85".into()),
            ..Default::default()
        }
        .validate()
        .unwrap();
        let pred = model.predict(&p);
        let sum: f64 = pred.contributions.iter().sum();
        assert!((model.intercept() + sum - pred.logit).abs() < 1e-12);
        assert!((sigmoid(pred.logit) - pred.probability).abs() < 1e-15);
        assert!(
            pred.contributions
                .iter()
                .all(|c| !(c == &0.0 && c.is_sign_negative()))
        );
    }
}
