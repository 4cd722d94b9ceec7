//! The ML pipeline: evaluation metrics and k-fold splits, training with linfa-logistic, the
//! model artifact and its scoring, the model registry, and hot-swappable serving.
//! Nothing here knows about HTTP.

pub mod dataset;
pub mod evaluation;
pub mod experiment;
pub mod jobs;
pub mod lifecycle;
pub mod model;
pub mod registry;
pub mod serving;
pub mod train;

pub use model::{FeatureServiceRef, Model, ModelArtifact, ModelError, Prediction};
pub use registry::{ModelRegistry, PRODUCTION};
pub use serving::{ModelServer, Served};
pub use train::{TrainError, TrainParams};
