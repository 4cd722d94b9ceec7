//! Binding the listener and serving until shutdown: on the signal, readiness turns 503 for
//! the drain period, the listener closes, and in-flight requests get a bounded time to finish.
//! Open connections are capped below the file-descriptor limit: one over the cap is answered
//! 503 and closed at once, so `accept` itself never runs out of descriptors.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::connection::{self, Timeouts};
use super::router;
use super::state::AppState;
use crate::core::os_user::OsUser;

/// A listener that could not be opened: the address, this process's user and what to change.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {address} (this process: {user}): {cause}; {fix}")]
pub struct BindError {
    pub address: String,
    pub user: String,
    pub cause: std::io::Error,
    pub fix: String,
}

impl BindError {
    fn new(host: &str, port: u16, cause: std::io::Error) -> Self {
        let address = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let fix = match cause.kind() {
            std::io::ErrorKind::AddrInUse => "another process listens there: stop it, or set \
                 TITANIC__SERVER__PORT to a free port"
                .to_owned(),
            std::io::ErrorKind::PermissionDenied => format!(
                "ports below 1024 need CAP_NET_BIND_SERVICE, which this user does not have: set \
                 TITANIC__SERVER__PORT to {} or another port from 1024 up",
                if port < 1024 { 8080 } else { port }
            ),
            std::io::ErrorKind::AddrNotAvailable => format!(
                "{host} is not an address of this host: set TITANIC__SERVER__HOST to one of its \
                 addresses, or 0.0.0.0 for every interface"
            ),
            _ => "set TITANIC__SERVER__HOST to an address of this host (0.0.0.0: every \
                  interface) and TITANIC__SERVER__PORT to a free port"
                .to_owned(),
        };
        Self {
            address,
            user: OsUser::current().to_string(),
            cause,
            fix,
        }
    }
}

pub struct Server {
    listener: TcpListener,
    state: AppState,
    drain: Duration,
    grace: Duration,
    background: Vec<tokio::task::JoinHandle<()>>,
    finishing: Vec<tokio::task::JoinHandle<()>>,
}

/// How long tasks that finish on their own (the request log's writer) get after the server
/// stops.
const FINISH_WITHIN: Duration = Duration::from_secs(10);

impl Server {
    /// Opens the listener on `host:port` (port 0 picks a free one): before anything slow, so
    /// that an address that cannot be served fails at once. Connections wait in its backlog
    /// until [`Server::run`] accepts them.
    pub async fn listen(host: &str, port: u16) -> Result<TcpListener, BindError> {
        TcpListener::bind((host, port))
            .await
            .map_err(|cause| BindError::new(host, port, cause))
    }

    /// A server on a listener from [`Server::listen`]; see [`Server::local_addr`].
    pub fn new(listener: TcpListener, state: AppState, drain: Duration, grace: Duration) -> Self {
        Self {
            listener,
            state,
            drain,
            grace,
            background: Vec::new(),
            finishing: Vec::new(),
        }
    }

    /// A background task that lives as long as the server and is stopped with it.
    pub fn with_task(mut self, task: tokio::task::JoinHandle<()>) -> Self {
        self.background.push(task);
        self
    }

    /// A task that ends by itself once the server and its state are gone (e.g. a writer
    /// draining its queue); the server waits for it, up to a bound, before returning.
    pub fn with_final_task(mut self, task: tokio::task::JoinHandle<()>) -> Self {
        self.finishing.push(task);
        self
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then drains and finishes in-flight requests.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let Server {
            listener,
            state,
            drain,
            grace,
            mut background,
            finishing,
        } = self;
        let lifecycle = state.lifecycle.clone();
        let limiter = state.limiter.clone();
        background.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                limiter.retain_recent();
            }
        }));
        let signal = async move {
            shutdown.await;
            lifecycle.start_draining();
            tracing::info!(
                drain_secs = drain.as_secs_f64(),
                "draining: readiness now 503"
            );
            tokio::time::sleep(drain).await;
            tracing::info!("closing the listener; finishing in-flight requests");
        };
        let server = &state.settings.server;
        let timeouts = Timeouts {
            header_read: Duration::from_secs(server.header_read_timeout_secs),
            keep_alive: Duration::from_secs(server.keep_alive_timeout_secs),
            stall: Duration::from_secs(server.stall_timeout_secs),
        };
        let cap = connection_cap(server.max_connections);
        let open = Arc::new(Semaphore::new(cap));
        let metrics = state.metrics.clone();
        let app = router(state);
        let (closing_tx, closing) = watch::channel(false);
        let mut connections = JoinSet::new();
        let mut accept_logged = None;
        tokio::pin!(signal);
        loop {
            let (stream, peer) = tokio::select! {
                () = &mut signal => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        accept_failed(&e, &mut accept_logged).await;
                        continue;
                    }
                },
            };
            while connections.try_join_next().is_some() {}
            let Ok(permit) = Arc::clone(&open).try_acquire_owned() else {
                metrics
                    .connections_closed
                    .with_label_values(&["refused"])
                    .inc();
                // Whatever the socket takes at once; the connection closes either way.
                let _ = stream.try_write(REFUSED);
                continue;
            };
            metrics.connections_open.inc();
            let (app, metrics, closing) = (app.clone(), metrics.clone(), closing.clone());
            connections.spawn(async move {
                connection::serve(stream, peer, app, timeouts, metrics.clone(), closing).await;
                metrics.connections_open.dec();
                drop(permit);
            });
        }
        drop(listener);
        let _ = closing_tx.send(true);
        let finished = async { while connections.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, finished).await.is_err() {
            tracing::warn!(
                grace_secs = grace.as_secs_f64(),
                "in-flight requests did not finish in time"
            );
        }
        connections.shutdown().await;
        // The router holds the state too: a writer that finishes when the state is gone (the
        // request log's, once every sender is dropped) would otherwise wait out FINISH_WITHIN.
        drop(app);
        for task in background {
            task.abort();
            // Wait for the abort, so the state the task held is released.
            let _ = task.await;
        }
        for task in finishing {
            let mut task = task;
            if tokio::time::timeout(FINISH_WITHIN, &mut task)
                .await
                .is_err()
            {
                tracing::warn!("a background writer did not finish in time");
                task.abort();
            }
        }
        tracing::info!("server stopped");
        Ok(())
    }
}

/// The answer to a connection over the cap, written without reading its request.
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 101\r\n\
\r\n\
{\"error\":{\"code\":\"overloaded\",\"message\":\"the service has too many open connections\",\"details\":null}}\n";

/// Descriptors kept for everything but client connections: the database pool, Redis, SQLite's
/// files, logs, the listener.
const RESERVED_FDS: u64 = 128;

/// `server.max_connections`, lowered to what the descriptor limit allows once the soft limit
/// has been raised to the hard one.
fn connection_cap(configured: usize) -> usize {
    let allowed = descriptor_limit().map(|limit| limit.saturating_sub(RESERVED_FDS).max(1));
    match allowed {
        Some(allowed) if (configured as u64) > allowed => {
            tracing::warn!(
                configured,
                allowed,
                "server.max_connections is above what the file-descriptor limit allows; \
                 capping it (raise `ulimit -n` to allow more)"
            );
            usize::try_from(allowed).unwrap_or(configured)
        }
        _ => configured,
    }
}

/// The soft `RLIMIT_NOFILE`, after raising it to the hard limit (the usual soft default,
/// 1024, is a historical leftover; the hard limit is what the administrator allows).
#[cfg(unix)]
fn descriptor_limit() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if let (Some(current), Some(maximum)) = (limit.current, limit.maximum)
        && current < maximum
    {
        let raised = Rlimit {
            current: Some(maximum),
            maximum: Some(maximum),
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            return Some(maximum);
        }
    }
    limit.current
}

#[cfg(not(unix))]
fn descriptor_limit() -> Option<u64> {
    None
}

/// A failed `accept`: a connection reset before it was taken is nothing; running out of
/// descriptors or memory is logged (at most once a second) and waited out briefly.
async fn accept_failed(e: &std::io::Error, last_logged: &mut Option<std::time::Instant>) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    if last_logged.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
        *last_logged = Some(std::time::Instant::now());
        tracing::error!(error = %e, "accept failed");
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
}
