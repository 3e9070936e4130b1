-- ccm manager schema, version 2: compute nodes, enrollment nonces, platform collateral,
-- application certificates. Same conventions as version 1 (TEXT UUIDs, BIGINT Unix seconds,
-- 0/1 booleans, JSON as TEXT, BYTEA for raw bytes).

-- Per-zone node enrollment policy (JSON: require_approval, accepted_tcb_statuses).
CREATE TABLE zone_node_policy (
    zone_id TEXT PRIMARY KEY REFERENCES zones (zone_id) ON DELETE CASCADE,
    policy TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Single-use enrollment nonces, bound to the join token that asked for them. Only the SHA-256
-- of the nonce is kept.
CREATE TABLE enroll_nonces (
    nonce_hash TEXT PRIMARY KEY,
    token_id TEXT NOT NULL REFERENCES join_tokens (token_id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX enroll_nonces_expiry ON enroll_nonces (expires_at);

CREATE TABLE nodes (
    node_id TEXT PRIMARY KEY,
    acct_id TEXT NOT NULL REFERENCES accounts (acct_id) ON DELETE CASCADE,
    zone_id TEXT NOT NULL REFERENCES zones (zone_id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    description TEXT,
    ipaddress TEXT,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    status_updated_at BIGINT NOT NULL,
    last_seen_at BIGINT,
    last_seen_version TEXT,
    attested_at BIGINT NOT NULL,
    sgx_info TEXT NOT NULL,
    simulated BIGINT NOT NULL,
    cert_pem TEXT NOT NULL,
    cert_serial TEXT NOT NULL,
    cert_not_after BIGINT NOT NULL,
    pending_task_id TEXT,
    token_id TEXT
);
CREATE INDEX nodes_acct ON nodes (acct_id, name);
CREATE INDEX nodes_status ON nodes (status, last_seen_at);

-- Every node certificate ever issued (for the mTLS check and the zone CRL).
CREATE TABLE node_certs (
    serial TEXT PRIMARY KEY,
    node_id TEXT NOT NULL REFERENCES nodes (node_id) ON DELETE CASCADE,
    zone_id TEXT NOT NULL,
    not_after BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX node_certs_node ON node_certs (node_id);
CREATE INDEX node_certs_zone ON node_certs (zone_id, revoked_at);

-- Collateral verified with an enrollment quote, per platform family and trust root.
CREATE TABLE platform_collateral (
    fmspc TEXT NOT NULL,
    root_fingerprint TEXT NOT NULL,
    collateral TEXT NOT NULL,
    tcb_evaluation_data_number BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (fmspc, root_fingerprint)
);

-- Application certificates and their requests. app_id and build_id are deliberately not
-- foreign keys: deleting an app or image revokes its certificates, which the CRL must keep.
CREATE TABLE certificates (
    certificate_id TEXT PRIMARY KEY,
    task_id TEXT NOT NULL UNIQUE,
    acct_id TEXT NOT NULL REFERENCES accounts (acct_id) ON DELETE CASCADE,
    zone_id TEXT NOT NULL,
    node_id TEXT NOT NULL,
    app_id TEXT,
    build_id TEXT,
    status TEXT NOT NULL,
    csr TEXT NOT NULL,
    quote BYTEA NOT NULL,
    domains TEXT NOT NULL,
    mrenclave TEXT,
    mrsigner TEXT,
    isvprodid BIGINT,
    isvsvn BIGINT,
    debug BIGINT NOT NULL,
    cpusvn TEXT,
    tcb_status TEXT,
    simulated BIGINT NOT NULL,
    cert_pem TEXT,
    serial TEXT,
    valid_from BIGINT,
    valid_until BIGINT,
    message TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    revoked_at BIGINT,
    last_reported_at BIGINT
);
CREATE INDEX certificates_acct ON certificates (acct_id, created_at);
CREATE INDEX certificates_node ON certificates (node_id, status);
CREATE INDEX certificates_app ON certificates (app_id, status);
CREATE INDEX certificates_build ON certificates (build_id, status);
CREATE INDEX certificates_zone_revoked ON certificates (zone_id, revoked_at);
CREATE INDEX certificates_pending ON certificates (status, acct_id);
