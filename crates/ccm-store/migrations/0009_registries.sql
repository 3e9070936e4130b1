-- ccm manager schema, version 9: container registries an account stores credentials for. Same
-- dialect rules as 0001.
--
-- `host` is the registry's host (and port) as image references name it, lower-cased; an account
-- has at most one registry per host, so the stored credentials for an image are never
-- ambiguous. The password is sealed under the manager's master key with the registry's id and
-- account as associated data; it is never returned.
CREATE TABLE registries (
    registry_id TEXT PRIMARY KEY,
    acct_id TEXT NOT NULL REFERENCES accounts (acct_id) ON DELETE CASCADE,
    url TEXT NOT NULL,
    host TEXT NOT NULL,
    description TEXT,
    username TEXT,
    credentials_sealed BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (acct_id, host)
);
