-- Append-only history of alias moves: which version held which alias when, and who moved it.
CREATE TABLE model_alias_history (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    alias             TEXT NOT NULL,
    version           TEXT NOT NULL REFERENCES model_versions (version),
    previous_version  TEXT,
    action            TEXT NOT NULL CHECK (action IN ('promote', 'rollback')),
    actor             TEXT NOT NULL,
    reason            TEXT NOT NULL DEFAULT '',
    at                TEXT NOT NULL
);
CREATE INDEX model_alias_history_by_alias ON model_alias_history (alias, id);

INSERT INTO model_alias_history (alias, version, previous_version, action, actor, at)
SELECT alias, version, NULL, 'promote', 'migration', updated_at FROM model_aliases;

-- Training requested over HTTP runs as a background job; its state survives restarts
-- (a job still running when the process stopped is marked failed on the next start).
CREATE TABLE training_jobs (
    id           TEXT PRIMARY KEY,
    status       TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    requested_by TEXT NOT NULL,
    request      TEXT NOT NULL,
    version      TEXT,
    error        TEXT,
    created_at   TEXT NOT NULL,
    started_at   TEXT,
    finished_at  TEXT
);
