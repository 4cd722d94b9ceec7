//! The online store: the latest values of each entity per feature view version, for serving.
//! One trait; the in-process map is the embedded default and Redis the shared one.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

use super::offline::Values;
use crate::core::time::{Micros, now_micros};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum OnlineError {
    #[error("online store unavailable: {0}")]
    Unavailable(String),
    #[error("online store holds an unreadable value for {key}: {message}")]
    Corrupt { key: String, message: String },
}

/// One feature view version, as addressed in the online store.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ViewKey {
    pub name: String,
    pub version: i64,
}

impl ViewKey {
    pub fn new(name: impl Into<String>, version: i64) -> Self {
        Self {
            name: name.into(),
            version,
        }
    }
}

impl std::fmt::Display for ViewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

/// The latest values of one entity for one view version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OnlineRow {
    /// When the values were true (microseconds since the epoch).
    #[serde(rename = "t")]
    pub event_time: Micros,
    /// When the offline store stored them: the tie-break between rows of one event time, as
    /// in the offline store's point-in-time order.
    #[serde(rename = "w", default)]
    pub write_time: Micros,
    #[serde(rename = "v")]
    pub values: Values,
}

impl OnlineRow {
    /// Whether this row may replace `stored`: it is at least as new, by event time and then
    /// write time (the offline store's order). An older row never replaces a newer one, so
    /// writers racing each other (a materialization chunk read before a push committed, and
    /// the push's write-through) leave the newest row whatever order they land in.
    pub fn supersedes(&self, stored: &OnlineRow) -> bool {
        (self.event_time, self.write_time) >= (stored.event_time, stored.write_time)
    }

    /// When a row of a view with this TTL expires (microseconds since the epoch): `ttl_secs`
    /// after its event time, the same clock as the freshness check. `None`: never (a TTL of
    /// 0, or one too long to represent).
    pub fn expires_at(&self, ttl_secs: u64) -> Option<Micros> {
        let ttl = i64::try_from(ttl_secs).ok()?.checked_mul(1_000_000)?;
        (ttl > 0)
            .then(|| self.event_time.checked_add(ttl))
            .flatten()
    }
}

pub trait OnlineStore: Send + Sync + 'static {
    /// A short name for health output and logs (`in_process`, `redis`).
    fn kind(&self) -> &'static str;
    /// The rows of `keys`, in order; `None` where an entity has none.
    fn read<'a>(
        &'a self,
        view: &'a ViewKey,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Option<OnlineRow>>, OnlineError>>;
    /// Stores each row unless the entity's stored row is newer ([`OnlineRow::supersedes`]),
    /// atomically per row. With `ttl_secs` > 0 a row expires that long after its event time
    /// ([`OnlineRow::expires_at`]); a row already expired is not stored.
    fn write<'a>(
        &'a self,
        view: &'a ViewKey,
        rows: Vec<(String, OnlineRow)>,
        ttl_secs: u64,
    ) -> BoxFuture<'a, Result<(), OnlineError>>;
    /// The offline row id up to which this store holds a view version (`None`: never
    /// materialized). Kept in the store itself, so an emptied store starts over.
    fn watermark<'a>(
        &'a self,
        view: &'a ViewKey,
    ) -> BoxFuture<'a, Result<Option<i64>, OnlineError>>;
    fn set_watermark<'a>(
        &'a self,
        view: &'a ViewKey,
        row_id: i64,
    ) -> BoxFuture<'a, Result<(), OnlineError>>;
    /// A cheap round trip, for readiness.
    fn ping(&self) -> BoxFuture<'_, Result<(), OnlineError>>;
}

struct Entry {
    row: OnlineRow,
    expires_at: Option<Micros>,
}

/// A process-local map; nothing to install, nothing shared between replicas.
#[derive(Default)]
pub struct InProcessStore {
    rows: RwLock<HashMap<(ViewKey, String), Entry>>,
    watermarks: RwLock<HashMap<ViewKey, i64>>,
}

impl InProcessStore {
    pub fn new() -> Self {
        Self::default()
    }
}

impl OnlineStore for InProcessStore {
    fn kind(&self) -> &'static str {
        "in_process"
    }

    fn read<'a>(
        &'a self,
        view: &'a ViewKey,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Option<OnlineRow>>, OnlineError>> {
        // A poisoned lock only means a writer panicked between whole-value inserts; the map
        // is still consistent, so reads carry on.
        let map = self.rows.read().unwrap_or_else(|e| e.into_inner());
        let now = now_micros();
        let rows = keys
            .iter()
            .map(|k| {
                map.get(&(view.clone(), k.clone()))
                    .filter(|e| e.expires_at.is_none_or(|at| at > now))
                    .map(|e| e.row.clone())
            })
            .collect();
        Box::pin(std::future::ready(Ok(rows)))
    }

    fn write<'a>(
        &'a self,
        view: &'a ViewKey,
        rows: Vec<(String, OnlineRow)>,
        ttl_secs: u64,
    ) -> BoxFuture<'a, Result<(), OnlineError>> {
        let now = now_micros();
        let mut map = self.rows.write().unwrap_or_else(|e| e.into_inner());
        for (key, row) in rows {
            let expires_at = row.expires_at(ttl_secs);
            if expires_at.is_some_and(|at| at <= now) {
                continue;
            }
            match map.entry((view.clone(), key)) {
                std::collections::hash_map::Entry::Occupied(mut stored) => {
                    let live = stored.get().expires_at.is_none_or(|at| at > now);
                    if !live || row.supersedes(&stored.get().row) {
                        stored.insert(Entry { row, expires_at });
                    }
                }
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(Entry { row, expires_at });
                }
            }
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn watermark<'a>(
        &'a self,
        view: &'a ViewKey,
    ) -> BoxFuture<'a, Result<Option<i64>, OnlineError>> {
        let mark = self
            .watermarks
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(view)
            .copied();
        Box::pin(std::future::ready(Ok(mark)))
    }

    fn set_watermark<'a>(
        &'a self,
        view: &'a ViewKey,
        row_id: i64,
    ) -> BoxFuture<'a, Result<(), OnlineError>> {
        self.watermarks
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(view.clone(), row_id);
        Box::pin(std::future::ready(Ok(())))
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), OnlineError>> {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// What every online store must do, run against each implementation by its tests.
#[cfg(test)]
pub(crate) mod conformance {
    use super::*;
    use serde_json::json;

    pub fn row(event_time: Micros, write_time: Micros, age: i64) -> OnlineRow {
        OnlineRow {
            event_time,
            write_time,
            values: json!({ "age": age }).as_object().unwrap().clone(),
        }
    }

    async fn age(store: &dyn OnlineStore, view: &ViewKey, key: &str) -> Option<i64> {
        let rows = store.read(view, &[key.to_owned()]).await.unwrap();
        rows[0].as_ref().map(|r| r.values["age"].as_i64().unwrap())
    }

    /// An older row (by event time, then write time) never replaces a newer one, in one
    /// batch or across writes; a newer one always does.
    pub async fn older_rows_never_replace_newer(store: &dyn OnlineStore, view: &ViewKey) {
        let now = now_micros();
        store
            .write(view, vec![("1".into(), row(now - 10, 5, 2))], 0)
            .await
            .unwrap();
        // A materialization chunk read before the push committed lands afterwards.
        store
            .write(view, vec![("1".into(), row(now - 20, 9, 1))], 0)
            .await
            .unwrap();
        assert_eq!(age(store, view, "1").await, Some(2), "older event time");
        // Same event time: the later write wins, an earlier one does not.
        store
            .write(view, vec![("1".into(), row(now - 10, 4, 3))], 0)
            .await
            .unwrap();
        assert_eq!(age(store, view, "1").await, Some(2), "earlier write time");
        store
            .write(view, vec![("1".into(), row(now - 10, 6, 4))], 0)
            .await
            .unwrap();
        assert_eq!(age(store, view, "1").await, Some(4), "later write time");
        // In one batch, whatever the order.
        let batch = vec![
            ("2".into(), row(now - 5, 1, 7)),
            ("2".into(), row(now - 50, 1, 6)),
            ("3".into(), row(now - 50, 1, 8)),
            ("3".into(), row(now - 5, 1, 9)),
        ];
        store.write(view, batch, 0).await.unwrap();
        assert_eq!(age(store, view, "2").await, Some(7));
        assert_eq!(age(store, view, "3").await, Some(9));
    }

    /// A row expires `ttl` after its event time (not after it was written); one already
    /// expired is not stored and leaves nothing behind.
    pub async fn rows_expire_ttl_after_their_event_time(store: &dyn OnlineStore, view: &ViewKey) {
        let now = now_micros();
        // Event time 1 h ago, TTL 10 min: expired before it was written.
        store
            .write(
                view,
                vec![("1".into(), row(now - 3_600_000_000, 1, 1))],
                600,
            )
            .await
            .unwrap();
        assert_eq!(age(store, view, "1").await, None);
        // Event time 1.5 s ago, TTL 2 s: readable now, gone within a second.
        store
            .write(view, vec![("2".into(), row(now - 1_500_000, 1, 2))], 2)
            .await
            .unwrap();
        assert_eq!(age(store, view, "2").await, Some(2));
        tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
        assert_eq!(
            age(store, view, "2").await,
            None,
            "expired from its event time"
        );
        // A TTL too long to represent never expires.
        store
            .write(view, vec![("2".into(), row(now - 1_000, 1, 3))], u64::MAX)
            .await
            .unwrap();
        assert_eq!(age(store, view, "2").await, Some(3));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn in_process_reads_what_was_written_per_view_version() {
        let store = InProcessStore::new();
        let v1 = ViewKey::new("v", 1);
        let v2 = ViewKey::new("v", 2);
        let row = conformance::row(7, 7, 3);
        store
            .write(&v1, vec![("1".into(), row.clone())], 0)
            .await
            .unwrap();
        let keys = ["1".to_owned(), "2".to_owned()];
        assert_eq!(store.read(&v1, &keys).await.unwrap(), vec![Some(row), None]);
        assert_eq!(store.read(&v2, &keys).await.unwrap(), vec![None, None]);
        assert_eq!(store.watermark(&v1).await.unwrap(), None);
        store.set_watermark(&v1, 42).await.unwrap();
        assert_eq!(store.watermark(&v1).await.unwrap(), Some(42));
        assert_eq!(store.watermark(&v2).await.unwrap(), None);
    }

    #[tokio::test]
    async fn in_process_never_replaces_a_newer_row() {
        let store = InProcessStore::new();
        conformance::older_rows_never_replace_newer(&store, &ViewKey::new("v", 1)).await;
    }

    #[tokio::test]
    async fn in_process_rows_expire_from_their_event_time() {
        let store = InProcessStore::new();
        conformance::rows_expire_ttl_after_their_event_time(&store, &ViewKey::new("v", 1)).await;
    }
}
