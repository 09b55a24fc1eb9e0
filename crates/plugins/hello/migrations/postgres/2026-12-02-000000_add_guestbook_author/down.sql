ALTER TABLE hello_guestbook DROP COLUMN author_id;
