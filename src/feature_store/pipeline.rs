//! The one feature transformation, shared by training and serving: a validated [`Passenger`]
//! plus the [`Preprocessing`] statistics fitted on the training rows gives the model's
//! [`FeatureVector`]. There is no second copy of this encoding anywhere.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use serde::{Deserialize, Serialize};

use super::passenger::{Embarked, Passenger, Pclass, Sex};
use crate::core::stats::{fnv1a, mean_std, median};

/// Number of model features.
pub const N_FEATURES: usize = 18;

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
    "log_fare_per_person",
    "has_cabin",
    "embarked_c",
    "embarked_q",
    "female_pclass_3",
    "companion_survived",
    "companions_died",
];

/// Indices of the standardized (continuous) features (`LOG_FARE` is per person).
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

/// A fast hasher for the companion tables' keys (tickets and surnames, a few bytes each):
/// eight bytes per multiply instead of SipHash's rounds, which were the largest single cost
/// of a batch row. The tables are built from training rows, not from request input, so the
/// denial-of-service resistance of SipHash buys nothing here; a lookup with any key costs at
/// most a probe of the existing entries.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
        }
    }

    #[inline]
    fn write_u8(&mut self, byte: u8) {
        // `str`'s Hash writes a 0xff terminator after the bytes.
        self.0 = (self.0.rotate_left(5) ^ u64::from(byte)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // Mix the high bits down: hashbrown takes its control bits from the top of the hash.
        self.0 ^ (self.0 >> 29)
    }
}

/// A companion table: key (ticket or surname) to the labelled passengers under it.
pub type CompanionTable = HashMap<String, Vec<Companion>, BuildHasherDefault<KeyHasher>>;

/// One labelled passenger of the training rows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Companion {
    pub id: i64,
    pub survived: bool,
    /// Their fare, when known: family members share surname and fare.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fare: Option<f64>,
    /// FNV-1a hash of their full name, so the same person sent without an id is still
    /// recognised as themself (the artifact keeps no full names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<u64>,
}

/// The labelled training passengers grouped by ticket and by surname, so
/// a passenger's features can say whether people travelling with them survived. Fitted on
/// the training rows only (inside each cross-validation fold, from the offline store as of
/// the training time), and a passenger's own label never counts: members with the
/// passenger's id, or with the same full name, are left out, in training and in serving.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Companions {
    #[serde(serialize_with = "sorted")]
    pub tickets: CompanionTable,
    /// By surname; a family is those of them with the same fare.
    #[serde(serialize_with = "sorted")]
    pub surnames: CompanionTable,
}

/// Writes a map in key order, so the same training rows give the same artifact text.
fn sorted<S: serde::Serializer>(map: &CompanionTable, serializer: S) -> Result<S::Ok, S::Error> {
    map.iter().collect::<BTreeMap<_, _>>().serialize(serializer)
}

/// What a passenger's companions tell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Company {
    /// Labelled others on the same ticket.
    pub on_ticket: usize,
    /// Labelled others on the ticket or in the family who survived, and who died.
    pub survived: usize,
    pub died: usize,
}

impl Companions {
    fn fit(passengers: &[&Passenger], labels: &[bool]) -> Companions {
        let mut groups = Companions::default();
        for (p, &survived) in passengers.iter().zip(labels) {
            // Without an id a row's own label could not be left out of its features.
            let Some(id) = p.id else { continue };
            let member = Companion {
                id,
                survived,
                fare: p.fare,
                name: p.name.as_deref().map(fnv1a),
            };
            if let Some(ticket) = p.ticket.as_deref() {
                groups
                    .tickets
                    .entry(ticket.to_owned())
                    .or_default()
                    .push(member);
            }
            if let (Some(surname), Some(_)) = (surname(p), p.fare) {
                groups
                    .surnames
                    .entry(surname.to_owned())
                    .or_default()
                    .push(member);
            }
        }
        groups
    }

    /// The passenger's companions, each counted once, the passenger itself excluded.
    pub fn of(&self, p: &Passenger) -> Company {
        let mut company = Company::default();
        let on_ticket = p.ticket.as_deref().and_then(|t| self.tickets.get(t));
        let by_surname = surname(p).and_then(|s| self.surnames.get(s));
        if on_ticket.is_none() && by_surname.is_none() {
            return company;
        }
        let name = p.name.as_deref().map(fnv1a);
        // The passenger: the same id, or the same full name (sent without an id, or under
        // another one).
        let is_self = |m: &Companion| Some(m.id) == p.id || (name.is_some() && m.name == name);
        let tally = |m: &Companion, company: &mut Company| {
            if m.survived {
                company.survived += 1;
            } else {
                company.died += 1;
            }
        };
        let on_ticket: &[Companion] = on_ticket.map_or(&[], Vec::as_slice);
        for m in on_ticket.iter().filter(|m| !is_self(m)) {
            company.on_ticket += 1;
            tally(m, &mut company);
        }
        // Family on other tickets (each person counted once).
        let family = by_surname
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .filter(|m| {
                !is_self(m)
                    && matches!((m.fare, p.fare), (Some(a), Some(b)) if same_fare(a, b))
                    && !on_ticket.iter().any(|t| t.id == m.id)
            });
        for m in family {
            tally(m, &mut company);
        }
        company
    }
}

/// The surname (`"Braund, Mr. Owen Harris"` -> `Braund`).
fn surname(p: &Passenger) -> Option<&str> {
    let (surname, _) = p.name.as_deref()?.split_once(',')?;
    Some(surname.trim())
}

/// Relatives on different tickets usually share the surname and the fare.
fn same_fare(a: f64, b: f64) -> bool {
    (a - b).abs() < 0.005
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
    /// Labelled passengers of the training rows, by ticket and by family.
    #[serde(default)]
    pub companions: Companions,
    pub age: Scaler,
    pub family_size: Scaler,
    pub log_fare: Scaler,
}

impl Preprocessing {
    /// Fits the statistics on training passengers and their labels (`labels[i]` is whether
    /// `passengers[i]` survived). Groups with no observed value fall back to the overall
    /// median (and to fixed values for an empty training set).
    pub fn fit(passengers: &[&Passenger], labels: &[bool]) -> Preprocessing {
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
        for p in passengers {
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
            companions: Companions::fit(passengers, labels),
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
        let company = self.companions.of(p);
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
            (fare / (1.0 + company.on_ticket as f64)).ln_1p(),
            flag(p.cabin.is_some()),
            flag(embarked == Embarked::C),
            flag(embarked == Embarked::Q),
            flag(female && p.pclass == Pclass::Third),
            flag(company.survived > 0),
            flag(company.survived == 0 && company.died > 0),
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
        let stats = Preprocessing::fit(&train.iter().collect::<Vec<_>>(), &[false, true, true]);
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

    fn traveller(id: Option<i64>, name: &str, ticket: &str, fare: f64) -> Passenger {
        RawPassenger {
            passenger_id: id,
            name: Some(name.into()),
            ticket: Some(ticket.into()),
            fare: Some(fare),
            ..passenger("female", Some(30.0), None).to_raw(None)
        }
        .validate()
        .unwrap()
    }

    #[test]
    fn companions_count_others_on_the_ticket_and_in_the_family() {
        let train = [
            traveller(Some(1), "Smith, Mrs. A", "T1", 30.0),
            traveller(Some(2), "Smith, Mr. B", "T1", 30.0),
            traveller(Some(3), "Jones, Miss. C", "T1", 30.0),
            // Same surname and fare, other ticket: family.
            traveller(Some(4), "Smith, Master. D", "T2", 30.0),
            // Same surname, other fare: not family.
            traveller(Some(5), "Smith, Mr. E", "T3", 8.05),
            // No id: its label could not be left out of its own features, so it is not kept.
            traveller(None, "Smith, Mr. F", "T1", 30.0),
        ];
        let rows: Vec<&Passenger> = train.iter().collect();
        let stats = Preprocessing::fit(&rows, &[true, false, true, false, true, true]);
        let c = &stats.companions;

        // A new passenger on ticket T1 named Smith: 1, 2, 3 on the ticket, 4 in the family.
        let new = traveller(Some(100), "Smith, Miss. G", "T1", 30.0);
        assert_eq!(
            c.of(&new),
            Company {
                on_ticket: 3,
                survived: 2,
                died: 2
            }
        );
        // A training passenger never counts itself.
        assert_eq!(
            c.of(&train[0]),
            Company {
                on_ticket: 2,
                survived: 1,
                died: 2
            }
        );
        // Without a ticket or a name match there is no company.
        let alone = traveller(Some(101), "Brown, Mr. H", "T9", 30.0);
        assert_eq!(c.of(&alone), Company::default());

        // Fare per person divides the ticket's fare among the people on it.
        let x = stats.transform(&new);
        let alone_x = stats.transform(&alone);
        let per_person = |v: f64| stats.log_fare.apply(v.ln_1p());
        assert!((x[LOG_FARE] - per_person(30.0 / 4.0)).abs() < 1e-12);
        assert!((alone_x[LOG_FARE] - per_person(30.0)).abs() < 1e-12);
        let (survived, died) = (N_FEATURES - 2, N_FEATURES - 1);
        assert_eq!((x[survived], x[died]), (1.0, 0.0));
        assert_eq!((alone_x[survived], alone_x[died]), (0.0, 0.0));
        let doomed = traveller(Some(102), "Brown, Mr. I", "T2", 30.0);
        assert_eq!(
            stats.transform(&doomed)[died],
            1.0,
            "only passenger 4 is known"
        );
    }

    #[test]
    fn a_passengers_own_label_never_reaches_its_features() {
        let train = [
            traveller(Some(1), "Smith, Mrs. A", "T1", 30.0),
            traveller(Some(2), "Smith, Mr. B", "T1", 30.0),
        ];
        let rows: Vec<&Passenger> = train.iter().collect();
        let survived = Preprocessing::fit(&rows, &[true, false]);
        let died = Preprocessing::fit(&rows, &[false, false]);
        assert_eq!(survived.transform(&train[0]), died.transform(&train[0]));
        assert_ne!(survived.transform(&train[1]), died.transform(&train[1]));
        // Sent without its id, the same person is recognised by the full name.
        let anonymous = Passenger {
            id: None,
            ..train[0].clone()
        };
        assert_eq!(survived.transform(&anonymous), died.transform(&anonymous));
        assert_eq!(survived.companions.of(&anonymous).on_ticket, 1);
    }

    #[test]
    fn transform_is_the_same_for_equal_input() {
        let p = passenger("female", Some(2.0), Some("X, Miss. Y"));
        let stats = Preprocessing::fit(&[&p], &[true]);
        assert_eq!(stats.transform(&p), stats.transform(&p.clone()));
        assert_eq!(stats.transform(&p)[15], 1.0, "female_pclass_3");
    }
}
