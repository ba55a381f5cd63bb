-- Models and their immutable, numbered versions. Weights live in their own
-- table so that listing versions never reads the blobs.

CREATE TABLE models (
    id            INTEGER PRIMARY KEY,
    name          TEXT    NOT NULL UNIQUE,
    created_at_ms INTEGER NOT NULL
);

CREATE TABLE model_versions (
    model_id       INTEGER NOT NULL REFERENCES models (id),
    version        INTEGER NOT NULL CHECK (version > 0),
    created_at_ms  INTEGER NOT NULL,
    -- JSON documents written by the server: how the version was trained,
    -- the fitted preprocessing, validation metrics, dataset fingerprint.
    recipe         TEXT    NOT NULL CHECK (json_valid(recipe)),
    encoder        TEXT    NOT NULL CHECK (json_valid(encoder)),
    metrics        TEXT    NOT NULL CHECK (json_valid(metrics)),
    dataset        TEXT    NOT NULL CHECK (json_valid(dataset)),
    weights_sha256 TEXT    NOT NULL,
    weights_bytes  INTEGER NOT NULL,
    PRIMARY KEY (model_id, version)
);

CREATE TABLE version_weights (
    model_id    INTEGER NOT NULL,
    version     INTEGER NOT NULL,
    safetensors BLOB    NOT NULL,
    PRIMARY KEY (model_id, version),
    FOREIGN KEY (model_id, version) REFERENCES model_versions (model_id, version)
);

-- Versions are immutable once written.
CREATE TRIGGER model_versions_immutable BEFORE UPDATE ON model_versions
BEGIN
    SELECT RAISE(ABORT, 'model versions are immutable');
END;

CREATE TRIGGER version_weights_immutable BEFORE UPDATE ON version_weights
BEGIN
    SELECT RAISE(ABORT, 'model weights are immutable');
END;
