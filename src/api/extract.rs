//! Extractors whose rejections are the service's own [`ApiError`], so malformed JSON gets the
//! same error shape as everything else.

use axum::extract::FromRequest;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

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
