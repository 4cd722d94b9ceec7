//! `GET /openapi.json`: the document is served and parses; every operation it describes is
//! answered by the router; the router enforces exactly the access each operation declares
//! (no token, a token without the scope, a token without scopes); every operation documents
//! the error responses of the layers. (`api_docs.rs` checks docs/api.md against the document.)

use std::collections::BTreeSet;

use serde_json::Value;
use titanic::api::Access;
use titanic::core::security::scopes;

use crate::helpers::TestApp;

type Op = (String, String);

async fn document(app: &TestApp) -> Value {
    let response = app.get("/openapi.json").await;
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    response.json().await.expect("the document is JSON")
}

const METHODS: &[&str] = &["get", "put", "post", "delete", "patch", "head", "options"];

/// Every (METHOD, path) the document describes.
fn documented(doc: &Value) -> BTreeSet<Op> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if item.get(*method).is_some() {
                ops.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    ops
}

fn operation<'a>(doc: &'a Value, (method, path): &Op) -> &'a Value {
    &doc["paths"][path][method.to_lowercase()]
}

/// Who may call an operation, from its `security`.
fn access(op: &Value) -> Access {
    match op.get("security") {
        None => Access::Open,
        Some(security) => {
            let scopes_listed = security[0]["bearerAuth"]
                .as_array()
                .unwrap_or_else(|| panic!("security without bearerAuth: {security}"));
            match scopes_listed.as_slice() {
                [] => Access::Token,
                [scope] => Access::Scope(
                    scopes::ALL
                        .iter()
                        .copied()
                        .find(|s| scope == s)
                        .unwrap_or_else(|| panic!("{scope} is not a known scope")),
                ),
                more => panic!("several scopes: {more:?}"),
            }
        }
    }
}

/// Every operation of the document with the access it declares.
fn routes(doc: &Value) -> Vec<(Op, Access)> {
    documented(doc)
        .into_iter()
        .map(|op| {
            let access = access(operation(doc, &op));
            (op, access)
        })
        .collect()
}

fn is_oip(path: &str) -> bool {
    path == "/v2" || path.starts_with("/v2/")
}

fn is_feast(path: &str) -> bool {
    matches!(path, "/get-online-features" | "/push")
}

/// One operation and who may call it.
struct Route<'a> {
    method: &'a str,
    path: &'a str,
    access: Access,
}

/// A concrete path for a documented one: placeholders filled with values that exist.
fn concrete(path: &str) -> String {
    path.replace("{file}", "dashboard.js")
        .replace("{name}", "passenger")
        .replace("{id}", "no-such-job")
        .replace("{alias}", "production")
        .replace("{model}", "titanic")
        .replace("{version}", "1")
}

/// The router's answer to an unknown path, which no documented operation may give.
fn is_fallback(status: u16, body: &Value) -> bool {
    status == 404 && body["error"]["message"] == "no such route"
}

async fn call(
    app: &TestApp,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = app.client.request(method.clone(), app.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if method == reqwest::Method::POST || method == reqwest::Method::PUT {
        // Not an object: every JSON route refuses it before doing anything, so nothing is
        // trained, promoted or stored.
        request = request
            .header("content-type", "application/json")
            .body("[]");
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn the_document_is_openapi_3_1_with_a_bearer_scheme() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["info"]["title"], "titanic");
    let scheme = &doc["components"]["securitySchemes"]["bearerAuth"];
    assert_eq!(scheme["type"], "http");
    assert_eq!(scheme["scheme"], "bearer");
    assert_eq!(scheme["bearerFormat"], "JWT");
    // Every schema a `$ref` names exists.
    let text = doc.to_string();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for part in text.split("\"#/components/schemas/").skip(1) {
        let name = &part[..part.find('"').unwrap()];
        assert!(schemas.contains_key(name), "dangling $ref to {name}");
    }
    // The same document as the library builds.
    let built = serde_json::to_value(titanic::api::openapi::document()).unwrap();
    assert_eq!(doc, built);
    app.stop().await;
}

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    let documented = documented(&doc);
    assert!(documented.len() > 50, "{documented:?}");
    // Operation ids name the generated clients' functions: one per operation.
    let mut ids = BTreeSet::new();
    for op in &documented {
        let id = operation(&doc, op)["operationId"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(ids.insert(id.clone()), "operation id {id} is used twice");
    }
    // An operation without `security` is open to anyone: only these are.
    let open: Vec<String> = routes(&doc)
        .into_iter()
        .filter(|(_, access)| *access == Access::Open)
        .map(|((method, path), _)| format!("{method} {path}"))
        .collect();
    assert_eq!(
        open,
        [
            "GET /health/live",
            "GET /health/ready",
            "GET /metrics",
            "GET /monitoring",
            "GET /monitoring/assets/{file}",
            "GET /openapi.json",
            "GET /v2",
            "GET /v2/health/live",
            "GET /v2/health/ready",
        ]
    );
    // Each documented operation, placeholders filled, reaches a route of the router.
    for (method, path) in &documented {
        let (status, _, body) = call(&app, method, &concrete(path), None).await;
        assert!(
            !is_fallback(status, &body) && status != 405,
            "{method} {path}: {status} {body}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn the_router_enforces_the_access_each_operation_declares() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    for ((method, path), access) in routes(&doc) {
        let route = Route {
            method: &method,
            path: &path,
            access,
        };
        // No token is 401 exactly behind a token ...
        let path = concrete(route.path);
        let (status, headers, body) = call(&app, route.method, &path, None).await;
        if route.access == Access::Open {
            assert_ne!(status, 401, "{} {}: {body}", route.method, route.path);
        } else {
            assert_eq!(status, 401, "{} {}: {body}", route.method, route.path);
            assert!(headers.contains_key("www-authenticate"));
        }
        // ... every scope but the one required is 403 naming it ...
        let all_but = |scope: &str| -> Vec<&str> {
            scopes::ALL
                .iter()
                .copied()
                .filter(|s| *s != scope)
                .collect()
        };
        if let Access::Scope(scope) = route.access {
            let token = app.token(&all_but(scope));
            let (status, _, body) = call(&app, route.method, &path, Some(&token)).await;
            assert_eq!(status, 403, "{} {}: {body}", route.method, route.path);
            let required = if is_oip(route.path) {
                // The OIP error body is a message; it names the scope.
                assert!(body["error"].as_str().unwrap().contains(scope), "{body}");
                scope.to_owned()
            } else if is_feast(route.path) {
                // Feast's error detail: a JSON string whose message names the scope.
                let detail: Value = serde_json::from_str(body.as_str().unwrap()).unwrap();
                assert_eq!(detail["class"], "FeastPermissionError", "{detail}");
                assert!(
                    detail["message"].as_str().unwrap().contains(scope),
                    "{detail}"
                );
                scope.to_owned()
            } else {
                body["error"]["details"]["required_scope"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            };
            assert_eq!(required, scope, "{} {}", route.method, route.path);
        }
        // ... and a token without scopes passes where any token will do.
        if route.access == Access::Token {
            let token = app.token(&[]);
            let (status, _, body) = call(&app, route.method, &path, Some(&token)).await;
            assert!(
                status != 401 && status != 403,
                "{} {}: {status} {body}",
                route.method,
                route.path
            );
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn every_operation_documents_the_errors_of_the_layers() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    let schema_of = |response: &Value| response["content"]["application/json"]["schema"].clone();
    for ((method, path), access) in routes(&doc) {
        let route = Route {
            method: &method,
            path: &path,
            access,
        };
        let responses = &operation(&doc, &(method.clone(), path.clone()))["responses"];
        let mut statuses = vec!["400", "413", "415", "422", "429", "431", "503"];
        if route.access != Access::Open {
            statuses.push("401");
        }
        if matches!(route.access, Access::Scope(_)) {
            statuses.push("403");
        }
        let error_ref = if is_oip(route.path) {
            "#/components/schemas/OipError"
        } else if is_feast(route.path) {
            "#/components/schemas/FeastErrorBody"
        } else {
            "#/components/schemas/Error"
        };
        for status in statuses {
            let response = &responses[status];
            assert!(
                response.is_object(),
                "{} {} does not document {status}",
                route.method,
                route.path
            );
            let schema = schema_of(response).to_string();
            assert!(
                schema.contains(error_ref) || schema.contains("#/components/schemas/Error"),
                "{} {} {status}: {schema}",
                route.method,
                route.path
            );
        }
        let header = |status: &str, name: &str| responses[status]["headers"][name].clone();
        assert!(header("429", "Retry-After").is_object());
        for name in ["RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"] {
            assert!(
                header("429", name).is_object(),
                "{} {}",
                route.method,
                route.path
            );
        }
        assert!(header("503", "Retry-After").is_object());
        if route.access != Access::Open {
            assert_eq!(header("401", "WWW-Authenticate")["required"], true);
        }
        // 2xx responses are documented too.
        assert!(
            responses
                .as_object()
                .unwrap()
                .keys()
                .any(|s| s.starts_with('2')),
            "{} {}",
            route.method,
            route.path
        );
    }
    // The envelope, as `src/api/error.rs` writes it.
    let error = &doc["components"]["schemas"]["Error"];
    assert_eq!(error["required"], serde_json::json!(["error"]));
    let codes = error.to_string();
    let object = &doc["components"]["schemas"]["ErrorObject"];
    let codes_schema = &doc["components"]["schemas"]["ErrorCode"]["enum"];
    for code in [
        "bad_request",
        "unauthorized",
        "forbidden",
        "not_found",
        "payload_too_large",
        "unsupported_media_type",
        "validation_failed",
        "rate_limited",
        "headers_too_large",
        "timeout",
        "unavailable",
        "overloaded",
    ] {
        assert!(
            codes_schema.as_array().unwrap().iter().any(|c| c == code),
            "{code} missing from ErrorCode ({codes})"
        );
    }
    let mut required: Vec<String> = object["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    required.sort();
    assert_eq!(required, ["code", "details", "message"]);
    app.stop().await;
}
