//! Monitoring: Prometheus metrics (one registry per process, no globals), feature drift
//! against each model's training reference, live performance from fed-back labels, and the
//! request log. Nothing here knows about HTTP.

pub mod drift;
pub mod feedback_store;
pub mod inference;
pub mod metrics;
pub mod performance;
pub mod recent;
pub mod request_log;

use std::sync::Arc;

pub use metrics::Metrics;

use crate::core::config::MonitoringSettings;
use crate::core::dependency::DependencyMetrics;
use crate::core::time::{Micros, now_micros};
use crate::feature_store::Passenger;
use crate::feature_store::profile::observe;
use drift::{DriftConfig, DriftMonitor};
use performance::{PerformanceConfig, PerformanceMonitor, Scored};
use request_log::{LogWriter, LoggedPrediction, RequestLog};

/// One scored passenger of a request, as monitoring sees it.
#[derive(Debug)]
pub struct Record {
    /// Position in the request (0 for a single prediction).
    pub position: u32,
    pub passenger_id: Option<i64>,
    pub passenger: Passenger,
    pub probability: f64,
    pub model_version: Arc<str>,
}

/// Who asked, and when the request reached its handler.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    pub request_id: Arc<str>,
    pub subject: Option<Arc<str>>,
    pub started: std::time::Instant,
}

/// Everything that watches predictions: the drift window, live performance and the log.
#[derive(Debug)]
pub struct Monitor {
    pub drift: DriftMonitor,
    pub performance: PerformanceMonitor,
    pub log: RequestLog,
    /// Requests and rows scored per model version (the V2 statistics).
    pub inference: inference::InferenceStats,
}

impl Monitor {
    /// The monitor and the request log's writer (run it as a task).
    pub fn new(
        pool: crate::core::db::Pool,
        settings: &MonitoringSettings,
        dependencies: DependencyMetrics,
    ) -> Result<(Monitor, LogWriter), prometheus::Error> {
        let (log, writer) =
            RequestLog::new(pool.clone(), &settings.request_log, dependencies.clone())?;
        let monitor = Monitor {
            drift: DriftMonitor::new(DriftConfig::from(settings))?,
            performance: PerformanceMonitor::new(
                pool,
                PerformanceConfig::from(settings),
                dependencies,
            )?,
            log,
            inference: inference::InferenceStats::default(),
        };
        Ok((monitor, writer))
    }

    pub fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        let mut all = self.drift.collectors();
        all.extend(self.performance.collectors());
        all.extend(self.log.metrics().collectors());
        all
    }

    /// Records one request's predictions: the drift window, the estimate and (unless
    /// `remember` is false, as for streamed files) the memory feedback looks in, and the
    /// request log. Never waits on I/O.
    pub fn record(&self, request: &RequestInfo, records: Vec<Record>, remember: bool) {
        if records.is_empty() {
            return;
        }
        let at = now_micros();
        let latency_us = u64::try_from(request.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.drift
            .observe(at, records.iter().map(|r| observe(&r.passenger)));
        let scored = records
            .iter()
            .map(|r| scored(request, r, at))
            .collect::<Vec<_>>();
        if remember {
            self.performance.record(&scored);
        } else {
            self.performance.estimate_only(&scored);
        }
        self.log.record(
            records
                .into_iter()
                .map(|r| LoggedPrediction {
                    request_id: request.request_id.clone(),
                    position: r.position,
                    at,
                    subject: request.subject.clone(),
                    passenger_id: r.passenger_id,
                    passenger: r.passenger,
                    survived: r.probability >= 0.5,
                    probability: r.probability,
                    model_version: r.model_version,
                    latency_us,
                })
                .collect(),
        );
    }

    /// Brings the drift and performance gauges up to date (before a scrape).
    pub fn refresh_gauges(&self, now: Micros) {
        self.drift.report(now);
        self.performance.report(now);
    }
}

fn scored(request: &RequestInfo, r: &Record, at: Micros) -> Scored {
    Scored {
        request_id: request.request_id.clone(),
        position: r.position,
        passenger_id: r.passenger_id,
        probability: r.probability,
        model_version: r.model_version.clone(),
        at,
    }
}
