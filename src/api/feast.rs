//! Feast's feature-server routes, `POST /get-online-features` and `POST /push`, with the
//! request and response shapes of Feast's Python feature server (`feast/feature_server.py`:
//! `GetOnlineFeaturesRequest`, `PushFeaturesRequest`) and the error bodies its clients map
//! back to Feast exceptions (`FeastError.to_error_detail`). Thin translators: the reads and
//! writes are those of `POST /features/online` and `POST /features/push`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::ApiError;
use super::extract::{ApiJson, Object};
use super::features::{
    OnlineFeaturesRequest, OnlineFeaturesResponse, read_online, store_rows, view_or_latest,
};
use super::state::AppState;
use crate::core::security::Claims;
use crate::feature_store::push::{PushOptions, PushRow};
use crate::feature_store::{FieldError, ValidationErrors};

/// Feast's `GetOnlineFeaturesRequest`. Unknown fields are ignored, as Feast's pydantic model
/// does.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct FeastOnlineRequest {
    /// One join key with its values, e.g. `{"passenger_id": [1, 2]}`.
    #[schema(value_type = BTreeMap<String, Vec<super::openapi::EntityKey>>)]
    pub entities: BTreeMap<String, Vec<Value>>,
    #[serde(default)]
    pub feature_service: Option<String>,
    /// `view:feature` references.
    #[serde(default)]
    pub features: Vec<String>,
    #[serde(default)]
    pub full_feature_names: bool,
    /// Accepted and ignored: the answer carries no feature view version metadata.
    #[serde(default)]
    pub include_feature_view_version_metadata: bool,
}

/// `POST /get-online-features`: Feast's online read.
/// Feast's feature server: the same reads and writes, Feast's shapes and error bodies.
pub fn routes(protect: &super::Protect) -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(protect.route(utoipa_axum::routes!(get_online_features)))
        .routes(protect.route(utoipa_axum::routes!(push)))
        .layer(axum::middleware::from_fn(feast_errors))
}

#[utoipa::path(
    post,
    path = "/get-online-features",
    security(("bearerAuth" = [])),
    tag = "feast",
    summary = "Feast feature server: online features (the same read as POST /features/online)",
    request_body(content = FeastOnlineRequest, example = json!({
        "features": ["passenger_demographics:age", "passenger_demographics:fare"],
        "entities": {"passenger_id": [1, 892]},
        "full_feature_names": false
    })),
    responses(
        (status = 200, description = "One column per feature, after the join key's.", body = OnlineFeaturesResponse),
        (status = 404, description = "No such feature view or feature service (`FeastObjectNotFoundException`).", body = FeastErrorBody),
        (status = 422, description = "A bad feature reference, both or neither of `features` and `feature_service`, not exactly one join key, or invalid entity keys (`FeastError`).", body = FeastErrorBody),
        (status = 503, description = "The values can be read from neither store (`FeastError`).", body = FeastErrorBody),
    )
)]
pub async fn get_online_features(
    State(state): State<AppState>,
    ApiJson(Object(request)): ApiJson<Object<FeastOnlineRequest>>,
) -> Result<ApiJson<OnlineFeaturesResponse>, ApiError> {
    let request = OnlineFeaturesRequest {
        features: request.features,
        feature_service: request.feature_service,
        feature_service_version: None,
        entities: request.entities,
        full_feature_names: request.full_feature_names,
    };
    read_online(&state, request).await.map(ApiJson)
}

/// Feast's `PushFeaturesRequest`. Unknown fields are ignored, as Feast's pydantic model does.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct FeastPushRequest {
    /// The feature view to push to (here each feature view is its own push source).
    pub push_source_name: String,
    /// Columns, each a list with a value per row: the entity's join key, `event_timestamp`
    /// (optional; default now), `created` (ignored), and the view's features.
    #[schema(value_type = Object)]
    pub df: BTreeMap<String, Vec<Value>>,
    /// Accepted and ignored (the registry is always read fresh).
    #[serde(default)]
    pub allow_registry_cache: Option<bool>,
    /// `online` (default), `offline` or `online_and_offline`.
    #[serde(default = "default_to")]
    pub to: String,
    /// Accepted and ignored (there are no on-demand transformations).
    #[serde(default)]
    pub transform_on_write: Option<bool>,
}

fn default_to() -> String {
    "online".to_owned()
}

/// Columns of Feast's push data frames that are not features.
const EVENT_TIMESTAMP: &str = "event_timestamp";
const CREATED: &str = "created";

/// `POST /push`: Feast's push. All rows are stored or none is.
#[utoipa::path(
    post,
    path = "/push",
    security(("bearerAuth" = ["features:write"])),
    tag = "feast",
    summary = "Feast feature server: push rows (the same write as POST /features/push, all or nothing)",
    request_body(content = FeastPushRequest, example = json!({
        "push_source_name": "passenger_demographics",
        "df": {
            "passenger_id": [1310],
            "event_timestamp": ["2026-11-26 10:59:42+00:00"],
            "pclass": [2], "sex": ["female"], "age": [29], "sibsp": [0], "parch": [1],
            "fare": [26.0], "embarked": ["S"], "name": ["Doe, Mrs. Jane"]
        },
        "to": "online_and_offline"
    })),
    responses(
        (status = 200, description = "Every row is stored (and, unless `to` is `offline`, written through to the online store). Empty body."),
        (status = 422, description = "Unknown push source (`PushSourceNotFoundException`), a bad `to`, columns of different lengths, no join key column, or an invalid row (each problem named; nothing is stored) (`FeastError`).", body = FeastErrorBody),
        (status = 503, description = "The offline store failed (`FeastError`).", body = FeastErrorBody),
    )
)]
pub async fn push(
    State(state): State<AppState>,
    Extension(claims): Extension<Arc<Claims>>,
    ApiJson(Object(request)): ApiJson<Object<FeastPushRequest>>,
) -> Result<Response, ApiError> {
    let online = match request.to.as_str() {
        "online" | "online_and_offline" => true,
        "offline" => false,
        other => {
            return Err(invalid(
                "to",
                format!(
                    "{other:?} is not a supported push format; use one of online, offline, online_and_offline"
                ),
            ));
        }
    };
    let view = match view_or_latest(&state, &request.push_source_name, None).await {
        Ok(view) => view,
        Err(ApiError::NotFound(_)) => {
            return Ok(feast_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "PushSourceNotFoundException",
                &format!("Unable to find push source '{}'.", request.push_source_name),
            ));
        }
        Err(e) => return Err(e),
    };
    let entity = state
        .stores
        .features
        .latest::<crate::feature_store::registry::EntitySpec>(
            crate::feature_store::registry::Kind::Entity,
            &view.spec.entity,
        )
        .await?;
    let rows = rows_of(request.df, &entity.spec.join_key)?;
    store_rows(
        &state,
        &view,
        rows,
        &claims.sub,
        PushOptions {
            online,
            all_or_nothing: true,
        },
    )
    .await?;
    Ok(StatusCode::OK.into_response())
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ApiError {
    ApiError::Validation(ValidationErrors::single(field, message))
}

/// A column-to-list data frame as rows: the join key column gives each row's entity,
/// `event_timestamp` its event time, `created` is dropped, every other column is a feature.
fn rows_of(df: BTreeMap<String, Vec<Value>>, join_key: &str) -> Result<Vec<PushRow>, ApiError> {
    let len = df
        .get(join_key)
        .map(Vec::len)
        .ok_or_else(|| invalid(format!("df.{join_key}"), "the join key column is required"))?;
    if let Some((name, _)) = df.iter().find(|(_, column)| column.len() != len) {
        return Err(invalid(
            format!("df.{name}"),
            format!("every column must have {len} values, like {join_key}"),
        ));
    }
    let mut rows: Vec<PushRow> = (0..len)
        .map(|_| PushRow {
            entity: Value::Null,
            event_time: None,
            values: Map::new(),
        })
        .collect();
    let mut errors = Vec::new();
    for (name, column) in df {
        for (i, (row, value)) in rows.iter_mut().zip(column).enumerate() {
            match name.as_str() {
                n if n == join_key => row.entity = value,
                EVENT_TIMESTAMP => match value {
                    Value::Null => {}
                    Value::String(s) => row.event_time = Some(rfc3339_of(&s)),
                    _ => errors.push(FieldError {
                        field: format!("df.{EVENT_TIMESTAMP}[{i}]"),
                        message: "must be a time string such as 2026-11-26 10:59:42+00:00"
                            .to_owned(),
                    }),
                },
                CREATED => {}
                _ => {
                    row.values.insert(name.clone(), value);
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(rows)
    } else {
        Err(ApiError::Validation(ValidationErrors(errors)))
    }
}

/// Feast's timestamps as pandas prints them (`2022-05-13 10:59:42+00:00`, or without a zone,
/// which Feast reads as UTC) as RFC 3339; anything else is left for the push to reject.
fn rfc3339_of(text: &str) -> String {
    let mut s = text.trim().to_owned();
    if s.len() > 10 && s.as_bytes()[10] == b' ' {
        s.replace_range(10..11, "T");
    }
    let time = s.get(11..).unwrap_or("");
    let zoned = time.ends_with(['Z', 'z']) || time.contains(['+', '-']);
    if s.len() >= 19 && !zoned {
        s.push('Z');
    }
    s
}

/// Feast's error body: a JSON string holding `{"module", "class", "message"}`
/// (`FeastError.to_error_detail`), which Feast's HTTP clients turn back into the exception
/// (`rest_error_handler.py`, `FeastError.from_error_detail`).
#[derive(utoipa::ToSchema)]
#[schema(example = json!("{\"module\": \"feast.errors\", \"class\": \"FeastObjectNotFoundException\", \"message\": \"no feature view named nope\"}"))]
pub struct FeastErrorBody(pub String);

/// What [`FeastErrorBody`]'s string holds.
#[derive(Serialize)]
struct FeastErrorDetail<'a> {
    module: &'static str,
    class: &'a str,
    message: &'a str,
}

fn feast_error(status: StatusCode, class: &str, message: &str) -> Response {
    let detail = serde_json::to_string(&FeastErrorDetail {
        module: "feast.errors",
        class,
        message,
    })
    .unwrap_or_default();
    let body = serde_json::to_vec(&Value::String(detail)).unwrap_or_default();
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// The Feast exception class for a status.
fn class_of(status: StatusCode) -> &'static str {
    match status {
        StatusCode::NOT_FOUND => "FeastObjectNotFoundException",
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => "FeastPermissionError",
        _ => "FeastError",
    }
}

/// Rewrites the service's error bodies on the Feast routes (from the handlers, the token
/// check, the rate limiter and the body extractor) as Feast's, keeping the status and the
/// headers (`Retry-After`, `WWW-Authenticate`). The message names each invalid field.
pub async fn feast_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    if response.status().is_success() {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let parsed = serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null);
    if parsed.is_string() {
        // Already Feast's shape.
        return Response::from_parts(parts, Body::from(bytes));
    }
    let error = &parsed["error"];
    let mut message = error["message"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| parts.status.canonical_reason().map(str::to_lowercase))
        .unwrap_or_else(|| "error".to_owned());
    if let Some(fields) = error["details"]["fields"].as_array() {
        let named: Vec<String> = fields
            .iter()
            .filter_map(|f| {
                Some(format!(
                    "{}: {}",
                    f["field"].as_str()?,
                    f["message"].as_str()?
                ))
            })
            .collect();
        if !named.is_empty() {
            message = format!("{message}: {}", named.join("; "));
        }
    }
    let replaced = feast_error(parts.status, class_of(parts.status), &message);
    let (new_parts, body) = replaced.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    if let Some(v) = new_parts.headers.get(header::CONTENT_TYPE) {
        parts.headers.insert(header::CONTENT_TYPE, v.clone());
    }
    Response::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pandas_timestamps_become_rfc3339() {
        assert_eq!(
            rfc3339_of("2022-05-13 10:59:42+00:00"),
            "2022-05-13T10:59:42+00:00"
        );
        assert_eq!(rfc3339_of("2021-05-13 10:59:42"), "2021-05-13T10:59:42Z");
        assert_eq!(
            rfc3339_of("2021-05-13T10:59:42.5"),
            "2021-05-13T10:59:42.5Z"
        );
        assert_eq!(rfc3339_of("2021-05-13T10:59:42Z"), "2021-05-13T10:59:42Z");
        assert_eq!(
            rfc3339_of("2021-05-13T10:59:42-02:00"),
            "2021-05-13T10:59:42-02:00"
        );
        assert_eq!(rfc3339_of("yesterday"), "yesterday");
    }

    #[test]
    fn a_data_frame_becomes_rows() {
        let df: BTreeMap<String, Vec<Value>> = serde_json::from_value(json!({
            "passenger_id": [1, 2],
            "event_timestamp": ["2022-05-13 10:59:42", null],
            "created": ["2022-05-13 10:59:42", null],
            "age": [3, 4],
        }))
        .unwrap();
        let rows = rows_of(df, "passenger_id").unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].entity, json!(1));
        assert_eq!(rows[0].event_time.as_deref(), Some("2022-05-13T10:59:42Z"));
        assert_eq!(rows[1].event_time, None);
        assert_eq!(Value::Object(rows[1].values.clone()), json!({"age": 4}));
    }

    #[test]
    fn a_ragged_or_keyless_data_frame_is_refused() {
        let ragged: BTreeMap<String, Vec<Value>> =
            serde_json::from_value(json!({"passenger_id": [1, 2], "age": [3]})).unwrap();
        assert!(matches!(
            rows_of(ragged, "passenger_id"),
            Err(ApiError::Validation(_))
        ));
        let keyless: BTreeMap<String, Vec<Value>> =
            serde_json::from_value(json!({"age": [3]})).unwrap();
        assert!(matches!(
            rows_of(keyless, "passenger_id"),
            Err(ApiError::Validation(_))
        ));
    }
}
