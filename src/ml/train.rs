//! Fitting logistic regression with linfa, stratified k-fold evaluation, and the artifact.
//! CPU-bound: callers on an async runtime run it with `spawn_blocking`.

use linfa::prelude::*;
use linfa_logistic::LogisticRegression;
use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

use super::dataset::TrainingSet;
use super::evaluation::{CvMetrics, FoldMetrics, stratified_kfold};
use super::model::{ARTIFACT_FORMAT, FeatureServiceRef, ModelArtifact, Scorer, TrainingInfo};
use crate::core::config::TrainingSettings;
use crate::core::time::{Micros, micros_to_rfc3339, now_rfc3339};
use crate::feature_store::{FEATURE_NAMES, N_FEATURES, Passenger, Preprocessing};

/// Hyperparameters and evaluation settings, stored with the artifact.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrainParams {
    pub folds: usize,
    pub seed: u64,
    pub alpha: f64,
    pub max_iterations: u64,
}

impl From<&TrainingSettings> for TrainParams {
    fn from(s: &TrainingSettings) -> Self {
        Self {
            folds: s.folds,
            seed: s.seed,
            alpha: s.alpha,
            max_iterations: s.max_iterations,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("not enough labelled passengers to train: {rows} rows, {positives} survivors")]
    NotEnoughData { rows: usize, positives: usize },
    #[error("fitting failed: {0}")]
    Fit(String),
    #[error("fitting produced non-finite coefficients")]
    NonFinite,
}

/// Fits preprocessing and logistic regression on the given rows only.
pub fn fit(
    passengers: &[&Passenger],
    labels: &[bool],
    params: &TrainParams,
) -> Result<Scorer, TrainError> {
    let positives = labels.iter().filter(|y| **y).count();
    if positives == 0 || positives == labels.len() {
        return Err(TrainError::NotEnoughData {
            rows: labels.len(),
            positives,
        });
    }
    let preprocessing = Preprocessing::fit(passengers.iter().copied());
    let flat: Vec<f64> = passengers
        .iter()
        .flat_map(|p| preprocessing.transform(p))
        .collect();
    let records = Array2::from_shape_vec((passengers.len(), N_FEATURES), flat)
        .map_err(|e| TrainError::Fit(e.to_string()))?;
    let targets = Array1::from(labels.to_vec());
    let dataset = Dataset::new(records, targets);
    let model = LogisticRegression::default()
        .alpha(params.alpha)
        .max_iterations(params.max_iterations)
        .fit(&dataset)
        .map_err(|e| TrainError::Fit(e.to_string()))?;
    // linfa labels the more frequent class positive; orient the parameters towards `true`.
    let sign = if model.labels().pos.class { 1.0 } else { -1.0 };
    let mut coefficients = [0.0; N_FEATURES];
    for (c, w) in coefficients.iter_mut().zip(model.params().iter()) {
        *c = sign * w;
    }
    let intercept = sign * model.intercept();
    if !(coefficients.iter().all(|c| c.is_finite()) && intercept.is_finite()) {
        return Err(TrainError::NonFinite);
    }
    Ok(Scorer {
        coefficients,
        intercept,
        preprocessing,
    })
}

/// Stratified k-fold cross-validation. Everything learned from data (imputation statistics,
/// scaling, coefficients) is fitted inside each training fold, so nothing leaks from the
/// held-out fold.
pub fn cross_validate(set: &TrainingSet, params: &TrainParams) -> Result<CvMetrics, TrainError> {
    let folds = stratified_kfold(&set.labels, params.folds, params.seed);
    let mut in_test = vec![usize::MAX; set.len()];
    for (k, fold) in folds.iter().enumerate() {
        for &i in fold {
            in_test[i] = k;
        }
    }
    let mut per_fold = Vec::with_capacity(folds.len());
    for (k, test) in folds.iter().enumerate() {
        let (train_x, train_y): (Vec<&Passenger>, Vec<bool>) = (0..set.len())
            .filter(|&i| in_test[i] != k)
            .map(|i| (&set.passengers[i], set.labels[i]))
            .unzip();
        let fitted = fit(&train_x, &train_y, params)?;
        let test_y: Vec<bool> = test.iter().map(|&i| set.labels[i]).collect();
        let test_p: Vec<f64> = test
            .iter()
            .map(|&i| fitted.probability(&set.passengers[i]))
            .collect();
        per_fold.push(FoldMetrics::compute(&test_y, &test_p));
    }
    Ok(CvMetrics::from_folds(params.seed, per_fold))
}

/// Cross-validates, then fits on every row and packages the artifact, recording the feature
/// service the rows were read through and the time they were read as of.
pub fn train(
    set: &TrainingSet,
    params: &TrainParams,
    feature_service: FeatureServiceRef,
    as_of: Micros,
) -> Result<ModelArtifact, TrainError> {
    let needed = params.folds.max(2);
    if set.len() < needed * 2 || set.positives() < needed || set.len() - set.positives() < needed {
        return Err(TrainError::NotEnoughData {
            rows: set.len(),
            positives: set.positives(),
        });
    }
    let metrics = cross_validate(set, params)?;
    let all: Vec<&Passenger> = set.passengers.iter().collect();
    let fitted = fit(&all, &set.labels, params)?;
    Ok(ModelArtifact {
        format_version: ARTIFACT_FORMAT,
        algorithm: "logistic_regression (linfa-logistic, L2)".to_owned(),
        feature_service,
        feature_names: FEATURE_NAMES.iter().map(|s| (*s).to_owned()).collect(),
        coefficients: fitted.coefficients.to_vec(),
        intercept: fitted.intercept,
        preprocessing: fitted.preprocessing,
        params: *params,
        metrics,
        training: TrainingInfo {
            rows: set.len(),
            positives: set.positives(),
            data_hash: set.data_hash.clone(),
            trained_at: now_rfc3339(),
            as_of: micros_to_rfc3339(as_of),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feature_store::ingest;
    use crate::feature_store::pipeline::FEATURE_NAMES;
    use crate::ml::model::Model;

    fn bundled() -> TrainingSet {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/titanic/train.csv");
        TrainingSet::from_records(&ingest::read_all(&path).unwrap())
    }

    fn service() -> FeatureServiceRef {
        FeatureServiceRef {
            name: "titanic_survival".into(),
            version: 1,
        }
    }

    fn params() -> TrainParams {
        TrainParams {
            folds: 5,
            seed: 42,
            alpha: 1.0,
            max_iterations: 1000,
        }
    }

    #[test]
    fn cross_validated_accuracy_beats_the_raw_column_baseline() {
        let set = bundled();
        assert_eq!((set.len(), set.positives()), (891, 342));
        // Not a lucky seed: every one of these splits must clear the bar.
        for seed in [1, 42, 2026] {
            let m = cross_validate(&set, &TrainParams { seed, ..params() }).unwrap();
            assert_eq!(m.folds, 5);
            assert!(m.accuracy.mean >= 0.80, "seed {seed}: {m:?}");
            assert!(m.roc_auc.mean >= 0.85, "seed {seed}: {m:?}");
            assert!(m.log_loss.mean < 0.45, "seed {seed}: {m:?}");
        }
    }

    #[test]
    fn artifact_is_complete_and_oriented_towards_survival() {
        let set = bundled();
        let artifact = train(&set, &params(), service(), 0).unwrap();
        assert_eq!(artifact.feature_names.len(), FEATURE_NAMES.len());
        assert_eq!(artifact.training.rows, 891);
        assert!(artifact.training.data_hash.starts_with("sha256:"));
        let sex_male = FEATURE_NAMES.iter().position(|n| *n == "sex_male").unwrap();
        assert!(
            artifact.coefficients[sex_male] < 0.0,
            "men were less likely to survive"
        );
        // Serving reproduces the training-time scorer exactly.
        let model = Model::from_artifact("v-test", artifact.clone()).unwrap();
        let all: Vec<&Passenger> = set.passengers.iter().collect();
        let scorer = fit(&all, &set.labels, &params()).unwrap();
        for p in &set.passengers[..50] {
            assert_eq!(model.predict(p).probability, scorer.probability(p));
        }
        // In-sample accuracy of the final fit is in the expected range.
        let probs: Vec<f64> = set
            .passengers
            .iter()
            .map(|p| scorer.probability(p))
            .collect();
        let acc = crate::ml::evaluation::accuracy(&set.labels, &probs);
        assert!(acc > 0.8 && acc < 0.9, "{acc}");
    }

    #[test]
    fn single_class_data_is_refused() {
        let mut set = bundled();
        set.labels.iter_mut().for_each(|y| *y = false);
        assert!(matches!(
            train(&set, &params(), service(), 0),
            Err(TrainError::NotEnoughData { positives: 0, .. })
        ));
    }
}
