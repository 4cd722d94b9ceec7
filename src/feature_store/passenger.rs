//! Passenger domain types. Input arrives as a [`RawPassenger`] (JSON or CSV); the only way to
//! get a [`Passenger`] is [`RawPassenger::validate`], which names every bad field at once.
//! Everything downstream holds parsed values only.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::core::json::JsonWriter;

/// Largest plausible age in years.
pub const MAX_AGE: f64 = 120.0;
/// Largest plausible fare in 1912 pounds (the dearest ticket sold was about £512).
pub const MAX_FARE: f64 = 1000.0;
/// Largest plausible count of siblings/spouses or parents/children aboard.
pub const MAX_RELATIVES: i64 = 10;
/// Longest accepted name, ticket or cabin text.
pub const MAX_TEXT_CHARS: usize = 256;

/// A passenger as submitted: every field optional and unchecked.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawPassenger {
    pub passenger_id: Option<i64>,
    pub pclass: Option<i64>,
    pub sex: Option<String>,
    pub age: Option<f64>,
    pub sibsp: Option<i64>,
    pub parch: Option<i64>,
    pub fare: Option<f64>,
    pub embarked: Option<String>,
    pub name: Option<String>,
    pub ticket: Option<String>,
    pub cabin: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Pclass {
    #[serde(rename = "1")]
    First,
    #[serde(rename = "2")]
    Second,
    #[serde(rename = "3")]
    Third,
}

impl Pclass {
    pub fn number(self) -> i64 {
        match self {
            Pclass::First => 1,
            Pclass::Second => 2,
            Pclass::Third => 3,
        }
    }
    pub fn index(self) -> usize {
        self.number() as usize - 1
    }
    fn parse(n: i64) -> Option<Self> {
        match n {
            1 => Some(Pclass::First),
            2 => Some(Pclass::Second),
            3 => Some(Pclass::Third),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sex {
    Male,
    Female,
}

impl Sex {
    pub fn as_str(self) -> &'static str {
        match self {
            Sex::Male => "male",
            Sex::Female => "female",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("male") {
            Some(Sex::Male)
        } else if s.eq_ignore_ascii_case("female") {
            Some(Sex::Female)
        } else {
            None
        }
    }
}

/// Port of embarkation: Cherbourg, Queenstown, Southampton.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Embarked {
    C,
    Q,
    S,
}

impl Embarked {
    pub fn as_str(self) -> &'static str {
        match self {
            Embarked::C => "C",
            Embarked::Q => "Q",
            Embarked::S => "S",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "C" | "c" => Some(Embarked::C),
            "Q" | "q" => Some(Embarked::Q),
            "S" | "s" => Some(Embarked::S),
            _ => None,
        }
    }
}

/// A validated passenger: every value is within its domain.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Passenger {
    /// The passenger's id when the input named one. The pipeline uses it only to leave the
    /// passenger's own label out of its companions' survival (see `pipeline::Companions`).
    #[serde(skip)]
    pub id: Option<i64>,
    pub pclass: Pclass,
    pub sex: Sex,
    /// Years, 0..=120; `None` when unknown (imputed by the pipeline).
    pub age: Option<f64>,
    pub sibsp: u8,
    pub parch: u8,
    /// Pounds, 0..=1000; `None` when unknown (imputed by the pipeline).
    pub fare: Option<f64>,
    /// `None` when unknown (imputed by the pipeline).
    pub embarked: Option<Embarked>,
    pub name: Option<String>,
    pub ticket: Option<String>,
    pub cabin: Option<String>,
}

/// A passenger with its identity and, for training data, its label.
#[derive(Debug, Clone, PartialEq)]
pub struct PassengerRecord {
    pub passenger_id: i64,
    pub survived: Option<bool>,
    pub passenger: Passenger,
}

/// One bad field and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// Every bad field of one input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(transparent)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", e.field, e.message)?;
        }
        Ok(())
    }
}

impl ValidationErrors {
    pub fn single(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self(vec![FieldError {
            field: field.into(),
            message: message.into(),
        }])
    }

    /// Qualifies every field name, e.g. `instances[3]` + `age` -> `instances[3].age`
    /// (an empty prefix leaves the names alone).
    pub fn prefixed(self, prefix: &str) -> Self {
        if prefix.is_empty() {
            return self;
        }
        Self(
            self.0
                .into_iter()
                .map(|e| FieldError {
                    field: format!("{prefix}.{}", e.field),
                    message: e.message,
                })
                .collect(),
        )
    }
}

#[derive(Default)]
struct Collector(Vec<FieldError>);

impl Collector {
    fn push(&mut self, field: &str, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.to_owned(),
            message: message.into(),
        });
    }

    fn required<T>(&mut self, field: &str, value: Option<T>) -> Option<T> {
        if value.is_none() {
            self.push(field, "is required");
        }
        value
    }

    fn number(&mut self, field: &str, value: Option<f64>, max: f64) -> Option<f64> {
        let v = value?;
        if !v.is_finite() {
            self.push(field, "must be a finite number");
            None
        } else if !(0.0..=max).contains(&v) {
            self.push(field, format!("must be between 0 and {max}, got {v}"));
            None
        } else {
            Some(v)
        }
    }

    fn count(&mut self, field: &str, value: Option<i64>) -> Option<u8> {
        let v = self.required(field, value)?;
        if (0..=MAX_RELATIVES).contains(&v) {
            Some(v as u8)
        } else {
            self.push(
                field,
                format!("must be between 0 and {MAX_RELATIVES}, got {v}"),
            );
            None
        }
    }

    fn text(&mut self, field: &str, value: Option<String>) -> Option<String> {
        let v = value?;
        let trimmed = v.trim();
        if trimmed.is_empty() {
            None
        } else if trimmed.chars().count() > MAX_TEXT_CHARS {
            self.push(
                field,
                format!("must be at most {MAX_TEXT_CHARS} characters"),
            );
            None
        } else if trimmed.chars().any(char::is_control) {
            self.push(field, "must not contain control characters");
            None
        } else if trimmed.len() == v.len() {
            Some(v)
        } else {
            Some(trimmed.to_owned())
        }
    }
}

impl RawPassenger {
    /// True when no feature field is given (only, perhaps, `passenger_id`).
    pub fn has_no_features(&self) -> bool {
        *self
            == RawPassenger {
                passenger_id: self.passenger_id,
                ..Default::default()
            }
    }

    /// Parses into a [`Passenger`], or names every invalid field.
    pub fn validate(self) -> Result<Passenger, ValidationErrors> {
        let mut c = Collector::default();
        let pclass = c.required("pclass", self.pclass).and_then(|n| {
            let parsed = Pclass::parse(n);
            if parsed.is_none() {
                c.push("pclass", format!("must be 1, 2 or 3, got {n}"));
            }
            parsed
        });
        let sex = c.required("sex", self.sex).and_then(|s| {
            let parsed = Sex::parse(&s);
            if parsed.is_none() {
                c.push("sex", format!("must be \"male\" or \"female\", got {s:?}"));
            }
            parsed
        });
        let age = c.number("age", self.age, MAX_AGE);
        let sibsp = c.count("sibsp", self.sibsp);
        let parch = c.count("parch", self.parch);
        let fare = c.number("fare", self.fare, MAX_FARE);
        let embarked = match self.embarked.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(s) => {
                let parsed = Embarked::parse(s);
                if parsed.is_none() {
                    c.push(
                        "embarked",
                        format!("must be \"C\", \"Q\" or \"S\", got {s:?}"),
                    );
                }
                parsed
            }
        };
        let name = c.text("name", self.name);
        let ticket = c.text("ticket", self.ticket);
        let cabin = c.text("cabin", self.cabin);
        match (pclass, sex, sibsp, parch) {
            (Some(pclass), Some(sex), Some(sibsp), Some(parch)) if c.0.is_empty() => {
                Ok(Passenger {
                    id: self.passenger_id,
                    pclass,
                    sex,
                    age,
                    sibsp,
                    parch,
                    fare,
                    embarked,
                    name,
                    ticket,
                    cabin,
                })
            }
            _ => Err(ValidationErrors(c.0)),
        }
    }
}

/// Room for a passenger's raw JSON with its text fields (about 180 bytes for most).
const RAW_JSON_CAPACITY: usize = 256;

impl Passenger {
    /// `serde_json::to_string(&self.to_raw(passenger_id))`, written directly from the
    /// borrowed fields (the request log stores this for every prediction).
    pub fn raw_json(&self, passenger_id: Option<i64>) -> String {
        let mut out = JsonWriter::with_capacity(RAW_JSON_CAPACITY);
        out.begin_object()
            .key("passenger_id")
            .opt_i64(passenger_id)
            .key("pclass")
            .i64(self.pclass.number())
            .key("sex")
            .str(self.sex.as_str())
            .key("age")
            .opt_f64(self.age)
            .key("sibsp")
            .i64(i64::from(self.sibsp))
            .key("parch")
            .i64(i64::from(self.parch))
            .key("fare")
            .opt_f64(self.fare)
            .key("embarked")
            .opt_str(self.embarked.map(Embarked::as_str))
            .key("name")
            .opt_str(self.name.as_deref())
            .key("ticket")
            .opt_str(self.ticket.as_deref())
            .key("cabin")
            .opt_str(self.cabin.as_deref())
            .end_object();
        // Only whole UTF-8 strings and ASCII were written.
        String::from_utf8(out.into_inner()).unwrap_or_else(|_| "{}".to_owned())
    }

    /// The raw form of this passenger (for storage and round trips).
    pub fn to_raw(&self, passenger_id: Option<i64>) -> RawPassenger {
        RawPassenger {
            passenger_id,
            pclass: Some(self.pclass.number()),
            sex: Some(self.sex.as_str().to_owned()),
            age: self.age,
            sibsp: Some(i64::from(self.sibsp)),
            parch: Some(i64::from(self.parch)),
            fare: self.fare,
            embarked: self.embarked.map(|e| e.as_str().to_owned()),
            name: self.name.clone(),
            ticket: self.ticket.clone(),
            cabin: self.cabin.clone(),
        }
    }
}

#[cfg(test)]
impl Passenger {
    /// The least a valid passenger needs: a first-class woman travelling alone.
    pub(crate) fn minimal() -> Passenger {
        RawPassenger {
            pclass: Some(1),
            sex: Some("female".into()),
            sibsp: Some(0),
            parch: Some(0),
            ..Default::default()
        }
        .validate()
        .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_json_is_the_raw_passengers_json() {
        let full = raw().validate().unwrap();
        let mut bare = full.clone();
        (bare.age, bare.fare, bare.embarked) = (None, None, None);
        (bare.name, bare.ticket, bare.cabin) = (None, None, Some("C \"85\"\n".into()));
        for p in [full, bare] {
            for id in [None, Some(892)] {
                let expected = serde_json::to_string(&p.to_raw(id)).unwrap();
                assert_eq!(p.raw_json(id), expected);
            }
        }
    }

    pub(crate) fn raw() -> RawPassenger {
        RawPassenger {
            passenger_id: None,
            pclass: Some(3),
            sex: Some("male".into()),
            age: Some(22.0),
            sibsp: Some(1),
            parch: Some(0),
            fare: Some(7.25),
            embarked: Some("S".into()),
            name: Some("Braund, Mr. Owen Harris".into()),
            ticket: Some("A/5 21171".into()),
            cabin: None,
        }
    }

    fn fields(err: ValidationErrors) -> Vec<String> {
        err.0.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn valid_passenger_parses() {
        let p = raw().validate().unwrap();
        assert_eq!(p.pclass, Pclass::Third);
        assert_eq!(p.sex, Sex::Male);
        assert_eq!(p.age, Some(22.0));
        assert_eq!(p.embarked, Some(Embarked::S));
        assert_eq!(p.cabin, None);
    }

    #[test]
    fn optional_fields_may_be_missing_or_blank() {
        let p = RawPassenger {
            age: None,
            fare: None,
            embarked: Some(" ".into()),
            name: Some("".into()),
            ..raw()
        }
        .validate()
        .unwrap();
        assert_eq!(
            (p.age, p.fare, p.embarked, p.name),
            (None, None, None, None)
        );
    }

    #[test]
    fn lenient_spelling_of_categories() {
        let p = RawPassenger {
            sex: Some(" Female ".into()),
            embarked: Some("c".into()),
            ..raw()
        }
        .validate()
        .unwrap();
        assert_eq!((p.sex, p.embarked), (Sex::Female, Some(Embarked::C)));
    }

    #[test]
    fn every_bad_field_is_named() {
        let err = RawPassenger {
            passenger_id: None,
            pclass: Some(4),
            sex: Some("robot".into()),
            age: Some(-1.0),
            sibsp: Some(11),
            parch: Some(-1),
            fare: Some(f64::NAN),
            embarked: Some("X".into()),
            name: Some("a\u{0}b".into()),
            ticket: Some("t".repeat(300)),
            cabin: None,
        }
        .validate()
        .unwrap_err();
        assert_eq!(
            fields(err),
            [
                "pclass", "sex", "age", "sibsp", "parch", "fare", "embarked", "name", "ticket"
            ]
        );
    }

    #[test]
    fn required_fields_are_named_when_missing() {
        let err = RawPassenger::default().validate().unwrap_err();
        assert_eq!(fields(err), ["pclass", "sex", "sibsp", "parch"]);
    }

    #[test]
    fn absurd_and_infinite_values_are_rejected() {
        for (age, fare) in [
            (Some(121.0), None),
            (None, Some(1000.01)),
            (Some(f64::INFINITY), None),
            (None, Some(-0.5)),
        ] {
            let r = RawPassenger { age, fare, ..raw() };
            assert!(r.validate().is_err(), "{age:?} {fare:?}");
        }
        let edge = RawPassenger {
            age: Some(0.0),
            fare: Some(0.0),
            ..raw()
        };
        assert!(edge.validate().is_ok());
    }

    #[test]
    fn prefixed_errors_name_the_instance() {
        let err = ValidationErrors::single("age", "bad").prefixed("instances[2]");
        assert_eq!(err.to_string(), "instances[2].age: bad");
    }

    #[test]
    fn raw_round_trip() {
        let p = raw().validate().unwrap();
        assert_eq!(p.to_raw(None).validate().unwrap(), p);
    }

    #[test]
    fn unknown_json_fields_are_rejected() {
        let err = serde_json::from_str::<RawPassenger>(r#"{"pclas":3}"#).unwrap_err();
        assert!(err.to_string().contains("pclas"), "{err}");
    }
}
