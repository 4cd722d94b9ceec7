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
use crate::core::time::{Micros, now_micros};
use crate::feature_store::PassengerRecord;
use crate::feature_store::history::{self, resolve_service};
use crate::feature_store::ingest::{self, PassengerCsv};
use crate::feature_store::materialize::{self, Mode, Report};
use crate::feature_store::offline::OfflineStore;
use crate::feature_store::online::{InProcessStore, ViewKey};
use crate::feature_store::redis_store::RedisStore;
use crate::feature_store::registry::{
    DEMOGRAPHICS, FeatureRegistry, FeatureServiceSpec, Kind, SURVIVAL_SERVICE,
};
use crate::feature_store::serving::{FeatureServer, FeatureStoreMetrics, ServiceViews};
use crate::ml::dataset::TrainingSet;
use crate::ml::registry::ModelRegistry;
use crate::ml::{
    FeatureServiceRef, Model, ModelArtifact, ModelServer, PRODUCTION, Served, TrainParams, train,
};
use crate::monitoring::Metrics;

/// The stores every command works on.
#[derive(Debug, Clone)]
pub struct Stores {
    pub pool: SqlitePool,
    pub offline: OfflineStore,
    pub models: ModelRegistry,
    pub features: FeatureRegistry,
}

impl Stores {
    /// Opens the database, applies migrations and registers the built-in feature definitions.
    pub async fn open(settings: &Settings) -> anyhow::Result<Self> {
        let pool = db::connect(&settings.database).await?;
        let features = FeatureRegistry::new(pool.clone());
        features.ensure_builtins().await?;
        Ok(Self {
            offline: OfflineStore::new(pool.clone()),
            models: ModelRegistry::new(pool.clone()),
            features,
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
    /// Labelled passengers left out because they had no usable features at the time.
    pub skipped: usize,
}

async fn read_csv(path: PathBuf) -> anyhow::Result<Vec<PassengerRecord>> {
    let shown = path.display().to_string();
    tokio::task::spawn_blocking(move || ingest::read_all(&path))
        .await?
        .with_context(|| format!("reading {shown}"))
}

/// Reads a Kaggle-format CSV and appends it to the offline history (event time: now).
pub async fn ingest_file(stores: &Stores, path: &Path) -> anyhow::Result<Vec<PassengerRecord>> {
    let records = read_csv(path.to_path_buf()).await?;
    let source = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let (features, labels) =
        history::ingest(&stores.offline, &records, &source, now_micros()).await?;
    tracing::info!(
        path = %path.display(),
        rows = records.len(),
        feature_rows_written = features.written,
        label_rows_written = labels.written,
        unchanged = features.unchanged,
        "ingested passengers"
    );
    Ok(records)
}

/// On an empty offline store, ingests the bundled `train.csv` and `test.csv`.
pub async fn ingest_bundled(settings: &Settings, stores: &Stores) -> anyhow::Result<()> {
    if stores.offline.count(DEMOGRAPHICS).await? > 0 {
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

/// The newest version of the survival feature service, resolved.
async fn current_service(stores: &Stores) -> anyhow::Result<ServiceViews> {
    let latest = stores
        .features
        .latest::<FeatureServiceSpec>(Kind::Service, SURVIVAL_SERVICE)
        .await?;
    Ok(resolve_service(&stores.features, &latest.name, latest.version).await?)
}

/// What to train on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrainingData<'a> {
    /// Exactly the labelled rows of this CSV (which is also appended to the history).
    File(&'a Path),
    /// Every passenger labelled in the history as of this time, with the features it had then.
    AsOf(Micros),
    /// The same as of now (after filling an empty store with the bundled CSVs).
    Latest,
}

/// Trains, registers the version, and optionally promotes it to `production`. Reading from
/// the history, an empty store is first filled with the bundled CSVs.
pub async fn train_model(
    settings: &Settings,
    stores: &Stores,
    data: TrainingData<'_>,
    promote: bool,
) -> anyhow::Result<Trained> {
    let service = current_service(stores).await?;
    let (records, as_of, skipped) = match data {
        TrainingData::File(path) => (ingest_file(stores, path).await?, now_micros(), 0),
        TrainingData::AsOf(_) | TrainingData::Latest => {
            ingest_bundled(settings, stores).await?;
            let as_of = match data {
                TrainingData::AsOf(t) => t,
                _ => now_micros(),
            };
            let rows = history::training_rows(&stores.offline, &service, as_of).await?;
            let skipped = rows.without_features + rows.unusable;
            (rows.records, as_of, skipped)
        }
    };
    let set = TrainingSet::from_records(&records);
    if set.is_empty() {
        bail!(
            "no labelled passengers to train on; pass --data PATH (a CSV with a Survived column) or a later --as-of"
        );
    }
    let params = TrainParams::from(&settings.training);
    let service_ref = FeatureServiceRef {
        name: service.service.name.clone(),
        version: service.service.version,
    };
    let started = std::time::Instant::now();
    let artifact =
        tokio::task::spawn_blocking(move || train::train(&set, &params, service_ref, as_of))
            .await??;
    // Refuse to register anything that could not serve.
    Served::new(
        Model::from_artifact("candidate", artifact.clone())?,
        service,
    )?;
    let version = stores.models.register(&artifact).await?;
    if promote {
        stores.models.set_alias(PRODUCTION, &version).await?;
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
        skipped,
    })
}

/// Loads a model version with the feature service it was trained on, refusing it when this
/// service cannot produce its features.
pub async fn load_served(stores: &Stores, version: &str) -> anyhow::Result<Served> {
    let model = stores.models.load(version).await?;
    let wanted = model.feature_service().clone();
    let features = resolve_service(&stores.features, &wanted.name, wanted.version)
        .await
        .with_context(|| format!("model {version} needs feature service {wanted}"))?;
    Ok(Served::new(model, features)?)
}

/// On an empty store: ingest the bundled CSVs, then train and promote a first model.
/// Returns the production model with its feature service.
pub async fn bootstrap(settings: &Settings, stores: &Stores) -> anyhow::Result<Served> {
    ingest_bundled(settings, stores).await?;
    if stores.models.resolve(PRODUCTION).await?.is_none() {
        tracing::info!("no production model yet: training one");
        train_model(settings, stores, TrainingData::Latest, true).await?;
    }
    let version = stores
        .models
        .resolve(PRODUCTION)
        .await?
        .context("no production model")?;
    load_served(stores, &version).await
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

/// The feature server for the configured online store: Redis (with the in-process cache in
/// front) when `redis.url` is set, the in-process store otherwise.
pub fn feature_server(
    settings: &Settings,
    offline: OfflineStore,
    metrics: FeatureStoreMetrics,
) -> anyhow::Result<FeatureServer> {
    Ok(match settings.redis_url() {
        Some(url) => {
            let store = RedisStore::new(url, &settings.redis.key_prefix)?;
            let cache = (settings.feature_cache.max_entries > 0).then(|| {
                (
                    settings.feature_cache.max_entries,
                    Duration::from_millis(settings.feature_cache.ttl_ms),
                )
            });
            FeatureServer::new(Arc::new(store), offline, cache, metrics)
        }
        None => FeatureServer::new(Arc::new(InProcessStore::new()), offline, None, metrics),
    })
}

/// Materializes the views of a feature service: fully when the online store has never
/// received a view version (an empty store), incrementally otherwise. A failing online store
/// is logged, not fatal: reads then fall back to the offline store.
pub async fn materialize_service(
    settings: &Settings,
    server: &FeatureServer,
    service: &ServiceViews,
) -> Vec<Report> {
    let mut reports = Vec::new();
    for view in &service.views {
        let key = ViewKey::new(&view.name, view.version);
        let mode = match server.online().is_materialized(&key).await {
            Ok(true) => Mode::Incremental,
            Ok(false) => Mode::Full,
            Err(e) => {
                tracing::warn!(view = %key, error = %e, "online store unavailable; not materializing");
                continue;
            }
        };
        match materialize::materialize(server, view, mode, settings.materialization.chunk_size)
            .await
        {
            Ok(report) if report.entities == 0 && report.mode == Mode::Incremental => {
                reports.push(report);
            }
            Ok(report) => {
                tracing::info!(
                    view = %key,
                    mode = ?report.mode,
                    entities = report.entities,
                    chunks = report.chunks,
                    "materialized"
                );
                reports.push(report);
            }
            Err(e) => tracing::warn!(view = %key, error = %e, "materialization failed"),
        }
    }
    reports
}

/// Everything `serve` needs, built but not yet serving: tests bind it on port 0.
pub async fn build_server(settings: &Settings) -> anyhow::Result<Server> {
    let (keys, source) = JwtKeys::from_settings(settings)?;
    log_secret_source(&source);
    let stores = Stores::open(settings).await?;
    let served = bootstrap(settings, &stores).await?;
    let metrics = Metrics::new()?;
    let feature_metrics = FeatureStoreMetrics::new()?;
    metrics.register_all(feature_metrics.collectors())?;
    metrics.set_model_version(served.model.version());
    let features = Arc::new(feature_server(
        settings,
        stores.offline.clone(),
        feature_metrics,
    )?);
    if let Err(e) = features.check_online().await {
        tracing::warn!(kind = features.online().kind(), error = %e, "online store unavailable at start; serving from the offline store");
    }
    materialize_service(settings, &features, &served.features).await;
    let models = Arc::new(ModelServer::new());
    tracing::info!(
        version = %served.model.version(),
        feature_service = %served.model.feature_service(),
        online_store = features.online().kind(),
        "serving model"
    );
    models.swap(served);
    let supervisor = tokio::spawn(supervise_online_store(
        settings.clone(),
        Arc::clone(&features),
        Arc::clone(&models),
    ));
    let state = AppState {
        models,
        features,
        stores: stores.clone(),
        settings: Arc::new(settings.clone()),
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
    Ok(server.with_task(supervisor))
}

/// How often the online store is checked in the background.
const SUPERVISE_EVERY: Duration = Duration::from_secs(2);

/// Keeps the online store honest without waiting for traffic: checks it every couple of
/// seconds (so the health gauge recovers by itself), and when it answers but has lost a view
/// (a Redis restarted without persistence), materializes that view again in full.
async fn supervise_online_store(
    settings: Settings,
    features: Arc<FeatureServer>,
    models: Arc<ModelServer>,
) {
    let mut tick = tokio::time::interval(SUPERVISE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if features.check_online().await.is_err() {
            continue;
        }
        if let Some(served) = models.current() {
            materialize_service(&settings, &features, &served.features).await;
        }
    }
}

/// `titanic serve`: bootstrap, then serve until SIGTERM/SIGINT.
pub async fn serve(settings: &Settings) -> anyhow::Result<()> {
    let server = build_server(settings).await?;
    let addr = server.local_addr()?;
    tracing::info!(addr = %addr, profile = %settings.profile, "listening");
    server.run(termination_signal()).await?;
    Ok(())
}

/// `titanic materialize`: copies the production feature service's views (or one view
/// version) from the offline store to the configured online store.
pub async fn materialize_command(
    settings: &Settings,
    view: Option<(&str, Option<i64>)>,
    mode: Mode,
) -> anyhow::Result<Vec<Report>> {
    let stores = Stores::open(settings).await?;
    let metrics = FeatureStoreMetrics::new()?;
    let server = feature_server(settings, stores.offline.clone(), metrics)?;
    if settings.redis_url().is_none() {
        tracing::warn!(
            "no redis.url configured: the in-process online store lives only as long as this command"
        );
    }
    server
        .check_online()
        .await
        .context("the online store is unavailable")?;
    let views = match view {
        Some((name, version)) => {
            let v = match version {
                Some(v) => stores.features.get(Kind::View, name, v).await?,
                None => stores.features.latest(Kind::View, name).await?,
            };
            vec![v]
        }
        None => bootstrap(settings, &stores).await?.features.views,
    };
    let mut reports = Vec::new();
    for v in &views {
        reports.push(
            materialize::materialize(&server, v, mode, settings.materialization.chunk_size).await?,
        );
    }
    Ok(reports)
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
        Some(v) => load_served(&stores, v).await?.model,
        None => bootstrap(settings, &stores).await?.model,
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
        "trained on {} passengers ({} survivors) as of {}, data {}",
        t.artifact.training.rows,
        t.artifact.training.positives,
        t.artifact.training.as_of,
        t.artifact.training.data_hash
    );
    let _ = writeln!(s, "feature service {}", t.artifact.feature_service);
    if t.skipped > 0 {
        let _ = writeln!(
            s,
            "left out {} labelled passengers without usable features at that time",
            t.skipped
        );
    }
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
