-- Web UI sessions. A signed-in browser's cookie holds a random secret, of
-- which only the SHA-256 is kept (hash), never the API token it signed in
-- with. A session lasts until expires_at (in the fixed-width UTC text form
-- of every time the store keeps) or until sign-out deletes it, and is valid
-- only while its token is: revoking the token ends its sessions too. A
-- token's sessions go with it. Valid in both dialects as it is.
CREATE TABLE sessions (
    hash       TEXT PRIMARY KEY,
    token_id   TEXT NOT NULL REFERENCES tokens (key) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX sessions_expires ON sessions (expires_at);
