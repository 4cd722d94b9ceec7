-- Feature registry: every version of every entity, feature view and feature service, as
-- immutable JSON specs. A changed definition is a new row with the next version.
CREATE TABLE registry (
    kind        TEXT NOT NULL CHECK (kind IN ('entity', 'feature_view', 'feature_service')),
    name        TEXT NOT NULL,
    version     INTEGER NOT NULL CHECK (version >= 1),
    spec        TEXT NOT NULL,
    spec_hash   TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    PRIMARY KEY (kind, name, version)
);

-- Offline store: append-only history of feature values per view and entity, with the time
-- the values were true (event_time) and the time they were written (write_time), both in
-- microseconds since the Unix epoch (UTC). Rows are never updated or deleted.
CREATE TABLE feature_rows (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    view          TEXT NOT NULL,
    view_version  INTEGER NOT NULL,
    entity_key    TEXT NOT NULL,
    event_time    INTEGER NOT NULL,
    write_time    INTEGER NOT NULL,
    feature_values TEXT NOT NULL,
    source        TEXT NOT NULL
);
CREATE INDEX feature_rows_point_in_time ON feature_rows (view, entity_key, event_time);
CREATE INDEX feature_rows_written ON feature_rows (view, write_time);

-- The passengers table of the first release becomes history rows: demographics and, where
-- known, the label, with the ingestion time as both event and write time.
INSERT INTO feature_rows (view, view_version, entity_key, event_time, write_time, feature_values, source)
SELECT 'passenger_demographics', 1, CAST(passenger_id AS TEXT),
       CAST(strftime('%s', ingested_at) AS INTEGER) * 1000000,
       CAST(strftime('%s', ingested_at) AS INTEGER) * 1000000,
       json_object('pclass', pclass, 'sex', sex, 'age', age, 'sibsp', sibsp, 'parch', parch,
                   'fare', fare, 'embarked', embarked, 'name', name, 'ticket', ticket, 'cabin', cabin),
       source
FROM passengers ORDER BY passenger_id;

INSERT INTO feature_rows (view, view_version, entity_key, event_time, write_time, feature_values, source)
SELECT 'passenger_survival', 1, CAST(passenger_id AS TEXT),
       CAST(strftime('%s', ingested_at) AS INTEGER) * 1000000,
       CAST(strftime('%s', ingested_at) AS INTEGER) * 1000000,
       json_object('survived', json(CASE survived WHEN 1 THEN 'true' ELSE 'false' END)),
       source
FROM passengers WHERE survived IS NOT NULL ORDER BY passenger_id;

DROP TABLE passengers;
