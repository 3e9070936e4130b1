-- ccm manager schema, version 8: invitations and password reset tokens. Same dialect rules as
-- 0001.
--
-- An invitation asks one e-mail address (signed up or not) to join an account with a role. Only
-- the SHA-256 of its single-use token is stored; accepting it (at sign-up with the token, or by
-- the invited user's accept call) makes the membership and deletes the row in one transaction.
-- Inviting the same address to the same account again replaces the pending invitation.
CREATE TABLE invitations (
    invitation_id TEXT PRIMARY KEY,
    acct_id TEXT NOT NULL REFERENCES accounts (acct_id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    email_lower TEXT NOT NULL,
    role TEXT NOT NULL,
    first_name TEXT,
    last_name TEXT,
    inviter_id TEXT REFERENCES users (user_id) ON DELETE SET NULL,
    inviter_name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    UNIQUE (acct_id, email_lower)
);
CREATE INDEX invitations_email ON invitations (email_lower);

-- A password reset token an administrator issued for a user: single use, expiring, stored as
-- SHA-256. A user has at most one: issuing a new one replaces the old.
CREATE TABLE password_resets (
    user_id TEXT PRIMARY KEY REFERENCES users (user_id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL UNIQUE,
    issued_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
