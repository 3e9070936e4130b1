-- ccm manager schema, version 1. The same file runs on SQLite and PostgreSQL: only types and
-- syntax both understand (TEXT, BIGINT, BYTEA is a BLOB to SQLite), UUIDs as hyphenated TEXT,
-- timestamps as Unix seconds, booleans as 0/1 BIGINT, lists and objects as JSON TEXT.

CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE users (
    user_id TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    email_lower TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    first_name TEXT,
    last_name TEXT,
    is_sysadmin BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    last_logged_in_at BIGINT
);

CREATE TABLE accounts (
    acct_id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    approval_policy TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE memberships (
    acct_id TEXT NOT NULL REFERENCES accounts (acct_id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (acct_id, user_id)
);
CREATE INDEX memberships_user ON memberships (user_id);

CREATE TABLE sessions (
    session_id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    selected_acct_id TEXT REFERENCES accounts (acct_id) ON DELETE SET NULL,
    created_at BIGINT NOT NULL,
    token_expires_at BIGINT NOT NULL,
    session_expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE api_keys (
    api_key_id TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    acct_id TEXT NOT NULL REFERENCES accounts (acct_id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT
);
CREATE INDEX api_keys_user ON api_keys (user_id);

CREATE TABLE zones (
    zone_id TEXT PRIMARY KEY,
    acct_id TEXT NOT NULL UNIQUE REFERENCES accounts (acct_id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    description TEXT,
    ca_cert_pem TEXT NOT NULL,
    ca_key_sealed BYTEA NOT NULL,
    ca_key_type TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE join_tokens (
    token_id TEXT PRIMARY KEY,
    zone_id TEXT NOT NULL REFERENCES zones (zone_id) ON DELETE CASCADE,
    acct_id TEXT NOT NULL REFERENCES accounts (acct_id) ON DELETE CASCADE,
    secret_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    single_use BIGINT NOT NULL,
    use_count BIGINT NOT NULL DEFAULT 0,
    last_used_at BIGINT,
    revoked_at BIGINT,
    created_by TEXT,
    description TEXT
);
CREATE INDEX join_tokens_zone ON join_tokens (zone_id);

CREATE TABLE apps (
    app_id TEXT PRIMARY KEY,
    acct_id TEXT NOT NULL REFERENCES accounts (acct_id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    description TEXT,
    input_image_name TEXT NOT NULL,
    output_image_name TEXT NOT NULL,
    isvprodid BIGINT NOT NULL,
    isvsvn BIGINT NOT NULL,
    mem_size BIGINT NOT NULL,
    threads BIGINT NOT NULL,
    allowed_domains TEXT NOT NULL,
    whitelisted_domains TEXT NOT NULL,
    pending_task_id TEXT,
    certificate TEXT,
    advanced_settings TEXT NOT NULL,
    labels TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (acct_id, name)
);

CREATE TABLE builds (
    build_id TEXT PRIMARY KEY,
    acct_id TEXT NOT NULL REFERENCES accounts (acct_id) ON DELETE CASCADE,
    app_id TEXT NOT NULL REFERENCES apps (app_id) ON DELETE CASCADE,
    docker_image_name TEXT NOT NULL,
    docker_version TEXT NOT NULL,
    docker_image_sha TEXT,
    docker_image_size BIGINT,
    mrenclave TEXT NOT NULL,
    mrsigner TEXT NOT NULL,
    isvprodid BIGINT NOT NULL,
    isvsvn BIGINT NOT NULL,
    mem_size BIGINT NOT NULL,
    threads BIGINT NOT NULL,
    status TEXT NOT NULL,
    status_updated_at BIGINT NOT NULL,
    pending_task_id TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (app_id, docker_image_name, docker_version)
);
CREATE INDEX builds_acct ON builds (acct_id);
CREATE INDEX builds_mrenclave ON builds (acct_id, mrenclave);

CREATE TABLE tasks (
    task_id TEXT PRIMARY KEY,
    acct_id TEXT NOT NULL REFERENCES accounts (acct_id) ON DELETE CASCADE,
    entity_id TEXT NOT NULL,
    task_type TEXT NOT NULL,
    status TEXT NOT NULL,
    description TEXT NOT NULL,
    requester_user_id TEXT,
    requester_name TEXT NOT NULL,
    requester_type TEXT NOT NULL,
    domains_added TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    status_updated_at BIGINT NOT NULL
);
CREATE INDEX tasks_acct ON tasks (acct_id, created_at);
CREATE INDEX tasks_entity ON tasks (entity_id);

CREATE TABLE task_approvals (
    task_id TEXT NOT NULL REFERENCES tasks (task_id) ON DELETE CASCADE,
    user_id TEXT,
    user_name TEXT NOT NULL,
    status TEXT NOT NULL,
    denial_reason TEXT,
    decided_at BIGINT NOT NULL
);
CREATE INDEX task_approvals_task ON task_approvals (task_id);

-- The audit log is append-only and hash-chained; audit_head holds the chain's tip and is the
-- single row every writer updates first, which serialises appends across replicas.
CREATE TABLE audit_head (
    id BIGINT PRIMARY KEY,
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY,
    entry_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    actor_user_id TEXT,
    actor TEXT NOT NULL,
    acct_id TEXT,
    action TEXT NOT NULL,
    object_type TEXT NOT NULL,
    object_id TEXT,
    details TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_log_acct ON audit_log (acct_id, seq);
