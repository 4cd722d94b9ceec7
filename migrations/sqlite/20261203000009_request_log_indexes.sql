-- The request log's indexes, for its write rate (each index is one more B-tree insert per
-- logged prediction):
-- - prediction_log_time goes: retention deletes by id, up to the first row still inside the
--   horizon (ids grow with time), and nothing else reads by time alone.
-- - prediction_log_passenger covers only rows with a passenger id: a label for a passenger
--   is looked up by `passenger_id = $1`, which never matches a row without one, and most
--   predictions (raw features) have none.
DROP INDEX prediction_log_time;
DROP INDEX prediction_log_passenger;
CREATE INDEX prediction_log_passenger ON prediction_log (passenger_id, logged_at)
    WHERE passenger_id IS NOT NULL;
