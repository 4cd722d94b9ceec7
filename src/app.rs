//! Wiring: builds the serving process from its settings (stores, feature server, monitoring,
//! the [`Service`] and the HTTP server) and runs it. The use cases live in
//! [`crate::service`], the command line's reports in [`crate::cli`].

use std::sync::Arc;
use std::time::Duration;

use crate::api::state::Shared;
use crate::api::{AppState, Limits, Server};
use crate::core::config::Settings;
use crate::core::rate_limit::RateLimiter;
use crate::core::security::{JwtKeys, SecretSource};
use crate::core::shutdown::{Lifecycle, termination_signal};
use crate::feature_store::offline::OfflineStore;
use crate::feature_store::online::{InProcessStore, OnlineStore};
use crate::feature_store::redis_store::RedisStore;
use crate::feature_store::retrieval::{FeatureServer, FeatureStoreMetrics};
use crate::ml::lifecycle::{Stores, bootstrap};
use crate::monitoring::{Metrics, Monitor};
use crate::service::Service;
use crate::service::batch::materialize_service;
use crate::service::supervise::supervise;
use crate::service::training::fail_abandoned_jobs;

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

/// Everything `serve` needs, built but not yet serving: tests bind it on port 0.
pub async fn build_server(settings: &Settings) -> anyhow::Result<Server> {
    let (keys, source) = JwtKeys::from_settings(settings)?;
    log_secret_source(&source);
    let listener = Server::listen(&settings.server.host, settings.server.port).await?;
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
    tracing::info!(
        version = %served.model.version(),
        feature_service = %served.model.feature_service(),
        online_store = features.online().kind(),
        "serving model"
    );
    fail_abandoned_jobs(&stores.jobs).await?;
    let service = Arc::new(Service::new(settings, stores, features, metrics, monitor));
    service.install(served);
    let supervisor = tokio::spawn(supervise(Arc::clone(&service)));
    let state = AppState::new(Shared {
        service,
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
    });
    let server = Server::new(
        listener,
        state,
        Duration::from_secs(settings.server.shutdown_drain_secs),
        Duration::from_secs(settings.server.shutdown_timeout_secs),
    );
    let writer = tokio::spawn(log_writer.run());
    Ok(server.with_task(supervisor).with_final_task(writer))
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
