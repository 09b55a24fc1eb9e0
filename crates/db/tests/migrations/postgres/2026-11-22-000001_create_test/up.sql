CREATE TABLE xcore_migration_test (id BIGSERIAL PRIMARY KEY, label TEXT NOT NULL);
