DROP TABLE moderation_actions;
DROP TABLE moderation_sanctions;
