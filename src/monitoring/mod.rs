//! Monitoring: Prometheus metrics (one registry per process, no globals). Drift, feedback
//! performance and the request log build on this.

pub mod metrics;

pub use metrics::Metrics;
