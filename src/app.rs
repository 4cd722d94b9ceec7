//! Wiring for the CLI commands: bootstrapping the stores, training, serving, batch
//! prediction and minting tokens. The binary's `main` only parses arguments and calls these.

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::api::state::Shared;
use crate::api::{AppState, Limits, Server};
use crate::core::config::Settings;
use crate::core::rate_limit::RateLimiter;
use crate::core::security::{JwtKeys, SecretSource, scopes};
use crate::core::shutdown::{Lifecycle, termination_signal};
use crate::feature_store::ingest::PassengerCsv;
use crate::feature_store::materialize::{self, Mode, Report};
use crate::feature_store::offline::OfflineStore;
use crate::feature_store::online::{InProcessStore, OnlineStore, ViewKey};
use crate::feature_store::redis_store::RedisStore;
use crate::feature_store::registry::Kind;
use crate::feature_store::serving::{FeatureServer, FeatureStoreMetrics, ServiceViews};
use crate::ml::evaluation::{RepeatMetrics, Summary};
use crate::ml::lifecycle::{self, Stores, Trained, bootstrap, load_served};
use crate::ml::registry::{AliasAction, AliasChange, AliasMove};
use crate::ml::serving::ActiveExperiment;
use crate::ml::{Model, ModelServer, PRODUCTION};
use crate::monitoring::{Metrics, Monitor};

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

/// The feature server for the configured online store (Redis when `redis.url` is set, the
/// in-process store otherwise), with the in-process cache in front.
pub fn feature_server(
    settings: &Settings,
    offline: OfflineStore,
    metrics: FeatureStoreMetrics,
) -> anyhow::Result<FeatureServer> {
    let cache = (settings.feature_cache.max_entries > 0).then(|| {
        (
            settings.feature_cache.max_entries,
            Duration::from_millis(settings.feature_cache.ttl_ms),
        )
    });
    let online: Arc<dyn OnlineStore> = match settings.redis_url() {
        Some(url) => Arc::new(RedisStore::new(url, &settings.redis.key_prefix)?),
        None => Arc::new(InProcessStore::new()),
    };
    Ok(FeatureServer::new(online, offline, cache, metrics)
        .with_stale_values(settings.features.stale_values))
}

/// Materializes the views of a feature service incrementally: from the online store's own
/// watermark, so a store that never received a view version (or lost it) gets every entity.
/// A failing online store is logged, not fatal: reads then fall back to the offline store.
pub async fn materialize_service(
    settings: &Settings,
    server: &FeatureServer,
    service: &ServiceViews,
) -> Vec<Report> {
    let mut reports = Vec::new();
    for view in &service.views {
        let key = ViewKey::new(&view.name, view.version);
        let chunk = settings.materialization.chunk_size;
        match materialize::materialize(server, view, Mode::Incremental, chunk).await {
            Ok(report) if report.entities == 0 => reports.push(report),
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
    let served = bootstrap(settings, &stores, settings.training.retrain_outdated).await?;
    let metrics = Metrics::new()?;
    let feature_metrics = FeatureStoreMetrics::new()?;
    metrics.register_all(feature_metrics.collectors())?;
    let (monitor, log_writer) = Monitor::new(
        stores.pool.clone(),
        &settings.monitoring,
        feature_metrics.dependencies.clone(),
    )?;
    metrics.register_all(monitor.collectors())?;
    let labels = monitor.performance.load().await?;
    if labels > 0 {
        tracing::info!(
            labels,
            "live performance window restored from stored feedback"
        );
    }
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
    fail_abandoned_jobs(&stores.jobs).await?;
    let state = AppState::new(Shared {
        models,
        features,
        stores: stores.clone(),
        settings: Arc::new(settings.clone()),
        metrics,
        monitor: Arc::new(monitor),
        keys: Arc::new(keys),
        limiter: Arc::new(RateLimiter::new(&settings.rate_limit)),
        client_ip_header: crate::api::middleware::client_ip_header(&settings.rate_limit),
        concurrency: Arc::new(tokio::sync::Semaphore::new(
            settings.server.max_concurrent_requests,
        )),
        subject_slots: Arc::new(crate::core::slots::SubjectSlots::new(
            settings
                .server
                .max_concurrent_per_subject
                .min(settings.server.max_concurrent_requests),
        )),
        lifecycle: Lifecycle::default(),
        refused_tokens: Default::default(),
        slow_request: Duration::from_millis(settings.log.slow_request_ms),
        limits: Limits::of(&settings.server),
        training: Arc::new(tokio::sync::Semaphore::new(1)),
        pinned: moka::sync::Cache::new(8),
    });
    state.install(served);
    let supervisor = tokio::spawn(supervise(state.clone()));
    let server = Server::bind(
        &settings.server.host,
        settings.server.port,
        state,
        Duration::from_secs(settings.server.shutdown_drain_secs),
        Duration::from_secs(settings.server.shutdown_timeout_secs),
    )
    .await?;
    let writer = tokio::spawn(log_writer.run());
    Ok(server.with_task(supervisor).with_final_task(writer))
}

/// Fails the training jobs whose process stopped (see `ml::jobs`), saying so.
async fn fail_abandoned_jobs(jobs: &crate::ml::jobs::TrainingJobs) -> Result<(), sqlx::Error> {
    let failed = jobs.fail_abandoned(crate::core::time::now_micros()).await?;
    if failed > 0 {
        tracing::warn!(
            jobs = failed,
            "training jobs abandoned by a process that stopped marked failed"
        );
    }
    Ok(())
}

/// How often the background supervisor looks at the world.
const SUPERVISE_EVERY: Duration = Duration::from_secs(2);

/// Keeps the process in step with shared state without waiting for traffic, every couple of
/// seconds:
/// - training jobs: this process's unfinished jobs get a fresh heartbeat, and every fifth
///   round the jobs of processes that stopped are failed;
/// - the `production` alias: when another process (the CLI, another replica) moved it, the
///   new version is loaded and swapped in; a version that does not load is refused once,
///   loudly, and the current model keeps serving;
/// - the online store: checked (so the health gauge recovers by itself), caught up with new
///   offline rows, and refilled in full when it lost a view (a Redis restarted empty).
async fn supervise(state: AppState) {
    let mut tick = tokio::time::interval(SUPERVISE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut refused: Option<String> = None;
    let mut refused_candidate: Option<String> = None;
    for round in 0u64.. {
        tick.tick().await;
        if let Err(e) = state.stores.jobs.heartbeat().await {
            tracing::warn!(error = %e, "cannot refresh the training jobs' heartbeat");
        }
        if round % 5 == 4
            && let Err(e) = fail_abandoned_jobs(&state.stores.jobs).await
        {
            tracing::warn!(error = %e, "cannot look for abandoned training jobs");
        }
        follow_production_alias(&state, &mut refused).await;
        follow_experiment(&state, &mut refused_candidate).await;
        if state.features.check_online().await.is_err() {
            continue;
        }
        if let Some(served) = state.models.current() {
            materialize_service(&state.settings, &state.features, &served.features).await;
        }
    }
}

async fn follow_experiment(state: &AppState, refused: &mut Option<String>) {
    let stored = match state.stores.experiments.get().await {
        Ok(e) => e.map(|e| e.spec),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the experiment");
            return;
        }
    };
    let active = state.models.experiment().map(|a| a.spec.clone());
    if stored == active {
        return;
    }
    let Some(spec) = stored else {
        tracing::info!("experiment ended elsewhere");
        state.models.set_experiment(None);
        return;
    };
    if refused.as_deref() == Some(spec.version.as_str()) {
        return;
    }
    match load_served(&state.stores, &spec.version).await {
        Ok(candidate) => {
            tracing::info!(experiment = ?spec, "following the experiment");
            state.models.set_experiment(Some(ActiveExperiment {
                spec,
                candidate: Arc::new(candidate),
            }));
            *refused = None;
        }
        Err(e) => {
            // Rather no experiment than a stale one: production answers everything.
            tracing::error!(version = %spec.version, error = %e, "experiment candidate cannot be served; running no experiment");
            state.models.set_experiment(None);
            *refused = Some(spec.version);
        }
    }
}

async fn follow_production_alias(state: &AppState, refused: &mut Option<String>) {
    let target = match state.stores.models.resolve(PRODUCTION).await {
        Ok(Some(v)) => v,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the production alias");
            return;
        }
    };
    let serving = state
        .models
        .current()
        .map(|s| s.model.version().to_string());
    if serving.as_deref() == Some(target.as_str()) || refused.as_deref() == Some(target.as_str()) {
        return;
    }
    match load_served(&state.stores, &target).await {
        Ok(served) => {
            state
                .metrics
                .model_reloads
                .with_label_values(&["loaded"])
                .inc();
            state.install(served);
            *refused = None;
        }
        Err(e) => {
            state
                .metrics
                .model_reloads
                .with_label_values(&["refused"])
                .inc();
            tracing::error!(
                version = %target,
                serving = serving.as_deref().unwrap_or("none"),
                error = %e,
                "production alias points at a model that cannot be served; keeping the current one"
            );
            *refused = Some(target);
        }
    }
}

/// `titanic serve`: bootstrap, then serve until SIGTERM/SIGINT.
pub async fn serve(settings: &Settings) -> anyhow::Result<()> {
    let server = build_server(settings).await?;
    // The handlers first: from the `listening` line on, SIGTERM drains.
    let signal = termination_signal();
    let addr = server.local_addr()?;
    tracing::info!(addr = %addr, profile = %settings.profile, "listening");
    server.run(signal).await?;
    Ok(())
}

/// `titanic materialize`: copies the production feature service's views (or one view
/// version) from the offline store to the configured online store.
pub async fn materialize_command(
    settings: &Settings,
    view: Option<(&str, Option<i64>)>,
    mode: Mode,
) -> anyhow::Result<Vec<Report>> {
    if settings.redis_url().is_none() {
        bail!(
            "nothing to materialize into: set TITANIC__REDIS__URL (the in-process online store lives inside `titanic serve`, which fills it itself)"
        );
    }
    let stores = Stores::open(settings).await?;
    let metrics = FeatureStoreMetrics::new()?;
    let server = feature_server(settings, stores.offline.clone(), metrics)?;
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
        None => {
            let version = stores
                .models
                .resolve(PRODUCTION)
                .await?
                .context("no production model to take the views from; run `titanic train --promote` or pass --view")?;
            load_served(&stores, &version).await?.features.views
        }
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
        // A batch run never replaces the production model; `serve` or `train --promote` does.
        None => bootstrap(settings, &stores, false).await?.model,
    };
    let (input, output) = (input.to_path_buf(), output.to_path_buf());
    let max_record_bytes = settings.data.max_csv_record_bytes;
    tokio::task::spawn_blocking(move || {
        write_predictions(&model, &input, &output, max_record_bytes)
    })
    .await?
}

fn write_predictions(
    model: &Model,
    input: &Path,
    output: &Path,
    max_record_bytes: usize,
) -> anyhow::Result<u64> {
    let mut csv = PassengerCsv::open(input, max_record_bytes)?;
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
            if rows.is_multiple_of(4096) {
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
    if t.artifact.training.unlabelled > 0 {
        let _ = writeln!(
            s,
            "unlabelled passengers read for the fare per head: {}",
            t.artifact.training.unlabelled
        );
    }
    if t.skipped > 0 {
        let _ = writeln!(
            s,
            "left out {} labelled passengers without usable features at that time",
            t.skipped
        );
    }
    let last_seed = m.seed.wrapping_add(m.repeats.saturating_sub(1) as u64);
    let _ = writeln!(
        s,
        "repeated stratified cross-validation: {} x {} folds (split seeds {} to {}):",
        m.repeats, m.folds, m.seed, last_seed
    );
    let _ = writeln!(
        s,
        "  metric    mean    95% interval      fold sd  repetition means"
    );
    /// A metric's name, its summary, and its value in one repetition.
    type Row<'a> = (&'a str, &'a Summary, fn(&RepeatMetrics) -> f64);
    let rows: [Row<'_>; 4] = [
        ("accuracy", &m.accuracy, |r| r.accuracy),
        ("roc_auc", &m.roc_auc, |r| r.roc_auc),
        ("log_loss", &m.log_loss, |r| r.log_loss),
        ("brier", &m.brier, |r| r.brier),
    ];
    for (name, summary, of_repeat) in rows {
        let (low, high) = m
            .per_repeat
            .iter()
            .map(of_repeat)
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
                (l.min(v), h.max(v))
            });
        let _ = writeln!(
            s,
            "  {name:<8}  {:.4}  [{:.4}, {:.4}]  {:.4}   {:.4} to {:.4}",
            summary.mean, summary.ci_low, summary.ci_high, summary.std, low, high
        );
    }
    let mut alphas = std::collections::BTreeMap::<String, usize>::new();
    for f in &m.per_fold {
        *alphas.entry(format!("{}", f.alpha)).or_default() += 1;
    }
    let alphas: Vec<String> = alphas.iter().map(|(a, n)| format!("{a} ({n})")).collect();
    let _ = writeln!(
        s,
        "L2 alpha chosen in the {} folds (inner cross-validation): {}; final model: {}",
        m.per_fold.len(),
        alphas.join(", "),
        t.artifact.params.alpha
    );
    let _ = writeln!(
        s,
        "calibration of the out-of-fold predictions of every repetition:"
    );
    let _ = writeln!(s, "  predicted     count  mean predicted  observed");
    for bin in m.calibration.iter().filter(|b| b.count > 0) {
        let _ = writeln!(
            s,
            "  {:.1} - {:.1}  {:>7}  {:>14.3}  {:>8.3}",
            bin.lower, bin.upper, bin.count, bin.mean_predicted, bin.observed_rate
        );
    }
    s
}

/// Who the command line acts as, for the alias history and as the trainer of a model:
/// `cli:` and the login name (`USER`, else `LOGNAME`, else `USERNAME`, else `unknown`).
pub fn cli_actor() -> String {
    let user = ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|u| !u.trim().is_empty()))
        .unwrap_or_else(|| "unknown".to_owned());
    format!("cli:{}", user.trim())
}

/// `titanic models list`.
pub async fn models_list(stores: &Stores) -> anyhow::Result<String> {
    use std::fmt::Write as _;
    let mut out = String::new();
    for v in stores.models.list().await? {
        let metric = |name: &str| v.metrics[name]["mean"].as_f64().unwrap_or(f64::NAN);
        let _ = writeln!(
            out,
            "{:<6} {}  accuracy {:.4}  roc_auc {:.4}  {}",
            v.version,
            v.created_at,
            metric("accuracy"),
            metric("roc_auc"),
            if v.aliases.is_empty() {
                String::new()
            } else {
                format!("[{}]", v.aliases.join(", "))
            }
        );
    }
    Ok(out)
}

fn describe_move(m: &AliasMove) -> String {
    if !m.moved {
        return format!(
            "{} already points at {}; nothing changed\n",
            m.alias, m.version
        );
    }
    format!(
        "{} -> {} (was {})\n",
        m.alias,
        m.version,
        m.previous_version.as_deref().unwrap_or("unset")
    )
}

/// `titanic models promote`. A running server picks the change up within seconds.
pub async fn models_promote(
    stores: &Stores,
    alias: &str,
    version: &str,
    reason: &str,
) -> anyhow::Result<String> {
    let actor = cli_actor();
    let change = AliasChange {
        action: AliasAction::Promote,
        actor: &actor,
        reason,
    };
    let (moved, _) = lifecycle::promote(stores, alias, version, &change).await?;
    Ok(describe_move(&moved))
}

/// `titanic models rollback`.
pub async fn models_rollback(stores: &Stores, alias: &str, reason: &str) -> anyhow::Result<String> {
    let (moved, _) = lifecycle::rollback(stores, alias, &cli_actor(), reason).await?;
    Ok(describe_move(&moved))
}

/// `titanic models history`.
pub async fn models_history(stores: &Stores, alias: Option<&str>) -> anyhow::Result<String> {
    use std::fmt::Write as _;
    let mut out = String::new();
    for e in stores.models.history(alias).await? {
        let _ = writeln!(
            out,
            "{}  {:<12} {:<8} {} -> {}  by {}{}",
            e.at,
            e.alias,
            e.action,
            e.previous_version.as_deref().unwrap_or("unset"),
            e.version,
            e.actor,
            if e.reason.is_empty() {
                String::new()
            } else {
                format!(": {}", e.reason)
            }
        );
    }
    Ok(out)
}

/// `titanic historical`: streams an entity table through historical retrieval for a feature
/// service (`name` or `name@version`; default: the latest titanic_survival), into `output`
/// (written to a temporary file beside it, renamed when complete).
pub async fn historical_file(
    stores: &Stores,
    input: &Path,
    output: &Path,
    service: Option<&str>,
    created_as_of: Option<crate::core::time::Micros>,
) -> anyhow::Result<u64> {
    use crate::feature_store::history;
    use crate::feature_store::registry::{
        EntitySpec, FeatureServiceSpec, SURVIVAL_SERVICE, Versioned,
    };
    let registry = &stores.features;
    let service = service.unwrap_or(SURVIVAL_SERVICE);
    let (name, version) = match service.split_once('@') {
        None => (service, None),
        Some((name, v)) => (
            name,
            Some(
                v.parse::<i64>()
                    .with_context(|| format!("--feature-service: bad version {v:?}"))?,
            ),
        ),
    };
    let service: Versioned<FeatureServiceSpec> = match version {
        Some(v) => registry.get(Kind::Service, name, v).await?,
        None => registry.latest(Kind::Service, name).await?,
    };
    let service = history::resolve_service(registry, &service.name, service.version).await?;
    let requests: Vec<_> = service
        .projections()
        .map(|(p, v)| (v.clone(), p.features.clone()))
        .collect();
    let Some((first, _)) = requests.first() else {
        anyhow::bail!("feature service {} reads no view", service.service.name);
    };
    let entity: Versioned<EntitySpec> = registry.latest(Kind::Entity, &first.spec.entity).await?;
    let file = File::open(input).with_context(|| format!("opening {}", input.display()))?;
    let partial = output.with_extension("partial");
    let out = File::create(&partial).with_context(|| format!("creating {}", partial.display()))?;
    let streamed = history::historical_csv(
        &stores.offline,
        &requests,
        &entity.spec.join_key,
        std::io::BufReader::new(file),
        BufWriter::new(out),
        created_as_of,
        stores.max_csv_record_bytes,
    )
    .await
    .with_context(|| format!("{}", input.display()));
    let rows = match streamed {
        Ok(rows) => rows,
        Err(e) => {
            // Nothing half-written is left behind.
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    std::fs::rename(&partial, output)
        .with_context(|| format!("renaming {} to {}", partial.display(), output.display()))?;
    Ok(rows)
}
