-- Messages each user sent on each UTC day (days since 1970-01-01), reserved before each
-- message is stored; rows of past days are pruned.
CREATE TABLE quota_daily (
    user_id TEXT NOT NULL,
    day BIGINT NOT NULL,
    messages BIGINT NOT NULL,
    PRIMARY KEY (user_id, day)
);

-- The bytes of each user's stored messages (body and attachment JSON, deleted messages
-- excluded), kept up to date from the committed messages.
CREATE TABLE quota_usage (
    user_id TEXT PRIMARY KEY NOT NULL,
    bytes BIGINT NOT NULL
);

-- Messages stored before the plugin was installed count.
INSERT INTO quota_usage (user_id, bytes)
SELECT sender_id, SUM(octet_length(body) + COALESCE(octet_length(attachment), 0))::BIGINT
FROM messaging_messages
WHERE NOT deleted
GROUP BY sender_id;
