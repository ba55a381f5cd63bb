-- Outcomes reported to one replica for predictions another replica issued.
-- The replica that took the report posts them here, by the issuing
-- replica's tag (the first part of the prediction id, as a number); every
-- replica takes its own tag's rows once a second, joins them to its
-- predictions and deletes them. Rows older than the outcome window are
-- pruned (their predictions have expired). Only tags of replicas with a
-- heartbeat in fleet_replicas are posted.

CREATE TABLE outcome_mailbox (
    id            BIGSERIAL PRIMARY KEY,
    replica_tag   BIGINT NOT NULL,
    prediction_id TEXT NOT NULL,
    -- 1: the positive class happened; 0: it did not.
    label         BIGINT NOT NULL,
    -- Seconds since the Unix epoch: when the outcome was observed (the
    -- report's time, or when it was posted).
    observed_at   BIGINT NOT NULL,
    posted_at_ms  BIGINT NOT NULL
);

CREATE INDEX outcome_mailbox_by_tag ON outcome_mailbox (replica_tag, id);
CREATE INDEX outcome_mailbox_by_posted ON outcome_mailbox (posted_at_ms);
