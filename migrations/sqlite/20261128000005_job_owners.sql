-- Servers sharing a registry each run their own training jobs. A job names
-- the server (replica) running it and carries a heartbeat, so a server that
-- restarts fails only its own abandoned jobs, and a job whose server
-- vanished for good is failed once its heartbeat goes stale. A cancel asked
-- of another replica is recorded here; the running replica sees it when it
-- records the next epoch.

ALTER TABLE training_jobs ADD COLUMN replica TEXT NOT NULL DEFAULT '';
ALTER TABLE training_jobs ADD COLUMN heartbeat_at_ms INTEGER;
ALTER TABLE training_jobs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
