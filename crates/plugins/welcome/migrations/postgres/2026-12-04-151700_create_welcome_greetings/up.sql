-- Who has been greeted, so that a greeting sent once is never sent again, whichever node
-- the user comes online on and however often the server restarts.
CREATE TABLE welcome_greetings (
    user_id TEXT PRIMARY KEY NOT NULL,
    greeted_at TIMESTAMP NOT NULL
);

-- Users seen online before the plugin was installed have come online already: they are
-- not greeted as newcomers.
INSERT INTO welcome_greetings (user_id, greeted_at)
SELECT id, last_seen FROM messaging_users WHERE last_seen IS NOT NULL;
