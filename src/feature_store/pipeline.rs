//! The one feature transformation, shared by training and serving: a validated [`Passenger`]
//! plus the [`Preprocessing`] statistics fitted on the training rows gives the model's
//! [`FeatureVector`]. There is no second copy of this encoding anywhere.

use serde::{Deserialize, Serialize};

use super::passenger::{Embarked, Passenger, Pclass, Sex};
use crate::core::stats::{mean_std, median};

/// Number of model features.
pub const N_FEATURES: usize = 16;

/// Model feature names, in vector order.
pub const FEATURE_NAMES: [&str; N_FEATURES] = [
    "pclass_2",
    "pclass_3",
    "sex_male",
    "title_master",
    "title_miss",
    "title_mrs",
    "title_rare",
    "age",
    "family_size",
    "is_alone",
    "large_family",
    "log_fare",
    "has_cabin",
    "embarked_c",
    "embarked_q",
    "female_pclass_3",
];

/// Indices of the standardized (continuous) features.
const AGE: usize = 7;
const FAMILY_SIZE: usize = 8;
const LOG_FARE: usize = 11;

pub type FeatureVector = [f64; N_FEATURES];

/// Honorific from the name (`"Braund, Mr. Owen Harris"` -> Mr), grouped as usual for this data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Title {
    Mr,
    Mrs,
    Miss,
    Master,
    Rare,
}

impl Title {
    pub const ALL: [Title; 5] = [
        Title::Mr,
        Title::Mrs,
        Title::Miss,
        Title::Master,
        Title::Rare,
    ];

    fn index(self) -> usize {
        match self {
            Title::Mr => 0,
            Title::Mrs => 1,
            Title::Miss => 2,
            Title::Master => 3,
            Title::Rare => 4,
        }
    }

    /// The title written in a name, if the name has the usual `Surname, Title. Given` form.
    fn from_name(name: &str) -> Option<Title> {
        let (_, rest) = name.split_once(',')?;
        let (title, _) = rest.split_once('.')?;
        Some(match title.trim() {
            "Mr" => Title::Mr,
            "Mrs" | "Mme" => Title::Mrs,
            "Miss" | "Mlle" | "Ms" => Title::Miss,
            "Master" => Title::Master,
            _ => Title::Rare,
        })
    }

    /// The passenger's title: from the name, else inferred from sex, age and relatives.
    pub fn of(p: &Passenger) -> Title {
        if let Some(title) = p.name.as_deref().and_then(Title::from_name) {
            return title;
        }
        match (p.sex, p.age) {
            (Sex::Male, Some(age)) if age < 14.5 => Title::Master,
            (Sex::Male, _) => Title::Mr,
            (Sex::Female, Some(age)) if age < 18.0 => Title::Miss,
            (Sex::Female, _) if p.sibsp > 0 || p.parch > 0 => Title::Mrs,
            (Sex::Female, _) => Title::Miss,
        }
    }
}

/// Mean and standard deviation of one standardized feature.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scaler {
    pub mean: f64,
    pub std: f64,
}

impl Scaler {
    fn fit(values: impl Iterator<Item = f64>) -> Scaler {
        let (mean, std) = mean_std(&values.collect::<Vec<_>>());
        Scaler {
            mean,
            std: if std > 1e-12 { std } else { 1.0 },
        }
    }

    fn apply(self, v: f64) -> f64 {
        (v - self.mean) / self.std
    }
}

/// Statistics fitted on the training rows and stored with the model: how to impute missing
/// values and how to scale continuous features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocessing {
    /// Median age per title (order of [`Title::ALL`]), for a missing age.
    pub age_median_by_title: [f64; 5],
    /// Median fare per class (1st, 2nd, 3rd), for a missing fare.
    pub fare_median_by_class: [f64; 3],
    /// Most frequent port, for a missing port.
    pub embarked_mode: Embarked,
    pub age: Scaler,
    pub family_size: Scaler,
    pub log_fare: Scaler,
}

impl Preprocessing {
    /// Fits the statistics on training passengers. Groups with no observed value fall back to
    /// the overall median (and to fixed values for an empty training set).
    pub fn fit<'a>(passengers: impl IntoIterator<Item = &'a Passenger>) -> Preprocessing {
        let passengers: Vec<&Passenger> = passengers.into_iter().collect();
        let all_ages = median(passengers.iter().filter_map(|p| p.age).collect()).unwrap_or(28.0);
        let age_median_by_title = Title::ALL.map(|t| {
            median(
                passengers
                    .iter()
                    .filter(|p| Title::of(p) == t)
                    .filter_map(|p| p.age)
                    .collect(),
            )
            .unwrap_or(all_ages)
        });
        let all_fares = median(passengers.iter().filter_map(|p| p.fare).collect()).unwrap_or(14.45);
        let fare_median_by_class = [Pclass::First, Pclass::Second, Pclass::Third].map(|c| {
            median(
                passengers
                    .iter()
                    .filter(|p| p.pclass == c)
                    .filter_map(|p| p.fare)
                    .collect(),
            )
            .unwrap_or(all_fares)
        });
        let mut port_counts = [0usize; 3];
        for p in &passengers {
            match p.embarked {
                Some(Embarked::C) => port_counts[0] += 1,
                Some(Embarked::Q) => port_counts[1] += 1,
                Some(Embarked::S) => port_counts[2] += 1,
                None => {}
            }
        }
        let embarked_mode = if port_counts[2] >= port_counts[0] && port_counts[2] >= port_counts[1]
        {
            Embarked::S
        } else if port_counts[0] >= port_counts[1] {
            Embarked::C
        } else {
            Embarked::Q
        };
        let mut stats = Preprocessing {
            age_median_by_title,
            fare_median_by_class,
            embarked_mode,
            age: Scaler {
                mean: 0.0,
                std: 1.0,
            },
            family_size: Scaler {
                mean: 0.0,
                std: 1.0,
            },
            log_fare: Scaler {
                mean: 0.0,
                std: 1.0,
            },
        };
        let raw: Vec<FeatureVector> = passengers.iter().map(|p| stats.unscaled(p)).collect();
        stats.age = Scaler::fit(raw.iter().map(|x| x[AGE]));
        stats.family_size = Scaler::fit(raw.iter().map(|x| x[FAMILY_SIZE]));
        stats.log_fare = Scaler::fit(raw.iter().map(|x| x[LOG_FARE]));
        stats
    }

    /// True when every statistic is a finite number (a stored artifact may be corrupt).
    pub fn is_finite(&self) -> bool {
        self.age_median_by_title.iter().all(|v| v.is_finite())
            && self.fare_median_by_class.iter().all(|v| v.is_finite())
            && [self.age, self.family_size, self.log_fare]
                .iter()
                .all(|s| s.mean.is_finite() && s.std.is_finite() && s.std > 0.0)
    }

    /// The model's feature vector for one passenger.
    #[inline]
    pub fn transform(&self, p: &Passenger) -> FeatureVector {
        let mut x = self.unscaled(p);
        x[AGE] = self.age.apply(x[AGE]);
        x[FAMILY_SIZE] = self.family_size.apply(x[FAMILY_SIZE]);
        x[LOG_FARE] = self.log_fare.apply(x[LOG_FARE]);
        x
    }

    /// Imputed and encoded, before scaling.
    fn unscaled(&self, p: &Passenger) -> FeatureVector {
        let title = Title::of(p);
        let age = p.age.unwrap_or(self.age_median_by_title[title.index()]);
        let fare = p
            .fare
            .unwrap_or(self.fare_median_by_class[p.pclass.index()]);
        let embarked = p.embarked.unwrap_or(self.embarked_mode);
        let family = 1.0 + f64::from(p.sibsp) + f64::from(p.parch);
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        let female = p.sex == Sex::Female;
        [
            flag(p.pclass == Pclass::Second),
            flag(p.pclass == Pclass::Third),
            flag(!female),
            flag(title == Title::Master),
            flag(title == Title::Miss),
            flag(title == Title::Mrs),
            flag(title == Title::Rare),
            age,
            family,
            flag(family == 1.0),
            flag(family >= 5.0),
            fare.ln_1p(),
            flag(p.cabin.is_some()),
            flag(embarked == Embarked::C),
            flag(embarked == Embarked::Q),
            flag(female && p.pclass == Pclass::Third),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feature_store::RawPassenger;

    fn passenger(sex: &str, age: Option<f64>, name: Option<&str>) -> Passenger {
        RawPassenger {
            pclass: Some(3),
            sex: Some(sex.into()),
            age,
            sibsp: Some(0),
            parch: Some(0),
            fare: Some(7.25),
            embarked: Some("S".into()),
            name: name.map(Into::into),
            ..Default::default()
        }
        .validate()
        .unwrap()
    }

    #[test]
    fn titles_from_names_and_inferred() {
        let cases = [
            (
                "male",
                Some(30.0),
                Some("Braund, Mr. Owen Harris"),
                Title::Mr,
            ),
            ("female", Some(30.0), Some("Cumings, Mrs. John"), Title::Mrs),
            ("female", None, Some("Heikkinen, Miss. Laina"), Title::Miss),
            ("female", None, Some("Aubart, Mme. Leontine"), Title::Mrs),
            (
                "male",
                Some(4.0),
                Some("Palsson, Master. Gosta"),
                Title::Master,
            ),
            (
                "male",
                Some(50.0),
                Some("Uruchurtu, Don. Manuel"),
                Title::Rare,
            ),
            (
                "female",
                Some(33.0),
                Some("Rothes, the Countess. of"),
                Title::Rare,
            ),
            ("male", Some(5.0), None, Title::Master),
            ("male", None, None, Title::Mr),
            ("female", Some(10.0), Some("no title here"), Title::Miss),
        ];
        for (sex, age, name, want) in cases {
            assert_eq!(Title::of(&passenger(sex, age, name)), want, "{name:?}");
        }
    }

    #[test]
    fn fit_imputes_and_scales() {
        let train = [
            passenger("male", Some(20.0), Some("A, Mr. B")),
            passenger("male", Some(40.0), Some("C, Mr. D")),
            passenger("female", Some(30.0), Some("E, Miss. F")),
        ];
        let stats = Preprocessing::fit(&train);
        // Mr median (20, 40) = 30; Miss median = 30; unseen titles fall back to all ages (30).
        assert_eq!(stats.age_median_by_title, [30.0, 30.0, 30.0, 30.0, 30.0]);
        assert_eq!(stats.fare_median_by_class, [7.25, 7.25, 7.25]);
        assert_eq!(stats.embarked_mode, Embarked::S);
        assert!((stats.age.mean - 30.0).abs() < 1e-12);
        // Population std of 20, 40, 30.
        assert!((stats.age.std - (200.0f64 / 3.0).sqrt()).abs() < 1e-12);
        // A constant feature keeps std 1 rather than dividing by zero.
        assert_eq!(stats.family_size.std, 1.0);
        assert!(stats.is_finite());

        let unknown_age = passenger("male", None, Some("G, Mr. H"));
        let x = stats.transform(&unknown_age);
        assert_eq!(x[AGE], 0.0, "imputed median equals the mean here");
        assert_eq!(x[2], 1.0, "sex_male");
        assert_eq!(x[1], 1.0, "pclass_3");
        assert_eq!(x[9], 1.0, "is_alone");
    }

    #[test]
    fn transform_is_the_same_for_equal_input() {
        let p = passenger("female", Some(2.0), Some("X, Miss. Y"));
        let stats = Preprocessing::fit([&p]);
        assert_eq!(stats.transform(&p), stats.transform(&p.clone()));
        assert_eq!(stats.transform(&p)[15], 1.0, "female_pclass_3");
    }
}
