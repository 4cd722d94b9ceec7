-- PostgreSQL twin of sqlite/20261126000005_experiments.sql.
CREATE TABLE experiment (
    id          BIGINT PRIMARY KEY CHECK (id = 1),
    mode        TEXT NOT NULL CHECK (mode IN ('canary', 'shadow')),
    version     TEXT NOT NULL REFERENCES model_versions (version),
    share       DOUBLE PRECISION NOT NULL CHECK (share >= 0 AND share <= 1),
    updated_by  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
