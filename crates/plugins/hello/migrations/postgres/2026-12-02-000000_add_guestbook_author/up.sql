-- The account that signed the entry; entries signed before signing in was required have none.
ALTER TABLE hello_guestbook ADD COLUMN author_id BIGINT;
