-- Models and their immutable, numbered versions (PostgreSQL). Weights live
-- in their own table so that listing versions never reads the blobs. Names
-- sort bytewise (COLLATE "C"), as on SQLite.

CREATE TABLE models (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          TEXT COLLATE "C" NOT NULL UNIQUE,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE model_versions (
    model_id       BIGINT NOT NULL REFERENCES models (id),
    version        BIGINT NOT NULL CHECK (version > 0),
    created_at_ms  BIGINT NOT NULL,
    -- JSON documents written by the server: how the version was trained,
    -- the fitted preprocessing, validation metrics, dataset fingerprint.
    -- Kept as the exact text written (the casts only check it is JSON).
    recipe         TEXT   NOT NULL CHECK (recipe::jsonb IS NOT NULL),
    encoder        TEXT   NOT NULL CHECK (encoder::jsonb IS NOT NULL),
    metrics        TEXT   NOT NULL CHECK (metrics::jsonb IS NOT NULL),
    dataset        TEXT   NOT NULL CHECK (dataset::jsonb IS NOT NULL),
    weights_sha256 TEXT   NOT NULL,
    weights_bytes  BIGINT NOT NULL,
    PRIMARY KEY (model_id, version)
);

CREATE TABLE version_weights (
    model_id    BIGINT NOT NULL,
    version     BIGINT NOT NULL,
    safetensors BYTEA  NOT NULL,
    PRIMARY KEY (model_id, version),
    FOREIGN KEY (model_id, version) REFERENCES model_versions (model_id, version)
);

-- Versions are immutable once written.
CREATE FUNCTION serval_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%', TG_ARGV[0];
END;
$$;

CREATE TRIGGER model_versions_immutable BEFORE UPDATE ON model_versions
FOR EACH ROW EXECUTE FUNCTION serval_refuse('model versions are immutable');

CREATE TRIGGER version_weights_immutable BEFORE UPDATE ON version_weights
FOR EACH ROW EXECUTE FUNCTION serval_refuse('model weights are immutable');
