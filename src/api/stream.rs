//! Streaming batch prediction: `POST /predict/batch` with `Content-Type: text/csv` takes a
//! Kaggle-format CSV of any length and answers `PassengerId,Survived,Probability` rows as
//! they are scored. Request and response move through bounded channels, so memory stays
//! flat however large the input; the body limit does not apply.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};

use super::error::ApiError;
use super::routing::{self, Choice};
use super::state::AppState;
use crate::feature_store::ingest::PassengerCsv;
use crate::monitoring::{Record, RequestInfo};

/// Chunks in flight each way.
const CHANNEL_DEPTH: usize = 8;
/// Output is sent in chunks of about this size.
const CHUNK: usize = 64 * 1024;

/// A blocking `Read` over request body chunks arriving on a channel.
struct ChannelReader {
    rx: mpsc::Receiver<Result<Bytes, String>>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(bytes)) => self.current = bytes,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// The pace of an upload: over each `window` of time spent waiting for the client (not for
/// the scorer), at least `min_rate` bytes per second and one byte must arrive.
struct Pace {
    window: Duration,
    needed: u64,
    waited: Duration,
    received: u64,
}

impl Pace {
    fn new(window: Duration, min_rate: u64) -> Self {
        let needed = ((min_rate as f64) * window.as_secs_f64()).ceil() as u64;
        Self {
            window,
            needed: needed.max(1),
            waited: Duration::ZERO,
            received: 0,
        }
    }

    /// How long the next wait for the client may last.
    fn left(&self) -> Duration {
        self.window.saturating_sub(self.waited)
    }

    /// Counts a wait and what it brought; an error when a window ends short.
    fn after(&mut self, waited: Duration, received: usize) -> Result<(), String> {
        self.waited += waited;
        self.received += received as u64;
        if self.waited < self.window {
            return Ok(());
        }
        let (got, secs) = (self.received, self.window.as_secs_f64());
        self.waited = Duration::ZERO;
        self.received = 0;
        if got >= self.needed {
            Ok(())
        } else {
            Err(format!(
                "the upload sent {got} bytes in {secs} s, below the minimum of {} bytes in \
                 that time (server.min_upload_bytes_per_sec); it was cut off",
                self.needed
            ))
        }
    }
}

/// Scores a streamed CSV body. A bad header is answered with 422 before anything is sent;
/// a bad row later ends the response with a last line `error: line N: ...`.
pub async fn predict_csv(
    state: AppState,
    request: RequestInfo,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let choice = routing::choose(&state, headers, None).await?;
    let version = choice.served.model.version().to_string();
    let (in_tx, in_rx) = mpsc::channel::<Result<Bytes, String>>(CHANNEL_DEPTH);
    let (out_tx, out_rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(CHANNEL_DEPTH);
    let (ready_tx, ready_rx) = oneshot::channel::<Result<(), String>>();
    // The request timer covers only the header; after it, the upload must keep up a minimum
    // rate over every window of the request timeout, so a trickle cannot hold its slot.
    let window = state.limits.request_timeout;
    let min_rate = state.limits.min_upload_bytes_per_sec;
    let slow_uploads = state.metrics.slow_uploads.clone();
    tokio::spawn(async move {
        let mut chunks = body.into_data_stream();
        let mut pace = Pace::new(window, min_rate);
        loop {
            let waited = std::time::Instant::now();
            let next = tokio::time::timeout(pace.left(), chunks.next()).await;
            let received = match &next {
                Ok(Some(Ok(bytes))) => bytes.len(),
                _ => 0,
            };
            let chunk = match next {
                Ok(Some(chunk)) => chunk.map_err(|e| e.to_string()),
                Ok(None) => break,
                Err(_) => Ok(Bytes::new()),
            };
            let chunk = match pace.after(waited.elapsed(), received) {
                Ok(()) => chunk,
                Err(message) => {
                    slow_uploads.inc();
                    Err(message)
                }
            };
            if chunk.as_ref().is_ok_and(Bytes::is_empty) {
                continue;
            }
            let failed = chunk.is_err();
            if in_tx.send(chunk).await.is_err() || failed {
                break;
            }
        }
    });
    tokio::task::spawn_blocking(move || {
        score_rows(&state, &request, &choice, in_rx, &out_tx, ready_tx);
    });
    match ready_rx.await {
        Ok(Ok(())) => {}
        Ok(Err(message)) => {
            return Err(ApiError::Validation(
                crate::feature_store::ValidationErrors::single("body", message),
            ));
        }
        Err(_) => return Err(ApiError::Internal("the CSV reader stopped".to_owned())),
    }
    let stream = futures_util::stream::unfold(out_rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut response = Response::new(Body::from_stream(stream));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&version) {
        h.insert(routing::MODEL_VERSION_HEADER, v);
    }
    Ok(response)
}

fn score_rows(
    state: &AppState,
    request: &RequestInfo,
    choice: &Choice,
    in_rx: mpsc::Receiver<Result<Bytes, String>>,
    out_tx: &mpsc::Sender<Result<Bytes, std::io::Error>>,
    ready: oneshot::Sender<Result<(), String>>,
) {
    use std::fmt::Write as _;
    let reader = ChannelReader {
        rx: in_rx,
        current: Bytes::new(),
    };
    let mut csv = match PassengerCsv::new(reader, state.settings.data.max_csv_record_bytes) {
        Ok(csv) => {
            let _ = ready.send(Ok(()));
            csv
        }
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return;
        }
    };
    let model = &choice.served.model;
    let mut out = String::with_capacity(CHUNK + 256);
    out.push_str("PassengerId,Survived,Probability\n");
    let (mut survived, mut died) = (0u64, 0u64);
    let mut records = Vec::new();
    let mut position = 0usize;
    let flush = |out: &mut String| {
        out_tx
            .blocking_send(Ok(Bytes::from(std::mem::take(out))))
            .is_ok()
    };
    while let Some(record) = csv.next_record() {
        match record {
            Ok(r) => {
                let p = model.predict(&r.passenger);
                if let Some(shadow) = &choice.shadow {
                    routing::shadow_compare(state, &shadow.model, &r.passenger, &p);
                }
                if p.survived() {
                    survived += 1;
                } else {
                    died += 1;
                }
                let _ = writeln!(
                    out,
                    "{},{},{:.6}",
                    r.passenger_id,
                    u8::from(p.survived()),
                    p.probability
                );
                records.push(Record {
                    position: u32::try_from(position).unwrap_or(u32::MAX),
                    passenger_id: Some(r.passenger_id),
                    passenger: r.passenger,
                    probability: p.probability,
                    model_version: Arc::clone(model.version()),
                });
                position += 1;
            }
            Err(e) => {
                let _ = writeln!(out, "error: {e}");
                break;
            }
        }
        if out.len() >= CHUNK {
            let records = std::mem::take(&mut records);
            state.monitor.record(request, records, false);
            if !flush(&mut out) {
                // The client went away.
                break;
            }
        }
    }
    state.monitor.record(request, records, false);
    if !out.is_empty() {
        flush(&mut out);
    }
    let version = model.version();
    let metric = &state.metrics.predictions;
    metric
        .with_label_values(&["survived", version])
        .inc_by(survived);
    metric.with_label_values(&["died", version]).inc_by(died);
}

#[cfg(test)]
mod tests {
    use super::Pace;
    use std::time::Duration;

    #[test]
    fn an_upload_below_the_minimum_rate_is_cut_off_by_window() {
        let second = Duration::from_secs(1);
        let mut pace = Pace::new(Duration::from_secs(10), 100);
        // 1,000 bytes over the first 10 s of waiting: just enough.
        for _ in 0..10 {
            assert!(pace.after(second, 100).is_ok());
        }
        // Time spent waiting for the scorer does not count: only waits are added.
        assert_eq!(pace.left(), Duration::from_secs(10));
        // The next window brings 999.
        for _ in 0..9 {
            assert!(pace.after(second, 111).is_ok());
        }
        let err = pace.after(second, 0).unwrap_err();
        assert!(err.contains("sent 999 bytes"), "{err}");
        // A minimum of 0 still wants a byte per window.
        let mut idle = Pace::new(Duration::from_secs(10), 0);
        assert!(idle.after(Duration::from_secs(10), 0).is_err());
    }
}
