//! Feature management: the registry (entities, feature views, feature services and their
//! versions), pushing rows, reading online features (Feast's `get-online-features` shape) and
//! materialization. Reads need any valid token; writes need `features:write`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::ApiError;
use super::extract::{ApiJson, Object};
use super::responses::{InvalidDefinition, RegistryDown};
use super::state::AppState;
use crate::core::security::Claims;
use crate::core::time::{Micros, micros_to_rfc3339, parse_rfc3339};
use crate::feature_store::history;
use crate::feature_store::materialize::{self, Mode, Report};
use crate::feature_store::push::{self, PushOptions, PushOutcome, PushRow};
use crate::feature_store::registry::{
    EntitySpec, FeatureServiceSpec, FeatureViewSpec, Kind, Registered, Versioned,
};
use crate::feature_store::{FieldError, ValidationErrors};

/// The feature store.
pub fn routes(protect: &super::Protect) -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(protect.route(utoipa_axum::routes!(list_entities)))
        .routes(protect.route(utoipa_axum::routes!(register_entity)))
        .routes(protect.route(utoipa_axum::routes!(entity_versions)))
        .routes(protect.route(utoipa_axum::routes!(entity_version)))
        .routes(protect.route(utoipa_axum::routes!(list_views)))
        .routes(protect.route(utoipa_axum::routes!(register_view)))
        .routes(protect.route(utoipa_axum::routes!(view_versions)))
        .routes(protect.route(utoipa_axum::routes!(view_version)))
        .routes(protect.route(utoipa_axum::routes!(list_services)))
        .routes(protect.route(utoipa_axum::routes!(register_service)))
        .routes(protect.route(utoipa_axum::routes!(service_versions)))
        .routes(protect.route(utoipa_axum::routes!(service_version)))
        .routes(protect.route(utoipa_axum::routes!(online_features)))
        .routes(protect.route(utoipa_axum::routes!(historical_features)))
        .routes(protect.route(utoipa_axum::routes!(push_rows)))
        .routes(protect.route(utoipa_axum::routes!(materialize_views)))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Items<T> {
    pub items: Vec<Versioned<T>>,
}

/// 201 when a new version was created, 200 when the definition equals the latest version.
fn registered<T: Serialize>(r: Registered<T>) -> Response {
    let status = if r.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (status, ApiJson(r)).into_response()
}

/// The routes of one kind of registry definition: list the latest versions, every version of
/// one name, one version, and register a new version. `$what` names the kind ("entity"),
/// `$path` its collection route.
macro_rules! registry_routes {
    ($kind:expr, $spec:ident, $what:literal / $a_what:literal, $path:literal, $name_path:literal,
     $version_path:literal, example $example:literal,
     $list:ident, $versions:ident, $version:ident, $register:ident) => {
        #[utoipa::path(
            get,
            path = $path,
            security(("bearerAuth" = [])),
            tag = "features",
            summary = concat!("The latest version of every ", $what),
            responses(
                (status = 200, description = "Latest versions, by name.", body = Items<$spec>),
                RegistryDown,
            )
        )]
        pub async fn $list(
            State(state): State<AppState>,
        ) -> Result<ApiJson<Items<$spec>>, ApiError> {
            let items = state.stores.features.list::<$spec>($kind).await?;
            Ok(ApiJson(Items { items }))
        }

        #[utoipa::path(
            get,
            path = $name_path,
            security(("bearerAuth" = [])),
            tag = "features",
            summary = concat!("Every version of one ", $what, ", oldest first"),
            params(("name" = String, Path, min_length = 1, example = $example, description = "The definition's name.")),
            responses(
                (status = 200, description = "Every version, oldest first.", body = Items<$spec>),
                (status = 404, description = "No definition of this name.", body = super::error::ErrorBody),
                RegistryDown,
            )
        )]
        pub async fn $versions(
            State(state): State<AppState>,
            Path(name): Path<String>,
        ) -> Result<ApiJson<Items<$spec>>, ApiError> {
            let items = state
                .stores
                .features
                .versions::<$spec>($kind, &name)
                .await?;
            Ok(ApiJson(Items { items }))
        }

        #[utoipa::path(
            get,
            path = $version_path,
            security(("bearerAuth" = [])),
            tag = "features",
            summary = concat!("One version of one ", $what),
            params(
                ("name" = String, Path, min_length = 1, example = $example, description = "The definition's name."),
                ("version" = i64, Path, example = 1, description = "The version number (an integer; anything else is 400)."),
            ),
            responses(
                (status = 200, description = "The version.", body = Versioned<$spec>),
                (status = 404, description = "No such definition or version.", body = super::error::ErrorBody),
                RegistryDown,
            )
        )]
        pub async fn $version(
            State(state): State<AppState>,
            Path((name, version)): Path<(String, i64)>,
        ) -> Result<ApiJson<Versioned<$spec>>, ApiError> {
            Ok(ApiJson(
                state
                    .stores
                    .features
                    .get::<$spec>($kind, &name, version)
                    .await?,
            ))
        }

        #[utoipa::path(
            post,
            path = $path,
            security(("bearerAuth" = ["features:write"])),
            tag = "features",
            summary = concat!("Register ", $a_what, " (a new version when the definition changed)"),
            request_body = $spec,
            responses(
                (status = 201, description = "A new version was created.", body = Registered<$spec>),
                (status = 200, description = "The definition equals the latest version; nothing was created.", body = Registered<$spec>),
                InvalidDefinition,
                RegistryDown,
            )
        )]
        pub async fn $register(
            State(state): State<AppState>,
            Extension(claims): Extension<Arc<Claims>>,
            ApiJson(Object(spec)): ApiJson<Object<$spec>>,
        ) -> Result<Response, ApiError> {
            let r = state.stores.features.$register(&spec, &claims.sub).await?;
            Ok(registered(r))
        }
    };
}

registry_routes! {
    Kind::Entity, EntitySpec, "entity" / "an entity", "/features/entities",
    "/features/entities/{name}", "/features/entities/{name}/versions/{version}",
    example "passenger", list_entities, entity_versions, entity_version, register_entity
}
registry_routes! {
    Kind::View, FeatureViewSpec, "feature view" / "a feature view", "/features/views",
    "/features/views/{name}", "/features/views/{name}/versions/{version}",
    example "passenger_demographics", list_views, view_versions, view_version, register_view
}
registry_routes! {
    Kind::Service, FeatureServiceSpec, "feature service" / "a feature service", "/features/services",
    "/features/services/{name}", "/features/services/{name}/versions/{version}",
    example "titanic_survival", list_services, service_versions, service_version, register_service
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushRequest {
    pub view: String,
    /// Default: the view's latest version.
    #[serde(default)]
    pub version: Option<i64>,
    pub rows: Vec<PushRow>,
}

pub(crate) async fn view_or_latest(
    state: &AppState,
    name: &str,
    version: Option<i64>,
) -> Result<Versioned<FeatureViewSpec>, ApiError> {
    let registry = &state.stores.features;
    Ok(match version {
        Some(v) => registry.get(Kind::View, name, v).await?,
        None => registry.latest(Kind::View, name).await?,
    })
}

/// `POST /features/push`: 200 with what was accepted and rejected (row by row), once the
/// accepted rows are durable; 422 when no row is valid.
#[utoipa::path(
    post,
    path = "/features/push",
    security(("bearerAuth" = ["features:write"])),
    tag = "features",
    summary = "Validate and store feature rows, then write them through to the online store",
    request_body(content = PushRequest, example = json!({
        "view": "passenger_demographics",
        "rows": [{"entity": 1310, "values": {"pclass": 2, "sex": "female", "age": 29, "sibsp": 0, "parch": 1, "fare": 26.0, "embarked": "S", "name": "Doe, Mrs. Jane"}}]
    })),
    responses(
        (status = 200, description = "What was accepted and rejected, row by row, once the accepted rows are durable.", body = PushOutcome),
        (status = 404, description = "No such feature view (or version), or its entity does not exist.", body = super::error::ErrorBody),
        (status = 422, description = "Too many rows, or no row is valid (each problem named in `details.fields`).", body = super::error::ErrorBody),
        (status = 503, description = "The offline store failed (`unavailable`).", body = super::error::ErrorBody),
    )
)]
pub async fn push_rows(
    State(state): State<AppState>,
    Extension(claims): Extension<Arc<Claims>>,
    ApiJson(Object(request)): ApiJson<Object<PushRequest>>,
) -> Result<ApiJson<PushOutcome>, ApiError> {
    let view = view_or_latest(&state, &request.view, request.version).await?;
    store_rows(
        &state,
        &view,
        request.rows,
        &claims.sub,
        PushOptions::default(),
    )
    .await
    .map(ApiJson)
}

/// The one push behind `POST /features/push` and Feast's `POST /push`: 422 naming each
/// problem when no row is valid (or, with `all_or_nothing`, when any row is invalid).
pub async fn store_rows(
    state: &AppState,
    view: &Versioned<FeatureViewSpec>,
    rows: Vec<PushRow>,
    subject: &str,
    options: PushOptions,
) -> Result<PushOutcome, ApiError> {
    let entity: Versioned<EntitySpec> = state
        .stores
        .features
        .latest(Kind::Entity, &view.spec.entity)
        .await?;
    let count = rows.len();
    let source = format!("push:{subject}");
    let outcome = push::push(&state.features, view, &entity.spec, rows, &source, options)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    if outcome.accepted == 0 && count > 0 {
        let fields = outcome
            .rejected
            .iter()
            .flat_map(|r| {
                r.errors.iter().map(move |e| FieldError {
                    field: format!("rows[{}].{}", r.index, e.field),
                    message: e.message.clone(),
                })
            })
            .collect();
        return Err(ApiError::Validation(ValidationErrors(fields)));
    }
    Ok(outcome)
}

/// Declares a feature request: the features (`features` or `feature_service`), the entity
/// keys by one join key, the request's own fields (`$own`), then `full_feature_names`.
/// Unknown fields are refused. [`Selection`] takes out what [`resolve`] reads.
macro_rules! feature_request {
    ($(#[$meta:meta])* $name:ident, entities: $entities:literal, { $($own:tt)* }) => {
        $(#[$meta])*
        #[derive(Debug, Deserialize, utoipa::ToSchema)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            /// `view:feature` or `view@version:feature` references.
            #[serde(default)]
            pub features: Vec<String>,
            #[serde(default)]
            pub feature_service: Option<String>,
            /// Version of `feature_service`; default: its latest.
            #[serde(default)]
            pub feature_service_version: Option<i64>,
            #[doc = $entities]
            #[schema(value_type = BTreeMap<String, Vec<super::openapi::EntityKey>>)]
            pub entities: BTreeMap<String, Vec<Value>>,
            $($own)*
            /// Name features `view__feature` instead of `feature`.
            #[serde(default)]
            pub full_feature_names: bool,
        }

        impl $name {
            /// The features and entity keys asked for, taken out of the request.
            fn selection(&mut self) -> Selection {
                Selection {
                    features: std::mem::take(&mut self.features),
                    feature_service: self.feature_service.take(),
                    feature_service_version: self.feature_service_version,
                    entities: std::mem::take(&mut self.entities),
                }
            }
        }
    };
}

/// What a feature request selects: features by reference or by service, and entity keys.
struct Selection {
    features: Vec<String>,
    feature_service: Option<String>,
    feature_service_version: Option<i64>,
    entities: BTreeMap<String, Vec<Value>>,
}

feature_request!(
    OnlineFeaturesRequest,
    entities: " One join key with its values, e.g. `{\"passenger_id\": [1, 2]}`.",
    {}
);

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OnlineFeaturesResponse {
    pub metadata: OnlineMetadata,
    pub results: Vec<OnlineColumn>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OnlineMetadata {
    pub feature_names: Vec<String>,
}

/// One column: the join key first, then one per feature, a value per requested entity.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OnlineColumn {
    /// Values of any JSON type (`null` when missing).
    pub values: Vec<Value>,
    pub statuses: Vec<crate::feature_store::retrieval::FeatureStatus>,
    /// RFC 3339; the Unix epoch when there is no value.
    pub event_timestamps: Vec<String>,
}

const EPOCH: &str = "1970-01-01T00:00:00Z";

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ApiError {
    ApiError::Validation(ValidationErrors::single(field, message))
}

/// `POST /features/online`: feature values with per-value status and event time.
#[utoipa::path(
    post,
    path = "/features/online",
    security(("bearerAuth" = [])),
    tag = "features",
    summary = "Feature values with per-value status and event time (Feast's get-online-features shape)",
    request_body(content = OnlineFeaturesRequest, example = json!({
        "feature_service": "titanic_survival", "entities": {"passenger_id": [892, 5000]}
    })),
    responses(
        (status = 200, description = "One column per feature, after the join key's.", body = OnlineFeaturesResponse),
        (status = 404, description = "No such feature view, feature service or version.", body = super::error::ErrorBody),
        (status = 422, description = "A bad feature reference, both or neither of `features` and `feature_service`, not exactly one join key, the wrong join key, too many or invalid entity keys.", body = super::error::ErrorBody),
        (status = 503, description = "The values can be read from neither store, or the registry's database failed (`unavailable`).", body = super::error::ErrorBody),
    )
)]
pub async fn online_features(
    State(state): State<AppState>,
    ApiJson(Object(request)): ApiJson<Object<OnlineFeaturesRequest>>,
) -> Result<ApiJson<OnlineFeaturesResponse>, ApiError> {
    read_online(&state, request).await.map(ApiJson)
}

/// The one online read behind `POST /features/online` and Feast's `POST /get-online-features`.
pub async fn read_online(
    state: &AppState,
    mut request: OnlineFeaturesRequest,
) -> Result<OnlineFeaturesResponse, ApiError> {
    let named = resolve(state, request.selection()).await?;
    let full_feature_names = request.full_feature_names;
    let columns = state
        .features
        .online_features(&named.requests, &named.keys)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(respond(named, columns, full_feature_names))
}

/// What a feature request names: the view versions with their features, the join key and the
/// entity keys (as given, and as stored).
struct Named {
    requests: Vec<(Versioned<FeatureViewSpec>, Vec<String>)>,
    join_key: String,
    values: Vec<Value>,
    keys: Vec<String>,
}

/// Resolves `features` or `feature_service` (one of them) against the registry, and checks the
/// one join key and its values.
async fn resolve(state: &AppState, request: Selection) -> Result<Named, ApiError> {
    let registry = &state.stores.features;
    // Which view versions and features.
    let mut requests: Vec<(Versioned<FeatureViewSpec>, Vec<String>)> = Vec::new();
    match (&request.feature_service, request.features.is_empty()) {
        (Some(name), true) => {
            let service: Versioned<FeatureServiceSpec> = match request.feature_service_version {
                Some(v) => registry.get(Kind::Service, name, v).await?,
                None => registry.latest(Kind::Service, name).await?,
            };
            for p in &service.spec.views {
                let view = registry.get(Kind::View, &p.view, p.version).await?;
                requests.push((view, p.features.clone()));
            }
        }
        (None, false) => {
            // One registry read per distinct view, however many references name it.
            let mut looked_up: Vec<(&str, Option<i64>, Versioned<FeatureViewSpec>)> = Vec::new();
            for (i, reference) in request.features.iter().enumerate() {
                let field = format!("features[{i}]");
                let (view_ref, feature) = reference
                    .split_once(':')
                    .ok_or_else(|| invalid(&field, "expected view:feature"))?;
                let (name, version) = match view_ref.split_once('@') {
                    Some((n, v)) => (
                        n,
                        Some(
                            v.parse::<i64>()
                                .map_err(|_| invalid(&field, "bad version"))?,
                        ),
                    ),
                    None => (view_ref, None),
                };
                let view = match looked_up
                    .iter()
                    .find(|(n, v, _)| *n == name && *v == version)
                {
                    Some((.., view)) => view.clone(),
                    None => {
                        let view = view_or_latest(state, name, version).await?;
                        looked_up.push((name, version, view.clone()));
                        view
                    }
                };
                if view.spec.feature(feature).is_none() {
                    return Err(invalid(
                        field,
                        format!(
                            "{feature:?} is not in {} version {}",
                            view.name, view.version
                        ),
                    ));
                }
                match requests
                    .iter_mut()
                    .find(|(v, _)| v.name == view.name && v.version == view.version)
                {
                    // A column per reference: a repeated one would repeat a column per
                    // entity, so the answer could grow as references times entities.
                    Some((_, features)) if features.iter().any(|f| f == feature) => {
                        return Err(invalid(field, format!("{reference:?} is given twice")));
                    }
                    Some((_, features)) => features.push(feature.to_owned()),
                    None => requests.push((view, vec![feature.to_owned()])),
                }
            }
        }
        _ => {
            return Err(invalid(
                "features",
                "give either features or feature_service, not both or neither",
            ));
        }
    }
    // The join key, which every view's entity must use.
    let mut entities = request.entities.into_iter();
    let (join_key, values) = match (entities.next(), entities.next()) {
        (Some(pair), None) => pair,
        _ => {
            return Err(invalid(
                "entities",
                "give exactly one join key with its values",
            ));
        }
    };
    let mut keys = Vec::with_capacity(values.len());
    for (view, _) in &requests {
        let entity: Versioned<EntitySpec> =
            registry.latest(Kind::Entity, &view.spec.entity).await?;
        if entity.spec.join_key != join_key {
            return Err(invalid(
                "entities",
                format!(
                    "view {} is keyed by {:?}, not {join_key:?}",
                    view.name, entity.spec.join_key
                ),
            ));
        }
    }
    for (i, v) in values.iter().enumerate() {
        match v {
            Value::Number(n) if n.is_i64() => keys.push(n.to_string()),
            Value::String(s) if !s.is_empty() => keys.push(s.clone()),
            _ => {
                return Err(invalid(
                    format!("entities.{join_key}[{i}]"),
                    "must be an integer or a non-empty string",
                ));
            }
        }
    }
    Ok(Named {
        requests,
        join_key,
        values,
        keys,
    })
}

/// The columnar answer (Feast's shape): the join key's column, then one per feature.
fn respond(
    named: Named,
    columns: Vec<crate::feature_store::retrieval::FeatureColumn>,
    full_feature_names: bool,
) -> OnlineFeaturesResponse {
    let Named {
        join_key, values, ..
    } = named;
    let mut feature_names = vec![join_key];
    let mut results = vec![OnlineColumn {
        statuses: vec![crate::feature_store::retrieval::FeatureStatus::Present; values.len()],
        event_timestamps: vec![EPOCH.to_owned(); values.len()],
        values,
    }];
    for c in columns {
        feature_names.push(if full_feature_names {
            format!("{}__{}", c.view, c.feature)
        } else {
            c.feature
        });
        results.push(OnlineColumn {
            values: c.values,
            statuses: c.statuses,
            event_timestamps: c
                .event_times
                .into_iter()
                .map(|t| t.map_or_else(|| EPOCH.to_owned(), micros_to_rfc3339))
                .collect(),
        });
    }
    OnlineFeaturesResponse {
        metadata: OnlineMetadata { feature_names },
        results,
    }
}

feature_request!(
    /// `POST /features/historical`: Feast's `get_historical_features` for a bounded entity table.
    HistoricalFeaturesRequest,
    entities: " The entity table's join key column, e.g. `{\"passenger_id\": [1, 1, 2]}`.",
    {
        /// The entity table's time column: one RFC 3339 time per entity row, the time its
        /// features are wanted as of.
        pub event_timestamps: Vec<String>,
        /// Only rows written at or before this time (RFC 3339), so that the same call always
        /// answers the same values; default: every row written so far.
        #[serde(default)]
        pub created_as_of: Option<String>,
    }
);

/// `POST /features/historical`: each entity row's features as of its own time.
#[utoipa::path(
    post,
    path = "/features/historical",
    security(("bearerAuth" = [])),
    tag = "features",
    summary = "Each entity row's features as of its own time (Feast's get_historical_features)",
    description = "Each row of the entity table (a key and a time) gets, per feature, the value \
        of the latest row of its view at or before that time, no older than the view's TTL, \
        among the rows written at or before `created_as_of`. Statuses are judged as of each \
        row's time. The table is at most `server.max_batch_size` rows; larger tables go \
        through `titanic historical`, which streams a CSV.",
    request_body(content = HistoricalFeaturesRequest, example = json!({
        "feature_service": "titanic_survival",
        "entities": {"passenger_id": [1, 1]},
        "event_timestamps": ["2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z"],
        "created_as_of": "2026-12-01T00:00:00Z"
    })),
    responses(
        (status = 200, description = "One column per feature, after the join key's; a value per entity row.", body = OnlineFeaturesResponse),
        (status = 404, description = "No such feature view, feature service or version.", body = super::error::ErrorBody),
        (status = 422, description = "A bad feature reference, both or neither of `features` and `feature_service`, not exactly one join key, the wrong join key, invalid entity keys, a time that is not RFC 3339, or a different number of `event_timestamps` than entity keys.", body = super::error::ErrorBody),
        (status = 503, description = "The offline store or the registry's database failed (`unavailable`).", body = super::error::ErrorBody),
    )
)]
pub async fn historical_features(
    State(state): State<AppState>,
    ApiJson(Object(mut request)): ApiJson<Object<HistoricalFeaturesRequest>>,
) -> Result<ApiJson<OnlineFeaturesResponse>, ApiError> {
    let created_as_of = match request.created_as_of.as_deref().map(parse_rfc3339) {
        None => None,
        Some(Ok(t)) => Some(t),
        Some(Err(e)) => return Err(invalid("created_as_of", e)),
    };
    let mut times = Vec::with_capacity(request.event_timestamps.len());
    for (i, text) in request.event_timestamps.iter().enumerate() {
        times.push(parse_rfc3339(text).map_err(|e| invalid(format!("event_timestamps[{i}]"), e))?);
    }
    let full_feature_names = request.full_feature_names;
    let named = resolve(&state, request.selection()).await?;
    if times.len() != named.keys.len() {
        return Err(invalid(
            "event_timestamps",
            format!(
                "{} times for {} entity keys: give one per entity row",
                times.len(),
                named.keys.len()
            ),
        ));
    }
    let entities: Vec<(&str, Micros)> = named.keys.iter().map(String::as_str).zip(times).collect();
    let columns = history::historical_features(
        state.features.offline(),
        &named.requests,
        &entities,
        created_as_of,
    )
    .await
    .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(ApiJson(respond(named, columns, full_feature_names)))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MaterializeRequest {
    #[serde(default)]
    pub mode: Mode,
    /// One view (default: the views of the served feature service).
    #[serde(default)]
    pub view: Option<String>,
    #[serde(default)]
    pub version: Option<i64>,
}

/// `POST /features/materialize`: one report per materialized view version.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MaterializeResponse {
    pub reports: Vec<Report>,
}

/// `POST /features/materialize`: copies offline values to the online store; reports counts.
#[utoipa::path(
    post,
    path = "/features/materialize",
    security(("bearerAuth" = ["features:write"])),
    tag = "features",
    summary = "Copy the latest offline values into the online store; report counts",
    request_body(content = MaterializeRequest, example = json!({"mode": "incremental"})),
    responses(
        (status = 200, description = "One report per materialized view version.", body = MaterializeResponse),
        (status = 404, description = "No such feature view or version.", body = super::error::ErrorBody),
        (status = 422, description = "`version` without `view`.", body = super::error::ErrorBody),
        (status = 503, description = "Materialization failed, for example because the online store is down or is not Redis (`unavailable`), or no model is loaded.", body = super::error::ErrorBody),
    )
)]
pub async fn materialize_views(
    State(state): State<AppState>,
    ApiJson(Object(request)): ApiJson<Object<MaterializeRequest>>,
) -> Result<ApiJson<MaterializeResponse>, ApiError> {
    let views = match (&request.view, request.version) {
        (Some(name), version) => vec![view_or_latest(&state, name, version).await?],
        (None, None) => state
            .models
            .current()
            .ok_or_else(|| ApiError::Unavailable("no model is loaded yet".to_owned()))?
            .features
            .views
            .clone(),
        (None, Some(_)) => return Err(invalid("version", "needs view")),
    };
    let mut reports: Vec<Report> = Vec::new();
    for view in &views {
        let report = materialize::materialize(
            &state.features,
            view,
            request.mode,
            state.settings.materialization.chunk_size,
        )
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        reports.push(report);
    }
    Ok(ApiJson(MaterializeResponse { reports }))
}
