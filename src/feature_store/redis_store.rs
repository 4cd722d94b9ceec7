//! The online store in Redis. Keys are versioned by layout, view and view version:
//! `{prefix}fv:{view}:{version}:{entity}` holding `{"t": event_time, "w": write_time, "v":
//! {values}}` as JSON, expiring the view's TTL after the event time. Reads of many entities
//! are one `MGET` round trip; writes are one script call, which stores each row only when it
//! is at least as new as the stored one ([`OnlineRow::supersedes`]), atomically. While Redis is down, calls fail fast for a second at a time instead of
//! waiting on the network, and the first call after that probes it again (the connection
//! manager reconnects by itself).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::online::{BoxFuture, OnlineError, OnlineRow, OnlineStore, ViewKey};
use crate::core::time::now_micros;

/// How long calls fail fast after a failure before Redis is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// Upper bound on one Redis call; a slow Redis counts as a down one.
const CALL_TIMEOUT: Duration = Duration::from_millis(500);
/// Latest expiry time Redis accepts (it refuses one whose time in milliseconds overflows); a
/// later one is stored without expiry, as the in-process store does.
const MAX_EXPIRE_AT_MS: i64 = 1 << 53;

/// Stores each `KEYS[i]` = `ARGV[4i-3]` (the row's JSON) unless the stored row is newer by
/// event time (`ARGV[4i-2]`), then write time (`ARGV[4i-1]`), as [`OnlineRow::supersedes`];
/// `ARGV[4i]` is the expiry in Unix milliseconds, empty for none. One script, so no write
/// can land between a row's check and its `SET`.
const CONDITIONAL_SET: &str = r#"
for i, key in ipairs(KEYS) do
  local value, t, w, px = ARGV[4*i-3], tonumber(ARGV[4*i-2]), tonumber(ARGV[4*i-1]), ARGV[4*i]
  local stored = redis.call('GET', key)
  local newer = false
  if stored then
    local ok, row = pcall(cjson.decode, stored)
    if ok and type(row) == 'table' and type(row.t) == 'number' then
      local sw = tonumber(row.w) or 0
      newer = row.t > t or (row.t == t and sw > w)
    end
  end
  if not newer then
    if px == '' then
      redis.call('SET', key, value)
    else
      redis.call('SET', key, value, 'PXAT', px)
    end
  end
end
return #KEYS
"#;

pub struct RedisStore {
    manager: ConnectionManager,
    prefix: String,
    up: AtomicBool,
    /// While set and in the future, calls fail fast.
    retry_at: Mutex<Option<Instant>>,
}

impl RedisStore {
    /// Connects lazily: the service starts (degraded) even when Redis is down.
    pub fn new(url: &str, prefix: &str) -> Result<Self, OnlineError> {
        let client = redis::Client::open(url)
            .map_err(|e| OnlineError::Unavailable(format!("redis url: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(300)))
            .set_response_timeout(Some(Duration::from_millis(300)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let manager = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| OnlineError::Unavailable(e.to_string()))?;
        Ok(Self {
            manager,
            prefix: prefix.to_owned(),
            up: AtomicBool::new(true),
            retry_at: Mutex::new(None),
        })
    }

    fn key(&self, view: &ViewKey, entity: &str) -> String {
        format!(
            "{}fv:{}:{}:{}",
            self.prefix, view.name, view.version, entity
        )
    }

    fn watermark_key(&self, view: &ViewKey) -> String {
        format!("{}watermark:{}:{}", self.prefix, view.name, view.version)
    }

    /// Whether the last call succeeded.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    fn fail_fast(&self) -> Result<(), OnlineError> {
        let retry_at = self.retry_at.lock().unwrap_or_else(|e| e.into_inner());
        match *retry_at {
            Some(at) if Instant::now() < at => Err(OnlineError::Unavailable(
                "redis is down; retrying shortly".to_owned(),
            )),
            _ => Ok(()),
        }
    }

    /// Runs one Redis call with a deadline, recording the outcome.
    async fn call<T>(
        &self,
        probe: bool,
        f: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, OnlineError> {
        if !probe {
            self.fail_fast()?;
        }
        let result = match tokio::time::timeout(CALL_TIMEOUT, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(OnlineError::Unavailable(e.to_string())),
            Err(_) => Err(OnlineError::Unavailable("redis call timed out".to_owned())),
        };
        let mut retry_at = self.retry_at.lock().unwrap_or_else(|e| e.into_inner());
        match &result {
            Ok(_) => {
                *retry_at = None;
                if !self.up.swap(true, Ordering::Relaxed) {
                    tracing::info!("redis is reachable again");
                }
            }
            Err(e) => {
                *retry_at = Some(Instant::now() + RETRY_AFTER);
                if self.up.swap(false, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "redis is unreachable; serving from the offline store");
                }
            }
        }
        result
    }
}

impl OnlineStore for RedisStore {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn read<'a>(
        &'a self,
        view: &'a ViewKey,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Option<OnlineRow>>, OnlineError>> {
        Box::pin(async move {
            if keys.is_empty() {
                return Ok(Vec::new());
            }
            let redis_keys: Vec<String> = keys.iter().map(|k| self.key(view, k)).collect();
            let mut conn = self.manager.clone();
            // MGET of one key answers a bare value; always ask for a list.
            let values: Vec<Option<String>> = self
                .call(false, async move {
                    redis::cmd("MGET")
                        .arg(&redis_keys)
                        .query_async(&mut conn)
                        .await
                })
                .await?;
            values
                .into_iter()
                .zip(keys)
                .map(|(v, k)| {
                    v.map(|text| {
                        serde_json::from_str::<OnlineRow>(&text).map_err(|e| OnlineError::Corrupt {
                            key: self.key(view, k),
                            message: e.to_string(),
                        })
                    })
                    .transpose()
                })
                .collect()
        })
    }

    fn write<'a>(
        &'a self,
        view: &'a ViewKey,
        rows: Vec<(String, OnlineRow)>,
        ttl_secs: u64,
    ) -> BoxFuture<'a, Result<(), OnlineError>> {
        Box::pin(async move {
            if rows.is_empty() {
                return Ok(());
            }
            let now_ms = now_micros() / 1000;
            let mut keys = Vec::with_capacity(rows.len());
            let mut args = Vec::with_capacity(4 * rows.len());
            for (entity, row) in &rows {
                let expire_at_ms = row.expires_at(ttl_secs).map(|at| at / 1000);
                if expire_at_ms.is_some_and(|at| at <= now_ms) {
                    continue;
                }
                let px = expire_at_ms
                    .filter(|&at| at <= MAX_EXPIRE_AT_MS)
                    .map_or_else(String::new, |at| at.to_string());
                keys.push(self.key(view, entity));
                args.push(serde_json::to_string(row).unwrap_or_default());
                args.push(row.event_time.to_string());
                args.push(row.write_time.to_string());
                args.push(px);
            }
            if keys.is_empty() {
                return Ok(());
            }
            // EVAL, not EVALSHA: Redis caches the compiled script by its hash either way.
            let mut eval = redis::cmd("EVAL");
            eval.arg(CONDITIONAL_SET)
                .arg(keys.len())
                .arg(keys)
                .arg(args);
            let mut conn = self.manager.clone();
            self.call(false, async move {
                eval.query_async::<i64>(&mut conn).await.map(|_| ())
            })
            .await
        })
    }

    fn watermark<'a>(
        &'a self,
        view: &'a ViewKey,
    ) -> BoxFuture<'a, Result<Option<i64>, OnlineError>> {
        Box::pin(async move {
            let mut conn = self.manager.clone();
            let key = self.watermark_key(view);
            self.call(false, async move { conn.get::<_, Option<i64>>(key).await })
                .await
        })
    }

    fn set_watermark<'a>(
        &'a self,
        view: &'a ViewKey,
        row_id: i64,
    ) -> BoxFuture<'a, Result<(), OnlineError>> {
        Box::pin(async move {
            let mut conn = self.manager.clone();
            let key = self.watermark_key(view);
            self.call(
                false,
                async move { conn.set::<_, _, ()>(key, row_id).await },
            )
            .await
        })
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), OnlineError>> {
        Box::pin(async move {
            let mut conn = self.manager.clone();
            self.call(true, async move {
                redis::cmd("PING").query_async::<String>(&mut conn).await
            })
            .await
            .map(|_| ())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feature_store::online::conformance;

    /// A store on the test Redis (`TITANIC_TEST_REDIS_URL`, default 127.0.0.1:6379) under a
    /// key prefix of its own; `None` with a notice when none answers (a failure in CI).
    async fn store() -> Option<RedisStore> {
        let url = std::env::var("TITANIC_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379/0".to_owned());
        let prefix = format!("titanic-unit-{}-{}:", std::process::id(), now_micros());
        let store = RedisStore::new(&url, &prefix).ok()?;
        if store.ping().await.is_ok() {
            return Some(store);
        }
        assert!(
            std::env::var_os("CI").is_none(),
            "Redis at {url}: required in CI (.ci/run installs and starts it)"
        );
        eprintln!("SKIPPED: no Redis answers at {url}; install redis-server to run this test");
        None
    }

    #[tokio::test]
    async fn redis_never_replaces_a_newer_row() {
        let Some(store) = store().await else { return };
        conformance::older_rows_never_replace_newer(&store, &ViewKey::new("v", 1)).await;
    }

    #[tokio::test]
    async fn redis_rows_expire_from_their_event_time() {
        let Some(store) = store().await else { return };
        conformance::rows_expire_ttl_after_their_event_time(&store, &ViewKey::new("v", 1)).await;
    }
}
