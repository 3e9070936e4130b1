-- ccm manager schema, version 11: what the reference API's clients read. Same dialect rules as
-- 0001.
--
-- Zones: how often the zone's node agents check in (`node_refresh_interval`, seconds) and when
-- they renew their node certificate (`node_renewal_threshold`, percent of the validity left).
-- NULL follows the manager's configured default (node_heartbeat_interval_secs,
-- node_renewal_threshold_percent); a zone updated through the API stores its own value.
ALTER TABLE zones ADD COLUMN node_refresh_interval BIGINT;
ALTER TABLE zones ADD COLUMN node_renewal_threshold BIGINT;

-- Tasks a compute node asked for name their requester with the reference's `SYSTEM` (the
-- reference knows USER, APP and SYSTEM requesters); `requester_name` keeps the node's name.
UPDATE tasks SET requester_type = 'SYSTEM' WHERE requester_type = 'NODE';
