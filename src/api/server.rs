//! Binding the listener and serving until shutdown: on the signal, readiness turns 503 for
//! the drain period, the listener closes, and in-flight requests get a bounded time to finish.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;

use super::router;
use super::state::AppState;

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
    /// Binds `host:port` (port 0 picks a free one; see [`Server::local_addr`]).
    pub async fn bind(
        host: &str,
        port: u16,
        state: AppState,
        drain: Duration,
        grace: Duration,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind((host, port)).await?;
        Ok(Self {
            listener,
            state,
            drain,
            grace,
            background: Vec::new(),
            finishing: Vec::new(),
        })
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
        let (stopping_tx, mut stopping_rx) = tokio::sync::watch::channel(false);
        let signal = async move {
            shutdown.await;
            lifecycle.start_draining();
            let _ = stopping_tx.send(true);
            tracing::info!(
                drain_secs = drain.as_secs_f64(),
                "draining: readiness now 503"
            );
            tokio::time::sleep(drain).await;
            tracing::info!("closing the listener; finishing in-flight requests");
        };
        let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
        let serve = axum::serve(listener, app).with_graceful_shutdown(signal);
        let deadline = async move {
            let _ = stopping_rx.wait_for(|stopping| *stopping).await;
            tokio::time::sleep(drain + grace).await;
        };
        let result = tokio::select! {
            result = serve.into_future() => result,
            () = deadline => {
                tracing::warn!(grace_secs = grace.as_secs_f64(), "in-flight requests did not finish in time");
                Ok(())
            }
        };
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
        result
    }
}
