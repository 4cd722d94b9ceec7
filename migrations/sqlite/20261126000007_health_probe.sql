-- One row that GET /health/ready rewrites on every probe: proof that the database still takes
-- writes (a full disk or an unwritable file fails it while reads go on).
CREATE TABLE health_probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    probed_at INTEGER NOT NULL
);
