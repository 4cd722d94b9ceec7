//! Titanic survival prediction service.
//!
//! Dependencies point inward: [`api`] (HTTP) uses [`feature_store`], [`ml`] and
//! [`monitoring`], which use [`core`]. [`app`] wires them together for the CLI commands.

pub mod api;
pub mod app;
pub mod core;
pub mod feature_store;
pub mod ml;
pub mod monitoring;
