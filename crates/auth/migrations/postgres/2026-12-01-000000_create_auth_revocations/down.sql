DROP TABLE auth_revocations;
