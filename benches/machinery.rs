//! The hand-written pieces against the crates they stand in for, on their real workloads
//! (results in docs/benchmarks.md, "Hand-written pieces against crates"):
//! - `json`: `WriteJson` against `serde_json` for a prediction response, a batch of 100 and a
//!   request log row;
//! - `key_hasher`: the companion tables' former `KeyHasher` against foldhash (now used), rustc-hash (Fx) and
//!   std's SipHash, looking up every training passenger's ticket and surname;
//! - `recent`: the feedback ring against a `VecDeque` with two `HashMap` indexes and against
//!   two `moka` caches (what the ring replaced), full at the default 100,000 predictions;
//! - `edge`: one `from_fn` edge layer against the same work as separate layers (tower-http's
//!   trace, timeout and body limit, plus `from_fn` metrics, header limit and JSON errors),
//!   on a minimal router. The real `edge` needs an `AppState`; this is a faithful copy of its
//!   per-request work without the OIP rewrite, body watch and draining check.
//!
//! cargo bench --bench machinery -- --measurement-time 3 --warm-up-time 1

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark or example stops at its first failure

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, RandomState};
use std::hint::black_box;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use titanic::api::predict::{BatchResponse, Contributions, PredictionResponse};
use titanic::core::json::WriteJson;
use titanic::feature_store::pipeline::N_FEATURES;
use titanic::feature_store::{Passenger, ingest};
use titanic::ml::dataset::TrainingSet;
use titanic::monitoring::performance::Scored;
use titanic::monitoring::recent::RecentPredictions;

fn passengers() -> Vec<Passenger> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/titanic/train.csv");
    let records = ingest::read_all(&path, ingest::DEFAULT_MAX_RECORD_BYTES).expect("train.csv");
    TrainingSet::from_records(&records).passengers
}

fn response(passenger_id: i64) -> PredictionResponse {
    let mut contributions = [0.0; N_FEATURES];
    for (i, c) in contributions.iter_mut().enumerate() {
        *c = (i as f64 - 6.5) * 0.123_456_789;
    }
    PredictionResponse {
        passenger_id: Some(passenger_id),
        survived: true,
        probability: 0.731_058_578_630_004_9,
        model_version: Arc::from("3"),
        logit: 1.000_123_456_7,
        intercept: -0.251_234_5,
        contributions: Contributions(contributions),
        features: None,
    }
}

fn json(c: &mut Criterion) {
    let one = response(892);
    let batch = BatchResponse {
        model_version: Arc::from("3"),
        predictions: (0..100).map(response).collect(),
    };
    assert_eq!(one.to_json(0), serde_json::to_vec(&one).unwrap());
    assert_eq!(batch.to_json(0), serde_json::to_vec(&batch).unwrap());
    let passenger = passengers().swap_remove(0);
    assert_eq!(
        passenger.raw_json(Some(1)),
        serde_json::to_string(&passenger.to_raw(Some(1))).unwrap()
    );

    let mut group = c.benchmark_group("json");
    group.bench_function("response/write_json", |b| {
        b.iter(|| black_box(black_box(&one).to_json(1024)))
    });
    group.bench_function("response/serde_json", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(1024);
            serde_json::to_writer(&mut out, black_box(&one)).unwrap();
            black_box(out)
        })
    });
    group.bench_function("batch100/write_json", |b| {
        b.iter(|| black_box(black_box(&batch).to_json(1024)))
    });
    group.bench_function("batch100/serde_json", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(1024);
            serde_json::to_writer(&mut out, black_box(&batch)).unwrap();
            black_box(out)
        })
    });
    group.bench_function("log_row/write_json", |b| {
        b.iter(|| black_box(black_box(&passenger).raw_json(Some(1))))
    });
    group.bench_function("log_row/serde_json", |b| {
        b.iter(|| {
            let raw = black_box(&passenger).to_raw(Some(1));
            black_box(serde_json::to_string(&raw).unwrap())
        })
    });
    group.finish();
}

fn surname(p: &Passenger) -> Option<&str> {
    Some(p.name.as_deref()?.split_once(',')?.0.trim())
}

/// The companion tables' lookups for every training passenger (ticket, surname, ticket
/// among the unlabelled), with hasher `S`.
fn key_lookups<S: BuildHasher + Default>(c: &mut Criterion, name: &str, ps: &[Passenger]) {
    let mut tickets: HashMap<String, Vec<u32>, S> = HashMap::default();
    let mut surnames: HashMap<String, Vec<u32>, S> = HashMap::default();
    for (i, p) in ps.iter().enumerate() {
        if let Some(t) = &p.ticket {
            tickets.entry(t.clone()).or_default().push(i as u32);
        }
        if let Some(s) = surname(p) {
            surnames.entry(s.to_owned()).or_default().push(i as u32);
        }
    }
    let unlabelled: HashMap<String, Vec<u32>, S> = HashMap::default();
    c.bench_function(&format!("key_hasher/lookups_891x3/{name}"), |b| {
        b.iter(|| {
            let mut found = 0usize;
            for p in black_box(ps) {
                let t = p.ticket.as_deref();
                found += t.and_then(|t| tickets.get(t)).map_or(0, Vec::len);
                found += surname(p).and_then(|s| surnames.get(s)).map_or(0, Vec::len);
                found += t.and_then(|t| unlabelled.get(t)).map_or(0, Vec::len);
            }
            black_box(found)
        })
    });
    c.bench_function(&format!("key_hasher/build_891x2/{name}"), |b| {
        b.iter(|| {
            let mut tickets: HashMap<String, Vec<u32>, S> = HashMap::default();
            let mut surnames: HashMap<String, Vec<u32>, S> = HashMap::default();
            for (i, p) in black_box(ps).iter().enumerate() {
                if let Some(t) = &p.ticket {
                    tickets.entry(t.clone()).or_default().push(i as u32);
                }
                if let Some(s) = surname(p) {
                    surnames.entry(s.to_owned()).or_default().push(i as u32);
                }
            }
            black_box((tickets, surnames))
        })
    });
}

/// The word-at-a-time hasher the companion tables had before foldhash, for the record.
#[derive(Debug, Clone, Copy, Default)]
struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
        }
    }

    #[inline]
    fn write_u8(&mut self, byte: u8) {
        self.0 = (self.0.rotate_left(5) ^ u64::from(byte)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29)
    }
}

fn key_hasher(c: &mut Criterion) {
    let ps = passengers();
    key_lookups::<BuildHasherDefault<KeyHasher>>(c, "KeyHasher", &ps);
    key_lookups::<foldhash::fast::RandomState>(c, "foldhash_fast", &ps);
    key_lookups::<foldhash::quality::RandomState>(c, "foldhash_quality", &ps);
    key_lookups::<rustc_hash::FxBuildHasher>(c, "rustc_hash", &ps);
    key_lookups::<RandomState>(c, "std_siphash", &ps);
}

/// The obvious alternative to the ring: the predictions in a `VecDeque`, with `HashMap`s
/// from request id and passenger id to a sequence number, entries removed on eviction.
struct StdRecent {
    capacity: usize,
    inner: Mutex<StdInner>,
}

struct StdInner {
    ring: VecDeque<Scored>,
    first: u64,
    by_request: HashMap<Arc<str>, u64>,
    by_passenger: HashMap<i64, u64>,
}

impl StdRecent {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new(StdInner {
                ring: VecDeque::with_capacity(capacity),
                first: 0,
                by_request: HashMap::new(),
                by_passenger: HashMap::new(),
            }),
        }
    }

    fn insert(&self, scored: &[Scored]) {
        let mut g = self.inner.lock().unwrap();
        let inner = &mut *g;
        for s in scored {
            if inner.ring.len() == self.capacity {
                let old = inner.ring.pop_front().unwrap();
                let seq = inner.first;
                inner.first += 1;
                if old.position == 0 && inner.by_request.get(&old.request_id) == Some(&seq) {
                    inner.by_request.remove(&old.request_id);
                }
                if let Some(p) = old.passenger_id
                    && inner.by_passenger.get(&p) == Some(&seq)
                {
                    inner.by_passenger.remove(&p);
                }
            }
            let seq = inner.first + inner.ring.len() as u64;
            if s.position == 0 {
                inner.by_request.insert(Arc::clone(&s.request_id), seq);
            }
            if let Some(p) = s.passenger_id {
                inner.by_passenger.insert(p, seq);
            }
            inner.ring.push_back(s.clone());
        }
    }

    fn by_request(&self, id: &str) -> Option<Vec<Scored>> {
        let g = self.inner.lock().unwrap();
        let start = (*g.by_request.get(id)? - g.first) as usize;
        Some(
            g.ring
                .range(start..)
                .enumerate()
                .take_while(|(i, s)| &*s.request_id == id && s.position as usize == *i)
                .map(|(_, s)| s.clone())
                .collect(),
        )
    }

    fn by_passenger(&self, id: i64) -> Option<Scored> {
        let g = self.inner.lock().unwrap();
        let seq = *g.by_passenger.get(&id)?;
        Some(g.ring[(seq - g.first) as usize].clone())
    }
}

/// What the ring replaced: two moka caches.
struct MokaRecent {
    by_request: moka::sync::Cache<Arc<str>, Arc<[Scored]>>,
    by_passenger: moka::sync::Cache<i64, Scored>,
}

impl MokaRecent {
    fn new(capacity: u64) -> Self {
        Self {
            by_request: moka::sync::Cache::new(capacity),
            by_passenger: moka::sync::Cache::new(capacity),
        }
    }

    fn insert(&self, scored: &[Scored]) {
        let Some(first) = scored.first() else { return };
        self.by_request
            .insert(Arc::clone(&first.request_id), Arc::from(scored));
        for s in scored {
            if let Some(p) = s.passenger_id {
                self.by_passenger.insert(p, s.clone());
            }
        }
    }
}

const RING: usize = 100_000;

fn recent(c: &mut Criterion) {
    let version: Arc<str> = Arc::from("3");
    // Single predictions as the service makes them: a UUID request id, a passenger id.
    let pool: Vec<Scored> = (0..4 * RING as i64)
        .map(|i| Scored {
            request_id: Arc::from(uuid::Uuid::new_v4().hyphenated().to_string()),
            position: 0,
            passenger_id: Some((i * 7919) % 1_000_000),
            probability: 0.5,
            model_version: Arc::clone(&version),
            at: i,
        })
        .collect();
    let ring = RecentPredictions::new(RING);
    let std = StdRecent::new(RING);
    let moka = MokaRecent::new(RING as u64);
    for s in &pool[..RING] {
        ring.insert(std::slice::from_ref(s));
        std.insert(std::slice::from_ref(s));
        moka.insert(std::slice::from_ref(s));
    }
    moka.by_request.run_pending_tasks();
    moka.by_passenger.run_pending_tasks();

    let mut group = c.benchmark_group("recent");
    // Lookups of predictions all three still hold (the newest tenth of the fill).
    let recent: Vec<&Scored> = pool[RING - RING / 10..RING].iter().collect();
    let held = |s: &&Scored| {
        ring.by_request(&s.request_id, 0).is_some() && std.by_request(&s.request_id).is_some()
    };
    let recent: Vec<&Scored> = recent.into_iter().filter(held).collect();
    let mut i = 0;
    group.bench_function("by_request/ring", |b| {
        b.iter(|| {
            i = (i + 1) % recent.len();
            black_box(ring.by_request(&recent[i].request_id, 0))
        })
    });
    let mut i = 0;
    group.bench_function("by_request/vecdeque_hashmap", |b| {
        b.iter(|| {
            i = (i + 1) % recent.len();
            black_box(std.by_request(&recent[i].request_id))
        })
    });
    let mut i = 0;
    group.bench_function("by_request/moka", |b| {
        b.iter(|| {
            i = (i + 1) % recent.len();
            black_box(moka.by_request.get(&recent[i].request_id))
        })
    });
    let mut i = 0;
    group.bench_function("by_passenger/ring", |b| {
        b.iter(|| {
            i = (i + 1) % recent.len();
            black_box(ring.by_passenger(recent[i].passenger_id.unwrap(), 0))
        })
    });
    let mut i = 0;
    group.bench_function("by_passenger/vecdeque_hashmap", |b| {
        b.iter(|| {
            i = (i + 1) % recent.len();
            black_box(std.by_passenger(recent[i].passenger_id.unwrap()))
        })
    });
    let mut i = RING;
    group.bench_function("insert/ring", |b| {
        b.iter(|| {
            i = if i + 1 == pool.len() { RING } else { i + 1 };
            ring.insert(std::slice::from_ref(&pool[i]));
        })
    });
    let mut i = RING;
    group.bench_function("insert/vecdeque_hashmap", |b| {
        b.iter(|| {
            i = if i + 1 == pool.len() { RING } else { i + 1 };
            std.insert(std::slice::from_ref(&pool[i]));
        })
    });
    let mut i = RING;
    group.bench_function("insert/moka", |b| {
        b.iter(|| {
            i = if i + 1 == pool.len() { RING } else { i + 1 };
            moka.insert(std::slice::from_ref(&pool[i]));
        })
    });
    group.finish();
}

mod edge {
    use super::*;
    use axum::Router;
    use axum::body::{Body, Bytes};
    use axum::extract::{MatchedPath, Request, State};
    use axum::http::{HeaderValue, StatusCode, header};
    use axum::middleware::{self, Next};
    use axum::response::{IntoResponse, Response};
    use axum::routing::post;
    use http_body_util::BodyExt;
    use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts};
    use tower::{ServiceBuilder, ServiceExt};
    use tower_http::limit::RequestBodyLimitLayer;
    use tower_http::timeout::TimeoutLayer;
    use tower_http::trace::TraceLayer;
    use tracing::Instrument;

    const MAX_HEADER_BYTES: usize = 16 * 1024;
    const BODY_LIMIT: usize = 1 << 20;
    const TIMEOUT: Duration = Duration::from_secs(10);

    #[derive(Clone)]
    pub struct Metrics {
        in_flight: IntGauge,
        requests: IntCounterVec,
        duration: HistogramVec,
    }

    impl Metrics {
        fn new() -> Self {
            Self {
                in_flight: IntGauge::new("in_flight", "h").unwrap(),
                requests: IntCounterVec::new(
                    Opts::new("requests", "h"),
                    &["route", "method", "status"],
                )
                .unwrap(),
                duration: HistogramVec::new(
                    HistogramOpts::new("duration", "h"),
                    &["route", "method"],
                )
                .unwrap(),
            }
        }
    }

    struct InFlight<'a>(&'a IntGauge);

    impl Drop for InFlight<'_> {
        fn drop(&mut self) {
            self.0.dec();
        }
    }

    fn header_bytes(req: &Request) -> usize {
        req.headers()
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len())
            .sum()
    }

    fn json_errors(response: Response) -> Response {
        let status = response.status();
        let is_json = response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
        if !(status.is_client_error() || status.is_server_error()) || is_json {
            return response;
        }
        (status, [(header::CONTENT_TYPE, "application/json")], "{}").into_response()
    }

    fn observe(m: &Metrics, route: &str, status: StatusCode, start: Instant) {
        m.requests
            .with_label_values(&[route, "POST", status.as_str()])
            .inc();
        m.duration
            .with_label_values(&[route, "POST"])
            .observe(start.elapsed().as_secs_f64());
    }

    /// The merged layer: the same steps as `titanic::api::middleware::edge`.
    async fn merged(State(m): State<Metrics>, req: Request, next: Next) -> Response {
        let start = Instant::now();
        let matched = req.extensions().get::<MatchedPath>().cloned();
        let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
        m.in_flight.inc();
        let _guard = InFlight(&m.in_flight);
        let request_id = req.headers().get("x-request-id").cloned();
        let id = || {
            request_id
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
        };
        let span = tracing::debug_span!("request", method = "POST", route, request_id = id());
        let response = if header_bytes(&req) > MAX_HEADER_BYTES {
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE.into_response()
        } else if req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n > BODY_LIMIT as u64)
        {
            StatusCode::PAYLOAD_TOO_LARGE.into_response()
        } else {
            let req = req.map(|b| Body::new(http_body_util::Limited::new(b, BODY_LIMIT)));
            match tokio::time::timeout(TIMEOUT, next.run(req))
                .instrument(span)
                .await
            {
                Ok(response) => json_errors(response),
                Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
            }
        };
        observe(&m, route, response.status(), start);
        tracing::debug!(target: "titanic::access", route, status = response.status().as_u16(), request_id = id(), "answered");
        response
    }

    async fn metrics(State(m): State<Metrics>, req: Request, next: Next) -> Response {
        let start = Instant::now();
        let matched = req.extensions().get::<MatchedPath>().cloned();
        let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
        m.in_flight.inc();
        let _guard = InFlight(&m.in_flight);
        let response = next.run(req).await;
        observe(&m, route, response.status(), start);
        response
    }

    async fn header_limit(req: Request, next: Next) -> Response {
        if header_bytes(&req) > MAX_HEADER_BYTES {
            return StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE.into_response();
        }
        next.run(req).await
    }

    async fn errors(req: Request, next: Next) -> Response {
        json_errors(next.run(req).await)
    }

    async fn handler(body: Bytes) -> Response {
        black_box(body);
        (
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"survived":true,"probability":0.73}"#,
        )
            .into_response()
    }

    pub fn routers() -> [(&'static str, Router); 3] {
        let m = Metrics::new();
        let bare = Router::new().route("/predict", post(handler));
        let merged = Router::new()
            .route("/predict", post(handler))
            .layer(middleware::from_fn_with_state(m.clone(), merged));
        let split = Router::new().route("/predict", post(handler)).layer(
            ServiceBuilder::new()
                .layer(middleware::from_fn_with_state(m, metrics))
                .layer(TraceLayer::new_for_http())
                .layer(middleware::from_fn(errors))
                .layer(middleware::from_fn(header_limit))
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::SERVICE_UNAVAILABLE,
                    TIMEOUT,
                ))
                .layer(RequestBodyLimitLayer::new(BODY_LIMIT)),
        );
        [("bare", bare), ("merged", merged), ("split", split)]
    }

    pub fn request() -> Request {
        let body = format!(
            "{{\"pclass\":3,\"sex\":\"male\",\"age\":22,\"name\":\"{:150}\"}}",
            ""
        );
        let mut req = Request::post("/predict")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CONTENT_LENGTH, body.len())
            .body(Body::from(body))
            .unwrap();
        req.headers_mut().insert(
            "x-request-id",
            HeaderValue::from_static("01a23ada-6c11-7f26-8cb6-151a7fbb3617"),
        );
        req
    }

    pub async fn call(router: &Router) -> Bytes {
        let response = router.clone().oneshot(request()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.into_body().collect().await.unwrap().to_bytes()
    }
}

fn edge_layers(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("edge");
    for (name, router) in edge::routers() {
        group.bench_function(name, |b| {
            b.iter(|| black_box(rt.block_on(edge::call(&router))))
        });
    }
    group.finish();
}

criterion_group!(benches, json, key_hasher, recent, edge_layers);
criterion_main!(benches);
