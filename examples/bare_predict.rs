//! The bare axum reference of `scripts/bench/compare.sh`: one `POST /predict` handler that
//! parses the same JSON body into the same request type (`RawPassenger`) and answers the same
//! response shape (`PredictionResponse`) with a fixed score. No middleware, no auth, no model,
//! no monitoring: the floor of what axum plus serde cost on this machine.
//!
//!   cargo run --release --example bare_predict -- 127.0.0.1:PORT

use std::sync::Arc;

use axum::routing::post;
use axum::{Json, Router};
use titanic::api::predict::{Contributions, PredictionResponse};
use titanic::feature_store::{N_FEATURES, RawPassenger};

async fn predict(Json(raw): Json<RawPassenger>) -> Json<PredictionResponse> {
    // A fixed, simple score that still reads the parsed body.
    let probability = if raw.sex.as_deref() == Some("female") {
        0.75
    } else {
        0.12
    };
    Json(PredictionResponse {
        passenger_id: None,
        survived: probability >= 0.5,
        probability,
        model_version: Arc::from("bare"),
        logit: 0.0,
        intercept: 0.0,
        contributions: Contributions([0.0; N_FEATURES]),
        features: None,
    })
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8090".to_owned());
    let app = Router::new().route("/predict", post(predict));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    axum::serve(listener, app).await
}
