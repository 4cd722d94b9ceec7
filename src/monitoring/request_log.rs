//! The request/response log: every scored passenger (request id, time, subject, features,
//! output, model version, latency) goes through a bounded queue to one writer task that
//! stores batches in the offline store. Recording never waits and never fails a request:
//! when the queue is full the entry is dropped and counted. Sampling, retention (an age) and
//! a budget (a number of rows, so that a flood of predictions cannot fill the disk) are
//! configurable; written, dropped and evicted entries are Prometheus counters.

use std::sync::Arc;
use std::time::Duration;

use crate::core::db::{Backend, Pool};
use prometheus::{IntCounter, IntCounterVec, Opts};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use crate::core::config::RequestLogSettings;
use crate::core::dependency::DependencyMetrics;
use crate::core::stats::fnv1a;
use crate::core::time::{Micros, now_micros};
use crate::feature_store::Passenger;

/// One scored passenger, as logged.
#[derive(Debug, Clone)]
pub struct LoggedPrediction {
    pub request_id: Arc<str>,
    /// Position of the passenger in its request (0 for a single prediction).
    pub position: u32,
    pub at: Micros,
    pub subject: Option<Arc<str>>,
    pub passenger_id: Option<i64>,
    pub passenger: Passenger,
    pub probability: f64,
    pub survived: bool,
    pub model_version: Arc<str>,
    /// Time from the request reaching its handler to the prediction.
    pub latency_us: u64,
}

/// Why a prediction was not logged (the `reason` of `request_log_dropped_total`).
pub const DROP_REASONS: &[&str] = &["queue_full", "write_error", "stopped"];

#[derive(Debug, Clone)]
pub struct LogMetrics {
    written: IntCounter,
    dropped: IntCounterVec,
    evicted: IntCounter,
}

impl LogMetrics {
    fn new() -> Result<Self, prometheus::Error> {
        let m = Self {
            written: IntCounter::new(
                "request_log_written_total",
                "Predictions written to the request log",
            )?,
            dropped: IntCounterVec::new(
                Opts::new(
                    "request_log_dropped_total",
                    "Predictions not logged, by reason: queue_full, write_error, stopped",
                ),
                &["reason"],
            )?,
            evicted: IntCounter::new(
                "request_log_evicted_total",
                "Request log rows deleted, oldest first, to keep the log within max_rows",
            )?,
        };
        for reason in DROP_REASONS {
            m.dropped.with_label_values(&[reason]);
        }
        Ok(m)
    }

    pub fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.written.clone()),
            Box::new(self.dropped.clone()),
            Box::new(self.evicted.clone()),
        ]
    }

    pub fn written(&self) -> u64 {
        self.written.get()
    }

    pub fn dropped(&self, reason: &str) -> u64 {
        self.dropped.with_label_values(&[reason]).get()
    }

    pub fn evicted(&self) -> u64 {
        self.evicted.get()
    }
}

/// The recording side, shared by request handlers.
#[derive(Debug, Clone)]
pub struct RequestLog {
    tx: Option<mpsc::Sender<LoggedPrediction>>,
    sample_rate: f64,
    metrics: LogMetrics,
}

/// The writing side: run it as one task; it ends when every [`RequestLog`] is dropped and
/// the queue is drained.
pub struct LogWriter {
    rx: mpsc::Receiver<LoggedPrediction>,
    pool: Pool,
    /// The connection held while a backlog is written (see [`LogWriter::write`]).
    conn: Option<sqlx::pool::PoolConnection<sqlx::Any>>,
    /// False with a pool of one connection, which the writer must not keep from the others.
    may_hold: bool,
    dependencies: DependencyMetrics,
    settings: RequestLogSettings,
    metrics: LogMetrics,
}

impl RequestLog {
    /// The log and its writer. With `enabled = false` nothing is queued and the writer only
    /// applies retention and the budget, once.
    pub fn new(
        pool: Pool,
        settings: &RequestLogSettings,
        dependencies: DependencyMetrics,
    ) -> Result<(RequestLog, LogWriter), prometheus::Error> {
        let metrics = LogMetrics::new()?;
        let (tx, rx) = mpsc::channel(settings.queue_capacity.max(1));
        let log = RequestLog {
            tx: settings.enabled.then_some(tx),
            sample_rate: settings.sample_rate,
            metrics: metrics.clone(),
        };
        let writer = LogWriter {
            rx,
            may_hold: pool.options().get_max_connections() > 1,
            pool,
            conn: None,
            dependencies,
            settings: settings.clone(),
            metrics,
        };
        Ok((log, writer))
    }

    pub fn metrics(&self) -> &LogMetrics {
        &self.metrics
    }

    /// Queues predictions of a request. Sampling is decided by the request id, so a request
    /// (even a streamed file recorded in parts) is logged whole or not at all. Never waits.
    pub fn record(&self, entries: Vec<LoggedPrediction>) {
        let Some(tx) = &self.tx else { return };
        let Some(first) = entries.first() else { return };
        if !sampled(&first.request_id, self.sample_rate) {
            return;
        }
        let mut entries = entries.into_iter();
        for entry in entries.by_ref() {
            match tx.try_send(entry) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    let rest = 1 + entries.len() as u64;
                    self.metrics
                        .dropped
                        .with_label_values(&["queue_full"])
                        .inc_by(rest);
                    return;
                }
                Err(TrySendError::Closed(_)) => {
                    let rest = 1 + entries.len() as u64;
                    self.metrics
                        .dropped
                        .with_label_values(&["stopped"])
                        .inc_by(rest);
                    return;
                }
            }
        }
    }
}

/// Whether a request is in the sample: a hash of its id, so every part of a request gets the
/// same answer.
fn sampled(request_id: &str, rate: f64) -> bool {
    if rate >= 1.0 {
        return true;
    }
    (fnv1a(request_id) as f64 / u64::MAX as f64) < rate
}

/// How often a filling batch looks at the queue (see [`LogWriter::gather`]).
const GATHER_TICK: Duration = Duration::from_millis(5);

/// Rest after each batch written while more wait, so other writers of the database (pushes,
/// promotions, feedback) get SQLite's write lock between batches instead of starving.
const WRITE_PAUSE: Duration = Duration::from_millis(10);

/// Rows one transaction takes when a full batch finds more waiting: enough that the pause
/// after each transaction does not throttle a backlog, few enough to hold SQLite's write
/// lock only briefly.
const BACKLOG_ROWS: usize = 2000;

/// Ids one budget DELETE covers at most (see [`LogWriter::apply_budget`]): no more rows than
/// a backlog transaction writes, so it holds SQLite's write lock about as briefly.
const EVICT_IDS: i64 = BACKLOG_ROWS as i64;

/// The lowest and highest ids in the log. Two subqueries, because each is then one lookup at
/// an end of the primary key (SQLite answers `SELECT MIN(id), MAX(id)` with a full scan).
const ID_BOUNDS: &str =
    "SELECT (SELECT MIN(id) FROM prediction_log), (SELECT MAX(id) FROM prediction_log)";

impl LogWriter {
    /// Writes batches until the log is closed and drained; applies retention first and then
    /// hourly, and the budget first and after each batch.
    pub async fn run(mut self) {
        let batch_size = self.settings.batch_size.max(1);
        let flush_every = Duration::from_millis(self.settings.flush_interval_ms.max(1));
        self.apply_retention().await;
        self.apply_budget().await;
        let hour = Duration::from_secs(3600);
        let mut retention = tokio::time::interval_at(tokio::time::Instant::now() + hour, hour);
        let mut batch = Vec::with_capacity(batch_size);
        loop {
            tokio::select! {
                received = self.rx.recv_many(&mut batch, batch_size) => {
                    if received == 0 {
                        break;
                    }
                    self.gather(&mut batch, batch_size, flush_every).await;
                    let full = batch.len() >= batch_size;
                    if full {
                        // A backlog: take what already waits into the same transaction.
                        while batch.len() < batch_size.max(BACKLOG_ROWS) {
                            let Ok(entry) = self.rx.try_recv() else { break };
                            batch.push(entry);
                        }
                    }
                    self.write(std::mem::take(&mut batch)).await;
                    self.apply_budget().await;
                    if !full || self.rx.is_empty() || !self.may_hold {
                        // No backlog: the connection goes back to the pool until the next.
                        self.conn = None;
                    }
                    if full {
                        tokio::time::sleep(WRITE_PAUSE).await;
                    }
                }
                _ = retention.tick() => {
                    self.conn = None;
                    self.apply_retention().await;
                }
            }
        }
    }

    /// Gathers more entries, up to a full batch or for `flush_every` at most. The queue is
    /// looked at every [`GATHER_TICK`] rather than waiting on it, which would wake this task
    /// for every prediction queued.
    async fn gather(
        &mut self,
        batch: &mut Vec<LoggedPrediction>,
        batch_size: usize,
        flush_every: Duration,
    ) {
        let deadline = tokio::time::Instant::now() + flush_every;
        loop {
            while batch.len() < batch_size {
                match self.rx.try_recv() {
                    Ok(entry) => batch.push(entry),
                    // Empty for now, or closed (the last batch is written, then `run` ends).
                    Err(_) => break,
                }
            }
            let now = tokio::time::Instant::now();
            if batch.len() >= batch_size || now >= deadline || self.rx.is_closed() {
                return;
            }
            tokio::time::sleep(GATHER_TICK.min(deadline - now)).await;
        }
    }

    /// Writes a batch on the writer's connection, taking one from the pool when it holds
    /// none. While a backlog lasts (a full batch written and more entries waiting; never with
    /// a pool of one connection) the writer keeps the same connection: one SQLite page
    /// cache stays warm with the log's pages and one set of prepared INSERTs is used, instead
    /// of every pool connection (and its worker thread's heap) growing its own copy of both.
    async fn write(&mut self, batch: Vec<LoggedPrediction>) {
        let n = batch.len() as u64;
        let backend = Backend::of(&self.pool);
        let write = async {
            let conn = match &mut self.conn {
                Some(conn) => conn,
                None => self.conn.insert(self.pool.acquire().await?),
            };
            write_batch(conn, backend, &batch).await
        };
        let written = self
            .dependencies
            .time(backend.as_str(), "request_log_write", write)
            .await;
        match written {
            Ok(()) => self.metrics.written.inc_by(n),
            Err(e) => {
                // Back to the pool, which checks a connection before reusing it (one left
                // read-only or in a transaction is closed there).
                self.conn = None;
                self.metrics
                    .dropped
                    .with_label_values(&["write_error"])
                    .inc_by(n);
                tracing::warn!(error = %e, entries = n, "request log: batch not written");
            }
        }
    }

    async fn apply_retention(&mut self) {
        if self.settings.retention_days == 0 {
            return;
        }
        let horizon =
            now_micros() - (self.settings.retention_days as i64).saturating_mul(86_400_000_000);
        match sqlx::query("DELETE FROM prediction_log WHERE logged_at < $1")
            .bind(horizon)
            .execute(&self.pool)
            .await
        {
            Ok(done) if done.rows_affected() > 0 => {
                tracing::info!(
                    rows = done.rows_affected(),
                    "request log: old entries removed"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "request log: retention failed"),
        }
    }

    /// Deletes the rows beyond `max_rows`: every id up to `MAX(id) - max_rows`, oldest first,
    /// so the log keeps at most the newest `max_rows` ids. Ids are handed out in commit order
    /// (SQLite has one writer; PostgreSQL writers take the write lock, see
    /// [`crate::core::db::begin_write`]), so the rows written first go first, whatever the
    /// clocks of the replicas that logged them; and the bounds are two lookups in the primary
    /// key, not a count. Every replica sharing a PostgreSQL database sees the same bounds, so
    /// they enforce one budget together. Ids missing below the cutoff (rows retention removed
    /// out of order, ids of failed PostgreSQL writes) make the log hold fewer rows, never more.
    /// Runs on the writer's connection; a large excess (a lowered budget) goes in DELETEs of
    /// [`EVICT_IDS`] ids with the connection given back and a pause between them.
    async fn apply_budget(&mut self) {
        // Beyond i64::MAX rows no id could be cut off: no budget either.
        let max_rows = match i64::try_from(self.settings.max_rows) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let mut evicted = 0;
        let outcome: Result<(), sqlx::Error> = async {
            let conn = match &mut self.conn {
                Some(conn) => conn,
                None => self.conn.insert(self.pool.acquire().await?),
            };
            let (first, last): (Option<i64>, Option<i64>) =
                sqlx::query_as(ID_BOUNDS).fetch_one(&mut **conn).await?;
            let (Some(mut from), Some(last)) = (first, last) else {
                return Ok(());
            };
            let cutoff = last.saturating_sub(max_rows);
            while from <= cutoff {
                let to = cutoff.min(from.saturating_add(EVICT_IDS - 1));
                let conn = match &mut self.conn {
                    Some(conn) => conn,
                    None => self.conn.insert(self.pool.acquire().await?),
                };
                let done = sqlx::query("DELETE FROM prediction_log WHERE id >= $1 AND id <= $2")
                    .bind(from)
                    .bind(to)
                    .execute(&mut **conn)
                    .await?;
                self.metrics.evicted.inc_by(done.rows_affected());
                evicted += done.rows_affected();
                // `to <= cutoff < i64::MAX`: no overflow.
                from = to + 1;
                if from <= cutoff {
                    self.conn = None;
                    tokio::time::sleep(WRITE_PAUSE).await;
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = outcome {
            self.conn = None;
            tracing::warn!(error = %e, evicted, "request log: budget not applied");
        } else if evicted > EVICT_IDS as u64 {
            // More than one DELETE's worth: at start, or after the budget was lowered.
            tracing::info!(evicted, max_rows, "request log: oldest entries removed");
        } else if evicted > 0 {
            tracing::debug!(evicted, max_rows, "request log: oldest entries removed");
        }
    }
}

/// Rows per INSERT statement (10 parameters each, well under SQLite's 32,766 and
/// PostgreSQL's 65,535).
const ROWS_PER_STATEMENT: usize = 500;

/// The row counts of the INSERT statements a batch is split into, largest first: a batch of
/// 1,234 rows is 2 x 500, 2 x 100, 1 x 20, 2 x 5 and 4 x 1. A statement per row count would
/// fill each connection's statement cache with large INSERTs and prepare afresh for most
/// batches; these five are prepared once per connection and reused.
const STATEMENT_ROWS: [usize; 5] = [ROWS_PER_STATEMENT, 100, 20, 5, 1];

/// The SQL of each of [`STATEMENT_ROWS`], per backend, made on first use.
static STATEMENTS: [[std::sync::OnceLock<String>; 5]; 2] =
    [const { [const { std::sync::OnceLock::new() }; 5] }; 2];

/// The INSERT for one of [`STATEMENT_ROWS`].
fn statement(rows: usize, backend: Backend) -> &'static str {
    let size = STATEMENT_ROWS.iter().position(|&n| n == rows);
    debug_assert!(size.is_some(), "{rows} is not a statement size");
    STATEMENTS[backend as usize][size.unwrap_or(0)].get_or_init(|| insert_sql(rows, backend))
}

/// The row counts of the statements that write `rows` rows (see [`STATEMENT_ROWS`]).
fn statement_sizes(mut rows: usize) -> impl Iterator<Item = usize> {
    let mut sizes = STATEMENT_ROWS.iter().copied().peekable();
    std::iter::from_fn(move || {
        while let Some(&size) = sizes.peek() {
            if rows >= size {
                rows -= size;
                return Some(size);
            }
            sizes.next();
        }
        None
    })
}

/// Columns of a `prediction_log` row as [`write_batch`] binds them.
const COLUMNS: usize = 10;

/// `INSERT INTO prediction_log ... VALUES (...), (...)` for `rows` rows. PostgreSQL gets
/// numbered placeholders (`$1` to `$10`, `$11`...). SQLite gets anonymous ones (`?`): sqlx
/// binds a numbered one by asking SQLite its name, which SQLite finds by scanning all the
/// names, so binding a large statement would be quadratic.
fn insert_sql(rows: usize, backend: Backend) -> String {
    use std::fmt::Write;
    let mut sql = String::from(
        "INSERT INTO prediction_log (request_id, position, logged_at, subject, passenger_id, \
         features, probability, survived, model_version, latency_us) VALUES ",
    );
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..COLUMNS {
            let sep = if column == 0 { "" } else { ", " };
            match backend {
                Backend::Sqlite => {
                    let _ = write!(sql, "{sep}?");
                }
                Backend::Postgres => {
                    let _ = write!(sql, "{sep}${}", row * COLUMNS + column + 1);
                }
            }
        }
        sql.push(')');
    }
    sql
}

/// Writes a batch in one short transaction: everything is encoded first, then inserted with
/// multi-row statements, so SQLite's write lock is held only for the inserts.
async fn write_batch(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    batch: &[LoggedPrediction],
) -> Result<(), sqlx::Error> {
    let mut features = batch
        .iter()
        .map(|e| e.passenger.raw_json(e.passenger_id))
        .collect::<Vec<_>>()
        .into_iter();
    let mut tx = crate::core::db::begin_write_on(conn, backend).await?;
    let mut start = 0;
    for rows in statement_sizes(batch.len()) {
        let entries = &batch[start..start + rows];
        start += rows;
        let mut insert = sqlx::query(sqlx::AssertSqlSafe(statement(rows, backend)));
        // The features text is moved into the arguments, not copied.
        for (e, features) in entries.iter().zip(features.by_ref()) {
            insert = insert
                .bind(&*e.request_id)
                .bind(i64::from(e.position))
                .bind(e.at)
                .bind(e.subject.as_deref())
                .bind(e.passenger_id)
                .bind(features)
                .bind(e.probability)
                .bind(i64::from(e.survived))
                .bind(&*e.model_version)
                .bind(i64::try_from(e.latency_us).unwrap_or(i64::MAX));
        }
        insert.execute(&mut *tx).await?;
    }
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_written_with_five_statement_sizes() {
        let sizes = |n| statement_sizes(n).collect::<Vec<_>>();
        assert_eq!(sizes(0), Vec::<usize>::new());
        assert_eq!(sizes(1), [1]);
        assert_eq!(sizes(500), [500]);
        assert_eq!(sizes(1234), [500, 500, 100, 100, 20, 5, 5, 1, 1, 1, 1]);
        assert_eq!(sizes(4000), [500; 8]);
        for n in 0..2000 {
            let s = sizes(n);
            assert_eq!(s.iter().sum::<usize>(), n);
            assert!(s.iter().all(|k| STATEMENT_ROWS.contains(k)));
            assert!(s.len() <= n / 500 + 4 + 4 + 3 + 4, "{n}: {s:?}");
        }
    }

    #[test]
    fn multi_row_inserts_have_each_backends_placeholders() {
        let sql = insert_sql(2, Backend::Postgres);
        assert!(sql.ends_with(
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10), \
             ($11, $12, $13, $14, $15, $16, $17, $18, $19, $20)"
        ));
        let sql = insert_sql(2, Backend::Sqlite);
        assert!(
            sql.ends_with("VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        );
    }
    use crate::feature_store::RawPassenger;

    fn deps() -> DependencyMetrics {
        DependencyMetrics::new().unwrap()
    }

    fn settings() -> RequestLogSettings {
        RequestLogSettings {
            enabled: true,
            sample_rate: 1.0,
            queue_capacity: 4,
            batch_size: 2,
            flush_interval_ms: 10,
            retention_days: 30,
            max_rows: 0,
        }
    }

    fn entry(request: &str, position: u32, at: Micros) -> LoggedPrediction {
        LoggedPrediction {
            request_id: request.into(),
            position,
            at,
            subject: Some("tester".into()),
            passenger_id: Some(7),
            passenger: Passenger::minimal(),
            probability: 0.9,
            survived: true,
            model_version: "v1".into(),
            latency_us: 120,
        }
    }

    async fn count(pool: &Pool) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM prediction_log")
            .fetch_one(pool)
            .await
            .unwrap()
    }

    crate::core::db::testing::on_both_backends! {
        async fn a_full_queue_drops_and_counts_and_the_rest_is_written(pool) {
            let (log, writer) = RequestLog::new(pool.clone(), &settings(), deps()).unwrap();
            // The writer is not running yet: four fit in the queue, the other three are dropped.
            log.record((0..7).map(|i| entry("r1", i, now_micros())).collect());
            assert_eq!(log.metrics().dropped("queue_full"), 3);
            let metrics = log.metrics().clone();
            drop(log);
            writer.run().await;
            assert_eq!(metrics.written(), 4);
            assert_eq!(count(&pool).await, 4);
            let (features, subject): (String, String) =
                sqlx::query_as("SELECT features, subject FROM prediction_log WHERE position = 3")
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            let raw: RawPassenger = serde_json::from_str(&features).unwrap();
            assert_eq!(raw.passenger_id, Some(7));
            assert_eq!(raw.sex.as_deref(), Some("female"));
            assert_eq!(subject, "tester");
        }
    }

    #[test]
    fn sampling_is_decided_by_the_request_id() {
        let ids: Vec<String> = (0..10_000).map(|i| format!("request-{i}")).collect();
        let kept = ids.iter().filter(|id| sampled(id, 0.25)).count();
        assert!((2_200..2_800).contains(&kept), "{kept}");
        assert!(ids.iter().all(|id| sampled(id, 0.25) == sampled(id, 0.25)));
        assert!(ids.iter().all(|id| sampled(id, 1.0)));
        assert!(!ids.iter().any(|id| sampled(id, 0.0)));
    }

    crate::core::db::testing::on_both_backends! {
        async fn retention_deletes_every_entry_past_the_horizon_in_any_order(pool) {
            const DAY: Micros = 86_400_000_000;
            let now = now_micros();
            let roomy = RequestLogSettings {
                queue_capacity: 8,
                ..settings()
            };
            let (log, writer) = RequestLog::new(pool.clone(), &roomy, deps()).unwrap();
            // In id order: two entries past the 30-day horizon, one inside it, then one past
            // it that was logged late (another replica's batch, say), and one dated ahead
            // (a replica whose clock runs fast).
            for (request, at) in [
                ("old-1", now - 40 * DAY),
                ("old-2", now - 31 * DAY),
                ("recent", now - DAY),
                ("late", now - 32 * DAY),
                ("ahead", now + DAY),
            ] {
                log.record(vec![entry(request, 0, at)]);
            }
            drop(log);
            writer.run().await;
            let kept = || async {
                sqlx::query_scalar::<_, String>("SELECT request_id FROM prediction_log ORDER BY id")
                    .fetch_all(&pool)
                    .await
                    .unwrap()
            };
            assert_eq!(kept().await, ["old-1", "old-2", "recent", "late", "ahead"]);
            let (_log, mut writer) = RequestLog::new(pool.clone(), &settings(), deps()).unwrap();
            writer.apply_retention().await;
            assert_eq!(kept().await, ["recent", "ahead"]);
        }
    }

    crate::core::db::testing::on_both_backends! {
        async fn sampling_and_switching_off_log_nothing_and_retention_removes_old_entries(pool) {
            let off = RequestLogSettings {
                sample_rate: 0.0,
                ..settings()
            };
            let (log, writer) = RequestLog::new(pool.clone(), &off, deps()).unwrap();
            log.record(vec![entry("r1", 0, now_micros())]);
            drop(log);
            writer.run().await;
            assert_eq!(count(&pool).await, 0);

            let (log, writer) = RequestLog::new(pool.clone(), &settings(), deps()).unwrap();
            let long_ago = now_micros() - 31 * 86_400_000_000;
            log.record(vec![entry("old", 0, long_ago)]);
            drop(log);
            writer.run().await;
            assert_eq!(count(&pool).await, 1);
            // The next writer applies retention when it starts.
            let (log, writer) = RequestLog::new(pool.clone(), &settings(), deps()).unwrap();
            log.record(vec![entry("new", 0, now_micros())]);
            drop(log);
            writer.run().await;
            let kept: Vec<String> = sqlx::query_scalar("SELECT request_id FROM prediction_log")
                .fetch_all(&pool)
                .await
                .unwrap();
            assert_eq!(kept, ["new"]);
        }
    }

    async fn logged_requests(pool: &Pool) -> Vec<String> {
        sqlx::query_scalar("SELECT request_id FROM prediction_log ORDER BY id")
            .fetch_all(pool)
            .await
            .unwrap()
    }

    crate::core::db::testing::on_both_backends! {
        async fn the_budget_keeps_the_newest_rows_and_counts_the_evicted(pool) {
            let budget = |max_rows| RequestLogSettings {
                queue_capacity: 16,
                max_rows,
                ..settings()
            };
            // No budget: everything stays.
            let (log, writer) = RequestLog::new(pool.clone(), &budget(0), deps()).unwrap();
            log.record((0..4).map(|i| entry(&format!("a{i}"), 0, now_micros())).collect());
            let metrics = log.metrics().clone();
            drop(log);
            writer.run().await;
            assert_eq!(count(&pool).await, 4);
            assert_eq!(metrics.evicted(), 0);

            // A budget of 5 applied as batches of 2 are written: the 5 newest rows stay.
            let (log, writer) = RequestLog::new(pool.clone(), &budget(5), deps()).unwrap();
            for i in 0..9 {
                log.record(vec![entry(&format!("b{i}"), 0, now_micros())]);
            }
            let metrics = log.metrics().clone();
            drop(log);
            writer.run().await;
            assert_eq!(metrics.written(), 9);
            assert_eq!(logged_requests(&pool).await, ["b4", "b5", "b6", "b7", "b8"]);
            assert_eq!(metrics.evicted(), 8);

            // Two writers on one database (replicas sharing PostgreSQL) keep one budget, and
            // each row evicted is counted once between them.
            let (log_a, writer_a) = RequestLog::new(pool.clone(), &budget(5), deps()).unwrap();
            let (log_b, writer_b) = RequestLog::new(pool.clone(), &budget(5), deps()).unwrap();
            let (a, b) = (log_a.metrics().clone(), log_b.metrics().clone());
            let running = tokio::spawn(async move {
                tokio::join!(writer_a.run(), writer_b.run());
            });
            for i in 0..10 {
                log_a.record(vec![entry(&format!("c{i}"), 0, now_micros())]);
                log_b.record(vec![entry(&format!("d{i}"), 0, now_micros())]);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            drop((log_a, log_b));
            running.await.unwrap();
            assert_eq!(count(&pool).await, 5);
            assert_eq!(a.evicted() + b.evicted(), 5 + 20 - 5);
        }
    }

    crate::core::db::testing::on_both_backends! {
        async fn a_large_excess_goes_in_bounded_deletes_and_gaps_only_keep_fewer(pool) {
            // 4,500 rows, ids 1 to 4,500, as if logged under a larger budget.
            sqlx::query(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 4500)
                 INSERT INTO prediction_log (request_id, position, logged_at, features,
                     probability, survived, model_version, latency_us)
                 SELECT 'r' || i, 0, $1, '{}', 0.5, 1, 'v1', 1 FROM n",
            )
            .bind(now_micros())
            .execute(&pool)
            .await
            .unwrap();
            // Gaps below the cutoff (rows retention removed) and above it (a failed write's ids).
            sqlx::query("DELETE FROM prediction_log WHERE id BETWEEN 101 AND 200 OR id BETWEEN 4001 AND 4050")
                .execute(&pool)
                .await
                .unwrap();
            let budget = RequestLogSettings {
                enabled: false,
                max_rows: 1000,
                ..settings()
            };
            let (log, writer) = RequestLog::new(pool.clone(), &budget, deps()).unwrap();
            let metrics = log.metrics().clone();
            drop(log);
            let started = std::time::Instant::now();
            writer.run().await;
            // Ids up to 3,500 are gone (3,400 rows, in two DELETEs and one pause); the 50
            // missing ids above make the log hold 950 rows, not more.
            assert_eq!(metrics.evicted(), 3400);
            assert!(started.elapsed() >= WRITE_PAUSE);
            let (first, last, rows): (i64, i64, i64) =
                sqlx::query_as("SELECT MIN(id), MAX(id), COUNT(*) FROM prediction_log")
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            assert_eq!((first, last, rows), (3501, 4500, 950));
        }
    }
}
