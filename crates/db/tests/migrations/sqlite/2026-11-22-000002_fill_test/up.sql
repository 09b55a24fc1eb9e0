INSERT INTO xcore_migration_test (label) VALUES ('filled');
