-- ccm manager schema, version 13: list counts that do not scan. Same dialect rules as 0001.
--
-- A list page reports how many rows its scope holds (`total_count`) and how many match its filter
-- (`filtered_count`). Counting 100,000 rows of an account scans them all on every page, so the
-- counts are kept here instead: one row per list, scope (an account, a user, or '' for a whole
-- table) and facet ('' for the whole scope, `column=value` for one filter value), maintained by
-- triggers the store installs after the migrations (`counts.rs`; their text differs between the
-- two databases), in the same transaction as the rows they count.
CREATE TABLE list_counts (
    list TEXT NOT NULL,
    scope TEXT NOT NULL,
    facet TEXT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (list, scope, facet)
);

-- Filtered task and build pages read an index range of the filter value, not every row of the
-- account (a few pending tasks among 100,000 decided ones).
CREATE INDEX tasks_acct_status_created ON tasks (acct_id, status, created_at, task_id);
CREATE INDEX builds_acct_status_created ON builds (acct_id, status, created_at, build_id);

-- Counts that reach zero are deleted by the statement that emptied them; this finds them.
CREATE INDEX list_counts_empty ON list_counts (list) WHERE n <= 0;
