-- The head commit of each followed branch, as a replica last read it from
-- git (periodically, or at once for a webhook's push). Kept in the database
-- so every replica hands out the same head in assignments: the replica that
-- reads a new head writes it here and wakes the long-polls of the clusters
-- on the channels following the branch, on every replica (NOTIFY). Git stays
-- the truth; a row is only the registry's last reading of it. Valid in both
-- dialects as it is.
CREATE TABLE channel_heads (
    repository_url TEXT NOT NULL,
    branch         TEXT NOT NULL,
    commit_id      TEXT NOT NULL,
    read_at        TEXT NOT NULL,
    PRIMARY KEY (repository_url, branch)
);
