//! Training jobs requested over HTTP: recorded in the database (so their outcome survives a
//! restart and every replica sees them), run in the background one at a time by the process
//! that took the request. That process refreshes the job's heartbeat every couple of seconds
//! ([`TrainingJobs::heartbeat`]); a job whose heartbeat is older than [`ABANDONED_AFTER`]
//! belonged to a process that stopped, and any replica marks it failed
//! ([`TrainingJobs::fail_abandoned`]), without touching the jobs other live replicas run.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::core::db::Pool;
use crate::core::time::{Micros, now_micros, now_rfc3339};

/// How long a queued or running job's heartbeat may be silent before the job counts as
/// abandoned by a process that stopped (heartbeats come every 2 s).
pub const ABANDONED_AFTER: Micros = 15_000_000;

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
    /// The jobs this process has queued or is running, whose heartbeat it keeps.
    mine: Arc<Mutex<BTreeSet<String>>>,
}

impl TrainingJobs {
    pub fn new(pool: Pool) -> Self {
        Self {
            pool,
            mine: Arc::default(),
        }
    }

    fn mine(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.mine
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a queued job that this process will run.
    pub async fn create(&self, request: &TrainRequest, by: &str) -> Result<Job, sqlx::Error> {
        let id = uuid::Uuid::new_v4().to_string();
        sqlx::query(
            "INSERT INTO training_jobs (id, status, requested_by, request, created_at, heartbeat_at)
             VALUES ($1, 'queued', $2, $3, $4, $5)",
        )
        .bind(&id)
        .bind(by)
        .bind(serde_json::to_string(request).unwrap_or_default())
        .bind(now_rfc3339())
        .bind(now_micros())
        .execute(&self.pool)
        .await?;
        self.mine().insert(id.clone());
        self.get(&id).await?.ok_or(sqlx::Error::RowNotFound)
    }

    /// Refreshes the heartbeat of this process's unfinished jobs; returns how many.
    pub async fn heartbeat(&self) -> Result<usize, sqlx::Error> {
        let ids: Vec<String> = self.mine().iter().cloned().collect();
        let now = now_micros();
        for id in &ids {
            sqlx::query("UPDATE training_jobs SET heartbeat_at = $2 WHERE id = $1")
                .bind(id)
                .bind(now)
                .execute(&self.pool)
                .await?;
        }
        Ok(ids.len())
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
        let done = sqlx::query(
            "UPDATE training_jobs SET status = $2, version = $3, error = $4, finished_at = $5
             WHERE id = $1",
        )
        .bind(id)
        .bind(status.as_str())
        .bind(version)
        .bind(error)
        .bind(now_rfc3339())
        .execute(&self.pool)
        .await;
        // No heartbeat once finished, even when the outcome could not be recorded: the job
        // is then failed as abandoned rather than left running for good.
        self.mine().remove(id);
        done.map(|_| ())
    }

    /// Jobs left queued or running by a process that stopped (their heartbeat older than
    /// [`ABANDONED_AFTER`] at `now`, or none at all) are failed, not left hanging; the jobs of
    /// live processes, this one's included, are left alone.
    pub async fn fail_abandoned(&self, now: Micros) -> Result<u64, sqlx::Error> {
        sqlx::query(
            "UPDATE training_jobs SET status = 'failed', error = 'interrupted: the service stopped',
               finished_at = $1
             WHERE status IN ('queued', 'running')
               AND (heartbeat_at IS NULL OR heartbeat_at < $2)",
        )
        .bind(now_rfc3339())
        .bind(now - ABANDONED_AFTER)
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

#[cfg(test)]
mod tests {
    use super::*;

    crate::core::db::testing::on_both_backends! {
        async fn only_jobs_whose_heartbeat_stopped_are_failed(pool) {
            let here = TrainingJobs::new(pool.clone());
            let running = here.create(&TrainRequest::default(), "t").await.unwrap();
            here.start(&running.id).await.unwrap();
            // Another process's job, whose process stopped 20 s ago.
            let gone = TrainingJobs::new(pool.clone());
            let abandoned = gone.create(&TrainRequest::default(), "t").await.unwrap();
            sqlx::query("UPDATE training_jobs SET heartbeat_at = $2 WHERE id = $1")
                .bind(&abandoned.id)
                .bind(now_micros() - 20_000_000)
                .execute(&pool)
                .await
                .unwrap();
            assert_eq!(here.fail_abandoned(now_micros()).await.unwrap(), 1);
            let status = |id: String| {
                let here = here.clone();
                async move { here.get(&id).await.unwrap().unwrap() }
            };
            let failed = status(abandoned.id.clone()).await;
            assert_eq!(failed.status, JobStatus::Failed);
            assert!(failed.error.unwrap().contains("interrupted"));
            assert_eq!(status(running.id.clone()).await.status, JobStatus::Running);

            // Twenty seconds on, the live job's heartbeat keeps it running...
            assert_eq!(here.heartbeat().await.unwrap(), 1);
            assert_eq!(here.fail_abandoned(now_micros() + 10_000_000).await.unwrap(), 0);
            // ...until its process stops beating; a finished job beats no more.
            assert_eq!(here.fail_abandoned(now_micros() + 20_000_000).await.unwrap(), 1);
            here.finish(&running.id, Ok("v2")).await.unwrap();
            assert_eq!(here.heartbeat().await.unwrap(), 0);
            assert_eq!(status(running.id).await.status, JobStatus::Succeeded);
        }
    }
}
