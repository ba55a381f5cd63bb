-- Shadow scoring: a version that scores a share of a model's default
-- traffic too, without answering, so that its online quality is known
-- before it serves. Kept with the traffic policy, so every replica shadows.

ALTER TABLE traffic_policies ADD COLUMN shadow_version BIGINT;
ALTER TABLE traffic_policies ADD COLUMN shadow_percent DOUBLE PRECISION NOT NULL DEFAULT 0
    CHECK (shadow_percent >= 0 AND shadow_percent <= 100);
ALTER TABLE traffic_policies ADD CONSTRAINT traffic_policies_shadow_version_fkey
    FOREIGN KEY (model_id, shadow_version) REFERENCES model_versions (model_id, version);
ALTER TABLE traffic_policies ADD CONSTRAINT traffic_policies_shadow_percent_needs_version
    CHECK (shadow_version IS NOT NULL OR shadow_percent = 0);
