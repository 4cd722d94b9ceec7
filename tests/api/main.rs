//! Integration tests over real HTTP: each test starts the real router and server on port 0
//! with its own temporary SQLite file. `tests/api_postgres.rs` runs the same tests, each on a
//! PostgreSQL database of its own.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod helpers;
#[path = "../support/mod.rs"]
mod support;

mod api_docs;
mod auth;
mod dashboard;
mod feast;
mod features;
mod health;
mod limits;
mod models;
mod monitoring;
mod monitoring_docs;
mod oip;
mod online;
mod openapi;
mod predict;
