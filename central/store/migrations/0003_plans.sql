-- Plans: a preview of what a commit would change in a cluster, asked of
-- its agent through the assignment. The key is "<cluster id>/<plan id>",
-- and plan ids begin with their creation time, so keys sort by age within
-- a cluster. state is copied out of the document, to find the plans the
-- agent has yet to answer. A cluster's plans go with it.
CREATE TABLE plans (
    key      TEXT PRIMARY KEY,
    parent   TEXT NOT NULL REFERENCES clusters (key) ON DELETE CASCADE,
    doc      TEXT NOT NULL,
    revision BIGINT NOT NULL,
    state    TEXT NOT NULL DEFAULT ''
);
CREATE INDEX plans_parent_state ON plans (parent, state);
