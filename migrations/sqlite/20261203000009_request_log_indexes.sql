-- The request log's passenger index covers only rows with a passenger id: a label for a
-- passenger is looked up by `passenger_id = $1`, which never matches a row without one, and
-- most predictions (raw features) have none, so they no longer cost an index insert each.
DROP INDEX prediction_log_passenger;
CREATE INDEX prediction_log_passenger ON prediction_log (passenger_id, logged_at)
    WHERE passenger_id IS NOT NULL;
