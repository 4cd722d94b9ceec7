//! Extractors whose rejections are the service's own [`ApiError`], so malformed JSON gets the
//! same error shape as everything else.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
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
                .get::<Claims>()
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

/// `axum::Json` with [`ApiError`] rejections: 400 for syntax, 422 naming the field for wrong
/// types or unknown fields, 413 for oversized bodies, 415 without a JSON content type.
#[derive(Debug, Clone, Copy, Default, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

impl<T: serde::Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
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
    use super::Object;

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
