//! The feature registry: entities, feature views (feature definitions grouped by entity and
//! source) and feature services (the features one model consumes). Every definition is
//! versioned: registering a changed definition creates a new immutable version, and old
//! versions stay readable. Registering an unchanged definition returns the existing version.

use crate::core::db::Pool;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::passenger::{FieldError, MAX_AGE, MAX_FARE, MAX_RELATIVES, MAX_TEXT_CHARS};
use crate::core::time::now_rfc3339;

/// The entity of one passenger, keyed by `passenger_id`.
pub const PASSENGER: &str = "passenger";
/// The view of passenger attributes the survival model is computed from.
pub const DEMOGRAPHICS: &str = "passenger_demographics";
/// The view holding the label (`survived`).
pub const SURVIVAL: &str = "passenger_survival";
/// The feature service the survival model consumes.
pub const SURVIVAL_SERVICE: &str = "titanic_survival";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ValueType {
    Int64,
    Float64,
    String,
    Bool,
}

/// An inclusive numeric range.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Range {
    pub min: f64,
    pub max: f64,
}

/// A validation rule beyond the value type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Inclusive numeric range.
    Range(Range),
    /// One of these strings (case-insensitive).
    OneOf(Vec<String>),
    /// Text of at most this many characters.
    MaxLength(usize),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "name": "ticket", "join_key": "ticket", "value_type": "string", "description": "One ticket"
}))]
pub struct EntitySpec {
    #[schema(pattern = "^[a-z][a-z0-9_]{0,63}$")]
    pub name: String,
    #[schema(pattern = "^[a-z][a-z0-9_]{0,63}$")]
    pub join_key: String,
    pub value_type: ValueType,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeatureSpec {
    #[schema(pattern = "^[a-z][a-z0-9_]{0,63}$")]
    pub name: String,
    pub value_type: ValueType,
    #[serde(default)]
    pub description: String,
    /// How the value is derived from its source ("raw" when copied as is).
    #[serde(default = "raw")]
    pub transformation: String,
    #[serde(default)]
    pub validation: Option<Rule>,
    /// A row without this feature is rejected.
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub owner: String,
    #[serde(default)]
    pub tags: Vec<String>,
}

fn raw() -> String {
    "raw".to_owned()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeatureViewSpec {
    #[schema(pattern = "^[a-z][a-z0-9_]{0,63}$")]
    pub name: String,
    #[schema(pattern = "^[a-z][a-z0-9_]{0,63}$")]
    pub entity: String,
    #[serde(default)]
    pub description: String,
    /// Where rows come from (a file, a push API, a job).
    pub source: String,
    /// Maximum age of a value, measured from its event time; 0 means values never go stale.
    #[serde(default)]
    #[schema(maximum = 18446744073709551615u64)]
    pub ttl_secs: u64,
    #[serde(default)]
    pub owner: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[schema(min_items = 1)]
    pub features: Vec<FeatureSpec>,
}

/// Features of one view version that a service uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ViewProjection {
    pub view: String,
    pub version: i64,
    pub features: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeatureServiceSpec {
    #[schema(pattern = "^[a-z][a-z0-9_]{0,63}$")]
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub owner: String,
    #[schema(min_items = 1)]
    pub views: Vec<ViewProjection>,
}

/// A stored, immutable version of a definition.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Versioned<T> {
    pub name: String,
    pub version: i64,
    pub created_at: String,
    pub created_by: String,
    pub spec: T,
}

/// The outcome of a registration: the latest version, and whether this call created it
/// (false when the definition equals the latest version already).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Registered<T> {
    pub created: bool,
    #[serde(flatten)]
    pub item: Versioned<T>,
}

/// The kinds of registry objects, with their table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Entity,
    View,
    Service,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Entity => "entity",
            Kind::View => "feature view",
            Kind::Service => "feature service",
        }
    }
    fn table(self) -> &'static str {
        match self {
            Kind::Entity => "entity",
            Kind::View => "feature_view",
            Kind::Service => "feature_service",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("feature registry: {0}")]
    Db(#[from] sqlx::Error),
    #[error("{} {name:?}{} does not exist", kind.as_str(), version.map(|v| format!(" version {v}")).unwrap_or_default())]
    NotFound {
        kind: Kind,
        name: String,
        version: Option<i64>,
    },
    #[error("invalid definition: {}", .0.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
    #[error("stored {} {name:?} is unreadable: {message}", kind.as_str())]
    Corrupt {
        kind: Kind,
        name: String,
        message: String,
    },
}

impl FeatureSpec {
    fn new(name: &str, value_type: ValueType, description: &str, validation: Option<Rule>) -> Self {
        Self {
            name: name.to_owned(),
            value_type,
            description: description.to_owned(),
            transformation: raw(),
            validation,
            required: false,
            owner: String::new(),
            tags: Vec::new(),
        }
    }

    fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// Checks one value against the type and rule; `Null` is checked by the row.
    pub fn check(&self, value: &Value) -> Result<(), String> {
        let number = match (self.value_type, value) {
            (ValueType::Int64, Value::Number(n)) if n.is_i64() || n.is_u64() => n.as_f64(),
            (ValueType::Float64, Value::Number(n)) => n.as_f64(),
            (ValueType::String, Value::String(_)) | (ValueType::Bool, Value::Bool(_)) => None,
            (t, v) => return Err(format!("expected {t:?}, got {v}").to_lowercase()),
        };
        match (&self.validation, number, value) {
            (Some(Rule::Range(Range { min, max })), Some(x), _) if !(x >= *min && x <= *max) => {
                Err(format!("must be between {min} and {max}, got {x}"))
            }
            (Some(Rule::OneOf(allowed)), _, Value::String(s))
                if !allowed.iter().any(|a| a.eq_ignore_ascii_case(s.trim())) =>
            {
                Err(format!("must be one of {allowed:?}, got {s:?}"))
            }
            (Some(Rule::MaxLength(n)), _, Value::String(s)) if s.chars().count() > *n => {
                Err(format!("must be at most {n} characters"))
            }
            (_, _, Value::String(s)) if s.chars().any(char::is_control) => {
                Err("must not contain control characters".to_owned())
            }
            _ => Ok(()),
        }
    }
}

impl FeatureViewSpec {
    pub fn feature(&self, name: &str) -> Option<&FeatureSpec> {
        self.features.iter().find(|f| f.name == name)
    }

    /// Keeps of a row written under another version of this view only what this version
    /// accepts: its features, each null or passing its type and rule. Returns how many values
    /// were left out.
    pub fn conform(&self, values: &mut serde_json::Map<String, Value>) -> usize {
        let before = values.len();
        values.retain(|name, value| {
            self.feature(name)
                .is_some_and(|f| value.is_null() || f.check(value).is_ok())
        });
        before - values.len()
    }

    /// Validates a row of values: every required feature present, every value of the right
    /// type and within its rule, no unknown feature. Names every problem.
    pub fn validate_values(&self, values: &serde_json::Map<String, Value>) -> Vec<FieldError> {
        let mut errors = Vec::new();
        for (name, value) in values {
            match self.feature(name) {
                None => errors.push(FieldError {
                    field: name.clone(),
                    message: format!("is not a feature of view {}", self.name),
                }),
                Some(_) if value.is_null() => {}
                Some(f) => {
                    if let Err(message) = f.check(value) {
                        errors.push(FieldError {
                            field: name.clone(),
                            message,
                        });
                    }
                }
            }
        }
        for f in self.features.iter().filter(|f| f.required) {
            if values.get(&f.name).is_none_or(Value::is_null) {
                errors.push(FieldError {
                    field: f.name.clone(),
                    message: "is required".to_owned(),
                });
            }
        }
        errors
    }
}

fn push_err(errors: &mut Vec<FieldError>, field: impl Into<String>, message: impl Into<String>) {
    errors.push(FieldError {
        field: field.into(),
        message: message.into(),
    });
}

fn check_name(errors: &mut Vec<FieldError>, field: &str, name: &str) {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.starts_with(|c: char| c.is_ascii_lowercase());
    if !ok {
        push_err(
            errors,
            field,
            format!("{name:?} must be 1-64 characters of a-z, 0-9 and _, starting with a letter"),
        );
    }
}

/// The definitions the service ships with; registered on first start.
pub fn builtin_entities() -> Vec<EntitySpec> {
    vec![EntitySpec {
        name: PASSENGER.to_owned(),
        join_key: "passenger_id".to_owned(),
        value_type: ValueType::Int64,
        description: "One passenger of the Titanic's maiden voyage".to_owned(),
    }]
}

pub fn builtin_views() -> Vec<FeatureViewSpec> {
    use ValueType::*;
    let range = |min: f64, max: f64| Some(Rule::Range(Range { min, max }));
    let text = Some(Rule::MaxLength(MAX_TEXT_CHARS));
    let relatives = MAX_RELATIVES as f64;
    vec![
        FeatureViewSpec {
            name: DEMOGRAPHICS.to_owned(),
            entity: PASSENGER.to_owned(),
            description: "Ticket and family facts of a passenger, as recorded at boarding"
                .to_owned(),
            source: "passenger CSV ingestion (titanic train/serve) and POST /features/push"
                .to_owned(),
            ttl_secs: 0,
            owner: "ml-platform".to_owned(),
            tags: vec!["pii:name".to_owned()],
            features: vec![
                FeatureSpec::new("pclass", Int64, "Ticket class: 1, 2 or 3", range(1.0, 3.0))
                    .required(),
                FeatureSpec::new(
                    "sex",
                    String,
                    "male or female",
                    Some(Rule::OneOf(vec!["male".into(), "female".into()])),
                )
                .required(),
                FeatureSpec::new("age", Float64, "Age in years", range(0.0, MAX_AGE)),
                FeatureSpec::new(
                    "sibsp",
                    Int64,
                    "Siblings and spouses aboard",
                    range(0.0, relatives),
                )
                .required(),
                FeatureSpec::new(
                    "parch",
                    Int64,
                    "Parents and children aboard",
                    range(0.0, relatives),
                )
                .required(),
                FeatureSpec::new("fare", Float64, "Fare in pounds", range(0.0, MAX_FARE)),
                FeatureSpec::new(
                    "embarked",
                    String,
                    "Port: C(herbourg), Q(ueenstown), S(outhampton)",
                    Some(Rule::OneOf(vec!["C".into(), "Q".into(), "S".into()])),
                ),
                FeatureSpec::new("name", String, "Full name with title", text.clone()),
                FeatureSpec::new("ticket", String, "Ticket number", text.clone()),
                FeatureSpec::new("cabin", String, "Cabin number(s)", text),
            ],
        },
        FeatureViewSpec {
            name: SURVIVAL.to_owned(),
            entity: PASSENGER.to_owned(),
            description: "Whether the passenger survived (the training label)".to_owned(),
            source: "labelled passenger CSV ingestion".to_owned(),
            ttl_secs: 0,
            owner: "ml-platform".to_owned(),
            tags: vec!["label".to_owned()],
            features: vec![
                FeatureSpec::new("survived", Bool, "Survived the sinking", None).required(),
            ],
        },
    ]
}

pub fn builtin_services() -> Vec<FeatureServiceSpec> {
    vec![FeatureServiceSpec {
        name: SURVIVAL_SERVICE.to_owned(),
        description: "Inputs of the survival model".to_owned(),
        owner: "ml-platform".to_owned(),
        views: vec![ViewProjection {
            view: DEMOGRAPHICS.to_owned(),
            version: 1,
            features: [
                "pclass", "sex", "age", "sibsp", "parch", "fare", "embarked", "name", "ticket",
                "cabin",
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
        }],
    }]
}

#[derive(Debug, Clone)]
pub struct FeatureRegistry {
    pool: Pool,
}

fn spec_hash(json: &str) -> String {
    let digest = Sha256::digest(json.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl FeatureRegistry {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }

    /// Registers the built-in definitions whose names have no version yet; a definition
    /// someone has since changed (a later version) is left as it is.
    pub async fn ensure_builtins(&self) -> Result<(), RegistryError> {
        for e in builtin_entities() {
            if !self.exists(Kind::Entity, &e.name).await? {
                self.register_entity(&e, "system").await?;
            }
        }
        for v in builtin_views() {
            if !self.exists(Kind::View, &v.name).await? {
                self.register_view(&v, "system").await?;
            }
        }
        for s in builtin_services() {
            if !self.exists(Kind::Service, &s.name).await? {
                self.register_service(&s, "system").await?;
            }
        }
        Ok(())
    }

    async fn exists(&self, kind: Kind, name: &str) -> Result<bool, RegistryError> {
        Ok(sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM registry WHERE kind = $1 AND name = $2",
        )
        .bind(kind.table())
        .bind(name)
        .fetch_one(&self.pool)
        .await?
            > 0)
    }

    pub async fn register_entity(
        &self,
        spec: &EntitySpec,
        by: &str,
    ) -> Result<Registered<EntitySpec>, RegistryError> {
        let mut errors = Vec::new();
        check_name(&mut errors, "name", &spec.name);
        check_name(&mut errors, "join_key", &spec.join_key);
        if !matches!(spec.value_type, ValueType::Int64 | ValueType::String) {
            push_err(
                &mut errors,
                "value_type",
                "an entity key is int64 or string",
            );
        }
        if !errors.is_empty() {
            return Err(RegistryError::Invalid(errors));
        }
        self.store(Kind::Entity, &spec.name, spec, by).await
    }

    pub async fn register_view(
        &self,
        spec: &FeatureViewSpec,
        by: &str,
    ) -> Result<Registered<FeatureViewSpec>, RegistryError> {
        let mut errors = Vec::new();
        check_name(&mut errors, "name", &spec.name);
        if spec.features.is_empty() {
            push_err(&mut errors, "features", "at least one feature");
        }
        let mut seen = std::collections::HashSet::new();
        for (i, f) in spec.features.iter().enumerate() {
            check_name(&mut errors, &format!("features[{i}].name"), &f.name);
            if !seen.insert(&f.name) {
                push_err(
                    &mut errors,
                    format!("features[{i}].name"),
                    "duplicate feature",
                );
            }
            match (&f.validation, f.value_type) {
                (Some(Rule::Range(Range { min, max })), ValueType::Int64 | ValueType::Float64)
                    if min.is_finite() && max.is_finite() && min <= max => {}
                (Some(Rule::Range(_)), ValueType::Int64 | ValueType::Float64) => push_err(
                    &mut errors,
                    format!("features[{i}].validation"),
                    "range needs finite min <= max",
                ),
                (Some(Rule::OneOf(v)), ValueType::String) if !v.is_empty() => {}
                (Some(Rule::MaxLength(_)), ValueType::String) | (None, _) => {}
                (Some(_), _) => push_err(
                    &mut errors,
                    format!("features[{i}].validation"),
                    "rule does not fit the value type",
                ),
            }
        }
        if !errors.is_empty() {
            return Err(RegistryError::Invalid(errors));
        }
        // The entity must exist.
        self.latest::<EntitySpec>(Kind::Entity, &spec.entity)
            .await
            .map_err(|e| match e {
                RegistryError::NotFound { .. } => RegistryError::Invalid(vec![FieldError {
                    field: "entity".into(),
                    message: format!("no entity named {:?}", spec.entity),
                }]),
                other => other,
            })?;
        self.store(Kind::View, &spec.name, spec, by).await
    }

    pub async fn register_service(
        &self,
        spec: &FeatureServiceSpec,
        by: &str,
    ) -> Result<Registered<FeatureServiceSpec>, RegistryError> {
        let mut errors = Vec::new();
        check_name(&mut errors, "name", &spec.name);
        if spec.views.is_empty() {
            push_err(&mut errors, "views", "at least one view");
        }
        for (i, p) in spec.views.iter().enumerate() {
            match self
                .get::<FeatureViewSpec>(Kind::View, &p.view, p.version)
                .await
            {
                Ok(view) => {
                    for f in &p.features {
                        if view.spec.feature(f).is_none() {
                            push_err(
                                &mut errors,
                                format!("views[{i}].features"),
                                format!("{f:?} is not in {} version {}", p.view, p.version),
                            );
                        }
                    }
                }
                Err(RegistryError::NotFound { .. }) => push_err(
                    &mut errors,
                    format!("views[{i}]"),
                    format!("no feature view {:?} version {}", p.view, p.version),
                ),
                Err(e) => return Err(e),
            }
        }
        if !errors.is_empty() {
            return Err(RegistryError::Invalid(errors));
        }
        self.store(Kind::Service, &spec.name, spec, by).await
    }

    /// Stores `spec` as the next version of `name`, unless it equals the latest version.
    async fn store<T: Serialize + for<'de> Deserialize<'de>>(
        &self,
        kind: Kind,
        name: &str,
        spec: &T,
        by: &str,
    ) -> Result<Registered<T>, RegistryError> {
        // One statement: the next version, unless the latest version has the same spec; under
        // the write lock, so that replicas starting together register a definition once.
        const SQL: &str = "\
INSERT INTO registry (kind, name, version, spec, spec_hash, created_at, created_by)
SELECT $1, $2,
       COALESCE((SELECT MAX(version) FROM registry WHERE kind = $1 AND name = $2), 0) + 1,
       $3, $4, $5, $6
WHERE NOT EXISTS (
    SELECT 1 FROM registry r WHERE r.kind = $1 AND r.name = $2 AND r.spec_hash = $4
      AND r.version = (SELECT MAX(version) FROM registry WHERE kind = $1 AND name = $2))";
        let json = serde_json::to_string(spec).unwrap_or_default();
        let mut tx = crate::core::db::begin_write(&self.pool).await?;
        let done = sqlx::query(SQL)
            .bind(kind.table())
            .bind(name)
            .bind(&json)
            .bind(spec_hash(&json))
            .bind(now_rfc3339())
            .bind(by)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Registered {
            created: done.rows_affected() == 1,
            item: self.latest(kind, name).await?,
        })
    }

    /// One version of a definition.
    pub async fn get<T: for<'de> Deserialize<'de>>(
        &self,
        kind: Kind,
        name: &str,
        version: i64,
    ) -> Result<Versioned<T>, RegistryError> {
        let row = sqlx::query(
            "SELECT name, version, spec, created_at, created_by FROM registry \
             WHERE kind = $1 AND name = $2 AND version = $3",
        )
        .bind(kind.table())
        .bind(name)
        .bind(version)
        .fetch_optional(&self.pool)
        .await?;
        let row = row.ok_or_else(|| RegistryError::NotFound {
            kind,
            name: name.to_owned(),
            version: Some(version),
        })?;
        decode(kind, &row)
    }

    /// The newest version of a definition.
    pub async fn latest<T: for<'de> Deserialize<'de>>(
        &self,
        kind: Kind,
        name: &str,
    ) -> Result<Versioned<T>, RegistryError> {
        let row = sqlx::query(
            "SELECT name, version, spec, created_at, created_by FROM registry \
             WHERE kind = $1 AND name = $2 ORDER BY version DESC LIMIT 1",
        )
        .bind(kind.table())
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        let row = row.ok_or_else(|| RegistryError::NotFound {
            kind,
            name: name.to_owned(),
            version: None,
        })?;
        decode(kind, &row)
    }

    /// Every version of one definition, oldest first.
    pub async fn versions<T: for<'de> Deserialize<'de>>(
        &self,
        kind: Kind,
        name: &str,
    ) -> Result<Vec<Versioned<T>>, RegistryError> {
        let rows = sqlx::query(
            "SELECT name, version, spec, created_at, created_by FROM registry \
             WHERE kind = $1 AND name = $2 ORDER BY version",
        )
        .bind(kind.table())
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        if rows.is_empty() {
            return Err(RegistryError::NotFound {
                kind,
                name: name.to_owned(),
                version: None,
            });
        }
        rows.iter().map(|r| decode(kind, r)).collect()
    }

    /// The latest version of every definition of a kind, by name.
    pub async fn list<T: for<'de> Deserialize<'de>>(
        &self,
        kind: Kind,
    ) -> Result<Vec<Versioned<T>>, RegistryError> {
        let rows = sqlx::query(
            "SELECT r.name, r.version, r.spec, r.created_at, r.created_by FROM registry r \
             WHERE r.kind = $1 AND r.version = \
               (SELECT MAX(version) FROM registry WHERE kind = r.kind AND name = r.name) \
             ORDER BY r.name",
        )
        .bind(kind.table())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| decode(kind, r)).collect()
    }
}

fn decode<T: for<'de> Deserialize<'de>>(
    kind: Kind,
    row: &crate::core::db::DbRow,
) -> Result<Versioned<T>, RegistryError> {
    let name: String = row.try_get("name")?;
    let spec: String = row.try_get("spec")?;
    let spec = serde_json::from_str(&spec).map_err(|e| RegistryError::Corrupt {
        kind,
        name: name.clone(),
        message: e.to_string(),
    })?;
    Ok(Versioned {
        name,
        version: row.try_get("version")?,
        created_at: row.try_get("created_at")?,
        created_by: row.try_get("created_by")?,
        spec,
    })
}

/// A view version for tests: `features` as in a registration (`[{"name", "value_type", ...}]`).
#[cfg(test)]
pub fn test_view(name: &str, version: i64, features: Value) -> Versioned<FeatureViewSpec> {
    let spec: FeatureViewSpec = serde_json::from_value(serde_json::json!({
        "name": name, "entity": "passenger", "source": "push", "ttl_secs": 0,
        "features": features,
    }))
    .expect("a valid view");
    Versioned::unrecorded(name, version, spec)
}

#[cfg(test)]
impl<T> Versioned<T> {
    /// A version as tests build it, with no record of who made it when.
    pub fn unrecorded(name: &str, version: i64, spec: T) -> Self {
        Versioned {
            name: name.to_owned(),
            version,
            created_at: String::new(),
            created_by: String::new(),
            spec,
        }
    }
}
