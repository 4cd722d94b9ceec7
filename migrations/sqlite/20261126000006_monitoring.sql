-- Monitoring: the request/response log (written asynchronously, in batches, sampled) and the
-- ground-truth labels sent back for predictions (written before the answer).
CREATE TABLE prediction_log (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id     TEXT NOT NULL,
    -- Position of the passenger in its request (0 for a single prediction).
    position       INTEGER NOT NULL,
    logged_at      INTEGER NOT NULL,  -- microseconds since the Unix epoch
    subject        TEXT,
    passenger_id   INTEGER,
    features       TEXT NOT NULL,     -- the passenger as scored (JSON)
    probability    REAL NOT NULL,
    survived       INTEGER NOT NULL,
    model_version  TEXT NOT NULL,
    latency_us     INTEGER NOT NULL
);
CREATE INDEX prediction_log_request ON prediction_log (request_id);
CREATE INDEX prediction_log_passenger ON prediction_log (passenger_id, logged_at);
CREATE INDEX prediction_log_time ON prediction_log (logged_at);

CREATE TABLE feedback (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    -- request_id/position of the prediction the label is for: one label per prediction.
    prediction     TEXT NOT NULL UNIQUE,
    request_id     TEXT NOT NULL,
    passenger_id   INTEGER,
    received_at    INTEGER NOT NULL,
    predicted_at   INTEGER NOT NULL,
    survived       INTEGER NOT NULL,
    probability    REAL NOT NULL,
    model_version  TEXT NOT NULL,
    subject        TEXT
);
CREATE INDEX feedback_time ON feedback (received_at);
