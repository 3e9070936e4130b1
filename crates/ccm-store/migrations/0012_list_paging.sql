-- ccm manager schema, version 12: list pages by keyset. Same dialect rules as 0001.
--
-- Lists newest first are read as `(created_at, id) < (cursor)` ranges within an account; an index
-- on (account, created_at, id) makes each page an index range scan whatever its position, and
-- counting an account's rows an index-only scan. These replace the narrower indexes they extend.
DROP INDEX builds_acct;
CREATE INDEX builds_acct_created ON builds (acct_id, created_at, build_id);
DROP INDEX tasks_acct;
CREATE INDEX tasks_acct_created ON tasks (acct_id, created_at, task_id);
DROP INDEX certificates_acct;
CREATE INDEX certificates_acct_created ON certificates (acct_id, created_at, certificate_id);
CREATE INDEX nodes_acct_name ON nodes (acct_id, name, node_id);
DROP INDEX nodes_acct;
CREATE INDEX api_keys_user_created ON api_keys (user_id, created_at, api_key_id);
DROP INDEX api_keys_user;
