-- Training jobs carry a heartbeat (microseconds since the Unix epoch), refreshed every few
-- seconds by the process running them: a job whose heartbeat stopped is failed by any replica.
ALTER TABLE training_jobs ADD COLUMN heartbeat_at INTEGER;
