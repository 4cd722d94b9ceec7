//! Streaming batch prediction: `POST /predict/batch` with `Content-Type: text/csv` takes a
//! Kaggle-format CSV of any length and answers `PassengerId,Survived,Probability` rows as
//! they are scored. Request and response move through bounded channels, so memory stays
//! flat however large the input; the body limit does not apply.

use std::io::Read;
use std::sync::Arc;

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
    // The request timer covers only the header; after it, a client that sends nothing for
    // this long is cut off, so a trickling upload cannot hold its concurrency slot forever.
    let idle = state.limits.request_timeout;
    tokio::spawn(async move {
        let mut chunks = body.into_data_stream();
        loop {
            let chunk = match tokio::time::timeout(idle, chunks.next()).await {
                Ok(Some(chunk)) => chunk.map_err(|e| e.to_string()),
                Ok(None) => break,
                Err(_) => Err(format!(
                    "no request data for {} s; the upload was cut off",
                    idle.as_secs()
                )),
            };
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
    let mut csv = match PassengerCsv::new(reader) {
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
