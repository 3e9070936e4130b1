-- ccm manager schema, version 3: image conversion jobs and per-account enclave signing keys.
-- Same dialect rules as 0001 (runs unchanged on SQLite and PostgreSQL).

-- One RSA-3072 (e = 3) enclave signing key per account, generated on first use. The private key
-- is sealed by the manager's secrets module (AES-256-GCM under the master key, bound to the
-- account id); `mrsigner` is the SHA-256 of its modulus, kept in clear for display and checks.
CREATE TABLE signing_keys (
    acct_id TEXT PRIMARY KEY REFERENCES accounts (acct_id) ON DELETE CASCADE,
    key_sealed BYTEA NOT NULL,
    mrsigner TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- A conversion job of an image (build). The build row exists from the request on (with empty
-- MRENCLAVE/MRSIGNER until the job succeeds); deleting the build deletes the job, which the
-- worker holding it notices at its next heartbeat and abandons.
--
-- status: QUEUED -> RUNNING -> SUCCEEDED | FAILED (RUNNING -> QUEUED again when a manager
-- releases it at shutdown or a crashed manager's job is recovered).
-- claim_token fences a run: every write of a worker names the token it claimed with, so a
-- worker whose job was recovered and handed to another manager can no longer change it.
-- credentials_sealed holds the registry credentials (sealed JSON) and is set to NULL as soon as
-- the job reaches SUCCEEDED or FAILED.
CREATE TABLE conversions (
    build_id TEXT PRIMARY KEY REFERENCES builds (build_id) ON DELETE CASCADE,
    acct_id TEXT NOT NULL REFERENCES accounts (acct_id) ON DELETE CASCADE,
    status TEXT NOT NULL,
    input_image TEXT NOT NULL,
    output_image TEXT NOT NULL,
    settings TEXT NOT NULL,
    debug BIGINT NOT NULL,
    credentials_sealed BYTEA,
    requester_user_id TEXT,
    requester_name TEXT NOT NULL,
    phase TEXT NOT NULL,
    progress BIGINT NOT NULL,
    bytes_done BIGINT NOT NULL,
    bytes_total BIGINT,
    log TEXT NOT NULL,
    error TEXT,
    attempts BIGINT NOT NULL,
    claim_token TEXT,
    claimed_by TEXT,
    heartbeat_at BIGINT,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT,
    updated_at BIGINT NOT NULL
);
CREATE INDEX conversions_queue ON conversions (status, created_at);
CREATE INDEX conversions_acct ON conversions (acct_id);
