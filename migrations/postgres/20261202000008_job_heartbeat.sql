-- PostgreSQL twin of sqlite/20261202000008_job_heartbeat.sql.
ALTER TABLE training_jobs ADD COLUMN heartbeat_at BIGINT;
