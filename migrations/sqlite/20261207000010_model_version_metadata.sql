-- Model versions get an editable description and tags (who edited them last, and when), and
-- record who trained them. The artifact, metrics, data hash and creation time stay immutable.
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
