//! The feature store: passenger domain types (parse, don't validate), the one feature
//! transformation shared by training and serving, CSV ingestion, the offline store (SQLite)
//! and the online store. Nothing here knows about HTTP.

pub mod ingest;
pub mod offline;
pub mod online;
pub mod passenger;
pub mod pipeline;

pub use passenger::{FieldError, Passenger, PassengerRecord, RawPassenger, ValidationErrors};
pub use pipeline::{FEATURE_NAMES, FeatureVector, N_FEATURES, Preprocessing};
