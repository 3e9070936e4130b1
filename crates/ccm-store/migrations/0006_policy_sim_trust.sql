-- ccm manager schema, version 6: governed attestation policy and per-account simulated trust.
-- Same dialect rules as 0001.
--
-- An account trusts simulated SGX platforms only when a MANAGER says so (0/1, default 0): before
-- this version every account trusted them as soon as the manager had a simulated root.
ALTER TABLE accounts ADD COLUMN allow_simulated BIGINT NOT NULL DEFAULT 0
    CHECK (allow_simulated IN (0, 1));

-- A change of an app's attestation policy may wait for approval as a POLICY_CHANGE task: the
-- task holds the proposed settings (JSON, as `apps.advanced_settings`), the app the task's id.
ALTER TABLE tasks ADD COLUMN proposal TEXT;
ALTER TABLE apps ADD COLUMN pending_policy_task_id TEXT;

-- Certificates resting on simulated platforms come from an intermediate CA of their own under
-- the zone CA, made when first needed; its key is sealed like the zone CA's.
ALTER TABLE zones ADD COLUMN sim_ca_cert_pem TEXT;
ALTER TABLE zones ADD COLUMN sim_ca_key_sealed BYTEA;
