-- Ended sessions and accounts whose access tokens may still be current: every node reads
-- the rows written since its last look, so an ended session is refused everywhere and
-- after restarts. Rows older than an access token's lifetime are pruned.
CREATE TABLE auth_revocations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id BIGINT NOT NULL,
    -- The session ended, or NULL when every session of the account ended.
    session TEXT,
    -- For a whole account: tokens issued at or before this Unix time are refused.
    not_before BIGINT,
    -- The database's clock, so that nodes with different clocks agree on the order.
    revoked_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);
CREATE INDEX auth_revocations_revoked_at ON auth_revocations (revoked_at);
