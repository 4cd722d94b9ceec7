-- The running experiment, if any: a candidate version that takes a share of traffic
-- (canary) or scores a copy of every request without answering it (shadow). One row at most;
-- every replica follows it.
CREATE TABLE experiment (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    mode        TEXT NOT NULL CHECK (mode IN ('canary', 'shadow')),
    version     TEXT NOT NULL REFERENCES model_versions (version),
    share       REAL NOT NULL CHECK (share >= 0 AND share <= 1),
    updated_by  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
