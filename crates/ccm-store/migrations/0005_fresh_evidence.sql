-- ccm manager schema, version 5: fresh evidence for application certificates. Same dialect rules
-- as 0001.
--
-- A certificate request records the issuance nonce its quote carried (REPORTDATA[32..64], hex)
-- once the nonce was found valid for the requesting node; the unique index makes each nonce
-- usable once, also when two requests race (the loser's insert fails and it is refused as a
-- replay). Requests without a valid nonce record NULL. `spki_sha256` is SHA-256 (hex) of the
-- certified key's SubjectPublicKeyInfo, so that a revocation can deny the key.
ALTER TABLE certificates ADD COLUMN nonce TEXT;
ALTER TABLE certificates ADD COLUMN spki_sha256 TEXT;
CREATE UNIQUE INDEX certificates_nonce ON certificates (nonce) WHERE nonce IS NOT NULL;

-- Keys of revoked certificates, per account: a request certifying one of them is refused
-- (key_revoked), so a quote copied out of a revoked certificate cannot buy a new one.
CREATE TABLE revoked_keys (
    acct_id TEXT NOT NULL REFERENCES accounts (acct_id) ON DELETE CASCADE,
    spki_sha256 TEXT NOT NULL,
    certificate_id TEXT NOT NULL,
    revoked_at BIGINT NOT NULL,
    PRIMARY KEY (acct_id, spki_sha256)
);
