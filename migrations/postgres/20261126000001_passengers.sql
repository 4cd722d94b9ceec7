-- PostgreSQL twin of sqlite/20261126000001_passengers.sql (same version, same meaning).
-- Integers are BIGINT and reals DOUBLE PRECISION, so that both backends give the service the
-- same 64-bit values; timestamps stay RFC 3339 text, as in SQLite.
CREATE TABLE passengers (
    passenger_id BIGINT PRIMARY KEY,
    survived     BIGINT CHECK (survived IN (0, 1)),
    pclass       BIGINT NOT NULL CHECK (pclass IN (1, 2, 3)),
    name         TEXT,
    sex          TEXT NOT NULL CHECK (sex IN ('male', 'female')),
    age          DOUBLE PRECISION,
    sibsp        BIGINT NOT NULL,
    parch        BIGINT NOT NULL,
    ticket       TEXT,
    fare         DOUBLE PRECISION,
    cabin        TEXT,
    embarked     TEXT CHECK (embarked IN ('C', 'Q', 'S')),
    source       TEXT NOT NULL,
    ingested_at  TEXT NOT NULL
);
