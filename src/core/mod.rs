//! Cross-cutting pieces every other module builds on: configuration, telemetry, the database
//! connection, security primitives and shutdown. Nothing here knows about HTTP.

pub mod build;
pub mod config;
pub mod db;
pub mod dependency;
pub mod json;
pub mod os_user;
pub mod rate_limit;
pub mod security;
pub mod shutdown;
pub mod slots;
pub mod stats;
pub mod telemetry;
pub mod time;
