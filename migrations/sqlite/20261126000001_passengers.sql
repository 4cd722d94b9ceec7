-- Ingested passengers: the offline store's raw, validated records.
-- survived is NULL for passengers without a label (test.csv, or pushed for prediction only).
CREATE TABLE passengers (
    passenger_id INTEGER PRIMARY KEY,
    survived     INTEGER CHECK (survived IN (0, 1)),
    pclass       INTEGER NOT NULL CHECK (pclass IN (1, 2, 3)),
    name         TEXT,
    sex          TEXT NOT NULL CHECK (sex IN ('male', 'female')),
    age          REAL,
    sibsp        INTEGER NOT NULL,
    parch        INTEGER NOT NULL,
    ticket       TEXT,
    fare         REAL,
    cabin        TEXT,
    embarked     TEXT CHECK (embarked IN ('C', 'Q', 'S')),
    source       TEXT NOT NULL,
    ingested_at  TEXT NOT NULL
);
