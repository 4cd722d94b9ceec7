//! The online store: the latest values of each entity per feature view version, for serving.
//! One trait; the in-process map is the embedded default and Redis the shared one.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::offline::Values;
use crate::core::time::Micros;

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
    #[serde(rename = "v")]
    pub values: Values,
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
    /// Stores rows; `ttl_secs` > 0 lets the store forget them after that long.
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
    expires: Option<Instant>,
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
        let now = Instant::now();
        let rows = keys
            .iter()
            .map(|k| {
                map.get(&(view.clone(), k.clone()))
                    .filter(|e| e.expires.is_none_or(|at| at > now))
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
        // A time past what `Instant` can hold is never reached: no expiry.
        let expires = (ttl_secs > 0)
            .then(|| Instant::now().checked_add(Duration::from_secs(ttl_secs)))
            .flatten();
        let mut map = self.rows.write().unwrap_or_else(|e| e.into_inner());
        for (key, row) in rows {
            map.insert((view.clone(), key), Entry { row, expires });
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn in_process_reads_what_was_written_per_view_version() {
        let store = InProcessStore::new();
        let v1 = ViewKey::new("v", 1);
        let v2 = ViewKey::new("v", 2);
        let row = OnlineRow {
            event_time: 7,
            values: json!({"age": 3}).as_object().unwrap().clone(),
        };
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
    async fn a_ttl_too_long_to_represent_never_expires() {
        // A view may set any u64 `ttl_secs`; adding it to `Instant::now()` overflowed and
        // panicked the request that pushed or materialized its rows.
        let store = InProcessStore::new();
        let view = ViewKey::new("v", 1);
        let row = OnlineRow {
            event_time: 7,
            values: json!({"age": 3}).as_object().unwrap().clone(),
        };
        store
            .write(&view, vec![("1".into(), row.clone())], u64::MAX)
            .await
            .unwrap();
        let keys = ["1".to_owned()];
        assert_eq!(store.read(&view, &keys).await.unwrap(), vec![Some(row)]);
    }
}
