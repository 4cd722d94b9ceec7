//! The HTTP API suite of `tests/api/` again, each test on a fresh PostgreSQL database of its
//! own (created on the server of `TITANIC_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`, and dropped afterwards) instead of a SQLite
//! file: every route, store and error path on the second backend. `helpers::on_postgres` tells
//! the two suites apart. Without a server the tests run on SQLite after a notice, except in CI,
//! where they fail.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

#[path = "api/auth.rs"]
mod auth;
#[path = "api/dashboard.rs"]
mod dashboard;
#[path = "api/feast.rs"]
mod feast;
#[path = "api/features.rs"]
mod features;
#[path = "api/health.rs"]
mod health;
#[path = "api/helpers.rs"]
mod helpers;
#[path = "api/limits.rs"]
mod limits;
#[path = "api/models.rs"]
mod models;
#[path = "api/monitoring.rs"]
mod monitoring;
#[path = "api/monitoring_docs.rs"]
mod monitoring_docs;
#[path = "api/oip.rs"]
mod oip;
#[path = "api/online.rs"]
mod online;
#[path = "api/openapi.rs"]
mod openapi;
#[path = "api/predict.rs"]
mod predict;
mod support;
