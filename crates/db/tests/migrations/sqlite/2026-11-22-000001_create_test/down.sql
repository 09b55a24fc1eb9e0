DROP TABLE xcore_migration_test;
