-- A running build's heartbeat, in the database's own clock (milliseconds since the
-- epoch): a build whose heartbeat is stale has stopped, whatever process it names.
ALTER TABLE builds ADD COLUMN heartbeat_at BIGINT;
