DROP TABLE auth_login_failures;
