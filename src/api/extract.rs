//! Extractors whose rejections are the service's own [`ApiError`], so malformed JSON gets the
//! same error shape as everything else.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::state::Limits;
use crate::core::json::WriteJson;
use crate::core::security::Claims;
use crate::monitoring::RequestInfo;

/// The request id (set by the request-id layer), the token's subject and the time the
/// request reached its handler: what monitoring records with each prediction.
#[derive(Debug, Clone)]
pub struct Requested(pub RequestInfo);

impl Requested {
    pub fn of(parts: &Parts) -> RequestInfo {
        let request_id = parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map_or_else(|| Arc::from(uuid::Uuid::new_v4().to_string()), Arc::from);
        RequestInfo {
            request_id,
            subject: parts
                .extensions
                .get::<Arc<Claims>>()
                .map(|c| Arc::from(c.sub.as_str())),
            started: std::time::Instant::now(),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Requested {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Requested(Requested::of(parts)))
    }
}

/// `axum::Json` with [`ApiError`] rejections: 400 for syntax or nesting deeper than
/// `server.max_json_depth`, 422 naming the field for wrong types, unknown fields or an array
/// or object of more than `server.max_batch_size` items, 413 for oversized bodies, 415
/// for a content type other than JSON. A body without `Content-Type` is read as JSON: the
/// official V2 and Feast clients send none.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

/// The nesting and item limits when the request carries no [`Limits`] (a router without the
/// stack).
const DEFAULT_MAX_JSON_DEPTH: usize = 32;
const DEFAULT_MAX_ITEMS: usize = 10_000;

/// No `Content-Type`, `application/json`, or any `application/*+json`, with any parameters.
pub fn is_json(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers.get(axum::http::header::CONTENT_TYPE) else {
        return true;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json")
            || subtype.len() > 5 && subtype[subtype.len() - 5..].eq_ignore_ascii_case("+json"))
}

/// One open array or object while [`check_structure`] scans a body.
struct Open {
    array: bool,
    /// Items seen so far, counted at each comma (the last is counted at the close).
    items: usize,
    /// In an object: the byte range of the latest key (to name the field of an error).
    key: (usize, usize),
}

/// The most keys of one JSON object in a request body: no object of this API has more than
/// a few dozen.
pub const MAX_OBJECT_KEYS: usize = 1024;

/// Refuses, before it is parsed, JSON whose arrays and objects nest deeper than `max_depth`,
/// any of whose arrays holds more than `max_items` items, or any of whose objects more than
/// [`MAX_OBJECT_KEYS`] keys: so no body can make the parser recurse past the limit or build a
/// collection larger than the limit, whatever type it is parsed into. The error names where
/// (`instances`, `inputs[0].data`).
pub fn check_structure(bytes: &[u8], max_depth: usize, max_items: usize) -> Result<(), ApiError> {
    let mut open: Vec<Open> = Vec::new();
    let (mut in_string, mut escaped) = (false, false);
    // The byte range of the latest string closed, a key when a colon follows.
    let (mut string_start, mut last_string) = (0usize, (0usize, 0usize));
    for (i, &b) in bytes.iter().enumerate() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => {
                    in_string = false;
                    last_string = (string_start, i);
                }
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                string_start = i + 1;
            }
            b'[' | b'{' => {
                if open.len() >= max_depth {
                    return Err(ApiError::BadRequest(format!(
                        "JSON nesting is deeper than the limit of {max_depth} levels"
                    )));
                }
                open.push(Open {
                    array: b == b'[',
                    items: 0,
                    key: (0, 0),
                });
            }
            b']' | b'}' => {
                open.pop();
            }
            b':' => {
                if let Some(o) = open.last_mut() {
                    o.key = last_string;
                }
            }
            b',' => {
                if let Some(o) = open.last_mut() {
                    o.items += 1;
                    let max = if o.array { max_items } else { MAX_OBJECT_KEYS };
                    if o.items >= max {
                        return Err(too_many_items(bytes, &open, max));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The 422 for a collection over the item limit, naming it by its path in the body.
fn too_many_items(bytes: &[u8], open: &[Open], max_items: usize) -> ApiError {
    let mut path = String::new();
    // Every enclosing level names its child: an object by its current key, an array by the
    // index of the item being read; the innermost level is the collection itself.
    for o in &open[..open.len() - 1] {
        if o.array {
            path.push_str(&format!("[{}]", o.items));
        } else {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(&String::from_utf8_lossy(&bytes[o.key.0..o.key.1]));
        }
    }
    if path.is_empty() {
        path.push_str("body");
    }
    ApiError::Validation(crate::feature_store::ValidationErrors::single(
        path,
        if open.last().is_some_and(|o| o.array) {
            format!("more than {max_items} items (server.max_batch_size)")
        } else {
            format!("more than {max_items} keys")
        },
    ))
}

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType(
                "expected Content-Type: application/json (or none)".to_owned(),
            ));
        }
        let (max_depth, max_items) = json_limits(&req);
        let bytes = body_bytes(req, state).await?;
        parse_json(&bytes, max_depth, max_items).map(ApiJson)
    }
}

/// The nesting depth and item limits for a request's JSON (`server.max_json_depth`,
/// `server.max_batch_size`).
pub fn json_limits(req: &Request) -> (usize, usize) {
    req.extensions()
        .get::<Limits>()
        .map_or((DEFAULT_MAX_JSON_DEPTH, DEFAULT_MAX_ITEMS), |l| {
            (l.max_json_depth, l.max_batch_size)
        })
}

/// The whole request body: 413 past the body limit, 400 when it cannot be read (a body
/// that ends early, a corrupt compressed stream).
pub async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state)
        .await
        .map_err(|e| match e.status() {
            axum::http::StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            _ => ApiError::BadRequest(e.body_text()),
        })
}

/// A JSON body as every handler reads it: its structure checked on the raw bytes
/// ([`check_structure`]), then parsed into `T`, with errors naming the field.
pub fn parse_json<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    max_depth: usize,
    max_items: usize,
) -> Result<T, ApiError> {
    check_structure(bytes, max_depth, max_items)?;
    // The plain parser first: `axum::Json` tracks the path of every key and value as it goes
    // (serde_path_to_error), which is costly; only a body that fails is parsed again that
    // way, to name the field of its error.
    if let Ok(value) = serde_json::from_slice::<T>(bytes) {
        return Ok(value);
    }
    let axum::Json(value) = axum::Json::<T>::from_bytes(bytes)?;
    Ok(value)
}

/// Room for a single prediction's body (about 900 bytes) at once: `axum::Json` starts at 128
/// bytes and grows the buffer three times for it.
const RESPONSE_CAPACITY: usize = 1024;

impl<T: serde::Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        let mut body = Vec::with_capacity(RESPONSE_CAPACITY);
        match serde_json::to_writer(&mut body, &self.0) {
            Ok(()) => json_response(body),
            Err(e) => ApiError::Internal(format!("encoding the response: {e}")).into_response(),
        }
    }
}

/// A JSON response written by the type's own [`WriteJson`] (the predictions answered on
/// every request), with the same bytes `ApiJson` would give.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: WriteJson> IntoResponse for JsonBody<T> {
    fn into_response(self) -> Response {
        json_response(self.0.to_json(RESPONSE_CAPACITY))
    }
}

fn json_response(body: Vec<u8>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// Deserializes `T` from a JSON object only. Derived struct deserializers also accept an
/// array of field values (`[892]` for a passenger); request bodies must name their fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Object<T>(pub T);

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Object<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(std::marker::PhantomData<T>);

        impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for ObjectVisitor<T> {
            type Value = Object<T>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Object)
            }
        }

        deserializer.deserialize_map(ObjectVisitor(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::{ApiError, MAX_OBJECT_KEYS, Object, check_structure};

    fn check_depth(bytes: &[u8], max: usize) -> Result<(), ApiError> {
        check_structure(bytes, max, usize::MAX)
    }

    #[test]
    fn nesting_is_counted_outside_strings() {
        assert!(check_depth(br#"{"a":[[1]]}"#, 3).is_ok());
        assert!(check_depth(br#"{"a":[[[1]]]}"#, 3).is_err());
        // Brackets and escaped quotes inside strings do not count.
        assert!(check_depth(br#"{"a":"[[[[\"{{{{"}"#, 1).is_ok());
        assert!(check_depth(&[b'['; 100_000], 32).is_err());
        // Closing more than was opened is for the parser to refuse, not a panic here.
        assert!(check_depth(b"]]]]{", 1).is_ok());
    }

    /// The field an item-limit error names, or `None` when the body passes.
    fn over(body: &str, max_items: usize) -> Option<String> {
        match check_structure(body.as_bytes(), 32, max_items) {
            Ok(()) => None,
            Err(ApiError::Validation(e)) => Some(e.0[0].field.clone()),
            Err(other) => panic!("{other}"),
        }
    }

    #[test]
    fn collections_over_the_item_limit_are_named() {
        assert_eq!(over(r#"{"instances":[{},{},{}]}"#, 3), None);
        assert_eq!(
            over(r#"{"instances":[{},{},{},{}]}"#, 3).as_deref(),
            Some("instances")
        );
        assert_eq!(over("[1,2,3,4]", 3).as_deref(), Some("body"));
        // Objects are held to their own, fixed limit: a passenger has more keys than a small
        // batch has instances.
        assert_eq!(over(r#"{"a":1,"b":2,"c":3,"d":4}"#, 3), None);
        let keys: Vec<String> = (0..=MAX_OBJECT_KEYS)
            .map(|i| format!("\"k{i}\":1"))
            .collect();
        let wide = format!("{{\"entities\":{{{}}}}}", keys.join(","));
        assert_eq!(over(&wide, 3).as_deref(), Some("entities"));
        let tensors =
            r#"{"inputs":[{"name":"x","data":[1]},{"name":"y","data":[[1],[2],[3],[4]]}]}"#;
        assert_eq!(over(tensors, 3).as_deref(), Some("inputs[1].data"));
        // Commas inside strings and nested levels are not items of the outer collection.
        assert_eq!(over(r#"{"a":"1,2,3,4,5","b":[[1,2],[3]]}"#, 3), None);
        assert_eq!(
            over(r#"{"rows":[{"values":[1,2,3,4]}]}"#, 3).as_deref(),
            Some("rows[0].values")
        );
    }

    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct P {
        a: i64,
    }

    #[test]
    fn objects_only() {
        let ok: Object<P> = serde_json::from_str(r#"{"a": 1}"#).unwrap();
        assert_eq!(ok.0, P { a: 1 });
        let err = serde_json::from_str::<Object<P>>("[1]").unwrap_err();
        assert!(err.to_string().contains("expected a JSON object"), "{err}");
        let nested: Vec<Object<P>> = serde_json::from_str(r#"[{"a": 2}]"#).unwrap();
        assert_eq!(nested[0].0, P { a: 2 });
    }
}
