-- Users of the messaging engine: the account id in the server, any opaque id embedded.
CREATE TABLE messaging_users (
    id TEXT PRIMARY KEY NOT NULL,
    username TEXT NOT NULL,
    -- A JSON object.
    metadata TEXT NOT NULL DEFAULT '{}',
    created_at TIMESTAMP NOT NULL,
    last_seen TIMESTAMP
);

-- Every place messages go: the lobby (every user), groups, direct conversations.
CREATE TABLE messaging_conversations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    -- `lobby`, `group` or `direct`.
    kind TEXT NOT NULL,
    name TEXT,
    -- The two user ids of a direct conversation, sorted and joined: one per pair.
    direct_key TEXT UNIQUE,
    -- The sequence number of the last message: the next one is `last_seq + 1`.
    last_seq BIGINT NOT NULL DEFAULT 0,
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE messaging_members (
    conversation_id BIGINT NOT NULL REFERENCES messaging_conversations (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES messaging_users (id) ON DELETE CASCADE,
    -- `owner`, `admin` or `member`.
    role TEXT NOT NULL,
    last_read_seq BIGINT NOT NULL DEFAULT 0,
    joined_at TIMESTAMP NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX messaging_members_user ON messaging_members (user_id);

CREATE TABLE messaging_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id BIGINT NOT NULL REFERENCES messaging_conversations (id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    -- Not a foreign key: a message outlives its sender's profile.
    sender_id TEXT NOT NULL,
    body TEXT NOT NULL,
    -- A JSON value, or NULL.
    attachment TEXT,
    created_at TIMESTAMP NOT NULL,
    edited_at TIMESTAMP,
    deleted BOOLEAN NOT NULL DEFAULT 0,
    UNIQUE (conversation_id, seq)
);

INSERT INTO messaging_conversations (kind, name, created_at) VALUES ('lobby', 'lobby', CURRENT_TIMESTAMP);
