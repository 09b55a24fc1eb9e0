DROP TABLE messaging_messages;
DROP TABLE messaging_members;
DROP TABLE messaging_conversations;
DROP TABLE messaging_users;
