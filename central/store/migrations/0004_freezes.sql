-- Freezes: a fleet-wide, channel-wide or environment-wide stop of every
-- change from since until until (POST /api/v1/freezes). Keys are freeze ids,
-- which begin with their creation time, so keys sort by age. channel,
-- environment, since_at and until_at are copied out of the document (times
-- in the fixed-width UTC text form of every time the store keeps), to find
-- the freezes in force and those that name a channel. A freeze of the whole
-- fleet has both empty. Valid in both dialects as it is.
CREATE TABLE freezes (
    key      TEXT PRIMARY KEY,
    parent   TEXT NOT NULL DEFAULT '',
    doc      TEXT NOT NULL,
    revision BIGINT NOT NULL,
    channel     TEXT NOT NULL DEFAULT '',
    environment TEXT NOT NULL DEFAULT '',
    since_at    TEXT NOT NULL DEFAULT '',
    until_at    TEXT NOT NULL DEFAULT ''
);
CREATE INDEX freezes_until ON freezes (until_at);
