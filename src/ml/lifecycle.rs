//! The model lifecycle over the stores: ingesting data, training and registering versions,
//! loading a version with its feature service (refusing what cannot serve), promoting and
//! rolling back aliases, and bootstrapping an empty store. Used by the CLI, the server's
//! start-up, and the HTTP model endpoints alike.

use std::path::{Path, PathBuf};

use crate::core::db::Pool;

use super::dataset::TrainingSet;
use super::experiment::ExperimentStore;
use super::jobs::TrainingJobs;
use super::model::{DataSource, FeatureServiceRef, Model, ModelArtifact, ModelError};
use super::registry::{
    AliasAction, AliasChange, AliasMove, ModelRegistry, PRODUCTION, RegistryError,
};
use super::serving::Served;
use super::train::{self, TrainError, TrainParams};
use crate::core::config::Settings;
use crate::core::db::{self, DbError};
use crate::core::time::{Micros, micros_to_rfc3339, now_micros, parse_rfc3339};
use crate::feature_store::PassengerRecord;
use crate::feature_store::history::{self, resolve_service};
use crate::feature_store::ingest::{self, CsvError};
use crate::feature_store::offline::{OfflineError, OfflineStore};
use crate::feature_store::registry::{
    DEMOGRAPHICS, FeatureRegistry, FeatureServiceSpec, Kind, RegistryError as FeatureRegistryError,
    SURVIVAL_SERVICE,
};
use crate::feature_store::retrieval::ServiceViews;

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Models(#[from] RegistryError),
    #[error(transparent)]
    Features(#[from] FeatureRegistryError),
    #[error(transparent)]
    Offline(#[from] OfflineError),
    #[error("reading {path}: {cause}")]
    Csv { path: String, cause: CsvError },
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error("model version {version} cannot be served: {cause}")]
    Unservable { version: String, cause: ModelError },
    #[error(
        "no labelled passengers to train on; pass --data PATH (a CSV with a Survived column) or a later --as-of"
    )]
    NoData,
    #[error("background task failed: {0}")]
    Task(String),
    #[error("as-of time {0} is in the future")]
    AsOfInFuture(String),
    #[error(
        "model version {0} does not record where its training set came from (trained before it was recorded)"
    )]
    NotReproducible(String),
    #[error(
        "{path} has changed since model version {version} was trained on it: {recorded} then, {now} now"
    )]
    SourceChanged {
        version: String,
        path: String,
        recorded: String,
        now: String,
    },
    #[error("reading {path}: {cause}")]
    Read { path: String, cause: std::io::Error },
}

/// The stores every command works on.
#[derive(Debug, Clone)]
pub struct Stores {
    pub pool: Pool,
    /// `data.max_csv_record_bytes`, for the CSV files read into the stores.
    pub max_csv_record_bytes: usize,
    pub offline: OfflineStore,
    pub models: ModelRegistry,
    pub features: FeatureRegistry,
    pub jobs: TrainingJobs,
    pub experiments: ExperimentStore,
}

impl Stores {
    /// Opens the database, applies migrations and registers the built-in feature definitions.
    pub async fn open(settings: &Settings) -> Result<Self, LifecycleError> {
        let pool = db::connect(&settings.database).await?;
        let features = FeatureRegistry::new(pool.clone());
        features.ensure_builtins().await?;
        Ok(Self {
            offline: OfflineStore::new(pool.clone()),
            models: ModelRegistry::new(pool.clone()),
            jobs: TrainingJobs::new(pool.clone()),
            experiments: ExperimentStore::new(pool.clone()),
            features,
            pool,
            max_csv_record_bytes: settings.data.max_csv_record_bytes,
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

async fn read_csv(
    path: PathBuf,
    max_record_bytes: usize,
) -> Result<Vec<PassengerRecord>, LifecycleError> {
    let shown = path.display().to_string();
    tokio::task::spawn_blocking(move || ingest::read_all(&path, max_record_bytes))
        .await
        .map_err(|e| LifecycleError::Task(e.to_string()))?
        .map_err(|cause| LifecycleError::Csv { path: shown, cause })
}

/// Reads a Kaggle-format CSV and appends it to the offline history (event time: now).
pub async fn ingest_file(
    stores: &Stores,
    path: &Path,
) -> Result<Vec<PassengerRecord>, LifecycleError> {
    let records = read_csv(path.to_path_buf(), stores.max_csv_record_bytes).await?;
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
pub async fn ingest_bundled(settings: &Settings, stores: &Stores) -> Result<(), LifecycleError> {
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
async fn current_service(stores: &Stores) -> Result<ServiceViews, LifecycleError> {
    let latest = stores
        .features
        .latest::<FeatureServiceSpec>(Kind::Service, SURVIVAL_SERVICE)
        .await?;
    Ok(resolve_service(&stores.features, &latest.name, latest.version).await?)
}

/// What to train on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrainingData {
    /// Exactly the labelled rows of this CSV (which is also appended to the history).
    File(PathBuf),
    /// Every passenger labelled in the history as of this time, with the features it had then.
    AsOf(Micros),
    /// The same as of now (after filling an empty store with the bundled CSVs).
    Latest,
}

/// Trains as `trained_by` (recorded in the artifact and the registry), registers the version,
/// and with `promote` promotes it to `production` (the history names `trained_by` as the
/// actor). Reading from the history, an empty store is first filled with the bundled CSVs.
pub async fn train_model_by(
    settings: &Settings,
    stores: &Stores,
    data: &TrainingData,
    trained_by: &str,
    promote: bool,
) -> Result<Trained, LifecycleError> {
    if let TrainingData::AsOf(t) = data
        && *t > now_micros()
    {
        return Err(LifecycleError::AsOfInFuture(
            crate::core::time::micros_to_rfc3339(*t),
        ));
    }
    let service = current_service(stores).await?;
    let (records, as_of, skipped, source) = match data {
        TrainingData::File(path) => {
            let source = DataSource::File {
                path: std::fs::canonicalize(path)
                    .unwrap_or_else(|_| path.clone())
                    .display()
                    .to_string(),
                file_hash: file_hash(path).await?,
            };
            (ingest_file(stores, path).await?, now_micros(), 0, source)
        }
        TrainingData::AsOf(_) | TrainingData::Latest => {
            ingest_bundled(settings, stores).await?;
            let as_of = match data {
                TrainingData::AsOf(t) => *t,
                _ => now_micros(),
            };
            // What is known now: a rebuild reading as known at this time gets the same set.
            let created_as_of = now_micros();
            let rows =
                history::training_rows(&stores.offline, &service, as_of, Some(created_as_of))
                    .await?;
            let skipped = rows.without_features + rows.unusable;
            let source = DataSource::FeatureStore {
                feature_service: FeatureServiceRef {
                    name: service.service.name.clone(),
                    version: service.service.version,
                },
                views: service
                    .views
                    .iter()
                    .map(|v| FeatureServiceRef {
                        name: v.name.clone(),
                        version: v.version,
                    })
                    .collect(),
                as_of: micros_to_rfc3339(as_of),
                created_as_of: micros_to_rfc3339(created_as_of),
            };
            (rows.records, as_of, skipped, source)
        }
    };
    let set = TrainingSet::from_records(&records);
    if set.is_empty() {
        return Err(LifecycleError::NoData);
    }
    let params = TrainParams::from(&settings.training);
    let service_ref = FeatureServiceRef {
        name: service.service.name.clone(),
        version: service.service.version,
    };
    tracing::info!(
        rows = set.len(),
        folds = params.folds,
        alphas = params.alpha_grid.len(),
        "training started"
    );
    let started = std::time::Instant::now();
    let by = trained_by.to_owned();
    let mut artifact =
        tokio::task::spawn_blocking(move || train::train(&set, &params, service_ref, as_of, &by))
            .await
            .map_err(|e| LifecycleError::Task(e.to_string()))??;
    artifact.training.source = Some(source);
    // Refuse to register anything that could not serve.
    Model::from_artifact("candidate", artifact.clone())
        .and_then(|model| Served::new(model, service))
        .map_err(|cause| LifecycleError::Unservable {
            version: "candidate".to_owned(),
            cause,
        })?;
    let version = stores.models.register(&artifact).await?;
    if promote {
        let change = AliasChange {
            action: AliasAction::Promote,
            actor: trained_by,
            reason: "promoted when training finished",
        };
        stores
            .models
            .set_alias(PRODUCTION, &version, &change)
            .await?;
    }
    tracing::info!(
        version = %version,
        trained_by,
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

/// `sha256:<hex>` of a file's bytes.
async fn file_hash(path: &Path) -> Result<String, LifecycleError> {
    use sha2::{Digest, Sha256};
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|cause| LifecycleError::Read {
            path: path.display().to_string(),
            cause,
        })?;
    Ok(format!("sha256:{:x}", Sha256::digest(&bytes)))
}

/// What rebuilding a version's training set and training again gave.
#[derive(Debug, Clone)]
pub struct Reproduction {
    pub version: String,
    pub source: DataSource,
    pub rows: usize,
    /// The data hash the version recorded, and the rebuilt set's.
    pub recorded_hash: String,
    pub data_hash: String,
    /// The largest difference between a recorded and a retrained coefficient (intercept
    /// included).
    pub max_difference: f64,
}

impl Reproduction {
    /// The same training set, and the same coefficients to the last bit.
    pub fn identical(&self) -> bool {
        self.recorded_hash == self.data_hash && self.max_difference == 0.0
    }
}

/// `titanic train --reproduce`: rebuilds a version's training set from what it recorded (the
/// same labels and features as known when it was trained, or the same file, checked by its
/// hash), trains again with its parameters and seed, and compares.
pub async fn reproduce(stores: &Stores, version: &str) -> Result<Reproduction, LifecycleError> {
    let artifact = stores.models.artifact(version).await?;
    let source = artifact
        .training
        .source
        .clone()
        .ok_or_else(|| LifecycleError::NotReproducible(version.to_owned()))?;
    let time = |text: &str| {
        parse_rfc3339(text).map_err(|_| LifecycleError::NotReproducible(version.to_owned()))
    };
    let (records, as_of) = match &source {
        DataSource::File {
            path,
            file_hash: recorded,
        } => {
            let now = file_hash(Path::new(path)).await?;
            if now != *recorded {
                return Err(LifecycleError::SourceChanged {
                    version: version.to_owned(),
                    path: path.clone(),
                    recorded: recorded.clone(),
                    now,
                });
            }
            let records = read_csv(PathBuf::from(path), stores.max_csv_record_bytes).await?;
            (records, time(&artifact.training.as_of)?)
        }
        DataSource::FeatureStore {
            feature_service,
            as_of,
            created_as_of,
            ..
        } => {
            let service = resolve_service(
                &stores.features,
                &feature_service.name,
                feature_service.version,
            )
            .await?;
            let (as_of, created_as_of) = (time(as_of)?, time(created_as_of)?);
            let rows =
                history::training_rows(&stores.offline, &service, as_of, Some(created_as_of))
                    .await?;
            (rows.records, as_of)
        }
    };
    let set = TrainingSet::from_records(&records);
    let data_hash = set.data_hash.clone();
    let params = artifact.params.clone();
    let service_ref = artifact.feature_service.clone();
    let by = artifact.training.trained_by.clone();
    let again =
        tokio::task::spawn_blocking(move || train::train(&set, &params, service_ref, as_of, &by))
            .await
            .map_err(|e| LifecycleError::Task(e.to_string()))??;
    let max_difference = artifact
        .coefficients
        .iter()
        .chain([&artifact.intercept])
        .zip(again.coefficients.iter().chain([&again.intercept]))
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    Ok(Reproduction {
        version: version.to_owned(),
        source,
        rows: again.training.rows,
        recorded_hash: artifact.training.data_hash,
        data_hash,
        max_difference,
    })
}

/// Loads a model version with the feature service it was trained on, refusing it when it is
/// broken or this service cannot produce its features.
pub async fn load_served(stores: &Stores, version: &str) -> Result<Served, LifecycleError> {
    let model = stores.models.load(version).await?;
    let wanted = model.feature_service().clone();
    let features = resolve_service(&stores.features, &wanted.name, wanted.version)
        .await
        .map_err(|e| LifecycleError::Unservable {
            version: version.to_owned(),
            cause: ModelError::FeatureService {
                service: wanted.to_string(),
                reason: e.to_string(),
            },
        })?;
    Served::new(model, features).map_err(|cause| LifecycleError::Unservable {
        version: version.to_owned(),
        cause,
    })
}

/// Points `alias` at `version` after checking that the version loads and can be served; a
/// broken version is refused and the alias stays where it was. Returns the move and, for
/// the caller to swap in, the loaded model.
pub async fn promote(
    stores: &Stores,
    alias: &str,
    version: &str,
    change: &AliasChange<'_>,
) -> Result<(AliasMove, Served), LifecycleError> {
    let served = load_served(stores, version).await?;
    let moved = stores.models.set_alias(alias, version, change).await?;
    Ok((moved, served))
}

/// Moves `alias` back to the version it held before the current one.
pub async fn rollback(
    stores: &Stores,
    alias: &str,
    actor: &str,
    reason: &str,
) -> Result<(AliasMove, Served), LifecycleError> {
    let target = stores.models.rollback_target(alias).await?;
    let change = AliasChange {
        action: AliasAction::Rollback,
        actor,
        reason,
    };
    promote(stores, alias, &target, &change).await
}

/// On an empty store: ingest the bundled CSVs, then train and promote a first model.
/// With `replace_outdated_model`, a production model an older build made is replaced by a
/// new one trained on the latest data. Returns the production model with its feature service.
pub async fn bootstrap(
    settings: &Settings,
    stores: &Stores,
    replace_outdated_model: bool,
) -> Result<Served, LifecycleError> {
    // Replicas starting together on one empty database bootstrap one at a time.
    let work = bootstrap_alone(settings, stores, replace_outdated_model);
    db::exclusively(&stores.pool, db::BOOTSTRAP_LOCK, work)
        .await
        .map_err(|e| LifecycleError::Db(DbError::Connect(e)))?
}

async fn bootstrap_alone(
    settings: &Settings,
    stores: &Stores,
    replace_outdated_model: bool,
) -> Result<Served, LifecycleError> {
    ingest_bundled(settings, stores).await?;
    let version = match stores.models.resolve(PRODUCTION).await? {
        Some(v) => v,
        None => {
            tracing::info!("no production model yet: training one");
            train_model_by(settings, stores, &TrainingData::Latest, "bootstrap", true)
                .await?
                .version
        }
    };
    match load_served(stores, &version).await {
        Err(e) if replace_outdated_model && e.is_outdated() => {
            replace_outdated(settings, stores, &version, &e).await
        }
        loaded => loaded,
    }
}

impl LifecycleError {
    /// True when a model version failed to load only because an older build made it.
    pub fn is_outdated(&self) -> bool {
        match self {
            LifecycleError::Unservable { cause, .. }
            | LifecycleError::Models(RegistryError::Invalid { cause, .. }) => cause.is_outdated(),
            _ => false,
        }
    }
}

/// Trains a model with this build's pipeline on the latest data and promotes it in place of
/// `outdated`, saying why in the alias history.
async fn replace_outdated(
    settings: &Settings,
    stores: &Stores,
    outdated: &str,
    why: &LifecycleError,
) -> Result<Served, LifecycleError> {
    tracing::warn!(
        version = outdated,
        error = %why,
        "production model was built by an older feature pipeline: training a replacement"
    );
    let trained =
        train_model_by(settings, stores, &TrainingData::Latest, "bootstrap", false).await?;
    let reason =
        format!("replaces {outdated}, built by an older feature pipeline than this release's");
    let change = AliasChange {
        action: AliasAction::Promote,
        actor: "bootstrap",
        reason: &reason,
    };
    let (_, served) = promote(stores, PRODUCTION, &trained.version, &change).await?;
    Ok(served)
}
