-- Aliases, traffic policies and the append-only audit log that records every
-- change of what serves traffic (and every new version). The audit log is
-- also the change feed servers poll to pick up changes without a restart.

CREATE TABLE aliases (
    model_id      INTEGER NOT NULL REFERENCES models (id),
    name          TEXT    NOT NULL,
    version       INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (model_id, name),
    FOREIGN KEY (model_id, version) REFERENCES model_versions (model_id, version)
);

CREATE TABLE traffic_policies (
    model_id       INTEGER PRIMARY KEY REFERENCES models (id),
    stable_version INTEGER NOT NULL,
    canary_version INTEGER,
    canary_percent REAL    NOT NULL DEFAULT 0 CHECK (canary_percent >= 0 AND canary_percent <= 100),
    -- Bumped on every change: the optimistic-concurrency token.
    revision       INTEGER NOT NULL,
    updated_at_ms  INTEGER NOT NULL,
    FOREIGN KEY (model_id, stable_version) REFERENCES model_versions (model_id, version),
    FOREIGN KEY (model_id, canary_version) REFERENCES model_versions (model_id, version),
    CHECK (canary_version IS NOT NULL OR canary_percent = 0)
);

CREATE TABLE audit_events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms   INTEGER NOT NULL,
    actor   TEXT    NOT NULL,
    model   TEXT    NOT NULL,
    -- version_registered, alias_set, alias_deleted, traffic_changed, …
    kind    TEXT    NOT NULL,
    before  TEXT    NOT NULL CHECK (json_valid(before)),
    after   TEXT    NOT NULL CHECK (json_valid(after)),
    reason  TEXT    NOT NULL
);

CREATE INDEX audit_events_by_model ON audit_events (model, at_ms);

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;

CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
