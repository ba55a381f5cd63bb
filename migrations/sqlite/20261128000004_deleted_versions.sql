-- Version numbers are never reused: the audit log, training jobs and every
-- caller that pinned a version refer to versions by number. This table keeps
-- the highest number ever issued per model name, and outlives deletes of the
-- version and of the whole model (a model deleted and trained again goes on
-- numbering after its old highest version).

CREATE TABLE version_numbers (
    model          TEXT    PRIMARY KEY,
    highest_issued INTEGER NOT NULL CHECK (highest_issued > 0)
);

-- Before this migration nothing could be deleted, so the highest version
-- stored is the highest ever issued.
INSERT INTO version_numbers (model, highest_issued)
SELECT m.name, MAX(v.version)
FROM models m JOIN model_versions v ON v.model_id = m.id
GROUP BY m.name;

CREATE TRIGGER version_numbers_never_go_back BEFORE UPDATE ON version_numbers
WHEN NEW.highest_issued < OLD.highest_issued
BEGIN
    SELECT RAISE(ABORT, 'version numbers are never reused');
END;

CREATE TRIGGER version_numbers_are_kept BEFORE DELETE ON version_numbers
BEGIN
    SELECT RAISE(ABORT, 'version numbers are never reused');
END;
