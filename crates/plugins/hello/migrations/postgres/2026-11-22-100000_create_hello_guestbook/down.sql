DROP TABLE hello_guestbook;
