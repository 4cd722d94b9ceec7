-- Model registry: immutable versions with their artifact (JSON) and metrics (JSON),
-- and aliases (e.g. 'production') pointing at a version.
CREATE TABLE model_versions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    version     TEXT NOT NULL UNIQUE,
    artifact    TEXT NOT NULL,
    metrics     TEXT NOT NULL,
    data_hash   TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE model_aliases (
    alias       TEXT PRIMARY KEY,
    version     TEXT NOT NULL REFERENCES model_versions (version),
    updated_at  TEXT NOT NULL
);
