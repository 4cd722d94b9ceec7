//! Inference statistics per model version, in the shape of Triton's statistics extension
//! (`GET /v2/models/stats`): requests and rows scored, successes and failures with their
//! cumulative durations. Lock-free on the request path: a version's counters are atomics,
//! found in a map that is copied only when a version is seen for the first time.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;

/// The counters of one model version.
#[derive(Debug, Default)]
pub struct VersionCounters {
    /// Rows (passengers) scored by successful requests.
    pub inference_count: AtomicU64,
    /// Successful requests (each one execution of the model over its rows).
    pub execution_count: AtomicU64,
    pub success_count: AtomicU64,
    pub success_ns: AtomicU64,
    pub fail_count: AtomicU64,
    pub fail_ns: AtomicU64,
    /// Milliseconds since the Unix epoch of the latest request (0 before the first).
    pub last_inference_ms: AtomicU64,
}

/// A snapshot of one version's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VersionStats {
    pub inference_count: u64,
    pub execution_count: u64,
    pub success_count: u64,
    pub success_ns: u64,
    pub fail_count: u64,
    pub fail_ns: u64,
    pub last_inference_ms: u64,
}

/// Every version's counters since the process started.
#[derive(Debug, Default)]
pub struct InferenceStats {
    versions: ArcSwap<HashMap<Arc<str>, Arc<VersionCounters>>>,
}

fn saturating_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl InferenceStats {
    fn counters(&self, version: &str) -> Arc<VersionCounters> {
        if let Some(c) = self.versions.load().get(version) {
            return Arc::clone(c);
        }
        // First request on this version: copy the map with it added (rare; a few versions).
        let mut added = None;
        self.versions.rcu(|map| {
            let mut map = HashMap::clone(map);
            let c = map
                .entry(Arc::from(version))
                .or_insert_with(|| Arc::new(VersionCounters::default()));
            added = Some(Arc::clone(c));
            map
        });
        added.unwrap_or_default()
    }

    /// Records one request scored by `version`: `rows` rows when it succeeded, and how long
    /// it took.
    pub fn record(&self, version: &str, rows: usize, ok: bool, took: Duration) {
        let c = self.counters(version);
        let ns = saturating_ns(took);
        if ok {
            c.inference_count
                .fetch_add(u64::try_from(rows).unwrap_or(u64::MAX), Ordering::Relaxed);
            c.execution_count.fetch_add(1, Ordering::Relaxed);
            c.success_count.fetch_add(1, Ordering::Relaxed);
            c.success_ns.fetch_add(ns, Ordering::Relaxed);
        } else {
            c.fail_count.fetch_add(1, Ordering::Relaxed);
            c.fail_ns.fetch_add(ns, Ordering::Relaxed);
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        c.last_inference_ms.store(now, Ordering::Relaxed);
    }

    /// The counters of `version` (all zero when it has not served yet).
    pub fn get(&self, version: &str) -> VersionStats {
        self.versions
            .load()
            .get(version)
            .map(|c| VersionStats {
                inference_count: c.inference_count.load(Ordering::Relaxed),
                execution_count: c.execution_count.load(Ordering::Relaxed),
                success_count: c.success_count.load(Ordering::Relaxed),
                success_ns: c.success_ns.load(Ordering::Relaxed),
                fail_count: c.fail_count.load(Ordering::Relaxed),
                fail_ns: c.fail_ns.load(Ordering::Relaxed),
                last_inference_ms: c.last_inference_ms.load(Ordering::Relaxed),
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_version() {
        let stats = InferenceStats::default();
        assert_eq!(stats.get("v1"), VersionStats::default());
        stats.record("v1", 3, true, Duration::from_nanos(100));
        stats.record("v1", 2, false, Duration::from_nanos(50));
        stats.record("v2", 1, true, Duration::from_nanos(7));
        let v1 = stats.get("v1");
        assert_eq!(
            (
                v1.inference_count,
                v1.execution_count,
                v1.success_count,
                v1.success_ns
            ),
            (3, 1, 1, 100)
        );
        assert_eq!((v1.fail_count, v1.fail_ns), (1, 50));
        assert!(v1.last_inference_ms > 0);
        assert_eq!(stats.get("v2").inference_count, 1);
    }
}
