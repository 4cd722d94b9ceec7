//! The bare axum reference of `scripts/bench/compare.sh`: one `POST /predict` handler that
//! parses the same JSON body into the same request type (`RawPassenger`) and answers
//! `{"survived", "probability"}` with a fixed score. No middleware, no auth, no model, no
//! monitoring: the floor of what axum plus serde cost on this machine.
//!
//!   cargo run --release --example bare_predict -- 127.0.0.1:PORT

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark or example stops at its first failure

use axum::routing::post;
use axum::{Json, Router};
use serde::Serialize;
use titanic::feature_store::RawPassenger;

#[derive(Serialize)]
struct Answer {
    survived: bool,
    probability: f64,
}

async fn predict(Json(raw): Json<RawPassenger>) -> Json<Answer> {
    // A fixed, simple score that still reads the parsed body.
    let probability = if raw.sex.as_deref() == Some("female") {
        0.75
    } else {
        0.12
    };
    Json(Answer {
        survived: probability >= 0.5,
        probability,
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
