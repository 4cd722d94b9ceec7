//! Pushing feature rows: each row is validated against its view version's definitions;
//! invalid rows are rejected with their reasons, valid ones are appended to the offline store
//! (durable before this returns) and then written through to the online store.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::materialize::{MaterializeError, refresh};
use super::offline::{NewRow, OfflineError, Values};
use super::passenger::FieldError;
use super::registry::{EntitySpec, FeatureViewSpec, ValueType, Versioned};
use super::retrieval::FeatureServer;
use crate::core::time::{Micros, now_micros, parse_rfc3339};

/// How far in the future an event time may lie (clock skew between writers).
const FUTURE_SKEW_MICROS: Micros = 5 * 60 * 1_000_000;

/// One row to push.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushRow {
    /// The entity key (an integer for `passenger`).
    pub entity: Value,
    /// When the values were true (RFC 3339); default: now.
    #[serde(default)]
    #[schema(format = DateTime)]
    pub event_time: Option<String>,
    /// Feature values by feature name.
    #[schema(value_type = Object)]
    pub values: Values,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Rejected {
    pub index: usize,
    pub errors: Vec<FieldError>,
}

/// What happened to the online copy of accepted rows.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum OnlineWrite {
    Written {
        entities: usize,
    },
    /// The offline store has the rows; materialization copies them later.
    Failed {
        message: String,
    },
    NothingToWrite,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PushOutcome {
    pub view: String,
    pub version: i64,
    /// Valid rows (written or already stored).
    pub accepted: usize,
    /// Rows appended to the offline history.
    pub written: u64,
    /// Valid rows equal to what was already stored.
    pub unchanged: u64,
    pub rejected: Vec<Rejected>,
    pub online: OnlineWrite,
}

fn entity_key(entity: &EntitySpec, value: &Value) -> Result<String, String> {
    match (entity.value_type, value) {
        (ValueType::Int64, Value::Number(n)) if n.is_i64() => Ok(n.to_string()),
        (ValueType::String, Value::String(s)) if !s.is_empty() && s.len() <= 256 => Ok(s.clone()),
        (t, v) => Err(format!("{} must be {t:?}, got {v}", entity.join_key).to_lowercase()),
    }
}

/// How a push treats invalid rows and the online store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushOptions {
    /// Write the accepted rows' latest values through to the online store (otherwise
    /// materialization copies them later).
    pub online: bool,
    /// Store nothing when any row is invalid (Feast's push is all or nothing).
    pub all_or_nothing: bool,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            online: true,
            all_or_nothing: false,
        }
    }
}

/// Validates every row, appends the valid ones (none, with `all_or_nothing`, when any is
/// invalid), and writes their entities' latest values through to the online store (when
/// `options.online`).
pub async fn push(
    server: &FeatureServer,
    view: &Versioned<FeatureViewSpec>,
    entity: &EntitySpec,
    rows: Vec<PushRow>,
    source: &str,
    options: PushOptions,
) -> Result<PushOutcome, OfflineError> {
    let now = now_micros();
    let mut valid = Vec::with_capacity(rows.len());
    let mut rejected = Vec::new();
    for (index, row) in rows.into_iter().enumerate() {
        let mut errors = view.spec.validate_values(&row.values);
        let key = entity_key(entity, &row.entity).map_err(|message| FieldError {
            field: "entity".to_owned(),
            message,
        });
        let event_time = match row.event_time.as_deref().map(parse_rfc3339) {
            None => Ok(now),
            Some(Ok(t)) if t > now + FUTURE_SKEW_MICROS => Err("is in the future".to_owned()),
            Some(Ok(t)) => Ok(t),
            Some(Err(e)) => Err(e),
        }
        .map_err(|message| FieldError {
            field: "event_time".to_owned(),
            message,
        });
        match (key, event_time) {
            (Ok(entity_key), Ok(event_time)) if errors.is_empty() => valid.push(NewRow {
                entity_key,
                event_time,
                values: row.values,
            }),
            (key, event_time) => {
                errors.extend(key.err());
                errors.extend(event_time.err());
                rejected.push(Rejected { index, errors });
            }
        }
    }
    if options.all_or_nothing && !rejected.is_empty() {
        return Ok(PushOutcome {
            view: view.name.clone(),
            version: view.version,
            accepted: 0,
            written: 0,
            unchanged: 0,
            rejected,
            online: OnlineWrite::NothingToWrite,
        });
    }
    let offline = server.offline();
    let appended = offline
        .append(&view.name, view.version, &valid, source)
        .await?;
    let mut outcome = PushOutcome {
        view: view.name.clone(),
        version: view.version,
        accepted: valid.len(),
        written: appended.written,
        unchanged: appended.unchanged,
        rejected,
        online: OnlineWrite::NothingToWrite,
    };
    if appended.written == 0 || !options.online {
        return Ok(outcome);
    }
    // Write through the latest values (a pushed row may be older than what is stored).
    let keys: Vec<&str> = valid.iter().map(|r| r.entity_key.as_str()).collect();
    outcome.online = match refresh(server, view, &keys, now_micros()).await {
        Ok(entities) => OnlineWrite::Written { entities },
        Err(MaterializeError::Offline(e)) => return Err(e),
        Err(MaterializeError::Online(e)) => {
            tracing::warn!(view = %view.name, error = %e, "write-through to the online store failed");
            OnlineWrite::Failed {
                message: e.to_string(),
            }
        }
    };
    Ok(outcome)
}
