-- Training runs as jobs: visible while they run, kept after they end.

CREATE TABLE training_jobs (
    id             TEXT   PRIMARY KEY,
    model          TEXT COLLATE "C" NOT NULL,
    actor          TEXT   NOT NULL,
    state          TEXT   NOT NULL CHECK (state IN ('running', 'succeeded', 'failed', 'cancelled')),
    started_at_ms  BIGINT NOT NULL,
    finished_at_ms BIGINT,
    rows           BIGINT NOT NULL,
    epochs_done    BIGINT NOT NULL DEFAULT 0,
    epochs         BIGINT NOT NULL,
    version        BIGINT,
    error          TEXT
);

CREATE INDEX training_jobs_by_start ON training_jobs (started_at_ms);
