-- Failed logins by email (known or not: both are counted alike) and client address, and
-- by email alone under the client `*`: a client is locked out of one email after
-- repeated failures, and every attempt on an email is slowed once it has failed too often
-- from everywhere. A row is deleted by a successful login and forgotten after a quiet day.
CREATE TABLE auth_login_failures (
    email_key TEXT NOT NULL,
    client TEXT NOT NULL,
    failures INTEGER NOT NULL,
    last_failure_at TIMESTAMP NOT NULL,
    locked_until TIMESTAMP,
    PRIMARY KEY (email_key, client)
);
CREATE INDEX auth_login_failures_last ON auth_login_failures (last_failure_at);
