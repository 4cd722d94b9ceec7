//! What drift is measured on: the passenger attributes a model reads, observed the same way
//! in training (the reference profile stored with each model version) and in serving (the
//! drift window). The profile keeps everything the drift tests need, so drift is never
//! computed by rescanning training data.

use serde::{Deserialize, Serialize};

use crate::feature_store::Passenger;
use crate::feature_store::passenger::{Embarked, Sex};
use crate::feature_store::pipeline::Title;

/// How a feature is tested (Evidently's defaults for a reference of under 1,000 rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = FeatureKind)]
pub enum Kind {
    /// Two-sample Kolmogorov-Smirnov on the exact empirical distribution.
    Numeric,
    /// Chi-squared goodness of fit against the reference category frequencies.
    Categorical,
    /// Two-proportion z-test.
    Binary,
}

impl Kind {
    pub fn test(self) -> &'static str {
        match self {
            Kind::Numeric => "ks",
            Kind::Categorical => "chi_squared",
            Kind::Binary => "z_test",
        }
    }
}

/// One watched feature: its name, kind and, for categorical and binary ones, the labels of
/// the codes `0..labels.len()` that [`observe`] produces.
#[derive(Debug, Clone, Copy)]
pub struct FeatureDef {
    pub name: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
}

const fn def(name: &'static str, kind: Kind, labels: &'static [&'static str]) -> FeatureDef {
    FeatureDef { name, kind, labels }
}

pub const N_MONITORED: usize = 9;

/// The watched features, in [`Observation`] order.
pub const MONITORED: [FeatureDef; N_MONITORED] = [
    def("pclass", Kind::Categorical, &["1", "2", "3"]),
    def("sex", Kind::Binary, &["male", "female"]),
    def("age", Kind::Numeric, &[]),
    def("sibsp", Kind::Numeric, &[]),
    def("parch", Kind::Numeric, &[]),
    def("fare", Kind::Numeric, &[]),
    def("embarked", Kind::Categorical, &["C", "Q", "S"]),
    def(
        "title",
        Kind::Categorical,
        &["mr", "mrs", "miss", "master", "rare"],
    ),
    def("has_cabin", Kind::Binary, &["false", "true"]),
];

/// One passenger's watched values: a number, a category code, or `None` when missing.
pub type Observation = [Option<f64>; N_MONITORED];

/// The watched values of a passenger, as served (before imputation: a missing age is
/// missing, not the median).
pub fn observe(p: &Passenger) -> Observation {
    let code = |c: usize| Some(c as f64);
    let title = match Title::of(p) {
        Title::Mr => 0,
        Title::Mrs => 1,
        Title::Miss => 2,
        Title::Master => 3,
        Title::Rare => 4,
    };
    [
        code(p.pclass.index()),
        code(match p.sex {
            Sex::Male => 0,
            Sex::Female => 1,
        }),
        p.age,
        Some(f64::from(p.sibsp)),
        Some(f64::from(p.parch)),
        p.fare,
        p.embarked.map(|e| match e {
            Embarked::C => 0.0,
            Embarked::Q => 1.0,
            Embarked::S => 2.0,
        }),
        code(title),
        code(usize::from(p.cabin.is_some())),
    ]
}

/// Quantile levels kept for numeric features.
pub const QUANTILES: [f64; 7] = [0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0];

/// The reference distribution of every watched feature, fitted on a model's training rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferenceProfile {
    pub rows: u64,
    pub features: Vec<FeatureProfile>,
}

/// One feature's reference distribution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureProfile {
    pub name: String,
    pub kind: Kind,
    /// Rows with a value, and rows without.
    pub count: u64,
    pub missing: u64,
    /// Bins for PSI and the chi-squared and z tests: the categories, or for a numeric
    /// feature up to ten bins cut at the reference deciles (`edges`).
    pub bins: Vec<Bin>,
    /// Numeric: bin `i` holds values `<= edges[i]` (and above the previous edge); the last
    /// bin holds everything above the last edge.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub edges: Vec<f64>,
    /// Numeric: the distinct values and how often each occurs (the exact empirical
    /// distribution the Kolmogorov-Smirnov test compares with).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub value_counts: Vec<u64>,
    /// Numeric: values at [`QUANTILES`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quantiles: Vec<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bin {
    pub label: String,
    pub count: u64,
}

impl FeatureProfile {
    /// The bin a (non-missing) value falls in.
    pub fn bin_of(&self, v: f64) -> usize {
        match self.kind {
            Kind::Numeric => self.edges.partition_point(|e| *e < v),
            // Codes come from `observe`; clamp defensively against a foreign profile.
            Kind::Categorical | Kind::Binary => (v as usize).min(self.bins.len() - 1),
        }
    }

    /// Whether the profile is usable: bins present, counts consistent, values sorted.
    fn is_consistent(&self) -> bool {
        !self.bins.is_empty()
            && self.bins.iter().map(|b| b.count).sum::<u64>() == self.count
            && match self.kind {
                Kind::Numeric => {
                    self.values.len() == self.value_counts.len()
                        && self.value_counts.iter().sum::<u64>() == self.count
                        && self.values.windows(2).all(|w| w[0] < w[1])
                        && self.values.iter().all(|v| v.is_finite())
                        && self.edges.len() + 1 == self.bins.len()
                }
                Kind::Categorical | Kind::Binary => self.edges.is_empty(),
            }
    }
}

impl ReferenceProfile {
    /// Profiles the watched features of the training passengers.
    pub fn fit<'a>(passengers: impl IntoIterator<Item = &'a Passenger>) -> ReferenceProfile {
        let observations: Vec<Observation> = passengers.into_iter().map(observe).collect();
        let features = MONITORED
            .iter()
            .enumerate()
            .map(|(i, def)| {
                let values: Vec<f64> = observations.iter().filter_map(|o| o[i]).collect();
                profile_feature(def, values, observations.len() as u64)
            })
            .collect();
        ReferenceProfile {
            rows: observations.len() as u64,
            features,
        }
    }

    /// True when the profile has every watched feature, in order, with consistent counts.
    pub fn matches_schema(&self) -> bool {
        self.features.len() == N_MONITORED
            && self
                .features
                .iter()
                .zip(MONITORED.iter())
                .all(|(f, def)| f.name == def.name && f.kind == def.kind && f.is_consistent())
    }
}

fn profile_feature(def: &FeatureDef, mut values: Vec<f64>, rows: u64) -> FeatureProfile {
    let count = values.len() as u64;
    let mut profile = FeatureProfile {
        name: def.name.to_owned(),
        kind: def.kind,
        count,
        missing: rows - count,
        bins: Vec::new(),
        edges: Vec::new(),
        values: Vec::new(),
        value_counts: Vec::new(),
        quantiles: Vec::new(),
        mean: None,
    };
    match def.kind {
        Kind::Categorical | Kind::Binary => {
            let mut counts = vec![0u64; def.labels.len()];
            for v in &values {
                counts[(*v as usize).min(def.labels.len() - 1)] += 1;
            }
            profile.bins = def
                .labels
                .iter()
                .zip(counts)
                .map(|(label, count)| Bin {
                    label: (*label).to_owned(),
                    count,
                })
                .collect();
        }
        Kind::Numeric => {
            values.sort_by(f64::total_cmp);
            for v in &values {
                if profile.values.last() == Some(v) {
                    *profile.value_counts.last_mut().unwrap_or(&mut 0) += 1;
                } else {
                    profile.values.push(*v);
                    profile.value_counts.push(1);
                }
            }
            if !values.is_empty() {
                profile.quantiles = QUANTILES.iter().map(|q| quantile(&values, *q)).collect();
                profile.mean = Some(values.iter().sum::<f64>() / values.len() as f64);
            }
            // Deciles as cut points, rounded to 4 decimals so bins read well; repeated
            // values (many zeros) merge bins.
            let mut edges: Vec<f64> = (1..10)
                .map(|k| (quantile(&values, f64::from(k) / 10.0) * 1e4).round() / 1e4)
                .filter(|e| e.is_finite())
                .collect();
            edges.dedup();
            while values
                .last()
                .is_some_and(|max| edges.last().is_some_and(|e| e >= max))
            {
                edges.pop();
            }
            let mut counts = vec![0u64; edges.len() + 1];
            for v in &values {
                counts[edges.partition_point(|e| e < v)] += 1;
            }
            profile.bins = counts
                .into_iter()
                .enumerate()
                .map(|(i, count)| Bin {
                    label: bin_label(&edges, i),
                    count,
                })
                .collect();
            profile.edges = edges;
        }
    }
    profile
}

fn bin_label(edges: &[f64], i: usize) -> String {
    match (i.checked_sub(1).map(|j| edges[j]), edges.get(i)) {
        (None, Some(hi)) => format!("<= {hi}"),
        (Some(lo), Some(hi)) => format!("({lo}, {hi}]"),
        (Some(lo), None) => format!("> {lo}"),
        (None, None) => "all".to_owned(),
    }
}

/// Linear-interpolated quantile of sorted values (NaN for none).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::feature_store::ingest;

    /// The bundled train.csv passengers (shared by the drift tests).
    pub(crate) fn train() -> Vec<Passenger> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/titanic/train.csv");
        ingest::read_all(&path, ingest::DEFAULT_MAX_RECORD_BYTES)
            .unwrap()
            .into_iter()
            .map(|r| r.passenger)
            .collect()
    }

    #[test]
    fn profile_of_train_csv_has_every_feature_and_consistent_counts() {
        let passengers = train();
        let profile = ReferenceProfile::fit(&passengers);
        assert_eq!(profile.rows, 891);
        assert!(profile.matches_schema());
        let by_name = |n: &str| profile.features.iter().find(|f| f.name == n).unwrap();

        let age = by_name("age");
        assert_eq!((age.count, age.missing), (714, 177));
        assert_eq!(age.bins.len(), 10);
        assert_eq!(age.quantiles[3], 28.0, "median age");
        assert_eq!(age.quantiles[0], 0.42);
        assert_eq!(age.quantiles[6], 80.0);

        let sex = by_name("sex");
        assert_eq!(sex.bins[0].count, 577, "males");
        assert_eq!(sex.bins[1].count, 314, "females");
        let pclass = by_name("pclass");
        let counts: Vec<u64> = pclass.bins.iter().map(|b| b.count).collect();
        assert_eq!(counts, [216, 184, 491]);
        let embarked = by_name("embarked");
        assert_eq!(embarked.missing, 2);

        // Mostly zeros: duplicate deciles merge.
        let parch = by_name("parch");
        assert!(parch.bins.len() < 10);
        assert_eq!(parch.values, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        for f in &profile.features {
            if f.kind == Kind::Numeric {
                assert_eq!(f.bin_of(f.values[0]), 0, "{}", f.name);
                assert_eq!(f.bin_of(*f.values.last().unwrap()), f.bins.len() - 1);
            }
        }

        let json = serde_json::to_string(&profile).unwrap();
        let back: ReferenceProfile = serde_json::from_str(&json).unwrap();
        assert_eq!(back, profile);
    }

    #[test]
    fn an_inconsistent_profile_is_refused() {
        let mut profile = ReferenceProfile::fit(&train());
        profile.features[2].value_counts[0] += 1;
        assert!(!profile.matches_schema());
        let mut profile = ReferenceProfile::fit(&train());
        profile.features.pop();
        assert!(!profile.matches_schema());
    }
}
