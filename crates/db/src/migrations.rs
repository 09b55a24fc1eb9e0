//! Embedded migrations, one set per crate that owns tables.
//!
//! A crate embeds its SQL for both backends with `diesel_migrations::embed_migrations!` and
//! declares a `static` [`MigrationSet`]. A plugin registers it while it is built with
//! [`MigrationsExt::add_migrations`]; the sets end up, in plugin build order, in the built
//! application's extensions as [`Migrations`], and the host applies them at startup. Sets
//! are applied one after the other, each in version order; versions are unique across sets
//! because diesel keeps one table of applied versions per database.

use std::collections::{BTreeMap, HashSet};

use diesel::backend::Backend as DieselBackend;
use diesel::migration::{Migration, MigrationSource};
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};
use serde::Serialize;
use xcore_core::AppBuilder;

use crate::database::Target;
use crate::{Conn, Database, Error, Result};

/// The migrations of one crate, for both backends.
pub struct MigrationSet {
    /// Usually the owning crate's or plugin's name; shown by `xcore migrate --status`.
    pub name: &'static str,
    pub sqlite: EmbeddedMigrations,
    pub postgres: EmbeddedMigrations,
}

impl std::fmt::Debug for MigrationSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MigrationSet").field("name", &self.name).finish_non_exhaustive()
    }
}

/// The migration sets registered while building an application, in registration order.
#[derive(Debug, Default)]
pub struct Migrations {
    pub sets: Vec<&'static MigrationSet>,
}

/// Adds migration registration to [`AppBuilder`].
pub trait MigrationsExt {
    /// Registers `set` to be applied before the application starts.
    fn add_migrations(&mut self, set: &'static MigrationSet) -> &mut Self;
}

impl MigrationsExt for AppBuilder {
    fn add_migrations(&mut self, set: &'static MigrationSet) -> &mut Self {
        self.extensions_mut().get_or_default::<Migrations>().sets.push(set);
        self
    }
}

/// One migration and whether it has been applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MigrationStatus {
    pub set: &'static str,
    pub version: String,
    pub name: String,
    pub applied: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Apply,
    Report,
}

impl Database {
    /// Applies every pending migration of `sets`, in order, and returns the ones applied
    /// now. Applying twice is harmless: the second run applies nothing.
    ///
    /// # Errors
    ///
    /// [`Error::DuplicateMigration`] when two sets share a version, [`Error::Migration`]
    /// when a migration fails (its own transaction is rolled back; earlier ones stay).
    pub async fn migrate(&self, sets: &[&'static MigrationSet]) -> Result<Vec<MigrationStatus>> {
        let all = self.run(sets, Mode::Apply).await?;
        Ok(all.into_iter().filter(|status| status.applied).collect())
    }

    /// Every migration of `sets`, applied or pending, in the order they would be applied.
    ///
    /// # Errors
    ///
    /// As [`migrate`](Self::migrate), minus the failures of applying.
    pub async fn migration_status(
        &self,
        sets: &[&'static MigrationSet],
    ) -> Result<Vec<MigrationStatus>> {
        self.run(sets, Mode::Report).await
    }

    async fn run(
        &self,
        sets: &[&'static MigrationSet],
        mode: Mode,
    ) -> Result<Vec<MigrationStatus>> {
        let sets = sets.to_vec();
        match self.target() {
            Target::Sqlite(_) => {
                check_unique(&sets, |set| &set.sqlite)?;
                let mut conn = self.get().await?;
                let Conn::Sqlite(conn) = &mut conn else {
                    return Err(Error::Connect(
                        "the pool returned a connection of another backend".into(),
                    ));
                };
                // The pooled connection is used (rather than a new one) so that an
                // in-memory database is migrated in place.
                conn.spawn_blocking(move |c| Ok(apply(c, &sets, |set| &set.sqlite, mode))).await?
            }
            Target::Postgres(url) => {
                check_unique(&sets, |set| &set.postgres)?;
                let url = url.clone();
                tokio::task::spawn_blocking(move || {
                    let mut c = <AsyncConnectionWrapper<AsyncPgConnection> as diesel::Connection>::establish(&url)
                        .map_err(|error| Error::Connect(error.to_string()))?;
                    if mode == Mode::Apply {
                        // Nodes starting together take turns: the next one finds the
                        // migrations applied. The lock goes with the connection.
                        diesel::RunQueryDsl::execute(
                            diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK})")),
                            &mut c,
                        )
                        .map_err(|source| Error::Migration { set: "schema", source: source.into() })?;
                    }
                    apply(&mut c, &sets, |set| &set.postgres, mode)
                })
                .await?
            }
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The PostgreSQL advisory lock held while migrations are applied (an arbitrary constant,
/// `xcore` in ASCII).
const MIGRATION_LOCK: i64 = 0x78_63_6f_72_65;

/// The migrations of `source`, sorted by version.
fn versions<DB: DieselBackend>(
    source: &EmbeddedMigrations,
) -> Result<Vec<Box<dyn Migration<DB>>>, BoxError>
where
    EmbeddedMigrations: MigrationSource<DB>,
{
    let mut migrations = MigrationSource::<DB>::migrations(source)?;
    migrations.sort_by_key(|migration| migration.name().version().to_string());
    Ok(migrations)
}

fn check_unique(
    sets: &[&'static MigrationSet],
    pick: impl Fn(&MigrationSet) -> &EmbeddedMigrations,
) -> Result<()> {
    let mut seen: BTreeMap<String, &'static str> = BTreeMap::new();
    for set in sets {
        let migrations = versions::<diesel::sqlite::Sqlite>(pick(set))
            .map_err(|source| Error::Migration { set: set.name, source })?;
        for migration in migrations {
            let version = migration.name().version().to_string();
            if let Some(first) = seen.insert(version.clone(), set.name) {
                return Err(Error::DuplicateMigration { version, first, second: set.name });
            }
        }
    }
    Ok(())
}

fn apply<C>(
    conn: &mut C,
    sets: &[&'static MigrationSet],
    pick: fn(&MigrationSet) -> &EmbeddedMigrations,
    mode: Mode,
) -> Result<Vec<MigrationStatus>>
where
    C: MigrationHarness<C::Backend> + diesel::Connection,
    EmbeddedMigrations: MigrationSource<C::Backend>,
{
    let applied: HashSet<String> = conn
        .applied_migrations()
        .map_err(|source| Error::Migration { set: "schema", source })?
        .into_iter()
        .map(|version| version.to_string())
        .collect();
    let mut statuses = Vec::new();
    for set in sets {
        let migrations = versions::<C::Backend>(pick(set))
            .map_err(|source| Error::Migration { set: set.name, source })?;
        for migration in migrations {
            let version = migration.name().version().to_string();
            let done = applied.contains(&version);
            if mode == Mode::Apply && done {
                continue;
            }
            if mode == Mode::Apply {
                conn.run_migration(&*migration)
                    .map_err(|source| Error::Migration { set: set.name, source })?;
                tracing::info!(set = set.name, migration = %migration.name(), "migration applied");
            }
            statuses.push(MigrationStatus {
                set: set.name,
                version,
                name: migration.name().to_string(),
                applied: done || mode == Mode::Apply,
            });
        }
    }
    Ok(statuses)
}

#[cfg(test)]
mod tests {
    use diesel_migrations::embed_migrations;

    use super::*;
    use crate::DatabaseConfig;

    static TEST_SET: MigrationSet = MigrationSet {
        name: "test",
        sqlite: embed_migrations!("tests/migrations/sqlite"),
        postgres: embed_migrations!("tests/migrations/postgres"),
    };

    async fn applies_twice(db: Database) {
        let first = db.migrate(&[&TEST_SET]).await.unwrap();
        let versions: Vec<_> = first.iter().map(|m| m.version.as_str()).collect();
        assert_eq!(versions, ["20261122000001", "20261122000002"]);
        let second = db.migrate(&[&TEST_SET]).await.unwrap();
        assert_eq!(second, []);
        let status = db.migration_status(&[&TEST_SET]).await.unwrap();
        assert!(status.iter().all(|m| m.applied), "{status:?}");
        // The tables really exist: the second migration inserted a row into the first's.
        let mut conn = db.get().await.unwrap();
        use diesel_async::SimpleAsyncConnection;
        crate::with_conn!(conn, c => c.batch_execute("SELECT id FROM xcore_migration_test").await)
            .unwrap();
    }

    #[tokio::test]
    async fn migrations_apply_twice_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/x.db", dir.path().display());
        applies_twice(Database::new(&DatabaseConfig { url, ..DatabaseConfig::default() }).unwrap())
            .await;
    }

    #[tokio::test]
    async fn migrations_apply_twice_on_sqlite_in_memory() {
        let config = DatabaseConfig { url: "sqlite::memory:".into(), ..DatabaseConfig::default() };
        applies_twice(Database::new(&config).unwrap()).await;
    }

    #[tokio::test]
    async fn migrations_apply_twice_on_postgres() {
        let Some(url) = crate::testing::fresh_postgres_url("migrations").await else { return };
        applies_twice(Database::new(&DatabaseConfig { url, ..DatabaseConfig::default() }).unwrap())
            .await;
    }

    /// Nodes starting together on one PostgreSQL database all start: one applies the
    /// migrations while the others wait, then find nothing left to do.
    #[tokio::test]
    async fn nodes_migrating_at_once_on_postgres_take_turns() {
        let Some(url) = crate::testing::fresh_postgres_url("migrations_race").await else {
            return;
        };
        let node = || {
            let db =
                Database::new(&DatabaseConfig { url: url.clone(), ..DatabaseConfig::default() });
            let db = db.unwrap();
            tokio::spawn(async move { db.migrate(&[&TEST_SET]).await })
        };
        let nodes: Vec<_> = (0..4).map(|_| node()).collect();
        let mut applied = 0;
        for node in nodes {
            applied += node.await.unwrap().unwrap().len();
        }
        assert_eq!(applied, 2, "each migration applied once");
    }

    #[tokio::test]
    async fn duplicate_versions_across_sets_are_refused() {
        static SAME_VERSIONS: MigrationSet = MigrationSet {
            name: "copy",
            sqlite: embed_migrations!("tests/migrations/sqlite"),
            postgres: embed_migrations!("tests/migrations/postgres"),
        };
        let config = DatabaseConfig { url: "sqlite::memory:".into(), ..DatabaseConfig::default() };
        let db = Database::new(&config).unwrap();
        let error = db.migrate(&[&TEST_SET, &SAME_VERSIONS]).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "migration version `20261122000001` appears in both `test` and `copy`"
        );
        assert_eq!(db.migration_status(&[&TEST_SET]).await.unwrap().len(), 2);
        assert!(db.migration_status(&[&TEST_SET]).await.unwrap().iter().all(|m| !m.applied));
    }
}
