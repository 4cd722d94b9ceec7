use serde_json::json;
use titanic::core::config::Secret;
use titanic::core::security::{Audience, Checks, Claims, JwtKeys};
use titanic::core::time::unix_now;

use crate::helpers::{SECRET, TestApp, error_of, passenger};

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

fn forge(header: &serde_json::Value, claims: &serde_json::Value, hmac_key: &[u8]) -> String {
    use hmac::Mac;
    let message = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(hmac_key).unwrap();
    mac.update(message.as_bytes());
    format!("{message}.{}", b64url(&mac.finalize().into_bytes()))
}

fn claims_of(sub: &str) -> Claims {
    Claims {
        sub: sub.into(),
        scopes: vec!["predict".into()],
        exp: unix_now() + 600,
        iat: unix_now(),
        ..Claims::default()
    }
}

fn bearer(token: &str) -> Option<String> {
    Some(format!("Bearer {token}"))
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
    assert_401(&app, bearer(&foreign), "bad_signature").await;

    // Valid signature, but expired beyond the leeway.
    let expired = app.token_with(&Claims {
        exp: unix_now() - 3600,
        iat: unix_now() - 7200,
        ..claims_of("late")
    });
    assert_401(&app, bearer(&expired), "expired").await;

    // Valid signature, not valid before an hour from now.
    let early = app.token_with(&Claims {
        nbf: Some(unix_now() + 3600),
        ..claims_of("early")
    });
    assert_401(&app, bearer(&early), "not_yet_valid").await;

    // No exp: tokens must expire.
    let forever = forge(
        &json!({"alg": "HS256", "typ": "JWT"}),
        &json!({"sub": "eve", "scopes": ["predict"]}),
        SECRET.as_bytes(),
    );
    assert_401(&app, bearer(&forever), "missing_claim").await;

    // alg "none" with no signature: the classic bypass, in any spelling.
    let payload = b64url(
        json!({"sub": "eve", "scopes": ["predict"], "exp": unix_now() + 600})
            .to_string()
            .as_bytes(),
    );
    for alg in ["none", "None", "NONE"] {
        let header = b64url(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#).as_bytes());
        assert_401(
            &app,
            Some(format!("Bearer {header}.{payload}.")),
            "algorithm",
        )
        .await;
    }
    // ... and HS512 signed with the right secret is still refused (HS256 pinned).
    let hs512 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512),
        &claims_of("eve"),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    assert_401(&app, bearer(&hs512), "algorithm").await;

    // A kid the service does not have.
    let unknown = forge(
        &json!({"alg": "HS256", "kid": "stolen-kid"}),
        &json!({"sub": "eve", "scopes": ["predict"], "exp": unix_now() + 600}),
        SECRET.as_bytes(),
    );
    assert_401(&app, bearer(&unknown), "unknown_key").await;

    // Tampered payload: signature no longer matches.
    let good = app.token(&["predict"]);
    let parts: Vec<&str> = good.split('.').collect();
    let tampered_payload = b64url(
        json!({"sub": "tester", "scopes": ["predict", "models:write"], "exp": unix_now() + 600})
            .to_string()
            .as_bytes(),
    );
    let tampered = format!("{}.{}.{}", parts[0], tampered_payload, parts[2]);
    assert_401(&app, bearer(&tampered), "bad_signature").await;

    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"titanic_auth_failures_total{reason="missing"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"titanic_auth_failures_total{reason="expired"} 1"#));
    assert!(metrics.contains(r#"titanic_auth_failures_total{reason="algorithm"} 4"#));
    app.stop().await;
}

#[tokio::test]
async fn issuer_and_audience_are_required_when_configured() {
    let app = TestApp::spawn_with(&[
        ("TITANIC__AUTH__ISSUER", "https://auth.example"),
        ("TITANIC__AUTH__AUDIENCE", "titanic-api"),
    ])
    .await;
    let iss = Some("https://auth.example".to_owned());
    let aud = |a: &str| Some(Audience::One(a.to_owned()));
    let ok = app.token_with(&Claims {
        iss: iss.clone(),
        aud: aud("titanic-api"),
        ..claims_of("svc")
    });
    let (status, _, _) = refused(&app, bearer(&ok)).await;
    assert_eq!(status, 200);
    let wrong_aud = app.token_with(&Claims {
        iss: iss.clone(),
        aud: aud("billing-api"),
        ..claims_of("svc")
    });
    assert_401(&app, bearer(&wrong_aud), "audience").await;
    let wrong_iss = app.token_with(&Claims {
        iss: Some("https://evil.example".into()),
        aud: aud("titanic-api"),
        ..claims_of("svc")
    });
    assert_401(&app, bearer(&wrong_iss), "issuer").await;
    // The helper's keys know neither: a token without iss and aud.
    assert_401(&app, bearer(&app.token(&["predict"])), "missing_claim").await;
    app.stop().await;
}

/// A secret file only its owner can read (the service refuses any other).
fn write_private(path: &std::path::Path, text: &str) {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(&mut options.open(path).unwrap(), text.as_bytes()).unwrap();
}

#[tokio::test]
async fn keys_rotate_by_kid_with_two_active_and_come_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let current = dir.path().join("current");
    let previous = dir.path().join("previous");
    let new_secret = "the-new-secret-after-rotation-0123456789";
    write_private(&current, &format!("{new_secret}\n"));
    write_private(&previous, SECRET);
    let app = TestApp::spawn_with(&[
        ("TITANIC__AUTH__JWT_SECRET", ""),
        ("TITANIC__AUTH__SECRET_FILE", current.to_str().unwrap()),
        ("TITANIC__AUTH__KEY_ID", "2026-12"),
        (
            "TITANIC__AUTH__PREVIOUS_SECRET_FILE",
            previous.to_str().unwrap(),
        ),
        ("TITANIC__AUTH__PREVIOUS_KEY_ID", "key-1"),
    ])
    .await;
    // A token issued before the rotation (old secret, kid key-1) still works ...
    let (status, _, _) = refused(&app, bearer(&app.token(&["predict"]))).await;
    assert_eq!(status, 200);
    // ... and so does one of the new key.
    let new_keys = titanic::core::security::JwtKeys::hs256(
        &Secret::new(new_secret),
        "2026-12",
        &Checks::default(),
    )
    .unwrap();
    let fresh = new_keys.mint("alice", &["predict".to_owned()], 60);
    let (status, _, _) = refused(&app, bearer(&fresh)).await;
    assert_eq!(status, 200);
    // The old kid signed with the new secret is not the old key.
    let mixed = forge(
        &json!({"alg": "HS256", "kid": "key-1"}),
        &json!({"sub": "eve", "scopes": ["predict"], "exp": unix_now() + 600}),
        new_secret.as_bytes(),
    );
    assert_401(&app, bearer(&mixed), "bad_signature").await;
    app.stop().await;

    // After the rotation ends (previous key removed), old tokens are refused by kid.
    let app = TestApp::spawn_with(&[
        ("TITANIC__AUTH__JWT_SECRET", ""),
        ("TITANIC__AUTH__SECRET_FILE", current.to_str().unwrap()),
        ("TITANIC__AUTH__KEY_ID", "2026-12"),
    ])
    .await;
    assert_401(&app, bearer(&app.token(&["predict"])), "unknown_key").await;
    let (status, _, _) = refused(&app, bearer(&fresh)).await;
    assert_eq!(status, 200);
    app.stop().await;
}

fn rsa_pair() -> (jsonwebtoken::EncodingKey, String) {
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    let private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
    let public = private
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let private = private.to_pkcs8_pem(LineEnding::LF).unwrap();
    (
        jsonwebtoken::EncodingKey::from_rsa_pem(private.as_bytes()).unwrap(),
        public,
    )
}

#[tokio::test]
async fn an_external_issuers_public_key_and_no_hs_rs_confusion() {
    let (private, public) = rsa_pair();
    let app = TestApp::spawn_with(&[
        ("TITANIC__AUTH__PUBLIC_KEY", &public),
        ("TITANIC__AUTH__PUBLIC_KEY_ID", "idp-2026"),
        ("TITANIC__AUTH__PUBLIC_KEY_ALGORITHM", "RS256"),
    ])
    .await;
    let rs = |alg, kid: &str| {
        let mut header = jsonwebtoken::Header::new(alg);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, &claims_of("svc"), &private).unwrap()
    };
    let (status, _, _) = refused(
        &app,
        bearer(&rs(jsonwebtoken::Algorithm::RS256, "idp-2026")),
    )
    .await;
    assert_eq!(status, 200, "the issuer's RS256 token is accepted");
    assert_401(
        &app,
        bearer(&rs(jsonwebtoken::Algorithm::RS512, "idp-2026")),
        "algorithm",
    )
    .await;
    // HS256 "signed" with the public key as the HMAC secret, naming the RSA key ...
    let claims =
        json!({"sub": "eve", "scopes": ["predict", "models:write"], "exp": unix_now() + 600});
    let confused = forge(
        &json!({"alg": "HS256", "kid": "idp-2026"}),
        &claims,
        public.as_bytes(),
    );
    assert_401(&app, bearer(&confused), "algorithm").await;
    // ... or naming none (then only the HMAC keys are tried, and the signature fails).
    let confused = forge(&json!({"alg": "HS256"}), &claims, public.as_bytes());
    assert_401(&app, bearer(&confused), "bad_signature").await;
    // An RS256 token under the HMAC key's kid.
    assert_401(
        &app,
        bearer(&rs(jsonwebtoken::Algorithm::RS256, "key-1")),
        "algorithm",
    )
    .await;
    // Another RSA key under the issuer's kid.
    let (stranger, _) = rsa_pair();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("idp-2026".into());
    let foreign = jsonwebtoken::encode(&header, &claims_of("svc"), &stranger).unwrap();
    assert_401(&app, bearer(&foreign), "bad_signature").await;
    app.stop().await;
}

#[tokio::test]
async fn refused_tokens_spend_the_clients_open_quota() {
    let app = TestApp::spawn_with(&[
        ("TITANIC__RATE_LIMIT__OPEN__PER_SECOND", "1"),
        ("TITANIC__RATE_LIMIT__OPEN__BURST", "3"),
    ])
    .await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(refused(&app, bearer("not-a-jwt")).await.0);
    }
    assert_eq!(&statuses[..3], &[401, 401, 401], "{statuses:?}");
    assert!(statuses[3..].iter().all(|s| *s == 429), "{statuses:?}");
    // An expired or missing token is an honest client's state: still 401, so it knows to
    // fetch a new token, however many guesses came from its address.
    let expired = app.token_with(&Claims {
        exp: unix_now() - 3600,
        ..claims_of("late")
    });
    assert_401(&app, bearer(&expired), "expired").await;
    assert_401(&app, None, "missing").await;
    // A valid token is judged by its subject's quota, not the address's.
    let (status, _, _) = refused(&app, bearer(&app.token(&["predict"]))).await;
    assert_eq!(status, 200);
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
