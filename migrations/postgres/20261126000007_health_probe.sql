-- PostgreSQL twin of sqlite/20261126000007_health_probe.sql.
CREATE TABLE health_probe (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    probed_at BIGINT NOT NULL
);
