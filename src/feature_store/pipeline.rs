//! The one feature transformation, shared by training and serving: a validated [`Passenger`]
//! plus the [`Preprocessing`] statistics fitted on the training rows gives the model's
//! [`FeatureVector`]. There is no second copy of this encoding anywhere.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::passenger::{Embarked, Passenger, Pclass, Sex};
use crate::core::stats::{fnv1a, fnv1a_bytes, mean_std, median};

/// Number of model features.
pub const N_FEATURES: usize = 22;

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
    "wc_companion_survived",
    "wc_companions_died",
    "group_size",
    "log_fare_per_head",
];

/// Indices of the standardized (continuous) features (`LOG_FARE` is per person).
const AGE: usize = 7;
const FAMILY_SIZE: usize = 8;
const LOG_FARE: usize = 11;
const GROUP_SIZE: usize = 20;
const LOG_FARE_PER_HEAD: usize = 21;

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

/// The companion tables' hasher: 1.5-2x std's SipHash on their lookups (benches/machinery.rs).
/// The tables are built from training rows, so SipHash's flooding resistance buys nothing.
pub type KeyHasher = foldhash::fast::RandomState;

/// A companion table: key (ticket or surname) to the labelled passengers under it.
pub type CompanionTable = HashMap<String, Vec<Companion>, KeyHasher>;

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
    /// A woman or a child (female, or titled Master): see [`is_woman_or_child`].
    #[serde(default, skip_serializing_if = "is_false")]
    pub wc: bool,
    /// In the surnames table: FNV-1a hash of their class and ticket without its last
    /// character ([`booking`]), since relatives who booked together hold the same or
    /// consecutive ticket numbers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub booking: Option<u64>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A passenger of the store without a label (not a training row), counted on its ticket for
/// the fare per head only.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Unlabelled {
    pub id: i64,
    /// FNV-1a hash of the full name, as in [`Companion`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<u64>,
}

/// Unlabelled passengers by ticket.
pub type UnlabelledTable = HashMap<String, Vec<Unlabelled>, KeyHasher>;

/// Women and children, who were put into the boats first and tended to share the fate of
/// the women and children they travelled with: female passengers and boys titled Master.
pub fn is_woman_or_child(p: &Passenger) -> bool {
    p.sex == Sex::Female || Title::of(p) == Title::Master
}

/// A family's booking: FNV-1a over the class and the ticket without its last character
/// (`3:34708` for ticket `347082` in 3rd class). `None` without a ticket.
fn booking(p: &Passenger) -> Option<u64> {
    let ticket = p.ticket.as_deref()?;
    let cut = ticket.char_indices().last().map_or(0, |(i, _)| i);
    let class = [b'0' + p.pclass.number() as u8, b':'];
    Some(fnv1a_bytes(class.into_iter().chain(ticket[..cut].bytes())))
}

/// The labelled training passengers grouped by ticket and by surname, so
/// a passenger's features can say whether people travelling with them survived. Fitted on
/// the training rows only (inside each cross-validation fold, from the offline store as of
/// the training time), and a passenger's own label never counts: members with the
/// passenger's id, or with the same full name, are left out, in training and in serving.
/// The unlabelled passengers of the store (no label, so not training rows) are kept by
/// ticket, without anything about their fate, to count the people sharing a ticket's fare.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Companions {
    #[serde(serialize_with = "sorted")]
    pub tickets: CompanionTable,
    /// By surname; a family is those of them with the same fare, or with the same booking.
    #[serde(serialize_with = "sorted")]
    pub surnames: CompanionTable,
    /// Unlabelled passengers by ticket.
    #[serde(default, serialize_with = "sorted")]
    pub unlabelled: UnlabelledTable,
}

/// Writes a map in key order, so the same training rows give the same artifact text.
fn sorted<S: serde::Serializer, T: Serialize>(
    map: &HashMap<String, T, KeyHasher>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    map.iter().collect::<BTreeMap<_, _>>().serialize(serializer)
}

/// What a passenger's companions tell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Company {
    /// Labelled others on the same ticket.
    pub on_ticket: usize,
    /// Unlabelled others on the same ticket.
    pub unlabelled_on_ticket: usize,
    /// Labelled others on the ticket or in the family (same surname and fare) who survived,
    /// and who died.
    pub survived: usize,
    pub died: usize,
    /// Labelled women and children on the ticket or in the booking family (same surname and
    /// booking) who survived, and who died.
    pub wc_survived: usize,
    pub wc_died: usize,
}

impl Companions {
    fn fit(passengers: &[&Passenger], labels: &[bool], unlabelled: &[&Passenger]) -> Companions {
        let mut groups = Companions::default();
        for (p, &survived) in passengers.iter().zip(labels) {
            // Without an id a row's own label could not be left out of its features.
            let Some(id) = p.id else { continue };
            let member = Companion {
                id,
                survived,
                fare: p.fare,
                name: p.name.as_deref().map(fnv1a),
                wc: is_woman_or_child(p),
                booking: None,
            };
            if let Some(ticket) = p.ticket.as_deref() {
                groups
                    .tickets
                    .entry(ticket.to_owned())
                    .or_default()
                    .push(member);
            }
            if let Some(surname) = surname(p) {
                groups
                    .surnames
                    .entry(surname.to_owned())
                    .or_default()
                    .push(Companion {
                        booking: booking(p),
                        ..member
                    });
            }
        }
        for p in unlabelled {
            let (Some(id), Some(ticket)) = (p.id, p.ticket.as_deref()) else {
                continue;
            };
            groups
                .unlabelled
                .entry(ticket.to_owned())
                .or_default()
                .push(Unlabelled {
                    id,
                    name: p.name.as_deref().map(fnv1a),
                });
        }
        groups
    }

    /// The passenger's companions, each counted once, the passenger itself excluded.
    pub fn of(&self, p: &Passenger) -> Company {
        let mut company = Company::default();
        let on_ticket = p.ticket.as_deref().and_then(|t| self.tickets.get(t));
        let by_surname = surname(p).and_then(|s| self.surnames.get(s));
        let unlabelled = p.ticket.as_deref().and_then(|t| self.unlabelled.get(t));
        if on_ticket.is_none() && by_surname.is_none() && unlabelled.is_none() {
            return company;
        }
        let name = p.name.as_deref().map(fnv1a);
        // The passenger: the same id, or the same full name (sent without an id, or under
        // another one).
        let is_self = |id: i64, member_name: Option<u64>| {
            Some(id) == p.id || (name.is_some() && member_name == name)
        };
        company.unlabelled_on_ticket = unlabelled
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .filter(|m| !is_self(m.id, m.name))
            .count();
        let tally = |m: &Companion, company: &mut Company| {
            if m.survived {
                company.survived += 1;
            } else {
                company.died += 1;
            }
        };
        let tally_wc = |m: &Companion, company: &mut Company| match (m.wc, m.survived) {
            (false, _) => {}
            (true, true) => company.wc_survived += 1,
            (true, false) => company.wc_died += 1,
        };
        let on_ticket: &[Companion] = on_ticket.map_or(&[], Vec::as_slice);
        for m in on_ticket.iter().filter(|m| !is_self(m.id, m.name)) {
            company.on_ticket += 1;
            tally(m, &mut company);
            tally_wc(m, &mut company);
        }
        // Family on other tickets (each person counted once): the same surname and fare for
        // the companion features, the same surname and booking for the women and children.
        let booking = by_surname.and_then(|_| booking(p));
        for m in by_surname.map_or(&[][..], Vec::as_slice) {
            if is_self(m.id, m.name) || on_ticket.iter().any(|t| t.id == m.id) {
                continue;
            }
            if matches!((m.fare, p.fare), (Some(a), Some(b)) if same_fare(a, b)) {
                tally(m, &mut company);
            }
            if booking.is_some() && m.booking == booking {
                tally_wc(m, &mut company);
            }
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
    const IDENTITY: Scaler = Scaler {
        mean: 0.0,
        std: 1.0,
    };

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
    pub group_size: Scaler,
    pub log_fare_per_head: Scaler,
}

impl Preprocessing {
    /// Fits the statistics on training passengers and their labels (`labels[i]` is whether
    /// `passengers[i]` survived), and the unlabelled passengers of the store (only their
    /// tickets and ids are used, for the fare per head). Groups with no observed value fall
    /// back to the overall median (and to fixed values for an empty training set).
    pub fn fit(
        passengers: &[&Passenger],
        labels: &[bool],
        unlabelled: &[&Passenger],
    ) -> Preprocessing {
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
            companions: Companions::fit(passengers, labels, unlabelled),
            age: Scaler::IDENTITY,
            family_size: Scaler::IDENTITY,
            log_fare: Scaler::IDENTITY,
            group_size: Scaler::IDENTITY,
            log_fare_per_head: Scaler::IDENTITY,
        };
        let raw: Vec<FeatureVector> = passengers.iter().map(|p| stats.unscaled(p)).collect();
        stats.age = Scaler::fit(raw.iter().map(|x| x[AGE]));
        stats.family_size = Scaler::fit(raw.iter().map(|x| x[FAMILY_SIZE]));
        stats.log_fare = Scaler::fit(raw.iter().map(|x| x[LOG_FARE]));
        stats.group_size = Scaler::fit(raw.iter().map(|x| x[GROUP_SIZE]));
        stats.log_fare_per_head = Scaler::fit(raw.iter().map(|x| x[LOG_FARE_PER_HEAD]));
        stats
    }

    /// True when every statistic is a finite number (a stored artifact may be corrupt).
    pub fn is_finite(&self) -> bool {
        self.age_median_by_title.iter().all(|v| v.is_finite())
            && self.fare_median_by_class.iter().all(|v| v.is_finite())
            && [
                self.age,
                self.family_size,
                self.log_fare,
                self.group_size,
                self.log_fare_per_head,
            ]
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
        x[GROUP_SIZE] = self.group_size.apply(x[GROUP_SIZE]);
        x[LOG_FARE_PER_HEAD] = self.log_fare_per_head.apply(x[LOG_FARE_PER_HEAD]);
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
        let wc = female || title == Title::Master;
        let on_ticket = company.on_ticket as f64;
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
            (fare / (1.0 + on_ticket)).ln_1p(),
            flag(p.cabin.is_some()),
            flag(embarked == Embarked::C),
            flag(embarked == Embarked::Q),
            flag(female && p.pclass == Pclass::Third),
            flag(company.survived > 0),
            flag(company.survived == 0 && company.died > 0),
            flag(wc && company.wc_survived > 0),
            flag(wc && company.wc_survived == 0 && company.wc_died > 0),
            family.max(1.0 + on_ticket),
            (fare / (1.0 + on_ticket + company.unlabelled_on_ticket as f64)).ln_1p(),
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
        let stats =
            Preprocessing::fit(&train.iter().collect::<Vec<_>>(), &[false, true, true], &[]);
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
        let stats = Preprocessing::fit(&rows, &[true, false, true, false, true, true], &[]);
        let c = &stats.companions;

        // A new passenger on ticket T1 named Smith: 1, 2, 3 on the ticket, 4 in the family.
        let new = traveller(Some(100), "Smith, Miss. G", "T1", 30.0);
        let counts = |c: Company| (c.on_ticket, c.survived, c.died);
        assert_eq!(counts(c.of(&new)), (3, 2, 2));
        // A training passenger never counts itself.
        assert_eq!(counts(c.of(&train[0])), (2, 1, 2));
        // Without a ticket or a name match there is no company.
        let alone = traveller(Some(101), "Brown, Mr. H", "T9", 30.0);
        assert_eq!(c.of(&alone), Company::default());

        // Fare per person divides the ticket's fare among the people on it.
        let x = stats.transform(&new);
        let alone_x = stats.transform(&alone);
        let per_person = |v: f64| stats.log_fare.apply(v.ln_1p());
        assert!((x[LOG_FARE] - per_person(30.0 / 4.0)).abs() < 1e-12);
        assert!((alone_x[LOG_FARE] - per_person(30.0)).abs() < 1e-12);
        let (survived, died) = (16, 17);
        assert_eq!((x[survived], x[died]), (1.0, 0.0));
        assert_eq!((alone_x[survived], alone_x[died]), (0.0, 0.0));
        let doomed = traveller(Some(102), "Brown, Mr. I", "T2", 30.0);
        assert_eq!(
            stats.transform(&doomed)[died],
            1.0,
            "only passenger 4 is known"
        );
    }

    fn person(id: i64, sex: &str, name: &str, ticket: &str, age: f64) -> Passenger {
        RawPassenger {
            passenger_id: Some(id),
            pclass: Some(3),
            sex: Some(sex.into()),
            age: Some(age),
            sibsp: Some(0),
            parch: Some(1),
            fare: Some(20.0),
            name: Some(name.into()),
            ticket: Some(ticket.into()),
            ..Default::default()
        }
        .validate()
        .unwrap()
    }

    #[test]
    fn a_booking_is_the_class_and_the_ticket_but_its_last_character() {
        let p = person(1, "female", "Andersson, Mrs. A", "347082", 39.0);
        assert_eq!(booking(&p), Some(fnv1a("3:34708")));
        let no_ticket = Passenger {
            ticket: None,
            ..p.clone()
        };
        assert_eq!(booking(&no_ticket), None);
        let one_char = Passenger {
            ticket: Some("Ä".into()),
            ..p
        };
        assert_eq!(booking(&one_char), Some(fnv1a("3:")));
    }

    #[test]
    fn women_and_children_share_the_fate_of_the_women_and_children_they_travel_with() {
        let train = [
            // A family on consecutive tickets 347082 and 347083.
            person(1, "female", "Andersson, Mrs. A", "347082", 39.0),
            person(2, "male", "Andersson, Master. B", "347083", 4.0),
            person(3, "male", "Andersson, Mr. C", "347082", 39.0),
            // Same surname, other class: not the same booking.
            person(4, "female", "Andersson, Miss. D", "350043", 20.0),
        ];
        let mut other_class = train[3].clone();
        other_class.pclass = Pclass::First;
        let rows: Vec<&Passenger> = vec![&train[0], &train[1], &train[2], &other_class];
        let labels = [false, false, true, true];
        let stats = Preprocessing::fit(&rows, &labels, &[]);
        let names = |x: FeatureVector| -> Vec<&str> {
            FEATURE_NAMES
                .iter()
                .zip(x)
                .filter(|(n, v)| n.starts_with("wc_") && *v == 1.0)
                .map(|(n, _)| *n)
                .collect()
        };
        // A girl booked with them: the woman and the boy died, the man (who survived) and the
        // woman of another class do not count.
        let girl = person(10, "female", "Andersson, Miss. E", "347084", 9.0);
        let company = stats.companions.of(&girl);
        assert_eq!((company.wc_survived, company.wc_died), (0, 2));
        assert_eq!(names(stats.transform(&girl)), ["wc_companions_died"]);
        // A man of the family gets none of the women-and-children features.
        let man = person(11, "male", "Andersson, Mr. F", "347082", 45.0);
        assert!(names(stats.transform(&man)).is_empty());
        // The boy's own label is left out: only the woman counts for him.
        let boy = stats.companions.of(&train[1]);
        assert_eq!((boy.wc_survived, boy.wc_died), (0, 1));
        // Had the woman survived, the girl would get `wc_companion_survived`.
        let lived = Preprocessing::fit(&rows, &[true, false, true, true], &[]);
        assert_eq!(names(lived.transform(&girl)), ["wc_companion_survived"]);
    }

    #[test]
    fn unlabelled_passengers_share_the_fare_and_the_group_is_the_larger_of_family_and_ticket() {
        let train = [
            person(1, "female", "Smith, Mrs. A", "T1", 30.0),
            person(2, "male", "Smith, Mr. B", "T1", 30.0),
        ];
        let unlabelled = [
            person(3, "male", "Smith, Master. C", "T1", 5.0),
            person(4, "female", "Jones, Miss. D", "T1", 20.0),
            person(5, "female", "Brown, Miss. E", "T2", 20.0),
        ];
        let rows: Vec<&Passenger> = train.iter().collect();
        let others: Vec<&Passenger> = unlabelled.iter().collect();
        let stats = Preprocessing::fit(&rows, &[true, false], &others);
        let c = stats.companions.of(&unlabelled[0]);
        // The unlabelled boy: two labelled and one other unlabelled passenger on his ticket.
        assert_eq!((c.on_ticket, c.unlabelled_on_ticket), (2, 1));
        let raw = stats.unscaled(&unlabelled[0]);
        assert!((raw[LOG_FARE_PER_HEAD] - (20.0f64 / 4.0).ln_1p()).abs() < 1e-12);
        assert!((raw[LOG_FARE] - (20.0f64 / 3.0).ln_1p()).abs() < 1e-12);
        // Family of 2 (parch 1), three on the ticket: a group of 3.
        assert_eq!(raw[GROUP_SIZE], 3.0);
        // Unlabelled passengers tell nothing about survival.
        assert_eq!((c.survived, c.died), (1, 1));
        let alone = stats.companions.of(&unlabelled[2]);
        assert_eq!(alone, Company::default());
        assert_eq!(stats.unscaled(&unlabelled[2])[GROUP_SIZE], 2.0);
    }

    #[test]
    fn a_passengers_own_label_never_reaches_its_features() {
        let train = [
            traveller(Some(1), "Smith, Mrs. A", "T1", 30.0),
            traveller(Some(2), "Smith, Mr. B", "T1", 30.0),
        ];
        let rows: Vec<&Passenger> = train.iter().collect();
        let survived = Preprocessing::fit(&rows, &[true, false], &[]);
        let died = Preprocessing::fit(&rows, &[false, false], &[]);
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
        let stats = Preprocessing::fit(&[&p], &[true], &[]);
        assert_eq!(stats.transform(&p), stats.transform(&p.clone()));
        assert_eq!(stats.transform(&p)[15], 1.0, "female_pclass_3");
    }
}
