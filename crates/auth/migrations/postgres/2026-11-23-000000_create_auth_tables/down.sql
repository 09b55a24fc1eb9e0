DROP TABLE auth_one_time_codes;
DROP TABLE auth_refresh_tokens;
DROP TABLE auth_users;
