//! The database module: [`DatabasePlugin`] reads `[database]`, provides the [`Database`]
//! to the plugins that depend on it, and applies every plugin's migrations.
//!
//! Plugins register their [`MigrationSet`](crate::MigrationSet)s while they are built
//! ([`MigrationsExt`](crate::MigrationsExt)); this module reads them in the finish phase,
//! once every plugin has had its say, and applies them in a startup hook. Its hooks run
//! before those of every plugin that depends on it, so the tables exist before any other
//! plugin starts. `xcore migrate` applies them without serving, `xcore migrate --status`
//! lists them.

use std::time::Duration;

use xcore_core::{AppBuilder, HookError, Plugin, PluginError, PluginMeta, register_plugin};

use crate::{Backend, Database, DatabaseConfig, Migrations};

/// The database module. Plugins that use the database list `"database"` in their
/// dependencies and take it with `app.require::<Database>()`.
#[derive(Debug, Clone, Copy)]
pub struct DatabasePlugin;

register_plugin!(DatabasePlugin);

impl Plugin for DatabasePlugin {
    fn meta(&self) -> PluginMeta {
        PluginMeta {
            version: env!("CARGO_PKG_VERSION"),
            description: "The SQL database (SQLite or PostgreSQL) and its migrations",
            author: "xcore developers",
            section: Some("database"),
            ..PluginMeta::new("database")
        }
    }

    fn build(&self, app: &mut AppBuilder) -> Result<(), PluginError> {
        let config: DatabaseConfig = app.config()?;
        let db =
            Database::new(&config).map_err(|error| app.config_error("url", error.to_string()))?;
        app.insert_resource(db.clone());
        let probe = db.clone();
        app.readiness("database", true, move || {
            let db = probe.clone();
            async move {
                db.ping().await.map_err(|error| error.to_string())?;
                Ok(backend_name(db.backend()).to_owned())
            }
        });
        metrics::describe_gauge!("db_pool_connections", "Database connections held by the pool.");
        let gauges = db;
        app.on_scrape(move || {
            let (open, idle) = gauges.pool_status();
            metrics::gauge!("db_pool_connections", "state" => "open").set(open as f64);
            metrics::gauge!("db_pool_connections", "state" => "idle").set(idle as f64);
        });
        Ok(())
    }

    fn finish(&self, app: &mut AppBuilder) -> Result<(), PluginError> {
        let db = app.require::<Database>()?.clone();
        let sets = app.extensions().get::<Migrations>().map(|m| m.sets.clone()).unwrap_or_default();
        let (startup, command) = (db.clone(), sets.clone());
        app.on_startup(move || async move {
            let applied = startup.migrate(&sets).await?;
            if !applied.is_empty() {
                tracing::info!(count = applied.len(), "migrations applied");
            }
            Ok(())
        });
        app.command("migrate", "Apply pending database migrations (--status lists them)", |args| {
            migrate(db, command, args)
        });
        Ok(())
    }
}

fn backend_name(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    }
}

/// The longest `xcore migrate` waits for a database that does not answer.
const COMMAND_LIMIT: Duration = Duration::from_secs(60);

/// `xcore migrate [--status]`.
// A command-line command: printing its results is its job.
#[allow(clippy::print_stdout)]
async fn migrate(
    db: Database,
    sets: Vec<&'static crate::MigrationSet>,
    args: Vec<String>,
) -> Result<(), HookError> {
    let status = match args.as_slice() {
        [] => false,
        [flag] if flag == "--status" => true,
        _ => return Err(format!("usage: xcore migrate [--status]; got {args:?}").into()),
    };
    if status {
        let migrations = tokio::time::timeout(COMMAND_LIMIT, db.migration_status(&sets)).await??;
        println!("{:<10} {:<12} {:<16} NAME", "STATE", "SET", "VERSION");
        for m in &migrations {
            let state = if m.applied { "applied" } else { "pending" };
            println!("{state:<10} {:<12} {:<16} {}", m.set, m.version, m.name);
        }
        let pending = migrations.iter().filter(|m| !m.applied).count();
        println!("{} applied, {pending} pending", migrations.len() - pending);
    } else {
        let applied = tokio::time::timeout(COMMAND_LIMIT, db.migrate(&sets)).await??;
        for m in &applied {
            println!("applied {} {} ({})", m.version, m.name, m.set);
        }
        println!("{} migration(s) applied", applied.len());
    }
    Ok(())
}
