-- ccm manager schema, version 7: housekeeping. Same dialect rules as 0001.
--
-- REJECTED certificate requests keep their CSR and quote (about 15 KB a row) only for a
-- retention period (`rejected_retention_days`); the sweep that deletes them finds them by
-- status and age through this index.
CREATE INDEX certificates_rejected ON certificates (updated_at) WHERE status = 'REJECTED';

-- Expired sessions are purged on a schedule.
CREATE INDEX sessions_expiry ON sessions (session_expires_at);

-- API keys expire. Keys created before expiries were required get the default lifetime
-- (90 days) from their creation.
UPDATE api_keys SET expires_at = created_at + 7776000 WHERE expires_at IS NULL;
