//! The online store: the latest features of each passenger, for serving by id. One trait;
//! the in-process map is the embedded default (a Redis implementation plugs in beside it).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use super::offline::{OfflineError, OfflineStore};
use super::passenger::Passenger;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, thiserror::Error)]
pub enum OnlineError {
    #[error("online store unavailable: {0}")]
    Unavailable(String),
}

pub trait OnlineStore: Send + Sync + 'static {
    /// A short name for health output and logs (`in_process`, `redis`).
    fn kind(&self) -> &'static str;
    /// The passenger's latest features, or `None` when the id is unknown.
    fn get(&self, passenger_id: i64) -> BoxFuture<'_, Result<Option<Arc<Passenger>>, OnlineError>>;
    /// Stores the latest features of many passengers.
    fn put_many(&self, rows: Vec<(i64, Passenger)>) -> BoxFuture<'_, Result<(), OnlineError>>;
    /// How many passengers the store holds.
    fn count(&self) -> BoxFuture<'_, Result<usize, OnlineError>>;
}

/// A process-local map; nothing to install, nothing shared between replicas.
#[derive(Debug, Default)]
pub struct InProcessStore {
    rows: RwLock<HashMap<i64, Arc<Passenger>>>,
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

    fn get(&self, passenger_id: i64) -> BoxFuture<'_, Result<Option<Arc<Passenger>>, OnlineError>> {
        // A poisoned lock only means a writer panicked mid-insert of whole values; the map
        // itself is still consistent, so reads carry on.
        let found = self
            .rows
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&passenger_id)
            .cloned();
        Box::pin(std::future::ready(Ok(found)))
    }

    fn put_many(&self, rows: Vec<(i64, Passenger)>) -> BoxFuture<'_, Result<(), OnlineError>> {
        let mut map = self.rows.write().unwrap_or_else(|e| e.into_inner());
        map.extend(rows.into_iter().map(|(id, p)| (id, Arc::new(p))));
        Box::pin(std::future::ready(Ok(())))
    }

    fn count(&self) -> BoxFuture<'_, Result<usize, OnlineError>> {
        let n = self.rows.read().unwrap_or_else(|e| e.into_inner()).len();
        Box::pin(std::future::ready(Ok(n)))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MaterializeError {
    #[error(transparent)]
    Offline(#[from] OfflineError),
    #[error(transparent)]
    Online(#[from] OnlineError),
}

/// Copies the latest features of every offline passenger into the online store.
pub async fn materialize(
    offline: &OfflineStore,
    online: &dyn OnlineStore,
) -> Result<usize, MaterializeError> {
    let rows: Vec<(i64, Passenger)> = offline
        .all()
        .await?
        .into_iter()
        .map(|r| (r.passenger_id, r.passenger))
        .collect();
    let n = rows.len();
    online.put_many(rows).await?;
    Ok(n)
}
