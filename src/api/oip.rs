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
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
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
    #[schema(value_type = Option<Value>)]
    pub parameters: Option<IgnoredAny>,
    /// Kept as the request's text until the shape has been checked, then decoded into the
    /// column (so the shape, not the data, sizes it).
    #[schema(value_type = Value)]
    pub data: Box<RawValue>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct RequestedOutput {
    pub name: String,
    #[serde(default)]
    #[schema(value_type = Option<Value>)]
    pub parameters: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct InferRequest {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Value>)]
    pub parameters: Option<IgnoredAny>,
    pub inputs: Vec<InputTensor>,
    #[serde(default)]
    pub outputs: Option<Vec<RequestedOutput>>,
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::BadRequest(message.into())
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

/// One input's values, in row order (`None` for a JSON `null`).
#[derive(Debug)]
enum Column {
    Int(Vec<Option<i64>>),
    Float(Vec<Option<f64>>),
    Text(Vec<Option<String>>),
}

impl Column {
    fn with_capacity(kind: Kind, n: usize) -> Self {
        match kind {
            Kind::Int => Column::Int(Vec::with_capacity(n)),
            Kind::Float => Column::Float(Vec::with_capacity(n)),
            Kind::Text => Column::Text(Vec::with_capacity(n)),
        }
    }

    fn len(&self) -> usize {
        match self {
            Column::Int(v) => v.len(),
            Column::Float(v) => v.len(),
            Column::Text(v) => v.len(),
        }
    }
}

/// Decodes a tensor's data (`[1, 2]`, or nested as `[[1], [2]]`) straight into a column,
/// refusing more than `limit` values as soon as it sees them.
struct Flatten<'a> {
    column: &'a mut Column,
    limit: usize,
}

impl Flatten<'_> {
    fn push<E: serde::de::Error>(&mut self, value: Scalar<'_>) -> Result<(), E> {
        let index = self.column.len();
        if index >= self.limit {
            return Err(E::custom(format!("more than {} values", self.limit)));
        }
        let unexpected = |what: &str| E::custom(format!("[{index}]: unexpected value {what}"));
        match (&mut *self.column, value) {
            (Column::Int(v), Scalar::Null) => v.push(None),
            (Column::Float(v), Scalar::Null) => v.push(None),
            (Column::Text(v), Scalar::Null) => v.push(None),
            (Column::Int(v), Scalar::Int(x)) => v.push(Some(x)),
            (Column::Int(v), Scalar::Float(x)) => {
                // An integer written as a float (`3.0`) is that integer.
                if x.fract() != 0.0 || !(-9.2e18..=9.2e18).contains(&x) {
                    return Err(E::custom(format!("[{index}]: {x} is not an integer")));
                }
                v.push(Some(x as i64));
            }
            (Column::Float(v), Scalar::Int(x)) => v.push(Some(x as f64)),
            (Column::Float(v), Scalar::Float(x)) => v.push(Some(x)),
            (Column::Text(v), Scalar::Text(x)) => v.push(Some(x.to_owned())),
            (_, Scalar::Int(x)) => return Err(unexpected(&x.to_string())),
            (_, Scalar::Float(x)) => return Err(unexpected(&x.to_string())),
            (_, Scalar::Text(x)) => return Err(unexpected(&format!("{x:?}"))),
            (_, Scalar::Bool(x)) => return Err(unexpected(&x.to_string())),
        }
        Ok(())
    }
}

enum Scalar<'s> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(&'s str),
}

impl<'de> DeserializeSeed<'de> for Flatten<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Flatten<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of values")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(Flatten {
                column: &mut *self.column,
                limit: self.limit,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_unit<E: serde::de::Error>(mut self) -> Result<(), E> {
        self.push(Scalar::Null)
    }

    fn visit_bool<E: serde::de::Error>(mut self, v: bool) -> Result<(), E> {
        self.push(Scalar::Bool(v))
    }

    fn visit_i64<E: serde::de::Error>(mut self, v: i64) -> Result<(), E> {
        self.push(Scalar::Int(v))
    }

    fn visit_u64<E: serde::de::Error>(mut self, v: u64) -> Result<(), E> {
        match i64::try_from(v) {
            Ok(v) => self.push(Scalar::Int(v)),
            Err(_) => self.push(Scalar::Float(v as f64)),
        }
    }

    fn visit_f64<E: serde::de::Error>(mut self, v: f64) -> Result<(), E> {
        self.push(Scalar::Float(v))
    }

    fn visit_str<E: serde::de::Error>(mut self, v: &str) -> Result<(), E> {
        self.push(Scalar::Text(v))
    }
}

/// A decoding error without serde_json's position, which would count from the tensor's
/// `data` rather than from the body.
fn without_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rsplit_once(" at line ") {
        Some((message, _)) => message.to_owned(),
        None => text,
    }
}

/// Decodes the input tensors into one raw passenger per row. Every size is checked before it
/// sizes anything: the row count from a shape against `max_rows`, then each tensor's values
/// against its shape while they are read.
pub fn decode(inputs: &[InputTensor], max_rows: usize) -> Result<Vec<RawPassenger>, ApiError> {
    let mut rows: Option<usize> = None;
    let mut columns: Vec<(&'static str, Column)> = Vec::with_capacity(INPUTS.len());
    for t in inputs {
        let Some(&(name, _, kind, _)) = INPUTS.iter().find(|(n, ..)| *n == t.name) else {
            return Err(bad(format!(
                "unknown input {:?}; inputs are {}",
                t.name,
                INPUTS.iter().map(|i| i.0).collect::<Vec<_>>().join(", ")
            )));
        };
        if columns.iter().any(|(n, _)| *n == name) {
            return Err(bad(format!("input {name} given twice")));
        }
        let n = match t.shape.as_slice() {
            [n] | [n, 1] if *n >= 0 => usize::try_from(*n).unwrap_or(usize::MAX),
            other => {
                return Err(bad(format!(
                    "input {name}: shape {other:?}; expected [N] or [N, 1]"
                )));
            }
        };
        if n > max_rows {
            return Err(bad(format!(
                "input {name}: shape {:?} has {n} rows; at most {max_rows} rows per request \
                 (server.max_batch_size)",
                t.shape
            )));
        }
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
        let mut column = Column::with_capacity(kind, n);
        let mut reader = serde_json::Deserializer::from_str(t.data.get());
        Flatten {
            column: &mut column,
            limit: n,
        }
        .deserialize(&mut reader)
        .map_err(|e| {
            let message = without_position(&e);
            if message.starts_with('[') {
                bad(format!("input {name}{message}"))
            } else {
                bad(format!("input {name}: {message} for shape {:?}", t.shape))
            }
        })?;
        if column.len() != n {
            return Err(bad(format!(
                "input {name}: {} values for shape {:?}",
                column.len(),
                t.shape
            )));
        }
        columns.push((name, column));
    }
    let mut out = vec![RawPassenger::default(); rows.unwrap_or(0)];
    for (name, column) in columns {
        match column {
            Column::Int(values) => {
                for (raw, v) in out.iter_mut().zip(values) {
                    *match name {
                        "passenger_id" => &mut raw.passenger_id,
                        "pclass" => &mut raw.pclass,
                        "sibsp" => &mut raw.sibsp,
                        _ => &mut raw.parch,
                    } = v;
                }
            }
            Column::Float(values) => {
                for (raw, v) in out.iter_mut().zip(values) {
                    *match name {
                        "age" => &mut raw.age,
                        _ => &mut raw.fare,
                    } = v;
                }
            }
            Column::Text(values) => {
                for (raw, v) in out.iter_mut().zip(values) {
                    *match name {
                        "sex" => &mut raw.sex,
                        "embarked" => &mut raw.embarked,
                        "name" => &mut raw.name,
                        "ticket" => &mut raw.ticket,
                        _ => &mut raw.cabin,
                    } = v;
                }
            }
        }
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
            let mut names = Vec::with_capacity(OUTPUTS.len());
            for o in outputs {
                if !OUTPUTS.iter().any(|(n, _)| *n == o.name) {
                    return Err(bad(format!(
                        "unknown output {:?}; outputs are probability, survived",
                        o.name
                    )));
                }
                // Each output is a copy of the predictions: asking twice is refused, so a
                // request cannot multiply its answer.
                if names.contains(&o.name.as_str()) {
                    return Err(bad(format!("output {} requested twice", o.name)));
                }
                names.push(o.name.as_str());
            }
            names
        }
        None => OUTPUTS.iter().map(|(n, _)| *n).collect(),
    };
    let raws = decode(&request.inputs, state.limits.max_batch_size)?;
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
