-- ccm manager schema, version 14: pages read by offset skip rows in an index. Same dialect rules
-- as 0001.
--
-- A page asked for by offset first pages the ids in the index of (scope, key, id) and then reads
-- whole rows for the page only. Apps are ordered by name; their (acct_id, name) index lacks the
-- id, so each skipped row cost a table lookup.
CREATE INDEX apps_acct_name_id ON apps (acct_id, name, app_id);
