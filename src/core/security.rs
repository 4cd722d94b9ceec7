//! Security primitives: the JWT secret (configured or generated), token minting and
//! verification (HS256 only, `exp` required), and scopes.

use std::fs;
use std::io::Write;
use std::path::Path;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::core::config::{Secret, Settings};
use crate::core::time::unix_now;

/// HS256 wants a key at least as long as its hash (RFC 7518 §3.2).
pub const MIN_SECRET_BYTES: usize = 32;

/// Scopes a token can carry; routes require one of these.
pub mod scopes {
    pub const PREDICT: &str = "predict";
    pub const FEATURES_WRITE: &str = "features:write";
    pub const MODELS_WRITE: &str = "models:write";
    /// Sending ground-truth labels for predictions (`POST /feedback`).
    pub const FEEDBACK_WRITE: &str = "feedback:write";
    /// Every scope the service knows, for `titanic token` validation and docs.
    pub const ALL: &[&str] = &[PREDICT, FEATURES_WRITE, MODELS_WRITE, FEEDBACK_WRITE];
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    #[serde(default)]
    pub scopes: Vec<String>,
    pub exp: u64,
    #[serde(default)]
    pub iat: u64,
}

impl Claims {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "no JWT secret configured: set TITANIC__AUTH__JWT_SECRET (at least {MIN_SECRET_BYTES} bytes); the {profile} profile does not generate one"
    )]
    Missing { profile: String },
    #[error("the JWT secret is {len} bytes; HS256 needs at least {MIN_SECRET_BYTES}")]
    TooShort { len: usize },
    #[error("JWT secret file {path}: {cause}")]
    File { path: String, cause: std::io::Error },
}

/// Why a presented token was refused. Each maps to 401 at the HTTP boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("missing bearer token")]
    Missing,
    #[error("malformed token")]
    Malformed,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token algorithm is not allowed (HS256 only)")]
    DisallowedAlgorithm,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
}

impl TokenError {
    /// A short, bounded label for metrics.
    pub fn reason(self) -> &'static str {
        match self {
            TokenError::Missing => "missing",
            TokenError::Malformed => "malformed",
            TokenError::BadSignature => "bad_signature",
            TokenError::DisallowedAlgorithm => "algorithm",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
        }
    }
}

/// Where the secret came from, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Configured,
    Generated { path: String },
    File { path: String },
}

/// Signs and verifies tokens with one HS256 secret.
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKeys").finish_non_exhaustive()
    }
}

impl JwtKeys {
    pub fn new(secret: &Secret, leeway_secs: u64) -> Result<Self, SecretError> {
        let bytes = secret.expose().as_bytes();
        if bytes.len() < MIN_SECRET_BYTES {
            return Err(SecretError::TooShort { len: bytes.len() });
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = leeway_secs;
        Ok(Self {
            encoding: EncodingKey::from_secret(bytes),
            decoding: DecodingKey::from_secret(bytes),
            validation,
        })
    }

    /// Loads the configured secret, or (when allowed) reads or creates the generated one.
    pub fn from_settings(settings: &Settings) -> Result<(Self, SecretSource), SecretError> {
        let (secret, source) = resolve_secret(settings)?;
        Ok((Self::new(&secret, settings.auth.leeway_secs)?, source))
    }

    /// Mints a token for `sub` with `scopes`, valid for `ttl_secs`.
    pub fn mint(&self, sub: &str, scopes: &[String], ttl_secs: u64) -> String {
        let now = unix_now();
        let claims = Claims {
            sub: sub.to_owned(),
            scopes: scopes.to_vec(),
            exp: now.saturating_add(ttl_secs),
            iat: now,
        };
        self.encode(&claims)
    }

    /// Signs arbitrary claims (HS256).
    pub fn encode(&self, claims: &Claims) -> String {
        // HMAC signing of serializable claims cannot fail with a valid key.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .unwrap_or_default()
    }

    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => TokenError::BadSignature,
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                ErrorKind::InvalidAlgorithm
                | ErrorKind::InvalidAlgorithmName
                | ErrorKind::UnsupportedAlgorithm
                | ErrorKind::MissingAlgorithm => TokenError::DisallowedAlgorithm,
                // Includes tokens without `sub` or `exp`: they do not parse as `Claims`.
                _ => TokenError::Malformed,
            })
    }
}

fn resolve_secret(settings: &Settings) -> Result<(Secret, SecretSource), SecretError> {
    if !settings.auth.jwt_secret.is_empty() {
        return Ok((settings.auth.jwt_secret.clone(), SecretSource::Configured));
    }
    if !settings.auth.generate_secret {
        return Err(SecretError::Missing {
            profile: settings.profile.clone(),
        });
    }
    let path = settings.secret_file();
    let shown = path.display().to_string();
    let file_err = |cause| SecretError::File {
        path: shown.clone(),
        cause,
    };
    match fs::read_to_string(&path) {
        Ok(text) => Ok((
            Secret::new(text.trim()),
            SecretSource::File {
                path: shown.clone(),
            },
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret = generate_secret_file(&path).map_err(file_err)?;
            Ok((secret, SecretSource::Generated { path: shown }))
        }
        Err(e) => Err(file_err(e)),
    }
}

/// Writes 48 random bytes (hex) to `path`, readable by the owner only. Never overwrites:
/// if another process created it first, its secret is used.
fn generate_secret_file(path: &Path) -> std::io::Result<Secret> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir)?;
    }
    let mut bytes = [0u8; 48];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(hex.as_bytes())?;
            file.sync_all()?;
            Ok(Secret::new(hex))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Ok(Secret::new(fs::read_to_string(path)?.trim()))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> JwtKeys {
        JwtKeys::new(&Secret::new("a".repeat(40)), 0).unwrap()
    }

    #[test]
    fn round_trip_keeps_claims() {
        let k = keys();
        let token = k.mint("alice", &["predict".to_owned()], 60);
        let claims = k.verify(&token).unwrap();
        assert_eq!(claims.sub, "alice");
        assert!(claims.has_scope("predict"));
        assert!(!claims.has_scope("models:write"));
    }

    #[test]
    fn short_secret_is_refused() {
        assert!(matches!(
            JwtKeys::new(&Secret::new("short"), 0),
            Err(SecretError::TooShort { len: 5 })
        ));
    }

    #[test]
    fn expired_and_foreign_tokens_are_refused() {
        let k = keys();
        let expired = k.encode(&Claims {
            sub: "a".into(),
            scopes: vec![],
            exp: unix_now() - 120,
            iat: 0,
        });
        assert_eq!(k.verify(&expired), Err(TokenError::Expired));
        let other = JwtKeys::new(&Secret::new("b".repeat(40)), 0).unwrap();
        assert_eq!(
            k.verify(&other.mint("a", &[], 60)),
            Err(TokenError::BadSignature)
        );
        assert_eq!(k.verify("not.a.token"), Err(TokenError::Malformed));
    }

    #[test]
    fn generated_secret_is_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/jwt_secret");
        let first = generate_secret_file(&path).unwrap();
        let second = generate_secret_file(&path).unwrap();
        assert_eq!(first, second);
        assert!(first.expose().len() >= MIN_SECRET_BYTES);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
