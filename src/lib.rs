//! Titanic survival prediction service.
//!
//! Dependencies point inward: [`api`] (HTTP) and [`cli`] call the use cases of [`service`],
//! which uses [`feature_store`], [`ml`] and [`monitoring`], which use [`core`]. [`app`] wires
//! the serving process together.

pub mod api;
pub mod app;
pub mod cli;
pub mod core;
pub mod feature_store;
pub mod ml;
pub mod monitoring;
pub mod service;
