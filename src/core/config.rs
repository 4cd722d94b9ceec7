//! Layered configuration: compiled-in `config/default.toml`, then `config/default.toml` and
//! `config/$TITANIC_ENV.toml` from disk when present, then `TITANIC__SECTION__KEY` variables.

use std::fmt;
use std::path::{Path, PathBuf};

use config::{Config, Environment, File, FileFormat};
use serde::Deserialize;

/// The defaults compiled into the binary, so it runs from any directory.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");
/// Profiles shipped with the project; used when the profile file is not on disk.
const PROFILES: &[(&str, &str)] = &[
    ("production", include_str!("../../config/production.toml")),
    ("test", include_str!("../../config/test.toml")),
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration: {field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

/// A string that never prints: `Debug` and `Display` show `[redacted]`.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "[empty]"
        } else {
            "[redacted]"
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// The profile that was loaded (`TITANIC_ENV`, default `development`).
    #[serde(skip, default = "default_profile")]
    pub profile: String,
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub redis: RedisSettings,
    pub feature_cache: FeatureCacheSettings,
    pub materialization: MaterializationSettings,
    pub features: FeaturesSettings,
    pub auth: AuthSettings,
    pub rate_limit: RateLimitSettings,
    pub data: DataSettings,
    pub training: TrainingSettings,
    pub monitoring: MonitoringSettings,
    pub log: LogSettings,
}

fn default_profile() -> String {
    "development".to_owned()
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    pub request_timeout_secs: u64,
    pub body_limit_bytes: usize,
    pub max_batch_size: usize,
    /// Deepest nesting of arrays and objects accepted in a JSON body.
    pub max_json_depth: usize,
    /// Largest total size of the request headers (names and values), in bytes.
    pub max_header_bytes: usize,
    /// Requests handled at once on the routes behind a token; more are answered 503 at once.
    pub max_concurrent_requests: usize,
    /// Of those, the most one token subject may hold at once (capped by
    /// `max_concurrent_requests`); more are answered 429.
    pub max_concurrent_per_subject: usize,
    /// Open connections at most (and never more than the file-descriptor limit allows);
    /// more are answered 503 and closed as they arrive.
    pub max_connections: usize,
    /// A request's head must arrive within this long of its first byte.
    pub header_read_timeout_secs: u64,
    /// A connection with no request for this long is closed.
    pub keep_alive_timeout_secs: u64,
    /// A connection with a request in flight that moves no byte either way for this long is
    /// closed (a client that stops reading its answer).
    pub stall_timeout_secs: u64,
    /// A streamed upload (CSV batch) must send at least this many bytes per second, averaged
    /// over each `request_timeout_secs`; a slower one is cut off.
    pub min_upload_bytes_per_sec: u64,
    pub shutdown_drain_secs: u64,
    pub shutdown_timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    pub url: String,
    pub max_connections: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RedisSettings {
    /// Empty means the in-process online store.
    pub url: String,
    pub key_prefix: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FeatureCacheSettings {
    pub max_entries: u64,
    pub ttl_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct MaterializationSettings {
    pub chunk_size: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FeaturesSettings {
    /// What serving does with a stored passenger whose optional values are stale.
    pub stale_values: StaleValues,
}

/// A stored passenger with an optional value older than its view's `ttl_secs`: served with
/// the model's imputation for it (and the field listed as imputed), or refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StaleValues {
    #[default]
    Impute,
    Refuse,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    /// The current HS256 signing key (from the environment).
    pub jwt_secret: Secret,
    /// Or the file that holds it (a mounted Kubernetes Secret); see [`Settings::secret_file`].
    pub secret_file: String,
    pub generate_secret: bool,
    /// `kid` of the current key: put in minted tokens, matched on presented ones.
    pub key_id: String,
    /// The key being rotated out: still verifies tokens that name its `kid`; never signs.
    pub previous_jwt_secret: Secret,
    pub previous_secret_file: String,
    pub previous_key_id: String,
    /// A public key (PEM) of an external issuer, verifying tokens signed with
    /// `public_key_algorithm`; in the setting itself or in `public_key_file`.
    pub public_key: Secret,
    pub public_key_file: String,
    pub public_key_id: String,
    pub public_key_algorithm: String,
    /// When set, tokens must carry this `iss` (minted tokens do).
    pub issuer: String,
    /// When set, tokens' `aud` must contain this value (minted tokens do).
    pub audience: String,
    pub default_token_ttl_secs: u64,
    /// Clock skew tolerated for `exp` and `nbf`; at most [`MAX_LEEWAY_SECS`].
    pub leeway_secs: u64,
}

/// Largest clock skew the configuration accepts (RFC 8725 §3.10 asks for a bound).
pub const MAX_LEEWAY_SECS: u64 = 300;

/// A sustained rate and a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Quota {
    pub per_second: u32,
    pub burst: u32,
}

/// A quota whose unset parts fall back to the default quota.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct QuotaOverride {
    pub per_second: Option<u32>,
    pub burst: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RateLimitSettings {
    /// The default quota per token subject (and per scope class, see [`ScopeClass`]).
    pub per_second: u32,
    pub burst: u32,
    /// Quotas per scope class of the route; unset parts are the default quota.
    #[serde(default)]
    pub predict: QuotaOverride,
    #[serde(default)]
    pub read: QuotaOverride,
    #[serde(default)]
    pub features_write: QuotaOverride,
    #[serde(default)]
    pub models_write: QuotaOverride,
    #[serde(default)]
    pub feedback_write: QuotaOverride,
    /// Per client address: open routes, and requests whose token is refused.
    pub open: Quota,
    /// Empty: the client address is the TCP peer. Otherwise a header set by a trusted
    /// proxy (e.g. `x-forwarded-for`); its last value is used.
    pub client_ip_header: String,
}

/// The classes of routes that have their own quota: the scope a route needs, `read` for
/// routes open to any valid token, `open` for routes without a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScopeClass {
    Open,
    Read,
    Predict,
    FeaturesWrite,
    ModelsWrite,
    FeedbackWrite,
}

impl RateLimitSettings {
    pub fn quota(&self, class: ScopeClass) -> Quota {
        let over = match class {
            ScopeClass::Open => return self.open,
            ScopeClass::Read => self.read,
            ScopeClass::Predict => self.predict,
            ScopeClass::FeaturesWrite => self.features_write,
            ScopeClass::ModelsWrite => self.models_write,
            ScopeClass::FeedbackWrite => self.feedback_write,
        };
        Quota {
            per_second: over.per_second.unwrap_or(self.per_second),
            burst: over.burst.unwrap_or(self.burst),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct MonitoringSettings {
    pub drift_window_size: usize,
    pub drift_window_secs: u64,
    pub drift_min_observations: u64,
    pub drift_p_value: f64,
    pub psi_warn: f64,
    pub psi_alert: f64,
    pub drift_share: f64,
    pub performance_window_size: usize,
    pub performance_window_secs: u64,
    pub remembered_predictions: u64,
    pub request_log: RequestLogSettings,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RequestLogSettings {
    pub enabled: bool,
    pub sample_rate: f64,
    pub queue_capacity: usize,
    pub batch_size: usize,
    pub flush_interval_ms: u64,
    pub retention_days: u64,
    /// Most rows kept in `prediction_log`; the oldest beyond it are deleted. 0: no budget.
    pub max_rows: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DataSettings {
    pub dir: PathBuf,
    pub train_csv: PathBuf,
    pub test_csv: PathBuf,
    /// Longest CSV record (a row or the header line) any reader accepts.
    pub max_csv_record_bytes: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TrainingSettings {
    pub folds: usize,
    /// Repetitions of the stratified k-fold cross-validation, each with its own split.
    pub repeats: usize,
    pub seed: u64,
    pub alpha: f64,
    /// A TOML list, or (from the environment) comma-separated text: `0.1,1,10`; empty: none.
    #[serde(deserialize_with = "list_of_numbers")]
    pub alpha_grid: Vec<f64>,
    pub max_iterations: u64,
    /// On start, when `production` names a model an older build's feature pipeline made,
    /// train a new one on the latest data and promote it (recorded in the alias history)
    /// instead of refusing to start.
    pub retrain_outdated: bool,
}

/// A list of numbers from a list, or from comma-separated text (environment variables are
/// text, and parsing them as lists globally would also split secrets).
fn list_of_numbers<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Numbers {
        List(Vec<f64>),
        Text(String),
    }
    match Numbers::deserialize(d)? {
        Numbers::List(v) => Ok(v),
        Numbers::Text(s) => s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                p.parse::<f64>()
                    .map_err(|_| serde::de::Error::custom(format!("{p:?} is not a number")))
            })
            .collect(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Auto,
    Json,
    Pretty,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LogSettings {
    pub level: String,
    pub format: LogFormat,
    /// A request answered in this long or longer is logged at `warn`.
    pub slow_request_ms: u64,
}

impl Settings {
    /// Loads the layered configuration from the process environment and `./config`
    /// (or `$TITANIC_CONFIG_DIR`).
    pub fn load() -> Result<Self, ConfigError> {
        let profile = std::env::var("TITANIC_ENV")
            .ok()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(default_profile);
        let dir = std::env::var_os("TITANIC_CONFIG_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("config"));
        Self::load_from(&profile, &dir, Environment::with_prefix("TITANIC"))
    }

    /// Loads with an explicit profile, config directory and environment source (for tests).
    pub fn load_from(profile: &str, dir: &Path, env: Environment) -> Result<Self, ConfigError> {
        let mut builder =
            Config::builder().add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml));
        let on_disk_default = dir.join("default.toml");
        if on_disk_default.is_file() {
            builder = builder.add_source(File::from(on_disk_default).format(FileFormat::Toml));
        }
        let on_disk_profile = dir.join(format!("{profile}.toml"));
        if on_disk_profile.is_file() {
            builder = builder.add_source(File::from(on_disk_profile).format(FileFormat::Toml));
        } else if let Some((_, text)) = PROFILES.iter().find(|(name, _)| *name == profile) {
            builder = builder.add_source(File::from_str(text, FileFormat::Toml));
        }
        // No `try_parsing`: it would turn a digits-only secret into a number and drop its
        // leading zeros. Typed fields parse their strings during deserialization instead.
        let env = env.prefix_separator("__").separator("__");
        let mut settings: Settings = builder.add_source(env).build()?.try_deserialize()?;
        settings.profile = profile.to_owned();
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, message: &str| {
            Err(ConfigError::Invalid {
                field,
                message: message.to_owned(),
            })
        };
        if self.server.request_timeout_secs == 0 {
            return invalid("server.request_timeout_secs", "must be at least 1");
        }
        if self.server.body_limit_bytes < 1024 {
            return invalid("server.body_limit_bytes", "must be at least 1024");
        }
        if self.server.max_batch_size == 0 {
            return invalid("server.max_batch_size", "must be at least 1");
        }
        if self.data.max_csv_record_bytes < 1024 {
            return invalid("data.max_csv_record_bytes", "must be at least 1024");
        }
        if self.database.max_connections == 0 {
            return invalid("database.max_connections", "must be at least 1");
        }
        for (field, quota) in [
            ("rate_limit.read", self.rate_limit.quota(ScopeClass::Read)),
            (
                "rate_limit.predict",
                self.rate_limit.quota(ScopeClass::Predict),
            ),
            (
                "rate_limit.features_write",
                self.rate_limit.quota(ScopeClass::FeaturesWrite),
            ),
            (
                "rate_limit.models_write",
                self.rate_limit.quota(ScopeClass::ModelsWrite),
            ),
            (
                "rate_limit.feedback_write",
                self.rate_limit.quota(ScopeClass::FeedbackWrite),
            ),
            ("rate_limit.open", self.rate_limit.open),
        ] {
            if quota.per_second == 0 || quota.burst == 0 {
                return invalid(field, "per_second and burst must be at least 1");
            }
        }
        if self.rate_limit.per_second == 0 || self.rate_limit.burst == 0 {
            return invalid("rate_limit", "per_second and burst must be at least 1");
        }
        let header = self.rate_limit.client_ip_header.trim();
        if !header
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return invalid(
                "rate_limit.client_ip_header",
                "must be a header name (letters, digits, '-')",
            );
        }
        if self.server.max_json_depth == 0 {
            return invalid("server.max_json_depth", "must be at least 1");
        }
        if self.server.max_header_bytes < 1024 {
            return invalid("server.max_header_bytes", "must be at least 1024");
        }
        if self.server.max_concurrent_requests == 0 {
            return invalid("server.max_concurrent_requests", "must be at least 1");
        }
        if self.server.max_concurrent_per_subject == 0 {
            return invalid("server.max_concurrent_per_subject", "must be at least 1");
        }
        if self.server.max_connections == 0 {
            return invalid("server.max_connections", "must be at least 1");
        }
        for (field, secs) in [
            (
                "server.header_read_timeout_secs",
                self.server.header_read_timeout_secs,
            ),
            (
                "server.keep_alive_timeout_secs",
                self.server.keep_alive_timeout_secs,
            ),
            ("server.stall_timeout_secs", self.server.stall_timeout_secs),
        ] {
            if secs == 0 {
                return invalid(field, "must be at least 1");
            }
        }
        if self.auth.leeway_secs > MAX_LEEWAY_SECS {
            return invalid(
                "auth.leeway_secs",
                &format!("must be at most {MAX_LEEWAY_SECS} seconds"),
            );
        }
        if self.auth.key_id.trim().is_empty() {
            return invalid("auth.key_id", "must not be empty");
        }
        if self.materialization.chunk_size == 0 {
            return invalid("materialization.chunk_size", "must be at least 1");
        }
        if self.training.folds < 2 {
            return invalid("training.folds", "must be at least 2");
        }
        if !(1..=100).contains(&self.training.repeats) {
            return invalid("training.repeats", "must be between 1 and 100");
        }
        if !std::iter::once(&self.training.alpha)
            .chain(&self.training.alpha_grid)
            .all(|a| a.is_finite() && *a >= 0.0)
        {
            return invalid("training.alpha", "must be a finite number >= 0");
        }
        let m = &self.monitoring;
        if !(m.drift_p_value > 0.0 && m.drift_p_value < 1.0) {
            return invalid("monitoring.drift_p_value", "must be between 0 and 1");
        }
        if !(m.psi_warn > 0.0 && m.psi_warn <= m.psi_alert && m.psi_alert.is_finite()) {
            return invalid(
                "monitoring.psi_warn",
                "psi_warn and psi_alert must be finite with 0 < psi_warn <= psi_alert",
            );
        }
        if !(0.0..=1.0).contains(&m.request_log.sample_rate) {
            return invalid("monitoring.request_log.sample_rate", "must be in [0, 1]");
        }
        if m.request_log.queue_capacity == 0 || m.request_log.batch_size == 0 {
            return invalid(
                "monitoring.request_log",
                "queue_capacity and batch_size must be at least 1",
            );
        }
        if !(m.drift_share > 0.0 && m.drift_share <= 1.0) {
            return invalid("monitoring.drift_share", "must be in (0, 1]");
        }
        Ok(())
    }

    /// Where a generated JWT secret is kept.
    pub fn secret_file(&self) -> PathBuf {
        if self.auth.secret_file.is_empty() {
            self.data.dir.join("jwt_secret")
        } else {
            PathBuf::from(&self.auth.secret_file)
        }
    }

    pub fn redis_url(&self) -> Option<&str> {
        Some(self.redis.url.trim()).filter(|url| !url.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> Environment {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Environment::with_prefix("TITANIC").source(Some(map))
    }

    fn no_dir() -> PathBuf {
        PathBuf::from("/nonexistent-titanic-config")
    }

    /// The development profile with no files from disk and these environment variables.
    fn development(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::load_from("development", &no_dir(), env(vars))
    }

    #[test]
    fn compiled_in_defaults_parse() {
        let s = development(&[]).unwrap();
        assert_eq!(s.server.port, 8080);
        assert_eq!(s.database.url, "sqlite://data/titanic.db");
        assert_eq!(s.redis_url(), None);
        assert!(s.auth.jwt_secret.is_empty());
        assert!(s.auth.generate_secret);
        assert_eq!(s.training.folds, 5);
        assert_eq!(s.secret_file(), PathBuf::from("data/jwt_secret"));
    }

    #[test]
    fn environment_overrides_files() {
        let s = development(&[
            ("TITANIC__SERVER__PORT", "9999"),
            ("TITANIC__REDIS__URL", "redis://127.0.0.1:6379"),
            ("TITANIC__AUTH__JWT_SECRET", "0123456789"),
            ("TITANIC__RATE_LIMIT__PER_SECOND", "7"),
            ("TITANIC__RATE_LIMIT__BURST", "3"),
            ("TITANIC__TRAINING__ALPHA_GRID", "0.1, 1,10"),
        ])
        .unwrap();
        assert_eq!(s.training.alpha_grid, [0.1, 1.0, 10.0]);
        assert_eq!(s.server.port, 9999);
        assert_eq!(s.redis_url(), Some("redis://127.0.0.1:6379"));
        // Digits-only secrets stay strings.
        assert_eq!(s.auth.jwt_secret.expose(), "0123456789");
        assert_eq!((s.rate_limit.per_second, s.rate_limit.burst), (7, 3));
    }

    #[test]
    fn an_empty_grid_from_the_environment_is_no_grid() {
        let s = development(&[("TITANIC__TRAINING__ALPHA_GRID", "")]).unwrap();
        assert!(s.training.alpha_grid.is_empty());
        let err = development(&[("TITANIC__TRAINING__ALPHA_GRID", "0.1,x")]).unwrap_err();
        assert!(err.to_string().contains("alpha_grid"), "{err}");
    }

    #[test]
    fn production_profile_is_embedded_and_disables_generated_secrets() {
        let s = Settings::load_from("production", &no_dir(), env(&[])).unwrap();
        assert_eq!(s.profile, "production");
        assert!(!s.auth.generate_secret);
        assert_eq!(s.server.host, "0.0.0.0");
    }

    #[test]
    fn profile_file_on_disk_is_layered() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("staging.toml"), "[server]\nport = 1234\n").unwrap();
        let s = Settings::load_from("staging", dir.path(), env(&[])).unwrap();
        assert_eq!(s.server.port, 1234);
        assert_eq!(s.server.host, "127.0.0.1");
    }

    #[test]
    fn invalid_values_are_named() {
        let err = development(&[("TITANIC__TRAINING__FOLDS", "1")]).unwrap_err();
        assert!(err.to_string().contains("training.folds"), "{err}");
        let err = development(&[("TITANIC__SERVER__PORT", "eighty")]).unwrap_err();
        assert!(err.to_string().contains("port"), "{err}");
    }

    #[test]
    fn quotas_per_class_fall_back_to_the_default() {
        let s = development(&[
            ("TITANIC__RATE_LIMIT__PER_SECOND", "7"),
            ("TITANIC__RATE_LIMIT__MODELS_WRITE__BURST", "2"),
            ("TITANIC__RATE_LIMIT__OPEN__PER_SECOND", "5"),
        ])
        .unwrap();
        let rl = &s.rate_limit;
        assert_eq!(
            rl.quota(ScopeClass::ModelsWrite),
            Quota {
                per_second: 7,
                burst: 2
            }
        );
        assert_eq!(
            rl.quota(ScopeClass::Predict),
            Quota {
                per_second: 7,
                burst: 200
            }
        );
        assert_eq!(rl.quota(ScopeClass::Open).per_second, 5);
        let err = development(&[("TITANIC__RATE_LIMIT__PREDICT__PER_SECOND", "0")]).unwrap_err();
        assert!(err.to_string().contains("rate_limit.predict"), "{err}");
    }

    #[test]
    fn clock_skew_and_limits_are_bounded() {
        for (key, value, field) in [
            ("TITANIC__AUTH__LEEWAY_SECS", "301", "auth.leeway_secs"),
            ("TITANIC__AUTH__KEY_ID", " ", "auth.key_id"),
            (
                "TITANIC__SERVER__MAX_JSON_DEPTH",
                "0",
                "server.max_json_depth",
            ),
            (
                "TITANIC__SERVER__MAX_CONCURRENT_REQUESTS",
                "0",
                "server.max_concurrent_requests",
            ),
            (
                "TITANIC__SERVER__MAX_HEADER_BYTES",
                "100",
                "server.max_header_bytes",
            ),
            (
                "TITANIC__RATE_LIMIT__CLIENT_IP_HEADER",
                "x forwarded",
                "rate_limit.client_ip_header",
            ),
        ] {
            let err = development(&[(key, value)]).unwrap_err();
            assert!(err.to_string().contains(field), "{key}: {err}");
        }
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "[redacted]");
    }
}
