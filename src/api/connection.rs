//! One HTTP/1.1 connection: its IO watched so that a client cannot hold it without using it.
//! The watchdog closes a connection whose request head is not complete
//! `header_read_timeout` after its first byte, that has had no request for
//! `keep_alive_timeout`, or that moves no byte either way for `stall_timeout` while a request
//! is in flight (a client that stops reading its answer).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::middleware::{Held, Holding};
use crate::monitoring::Metrics;

/// How long a connection may be held without being used.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub header_read: Duration,
    pub keep_alive: Duration,
    pub stall: Duration,
}

/// How often an otherwise sleeping watchdog looks again: its deadlines hold to about this.
const TICK: Duration = Duration::from_millis(500);

/// What the connection's IO and requests tell the watchdog; times are milliseconds since the
/// connection opened (0 for "never" where it says so).
#[derive(Debug)]
struct Activity {
    opened: Instant,
    in_flight: AtomicU32,
    /// The last byte read or written.
    last_io: AtomicU64,
    /// 1 + the first byte read while no request was in flight (0: none).
    head_started: AtomicU64,
    /// When the connection last had no request in flight.
    idle_since: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            in_flight: AtomicU32::new(0),
            last_io: AtomicU64::new(0),
            head_started: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn moved(&self, read: bool) {
        let now = self.now();
        self.last_io.store(now, Ordering::Relaxed);
        if read
            && self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_started.load(Ordering::Relaxed) == 0
        {
            self.head_started.store(now + 1, Ordering::Relaxed);
        }
    }

    fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_started.store(0, Ordering::Relaxed);
    }

    fn request_finished(&self) {
        self.idle_since.store(self.now(), Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// When the connection is due to be closed as things stand, and why.
    fn deadline(&self, t: &Timeouts) -> (u64, &'static str) {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            let last = self.last_io.load(Ordering::Relaxed);
            (last.saturating_add(ms(t.stall)), "stalled")
        } else {
            match self.head_started.load(Ordering::Relaxed) {
                0 => {
                    let idle = self.idle_since.load(Ordering::Relaxed);
                    (idle.saturating_add(ms(t.keep_alive)), "idle_timeout")
                }
                started => (
                    (started - 1).saturating_add(ms(t.header_read)),
                    "header_timeout",
                ),
            }
        }
    }

    /// Resolves, with the reason, once the connection is past its deadline.
    async fn expired(&self, timeouts: Timeouts) -> &'static str {
        loop {
            let (deadline, reason) = self.deadline(&timeouts);
            let now = self.now();
            if now >= deadline {
                return reason;
            }
            let wait = Duration::from_millis(deadline - now).min(TICK);
            tokio::time::sleep(wait).await;
        }
    }
}

/// The socket, telling [`Activity`] of every byte that moves.
struct Watched {
    io: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.moved(true);
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.moved(false);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.moved(false);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Tells [`Activity`], when dropped with its response body, that the request is over.
struct Finished(Arc<Activity>);

impl Held for Finished {}

impl Drop for Finished {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// Serves one connection until it ends, its watchdog closes it, or `closing` turns true (then
/// the request in flight, if any, is finished first).
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    timeouts: Timeouts,
    metrics: Metrics,
    mut closing: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        io: stream,
        activity: Arc::clone(&activity),
    });
    let requests = Arc::clone(&activity);
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        requests.request_started();
        let mut req = req.map(Body::new);
        req.extensions_mut().insert(ConnectInfo(peer));
        let activity = Arc::clone(&requests);
        let response = tower::ServiceExt::oneshot(app.clone(), req);
        async move {
            let response = response.await.unwrap_or_else(|e: Infallible| match e {});
            Ok::<_, Infallible>(response.map(|body| {
                Body::new(Holding {
                    body,
                    held: Finished(activity),
                })
            }))
        }
    });
    let connection = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
    tokio::pin!(connection);
    tokio::select! {
        served = connection.as_mut() => {
            if let Err(e) = served {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
        }
        reason = activity.expired(timeouts) => {
            metrics.connections_closed.with_label_values(&[reason]).inc();
            tracing::debug!(reason, %peer, "closing a connection held without use");
        }
        _ = async { closing.wait_for(|closing| *closing).await.is_ok() } => {
            connection.as_mut().graceful_shutdown();
            tokio::select! {
                _ = connection.as_mut() => {}
                reason = activity.expired(timeouts) => {
                    metrics.connections_closed.with_label_values(&[reason]).inc();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeouts() -> Timeouts {
        Timeouts {
            header_read: Duration::from_secs(10),
            keep_alive: Duration::from_secs(60),
            stall: Duration::from_secs(30),
        }
    }

    #[test]
    fn the_deadline_follows_what_the_connection_does() {
        let a = Activity::new();
        assert_eq!(a.deadline(&timeouts()), (60_000, "idle_timeout"));
        // The first byte of a head starts the header timer.
        a.head_started.store(5_001, Ordering::Relaxed);
        assert_eq!(a.deadline(&timeouts()), (15_000, "header_timeout"));
        // A request in flight: only a stall closes it.
        a.request_started();
        a.last_io.store(20_000, Ordering::Relaxed);
        assert_eq!(a.deadline(&timeouts()), (50_000, "stalled"));
        // Bytes read during a request start no head.
        a.moved(true);
        assert_eq!(a.head_started.load(Ordering::Relaxed), 0);
        a.request_finished();
        let idle = a.idle_since.load(Ordering::Relaxed);
        assert_eq!(a.deadline(&timeouts()), (idle + 60_000, "idle_timeout"));
    }
}
