//! The stored side of live performance: labels (`feedback`) and the request log's rows a
//! label is matched against. [`super::performance::PerformanceMonitor`] keeps the windows
//! and gauges; this keeps the SQL.

use std::sync::Arc;

use sqlx::Row;

use super::performance::Scored;
use crate::core::db::{Backend, Pool};
use crate::core::dependency::DependencyMetrics;
use crate::core::time::Micros;

/// A stored label, as the performance windows take it back after a restart.
pub struct StoredLabel {
    pub model_version: Arc<str>,
    pub received_at: Micros,
    pub probability: f64,
    pub survived: bool,
}

/// Labels and logged predictions in the offline database; each query is timed as a
/// dependency call.
#[derive(Debug)]
pub struct FeedbackStore {
    pool: Pool,
    dependencies: DependencyMetrics,
}

impl FeedbackStore {
    pub fn new(pool: Pool, dependencies: DependencyMetrics) -> Self {
        Self { pool, dependencies }
    }

    fn backend(&self) -> &'static str {
        Backend::of(&self.pool).as_str()
    }

    /// The newest `limit` labels received at or after `since`, oldest first.
    pub async fn recent_labels(
        &self,
        since: Micros,
        limit: usize,
    ) -> Result<Vec<StoredLabel>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT model_version, received_at, probability, survived FROM feedback \
             WHERE received_at >= $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(since)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .rev()
            .map(|row| StoredLabel {
                model_version: Arc::from(row.get::<String, _>(0)),
                received_at: row.get(1),
                probability: row.get(2),
                survived: row.get::<i64, _>(3) != 0,
            })
            .collect())
    }

    /// Stores the label for `scored` under `key` (its request id and position); false when
    /// that prediction already has one.
    pub async fn insert(
        &self,
        key: &str,
        scored: &Scored,
        received_at: Micros,
        survived: bool,
        subject: Option<&str>,
    ) -> Result<bool, sqlx::Error> {
        let inserted = sqlx::query(
            "INSERT INTO feedback (prediction, request_id, passenger_id, received_at, \
             predicted_at, survived, probability, model_version, subject) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (prediction) DO NOTHING",
        )
        .bind(key)
        .bind(&*scored.request_id)
        .bind(scored.passenger_id)
        .bind(received_at)
        .bind(scored.at)
        .bind(i64::from(survived))
        .bind(scored.probability)
        .bind(&*scored.model_version)
        .bind(subject)
        .execute(&self.pool);
        let inserted = self
            .dependencies
            .time(self.backend(), "feedback_write", inserted)
            .await?;
        Ok(inserted.rows_affected() > 0)
    }

    /// The logged predictions of a request that could be the one a label is for: the one at
    /// `position`, the first of `passenger_id`, or else two at most (enough to tell one from
    /// several), so a request that scored a streamed file of millions of rows is never read
    /// whole.
    pub async fn logged_request(
        &self,
        request_id: &str,
        position: Option<u32>,
        passenger_id: Option<i64>,
    ) -> Result<Vec<Scored>, sqlx::Error> {
        let query = match (position, passenger_id) {
            (Some(position), _) => sqlx::query(
                "SELECT request_id, position, passenger_id, probability, model_version, \
                 logged_at FROM prediction_log WHERE request_id = $1 AND position = $2 LIMIT 1",
            )
            .bind(request_id)
            .bind(i64::from(position)),
            (None, Some(id)) => sqlx::query(
                "SELECT request_id, position, passenger_id, probability, model_version, \
                 logged_at FROM prediction_log WHERE request_id = $1 AND passenger_id = $2 \
                 ORDER BY position LIMIT 1",
            )
            .bind(request_id)
            .bind(id),
            (None, None) => sqlx::query(
                "SELECT request_id, position, passenger_id, probability, model_version, \
                 logged_at FROM prediction_log WHERE request_id = $1 LIMIT 2",
            )
            .bind(request_id),
        };
        let rows = query.fetch_all(&self.pool);
        let rows = self
            .dependencies
            .time(self.backend(), "prediction_log_read", rows)
            .await?;
        Ok(rows.iter().map(scored_row).collect())
    }

    /// The newest logged prediction of a passenger id.
    pub async fn logged_passenger(&self, id: i64) -> Result<Option<Scored>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT request_id, position, passenger_id, probability, model_version, logged_at \
             FROM prediction_log WHERE passenger_id = $1 ORDER BY logged_at DESC LIMIT 1",
        )
        .bind(id)
        .fetch_optional(&self.pool);
        let row = self
            .dependencies
            .time(self.backend(), "prediction_log_read", row)
            .await?;
        Ok(row.as_ref().map(scored_row))
    }
}

fn scored_row(row: &crate::core::db::DbRow) -> Scored {
    let request_id: String = row.get(0);
    let position: i64 = row.get(1);
    let version: String = row.get(4);
    Scored {
        request_id: Arc::from(request_id),
        position: u32::try_from(position).unwrap_or(u32::MAX),
        passenger_id: row.get(2),
        probability: row.get(3),
        model_version: Arc::from(version),
        at: row.get(5),
    }
}
