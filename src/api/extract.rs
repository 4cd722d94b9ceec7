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
/// `server.max_json_depth`, 422 naming the field for wrong types or unknown fields, 413 for
/// oversized bodies, 415 without a JSON content type.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

/// The nesting limit when the request carries no [`Limits`] (a router without the stack).
const DEFAULT_MAX_JSON_DEPTH: usize = 32;

/// `application/json`, or any `application/*+json`, with any parameters.
fn is_json(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
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

/// Refuses JSON whose arrays and objects nest deeper than `max` before it is parsed, so a
/// body of brackets cannot make the parser recurse (or allocate) past the limit.
pub fn check_depth(bytes: &[u8], max: usize) -> Result<(), ApiError> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Err(ApiError::BadRequest(format!(
                        "JSON nesting is deeper than the limit of {max} levels"
                    )));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType(
                "expected Content-Type: application/json".to_owned(),
            ));
        }
        let max_depth = req
            .extensions()
            .get::<Limits>()
            .map_or(DEFAULT_MAX_JSON_DEPTH, |l| l.max_json_depth);
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| match e.status() {
                axum::http::StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
                _ => ApiError::BadRequest(e.body_text()),
            })?;
        check_depth(&bytes, max_depth)?;
        // The plain parser first: `axum::Json` tracks the path of every key and value as it
        // goes (serde_path_to_error), a third of the parse's cost, to name the field of an
        // error. Only a body that fails is parsed again that way, for the error's field.
        if let Ok(value) = serde_json::from_slice::<T>(&bytes) {
            return Ok(ApiJson(value));
        }
        let axum::Json(value) = axum::Json::<T>::from_bytes(&bytes)?;
        Ok(ApiJson(value))
    }
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
    use super::{Object, check_depth};

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
