use serde_json::json;
use titanic::core::config::Secret;
use titanic::core::security::{Claims, JwtKeys};
use titanic::core::time::unix_now;

use crate::helpers::{TestApp, error_of, passenger};

fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

async fn refused(app: &TestApp, auth: Option<String>) -> (u16, String, reqwest::Response) {
    let mut request = app.client.post(app.url("/predict")).json(&passenger());
    if let Some(value) = auth {
        request = request.header("authorization", value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let www = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, www, response)
}

async fn assert_401(app: &TestApp, auth: Option<String>, reason: &str) {
    let (status, www, response) = refused(app, auth).await;
    assert_eq!(status, 401, "{reason}");
    assert!(
        www.starts_with("Bearer"),
        "{reason}: WWW-Authenticate {www:?}"
    );
    let (code, body) = error_of(response).await;
    assert_eq!(code, "unauthorized");
    assert_eq!(body["error"]["details"]["reason"], reason, "{body}");
}

#[tokio::test]
async fn every_bad_token_is_401() {
    let app = TestApp::spawn().await;
    assert_401(&app, None, "missing").await;
    assert_401(&app, Some("Basic dXNlcjpwYXNz".into()), "malformed").await;
    assert_401(&app, Some("Bearer not-a-jwt".into()), "malformed").await;

    // Signed with another secret.
    let other = JwtKeys::new(&Secret::new("another-secret-of-sufficient-length!!"), 0).unwrap();
    let foreign = other.mint("mallory", &["predict".to_owned()], 60);
    assert_401(&app, Some(format!("Bearer {foreign}")), "bad_signature").await;

    // Valid signature, but expired beyond the leeway.
    let expired = app.token_with(&Claims {
        sub: "late".into(),
        scopes: vec!["predict".into()],
        exp: unix_now() - 3600,
        iat: unix_now() - 7200,
    });
    assert_401(&app, Some(format!("Bearer {expired}")), "expired").await;

    // alg "none" with no signature: the classic bypass.
    let header = b64url(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = b64url(
        json!({"sub": "eve", "scopes": ["predict"], "exp": unix_now() + 600})
            .to_string()
            .as_bytes(),
    );
    assert_401(
        &app,
        Some(format!("Bearer {header}.{payload}.")),
        "malformed",
    )
    .await;
    // ... and alg "HS512" signed with the right secret is still refused (HS256 pinned).
    let hs512_header = b64url(br#"{"alg":"HS512","typ":"JWT"}"#);
    assert_401(
        &app,
        Some(format!("Bearer {hs512_header}.{payload}.c2ln")),
        "algorithm",
    )
    .await;

    // Tampered payload: signature no longer matches.
    let good = app.token(&["predict"]);
    let parts: Vec<&str> = good.split('.').collect();
    let tampered_payload = b64url(
        json!({"sub": "tester", "scopes": ["predict", "models:write"], "exp": unix_now() + 600})
            .to_string()
            .as_bytes(),
    );
    let tampered = format!("{}.{}.{}", parts[0], tampered_payload, parts[2]);
    assert_401(&app, Some(format!("Bearer {tampered}")), "bad_signature").await;

    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"titanic_auth_failures_total{reason="missing"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"titanic_auth_failures_total{reason="expired"} 1"#));
    app.stop().await;
}

#[tokio::test]
async fn missing_scope_is_403() {
    let app = TestApp::spawn().await;
    let token = app.token(&["models:write"]);
    let response = app.post_as("/predict", &passenger(), &token).await;
    assert_eq!(response.status(), 403);
    let (code, body) = error_of(response).await;
    assert_eq!(code, "forbidden");
    assert_eq!(body["error"]["details"]["required_scope"], "predict");
    app.stop().await;
}

#[tokio::test]
async fn open_routes_need_no_token() {
    let app = TestApp::spawn().await;
    for path in ["/health/live", "/health/ready", "/metrics"] {
        assert_eq!(app.get(path).await.status(), 200, "{path}");
    }
    app.stop().await;
}
