//! The Open Inference Protocol (KServe V2) over REST, so standard V2 clients work unchanged:
//! server and model metadata, health, and inference with tensors. Each passenger field is one
//! input tensor named as in `/predict` (BYTES for text), of shape `[-1]` or `[-1, 1]`; the
//! outputs are `probability` (FP64) and `survived` (BOOL). Errors have the protocol's shape,
//! `{"error": "..."}`.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::{DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use super::error::ApiError;
use super::extract::{ApiJson, Object, Requested, body_bytes, is_json, json_limits, parse_json};
use super::predict::predict_all;
use super::responses::{
    ModelPath, OipInferErrors, OipInferOutputs, OipModelErrors, OipNoSuchModel, OipRegistryDown,
    OipVersionErrors, VersionPath,
};
use super::routing;
use super::state::AppState;
use crate::feature_store::RawPassenger;
use crate::monitoring::RequestInfo;

/// The Open Inference Protocol.
pub fn routes(protect: &super::Protect) -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(protect.route(utoipa_axum::routes!(server_metadata)))
        .routes(protect.probe(utoipa_axum::routes!(server_live)))
        .routes(protect.probe(utoipa_axum::routes!(server_ready)))
        .routes(protect.route(utoipa_axum::routes!(model_metadata)))
        .routes(protect.route(utoipa_axum::routes!(model_ready)))
        .routes(protect.route(utoipa_axum::routes!(infer)))
        .routes(protect.route(utoipa_axum::routes!(version_metadata)))
        .routes(protect.route(utoipa_axum::routes!(version_ready)))
        .routes(protect.route(utoipa_axum::routes!(infer_version)))
        .routes(protect.route(utoipa_axum::routes!(model_config_route)))
        .routes(protect.route(utoipa_axum::routes!(version_config)))
        .routes(protect.route(utoipa_axum::routes!(all_stats)))
        .routes(protect.route(utoipa_axum::routes!(model_stats)))
        .routes(protect.route(utoipa_axum::routes!(version_stats)))
        .routes(protect.route(utoipa_axum::routes!(repository_index)))
}

/// The model name this service serves under the protocol.
pub const MODEL: &str = "titanic";

/// The model's platform in its metadata and configuration.
const PLATFORM: &str = "linfa-logistic";

/// The protocol extensions this server implements, in `GET /v2`.
pub const EXTENSIONS: &[&str] = &["binary_tensor_data", "model_configuration", "statistics"];

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

/// The protocol's error body, on every `/v2` route.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OipError {
    pub error: String,
}

impl OipError {
    fn new(message: &str) -> Self {
        Self {
            error: message.to_owned(),
        }
    }
}

/// The only model name under the protocol.
#[derive(utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OipModelName {
    Titanic,
}

/// `GET /v2`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OipServerMetadata {
    pub name: &'static str,
    pub version: &'static str,
    /// The protocol extensions served.
    pub extensions: &'static [&'static str],
}

/// `GET /v2/health/live`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OipLive {
    pub live: bool,
}

/// `GET /v2/health/ready`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OipReady {
    pub ready: bool,
}

/// `GET /v2/models/{model}/ready`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OipModelReady {
    pub name: &'static str,
    pub ready: bool,
}

/// `GET /v2/models/{model}/versions/{version}/ready`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OipVersionReady {
    pub name: &'static str,
    pub version: String,
    pub ready: bool,
}

/// `GET /v2/models/{model}` and `GET /v2/models/{model}/versions/{version}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OipModelMetadata {
    pub name: &'static str,
    /// Every registered version, or the one asked for.
    pub versions: Vec<String>,
    pub platform: &'static str,
    pub inputs: Vec<TensorMetadata>,
    pub outputs: Vec<TensorMetadata>,
}

/// An inference response (the JSON part of a binary one).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OipInferResponse {
    pub model_name: &'static str,
    pub model_version: String,
    /// The request's `id`, when it had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub id: Option<String>,
    pub outputs: Vec<OipOutputTensor>,
}

/// A binary inference response: `Inference-Header-Content-Length` bytes of JSON
/// (`OipInferResponse`, binary outputs with `parameters.binary_data_size` instead of `data`),
/// then those outputs' little-endian bytes in order.
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct OipBinaryResponse(pub Vec<u8>);

/// One output tensor: `data` in JSON, or `parameters.binary_data_size` bytes after the header.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OipOutputTensor {
    /// `probability` (FP64) or `survived` (BOOL).
    pub name: &'static str,
    pub datatype: &'static str,
    pub shape: [usize; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub data: Option<TensorData>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub parameters: Option<BinaryOutputParameters>,
}

/// An output's values: numbers for `probability`, booleans for `survived`.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum TensorData {
    Fp64(Vec<f64>),
    Bool(Vec<bool>),
}

/// An array of numbers or of booleans; `anyOf` items, since an empty array is both.
impl utoipa::PartialSchema for TensorData {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AnyOfBuilder, ArrayBuilder, ObjectBuilder, Type};
        ArrayBuilder::new()
            .items(
                AnyOfBuilder::new()
                    .item(ObjectBuilder::new().schema_type(Type::Number))
                    .item(ObjectBuilder::new().schema_type(Type::Boolean)),
            )
            .description(Some(
                "An output's values: numbers for `probability`, booleans for `survived`.",
            ))
            .into()
    }
}

impl utoipa::ToSchema for TensorData {}

/// A binary output's size in bytes after the JSON header.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BinaryOutputParameters {
    pub binary_data_size: usize,
}

/// Whether a path is under the protocol's `/v2`, where errors have the protocol's shape.
pub fn is_oip_path(path: &str) -> bool {
    path == "/v2" || path.starts_with("/v2/")
}

/// Turns an error response in the service's envelope into the protocol's `{"error": "..."}`
/// (applied by [`super::middleware::edge`] to every error under `/v2`), keeping its status
/// and headers.
pub async fn flat_error(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        return (parts.status, ApiJson(OipError::new("error"))).into_response();
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
    let body = serde_json::to_vec(&OipError { error: message }).unwrap_or_default();
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
    responses((status = 200, description = "Server name, version and extensions.", body = OipServerMetadata))
)]
pub async fn server_metadata() -> ApiJson<OipServerMetadata> {
    ApiJson(OipServerMetadata {
        name: MODEL,
        version: env!("CARGO_PKG_VERSION"),
        extensions: EXTENSIONS,
    })
}

/// `GET /v2/health/live`
#[utoipa::path(
    get,
    path = "/v2/health/live",
    tag = "oip",
    summary = "Open Inference Protocol: liveness",
    responses((status = 200, description = "Always live.", body = OipLive))
)]
pub async fn server_live() -> ApiJson<OipLive> {
    ApiJson(OipLive { live: true })
}

/// `GET /v2/health/ready`: ready when a model is loaded and the process is not draining.
#[utoipa::path(
    get,
    path = "/v2/health/ready",
    tag = "oip",
    summary = "Open Inference Protocol: readiness",
    responses(
        (status = 200, description = "Ready.", body = OipReady),
        (status = 503, description = "No model is loaded, or the process is draining (`ready` is false).", body = OipReady),
    )
)]
pub async fn server_ready(State(state): State<AppState>) -> Response {
    let ready = state.models.current().is_some() && !state.lifecycle.is_draining();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, ApiJson(OipReady { ready })).into_response()
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

/// The version asked for, once its artifact is found, or every registered version.
async fn versions(state: &AppState, version: Option<&str>) -> Result<Vec<String>, ApiError> {
    Ok(match version {
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
    })
}

/// Declares a `/v2/models/{model}...` route and its `/v2/models/{model}/versions/{version}...`
/// twin. Both check the model's name, then answer `$answer(&state, version)`: `None` for the
/// model, the version asked for by the twin.
macro_rules! model_and_version_routes {
    ($(
        $answer:ident -> $body:ty {
            $model_fn:ident $model_path:literal, $model_summary:literal, $model_ok:literal, $model_errors:ty;
            $version_fn:ident $version_path:literal, $version_summary:literal, $version_ok:literal;
        }
    )*) => {$(
        #[utoipa::path(
            get,
            path = $model_path,
            security(("bearerAuth" = [])),
            tag = "oip",
            summary = $model_summary,
            params(ModelPath),
            responses((status = 200, description = $model_ok, body = $body), $model_errors)
        )]
        pub async fn $model_fn(
            State(state): State<AppState>,
            Path(ModelPath { model }): Path<ModelPath>,
        ) -> Result<ApiJson<$body>, ApiError> {
            check_model(&model)?;
            Ok(ApiJson($answer(&state, None).await?))
        }

        #[utoipa::path(
            get,
            path = $version_path,
            security(("bearerAuth" = [])),
            tag = "oip",
            summary = $version_summary,
            params(VersionPath),
            responses((status = 200, description = $version_ok, body = $body), OipVersionErrors)
        )]
        pub async fn $version_fn(
            State(state): State<AppState>,
            Path(VersionPath { model, version }): Path<VersionPath>,
        ) -> Result<ApiJson<$body>, ApiError> {
            check_model(&model)?;
            Ok(ApiJson($answer(&state, Some(&version)).await?))
        }
    )*};
}

model_and_version_routes! {
    metadata -> OipModelMetadata {
        model_metadata "/v2/models/{model}", "Open Inference Protocol: model metadata",
            "The model's versions, inputs and outputs.", OipModelErrors;
        version_metadata "/v2/models/{model}/versions/{version}",
            "Open Inference Protocol: metadata of one model version",
            "The version, inputs and outputs.";
    }
    configuration -> ModelConfig {
        model_config_route "/v2/models/{model}/config",
            "Open Inference Protocol: model configuration",
            "The model's configuration in Triton's form: inputs and outputs with their datatypes and dimensions, and the largest batch.",
            OipNoSuchModel;
        version_config "/v2/models/{model}/versions/{version}/config",
            "Open Inference Protocol: configuration of one model version",
            "The configuration (the same for every version).";
    }
    statistics -> Statistics {
        model_stats "/v2/models/{model}/stats",
            "Open Inference Protocol: inference statistics of a model",
            "Per registered version, as `GET /v2/models/stats`.", OipModelErrors;
        version_stats "/v2/models/{model}/versions/{version}/stats",
            "Open Inference Protocol: inference statistics of one model version",
            "The version's statistics, as `GET /v2/models/stats`.";
    }
}

async fn metadata(state: &AppState, version: Option<&str>) -> Result<OipModelMetadata, ApiError> {
    let versions = versions(state, version).await?;
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
    Ok(OipModelMetadata {
        name: MODEL,
        versions,
        platform: PLATFORM,
        inputs,
        outputs,
    })
}

/// `GET /v2/models/{model}/ready`
#[utoipa::path(
    get,
    path = "/v2/models/{model}/ready",
    security(("bearerAuth" = [])),
    tag = "oip",
    summary = "Open Inference Protocol: model readiness",
    params(ModelPath),
    responses(
        (status = 200, description = "A model is loaded.", body = OipModelReady),
        (status = 503, description = "No model is loaded (`ready` is false).", body = OipModelReady),
        OipNoSuchModel,
    )
)]
pub async fn model_ready(
    State(state): State<AppState>,
    Path(ModelPath { model }): Path<ModelPath>,
) -> Result<Response, ApiError> {
    check_model(&model)?;
    let ready = state.models.current().is_some();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((status, ApiJson(OipModelReady { name: MODEL, ready })).into_response())
}

/// `GET /v2/models/{model}/versions/{version}/ready`: the version loads and can be served.
#[utoipa::path(
    get,
    path = "/v2/models/{model}/versions/{version}/ready",
    security(("bearerAuth" = [])),
    tag = "oip",
    summary = "Open Inference Protocol: readiness of one model version",
    params(VersionPath),
    responses(
        (status = 200, description = "The version loads and can be served.", body = OipVersionReady),
        (status = 404, description = "No such model or version.", body = OipError),
        (status = 422, description = "The version cannot be served.", body = OipError),
        (status = 503, description = "No model is loaded, or the registry's database failed.", body = OipError),
    )
)]
pub async fn version_ready(
    State(state): State<AppState>,
    Path(VersionPath { model, version }): Path<VersionPath>,
) -> Result<ApiJson<OipVersionReady>, ApiError> {
    check_model(&model)?;
    routing::choose(&state, &HeaderMap::new(), Some(&version)).await?;
    Ok(ApiJson(OipVersionReady {
        name: MODEL,
        version,
        ready: true,
    }))
}

/// A tensor in a model configuration (Triton's `ModelInput` / `ModelOutput`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConfigTensor {
    name: &'static str,
    /// The datatype as Triton names it (`TYPE_INT64`, `TYPE_FP64`, `TYPE_STRING`, `TYPE_BOOL`).
    data_type: &'static str,
    /// Each row's shape, without the batch dimension: one value.
    dims: [i64; 1],
    /// Inputs only: the input may be left out.
    #[serde(skip_serializing_if = "Option::is_none")]
    optional: Option<bool>,
}

/// `GET /v2/models/{model}/config`: the model configuration in Triton's JSON form.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ModelConfig {
    name: &'static str,
    platform: &'static str,
    backend: &'static str,
    /// The most rows one request may carry (`server.max_batch_size`).
    max_batch_size: usize,
    input: Vec<ConfigTensor>,
    output: Vec<ConfigTensor>,
    /// Every registered version can be asked for (`versions/{version}/infer`).
    version_policy: VersionPolicy,
}

/// Triton's version policy: `{"all": {}}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VersionPolicy {
    all: AllVersions,
}

/// Every version (an empty object).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AllVersions {}

/// A count and its cumulative duration in nanoseconds.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StatDuration {
    count: u64,
    ns: u64,
}

/// Requests that succeeded and failed, with their durations.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InferStats {
    success: StatDuration,
    fail: StatDuration,
}

/// One model version's statistics (Triton's `ModelStatistics`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ModelStats {
    name: &'static str,
    version: String,
    /// Milliseconds since the Unix epoch of the latest request (0: none yet).
    last_inference: u64,
    /// Rows scored.
    inference_count: u64,
    /// Requests scored (one execution of the model over a request's rows).
    execution_count: u64,
    inference_stats: InferStats,
    /// Always empty: the service does not batch requests together.
    batch_stats: Vec<Value>,
}

/// `GET /v2/models/stats`, `GET /v2/models/{model}/stats`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Statistics {
    model_stats: Vec<ModelStats>,
}

/// One entry of `POST /v2/repository/index`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RepositoryEntry {
    name: &'static str,
    version: String,
    /// `READY`: every registered version can be served.
    state: &'static str,
}

/// Triton's name of a datatype in a model configuration.
fn config_type(datatype: &str) -> &'static str {
    match datatype {
        "INT64" => "TYPE_INT64",
        "FP64" => "TYPE_FP64",
        "BOOL" => "TYPE_BOOL",
        _ => "TYPE_STRING",
    }
}

fn model_config(state: &AppState) -> ModelConfig {
    ModelConfig {
        name: MODEL,
        platform: PLATFORM,
        backend: PLATFORM,
        max_batch_size: state.limits.max_batch_size,
        input: INPUTS
            .iter()
            .map(|&(name, datatype, _, required)| ConfigTensor {
                name,
                data_type: config_type(datatype),
                dims: [1],
                optional: Some(!required),
            })
            .collect(),
        output: OUTPUTS
            .iter()
            .map(|&(name, datatype)| ConfigTensor {
                name,
                data_type: config_type(datatype),
                dims: [1],
                optional: None,
            })
            .collect(),
        version_policy: VersionPolicy {
            all: AllVersions {},
        },
    }
}

/// The configuration, the same for every version (one asked for must exist).
async fn configuration(state: &AppState, version: Option<&str>) -> Result<ModelConfig, ApiError> {
    if let Some(version) = version {
        state.stores.models.artifact(version).await?;
    }
    Ok(model_config(state))
}

async fn statistics(state: &AppState, version: Option<&str>) -> Result<Statistics, ApiError> {
    let versions = versions(state, version).await?;
    let model_stats = versions
        .into_iter()
        .map(|version| {
            let s = state.monitor.inference.get(&version);
            ModelStats {
                name: MODEL,
                version,
                last_inference: s.last_inference_ms,
                inference_count: s.inference_count,
                execution_count: s.execution_count,
                inference_stats: InferStats {
                    success: StatDuration {
                        count: s.success_count,
                        ns: s.success_ns,
                    },
                    fail: StatDuration {
                        count: s.fail_count,
                        ns: s.fail_ns,
                    },
                },
                batch_stats: Vec::new(),
            }
        })
        .collect();
    Ok(Statistics { model_stats })
}

/// `GET /v2/models/stats`
#[utoipa::path(
    get,
    path = "/v2/models/stats",
    security(("bearerAuth" = [])),
    tag = "oip",
    summary = "Open Inference Protocol: inference statistics of every model version",
    responses(
        (status = 200, description = "Per registered version, since the process started: requests and rows scored, successes and failures with their cumulative durations (any route that scores counts).", body = Statistics),
        OipRegistryDown,
    )
)]
pub async fn all_stats(State(state): State<AppState>) -> Result<ApiJson<Statistics>, ApiError> {
    Ok(ApiJson(statistics(&state, None).await?))
}

/// `POST /v2/repository/index`
#[utoipa::path(
    post,
    path = "/v2/repository/index",
    security(("bearerAuth" = [])),
    tag = "oip",
    summary = "Open Inference Protocol: the model repository's index",
    responses(
        (status = 200, description = "Every registered version of the model, each `READY` (any can be asked for by version). The request body, if any, is ignored.", body = Vec<RepositoryEntry>),
        OipRegistryDown,
    )
)]
pub async fn repository_index(
    State(state): State<AppState>,
    _body: Bytes,
) -> Result<ApiJson<Vec<RepositoryEntry>>, ApiError> {
    let versions = state.stores.models.list().await?;
    Ok(ApiJson(
        versions
            .into_iter()
            .map(|v| RepositoryEntry {
                name: MODEL,
                version: v.version,
                state: "READY",
            })
            .collect(),
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct InputTensor {
    pub name: String,
    pub shape: Vec<i64>,
    pub datatype: String,
    #[serde(default)]
    pub parameters: Option<InputParameters>,
    /// Kept as the request's text until the shape has been checked, then decoded into the
    /// column (so the shape, not the data, sizes it). Absent when the input's values are
    /// binary data after the JSON (`parameters.binary_data_size`).
    #[serde(default)]
    #[schema(value_type = Option<Value>)]
    pub data: Option<Box<RawValue>>,
}

/// An input's parameters; other keys are accepted and ignored.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct InputParameters {
    /// Binary tensor data extension: the input's values are the next this many bytes of the
    /// binary data that follows the JSON header (`Inference-Header-Content-Length`).
    #[serde(default)]
    pub binary_data_size: Option<u64>,
}

/// A requested output's parameters; other keys are accepted and ignored.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct OutputParameters {
    /// Binary tensor data extension: answer this output as binary data after the JSON.
    #[serde(default)]
    pub binary_data: Option<bool>,
}

/// The request's parameters; other keys are accepted and ignored.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct RequestParameters {
    /// Binary tensor data extension: answer every output (unless the output says otherwise)
    /// as binary data after the JSON.
    #[serde(default)]
    pub binary_data_output: Option<bool>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct RequestedOutput {
    pub name: String,
    #[serde(default)]
    pub parameters: Option<OutputParameters>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct InferRequest {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub parameters: Option<RequestParameters>,
    pub inputs: Vec<InputTensor>,
    #[serde(default)]
    pub outputs: Option<Vec<RequestedOutput>>,
}

/// The header that splits a request or response body into its JSON and its binary data.
pub const INFERENCE_HEADER: HeaderName = HeaderName::from_static("inference-header-content-length");

/// An inference request body: JSON, or with `Inference-Header-Content-Length: N` (the binary
/// tensor data extension) N bytes of JSON followed by the inputs' binary data. A body with
/// no `Content-Type` is read as JSON; a binary one may also say `application/octet-stream`.
#[derive(Debug)]
pub struct InferBody {
    pub request: InferRequest,
    pub binary: Bytes,
}

impl<S: Send + Sync> FromRequest<S> for InferBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let header = match req.headers().get(INFERENCE_HEADER) {
            None => None,
            Some(value) => Some(
                value
                    .to_str()
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .ok_or_else(|| {
                        bad("Inference-Header-Content-Length is not a number of bytes")
                    })?,
            ),
        };
        let octets = req
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/octet-stream"));
        if !(is_json(req.headers()) || header.is_some() && octets) {
            return Err(ApiError::UnsupportedMediaType(
                "expected Content-Type: application/json (or none), or application/octet-stream \
                 with Inference-Header-Content-Length"
                    .to_owned(),
            ));
        }
        let (max_depth, max_items) = json_limits(&req);
        let body = body_bytes(req, state).await?;
        let (json, binary) = match header {
            None => (body, Bytes::new()),
            Some(n) => {
                let n = usize::try_from(n)
                    .ok()
                    .filter(|n| *n <= body.len())
                    .ok_or_else(|| {
                        bad(format!(
                            "Inference-Header-Content-Length {n} is beyond the body's {} bytes",
                            body.len()
                        ))
                    })?;
                (body.slice(..n), body.slice(n..))
            }
        };
        let Object(request) = parse_json(&json, max_depth, max_items)?;
        Ok(InferBody { request, binary })
    }
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

/// The size in bytes of one value of a fixed-size datatype.
fn width(datatype: &str) -> Option<usize> {
    match datatype {
        "BOOL" | "INT8" | "UINT8" => Some(1),
        "INT16" | "UINT16" | "FP16" => Some(2),
        "INT32" | "UINT32" | "FP32" => Some(4),
        "INT64" | "UINT64" | "FP64" => Some(8),
        _ => None,
    }
}

/// The first `N` bytes of `b` (zero-padded when shorter: callers pass exact chunks).
fn le<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.iter_mut().zip(b).for_each(|(o, b)| *o = *b);
    out
}

/// An IEEE 754 half-precision value.
fn f16_to_f64(bits: u16) -> f64 {
    let sign = if bits & 0x8000 == 0 { 1.0 } else { -1.0 };
    let exponent = i32::from((bits >> 10) & 0x1f);
    let fraction = f64::from(bits & 0x3ff);
    sign * match exponent {
        0 => fraction * 2f64.powi(-24),
        31 if fraction == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        e => (1.0 + fraction / 1024.0) * 2f64.powi(e - 15),
    }
}

/// One little-endian value of a numeric datatype (`chunk` is exactly its width).
fn number(datatype: &str, chunk: &[u8]) -> Scalar<'static> {
    match datatype {
        "INT8" => Scalar::Int(i64::from(i8::from_le_bytes(le(chunk)))),
        "INT16" => Scalar::Int(i64::from(i16::from_le_bytes(le(chunk)))),
        "INT32" => Scalar::Int(i64::from(i32::from_le_bytes(le(chunk)))),
        "INT64" => Scalar::Int(i64::from_le_bytes(le(chunk))),
        "UINT8" => Scalar::Int(i64::from(u8::from_le_bytes(le(chunk)))),
        "UINT16" => Scalar::Int(i64::from(u16::from_le_bytes(le(chunk)))),
        "UINT32" => Scalar::Int(i64::from(u32::from_le_bytes(le(chunk)))),
        "UINT64" => {
            let v = u64::from_le_bytes(le(chunk));
            i64::try_from(v).map_or(Scalar::Float(v as f64), Scalar::Int)
        }
        "FP16" => Scalar::Float(f16_to_f64(u16::from_le_bytes(le(chunk)))),
        "FP32" => Scalar::Float(f64::from(f32::from_le_bytes(le(chunk)))),
        "FP64" => Scalar::Float(f64::from_le_bytes(le(chunk))),
        _ => Scalar::Bool(chunk.first().is_some_and(|b| *b != 0)),
    }
}

/// Reads an input's binary data into its column, at most `n` values: fixed-size datatypes
/// little-endian, exactly `n` of them; BYTES as items each preceded by its length in 4
/// little-endian bytes, every length checked against the bytes left before it is used. The
/// error is the part of the message after the input's name.
fn read_binary(column: &mut Column, datatype: &str, bytes: &[u8], n: usize) -> Result<(), String> {
    let mut flatten = Flatten { column, limit: n };
    let push = |flatten: &mut Flatten<'_>, value| {
        flatten
            .push::<serde::de::value::Error>(value)
            .map_err(|e| e.to_string())
    };
    if datatype == "BYTES" {
        let mut rest = bytes;
        while !rest.is_empty() {
            let index = flatten.column.len();
            let Some((length, tail)) = rest.split_first_chunk::<4>() else {
                return Err(format!(
                    "[{index}]: {} bytes left, too few for an item's 4-byte length",
                    rest.len()
                ));
            };
            let length = u32::from_le_bytes(*length);
            let Some((item, after)) = usize::try_from(length)
                .ok()
                .filter(|l| *l <= tail.len())
                .map(|l| tail.split_at(l))
            else {
                return Err(format!(
                    "[{index}]: length {length} is beyond the {} bytes left",
                    tail.len()
                ));
            };
            let text = std::str::from_utf8(item)
                .map_err(|_| format!("[{index}]: the item is not UTF-8"))?;
            push(&mut flatten, Scalar::Text(text))?;
            rest = after;
        }
        return Ok(());
    }
    let Some(width) = width(datatype) else {
        return Err(format!("datatype {datatype} has no binary form"));
    };
    if n.checked_mul(width) != Some(bytes.len()) {
        return Err(format!(
            "binary_data_size {} is not {n} values of {datatype} ({width} bytes each)",
            bytes.len()
        ));
    }
    for (index, chunk) in bytes.chunks_exact(width).enumerate() {
        let value = number(datatype, chunk);
        if let Scalar::Float(x) = value
            && !x.is_finite()
        {
            return Err(format!("[{index}]: {x} is not a finite number"));
        }
        push(&mut flatten, value)?;
    }
    Ok(())
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

/// Decodes JSON input tensors (no binary data) into one raw passenger per row: [`decode_with`].
pub fn decode(inputs: &[InputTensor], max_rows: usize) -> Result<Vec<RawPassenger>, ApiError> {
    decode_with(inputs, &[], max_rows)
}

/// Decodes the input tensors into one raw passenger per row, each input's values from its
/// `data` or from its `binary_data_size` bytes of `binary` (in the order of the inputs). Every
/// size is checked before it sizes anything: the row count from a shape against `max_rows`,
/// each binary size against the bytes left, then each tensor's values against its shape
/// while they are read; binary data no input claims is refused.
pub fn decode_with(
    inputs: &[InputTensor],
    binary: &[u8],
    max_rows: usize,
) -> Result<Vec<RawPassenger>, ApiError> {
    let mut rest = binary;
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
        let binary_size = t.parameters.as_ref().and_then(|p| p.binary_data_size);
        match (&t.data, binary_size) {
            (Some(data), None) => {
                let mut reader = serde_json::Deserializer::from_str(data.get());
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
            }
            (None, Some(size)) => {
                let size = usize::try_from(size)
                    .ok()
                    .filter(|size| *size <= rest.len())
                    .ok_or_else(|| {
                        bad(format!(
                            "input {name}: binary_data_size {size} is beyond the {} bytes of \
                             binary data left in the body",
                            rest.len()
                        ))
                    })?;
                let (bytes, after) = rest.split_at(size);
                rest = after;
                read_binary(&mut column, &t.datatype, bytes, n).map_err(|message| {
                    if message.starts_with('[') {
                        bad(format!("input {name}{message}"))
                    } else {
                        bad(format!("input {name}: {message} for shape {:?}", t.shape))
                    }
                })?;
            }
            (Some(_), Some(_)) => {
                return Err(bad(format!(
                    "input {name} has both data and parameters.binary_data_size"
                )));
            }
            (None, None) => {
                return Err(bad(format!(
                    "input {name} has no data (nor parameters.binary_data_size)"
                )));
            }
        }
        if column.len() != n {
            return Err(bad(format!(
                "input {name}: {} values for shape {:?}",
                column.len(),
                t.shape
            )));
        }
        columns.push((name, column));
    }
    if !rest.is_empty() {
        return Err(bad(format!(
            "{} bytes of binary data after the last input's (the inputs' binary_data_size \
             add up to {})",
            rest.len(),
            binary.len() - rest.len()
        )));
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
    body: InferBody,
) -> Result<Response, ApiError> {
    check_model(&model)?;
    let InferBody { request, binary } = body;
    let binary_default = request
        .parameters
        .as_ref()
        .and_then(|p| p.binary_data_output)
        .unwrap_or(false);
    // Each wanted output: its name and whether it is answered as binary data.
    let wanted: Vec<(&'static str, bool)> = match &request.outputs {
        Some(outputs) => {
            let mut wanted: Vec<(&'static str, bool)> = Vec::with_capacity(OUTPUTS.len());
            for o in outputs {
                let Some(&(name, _)) = OUTPUTS.iter().find(|(n, _)| *n == o.name) else {
                    return Err(bad(format!(
                        "unknown output {:?}; outputs are probability, survived",
                        o.name
                    )));
                };
                // Each output is a copy of the predictions: asking twice is refused, so a
                // request cannot multiply its answer.
                if wanted.iter().any(|(n, _)| *n == name) {
                    return Err(bad(format!("output {name} requested twice")));
                }
                let binary = o
                    .parameters
                    .as_ref()
                    .and_then(|p| p.binary_data)
                    .unwrap_or(binary_default);
                wanted.push((name, binary));
            }
            wanted
        }
        None => OUTPUTS.iter().map(|(n, _)| (*n, binary_default)).collect(),
    };
    let raws = decode_with(&request.inputs, &binary, state.limits.max_batch_size)?;
    let choice = routing::choose(&state, &headers, version.as_deref()).await?;
    let n = raws.len();
    let predictions = predict_all(&state, &request_info, &choice, raws, |i| {
        format!("row[{i}]")
    })
    .await?;
    let mut data = Vec::new();
    let outputs: Vec<OipOutputTensor> = wanted
        .iter()
        .map(|&(name, binary)| {
            let (datatype, values, bytes): (_, TensorData, Vec<u8>) = match name {
                "probability" => (
                    "FP64",
                    TensorData::Fp64(predictions.iter().map(|p| p.probability).collect()),
                    predictions
                        .iter()
                        .flat_map(|p| p.probability.to_le_bytes())
                        .collect(),
                ),
                _ => (
                    "BOOL",
                    TensorData::Bool(predictions.iter().map(|p| p.survived).collect()),
                    predictions.iter().map(|p| u8::from(p.survived)).collect(),
                ),
            };
            let (data_field, parameters) = if binary {
                let size = bytes.len();
                data.extend_from_slice(&bytes);
                (
                    None,
                    Some(BinaryOutputParameters {
                        binary_data_size: size,
                    }),
                )
            } else {
                (Some(values), None)
            };
            OipOutputTensor {
                name,
                datatype,
                shape: [n],
                data: data_field,
                parameters,
            }
        })
        .collect();
    let response = OipInferResponse {
        model_name: MODEL,
        model_version: choice.served.model.version().to_string(),
        id: request.id,
        outputs,
    };
    if !wanted.iter().any(|(_, binary)| *binary) {
        return Ok(ApiJson(response).into_response());
    }
    let mut body = serde_json::to_vec(&response)
        .map_err(|e| ApiError::Internal(format!("encoding the response: {e}")))?;
    let header_length = body.len();
    body.extend_from_slice(&data);
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (INFERENCE_HEADER, HeaderValue::from(header_length)),
        ],
        body,
    )
        .into_response())
}

/// Two passengers as tensors, the example of the infer routes' request body.
fn infer_example() -> Value {
    serde_json::json!({"inputs": [
        {"name": "pclass", "datatype": "INT64", "shape": [2], "data": [3, 1]},
        {"name": "sex", "datatype": "BYTES", "shape": [2], "data": ["male", "female"]},
        {"name": "sibsp", "datatype": "INT64", "shape": [2], "data": [1, 1]},
        {"name": "parch", "datatype": "INT64", "shape": [2], "data": [0, 0]},
        {"name": "age", "datatype": "FP64", "shape": [2], "data": [22.0, 38.0]}
    ]})
}

/// `POST /v2/models/{model}/infer`
#[utoipa::path(
    post,
    path = "/v2/models/{model}/infer",
    security(("bearerAuth" = ["predict"])),
    tag = "oip",
    summary = "Open Inference Protocol: inference with tensors",
    params(ModelPath, super::openapi::ModelVersionHeader),
    request_body(content = InferRequest, example = infer_example),
    responses(
        OipInferOutputs,
        OipInferErrors,
    )
)]
pub async fn infer(
    State(state): State<AppState>,
    headers: HeaderMap,
    Requested(info): Requested,
    Path(ModelPath { model }): Path<ModelPath>,
    body: InferBody,
) -> Result<Response, ApiError> {
    infer_with(state, headers, info, model, None, body).await
}

/// `POST /v2/models/{model}/versions/{version}/infer`
#[utoipa::path(
    post,
    path = "/v2/models/{model}/versions/{version}/infer",
    security(("bearerAuth" = ["predict"])),
    tag = "oip",
    summary = "Open Inference Protocol: inference with tensors, by one model version",
    params(VersionPath),
    request_body(content = InferRequest, example = infer_example),
    responses(
        OipInferOutputs,
        OipInferErrors,
    )
)]
pub async fn infer_version(
    State(state): State<AppState>,
    headers: HeaderMap,
    Requested(info): Requested,
    Path(VersionPath { model, version }): Path<VersionPath>,
    body: InferBody,
) -> Result<Response, ApiError> {
    infer_with(state, headers, info, model, Some(version), body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(kind: Kind, datatype: &str, bytes: &[u8], n: usize) -> Result<Column, String> {
        // (decode sizes columns by shapes it has checked; these tests pass any `n`)
        let mut column = Column::with_capacity(kind, n.min(16));
        read_binary(&mut column, datatype, bytes, n).map(|()| column)
    }

    fn items(items: &[&[u8]]) -> Vec<u8> {
        items
            .iter()
            .flat_map(|s| {
                let mut item = (s.len() as u32).to_le_bytes().to_vec();
                item.extend_from_slice(s);
                item
            })
            .collect()
    }

    #[test]
    fn fixed_size_values_are_little_endian() {
        let ints: Vec<u8> = [3i16, -1].iter().flat_map(|v| v.to_le_bytes()).collect();
        match read(Kind::Int, "INT16", &ints, 2) {
            Ok(Column::Int(v)) => assert_eq!(v, [Some(3), Some(-1)]),
            other => panic!("{other:?}"),
        }
        match read(Kind::Float, "UINT8", &[7, 255], 2) {
            Ok(Column::Float(v)) => assert_eq!(v, [Some(7.0), Some(255.0)]),
            other => panic!("{other:?}"),
        }
        // An integer field given as floats takes whole numbers only.
        let floats: Vec<u8> = [2.0f64, 2.5].iter().flat_map(|v| v.to_le_bytes()).collect();
        let err = read(Kind::Int, "FP64", &floats, 2).unwrap_err();
        assert_eq!(err, "[1]: 2.5 is not an integer");
        // Half precision: 1.0, -2.0, 65504 (the largest), a subnormal.
        assert_eq!(f16_to_f64(0x3c00), 1.0);
        assert_eq!(f16_to_f64(0xc000), -2.0);
        assert_eq!(f16_to_f64(0x7bff), 65504.0);
        assert_eq!(f16_to_f64(0x0001), 2f64.powi(-24));
        assert!(f16_to_f64(0x7e00).is_nan());
        let err = read(Kind::Float, "FP16", &0x7c00u16.to_le_bytes(), 1).unwrap_err();
        assert!(err.contains("not a finite number"), "{err}");
    }

    #[test]
    fn sizes_must_match_the_shape() {
        // One byte short, one byte over, and a count whose byte size would overflow.
        assert!(read(Kind::Int, "INT64", &[0; 15], 2).is_err());
        assert!(read(Kind::Int, "INT64", &[0; 17], 2).is_err());
        assert!(read(Kind::Int, "INT64", &[0; 16], usize::MAX).is_err());
        assert!(read(Kind::Int, "BYTES", &[], 0).is_ok());
        assert!(read(Kind::Int, "STRING", &[0; 8], 1).is_err());
    }

    #[test]
    fn bytes_items_are_length_prefixed_and_checked() {
        match read(Kind::Text, "BYTES", &items(&[b"male", b"", b"female"]), 3) {
            Ok(Column::Text(v)) => assert_eq!(
                v,
                [
                    Some("male".into()),
                    Some(String::new()),
                    Some("female".into())
                ]
            ),
            other => panic!("{other:?}"),
        }
        // A length beyond the bytes left, a truncated length, too many items, not UTF-8.
        let mut long = items(&[b"male"]);
        long[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            read(Kind::Text, "BYTES", &long, 1).unwrap_err(),
            "[0]: length 4294967295 is beyond the 4 bytes left"
        );
        let mut cut = items(&[b"male"]);
        cut.extend([1, 0]);
        let err = read(Kind::Text, "BYTES", &cut, 2).unwrap_err();
        assert!(err.starts_with("[1]: 2 bytes left"), "{err}");
        let err = read(Kind::Text, "BYTES", &items(&[b"a", b"b"]), 1).unwrap_err();
        assert!(err.contains("more than 1 values"), "{err}");
        assert!(read(Kind::Text, "BYTES", &items(&[&[0xff, 0xfe]]), 1).is_err());
    }

    #[test]
    fn oip_paths() {
        assert!(is_oip_path("/v2"));
        assert!(is_oip_path("/v2/models/x/infer"));
        assert!(!is_oip_path("/v2x"));
        assert!(!is_oip_path("/predict"));
    }
}
