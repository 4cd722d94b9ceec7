//! The feature store: the registry of entities, feature views and services (versioned); the
//! offline store (append-only history in SQLite, point-in-time reads); the online store
//! (in-process or Redis) with freshness on read; materialization between them; passenger
//! domain types (parse, don't validate); and the one feature transformation shared by training
//! and serving. Nothing here knows about HTTP.

pub mod history;
pub mod ingest;
pub mod materialize;
#[cfg(test)]
mod model_check;
pub mod offline;
pub mod online;
pub mod passenger;
pub mod pipeline;
pub mod profile;
pub mod push;
pub mod redis_store;
pub mod registry;
pub mod retrieval;

pub use passenger::{FieldError, Passenger, PassengerRecord, RawPassenger, ValidationErrors};
pub use pipeline::{FEATURE_NAMES, FeatureVector, N_FEATURES, Preprocessing};
