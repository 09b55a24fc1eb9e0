DROP TABLE welcome_greetings;
