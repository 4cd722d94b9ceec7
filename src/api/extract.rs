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
