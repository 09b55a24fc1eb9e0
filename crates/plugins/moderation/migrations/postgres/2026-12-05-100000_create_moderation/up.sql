-- Mutes and bans in force, one of each at most per user: kept in the database so that
-- they hold on every node and survive restarts.
CREATE TABLE moderation_sanctions (
    user_id TEXT NOT NULL,
    -- `mute` or `ban`.
    kind TEXT NOT NULL,
    -- When a mute ends (UTC); NULL until it is lifted. A row past its end no longer applies.
    ends_at TIMESTAMP,
    reason TEXT,
    -- The moderator's user id.
    actor TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (user_id, kind)
);

-- Every moderation action, by a moderator or by the word filter (`word_filter`).
CREATE TABLE moderation_actions (
    id BIGSERIAL PRIMARY KEY,
    created_at TIMESTAMP NOT NULL,
    actor TEXT NOT NULL,
    -- `mute`, `unmute`, `ban`, `unban`, `delete`, `refuse` or `mask`.
    action TEXT NOT NULL,
    target TEXT,
    conversation_id BIGINT,
    seq BIGINT,
    reason TEXT,
    ends_at TIMESTAMP
);
CREATE INDEX moderation_actions_target ON moderation_actions (target, id);
