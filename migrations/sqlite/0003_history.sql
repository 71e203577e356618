-- Repositories this installation has synced, and when it first saw each: the release
-- tags already there then are its history, which sync never builds.
CREATE TABLE repositories (
    repo          TEXT   PRIMARY KEY,
    first_seen_at BIGINT NOT NULL
);

-- The release tags (and the commit each pointed at) a repository held when it was first
-- seen. A tag moved to another commit since is new work.
CREATE TABLE repository_history (
    repo TEXT NOT NULL,
    tag  TEXT NOT NULL,
    sha  TEXT NOT NULL,
    PRIMARY KEY (repo, tag, sha)
);
