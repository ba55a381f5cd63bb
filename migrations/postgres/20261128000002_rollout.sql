-- Aliases, traffic policies and the append-only audit log that records every
-- change of what serves traffic (and every new version). The audit log is
-- also the change feed: each new event is announced on the
-- `serval_changes` channel (LISTEN/NOTIFY), and servers re-read it on a
-- timer as a safety net.

CREATE TABLE aliases (
    model_id      BIGINT NOT NULL REFERENCES models (id),
    name          TEXT COLLATE "C" NOT NULL,
    version       BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (model_id, name),
    FOREIGN KEY (model_id, version) REFERENCES model_versions (model_id, version)
);

CREATE TABLE traffic_policies (
    model_id       BIGINT PRIMARY KEY REFERENCES models (id),
    stable_version BIGINT NOT NULL,
    canary_version BIGINT,
    canary_percent DOUBLE PRECISION NOT NULL DEFAULT 0
        CHECK (canary_percent >= 0 AND canary_percent <= 100),
    -- Bumped on every change: the optimistic-concurrency token.
    revision       BIGINT NOT NULL,
    updated_at_ms  BIGINT NOT NULL,
    FOREIGN KEY (model_id, stable_version) REFERENCES model_versions (model_id, version),
    FOREIGN KEY (model_id, canary_version) REFERENCES model_versions (model_id, version),
    CHECK (canary_version IS NOT NULL OR canary_percent = 0)
);

CREATE TABLE audit_events (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_ms   BIGINT NOT NULL,
    actor   TEXT   NOT NULL,
    model   TEXT COLLATE "C" NOT NULL,
    -- version_registered, alias_set, alias_deleted, traffic_changed, …
    kind    TEXT   NOT NULL,
    before  TEXT   NOT NULL CHECK (before::jsonb IS NOT NULL),
    after   TEXT   NOT NULL CHECK (after::jsonb IS NOT NULL),
    reason  TEXT   NOT NULL
);

CREATE INDEX audit_events_by_model ON audit_events (model, at_ms);

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
FOR EACH ROW EXECUTE FUNCTION serval_refuse('the audit log is append-only');

CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
FOR EACH ROW EXECUTE FUNCTION serval_refuse('the audit log is append-only');

-- Every server listening on `serval_changes` hears of a new event when its
-- transaction commits (NOTIFY is transactional), so a change made through
-- one replica reaches the others at once.
CREATE FUNCTION serval_announce_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('serval_changes', NEW.id::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER audit_events_announce AFTER INSERT ON audit_events
FOR EACH ROW EXECUTE FUNCTION serval_announce_change();
