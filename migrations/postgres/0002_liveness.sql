-- A running build's heartbeat, in the database's own clock (milliseconds since the
-- epoch): a build whose heartbeat is stale has stopped, whatever process it names.
ALTER TABLE builds ADD COLUMN heartbeat_at BIGINT;

-- Periodic tasks (sync, janitor) run once per interval across every replica: a replica
-- runs one only after claiming its interval here, in the database's clock.
CREATE TABLE periodic_runs (
    task        TEXT   PRIMARY KEY,
    last_run_at BIGINT NOT NULL,
    runner      TEXT   NOT NULL,
    runs        BIGINT NOT NULL
);
