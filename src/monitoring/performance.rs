//! Live model performance. Ground-truth labels sent back for predictions (feedback) give
//! accuracy, log loss, ROC AUC, Brier score and calibration over a sliding window, per
//! model version; beside them, while labels are missing, an estimate of accuracy from the
//! predicted probabilities alone (confidence-based: a calibrated model classifying with
//! probability p is right with probability max(p, 1 - p)).
//!
//! Feedback finds its prediction in memory (recent predictions of this process) or in the
//! request log, and is stored in the `feedback` table before it is acknowledged.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::core::db::Pool;
use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec, Opts};
use serde::Serialize;

use super::feedback_store::FeedbackStore;
use super::recent::RecentPredictions;
use crate::core::dependency::DependencyMetrics;
use crate::core::time::{Micros, micros_to_rfc3339, now_micros};
use crate::ml::evaluation::{CalibrationBin, accuracy, brier, calibration, log_loss, roc_auc};

/// One scored passenger, remembered so feedback can find it.
#[derive(Debug, Clone)]
pub struct Scored {
    pub request_id: Arc<str>,
    pub position: u32,
    pub passenger_id: Option<i64>,
    pub probability: f64,
    pub model_version: Arc<str>,
    pub at: Micros,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PerformanceConfig {
    /// Most recent labelled predictions (and, for the estimate, predictions) per version.
    pub window_size: usize,
    /// Entries older than this leave the windows (0: no age limit).
    pub window_secs: u64,
    /// Predictions remembered in memory for feedback (the request log covers the rest).
    pub remembered_predictions: u64,
}

impl From<&crate::core::config::MonitoringSettings> for PerformanceConfig {
    fn from(m: &crate::core::config::MonitoringSettings) -> Self {
        Self {
            window_size: m.performance_window_size,
            window_secs: m.performance_window_secs,
            remembered_predictions: m.remembered_predictions,
        }
    }
}

/// A label for a prediction: which prediction, and the truth.
#[derive(Debug, Clone)]
pub struct Feedback {
    pub request_id: Option<String>,
    pub passenger_id: Option<i64>,
    pub position: Option<u32>,
    pub survived: bool,
    pub subject: Option<String>,
}

/// What a recorded label was matched with.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Recorded {
    pub request_id: String,
    pub position: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passenger_id: Option<i64>,
    pub model_version: String,
    pub probability: f64,
    pub predicted_survived: bool,
    pub survived: bool,
    pub correct: bool,
    pub predicted_at: String,
}

#[derive(Debug, thiserror::Error)]
pub enum FeedbackError {
    /// Names the field to supply.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("a label for prediction {0} was already recorded")]
    Duplicate(String),
    #[error("feedback store: {0}")]
    Db(#[from] sqlx::Error),
}

#[derive(Debug, Clone, Copy)]
struct Labelled {
    at: Micros,
    probability: f64,
    survived: bool,
}

#[derive(Debug, Default)]
struct Windows {
    labelled: HashMap<Arc<str>, VecDeque<Labelled>>,
    predicted: HashMap<Arc<str>, VecDeque<(Micros, f64)>>,
}

#[derive(Debug, Clone)]
struct Gauges {
    feedback: IntCounterVec,
    labelled: IntGaugeVec,
    live: GaugeVec,
    estimated: GaugeVec,
}

impl Gauges {
    fn new() -> Result<Self, prometheus::Error> {
        let gauges = Self {
            feedback: IntCounterVec::new(
                Opts::new(
                    "feedback_total",
                    "Labels sent back, by outcome: recorded, not_found, duplicate, invalid, error",
                ),
                &["outcome"],
            )?,
            labelled: IntGaugeVec::new(
                Opts::new(
                    "live_labelled_predictions",
                    "Labelled predictions in the performance window, by model version",
                ),
                &["model_version"],
            )?,
            live: GaugeVec::new(
                Opts::new(
                    "live_performance",
                    "Performance on labelled predictions in the window, by model version and \
                     metric (accuracy, log_loss, roc_auc, brier)",
                ),
                &["model_version", "metric"],
            )?,
            estimated: GaugeVec::new(
                Opts::new(
                    "estimated_accuracy",
                    "Accuracy expected from the predicted probabilities alone (confidence-based), \
                     by model version",
                ),
                &["model_version"],
            )?,
        };
        for outcome in FEEDBACK_OUTCOMES {
            gauges.feedback.with_label_values(&[outcome]);
        }
        Ok(gauges)
    }
}

/// The `outcome` of `feedback_total`.
pub const FEEDBACK_OUTCOMES: &[&str] = &["recorded", "not_found", "duplicate", "invalid", "error"];

/// Performance of one model version over the window.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct VersionPerformance {
    pub model_version: String,
    /// Labelled predictions in the window.
    pub labelled: usize,
    pub accuracy: Option<f64>,
    pub log_loss: Option<f64>,
    pub roc_auc: Option<f64>,
    pub brier: Option<f64>,
    pub calibration: Vec<CalibrationBin>,
    /// Predictions in the window, their mean probability, and the accuracy expected from
    /// the probabilities alone.
    pub predictions: usize,
    pub mean_probability: Option<f64>,
    pub estimated_accuracy: Option<f64>,
}

/// `GET /monitoring/performance`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PerformanceReport {
    pub config: PerformanceConfig,
    pub versions: Vec<VersionPerformance>,
}

/// Live performance of one serving process (its windows start from the stored labels).
#[derive(Debug)]
pub struct PerformanceMonitor {
    config: PerformanceConfig,
    store: FeedbackStore,
    recent: RecentPredictions,
    windows: Mutex<Windows>,
    gauges: Gauges,
}

impl PerformanceMonitor {
    pub fn new(
        pool: Pool,
        config: PerformanceConfig,
        dependencies: DependencyMetrics,
    ) -> Result<Self, prometheus::Error> {
        Ok(Self {
            recent: RecentPredictions::new(
                usize::try_from(config.remembered_predictions).unwrap_or(usize::MAX),
            ),
            config,
            store: FeedbackStore::new(pool, dependencies),
            windows: Mutex::new(Windows::default()),
            gauges: Gauges::new()?,
        })
    }

    pub fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        let g = self.gauges.clone();
        vec![
            Box::new(g.feedback),
            Box::new(g.labelled),
            Box::new(g.live),
            Box::new(g.estimated),
        ]
    }

    fn lock(&self) -> MutexGuard<'_, Windows> {
        self.windows.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Fills the label windows from the stored feedback (after a restart).
    pub async fn load(&self) -> Result<usize, sqlx::Error> {
        let horizon = now_micros() - self.horizon_micros();
        let labels = self
            .store
            .recent_labels(horizon, self.config.window_size)
            .await?;
        let mut windows = self.lock();
        for label in &labels {
            push_bounded(
                windows
                    .labelled
                    .entry(label.model_version.clone())
                    .or_default(),
                Labelled {
                    at: label.received_at,
                    probability: label.probability,
                    survived: label.survived,
                },
                self.config.window_size,
            );
        }
        Ok(labels.len())
    }

    /// How far back the windows reach (everything with `window_secs = 0`).
    fn horizon_micros(&self) -> i64 {
        match self.config.window_secs {
            0 => i64::MAX / 2,
            secs => i64::try_from(secs.saturating_mul(1_000_000)).unwrap_or(i64::MAX / 2),
        }
    }

    /// Adds predictions to the confidence-based estimate only.
    pub fn estimate_only(&self, scored: &[Scored]) {
        let mut windows = self.lock();
        for s in scored {
            let w = match windows.predicted.get_mut(&s.model_version) {
                Some(w) => w,
                None => windows
                    .predicted
                    .entry(s.model_version.clone())
                    .or_default(),
            };
            push_bounded(w, (s.at, s.probability), self.config.window_size);
        }
    }

    /// Remembers one request's predictions for feedback and adds them to the estimate.
    pub fn record(&self, scored: &[Scored]) {
        self.estimate_only(scored);
        self.recent.insert(scored);
    }

    /// Records a label: finds the prediction, stores the label durably, then counts it.
    pub async fn submit(&self, feedback: Feedback) -> Result<Recorded, FeedbackError> {
        let result = self.submit_inner(feedback).await;
        let outcome = match &result {
            Ok(_) => "recorded",
            Err(FeedbackError::Invalid { .. }) => "invalid",
            Err(FeedbackError::NotFound(_)) => "not_found",
            Err(FeedbackError::Duplicate(_)) => "duplicate",
            Err(FeedbackError::Db(_)) => "error",
        };
        self.gauges.feedback.with_label_values(&[outcome]).inc();
        result
    }

    /// Counts a label refused before it reached [`PerformanceMonitor::submit`] (a body that
    /// did not parse).
    pub fn count_invalid(&self) {
        self.gauges.feedback.with_label_values(&["invalid"]).inc();
    }

    async fn submit_inner(&self, feedback: Feedback) -> Result<Recorded, FeedbackError> {
        if feedback.request_id.as_deref().is_some_and(str::is_empty) {
            return Err(FeedbackError::Invalid {
                field: "request_id",
                message: "must not be empty".to_owned(),
            });
        }
        let scored = self.find(&feedback).await?;
        let key = format!("{}/{}", scored.request_id, scored.position);
        let received_at = now_micros();
        let inserted = self
            .store
            .insert(
                &key,
                &scored,
                received_at,
                feedback.survived,
                feedback.subject.as_deref(),
            )
            .await?;
        if !inserted {
            return Err(FeedbackError::Duplicate(key));
        }
        {
            let mut windows = self.lock();
            push_bounded(
                windows
                    .labelled
                    .entry(scored.model_version.clone())
                    .or_default(),
                Labelled {
                    at: received_at,
                    probability: scored.probability,
                    survived: feedback.survived,
                },
                self.config.window_size,
            );
        }
        let predicted_survived = scored.probability >= 0.5;
        Ok(Recorded {
            request_id: scored.request_id.to_string(),
            position: scored.position,
            passenger_id: scored.passenger_id,
            model_version: scored.model_version.to_string(),
            probability: scored.probability,
            predicted_survived,
            survived: feedback.survived,
            correct: predicted_survived == feedback.survived,
            predicted_at: micros_to_rfc3339(scored.at),
        })
    }

    /// The prediction a label is for: by request id (with the passenger id or position
    /// when the request scored several), or the latest prediction of a passenger id.
    async fn find(&self, f: &Feedback) -> Result<Scored, FeedbackError> {
        match (&f.request_id, f.passenger_id) {
            (None, None) => Err(FeedbackError::Invalid {
                field: "request_id",
                message: "give the request_id of the prediction (x-request-id), or a passenger_id"
                    .to_owned(),
            }),
            (Some(request_id), _) => {
                let since = now_micros() - self.horizon_micros();
                let scored = match self.recent.by_request(request_id, since) {
                    Some(s) => s,
                    None => {
                        self.store
                            .logged_request(request_id, f.position, f.passenger_id)
                            .await?
                    }
                };
                if scored.is_empty() && f.position.is_none() && f.passenger_id.is_none() {
                    return Err(FeedbackError::NotFound(format!(
                        "no prediction with request id {request_id:?} is known (too old, not \
                         logged, or from another service)"
                    )));
                }
                pick(scored, f, request_id)
            }
            // The newest of this process's memory and the log (another replica, or a
            // streamed file, may have scored the passenger since).
            (None, Some(id)) => {
                let since = now_micros() - self.horizon_micros();
                let remembered = self.recent.by_passenger(id, since);
                let logged = self.store.logged_passenger(id).await?;
                [remembered, logged]
                    .into_iter()
                    .flatten()
                    .max_by_key(|s| s.at)
                    .ok_or_else(|| {
                        FeedbackError::NotFound(format!(
                            "no prediction for passenger {id} is known"
                        ))
                    })
            }
        }
    }

    /// Performance per model version over the window as of `now`; the gauges are set to it.
    pub fn report(&self, now: Micros) -> PerformanceReport {
        let horizon = now - self.horizon_micros();
        let mut windows = self.lock();
        for w in windows.labelled.values_mut() {
            while w.front().is_some_and(|l| l.at < horizon) {
                w.pop_front();
            }
        }
        for w in windows.predicted.values_mut() {
            while w.front().is_some_and(|(at, _)| *at < horizon) {
                w.pop_front();
            }
        }
        windows.labelled.retain(|_, w| !w.is_empty());
        windows.predicted.retain(|_, w| !w.is_empty());
        let mut versions: Vec<&Arc<str>> = windows
            .labelled
            .keys()
            .chain(windows.predicted.keys())
            .collect();
        versions.sort();
        versions.dedup();
        let versions: Vec<VersionPerformance> = versions
            .into_iter()
            .map(|v| {
                let labelled = windows.labelled.get(v);
                let predicted = windows.predicted.get(v);
                version_performance(v, labelled, predicted)
            })
            .collect();
        drop(windows);
        self.set_gauges(&versions);
        PerformanceReport {
            config: self.config,
            versions,
        }
    }

    fn set_gauges(&self, versions: &[VersionPerformance]) {
        let g = &self.gauges;
        g.labelled.reset();
        g.live.reset();
        g.estimated.reset();
        for v in versions {
            let version = v.model_version.as_str();
            g.labelled
                .with_label_values(&[version])
                .set(v.labelled as i64);
            for (metric, value) in [
                ("accuracy", v.accuracy),
                ("log_loss", v.log_loss),
                ("roc_auc", v.roc_auc),
                ("brier", v.brier),
            ] {
                if let Some(value) = value {
                    g.live.with_label_values(&[version, metric]).set(value);
                }
            }
            if let Some(e) = v.estimated_accuracy {
                g.estimated.with_label_values(&[version]).set(e);
            }
        }
    }
}

fn pick(scored: Vec<Scored>, f: &Feedback, request_id: &str) -> Result<Scored, FeedbackError> {
    let n = scored.len();
    let found = if let Some(position) = f.position {
        scored.into_iter().find(|s| s.position == position)
    } else if let Some(id) = f.passenger_id {
        scored.into_iter().find(|s| s.passenger_id == Some(id))
    } else if n == 1 {
        scored.into_iter().next()
    } else {
        return Err(FeedbackError::Invalid {
            field: "position",
            message: format!(
                "request {request_id:?} scored several passengers: give the passenger_id or the \
                 position (0-based) of the one this label is for"
            ),
        });
    };
    found.ok_or_else(|| {
        FeedbackError::NotFound(match (f.position, f.passenger_id) {
            (Some(p), _) => format!("request {request_id:?} has no prediction at position {p}"),
            (None, Some(id)) => format!("request {request_id:?} did not score passenger {id}"),
            (None, None) => format!("request {request_id:?} has no prediction"),
        })
    })
}

fn push_bounded<T>(w: &mut VecDeque<T>, item: T, cap: usize) {
    if cap == 0 {
        return;
    }
    while w.len() >= cap {
        w.pop_front();
    }
    w.push_back(item);
}

fn version_performance(
    version: &str,
    labelled: Option<&VecDeque<Labelled>>,
    predicted: Option<&VecDeque<(Micros, f64)>>,
) -> VersionPerformance {
    let (labels, probabilities): (Vec<bool>, Vec<f64>) = labelled
        .into_iter()
        .flatten()
        .map(|l| (l.survived, l.probability))
        .unzip();
    let has_labels = !labels.is_empty();
    let both_classes = labels.iter().any(|y| *y) && labels.iter().any(|y| !*y);
    let predicted: Vec<f64> = predicted.into_iter().flatten().map(|(_, p)| *p).collect();
    let n = predicted.len() as f64;
    VersionPerformance {
        model_version: version.to_owned(),
        labelled: labels.len(),
        accuracy: has_labels.then(|| accuracy(&labels, &probabilities)),
        log_loss: has_labels.then(|| log_loss(&labels, &probabilities)),
        roc_auc: both_classes.then(|| roc_auc(&labels, &probabilities)),
        brier: has_labels.then(|| brier(&labels, &probabilities)),
        calibration: if has_labels {
            calibration(&labels, &probabilities, 10)
                .into_iter()
                .filter(|b| b.count > 0)
                .collect()
        } else {
            Vec::new()
        },
        predictions: predicted.len(),
        mean_probability: (n > 0.0).then(|| predicted.iter().sum::<f64>() / n),
        estimated_accuracy: (n > 0.0)
            .then(|| predicted.iter().map(|p| p.max(1.0 - p)).sum::<f64>() / n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deps() -> DependencyMetrics {
        DependencyMetrics::new().unwrap()
    }

    fn config() -> PerformanceConfig {
        PerformanceConfig {
            window_size: 100,
            window_secs: 3600,
            remembered_predictions: 1000,
        }
    }

    fn scored(request: &str, position: u32, passenger: Option<i64>, p: f64) -> Scored {
        Scored {
            request_id: request.into(),
            position,
            passenger_id: passenger,
            probability: p,
            model_version: "v1".into(),
            at: now_micros(),
        }
    }

    fn label(request: Option<&str>, passenger: Option<i64>, survived: bool) -> Feedback {
        Feedback {
            request_id: request.map(Into::into),
            passenger_id: passenger,
            position: None,
            survived,
            subject: Some("tester".into()),
        }
    }

    crate::core::db::testing::on_both_backends! {
        async fn labels_match_predictions_and_give_live_metrics(pool) {
            let m = PerformanceMonitor::new(pool.clone(), config(), deps()).unwrap();
            m.record(&[scored("a", 0, Some(1), 0.9)]);
            m.record(&[
                scored("b", 0, Some(2), 0.2),
                scored("b", 1, Some(3), 0.7),
            ]);
            let before = m.report(now_micros());
            assert_eq!(before.versions[0].labelled, 0);
            assert_eq!(before.versions[0].predictions, 3);
            let estimate = (0.9 + 0.8 + 0.7) / 3.0;
            assert!((before.versions[0].estimated_accuracy.unwrap() - estimate).abs() < 1e-12);
            assert_eq!(before.versions[0].accuracy, None);

            let r = m.submit(label(Some("a"), None, true)).await.unwrap();
            assert!(r.correct);
            // Several passengers in one request: the passenger id picks one.
            let err = m.submit(label(Some("b"), None, true)).await.unwrap_err();
            assert!(
                matches!(
                    err,
                    FeedbackError::Invalid {
                        field: "position",
                        ..
                    }
                ),
                "{err}"
            );
            let r = m.submit(label(Some("b"), Some(3), false)).await.unwrap();
            assert!(!r.correct);
            assert_eq!(r.position, 1);
            // By passenger id alone: the latest prediction of that passenger.
            m.submit(label(None, Some(2), false)).await.unwrap();
            // One label per prediction.
            assert!(matches!(
                m.submit(label(Some("a"), None, false)).await.unwrap_err(),
                FeedbackError::Duplicate(_)
            ));
            assert!(matches!(
                m.submit(label(Some("zzz"), None, true)).await.unwrap_err(),
                FeedbackError::NotFound(_)
            ));
            assert!(matches!(
                m.submit(label(None, None, true)).await.unwrap_err(),
                FeedbackError::Invalid { .. }
            ));

            let v = &m.report(now_micros()).versions[0];
            assert_eq!(v.labelled, 3);
            // 0.9 -> survived (right), 0.7 -> died (wrong), 0.2 -> died (right).
            assert!((v.accuracy.unwrap() - 2.0 / 3.0).abs() < 1e-12);
            // The one survivor scored above both who died.
            assert_eq!(v.roc_auc, Some(1.0));
            let brier = ((0.1f64).powi(2) + 0.7f64.powi(2) + 0.2f64.powi(2)) / 3.0;
            assert!((v.brier.unwrap() - brier).abs() < 1e-12);

            // Stored: a new process starts with the same labels.
            let again = PerformanceMonitor::new(pool, config(), deps()).unwrap();
            assert_eq!(again.load().await.unwrap(), 3);
            let v = &again.report(now_micros()).versions[0];
            assert_eq!(v.labelled, 3);
            assert!((v.accuracy.unwrap() - 2.0 / 3.0).abs() < 1e-12);
        }
    }

    /// A prediction in the request log that this process did not make.
    async fn logged_elsewhere(pool: &Pool, request: &str, passenger: i64, p: f64, version: &str) {
        sqlx::query(
            "INSERT INTO prediction_log (request_id, position, logged_at, passenger_id, features, \
             probability, survived, model_version, latency_us) \
             VALUES ($1, 0, $2, $3, '{}', $4, 0, $5, 10)",
        )
        .bind(request)
        .bind(now_micros())
        .bind(passenger)
        .bind(p)
        .bind(version)
        .execute(pool)
        .await
        .unwrap();
    }

    crate::core::db::testing::on_both_backends! {
        async fn feedback_finds_logged_predictions_after_a_restart(pool) {
            logged_elsewhere(&pool, "old", 42, 0.3, "v7").await;
            let m = PerformanceMonitor::new(pool, config(), deps()).unwrap();
            let r = m.submit(label(None, Some(42), true)).await.unwrap();
            assert_eq!(r.model_version, "v7");
            assert_eq!(r.request_id, "old");
            assert!(!r.correct);
            let r = m.submit(label(Some("old"), None, true)).await.unwrap_err();
            assert!(matches!(r, FeedbackError::Duplicate(_)));
        }
    }

    crate::core::db::testing::on_both_backends! {
        async fn a_passenger_label_goes_to_the_newest_prediction_in_memory_or_log(pool) {
            let m = PerformanceMonitor::new(pool.clone(), config(), deps()).unwrap();
            let mut old = scored("in-memory", 0, Some(9), 0.9);
            old.at -= 1_000_000;
            m.record(&[old]);
            // Scored again since, by another replica: only the log knows.
            logged_elsewhere(&pool, "elsewhere", 9, 0.2, "v2").await;
            let r = m.submit(label(None, Some(9), false)).await.unwrap();
            assert_eq!(
                (r.request_id.as_str(), r.model_version.as_str()),
                ("elsewhere", "v2")
            );
        }
    }

    #[test]
    fn windows_drop_old_entries() {
        let mut w = VecDeque::new();
        for i in 0..5 {
            push_bounded(&mut w, i, 3);
        }
        assert_eq!(w, [2, 3, 4]);
    }
}
