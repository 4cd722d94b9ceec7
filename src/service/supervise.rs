//! The background supervisor of a serving process.

use std::sync::Arc;
use std::time::Duration;

use super::Service;
use super::batch::materialize_service;
use crate::ml::PRODUCTION;
use crate::ml::lifecycle::load_served;
use crate::ml::serving::ActiveExperiment;

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
pub async fn supervise(service: Arc<Service>) {
    let state = service;
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
            && let Err(e) = super::training::fail_abandoned_jobs(&state.stores.jobs).await
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

async fn follow_experiment(state: &Service, refused: &mut Option<String>) {
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

async fn follow_production_alias(state: &Service, refused: &mut Option<String>) {
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
