//! Materialization: copying the latest offline values of a feature view version into the
//! online store. Full runs cover every entity; incremental runs cover the entities with rows
//! written since the stored watermark. Either way the work is streamed in bounded chunks of
//! entities, and running it twice writes the same values again (idempotent).

use serde::Serialize;

use super::offline::OfflineError;
use super::online::{OnlineError, OnlineRow, ViewKey};
use super::registry::{FeatureViewSpec, Versioned};
use super::serving::{FeatureServer, project};
use crate::core::time::{Micros, now_micros};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, Default, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[schema(as = MaterializeMode)]
pub enum Mode {
    Full,
    #[default]
    Incremental,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = MaterializeReport)]
pub struct Report {
    pub view: String,
    pub version: i64,
    pub mode: Mode,
    /// Entities whose latest values were written to the online store.
    pub entities: u64,
    pub chunks: u64,
    /// Offline row id the view version is now materialized up to.
    pub watermark: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum MaterializeError {
    #[error(transparent)]
    Offline(#[from] OfflineError),
    #[error(transparent)]
    Online(#[from] OnlineError),
}

/// Copies the latest offline values (as of `now`) of these entities into the online store;
/// returns how many entities had values.
pub async fn refresh(
    server: &FeatureServer,
    view: &Versioned<FeatureViewSpec>,
    keys: &[&str],
    now: Micros,
) -> Result<usize, MaterializeError> {
    let features: Vec<String> = view.spec.features.iter().map(|f| f.name.clone()).collect();
    let rows: Vec<(String, OnlineRow)> = server
        .offline()
        .latest_as_of(&view.name, now, Some(keys))
        .await?
        .into_iter()
        .map(|r| {
            let row = OnlineRow {
                event_time: r.event_time,
                values: project(&r.values, &features),
            };
            (r.entity_key, row)
        })
        .collect();
    let n = rows.len();
    let key = ViewKey::new(&view.name, view.version);
    server.write(&key, view.spec.ttl_secs, rows).await?;
    Ok(n)
}

/// Materializes one view version, `chunk` entities at a time.
pub async fn materialize(
    server: &FeatureServer,
    view: &Versioned<FeatureViewSpec>,
    mode: Mode,
    chunk: usize,
) -> Result<Report, MaterializeError> {
    let offline = server.offline();
    let key = ViewKey::new(&view.name, view.version);
    let upto = offline.last_row_id(&view.name).await?;
    let after = match mode {
        Mode::Full => 0,
        Mode::Incremental => server.online().watermark(&key).await?.unwrap_or(0),
    };
    let mut report = Report {
        view: view.name.clone(),
        version: view.version,
        mode,
        entities: 0,
        chunks: 0,
        watermark: upto.max(after),
    };
    if mode == Mode::Incremental && upto <= after {
        return Ok(report);
    }
    let now = now_micros();
    let mut after_key = String::new();
    loop {
        let keys = offline
            .keys_written_between(&view.name, after, upto, &after_key, chunk.max(1) as i64)
            .await?;
        let Some(last) = keys.last().cloned() else {
            break;
        };
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        report.entities += refresh(server, view, &refs, now).await? as u64;
        report.chunks += 1;
        after_key = last;
    }
    server
        .online()
        .set_watermark(&key, report.watermark)
        .await?;
    Ok(report)
}
