//! Middleware functions used in the router's `ServiceBuilder` stacks: metrics, JSON error
//! bodies for bare statuses from layers, header and body limits, load shedding, JWT
//! authorization per scope, and rate limiting per subject and per client address.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::error::{ApiError, rate_limit_headers};
use super::state::{AppState, Limits};
use crate::core::rate_limit::{self, RateLimited};
use crate::core::security::TokenError;

/// A bounded label for the method (custom methods would otherwise grow the label set).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// Decrements the in-flight gauge even when the request future is dropped.
struct InFlight<'a>(&'a prometheus::IntGauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The edge of every request, one layer: each `from_fn` layer boxes the request's future and
/// clones the inner service. In order:
/// - the in-flight gauge, then requests counted by matched route pattern (never the raw
///   path), method and status, and latency observed;
/// - the request's span (DEBUG: `method`, `route`, `request_id`) and its log line: a 500 at
///   ERROR with the detail its [`InternalError`] carries, a request slower than
///   `log.slow_request_ms` at WARN, any other at DEBUG (target `titanic::access`);
/// - headers over `max_header_bytes` refused with 431; bodies over the byte limit refused
///   with 413, at once when `Content-Length` says so, otherwise when reading passes the limit
///   (streamed CSV bodies are exempt); the limits go into the request's extensions for the
///   JSON extractor (nesting depth);
/// - the request timeout: 503 `timeout` when the response has not started in time;
/// - request bodies with `Content-Encoding: gzip` or `deflate` decoded as they are read, the
///   body limit applying to both the encoded body and what it decodes to (another coding is
///   415);
/// - bare statuses from layers (fallback, method router, body limit) given the service's JSON
///   error body, keeping headers such as `Allow`; under `/v2`, every error rewritten into the
///   protocol's `{"error": "..."}`;
/// - `Connection: close` on a response to a request whose body was not read to its end
///   (hyper then closes the connection; a keep-alive client must know), and on every
///   response while draining, so that no connection is left idle (and racing a new request
///   against the close) when the listener shuts.
// Kept: 1.3x the same work as separate layers, half their overhead (benches/machinery.rs).
pub async fn edge(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let metrics = &state.metrics;
    let start = Instant::now();
    // A clone of the matched path shares its text (no allocation per request).
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
    let method = method_label(req.method());
    metrics.http_in_flight.inc();
    let _guard = InFlight(&metrics.http_in_flight);
    let limits = state.limits;
    let request_id = req.headers().get(super::REQUEST_ID).cloned();
    let id = || {
        request_id
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    // At DEBUG: at the default level the span is never built, which is most of a line's cost.
    let span = tracing::debug_span!("request", method, route, request_id = id());
    let oip = super::oip::is_oip_path(req.uri().path());
    let (req, read) = watch_body(req);
    let mut response = match limit_request(limits, req) {
        Ok(req) => {
            let run = tokio::time::timeout(limits.request_timeout, next.run(req));
            match run.instrument(span).await {
                Ok(response) => json_errors(response),
                Err(_) => ApiError::Timeout.into_response(),
            }
        }
        Err(refused) => refused.into_response(),
    };
    // Every error under `/v2` (unknown routes and this layer's own refusals included) in the
    // protocol's shape: the V2 clients read `error` as a string.
    if oip && !response.status().is_success() {
        response = super::oip::flat_error(response).await;
    }
    // A body left unread (a refusal before it was read) ends the connection: say so, or a
    // keep-alive client would send its next request into a closing socket.
    let unread = read.is_some_and(|read| !read.load(Ordering::Acquire));
    if unread || state.lifecycle.is_draining() {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let status = response.status();
    metrics
        .http_requests
        .with_label_values(&[route, method, status.as_str()])
        .inc();
    let latency = start.elapsed();
    metrics
        .http_duration
        .with_label_values(&[route, method])
        .observe(latency.as_secs_f64());
    let latency_ms = latency.as_secs_f64() * 1e3;
    let status = status.as_u16();
    if let Some(InternalError(detail)) = response.extensions().get::<InternalError>() {
        tracing::error!(method, route, status, request_id = id(), error = %detail, "internal error");
    } else if latency >= state.slow_request {
        tracing::warn!(target: "titanic::access", method, route, status, latency_ms, request_id = id(), "slow request");
    } else {
        tracing::debug!(target: "titanic::access", method, route, status, latency_ms, request_id = id(), "answered");
    }
    response
}

/// The detail of a 500, carried from where it was made to [`edge`], which logs it with the
/// request's route and id (the client gets a generic message).
#[derive(Debug, Clone)]
pub struct InternalError(pub String);

/// Whether the request declares a body (a length above 0, or a transfer coding).
fn has_body(headers: &axum::http::HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}

/// The request with its body watched, and the flag that turns true once it has been read to
/// its end (`None` for a request without a body).
fn watch_body(req: Request) -> (Request, Option<Arc<AtomicBool>>) {
    if !has_body(req.headers()) {
        return (req, None);
    }
    let read = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&read);
    let req = req.map(|body| axum::body::Body::new(Holding { body, held: flag }));
    (req, Some(read))
}

/// A request body's flag, set once the body has been read to its end.
impl Held for Arc<AtomicBool> {
    fn ended(&self) {
        self.store(true, Ordering::Release);
    }
}

/// Layers (fallback, method router, body limit) answer with bare statuses; give them the
/// service's JSON error body, keeping headers such as `Allow`.
fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let allow = response.headers().get(header::ALLOW).cloned();
    let mut replaced = ApiError::from_status(status).into_response();
    if let Some(allow) = allow {
        replaced.headers_mut().insert(header::ALLOW, allow);
    }
    replaced
}

/// The longest request id accepted from a client.
pub const MAX_REQUEST_ID_BYTES: usize = 128;

/// A client's request id is kept when it is short and plain: 1 to [`MAX_REQUEST_ID_BYTES`]
/// visible ASCII characters. It is stored with every prediction it scores and written to
/// logs, so a long or odd one would cost disk and confuse readers.
pub fn is_plain_request_id(id: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID_BYTES).contains(&id.len()) && id.iter().all(|b| b.is_ascii_graphic())
}

/// A new request id: a UUID version 7 (RFC 9562), a millisecond timestamp then 74 random
/// bits from the thread's CSPRNG. Time-ordered ids append to the request log's `request_id`
/// index instead of dirtying a random page of it per row, and need no system call.
fn new_request_id() -> HeaderValue {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let random: [u8; 10] = rand::random();
    let id = uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid();
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    HeaderValue::from_bytes(id.hyphenated().encode_lower(&mut text).as_bytes())
        .unwrap_or(HeaderValue::from_static("-"))
}

/// Gives every request an `x-request-id`: the client's when [`is_plain_request_id`], else a
/// new one, which the response carries (tower-http's propagation layer copies it), so a
/// client whose id was refused learns the one its predictions are logged under.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestIdLayer;

impl<S> tower::Layer<S> for RequestIdLayer {
    type Service = RequestIds<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestIds(inner)
    }
}

#[derive(Debug, Clone)]
pub struct RequestIds<S>(S);

impl<S, B> tower::Service<axum::http::Request<B>> for RequestIds<S>
where
    S: tower::Service<axum::http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, mut req: axum::http::Request<B>) -> Self::Future {
        let headers = req.headers_mut();
        let mut given = headers.get_all(super::REQUEST_ID).iter();
        let keep = matches!(
            (given.next(), given.next()),
            (Some(id), None) if is_plain_request_id(id.as_bytes())
        );
        if !keep {
            headers.insert(super::REQUEST_ID, new_request_id());
        }
        self.0.call(req)
    }
}

/// True for a streamed CSV body (`POST /predict/batch` with `Content-Type: text/csv`), which
/// is read in bounded chunks and so not held to the body limit.
pub fn is_csv(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/csv"))
}

/// The request with its limits applied (see [`edge`]), or the refusal.
fn limit_request(limits: Limits, mut req: Request) -> Result<Request, ApiError> {
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if header_bytes > limits.max_header_bytes {
        return Err(ApiError::HeadersTooLarge(limits.max_header_bytes));
    }
    req.extensions_mut().insert(limits);
    if is_csv(req.headers()) {
        return Ok(req);
    }
    // A request without a body has nothing to decode, whatever it says.
    let coding = if has_body(req.headers()) {
        content_coding(req.headers())?
    } else {
        None
    };
    if is_csv(req.headers()) {
        return Ok(match coding {
            Some(coding) => decoded(req, coding),
            None => req,
        });
    }
    let limit = limits.body_limit_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::PayloadTooLarge);
    }
    let req = req.map(|body| axum::body::Body::new(http_body_util::Limited::new(body, limit)));
    Ok(match coding {
        // The limit again on what the body decodes to: a small body that inflates past it (a
        // decompression bomb) is 413 as soon as the decoder has produced `limit` bytes.
        Some(coding) => decoded(req, coding)
            .map(|body| axum::body::Body::new(http_body_util::Limited::new(body, limit))),
        None => req,
    })
}

/// A request body's `Content-Encoding` that the service decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Gzip,
    /// HTTP's `deflate`: the zlib format (RFC 1950), as browsers and the V2 clients send it.
    Deflate,
}

/// The request's content coding: none (or `identity`), `gzip` or `deflate`, else 415.
pub fn content_coding(headers: &axum::http::HeaderMap) -> Result<Option<Coding>, ApiError> {
    let mut values = headers.get_all(header::CONTENT_ENCODING).iter();
    let (value, more) = (values.next(), values.next());
    let Some(value) = value else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or("").trim();
    match text.to_ascii_lowercase().as_str() {
        _ if more.is_some() => {}
        "" | "identity" => return Ok(None),
        "gzip" | "x-gzip" => return Ok(Some(Coding::Gzip)),
        "deflate" => return Ok(Some(Coding::Deflate)),
        _ => {}
    }
    Err(ApiError::UnsupportedMediaType(
        "unsupported Content-Encoding; request bodies may be sent as gzip, deflate or identity"
            .to_owned(),
    ))
}

/// The request with its body decoded as a stream (async-compression), and the headers that
/// described the encoded body removed. A corrupt stream fails the body's read (400).
fn decoded(req: Request, coding: Coding) -> Request {
    use async_compression::tokio::bufread::{GzipDecoder, ZlibDecoder};
    use futures_util::TryStreamExt;
    use tokio_util::io::{ReaderStream, StreamReader};

    let (mut parts, body) = req.into_parts();
    parts.headers.remove(header::CONTENT_ENCODING);
    parts.headers.remove(header::CONTENT_LENGTH);
    let encoded = StreamReader::new(body.into_data_stream().map_err(std::io::Error::other));
    let body = match coding {
        Coding::Gzip => axum::body::Body::from_stream(ReaderStream::new(GzipDecoder::new(encoded))),
        Coding::Deflate => {
            axum::body::Body::from_stream(ReaderStream::new(ZlibDecoder::new(encoded)))
        }
    };
    Request::from_parts(parts, body)
}

/// A body that holds `held` (permits, slots, a guard whose drop says the response is over, a
/// flag) until it has been sent or dropped, and tells it when its end has been polled: a
/// streamed response keeps them while it streams.
pub struct Holding<G> {
    pub body: axum::body::Body,
    pub held: G,
}

/// What a [`Holding`] body holds.
pub trait Held: Send + Unpin + 'static {
    /// The body's end has been polled.
    fn ended(&self) {}
}

impl<A: Send + Unpin + 'static, B: Send + Unpin + 'static> Held for (A, B) {}

impl<G: Held> http_body::Body for Holding<G> {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.body.is_end_stream() {
            self.held.ended();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

fn bearer(req: &Request) -> Result<&str, TokenError> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or(TokenError::Missing)?;
    let value = value.to_str().map_err(|_| TokenError::Malformed)?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err(TokenError::Malformed),
    }
}

/// The configured proxy header naming the client's address (validated with the settings).
pub fn client_ip_header(
    settings: &crate::core::config::RateLimitSettings,
) -> Option<axum::http::HeaderName> {
    let name = settings.client_ip_header.trim();
    (!name.is_empty())
        .then(|| axum::http::HeaderName::try_from(name).ok())
        .flatten()
}

/// One address as a client writes it: `v4`, `v4:port`, `v6`, `[v6]` or `[v6]:port`.
fn parse_addr(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| {
            text.strip_prefix('[')
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse().ok())
        })
}

/// The bucket key of an address: IPv4 (also when mapped into IPv6) as it is, IPv6 by its /64,
/// the smallest block one subscriber usually holds, so a client cannot take a fresh bucket
/// per address of its prefix.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        v4 => v4,
    }
}

/// The client's address: the last value of the trusted proxy header when one is configured
/// and parses, otherwise the TCP peer (unspecified when the router runs without one).
pub fn client_ip(
    header: Option<&axum::http::HeaderName>,
    headers: &axum::http::HeaderMap,
    peer: Option<SocketAddr>,
) -> IpAddr {
    let forwarded = header.and_then(|name| {
        let last = headers.get_all(name).iter().next_back()?;
        parse_addr(last.to_str().ok()?.rsplit(',').next()?)
    });
    client_key(
        forwarded.unwrap_or_else(|| peer.map_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED), |p| p.ip())),
    )
}

fn client_of(state: &AppState, req: &Request) -> IpAddr {
    client_ip(
        state.client_ip_header.as_ref(),
        req.headers(),
        req.extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0),
    )
}

fn refused(state: &AppState, limited: RateLimited) -> ApiError {
    state.metrics.rate_limited.inc();
    ApiError::RateLimited(limited)
}

/// Routes behind a token, in this order: load shedding (at most
/// `server.max_concurrent_requests` such requests at once; the next is answered 503
/// `overloaded` with `Retry-After` at once instead of waiting, and the permit is held until
/// the response body has been sent, so a streamed CSV response keeps it while it streams);
/// after the token and the rate limit, the subject's share of those permits
/// (`server.max_concurrent_per_subject`, else 429 `too_many_in_flight`);
/// the bearer token is verified (refused: 401; a token
/// that looks forged or guessed also costs the client's address a cell of its open quota, and
/// once that is spent the answer is 429, so guessing tokens is slow); the subject's bucket for
/// the route's class is charged (429 when empty); the scope is required (403). The claims go
/// into the request extensions; the response (a 403 too) carries `RateLimit-*`.
pub async fn guard(
    State((state, scope)): State<(AppState, Option<&'static str>)>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Ok(permit) = state.concurrency.clone().try_acquire_owned() else {
        state.metrics.shed.inc();
        return Err(ApiError::Overloaded);
    };
    let claims = match bearer(&req).and_then(|token| state.keys.verify(token)) {
        Ok(claims) => claims,
        Err(e) => {
            state
                .metrics
                .auth_failures
                .with_label_values(&[e.reason()])
                .inc();
            if let Some(held_back) = state.refused_tokens.admit() {
                tracing::warn!(
                    reason = e.reason(),
                    client = %client_of(&state, &req),
                    held_back,
                    "token refused (held_back: refusals since the last such line)"
                );
            }
            // A missing, expired or not-yet-valid token, or one for another issuer or
            // audience, is an honest client's state: always 401, so it knows to get a new
            // one. Signatures, shapes, algorithms and key ids that do not fit are guesses.
            let guessed = matches!(
                e,
                TokenError::BadSignature
                    | TokenError::Malformed
                    | TokenError::DisallowedAlgorithm
                    | TokenError::UnknownKey
            );
            if guessed && let Err(limited) = state.limiter.check_client(client_of(&state, &req)) {
                return Err(refused(&state, limited));
            }
            return Err(ApiError::Unauthorized(e));
        }
    };
    let allowance = state
        .limiter
        .check_subject(rate_limit::class_of(scope), &claims.sub)
        .map_err(|limited| refused(&state, limited))?;
    let Some(slot) = state.subject_slots.try_acquire(&claims.sub) else {
        state.metrics.shed_subject.inc();
        let mut response = ApiError::TooManyInFlight(state.subject_slots.max()).into_response();
        rate_limit_headers(response.headers_mut(), &allowance);
        return Ok(response);
    };
    if let Some(scope) = scope.filter(|s| !claims.has_scope(s)) {
        state
            .metrics
            .auth_failures
            .with_label_values(&[crate::monitoring::metrics::MISSING_SCOPE])
            .inc();
        let mut response = ApiError::Forbidden(scope).into_response();
        rate_limit_headers(response.headers_mut(), &allowance);
        return Ok(response);
    }
    req.extensions_mut().insert(claims);
    let mut response = next.run(req).await.map(|body| {
        axum::body::Body::new(Holding {
            body,
            held: (permit, slot),
        })
    });
    rate_limit_headers(response.headers_mut(), &allowance);
    Ok(response)
}

/// Open routes other than the health probes: rate-limited per client address.
pub async fn limit_open(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let allowance = state
        .limiter
        .check_client(client_of(&state, &req))
        .map_err(|limited| refused(&state, limited))?;
    let mut response = next.run(req).await;
    rate_limit_headers(response.headers_mut(), &allowance);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderName, HeaderValue};

    #[test]
    fn client_addresses_from_the_peer_or_a_trusted_header() {
        let xff = HeaderName::from_static("x-forwarded-for");
        let peer: SocketAddr = "10.0.0.7:41000".parse().unwrap();
        let of = |values: &[&str]| {
            let mut headers = HeaderMap::new();
            for v in values {
                headers.append(&xff, HeaderValue::from_str(v).unwrap());
            }
            client_ip(Some(&xff), &headers, Some(peer)).to_string()
        };
        assert_eq!(of(&[]), "10.0.0.7");
        assert_eq!(of(&["203.0.113.9"]), "203.0.113.9");
        assert_eq!(of(&["203.0.113.9:5000"]), "203.0.113.9");
        assert_eq!(of(&["198.51.100.1, 203.0.113.9"]), "203.0.113.9");
        assert_eq!(
            of(&["198.51.100.1", "203.0.113.9"]),
            "203.0.113.9",
            "the last line"
        );
        assert_eq!(of(&["2001:db8:1:2:3:4:5:6"]), "2001:db8:1:2::");
        assert_eq!(of(&["[2001:db8:1:2::9]"]), "2001:db8:1:2::");
        assert_eq!(of(&["[2001:db8:1:2::9]:443"]), "2001:db8:1:2::");
        assert_eq!(
            of(&["::ffff:192.0.2.1"]),
            "192.0.2.1",
            "mapped IPv4 is IPv4"
        );
        assert_eq!(
            of(&["unknown"]),
            "10.0.0.7",
            "garbage falls back to the peer"
        );
        // Without a configured header, a client's own header is ignored.
        let mut headers = HeaderMap::new();
        headers.insert(&xff, HeaderValue::from_static("203.0.113.9"));
        assert_eq!(
            client_ip(None, &headers, Some(peer)).to_string(),
            "10.0.0.7"
        );
        assert_eq!(client_ip(None, &headers, None).to_string(), "::");
    }
}
