//! Security primitives: the JWT keys (configured, read from files or generated), token
//! minting and verification per RFC 8725, and scopes.
//!
//! Every key is pinned to one algorithm: HS256 for the shared secrets (the current key signs,
//! the previous one only verifies during a rotation), the configured algorithm for an external
//! issuer's public key. A token's `kid` selects the key; a token without one is tried against
//! the keys of its algorithm. `alg: none`, an algorithm no key has, or a `kid` naming a key of
//! another algorithm (HS/RS confusion) are refused before any signature check. `exp` and `sub`
//! are required, `nbf` is checked when present, `iss` and `aud` when configured, all with a
//! bounded leeway.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::core::config::{Secret, Settings};
use crate::core::os_user::{self, OsUser};
use crate::core::time::unix_now;

/// HS256 wants a key at least as long as its hash (RFC 7518 §3.2).
pub const MIN_SECRET_BYTES: usize = 32;

/// The `kid` of a key made by [`JwtKeys::new`] (tests and tools with one secret).
pub const DEFAULT_KEY_ID: &str = "key-1";

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

/// `aud`: one audience or several (RFC 7519 §4.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    // `sub` and `exp` are required by the validation, which reads the raw claims: the
    // defaults only let a token without them be refused as `missing_claim`.
    #[serde(default)]
    pub sub: String,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub exp: u64,
    #[serde(default)]
    pub iat: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
}

impl Claims {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "no JWT secret configured: set TITANIC__AUTH__JWT_SECRET or TITANIC__AUTH__SECRET_FILE (at least {MIN_SECRET_BYTES} bytes); the {profile} profile does not generate one"
    )]
    Missing { profile: String },
    #[error("{what} is {len} bytes; HS256 needs at least {MIN_SECRET_BYTES}")]
    TooShort { what: &'static str, len: usize },
    /// A key file that could not be read: the error names the file, how it looks to this
    /// process (owner and mode, or missing), the process's user, and the setting to change.
    #[error(
        "JWT key file {path}: {cause} ({state}; this process: {user}); {}",
        read_fix(cause, path, *ids, setting)
    )]
    File {
        path: String,
        cause: std::io::Error,
        state: String,
        user: String,
        /// The process's uid and gid, for the fix.
        ids: (u32, u32),
        /// The setting that names the file.
        setting: &'static str,
    },
    /// The secret file that `serve` or `token` generates outside production could not be
    /// created.
    #[error(
        "cannot create the JWT secret file {path}: {cause} ({directory}; this process: {user}); {fix}"
    )]
    Generate {
        path: String,
        cause: std::io::Error,
        /// The directory (or the nearest existing one above it) and how it looks.
        directory: String,
        user: String,
        fix: String,
    },
    /// A secret file others could read or replace. `owners` says whose it is and who this
    /// process is.
    #[error("JWT key file {path} has mode {mode:04o} ({owners}): {problem}; {fix}")]
    Exposed {
        path: String,
        mode: u32,
        owners: String,
        problem: String,
        fix: String,
    },
    #[error("auth.{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
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
    #[error("token algorithm is not allowed for its key")]
    DisallowedAlgorithm,
    #[error("token names a key (kid) this service does not have")]
    UnknownKey,
    #[error("token lacks a required claim (exp, a non-empty sub, and iss or aud when configured)")]
    MissingClaim,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token issuer is not accepted")]
    WrongIssuer,
    #[error("token audience is not this service")]
    WrongAudience,
}

impl TokenError {
    /// A short, bounded label for metrics.
    pub fn reason(self) -> &'static str {
        match self {
            TokenError::Missing => "missing",
            TokenError::Malformed => "malformed",
            TokenError::BadSignature => "bad_signature",
            TokenError::DisallowedAlgorithm => "algorithm",
            TokenError::UnknownKey => "unknown_key",
            TokenError::MissingClaim => "missing_claim",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::WrongIssuer => "issuer",
            TokenError::WrongAudience => "audience",
        }
    }

    /// Every reason, for docs and metric checks.
    pub const ALL: &[TokenError] = &[
        TokenError::Missing,
        TokenError::Malformed,
        TokenError::BadSignature,
        TokenError::DisallowedAlgorithm,
        TokenError::UnknownKey,
        TokenError::MissingClaim,
        TokenError::Expired,
        TokenError::NotYetValid,
        TokenError::WrongIssuer,
        TokenError::WrongAudience,
    ];
}

/// A refusal is written as its [`TokenError::reason`].
impl Serialize for TokenError {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.reason())
    }
}

impl utoipa::PartialSchema for TokenError {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::Type::String)
            .enum_values(Some(TokenError::ALL.iter().map(|e| e.reason())))
            .description(Some("Why the token was refused."))
            .into()
    }
}

impl utoipa::ToSchema for TokenError {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("TokenErrorReason")
    }
}

/// Where the current secret came from, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Configured,
    Generated { path: String },
    File { path: String },
}

/// A key that verifies tokens: its `kid`, its one algorithm, and a validation pinned to it.
struct VerifyingKey {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
    validation: Validation,
}

/// Signs with the current key and verifies with every configured one.
pub struct JwtKeys {
    kid: String,
    encoding: EncodingKey,
    issuer: Option<String>,
    audience: Option<String>,
    verifying: Vec<VerifyingKey>,
    verified: VerifiedTokens,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKeys")
            .field("kid", &self.kid)
            .field(
                "verifying",
                &self
                    .verifying
                    .iter()
                    .map(|k| (k.kid.as_deref(), k.algorithm))
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// The checks every key shares: required claims, issuer, audience, leeway.
#[derive(Debug, Clone, Default)]
pub struct Checks {
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub leeway_secs: u64,
}

impl Checks {
    fn validation(&self, algorithm: Algorithm) -> Validation {
        let mut validation = Validation::new(algorithm);
        validation.algorithms = vec![algorithm];
        let mut required = vec!["exp", "sub"];
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = self.leeway_secs;
        match &self.issuer {
            Some(iss) => {
                validation.set_issuer(&[iss]);
                required.push("iss");
            }
            None => validation.iss = None,
        }
        match &self.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        validation
    }
}

/// The parts of a JOSE header that choose the key, read before any other check so that an
/// algorithm the library does not know (`none`) is refused for what it is.
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    /// Present at all (even `null`): refused, as no header extension is understood here.
    #[serde(default, deserialize_with = "present")]
    crit: bool,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(d).map(|_| true)
}

fn raw_header(token: &str) -> Result<RawHeader, TokenError> {
    let (header, rest) = token.split_once('.').ok_or(TokenError::Malformed)?;
    if rest.matches('.').count() != 1 {
        return Err(TokenError::Malformed);
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
}

fn map_error(e: &jsonwebtoken::errors::Error) -> TokenError {
    match e.kind() {
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
        ErrorKind::InvalidAudience => TokenError::WrongAudience,
        ErrorKind::MissingRequiredClaim(_) => TokenError::MissingClaim,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::MissingAlgorithm => TokenError::DisallowedAlgorithm,
        // Includes claims that do not parse as `Claims` (a `sub` that is not a string).
        _ => TokenError::Malformed,
    }
}

fn hmac_key(
    secret: &Secret,
    what: &'static str,
) -> Result<(EncodingKey, DecodingKey), SecretError> {
    let bytes = secret.expose().as_bytes();
    if bytes.len() < MIN_SECRET_BYTES {
        return Err(SecretError::TooShort {
            what,
            len: bytes.len(),
        });
    }
    Ok((
        EncodingKey::from_secret(bytes),
        DecodingKey::from_secret(bytes),
    ))
}

impl JwtKeys {
    /// One HS256 key with kid [`DEFAULT_KEY_ID`], no issuer or audience.
    pub fn new(secret: &Secret, leeway_secs: u64) -> Result<Self, SecretError> {
        Self::hs256(
            secret,
            DEFAULT_KEY_ID,
            &Checks {
                leeway_secs,
                ..Checks::default()
            },
        )
    }

    /// The current HS256 key, signing with `kid`.
    pub fn hs256(secret: &Secret, kid: &str, checks: &Checks) -> Result<Self, SecretError> {
        let (encoding, decoding) = hmac_key(secret, "the JWT secret")?;
        Ok(Self {
            kid: kid.to_owned(),
            encoding,
            issuer: checks.issuer.clone(),
            audience: checks.audience.clone(),
            verifying: vec![VerifyingKey {
                kid: Some(kid.to_owned()),
                algorithm: Algorithm::HS256,
                key: decoding,
                validation: checks.validation(Algorithm::HS256),
            }],
            verified: VerifiedTokens::default(),
        })
    }

    /// Also accepts tokens signed by `secret` (a key being rotated out) under `kid`.
    pub fn with_previous(
        mut self,
        secret: &Secret,
        kid: &str,
        checks: &Checks,
    ) -> Result<Self, SecretError> {
        if kid == self.kid {
            return Err(SecretError::Invalid {
                field: "previous_key_id",
                message: format!("must differ from key_id ({kid:?})"),
            });
        }
        let (_, decoding) = hmac_key(secret, "the previous JWT secret")?;
        self.verifying.push(VerifyingKey {
            kid: Some(kid.to_owned()),
            algorithm: Algorithm::HS256,
            key: decoding,
            validation: checks.validation(Algorithm::HS256),
        });
        Ok(self)
    }

    /// Also accepts tokens signed with `algorithm` by the holder of the private half of
    /// `pem`, under `kid` (or any kid, when `None`).
    pub fn with_public_key(
        mut self,
        pem: &[u8],
        algorithm: Algorithm,
        kid: Option<&str>,
        checks: &Checks,
    ) -> Result<Self, SecretError> {
        use jsonwebtoken::Algorithm::*;
        let invalid = |message: String| SecretError::Invalid {
            field: "public_key",
            message,
        };
        let key = match algorithm {
            RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => DecodingKey::from_rsa_pem(pem),
            ES256 | ES384 => DecodingKey::from_ec_pem(pem),
            EdDSA => DecodingKey::from_ed_pem(pem),
            _ => {
                return Err(SecretError::Invalid {
                    field: "public_key_algorithm",
                    message: format!("{algorithm:?} is not a public-key algorithm"),
                });
            }
        }
        .map_err(|e| invalid(format!("not a PEM key for {algorithm:?}: {e}")))?;
        if kid.is_some_and(|k| self.verifying.iter().any(|v| v.kid.as_deref() == Some(k))) {
            return Err(SecretError::Invalid {
                field: "public_key_id",
                message: "must differ from the other keys' ids".to_owned(),
            });
        }
        self.verifying.push(VerifyingKey {
            kid: kid.map(str::to_owned),
            algorithm,
            key,
            validation: checks.validation(algorithm),
        });
        Ok(self)
    }

    /// Every key the configuration names, or (when allowed) the generated secret.
    pub fn from_settings(settings: &Settings) -> Result<(Self, SecretSource), SecretError> {
        let auth = &settings.auth;
        let nonempty = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
        let checks = Checks {
            issuer: nonempty(&auth.issuer),
            audience: nonempty(&auth.audience),
            leeway_secs: auth.leeway_secs,
        };
        let (secret, source) = resolve_secret(settings)?;
        let mut keys = Self::hs256(&secret, auth.key_id.trim(), &checks)?;
        let previous = key_material(
            &auth.previous_jwt_secret,
            &auth.previous_secret_file,
            "previous_jwt_secret",
            read_private_file,
        )?;
        if let Some(previous) = previous {
            let kid = nonempty(&auth.previous_key_id).ok_or(SecretError::Invalid {
                field: "previous_key_id",
                message: "required with a previous secret: tokens choose it by kid".to_owned(),
            })?;
            keys = keys.with_previous(&Secret::new(previous.trim()), &kid, &checks)?;
        }
        // A public key is public: any file mode will do.
        if let Some(pem) = key_material(
            &auth.public_key,
            &auth.public_key_file,
            "public_key",
            read_public_file,
        )? {
            let algorithm =
                Algorithm::from_str(auth.public_key_algorithm.trim()).map_err(|_| {
                    SecretError::Invalid {
                        field: "public_key_algorithm",
                        message: format!("unknown algorithm {:?}", auth.public_key_algorithm),
                    }
                })?;
            let kid = nonempty(&auth.public_key_id);
            keys = keys.with_public_key(pem.as_bytes(), algorithm, kid.as_deref(), &checks)?;
        }
        Ok((keys, source))
    }

    /// The `kid` minted tokens carry.
    pub fn key_id(&self) -> &str {
        &self.kid
    }

    /// Mints a token for `sub` with `scopes`, valid for `ttl_secs` from now.
    pub fn mint(&self, sub: &str, scopes: &[String], ttl_secs: u64) -> String {
        let now = unix_now();
        let claims = Claims {
            sub: sub.to_owned(),
            scopes: scopes.to_vec(),
            exp: now.saturating_add(ttl_secs),
            iat: now,
            nbf: Some(now),
            iss: self.issuer.clone(),
            aud: self.audience.clone().map(Audience::One),
        };
        self.encode(&claims)
    }

    /// Signs arbitrary claims with the current key (HS256, its kid in the header).
    pub fn encode(&self, claims: &Claims) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.kid.clone());
        // HMAC signing of serializable claims cannot fail with a valid key.
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap_or_default()
    }

    /// The claims of a valid token. A token verified before (the same text, byte for byte)
    /// is not decoded and its signature not computed again while its time claims still hold.
    /// Shared with the cache, so a request takes the claims without copying them.
    pub fn verify(&self, token: &str) -> Result<Arc<Claims>, TokenError> {
        let now = unix_now();
        if let Some(claims) = self.verified.get(token, now) {
            return Ok(claims);
        }
        let (claims, leeway) = self.verify_signed(token)?;
        let claims = Arc::new(claims);
        self.verified.insert(token, Arc::clone(&claims), leeway);
        Ok(claims)
    }

    /// [`JwtKeys::verify`] without the cache: the claims and the leeway they were checked
    /// with.
    fn verify_signed(&self, token: &str) -> Result<(Claims, u64), TokenError> {
        let header = raw_header(token)?;
        if header.crit {
            // No header extension is understood here (RFC 7515 §4.1.11).
            return Err(TokenError::Malformed);
        }
        // `none` and names the library does not know end here, before any key is touched.
        let algorithm =
            Algorithm::from_str(&header.alg).map_err(|_| TokenError::DisallowedAlgorithm)?;
        // The keys the token may name: by kid (a public key configured without a kid answers
        // to any), or every key when it names none.
        let named = |key: &&VerifyingKey| match (&header.kid, &key.kid) {
            (Some(wanted), Some(kid)) => wanted == kid,
            _ => true,
        };
        if !self.verifying.iter().any(|k| named(&k)) {
            return Err(TokenError::UnknownKey);
        }
        // Each key verifies only its own algorithm: an HS256 token naming an RSA key's kid
        // (signed with the public key as an HMAC secret) is refused here.
        let mut usable = self
            .verifying
            .iter()
            .filter(named)
            .filter(|k| k.algorithm == algorithm)
            .peekable();
        if usable.peek().is_none() {
            return Err(TokenError::DisallowedAlgorithm);
        }
        for key in usable {
            match jsonwebtoken::decode::<Claims>(token, &key.key, &key.validation) {
                // Presence is all the library checks; an empty subject names nobody.
                Ok(data) if data.claims.sub.trim().is_empty() => {
                    return Err(TokenError::MissingClaim);
                }
                Ok(data) => return Ok((data.claims, key.validation.leeway)),
                Err(e) => {
                    let error = map_error(&e);
                    // A signature that fails under one key may match the next (rotation).
                    if error != TokenError::BadSignature {
                        return Err(error);
                    }
                }
            }
        }
        Err(TokenError::BadSignature)
    }
}

/// Tokens that passed [`JwtKeys::verify`], with their claims and the times between which
/// the claims hold (`nbf` and `exp`, widened by the leeway). A client sends the same token
/// with every request until it expires, so it is decoded, parsed and its HMAC checked once
/// rather than on every request. Only verified tokens
/// enter, so the cache holds no more than the tokens the service's keys signed; keys do not
/// change while the process runs. Bounded: when full it is emptied and refills.
#[derive(Debug, Default)]
struct VerifiedTokens(Mutex<HashMap<Box<str>, VerifiedToken>>);

#[derive(Debug)]
struct VerifiedToken {
    claims: Arc<Claims>,
    valid_from: u64,
    valid_until: u64,
}

/// Verified tokens kept at most (clients, not requests: each holds one token at a time).
const VERIFIED_TOKENS: usize = 1024;

impl VerifiedTokens {
    fn lock(&self) -> MutexGuard<'_, HashMap<Box<str>, VerifiedToken>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The claims of `token` if it was verified and its time claims hold at `now` (the checks
    /// the library makes: not expired beyond the leeway, not before `nbf` less the leeway).
    fn get(&self, token: &str, now: u64) -> Option<Arc<Claims>> {
        let mut tokens = self.lock();
        let entry = tokens.get(token)?;
        if (entry.valid_from..=entry.valid_until).contains(&now) {
            return Some(Arc::clone(&entry.claims));
        }
        // Expired (or, with a clock set back, not yet valid): verified afresh, which gives
        // the error.
        tokens.remove(token);
        None
    }

    fn insert(&self, token: &str, claims: Arc<Claims>, leeway: u64) {
        let entry = VerifiedToken {
            valid_from: claims.nbf.unwrap_or(0).saturating_sub(leeway),
            valid_until: claims.exp.saturating_add(leeway),
            claims,
        };
        let mut tokens = self.lock();
        if tokens.len() >= VERIFIED_TOKENS {
            tokens.clear();
        }
        tokens.insert(token.into(), entry);
    }
}

/// A key given inline or in a file (read with `read`); `None` when neither is set. Both set is
/// an error.
fn key_material(
    inline: &Secret,
    file: &str,
    field: &'static str,
    read: fn(&Path) -> Result<String, SecretError>,
) -> Result<Option<String>, SecretError> {
    let file = file.trim();
    let setting = match field {
        "previous_jwt_secret" => "TITANIC__AUTH__PREVIOUS_SECRET_FILE",
        "public_key" => "TITANIC__AUTH__PUBLIC_KEY_FILE",
        _ => "TITANIC__AUTH__SECRET_FILE",
    };
    match (inline.is_empty(), file.is_empty()) {
        (true, true) => Ok(None),
        (false, true) => Ok(Some(inline.expose().to_owned())),
        (true, false) => read(Path::new(file))
            .map(Some)
            .map_err(|e| e.named_by(setting)),
        (false, false) => Err(SecretError::Invalid {
            field,
            message: "set either the value or its file, not both".to_owned(),
        }),
    }
}

/// A key file that could not be read (named by `TITANIC__AUTH__SECRET_FILE` until
/// [`SecretError::named_by`] says otherwise).
fn file_error(path: &Path) -> impl Fn(std::io::Error) -> SecretError {
    let path = path.to_owned();
    move |cause| {
        let user = OsUser::current();
        SecretError::File {
            path: path.display().to_string(),
            cause,
            state: os_user::describe(&path),
            user: user.to_string(),
            ids: (user.uid, user.gid),
            setting: "TITANIC__AUTH__SECRET_FILE",
        }
    }
}

/// What to change when a key file cannot be read, by the cause.
fn read_fix(cause: &std::io::Error, path: &str, (uid, gid): (u32, u32), setting: &str) -> String {
    match cause.kind() {
        std::io::ErrorKind::NotFound => format!(
            "put the key in that file (on Kubernetes: mount the Secret that holds it there), \
             or set {setting} to the file that holds it"
        ),
        std::io::ErrorKind::PermissionDenied => format!(
            "let this user read it: chown {uid}:{gid} {path} && chmod 400 {path}, or give it to \
             one of this user's groups with chmod 440 (on Kubernetes: defaultMode: 0440 and \
             securityContext.fsGroup: {gid}); every directory above it must let this user \
             through (x)"
        ),
        _ => format!("set {setting} to a readable file that holds the key"),
    }
}

impl SecretError {
    /// The same error, naming `setting` as the one that names the file.
    fn named_by(self, setting: &'static str) -> Self {
        match self {
            Self::File {
                path,
                cause,
                state,
                user,
                ids,
                ..
            } => Self::File {
                path,
                cause,
                state,
                user,
                ids,
                setting,
            },
            other => other,
        }
    }
}

fn read_public_file(path: &Path) -> Result<String, SecretError> {
    fs::read_to_string(path).map_err(file_error(path))
}

/// Reads a secret file, refusing one that others could read or replace (see [`exposure`]).
/// The mode is that of the file opened (a symlink, as in a Kubernetes Secret volume, is
/// followed), so the file checked is the file read.
fn read_private_file(path: &Path) -> Result<String, SecretError> {
    use std::io::Read;
    let mut file = fs::File::open(path).map_err(file_error(path))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let meta = file.metadata().map_err(file_error(path))?;
        let mode = meta.mode() & 0o7777;
        let owned = meta.uid() == rustix::process::geteuid().as_raw();
        if let Some((problem, fix)) = exposure(mode, owned) {
            let shown = path.display();
            let fix = if owned {
                format!("allow the owner only: chmod {fix:o} {shown}")
            } else {
                format!(
                    "allow its owner and group only: chmod {fix:o} {shown} (a Kubernetes Secret \
                     volume: defaultMode: 0440, with fsGroup)"
                )
            };
            return Err(SecretError::Exposed {
                path: shown.to_string(),
                mode,
                owners: format!(
                    "owner {}:{}; this process: {}",
                    meta.uid(),
                    meta.gid(),
                    OsUser::current()
                ),
                problem,
                fix,
            });
        }
    }
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(file_error(path))?;
    Ok(text)
}

/// Who besides the service can use a secret file of `mode`, and the mode to give it instead;
/// `None` when nobody else can. Other users may neither read nor write it, nor may its group
/// write it. Its group may read it only when the service does not own the file: then the group
/// is how the service reads it (a Kubernetes Secret volume is root's, group `fsGroup`, 0440);
/// a file the service owns needs no group access.
#[cfg(unix)]
fn exposure(mode: u32, owned: bool) -> Option<(String, u32)> {
    let access = |read: bool, write: bool| match (read, write) {
        (true, true) => Some("read and write"),
        (true, false) => Some("read"),
        (false, true) => Some("write"),
        (false, false) => None,
    };
    let problems: Vec<String> = [
        (
            "its group",
            access(owned && mode & 0o040 != 0, mode & 0o020 != 0),
        ),
        ("other users", access(mode & 0o004 != 0, mode & 0o002 != 0)),
    ]
    .into_iter()
    .filter_map(|(who, can)| can.map(|can| format!("{who} can {can} it")))
    .collect();
    if problems.is_empty() {
        return None;
    }
    // The owner keeps its write bit; the group keeps read when it is how the service reads.
    let fix = 0o400 | (mode & 0o200) | if owned { 0 } else { 0o040 };
    Some((problems.join(" and "), fix))
}

/// Creates `dir` and its missing parents owner-only (0700; the umask can only take bits away)
/// for this process's state. Directories that exist are left as the operator made them.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// The current secret: `jwt_secret`, or the file `secret_file` names, or (when allowed) one
/// generated into that file (default `<data.dir>/jwt_secret`).
fn resolve_secret(settings: &Settings) -> Result<(Secret, SecretSource), SecretError> {
    let auth = &settings.auth;
    let explicit_file = !auth.secret_file.trim().is_empty();
    if !auth.jwt_secret.is_empty() {
        if explicit_file {
            return Err(SecretError::Invalid {
                field: "jwt_secret",
                message: "set either jwt_secret or secret_file, not both".to_owned(),
            });
        }
        return Ok((auth.jwt_secret.clone(), SecretSource::Configured));
    }
    if !explicit_file && !auth.generate_secret {
        return Err(SecretError::Missing {
            profile: settings.profile.clone(),
        });
    }
    let path = settings.secret_file();
    let shown = path.display().to_string();
    match read_private_file(&path) {
        Ok(text) => Ok((Secret::new(text.trim()), SecretSource::File { path: shown })),
        Err(SecretError::File { cause, .. })
            if cause.kind() == std::io::ErrorKind::NotFound && auth.generate_secret =>
        {
            let secret = generate_secret_file(&path)?;
            Ok((secret, SecretSource::Generated { path: shown }))
        }
        Err(e) => Err(e),
    }
}

/// Writes 48 random bytes (hex) to `path`, readable by the owner only, in an owner-only
/// directory when it has to create one. Never overwrites: if another process created the file
/// first, its secret is used (after the same check as any secret file).
fn generate_secret_file(path: &Path) -> Result<Secret, SecretError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_err = |cause: std::io::Error| {
        // The directory, or the nearest one above it that exists.
        let shown = dir.ancestors().find(|d| d.exists()).unwrap_or(dir);
        let user = OsUser::current();
        let dir = shown.display();
        SecretError::Generate {
            path: path.display().to_string(),
            cause,
            directory: format!("its directory {dir} is {}", os_user::describe(shown)),
            user: user.to_string(),
            fix: format!(
                "let this user create files there (chown {} {dir}), or configure a secret: \
                 TITANIC__AUTH__JWT_SECRET or TITANIC__AUTH__SECRET_FILE",
                user.owner()
            ),
        }
    };
    create_private_dir(dir).map_err(file_err)?;
    let mut bytes = [0u8; 48];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(hex.as_bytes()).map_err(file_err)?;
            file.sync_all().map_err(file_err)?;
            Ok(Secret::new(hex))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Ok(Secret::new(read_private_file(path)?.trim()))
        }
        Err(e) => Err(file_err(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "a-test-secret-of-more-than-thirty-two-bytes";
    const OLD_SECRET: &str = "the-previous-secret-also-longer-than-32-bytes";

    fn keys() -> JwtKeys {
        JwtKeys::new(&Secret::new(SECRET), 0).unwrap()
    }

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    /// A token with any header, signed (or not) by hand.
    fn forge(header: &serde_json::Value, claims: &serde_json::Value, hmac_key: &[u8]) -> String {
        use hmac::Mac;
        let message = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(hmac_key).unwrap();
        mac.update(message.as_bytes());
        format!("{message}.{}", b64(&mac.finalize().into_bytes()))
    }

    fn claims_json() -> serde_json::Value {
        serde_json::json!({"sub": "eve", "scopes": ["predict"], "exp": unix_now() + 600})
    }

    fn rsa_pair() -> (EncodingKey, String) {
        use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
        let private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
        let public = private
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        let private = private.to_pkcs8_pem(LineEnding::LF).unwrap();
        (
            EncodingKey::from_rsa_pem(private.as_bytes()).unwrap(),
            public,
        )
    }

    fn signed(
        algorithm: Algorithm,
        kid: Option<&str>,
        claims: &Claims,
        key: &EncodingKey,
    ) -> String {
        let mut header = Header::new(algorithm);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, key).unwrap()
    }

    fn claims(sub: &str) -> Claims {
        Claims {
            sub: sub.to_owned(),
            scopes: vec!["predict".to_owned()],
            exp: unix_now() + 600,
            ..Claims::default()
        }
    }

    #[test]
    fn round_trip_keeps_claims_and_names_the_key() {
        let k = keys();
        let token = k.mint("alice", &["predict".to_owned()], 60);
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.kid.as_deref(), Some(DEFAULT_KEY_ID));
        assert_eq!(header.alg, Algorithm::HS256);
        let claims = k.verify(&token).unwrap();
        assert_eq!(claims.sub, "alice");
        assert!(claims.has_scope("predict"));
        assert!(!claims.has_scope("models:write"));
        assert_eq!(claims.nbf, Some(claims.iat));
    }

    #[test]
    fn short_secret_is_refused() {
        assert!(matches!(
            JwtKeys::new(&Secret::new("short"), 0),
            Err(SecretError::TooShort { len: 5, .. })
        ));
    }

    #[test]
    fn alg_none_and_algorithms_without_a_key_are_refused() {
        let k = keys();
        let payload = b64(claims_json().to_string().as_bytes());
        for alg in ["none", "None", "NONE", "HS512", "RS256", "ES256", "xyz"] {
            let header = b64(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#).as_bytes());
            for signature in ["", "c2ln"] {
                let token = format!("{header}.{payload}.{signature}");
                assert_eq!(
                    k.verify(&token),
                    Err(TokenError::DisallowedAlgorithm),
                    "{alg}"
                );
            }
        }
        // HS512 signed with the right secret is still refused: HS256 is pinned.
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &claims("eve"),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        assert_eq!(k.verify(&hs512), Err(TokenError::DisallowedAlgorithm));
    }

    #[test]
    fn wrong_key_tampering_and_shape_are_refused() {
        let k = keys();
        let other = JwtKeys::new(&Secret::new("b".repeat(40)), 0).unwrap();
        assert_eq!(
            k.verify(&other.mint("a", &[], 60)),
            Err(TokenError::BadSignature)
        );
        let good = k.mint("tester", &["predict".to_owned()], 60);
        let parts: Vec<&str> = good.split('.').collect();
        let more = serde_json::json!({"sub": "tester", "scopes": ["predict", "models:write"], "exp": unix_now() + 600});
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            b64(more.to_string().as_bytes()),
            parts[2]
        );
        assert_eq!(k.verify(&tampered), Err(TokenError::BadSignature));
        assert_eq!(k.verify("not.a.token"), Err(TokenError::Malformed));
        assert_eq!(k.verify("only-one-part"), Err(TokenError::Malformed));
        assert_eq!(
            k.verify(&format!("{good}.extra")),
            Err(TokenError::Malformed)
        );
        // A critical header extension nobody here understands.
        let crit = forge(
            &serde_json::json!({"alg": "HS256", "kid": DEFAULT_KEY_ID, "crit": ["exp"], "exp": 1}),
            &claims_json(),
            SECRET.as_bytes(),
        );
        assert_eq!(k.verify(&crit), Err(TokenError::Malformed));
        let crit_null = forge(
            &serde_json::json!({"alg": "HS256", "kid": DEFAULT_KEY_ID, "crit": null}),
            &claims_json(),
            SECRET.as_bytes(),
        );
        assert_eq!(k.verify(&crit_null), Err(TokenError::Malformed));
        let nobody = k.encode(&Claims {
            sub: " ".into(),
            ..claims("x")
        });
        assert_eq!(k.verify(&nobody), Err(TokenError::MissingClaim));
    }

    #[test]
    fn time_claims_are_checked_with_a_bounded_leeway() {
        let strict = keys();
        let lenient = JwtKeys::new(&Secret::new(SECRET), 60).unwrap();
        let now = unix_now();
        let expired = strict.encode(&Claims {
            exp: now - 30,
            ..claims("late")
        });
        assert_eq!(strict.verify(&expired), Err(TokenError::Expired));
        assert!(lenient.verify(&expired).is_ok(), "30 s late is within 60 s");
        let future = strict.encode(&Claims {
            nbf: Some(now + 30),
            ..claims("early")
        });
        assert_eq!(strict.verify(&future), Err(TokenError::NotYetValid));
        assert!(lenient.verify(&future).is_ok());
        let far_future = strict.encode(&Claims {
            nbf: Some(now + 3600),
            ..claims("early")
        });
        assert_eq!(lenient.verify(&far_future), Err(TokenError::NotYetValid));
        // No exp at all.
        let forever = forge(
            &serde_json::json!({"alg": "HS256", "kid": DEFAULT_KEY_ID}),
            &serde_json::json!({"sub": "eve", "scopes": ["predict"]}),
            SECRET.as_bytes(),
        );
        assert_eq!(strict.verify(&forever), Err(TokenError::MissingClaim));
    }

    #[test]
    fn a_verified_token_is_remembered_only_while_its_time_claims_hold() {
        let k = keys();
        let token = k.mint("alice", &["predict".to_owned()], 60);
        let first = k.verify(&token).unwrap();
        assert_eq!(k.verified.lock().len(), 1);
        assert_eq!(
            k.verify(&token).unwrap(),
            first,
            "from the cache, the same claims"
        );
        // A token one byte away is not the cached one: verified, and refused.
        let mut forged = token.clone().into_bytes();
        let last = forged.len() - 2;
        forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        assert_eq!(k.verify(&forged), Err(TokenError::BadSignature));
        assert_eq!(k.verified.lock().len(), 1, "refused tokens are not kept");
        // Once past exp (and the leeway), the cached entry is dropped and the answer is the
        // library's.
        let now = unix_now();
        let cache = &k.verified;
        assert!(cache.get(&token, now).is_some());
        assert!(
            cache.get(&token, first.exp).is_some(),
            "exp itself still holds"
        );
        assert!(cache.get(&token, first.exp + 1).is_none());
        assert!(cache.lock().is_empty(), "the expired entry is gone");
        // nbf less the leeway: a token verified with 60 s of leeway holds from nbf - 60.
        cache.insert("t", Arc::clone(&first), 60);
        let nbf = first.nbf.unwrap();
        assert!(cache.get("t", nbf - 60).is_some());
        assert!(cache.get("t", nbf - 61).is_none());
    }

    #[test]
    fn the_verified_token_cache_is_bounded() {
        let k = keys();
        let claims = claims("bob");
        for i in 0..VERIFIED_TOKENS + 10 {
            k.verified
                .insert(&format!("token-{i}"), Arc::new(claims.clone()), 0);
        }
        assert!(k.verified.lock().len() <= VERIFIED_TOKENS);
    }

    #[test]
    fn issuer_and_audience_are_checked_when_configured() {
        let checks = Checks {
            issuer: Some("https://issuer.example".to_owned()),
            audience: Some("titanic".to_owned()),
            leeway_secs: 0,
        };
        let k = JwtKeys::hs256(&Secret::new(SECRET), "k", &checks).unwrap();
        let minted = k.mint("alice", &[], 60);
        let claims_of = k.verify(&minted).unwrap();
        assert_eq!(claims_of.iss.as_deref(), Some("https://issuer.example"));
        let sign = |c: &Claims| k.encode(c);
        let aud = |a: &str| Some(Audience::One(a.to_owned()));
        let iss = Some("https://issuer.example".to_owned());
        assert_eq!(
            k.verify(&sign(&Claims {
                iss: iss.clone(),
                aud: aud("another-service"),
                ..claims("a")
            })),
            Err(TokenError::WrongAudience)
        );
        assert_eq!(
            k.verify(&sign(&Claims {
                iss: Some("https://evil.example".into()),
                aud: aud("titanic"),
                ..claims("a")
            })),
            Err(TokenError::WrongIssuer)
        );
        assert_eq!(
            k.verify(&sign(&Claims {
                iss: iss.clone(),
                ..claims("a")
            })),
            Err(TokenError::MissingClaim)
        );
        let many = Some(Audience::Many(vec!["other".into(), "titanic".into()]));
        assert!(
            k.verify(&sign(&Claims {
                iss,
                aud: many,
                ..claims("a")
            }))
            .is_ok()
        );
        // Without configured checks, iss and aud are not required (nor judged).
        let plain = keys();
        assert!(
            plain
                .verify(&plain.encode(&Claims {
                    aud: aud("x"),
                    ..claims("a")
                }))
                .is_ok()
        );
    }

    #[test]
    fn rotation_accepts_both_keys_by_kid_and_signs_with_the_new_one() {
        let checks = Checks::default();
        let old = JwtKeys::hs256(&Secret::new(OLD_SECRET), "2026-01", &checks).unwrap();
        let new = JwtKeys::hs256(&Secret::new(SECRET), "2026-12", &checks)
            .unwrap()
            .with_previous(&Secret::new(OLD_SECRET), "2026-01", &checks)
            .unwrap();
        let issued_before = old.mint("alice", &[], 60);
        assert_eq!(new.verify(&issued_before).unwrap().sub, "alice");
        let issued_after = new.mint("bob", &[], 60);
        assert_eq!(
            jsonwebtoken::decode_header(&issued_after)
                .unwrap()
                .kid
                .as_deref(),
            Some("2026-12")
        );
        assert!(new.verify(&issued_after).is_ok());
        // A token without kid is tried against both keys.
        let no_kid = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims("carol"),
            &EncodingKey::from_secret(OLD_SECRET.as_bytes()),
        )
        .unwrap();
        assert!(new.verify(&no_kid).is_ok());
        // The old kid with the new secret, and an unknown kid, are refused.
        let mixed = forge(
            &serde_json::json!({"alg": "HS256", "kid": "2026-01"}),
            &claims_json(),
            SECRET.as_bytes(),
        );
        assert_eq!(new.verify(&mixed), Err(TokenError::BadSignature));
        let unknown = forge(
            &serde_json::json!({"alg": "HS256", "kid": "2025-06"}),
            &claims_json(),
            SECRET.as_bytes(),
        );
        assert_eq!(new.verify(&unknown), Err(TokenError::UnknownKey));
        // Once the old key is removed, its tokens stop working.
        let after = JwtKeys::hs256(&Secret::new(SECRET), "2026-12", &checks).unwrap();
        assert_eq!(after.verify(&issued_before), Err(TokenError::UnknownKey));
        assert!(matches!(
            JwtKeys::hs256(&Secret::new(SECRET), "same", &checks)
                .unwrap()
                .with_previous(&Secret::new(OLD_SECRET), "same", &checks),
            Err(SecretError::Invalid { .. })
        ));
    }

    #[test]
    fn a_public_key_verifies_its_algorithm_only() {
        let checks = Checks::default();
        let (private, public) = rsa_pair();
        let k = keys()
            .with_public_key(public.as_bytes(), Algorithm::RS256, Some("idp-1"), &checks)
            .unwrap();
        let rs = signed(Algorithm::RS256, Some("idp-1"), &claims("svc"), &private);
        assert_eq!(k.verify(&rs).unwrap().sub, "svc");
        let rs_no_kid = signed(Algorithm::RS256, None, &claims("svc"), &private);
        assert!(k.verify(&rs_no_kid).is_ok());
        // RS512 by the same key: not the configured algorithm.
        let rs512 = signed(Algorithm::RS512, Some("idp-1"), &claims("svc"), &private);
        assert_eq!(k.verify(&rs512), Err(TokenError::DisallowedAlgorithm));
        // HS/RS confusion: HS256 "signed" with the public key as the HMAC secret.
        for kid in [Some("idp-1"), None, Some(DEFAULT_KEY_ID)] {
            let mut header = serde_json::json!({"alg": "HS256"});
            if let Some(kid) = kid {
                header["kid"] = kid.into();
            }
            let confused = forge(&header, &claims_json(), public.as_bytes());
            let expected = if kid == Some("idp-1") {
                TokenError::DisallowedAlgorithm
            } else {
                TokenError::BadSignature
            };
            assert_eq!(k.verify(&confused), Err(expected), "kid {kid:?}");
        }
        // An RS256 token under the HMAC key's kid, and one from another RSA key.
        let under_hs_kid = signed(
            Algorithm::RS256,
            Some(DEFAULT_KEY_ID),
            &claims("svc"),
            &private,
        );
        assert_eq!(
            k.verify(&under_hs_kid),
            Err(TokenError::DisallowedAlgorithm)
        );
        let (stranger, _) = rsa_pair();
        let foreign = signed(Algorithm::RS256, Some("idp-1"), &claims("svc"), &stranger);
        assert_eq!(k.verify(&foreign), Err(TokenError::BadSignature));
        // A secret is not a public key, and HS256 is not a public-key algorithm.
        assert!(
            keys()
                .with_public_key(b"not a pem", Algorithm::RS256, None, &checks)
                .is_err()
        );
        assert!(
            keys()
                .with_public_key(public.as_bytes(), Algorithm::HS256, None, &checks)
                .is_err()
        );
    }

    fn settings(profile: &str, vars: &[(&str, &str)]) -> Settings {
        let map = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<std::collections::HashMap<_, _>>();
        Settings::load_from(
            profile,
            Path::new("/nonexistent-titanic-config"),
            config::Environment::with_prefix("TITANIC")
                .prefix_separator("__")
                .separator("__")
                .source(Some(map)),
        )
        .unwrap()
    }

    #[test]
    fn secrets_come_from_the_environment_or_a_file_never_both() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("jwt");
        write_with_mode(&file, &format!("{SECRET}\n"), 0o600);
        let path = file.to_str().unwrap();
        // Production reads a named file (a mounted Secret) and never generates one.
        let (keys, source) = JwtKeys::from_settings(&settings(
            "production",
            &[("TITANIC__AUTH__SECRET_FILE", path)],
        ))
        .unwrap();
        assert_eq!(
            source,
            SecretSource::File {
                path: path.to_owned()
            }
        );
        assert!(
            keys.verify(
                &JwtKeys::new(&Secret::new(SECRET), 0)
                    .unwrap()
                    .mint("a", &[], 60)
            )
            .is_ok()
        );
        let missing = dir.path().join("absent");
        let err = JwtKeys::from_settings(&settings(
            "production",
            &[("TITANIC__AUTH__SECRET_FILE", missing.to_str().unwrap())],
        ))
        .unwrap_err();
        assert!(matches!(err, SecretError::File { .. }), "{err}");
        assert!(!missing.exists());
        let err = JwtKeys::from_settings(&settings("production", &[])).unwrap_err();
        assert!(matches!(err, SecretError::Missing { .. }), "{err}");
        let err = JwtKeys::from_settings(&settings(
            "production",
            &[
                ("TITANIC__AUTH__SECRET_FILE", path),
                ("TITANIC__AUTH__JWT_SECRET", SECRET),
            ],
        ))
        .unwrap_err();
        assert!(err.to_string().contains("not both"), "{err}");
        // A previous secret needs its kid.
        let err = JwtKeys::from_settings(&settings(
            "production",
            &[
                ("TITANIC__AUTH__JWT_SECRET", SECRET),
                ("TITANIC__AUTH__PREVIOUS_JWT_SECRET", OLD_SECRET),
            ],
        ))
        .unwrap_err();
        assert!(err.to_string().contains("previous_key_id"), "{err}");
        let err = JwtKeys::from_settings(&settings(
            "production",
            &[
                ("TITANIC__AUTH__JWT_SECRET", SECRET),
                ("TITANIC__AUTH__PUBLIC_KEY", "x"),
                ("TITANIC__AUTH__PUBLIC_KEY_ALGORITHM", "none"),
            ],
        ))
        .unwrap_err();
        assert!(err.to_string().contains("public_key_algorithm"), "{err}");
    }

    /// Writes `text` to a new file with exactly `mode`, whatever the umask.
    fn write_with_mode(path: &Path, text: &str, mode: u32) {
        fs::write(path, text).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
        }
        #[cfg(not(unix))]
        let _ = mode;
    }

    #[cfg(unix)]
    fn mode_of(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn generated_secret_is_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/sub/jwt_secret");
        let first = generate_secret_file(&path).unwrap();
        let second = generate_secret_file(&path).unwrap();
        assert_eq!(first, second);
        assert!(first.expose().len() >= MIN_SECRET_BYTES);
        #[cfg(unix)]
        {
            assert_eq!(mode_of(&path), 0o600);
            // Every directory it created is owner-only, whatever the umask allows.
            assert_eq!(mode_of(&dir.path().join("state")), 0o700);
            assert_eq!(mode_of(&dir.path().join("state/sub")), 0o700);
        }
    }

    #[cfg(unix)]
    #[test]
    fn an_existing_directory_keeps_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let volume = dir.path().join("volume");
        fs::create_dir(&volume).unwrap();
        fs::set_permissions(&volume, fs::Permissions::from_mode(0o750)).unwrap();
        generate_secret_file(&volume.join("jwt_secret")).unwrap();
        assert_eq!(mode_of(&volume), 0o750);
        assert_eq!(mode_of(&volume.join("jwt_secret")), 0o600);
    }

    #[cfg(unix)]
    #[test]
    fn secret_files_others_can_read_or_write_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("jwt");
        for mode in [0o600, 0o400] {
            write_with_mode(&file, SECRET, mode);
            assert_eq!(read_private_file(&file).unwrap(), SECRET, "{mode:o}");
            fs::remove_file(&file).unwrap();
        }
        let shown = file.display().to_string();
        for (mode, problem) in [
            (0o644, "its group can read it and other users can read it"),
            (
                0o666,
                "its group can read and write it and other users can read and write it",
            ),
            (0o640, "its group can read it"),
            (0o620, "its group can write it"),
            (0o602, "other users can write it"),
        ] {
            write_with_mode(&file, SECRET, mode);
            let err = read_private_file(&file).unwrap_err();
            let SecretError::Exposed {
                path, mode: seen, ..
            } = &err
            else {
                panic!("{mode:o}: {err}");
            };
            assert_eq!((path.as_str(), *seen), (shown.as_str(), mode));
            let message = err.to_string();
            assert!(message.contains(problem), "{message}");
            assert!(message.contains(&format!("mode {mode:04o}")), "{message}");
            assert!(message.contains(&format!("chmod 600 {shown}")), "{message}");
            fs::remove_file(&file).unwrap();
        }
        // A read-only file keeps the owner read-only.
        write_with_mode(&file, SECRET, 0o444);
        let err = read_private_file(&file).unwrap_err().to_string();
        assert!(err.contains(&format!("chmod 400 {shown}")), "{err}");

        // The mode checked is the target's, not the symlink's (Kubernetes mounts through
        // `..data/` links).
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(matches!(
            read_private_file(&link),
            Err(SecretError::Exposed { .. })
        ));
        write_with_mode(&file, SECRET, 0o400);
        assert_eq!(read_private_file(&link).unwrap(), SECRET);
    }

    #[cfg(unix)]
    #[test]
    fn every_secret_file_is_checked_but_not_a_public_key() {
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("private");
        let open = dir.path().join("open");
        write_with_mode(&private, SECRET, 0o600);
        write_with_mode(&open, OLD_SECRET, 0o644);
        let exposed = |profile: &str, vars: &[(&str, &str)]| {
            matches!(
                JwtKeys::from_settings(&settings(profile, vars)),
                Err(SecretError::Exposed { .. })
            )
        };
        let private = private.to_str().unwrap();
        let open = open.to_str().unwrap();
        assert!(exposed(
            "production",
            &[("TITANIC__AUTH__SECRET_FILE", open)]
        ));
        assert!(exposed(
            "production",
            &[
                ("TITANIC__AUTH__SECRET_FILE", private),
                ("TITANIC__AUTH__PREVIOUS_SECRET_FILE", open),
                ("TITANIC__AUTH__PREVIOUS_KEY_ID", "old"),
            ]
        ));
        // The generated secret's file, when it exists, is read under the same rule and is
        // never replaced.
        let data = dir.path().join("data");
        fs::create_dir(&data).unwrap();
        write_with_mode(&data.join("jwt_secret"), SECRET, 0o644);
        assert!(exposed(
            "development",
            &[("TITANIC__DATA__DIR", data.to_str().unwrap())]
        ));
        assert_eq!(fs::read_to_string(data.join("jwt_secret")).unwrap(), SECRET);

        let (_, public) = rsa_pair();
        let pem = dir.path().join("public.pem");
        write_with_mode(&pem, &public, 0o644);
        assert!(
            JwtKeys::from_settings(&settings(
                "production",
                &[
                    ("TITANIC__AUTH__SECRET_FILE", private),
                    ("TITANIC__AUTH__PUBLIC_KEY_FILE", pem.to_str().unwrap()),
                    ("TITANIC__AUTH__PUBLIC_KEY_ALGORITHM", "RS256"),
                ]
            ))
            .is_ok()
        );
    }

    #[cfg(unix)]
    #[test]
    fn group_read_is_allowed_only_on_a_file_the_service_does_not_own() {
        // A Kubernetes Secret volume: root's, group fsGroup (the service's), 0440.
        assert_eq!(exposure(0o440, false), None);
        assert_eq!(exposure(0o640, false), None);
        assert_eq!(exposure(0o400, false), None);
        // The service's own file needs no group access.
        assert_eq!(
            exposure(0o440, true),
            Some(("its group can read it".to_owned(), 0o400))
        );
        assert_eq!(exposure(0o600, true), None);
        // Others and group write are refused either way; the fix keeps the group's read.
        assert_eq!(
            exposure(0o444, false),
            Some(("other users can read it".to_owned(), 0o440))
        );
        assert_eq!(
            exposure(0o660, false),
            Some(("its group can write it".to_owned(), 0o640))
        );
    }
}
