-- Version numbers are never reused: the audit log, training jobs and every
-- caller that pinned a version refer to versions by number. This table keeps
-- the highest number ever issued per model name, and outlives deletes of the
-- version and of the whole model.

CREATE TABLE version_numbers (
    model          TEXT COLLATE "C" PRIMARY KEY,
    highest_issued BIGINT NOT NULL CHECK (highest_issued > 0)
);

CREATE FUNCTION serval_version_numbers_never_go_back() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.highest_issued < OLD.highest_issued THEN
        RAISE EXCEPTION 'version numbers are never reused';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER version_numbers_never_go_back BEFORE UPDATE ON version_numbers
FOR EACH ROW EXECUTE FUNCTION serval_version_numbers_never_go_back();

CREATE TRIGGER version_numbers_are_kept BEFORE DELETE ON version_numbers
FOR EACH ROW EXECUTE FUNCTION serval_refuse('version numbers are never reused');
