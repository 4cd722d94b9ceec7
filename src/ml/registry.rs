//! The model registry in the database: versions (`v1`, `v2`, ...) holding their immutable
//! artifact and metrics and who trained them, with an editable description and tags; and
//! aliases such as `production` that point at one of them, with their history.

use std::collections::BTreeMap;

use crate::core::db::Pool;
use serde::Serialize;
use sqlx::Row;

use super::model::{Model, ModelArtifact, ModelError};
use crate::core::time::now_rfc3339;
use crate::feature_store::{FieldError, ValidationErrors};

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
    /// The version the alias pointed at before (equal to `version` when it already pointed
    /// there).
    pub previous_version: Option<String>,
    /// False when the alias already pointed at the version: nothing moved and nothing was
    /// added to the history.
    pub moved: bool,
}

/// One entry of the alias history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
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
    /// Who trained it: a token subject, `cli:<user>` or `bootstrap` (`null` for versions
    /// registered before this was recorded).
    pub trained_by: Option<String>,
    /// Free text, editable (`PATCH /models/{version}`); empty when never set.
    pub description: String,
    /// Editable key-value labels.
    pub tags: BTreeMap<String, String>,
    /// Who last edited the description or tags, and when (RFC 3339); `null` when never edited.
    pub updated_by: Option<String>,
    pub updated_at: Option<String>,
    /// The version's cross-validated metrics.
    #[schema(value_type = Object)]
    pub metrics: serde_json::Value,
}

/// The longest description of a version, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 2000;
/// The most tags one version holds, and the most tag changes one update makes.
pub const MAX_TAGS: usize = 32;
/// The longest tag name, in characters (`A-Z`, `a-z`, `0-9`, `_`, `-`, `.`, `:` and `/`).
pub const MAX_TAG_NAME_CHARS: usize = 64;
/// The longest tag value, in characters.
pub const MAX_TAG_VALUE_CHARS: usize = 256;

/// A checked edit of a version's description and tags. `description`: `None` leaves it,
/// `Some` replaces it (an empty string clears it). `tags` are merged into the version's:
/// `Some(value)` sets a tag, `None` removes it (removing an absent tag is no error).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionUpdate {
    description: Option<String>,
    tags: BTreeMap<String, Option<String>>,
}

impl VersionUpdate {
    /// Checks an edit, naming every bad field: `description` (length, control characters
    /// other than newlines and tabs), `tags` (too many changes, or a bad name) and
    /// `tags.<name>` (a bad value).
    pub fn parse(
        description: Option<String>,
        tags: BTreeMap<String, Option<String>>,
    ) -> Result<Self, ValidationErrors> {
        let mut errors = Vec::new();
        let mut bad = |field: String, message: String| errors.push(FieldError { field, message });
        if let Some(text) = &description {
            let chars = text.chars().count();
            if chars > MAX_DESCRIPTION_CHARS {
                bad(
                    "description".into(),
                    format!("must be at most {MAX_DESCRIPTION_CHARS} characters, got {chars}"),
                );
            } else if text
                .chars()
                .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
            {
                bad(
                    "description".into(),
                    "must not contain control characters other than newlines and tabs".into(),
                );
            }
        }
        if tags.len() > MAX_TAGS {
            bad(
                "tags".into(),
                format!(
                    "at most {MAX_TAGS} tags can be changed at once, got {}",
                    tags.len()
                ),
            );
        }
        for (name, value) in tags.iter().take(MAX_TAGS + 1) {
            let name_ok = !name.is_empty()
                && name.chars().count() <= MAX_TAG_NAME_CHARS
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/'));
            if !name_ok {
                let shown: String = name.chars().take(MAX_TAG_NAME_CHARS).collect();
                bad(
                    "tags".into(),
                    format!(
                        "tag name {shown:?} must be 1-{MAX_TAG_NAME_CHARS} characters of \
                         A-Z, a-z, 0-9, _, -, ., : and /"
                    ),
                );
                continue;
            }
            let Some(value) = value else { continue };
            let chars = value.chars().count();
            if chars > MAX_TAG_VALUE_CHARS {
                bad(
                    format!("tags.{name}"),
                    format!("must be at most {MAX_TAG_VALUE_CHARS} characters, got {chars}"),
                );
            } else if value.chars().any(char::is_control) {
                bad(
                    format!("tags.{name}"),
                    "must not contain control characters".into(),
                );
            }
        }
        if errors.is_empty() {
            Ok(Self { description, tags })
        } else {
            Err(ValidationErrors(errors))
        }
    }

    /// True when the edit changes nothing.
    pub fn is_empty(&self) -> bool {
        self.description.is_none() && self.tags.is_empty()
    }
}

/// Why an edit of a version was refused.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The edit would leave the version with more than [`MAX_TAGS`] tags.
    #[error("invalid update")]
    Invalid(ValidationErrors),
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
INSERT INTO model_versions (version, artifact, metrics, data_hash, created_at, trained_by)
VALUES ('v' || (SELECT COALESCE(MAX(id), 0) + 1 FROM model_versions), $1, $2, $3, $4, $5)
RETURNING version";
        let metrics = serde_json::to_string(&artifact.metrics).unwrap_or_default();
        let mut tx = crate::core::db::begin_write(&self.pool).await?;
        let version: String = sqlx::query_scalar(SQL)
            .bind(artifact.to_json())
            .bind(metrics)
            .bind(&artifact.training.data_hash)
            .bind(now_rfc3339())
            .bind(&artifact.training.trained_by)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(version)
    }

    /// Points `alias` at `version` and records the move (who, why, from which version) in
    /// the append-only history, in one transaction. An alias that already points at
    /// `version` is left as it is, with nothing recorded (`moved` is false), so the history
    /// holds only real moves and a rollback always goes back to another version.
    pub async fn set_alias(
        &self,
        alias: &str,
        version: &str,
        change: &AliasChange<'_>,
    ) -> Result<AliasMove, RegistryError> {
        check_alias(alias)?;
        let mut tx = crate::core::db::begin_write(&self.pool).await?;
        // Under the write lock: no other move can come between this read and the write.
        let current: Option<String> =
            sqlx::query_scalar("SELECT version FROM model_aliases WHERE alias = $1")
                .bind(alias)
                .fetch_optional(&mut *tx)
                .await?;
        if current.as_deref() == Some(version) {
            tx.commit().await?;
            return Ok(AliasMove {
                alias: alias.to_owned(),
                version: version.to_owned(),
                previous_version: current,
                moved: false,
            });
        }
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
            moved: true,
        })
    }

    /// The version a rollback of `alias` returns to: replaying the alias's history as a stack
    /// (a promotion pushes, a rollback pops), the entry below the current one. A promotion of
    /// the version already on top pushes nothing (histories written before such promotions
    /// were refused may hold them).
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
                _ if stack.last() == Some(&event.version) => {}
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
        let events = sqlx::query_as(
            "SELECT alias, version, previous_version, action, actor, reason, at
             FROM model_alias_history WHERE $1 IS NULL OR alias = $1 ORDER BY id",
        )
        .bind(alias)
        .fetch_all(&self.pool)
        .await?;
        Ok(events)
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

    /// Every version, newest first, with its metrics, description, tags and the aliases
    /// pointing at it.
    pub async fn list(&self) -> Result<Vec<VersionSummary>, RegistryError> {
        self.summaries(None).await
    }

    /// One version without its artifact.
    pub async fn summary(&self, version: &str) -> Result<VersionSummary, RegistryError> {
        self.summaries(Some(version))
            .await?
            .pop()
            .ok_or_else(|| RegistryError::UnknownVersion(version.to_owned()))
    }

    async fn summaries(&self, only: Option<&str>) -> Result<Vec<VersionSummary>, RegistryError> {
        let aliases = self.aliases().await?;
        let rows = sqlx::query(
            "SELECT version, data_hash, created_at, metrics, trained_by, description, updated_by,
                    updated_at
             FROM model_versions WHERE $1 IS NULL OR version = $1 ORDER BY id DESC",
        )
        .bind(only)
        .fetch_all(&self.pool)
        .await?;
        let mut tags: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        let tag_rows = sqlx::query(
            "SELECT version, name, value FROM model_version_tags WHERE $1 IS NULL OR version = $1",
        )
        .bind(only)
        .fetch_all(&self.pool)
        .await?;
        for row in &tag_rows {
            tags.entry(row.try_get("version")?)
                .or_default()
                .insert(row.try_get("name")?, row.try_get("value")?);
        }
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
                    tags: tags.remove(&version).unwrap_or_default(),
                    version,
                    data_hash: row.try_get("data_hash")?,
                    created_at: row.try_get("created_at")?,
                    trained_by: row.try_get("trained_by")?,
                    description: row.try_get("description")?,
                    updated_by: row.try_get("updated_by")?,
                    updated_at: row.try_get("updated_at")?,
                    metrics: serde_json::from_str(&metrics).unwrap_or(serde_json::Value::Null),
                })
            })
            .collect()
    }

    /// Edits a version's description and tags as `actor`, recording who and when, in one
    /// transaction; returns the version as it then is. An empty edit changes nothing and
    /// records nothing. Refused, changing nothing, when the version does not exist or would
    /// be left with more than [`MAX_TAGS`] tags.
    pub async fn update(
        &self,
        version: &str,
        update: &VersionUpdate,
        actor: &str,
    ) -> Result<VersionSummary, UpdateError> {
        if update.is_empty() {
            return Ok(self.summary(version).await?);
        }
        let mut tx = crate::core::db::begin_write(&self.pool)
            .await
            .map_err(RegistryError::from)?;
        let stamped = sqlx::query(
            "UPDATE model_versions SET updated_by = $2, updated_at = $3,
                    description = COALESCE($4, description)
             WHERE version = $1",
        )
        .bind(version)
        .bind(actor)
        .bind(now_rfc3339())
        .bind(update.description.as_deref())
        .execute(&mut *tx)
        .await
        .map_err(RegistryError::from)?;
        if stamped.rows_affected() == 0 {
            return Err(RegistryError::UnknownVersion(version.to_owned()).into());
        }
        for (name, value) in &update.tags {
            let query = match value {
                Some(value) => sqlx::query(
                    "INSERT INTO model_version_tags (version, name, value) VALUES ($1, $2, $3)
                     ON CONFLICT (version, name) DO UPDATE SET value = excluded.value",
                )
                .bind(version)
                .bind(name)
                .bind(value),
                None => {
                    sqlx::query("DELETE FROM model_version_tags WHERE version = $1 AND name = $2")
                        .bind(version)
                        .bind(name)
                }
            };
            query.execute(&mut *tx).await.map_err(RegistryError::from)?;
        }
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM model_version_tags WHERE version = $1")
                .bind(version)
                .fetch_one(&mut *tx)
                .await
                .map_err(RegistryError::from)?;
        if count > MAX_TAGS as i64 {
            // Dropping the transaction rolls the whole edit back.
            return Err(UpdateError::Invalid(ValidationErrors::single(
                "tags",
                format!("a version holds at most {MAX_TAGS} tags; this update would leave {count}"),
            )));
        }
        tx.commit().await.map_err(RegistryError::from)?;
        Ok(self.summary(version).await?)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::model::tests_support::artifact_for;

    async fn register(registry: &ModelRegistry, by: &str) -> String {
        let mut artifact = artifact_for("svc", 1);
        artifact.training.trained_by = by.to_owned();
        registry.register(&artifact).await.unwrap()
    }

    fn promote(actor: &str) -> AliasChange<'_> {
        AliasChange {
            action: AliasAction::Promote,
            actor,
            reason: "",
        }
    }

    fn tags(pairs: &[(&str, Option<&str>)]) -> BTreeMap<String, Option<String>> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.map(str::to_owned)))
            .collect()
    }

    crate::core::db::testing::on_both_backends! {
        async fn promoting_the_current_version_records_nothing_and_rollback_goes_back(pool) {
            let registry = ModelRegistry::new(pool.clone());
            let v1 = register(&registry, "t").await;
            let v2 = register(&registry, "t").await;
            assert!(registry.set_alias(PRODUCTION, &v1, &promote("a")).await.unwrap().moved);
            assert!(registry.set_alias(PRODUCTION, &v2, &promote("a")).await.unwrap().moved);
            let again = registry.set_alias(PRODUCTION, &v2, &promote("b")).await.unwrap();
            assert_eq!(
                (again.moved, again.previous_version.as_deref()),
                (false, Some(v2.as_str()))
            );
            assert_eq!(registry.history(Some(PRODUCTION)).await.unwrap().len(), 2);
            assert_eq!(registry.rollback_target(PRODUCTION).await.unwrap(), v1);

            // A history written before such promotions were refused may hold a duplicate:
            // the rollback still goes back to another version.
            sqlx::query(
                "INSERT INTO model_alias_history
                   (alias, version, previous_version, action, actor, reason, at)
                 VALUES ($1, $2, $2, 'promote', 'old', '', '2026-01-01T00:00:00Z')",
            )
            .bind(PRODUCTION)
            .bind(&v2)
            .execute(&pool)
            .await
            .unwrap();
            assert_eq!(registry.rollback_target(PRODUCTION).await.unwrap(), v1);
            let rollback = AliasChange {
                action: AliasAction::Rollback,
                actor: "a",
                reason: "",
            };
            registry.set_alias(PRODUCTION, &v1, &rollback).await.unwrap();
            assert!(matches!(
                registry.rollback_target(PRODUCTION).await,
                Err(RegistryError::NothingToRollBack(_))
            ));
        }

        async fn versions_record_their_trainer_and_take_a_description_and_tags(pool) {
            let registry = ModelRegistry::new(pool.clone());
            let v1 = register(&registry, "cli:ann").await;
            let fresh = registry.summary(&v1).await.unwrap();
            assert_eq!(fresh.trained_by.as_deref(), Some("cli:ann"));
            assert_eq!((fresh.description.as_str(), fresh.tags.len()), ("", 0));
            assert_eq!((fresh.updated_by, fresh.updated_at), (None, None));

            let edit = VersionUpdate::parse(
                Some("first try".into()),
                tags(&[("stage", Some("candidate")), ("owner", Some("ann"))]),
            )
            .unwrap();
            let edited = registry.update(&v1, &edit, "bob").await.unwrap();
            assert_eq!(edited.description, "first try");
            assert_eq!(
                edited.tags,
                BTreeMap::from([
                    ("owner".to_owned(), "ann".to_owned()),
                    ("stage".to_owned(), "candidate".to_owned())
                ])
            );
            assert_eq!(edited.updated_by.as_deref(), Some("bob"));
            assert!(edited.updated_at.is_some());

            // Tags merge: a value replaces, null removes; the description stays when absent.
            let merge = VersionUpdate::parse(
                None,
                tags(&[("stage", Some("approved")), ("owner", None), ("gone", None)]),
            )
            .unwrap();
            let merged = registry.update(&v1, &merge, "carol").await.unwrap();
            assert_eq!(merged.description, "first try");
            assert_eq!(
                merged.tags,
                BTreeMap::from([("stage".to_owned(), "approved".to_owned())])
            );
            assert_eq!(merged.updated_by.as_deref(), Some("carol"));
            // An empty edit records nothing.
            let nothing = VersionUpdate::parse(None, BTreeMap::new()).unwrap();
            let same = registry.update(&v1, &nothing, "dave").await.unwrap();
            assert_eq!(same, merged);
            let cleared = registry
                .update(&v1, &VersionUpdate::parse(Some(String::new()), BTreeMap::new()).unwrap(), "bob")
                .await
                .unwrap();
            assert_eq!(cleared.description, "");

            // No version: nothing is written.
            assert!(matches!(
                registry.update("v99", &edit, "bob").await,
                Err(UpdateError::Registry(RegistryError::UnknownVersion(_)))
            ));

            // At most MAX_TAGS tags: an edit that would exceed it changes nothing.
            let v2 = register(&registry, "bootstrap").await;
            let names: Vec<String> = (0..MAX_TAGS).map(|i| format!("t{i}")).collect();
            let full: BTreeMap<String, Option<String>> =
                names.iter().map(|n| (n.clone(), Some("x".to_owned()))).collect();
            registry
                .update(&v2, &VersionUpdate::parse(None, full).unwrap(), "bob")
                .await
                .unwrap();
            let one_more =
                VersionUpdate::parse(Some("never".into()), tags(&[("extra", Some("y"))])).unwrap();
            match registry.update(&v2, &one_more, "eve").await {
                Err(UpdateError::Invalid(errors)) => assert_eq!(errors.0[0].field, "tags"),
                other => panic!("{other:?}"),
            }
            let kept = registry.summary(&v2).await.unwrap();
            assert_eq!((kept.tags.len(), kept.description.as_str()), (MAX_TAGS, ""));
            assert_eq!(kept.updated_by.as_deref(), Some("bob"));

            // The list shows every version's own metadata, newest first.
            let list = registry.list().await.unwrap();
            assert_eq!(list.iter().map(|v| v.version.clone()).collect::<Vec<_>>(), [v2, v1]);
            assert_eq!(list[0].tags.len(), MAX_TAGS);
            assert_eq!(list[1].tags.len(), 1);
            assert_eq!(list[0].trained_by.as_deref(), Some("bootstrap"));
        }
    }

    #[test]
    fn updates_are_checked_field_by_field() {
        let fields = |description: Option<String>, tags: BTreeMap<String, Option<String>>| {
            VersionUpdate::parse(description, tags)
                .unwrap_err()
                .0
                .into_iter()
                .map(|e| e.field)
                .collect::<Vec<_>>()
        };
        let long = "x".repeat(MAX_DESCRIPTION_CHARS + 1);
        assert_eq!(fields(Some(long), BTreeMap::new()), ["description"]);
        assert_eq!(
            fields(Some("a\u{0}b".into()), BTreeMap::new()),
            ["description"]
        );
        assert!(VersionUpdate::parse(Some("line\nline\ttab".into()), BTreeMap::new()).is_ok());
        assert!(
            VersionUpdate::parse(Some("x".repeat(MAX_DESCRIPTION_CHARS)), BTreeMap::new()).is_ok()
        );
        assert_eq!(
            fields(None, tags(&[("bad name", Some("v")), ("", None)])),
            ["tags", "tags"]
        );
        let long_name = "n".repeat(MAX_TAG_NAME_CHARS + 1);
        assert_eq!(fields(None, tags(&[(&long_name, Some("v"))])), ["tags"]);
        let long_value = "v".repeat(MAX_TAG_VALUE_CHARS + 1);
        assert_eq!(
            fields(
                None,
                tags(&[("ok", Some(&long_value)), ("nl", Some("a\nb"))])
            ),
            ["tags.nl", "tags.ok"]
        );
        let many: BTreeMap<String, Option<String>> =
            (0..=MAX_TAGS).map(|i| (format!("t{i}"), None)).collect();
        assert_eq!(fields(None, many), ["tags"]);
        assert!(
            VersionUpdate::parse(None, tags(&[("team/ml:owner-1.x_y", Some("é ünïcode"))])).is_ok()
        );
    }
}
