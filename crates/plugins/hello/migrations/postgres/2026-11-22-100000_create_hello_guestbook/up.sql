CREATE TABLE hello_guestbook (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    message TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX hello_guestbook_created_at ON hello_guestbook (created_at);
