//! Monitoring endpoints: drift of served passengers against the training data.

use axum::Json;
use axum::extract::State;

use super::state::AppState;
use crate::core::time::now_micros;
use crate::monitoring::drift::DriftReport;

/// `GET /monitoring/drift`: per-feature tests and PSI, the dataset drift share and flag.
pub async fn drift(State(state): State<AppState>) -> Json<DriftReport> {
    Json(state.drift.report(now_micros()))
}
