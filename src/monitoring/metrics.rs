//! Every metric the service exports, in one place, with one prefix (`titanic_`), base units
//! and bounded labels. Each `Metrics` owns its registry, so tests never fight over globals.

use prometheus::{
    Counter, Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Latency buckets in seconds: 100 µs to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// The `outcome` of `model_reloads_total`.
pub const MODEL_RELOAD_OUTCOMES: &[&str] = &["loaded", "refused"];

/// The `reason` of `auth_failures_total` for a valid token without the route's scope (the
/// other reasons are `TokenError::reason`).
pub const MISSING_SCOPE: &str = "missing_scope";

/// The `outcome` of `predictions_total`.
pub const PREDICTION_OUTCOMES: &[&str] = &["survived", "died"];

/// Why the service closed a connection (the `reason` of `http_connections_closed_total`).
pub const CONNECTION_CLOSE_REASONS: &[&str] =
    &["refused", "header_timeout", "idle_timeout", "stalled"];

#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// Requests by matched route pattern, method and status code.
    pub http_requests: IntCounterVec,
    /// Request latency by matched route pattern and method.
    pub http_duration: HistogramVec,
    /// Requests being served right now.
    pub http_in_flight: prometheus::IntGauge,
    /// Predictions by outcome (`survived`/`died`) and model version.
    pub predictions: IntCounterVec,
    /// Requests refused by the rate limiter.
    pub rate_limited: prometheus::IntCounter,
    /// Requests answered 503 `overloaded` by the concurrency limit.
    pub shed: prometheus::IntCounter,
    /// Requests answered 429 `too_many_in_flight`: their subject held its share of the slots.
    pub shed_subject: prometheus::IntCounter,
    /// Open HTTP connections.
    pub connections_open: IntGauge,
    /// Connections closed by the service, by reason: `refused` (over the connection cap),
    /// `header_timeout`, `idle_timeout`, `stalled`.
    pub connections_closed: IntCounterVec,
    /// Streamed uploads cut off for sending too slowly.
    pub slow_uploads: prometheus::IntCounter,
    /// Authentication and authorization failures by reason.
    pub auth_failures: IntCounterVec,
    /// 1 for the model version being served.
    pub model_info: IntGaugeVec,
    /// Models loaded because the production alias moved elsewhere, by outcome
    /// (`loaded`, `refused`).
    pub model_reloads: IntCounterVec,
    /// Shadow predictions by candidate version and whether they agreed with production.
    pub shadow_predictions: IntCounterVec,
    /// |candidate probability - production probability| of shadow predictions.
    pub shadow_delta: HistogramVec,
    /// The Tokio runtime serving requests, read at each scrape.
    runtime: RuntimeMetrics,
    /// Standard unprefixed `process_*` metrics (CPU, memory, file descriptors) on Linux.
    process: Registry,
}

/// Tokio's stable runtime metrics as gauges and a counter.
#[derive(Debug, Clone)]
struct RuntimeMetrics {
    workers: IntGauge,
    alive_tasks: IntGauge,
    global_queue_depth: IntGauge,
    busy_seconds: Counter,
}

impl RuntimeMetrics {
    fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            workers: IntGauge::new("tokio_workers", "Worker threads of the Tokio runtime")?,
            alive_tasks: IntGauge::new("tokio_alive_tasks", "Tasks alive in the Tokio runtime")?,
            global_queue_depth: IntGauge::new(
                "tokio_global_queue_depth",
                "Tasks waiting in the Tokio runtime's global queue",
            )?,
            busy_seconds: Counter::new(
                "tokio_worker_busy_seconds_total",
                "Time Tokio workers spent busy, summed over workers",
            )?,
        };
        registry.register(Box::new(m.workers.clone()))?;
        registry.register(Box::new(m.alive_tasks.clone()))?;
        registry.register(Box::new(m.global_queue_depth.clone()))?;
        registry.register(Box::new(m.busy_seconds.clone()))?;
        Ok(m)
    }

    /// Reads the current runtime (nothing outside one).
    fn refresh(&self) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let m = handle.metrics();
        self.workers.set(m.num_workers() as i64);
        self.alive_tasks.set(m.num_alive_tasks() as i64);
        self.global_queue_depth.set(m.global_queue_depth() as i64);
        let busy: f64 = (0..m.num_workers())
            .map(|w| m.worker_total_busy_duration(w).as_secs_f64())
            .sum();
        let delta = busy - self.busy_seconds.get();
        if delta > 0.0 {
            self.busy_seconds.inc_by(delta);
        }
    }
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("titanic".to_owned()), None)?;
        let http_requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by route, method and status",
            ),
            &["route", "method", "status"],
        )?;
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by route and method",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route", "method"],
        )?;
        let http_in_flight =
            prometheus::IntGauge::new("http_requests_in_flight", "HTTP requests being served")?;
        let predictions = IntCounterVec::new(
            Opts::new(
                "predictions_total",
                "Predictions served by outcome and model version",
            ),
            &["outcome", "model_version"],
        )?;
        let rate_limited = prometheus::IntCounter::new(
            "rate_limited_requests_total",
            "Requests refused with 429 by the rate limiter",
        )?;
        let shed = prometheus::IntCounter::new(
            "load_shed_requests_total",
            "Requests refused with 503 because server.max_concurrent_requests were in flight",
        )?;
        let shed_subject = prometheus::IntCounter::new(
            "subject_shed_requests_total",
            "Requests refused with 429 because their subject held server.max_concurrent_per_subject",
        )?;
        let connections_open = IntGauge::new("http_connections_open", "HTTP connections open now")?;
        let connections_closed = IntCounterVec::new(
            Opts::new(
                "http_connections_closed_total",
                "Connections the service closed: refused over the cap, or held without use",
            ),
            &["reason"],
        )?;
        for reason in CONNECTION_CLOSE_REASONS {
            connections_closed.with_label_values(&[reason]);
        }
        let slow_uploads = prometheus::IntCounter::new(
            "slow_uploads_total",
            "Streamed uploads cut off below server.min_upload_bytes_per_sec",
        )?;
        registry.register(Box::new(shed_subject.clone()))?;
        registry.register(Box::new(connections_open.clone()))?;
        registry.register(Box::new(connections_closed.clone()))?;
        registry.register(Box::new(slow_uploads.clone()))?;
        let auth_failures = IntCounterVec::new(
            Opts::new(
                "auth_failures_total",
                "Requests refused with 401 or 403, by reason",
            ),
            &["reason"],
        )?;
        let model_info = IntGaugeVec::new(
            Opts::new("model_info", "The served model version (value 1)"),
            &["version"],
        )?;
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_duration.clone()))?;
        registry.register(Box::new(http_in_flight.clone()))?;
        registry.register(Box::new(predictions.clone()))?;
        registry.register(Box::new(rate_limited.clone()))?;
        registry.register(Box::new(shed.clone()))?;
        registry.register(Box::new(auth_failures.clone()))?;
        let model_reloads = IntCounterVec::new(
            Opts::new(
                "model_reloads_total",
                "Models loaded after the production alias moved, by outcome",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(model_info.clone()))?;
        registry.register(Box::new(model_reloads.clone()))?;
        // Every known label value exists at 0 from start: dashboards and alert rules read 0,
        // not "no data", before the first event.
        for outcome in MODEL_RELOAD_OUTCOMES {
            model_reloads.with_label_values(&[outcome]);
        }
        for reason in crate::core::security::TokenError::ALL
            .iter()
            .map(|e| e.reason())
            .chain([MISSING_SCOPE])
        {
            auth_failures.with_label_values(&[reason]);
        }
        let shadow_predictions = IntCounterVec::new(
            Opts::new(
                "shadow_predictions_total",
                "Shadow predictions by candidate version and agreement with production",
            ),
            &["candidate", "agreement"],
        )?;
        let shadow_delta = HistogramVec::new(
            HistogramOpts::new(
                "shadow_probability_delta",
                "Absolute difference between candidate and production probabilities",
            )
            .buckets(vec![0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0]),
            &["candidate"],
        )?;
        registry.register(Box::new(shadow_predictions.clone()))?;
        registry.register(Box::new(shadow_delta.clone()))?;
        let runtime = RuntimeMetrics::new(&registry)?;
        let process = Registry::new();
        #[cfg(target_os = "linux")]
        process.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(Self {
            runtime,
            process,
            registry,
            http_requests,
            http_duration,
            http_in_flight,
            predictions,
            rate_limited,
            shed,
            shed_subject,
            connections_open,
            connections_closed,
            slow_uploads,
            auth_failures,
            model_info,
            model_reloads,
            shadow_predictions,
            shadow_delta,
        })
    }

    /// Registers collectors owned elsewhere (e.g. the feature store's) for export.
    pub fn register_all(
        &self,
        collectors: Vec<Box<dyn prometheus::core::Collector>>,
    ) -> Result<(), prometheus::Error> {
        for c in collectors {
            self.registry.register(c)?;
        }
        Ok(())
    }

    /// Exports a route's request counter (status 200) and latency histogram at 0, so that
    /// the rules judging it (the latency objective of `POST /predict`) read 0, not nothing,
    /// before its first request.
    pub fn declare_route(&self, route: &str, method: &str) {
        self.http_requests
            .with_label_values(&[route, method, "200"]);
        self.http_duration.with_label_values(&[route, method]);
    }

    /// Records the served version (and clears the previous one).
    pub fn set_model_version(&self, version: &str) {
        self.model_info.reset();
        self.model_info.with_label_values(&[version]).set(1);
        for outcome in PREDICTION_OUTCOMES {
            self.predictions.with_label_values(&[outcome, version]);
        }
    }

    pub fn record_shadow(&self, candidate: &str, agree: bool, delta: f64) {
        let agreement = if agree { "agree" } else { "disagree" };
        self.shadow_predictions
            .with_label_values(&[candidate, agreement])
            .inc();
        self.shadow_delta
            .with_label_values(&[candidate])
            .observe(delta);
    }

    pub fn record_prediction(&self, survived: bool, version: &str) {
        let outcome = if survived { "survived" } else { "died" };
        self.predictions
            .with_label_values(&[outcome, version])
            .inc();
    }

    /// The Prometheus text exposition of every metric (runtime gauges read now).
    pub fn render(&self) -> String {
        self.runtime.refresh();
        let mut families = self.registry.gather();
        families.extend(self.process.gather());
        let mut buf = Vec::with_capacity(16 * 1024);
        // Encoding gathered families into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&families, &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prefixed_names_and_labels() {
        let m = Metrics::new().unwrap();
        m.http_requests
            .with_label_values(&["/predict", "POST", "200"])
            .inc();
        m.record_prediction(true, "v1");
        m.set_model_version("v2");
        let text = m.render();
        assert!(text.contains(
            r#"titanic_http_requests_total{method="POST",route="/predict",status="200"} 1"#
        ));
        assert!(
            text.contains(r#"titanic_predictions_total{model_version="v1",outcome="survived"} 1"#)
        );
        assert!(text.contains(r#"titanic_model_info{version="v2"} 1"#));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn renders_runtime_and_process_metrics() {
        let m = Metrics::new().unwrap();
        let text = m.render();
        assert!(text.contains("titanic_tokio_workers 2"), "{text}");
        assert!(text.contains("# TYPE titanic_tokio_worker_busy_seconds_total counter"));
        assert!(text.contains("titanic_tokio_alive_tasks "));
        #[cfg(target_os = "linux")]
        for name in [
            "process_resident_memory_bytes",
            "process_cpu_seconds_total",
            "process_open_fds",
            "process_max_fds",
        ] {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name}");
        }
    }

    #[test]
    fn known_label_values_exist_at_zero_from_start() {
        let m = Metrics::new().unwrap();
        m.set_model_version("v3");
        m.declare_route("/predict", "POST");
        let text = m.render();
        for line in [
            r#"titanic_model_reloads_total{outcome="loaded"} 0"#,
            r#"titanic_model_reloads_total{outcome="refused"} 0"#,
            r#"titanic_auth_failures_total{reason="expired"} 0"#,
            r#"titanic_auth_failures_total{reason="missing_scope"} 0"#,
            r#"titanic_predictions_total{model_version="v3",outcome="died"} 0"#,
            r#"titanic_http_requests_total{method="POST",route="/predict",status="200"} 0"#,
            r#"titanic_http_request_duration_seconds_count{method="POST",route="/predict"} 0"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    #[test]
    fn two_instances_do_not_collide() {
        assert!(Metrics::new().is_ok() && Metrics::new().is_ok());
    }
}
