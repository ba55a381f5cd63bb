-- Live statistics of every replica, so that any replica can answer for the
-- fleet. Each replica writes, once a second, its figures per model version
-- and second (a mergeable snapshot, as JSON written by the server: requests,
-- errors by code, latency and score histograms) and its heartbeat; rows
-- older than the longest window are pruned. A replica whose heartbeat has
-- gone stale drops out of the fleet's figures.

CREATE TABLE fleet_live_stats (
    model    TEXT NOT NULL,
    version  INTEGER NOT NULL,
    -- The Unix second the figures cover.
    second   INTEGER NOT NULL,
    replica  TEXT NOT NULL,
    snapshot TEXT   NOT NULL,
    PRIMARY KEY (model, second, version, replica)
);

CREATE INDEX fleet_live_stats_by_second ON fleet_live_stats (second);

CREATE TABLE fleet_replicas (
    replica         TEXT PRIMARY KEY,
    published_at_ms INTEGER NOT NULL
);
