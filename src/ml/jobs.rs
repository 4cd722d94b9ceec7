//! Training jobs requested over HTTP: recorded in SQLite (so their outcome survives a
//! restart), run in the background one at a time.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use crate::core::db::Pool;

use crate::core::time::now_rfc3339;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
}

impl JobStatus {
    fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "queued" => JobStatus::Queued,
            "running" => JobStatus::Running,
            "succeeded" => JobStatus::Succeeded,
            _ => JobStatus::Failed,
        }
    }
}

/// What a job was asked to do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainRequest {
    /// Promote the new version to `production` when training succeeds.
    #[serde(default)]
    pub promote: bool,
    /// Read the training set as of this time (RFC 3339); default: now.
    #[serde(default)]
    #[schema(format = DateTime)]
    pub as_of: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Job {
    pub id: String,
    pub status: JobStatus,
    pub requested_by: String,
    pub request: TrainRequest,
    /// The registered version, once succeeded.
    pub version: Option<String>,
    pub error: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

#[derive(Debug, Clone)]
pub struct TrainingJobs {
    pool: Pool,
}

impl TrainingJobs {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }

    pub async fn create(&self, request: &TrainRequest, by: &str) -> Result<Job, sqlx::Error> {
        let id = uuid::Uuid::new_v4().to_string();
        sqlx::query(
            "INSERT INTO training_jobs (id, status, requested_by, request, created_at)
             VALUES ($1, 'queued', $2, $3, $4)",
        )
        .bind(&id)
        .bind(by)
        .bind(serde_json::to_string(request).unwrap_or_default())
        .bind(now_rfc3339())
        .execute(&self.pool)
        .await?;
        self.get(&id).await?.ok_or(sqlx::Error::RowNotFound)
    }

    pub async fn start(&self, id: &str) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE training_jobs SET status = 'running', started_at = $2 WHERE id = $1")
            .bind(id)
            .bind(now_rfc3339())
            .execute(&self.pool)
            .await
            .map(|_| ())
    }

    pub async fn finish(&self, id: &str, outcome: Result<&str, &str>) -> Result<(), sqlx::Error> {
        let (status, version, error) = match outcome {
            Ok(v) => (JobStatus::Succeeded, Some(v), None),
            Err(e) => (JobStatus::Failed, None, Some(e)),
        };
        sqlx::query(
            "UPDATE training_jobs SET status = $2, version = $3, error = $4, finished_at = $5
             WHERE id = $1",
        )
        .bind(id)
        .bind(status.as_str())
        .bind(version)
        .bind(error)
        .bind(now_rfc3339())
        .execute(&self.pool)
        .await
        .map(|_| ())
    }

    /// Jobs left queued or running by a process that stopped are failed, not left hanging.
    pub async fn fail_interrupted(&self) -> Result<u64, sqlx::Error> {
        sqlx::query(
            "UPDATE training_jobs SET status = 'failed', error = 'interrupted: the service stopped',
               finished_at = $1
             WHERE status IN ('queued', 'running')",
        )
        .bind(now_rfc3339())
        .execute(&self.pool)
        .await
        .map(|r| r.rows_affected())
    }

    pub async fn get(&self, id: &str) -> Result<Option<Job>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT id, status, requested_by, request, version, error, created_at, started_at,
                    finished_at
             FROM training_jobs WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            let status: String = r.try_get("status")?;
            let request: String = r.try_get("request")?;
            Ok(Job {
                id: r.try_get("id")?,
                status: JobStatus::parse(&status),
                requested_by: r.try_get("requested_by")?,
                request: serde_json::from_str(&request).unwrap_or_default(),
                version: r.try_get("version")?,
                error: r.try_get("error")?,
                created_at: r.try_get("created_at")?,
                started_at: r.try_get("started_at")?,
                finished_at: r.try_get("finished_at")?,
            })
        })
        .transpose()
    }
}
