//! Monitoring: Prometheus metrics (one registry per process, no globals), feature drift
//! against each model's training reference, live performance from fed-back labels, and the
//! request log. Nothing here knows about HTTP.

pub mod drift;
pub mod metrics;
pub mod request_log;

pub use metrics::Metrics;
