//! Batch use cases on files and stores: scoring a CSV file, historical retrieval into a
//! file, and materializing a feature service's views into the online store.

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::Path;

use anyhow::{Context, bail};

use crate::core::config::Settings;
use crate::feature_store::ingest::PassengerCsv;
use crate::feature_store::materialize::{self, Mode, Report};
use crate::feature_store::online::ViewKey;
use crate::feature_store::registry::Kind;
use crate::feature_store::retrieval::{FeatureServer, FeatureStoreMetrics, ServiceViews};
use crate::ml::lifecycle::{Stores, bootstrap, load_served};
use crate::ml::{Model, PRODUCTION};

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
    let server = crate::app::feature_server(settings, stores.offline.clone(), metrics)?;
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
