-- Live statistics of every replica, so that any replica can answer for the
-- fleet. Each replica writes, once a second, its figures per model version
-- and second (a mergeable snapshot, as JSON written by the server: requests,
-- errors by code, latency and score histograms) and its heartbeat; rows
-- older than the longest window are pruned. A replica whose heartbeat has
-- gone stale drops out of the fleet's figures.

CREATE TABLE fleet_live_stats (
    model    TEXT COLLATE "C" NOT NULL,
    version  BIGINT NOT NULL,
    -- The Unix second the figures cover.
    second   BIGINT NOT NULL,
    replica  TEXT COLLATE "C" NOT NULL,
    snapshot TEXT   NOT NULL,
    PRIMARY KEY (model, second, version, replica)
);

CREATE INDEX fleet_live_stats_by_second ON fleet_live_stats (second);

CREATE TABLE fleet_replicas (
    replica         TEXT COLLATE "C" PRIMARY KEY,
    published_at_ms BIGINT NOT NULL
);
