-- ccm manager schema, version 4: leaner issuance writes. Same dialect rules as 0001.
--
-- Running application instances reported by heartbeats move out of `certificates` into a
-- table of their own.
--
-- A certificate row carries its chain, CSR and quote (~15 KB, in overflow pages). Setting its
-- `last_reported_at` the first time changed the row's size, so SQLite rewrote the whole row:
-- every heartbeat rewrote every newly issued certificate. A report is a small row of its own.
CREATE TABLE instance_reports (
    task_id TEXT PRIMARY KEY REFERENCES certificates (task_id) ON DELETE CASCADE,
    last_reported_at BIGINT NOT NULL
);

INSERT INTO instance_reports (task_id, last_reported_at)
    SELECT task_id, last_reported_at FROM certificates WHERE last_reported_at IS NOT NULL;

ALTER TABLE certificates DROP COLUMN last_reported_at;

-- Indexes that almost no certificate belongs to hold only those: an issuance commit no longer
-- writes their pages. The pending sweep reads the oldest PENDING requests first; the CRL reads
-- a zone's revoked certificates.
DROP INDEX certificates_pending;
CREATE INDEX certificates_pending ON certificates (created_at) WHERE status = 'PENDING';
DROP INDEX certificates_zone_revoked;
CREATE INDEX certificates_revoked ON certificates (zone_id, revoked_at) WHERE revoked_at IS NOT NULL;
