//! Latency and errors of calls to the service's dependencies (Redis, SQLite), by dependency
//! and operation: one histogram and one counter, shared by every component that calls out.

use std::future::Future;
use std::time::Instant;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts};

/// Buckets in seconds: 50 µs to 5 s.
const BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0,
];

#[derive(Debug, Clone)]
pub struct DependencyMetrics {
    duration: HistogramVec,
    errors: IntCounterVec,
}

impl DependencyMetrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        Ok(Self {
            duration: HistogramVec::new(
                HistogramOpts::new(
                    "dependency_request_duration_seconds",
                    "Latency of calls to Redis and SQLite, by dependency and operation",
                )
                .buckets(BUCKETS.to_vec()),
                &["dependency", "operation"],
            )?,
            errors: IntCounterVec::new(
                Opts::new(
                    "dependency_errors_total",
                    "Failed calls to Redis and SQLite, by dependency and operation",
                ),
                &["dependency", "operation"],
            )?,
        })
    }

    pub fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.duration.clone()),
            Box::new(self.errors.clone()),
        ]
    }

    /// Exports the series of `dependency`'s `operations` at zero calls and zero errors, so
    /// that dashboards and alert rules read 0 rather than nothing before the first call.
    pub fn declare(&self, dependency: &str, operations: &[&str]) {
        for operation in operations {
            let labels = [dependency, operation];
            self.duration.with_label_values(&labels);
            self.errors.with_label_values(&labels);
        }
    }

    /// Runs `call`, recording its latency and, when it fails, an error.
    pub async fn time<T, E>(
        &self,
        dependency: &str,
        operation: &str,
        call: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let started = Instant::now();
        let result = call.await;
        let labels = [dependency, operation];
        self.duration
            .with_label_values(&labels)
            .observe(started.elapsed().as_secs_f64());
        if result.is_err() {
            self.errors.with_label_values(&labels).inc();
        }
        result
    }

    /// Calls recorded so far, and failures (for tests).
    pub fn counts(&self, dependency: &str, operation: &str) -> (u64, u64) {
        let labels = [dependency, operation];
        (
            self.duration.with_label_values(&labels).get_sample_count(),
            self.errors.with_label_values(&labels).get(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn calls_are_timed_and_failures_counted() {
        let m = DependencyMetrics::new().unwrap();
        let ok: Result<u8, ()> = m.time("redis", "read", async { Ok(1) }).await;
        assert_eq!(ok, Ok(1));
        let err: Result<u8, &str> = m.time("redis", "read", async { Err("down") }).await;
        assert_eq!(err, Err("down"));
        assert_eq!(m.counts("redis", "read"), (2, 1));
        assert_eq!(m.counts("sqlite", "read"), (0, 0));
    }
}
