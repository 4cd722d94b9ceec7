-- PostgreSQL twin of sqlite/20261207000010_model_version_metadata.sql.
ALTER TABLE model_versions ADD COLUMN description TEXT NOT NULL DEFAULT '';
ALTER TABLE model_versions ADD COLUMN trained_by TEXT;
ALTER TABLE model_versions ADD COLUMN updated_by TEXT;
ALTER TABLE model_versions ADD COLUMN updated_at TEXT;

CREATE TABLE model_version_tags (
    version  TEXT NOT NULL REFERENCES model_versions (version),
    name     TEXT NOT NULL,
    value    TEXT NOT NULL,
    PRIMARY KEY (version, name)
);
