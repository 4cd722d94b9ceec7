//! The offline store: every ingested passenger, in SQLite. All statements are static SQL with
//! bound parameters.

use sqlx::{Row, SqlitePool, sqlite::SqliteRow};

use super::passenger::{PassengerRecord, RawPassenger};
use crate::core::time::now_rfc3339;

#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error("offline store: {0}")]
    Db(#[from] sqlx::Error),
    #[error("offline store: stored passenger {passenger_id} is invalid: {message}")]
    Corrupt { passenger_id: i64, message: String },
}

#[derive(Debug, Clone)]
pub struct OfflineStore {
    pool: SqlitePool,
}

const UPSERT: &str = "\
INSERT INTO passengers (passenger_id, survived, pclass, name, sex, age, sibsp, parch, ticket,
                        fare, cabin, embarked, source, ingested_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
ON CONFLICT (passenger_id) DO UPDATE SET
    survived = COALESCE(excluded.survived, passengers.survived),
    pclass = excluded.pclass, name = excluded.name, sex = excluded.sex, age = excluded.age,
    sibsp = excluded.sibsp, parch = excluded.parch, ticket = excluded.ticket,
    fare = excluded.fare, cabin = excluded.cabin, embarked = excluded.embarked,
    source = excluded.source, ingested_at = excluded.ingested_at";

/// `SELECT <every passenger column> FROM passengers <rest>`, as one static string.
macro_rules! select_passengers {
    ($rest:literal) => {
        concat!(
            "SELECT passenger_id, survived, pclass, name, sex, age, sibsp, parch, ticket, fare, \
             cabin, embarked FROM passengers ",
            $rest
        )
    };
}

impl OfflineStore {
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }

    /// Inserts or updates passengers in one transaction; returns how many were written.
    /// A known label is never erased by a later unlabelled copy of the same passenger.
    pub async fn upsert(
        &self,
        records: &[PassengerRecord],
        source: &str,
    ) -> Result<u64, OfflineError> {
        let now = now_rfc3339();
        let mut tx = self.pool.begin().await?;
        for r in records {
            let p = &r.passenger;
            sqlx::query(UPSERT)
                .bind(r.passenger_id)
                .bind(r.survived.map(i64::from))
                .bind(p.pclass.number())
                .bind(p.name.as_deref())
                .bind(p.sex.as_str())
                .bind(p.age)
                .bind(i64::from(p.sibsp))
                .bind(i64::from(p.parch))
                .bind(p.ticket.as_deref())
                .bind(p.fare)
                .bind(p.cabin.as_deref())
                .bind(p.embarked.map(|e| e.as_str()))
                .bind(source)
                .bind(&now)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(records.len() as u64)
    }

    pub async fn count(&self) -> Result<i64, OfflineError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM passengers")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Every passenger with a known label, ordered by id.
    pub async fn labelled(&self) -> Result<Vec<PassengerRecord>, OfflineError> {
        const SQL: &str = select_passengers!("WHERE survived IS NOT NULL ORDER BY passenger_id");
        let rows = sqlx::query(SQL).fetch_all(&self.pool).await?;
        rows.iter().map(record).collect()
    }

    /// Every passenger, ordered by id.
    pub async fn all(&self) -> Result<Vec<PassengerRecord>, OfflineError> {
        const SQL: &str = select_passengers!("ORDER BY passenger_id");
        let rows = sqlx::query(SQL).fetch_all(&self.pool).await?;
        rows.iter().map(record).collect()
    }
}

fn record(row: &SqliteRow) -> Result<PassengerRecord, OfflineError> {
    let passenger_id: i64 = row.try_get("passenger_id")?;
    let survived: Option<i64> = row.try_get("survived")?;
    let raw = RawPassenger {
        passenger_id: Some(passenger_id),
        pclass: row.try_get("pclass")?,
        sex: row.try_get("sex")?,
        age: row.try_get("age")?,
        sibsp: row.try_get("sibsp")?,
        parch: row.try_get("parch")?,
        fare: row.try_get("fare")?,
        embarked: row.try_get("embarked")?,
        name: row.try_get("name")?,
        ticket: row.try_get("ticket")?,
        cabin: row.try_get("cabin")?,
    };
    let passenger = raw.validate().map_err(|e| OfflineError::Corrupt {
        passenger_id,
        message: e.to_string(),
    })?;
    Ok(PassengerRecord {
        passenger_id,
        survived: survived.map(|s| s != 0),
        passenger,
    })
}
