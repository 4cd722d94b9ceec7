//! The Open Inference Protocol (KServe V2) over REST, so standard V2 clients work unchanged:
//! server and model metadata, health, and inference with tensors. Each passenger field is one
//! input tensor named as in `/predict` (BYTES for text), of shape `[-1]` or `[-1, 1]`; the
//! outputs are `probability` (FP64) and `survived` (BOOL). Errors have the protocol's shape,
//! `{"error": "..."}`.

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::error::ApiError;
use super::extract::{ApiJson, Object, Requested};
use super::predict::predict_all;
use super::routing;
use super::state::AppState;
use crate::feature_store::RawPassenger;
use crate::monitoring::RequestInfo;

/// The model name this service serves under the protocol.
pub const MODEL: &str = "titanic";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Float,
    Text,
}

/// Input tensors: name, declared datatype, kind, required.
const INPUTS: &[(&str, &str, Kind, bool)] = &[
    ("passenger_id", "INT64", Kind::Int, false),
    ("pclass", "INT64", Kind::Int, true),
    ("sex", "BYTES", Kind::Text, true),
    ("age", "FP64", Kind::Float, false),
    ("sibsp", "INT64", Kind::Int, true),
    ("parch", "INT64", Kind::Int, true),
    ("fare", "FP64", Kind::Float, false),
    ("embarked", "BYTES", Kind::Text, false),
    ("name", "BYTES", Kind::Text, false),
    ("ticket", "BYTES", Kind::Text, false),
    ("cabin", "BYTES", Kind::Text, false),
];

const OUTPUTS: &[(&str, &str)] = &[("probability", "FP64"), ("survived", "BOOL")];

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TensorMetadata {
    name: &'static str,
    datatype: &'static str,
    shape: [i64; 1],
}

/// Turns the service's error envelope into the protocol's `{"error": "..."}` for `/v2`.
pub async fn oip_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    if response.status().is_success() {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        return (parts.status, ApiJson(json!({"error": "error"}))).into_response();
    };
    let message = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
    let message = if message.trim().is_empty() {
        parts
            .status
            .canonical_reason()
            .unwrap_or("error")
            .to_lowercase()
    } else {
        message
    };
    let body = serde_json::to_vec(&json!({ "error": message })).unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(body))
}

/// `GET /v2`
#[utoipa::path(
    get,
    path = "/v2",
    tag = "oip",
    summary = "Open Inference Protocol: server metadata",
    responses((status = 200, description = "Server name, version and extensions.", body = super::openapi::OipServerMetadata))
)]
pub async fn server_metadata() -> ApiJson<Value> {
    ApiJson(json!({
        "name": MODEL,
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": [],
    }))
}

/// `GET /v2/health/live`
#[utoipa::path(
    get,
    path = "/v2/health/live",
    tag = "oip",
    summary = "Open Inference Protocol: liveness",
    responses((status = 200, description = "Always live.", body = super::openapi::OipLive))
)]
pub async fn live() -> ApiJson<Value> {
    ApiJson(json!({ "live": true }))
}

/// `GET /v2/health/ready`: ready when a model is loaded and the process is not draining.
#[utoipa::path(
    get,
    path = "/v2/health/ready",
    tag = "oip",
    summary = "Open Inference Protocol: readiness",
    responses(
        (status = 200, description = "Ready.", body = super::openapi::OipReady),
        (status = 503, description = "No model is loaded, or the process is draining (`ready` is false).", body = super::openapi::OipReady),
    )
)]
pub async fn ready(State(state): State<AppState>) -> Response {
    let ready = state.models.current().is_some() && !state.lifecycle.is_draining();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, ApiJson(json!({ "ready": ready }))).into_response()
}

fn check_model(model: &str) -> Result<(), ApiError> {
    if model == MODEL {
        Ok(())
    } else {
        Err(ApiError::NotFound(format!(
            "no model {model:?}; this server serves {MODEL:?}"
        )))
    }
}

async fn metadata(state: &AppState, version: Option<&str>) -> Result<Value, ApiError> {
    let versions: Vec<String> = match version {
        Some(v) => {
            state.stores.models.artifact(v).await?;
            vec![v.to_owned()]
        }
        None => state
            .stores
            .models
            .list()
            .await?
            .into_iter()
            .map(|v| v.version)
            .collect(),
    };
    let inputs: Vec<TensorMetadata> = INPUTS
        .iter()
        .map(|(name, datatype, _, _)| TensorMetadata {
            name,
            datatype,
            shape: [-1],
        })
        .collect();
    let outputs: Vec<TensorMetadata> = OUTPUTS
        .iter()
        .map(|(name, datatype)| TensorMetadata {
            name,
            datatype,
            shape: [-1],
        })
        .collect();
    Ok(json!({
        "name": MODEL,
        "versions": versions,
        "platform": "linfa-logistic",
        "inputs": inputs,
        "outputs": outputs,
    }))
}

/// `GET /v2/models/{model}`
#[utoipa::path(
    get,
    path = "/v2/models/{model}",
    tag = "oip",
    summary = "Open Inference Protocol: model metadata",
    params(("model" = super::openapi::OipModelName, Path, description = "The model name; this server serves `titanic`.")),
    responses(
        (status = 200, description = "The model's versions, inputs and outputs.", body = super::openapi::OipModelMetadata),
        (status = 404, description = "No such model.", body = super::openapi::OipError),
        (status = 503, description = "The registry's database failed.", body = super::openapi::OipError),
    )
)]
pub async fn model_metadata(
    State(state): State<AppState>,
    Path(model): Path<String>,
) -> Result<ApiJson<Value>, ApiError> {
    check_model(&model)?;
    Ok(ApiJson(metadata(&state, None).await?))
}

/// `GET /v2/models/{model}/versions/{version}`
#[utoipa::path(
    get,
    path = "/v2/models/{model}/versions/{version}",
    tag = "oip",
    summary = "Open Inference Protocol: metadata of one model version",
    params(("model" = super::openapi::OipModelName, Path, description = "The model name; this server serves `titanic`."), ("version" = String, Path, min_length = 1, example = "v1", description = "A registered model version.")),
    responses(
        (status = 200, description = "The version, inputs and outputs.", body = super::openapi::OipModelMetadata),
        (status = 404, description = "No such model or version.", body = super::openapi::OipError),
        (status = 422, description = "The stored artifact cannot be read.", body = super::openapi::OipError),
        (status = 503, description = "The registry's database failed.", body = super::openapi::OipError),
    )
)]
pub async fn version_metadata(
    State(state): State<AppState>,
    Path((model, version)): Path<(String, String)>,
) -> Result<ApiJson<Value>, ApiError> {
    check_model(&model)?;
    Ok(ApiJson(metadata(&state, Some(&version)).await?))
}

/// `GET /v2/models/{model}/ready`
#[utoipa::path(
    get,
    path = "/v2/models/{model}/ready",
    tag = "oip",
    summary = "Open Inference Protocol: model readiness",
    params(("model" = super::openapi::OipModelName, Path, description = "The model name; this server serves `titanic`.")),
    responses(
        (status = 200, description = "A model is loaded.", body = super::openapi::OipModelReady),
        (status = 503, description = "No model is loaded (`ready` is false).", body = super::openapi::OipModelReady),
        (status = 404, description = "No such model.", body = super::openapi::OipError),
    )
)]
pub async fn model_ready(
    State(state): State<AppState>,
    Path(model): Path<String>,
) -> Result<Response, ApiError> {
    check_model(&model)?;
    let ready = state.models.current().is_some();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((status, ApiJson(json!({ "name": MODEL, "ready": ready }))).into_response())
}

/// `GET /v2/models/{model}/versions/{version}/ready`: the version loads and can be served.
#[utoipa::path(
    get,
    path = "/v2/models/{model}/versions/{version}/ready",
    tag = "oip",
    summary = "Open Inference Protocol: readiness of one model version",
    params(("model" = super::openapi::OipModelName, Path, description = "The model name; this server serves `titanic`."), ("version" = String, Path, min_length = 1, example = "v1", description = "A registered model version.")),
    responses(
        (status = 200, description = "The version loads and can be served.", body = super::openapi::OipVersionReady),
        (status = 404, description = "No such model or version.", body = super::openapi::OipError),
        (status = 422, description = "The version cannot be served.", body = super::openapi::OipError),
        (status = 503, description = "No model is loaded, or the registry's database failed.", body = super::openapi::OipError),
    )
)]
pub async fn version_ready(
    State(state): State<AppState>,
    Path((model, version)): Path<(String, String)>,
) -> Result<ApiJson<Value>, ApiError> {
    check_model(&model)?;
    routing::choose(&state, &HeaderMap::new(), Some(&version)).await?;
    Ok(ApiJson(
        json!({ "name": MODEL, "version": version, "ready": true }),
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct InputTensor {
    pub name: String,
    pub shape: Vec<i64>,
    pub datatype: String,
    #[serde(default)]
    pub parameters: Option<Value>,
    pub data: Value,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct RequestedOutput {
    pub name: String,
    #[serde(default)]
    pub parameters: Option<Value>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct InferRequest {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub parameters: Option<Value>,
    pub inputs: Vec<InputTensor>,
    #[serde(default)]
    pub outputs: Option<Vec<RequestedOutput>>,
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::BadRequest(message.into())
}

/// Flattens `[1, 2]` or `[[1], [2]]` into values.
fn flatten(data: &Value, out: &mut Vec<Value>) {
    match data {
        Value::Array(items) => items.iter().for_each(|v| flatten(v, out)),
        other => out.push(other.clone()),
    }
}

fn numeric_datatype(datatype: &str) -> bool {
    matches!(
        datatype,
        "INT8"
            | "INT16"
            | "INT32"
            | "INT64"
            | "UINT8"
            | "UINT16"
            | "UINT32"
            | "UINT64"
            | "FP16"
            | "FP32"
            | "FP64"
    )
}

/// Decodes the input tensors into one raw passenger per row.
fn decode(inputs: &[InputTensor]) -> Result<Vec<RawPassenger>, ApiError> {
    let mut rows: Option<usize> = None;
    let mut columns: Vec<(&'static str, Kind, Vec<Value>)> = Vec::new();
    for t in inputs {
        let Some(&(name, _, kind, _)) = INPUTS.iter().find(|(n, ..)| *n == t.name) else {
            return Err(bad(format!(
                "unknown input {:?}; inputs are {}",
                t.name,
                INPUTS.iter().map(|i| i.0).collect::<Vec<_>>().join(", ")
            )));
        };
        if columns.iter().any(|(n, ..)| *n == name) {
            return Err(bad(format!("input {name} given twice")));
        }
        let n = match t.shape.as_slice() {
            [n] | [n, 1] if *n >= 0 => *n as usize,
            other => {
                return Err(bad(format!(
                    "input {name}: shape {other:?}; expected [N] or [N, 1]"
                )));
            }
        };
        if *rows.get_or_insert(n) != n {
            return Err(bad(format!(
                "input {name} has {n} rows, other inputs {}",
                rows.unwrap_or(0)
            )));
        }
        let type_ok = match kind {
            Kind::Text => t.datatype == "BYTES",
            Kind::Int | Kind::Float => numeric_datatype(&t.datatype),
        };
        if !type_ok {
            return Err(bad(format!(
                "input {name}: datatype {} (expected {})",
                t.datatype,
                if kind == Kind::Text {
                    "BYTES"
                } else {
                    "a numeric type"
                }
            )));
        }
        let mut values = Vec::with_capacity(n);
        flatten(&t.data, &mut values);
        if values.len() != n {
            return Err(bad(format!(
                "input {name}: {} values for shape {:?}",
                values.len(),
                t.shape
            )));
        }
        columns.push((name, kind, values));
    }
    let n = rows.unwrap_or(0);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let mut row = serde_json::Map::new();
        for (name, kind, values) in &columns {
            let v = &values[i];
            let value = match (kind, v) {
                (_, Value::Null) => continue,
                (Kind::Int, Value::Number(x)) => match x.as_f64() {
                    Some(f) if f.fract() == 0.0 => Value::from(f as i64),
                    _ => return Err(bad(format!("input {name}[{i}]: {x} is not an integer"))),
                },
                (Kind::Float, Value::Number(_)) | (Kind::Text, Value::String(_)) => v.clone(),
                _ => return Err(bad(format!("input {name}[{i}]: unexpected value {v}"))),
            };
            row.insert((*name).to_owned(), value);
        }
        let raw: RawPassenger =
            serde_json::from_value(Value::Object(row)).map_err(|e| bad(format!("row {i}: {e}")))?;
        out.push(raw);
    }
    Ok(out)
}

async fn infer_with(
    state: AppState,
    headers: HeaderMap,
    request_info: RequestInfo,
    model: String,
    version: Option<String>,
    request: InferRequest,
) -> Result<ApiJson<Value>, ApiError> {
    check_model(&model)?;
    let wanted: Vec<&str> = match &request.outputs {
        Some(outputs) => {
            let mut names = Vec::new();
            for o in outputs {
                if !OUTPUTS.iter().any(|(n, _)| *n == o.name) {
                    return Err(bad(format!(
                        "unknown output {:?}; outputs are probability, survived",
                        o.name
                    )));
                }
                names.push(o.name.as_str());
            }
            names
        }
        None => OUTPUTS.iter().map(|(n, _)| *n).collect(),
    };
    let raws = decode(&request.inputs)?;
    if raws.len() > state.limits.max_batch_size {
        return Err(bad(format!(
            "at most {} rows per request",
            state.limits.max_batch_size
        )));
    }
    let choice = routing::choose(&state, &headers, version.as_deref()).await?;
    let n = raws.len();
    let predictions = predict_all(&state, &request_info, &choice, raws, |i| {
        format!("row[{i}]")
    })
    .await?;
    let outputs: Vec<Value> = wanted
        .iter()
        .map(|name| match *name {
            "probability" => json!({
                "name": "probability", "datatype": "FP64", "shape": [n],
                "data": predictions.iter().map(|p| p.probability).collect::<Vec<_>>(),
            }),
            _ => json!({
                "name": "survived", "datatype": "BOOL", "shape": [n],
                "data": predictions.iter().map(|p| p.survived).collect::<Vec<_>>(),
            }),
        })
        .collect();
    let mut response = json!({
        "model_name": MODEL,
        "model_version": choice.served.model.version().as_ref(),
        "outputs": outputs,
    });
    if let Some(id) = request.id {
        response["id"] = Value::String(id);
    }
    Ok(ApiJson(response))
}

/// `POST /v2/models/{model}/infer`
#[utoipa::path(
    post,
    path = "/v2/models/{model}/infer",
    tag = "oip",
    summary = "Open Inference Protocol: inference with tensors",
    params(("model" = super::openapi::OipModelName, Path, description = "The model name; this server serves `titanic`."), super::openapi::ModelVersionHeader),
    request_body(content = InferRequest, example = json!({"inputs": [
        {"name": "pclass", "datatype": "INT64", "shape": [2], "data": [3, 1]},
        {"name": "sex", "datatype": "BYTES", "shape": [2], "data": ["male", "female"]},
        {"name": "sibsp", "datatype": "INT64", "shape": [2], "data": [1, 1]},
        {"name": "parch", "datatype": "INT64", "shape": [2], "data": [0, 0]},
        {"name": "age", "datatype": "FP64", "shape": [2], "data": [22.0, 38.0]}
    ]})),
    responses(
        (status = 200, description = "The outputs, one value per input row.", body = super::openapi::OipInferResponse),
        (status = 400, description = "Tensors that do not fit: an unknown or repeated input or output, a bad shape or datatype, a row count that differs between inputs, or too many rows.", body = super::openapi::OipError),
        (status = 404, description = "No such model or version (the version also by `x-model-version`).", body = super::openapi::OipError),
        (status = 422, description = "A row is not a valid passenger, or the version cannot be served.", body = super::openapi::OipError),
        (status = 503, description = "No model is loaded, or stored features can be read from neither store.", body = super::openapi::OipError),
    )
)]
pub async fn infer(
    State(state): State<AppState>,
    headers: HeaderMap,
    Requested(info): Requested,
    Path(model): Path<String>,
    ApiJson(Object(request)): ApiJson<Object<InferRequest>>,
) -> Result<ApiJson<Value>, ApiError> {
    infer_with(state, headers, info, model, None, request).await
}

/// `POST /v2/models/{model}/versions/{version}/infer`
#[utoipa::path(
    post,
    path = "/v2/models/{model}/versions/{version}/infer",
    tag = "oip",
    summary = "Open Inference Protocol: inference with tensors, by one model version",
    params(("model" = super::openapi::OipModelName, Path, description = "The model name; this server serves `titanic`."), ("version" = String, Path, min_length = 1, example = "v1", description = "A registered model version.")),
    request_body(content = InferRequest, example = json!({"inputs": [
        {"name": "pclass", "datatype": "INT64", "shape": [2], "data": [3, 1]},
        {"name": "sex", "datatype": "BYTES", "shape": [2], "data": ["male", "female"]},
        {"name": "sibsp", "datatype": "INT64", "shape": [2], "data": [1, 1]},
        {"name": "parch", "datatype": "INT64", "shape": [2], "data": [0, 0]},
        {"name": "age", "datatype": "FP64", "shape": [2], "data": [22.0, 38.0]}
    ]})),
    responses(
        (status = 200, description = "The outputs, one value per input row.", body = super::openapi::OipInferResponse),
        (status = 400, description = "Tensors that do not fit: an unknown or repeated input or output, a bad shape or datatype, a row count that differs between inputs, or too many rows.", body = super::openapi::OipError),
        (status = 404, description = "No such model or version (the version also by `x-model-version`).", body = super::openapi::OipError),
        (status = 422, description = "A row is not a valid passenger, or the version cannot be served.", body = super::openapi::OipError),
        (status = 503, description = "No model is loaded, or stored features can be read from neither store.", body = super::openapi::OipError),
    )
)]
pub async fn infer_version(
    State(state): State<AppState>,
    headers: HeaderMap,
    Requested(info): Requested,
    Path((model, version)): Path<(String, String)>,
    ApiJson(Object(request)): ApiJson<Object<InferRequest>>,
) -> Result<ApiJson<Value>, ApiError> {
    infer_with(state, headers, info, model, Some(version), request).await
}
