-- Shadow scoring: a version that scores a share of a model's default
-- traffic too, without answering, so that its online quality is known
-- before it serves. Kept with the traffic policy, so every replica shadows.
-- (SQLite cannot add a table constraint to an existing table: the registry
-- checks that the version exists, and deleting it is refused while it
-- shadows.)

ALTER TABLE traffic_policies ADD COLUMN shadow_version INTEGER;
ALTER TABLE traffic_policies ADD COLUMN shadow_percent REAL NOT NULL DEFAULT 0
    CHECK (shadow_percent >= 0 AND shadow_percent <= 100);
