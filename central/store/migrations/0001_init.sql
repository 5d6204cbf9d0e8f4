-- One schema for both databases: {{serial_primary_key}} is the only
-- difference, filled in per dialect when the migration is applied.
CREATE TABLE accounts (
    key      TEXT PRIMARY KEY,
    parent   TEXT NOT NULL DEFAULT '',
    doc      TEXT NOT NULL,
    revision BIGINT NOT NULL,
    environment      TEXT NOT NULL DEFAULT '',
    lifecycle_status TEXT NOT NULL DEFAULT ''
);
CREATE TABLE channels (
    key      TEXT PRIMARY KEY,
    parent   TEXT NOT NULL DEFAULT '',
    doc      TEXT NOT NULL,
    revision BIGINT NOT NULL,
    position BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE clusters (
    key      TEXT PRIMARY KEY,
    parent   TEXT NOT NULL REFERENCES accounts (key),
    doc      TEXT NOT NULL,
    revision BIGINT NOT NULL,
    channel          TEXT NOT NULL REFERENCES channels (key),
    environment      TEXT NOT NULL DEFAULT '',
    lifecycle_status TEXT NOT NULL DEFAULT '',
    alias            TEXT NOT NULL DEFAULT ''
);
CREATE INDEX clusters_parent ON clusters (parent);
CREATE INDEX clusters_channel ON clusters (channel);
CREATE TABLE node_pools (
    key      TEXT PRIMARY KEY,
    parent   TEXT NOT NULL REFERENCES clusters (key),
    doc      TEXT NOT NULL,
    revision BIGINT NOT NULL
);
CREATE INDEX node_pools_parent ON node_pools (parent);
CREATE TABLE blocks (
    key      TEXT PRIMARY KEY,
    parent   TEXT NOT NULL REFERENCES clusters (key),
    doc      TEXT NOT NULL,
    revision BIGINT NOT NULL,
    node_pool TEXT NOT NULL DEFAULT ''
);
CREATE INDEX blocks_parent ON blocks (parent);
CREATE TABLE tokens (
    key      TEXT PRIMARY KEY,
    parent   TEXT NOT NULL DEFAULT '',
    doc      TEXT NOT NULL,
    revision BIGINT NOT NULL,
    name     TEXT NOT NULL DEFAULT '',
    hash     TEXT NOT NULL DEFAULT '',
    role     TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX tokens_name ON tokens (name);
CREATE UNIQUE INDEX tokens_hash ON tokens (hash);
CREATE TABLE cluster_status (
    cluster_id TEXT PRIMARY KEY REFERENCES clusters (key) ON DELETE CASCADE,
    phase      TEXT NOT NULL,
    current_version TEXT NOT NULL,
    doc        TEXT NOT NULL
);
CREATE TABLE status_history (
    id         {{serial_primary_key}},
    cluster_id TEXT NOT NULL REFERENCES clusters (key) ON DELETE CASCADE,
    at         TEXT NOT NULL,
    doc        TEXT NOT NULL
);
CREATE INDEX status_history_cluster ON status_history (cluster_id, id);
CREATE TABLE audit (
    id            {{serial_primary_key}},
    at            TEXT NOT NULL,
    actor         TEXT NOT NULL,
    action        TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id   TEXT NOT NULL,
    before_doc    TEXT,
    after_doc     TEXT
);
CREATE INDEX audit_resource ON audit (resource_type, resource_id);
