DELETE FROM xcore_migration_test WHERE label = 'filled';
