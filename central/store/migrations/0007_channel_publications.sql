-- What the registry publishes to each channel's agents (the commit of
-- their assignment), kept so that every replica hands out the same commit
-- and a restarted registry goes on where it was. On a channel whose gate
-- binds (gate enforced, not the first channel) only a head that passed the
-- promotion gate is published: one that a recorded promotion names
-- (promoted_commit: met from the channel before, or overridden with a
-- reason). Any other head is held (held_*), and the agents keep commit_id.
-- promotion is the last promotion recorded into the channel, whatever its
-- verdict, for the held head's reason. No foreign key: a row is written
-- only under the publication lock, and a channel's delete removes its row
-- there too. Valid in both dialects as it is.
CREATE TABLE channel_publications (
    channel         TEXT PRIMARY KEY,
    gate            TEXT NOT NULL,
    commit_id       TEXT NOT NULL,
    published_at    TEXT NOT NULL,
    held_commit     TEXT NOT NULL,
    held_reason     TEXT NOT NULL,
    held_since      TEXT NOT NULL,
    promoted_commit TEXT NOT NULL,
    promotion       TEXT
);
