//! Feature drift: a sliding window of served passengers (bounded by count and by age),
//! kept as running counts against the production model's reference profile so that each
//! observation costs a few increments and a report costs one pass over the bins, never a
//! rescan of the window or of the training data.
//!
//! Tests per feature (Evidently's defaults for a reference of this size, p < threshold):
//! two-sample Kolmogorov-Smirnov for numeric features, chi-squared for categorical ones, a
//! two-proportion z-test for binary ones; the population stability index (PSI) for every
//! feature. The dataset drifts when the share of drifting features reaches a threshold.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus::{Gauge, GaugeVec, IntGauge, IntGaugeVec, Opts};
use serde::Serialize;

use crate::core::stats::{chi_squared_sf, ks_two_sample_p, normal_two_sided_p};
use crate::core::time::{Micros, micros_to_rfc3339};
use crate::feature_store::profile::{
    FeatureProfile, Kind, MONITORED, Observation, ReferenceProfile,
};

/// Window bounds and decision thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DriftConfig {
    /// Most recent observations kept.
    pub window_size: usize,
    /// Observations older than this leave the window (0: no age limit).
    pub window_secs: u64,
    /// Below this many observations (of a feature) no test is run.
    pub min_observations: u64,
    /// A feature drifts when its test's p-value is below this.
    pub p_value: f64,
    /// PSI levels: `warn` from the first, `alert` from the second.
    pub psi_warn: f64,
    pub psi_alert: f64,
    /// The dataset drifts when at least this share of tested features drift.
    pub drift_share: f64,
}

impl From<&crate::core::config::MonitoringSettings> for DriftConfig {
    fn from(m: &crate::core::config::MonitoringSettings) -> Self {
        Self {
            window_size: m.drift_window_size,
            window_secs: m.drift_window_secs,
            min_observations: m.drift_min_observations,
            p_value: m.drift_p_value,
            psi_warn: m.psi_warn,
            psi_alert: m.psi_alert,
            drift_share: m.drift_share,
        }
    }
}

/// Running counts of one feature over the window, aligned with its reference profile.
#[derive(Debug, Clone)]
struct Counts {
    count: u64,
    missing: u64,
    sum: f64,
    bins: Vec<u64>,
    /// Numeric: window values equal to reference value `i`...
    equal: Vec<u64>,
    /// ...and strictly between reference values `i - 1` and `i` (the last: above them all).
    between: Vec<u64>,
}

impl Counts {
    fn new(profile: &FeatureProfile) -> Self {
        let distinct = profile.values.len();
        let numeric = profile.kind == Kind::Numeric;
        Self {
            count: 0,
            missing: 0,
            sum: 0.0,
            bins: vec![0; profile.bins.len()],
            equal: vec![0; if numeric { distinct } else { 0 }],
            between: vec![0; if numeric { distinct + 1 } else { 0 }],
        }
    }

    /// Adds (`delta` = 1) or removes (`delta` = -1) one value.
    fn apply(&mut self, profile: &FeatureProfile, value: Option<f64>, delta: i64) {
        let step = |c: &mut u64| *c = c.saturating_add_signed(delta);
        let Some(v) = value else {
            step(&mut self.missing);
            return;
        };
        step(&mut self.count);
        self.sum += v * delta as f64;
        step(&mut self.bins[profile.bin_of(v)]);
        if profile.kind == Kind::Numeric {
            let i = profile.values.partition_point(|r| *r < v);
            if profile.values.get(i) == Some(&v) {
                step(&mut self.equal[i]);
            } else {
                step(&mut self.between[i]);
            }
        }
    }
}

#[derive(Debug)]
struct State {
    reference: Option<(Arc<str>, Arc<ReferenceProfile>)>,
    window: VecDeque<(Micros, Observation)>,
    counts: Vec<Counts>,
}

impl State {
    fn rebuild(&mut self) {
        self.counts.clear();
        let Some((_, profile)) = &self.reference else {
            return;
        };
        self.counts = profile.features.iter().map(Counts::new).collect();
        for (_, obs) in &self.window {
            for (i, f) in profile.features.iter().enumerate() {
                self.counts[i].apply(f, obs[i], 1);
            }
        }
    }

    fn push(&mut self, at: Micros, obs: Observation) {
        if let Some((_, profile)) = &self.reference {
            for (i, f) in profile.features.iter().enumerate() {
                self.counts[i].apply(f, obs[i], 1);
            }
        }
        self.window.push_back((at, obs));
    }

    fn pop(&mut self) {
        let Some((_, obs)) = self.window.pop_front() else {
            return;
        };
        if let Some((_, profile)) = &self.reference {
            for (i, f) in profile.features.iter().enumerate() {
                self.counts[i].apply(f, obs[i], -1);
            }
        }
    }
}

/// The drift window of one serving process.
#[derive(Debug)]
pub struct DriftMonitor {
    config: DriftConfig,
    state: Mutex<State>,
    gauges: Gauges,
}

/// The latest report as Prometheus gauges (set each time a report is made, e.g. on scrape).
#[derive(Debug, Clone)]
struct Gauges {
    observations: IntGauge,
    p_value: GaugeVec,
    statistic: GaugeVec,
    psi: GaugeVec,
    drifted: IntGaugeVec,
    share: Gauge,
    dataset: IntGauge,
}

impl Gauges {
    fn new() -> Result<Self, prometheus::Error> {
        let by_feature =
            |name: &str, help: &str| GaugeVec::new(Opts::new(name, help), &["feature"]);
        Ok(Self {
            observations: IntGauge::with_opts(Opts::new(
                "drift_window_observations",
                "Served passengers in the drift window",
            ))?,
            p_value: by_feature(
                "feature_drift_p_value",
                "p-value of the feature's drift test (NaN without enough data)",
            )?,
            statistic: by_feature(
                "feature_drift_statistic",
                "Statistic of the feature's drift test: KS distance, chi-squared or |z|",
            )?,
            psi: by_feature(
                "feature_psi",
                "Population stability index of the feature against the training data",
            )?,
            drifted: IntGaugeVec::new(
                Opts::new(
                    "feature_drifted",
                    "1 when the feature's drift test rejects at the configured p-value",
                ),
                &["feature"],
            )?,
            share: Gauge::with_opts(Opts::new(
                "dataset_drift_share",
                "Share of tested features that drift (NaN without enough data)",
            ))?,
            dataset: IntGauge::with_opts(Opts::new(
                "dataset_drift",
                "1 when the share of drifting features reaches the threshold",
            ))?,
        })
    }

    fn set(&self, report: &DriftReport) {
        self.observations.set(report.window.observations as i64);
        for f in &report.features {
            let label = [f.feature];
            self.p_value
                .with_label_values(&label)
                .set(f.p_value.unwrap_or(f64::NAN));
            self.statistic
                .with_label_values(&label)
                .set(f.statistic.unwrap_or(f64::NAN));
            self.psi
                .with_label_values(&label)
                .set(f.psi.unwrap_or(f64::NAN));
            self.drifted
                .with_label_values(&label)
                .set(i64::from(f.drifted));
        }
        self.share.set(report.drift_share.unwrap_or(f64::NAN));
        self.dataset.set(i64::from(report.dataset_drift));
    }
}

/// The drift of one feature.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FeatureDrift {
    pub feature: &'static str,
    pub kind: Kind,
    pub test: &'static str,
    /// KS distance, chi-squared statistic or |z|; `None` with too few observations.
    pub statistic: Option<f64>,
    pub p_value: Option<f64>,
    pub drifted: bool,
    pub psi: Option<f64>,
    /// `ok`, `warn` or `alert` by the PSI levels; `insufficient_data` without a PSI.
    pub psi_level: &'static str,
    /// Window observations with a value, and without.
    pub observations: u64,
    pub missing: u64,
    pub reference: Distribution,
    pub current: Distribution,
}

/// Shares per bin (the reference's bins), and the mean of a numeric feature.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Distribution {
    pub bins: Vec<BinShare>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean: Option<f64>,
    pub missing_share: f64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BinShare {
    pub label: String,
    pub share: f64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WindowInfo {
    pub observations: usize,
    pub max_observations: usize,
    pub max_age_secs: u64,
    pub oldest: Option<String>,
    pub newest: Option<String>,
}

/// The drift report of `GET /monitoring/drift`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DriftReport {
    /// `ok`, `insufficient_data` (fewer observations than `min_observations`), or
    /// `no_reference` (no model with a reference profile is served).
    pub status: &'static str,
    /// The model version whose training data is the reference.
    pub reference_version: Option<String>,
    pub window: WindowInfo,
    pub config: DriftConfig,
    /// Features tested (with enough observations) and how many of them drift.
    pub tested_features: usize,
    pub drifted_features: usize,
    pub drift_share: Option<f64>,
    pub dataset_drift: bool,
    pub features: Vec<FeatureDrift>,
}

impl DriftMonitor {
    pub fn new(config: DriftConfig) -> Result<Self, prometheus::Error> {
        Ok(Self {
            config,
            state: Mutex::new(State {
                reference: None,
                window: VecDeque::with_capacity(config.window_size.min(1 << 16)),
                counts: Vec::new(),
            }),
            gauges: Gauges::new()?,
        })
    }

    /// The drift gauges, for registration with the service's metrics.
    pub fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        let g = self.gauges.clone();
        vec![
            Box::new(g.observations),
            Box::new(g.p_value),
            Box::new(g.statistic),
            Box::new(g.psi),
            Box::new(g.drifted),
            Box::new(g.share),
            Box::new(g.dataset),
        ]
    }

    pub fn config(&self) -> DriftConfig {
        self.config
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is counts only: a panic elsewhere cannot leave it unusable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Compares the window with this model version's training data from now on. A profile
    /// that does not match the watched features is ignored (reported as `no_reference`).
    pub fn set_reference(&self, version: Arc<str>, profile: Arc<ReferenceProfile>) {
        let mut state = self.lock();
        if state
            .reference
            .as_ref()
            .is_some_and(|(v, p)| *v == version && Arc::ptr_eq(p, &profile))
        {
            return;
        }
        state.reference = profile.matches_schema().then_some((version, profile));
        state.rebuild();
    }

    /// Adds served passengers' observations at time `at` (microseconds), evicting what
    /// falls out of the window.
    pub fn observe(&self, at: Micros, observations: impl IntoIterator<Item = Observation>) {
        let mut state = self.lock();
        for obs in observations {
            if self.config.window_size == 0 {
                return;
            }
            while state.window.len() >= self.config.window_size {
                state.pop();
            }
            state.push(at, obs);
        }
        self.evict_old(&mut state, at);
    }

    fn evict_old(&self, state: &mut State, now: Micros) {
        if self.config.window_secs == 0 {
            return; // No age limit.
        }
        let age = i64::try_from(self.config.window_secs.saturating_mul(1_000_000));
        let horizon = now.saturating_sub(age.unwrap_or(i64::MAX));
        while state.window.front().is_some_and(|(t, _)| *t < horizon) {
            state.pop();
        }
    }

    /// The drift of the window as of `now`; the gauges are set to it.
    pub fn report(&self, now: Micros) -> DriftReport {
        let report = self.compute(now);
        self.gauges.set(&report);
        report
    }

    fn compute(&self, now: Micros) -> DriftReport {
        let mut state = self.lock();
        self.evict_old(&mut state, now);
        let window = WindowInfo {
            observations: state.window.len(),
            max_observations: self.config.window_size,
            max_age_secs: self.config.window_secs,
            oldest: state.window.front().map(|(t, _)| micros_to_rfc3339(*t)),
            newest: state.window.back().map(|(t, _)| micros_to_rfc3339(*t)),
        };
        let Some((version, profile)) = &state.reference else {
            return DriftReport {
                status: "no_reference",
                reference_version: None,
                window,
                config: self.config,
                tested_features: 0,
                drifted_features: 0,
                drift_share: None,
                dataset_drift: false,
                features: Vec::new(),
            };
        };
        let features: Vec<FeatureDrift> = profile
            .features
            .iter()
            .zip(&state.counts)
            .zip(MONITORED.iter())
            .map(|((reference, counts), def)| self.feature_drift(def.name, reference, counts))
            .collect();
        let tested = features.iter().filter(|f| f.p_value.is_some()).count();
        let drifted = features.iter().filter(|f| f.drifted).count();
        let enough = window.observations as u64 >= self.config.min_observations && tested > 0;
        let share = enough.then(|| drifted as f64 / tested as f64);
        DriftReport {
            status: if enough { "ok" } else { "insufficient_data" },
            reference_version: Some(version.to_string()),
            window,
            config: self.config,
            tested_features: tested,
            drifted_features: drifted,
            drift_share: share,
            dataset_drift: share.is_some_and(|s| s >= self.config.drift_share),
            features,
        }
    }

    fn feature_drift(
        &self,
        name: &'static str,
        reference: &FeatureProfile,
        counts: &Counts,
    ) -> FeatureDrift {
        // A feature the training rows never had a value for cannot be compared.
        let enough = counts.count >= self.config.min_observations.max(1) && reference.count > 0;
        let (statistic, p_value) = if enough {
            let (s, p) = match reference.kind {
                Kind::Numeric => ks(reference, counts),
                Kind::Categorical => chi_squared(reference, counts),
                Kind::Binary => z_test(reference, counts),
            };
            (Some(s), Some(p))
        } else {
            (None, None)
        };
        let psi = enough.then(|| psi(reference, counts));
        let distribution =
            |bins: &[u64], count: u64, missing: u64, mean: Option<f64>| Distribution {
                bins: reference
                    .bins
                    .iter()
                    .zip(bins)
                    .map(|(b, c)| BinShare {
                        label: b.label.clone(),
                        share: share(*c, count),
                    })
                    .collect(),
                mean,
                missing_share: share(missing, count + missing),
            };
        let reference_bins: Vec<u64> = reference.bins.iter().map(|b| b.count).collect();
        let numeric = reference.kind == Kind::Numeric;
        FeatureDrift {
            feature: name,
            kind: reference.kind,
            test: reference.kind.test(),
            statistic,
            p_value,
            drifted: p_value.is_some_and(|p| p < self.config.p_value),
            psi,
            psi_level: match psi {
                None => "insufficient_data",
                Some(v) if v >= self.config.psi_alert => "alert",
                Some(v) if v >= self.config.psi_warn => "warn",
                Some(_) => "ok",
            },
            observations: counts.count,
            missing: counts.missing,
            reference: distribution(
                &reference_bins,
                reference.count,
                reference.missing,
                reference.mean,
            ),
            current: distribution(
                &counts.bins,
                counts.count,
                counts.missing,
                (numeric && counts.count > 0).then(|| counts.sum / counts.count as f64),
            ),
        }
    }
}

fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// Exact two-sample KS distance between the reference's empirical distribution and the
/// window's: both step functions only jump at reference values or between them, so the
/// supremum is at a reference value or just below one (or past the last).
fn ks(reference: &FeatureProfile, counts: &Counts) -> (f64, f64) {
    let (n, m) = (reference.count as f64, counts.count as f64);
    let (mut ref_cum, mut win_cum, mut d) = (0u64, 0u64, 0f64);
    for i in 0..reference.values.len() {
        win_cum += counts.between[i];
        d = d.max((ref_cum as f64 / n - win_cum as f64 / m).abs());
        ref_cum += reference.value_counts[i];
        win_cum += counts.equal[i];
        d = d.max((ref_cum as f64 / n - win_cum as f64 / m).abs());
    }
    (d, ks_two_sample_p(d, reference.count, counts.count))
}

/// Chi-squared goodness of fit of the window's category counts to the reference
/// frequencies (categories the reference never saw get a tiny expected share).
fn chi_squared(reference: &FeatureProfile, counts: &Counts) -> (f64, f64) {
    let m = counts.count as f64;
    let mut statistic = 0.0;
    let mut categories = 0;
    for (b, &observed) in reference.bins.iter().zip(&counts.bins) {
        let expected_share = (b.count as f64 / reference.count as f64).max(1e-4);
        if b.count == 0 && observed == 0 {
            continue;
        }
        categories += 1;
        let expected = expected_share * m;
        statistic += (observed as f64 - expected).powi(2) / expected;
    }
    let dof = (categories.max(2) - 1) as f64;
    (statistic, chi_squared_sf(statistic, dof))
}

/// Two-proportion z-test on the share of the second category (`female`, `true`).
fn z_test(reference: &FeatureProfile, counts: &Counts) -> (f64, f64) {
    let (n, m) = (reference.count as f64, counts.count as f64);
    let (x1, x2) = (reference.bins[1].count as f64, counts.bins[1] as f64);
    let pooled = (x1 + x2) / (n + m);
    let se = (pooled * (1.0 - pooled) * (1.0 / n + 1.0 / m)).sqrt();
    if se == 0.0 {
        // Both samples all one category: identical.
        return (0.0, 1.0);
    }
    let z = ((x1 / n - x2 / m) / se).abs();
    (z, normal_two_sided_p(z))
}

/// Population stability index over the reference's bins (empty bins count as 0.0001).
fn psi(reference: &FeatureProfile, counts: &Counts) -> f64 {
    reference
        .bins
        .iter()
        .zip(&counts.bins)
        .map(|(b, &c)| {
            let expected = (b.count as f64 / reference.count as f64).max(1e-4);
            let actual = (c as f64 / counts.count as f64).max(1e-4);
            (actual - expected) * (actual / expected).ln()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feature_store::Passenger;
    use crate::feature_store::profile::tests::train;
    use crate::feature_store::profile::{N_MONITORED, observe};

    fn config() -> DriftConfig {
        DriftConfig {
            window_size: 1000,
            window_secs: 3600,
            min_observations: 30,
            p_value: 0.05,
            psi_warn: 0.1,
            psi_alert: 0.25,
            drift_share: 0.5,
        }
    }

    fn monitor(passengers: &[Passenger]) -> DriftMonitor {
        let m = DriftMonitor::new(config()).unwrap();
        m.set_reference("v1".into(), Arc::new(ReferenceProfile::fit(passengers)));
        m
    }

    /// Every `step`-th passenger, from `start`.
    fn sample(passengers: &[Passenger], start: usize, step: usize) -> Vec<Observation> {
        passengers
            .iter()
            .skip(start)
            .step_by(step)
            .map(observe)
            .collect()
    }

    #[test]
    fn a_sample_of_the_training_data_does_not_drift() {
        let train = train();
        let m = monitor(&train);
        m.observe(1_000, sample(&train, 1, 3));
        let r = m.report(2_000);
        assert_eq!(r.status, "ok");
        assert_eq!(r.window.observations, 297);
        assert_eq!(r.tested_features, N_MONITORED);
        assert!(!r.dataset_drift, "{r:#?}");
        assert!(r.drifted_features <= 1, "{r:#?}");
        for f in &r.features {
            assert!(f.psi.unwrap() < 0.1, "{}: {:?}", f.feature, f.psi);
        }
    }

    #[test]
    fn old_rich_first_class_passengers_drift() {
        let train = train();
        let m = monitor(&train);
        // First-class passengers, twenty years older and paying three times as much.
        let shifted: Vec<Observation> = train
            .iter()
            .filter(|p| p.pclass == crate::feature_store::passenger::Pclass::First)
            .map(|p| {
                let mut p = p.clone();
                p.age = Some(p.age.unwrap_or(40.0) + 20.0);
                p.fare = p.fare.map(|f| f * 3.0);
                observe(&p)
            })
            .collect();
        m.observe(1_000, shifted);
        let r = m.report(2_000);
        assert!(r.dataset_drift, "{r:#?}");
        let drifted: Vec<&str> = r
            .features
            .iter()
            .filter(|f| f.drifted)
            .map(|f| f.feature)
            .collect();
        for f in ["age", "fare", "pclass"] {
            assert!(drifted.contains(&f), "{f} in {drifted:?}");
        }
        let age = r.features.iter().find(|f| f.feature == "age").unwrap();
        assert_eq!(age.psi_level, "alert");
        assert!(age.current.mean.unwrap() > age.reference.mean.unwrap() + 20.0);
    }

    #[test]
    fn ks_distance_matches_a_direct_computation() {
        let train = train();
        let profile = ReferenceProfile::fit(&train);
        let m = monitor(&train);
        let window = sample(&train, 0, 7);
        m.observe(1, window.clone());
        let r = m.report(2);
        // Direct: the sup over all sample points of |F_ref - F_win|, for fare (index 5).
        let mut reference: Vec<f64> = train.iter().filter_map(|p| p.fare).collect();
        let current: Vec<f64> = window.iter().filter_map(|o| o[5]).collect();
        reference.sort_by(f64::total_cmp);
        let ecdf =
            |s: &[f64], x: f64| s.iter().filter(|v| **v <= x).count() as f64 / s.len() as f64;
        let mut points = reference.clone();
        points.extend(&current);
        let direct = points
            .iter()
            .map(|x| (ecdf(&reference, *x) - ecdf(&current, *x)).abs())
            .fold(0.0, f64::max);
        let fare = &r.features[5];
        assert_eq!(fare.feature, "fare");
        assert!((fare.statistic.unwrap() - direct).abs() < 1e-12);
        assert_eq!(profile.features[5].count, 891);
    }

    #[test]
    fn the_window_is_bounded_by_count_and_age() {
        let train = train();
        let m = DriftMonitor::new(DriftConfig {
            window_size: 100,
            window_secs: 10,
            ..config()
        })
        .unwrap();
        m.set_reference("v1".into(), Arc::new(ReferenceProfile::fit(&train)));
        m.observe(0, sample(&train, 0, 1));
        assert_eq!(m.report(0).window.observations, 100);
        // Counts follow the window exactly: the same as a fresh window of its contents.
        let fresh = monitor(&train);
        fresh.observe(0, sample(&train, 791, 1));
        let (a, b) = (m.report(0), fresh.report(0));
        for (x, y) in a.features.iter().zip(&b.features) {
            assert_eq!(x.statistic, y.statistic, "{}", x.feature);
        }
        m.observe(5_000_000, sample(&train, 0, 10)[..20].to_vec());
        assert_eq!(m.report(5_000_000).window.observations, 100);
        // Eleven seconds later the first batch is gone, the second (at 5 s) is not.
        let r = m.report(11_000_000);
        assert_eq!(r.window.observations, 20);
        assert_eq!(r.status, "insufficient_data");
        assert!(r.features.iter().all(|f| f.p_value.is_none()));
        assert!(!r.dataset_drift);
        assert_eq!(m.report(16_000_000).window.observations, 0);
    }

    #[test]
    fn a_new_reference_recounts_the_window() {
        let train = train();
        let m = monitor(&train);
        m.observe(0, sample(&train, 0, 2));
        let before = m.report(0);
        let first_class: Vec<Passenger> = train
            .iter()
            .filter(|p| p.pclass == crate::feature_store::passenger::Pclass::First)
            .cloned()
            .collect();
        m.set_reference("v2".into(), Arc::new(ReferenceProfile::fit(&first_class)));
        let after = m.report(0);
        assert_eq!(after.reference_version.as_deref(), Some("v2"));
        assert_eq!(after.window.observations, before.window.observations);
        assert!(after.drifted_features > before.drifted_features);
        // A profile of the wrong shape is not used.
        let mut broken = ReferenceProfile::fit(&train);
        broken.features.pop();
        m.set_reference("v3".into(), Arc::new(broken));
        assert_eq!(m.report(0).status, "no_reference");
    }
}
