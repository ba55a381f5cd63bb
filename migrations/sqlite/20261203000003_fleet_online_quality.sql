-- Online quality of every replica, so that any replica can answer for the
-- fleet. Each replica writes its current per-version summary (JSON written
-- by the server: the live and shadow quality summaries and the predictions
-- awaiting an outcome) when it changed, at most once a second. Rows of
-- replicas whose heartbeat in fleet_replicas was pruned, and of deleted
-- versions, are pruned.

CREATE TABLE fleet_online_quality (
    model           TEXT NOT NULL,
    version         INTEGER NOT NULL,
    replica         TEXT NOT NULL,
    summary         TEXT NOT NULL,
    published_at_ms INTEGER NOT NULL,
    PRIMARY KEY (model, version, replica)
);
