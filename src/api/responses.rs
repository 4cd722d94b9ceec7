//! Error responses several routes declare alike, and the path parameters of the `/v2` routes,
//! each described once for the OpenAPI document. The responses are only described: the
//! handlers return [`super::ApiError`], which builds them.
#![allow(dead_code)]

use std::collections::BTreeMap;

use serde::Deserialize;
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{IntoParams, IntoResponses};

use super::error::ErrorBody;
use super::oip::{OipBinaryResponse, OipError, OipInferResponse, OipModelName};

/// `unavailable` from the registry's database.
#[derive(IntoResponses)]
#[response(
    status = 503,
    description = "The registry's database failed (`unavailable`)."
)]
pub struct RegistryDown(ErrorBody);

/// `unavailable` from the database.
#[derive(IntoResponses)]
#[response(status = 503, description = "The database failed (`unavailable`).")]
pub struct DatabaseDown(ErrorBody);

/// A registered model version that does not exist.
#[derive(IntoResponses)]
#[response(status = 404, description = "No such version.")]
pub struct NoSuchVersion(ErrorBody);

/// A feature registry definition refused.
#[derive(IntoResponses)]
#[response(
    status = 422,
    description = "The definition is invalid, or refers to a definition that does not exist \
                   (each problem named in `details.fields`)."
)]
pub struct InvalidDefinition(ErrorBody);

/// An `x-model-version` request header that is not text.
#[derive(IntoResponses)]
#[response(
    status = 400,
    description = "An `x-model-version` header that is not text."
)]
pub struct BadVersionHeader(ErrorBody);

/// Nothing to score with.
#[derive(IntoResponses)]
#[response(
    status = 503,
    description = "No model is loaded, or stored features can be read from neither store \
                   (`unavailable`)."
)]
pub struct CannotScore(ErrorBody);

/// The errors of a `/v2` route about the model.
#[derive(IntoResponses)]
pub enum OipModelErrors {
    #[response(status = 404, description = "No such model.")]
    NotFound(OipError),
    #[response(status = 503, description = "The registry's database failed.")]
    Unavailable(OipError),
}

/// The errors of a `/v2` route about one version of the model.
#[derive(IntoResponses)]
pub enum OipVersionErrors {
    #[response(status = 404, description = "No such model or version.")]
    NotFound(OipError),
    #[response(status = 422, description = "The stored artifact cannot be read.")]
    Unreadable(OipError),
    #[response(status = 503, description = "The registry's database failed.")]
    Unavailable(OipError),
}

/// A `/v2` route about the model that reads no database.
#[derive(IntoResponses)]
#[response(status = 404, description = "No such model.")]
pub struct OipNoSuchModel(OipError);

/// `/v2` when the registry's database failed.
#[derive(IntoResponses)]
#[response(status = 503, description = "The registry's database failed.")]
pub struct OipRegistryDown(OipError);

/// The errors of `/v2` inference, by the model or by one version.
#[derive(IntoResponses)]
pub enum OipInferErrors {
    #[response(
        status = 400,
        description = "Tensors that do not fit: an unknown or repeated input or output, a bad \
                       shape or datatype, a row count that differs between inputs, or too many \
                       rows; binary data that does not fit its sizes \
                       (`Inference-Header-Content-Length`, `binary_data_size`, a BYTES item's \
                       length); a corrupt compressed body."
    )]
    BadTensors(OipError),
    #[response(
        status = 404,
        description = "No such model or version (the version also by `x-model-version`)."
    )]
    NotFound(OipError),
    #[response(
        status = 422,
        description = "A row is not a valid passenger, or the version cannot be served."
    )]
    Invalid(OipError),
    #[response(
        status = 503,
        description = "No model is loaded, or stored features can be read from neither store."
    )]
    Unavailable(OipError),
}

/// The 200 of `/v2` inference, by the model or by one version: JSON, or a JSON header
/// followed by binary outputs. Its two schemas are listed in the document's components
/// (`api/openapi.rs`), since a hand-written response does not register them.
pub struct OipInferOutputs;

impl utoipa::IntoResponses for OipInferOutputs {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        fn content<T: utoipa::ToSchema>() -> utoipa::openapi::Content {
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(T::name())))
                .build()
        }
        let outputs = ResponseBuilder::new()
            .description(
                "The outputs, one value per input row: JSON, or with binary outputs asked for \
                 (`binary_data` on an output, `binary_data_output` on the request) the JSON \
                 header (its length in `Inference-Header-Content-Length`) followed by those \
                 outputs' bytes.",
            )
            .content("application/json", content::<OipInferResponse>())
            .content("application/octet-stream", content::<OipBinaryResponse>())
            .build();
        BTreeMap::from([("200".to_owned(), outputs.into())])
    }
}

/// `{model}` of a `/v2/models/{model}/...` route.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ModelPath {
    /// The model name; this server serves `titanic`.
    #[param(value_type = OipModelName)]
    pub model: String,
}

/// `{model}` and `{version}` of a `/v2/models/{model}/versions/{version}/...` route.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct VersionPath {
    /// The model name; this server serves `titanic`.
    #[param(value_type = OipModelName)]
    pub model: String,
    /// A registered model version.
    #[param(min_length = 1, example = "v1")]
    pub version: String,
}
