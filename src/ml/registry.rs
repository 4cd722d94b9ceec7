//! The model registry in SQLite: immutable versions (`v1`, `v2`, ...) holding their artifact
//! and metrics, and aliases such as `production` that point at one of them.

use sqlx::SqlitePool;

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
    #[error("model version {version}: {source}")]
    Invalid { version: String, source: ModelError },
}

#[derive(Debug, Clone)]
pub struct ModelRegistry {
    pool: SqlitePool,
}

impl ModelRegistry {
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }

    /// Stores a new immutable version and returns its name. The name is assigned in the same
    /// statement as the insert, so concurrent registrations cannot collide.
    pub async fn register(&self, artifact: &ModelArtifact) -> Result<String, RegistryError> {
        const SQL: &str = "\
INSERT INTO model_versions (version, artifact, metrics, data_hash, created_at)
VALUES ('v' || (SELECT COALESCE(MAX(id), 0) + 1 FROM model_versions), ?1, ?2, ?3, ?4)
RETURNING version";
        let metrics = serde_json::to_string(&artifact.metrics).unwrap_or_default();
        let version: String = sqlx::query_scalar(SQL)
            .bind(artifact.to_json())
            .bind(metrics)
            .bind(&artifact.training.data_hash)
            .bind(now_rfc3339())
            .fetch_one(&self.pool)
            .await?;
        Ok(version)
    }

    /// Points `alias` at `version`.
    pub async fn set_alias(&self, alias: &str, version: &str) -> Result<(), RegistryError> {
        const SQL: &str = "\
INSERT INTO model_aliases (alias, version, updated_at)
SELECT ?1, version, ?3 FROM model_versions WHERE version = ?2
ON CONFLICT (alias) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at";
        let done = sqlx::query(SQL)
            .bind(alias)
            .bind(version)
            .bind(now_rfc3339())
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(RegistryError::UnknownVersion(version.to_owned()));
        }
        Ok(())
    }

    /// The version an alias points at, if any.
    pub async fn resolve(&self, alias: &str) -> Result<Option<String>, RegistryError> {
        Ok(
            sqlx::query_scalar("SELECT version FROM model_aliases WHERE alias = ?1")
                .bind(alias)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub async fn artifact(&self, version: &str) -> Result<ModelArtifact, RegistryError> {
        let text: Option<String> =
            sqlx::query_scalar("SELECT artifact FROM model_versions WHERE version = ?1")
                .bind(version)
                .fetch_optional(&self.pool)
                .await?;
        let text = text.ok_or_else(|| RegistryError::UnknownVersion(version.to_owned()))?;
        ModelArtifact::from_json(&text).map_err(|source| RegistryError::Invalid {
            version: version.to_owned(),
            source,
        })
    }

    /// Loads and checks a version, ready to serve.
    pub async fn load(&self, version: &str) -> Result<Model, RegistryError> {
        let artifact = self.artifact(version).await?;
        Model::from_artifact(version, artifact).map_err(|source| RegistryError::Invalid {
            version: version.to_owned(),
            source,
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
