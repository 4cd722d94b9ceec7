//! The OpenAPI 3.1 document of the HTTP API, served at `GET /openapi.json`.
//!
//! Each operation is declared once, by its handler's `#[utoipa::path]` (path, method, who may
//! call it as `security`, bodies as the `ToSchema` types the handler returns), and collected by
//! [`super::api`], the same declaration the router is built from. What every route shares is
//! added here: the bearer scheme and the error responses that the middleware layers and
//! authentication can give on any route. This module also holds the schemas of inputs whose
//! rules live in validation code.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::LazyLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{
    AdditionalProperties, AnyOfBuilder, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Header, OpenApi as Document, Ref, RefOr};
use utoipa::{IntoParams, Modify, OpenApi, PartialSchema, ToSchema};

use super::error::ErrorBody;
use super::{Access, feast, oip, predict};
use crate::feature_store::FEATURE_NAMES;
use crate::feature_store::passenger::{MAX_AGE, MAX_FARE, MAX_RELATIVES, MAX_TEXT_CHARS};

/// This document.
pub fn routes(protect: &super::Protect) -> utoipa_axum::router::OpenApiRouter<super::AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(protect.route(utoipa_axum::routes!(openapi_json)))
}

/// The name of the bearer-token security scheme.
pub const BEARER: &str = "bearerAuth";

/// A route's method and path, for what depends on where it is (the error body's shape).
#[derive(Debug, Clone, Copy)]
struct Route<'a> {
    path: &'a str,
    access: Access,
}

impl Route<'_> {
    /// The Open Inference Protocol routes, whose handlers answer `{"error": "..."}`.
    fn is_oip(&self) -> bool {
        self.path == "/v2" || self.path.starts_with("/v2/")
    }

    /// Feast's feature-server routes, whose handlers answer Feast's error detail.
    fn is_feast(&self) -> bool {
        matches!(self.path, "/get-online-features" | "/push")
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "titanic",
        description = "Titanic survival prediction service: online and batch prediction, a \
            feature store, a model registry and monitoring. Every error outside `/v2` is \
            `{\"error\":{\"code\",\"message\",\"details\"}}` (the `Error` schema); the Open \
            Inference Protocol routes under `/v2` answer `{\"error\": \"...\"}` (`OipError`) \
            and Feast's `/get-online-features` and `/push` Feast's error detail \
            (`FeastErrorBody`), except for errors from the outer layers (body size announced too large, rate limit \
            by client address, headers too large, timeout, overload), which keep the service's \
            envelope. Responses carry `x-request-id`. A 500 (`internal`) is always a \
            bug and is not listed. Integers are read strictly: `3`, not `3.0`. See docs/api.md."
    ),
    components(schemas(
        ErrorBody,
        oip::OipError,
        oip::OipModelName,
        oip::OipInferResponse,
        oip::OipBinaryResponse,
        AssetName,
        feast::FeastErrorBody
    )),
    tags(
        (name = "health", description = "Liveness, readiness, metrics and this document; no token."),
        (name = "predict", description = "Online and batch prediction (scope `predict`)."),
        (name = "features", description = "The feature store: registry, push, online reads, materialization."),
        (name = "feast", description = "Feast's feature-server routes: Feast's request, response and error shapes (an error body is a JSON string, `FeastError.to_error_detail`)."),
        (name = "models", description = "The model registry: versions, aliases, training jobs, experiments."),
        (name = "monitoring", description = "Drift, live performance, feedback and the monitoring page."),
        (name = "oip", description = "The Open Inference Protocol (KServe V2)."),
    )
)]
struct ApiDoc;

/// What the routes' operations do not say: the title and description, the tags and the
/// schemas no operation names. [`super::api`] adds the operations.
pub fn base() -> Document {
    ApiDoc::openapi()
}

/// The document (built once): the operations of [`super::api`], then what every route shares.
pub fn document() -> &'static Document {
    static DOC: LazyLock<Document> = LazyLock::new(|| {
        let mut doc = super::api(&super::Protect::Describe).into_openapi();
        Shared.modify(&mut doc);
        doc
    });
    &DOC
}

/// `GET /openapi.json`
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "health",
    summary = "This OpenAPI 3.1 document",
    responses((status = 200, description = "The document.", body = Object))
)]
pub async fn openapi_json() -> Response {
    static JSON: LazyLock<String> =
        LazyLock::new(|| serde_json::to_string(document()).unwrap_or_default());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        JSON.as_str(),
    )
        .into_response()
}

// ----- What every route shares: security and the layers' error responses -----

struct Shared;

impl Modify for Shared {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An HS256 JWT from `titanic token`. A requirement lists the scope the \
                         operation needs; an empty list means any valid token.",
                    ))
                    .build(),
            ),
        );
        open_flattened(components);
        close_variants(components, "Rule");
        for (path, item) in doc.paths.paths.iter_mut() {
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                let route = Route {
                    path,
                    access: Access::of(op),
                };
                for (status, response) in layer_responses(&route) {
                    merge_response(op, status, response);
                }
            }
        }
    }
}

/// A `#[serde(flatten)]` field becomes an `allOf` member; when the flattened type refuses
/// unknown fields (`additionalProperties: false`, from `deny_unknown_fields` for its use as a
/// request), the combined object could never match. Such members are inlined without it.
fn open_flattened(components: &mut utoipa::openapi::Components) {
    let closed: BTreeMap<String, Schema> = components
        .schemas
        .iter()
        .filter_map(|(name, schema)| match schema {
            RefOr::T(Schema::Object(o))
                if matches!(
                    o.additional_properties.as_deref(),
                    Some(AdditionalProperties::FreeForm(false))
                ) =>
            {
                let mut open = o.clone();
                open.additional_properties = None;
                Some((format!("#/components/schemas/{name}"), Schema::Object(open)))
            }
            _ => None,
        })
        .collect();
    for schema in components.schemas.values_mut() {
        if let RefOr::T(Schema::AllOf(all)) = schema {
            for item in &mut all.items {
                if let RefOr::Ref(r) = item
                    && let Some(open) = closed.get(&r.ref_location)
                {
                    *item = RefOr::T(open.clone());
                }
            }
        }
    }
}

/// An externally tagged enum (`{"variant": value}`) is one key only; utoipa's `oneOf` of
/// objects would let a second key through, which serde refuses.
fn close_variants(components: &mut utoipa::openapi::Components, name: &str) {
    if let Some(RefOr::T(Schema::OneOf(one_of))) = components.schemas.get_mut(name) {
        for item in &mut one_of.items {
            if let RefOr::T(Schema::Object(o)) = item {
                o.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(false)));
            }
        }
    }
}

fn schema_ref(name: &str) -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(name))
}

/// A response header; `required` when every response of that status carries it.
fn header(description: &str, ty: Type, required: bool) -> Header {
    let mut h = Header::new(ObjectBuilder::new().schema_type(ty));
    h.description = Some(description.to_owned());
    if required {
        // utoipa's `Header` has no `required` field; OpenAPI's header object has.
        h.extensions
            .get_or_insert_with(Default::default)
            .insert("required".to_owned(), Value::Bool(true));
    }
    h
}

fn is_required(h: &Header) -> bool {
    h.extensions
        .as_ref()
        .is_some_and(|e| e.get("required") == Some(&Value::Bool(true)))
}

/// Where an error body comes from, which decides its shape on the Feast routes.
#[derive(Clone, Copy)]
enum Origin {
    /// Inside the route (extractors, auth, handlers): `FeastErrorBody` on the Feast routes.
    Route,
    /// The outer layers, around every route: always the `Error` envelope.
    Outer,
    /// Either.
    Both,
}

fn error_schema(route: &Route, origin: Origin) -> RefOr<Schema> {
    if route.is_feast() {
        return match origin {
            Origin::Outer => schema_ref("Error"),
            Origin::Route => schema_ref("FeastErrorBody"),
            Origin::Both => AnyOfBuilder::new()
                .item(schema_ref("FeastErrorBody"))
                .item(schema_ref("Error"))
                .into(),
        };
    }
    // Under `/v2`, edge rewrites every error, the outer layers' included.
    if route.is_oip() {
        schema_ref("OipError")
    } else {
        schema_ref("Error")
    }
}

fn error_response(
    route: &Route,
    origin: Origin,
    description: &str,
    headers: Vec<(&str, Header)>,
) -> utoipa::openapi::Response {
    let mut builder = ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(error_schema(route, origin)))
            .build(),
    );
    for (name, h) in headers {
        builder = builder.header(name, h);
    }
    builder.build()
}

/// The error responses any route can give from the middleware stack (and, for routes behind a
/// token, from authentication), whatever its handler does.
fn layer_responses(route: &Route) -> Vec<(&'static str, utoipa::openapi::Response)> {
    let retry_after = || header("Seconds to wait before retrying.", Type::Integer, true);
    let mut out = vec![
        (
            "400",
            error_response(
                route,
                Origin::Route,
                "`bad_request`: malformed request: the body is not syntactically valid JSON \
                 (or is nested too deeply), a path parameter does not parse, or a header is \
                 not valid.",
                vec![],
            ),
        ),
        (
            "413",
            error_response(
                route,
                Origin::Both,
                "`payload_too_large`: the body is larger than `server.body_limit_bytes`.",
                vec![],
            ),
        ),
        (
            "415",
            error_response(
                route,
                Origin::Route,
                "`unsupported_media_type`: a JSON body without a JSON `Content-Type`.",
                vec![],
            ),
        ),
        (
            "422",
            error_response(
                route,
                Origin::Route,
                "`validation_failed`: well-formed JSON that does not fit: a field of the wrong \
                 type, unknown or missing, or a body that is not an object \
                 (`details.fields` names it).",
                vec![],
            ),
        ),
        (
            "429",
            error_response(
                route,
                Origin::Both,
                "`rate_limited`: the rate limit is used up (per token subject and route class \
                 behind a token; per client address on the open routes but the health \
                 probes, and for tokens that look forged).",
                vec![
                    ("Retry-After", retry_after()),
                    (
                        "RateLimit-Limit",
                        header("Requests allowed in the window.", Type::Integer, false),
                    ),
                    (
                        "RateLimit-Remaining",
                        header("Requests left in the window.", Type::Integer, false),
                    ),
                    (
                        "RateLimit-Reset",
                        header(
                            "Seconds until the budget is full again.",
                            Type::Integer,
                            false,
                        ),
                    ),
                    (
                        "RateLimit-Policy",
                        header("`<per_second>;w=1;burst=<burst>`.", Type::String, false),
                    ),
                ],
            ),
        ),
        (
            "431",
            error_response(
                route,
                Origin::Outer,
                "`headers_too_large`: the request's headers pass `server.max_header_bytes` \
                 (`details.limit_bytes`). (The HTTP parser's own 431, for more than 100 \
                 headers, has no body.)",
                vec![],
            ),
        ),
        (
            "503",
            error_response(
                route,
                Origin::Both,
                "`timeout`: the request took longer than `server.request_timeout_secs`; \
                 `overloaded`: `server.max_concurrent_requests` requests behind a token are \
                 in flight; `unavailable`: a dependency is down and there is no fallback.",
                vec![("Retry-After", retry_after())],
            ),
        ),
    ];
    if route.access != Access::Open {
        out.push((
            "401",
            error_response(
                route,
                Origin::Route,
                "`unauthorized`: no bearer token, or the token is refused (`details.reason`).",
                vec![(
                    "WWW-Authenticate",
                    header("`Bearer error=\"invalid_token\"`.", Type::String, true),
                )],
            ),
        ));
    }
    if let Access::Scope(scope) = route.access {
        out.push((
            "403",
            error_response(
                route,
                Origin::Route,
                &format!(
                    "`forbidden`: the token lacks the scope `{scope}` (`details.required_scope`)."
                ),
                vec![],
            ),
        ));
    }
    out
}

/// Adds a layer's response to an operation; where the handler documents the same status,
/// the descriptions are joined, the bodies become either schema, and a header stays required
/// only when both responses always carry it.
fn merge_response(op: &mut Operation, status: &str, layer: utoipa::openapi::Response) {
    let Some(RefOr::T(existing)) = op.responses.responses.get_mut(status) else {
        op.responses
            .responses
            .insert(status.to_owned(), RefOr::T(layer));
        return;
    };
    existing.description = format!("{} Also {}", existing.description, layer.description);
    for (media, content) in layer.content {
        match existing.content.get_mut(&media) {
            None => {
                existing.content.insert(media, content);
            }
            Some(RefOr::T(mine)) => {
                let theirs = match content {
                    RefOr::T(c) => c.schema,
                    RefOr::Ref(_) => None,
                };
                mine.schema = match (mine.schema.take(), theirs) {
                    (Some(a), Some(b)) => Some(either(a, b)),
                    (a, b) => a.or(b),
                };
            }
            Some(RefOr::Ref(_)) => {}
        }
    }
    for (name, theirs) in layer.headers {
        let RefOr::T(theirs) = theirs else { continue };
        match existing.headers.get_mut(&name) {
            Some(RefOr::T(mine)) => {
                if !(is_required(mine) && is_required(&theirs))
                    && let Some(e) = mine.extensions.as_mut()
                {
                    e.remove("required");
                }
            }
            Some(RefOr::Ref(_)) => {}
            None => {
                let mut h = theirs;
                if let Some(e) = h.extensions.as_mut() {
                    e.remove("required");
                }
                existing.headers.insert(name, RefOr::T(h));
            }
        }
    }
}

/// A schema matching `a` or `b`: one `anyOf` of their alternatives, each once.
fn either(a: RefOr<Schema>, b: RefOr<Schema>) -> RefOr<Schema> {
    let alternatives = |s: RefOr<Schema>| match s {
        RefOr::T(Schema::AnyOf(any)) => any.items,
        other => vec![other],
    };
    let mut items: Vec<RefOr<Schema>> = Vec::new();
    for item in alternatives(a).into_iter().chain(alternatives(b)) {
        if !items.contains(&item) {
            items.push(item);
        }
    }
    if items.len() == 1 {
        items.remove(0)
    } else {
        items
            .into_iter()
            .fold(AnyOfBuilder::new(), AnyOfBuilder::item)
            .into()
    }
}

// ----- Inputs whose rules live in validation code -----

/// The `x-model-version` request header.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct ModelVersionHeader {
    /// Score with this registered model version instead of production or the experiment.
    #[param(
        rename = "x-model-version",
        nullable = false,
        pattern = "^[\\t\\x20-\\x7e]*$"
    )]
    pub x_model_version: Option<String>,
}

/// Characters Rust's `str::trim` removes (Unicode `White_Space`).
const WS: &str = "\\t-\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
/// Control characters (`char::is_control`).
const CONTROL: &str = "\\u0000-\\u001f\\u007f-\\u009f";

fn nullable(ty: Type) -> SchemaType {
    SchemaType::from_iter([ty, Type::Null])
}

/// Text as the passenger validation reads it: trimmed; empty means absent; otherwise at most
/// `MAX_TEXT_CHARS` characters and no control characters.
fn text_schema(description: &str) -> ObjectBuilder {
    let pattern = format!(
        "^[{WS}]*(?:[^{WS}{CONTROL}](?:[^{CONTROL}]{{0,{}}}[^{WS}{CONTROL}])?)?[{WS}]*$",
        MAX_TEXT_CHARS - 2
    );
    ObjectBuilder::new()
        .schema_type(nullable(Type::String))
        .pattern(Some(pattern))
        .description(Some(description))
}

fn integer(min: i64, max: i64, description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(min))
        .maximum(Some(max))
        .description(Some(description))
}

fn number(ty: impl Into<SchemaType>, min: f64, max: f64, description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(ty)
        .minimum(Some(min))
        .maximum(Some(max))
        .description(Some(description))
}

/// A passenger to score: its features, or only `passenger_id` for a stored passenger (the
/// request body of `POST /predict` and each of `instances` in `POST /predict/batch`).
pub struct PassengerInput;

impl PartialSchema for PassengerInput {
    fn schema() -> RefOr<Schema> {
        let features = ObjectBuilder::new()
            .title(Some("PassengerFeatures"))
            .description(Some(
                "Features given inline. With `passenger_id` too, the id is only echoed and \
                 leaves the passenger's own label out of its companions' survival.",
            ))
            .property(
                "passenger_id",
                ObjectBuilder::new()
                    .schema_type(nullable(Type::Integer))
                    .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                        utoipa::openapi::KnownFormat::Int64,
                    ))),
            )
            .property(
                "pclass",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .enum_values(Some([1, 2, 3]))
                    .description(Some("Ticket class.")),
            )
            .required("pclass")
            .property(
                "sex",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(format!(
                        "^[{WS}]*(?:[Mm][Aa][Ll][Ee]|[Ff][Ee][Mm][Aa][Ll][Ee])[{WS}]*$"
                    )))
                    .description(Some("`male` or `female` (any case)."))
                    .examples([Value::from("male")]),
            )
            .required("sex")
            .property(
                "age",
                number(
                    nullable(Type::Number),
                    0.0,
                    MAX_AGE,
                    "Years; `null` or absent when unknown.",
                ),
            )
            .property(
                "sibsp",
                integer(0, MAX_RELATIVES, "Siblings and spouses aboard."),
            )
            .required("sibsp")
            .property(
                "parch",
                integer(0, MAX_RELATIVES, "Parents and children aboard."),
            )
            .required("parch")
            .property(
                "fare",
                number(
                    nullable(Type::Number),
                    0.0,
                    MAX_FARE,
                    "Pounds; `null` or absent when unknown.",
                ),
            )
            .property(
                "embarked",
                ObjectBuilder::new()
                    .schema_type(nullable(Type::String))
                    .pattern(Some(format!("^[{WS}]*(?:[CQScqs][{WS}]*)?$")))
                    .description(Some(
                        "Port: `C`, `Q` or `S`; `null`, empty or absent when unknown.",
                    )),
            )
            .property(
                "name",
                text_schema("Full name with title, as in the Kaggle data."),
            )
            .property("ticket", text_schema("Ticket number."))
            .property("cabin", text_schema("Cabin number(s)."))
            .additional_properties(Some(AdditionalProperties::FreeForm(false)));
        let stored = ObjectBuilder::new()
            .title(Some("StoredPassenger"))
            .description(Some(
                "A passenger whose features come from the feature store.",
            ))
            .property(
                "passenger_id",
                ObjectBuilder::new().schema_type(Type::Integer).format(Some(
                    utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Int64),
                )),
            )
            .required("passenger_id")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)));
        OneOfBuilder::new()
            .item(features)
            .item(stored)
            .examples([serde_json::json!({
                "pclass": 3, "sex": "male", "age": 22, "sibsp": 1, "parch": 0, "fare": 7.25,
                "embarked": "S", "name": "Braund, Mr. Owen Harris", "ticket": "A/5 21171",
                "cabin": null
            })])
            .into()
    }
}

impl ToSchema for PassengerInput {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("PassengerInput")
    }
}

/// Per-feature contributions to the logit, one number per model input.
impl PartialSchema for predict::Contributions {
    fn schema() -> RefOr<Schema> {
        let mut object = ObjectBuilder::new()
            .description(Some(
                "Each model input's contribution to the logit (coefficient times standardized value).",
            ))
            .additional_properties(Some(AdditionalProperties::FreeForm(false)));
        for name in FEATURE_NAMES {
            object = object
                .property(name, ObjectBuilder::new().schema_type(Type::Number))
                .required(name);
        }
        object.into()
    }
}

impl ToSchema for predict::Contributions {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Contributions")
    }
}

/// The label of `POST /feedback`: `true`/`false`, or Kaggle's `1`/`0`.
pub struct LabelInput;

impl PartialSchema for LabelInput {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::Boolean))
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .enum_values(Some([0, 1])),
            )
            .description(Some("`true`/`false`, or Kaggle's `1`/`0`."))
            .into()
    }
}

impl ToSchema for LabelInput {}

/// The body of `PUT /models/experiment` (`ExperimentSpec`): a canary needs a `share` in
/// (0, 1]; a shadow ignores it (any value from 0 to 1).
pub struct ExperimentInput;

impl PartialSchema for ExperimentInput {
    fn schema() -> RefOr<Schema> {
        let variant = |mode: &str, share: ObjectBuilder| {
            let object = ObjectBuilder::new()
                .title(Some(mode))
                .property(
                    "mode",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some([mode])),
                )
                .required("mode")
                .property(
                    "version",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .description(Some("The candidate model version.")),
                )
                .required("version")
                .property("share", share)
                .additional_properties(Some(AdditionalProperties::FreeForm(false)));
            if mode == "canary" {
                object.required("share")
            } else {
                object
            }
        };
        OneOfBuilder::new()
            .item(variant(
                "canary",
                ObjectBuilder::new()
                    .schema_type(Type::Number)
                    .exclusive_minimum(Some(0))
                    .maximum(Some(1))
                    .description(Some("The share of requests the candidate answers.")),
            ))
            .item(variant(
                "shadow",
                ObjectBuilder::new()
                    .schema_type(Type::Number)
                    .minimum(Some(0))
                    .maximum(Some(1))
                    .description(Some(
                        "Ignored (the candidate scores a copy of every request), but 0 to 1.",
                    )),
            ))
            .into()
    }
}

impl ToSchema for ExperimentInput {}

/// An entity key: an integer (`passenger`) or a non-empty string.
pub struct EntityKey;

impl PartialSchema for EntityKey {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(i64::MIN as f64))
                    .maximum(Some(i64::MAX as f64)),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1)),
            )
            .into()
    }
}

impl ToSchema for EntityKey {}

/// The Kaggle columns the streamed CSV batch needs (any order, more allowed).
const CSV_HEADER: &str = "PassengerId,Pclass,Name,Sex,Age,SibSp,Parch,Ticket,Fare,Cabin,Embarked";

/// A Kaggle `test.csv`-format file (a `Survived` column is allowed and ignored).
pub struct CsvInput;

impl PartialSchema for CsvInput {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(format!("^{CSV_HEADER}\\r?\\n")))
            .description(Some(
                "A Kaggle-format CSV whose header names at least PassengerId, Pclass, Name, \
                 Sex, Age, SibSp, Parch, Ticket, Fare, Cabin and Embarked.",
            ))
            .examples([Value::from(format!(
                "{CSV_HEADER}\n892,3,\"Kelly, Mr. James\",male,34.5,0,0,330911,7.8292,,Q\n"
            ))])
            .into()
    }
}

impl ToSchema for CsvInput {}

/// `PassengerId,Survived,Probability` rows, and possibly a last `error: line N: ...` line.
pub struct CsvOutput;

impl PartialSchema for CsvOutput {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "`PassengerId,Survived,Probability` and a row per passenger; a row that cannot \
                 be scored ends the output with `error: line N: ...`.",
            ))
            .into()
    }
}

impl ToSchema for CsvOutput {}

// ----- Bodies the handlers build with `json!` -----

/// The monitoring page's assets.
#[derive(ToSchema)]
pub enum AssetName {
    #[serde(rename = "dashboard.js")]
    Script,
    #[serde(rename = "dashboard.css")]
    StyleSheet,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(name: &str) -> Value {
        let doc = serde_json::to_value(document()).unwrap();
        doc["components"]["schemas"][name].clone()
    }

    #[test]
    fn a_flattened_request_type_does_not_close_the_response() {
        // `Experiment` flattens `ExperimentSpec`, which refuses unknown fields as a request.
        let experiment = schema("Experiment").to_string();
        assert!(
            !experiment.contains("#/components/schemas/ExperimentSpec"),
            "{experiment}"
        );
        assert!(!experiment.contains("additionalProperties"), "{experiment}");
        assert_eq!(schema("ExperimentSpec")["additionalProperties"], false);
    }

    #[test]
    fn contributions_name_every_model_input() {
        let c = schema("Contributions");
        let names: Vec<&str> = c["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(names, FEATURE_NAMES);
    }

    #[test]
    fn text_patterns_follow_the_validation() {
        let p = schema("PassengerInput");
        let pattern = p["oneOf"][0]["properties"]["name"]["pattern"]
            .as_str()
            .unwrap()
            .to_owned();
        // A 256-character name is the longest accepted one.
        assert!(
            pattern.contains(&format!("{{0,{}}}", MAX_TEXT_CHARS - 2)),
            "{pattern}"
        );
    }
}
