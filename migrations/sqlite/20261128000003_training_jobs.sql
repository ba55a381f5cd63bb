-- Training runs as jobs: visible while they run, kept after they end.

CREATE TABLE training_jobs (
    id             TEXT    PRIMARY KEY,
    model          TEXT    NOT NULL,
    actor          TEXT    NOT NULL,
    state          TEXT    NOT NULL CHECK (state IN ('running', 'succeeded', 'failed', 'cancelled')),
    started_at_ms  INTEGER NOT NULL,
    finished_at_ms INTEGER,
    rows           INTEGER NOT NULL,
    epochs_done    INTEGER NOT NULL DEFAULT 0,
    epochs         INTEGER NOT NULL,
    version        INTEGER,
    error          TEXT
);

CREATE INDEX training_jobs_by_start ON training_jobs (started_at_ms);
