//! The offline store: an append-only history of feature values per view and entity, each
//! with its event time (when it was true) and write time (when it was stored). Reads are
//! point-in-time: the latest value at or before a given time. All statements are static SQL
//! with bound parameters; lists of keys are bound as one JSON array.

use std::collections::HashMap;

use crate::core::db::{Backend, Pool};
use futures_util::TryStreamExt;
use serde_json::{Map, Value};
use sqlx::Row;

use super::registry::{FeatureViewSpec, Versioned};
use crate::core::time::{Micros, now_micros};

#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error("offline store: {0}")]
    Db(#[from] sqlx::Error),
    #[error("offline store: row of {view} for {entity_key} is unreadable: {message}")]
    Corrupt {
        view: String,
        entity_key: String,
        message: String,
    },
}

/// Feature values by feature name.
pub type Values = Map<String, Value>;

/// A row to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRow {
    pub entity_key: String,
    pub event_time: Micros,
    pub values: Values,
}

/// A stored row.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureRow {
    pub entity_key: String,
    /// The version of the view the row was written under.
    pub view_version: i64,
    pub event_time: Micros,
    pub write_time: Micros,
    pub values: Values,
}

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Appended {
    /// Rows stored.
    pub written: u64,
    /// Rows equal (values and event time) to the entity's latest row, skipped.
    pub unchanged: u64,
}

/// Which rows an append skips as changing nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unchanged {
    /// A row equal (values) to the entity's row in effect at exactly its event time (the
    /// latest written at that time), stored or earlier in the batch: pushing the same rows
    /// twice stores nothing the second time, in any order, while the same values at a new
    /// event time are stored (they say the values were still true then).
    AtItsTime,
    /// A row equal to the entity's latest values, whatever its event time: ingesting the same
    /// file again appends nothing.
    Latest,
}

#[derive(Debug, Clone)]
pub struct OfflineStore {
    pool: Pool,
}

/// `SELECT` of the latest row per entity at or before `$2` for view `$1`, with an extra
/// condition spliced in at compile time (static SQL only).
macro_rules! latest_rows {
    ($filter:literal) => {
        concat!(
            "SELECT entity_key, view_version, event_time, write_time, feature_values FROM (\
               SELECT entity_key, view_version, event_time, write_time, feature_values, \
                 ROW_NUMBER() OVER (PARTITION BY entity_key \
                   ORDER BY event_time DESC, write_time DESC, id DESC) AS rn \
               FROM feature_rows WHERE view = $1 AND event_time <= $2 AND write_time <= $3 ",
            $filter,
            ") AS latest WHERE rn = 1 ORDER BY entity_key"
        )
    };
}

impl OfflineStore {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }

    /// Appends rows for one view version in one transaction (durable when this returns),
    /// skipping each row that changes nothing: see [`Unchanged`].
    pub async fn append(
        &self,
        view: &str,
        view_version: i64,
        rows: &[NewRow],
        source: &str,
    ) -> Result<Appended, OfflineError> {
        self.append_unless(Unchanged::AtItsTime, view, view_version, rows, source)
            .await
    }

    /// [`OfflineStore::append`], with the rule that says which rows change nothing.
    pub async fn append_unless(
        &self,
        unchanged: Unchanged,
        view: &str,
        view_version: i64,
        rows: &[NewRow],
        source: &str,
    ) -> Result<Appended, OfflineError> {
        const INSERT: &str = "\
INSERT INTO feature_rows (view, view_version, entity_key, event_time, write_time, feature_values, source)
VALUES ($1, $2, $3, $4, $5, $6, $7)";
        let keys: Vec<&str> = rows.iter().map(|r| r.entity_key.as_str()).collect();
        let backend = Backend::of(&self.pool);
        let mut tx = crate::core::db::begin_write(&self.pool).await?;
        // What each row is compared with, by entity (`Latest`: the latest row) or by
        // entity and event time (the row in effect at exactly that time); updated as the
        // batch is written, so duplicates inside it are caught too.
        let ignore_time = matches!(unchanged, Unchanged::Latest);
        let mut current: HashMap<(String, Micros), Values> = if ignore_time {
            fetch_latest(&mut *tx, backend, view, Micros::MAX, None, Some(&keys))
                .await?
                .into_iter()
                .map(|r| ((r.entity_key, 0), r.values))
                .collect()
        } else {
            let times: Vec<Micros> = rows.iter().map(|r| r.event_time).collect();
            fetch_at_times(&mut *tx, backend, view, &keys, &times).await?
        };
        let write_time = now_micros();
        let mut done = Appended::default();
        for row in rows {
            let at = if ignore_time { 0 } else { row.event_time };
            let slot = (row.entity_key.clone(), at);
            if current.get(&slot) == Some(&row.values) {
                done.unchanged += 1;
                continue;
            }
            sqlx::query(INSERT)
                .bind(view)
                .bind(view_version)
                .bind(&row.entity_key)
                .bind(row.event_time)
                .bind(write_time)
                .bind(Value::Object(row.values.clone()).to_string())
                .bind(source)
                .execute(&mut *tx)
                .await?;
            current.insert(slot, row.values.clone());
            done.written += 1;
        }
        tx.commit().await?;
        Ok(done)
    }

    /// The database the history is kept in.
    pub fn backend(&self) -> Backend {
        Backend::of(&self.pool)
    }

    /// Number of stored rows of a view.
    pub async fn count(&self, view: &str) -> Result<i64, OfflineError> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM feature_rows WHERE view = $1")
                .bind(view)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// The latest row per entity with event time at or before `as_of`, among the rows written
    /// at or before `created_as_of` (all when `None`): every entity, or only `keys`. Ties on
    /// event time go to the later write.
    pub async fn latest_as_of(
        &self,
        view: &str,
        as_of: Micros,
        created_as_of: Option<Micros>,
        keys: Option<&[&str]>,
    ) -> Result<Vec<FeatureRow>, OfflineError> {
        let mut conn = self.pool.acquire().await?;
        let backend = Backend::of(&self.pool);
        fetch_latest(&mut *conn, backend, view, as_of, created_as_of, keys).await
    }

    /// [`OfflineStore::latest_as_of`] for one view version. The history is the view's, whatever
    /// version wrote each row; a row written under another version is revalidated against this
    /// one ([`FeatureViewSpec::conform`]): features it does not define are left out and a value
    /// its rules refuse reads as missing.
    pub async fn latest_of(
        &self,
        view: &Versioned<FeatureViewSpec>,
        as_of: Micros,
        created_as_of: Option<Micros>,
        keys: Option<&[&str]>,
    ) -> Result<Vec<FeatureRow>, OfflineError> {
        let mut rows = self
            .latest_as_of(&view.name, as_of, created_as_of, keys)
            .await?;
        for row in rows.iter_mut().filter(|r| r.view_version != view.version) {
            view.spec.conform(&mut row.values);
        }
        Ok(rows)
    }

    /// Historical retrieval for one view version: for each entity row (an entity and a time),
    /// the row in effect at that time as it was known at `created_as_of` (written at or
    /// before it; every row when `None`), no older than the view's TTL (a TTL of 0: any
    /// age), revalidated like [`OfflineStore::latest_of`]. The same call answers the same
    /// rows for as long as nothing is written with a write time at or before `created_as_of`
    /// (write times are the store's clock, so nothing is once that time has passed). The
    /// caller bounds `entities`; memory holds one row per entity row and key, however long
    /// the keys' histories.
    pub async fn rows_at(
        &self,
        view: &Versioned<FeatureViewSpec>,
        entities: &[(&str, Micros)],
        created_as_of: Option<Micros>,
    ) -> Result<Vec<Option<FeatureRow>>, OfflineError> {
        const SQLITE: &str = "SELECT entity_key, view_version, event_time, write_time, \
            feature_values FROM feature_rows WHERE view = $1 \
            AND entity_key IN (SELECT value FROM json_each($2)) \
            AND event_time <= $3 AND write_time <= $4 \
            ORDER BY entity_key, event_time, write_time, id";
        const POSTGRES: &str = "SELECT entity_key, view_version, event_time, write_time, \
            feature_values FROM feature_rows WHERE view = $1 \
            AND entity_key IN (SELECT json_array_elements_text(CAST($2 AS json))) \
            AND event_time <= $3 AND write_time <= $4 \
            ORDER BY entity_key, event_time, write_time, id";
        let Some(latest) = entities.iter().map(|&(_, t)| t).max() else {
            return Ok(Vec::new());
        };
        let mut keys: Vec<&str> = entities.iter().map(|&(k, _)| k).collect();
        keys.sort_unstable();
        keys.dedup();
        let sql = match self.backend() {
            Backend::Sqlite => SQLITE,
            Backend::Postgres => POSTGRES,
        };
        // The times wanted of each key, ascending, with their places in `entities`.
        let mut wanted: HashMap<&str, Vec<(Micros, usize)>> = HashMap::new();
        for (i, &(key, at)) in entities.iter().enumerate() {
            wanted.entry(key).or_default().push((at, i));
        }
        for times in wanted.values_mut() {
            times.sort_unstable();
        }
        let ttl =
            Micros::try_from(view.spec.ttl_secs.saturating_mul(1_000_000)).unwrap_or(Micros::MAX);
        let mut found: Vec<Option<FeatureRow>> = vec![None; entities.len()];
        // Each wanted time takes the last row of its key at or before it: a key's rows arrive
        // in point-in-time order, so only the latest row so far is held, whatever the
        // history's length.
        let mut settle = |times: &[(Micros, usize)], row: &FeatureRow| {
            for &(at, i) in times {
                if ttl > 0 && row.event_time < at.saturating_sub(ttl) {
                    continue;
                }
                let mut row = row.clone();
                if row.view_version != view.version {
                    view.spec.conform(&mut row.values);
                }
                found[i] = Some(row);
            }
        };
        let mut rows = sqlx::query(sql)
            .bind(&view.name)
            .bind(serde_json::to_string(&keys).unwrap_or_else(|_| "[]".to_owned()))
            .bind(latest)
            .bind(created_as_of.unwrap_or(Micros::MAX))
            .fetch(&self.pool);
        // The key being read, its wanted times not yet settled, and its latest row so far.
        let mut current: Option<(&[(Micros, usize)], FeatureRow)> = None;
        while let Some(row) = rows.try_next().await? {
            let row = feature_row(&view.name, &row)?;
            if let Some((times, previous)) = current.take() {
                if previous.entity_key == row.entity_key {
                    let before = times.partition_point(|&(at, _)| at < row.event_time);
                    settle(&times[..before], &previous);
                    current = Some((&times[before..], row));
                    continue;
                }
                settle(times, &previous);
            }
            if let Some(times) = wanted.get(row.entity_key.as_str()) {
                let before = times.partition_point(|&(at, _)| at < row.event_time);
                current = Some((&times[before..], row));
            }
        }
        if let Some((times, previous)) = current {
            settle(times, &previous);
        }
        Ok(found)
    }

    /// Entities of `view` with rows whose id is in `(after_id, upto_id]`, at most `limit` of
    /// them, in key order after `after_key` (keyset pagination for bounded chunks). Row ids
    /// grow in commit order (one writer at a time: `db::begin_write`), so an id watermark misses nothing.
    pub async fn keys_written_between(
        &self,
        view: &str,
        after_id: i64,
        upto_id: i64,
        after_key: &str,
        limit: i64,
    ) -> Result<Vec<String>, OfflineError> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT entity_key FROM feature_rows \
             WHERE view = $1 AND id > $2 AND id <= $3 AND entity_key > $4 \
             ORDER BY entity_key LIMIT $5",
        )
        .bind(view)
        .bind(after_id)
        .bind(upto_id)
        .bind(after_key)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The id of the first row of a view after `after_id` whose event time is after `now`
    /// (a future-dated push), if any.
    pub async fn first_row_after(
        &self,
        view: &str,
        after_id: i64,
        now: Micros,
    ) -> Result<Option<i64>, OfflineError> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(id) FROM feature_rows WHERE view = $1 AND id > $2 AND event_time > $3",
        )
        .bind(view)
        .bind(after_id)
        .bind(now)
        .fetch_one(&self.pool)
        .await?)
    }

    /// The id of the newest row of a view (0 when empty).
    pub async fn last_row_id(&self, view: &str) -> Result<i64, OfflineError> {
        Ok(
            sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM feature_rows WHERE view = $1")
                .bind(view)
                .fetch_one(&self.pool)
                .await?,
        )
    }
}

async fn fetch_latest<'c, E>(
    executor: E,
    backend: Backend,
    view: &str,
    as_of: Micros,
    created_as_of: Option<Micros>,
    keys: Option<&[&str]>,
) -> Result<Vec<FeatureRow>, OfflineError>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let known_at = created_as_of.unwrap_or(Micros::MAX);
    const ALL: &str = latest_rows!("");
    // The keys travel as one JSON array, expanded by each backend's own JSON function.
    const SOME_SQLITE: &str = latest_rows!("AND entity_key IN (SELECT value FROM json_each($4))");
    const SOME_POSTGRES: &str =
        latest_rows!("AND entity_key IN (SELECT json_array_elements_text(CAST($4 AS json)))");
    let rows = match keys {
        None => {
            sqlx::query(ALL)
                .bind(view)
                .bind(as_of)
                .bind(known_at)
                .fetch_all(executor)
                .await?
        }
        Some(keys) => {
            let list = serde_json::to_string(keys).unwrap_or_else(|_| "[]".to_owned());
            let some = match backend {
                Backend::Sqlite => SOME_SQLITE,
                Backend::Postgres => SOME_POSTGRES,
            };
            sqlx::query(some)
                .bind(view)
                .bind(as_of)
                .bind(known_at)
                .bind(list)
                .fetch_all(executor)
                .await?
        }
    };
    rows.iter().map(|row| feature_row(view, row)).collect()
}

/// A `feature_rows` row as selected by the reads (`entity_key`, `view_version`, `event_time`,
/// `write_time`, `feature_values`).
fn feature_row(view: &str, row: &sqlx::any::AnyRow) -> Result<FeatureRow, OfflineError> {
    let entity_key: String = row.try_get("entity_key")?;
    let text: String = row.try_get("feature_values")?;
    let values = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(map)) => map,
        Ok(_) | Err(_) => {
            return Err(OfflineError::Corrupt {
                view: view.to_owned(),
                entity_key,
                message: "feature values are not a JSON object".to_owned(),
            });
        }
    };
    Ok(FeatureRow {
        entity_key,
        view_version: row.try_get("view_version")?,
        event_time: row.try_get("event_time")?,
        write_time: row.try_get("write_time")?,
        values,
    })
}

/// The values in effect at exactly each of `times` for each of `keys` (the row written last
/// at that event time), by entity and event time; pairs without a row are absent. Keys and
/// times travel as JSON arrays; every stored row of these keys at these times is read (the
/// cross product is a superset of the pairs asked for, and bounded by the batch).
async fn fetch_at_times<'c, E>(
    executor: E,
    backend: Backend,
    view: &str,
    keys: &[&str],
    times: &[Micros],
) -> Result<HashMap<(String, Micros), Values>, OfflineError>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    const SQLITE: &str = "SELECT entity_key, event_time, feature_values FROM feature_rows \
        WHERE view = $1 AND entity_key IN (SELECT value FROM json_each($2)) \
        AND event_time IN (SELECT value FROM json_each($3)) \
        ORDER BY write_time, id";
    const POSTGRES: &str = "SELECT entity_key, event_time, feature_values FROM feature_rows \
        WHERE view = $1 AND entity_key IN (SELECT json_array_elements_text(CAST($2 AS json))) \
        AND event_time IN (SELECT CAST(json_array_elements_text(CAST($3 AS json)) AS BIGINT)) \
        ORDER BY write_time, id";
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let sql = match backend {
        Backend::Sqlite => SQLITE,
        Backend::Postgres => POSTGRES,
    };
    let rows = sqlx::query(sql)
        .bind(view)
        .bind(serde_json::to_string(keys).unwrap_or_else(|_| "[]".to_owned()))
        .bind(serde_json::to_string(times).unwrap_or_else(|_| "[]".to_owned()))
        .fetch_all(executor)
        .await?;
    let mut at = HashMap::with_capacity(rows.len());
    // In write order: the last one written at a time is the one kept.
    for row in &rows {
        let entity_key: String = row.try_get("entity_key")?;
        let event_time: Micros = row.try_get("event_time")?;
        let text: String = row.try_get("feature_values")?;
        let Ok(Value::Object(values)) = serde_json::from_str::<Value>(&text) else {
            return Err(OfflineError::Corrupt {
                view: view.to_owned(),
                entity_key,
                message: "feature values are not a JSON object".to_owned(),
            });
        };
        at.insert((entity_key, event_time), values);
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(key: &str, t: Micros, age: f64) -> NewRow {
        NewRow {
            entity_key: key.to_owned(),
            event_time: t,
            values: json!({ "age": age }).as_object().unwrap().clone(),
        }
    }

    crate::core::db::testing::on_both_backends! {
        async fn point_in_time_reads_never_see_later_values(pool) {
            let s = OfflineStore::new(pool);
            s.append("v", 1, &[row("1", 100, 22.0), row("2", 100, 30.0)], "t")
                .await
                .unwrap();
            s.append("v", 1, &[row("1", 300, 80.0)], "t").await.unwrap();
            // A late-arriving correction for time 150, written after the value for 300.
            s.append("v", 1, &[row("1", 150, 23.0)], "t").await.unwrap();

            let at = |t| {
                let s = s.clone();
                async move { s.latest_as_of("v", t, None, None).await.unwrap() }
            };
            assert!(at(99).await.is_empty(), "nothing existed yet");
            let at_200 = at(200).await;
            assert_eq!(at_200.len(), 2);
            assert_eq!(
                at_200[0].values["age"], 23.0,
                "the value true at 200, not the later 80"
            );
            assert_eq!(at(120).await[0].values["age"], 22.0);
            assert_eq!(at(300).await[0].values["age"], 80.0);
            let only_2 = s.latest_as_of("v", 1000, None, Some(&["2"])).await.unwrap();
            assert_eq!(only_2.len(), 1);
            assert_eq!(only_2[0].entity_key, "2");
        }
    }

    crate::core::db::testing::on_both_backends! {
        async fn a_view_version_reads_other_versions_rows_revalidated(pool) {
            use crate::feature_store::registry::test_view;
            let s = OfflineStore::new(pool);
            let values = |v: Value| v.as_object().unwrap().clone();
            let v1_rows = [
                NewRow { entity_key: "1".into(), event_time: 10, values: values(json!({"age": 30, "fare": 7.25, "old": 1})) },
                NewRow { entity_key: "2".into(), event_time: 10, values: values(json!({"age": 200, "fare": 8.0})) },
            ];
            s.append("v", 1, &v1_rows, "t").await.unwrap();
            s.append("v", 2, &[row("3", 10, 150.0)], "t").await.unwrap();
            // Version 2 drops `old` and bounds ages to [0, 120].
            let v2 = test_view(
                "v",
                2,
                json!([
                    {"name": "age", "value_type": "float64", "validation": {"range": {"min": 0, "max": 120}}},
                    {"name": "fare", "value_type": "float64"},
                ]),
            );
            let rows = s.latest_of(&v2, 100, None, None).await.unwrap();
            let by_key: HashMap<&str, &FeatureRow> = rows.iter().map(|r| (r.entity_key.as_str(), r)).collect();
            assert_eq!(Value::Object(by_key["1"].values.clone()), json!({"age": 30, "fare": 7.25}), "undefined features left out");
            assert_eq!(Value::Object(by_key["2"].values.clone()), json!({"fare": 8.0}), "a refused value reads as missing");
            // A row written under version 2 is read as written (its push was validated).
            assert_eq!(by_key["3"].view_version, 2);
            assert_eq!(by_key["3"].values["age"], 150.0);
            // Version 1 reads its own rows unchanged.
            let v1 = test_view("v", 1, json!([{"name": "age", "value_type": "float64"}]));
            let rows = s.latest_of(&v1, 100, None, Some(&["1"])).await.unwrap();
            assert_eq!(rows[0].values["old"], 1);
        }
    }

    crate::core::db::testing::on_both_backends! {
        async fn historical_rows_are_as_of_each_row_and_as_known_then(pool) {
            use crate::feature_store::registry::test_view;
            let s = OfflineStore::new(pool);
            s.append("v", 1, &[row("1", 100, 20.0), row("1", 300, 30.0)], "t").await.unwrap();
            let known = now_micros();
            std::thread::sleep(std::time::Duration::from_millis(2));
            // A late correction for time 150, written after `known`.
            s.append("v", 1, &[row("1", 150, 21.0)], "t").await.unwrap();
            let mut view = test_view("v", 1, json!([{"name": "age", "value_type": "float64"}]));
            let entities = [("1", 99), ("1", 200), ("1", 400), ("2", 400)];
            let ages = |rows: Vec<Option<FeatureRow>>| -> Vec<Option<f64>> {
                rows.iter().map(|r| r.as_ref().map(|r| r.values["age"].as_f64().unwrap())).collect()
            };
            let now = ages(s.rows_at(&view, &entities, None).await.unwrap());
            assert_eq!(now, [None, Some(21.0), Some(30.0), None]);
            let then = ages(s.rows_at(&view, &entities, Some(known)).await.unwrap());
            assert_eq!(then, [None, Some(20.0), Some(30.0), None], "the correction was not known yet");
            assert_eq!(ages(s.rows_at(&view, &entities, Some(known)).await.unwrap()), then, "repeatable");
            // With a TTL of one second, a value older than that at the row's time is not used.
            view.spec.ttl_secs = 1;
            let late = ages(s.rows_at(&view, &[("1", 300 + 999_999), ("1", 300 + 1_000_001)], None).await.unwrap());
            assert_eq!(late, [Some(30.0), None]);
            assert!(s.rows_at(&view, &[], None).await.unwrap().is_empty());
            // Any order, a repeated row, times equal to and between event times, a key without rows.
            view.spec.ttl_secs = 0;
            let mixed = [("1", 300), ("2", 400), ("1", 100), ("1", 300), ("1", 149)];
            let got = ages(s.rows_at(&view, &mixed, Some(known)).await.unwrap());
            assert_eq!(got, [Some(30.0), None, Some(20.0), Some(30.0), Some(20.0)]);
        }
    }

    crate::core::db::testing::on_both_backends! {
        async fn appending_the_same_rows_again_changes_nothing(pool) {
            let s = OfflineStore::new(pool);
            let rows = [row("1", 100, 22.0), row("2", 100, 30.0)];
            let first = s.append("v", 1, &rows, "t").await.unwrap();
            assert_eq!(
                first,
                Appended {
                    written: 2,
                    unchanged: 0
                }
            );
            let again = s.append("v", 1, &rows, "t").await.unwrap();
            assert_eq!(
                again,
                Appended {
                    written: 0,
                    unchanged: 2
                }
            );
            assert_eq!(s.count("v").await.unwrap(), 2);
            // The same values later are a new observation for append, not for `Unchanged::Latest`.
            let later = [row("1", 200, 22.0)];
            assert_eq!(
                s.append_unless(Unchanged::Latest, "v", 1, &later, "t").await.unwrap().written,
                0
            );
            assert_eq!(s.append("v", 1, &later, "t").await.unwrap().written, 1);
            // Out of order, twice: nothing the second time, even though the rows older than
            // the latest are not equal to it.
            let shuffled = [row("4", 300, 3.0), row("4", 100, 1.0), row("4", 200, 2.0)];
            assert_eq!(s.append("v", 1, &shuffled, "t").await.unwrap().written, 3);
            let again = s.append("v", 1, &shuffled, "t").await.unwrap();
            assert_eq!(again, Appended { written: 0, unchanged: 3 });
            // A correction at a stored time is stored; restoring the first value is too
            // (it changes what is in effect at that time).
            assert_eq!(s.append("v", 1, &[row("4", 100, 9.0)], "t").await.unwrap().written, 1);
            assert_eq!(s.append("v", 1, &[row("4", 100, 1.0)], "t").await.unwrap().written, 1);
            assert_eq!(s.append("v", 1, &[row("4", 100, 1.0)], "t").await.unwrap().written, 0);
            // Duplicates inside one batch are skipped too.
            let twice = s
                .append("v", 1, &[row("3", 5, 1.0), row("3", 5, 1.0)], "t")
                .await
                .unwrap();
            assert_eq!(
                twice,
                Appended {
                    written: 1,
                    unchanged: 1
                }
            );
        }
    }

    crate::core::db::testing::on_both_backends! {
        async fn keys_written_after_a_watermark_page_in_order(pool) {
            let s = OfflineStore::new(pool);
            s.append(
                "v",
                1,
                &[row("a", 1, 1.0), row("b", 1, 1.0), row("c", 1, 1.0)],
                "t",
            )
            .await
            .unwrap();
            let mark = s.last_row_id("v").await.unwrap();
            assert_eq!(mark, 3);
            assert_eq!(
                s.keys_written_between("v", 0, mark, "", 2).await.unwrap(),
                ["a", "b"]
            );
            assert_eq!(
                s.keys_written_between("v", 0, mark, "b", 2).await.unwrap(),
                ["c"]
            );
            assert!(
                s.keys_written_between("v", mark, mark, "", 10)
                    .await
                    .unwrap()
                    .is_empty()
            );
            s.append("v", 1, &[row("b", 2, 2.0)], "t").await.unwrap();
            assert_eq!(
                s.keys_written_between("v", mark, 10, "", 10).await.unwrap(),
                ["b"]
            );
        }
    }
}
