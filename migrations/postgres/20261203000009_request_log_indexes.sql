-- PostgreSQL twin of sqlite/20261203000009_request_log_indexes.sql.
DROP INDEX prediction_log_passenger;
CREATE INDEX prediction_log_passenger ON prediction_log (passenger_id, logged_at)
    WHERE passenger_id IS NOT NULL;
