//! Wiring for the CLI commands: bootstrapping the stores, training, serving, batch
//! prediction and minting tokens. The binary's `main` only parses arguments and calls these.

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use sqlx::SqlitePool;

use crate::api::{AppState, Limits, Server};
use crate::core::config::Settings;
use crate::core::db;
use crate::core::rate_limit::RateLimiter;
use crate::core::security::{JwtKeys, SecretSource, scopes};
use crate::core::shutdown::{Lifecycle, termination_signal};
use crate::feature_store::ingest::{self, PassengerCsv};
use crate::feature_store::offline::OfflineStore;
use crate::feature_store::online::{InProcessStore, OnlineStore, materialize};
use crate::ml::dataset::TrainingSet;
use crate::ml::registry::ModelRegistry;
use crate::ml::{Model, ModelArtifact, ModelServer, PRODUCTION, TrainParams, train};
use crate::monitoring::Metrics;

/// The stores every command works on.
#[derive(Debug, Clone)]
pub struct Stores {
    pub pool: SqlitePool,
    pub offline: OfflineStore,
    pub registry: ModelRegistry,
}

impl Stores {
    /// Opens the database and applies migrations.
    pub async fn open(settings: &Settings) -> anyhow::Result<Self> {
        let pool = db::connect(&settings.database).await?;
        Ok(Self {
            offline: OfflineStore::new(pool.clone()),
            registry: ModelRegistry::new(pool.clone()),
            pool,
        })
    }
}

/// A registered model version and what training reported.
#[derive(Debug, Clone)]
pub struct Trained {
    pub version: String,
    pub artifact: ModelArtifact,
    pub promoted: bool,
}

async fn read_csv(path: PathBuf) -> anyhow::Result<Vec<crate::feature_store::PassengerRecord>> {
    let shown = path.display().to_string();
    tokio::task::spawn_blocking(move || ingest::read_all(&path))
        .await?
        .with_context(|| format!("reading {shown}"))
}

/// Ingests a Kaggle-format CSV into the offline store; returns the records.
pub async fn ingest_file(
    stores: &Stores,
    path: &Path,
) -> anyhow::Result<Vec<crate::feature_store::PassengerRecord>> {
    let records = read_csv(path.to_path_buf()).await?;
    let source = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    stores.offline.upsert(&records, &source).await?;
    tracing::info!(path = %path.display(), rows = records.len(), "ingested passengers");
    Ok(records)
}

/// Trains on `data` (ingesting it first) or on every labelled passenger in the offline
/// store (ingesting the bundled CSVs into an empty store first), registers the version, and
/// optionally promotes it to `production`.
pub async fn train_model(
    settings: &Settings,
    stores: &Stores,
    data: Option<&Path>,
    promote: bool,
) -> anyhow::Result<Trained> {
    let records = match data {
        Some(path) => ingest_file(stores, path).await?,
        None => {
            ingest_bundled(settings, stores).await?;
            stores.offline.labelled().await?
        }
    };
    let set = TrainingSet::from_records(&records);
    if set.is_empty() {
        bail!(
            "no labelled passengers to train on; pass --data PATH (a CSV with a Survived column)"
        );
    }
    let params = TrainParams::from(&settings.training);
    let started = std::time::Instant::now();
    let artifact = tokio::task::spawn_blocking(move || train::train(&set, &params)).await??;
    // Refuse to register anything that could not serve.
    Model::from_artifact("candidate", artifact.clone())?;
    let version = stores.registry.register(&artifact).await?;
    if promote {
        stores.registry.set_alias(PRODUCTION, &version).await?;
    }
    tracing::info!(
        version = %version,
        promoted = promote,
        accuracy = artifact.metrics.accuracy.mean,
        roc_auc = artifact.metrics.roc_auc.mean,
        seconds = started.elapsed().as_secs_f64(),
        "trained a model"
    );
    Ok(Trained {
        version,
        artifact,
        promoted: promote,
    })
}

/// On an empty offline store, ingests the bundled `train.csv` and `test.csv`.
pub async fn ingest_bundled(settings: &Settings, stores: &Stores) -> anyhow::Result<()> {
    if stores.offline.count().await? > 0 {
        return Ok(());
    }
    for path in [&settings.data.train_csv, &settings.data.test_csv] {
        if path.is_file() {
            ingest_file(stores, path).await?;
        } else {
            tracing::warn!(path = %path.display(), "bundled data not found; skipping");
        }
    }
    Ok(())
}

/// On an empty store: ingest the bundled CSVs, then train and promote a first model.
/// Returns the production model.
pub async fn bootstrap(settings: &Settings, stores: &Stores) -> anyhow::Result<Model> {
    ingest_bundled(settings, stores).await?;
    if stores.registry.resolve(PRODUCTION).await?.is_none() {
        tracing::info!("no production model yet: training one");
        train_model(settings, stores, None, true).await?;
    }
    Ok(stores.registry.load_alias(PRODUCTION).await?)
}

fn log_secret_source(source: &SecretSource) {
    match source {
        SecretSource::Configured => tracing::info!("JWT secret: from configuration"),
        SecretSource::File { path } => tracing::info!(path = %path, "JWT secret: from file"),
        SecretSource::Generated { path } => tracing::warn!(
            path = %path,
            "JWT secret: none configured, generated one (owner-only file); set TITANIC__AUTH__JWT_SECRET in production"
        ),
    }
}

/// Everything `serve` needs, built but not yet serving: tests bind it on port 0.
pub async fn build_server(settings: &Settings) -> anyhow::Result<Server> {
    let (keys, source) = JwtKeys::from_settings(settings)?;
    log_secret_source(&source);
    if settings.redis_url().is_some() {
        tracing::warn!("redis.url is set, but this build serves from the in-process online store");
    }
    let stores = Stores::open(settings).await?;
    let model = bootstrap(settings, &stores).await?;
    let metrics = Metrics::new()?;
    metrics.set_model_version(model.version());
    let online: Arc<dyn OnlineStore> = Arc::new(InProcessStore::new());
    let materialized = materialize(&stores.offline, online.as_ref()).await?;
    tracing::info!(
        rows = materialized,
        kind = online.kind(),
        "online store materialized"
    );
    let models = Arc::new(ModelServer::new());
    tracing::info!(version = %model.version(), "serving model");
    models.swap(model);
    let state = AppState {
        models,
        online,
        db: stores.pool.clone(),
        metrics,
        keys: Arc::new(keys),
        limiter: Arc::new(RateLimiter::new(&settings.rate_limit)),
        lifecycle: Lifecycle::default(),
        limits: Limits {
            max_batch_size: settings.server.max_batch_size,
            body_limit_bytes: settings.server.body_limit_bytes,
            request_timeout: Duration::from_secs(settings.server.request_timeout_secs),
        },
    };
    let server = Server::bind(
        &settings.server.host,
        settings.server.port,
        state,
        Duration::from_secs(settings.server.shutdown_drain_secs),
        Duration::from_secs(settings.server.shutdown_timeout_secs),
    )
    .await
    .with_context(|| format!("binding {}:{}", settings.server.host, settings.server.port))?;
    Ok(server)
}

/// `titanic serve`: bootstrap, then serve until SIGTERM/SIGINT.
pub async fn serve(settings: &Settings) -> anyhow::Result<()> {
    let server = build_server(settings).await?;
    let addr = server.local_addr()?;
    tracing::info!(addr = %addr, profile = %settings.profile, "listening");
    server.run(termination_signal()).await?;
    Ok(())
}

/// `titanic predict`: scores a Kaggle-format CSV into `PassengerId,Survived,Probability`.
/// The output appears only when complete (written to a temporary file, then renamed).
pub async fn predict_file(
    settings: &Settings,
    input: &Path,
    output: &Path,
    version: Option<&str>,
) -> anyhow::Result<u64> {
    let stores = Stores::open(settings).await?;
    let model = match version {
        Some(v) => stores.registry.load(v).await?,
        None => bootstrap(settings, &stores).await?,
    };
    let (input, output) = (input.to_path_buf(), output.to_path_buf());
    tokio::task::spawn_blocking(move || write_predictions(&model, &input, &output)).await?
}

fn write_predictions(model: &Model, input: &Path, output: &Path) -> anyhow::Result<u64> {
    let mut csv = PassengerCsv::open(input)?;
    let total = std::fs::metadata(input).map(|m| m.len()).unwrap_or(0);
    let progress = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(total)
    } else {
        indicatif::ProgressBar::hidden()
    };
    progress.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{bar:40}] {bytes}/{total_bytes} {msg} ({eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let tmp = output.with_extension(format!("tmp-{}", std::process::id()));
    let result = (|| -> anyhow::Result<u64> {
        let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let mut out = BufWriter::with_capacity(1 << 16, file);
        writeln!(out, "PassengerId,Survived,Probability")?;
        let mut rows = 0u64;
        while let Some(record) = csv.next_record() {
            let record = record.with_context(|| format!("{}", input.display()))?;
            let p = model.predict(&record.passenger);
            writeln!(
                out,
                "{},{},{:.6}",
                record.passenger_id,
                u8::from(p.survived()),
                p.probability
            )?;
            rows += 1;
            if rows % 4096 == 0 {
                progress.set_position(csv.position());
                progress.set_message(format!("{rows} rows"));
            }
        }
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(rows)
    })();
    match result {
        Ok(rows) => {
            std::fs::rename(&tmp, output)
                .with_context(|| format!("writing {}", output.display()))?;
            progress.finish_with_message(format!("{rows} rows"));
            Ok(rows)
        }
        Err(e) => {
            progress.abandon();
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// `titanic token`: a signed JWT for `sub` with `scopes` (comma- or space-separated).
pub fn mint_token(
    settings: &Settings,
    sub: &str,
    scope_list: &str,
    ttl_secs: Option<u64>,
) -> anyhow::Result<String> {
    let sub = sub.trim();
    if sub.is_empty() {
        bail!("--sub must not be empty");
    }
    let requested: Vec<String> = scope_list
        .split([',', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if requested.is_empty() {
        bail!(
            "--scopes must name at least one of: {}",
            scopes::ALL.join(", ")
        );
    }
    if let Some(unknown) = requested
        .iter()
        .find(|s| !scopes::ALL.contains(&s.as_str()))
    {
        bail!(
            "unknown scope {unknown:?}; known scopes: {}",
            scopes::ALL.join(", ")
        );
    }
    let ttl = ttl_secs.unwrap_or(settings.auth.default_token_ttl_secs);
    if ttl == 0 {
        bail!("--ttl must be at least 1 second");
    }
    let (keys, source) = JwtKeys::from_settings(settings)?;
    if let SecretSource::Generated { path } = &source {
        eprintln!("note: no JWT secret configured; generated one in {path}");
    }
    Ok(keys.mint(sub, &requested, ttl))
}

/// The human-readable summary `titanic train` prints.
pub fn training_report(t: &Trained) -> String {
    let m = &t.artifact.metrics;
    let mut s = String::new();
    use std::fmt::Write as _;
    let _ = writeln!(
        s,
        "model version {}{}",
        t.version,
        if t.promoted {
            " (promoted to production)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        s,
        "trained on {} passengers ({} survivors), data {}",
        t.artifact.training.rows, t.artifact.training.positives, t.artifact.training.data_hash
    );
    let _ = writeln!(
        s,
        "stratified {}-fold cross-validation (seed {}):",
        m.folds, m.seed
    );
    let _ = writeln!(
        s,
        "  accuracy  {:.4} ± {:.4}",
        m.accuracy.mean, m.accuracy.std
    );
    let _ = writeln!(
        s,
        "  roc_auc   {:.4} ± {:.4}",
        m.roc_auc.mean, m.roc_auc.std
    );
    let _ = writeln!(
        s,
        "  log_loss  {:.4} ± {:.4}",
        m.log_loss.mean, m.log_loss.std
    );
    s
}
