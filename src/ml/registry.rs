//! The model registry in SQLite: immutable versions (`v1`, `v2`, ...) holding their artifact
//! and metrics, and aliases such as `production` that point at one of them.

use crate::core::db::Pool;
use serde::Serialize;
use sqlx::Row;

use super::model::{Model, ModelArtifact, ModelError};
use crate::core::time::now_rfc3339;

/// The alias the service serves.
pub const PRODUCTION: &str = "production";

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("model registry: {0}")]
    Db(#[from] sqlx::Error),
    #[error("model version {0:?} does not exist")]
    UnknownVersion(String),
    #[error("no model version has the alias {0:?}; run `titanic train --promote`")]
    NoAlias(String),
    #[error("model version {version}: {cause}")]
    Invalid { version: String, cause: ModelError },
    #[error("alias {0:?} must be 1-64 characters of a-z, 0-9, _ and -")]
    BadAlias(String),
    #[error("alias {0:?} has no earlier version to roll back to")]
    NothingToRollBack(String),
}

/// How an alias moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AliasAction {
    Promote,
    Rollback,
}

impl AliasAction {
    fn as_str(self) -> &'static str {
        match self {
            AliasAction::Promote => "promote",
            AliasAction::Rollback => "rollback",
        }
    }
}

/// Who moves an alias, how and why.
#[derive(Debug, Clone, Copy)]
pub struct AliasChange<'a> {
    pub action: AliasAction,
    pub actor: &'a str,
    pub reason: &'a str,
}

/// The result of moving an alias.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AliasMove {
    pub alias: String,
    pub version: String,
    pub previous_version: Option<String>,
}

/// One entry of the alias history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AliasEvent {
    pub alias: String,
    pub version: String,
    pub previous_version: Option<String>,
    pub action: String,
    pub actor: String,
    pub reason: String,
    pub at: String,
}

/// A registered version, without its artifact.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct VersionSummary {
    pub version: String,
    pub aliases: Vec<String>,
    pub data_hash: String,
    pub created_at: String,
    /// The version's cross-validated metrics.
    #[schema(value_type = Object)]
    pub metrics: serde_json::Value,
}

fn check_alias(alias: &str) -> Result<(), RegistryError> {
    let ok = !alias.is_empty()
        && alias.len() <= 64
        && alias
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(RegistryError::BadAlias(alias.to_owned()))
    }
}

#[derive(Debug, Clone)]
pub struct ModelRegistry {
    pool: Pool,
}

impl ModelRegistry {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }

    /// Stores a new immutable version and returns its name. The name is assigned in the same
    /// statement as the insert, under the write lock, so concurrent registrations (from
    /// several replicas too) cannot collide.
    pub async fn register(&self, artifact: &ModelArtifact) -> Result<String, RegistryError> {
        const SQL: &str = "\
INSERT INTO model_versions (version, artifact, metrics, data_hash, created_at)
VALUES ('v' || (SELECT COALESCE(MAX(id), 0) + 1 FROM model_versions), $1, $2, $3, $4)
RETURNING version";
        let metrics = serde_json::to_string(&artifact.metrics).unwrap_or_default();
        let mut tx = crate::core::db::begin_write(&self.pool).await?;
        let version: String = sqlx::query_scalar(SQL)
            .bind(artifact.to_json())
            .bind(metrics)
            .bind(&artifact.training.data_hash)
            .bind(now_rfc3339())
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(version)
    }

    /// Points `alias` at `version` and records the move (who, why, from which version) in
    /// the append-only history, in one transaction.
    pub async fn set_alias(
        &self,
        alias: &str,
        version: &str,
        change: &AliasChange<'_>,
    ) -> Result<AliasMove, RegistryError> {
        check_alias(alias)?;
        let mut tx = crate::core::db::begin_write(&self.pool).await?;
        // Writing first takes the write lock at once (no read-then-upgrade race).
        let previous: Option<Option<String>> = sqlx::query_scalar(
            "INSERT INTO model_alias_history (alias, version, previous_version, action, actor, reason, at)
             SELECT $1, version, (SELECT version FROM model_aliases WHERE alias = $1), $3, $4, $5, $6
             FROM model_versions WHERE version = $2
             RETURNING previous_version",
        )
        .bind(alias)
        .bind(version)
        .bind(change.action.as_str())
        .bind(change.actor)
        .bind(change.reason)
        .bind(now_rfc3339())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(previous) = previous else {
            return Err(RegistryError::UnknownVersion(version.to_owned()));
        };
        sqlx::query(
            "INSERT INTO model_aliases (alias, version, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (alias) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at",
        )
        .bind(alias)
        .bind(version)
        .bind(now_rfc3339())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(AliasMove {
            alias: alias.to_owned(),
            version: version.to_owned(),
            previous_version: previous,
        })
    }

    /// The version a rollback of `alias` returns to: replaying the alias's history as a stack
    /// (a promotion pushes, a rollback pops), the entry below the current one.
    pub async fn rollback_target(&self, alias: &str) -> Result<String, RegistryError> {
        let events = self.history(Some(alias)).await?;
        if events.is_empty() {
            return Err(RegistryError::NoAlias(alias.to_owned()));
        }
        let mut stack: Vec<String> = Vec::new();
        for event in events {
            match event.action.as_str() {
                "rollback" => {
                    stack.pop();
                    // The rolled-back-to version is the new top (it may predate the history).
                    if stack.last() != Some(&event.version) {
                        stack.push(event.version);
                    }
                }
                _ => stack.push(event.version),
            }
        }
        stack.pop();
        stack
            .pop()
            .ok_or_else(|| RegistryError::NothingToRollBack(alias.to_owned()))
    }

    /// Alias moves, oldest first (of one alias, or of all).
    pub async fn history(&self, alias: Option<&str>) -> Result<Vec<AliasEvent>, RegistryError> {
        let rows = sqlx::query(
            "SELECT alias, version, previous_version, action, actor, reason, at
             FROM model_alias_history WHERE $1 IS NULL OR alias = $1 ORDER BY id",
        )
        .bind(alias)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AliasEvent {
                    alias: r.try_get("alias")?,
                    version: r.try_get("version")?,
                    previous_version: r.try_get("previous_version")?,
                    action: r.try_get("action")?,
                    actor: r.try_get("actor")?,
                    reason: r.try_get("reason")?,
                    at: r.try_get("at")?,
                })
            })
            .collect()
    }

    /// Every alias and the version it points at.
    pub async fn aliases(&self) -> Result<Vec<(String, String)>, RegistryError> {
        let rows = sqlx::query("SELECT alias, version FROM model_aliases ORDER BY alias")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("alias")?, r.try_get("version")?)))
            .collect()
    }

    /// Every version, newest first, with its metrics and the aliases pointing at it.
    pub async fn list(&self) -> Result<Vec<VersionSummary>, RegistryError> {
        let aliases = self.aliases().await?;
        let rows = sqlx::query(
            "SELECT version, data_hash, created_at, metrics FROM model_versions ORDER BY id DESC",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let version: String = row.try_get("version")?;
                let metrics: String = row.try_get("metrics")?;
                Ok(VersionSummary {
                    aliases: aliases
                        .iter()
                        .filter(|(_, v)| *v == version)
                        .map(|(a, _)| a.clone())
                        .collect(),
                    version,
                    data_hash: row.try_get("data_hash")?,
                    created_at: row.try_get("created_at")?,
                    metrics: serde_json::from_str(&metrics).unwrap_or(serde_json::Value::Null),
                })
            })
            .collect()
    }

    /// The version an alias points at, if any.
    pub async fn resolve(&self, alias: &str) -> Result<Option<String>, RegistryError> {
        Ok(
            sqlx::query_scalar("SELECT version FROM model_aliases WHERE alias = $1")
                .bind(alias)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub async fn artifact(&self, version: &str) -> Result<ModelArtifact, RegistryError> {
        let text: Option<String> =
            sqlx::query_scalar("SELECT artifact FROM model_versions WHERE version = $1")
                .bind(version)
                .fetch_optional(&self.pool)
                .await?;
        let text = text.ok_or_else(|| RegistryError::UnknownVersion(version.to_owned()))?;
        ModelArtifact::from_json(&text).map_err(|cause| RegistryError::Invalid {
            version: version.to_owned(),
            cause,
        })
    }

    /// Loads and checks a version, ready to serve.
    pub async fn load(&self, version: &str) -> Result<Model, RegistryError> {
        let artifact = self.artifact(version).await?;
        Model::from_artifact(version, artifact).map_err(|cause| RegistryError::Invalid {
            version: version.to_owned(),
            cause,
        })
    }

    /// Loads the version an alias points at.
    pub async fn load_alias(&self, alias: &str) -> Result<Model, RegistryError> {
        let version = self
            .resolve(alias)
            .await?
            .ok_or_else(|| RegistryError::NoAlias(alias.to_owned()))?;
        self.load(&version).await
    }
}
