//! The one error type at the HTTP boundary. Every failure becomes
//! `{"error":{"code","message","details"}}` with the right status; domain errors are mapped
//! with exhaustive matches so a new variant cannot ship unmapped.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::core::rate_limit::{Allowance, RateLimited};
use crate::core::security::TokenError;
use crate::feature_store::ValidationErrors;
use crate::feature_store::registry::RegistryError as FeatureRegistryError;
use crate::ml::lifecycle::LifecycleError;
use crate::ml::registry::RegistryError;

/// The error envelope of every error response outside `/v2`:
/// `{"error":{"code","message","details"}}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    pub error: ErrorObject,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorObject {
    pub code: ErrorCode,
    /// Human-readable; branch on `code` and the status instead.
    pub message: String,
    /// An object for `unauthorized`, `forbidden`, `validation_failed`, `rate_limited` and
    /// `headers_too_large`; `null` otherwise.
    #[schema(required = true)]
    pub details: Option<ErrorDetails>,
}

/// Every error code: one per kind of [`ApiError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
    RateLimited,
    HeadersTooLarge,
    Overloaded,
    TooManyInFlight,
    Timeout,
    Unavailable,
    Internal,
}

/// What an error adds to its message; each field appears with its code only.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct ErrorDetails {
    /// `validation_failed`: every bad field.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, value_type = Option<Vec<crate::feature_store::FieldError>>)]
    pub fields: Option<ValidationErrors>,
    /// `unauthorized`: why the token was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub reason: Option<TokenError>,
    /// `forbidden`: the scope the route needs.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub required_scope: Option<&'static str>,
    /// `rate_limited`: as `Retry-After`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub retry_after_secs: Option<u64>,
    /// `headers_too_large`: the limit on the request's headers.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub limit_bytes: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("malformed request: {0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(TokenError),
    #[error("this token lacks the scope {0:?}")]
    Forbidden(&'static str),
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    #[error("request body is larger than the limit")]
    PayloadTooLarge,
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("invalid input: {0}")]
    Validation(ValidationErrors),
    #[error("rate limit exceeded; retry in {} s", .0.retry_after_secs())]
    RateLimited(RateLimited),
    #[error("request headers are larger than the limit of {0} bytes")]
    HeadersTooLarge(usize),
    #[error("the service is at its limit of concurrent requests; retry shortly")]
    Overloaded,
    #[error(
        "this token already has {0} requests in flight (server.max_concurrent_per_subject); \
         retry when one has finished"
    )]
    TooManyInFlight(usize),
    #[error("the request took too long")]
    Timeout,
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::RateLimited(_) | ApiError::TooManyInFlight(_) => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::Timeout | ApiError::Unavailable(_) | ApiError::Overloaded => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stable machine-readable code.
    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::BadRequest(_) => ErrorCode::BadRequest,
            ApiError::Unauthorized(_) => ErrorCode::Unauthorized,
            ApiError::Forbidden(_) => ErrorCode::Forbidden,
            ApiError::NotFound(_) => ErrorCode::NotFound,
            ApiError::MethodNotAllowed => ErrorCode::MethodNotAllowed,
            ApiError::Conflict(_) => ErrorCode::Conflict,
            ApiError::PayloadTooLarge => ErrorCode::PayloadTooLarge,
            ApiError::UnsupportedMediaType(_) => ErrorCode::UnsupportedMediaType,
            ApiError::Validation(_) => ErrorCode::ValidationFailed,
            ApiError::RateLimited(_) => ErrorCode::RateLimited,
            ApiError::HeadersTooLarge(_) => ErrorCode::HeadersTooLarge,
            ApiError::Overloaded => ErrorCode::Overloaded,
            ApiError::TooManyInFlight(_) => ErrorCode::TooManyInFlight,
            ApiError::Timeout => ErrorCode::Timeout,
            ApiError::Unavailable(_) => ErrorCode::Unavailable,
            ApiError::Internal(_) => ErrorCode::Internal,
        }
    }

    fn details(&self) -> Option<ErrorDetails> {
        let none = ErrorDetails::default();
        Some(match self {
            ApiError::Validation(errors) => ErrorDetails {
                fields: Some(errors.clone()),
                ..none
            },
            ApiError::Unauthorized(reason) => ErrorDetails {
                reason: Some(*reason),
                ..none
            },
            ApiError::Forbidden(scope) => ErrorDetails {
                required_scope: Some(scope),
                ..none
            },
            ApiError::RateLimited(limited) => ErrorDetails {
                retry_after_secs: Some(limited.retry_after_secs()),
                ..none
            },
            ApiError::HeadersTooLarge(limit) => ErrorDetails {
                limit_bytes: Some(*limit),
                ..none
            },
            _ => return None,
        })
    }

    /// The error for a bare status produced by a layer (404 fallback, 405, 413, timeout).
    pub fn from_status(status: StatusCode) -> Self {
        match status {
            StatusCode::NOT_FOUND => ApiError::NotFound("no such route".to_owned()),
            StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => ApiError::HeadersTooLarge(0),
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::REQUEST_TIMEOUT => ApiError::Timeout,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                ApiError::UnsupportedMediaType("unsupported content type".to_owned())
            }
            s if s.is_client_error() => {
                ApiError::BadRequest(s.canonical_reason().unwrap_or("bad request").to_owned())
            }
            s => ApiError::Internal(format!("layer answered {s}")),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            // The detail goes to the log (`edge` logs it with the request), never to the client.
            ApiError::Internal(_) => "internal error; see the service log".to_owned(),
            other => other.to_string(),
        };
        let body = ErrorBody {
            error: ErrorObject {
                code: self.code(),
                message,
                details: self.details(),
            },
        };
        let mut response = (status, Json(body)).into_response();
        if let ApiError::Internal(detail) = self {
            response
                .extensions_mut()
                .insert(super::middleware::InternalError(detail));
            return response;
        }
        let headers = response.headers_mut();
        match &self {
            ApiError::Unauthorized(_) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer error="invalid_token""#),
                );
            }
            ApiError::RateLimited(limited) => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(limited.retry_after_secs()),
                );
                rate_limit_headers(headers, &limited.allowance);
                // The quota itself: `q` requests per window of `w` = 1 second, with `burst`
                // back to back.
                let policy = format!(
                    "{};w=1;burst={}",
                    limited.allowance.per_second, limited.allowance.limit
                );
                if let Ok(policy) = HeaderValue::try_from(policy) {
                    headers.insert(HeaderName::from_static("ratelimit-policy"), policy);
                }
            }
            ApiError::Timeout
            | ApiError::Unavailable(_)
            | ApiError::Overloaded
            | ApiError::TooManyInFlight(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

/// `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` (seconds until the
/// bucket is full), as in the IETF httpapi rate-limit headers draft.
pub fn rate_limit_headers(headers: &mut axum::http::HeaderMap, allowance: &Allowance) {
    const LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
    const REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
    const RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
    headers.insert(LIMIT, HeaderValue::from(allowance.limit));
    headers.insert(REMAINING, HeaderValue::from(allowance.remaining));
    headers.insert(RESET, HeaderValue::from(allowance.reset_secs()));
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonDataError(e) => {
                // "Failed to deserialize the JSON body into the target type: instances[0].age:
                // invalid type ..." -> name the path as the field.
                let text = e.body_text();
                let detail = text
                    .split_once(": ")
                    .map_or(text.as_str(), |(_, rest)| rest)
                    .to_owned();
                let (field, message) = match detail.split_once(": ") {
                    Some((path, msg)) if !path.contains(' ') && path != "." => {
                        (path.to_owned(), msg.to_owned())
                    }
                    Some((".", msg)) => ("body".to_owned(), msg.to_owned()),
                    _ => ("body".to_owned(), detail),
                };
                ApiError::Validation(ValidationErrors::single(field, message))
            }
            JsonRejection::JsonSyntaxError(e) => ApiError::BadRequest(e.body_text()),
            JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType(
                "expected Content-Type: application/json (or none)".to_owned(),
            ),
            JsonRejection::BytesRejection(e) => {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge
                } else {
                    ApiError::BadRequest(e.body_text())
                }
            }
            other => ApiError::BadRequest(other.body_text()),
        }
    }
}

impl From<ValidationErrors> for ApiError {
    fn from(errors: ValidationErrors) -> Self {
        ApiError::Validation(errors)
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::UnknownVersion(_) | RegistryError::NoAlias(_) => {
                ApiError::NotFound(e.to_string())
            }
            RegistryError::Db(_) => ApiError::Unavailable(e.to_string()),
            RegistryError::Invalid { .. } => {
                ApiError::Validation(ValidationErrors::single("version", e.to_string()))
            }
            RegistryError::BadAlias(_) => {
                ApiError::Validation(ValidationErrors::single("alias", e.to_string()))
            }
            RegistryError::NothingToRollBack(_) => ApiError::Conflict(e.to_string()),
        }
    }
}

impl From<FeatureRegistryError> for ApiError {
    fn from(e: FeatureRegistryError) -> Self {
        match e {
            FeatureRegistryError::NotFound { .. } => ApiError::NotFound(e.to_string()),
            FeatureRegistryError::Invalid(fields) => ApiError::Validation(ValidationErrors(fields)),
            FeatureRegistryError::Db(_) => ApiError::Unavailable(e.to_string()),
            FeatureRegistryError::Corrupt { .. } => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<LifecycleError> for ApiError {
    fn from(e: LifecycleError) -> Self {
        match e {
            LifecycleError::Models(e) => e.into(),
            LifecycleError::Features(e) => e.into(),
            LifecycleError::Db(_) | LifecycleError::Offline(_) => {
                ApiError::Unavailable(e.to_string())
            }
            LifecycleError::Unservable { .. } => {
                ApiError::Validation(ValidationErrors::single("version", e.to_string()))
            }
            LifecycleError::Csv { .. }
            | LifecycleError::Train(_)
            | LifecycleError::NoData
            | LifecycleError::NotReproducible(_)
            | LifecycleError::SourceChanged { .. }
            | LifecycleError::Read { .. } => ApiError::Conflict(e.to_string()),
            LifecycleError::Task(_) => ApiError::Internal(e.to_string()),
            LifecycleError::AsOfInFuture(_) => {
                ApiError::Validation(ValidationErrors::single("as_of", e.to_string()))
            }
        }
    }
}
