//! Training jobs: recorded before they start, run one at a time in the background, and
//! installed in this process when they promote.

use std::sync::Arc;

use super::Service;
use crate::ml::jobs::{Job, TrainRequest};
use crate::ml::lifecycle::{self, TrainingData};

impl Service {
    /// Records a job for `request` and starts it; the job waits for any other to finish.
    pub async fn start_training(
        self: &Arc<Self>,
        request: TrainRequest,
        data: TrainingData,
        actor: String,
    ) -> Result<Job, sqlx::Error> {
        let job = self.stores.jobs.create(&request, &actor).await?;
        let service = Arc::clone(self);
        let id = job.id.clone();
        tokio::spawn(async move {
            service.run_job(id, data, request.promote, actor).await;
        });
        Ok(job)
    }

    async fn run_job(&self, id: String, data: TrainingData, promote: bool, actor: String) {
        let Ok(_permit) = self.training.acquire().await else {
            return;
        };
        let jobs = &self.stores.jobs;
        if let Err(e) = jobs.start(&id).await {
            tracing::error!(job = %id, error = %e, "cannot mark the job running");
        }
        let outcome =
            lifecycle::train_model_by(&self.settings, &self.stores, &data, &actor, promote).await;
        let recorded = match &outcome {
            Ok(trained) => {
                if trained.promoted {
                    match lifecycle::load_served(&self.stores, &trained.version).await {
                        Ok(served) => self.install(served),
                        Err(e) => {
                            tracing::error!(job = %id, error = %e, "trained model did not load")
                        }
                    }
                }
                jobs.finish(&id, Ok(&trained.version)).await
            }
            Err(e) => {
                tracing::warn!(job = %id, error = %e, "training job failed");
                jobs.finish(&id, Err(&e.to_string())).await
            }
        };
        if let Err(e) = recorded {
            tracing::error!(job = %id, error = %e, "cannot record the job's outcome");
        }
    }
}

/// Fails the training jobs whose process stopped (see [`crate::ml::jobs`]), saying so.
pub async fn fail_abandoned_jobs(jobs: &crate::ml::jobs::TrainingJobs) -> Result<(), sqlx::Error> {
    let failed = jobs.fail_abandoned(crate::core::time::now_micros()).await?;
    if failed > 0 {
        tracing::warn!(
            jobs = failed,
            "training jobs abandoned by a process that stopped marked failed"
        );
    }
    Ok(())
}
