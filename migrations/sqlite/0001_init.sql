-- Timestamps are milliseconds since the Unix epoch (UTC), so the same SQL runs on
-- SQLite and PostgreSQL.
CREATE TABLE jobs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    kind             TEXT    NOT NULL,
    repo             TEXT    NOT NULL,
    git_ref          TEXT    NOT NULL,
    sha              TEXT    NOT NULL,
    pr_number        BIGINT,
    dedup_key        TEXT    NOT NULL UNIQUE,
    payload          TEXT    NOT NULL,
    state            TEXT    NOT NULL,
    attempts         BIGINT  NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_expires_at BIGINT,
    cancel_requested BIGINT  NOT NULL DEFAULT 0,
    result           TEXT,
    error            TEXT,
    created_at       BIGINT  NOT NULL,
    updated_at       BIGINT  NOT NULL
);
CREATE INDEX jobs_state_id ON jobs (state, id);
CREATE INDEX jobs_repo_ref ON jobs (repo, git_ref);

CREATE TABLE deliveries (
    delivery_id TEXT   PRIMARY KEY,
    event       TEXT   NOT NULL,
    summary     TEXT   NOT NULL,
    job_id      BIGINT REFERENCES jobs (id),
    received_at BIGINT NOT NULL
);
CREATE INDEX deliveries_job ON deliveries (job_id);

CREATE TABLE job_log (
    job_id  BIGINT NOT NULL REFERENCES jobs (id),
    seq     BIGINT NOT NULL,
    at      BIGINT NOT NULL,
    step    TEXT   NOT NULL,
    message TEXT   NOT NULL,
    PRIMARY KEY (job_id, seq)
);

CREATE TABLE builds (
    build_id   TEXT   PRIMARY KEY,
    job_id     BIGINT,
    recipe     TEXT   NOT NULL,
    version    TEXT   NOT NULL,
    git_sha    TEXT   NOT NULL,
    state      TEXT   NOT NULL,
    plan       TEXT   NOT NULL,
    manifest   TEXT,
    error      TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX builds_recipe_version ON builds (recipe, version);

CREATE TABLE build_journal (
    build_id TEXT   NOT NULL,
    seq      BIGINT NOT NULL,
    at       BIGINT NOT NULL,
    kind     TEXT   NOT NULL,
    data     TEXT   NOT NULL,
    PRIMARY KEY (build_id, seq)
);
